"""The real-job row of bench/shuffle.sh: a shuffle-heavy Spark 3.5.7 job whose reduce stage fetches
through an external shuffle service, timed from Spark's own event log.

Usage: python shuffle_job.py <shuffle-service-port> <work-dir> <jobs> <rows>

local-cluster[2,1,1024] (two executors, one core each) with spark.shuffle.service.enabled and
spark.shuffle.readHostLocalDisk=false, so every block of the other executor is fetched through
the service on <port>. Each of <jobs> jobs: <rows> rows of two SHA-256 hex strings (about 140
bytes a row before compression) from 8 map tasks, repartitioned into 64 reduce partitions, then
summed with a hash of every row. AQE is off so the reduce stage keeps its 64 tasks. The sum is
compared with the same sum computed without a shuffle (every byte goes into it).

Printed lines: "job n=<i> reduce_ms=<stage wall time> fetch_wait_ms=<sum over tasks>
remote_mb=<remote shuffle MB read> ok=<true|false>", one per job, from the event log's
StageSubmitted/StageCompleted/TaskEnd events of the stage that read the most remote shuffle bytes.
"""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop", "spark"))
import local_cluster  # noqa: E402

MAPS = 8
REDUCES = 64


def main():
    port, work, jobs, rows = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    events = os.path.join(work, "events")
    os.makedirs(events, exist_ok=True)
    spark = (
        local_cluster.builder("croupier-shuffle-job-bench", port, events)
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.task.maxFailures", "1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    df = spark.range(0, rows, 1, MAPS).selectExpr(
        "id", "sha2(cast(id as string), 256) as a", "sha2(cast(id * 7 as string), 256) as b"
    )
    want = df.selectExpr("sum(cast(hash(id, a, b) as bigint)) as s").collect()[0]["s"]
    oks = []
    for _ in range(jobs):
        got = df.repartition(REDUCES).selectExpr("sum(cast(hash(id, a, b) as bigint)) as s").collect()[0]["s"]
        oks.append(got == want)
    spark.stop()

    # Stage -> (submitted ms, completed ms, remote bytes, fetch wait ms), per application run.
    stages = {}
    for path in glob.glob(os.path.join(events, "*")):
        with open(path) as f:
            for line in f:
                ev = json.loads(line)
                kind = ev.get("Event")
                if kind == "SparkListenerStageCompleted":
                    info = ev["Stage Info"]
                    s = stages.setdefault(info["Stage ID"], [0, 0, 0, 0])
                    s[0] = info.get("Submission Time", 0)
                    s[1] = info.get("Completion Time", 0)
                elif kind == "SparkListenerTaskEnd":
                    m = (ev.get("Task Metrics") or {}).get("Shuffle Read Metrics") or {}
                    s = stages.setdefault(ev["Stage ID"], [0, 0, 0, 0])
                    s[2] += m.get("Remote Bytes Read", 0)
                    s[3] += m.get("Fetch Wait Time", 0)
    # The stages that read the repartition's shuffle remotely, in order: one per job.
    big = sorted(sid for sid, s in stages.items() if s[2] > 0)
    big = sorted(big, key=lambda sid: stages[sid][2], reverse=True)[:jobs]
    for n, sid in enumerate(sorted(big)):
        sub, done, remote, wait = stages[sid]
        ok = oks[n] if n < len(oks) else False
        print(
            f"job n={n} reduce_ms={done - sub} fetch_wait_ms={wait} remote_mb={remote / 2**20:.1f} ok={str(ok).lower()}",
            flush=True,
        )
    if not all(oks) or len(big) != jobs:
        print(f"job_failed: sums equal {oks}, {len(big)} reduce stages found for {jobs} jobs", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

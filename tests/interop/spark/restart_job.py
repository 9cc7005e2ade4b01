"""One real Spark 3.5.7 job during which the external shuffle service is SIGKILLed and restarted.

Usage: python restart_job.py <shuffle-service-port> <sync-dir>

The job is `parallelize(4 partitions) -> reduceByKey(6 partitions)` on local-cluster[2,1,1024]
with spark.shuffle.readHostLocalDisk=false, so every reduce task fetches the other executor's
blocks through the service. The last map task, after producing its records, creates
<sync-dir>/map-waiting and blocks until <sync-dir>/go exists: the test kills the service and
restarts it on the same port in that window, so both executors registered with the old process
and every fetch goes to the new one. A second job then reads the same shuffle again (its map
stage skipped).

Spark's settings let a fetch failure show as what it is: one stage re-attempt allowed (so a lost
registration shows as a recomputed map stage, not an immediate abort), no task retries.

Printed lines: "CHECK <name> ok" for exact results; "INFO <key> <value>" with, from the event
log: fetch_failed (tasks that ended FetchFailed), stage_reattempts (stage attempts > 0),
stages_submitted; and job_failed when a job raised.
"""

import glob
import json
import os
import sys
import time
from operator import add

import local_cluster

MAPS = 4
REDUCES = 6
N = 200000


def say(kind, *words):
    print(kind, *words, flush=True)


def main():
    port, sync = int(sys.argv[1]), sys.argv[2]
    events = os.path.join(sync, "events")
    os.makedirs(events, exist_ok=True)
    spark = (
        local_cluster.builder("croupier-restart", port, events)
        .config("spark.shuffle.io.maxRetries", "2")
        .config("spark.shuffle.io.retryWait", "1s")
        .config("spark.stage.maxConsecutiveAttempts", "2")
        .config("spark.task.maxFailures", "1")
        .getOrCreate()
    )
    sc = spark.sparkContext
    sc.setLogLevel("WARN")
    say("INFO", "app_id", sc.applicationId)

    def hold_last_map(index, it):
        for x in it:
            yield x
        if index == MAPS - 1:
            open(os.path.join(sync, "map-waiting"), "w").close()
            deadline = time.monotonic() + 120
            while not os.path.exists(os.path.join(sync, "go")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test never said go")
                time.sleep(0.1)

    want = {k: 200 * k + 1000 * (199 * 200 // 2) for k in range(1000)}
    reduced = (
        sc.parallelize(range(N), MAPS)
        .mapPartitionsWithIndex(hold_last_map)
        .map(lambda x: (x % 1000, x))
        .reduceByKey(add, REDUCES)
    )
    failed = None
    try:
        got = dict(reduced.collect())
        if got != want:
            raise AssertionError("restart_job_collect: wrong result")
        say("CHECK", "restart_job_collect", "ok")
        # The same shuffle read again by a new job: the map stage is skipped.
        if reduced.map(lambda kv: kv[1]).sum() != sum(want.values()):
            raise AssertionError("restart_job_second_read: wrong result")
        say("CHECK", "restart_job_second_read", "ok")
    except Exception as e:  # the JVM service's run ends here
        failed = str(e).splitlines()[0][:300]
        say("INFO", "job_failed", failed)
    finally:
        spark.stop()

    fetch_failed = stage_reattempts = stages = 0
    for path in glob.glob(os.path.join(events, "*")):
        with open(path) as f:
            for line in f:
                ev = json.loads(line)
                kind = ev.get("Event")
                if kind == "SparkListenerStageSubmitted":
                    stages += 1
                    if ev["Stage Info"].get("Stage Attempt ID", 0) > 0:
                        stage_reattempts += 1
                elif kind == "SparkListenerTaskEnd":
                    if ev.get("Task End Reason", {}).get("Reason") == "FetchFailed":
                        fetch_failed += 1
    say("INFO", "fetch_failed", fetch_failed)
    say("INFO", "stage_reattempts", stage_reattempts)
    say("INFO", "stages_submitted", stages)
    say("CHECK", "done", "ok")


if __name__ == "__main__":
    main()

"""Real Spark 3.5.7 jobs in a loop for a bounded time, for the shuffle service soak (bench/soak.sh).

Usage: python soak_jobs.py <shuffle-service-port> <seconds> <event-log-dir> [jobs-per-session]

Until <seconds> have passed, SparkSessions (`local-cluster[2,1,1024]`,
spark.shuffle.readHostLocalDisk=false, so every remote block goes through the service) are made
one after another, each running jobs-per-session rounds (default 4) of three jobs (an RDD
reduceByKey, a groupByKey of larger string blocks, a DataFrame groupBy), then stopped: each
session is a new application whose two executors register with the service. The service is
restarted under the jobs by the caller; Spark's own fetch retries (spark.shuffle.io.maxRetries 3,
retryWait 2s) are left to ride that out, and a job must never fail or give a wrong result.

Printed lines: "JOB <t> <name> ok|FAILED <why>", "SESSION <app-id> <rounds>", and at the end
"SUMMARY jobs=<n> failed=<n> sessions=<n> fetch_failed_tasks=<n> stage_reattempts=<n>" counted
from the event logs (a task ended FetchFailed; a stage attempt > 0). Exits non-zero if a job
failed or gave a wrong result.
"""

import glob
import json
import os
import sys
import time
from operator import add

import local_cluster
from pyspark.sql import functions as F

T0 = time.monotonic()


def say(*words):
    print(*words, flush=True)


def rdd_reduce_by_key(spark):
    sc = spark.sparkContext
    got = dict(sc.parallelize(range(200000), 4).map(lambda x: (x % 1000, x)).reduceByKey(add, 3).collect())
    want = {k: 200 * k + 1000 * (199 * 200 // 2) for k in range(1000)}
    return got == want


def rdd_group_by_key_strings(spark):
    sc = spark.sparkContext
    got = (
        sc.parallelize(range(10000), 3)
        .map(lambda x: (x % 20, ("%06d" % x) * 6 + "-" * 4))
        .groupByKey(3)
        .mapValues(lambda vs: (len(list(vs)), sum(len(v) for v in vs)))
        .collect()
    )
    return dict(got) == {k: (500, 500 * 40) for k in range(20)}


def dataframe_group_by(spark):
    rows = (
        spark.range(0, 400000, numPartitions=4)
        .withColumn("k", F.col("id") % 5000)
        .groupBy("k")
        .agg(F.count("*").alias("n"), F.sum("id").alias("s"))
        .collect()
    )
    got = {r["k"]: (r["n"], r["s"]) for r in rows}
    return got == {k: (80, 80 * k + 5000 * (79 * 80 // 2)) for k in range(5000)}


JOBS = [rdd_reduce_by_key, rdd_group_by_key_strings, dataframe_group_by]


def session(port, events):
    return (
        local_cluster.builder("croupier-soak", port, events)
        .config("spark.shuffle.io.maxRetries", "3")
        .config("spark.shuffle.io.retryWait", "2s")
        .getOrCreate()
    )


def count_events(events):
    fetch_failed = 0
    reattempts = 0
    for path in glob.glob(os.path.join(events, "*")):
        with open(path) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                kind = e.get("Event")
                if kind == "SparkListenerTaskEnd":
                    if (e.get("Task End Reason") or {}).get("Reason") == "FetchFailed":
                        fetch_failed += 1
                elif kind == "SparkListenerStageSubmitted":
                    if (e.get("Stage Info") or {}).get("Stage Attempt ID", 0) > 0:
                        reattempts += 1
    return fetch_failed, reattempts


def main():
    port, seconds, events = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    os.makedirs(events, exist_ok=True)
    deadline = T0 + seconds
    jobs = failed = sessions = 0
    while time.monotonic() < deadline:
        spark = session(port, events)
        spark.sparkContext.setLogLevel("ERROR")
        sessions += 1
        done = 0
        try:
            for _ in range(rounds):
                if time.monotonic() >= deadline:
                    break
                for job in JOBS:
                    jobs += 1
                    t = "%.1f" % (time.monotonic() - T0)
                    try:
                        ok = job(spark)
                        why = "" if ok else "wrong result"
                    except Exception as e:  # a failed job is counted and reported, then go on
                        ok, why = False, str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                    if not ok:
                        failed += 1
                    say("JOB", t, job.__name__, "ok" if ok else "FAILED " + why)
                done += 1
        finally:
            say("SESSION", spark.sparkContext.applicationId, done)
            spark.stop()
    fetch_failed, reattempts = count_events(events)
    say(
        "SUMMARY jobs=%d failed=%d sessions=%d fetch_failed_tasks=%d stage_reattempts=%d"
        % (jobs, failed, sessions, fetch_failed, reattempts)
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""Real Spark 3.5.7 jobs whose executors use an external shuffle service on 127.0.0.1:<port>.

Usage: python jobs.py <variant> <shuffle-service-port> [key=value ...]

Extra key=value items are set on the SparkSession (e.g. spark.authenticate=true and the secret).

Variants (one SparkContext each, several jobs per context):
  fetch      spark.shuffle.readHostLocalDisk=false: every remote block goes through the service
  lean       as fetch, two jobs only (small and larger blocks), for the per-setting variants
             (authentication) where a whole run per setting would cost too much CI time
  hostlocal  Spark's production default (readHostLocalDisk=true, which local-cluster mode turns
             off unless set): executors ask the service for each other's local dirs
             (GetLocalDirsForExecutors) and read the files themselves
  oldproto   spark.shuffle.useOldFetchProtocol=true: OpenBlocks instead of FetchShuffleBlocks
  dynalloc   dynamic allocation: the executors that wrote the map output are idle-killed, new
             executors then fetch that output from the service (the map stage is skipped)

`local-cluster[2,1,1024]` starts a standalone Master and two Workers inside the driver JVM; the
Workers are started with the service disabled, so no Spark shuffle service runs: the executors
register with whatever listens on spark.shuffle.service.port.

Every line the test reads starts with "CHECK " (an exact result) or "INFO " (context). Expected
values are computed here in closed form, independently of Spark. Any mismatch raises, so the
process exits non-zero.
"""

import sys
import time
from operator import add

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def say(kind, *words):
    print(kind, *words, flush=True)


def check(name, got, want):
    if got != want:
        raise AssertionError(f"{name}: got {got!r}, want {want!r}")
    say("CHECK", name, "ok")
    say("INFO", "t", "%.1f" % (time.monotonic() - T0))


T0 = time.monotonic()


def rdd_reduce_by_key(sc):
    # keys 0..999, each the sum of 200 numbers k + 1000*j (j in 0..199)
    got = dict(
        sc.parallelize(range(200000), 4).map(lambda x: (x % 1000, x)).reduceByKey(add, 3).collect()
    )
    want = {k: 200 * k + 1000 * (199 * 200 // 2) for k in range(1000)}
    check("rdd_reduce_by_key", got, want)


def rdd_group_by_key_strings(sc):
    # larger blocks: 20 groups of 500 strings of 40 bytes each
    got = (
        sc.parallelize(range(10000), 3)
        .map(lambda x: (x % 20, ("%06d" % x) * 6 + "-" * 4))
        .groupByKey(3)
        .mapValues(lambda vs: (len(list(vs)), sum(len(v) for v in vs)))
        .collect()
    )
    check("rdd_group_by_key_strings", dict(got), {k: (500, 500 * 40) for k in range(20)})


def dataframe_group_by(spark):
    # AQE (on by default) coalesces the 200 post-shuffle partitions and fetches contiguous
    # reduce ranges per map in one batch request (FetchShuffleBlocks batch=1).
    rows = (
        spark.range(0, 400000, numPartitions=4)
        .withColumn("k", F.col("id") % 5000)
        .groupBy("k")
        .agg(F.count("*").alias("n"), F.sum("id").alias("s"))
        .collect()
    )
    got = {r["k"]: (r["n"], r["s"]) for r in rows}
    want = {k: (80, 80 * k + 5000 * (79 * 80 // 2)) for k in range(5000)}
    check("dataframe_group_by", got, want)


def dataframe_join(spark):
    left = spark.range(0, 100000, numPartitions=3).withColumn("k", F.col("id") % 1000)
    right = spark.range(0, 1000, numPartitions=2).withColumnRenamed("id", "k").withColumn("w", F.col("k") * 2)
    joined = left.join(right.hint("shuffle_merge"), "k").agg(F.count("*"), F.sum("w")).collect()[0]
    # every left row matches once; sum of w = 2 * sum(id % 1000) = 2 * 100 * (999*1000/2)
    check("dataframe_join", (joined[0], joined[1]), (100000, 2 * 100 * (999 * 1000 // 2)))


def session(variant, port, extra=()):
    b = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .appName(f"croupier-interop-{variant}")
        .config("spark.shuffle.service.enabled", "true")
        .config("spark.shuffle.service.port", str(port))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.executor.memory", "512m")
        # a wrong answer from the service must fail the job, not be retried for 15 s
        .config("spark.shuffle.io.maxRetries", "1")
        .config("spark.shuffle.io.retryWait", "1s")
        .config("spark.stage.maxConsecutiveAttempts", "1")
        .config("spark.task.maxFailures", "1")
    )
    for item in extra:
        key, _, value = item.partition("=")
        b = b.config(key, value)
    if variant in ("fetch", "lean", "oldproto", "dynalloc"):
        b = b.config("spark.shuffle.readHostLocalDisk", "false")
    if variant == "hostlocal":
        # Spark's default everywhere but local-cluster mode: SparkContext does
        # setIfMissing(spark.shuffle.readHostLocalDisk, false) for local-cluster masters, so the
        # production default has to be set explicitly here.
        b = b.config("spark.shuffle.readHostLocalDisk", "true")
    if variant == "oldproto":
        b = b.config("spark.shuffle.useOldFetchProtocol", "true")
    if variant == "dynalloc":
        b = (
            b.config("spark.dynamicAllocation.enabled", "true")
            .config("spark.dynamicAllocation.minExecutors", "0")
            .config("spark.dynamicAllocation.initialExecutors", "2")
            .config("spark.dynamicAllocation.maxExecutors", "2")
            .config("spark.dynamicAllocation.executorIdleTimeout", "2s")
            .config("spark.dynamicAllocation.schedulerBacklogTimeout", "1s")
        )
    return b.getOrCreate()


def executor_ids(sc):
    return sorted(i for i in sc._jsc.sc().getExecutorIds().mkString(",").split(",") if i)


def wait_executors(sc, pred, what, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        ids = executor_ids(sc)
        if pred(ids):
            return ids
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; executors now: {ids}")
        time.sleep(0.2)


def dynalloc(sc):
    data = sc.parallelize(range(100000), 8).map(lambda x: (x % 100, 1)).reduceByKey(add, 4)
    check("dynalloc_first_count", data.count(), 100)
    first = wait_executors(sc, lambda ids: len(ids) == 2, "two executors", 30)
    say("INFO", "executors_before_idle", ",".join(first))
    wait_executors(sc, lambda ids: len(ids) == 0, "the idle executors to be removed", 60)
    say("CHECK", "dynalloc_idle_executors_removed", "ok")
    # The map stage is skipped: its output lives only in the old executors' dirs, which only the
    # shuffle service can serve now.
    check("dynalloc_collect_after_idle", dict(data.collect()), {k: 1000 for k in range(100)})
    later = executor_ids(sc)
    say("INFO", "executors_after", ",".join(later))
    if set(later) & set(first):
        raise AssertionError(f"old executors {first} still alive: {later}")
    say("CHECK", "dynalloc_new_executors", "ok")


def main():
    variant, port = sys.argv[1], int(sys.argv[2])
    spark = session(variant, port, sys.argv[3:])
    sc = spark.sparkContext
    sc.setLogLevel("WARN")
    say("INFO", "app_id", sc.applicationId)
    started = time.monotonic()
    try:
        if variant == "dynalloc":
            dynalloc(sc)
        elif variant == "lean":
            rdd_reduce_by_key(sc)
            rdd_group_by_key_strings(sc)
        else:
            rdd_reduce_by_key(sc)
            rdd_group_by_key_strings(sc)
            dataframe_group_by(spark)
            dataframe_join(spark)
        say("INFO", "jobs_seconds", "%.1f" % (time.monotonic() - started))
    finally:
        spark.stop()
    say("CHECK", "done", "ok")


if __name__ == "__main__":
    main()

"""A pyspark 3.5.7 driver in client mode on a real Mesos master (coarse-grained backend).

Usage: python mesos_client.py <mesos://host:port> <shuffle-service-port> <heartbeat-timeout-ms> <local-dir>

Runs two applications (two SparkContexts, so two Mesos frameworks) one after the other. The
agent launches their executors as command tasks (through croupier-executor when the agent's
launcher directory says so); every executor registers with the shuffle service on the agent,
and remote shuffle blocks are read through it (spark.shuffle.readHostLocalDisk=false).

  fetch     shuffle-heavy jobs of jobs.py on two executors (reduceByKey, groupByKey of larger
            strings, a sort-merge join of two DataFrames), results checked exactly; the
            protocol's other variants are covered against real Spark by spark_jobs.rs
  dynalloc  dynamic allocation with one executor at most: a map stage, the executor that wrote
            it is idle-killed (Mesos kills its task), the driver stays up without executors,
            then a new executor reads the old map output from the service (the map stage is
            skipped)

The caller (tests/tests/mesos_spark.rs) checks the files on disk. At each point where it has to
look, this script prints "HOLD <name> <app-id>" and waits for one line on stdin before it goes
on; end of input aborts. After each SparkContext stops it prints "STOPPED <app-id>".

Other output: "CHECK <name> ok" (an exact result), "INFO <key> <value>" (context). Expected values
are computed in closed form; any mismatch raises, so the process exits non-zero.
"""

import os
import sys
import time
from operator import add

import pyspark
from pyspark.sql import SparkSession

import jobs
from jobs import check, say


JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def hold(name, app_id):
    say("HOLD", name, app_id)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(f"stdin closed while holding at {name}")


def session(name, master, port, heartbeat_timeout_ms, local_dir, extra):
    spark_home = os.path.dirname(os.path.abspath(pyspark.__file__))
    b = (
        SparkSession.builder.master(master)
        .appName(f"croupier-mesos-{name}")
        # executors: Mesos command tasks running the venv's pyspark in place
        .config("spark.mesos.executor.home", spark_home)
        .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
        .config("spark.executorEnv.SPARK_LOCAL_IP", "127.0.0.1")
        .config("spark.executor.memory", "512m")
        .config("spark.executor.cores", "1")
        .config("spark.cores.max", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.shuffle.service.enabled", "true")
        .config("spark.shuffle.service.port", str(port))
        .config("spark.shuffle.readHostLocalDisk", "false")
        # executors' blockmgr-* dirs (with the service enabled they are not in the sandbox, so
        # that they outlive the executor)
        .config("spark.local.dir", local_dir)
        # fewer post-shuffle partitions than the default 200: the same protocol, less waiting
        .config("spark.sql.shuffle.partitions", "8")
        # the driver heartbeats to the service every interval; the service deletes the app's
        # files once no heartbeat came for the timeout
        .config("spark.storage.blockManagerHeartbeatTimeoutMs", str(heartbeat_timeout_ms))
        .config("spark.executor.heartbeatInterval", "2s")
        # how often the driver looks for executors that stopped heartbeating (Spark requires it
        # to be at most the timeout)
        .config("spark.network.timeoutInterval", "4s")
        # a wrong answer from the service must fail the job, not be retried
        .config("spark.shuffle.io.maxRetries", "1")
        .config("spark.shuffle.io.retryWait", "1s")
        .config("spark.stage.maxConsecutiveAttempts", "1")
        .config("spark.task.maxFailures", "1")
        # short-lived JVMs on a 2-core box: the client compiler only, one GC thread
        # (and their temp files in the test's dir: Spark leaves empty /tmp/spark-* dirs behind)
        .config("spark.driver.extraJavaOptions", f"{JVM_OPTS} -Djava.io.tmpdir={local_dir}")
        .config("spark.executor.extraJavaOptions", f"{JVM_OPTS} -Djava.io.tmpdir={local_dir}")
    )
    if os.environ.get("JAVA_HOME"):
        b = b.config("spark.executorEnv.JAVA_HOME", os.environ["JAVA_HOME"])
    for k, v in extra.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def fetch(spark):
    sc = spark.sparkContext
    jobs.rdd_reduce_by_key(sc)
    jobs.rdd_group_by_key_strings(sc)
    jobs.dataframe_join(spark)


def dynalloc(spark):
    sc = spark.sparkContext
    data = sc.parallelize(range(100000), 8).map(lambda x: (x % 100, 1)).reduceByKey(add, 4)
    check("dynalloc_first_count", data.count(), 100)
    first = jobs.wait_executors(sc, lambda ids: len(ids) >= 1, "executors", 60)
    say("INFO", "executors_before_idle", ",".join(first))
    jobs.wait_executors(sc, lambda ids: len(ids) == 0, "the idle executors to be removed", 90)
    say("CHECK", "dynalloc_idle_executors_removed", "ok")
    # no executor is left; the caller checks that the map output stays on disk
    hold("dynalloc_idle", sc.applicationId)
    check("dynalloc_collect_after_idle", dict(data.collect()), {k: 1000 for k in range(100)})
    later = jobs.executor_ids(sc)
    say("INFO", "executors_after", ",".join(later))
    if set(later) & set(first):
        raise AssertionError(f"old executors {first} still alive: {later}")
    say("CHECK", "dynalloc_new_executors", "ok")


DYNALLOC = {
    "spark.dynamicAllocation.enabled": "true",
    "spark.dynamicAllocation.minExecutors": "0",
    "spark.dynamicAllocation.initialExecutors": "1",
    "spark.dynamicAllocation.maxExecutors": "1",
    "spark.dynamicAllocation.executorIdleTimeout": "2s",
    "spark.dynamicAllocation.schedulerBacklogTimeout": "1s",
}


def main():
    master, port, timeout_ms, local_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    for name, run, extra in (("fetch", fetch, {}), ("dynalloc", dynalloc, DYNALLOC)):
        started = time.monotonic()
        spark = session(name, master, port, timeout_ms, local_dir, extra)
        app_id = spark.sparkContext.applicationId
        say("INFO", f"app_{name}", app_id)
        try:
            run(spark)
            say("INFO", f"{name}_seconds", "%.1f" % (time.monotonic() - started))
            hold(f"{name}_done", app_id)
        finally:
            spark.stop()
        say("STOPPED", app_id)
    say("CHECK", "done", "ok")


if __name__ == "__main__":
    main()

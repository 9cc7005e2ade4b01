"""The SparkSession the shuffle-service jobs share: local-cluster[2,1,1024] (two executors, one
core each, on loopback), the external shuffle service on <port>, and
spark.shuffle.readHostLocalDisk=false so that every block of the other executor is fetched
through the service. With an event-log directory, Spark's event log is written there (the jobs
read stage and task figures from it). Callers add their own settings to the builder returned.
"""

from pyspark.sql import SparkSession


def builder(app_name, port, events=None):
    b = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .appName(app_name)
        .config("spark.shuffle.service.enabled", "true")
        .config("spark.shuffle.service.port", str(port))
        .config("spark.shuffle.readHostLocalDisk", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.executor.memory", "512m")
    )
    if events is not None:
        b = b.config("spark.eventLog.enabled", "true").config("spark.eventLog.dir", "file://" + events)
    return b

"""Spark's own Mesos driver client against a Mesos-flavour external shuffle service.

Usage: python mesos_driver.py <shuffle-service-port> <work-dir> [<secret> [crypto|crypto2]]

With a secret, every client authenticates (spark.authenticate): SASL DIGEST-MD5, or Spark's auth
engine with AES-CTR when `crypto` (authEngineVersion 1) or `crypto2` (version 2) follows; the key
holder is Spark's ShuffleSecretManager with the secret registered for each app id.

Uses the classes a Spark 3.5.7 driver on Mesos uses (spark-mesos / spark-network-shuffle jars from
pyspark), through a py4j gateway JVM; no SparkContext is needed:

  app A  MesosExternalBlockStoreClient.registerDriverWithShuffleService(timeout 4 s, heartbeat 1 s),
         one executor registered (a separate ExternalBlockStoreClient, as Spark's executors do) with
         a local dir holding shuffle files; then A's driver client is closed, so its heartbeats stop.
  app B  the same with timeout 10 s and a heartbeat every 4 s, kept alive to the end. The test starts
         the service with spark.shuffle.io.connectionTimeout=2s: a service that closes idle
         connections would cut B's heartbeat connection (Spark never re-opens it) and then delete
         B's files although B is alive (spec section 4.2).

The service runs with spark.shuffle.cleaner.interval=1s. Expected: A's local dir disappears a few
seconds after A stops heartbeating; B's stays for more than twice its timeout.

Prints "CHECK <name> ok" lines and "INFO <key> <value>" lines; any failed expectation raises.
"""

import os
import sys
import time
import uuid

from pyspark.java_gateway import launch_gateway

A_TIMEOUT_MS, A_INTERVAL_MS = 4000, 1000
B_TIMEOUT_MS, B_INTERVAL_MS = 10000, 4000
SUB_DIRS = 64
MANAGER = "org.apache.spark.shuffle.sort.SortShuffleManager"
T0 = time.monotonic()


def say(kind, *words):
    print(kind, *words, flush=True)


def java_hash(s):
    h = 0
    for unit in range(0, len(s.encode("utf-16-be")), 2):
        pair = s.encode("utf-16-be")[unit : unit + 2]
        h = (31 * h + int.from_bytes(pair, "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def block_path(local_dir, name):
    h = java_hash(name)
    h = 0 if h == -(1 << 31) else abs(h)
    return os.path.join(local_dir, "%02x" % (h % SUB_DIRS), name)


def write_map_output(local_dir, shuffle, map_id, partitions):
    """shuffle_<s>_<m>_0.{data,index} as an executor's IndexShuffleBlockResolver lays them out."""
    files = []
    for suffix, content in (
        ("data", b"".join(partitions)),
        ("index", b"".join(o.to_bytes(8, "big") for o in offsets(partitions))),
    ):
        p = block_path(local_dir, f"shuffle_{shuffle}_{map_id}_0.{suffix}")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)
        files.append(p)
    return files


def offsets(partitions):
    out, acc = [0], 0
    for p in partitions:
        acc += len(p)
        out.append(acc)
    return out


class App:
    def __init__(self, gw, conf, port, name, work, timeout_ms, interval_ms, secret=None):
        jvm = gw.jvm
        self.app_id = f"{name}-{uuid.uuid4().hex[:12]}"
        keys = None
        if secret is not None:
            keys = jvm.org.apache.spark.network.sasl.ShuffleSecretManager()
            keys.registerApp(self.app_id, secret)
        auth = keys is not None
        self.local_dir = os.path.join(work, name, f"blockmgr-{uuid.uuid4()}")
        os.makedirs(self.local_dir)
        self.files = write_map_output(self.local_dir, 0, 0, [b"0123456789", b"", b"abcdefghijklmnopqrst"])
        self.files += write_map_output(self.local_dir, 1, 7, [b"x" * 1000])
        say("INFO", f"app_{name}", self.app_id)
        # the driver side: RegisterDriver, then heartbeats on the same pooled connection
        self.driver = jvm.org.apache.spark.network.shuffle.mesos.MesosExternalBlockStoreClient(conf, keys, auth, 5000)
        self.driver.init(self.app_id)
        self.driver.registerDriverWithShuffleService("127.0.0.1", port, timeout_ms, interval_ms)
        # the executor side: its own client, connection closed after the reply
        dirs = gw.new_array(jvm.java.lang.String, 1)
        dirs[0] = self.local_dir
        info = jvm.org.apache.spark.network.shuffle.protocol.ExecutorShuffleInfo(dirs, SUB_DIRS, MANAGER)
        executor = jvm.org.apache.spark.network.shuffle.ExternalBlockStoreClient(conf, keys, auth, 5000)
        executor.init(self.app_id)
        executor.registerWithShuffleServer("127.0.0.1", port, "0", info)
        executor.close()

    def present(self):
        return os.path.isdir(self.local_dir) and all(os.path.isfile(f) for f in self.files)

    def gone(self):
        return not os.path.exists(self.local_dir) and not any(os.path.exists(f) for f in self.files)


def expect(name, ok, detail=""):
    if not ok:
        raise AssertionError(f"{name} failed {detail}")
    say("CHECK", name, "ok")


def main():
    port, work = int(sys.argv[1]), sys.argv[2]
    secret = sys.argv[3] if len(sys.argv) > 3 else None
    mode = sys.argv[4] if len(sys.argv) > 4 else ""
    gw = launch_gateway()
    jvm = gw.jvm
    settings = jvm.java.util.HashMap()
    if mode in ("crypto", "crypto2"):
        settings.put("spark.network.crypto.enabled", "true")
        settings.put("spark.network.crypto.authEngineVersion", "2" if mode == "crypto2" else "1")
    conf = jvm.org.apache.spark.network.util.TransportConf(
        "shuffle", jvm.org.apache.spark.network.util.MapConfigProvider(settings)
    )
    say("INFO", "gateway_seconds", "%.1f" % (time.monotonic() - T0))

    a = App(gw, conf, port, "A", work, A_TIMEOUT_MS, A_INTERVAL_MS, secret)
    b = App(gw, conf, port, "B", work, B_TIMEOUT_MS, B_INTERVAL_MS, secret)
    b_registered = time.monotonic()

    # A heartbeats every second with a 4 s timeout: after 6 s it must still be there.
    time.sleep(6)
    expect("a_kept_while_heartbeating", a.present(), f"{a.local_dir} vanished while A heartbeated")
    expect("b_kept_while_heartbeating", b.present(), f"{b.local_dir} vanished")

    a.driver.close()  # stops A's heartbeater, as MesosCoarseGrainedSchedulerBackend.stop does
    stopped = time.monotonic()
    deadline = stopped + 20
    while not a.gone():
        if time.monotonic() > deadline:
            raise AssertionError(f"A's files still present 20 s after its heartbeats stopped: {a.local_dir}")
        time.sleep(0.1)
    removed_after = time.monotonic() - stopped
    say("INFO", "a_removed_after_seconds", "%.1f" % removed_after)
    # at least (timeout - one heartbeat interval) of silence must pass first
    expect("a_removed_after_timeout", removed_after >= (A_TIMEOUT_MS - A_INTERVAL_MS) / 1000 - 0.2, f"after {removed_after:.1f}s")

    # B keeps heartbeating every 4 s over an otherwise idle connection; hold it past 2x its timeout.
    while time.monotonic() - b_registered < 2.2 * B_TIMEOUT_MS / 1000:
        if not b.present():
            raise AssertionError(
                f"B's files were deleted {time.monotonic() - b_registered:.1f}s after B registered although "
                "B kept heartbeating (did the service close its idle heartbeat connection?)"
            )
        time.sleep(0.25)
    expect("b_kept_past_twice_its_timeout", b.present())
    b.driver.close()
    say("CHECK", "done", "ok")


if __name__ == "__main__":
    main()

"""Spark 3.5.7's own network clients (pyspark jars, through a py4j gateway JVM) against a shuffle
service running with spark.authenticate=true and the auth engine.

Usage: python auth_negative.py <shuffle-service-port> <work-dir> <secret>

  good      app A's ExternalBlockStoreClient (ShuffleSecretManager holding the right secret)
            registers an executor whose local dir holds a map output; a TransportClient
            authenticated as A opens A's blocks (StreamHandle).
  wrong     the same client with a wrong secret: registration fails.
  none      a client without authentication: registration fails.
  crossapp  a TransportClient authenticated as app B asks for A's blocks (OpenBlocks for A):
            refused with Spark's "not authorized for application" answer.
  afterall  A is still served after all of that.

Prints "CHECK <name> ok" and "INFO <key> <value>" lines (INFO error_<case> is the first line of
the error the Spark client reported); any failed expectation raises.
"""

import os
import sys
import uuid

from pyspark.java_gateway import launch_gateway

SUB_DIRS = 64
MANAGER = "org.apache.spark.shuffle.sort.SortShuffleManager"


def say(kind, *words):
    print(kind, *words, flush=True)


def java_hash(s):
    h = 0
    for unit in range(0, len(s.encode("utf-16-be")), 2):
        h = (31 * h + int.from_bytes(s.encode("utf-16-be")[unit : unit + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def write_map_output(local_dir, partitions):
    for suffix, content in (
        ("data", b"".join(partitions)),
        ("index", b"".join(o.to_bytes(8, "big") for o in [0, len(partitions[0]), sum(map(len, partitions))])),
    ):
        name = f"shuffle_0_0_0.{suffix}"
        h = java_hash(name)
        h = 0 if h == -(1 << 31) else abs(h)
        p = os.path.join(local_dir, "%02x" % (h % SUB_DIRS), name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)


def first_line(e):
    text = str(getattr(e, "java_exception", e))
    return text.strip().splitlines()[0] if text.strip() else repr(e)


def main():
    port, work, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    gw = launch_gateway()
    jvm = gw.jvm
    net = jvm.org.apache.spark.network
    settings = jvm.java.util.HashMap()
    settings.put("spark.network.crypto.enabled", "true")
    settings.put("spark.shuffle.io.maxRetries", "0")
    conf = net.util.TransportConf("shuffle", net.util.MapConfigProvider(settings))
    app_a = f"app-A-{uuid.uuid4().hex[:8]}"
    app_b = f"app-B-{uuid.uuid4().hex[:8]}"
    say("INFO", "app_A", app_a)
    say("INFO", "app_B", app_b)

    def keys(app, s):
        k = net.sasl.ShuffleSecretManager()
        k.registerApp(app, s)
        return k

    local_dir = os.path.join(work, f"blockmgr-{uuid.uuid4()}")
    os.makedirs(local_dir)
    write_map_output(local_dir, [b"0123456789", b"abcdefghij"])
    dirs = gw.new_array(jvm.java.lang.String, 1)
    dirs[0] = local_dir
    info = net.shuffle.protocol.ExecutorShuffleInfo(dirs, SUB_DIRS, MANAGER)

    def register(app, holder, auth):
        c = net.shuffle.ExternalBlockStoreClient(conf, holder, auth, 5000)
        c.init(app)
        try:
            c.registerWithShuffleServer("127.0.0.1", port, "0", info)
        finally:
            c.close()

    def raw_client(app, holder):
        ctx = net.TransportContext(conf, net.server.NoOpRpcHandler())
        boots = jvm.java.util.ArrayList()
        boots.add(net.crypto.AuthClientBootstrap(conf, app, holder))
        return ctx.createClientFactory(boots).createClient("127.0.0.1", port)

    def open_blocks(client, app):
        ids = gw.new_array(jvm.java.lang.String, 1)
        ids[0] = "shuffle_0_0_0"
        msg = net.shuffle.protocol.OpenBlocks(app, "0", ids)
        reply = client.sendRpcSync(msg.toByteBuffer(), 10000)
        # StreamHandle: type 3, streamId (8), numChunks (4)
        if reply.remaining() != 13 or reply.get(0) != 3:
            raise AssertionError(f"not a StreamHandle: {reply.remaining()} bytes")
        return reply.getInt(9)

    register(app_a, keys(app_a, secret), True)
    a = raw_client(app_a, keys(app_a, secret))
    chunks = open_blocks(a, app_a)
    if chunks != 1:
        raise AssertionError(f"StreamHandle for A: {chunks} chunks")
    say("CHECK", "good", "ok")

    for case, holder, auth in (
        ("wrong", keys(app_a, "not-" + secret), True),
        ("none", None, False),
    ):
        try:
            register(app_a, holder, auth)
        except Exception as e:  # py4j wraps the Java exception
            say("INFO", f"error_{case}", first_line(e))
            say("CHECK", case, "ok")
        else:
            raise AssertionError(f"{case}: registration succeeded")

    b = raw_client(app_b, keys(app_b, secret))
    try:
        open_blocks(b, app_a)
    except Exception as e:
        text = first_line(e)
        say("INFO", "error_crossapp", text)
        if f"Client for {app_b} not authorized for application {app_a}" not in str(e):
            raise AssertionError(f"crossapp: unexpected error {text}")
        say("CHECK", "crossapp", "ok")
    else:
        raise AssertionError("crossapp: B opened A's blocks")

    chunks = open_blocks(a, app_a)
    if chunks != 1:
        raise AssertionError(f"StreamHandle for A afterwards: {chunks} chunks")
    a.close()
    b.close()
    say("CHECK", "afterall", "ok")


if __name__ == "__main__":
    main()

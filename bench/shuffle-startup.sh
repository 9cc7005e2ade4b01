#!/usr/bin/env bash
# Start-up time and idle memory: croupier-shuffle-service (release build) vs Spark 3.5.7's JVM
# MesosExternalShuffleService from the pyspark venv, several runs each, alternating.
#
#   start-up = time from just before fork/exec until a TCP connect to the service port succeeds
#              (polled every 1 ms on 127.0.0.1)
#   idle RSS = VmRSS from /proc/<pid>/status after IDLE seconds of doing nothing
#
# Spark's service is measured two ways: through bin/spark-class (how start-mesos-shuffle-service.sh
# and Marathon start it: bash + the launcher JVM, then exec of the service JVM) and as the bare
# service JVM (the java command line spark-class ends up exec'ing), which is the JVM's lower bound.
#
# Usage: bench/shuffle-startup.sh [RUNS=5] [IDLE_SECONDS=5]
# Needs: CROUPIER_VENV (or the default venv of scripts/setup-venv.sh), java, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS="${1:-5}"
IDLE="${2:-5}"
bench_spark_home
cargo build --release -p croupier-shuffle-service >&2
OURS="$PWD/target/release/croupier-shuffle-service"
export SPARK_HOME RUNS IDLE OURS

exec python3 - <<'PY'
import os, signal, socket, statistics, subprocess, sys, time

RUNS, IDLE, OURS, SPARK_HOME = int(os.environ["RUNS"]), float(os.environ["IDLE"]), os.environ["OURS"], os.environ["SPARK_HOME"]
CLASS = "org.apache.spark.deploy.mesos.MesosExternalShuffleService"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def ours(port):
    return [OURS, "--host", "127.0.0.1", "--port", str(port)], {}

def spark_class(port):
    return [f"{SPARK_HOME}/bin/spark-class", CLASS], {"SPARK_SHUFFLE_OPTS": f"-Dspark.shuffle.service.port={port}"}

def spark_jvm(port):
    # the command spark-class execs (printed by its launcher), with the same -Xmx1g default
    java = os.path.join(os.environ.get("JAVA_HOME", "/usr"), "bin/java")
    cp = f"{SPARK_HOME}/conf:{SPARK_HOME}/jars/*"
    return [java, "-cp", cp, f"-Dspark.shuffle.service.port={port}", "-Xmx1g", CLASS], {}

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")

def once(make):
    port = free_port()
    argv, extra = make(port)
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", **extra)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {p.returncode} before accepting")
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
                up = time.monotonic() - t0
                break
            except OSError:
                time.sleep(0.001)
            finally:
                s.close()
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"{argv[0]} did not accept within 60 s")
        time.sleep(IDLE)
        # spark-class execs the JVM, so the pid is the service's in every case
        return up, rss_kib(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()

subjects = [("croupier-shuffle-service", ours), ("Spark Mesos ESS via spark-class", spark_class), ("Spark Mesos ESS, bare JVM", spark_jvm)]
samples = {name: [] for name, _ in subjects}
for r in range(RUNS):
    for name, make in subjects:
        up, rss = once(make)
        samples[name].append((up, rss))
        print(f"run {r+1}/{RUNS} {name}: start-up {up*1000:.0f} ms, idle RSS {rss/1024:.1f} MiB", file=sys.stderr, flush=True)

def ratio(x):
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"

med = {n: (statistics.median(u for u, _ in s), statistics.median(r for _, r in s)) for n, s in samples.items()}
base_up, base_rss = med["croupier-shuffle-service"]
print(f"{RUNS} runs each, alternating; idle {IDLE:g} s before reading VmRSS; load average before: {open('/proc/loadavg').read().split()[0]}; {os.cpu_count()} CPUs")
print()
print("| service | start-up to accepting (median) | min–max | idle RSS (median) | min–max | start-up vs ours | RSS vs ours |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, _ in subjects:
    up, rss = med[name]
    ups = [u for u, _ in samples[name]]; rsss = [r for _, r in samples[name]]
    print(f"| {name} | {up*1000:.0f} ms | {min(ups)*1000:.0f}–{max(ups)*1000:.0f} ms | {rss/1024:.1f} MiB | {min(rsss)/1024:.1f}–{max(rsss)/1024:.1f} MiB | {ratio(up/base_up)} | {ratio(rss/base_rss)} |")
PY

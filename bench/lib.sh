# Shared by the shuffle benchmarks (sourced after `cd` to the repository root): where Spark's
# jars are, and waiting for a server on a loopback port.

# VENV and SPARK_HOME (the pyspark package of the venv, with Spark 3.5.7's jars); stops the
# script with how to get them when they are missing. `bench_spark_home java` also needs java.
bench_spark_home() {
  VENV="${CROUPIER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/croupier/venv}"
  SPARK_HOME="$(ls -d "$VENV"/lib/python3*/site-packages/pyspark 2>/dev/null | head -n 1)"
  if [ ! -d "$SPARK_HOME/jars" ]; then
    echo "no pyspark jars under $VENV: run scripts/setup-venv.sh (or scripts/test.sh) first" >&2
    exit 1
  fi
  if [ "${1:-}" = java ]; then
    command -v java >/dev/null || { echo "java not found: Spark's shuffle service needs Java 17" >&2; exit 1; }
  fi
  JAVA_CLASS=org.apache.spark.deploy.mesos.MesosExternalShuffleService
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT [PID]: until something accepts on 127.0.0.1:PORT (60 s at most); with PID,
# fails at once when that process has died.
wait_port() {
  for _ in $(seq 1200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
      echo "server pid $2 died before listening on $1" >&2; return 1
    fi
    sleep 0.05
  done
  echo "nothing listens on $1 after 60 s" >&2; return 1
}

#!/usr/bin/env bash
# Creates (or reuses) the Python venv holding the real interop peers:
#   pyspark 3.5.7 (Spark jars incl. spark-network-shuffle, spark-mesos, the Mesos
#   shaded protobuf jar), pymesos 0.3.15 (v1 JSON executor) and moto (S3 server).
# The venv lives outside the clone so CI and developers reuse the 317 MB download.
# Prints the venv path on stdout as its last line.
set -euo pipefail
# shellcheck source=lib/phase.sh
. "$(dirname "$0")/lib/phase.sh"
VENV="${CROUPIER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/croupier/venv}"
STAMP="$VENV/.croupier-deps-v2"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
  echo "$VENV"
  exit 0
fi
echo "== no venv at $VENV (or an older one): making it, about 320 MB to download" >&2
mkdir -p "$(dirname "$VENV")"
phase "python3 -m venv $VENV" python3 -m venv "$VENV" >&2
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
# pymesos needs http-parser 0.9.0, whose pre-generated C extension does not compile on
# Python >= 3.11 (it includes longintrepr.h). Its own http.py falls back to the bundled
# pure-Python parser, so install it with the extension switched off.
HP_DIR="$(mktemp -d)"
trap 'rm -rf "$HP_DIR"' EXIT
http_parser() { # steps chained: errexit does not apply inside a function run by phase
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$HP_DIR" "http-parser==0.9.0" &&
    tar -xzf "$HP_DIR"/http-parser-0.9.0.tar.gz -C "$HP_DIR" &&
    sed -i 's/run_setup(not IS_PYPY)/run_setup(False)/' "$HP_DIR/http-parser-0.9.0/setup.py" &&
    "${PIP[@]}" "$HP_DIR/http-parser-0.9.0"
}
phase "pip install http-parser 0.9.0 (pure Python)" http_parser >&2
phase "pip install pyspark 3.5.7, pymesos 0.3.15, moto, prometheus-client" \
  "${PIP[@]}" "pyspark==3.5.7" "py4j==0.10.9.7" "pymesos==0.3.15" "moto[server,s3]" "prometheus-client" >&2
touch "$STAMP"
echo "$VENV"

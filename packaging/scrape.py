"""Checks the admin endpoint: /healthz answers 200 and /metrics parses as Prometheus text.
Usage: scrape.py BASE_URL  (exit 0 on success)."""
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families

base = sys.argv[1]
with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
    assert r.status == 200, r.status
with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
    text = r.read().decode()
names = {f.name for f in text_string_to_metric_families(text)}
missing = [n for n in ("croupier_shuffle_registered_executors", "croupier_shuffle_blocks_served",
                       "croupier_shuffle_bytes_served", "croupier_shuffle_fetch_latency_seconds")
           if not any(x.startswith(n) for x in names)]
if missing:
    sys.exit(f"metrics missing: {missing}; have {sorted(names)}")
print(f"{len(names)} metric families")

"""Validates packaging/marathon/croupier-shuffle-service.json.

Two layers:
1. Marathon's AppDefinition constraints for every field the file uses (types, ranges, enums,
   the id and port-name patterns, no unknown top-level keys), written from the /v2/apps
   AppDefinition type of Marathon's REST API docs (the RAML/JSON schema itself is not
   installable here).
2. What this app needs to run as one shuffle service per agent: a hostname UNIQUE constraint,
   the fixed shuffle port 7337 with requirePorts, a MESOS_HTTP check of /healthz on a port that
   exists, and an upgrade strategy that cannot deadlock against UNIQUE and fixed ports.

Usage: validate_marathon.py FILE  (exit 0 when valid; every problem is printed).
"""
import json
import re
import sys

PATH_ID = re.compile(
    r"^(/?((\.\.)|(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9]))?($|/))+$"
)
LEGACY_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9]+)*$")
APP_KEYS = {
    "id", "acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd",
    "constraints", "container", "cpus", "dependencies", "disk", "env", "executor", "fetch",
    "healthChecks", "instances", "labels", "maxLaunchDelaySeconds", "mem", "gpus", "ipAddress",
    "ports", "portDefinitions", "readinessChecks", "residency", "requirePorts", "secrets",
    "storeUrls", "taskKillGracePeriodSeconds", "upgradeStrategy", "uris", "user", "version",
    "versionInfo", "killSelection", "unreachableStrategy", "networks", "role",
}
HEALTH_KEYS = {
    "command", "gracePeriodSeconds", "ignoreHttp1xx", "intervalSeconds",
    "maxConsecutiveFailures", "path", "port", "portIndex", "protocol", "ipProtocol",
    "timeoutSeconds", "delaySeconds",
}
PROTOCOLS = {"HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_TCP", "MESOS_HTTP", "MESOS_HTTPS"}
OPERATORS = {"UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS"}

problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_schema(app):
    for k in app:
        need(k in APP_KEYS, f"unknown AppDefinition field {k!r}")
    need(isinstance(app.get("id"), str) and PATH_ID.match(app["id"]) is not None,
         f"id {app.get('id')!r} is not a Marathon path id")
    need(("cmd" in app) != ("args" in app), "exactly one of cmd and args must be given")
    if "cmd" in app:
        need(isinstance(app["cmd"], str) and len(app["cmd"]) >= 1, "cmd must be a non-empty string")
    for k, lo in (("cpus", 0.001), ("mem", 0), ("disk", 0)):
        if k in app:
            need(is_num(app[k]) and app[k] >= lo, f"{k} must be a number >= {lo}")
    if "instances" in app:
        need(is_int(app["instances"]) and app["instances"] >= 0, "instances must be an integer >= 0")
    cons = app.get("constraints", [])
    need(isinstance(cons, list), "constraints must be an array")
    for c in cons if isinstance(cons, list) else []:
        ok = isinstance(c, list) and 2 <= len(c) <= 3 and all(isinstance(x, str) for x in c)
        need(ok, f"constraint {c!r} must be [field, operator] or [field, operator, value]")
        if ok:
            need(c[1] in OPERATORS, f"constraint operator {c[1]!r} is not one of {sorted(OPERATORS)}")
    pds = app.get("portDefinitions", [])
    need(isinstance(pds, list), "portDefinitions must be an array")
    names = []
    for pd in pds if isinstance(pds, list) else []:
        for k in pd:
            need(k in {"port", "labels", "name", "protocol"}, f"unknown portDefinition field {k!r}")
        need(is_int(pd.get("port", 0)) and 0 <= pd.get("port", 0) <= 65535, f"port {pd.get('port')!r} out of range")
        need(pd.get("protocol", "tcp") in {"tcp", "udp", "udp,tcp"}, f"protocol {pd.get('protocol')!r}")
        if "name" in pd:
            need(LEGACY_NAME.match(pd["name"]) is not None, f"port name {pd['name']!r} is not a valid name")
            names.append(pd["name"])
    need(len(names) == len(set(names)), "port names must be unique")
    if "requirePorts" in app:
        need(isinstance(app["requirePorts"], bool), "requirePorts must be a boolean")
    for hc in app.get("healthChecks", []):
        for k in hc:
            need(k in HEALTH_KEYS, f"unknown health check field {k!r}")
        need(hc.get("protocol", "HTTP") in PROTOCOLS, f"health check protocol {hc.get('protocol')!r}")
        for k in ("gracePeriodSeconds", "intervalSeconds", "maxConsecutiveFailures", "delaySeconds", "timeoutSeconds"):
            if k in hc:
                need(is_int(hc[k]) and hc[k] >= 0, f"health check {k} must be an integer >= 0")
        if "portIndex" in hc:
            need(is_int(hc["portIndex"]) and 0 <= hc["portIndex"] < len(pds),
                 f"health check portIndex {hc['portIndex']!r} names no port definition")
        if hc.get("protocol") in {"HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS"} and "path" in hc:
            need(isinstance(hc["path"], str) and hc["path"].startswith("/"), "health check path must start with /")
    us = app.get("upgradeStrategy", {})
    for k in ("minimumHealthCapacity", "maximumOverCapacity"):
        if k in us:
            need(is_num(us[k]) and 0.0 <= us[k] <= 1.0, f"upgradeStrategy.{k} must be in [0, 1]")
    ur = app.get("unreachableStrategy")
    if isinstance(ur, dict):
        i, e = ur.get("inactiveAfterSeconds", 0), ur.get("expungeAfterSeconds", 0)
        need(is_int(i) and i >= 1 and is_int(e) and e >= 1, "unreachableStrategy times must be integers >= 1")
        need(is_int(i) and is_int(e) and e >= i, "expungeAfterSeconds must be >= inactiveAfterSeconds")
    if "killSelection" in app:
        need(app["killSelection"] in {"YOUNGEST_FIRST", "OLDEST_FIRST"}, "killSelection")
    for m in ("labels", "env"):
        if m in app:
            need(isinstance(app[m], dict) and all(isinstance(v, str) for v in app[m].values()),
                 f"{m} must map names to strings")


def check_purpose(app):
    need(["hostname", "UNIQUE"] in app.get("constraints", []),
         'one instance per agent needs the constraint ["hostname", "UNIQUE"]')
    pds = app.get("portDefinitions", [])
    need(bool(pds) and pds[0].get("port") == 7337, "the first port must be the shuffle port 7337")
    need(app.get("requirePorts") is True, "requirePorts must be true: Spark executors expect the fixed port")
    cmd = app.get("cmd", "")
    need("$PORT0" in cmd, "cmd must bind the shuffle port through $PORT0")
    hcs = [h for h in app.get("healthChecks", []) if h.get("protocol") == "MESOS_HTTP"]
    need(len(hcs) == 1, "one MESOS_HTTP health check expected")
    for h in hcs:
        need(h.get("path") == "/healthz", "the health check must ask /healthz")
        idx = h.get("portIndex", 0)
        need(f"$PORT{idx}" in cmd and "croupier.admin.address" in cmd,
             f"the admin endpoint must listen on $PORT{idx}, the health-checked port")
    us = app.get("upgradeStrategy", {})
    # With UNIQUE and fixed ports a new instance can only start on an agent whose old instance
    # has stopped: over-capacity must be 0 and some instances must be allowed down.
    need(us.get("maximumOverCapacity", 1.0) == 0, "maximumOverCapacity must be 0 with UNIQUE and fixed ports")
    need(us.get("minimumHealthCapacity", 1.0) < 1.0, "minimumHealthCapacity must be < 1 or an upgrade deadlocks")


def main():
    path = sys.argv[1]
    with open(path) as f:
        app = json.load(f)
    check_schema(app)
    check_purpose(app)
    for p in problems:
        print(f"{path}: {p}")
    if problems:
        sys.exit(1)
    print(f"{path}: valid")


if __name__ == "__main__":
    main()

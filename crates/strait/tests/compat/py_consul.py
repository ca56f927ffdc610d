"""Drives strait's agent with py-consul (PyPI, 1.x) as its users do. Run by tests/compat.rs.

Environment: AGENT_HOST (the agent's API on port 8500), APP_PORT (an HTTP app on AGENT_HOST
answering 200). Exits non-zero with a message on the first thing that is not as Consul's.
"""

import os
import sys
import threading
import time

import consul
from consul import Check

host = os.environ["AGENT_HOST"]
app = int(os.environ["APP_PORT"])
c = consul.Consul(host=host, port=8500)


def eventually(what, f, timeout=30.0):
    """Polls f until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit(f"py-consul: timed out waiting for {what}; last: {v!r}")
        time.sleep(0.05)


def passing():
    _, nodes = c.health.service("pyweb", passing=True)
    return nodes


# Register: lowercase keys, an HTTP check and a TTL check, a sidecar with a cross-DC upstream.
upstream = {"destination_name": "counting", "datacenter": "dc2", "local_bind_port": 5001}
ok = c.agent.service.register(
    "pyweb",
    service_id="pyweb",
    address=host,
    port=app,
    tags=["v1", "python"],
    meta={"Lang": "python"},
    check=Check.http(f"http://{host}:{app}/health", "1s"),
    extra_checks=[Check.ttl("30s")],
    connect={"sidecar_service": {"proxy": {"upstreams": [upstream]}}},
)
assert ok is True, ok

services = c.agent.services()
assert services["pyweb"]["Tags"] == ["v1", "python"], services["pyweb"]
assert services["pyweb"]["Meta"] == {"Lang": "python"}, services["pyweb"]
proxy = services["pyweb-sidecar-proxy"]["Proxy"]
assert proxy["Upstreams"][0]["DestinationName"] == "counting", proxy
assert proxy["Upstreams"][0]["Datacenter"] == "dc2", proxy

# The TTL check starts critical: not passing until the app says so.
checks = c.agent.checks()
assert checks["service:pyweb:2"]["Status"] == "critical", checks
eventually("pyweb in the catalog", lambda: c.health.service("pyweb")[1])
assert passing() == [], passing()

# A blocking query (index + wait) returns when the TTL update changes the service's health.
index, _ = c.health.service("pyweb")
watched = {}


def watch():
    started = time.monotonic()
    watched["index"], watched["nodes"] = c.health.service("pyweb", index=index, wait="20s")
    watched["took"] = time.monotonic() - started


watcher = threading.Thread(target=watch)
watcher.start()
assert c.agent.check.ttl_pass("service:pyweb:2", "all good") is True
watcher.join()
assert int(watched["index"]) > int(index), watched
assert watched["took"] < 15, f"the blocking query did not fire on the change: {watched}"
nodes = eventually("pyweb passing after ttl_pass", passing)
statuses = {ch["CheckID"]: ch["Status"] for ch in nodes[0]["Checks"]}
assert statuses["service:pyweb:2"] == "passing", statuses

assert c.agent.check.ttl_fail("service:pyweb:2", "broken") is True
eventually("pyweb not passing after ttl_fail", lambda: passing() == [])
assert c.agent.checks()["service:pyweb:2"]["Output"] == "broken"

# A check registered on its own, of the service and of the node.
assert c.agent.check.register(
    "pyweb extra", Check.ttl("30s"), check_id="pyweb-extra", notes="by hand", service_id="pyweb"
)
assert c.agent.check.register("node disk", Check.ttl("30s"))
checks = c.agent.checks()
assert checks["pyweb-extra"]["ServiceID"] == "pyweb", checks
assert checks["pyweb-extra"]["Notes"] == "by hand", checks
assert checks["node disk"]["ServiceID"] == "", checks
assert c.agent.check.ttl_pass("node disk") is True
assert c.agent.checks()["node disk"]["Status"] == "passing"
assert c.agent.check.deregister("node disk") is True
assert "node disk" not in c.agent.checks()

# What strait does not implement is an error with a reason, not "key not found".
try:
    c.kv.get("config/x")
    sys.exit("py-consul: kv.get answered as if KV existed")
except consul.ConsulException as e:
    assert "501" in str(e) and "not supported by strait" in str(e), e

assert c.agent.service.deregister("pyweb") is True
services = c.agent.services()
assert "pyweb" not in services and "pyweb-sidecar-proxy" not in services, services
checks = c.agent.checks()
assert "service:pyweb:2" not in checks and "pyweb-extra" not in checks, checks
eventually("pyweb gone from the catalog", lambda: c.health.service("pyweb")[1] == [])
print("py-consul: all steps passed")

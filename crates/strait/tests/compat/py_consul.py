"""Drives strait's agent with py-consul (PyPI, 1.x) as its users do. Run by tests/compat.rs.

Environment: AGENT_HOST (the agent's API on port 8500), APP_PORT (an HTTP app on AGENT_HOST
answering 200). Exits non-zero with a message on the first thing that is not as Consul's.
"""

import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import consul
import consul.exceptions
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


def raw(method, path, body=None):
    """A request py-consul has no method for: (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{host}:8500{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text or b"null")
        except ValueError:
            return e.code, text.decode()  # Consul's errors are plain text too


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

# The agent and its DC's members in Consul's shapes.
node = os.environ["NODE_NAME"]
me = c.agent.self()
assert me["Config"]["NodeName"] == node and me["Config"]["Datacenter"] == "dc1", me
assert me["Config"]["Version"] and me["Member"]["Name"] == node and me["Member"]["Status"] == 1, me
members = {m["Name"]: m for m in c.agent.members()}
assert members[node]["Status"] == 1 and members[node]["Tags"] == {"role": "node", "dc": "dc1"}, members
servers = [m for m in members.values() if m["Tags"]["role"] == "consul"]
assert len(servers) == 1 and servers[0]["Addr"] == os.environ["SERVER_HOST"], members

# Queries: every ?tag= must match (in any case), node-meta, ?passing, ?filter= (bexpr).
assert len(c.health.service("pyweb", tag="v1")[1]) == 1
assert len(c.health.service("pyweb", tag=["v1", "PYTHON"], passing=True)[1]) == 1
assert c.health.service("pyweb", tag=["v1", "v2"])[1] == []
assert c.health.service("pyweb", node_meta={"rack": "nowhere"})[1] == []
expr = 'Service.Meta.Lang == "python" and "v1" in Service.Tags and Node.Node == `%s`' % node
assert len(c.health.service("pyweb", filter_expr=expr)[1]) == 1
assert c.health.service("pyweb", filter_expr="Service.Meta.Lang != python")[1] == []
assert len(c.health.service("pyweb", filter_expr='Checks.CheckID contains "pyweb:2"')[1]) == 1
assert len(c.catalog.service("pyweb", filter_expr='ServiceMeta.Lang matches "^py"')[1]) == 1
assert c.catalog.service("pyweb", tag="nope")[1] == []
assert list(c.catalog.services(filter_expr="ServiceName == pyweb")[1]) == ["pyweb"]
assert [n["Node"] for n in c.catalog.nodes(filter_expr=f"Node == `{node}`")[1]] == [node]
assert list(c.agent.services(filter_expr="Service == pyweb and Port != 0")) == ["pyweb"]
assert sorted(c.agent.checks(filter_expr="ServiceID == pyweb")) == ["service:pyweb:1", "service:pyweb:2"]
try:
    c.health.service("pyweb", filter_expr='Service.Tags contians "x"')
    sys.exit("py-consul: an invalid filter was accepted")
except consul.exceptions.BadRequest as e:
    assert "position 14" in str(e), e

# Read endpoints.
checks = c.health.checks("pyweb")[1]
assert sorted(ch["CheckID"] for ch in checks) == ["service:pyweb:1", "service:pyweb:2"], checks
assert "service:pyweb:2" in [ch["CheckID"] for ch in c.health.state("passing")[1]]
assert "service:pyweb:2" in [ch["CheckID"] for ch in c.health.node(node)[1]]
assert c.catalog.node(node)[1]["Services"]["pyweb"]["Tags"] == ["v1", "python"]
assert c.catalog.datacenters() == ["dc1"], c.catalog.datacenters()
try:
    c.health.service("pyweb", dc="nowhere")
    sys.exit("py-consul: an unknown datacenter was answered")
except consul.ConsulException as e:
    assert "500" in str(e) and "No path to datacenter" in str(e), e
status, body = raw("GET", "/v1/agent/health/service/name/pyweb")
assert status == 200 and body[0]["AggregatedStatus"] == "passing", (status, body)
status, svc = raw("GET", "/v1/agent/service/pyweb")
assert status == 200 and svc["Service"] == "pyweb" and svc["ContentHash"], svc

# Maintenance mode: a critical check takes the service, or the whole node, out of passing.
assert c.agent.service.maintenance("pyweb", True, "upgrading") is True
maint = c.agent.checks()["_service_maintenance:pyweb"]
assert maint["Status"] == "critical" and maint["Notes"] == "upgrading", maint
assert maint["ServiceID"] == "pyweb" and maint["Name"] == "Service Maintenance Mode", maint
eventually("pyweb not passing in maintenance", lambda: passing() == [])
assert c.agent.service.maintenance("pyweb", False) is True
assert "_service_maintenance:pyweb" not in c.agent.checks()
eventually("pyweb passing after its maintenance", passing)
assert c.agent.maintenance(True) is True
maint = c.agent.checks()["_node_maintenance"]
assert maint["Status"] == "critical" and "no reason was provided" in maint["Notes"], maint
eventually("pyweb not passing with its node in maintenance", lambda: passing() == [])
assert c.agent.maintenance(False) is True
eventually("pyweb passing after the node's maintenance", passing)
assert c.agent.service.maintenance("nothing", True) is False, "an unknown service is a 404"

assert c.agent.check.ttl_fail("service:pyweb:2", "broken") is True
eventually("pyweb not passing after ttl_fail", lambda: passing() == [])
assert c.agent.checks()["service:pyweb:2"]["Output"] == "broken"
# ?passing=false does not filter (Consul's ParseBool); the agent's health endpoint says 503.
status, body = raw("GET", "/v1/health/service/pyweb?passing=false")
assert status == 200 and len(body) == 1, (status, body)
status, body = raw("GET", "/v1/agent/health/service/id/pyweb")
assert status == 503 and body["AggregatedStatus"] == "critical", (status, body)

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

# HTTPS checks against the server's TLS port. Its certificate is from strait's CA, which the
# agent trusts through its ca_file, but names no host (only a SPIFFE ID): verification gets
# past the issuer and fails on the name; with TLSSkipVerify the probe gets an HTTP answer.
url = f"https://{os.environ['SERVER_HOST']}:8300/v1/status/leader"
assert c.agent.check.register("tls verified", Check.http(url, "1s"), check_id="tls-verified")
skip = dict(Check.http(url, "1s", header={"X-Probe": ["a", "b"]}), tls_skip_verify=True)
assert c.agent.check.register("tls skip", skip, check_id="tls-skip")


def tls_outputs():
    ch = c.agent.checks()
    out = (ch["tls-verified"]["Output"], ch["tls-skip"]["Output"])
    return out if "not run yet" not in out else None


verified, skipped = eventually("the HTTPS checks' first probes", tls_outputs)
assert "TLS handshake" in verified and "not valid for name" in verified, verified
assert c.agent.checks()["tls-verified"]["Status"] == "critical"
assert re.match(rf"HTTP GET {re.escape(url)}: \d{{3}}\b", skipped), skipped
assert c.agent.check.deregister("tls-verified") and c.agent.check.deregister("tls-skip")

# Connect: the CA roots and a leaf in Consul's shapes (RFC 3339 times, indexes).
def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


now = datetime.now(timezone.utc)
roots = c.agent.connect.ca.roots()
root = roots["Roots"][0]
assert roots["ActiveRootID"] == root["ID"] and root["Active"] is True, roots
assert when(root["NotBefore"]) <= now < when(root["NotAfter"]), root
assert root["IntermediateCerts"] == [] and root["ModifyIndex"] >= root["CreateIndex"] > 0, root
assert c.connect.ca.roots()["Roots"][0]["RootCert"] == root["RootCert"]
ca_config = c.connect.ca.configuration()
assert ca_config["Provider"] == "strait" and ca_config["Config"]["LeafCertTTL"].endswith("h"), ca_config
try:
    c.connect.ca.update_configuration("vault", {"Address": "https://vault:8200"})
    sys.exit("py-consul: the CA configuration was changed")
except consul.ConsulException as e:
    assert "501" in str(e) and "not supported by strait" in str(e), e
leaf = c.agent.connect.ca.leaf("pyweb")
td = roots["TrustDomain"]
assert leaf["Service"] == "pyweb" and leaf["ServiceURI"] == f"spiffe://{td}/ns/default/dc/dc1/svc/pyweb", leaf
assert when(leaf["ValidAfter"]) <= now < when(leaf["ValidBefore"]), leaf
assert leaf["ModifyIndex"] == leaf["CreateIndex"] > 0 and leaf["SerialNumber"], leaf
assert "BEGIN CERTIFICATE" in leaf["CertPEM"] and "PRIVATE KEY" in leaf["PrivateKeyPEM"]
# A watcher's query (index = the leaf's) waits for a renewal, here until ?wait= passes.
started = time.monotonic()
req = urllib.request.Request(
    f"http://{host}:8500/v1/agent/connect/ca/leaf/pyweb?index={leaf['ModifyIndex']}&wait=1s"
)
with urllib.request.urlopen(req) as resp:
    assert resp.headers["X-Consul-Index"] == str(leaf["ModifyIndex"]), resp.headers
    assert json.load(resp)["SerialNumber"] == leaf["SerialNumber"]
assert time.monotonic() - started >= 0.9, "the leaf query did not block"

# authorize, as native Connect apps call it: no intention yet, allowed by default.
web_uri = f"spiffe://{td}/ns/default/dc/dc1/svc/web"
auth = c.agent.connect.authorize("pyweb", web_uri, "01:02")
assert auth["Authorized"] is True and "Default" in auth["Reason"], auth
status, body = raw("POST", "/v1/agent/connect/authorize", {"Target": "pyweb", "ClientCertURI": "web"})
assert status == 400 and "ClientCertURI" in str(body), (status, body)

# Intentions: written on a server's API or through any agent (forwarded to the servers, as
# Consul's), read anywhere.
s = consul.Consul(host=os.environ["SERVER_HOST"], port=8500)
assert s.connect.intentions.upsert("web", "pyweb", action="deny", description="no web") is True
assert c.connect.intentions.upsert("*", "pyweb", action="allow") is True
got = c.connect.intentions.read("web", "pyweb")
assert got["Action"] == "deny" and got["Precedence"] == 9 and got["Description"] == "no web", got
assert c.connect.intentions.read("api", "pyweb") is None
listed = [(i["SourceName"], i["DestinationName"], i["Action"]) for i in c.connect.intentions.list()]
assert listed == [("web", "pyweb", "deny"), ("*", "pyweb", "allow")], listed
assert [i["SourceName"] for i in c.connect.intentions.list(filter_expr="Action == deny")] == ["web"]
matched = c.connect.intentions.match("destination", "pyweb")
assert [i["SourceName"] for i in matched["pyweb"]] == ["web", "*"], matched
assert c.connect.intentions.check("web", "pyweb") is False
assert c.connect.intentions.check("api", "pyweb") is True
# The agent decides with what its sidecars enforce, once the change reaches it.
eventually(
    "authorize to follow the deny",
    lambda: c.agent.connect.authorize("pyweb", web_uri, "01:02")["Authorized"] is False,
)
reason = c.agent.connect.authorize("pyweb", web_uri, "01:02")["Reason"]
assert reason == "Matched L4 intention: web => pyweb (deny)", reason
assert s.connect.intentions.delete("web", "pyweb") is True
assert c.connect.intentions.delete("*", "pyweb") is True
assert c.connect.intentions.list() == []
assert c.connect.intentions.check("web", "pyweb") is True

# Eight intentions written at once to one destination through the agent are all kept (each
# is a check-and-set of the destination's entry, retried when another write came first), and
# so are eight deletions.
sources = [f"conc-{i}" for i in range(8)]
failures = []


def at_once(write):
    def run(src):
        try:
            if write(src) is not True:
                failures.append(src)
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"{src}: {e}")

    threads = [threading.Thread(target=run, args=(src,)) for src in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def concurrent_sources():
    return sorted(i["SourceName"] for i in c.connect.intentions.list() if i["DestinationName"] == "pyconc")


at_once(lambda src: c.connect.intentions.upsert(src, "pyconc", action="allow"))
assert concurrent_sources() == sources, concurrent_sources()
at_once(lambda src: c.connect.intentions.delete(src, "pyconc"))
assert concurrent_sources() == [], concurrent_sources()

# Consul's check-and-set on config entries: ?cas=0 creates only; the ModifyIndex replaces.
defaults = {"Kind": "service-defaults", "Name": "pycas", "MeshGateway": {"Mode": "local"}}
assert raw("PUT", "/v1/config?cas=0", defaults) == (200, True)
assert raw("PUT", "/v1/config?cas=0", defaults) == (200, False)
status, entry = raw("GET", "/v1/config/service-defaults/pycas")
assert status == 200, entry
index = entry["ModifyIndex"]
defaults["MeshGateway"]["Mode"] = "remote"
assert raw("PUT", f"/v1/config?cas={index + 1}", defaults) == (200, False)
assert raw("PUT", f"/v1/config?cas={index}", defaults) == (200, True)
status, body = raw("PUT", "/v1/config?cas=soon", defaults)
assert status == 400 and "cas" in str(body), (status, body)
assert raw("DELETE", f"/v1/config/service-defaults/pycas?cas={index}") == (200, False)
status, entry = raw("GET", "/v1/config/service-defaults/pycas")
assert raw("DELETE", f"/v1/config/service-defaults/pycas?cas={entry['ModifyIndex']}") == (200, True)

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

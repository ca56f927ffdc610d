#!/usr/bin/env python3
"""What ACLs add to an agent's API (driven by bench/acl.sh).

Real `strait` processes on loopback (127.64.0.0/16): a server and an agent with ACLs off, then
the same with ACLs on (`default_policy = "deny"`), measured in the same run. For each:
  register     PUT /v1/agent/service/register of `web` (port changed each time) with a
               service-identity token for web, answered by the agent: p50/p99 over $CALLS
  leaf         GET /v1/agent/connect/ca/leaf/web with that token (the agent's cached leaf):
               p50/p99 over $CALLS
  first use    (ACLs on only) the first leaf fetch with each of $FRESH new tokens: the agent
               resolves the token through its server (not cached yet): p50/p99
ACLs off sends the same header (ignored). Both setups run at once and the calls alternate
between them (off, on, off, on, ...), so whatever else loads the machine loads both alike.
Ratios are ACLs on / ACLs off.
"""
import json
import os
import time
import http.client

from procs import FED_TOKEN, JOIN_TOKEN, OUT, log, pct, start, stop_all, wait

CALLS = int(os.environ.get("CALLS", "2000"))
FRESH = int(os.environ.get("FRESH", "200"))


MANAGEMENT = "0b4c1f7e-5d8a-4c0e-9a52-1f0d7b9e3c21"


class Api:
    """One keep-alive connection to a loopback API."""

    def __init__(self, addr):
        host, port = addr.split(":")
        self.host, self.port = host, int(port)
        self.conn = None

    def call(self, method, path, body=None, token=None):
        headers = {"X-Consul-Token": token} if token else {}
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read().decode()
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    return 0, ""
        return 0, ""


def summary(xs):
    return {"p50_ms": pct(xs, 50) * 1e3, "p99_ms": pct(xs, 99) * 1e3}


def timed(f):
    t0 = time.perf_counter()
    status, body = f()
    if status != 200:
        raise SystemExit(f"{status}: {body}")
    return time.perf_counter() - t0


def run(net, acl):
    d = os.path.join(OUT, f"acl-{acl}")
    os.makedirs(os.path.join(d, "services"), exist_ok=True)
    server_ip, agent_ip = f"127.64.{net}.10", f"127.64.{net}.11"
    table = ""
    if acl:
        table = f'\n[acl]\nenabled = true\ndefault_policy = "deny"\n'
    with open(os.path.join(d, "server.toml"), "w") as f:
        f.write(
            f'datacenter = "dc1"\nnode_name = "server"\ndata_dir = "{d}/data-server"\n'
            f'https_addr = "{server_ip}:8300"\nhttp_addr = "{server_ip}:8500"\n'
            f'join_token = "{JOIN_TOKEN}"\nfederation_token = "{FED_TOKEN}"\n{table}'
            + (f'[acl.tokens]\ninitial_management = "{MANAGEMENT}"\n' if acl else "")
        )
    server = Api(f"{server_ip}:8500")
    s = start(f"server-{acl}", ["server", "--config", os.path.join(d, "server.toml")])
    wait("server ready", lambda: server.call("GET", "/v1/status/ready")[0] == 200)
    with open(os.path.join(d, "agent.toml"), "w") as f:
        f.write(
            f'datacenter = "dc1"\nnode_name = "bench-agent"\ndata_dir = "{d}/data-agent"\n'
            f'advertise_addr = "{agent_ip}"\nhttp_addr = "{agent_ip}:8500"\n'
            f'servers = ["{server_ip}:8300"]\njoin_token = "{JOIN_TOKEN}"\n'
            f'config_dir = "{d}/services"\n{table}'
        )
    a = start(f"agent-{acl}", ["agent", "--config", os.path.join(d, "agent.toml")])
    agent = Api(f"{agent_ip}:8500")
    wait("agent ready", lambda: agent.call("GET", "/v1/agent/ready")[0] == 200)

    def new_token():
        if not acl:
            return "ignored-without-acls"
        body = json.dumps({"ServiceIdentities": [{"ServiceName": "web"}]})
        status, text = server.call("PUT", "/v1/acl/token", body, MANAGEMENT)
        if status != 200:
            raise SystemExit(f"token: {status} {text}")
        return json.loads(text)["SecretID"]

    if acl:
        wait("ACL bootstrap", lambda: server.call("GET", "/v1/acl/token/self", token=MANAGEMENT)[0] == 200)
    token = new_token()
    setup = {"agent": agent, "token": token, "new_token": new_token}
    timed(lambda: register(setup, 9000))
    wait("web's leaf", lambda: agent.call("GET", "/v1/agent/connect/ca/leaf/web", token=token)[0] == 200)
    for k in range(50):  # warm up
        timed(lambda k=k: register(setup, 9001 + k))
        timed(lambda: leaf(setup, token))
    return setup


def register(setup, port):
    body = json.dumps({"Name": "web", "Port": port})
    return setup["agent"].call("PUT", "/v1/agent/service/register", body, setup["token"])


def leaf(setup, token):
    return setup["agent"].call("GET", "/v1/agent/connect/ca/leaf/web", token=token)


def interleaved(setups, f):
    """f(setup, k) timed $CALLS times on each setup, alternating: a list of samples per setup."""
    samples = [[] for _ in setups]
    for k in range(CALLS):
        for i, setup in enumerate(setups):
            samples[i].append(timed(lambda: f(setup, k)))
    return [summary(x) for x in samples]


def main():
    try:
        setups = [run(1, False), run(2, True)]
        reg = interleaved(setups, lambda st, k: register(st, 10000 + k))
        lf = interleaved(setups, lambda st, k: leaf(st, st["token"]))
        fresh = [setups[1]["new_token"]() for _ in range(FRESH)]
        first = summary([timed(lambda t=t: leaf(setups[1], t)) for t in fresh])
    finally:
        stop_all()
    off = {"register": reg[0], "leaf": lf[0]}
    on = {"register": reg[1], "leaf": lf[1], "first_use": first}
    log(f"ACLs off: {off}")
    log(f"ACLs on: {on}")
    ratios = {
        f"{what}_{q}": on[what][q] / off[what][q]
        for what in ("register", "leaf")
        for q in ("p50_ms", "p99_ms")
    }
    ratios["first_use_p50_vs_cached_leaf"] = on["first_use"]["p50_ms"] / off["leaf"]["p50_ms"]
    result = {"off": off, "on": on, "ratios_on_over_off": ratios}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


main()

#!/usr/bin/env python3
"""Control-plane benchmark of strait's servers on Raft (driven by bench/raft.sh).

Real `strait` processes on loopback (127.63.0.0/16): a DC of one server and a DC of three,
each with one agent. Measures, for each:
  latency   a registration through the agent (PUT /v1/agent/service/register, port changed
            each time) until the leader's catalog shows it (blocking query on the leader's
            loopback API): p50/p99 over $WRITES sequential registrations
  writes/s  $CLIENTS clients doing the same in a closed loop, each with its own service, for
            $SECONDS seconds: registrations confirmed on the leader per second
and, on the three-server DC, the time from `kill -9` of the leader to the first write
acknowledged by a survivor (PUT /v1/config on its loopback API, retried every 10 ms), $KILLS
times (the killed server restarted and caught up in between): median, min, max.
"""
import json
import os
import signal
import statistics
import threading
import time
import urllib.error
import urllib.request

from procs import FED_TOKEN, JOIN_TOKEN, OUT, log, pct, start, stop_all, wait

WRITES = int(os.environ.get("WRITES", "300"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
SECONDS = float(os.environ.get("SECONDS_PER_RUN", "10"))
KILLS = int(os.environ.get("KILLS", "5"))


def request(method, addr, path, body=None, timeout=10):
    """(status, headers, body) or (0, {}, error) when the exchange failed."""
    data = body.encode() if body is not None else None
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
    except OSError as e:
        return 0, {}, str(e)


class Dc:
    """`n` servers on 127.63.<net>.{10..} and one agent on 127.63.<net>.20."""

    def __init__(self, net, n):
        self.net, self.n = net, n
        self.servers = [None] * n
        for i in range(n):
            self.write_server_config(i)
            self.start_server(i)
        for i in range(n):
            wait(f"server {i} ready", lambda i=i: request("GET", self.api(i), "/v1/status/ready")[0] == 200)
        ip = f"127.63.{net}.20"
        self.agent_api = f"{ip}:8500"
        d = os.path.join(OUT, f"dc{net}")
        os.makedirs(os.path.join(d, "services"), exist_ok=True)
        servers = ", ".join(f'"{self.https(i)}"' for i in range(n))
        cfg = os.path.join(d, "agent.toml")
        with open(cfg, "w") as f:
            f.write(
                f'datacenter = "dc1"\nnode_name = "bench-agent"\ndata_dir = "{d}/data-agent"\n'
                f'advertise_addr = "{ip}"\nhttp_addr = "{ip}:8500"\nservers = [{servers}]\n'
                f'join_token = "{JOIN_TOKEN}"\nconfig_dir = "{d}/services"\n'
            )
        self.agent = start(f"dc{net}-agent", ["agent", "--config", cfg])
        wait("agent ready", lambda: request("GET", self.agent_api, "/v1/agent/ready")[0] == 200)

    def ip(self, i):
        return f"127.63.{self.net}.{10 + i}"

    def https(self, i):
        return f"{self.ip(i)}:8300"

    def api(self, i):
        return f"{self.ip(i)}:8500"

    def write_server_config(self, i):
        d = os.path.join(OUT, f"dc{self.net}")
        os.makedirs(d, exist_ok=True)
        others = ", ".join(f'"{self.https(j)}"' for j in range(self.n) if j != i)
        with open(os.path.join(d, f"server-{i}.toml"), "w") as f:
            f.write(
                f'datacenter = "dc1"\nnode_name = "server-{i}"\ndata_dir = "{d}/data-{i}"\n'
                f'https_addr = "{self.https(i)}"\nhttp_addr = "{self.api(i)}"\n'
                f'join_token = "{JOIN_TOKEN}"\nfederation_token = "{FED_TOKEN}"\n'
                f"bootstrap_expect = {self.n}\nretry_join = [{others}]\n"
            )

    def start_server(self, i):
        cfg = os.path.join(OUT, f"dc{self.net}", f"server-{i}.toml")
        self.servers[i] = start(f"dc{self.net}-server-{i}", ["server", "--config", cfg])

    def leader(self, among=None):
        """The index of the server all of `among` name as leader."""

        def agreed():
            seen = set()
            for i in among or range(self.n):
                code, _, body = request("GET", self.api(i), "/v1/status/leader", timeout=2)
                if code != 200:
                    return None
                seen.add(json.loads(body))
            if len(seen) != 1:
                return None
            addr = seen.pop()
            return next((i + 1 for i in range(self.n) if self.https(i) == addr), None)

        return wait("a leader", agreed) - 1

    def stop(self):
        for p in self.servers + [self.agent]:
            if p and p.poll() is None:
                p.terminate()
                p.wait()


def register_and_confirm(dc, leader_api, service, port):
    """Registers `service` on `port` through the agent; returns once the leader's catalog shows
    it (blocking queries), as (seconds, ok)."""
    path = f"/v1/catalog/service/{service}"
    code, headers, _ = request("GET", leader_api, path + "?stale")
    index = headers.get("X-Consul-Index", "0") if code == 200 else "0"
    t0 = time.monotonic()
    body = json.dumps({"Name": service, "Port": port})
    code, _, text = request("PUT", dc.agent_api, "/v1/agent/service/register", body)
    if code != 200:
        raise SystemExit(f"register {service}: {code} {text}")
    while True:
        code, headers, text = request("GET", leader_api, f"{path}?stale&index={index}&wait=5s")
        if code == 200 and any(s.get("ServicePort") == port for s in json.loads(text)):
            return time.monotonic() - t0
        if time.monotonic() - t0 > 30:
            raise SystemExit(f"{service} on port {port} not on the leader after 30 s")
        index = headers.get("X-Consul-Index", index) if code == 200 else index


def measure(dc, name):
    leader_api = dc.api(dc.leader())
    for k in range(3):  # warm up: connections, the agent's first syncs
        register_and_confirm(dc, leader_api, "bench-latency", 20000 + k)
    lat = [register_and_confirm(dc, leader_api, "bench-latency", 21000 + k) for k in range(WRITES)]
    done = [0] * CLIENTS
    stop_at = time.monotonic() + SECONDS

    def client(c):
        k = 0
        while time.monotonic() < stop_at:
            register_and_confirm(dc, leader_api, f"bench-{c}", 30000 + k)
            done[c] += 1
            k += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(done) / (time.monotonic() - t0)
    r = {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "writes_per_s": rate}
    log(f"{name}: {r}")
    return r


def failover(dc):
    times = []
    for rep in range(KILLS):
        leader = dc.leader()
        survivors = [i for i in range(dc.n) if i != leader]
        dc.servers[leader].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        dc.servers[leader].wait()
        body = json.dumps(
            {"Kind": "service-intentions", "Name": f"failover-{rep}", "Sources": [{"Name": "web", "Action": "allow"}]}
        )
        n = 0
        while True:
            code, _, _ = request("PUT", dc.api(survivors[n % 2]), "/v1/config", body, timeout=5)
            if code == 200:
                break
            n += 1
            time.sleep(0.01)
        times.append(time.monotonic() - killed)
        log(f"failover {rep + 1}: first write after {times[-1]:.2f} s")
        dc.start_server(leader)
        wait("the killed server ready", lambda: request("GET", dc.api(leader), "/v1/status/ready")[0] == 200)
        dc.leader()
    return times


def main():
    results = {}
    try:
        one = Dc(1, 1)
        results["1 server"] = measure(one, "1 server")
        one.stop()
        three = Dc(2, 3)
        results["3 servers"] = measure(three, "3 servers")
        results["failover_s"] = failover(three)
        three.stop()
    finally:
        stop_all()
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    a, b = results["1 server"], results["3 servers"]
    fo = results["failover_s"]
    print("| | 1 server | 3 servers | 3 / 1 |")
    print("|---|---|---|---|")
    for key, label in (("p50_ms", "registration p50 (ms)"), ("p99_ms", "registration p99 (ms)"), ("writes_per_s", f"registrations/s ({CLIENTS} clients)")):
        print(f"| {label} | {a[key]:.1f} | {b[key]:.1f} | {b[key] / a[key]:.2f} |")
    print()
    print(
        f"kill -9 of the leader -> first acknowledged write: median {statistics.median(fo):.2f} s "
        f"(min {min(fo):.2f}, max {max(fo):.2f}, {len(fo)} runs)"
    )


main()

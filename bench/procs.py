"""What the control-plane benchmarks (bench/raft.py, bench/acl.py) share: the `strait` binary
and output directory they were given (argv[1], argv[2]), starting real `strait` processes
with their logs in that directory (killed by `stop_all`), waiting, and percentiles."""
import os
import subprocess
import sys
import time

STRAIT, OUT = sys.argv[1], sys.argv[2]
JOIN_TOKEN = "join-token-dc1-0123456789"
FED_TOKEN = "federation-token-0123456789"
PROCS = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def start(name, args):
    """`strait ARGS`, its output in OUT/<name>.log."""
    f = open(os.path.join(OUT, f"{name}.log"), "a")
    p = subprocess.Popen([STRAIT] + args, stdout=f, stderr=f, env={**os.environ, "STRAIT_LOG": "warn"})
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()


def wait(what, pred, timeout=60):
    """pred()'s first truthy value, polled every 20 ms; exits naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

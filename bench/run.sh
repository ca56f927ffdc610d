#!/usr/bin/env bash
# Data-plane benchmark of strait's built-in proxy, with ratios to a direct baseline measured
# in the same run:
#   direct:  client -> backend
#   s2s:     client -> sidecar -> (mTLS) -> sidecar -> backend
#   gw:      client -> sidecar -> gateway(dc1) -> gateway(dc2) -> sidecar -> backend
# For each path: req/s (oha -z 10s -c 32), p50/p99 at a fixed 1000 req/s (oha -q 1000),
# iperf3 bulk Gbit/s; per proxy: RSS (VmRSS) and CPU seconds (utime+stime) over its path's
# runs. Prints markdown tables; logs and snapshots go to $OUT (default bench/out).
#
# Needs: a release build (done here), oha (cargo install oha --locked), iperf3 (apt-get),
# python3 (JSON parsing), curl (readiness). Takes about 2 minutes once built.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
DURATION=${DURATION:-10s}
IPERF_SECS=${IPERF_SECS:-10}
cd "$ROOT"

log() { printf '%s\n' "$*" >&2; }

command -v oha >/dev/null || cargo install oha --locked
command -v iperf3 >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq iperf3 >&2; }
command -v curl >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq curl >&2; }

log "building release binaries"
cargo build --release -q -p strait
cargo build --release -q -p strait-proxy --example bench_backend --example bench_topology
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STRAIT=$TARGET/release/strait
EXAMPLES=$TARGET/release/examples

rm -rf "$OUT" && mkdir -p "$OUT"
"$EXAMPLES/bench_topology" "$OUT"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

"$EXAMPLES/bench_backend" 127.0.0.1:18080 >"$OUT/backend.log" 2>&1 &
PIDS+=($!)
iperf3 -s -B 127.0.0.1 -p 15201 >"$OUT/iperf3-server.log" 2>&1 &
PIDS+=($!)

declare -A PID_OF ADMIN_OF
while read -r name args; do
    # shellcheck disable=SC2086 # args is a word list on purpose
    RUST_LOG=warn "$STRAIT" $args >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    PID_OF[$name]=$!
    ADMIN_OF[$name]=$(sed -E 's/.*--admin ([^ ]+).*/\1/' <<<"$args")
done <"$OUT/procs.txt"

for name in "${!ADMIN_OF[@]}"; do
    for _ in $(seq 100); do
        curl -sf "http://${ADMIN_OF[$name]}/ready" >/dev/null && continue 2
        sleep 0.1
    done
    log "$name never became ready; see $OUT/$name.log"
    exit 1
done
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/ >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

# oha prints JSON with --output-format json (newer) or -j/--json (older).
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi
oha_run() { oha --no-tui "${OHA_JSON[@]}" -z "$DURATION" "$@"; }

declare -A RPS P50 P99 GBPS CPU RSS
run_path() {
    local path=$1 http_port=$2 iperf_port=$3; shift 3
    local procs=("$@") before=()
    for p in "${procs[@]}"; do before+=("$(cpu_ticks "${PID_OF[$p]}")"); done
    log "[$path] oha -c 32"
    RPS[$path]=$(oha_run -c 32 "http://127.0.0.1:$http_port/" |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
    log "[$path] oha -q 1000"
    read -r P50[$path] P99[$path] < <(oha_run -c 32 -q 1000 "http://127.0.0.1:$http_port/" |
        python3 -c 'import json,sys; p=json.load(sys.stdin)["latencyPercentiles"]; print("%.3f %.3f" % (p["p50"]*1e3, p["p99"]*1e3))')
    log "[$path] iperf3"
    GBPS[$path]=$(iperf3 -c 127.0.0.1 -p "$iperf_port" -t "$IPERF_SECS" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    local i=0
    for p in "${procs[@]}"; do
        local after; after=$(cpu_ticks "${PID_OF[$p]}")
        CPU[$p]=$(python3 -c "print('%.1f' % (($after - ${before[$i]}) / $CLK_TCK))")
        RSS[$p]=$(python3 -c "print('%.1f' % ($(rss_kib "${PID_OF[$p]}") / 1024))")
        i=$((i + 1))
    done
}

run_path direct 18080 15201
run_path s2s 15001 15011 s1 s2 s2i
run_path gw 15002 15012 s3 gw1 gw2 s4 s4i

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo
echo "| path | req/s (c=32) | vs direct | p50 ms @1000 rps | p99 ms @1000 rps | iperf3 Gbit/s | vs direct |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for path in direct s2s gw; do
    echo "| $path | ${RPS[$path]} | $(ratio "${RPS[$path]}" "${RPS[direct]}") | ${P50[$path]} | ${P99[$path]} | ${GBPS[$path]} | $(ratio "${GBPS[$path]}" "${GBPS[direct]}") |"
done
echo
echo "| proxy | role | path | RSS MiB (after load) | CPU s (its path's runs) |"
echo "|---|---|---|---:|---:|"
for p in s1 s2 s2i s3 gw1 gw2 s4 s4i; do
    case $p in s1 | s3) role="client sidecar" ;; gw*) role="gateway" ;; *) role="server sidecar" ;; esac
    case $p in s1 | s2 | s2i) path=s2s ;; *) path=gw ;; esac
    echo "| $p | $role | $path | ${RSS[$p]} | ${CPU[$p]} |"
done

#!/usr/bin/env bash
# The latency floor of two user-space hops on this machine: p50/p99 at a fixed 1,000 req/s
# (oha -c 32) directly to the bench backend, through two plain TCP relays in a row
# (crates/proxy/examples/bench_relay.rs: one thread, no TLS, no parsing), through strait's
# s1 -> s2 and through Envoy's es1 -> es2, alternated $ROUNDS times
# in the same go. bench/run.sh's "added p99" row compared with what any two hops add.
#
#   CARGO_TARGET_DIR=/work/target-release bash bench/floor.sh          # SECS=30 ROUNDS=2
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out-floor}
SECS=${SECS:-30}
ROUNDS=${ROUNDS:-2}
cd "$ROOT"

. bench/common.sh
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p strait-proxy --example bench_relay
fi
bench_setup
trap bench_cleanup EXIT
start_backend
RELAY=$TARGET/release/examples/bench_relay
read -r _ DIRECT _ < <(grep '^direct ' "$OUT/paths.txt")
"$RELAY" 127.0.0.1:18981 "$DIRECT" >"$OUT/relay2.log" 2>&1 &
PIDS+=($!)
"$RELAY" 127.0.0.1:18980 127.0.0.1:18981 >"$OUT/relay1.log" 2>&1 &
PIDS+=($!)

# The proxies of the s2s paths, strait's and Envoy's.
declare -A PID_OF
start_proxies s1 s2 es1 es2 ads-es1 ads-es2
read -r _ S2S _ < <(grep '^s2s ' "$OUT/paths.txt")
read -r _ ES2S _ < <(grep '^envoy-s2s ' "$OUT/paths.txt")

# oha's JSON flag, as bench/run.sh picks it.
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi
run() { # name url
    oha --no-tui -z "${SECS}s" -q 1000 -c 32 "${OHA_JSON[@]}" "http://$2/" >"$OUT/$1.json"
    python3 - "$1" "$OUT/$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
p = d["latencyPercentiles"]
print(f"{sys.argv[1]:10} p50 {p['p50']*1000:.3f} ms  p99 {p['p99']*1000:.3f} ms")
PY
}
# Warm-up: connections, handshakes and tunnels set up before anything is measured.
for url in "$DIRECT" 127.0.0.1:18980 "$S2S" "$ES2S"; do
    oha --no-tui -z 1s -q 1000 -c 32 "http://$url/" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    log "round $round"
    run direct "$DIRECT"
    run relays "127.0.0.1:18980"
    run strait "$S2S"
    run envoy "$ES2S"
done

#!/usr/bin/env bash
# Bulk through the proxies: iperf3 (one stream unless P is set) on each path, the CPU seconds
# the proxies on the path's iperf3 route spent per GB carried (utime+stime from
# /proc/<pid>/stat), and optionally their system calls or a CPU profile.
#
#   CARGO_TARGET_DIR=/work/target-release bash bench/bulk.sh                 # ~1 min once built
#   SKIP_BUILD=1 MODE=strace PATHS="s2s envoy-s2s" bash bench/bulk.sh       # syscalls per path
#   SKIP_BUILD=1 STRAIT_BIN=/tmp/strait-old bash bench/bulk.sh              # an older build
#
# MODE=none (default) | strace (strace -c -f of every proxy on the route: slows them down,
# so its Gbit/s mean nothing; the calls per GB do) | perf (perf record -g at 499 Hz; read with
# `perf report -i $OUT/perf-<path>-<proxy>.data --no-children --sort sym -g none`).
# Topology: bench/run.sh's; the iperf3 routes are s2s: s1 -> s2i, gw: s3 -> gw1 -> gw2 ->
# s4i, and the same with Envoy (es1 -> es2i, es3 -> egw1 -> egw2 -> es4i). Only the proxies
# on those routes run. Prints one line per path; raw files in $OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out-bulk}
MODE=${MODE:-none}
SECS=${SECS:-5}
P=${P:-1}
PATHS=${PATHS:-s2s gw envoy-s2s envoy-gw}
cd "$ROOT"

. bench/common.sh
command -v iperf3 >/dev/null || { log "needs iperf3 (bench/run.sh installs it)"; exit 1; }

declare -A ROUTE=(
    [s2s]="s1 s2i" [gw]="s3 gw1 gw2 s4i"
    [envoy-s2s]="es1 es2i" [envoy-gw]="es3 egw1 egw2 es4i"
)

bench_setup
trap bench_cleanup EXIT
read -r _ _ IPERF_ADDR < <(grep '^direct ' "$OUT/paths.txt")
iperf3 -s -B "${IPERF_ADDR%:*}" -p "${IPERF_ADDR#*:}" >"$OUT/iperf3-server.log" 2>&1 &
PIDS+=($!)

wanted=()
for path in $PATHS; do
    for name in ${ROUTE[$path]}; do wanted+=("$name" "ads-$name"); done
done
declare -A PID_OF
start_proxies "${wanted[@]}"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for path in $PATHS; do
    read -r _ _ iperf _ < <(grep "^$path " "$OUT/paths.txt")
    iperf3 -c "${iperf%:*}" -p "${iperf#*:}" -t 1 >/dev/null # warm-up
    declare -A before=()
    tracers=()
    for name in ${ROUTE[$path]}; do
        before[$name]=$(cpu_ticks "${PID_OF[$name]}")
        case $MODE in
            strace) strace -c -f -p "${PID_OF[$name]}" -o "$OUT/strace-$path-$name.txt" 2>/dev/null & ;;
            perf) perf record -F 499 -g -o "$OUT/perf-$path-$name.data" -p "${PID_OF[$name]}" >/dev/null 2>&1 & ;;
            none) continue ;;
        esac
        tracers+=($!)
    done
    [ ${#tracers[@]} = 0 ] || sleep 0.5 # attached
    iperf3 -c "${iperf%:*}" -p "${iperf#*:}" -t "$SECS" -P "$P" -J >"$OUT/iperf-$path.json"
    for pid in "${tracers[@]}"; do kill -INT "$pid"; done
    [ ${#tracers[@]} = 0 ] || wait "${tracers[@]}" 2>/dev/null || true
    ticks=""
    for name in ${ROUTE[$path]}; do ticks+=" $name=$(($(cpu_ticks "${PID_OF[$name]}") - ${before[$name]}))"; done
    python3 - "$OUT/iperf-$path.json" "$path" "$(getconf CLK_TCK)" "$ticks" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["end"]["sum_received"]
path, tck, ticks = sys.argv[2], int(sys.argv[3]), dict(t.split("=") for t in sys.argv[4].split())
gb = d["bytes"] / 1e9
cpu = sum(int(t) for t in ticks.values()) / tck
per = " ".join(f"{n} {int(t) / tck / gb:.2f}" for n, t in ticks.items())
print(f"{path}: {d['bits_per_second'] / 1e9:.2f} Gbit/s; CPU-s per GB {cpu / gb:.2f} ({per})")
EOF
done

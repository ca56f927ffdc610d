#!/usr/bin/env bash
# Where the cycles go: instruction counts (valgrind's callgrind) and system calls (strace -c)
# of one built-in proxy per request and per new connection. Load-independent, so it can run
# on a busy machine where bench/run.sh's wall-clock figures cannot.
#
#   CARGO_TARGET_DIR=/work/target-release bash bench/profile.sh        # s1 s2 gw1, ~3 min
#   SKIP_BUILD=1 PROXIES="gw1" KA=2000 NEW=200 bash bench/profile.sh     # as built
#
# Topology: bench/run.sh's (crates/proxy/examples/bench_topology.rs), built-in proxies only:
# s2s = client -> s1 -> (mTLS) -> s2 -> backend; gw = client -> s3 -> gw1 -> gw2 -> s4 ->
# backend. s1 is a client sidecar (plain in, TLS out), s2 a server sidecar (TLS in, plain
# out), gw1 a gateway (SNI peek, then bytes both ways). For each proxy in $PROXIES, that
# proxy alone runs under callgrind (everything else natively) and is measured over:
#   ka:  $KA requests on one keep-alive connection,
#   new: $NEW requests, a new TCP connection each (so a TLS handshake per request between
#        the sidecars; resumed after the first, as in bench/run.sh's "new conn" rows),
# counters zeroed right before and dumped right after each load (callgrind_control), then
# the same loads again natively under `strace -c -f` for system calls per request.
# Writes $OUT/summary.txt (Ir per request / per connection, the top functions inclusive and
# self, syscalls per request) and the raw callgrind.* and strace.* files.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out-profile}
PROXIES=${PROXIES:-s1 s2 gw1}
KA=${KA:-2000}
NEW=${NEW:-200}
TOP=${TOP:-25}
cd "$ROOT"

. bench/common.sh
for tool in valgrind callgrind_control callgrind_annotate strace python3 curl; do
    command -v "$tool" >/dev/null || { log "needs $tool"; exit 1; }
done

# (The release profile keeps line tables: `debug = "line-tables-only"`.)
bench_setup
trap bench_cleanup EXIT
start_backend

# load MODE URL N: N GET requests, on one keep-alive connection (ka) or one connection each
# (new). Python's http.client: its own cost is not the proxy's.
load() {
    python3 - "$@" <<'EOF'
import http.client, sys, urllib.parse
mode, url, n = sys.argv[1], urllib.parse.urlsplit(sys.argv[2]), int(sys.argv[3])
conn = None
for _ in range(n):
    if conn is None or mode == "new":
        if conn is not None:
            conn.close()
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/")
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
conn.close()
EOF
}

# The path (and its entry URL) a proxy sits on.
path_of() { awk -v p="$1" '$1 != "direct" { for (i = 4; i <= NF; i++) if ($i == p) print $1, $2 }' "$OUT/paths.txt"; }

# start NAME [WRAPPER...]: starts one proxy of procs.txt; waits until its admin says ready.
start() {
    local name=$1 args admin
    shift
    args=$(awk -v n="$name" '$1 == n { $1 = ""; print }' "$OUT/procs.txt")
    # Under valgrind a proxy is ~50x slower: deadlines that do not fire on that.
    case $args in
        " proxy"*) args="$args --upstream-handshake-timeout 30s --connect-timeout 5s" ;;
        " gateway"*) args="$args --connect-timeout 5s" ;;
    esac
    # shellcheck disable=SC2086 # args is a word list on purpose
    "$@" "$STRAIT" $args >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    admin=$(sed -E 's/.*--admin ([^ ]+).*/\1/' <<<"$args")
    for _ in $(seq 600); do
        curl -sf "http://$admin/ready" >/dev/null && return
        sleep 0.1
    done
    log "$name never became ready; see $OUT/$name.log"
    exit 1
}

stop_all_proxies() {
    local keep=()
    for pid in "${PIDS[@]}"; do
        if [ "$pid" = "${PIDS[0]}" ]; then keep+=("$pid"); continue; fi # the backend
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=("${keep[@]}")
}

# top_lines FILE INCLUSIVE: callgrind_annotate's function lines, percentages of the total,
# without the frames every sample sits under (main, the runtime's poll loop).
top_lines() {
    callgrind_annotate --threshold=100 --inclusive="$2" "$1" 2>/dev/null |
        grep -E '^ *[0-9,]+ \(' |
        grep -vE '\(100\.0%\)|libc-start|below main|lang_start|backtrace|ld-linux|main\.rs:|runtime::(context|scheduler|task::raw|task::core)|block_on|Scoped<T>::set|task_tracker|drain\.rs|poll_fn\.rs|instrument\.rs' |
        sed -E 's#/root/\.cargo/registry/src/[^/]+/##; s#/rustc/[0-9a-f]+/##; s# \[[^]]*\]$##' |
        head -"$TOP" || true
}

SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
for proxy in $PROXIES; do
    read -r path http < <(path_of "$proxy")
    procs=$(awk -v p="$path" '$1 == p { for (i = 4; i <= NF; i++) print $i }' "$OUT/paths.txt")
    url="http://$http/"

    # 1. callgrind: the measured proxy under valgrind, the others native.
    for p in $procs; do
        if [ "$p" = "$proxy" ]; then
            start "$p" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$proxy.%p.out" \
                --dump-instr=no --separate-threads=no
            VPID=$LAST_PID
        else
            start "$p"
        fi
    done
    load ka "$url" 20 # warm-up: connections, first handshake, session tickets
    load new "$url" 5
    for mode in ka new; do
        n=$KA
        [ "$mode" = new ] && n=$NEW
        callgrind_control -z "$VPID" >/dev/null
        load "$mode" "$url" "$n"
        callgrind_control -d "$mode" "$VPID" >/dev/null
        file=$(ls -t "$OUT"/callgrind."$proxy"."$VPID".out.* | head -1)
        mv "$file" "$OUT/callgrind.$proxy.$mode.out"
        ir=$(callgrind_annotate "$OUT/callgrind.$proxy.$mode.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
        {
            echo "== $proxy ($path) $mode: $n requests, Ir per request $((ir / n))"
            echo "-- self (exclusive), top $TOP"
            top_lines "$OUT/callgrind.$proxy.$mode.out" no
            echo "-- inclusive, top $TOP below the runtime's own frames"
            top_lines "$OUT/callgrind.$proxy.$mode.out" yes
        } >>"$SUMMARY"
        log "$proxy $mode: Ir per request $((ir / n))"
    done
    stop_all_proxies

    # 2. strace -c: all native, the measured proxy traced during each load.
    for p in $procs; do
        start "$p"
        [ "$p" = "$proxy" ] && SPID=$LAST_PID
    done
    load ka "$url" 20
    load new "$url" 5
    for mode in ka new; do
        n=$KA
        [ "$mode" = new ] && n=$NEW
        strace -c -f -q -p "$SPID" -o "$OUT/strace.$proxy.$mode.txt" &
        st=$!
        sleep 0.5 # strace attaches to every thread
        load "$mode" "$url" "$n"
        kill -INT "$st"
        wait "$st" || true
        {
            echo "== $proxy ($path) $mode: syscalls per request"
            # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
            awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
                printf "  %-16s %6.2f\n", $NF, $4 / n; all += $4 }
                END { printf "  %-16s %6.2f\n", "total", all / n }' \
                "$OUT/strace.$proxy.$mode.txt" | sort -k2 -rn
        } >>"$SUMMARY"
    done
    stop_all_proxies
done
log "summary: $SUMMARY"
cat "$SUMMARY"

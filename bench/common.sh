# Shared by bench/run.sh, bench/profile.sh and bench/memory.sh (sourced, after ROOT and OUT
# are set and the working directory is $ROOT).

log() { printf '%s\n' "$*" >&2; }

# Builds the release binary and the bench examples (unless SKIP_BUILD is set), sets TARGET,
# STRAIT (or $STRAIT_BIN) and EXAMPLES, and writes a fresh topology into $OUT (paths.txt,
# procs.txt, configs).
bench_setup() {
    if [ -z "${SKIP_BUILD:-}" ]; then
        log "building release binaries"
        cargo build --release -q -p strait
        cargo build --release -q -p strait-proxy --example bench_backend --example bench_topology
    fi
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    # STRAIT_BIN: another build of strait (an A/B against a saved copy of an older binary;
    # it also runs `strait envoy`, which is not on Envoy's data path).
    STRAIT=${STRAIT_BIN:-$TARGET/release/strait}
    EXAMPLES=$TARGET/release/examples
    rm -rf "$OUT" && mkdir -p "$OUT"
    "$EXAMPLES/bench_topology" "$OUT"
}

# Processes started in the background, killed when the script exits.
PIDS=()
bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

# Starts the bench backend on the `direct` path's address (BACKEND_ADDR).
start_backend() {
    read -r _ BACKEND_ADDR _ < <(grep '^direct ' "$OUT/paths.txt")
    "$EXAMPLES/bench_backend" "$BACKEND_ADDR" >"$OUT/backend.log" 2>&1 &
    PIDS+=($!)
}

# start_proxies NAME...: starts those proxies of procs.txt (an ADS server's name is
# ads-<proxy>), each ADS server before going on, then waits until every proxy's admin says
# ready; PID_OF[name] is each one's pid (declare -A PID_OF before).
start_proxies() {
    local wanted=" $* " admins=() name args admin
    while read -r name args; do
        [[ $wanted == *" $name "* ]] || continue
        # shellcheck disable=SC2086 # args is a word list on purpose
        "$STRAIT" $args >"$OUT/$name.log" 2>&1 &
        PIDS+=($!)
        PID_OF[$name]=$!
        if [[ $name == ads-* ]]; then
            for _ in $(seq 100); do grep -q "serving ADS" "$OUT/$name.log" && break; sleep 0.1; done
        else
            admins+=("$(sed -E 's/.*--admin ([^ ]+).*/\1/' <<<"$args")")
        fi
    done <"$OUT/procs.txt"
    for admin in "${admins[@]}"; do
        for _ in $(seq 100); do curl -sf "http://$admin/ready" >/dev/null && continue 2; sleep 0.1; done
        log "proxy with admin $admin never became ready; see $OUT/*.log"
        exit 1
    done
}

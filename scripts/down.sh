#!/usr/bin/env bash
# make down: stops the stack started by make up (state is kept).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for service in prometheus api worker sandbox temporal; do stop_service "$service"; done
# The PostgreSQL cluster of `make up STORE=postgres`, if it runs.
pg_dir=$(cat "$RUN_DIR/postgres.dir" 2>/dev/null || echo "$STATE_DIR/postgres")
if [ -f "$pg_dir/postmaster.pid" ]; then pg_cluster_stop "$pg_dir"; say "stopped postgres"; fi
rm -f "$RUN_DIR/postgres.dir"

#!/usr/bin/env bash
# make down: stops the stack started by make up (state is kept).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for service in prometheus api worker sandbox temporal; do stop_service "$service"; done
# The PostgreSQL cluster of `make up STORE=postgres`, if it runs.
if [ -f "$STATE_DIR/postgres/postmaster.pid" ]; then pg_cluster_stop "$STATE_DIR/postgres"; say "stopped postgres"; fi

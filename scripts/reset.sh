#!/usr/bin/env bash
# make reset: stops the stack and wipes its state (databases, logs, dev.env). Installed tools stay.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$(dirname "$0")/down.sh"
rm -rf "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$DEV_ENV"
say "state wiped"

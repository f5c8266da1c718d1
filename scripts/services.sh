#!/usr/bin/env bash
# PostgreSQL + an MLflow tracking server for scaled-out suites and studies, in a project-owned folder.
#
#   scripts/services.sh start  [pg|mlflow]   # both by default; idempotent
#   scripts/services.sh stop   [pg|mlflow]   # both by default; idempotent
#   scripts/services.sh status               # what runs, and the URLs to use (exit 3 if something is down)
#
# Environment (all optional):
#   HARNESS_SERVICES_DIR  the folder (default: <repo>/.services, git-ignored). Holds the PostgreSQL cluster
#                         (pg/data), MLflow's artifacts (mlartifacts/), logs, pids, and two 0600 files:
#                         `password` (generated) and `services.env` (the URLs, with the password).
#   PG_PORT, MLFLOW_PORT  ports (default: free ones, chosen once and kept in services.env)
#   SERVICES_HOST         the address both servers bind to (default: 127.0.0.1, loopback only; see
#                         README "Scaling out" before changing it: neither server is exposed without auth)
#   PG_BIN                folder of initdb/pg_ctl (default: the newest /usr/lib/postgresql/*/bin)
#   PYTHON                interpreter with mlflow and psycopg2 (default: <repo>/.venv/bin/python)
#   MLFLOW_SERVER_WORKERS uvicorn workers of the tracking server (default: 2)
#
# PostgreSQL refuses to run as root: as root, the cluster is owned by and runs as the system user
# `postgres` (created if missing). Databases: `mlflow` (MLflow's backend store) and `optuna` (the
# harness work queue / study storage): separate, since both use alembic.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${HARNESS_SERVICES_DIR:-$repo/.services}"
host="${SERVICES_HOST:-127.0.0.1}"
py="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
dbuser=harness
envfile="$dir/services.env"

die() { echo "services.sh: error: $*" >&2; exit 1; }

pg_bin() {
  local b="${PG_BIN:-}"
  if [ -z "$b" ]; then
    b="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  fi
  [ -n "$b" ] && [ -x "$b/initdb" ] && [ -x "$b/pg_ctl" ] || \
    die "PostgreSQL server binaries not found (initdb, pg_ctl under /usr/lib/postgresql/*/bin): apt-get install -y postgresql, or set PG_BIN"
  echo "$b"
}

# Run a PostgreSQL server command as the cluster's owner.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

setting() { if [ -f "$envfile" ]; then sed -n "s/^export $1=//p" "$envfile" | tail -n 1; fi; }

password() {
  if [ ! -s "$dir/password" ]; then
    (umask 077; "$py" -c 'import secrets; print(secrets.token_hex(24))' > "$dir/password")
  fi
  chmod 600 "$dir/password"
  cat "$dir/password"
}

write_env() {
  local pw; pw="$(password)"
  local pg_port="$1" ml_port="$2"
  (umask 077; cat > "$envfile.tmp" <<EOF
export PG_PORT=$pg_port
export MLFLOW_PORT=$ml_port
export SERVICES_HOST=$host
export MLFLOW_TRACKING_URI=http://$host:$ml_port
export HARNESS_STORAGE=postgresql://$dbuser:$pw@$host:$pg_port/optuna
export MLFLOW_BACKEND_STORE_URI=postgresql://$dbuser:$pw@$host:$pg_port/mlflow
EOF
  )
  mv "$envfile.tmp" "$envfile"
}

ensure_dir() {
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  envfile="$dir/services.env"
  chmod 711 "$dir"  # the postgres user may traverse it, not list it
  local pg_port ml_port
  pg_port="${PG_PORT:-$(setting PG_PORT)}"; pg_port="${pg_port:-$(free_port)}"
  ml_port="${MLFLOW_PORT:-$(setting MLFLOW_PORT)}"; ml_port="${ml_port:-$(free_port)}"
  [ "$pg_port" != "$ml_port" ] || ml_port="$(free_port)"
  write_env "$pg_port" "$ml_port"
}

pg_running() { [ -f "$dir/pg/data/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" status >/dev/null 2>&1; }

psql_() {  # psql over TCP with the generated password (never on the command line)
  PGPASSWORD="$(password)" "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$(setting PG_PORT)" -U "$dbuser" "$@"
}

start_pg() {
  local bin; bin="$(pg_bin)"
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres || die "cannot create the system user postgres"
  fi
  mkdir -p "$dir/pg/run"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$dir/pg"
  as_pg test -w "$dir/pg" || die "the postgres user cannot write $dir/pg: a parent folder is closed to it; put HARNESS_SERVICES_DIR elsewhere (e.g. under /tmp or /srv)"
  if [ ! -f "$dir/pg/data/PG_VERSION" ]; then
    local pwfile="$dir/pg/.initpw"
    (umask 077; password > "$pwfile")
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_pg "$bin/initdb" -D "$dir/pg/data" -U "$dbuser" --pwfile="$pwfile" --auth=scram-sha-256 \
      -E UTF8 --locale=C >"$dir/pg/initdb.log" 2>&1 || { rm -f "$pwfile"; tail -n 20 "$dir/pg/initdb.log" >&2; die "initdb failed (log: $dir/pg/initdb.log)"; }
    rm -f "$pwfile"
  fi
  if pg_running; then
    echo "postgresql: already running on $host:$(setting PG_PORT)"
  else
    as_pg "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 60 \
      -o "-c listen_addresses=$host -p $(setting PG_PORT) -k $dir/pg/run" start >/dev/null || \
      { tail -n 20 "$dir/pg/postgres.log" >&2 || true; die "PostgreSQL did not start (log: $dir/pg/postgres.log)"; }
    echo "postgresql: started on $host:$(setting PG_PORT)"
  fi
  for db in mlflow optuna; do
    if [ -z "$(psql_ -d postgres -tAc "select 1 from pg_database where datname = '$db'")" ]; then
      psql_ -d postgres -c "create database $db" >/dev/null
    fi
  done
}

mlflow_pid() { [ -f "$dir/mlflow.pid" ] && kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null && cat "$dir/mlflow.pid"; }

health() {
  "$py" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

start_mlflow() {
  pg_running || die "PostgreSQL is not running: scripts/services.sh start pg"
  local url="http://$host:$(setting MLFLOW_PORT)"
  if mlflow_pid >/dev/null; then
    echo "mlflow: already running at $url"
    return
  fi
  "$py" -c "import mlflow, psycopg" 2>/dev/null || die "$py lacks mlflow or psycopg (PostgreSQL driver): make setup (requirements.txt)"
  mkdir -p "$dir/mlartifacts"
  # The backend URI (with the password) goes through the environment, not argv (ps shows argv to everyone).
  MLFLOW_BACKEND_STORE_URI="$(setting MLFLOW_BACKEND_STORE_URI)" setsid "$py" -m mlflow server \
    --host "$host" --port "$(setting MLFLOW_PORT)" --workers "${MLFLOW_SERVER_WORKERS:-2}" \
    --serve-artifacts --artifacts-destination "$dir/mlartifacts" \
    >>"$dir/mlflow.log" 2>&1 </dev/null &
  echo $! > "$dir/mlflow.pid"
  local t0=$SECONDS
  until health "$url"; do
    if ! mlflow_pid >/dev/null; then
      tail -n 30 "$dir/mlflow.log" >&2 || true
      die "the MLflow server exited (log: $dir/mlflow.log)"
    fi
    [ $((SECONDS - t0)) -lt 180 ] || { stop_mlflow; die "the MLflow server did not answer $url/health within 180 s (log: $dir/mlflow.log)"; }
    sleep 0.5
  done
  echo "mlflow: started at $url (artifacts in $dir/mlartifacts)"
}

stop_mlflow() {
  local pid
  if pid="$(mlflow_pid)"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true  # its process group: uvicorn workers too
    for _ in $(seq 1 20); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done  # 5 s, then KILL
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "mlflow: stopped"
  fi
  rm -f "$dir/mlflow.pid"
}

stop_pg() {
  if pg_running; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast -w -t 60 stop >/dev/null
    echo "postgresql: stopped"
  fi
}

redacted() { sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#'; }

status() {
  local rc=0
  [ -f "$envfile" ] || { echo "no services set up in $dir (scripts/services.sh start)"; return 3; }
  if pg_running; then echo "postgresql: running on $(setting SERVICES_HOST):$(setting PG_PORT) (data: $dir/pg/data)"
  else echo "postgresql: stopped"; rc=3; fi
  if mlflow_pid >/dev/null && health "$(setting MLFLOW_TRACKING_URI)"; then
    echo "mlflow: running at $(setting MLFLOW_TRACKING_URI) (UI and REST API; artifacts in $dir/mlartifacts)"
  else echo "mlflow: stopped"; rc=3; fi
  echo
  echo "Use (\`. $envfile\` sets MLFLOW_TRACKING_URI and HARNESS_STORAGE; the password is in $dir/password):"
  echo "  export MLFLOW_TRACKING_URI=$(setting MLFLOW_TRACKING_URI)"
  echo "  --tracking_uri $(setting MLFLOW_TRACKING_URI) --storage $(setting HARNESS_STORAGE | redacted)"
  echo "  e.g.  . $envfile && python -m harness suite run FILE --tracking_uri \$MLFLOW_TRACKING_URI --storage \"\$HARNESS_STORAGE\""
  return $rc
}

cmd="${1:-status}"; what="${2:-all}"
case "$what" in all|pg|mlflow) ;; *) die "unknown service '$what': expected pg or mlflow" ;; esac
case "$cmd" in
  start)
    ensure_dir
    case "$what" in pg) start_pg ;; mlflow) start_mlflow ;; all) start_pg; start_mlflow ;; esac
    status ;;
  stop)
    [ -d "$dir" ] || exit 0
    dir="$(cd "$dir" && pwd)"; envfile="$dir/services.env"
    case "$what" in pg) stop_pg ;; mlflow) stop_mlflow ;; all) stop_mlflow; stop_pg ;; esac ;;
  status)
    [ -d "$dir" ] || { echo "no services set up in $dir (scripts/services.sh start)"; exit 3; }
    dir="$(cd "$dir" && pwd)"; envfile="$dir/services.env"
    status ;;
  *) die "usage: scripts/services.sh start|stop|status [pg|mlflow]" ;;
esac

#!/usr/bin/env bash
# A real Iceberg REST catalog server for the Iceberg sink's REST catalog tests: lakana-server
# (PyPI, 0.20.0, FastAPI on pyiceberg's metadata types), on SQLite metadata and a local-file
# warehouse (or an S3 one: ROOT below). No Docker, no Java.
#
#   scripts/iceberg-rest.sh install            install if missing (venv cached under
#                                              ${TIDEMARK_CACHE:-$HOME/.cache/tidemark}), print
#                                              the venv's python
#   scripts/iceberg-rest.sh start PORT [DIR [ROOT]]
#                                              start a server on 127.0.0.1:PORT in the background
#                                              (state in DIR, default <cache>/iceberg-rest-run/PORT:
#                                              DIR/lakana.db, warehouse DIR/warehouse); prints
#                                              `uri=…`, `prefix=…`, `token=…` lines on stdout.
#                                              ROOT `s3://bucket/prefix` puts the warehouse in S3
#                                              instead, reached with ICEBERG_REST_S3_ENDPOINT
#                                              (e.g. moto's http://127.0.0.1:PORT),
#                                              ICEBERG_REST_S3_ACCESS_KEY_ID, _SECRET_ACCESS_KEY
#                                              and _REGION (default us-east-1); the bucket must
#                                              exist
#   scripts/iceberg-rest.sh stop PORT          stop the server started on PORT (by its pid file)
#   scripts/iceberg-rest.sh url PORT           print the base URI (http://127.0.0.1:PORT)
#
# Idempotent: `start` on a running port prints the same lines; `start` on an existing DIR keeps
# its tables (a restarted server sees them).
#
# What lakana-server needs (docs/iceberg.md, "Catalogs and storage"):
#  - a metadata database (`LAKANA_DATABASE__URL`, SQLAlchemy; SQLite works, PostgreSQL through
#    pg8000), migrated once with `lakana-server migrate`;
#  - a bootstrap administrator: with LAKANA_BOOTSTRAP_PAT_KEY_ID/_SECRET fixed here (test and
#    development only) its bearer token is `lakana_pat_<key id>_<secret>`;
#  - an *environment*, created through its platform API (`POST /api/v1/environments`): the
#    environment's name is the Iceberg REST `{prefix}`, its storage root the warehouse; tables
#    get server-assigned locations under `<root>/managed/<namespace>/<table>-<uuid>`; an
#    `s3://` root takes pyiceberg's `s3.endpoint`, `s3.access-key-id`, `s3.secret-access-key`,
#    `s3.region` as the environment's storage `options` (given inline here; lakana passes them
#    to pyiceberg's FileIO, with which it writes every metadata.json itself, and to s3fs);
#  - tables only under the top-level namespaces `bronze`, `silver` or `gold` (it refuses others
#    with 422), which every new environment has.
set -euo pipefail

VERSION=0.20.0
CACHE=${TIDEMARK_CACHE:-$HOME/.cache/tidemark}
VENV=$CACHE/iceberg-rest-venv
STAMP=$VENV/.tidemark-lakana-$VERSION
RUN_ROOT=$CACHE/iceberg-rest-run
ENVIRONMENT=tidemark
KEY_ID=7469646d61726b31
SECRET=tidemark-iceberg-rest-test-secret-0001
TOKEN=lakana_pat_${KEY_ID}_${SECRET}

log() { printf 'iceberg-rest: %s\n' "$*" >&2; }

install() {
  [ -f "$STAMP" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.iceberg-rest.lock"
  flock 9
  if [ ! -f "$STAMP" ]; then
    if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      log "lakana-server needs python3 >= 3.11 with venv; installing python3-venv"
      apt-get install -y python3-venv >&2 || { apt-get update >&2 && apt-get install -y python3-venv >&2; }
    fi
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
    log "installing lakana-server==$VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "lakana-server==$VERSION" >&2
    touch "$STAMP"
  fi
  flock -u 9
}

# The server's environment (everything it reads is a LAKANA_* variable).
server_env() {
  local dir=$1 port=$2
  export LAKANA_DATABASE__URL="sqlite:///$dir/lakana.db"
  export LAKANA_BOOTSTRAP_PAT_KEY_ID=$KEY_ID
  export LAKANA_BOOTSTRAP_PAT_SECRET=$SECRET
  export LAKANA_HOST=127.0.0.1
  export LAKANA_PORT=$port
  export LAKANA_LOG__ACCESS=${LAKANA_LOG__ACCESS:-true}
}

print_info() {
  echo "uri=http://127.0.0.1:$1"
  echo "prefix=$ENVIRONMENT"
  echo "token=$TOKEN"
}

wait_ready() {
  local port=$1 pid=$2
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/v1/config" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

cmd=${1:-}
case "$cmd" in
  install)
    install
    echo "$VENV/bin/python"
    ;;
  url)
    echo "http://127.0.0.1:${2:?usage: iceberg-rest.sh url PORT}"
    ;;
  start)
    port=${2:?usage: iceberg-rest.sh start PORT [DIR [ROOT]]}
    dir=${3:-$RUN_ROOT/$port}
    root=${4:-}
    mkdir -p "$RUN_ROOT" "$dir"
    [ -n "$root" ] || mkdir -p "$dir/warehouse"
    dir=$(cd "$dir" && pwd)
    pidfile=$RUN_ROOT/$port.pid
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "already running on $port (pid $(cat "$pidfile"))"
      print_info "$port"
      exit 0
    fi
    install
    server_env "$dir" "$port"
    "$VENV/bin/lakana-server" migrate >"$dir/migrate.log" 2>&1 || {
      log "migration failed; log: $dir/migrate.log"
      tail -n 20 "$dir/migrate.log" >&2
      exit 1
    }
    nohup "$VENV/bin/lakana-server" >>"$dir/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    if ! wait_ready "$port" "$pid"; then
      log "server on $port did not start; log: $dir/server.log"
      tail -n 30 "$dir/server.log" >&2 || true
      exit 1
    fi
    # The environment = the REST prefix and its warehouse; 409 when it exists already.
    if [ -z "$root" ]; then
      storage="{\"scheme\":\"file\",\"root\":\"file://$dir/warehouse\"}"
    else
      case "$root" in
        s3://?*) ;;
        *) log "ROOT must be s3://bucket/prefix, not $root"; exit 2 ;;
      esac
      storage=$(ROOT=$root "$VENV/bin/python" -c '
import json, os
opts = {"s3.region": os.environ.get("ICEBERG_REST_S3_REGION") or "us-east-1"}
for var, key in [("ENDPOINT", "s3.endpoint"), ("ACCESS_KEY_ID", "s3.access-key-id"),
                 ("SECRET_ACCESS_KEY", "s3.secret-access-key")]:
    if os.environ.get("ICEBERG_REST_S3_" + var):
        opts[key] = os.environ["ICEBERG_REST_S3_" + var]
print(json.dumps({"scheme": "s3", "root": os.environ["ROOT"], "options": opts}))')
    fi
    code=$(curl -sS -o "$dir/environment.json" -w '%{http_code}' -X POST \
      -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      "http://127.0.0.1:$port/api/v1/environments" \
      -d "{\"name\":\"$ENVIRONMENT\",\"storage\":$storage}")
    if [ "$code" != 201 ] && [ "$code" != 409 ]; then
      log "creating environment $ENVIRONMENT answered HTTP $code: $(cat "$dir/environment.json")"
      exit 1
    fi
    log "Iceberg REST catalog on http://127.0.0.1:$port (pid $pid, prefix $ENVIRONMENT, warehouse ${root:-file://$dir/warehouse}, state $dir, log $dir/server.log)"
    print_info "$port"
    ;;
  stop)
    port=${2:?usage: iceberg-rest.sh stop PORT}
    pidfile=$RUN_ROOT/$port.pid
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      log "stopped the server on $port (pid $pid)"
    fi
    ;;
  *)
    sed -n '2,38p' "$0" >&2
    exit 2
    ;;
esac

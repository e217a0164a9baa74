#!/usr/bin/env bash
# End-to-end Delta sink figures (docs/benchmarks.md, "Delta Lake"): PostgreSQL → tidemark →
# a mirror and a changelog Delta table, on this machine's local disk.
#   1. throughput: a backlog of CHANGES changes (1000-row transactions) is committed first, then
#      the pipeline catches up; rows/s = changes / catch-up time.
#   2. steady load: RATE transactions/s of 100 rows for STEADY seconds; commits and data files
#      per table, extrapolated to an hour, and commit latency from the sink's debug log.
# Usage: scripts/delta-bench.sh [tidemark binary]   (needs the services of scripts/services.sh)
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}/debug/tidemark}
CHANGES=${CHANGES:-100000}
RATE=${RATE:-5}
STEADY=${STEADY:-60}
S=$(printf '%08x' $RANDOM$RANDOM)
DB=tm_dbench_$S
DIR=$(mktemp -d /tmp/tm-dbench-XXXX)
PSQL="psql -X -q -At -h 127.0.0.1 -U postgres"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; sleep 1; $PSQL -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
$PSQL -d postgres -c "CREATE DATABASE $DB"
URL=postgres://postgres@127.0.0.1:5432/$DB
"$BIN" generate --url "$URL" --schema gen --changes 0 >/dev/null
cat > "$DIR/p.toml" <<TOML
[pipeline]
name = "dbench_$S"
[source]
kind = "postgres"
url = "$URL"
slot = "tm_dbench_$S"
publication = "tm_dbench_$S"
tables = ["gen.orders"]
status_interval = "1s"
[[sinks]]
kind = "delta"
name = "mirror"
root = "$DIR/mirror"
flush = { interval = "${FLUSH:-10s}" }
[[sinks]]
kind = "delta"
name = "log"
root = "$DIR/log"
mode = "changelog"
flush = { interval = "${FLUSH:-10s}" }
[checkpoint]
dir = "$DIR/cp"
interval = "1s"
[metrics]
enabled = false
TOML
caught_up() { # waits until the slot confirmed the current WAL end
  local target; target=$($PSQL -d "$DB" -c "SELECT pg_current_wal_lsn()")
  until [ "$($PSQL -d "$DB" -c "SELECT coalesce(confirmed_flush_lsn >= '$target', false) FROM pg_replication_slots WHERE slot_name = 'tm_dbench_$S'")" = t ]; do sleep 0.2; done
}
TIDEMARK_LOG=info,tidemark_delta=debug "$BIN" run --config "$DIR/p.toml" 2> "$DIR/log.txt" & PID=$!
until [ "$($PSQL -d "$DB" -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tm_dbench_$S'")" = 1 ]; do sleep 0.1; done
kill -STOP $PID   # build the backlog while the engine is paused
"$BIN" generate --url "$URL" --schema gen --changes "$CHANGES" --batch 1000 >/dev/null
T0=$(date +%s.%N); kill -CONT $PID; caught_up; T1=$(date +%s.%N)
echo "throughput: $CHANGES changes into mirror+changelog in $(echo "$T1 - $T0" | bc) s = $(echo "$CHANGES / ($T1 - $T0)" | bc) changes/s"
files() { find "$1" -name '*.parquet' -not -path '*_change_data*' | wc -l; }
versions() { ls "$1/_delta_log"/*.json | wc -l; }
M=$DIR/mirror/gen/orders; L=$DIR/log/gen/orders
m0=$(files "$M"); l0=$(files "$L"); mv0=$(versions "$M"); lv0=$(versions "$L")
"$BIN" generate --url "$URL" --schema gen --changes $((RATE * STEADY * 100)) --batch 100 --rate "$RATE" >/dev/null
caught_up
m1=$(files "$M"); l1=$(files "$L"); mv1=$(versions "$M"); lv1=$(versions "$L")
echo "steady ${RATE} txn/s x 100 rows for ${STEADY}s: mirror +$((mv1-mv0)) versions +$((m1-m0)) data files; changelog +$((lv1-lv0)) versions +$((l1-l0)) files"
echo "per hour: mirror $(( (m1-m0) * 3600 / STEADY )) files, changelog $(( (l1-l0) * 3600 / STEADY )) files"
grep 'delta commit' "$DIR/log.txt" | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'sink=[a-z]* .*ms=[0-9]*' | awk '{s=$1; for(i=1;i<=NF;i++) if ($i ~ /^ms=/) {split($i,a,"="); n[s]++; t[s]+=a[2]; if(a[2]>mx[s]) mx[s]=a[2]}} END {for (k in n) printf "commit latency %s: %d commits, mean %d ms, max %d ms\n", k, n[k], t[k]/n[k], mx[k]}'

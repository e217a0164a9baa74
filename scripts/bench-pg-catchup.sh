#!/usr/bin/env bash
# End-to-end catch-up benchmark of the PostgreSQL path, shaped like Debezium's baseline
# (../shared/research/debezium-baseline.md, "Catch-up"): 175,000 row changes (100 txns x 1,000
# INSERTs, 50 x 1,000 UPDATEs, 25 x 1,000 DELETEs, from `tidemark generate`) committed while the
# pipeline is stopped, then `tidemark run` (release build) drains the backlog into Debezium JSON
# lines (fsync on, 1 s checkpoints). Prints, per run: events/s (first -> last event), wall (process
# start -> last event), peak RSS (VmHWM) and CPU seconds (utime + stime) of the tidemark process at
# the last event, and the load average before the run.
#
#   scripts/bench-pg-catchup.sh [RUNS]        # default 3; needs scripts/services.sh done
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}
cargo build --release --quiet --no-default-features --bin tidemark
bin=$CARGO_TARGET_DIR/release/tidemark
PSQL=(psql -X -q -At -h 127.0.0.1 -U postgres)
now() { date +%s.%N; }
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }

for run in $(seq 1 "$RUNS"); do
  db=tm_bench_$RANDOM$RANDOM
  dir=$(mktemp -d /tmp/tidemark-bench-XXXXXX)
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE $db"
  url="postgres://postgres@127.0.0.1:5432/$db"
  "$bin" generate --url "$url" --reset --changes 0 >/dev/null 2>&1
  "${PSQL[@]}" -d "$db" -c "CREATE PUBLICATION bench_pub FOR TABLE tidemark_demo.orders" \
    -c "SELECT 1 FROM pg_create_logical_replication_slot('bench_slot', 'pgoutput')" >/dev/null
  cat > "$dir/p.toml" <<TOML
[pipeline]
name = "bench"
[source]
kind = "postgres"
url = "$url"
slot = "bench_slot"
publication = "bench_pub"
tables = ["tidemark_demo.orders"]
[[sinks]]
kind = "debezium_json"
path = "$dir/out.jsonl"
[checkpoint]
dir = "$dir/cp"
[metrics]
enabled = false
TOML
  "$bin" generate --url "$url" --changes 175000 --batch 1000 >/dev/null 2>&1
  want=200000   # 175,000 changes + 25,000 tombstones
  load=$(cut -d' ' -f1 /proc/loadavg)
  start=$(now)
  TIDEMARK_LOG=warn "$bin" run --config "$dir/p.toml" 2>"$dir/log" &
  pid=$!
  first=
  while :; do
    n=$(lines "$dir/out.jsonl")
    [ -z "$first" ] && [ "$n" -gt 0 ] && first=$(now)
    [ "$n" -ge "$want" ] && break
    kill -0 $pid 2>/dev/null || { cat "$dir/log"; exit 1; }
    sleep 0.02
  done
  last=$(now)
  rss_kb=$(awk '/^VmHWM:/ {print $2}' /proc/$pid/status)
  read -r utime stime < <(awk -v hz="$(getconf CLK_TCK)" '{print $14 / hz, $15 / hz}' /proc/$pid/stat)
  kill -TERM $pid; wait $pid || true
  python3 - "$run" "$load" "$start" "$first" "$last" "$rss_kb" "$utime" "$stime" <<'PY'
import sys
run, load, start, first, last, rss, u, s = sys.argv[1:]
start, first, last = float(start), float(first), float(last)
print(f"run {run}: load {load}  events/s {175000 / (last - first):,.0f}  first->last {last - first:.2f} s"
      f"  wall {last - start:.2f} s  peak RSS {int(rss) / 1024:.0f} MiB  CPU {float(u) + float(s):.2f} s")
PY
  "${PSQL[@]}" -d "$db" -c "SELECT pg_drop_replication_slot('bench_slot')" >/dev/null 2>&1 || true
  "${PSQL[@]}" -d postgres -c "DROP DATABASE $db WITH (FORCE)"
  rm -rf "$dir"
done

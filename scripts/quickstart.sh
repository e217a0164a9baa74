#!/usr/bin/env bash
# `make quickstart`: local databases ready, demo data, a pipeline running, events flowing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}
export TIDEMARK_PG_PASSWORD=${TIDEMARK_PG_PASSWORD:-tidemark}
bin=$CARGO_TARGET_DIR/debug/tidemark
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Turning on logical replication (scripts/services.sh)"
./scripts/services.sh

say "Building tidemark"
cargo build --bin tidemark

say "Creating the demo schema tidemark_demo (tidemark generate --reset --changes 0)"
"$bin" generate --reset --changes 0 --url "postgres://postgres@127.0.0.1:5432/tidemark"
psql -X -q -h 127.0.0.1 -U postgres -d tidemark -c "GRANT ALL ON SCHEMA tidemark_demo TO tidemark; GRANT SELECT ON ALL TABLES IN SCHEMA tidemark_demo TO tidemark" >/dev/null

mkdir -p .tidemark
rm -f .tidemark/quickstart.jsonl
say "Starting the pipeline (docs/examples/quickstart.toml) in the background"
"$bin" run --config docs/examples/quickstart.toml 2> .tidemark/quickstart.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for i in $(seq 1 60); do
  if curl -sf http://127.0.0.1:9187/readyz >/dev/null 2>&1; then break; fi
  if ! kill -0 $pid 2>/dev/null; then cat .tidemark/quickstart.log; exit 1; fi
  sleep 0.5
done

say "Committing 7,000 changes (tidemark generate)"
"$bin" generate --changes 7000 --batch 1000 --url "postgres://postgres@127.0.0.1:5432/tidemark"

say "Waiting for the events"
for i in $(seq 1 120); do
  n=$(wc -l < .tidemark/quickstart.jsonl 2>/dev/null || echo 0)
  [ "$n" -ge 7000 ] && break
  sleep 0.5
done
echo "$(wc -l < .tidemark/quickstart.jsonl) lines in .tidemark/quickstart.jsonl (changes plus a tombstone after each delete)"

say "The first event"
head -n 1 .tidemark/quickstart.jsonl | python3 -m json.tool

say "Metrics (http://127.0.0.1:9187/metrics)"
curl -s http://127.0.0.1:9187/metrics | grep -E '^tidemark_(source_events|lag_seconds|checkpoints)' | head -n 12

say "Stopping the pipeline (SIGTERM: it checkpoints first)"
kill -TERM $pid; wait $pid || true
cat .tidemark/checkpoints/quickstart.json
echo
if [ "${TIDEMARK_QUICKSTART_KEEP:-0}" = 1 ]; then
  echo "Slot tidemark_quickstart kept (TIDEMARK_QUICKSTART_KEEP=1): it holds WAL until the pipeline runs again."
  echo "Run it again with: $bin run --config docs/examples/quickstart.toml"
else
  # An inactive slot keeps every WAL segment written after it, on every database of the server:
  # left behind, the demo would slowly fill the disk. `reset` drops it (drop_slot_on_reset).
  say "Dropping the demo's replication slot and checkpoint (TIDEMARK_QUICKSTART_KEEP=1 keeps them)"
  "$bin" reset --config docs/examples/quickstart.toml
fi

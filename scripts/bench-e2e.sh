#!/usr/bin/env bash
# `make bench-e2e`: Tidemark vs Debezium end to end on this machine (benches/e2e/run.py says what
# is measured). Sets up what it needs (idempotent): the local servers (scripts/services.sh), the
# tansu broker (scripts/tansu.sh), the Debezium venv (scripts/debezium.sh) plus confluent-kafka
# for the benchmark's Kafka consumer, the MariaDB JDBC driver for Debezium's MariaDB connector
# (scripts/debezium-mariadb.sh), and a release build of tidemark with the Kafka sink and the
# MySQL/MariaDB source.
#
#   scripts/bench-e2e.sh [run.py options]      e.g. --changes 200000 --rate 10000 --batch 1000
#   scripts/bench-e2e.sh --halves mariadb      only the MariaDB half (default: postgres,mariadb)
#
# The report goes to stdout and $CARGO_TARGET_DIR/bench-e2e/report.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}
./scripts/services.sh >&2
./scripts/tansu.sh path >/dev/null
PY=$(./scripts/debezium.sh)
./scripts/debezium-mariadb.sh >/dev/null
if ! "$PY" -c 'import confluent_kafka' 2>/dev/null; then
  "$PY" -m pip install -q 'confluent-kafka==2.16.1' >&2
fi
cargo build --release --no-default-features --features kafka,mysql --bin tidemark >&2
exec "$PY" benches/e2e/run.py --tidemark "$CARGO_TARGET_DIR/release/tidemark" --python "$PY" \
  --out-dir "$CARGO_TARGET_DIR/bench-e2e" "$@"

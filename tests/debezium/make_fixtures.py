#!/usr/bin/env python3
"""(Re)generate the Debezium reference fixtures under tests/fixtures/debezium/pg/<name>/.

Each fixture runs in a fresh database (`dbz_fixture`): setup.sql, then a pgoutput slot is created,
then workload.sql, then Debezium (tests/debezium/capture.py) streams from the slot until idle. The
slot is dropped afterwards. Each fixture directory gets:

  setup.sql      the schema (and the publication `dbz_pub`)
  workload.sql   the changes that were captured
  pgoutput.tsv   the pgoutput messages of the workload (peeked before Debezium ran): lsn, xid, kind
  capture.json   the capture options (Debezium properties beyond capture.py's defaults)
  events.jsonl   what Debezium emitted (with key_raw/value_raw: the converter's exact text)
  warnings.txt   Debezium's WARN/ERROR log lines, deduplicated (values it nulled, ...)

Usage:  PY=$(scripts/debezium.sh); $PY tests/debezium/make_fixtures.py [NAME ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "tests" / "fixtures" / "debezium" / "pg"
DB = "dbz_fixture"
SLOT = "dbz_fixture_slot"
ALL_TYPES_TABLES = "public.all_types_default,public.all_types_full"

# name -> (workload dir, capture.py extra args)
FIXTURES: dict[str, tuple[str, list[str]]] = {
    "all_types_default": ("all_types", []),
    "all_types_decimal_string": ("all_types", ["--prop", "decimal.handling.mode=string"]),
    "all_types_decimal_double": ("all_types", ["--prop", "decimal.handling.mode=double"]),
    "all_types_time_connect": ("all_types", ["--prop", "time.precision.mode=connect"]),
    "all_types_schemas": ("all_types", ["--schemas-enable"]),
    "misc_default": ("misc", []),
    "misc_skipped_none": ("misc", ["--prop", "skipped.operations=none"]),
    "misc_tx_metadata": ("misc", ["--prop", "skipped.operations=none", "--prop", "provide.transaction.metadata=true"]),
}


def psql(db: str, *args: str, stdin: str | None = None) -> None:
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", db, *args]
    subprocess.run(cmd, input=stdin, text=True, check=True, stdout=subprocess.DEVNULL)


def workload_sql(wl: Path) -> str:
    tmpl = wl / "workload.tmpl.sql"
    if tmpl.exists():
        text = tmpl.read_text()
        parts = [f"-- ===== table {t} =====\n" + text.replace("@T@", t) for t in ("all_types_default", "all_types_full")]
        return "\n".join(parts)
    return (wl / "workload.sql").read_text()


def describe(data: bytes) -> str:
    """A one-line summary of a pgoutput (proto 1) message."""
    kind = chr(data[0]) if data else "?"
    be = lambda a, b: int.from_bytes(data[a:b], "big")  # noqa: E731
    if kind == "B":
        return f"B final_lsn={be(1, 9)} xid={be(17, 21)}"
    if kind == "C":
        return f"C commit_lsn={be(2, 10)} end_lsn={be(10, 18)}"
    if kind in "IUDR":
        return f"{kind} rel={be(1, 5)}"
    if kind == "T":
        return f"T nrels={be(1, 5)} options={data[5]}"
    if kind == "M":
        end = data.index(0, 10)
        return f"M transactional={data[1]} lsn={be(2, 10)} prefix={data[10:end].decode()}"
    return kind


def peek() -> str:
    sql = (f"SELECT lsn - '0/0', coalesce(xid::text, ''), encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes("
           f"'{SLOT}', NULL, NULL, 'proto_version', '1', 'publication_names', 'dbz_pub', 'messages', 'true')")
    out = subprocess.run(["psql", "-X", "-At", "-F", "\t", "-h", "127.0.0.1", "-U", "postgres", "-d", DB, "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    rows = ["lsn\txid\tmessage"]
    for line in out.splitlines():
        lsn, xid, hexdata = line.split("\t")
        rows.append(f"{lsn}\t{xid}\t{describe(bytes.fromhex(hexdata))}")
    return "\n".join(rows) + "\n"


def reset_db() -> None:
    psql("postgres", "-c", f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{DB}'")
    psql("postgres", "-c", f"DROP DATABASE IF EXISTS {DB}")
    psql("postgres", "-c", f"CREATE DATABASE {DB}")


def make(name: str) -> None:
    wl_name, extra = FIXTURES[name]
    wl = HERE / "workloads" / wl_name
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    setup = (wl / "setup.sql").read_text()
    work = workload_sql(wl)
    (d / "setup.sql").write_text(setup)
    (d / "workload.sql").write_text(work)
    tables = ALL_TYPES_TABLES if wl_name == "all_types" else ""
    args = [
        "--dbname", DB, "--slot", SLOT, "--publication", "dbz_pub", "--topic-prefix", "tm",
        "--create-slot", "--drop-slot", "--raw", "--idle-timeout", "6",
        "--out", str(d / "events.jsonl"),
    ]
    if tables:
        args += ["--tables", tables]
    args += extra
    (d / "capture.json").write_text(json.dumps({"workload": wl_name, "capture_args": extra, "tables": tables,
                                                "slot_created_before_workload": True}, indent=2) + "\n")
    reset_db()
    psql(DB, "-f", str(d / "setup.sql"))
    # Slot first, then the workload, then a peek at what pgoutput will send (message LSNs are what
    # Debezium puts in source.lsn/sequence), then Debezium streams from the same slot.
    psql(DB, "-c", f"SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')")
    psql(DB, "-f", str(d / "workload.sql"))
    (d / "pgoutput.tsv").write_text(peek())
    print(f"== {name}", file=sys.stderr, flush=True)
    res = subprocess.run([sys.executable, str(HERE / "capture.py"), *args], cwd="/tmp",
                         stderr=subprocess.PIPE, text=True)
    sys.stderr.write(res.stderr)
    if res.returncode != 0:
        raise SystemExit(f"capture failed for {name} (exit {res.returncode})")
    # Debezium's warnings (e.g. values it could not convert and emitted as null), deduplicated.
    seen: list[str] = []
    for line in res.stderr.splitlines():
        if line.startswith("dbz ") and line not in seen:
            seen.append(line)
    (d / "warnings.txt").write_text("".join(s + "\n" for s in seen))
    psql("postgres", "-c", f"DROP DATABASE IF EXISTS {DB}")


def main() -> None:
    names = sys.argv[1:] or list(FIXTURES)
    for n in names:
        if n not in FIXTURES:
            raise SystemExit(f"unknown fixture {n}; known: {', '.join(FIXTURES)}")
        make(n)


if __name__ == "__main__":
    main()

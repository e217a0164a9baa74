#!/usr/bin/env python3
"""Reads an Iceberg table with an independent reader and compares it with a PostgreSQL table.

Used by the integration tests (tests/it/iceberg_*.rs) and the benchmark. Prints one JSON
object on stdout:
  {"reader": ..., "pg_rows": n, "lake_rows": m, "distinct_keys": k, "equal": bool,
   "diff": [first differences], "seconds": scan time}

Readers: pyiceberg (SqlCatalog, position deletes applied), polars (scan_iceberg on the
pyiceberg table), duckdb (iceberg extension from the duckdb-ext-iceberg PyPI package).
With --pg-dsn omitted only the lake side is read (counts and scan time).
"""
import argparse
import datetime as dt
import decimal
import json
import math
import re
import struct
import sys
import time
import uuid

INTERVAL_RE = re.compile(r"^(-?\d+) mons (-?\d+) days (-?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")


def canon(v, kind=None):
    """A comparable, JSON-friendly form of a value from either side."""
    if v is None:
        return None
    if kind == "float4" and isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return repr(v)
        return repr(struct.unpack("f", struct.pack("f", v))[0])
    if kind == "interval":
        if isinstance(v, dt.timedelta):
            return (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds
        m = INTERVAL_RE.match(v)
        if m:
            months, days, sign, h, mi, s, frac = m.groups()
            us = (int(h) * 3600 + int(mi) * 60 + int(s)) * 1_000_000 + int((frac or "0").ljust(6, "0"))
            return (int(months) * 30 * 86400 + int(days) * 86400) * 1_000_000 + (-us if sign else us)
        return v
    if kind in ("json", "jsonb"):
        if isinstance(v, str):
            v = json.loads(v)
        return json.dumps(v, sort_keys=True)
    if kind == "uuid":
        if isinstance(v, (bytes, bytearray)):
            return str(uuid.UUID(bytes=bytes(v)))
        return str(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return v
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            return v.astimezone(dt.timezone.utc).isoformat()
        return v.isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [canon(x, kind[:-2] if kind and kind.endswith("[]") else None) for x in v]
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def pg_rows(dsn, table, key, columns=None):
    import psycopg2

    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    schema, name = table.split(".", 1)
    cur.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (table,),
    )
    cols = cur.fetchall()
    kinds = {}
    for col, fmt, typ in cols:
        base = typ.lstrip("_")
        k = {"float4": "float4", "interval": "interval", "json": "json", "jsonb": "jsonb", "uuid": "uuid"}.get(base)
        kinds[col] = (k + "[]" if typ.startswith("_") else k) if k else None
    select = ", ".join('"%s"' % c for c in columns) if columns else "*"
    cur.execute('SELECT %s FROM "%s"."%s"' % (select, schema, name))
    names = [d[0] for d in cur.description]
    rows = {}
    for r in cur.fetchall():
        rec = {n: canon(v, kinds.get(n)) for n, v in zip(names, r)}
        rows[json.dumps([rec[k] for k in key])] = rec
    conn.close()
    return rows, kinds


def lake_records(args):
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog(args.catalog_name, uri=args.catalog_uri)
    tbl = cat.load_table(args.table)
    start = time.monotonic()
    if args.reader == "pyiceberg":
        scan = tbl.scan(selected_fields=tuple(args.columns.split(","))) if args.columns else tbl.scan()
        records = scan.to_arrow().to_pylist()
    elif args.reader == "polars":
        import polars as pl

        records = pl.scan_iceberg(tbl).collect().to_arrow().to_pylist()
    elif args.reader == "duckdb":
        import sysconfig

        import duckdb

        # The duckdb-ext-* wheels ship the extensions under site-packages/duckdb_ext: no
        # download at query time.
        ext_dir = sysconfig.get_paths()["purelib"] + "/duckdb_ext/extensions"
        con = duckdb.connect(config={"extension_directory": ext_dir, "autoinstall_known_extensions": False})
        con.execute("LOAD avro")
        con.execute("LOAD iceberg")
        q = "SELECT * FROM iceberg_scan('%s')" % tbl.metadata_location
        res = con.execute(q).arrow()
        records = (res.read_all() if hasattr(res, "read_all") else res).to_pylist()
    else:
        raise SystemExit("unknown reader " + args.reader)
    return records, time.monotonic() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--catalog-uri", required=True)
    p.add_argument("--catalog-name", default="tidemark")
    p.add_argument("--table", required=True, help="namespace.table in the catalog")
    p.add_argument("--reader", default="pyiceberg")
    p.add_argument("--pg-dsn")
    p.add_argument("--pg-table")
    p.add_argument("--key", default="id")
    p.add_argument("--changelog", action="store_true", help="print the changelog rows instead")
    p.add_argument("--columns", help="compare only these columns (comma-separated; pyiceberg reader)")
    args = p.parse_args()
    key = args.key.split(",")
    records, secs = lake_records(args)
    if args.changelog:
        out = [{k: canon(v) for k, v in r.items()} for r in records]
        print(json.dumps({"reader": args.reader, "rows": out, "seconds": secs}))
        return
    result = {"reader": args.reader, "lake_rows": len(records), "seconds": secs}
    if args.pg_dsn:
        columns = args.columns.split(",") if args.columns else None
        expected, kinds = pg_rows(args.pg_dsn, args.pg_table, key, columns)
        actual = {}
        dups = 0
        for r in records:
            rec = {n: canon(v, kinds.get(n)) for n, v in r.items()}
            k = json.dumps([rec.get(c) for c in key])
            if k in actual:
                dups += 1
            actual[k] = rec
        diff = []
        for k in sorted(set(expected) | set(actual)):
            e, a = expected.get(k), actual.get(k)
            if e != a:
                if e and a:
                    cols = {c: [e.get(c), a.get(c)] for c in set(e) | set(a) if e.get(c) != a.get(c)}
                    diff.append({"key": k, "columns": cols})
                else:
                    diff.append({"key": k, "pg": e, "lake": a})
            if len(diff) >= 5:
                break
        result.update(
            pg_rows=len(expected),
            distinct_keys=len(actual),
            duplicates=dups,
            equal=not diff and dups == 0 and len(records) == len(expected),
            diff=diff,
        )
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, do not hide: the test prints this
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        sys.exit(2)

#!/usr/bin/env python3
"""An independent reader of the Delta sink's tables for the integration tests.

Runs in the lake venv (scripts/lake-readers.sh installs PyPI `deltalake`, delta-rs' Python
binding, which shares no code path with the sink's Rust writer above the Parquet/JSON formats).
Prints JSON on stdout.

  delta_read.py rows PATH SPEC        SPEC: JSON [[column, kind], ...]; one row per table row,
                                      each value in the canonical text form of its kind (the
                                      tests build the same form from PostgreSQL with SQL)
  delta_read.py checksum PATH SPEC    {"count": n, "md5": md5 of the canonical rows joined}
  delta_read.py cdf PATH SPEC         load_cdf(starting_version=0): [[version, change_type, values...]]
  delta_read.py changelog PATH        {"rows": n, "distinct_positions": n, "by_type": {...}}
  delta_read.py write PATH STEP       writes a CDF-enabled source table with delta-rs' Python
                                      writer: step 0 creates ids 1-5, 1 updates id 2, 2 deletes
                                      id 3, 3 appends id 6, 4 updates id 1

Kinds: text (str), bool (true/false), int, float (repr, PostgreSQL spelling of NaN/Infinity),
decimal (exact, NaN/Infinity from `_markers`), hex (bytes), days (date as days since 1970),
micros (timestamps, times as integer microseconds), interval (months/days/micros),
jsonlist (arrays as compact JSON).

PATH may be an object store URI (`s3://bucket/prefix/ns/table`): the JSON object in the
environment variable TM_DELTA_STORAGE is passed to delta-rs as its storage options
(endpoint, region, credentials), as the sink's `storage_options`.
"""
import hashlib
import json
import math
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

def open_table(path):
    """The Delta table at `path`, with TM_DELTA_STORAGE's storage options when set."""
    options = os.environ.get("TM_DELTA_STORAGE")
    if options:
        return DeltaTable(path, storage_options=json.loads(options))
    return DeltaTable(path)


SPECIAL = {"nan": "NaN", "infinity": "Infinity", "-infinity": "-Infinity"}


def marker_map(markers):
    """column -> special text for the after image (NaN/Infinity markers)."""
    out = {}
    for m in markers or []:
        if m.get("image") in (None, "after") and m.get("kind") in SPECIAL:
            out[m["column"]] = SPECIAL[m["kind"]]
    return out


def prepare(table, spec):
    """Casts timestamp/date columns to integers so infinite values survive to_pylist."""
    cols = {}
    for name, kind in spec:
        col = table.column(name)
        if kind == "micros" and pa.types.is_timestamp(col.type):
            col = pc.cast(col, pa.int64())
        elif kind == "days" and pa.types.is_date32(col.type):
            col = pc.cast(col, pa.int32())
        cols[name] = col.to_pylist()
    return cols


def canon(kind, v):
    if v is None:
        return None
    if kind == "bool":
        return "true" if v else "false"
    if kind == "float":
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(float(v))
    if kind == "hex":
        return v.hex()
    if kind == "interval":
        return f"{v['months']}/{v['days']}/{v['nanoseconds'] // 1000}"
    if kind == "jsonlist":
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return str(v)


def rows(path, spec):
    table = open_table(path).to_pyarrow_table()
    cols = prepare(table, spec)
    markers = table.column("_markers").to_pylist() if "_markers" in table.column_names else [None] * table.num_rows
    out = []
    for i in range(table.num_rows):
        special = marker_map(markers[i])
        row = []
        for name, kind in spec:
            v = cols[name][i]
            row.append(special.get(name) if v is None and name in special else canon(kind, v))
        out.append(row)
    out.sort(key=lambda r: int(r[0]))
    return out


def cdf(path, spec):
    reader = open_table(path).load_cdf(starting_version=0)
    # deltalake 1.x returns an arro3 reader: to pyarrow through the Arrow C stream interface.
    table = pa.RecordBatchReader.from_stream(reader).read_all()
    cols = prepare(table, spec)
    ct = table.column("_change_type").to_pylist()
    ver = table.column("_commit_version").to_pylist()
    out = []
    for i in range(table.num_rows):
        out.append([ver[i], ct[i]] + [canon(kind, cols[name][i]) for name, kind in spec])
    out.sort(key=lambda r: (r[0], int(r[2]), r[1]))
    return out


def changelog(path):
    table = open_table(path).to_pyarrow_table()
    pos = table.column("_position")
    by_type = {}
    for t in table.column("_change_type").to_pylist():
        by_type[t] = by_type.get(t, 0) + 1
    return {
        "rows": table.num_rows,
        "distinct_positions": len(pc.unique(pos)),
        "by_type": by_type,
    }


def write(path, step):
    from deltalake import write_deltalake

    if step == 0:
        data = pa.table({"id": pa.array([1, 2, 3, 4, 5], pa.int64()),
                         "v": ["a", "b", "c", "d", "e"],
                         "amount": pa.array([1.5, 2.5, 3.5, 4.5, 5.5], pa.float64())})
        write_deltalake(path, data, configuration={"delta.enableChangeDataFeed": "true"})
    elif step == 1:
        open_table(path).update(predicate="id = 2", updates={"v": "'b2'"})
    elif step == 2:
        open_table(path).delete("id = 3")
    elif step == 3:
        data = pa.table({"id": pa.array([6], pa.int64()), "v": ["f"],
                         "amount": pa.array([6.5], pa.float64())})
        write_deltalake(path, data, mode="append")
    elif step == 4:
        open_table(path).update(predicate="id = 1", updates={"v": "'a2'", "amount": "10.0"})
    return {"version": open_table(path).version()}


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "rows":
        print(json.dumps(rows(path, json.loads(sys.argv[3]))))
    elif cmd == "checksum":
        r = rows(path, json.loads(sys.argv[3]))
        text = ",".join("|".join("N" if v is None else v for v in row) for row in r)
        print(json.dumps({"count": len(r), "md5": hashlib.md5(text.encode()).hexdigest()}))
    elif cmd == "cdf":
        print(json.dumps(cdf(path, json.loads(sys.argv[3]))))
    elif cmd == "write":
        print(json.dumps(write(path, int(sys.argv[3]))))
    elif cmd == "changelog":
        print(json.dumps(changelog(path)))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
    # Skip interpreter teardown: deltalake's runtime threads can abort the process at exit
    # ("terminate called without an active exception") after the answer was printed.
    sys.stdout.flush()
    os._exit(0)

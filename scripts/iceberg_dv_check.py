#!/usr/bin/env python3
"""Checks the deletion vectors of an Iceberg format v3 table independently of the writer.

Used by tests/it/iceberg_sink.rs (iceberg_v3_deletion_vectors_match_source). The live delete
files of the current snapshot are read with pyiceberg's Avro decoder and the v3 manifest schema; each deletion vector's blob is read at the
manifest entry's content_offset / content_size_in_bytes and checked against the Puffin spec:
length (big-endian) = magic + bitmap, magic D1 D3 39 64, CRC-32 (zlib) big-endian over magic +
bitmap, the bitmap decoded by CRoaring (pyroaring BitMap64, portable 64-bit format), its
cardinality equal to the footer's `cardinality` and the entry's record_count, the footer's
blob offset/length equal to the entry's. Prints one JSON object.

With --upgraded (a table upgraded from v2: iceberg_v2_table_upgrades_to_v3_and_merges_old_deletes)
live Parquet position delete files are allowed (the spec keeps them valid until DVs replace
them) and read with pyarrow; no data file may have both a DV and a live position delete file
(the sink replaces a position delete file whole). --v2-snapshot ID: the Parquet position
deletes live in that (pre-upgrade) snapshot are read too, and every current DV of a data file
they name must hold all their positions (the spec's merge rule for the first DV of such a
file). "merged" counts those DVs.
"""
import argparse
import json
import zlib

from pyroaring import BitMap64


def field(df, name):
    """A v3 DataFile field by name: pyiceberg 0.12 has no property for the v3 ones."""
    from pyiceberg.manifest import DATA_FILE_TYPE

    return df[[f.name for f in DATA_FILE_TYPE[3].fields].index(name)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--catalog-uri", required=True)
    p.add_argument("--catalog-name", default="tidemark")
    p.add_argument("--table", required=True)
    p.add_argument("--upgraded", action="store_true")
    p.add_argument("--v2-snapshot", type=int)
    args = p.parse_args()
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.manifest import FileFormat

    tbl = SqlCatalog(args.catalog_name, uri=args.catalog_uri).load_table(args.table)
    out = {"format_version": tbl.metadata.format_version, "dvs": 0, "positions": 0, "errors": []}
    out["next_row_id"] = getattr(tbl.metadata, "next_row_id", None)
    # pyiceberg 0.12 reads manifests with its v2 schema (no content_offset, no
    # referenced_data_file): the delete manifests are read here with the v3 one.
    from pyiceberg.avro.file import AvroFile
    from pyiceberg.manifest import (
        MANIFEST_ENTRY_SCHEMAS,
        DataFile,
        DataFileContent,
        ManifestContent,
        ManifestEntry,
        ManifestEntryStatus,
    )

    snap = tbl.current_snapshot()
    entries = []
    for m in snap.manifests(tbl.io) if snap else []:
        if m.content != ManifestContent.DELETES:
            continue
        with AvroFile[ManifestEntry](
            tbl.io.new_input(m.manifest_path),
            MANIFEST_ENTRY_SCHEMAS[3],
            read_types={-1: ManifestEntry, 2: DataFile},
            read_enums={0: ManifestEntryStatus, 101: FileFormat, 134: DataFileContent},
        ) as reader:
            entries += [e.data_file for e in reader if e.status != ManifestEntryStatus.DELETED]
    out["targets"] = len(
        {field(df, "referenced_data_file") for df in entries if df.file_format == FileFormat.PUFFIN}
    )
    def positions(df, into):
        import pyarrow.parquet as pq

        with tbl.io.new_input(df.file_path).open() as f:
            t = pq.read_table(f, columns=["file_path", "pos"])
        for path, pos in zip(t.column("file_path").to_pylist(), t.column("pos").to_pylist()):
            into.setdefault(path, set()).add(pos)

    live_old = {}
    out["parquet_deletes"] = 0
    out["merged"] = 0
    for df in entries:
        if df.file_format == FileFormat.PUFFIN:
            continue
        if not args.upgraded:
            out["errors"].append(f"{df.file_path}: not a Puffin deletion vector")
            continue
        positions(df, live_old)
        out["parquet_deletes"] += 1
    old = {}
    if args.v2_snapshot is not None:
        v2 = tbl.snapshot_by_id(args.v2_snapshot)
        for m in v2.manifests(tbl.io):
            if m.content != ManifestContent.DELETES:
                continue
            for e in m.fetch_manifest_entry(tbl.io, discard_deleted=True):
                positions(e.data_file, old)
    for df in entries:
        if df.file_format != FileFormat.PUFFIN:
            continue
        with tbl.io.new_input(df.file_path).open() as f:
            data = f.read()
        errs = out["errors"]
        if data[:4] != b"PFA1" or data[-4:] != b"PFA1":
            errs.append(f"{df.file_path}: Puffin magic")
            continue
        size = int.from_bytes(data[-12:-8], "little")
        footer = json.loads(data[-12 - size : -12])
        off, ln = field(df, "content_offset"), field(df, "content_size_in_bytes")
        blobs = [b for b in footer["blobs"] if b["offset"] == off]
        if len(blobs) != 1 or blobs[0]["length"] != ln or blobs[0]["type"] != "deletion-vector-v1":
            errs.append(f"{df.file_path}@{off}: no footer blob of that offset/length")
            continue
        blob = data[off : off + ln]
        n = int.from_bytes(blob[:4], "big")
        body = blob[4 : 4 + n]
        if n + 8 != len(blob) or body[:4] != bytes([0xD1, 0xD3, 0x39, 0x64]):
            errs.append(f"{df.file_path}@{off}: length or magic")
            continue
        if int.from_bytes(blob[4 + n :], "big") != zlib.crc32(body):
            errs.append(f"{df.file_path}@{off}: CRC-32")
            continue
        bm = BitMap64.deserialize(body[4:])
        props = blobs[0]["properties"]
        if len(bm) != int(props["cardinality"]) or len(bm) != df.record_count:
            errs.append(f"{df.file_path}@{off}: cardinality {len(bm)} vs {props['cardinality']} / {df.record_count}")
        if props["referenced-data-file"] != field(df, "referenced_data_file"):
            errs.append(f"{df.file_path}@{off}: referenced-data-file")
        if field(df, "referenced_data_file") in live_old:
            errs.append(f"{df.file_path}@{off}: a DV and a live position delete file for one data file")
        before = old.get(field(df, "referenced_data_file"))
        if before:
            missing = sorted(before - set(bm))
            if missing:
                errs.append(f"{df.file_path}@{off}: old position deletes {missing[:10]} not in the DV")
            out["merged"] += 1
        out["dvs"] += 1
        out["positions"] += len(bm)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

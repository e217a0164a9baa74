//! Deletion vectors (Iceberg format v3): the deleted row positions of one data file as a
//! roaring bitmap in a Puffin `deletion-vector-v1` blob, written here byte by byte.
//!
//! ```text
//! Puffin file:  "PFA1" │ blob 1 │ blob 2 │ … │ "PFA1" footer-JSON len(u32 LE) flags(4) "PFA1"
//! DV blob:      len(u32 BE) │ D1 D3 39 64 │ portable 64-bit roaring bitmap │ CRC-32(u32 BE)
//!                  └── = 4 + bitmap bytes ─┘   └─ CRC over magic + bitmap ─┘
//! bitmap:       count(u64 LE) │ per key (high 32 bits, ascending): key(u32 LE) │ 32-bit
//!               roaring bitmap, portable format
//! manifest:     content = position deletes, format = puffin, record_count = cardinality,
//!               referenced_data_file = the data file, content_offset / content_size_in_bytes
//!               = the blob's offset / length in the Puffin file
//! ```
//!
//! Spec: Iceberg table spec "Deletion Vectors" and the Puffin spec "deletion-vector-v1 blob
//! type" (<https://iceberg.apache.org/puffin-spec/#deletion-vector-v1-blob-type>).
//!
//! # Traps
//! - Length and CRC are **big-endian**, the bitmap inside is little-endian (kept compatible
//!   with Delta's deletion vectors). The CRC is CRC-32 (zlib/IEEE), not CRC-32C.
//! - Blob metadata: `snapshot-id` and `sequence-number` are -1 (inherited at commit; not
//!   known when the file is written), `fields` = [row position field id], no
//!   `compression-codec` (DVs are never compressed), properties `referenced-data-file` and
//!   `cardinality` required.
//! - At most one DV per data file per snapshot: a new DV merges the previous one, and the
//!   previous one's manifest entry is removed in the same snapshot (`commit/snapshot.rs`).
//! - iceberg 0.10.1's Puffin writer does not return blob offsets and its scan does not apply
//!   DVs (its delete loader parses every position-delete file as Parquet): offsets are
//!   computed here, and the sink's own reads (index rebuild, compaction) apply DVs itself.
//! - pyiceberg 0.12 applies every blob of a Puffin file to the data file the blob names,
//!   whichever manifest entry led it there, and polars falls back when two Puffin files hold
//!   blobs of one data file. So a Puffin file is live whole or not at all: when one of its
//!   DVs is replaced, its other DVs are copied into the new Puffin file too and all of its
//!   entries are removed (`table.rs`). No reader ever meets a superseded blob.

use bytes::Bytes;
use iceberg::io::FileIO;
use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Struct};
use roaring::RoaringTreemap;

use crate::error::{IcebergError, IoContext};

/// Magic bytes at the start of a `deletion-vector-v1` blob's content.
pub const DV_MAGIC: [u8; 4] = [0xD1, 0xD3, 0x39, 0x64];
/// Puffin file magic ("Puffin Fratercula arctica, version 1").
pub const PUFFIN_MAGIC: [u8; 4] = *b"PFA1";
/// The Puffin blob type of a deletion vector.
pub const DV_BLOB_TYPE: &str = "deletion-vector-v1";
/// `fields` of a DV blob: the row position metadata column (`_pos`, 2147483545).
pub const DV_FIELD_ID: i32 = iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_POS;

/// Serialises `bitmap` as a `deletion-vector-v1` blob (framing included).
pub fn encode_blob(bitmap: &RoaringTreemap) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + bitmap.serialized_size());
    body.extend_from_slice(&DV_MAGIC);
    bitmap
        .serialize_into(&mut body)
        .expect("INVARIANT: writing into a Vec cannot fail");
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out
}

/// Parses a `deletion-vector-v1` blob: checks length, magic and CRC.
pub fn decode_blob(blob: &[u8]) -> Result<RoaringTreemap, String> {
    if blob.len() < 12 {
        return Err(format!(
            "deletion vector of {} bytes is too short",
            blob.len()
        ));
    }
    let len = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    if len + 8 != blob.len() {
        return Err(format!(
            "deletion vector length field {len} does not match the blob's {} bytes",
            blob.len()
        ));
    }
    let body = &blob[4..4 + len];
    if body[..4] != DV_MAGIC {
        return Err(format!("deletion vector magic {:02x?}", &body[..4]));
    }
    let crc = u32::from_be_bytes([blob[4 + len], blob[5 + len], blob[6 + len], blob[7 + len]]);
    if crc != crc32fast::hash(body) {
        return Err("deletion vector CRC-32 mismatch".into());
    }
    RoaringTreemap::deserialize_from(&body[4..]).map_err(|e| format!("deletion vector bitmap: {e}"))
}

/// The live deletion vector of a data file and the Puffin file holding it.
#[derive(Clone, Debug)]
pub struct LiveDv {
    pub bitmap: RoaringTreemap,
    pub puffin: std::sync::Arc<str>,
}

/// One blob of a Puffin file being written.
pub struct DvBlob<'a> {
    pub referenced_data_file: &'a str,
    pub bitmap: &'a RoaringTreemap,
}

/// A Puffin file of deletion vectors; the `(offset, length)` of each blob, in order.
pub fn puffin_file(blobs: &[DvBlob<'_>]) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut out = PUFFIN_MAGIC.to_vec();
    let mut spans = Vec::with_capacity(blobs.len());
    let mut meta = Vec::with_capacity(blobs.len());
    for b in blobs {
        let blob = encode_blob(b.bitmap);
        let span = (out.len() as u64, blob.len() as u64);
        out.extend_from_slice(&blob);
        meta.push(serde_json::json!({
            "type": DV_BLOB_TYPE,
            "fields": [DV_FIELD_ID],
            "snapshot-id": -1,
            "sequence-number": -1,
            "offset": span.0,
            "length": span.1,
            "properties": {
                "referenced-data-file": b.referenced_data_file,
                "cardinality": b.bitmap.len().to_string(),
            },
        }));
        spans.push(span);
    }
    let footer = serde_json::json!({
        "blobs": meta,
        "properties": { "created-by": concat!("tidemark ", env!("CARGO_PKG_VERSION")) },
    })
    .to_string();
    out.extend_from_slice(&PUFFIN_MAGIC);
    out.extend_from_slice(footer.as_bytes());
    out.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // flags: footer not compressed
    out.extend_from_slice(&PUFFIN_MAGIC);
    (out, spans)
}

/// Whether a manifest entry's file is a deletion vector.
pub fn is_dv(df: &DataFile) -> bool {
    df.content_type() == DataContentType::PositionDeletes
        && df.file_format() == DataFileFormat::Puffin
}

/// The manifest entry of one DV blob.
#[allow(clippy::too_many_arguments)]
pub fn dv_data_file(
    puffin_path: &str,
    puffin_size: u64,
    span: (u64, u64),
    referenced_data_file: &str,
    cardinality: u64,
    partition: Struct,
    spec_id: i32,
) -> Result<DataFile, IcebergError> {
    DataFileBuilder::default()
        .content(DataContentType::PositionDeletes)
        .file_path(puffin_path.to_owned())
        .file_format(DataFileFormat::Puffin)
        .partition(partition)
        .partition_spec_id(spec_id)
        .record_count(cardinality)
        .file_size_in_bytes(puffin_size)
        .referenced_data_file(Some(referenced_data_file.to_owned()))
        .content_offset(Some(span.0 as i64))
        .content_size_in_bytes(Some(span.1 as i64))
        .build()
        .map_err(|e| IcebergError::corrupt(puffin_path, format!("deletion vector entry: {e}")))
}

/// Reads the DV a manifest entry points at (one ranged read of its blob).
pub async fn read_dv(file_io: &FileIO, df: &DataFile) -> Result<RoaringTreemap, IcebergError> {
    let path = df.file_path();
    let (Some(off), Some(len)) = (df.content_offset(), df.content_size_in_bytes()) else {
        return Err(IcebergError::corrupt(
            path,
            "deletion vector entry without content_offset / content_size_in_bytes",
        ));
    };
    let (Ok(off), Ok(len)) = (u64::try_from(off), u64::try_from(len)) else {
        return Err(IcebergError::corrupt(
            path,
            format!("deletion vector entry with content_offset {off}, content_size_in_bytes {len}"),
        ));
    };
    let bytes: Bytes = file_io
        .new_input(path)
        .io_ctx("open deletion vector", path)?
        .reader()
        .await
        .io_ctx("open deletion vector", path)?
        .read(off..off + len)
        .await
        .io_ctx("read deletion vector", path)?;
    let bitmap = decode_blob(&bytes).map_err(|e| IcebergError::corrupt(path, e))?;
    if bitmap.len() != df.record_count() {
        return Err(IcebergError::corrupt(
            path,
            format!(
                "deletion vector holds {} positions, its manifest entry says {}",
                bitmap.len(),
                df.record_count()
            ),
        ));
    }
    Ok(bitmap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_framing_is_the_specs() {
        // Positions 1, 3 and 2^32 + 5: two 32-bit bitmaps (keys 0 and 1).
        let bm: RoaringTreemap = [1u64, 3, (1 << 32) + 5].into_iter().collect();
        let blob = encode_blob(&bm);
        let mut portable = Vec::new();
        // count of 32-bit bitmaps, u64 LE
        portable.extend_from_slice(&2u64.to_le_bytes());
        // key 0, then a 32-bit roaring bitmap {1, 3}: cookie 12346 (no runs), 1 container,
        // key 0 / cardinality-1 = 1, offset of the container, two u16 values
        portable.extend_from_slice(&0u32.to_le_bytes());
        portable.extend_from_slice(&[0x3A, 0x30, 0, 0, 1, 0, 0, 0]);
        portable.extend_from_slice(&[0, 0, 1, 0]);
        portable.extend_from_slice(&16u32.to_le_bytes());
        portable.extend_from_slice(&[1, 0, 3, 0]);
        // key 1, bitmap {5}
        portable.extend_from_slice(&1u32.to_le_bytes());
        portable.extend_from_slice(&[0x3A, 0x30, 0, 0, 1, 0, 0, 0]);
        portable.extend_from_slice(&[0, 0, 0, 0]);
        portable.extend_from_slice(&16u32.to_le_bytes());
        portable.extend_from_slice(&[5, 0]);
        // What CRoaring writes for the same set (pyroaring 1.2.0,
        // `BitMap64([1, 3, 2**32 + 5]).serialize().hex()`).
        assert_eq!(
            hex(&portable),
            "0200000000000000000000003a30000001000000000001001000000001000300\
             010000003a3000000100000000000000100000000500"
        );
        let mut expected = Vec::new();
        expected.extend_from_slice(&((4 + portable.len()) as u32).to_be_bytes());
        expected.extend_from_slice(&[0xD1, 0xD3, 0x39, 0x64]);
        expected.extend_from_slice(&portable);
        let mut crc_input = vec![0xD1, 0xD3, 0x39, 0x64];
        crc_input.extend_from_slice(&portable);
        expected.extend_from_slice(&crc32fast::hash(&crc_input).to_be_bytes());
        assert_eq!(blob, expected);
        // CRC-32 (IEEE) of the standard check input, so the crate is the right CRC.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(decode_blob(&blob).expect("decode"), bm);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn empty_vector_golden_bytes() {
        let blob = encode_blob(&RoaringTreemap::new());
        let crc = crc32fast::hash(&[0xD1, 0xD3, 0x39, 0x64, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut expected = vec![0, 0, 0, 12, 0xD1, 0xD3, 0x39, 0x64, 0, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(blob, expected);
    }

    #[test]
    fn corrupt_blobs_are_refused() {
        let bm: RoaringTreemap = (0u64..1000).step_by(7).collect();
        let blob = encode_blob(&bm);
        let mut bad_crc = blob.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 1;
        assert!(decode_blob(&bad_crc).unwrap_err().contains("CRC"));
        let mut bad_magic = blob.clone();
        bad_magic[4] = 0;
        assert!(decode_blob(&bad_magic).unwrap_err().contains("magic"));
        assert!(decode_blob(&blob[..blob.len() - 1])
            .unwrap_err()
            .contains("length"));
        assert!(decode_blob(&blob[..5]).is_err());
    }

    #[tokio::test]
    async fn puffin_round_trip_through_iceberg_rust_reader() {
        let a: RoaringTreemap = [0u64, 2, 4, 70_000].into_iter().collect();
        let b: RoaringTreemap = (10u64..20).collect();
        let (bytes, spans) = puffin_file(&[
            DvBlob {
                referenced_data_file: "file:///w/data/a.parquet",
                bitmap: &a,
            },
            DvBlob {
                referenced_data_file: "file:///w/data/b.parquet",
                bitmap: &b,
            },
        ]);
        assert_eq!(&bytes[..4], b"PFA1");
        assert_eq!(&bytes[bytes.len() - 4..], b"PFA1");
        assert_eq!(spans[0].0, 4);
        assert_eq!(spans[1].0, spans[0].0 + spans[0].1);
        let dir = std::env::temp_dir().join(format!("tidemark-dv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = format!("file://{}/dv.puffin", dir.display());
        let io = crate::commit::catalog::file_io(&Default::default()).expect("file io");
        io.new_output(&path)
            .expect("output")
            .write(bytes.clone().into())
            .await
            .expect("write");
        // iceberg-rust's Puffin reader parses our footer; its blobs are our spans.
        let reader = iceberg::puffin::PuffinReader::new(io.new_input(&path).expect("input"));
        let meta = reader.file_metadata().await.expect("footer").clone();
        assert_eq!(meta.blobs().len(), 2);
        for (i, (bm, file)) in [(&a, "a"), (&b, "b")].into_iter().enumerate() {
            let m = &meta.blobs()[i];
            assert_eq!(m.blob_type(), DV_BLOB_TYPE);
            assert_eq!(m.fields(), &[DV_FIELD_ID]);
            assert_eq!((m.snapshot_id(), m.sequence_number()), (-1, -1));
            assert_eq!((m.offset(), m.length()), spans[i]);
            assert_eq!(
                m.properties()["referenced-data-file"],
                format!("file:///w/data/{file}.parquet")
            );
            assert_eq!(m.properties()["cardinality"], bm.len().to_string());
            let blob = reader.blob(m).await.expect("blob");
            assert_eq!(&decode_blob(blob.data()).expect("decode"), bm);
            // And through a manifest entry, as the sink reads it back.
            let df = dv_data_file(
                &path,
                bytes.len() as u64,
                spans[i],
                &format!("file:///w/data/{file}.parquet"),
                bm.len(),
                Struct::empty(),
                0,
            )
            .expect("entry");
            assert!(is_dv(&df));
            assert_eq!(&read_dv(&io, &df).await.expect("read dv"), bm);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! [`JsonlWriter`]: the only IO of the JSON-lines sink. Lines go to a buffered file (opened
//! for append, created if missing) or stdout; [`JsonlWriter::sync`] flushes the buffer and, for
//! a file with `fsync`, calls `fsync(2)` so the data survives a crash.
//!
//! With `include_topic`, a line is `{"topic":…,"key":…,"value":…}` plus `"headers":{name: JSON}`
//! when the record has Kafka headers (a primary-key change).
//!
//! # Traps
//! - A line is written piece by piece into the buffer (no copy of its own); a crash can leave
//!   a partial last line in the file (the buffer is flushed in chunks). Readers must tolerate a torn final line; the
//!   position acknowledged is only ever that of data before the last successful `sync`.
//! - Appending after a crash would glue the next line onto the torn one, corrupting a line in
//!   the middle of the file: [`JsonlWriter::open`] first cuts the file back to its last newline
//!   (what it cuts was never acknowledged, so the source sends it again).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::encoder::Record;

enum Target {
    File {
        file: BufWriter<File>,
        path: PathBuf,
    },
    Stdout(BufWriter<Stdout>),
}

/// Appends JSON lines to a file or stdout.
pub struct JsonlWriter {
    target: Target,
    fsync: bool,
    include_topic: bool,
    /// The last record's topic and its JSON string (a table's records share one topic).
    topic: Option<(Arc<str>, Vec<u8>)>,
}

/// Truncates `file` after its last `\n` when it does not end with one (module traps).
fn drop_torn_tail(file: &File) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut reader = file;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    // No newline at all: the whole file is one torn line.
    file.set_len(0)
}

impl JsonlWriter {
    /// Opens `path` for append (`-` = stdout).
    pub fn open(path: &str, fsync: bool, include_topic: bool) -> io::Result<Self> {
        let target = if path == "-" {
            Target::Stdout(BufWriter::new(io::stdout()))
        } else {
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)?;
            drop_torn_tail(&file)?;
            Target::File {
                file: BufWriter::with_capacity(1 << 16, file),
                path: PathBuf::from(path),
            }
        };
        Ok(JsonlWriter {
            target,
            fsync,
            include_topic,
            topic: None,
        })
    }

    /// Where the lines go (`-` for stdout).
    pub fn path(&self) -> String {
        match &self.target {
            Target::File { path, .. } => path.display().to_string(),
            Target::Stdout(_) => "-".to_owned(),
        }
    }

    /// Writes a record as one line (with its newline) into `out`; `topic_json` is the record's
    /// topic as a JSON string.
    pub fn format_line(
        record: &Record,
        include_topic: bool,
        topic_json: &[u8],
        out: &mut impl Write,
    ) -> io::Result<()> {
        if !include_topic {
            out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
            return out.write_all(b"\n");
        }
        // Key and value are JSON produced by the encoder: spliced in, not re-parsed.
        out.write_all(b"{\"topic\":")?;
        out.write_all(topic_json)?;
        out.write_all(b",\"key\":")?;
        out.write_all(record.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b",\"value\":")?;
        out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
        if !record.headers.is_empty() {
            // Kafka record headers (the primary-key change's `__debezium.newkey`/`oldkey`):
            // their values are the encoder's JSON key documents, spliced in like the key.
            out.write_all(b",\"headers\":{")?;
            for (i, (name, value)) in record.headers.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, name).map_err(io::Error::other)?;
                out.write_all(b":")?;
                if serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok() {
                    out.write_all(value)?;
                } else {
                    let text = String::from_utf8_lossy(value);
                    serde_json::to_writer(&mut *out, &text).map_err(io::Error::other)?;
                }
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"}\n")
    }

    /// Buffers one record as a line, straight into the output buffer.
    pub fn write_record(&mut self, record: &Record) -> io::Result<()> {
        let cached = self
            .topic
            .as_ref()
            .is_some_and(|(t, _)| Arc::ptr_eq(t, &record.topic) || **t == *record.topic);
        if self.include_topic && !cached {
            let json = serde_json::to_vec(&*record.topic).map_err(io::Error::other)?;
            self.topic = Some((Arc::clone(&record.topic), json));
        }
        let topic_json = self.topic.as_ref().map_or(&b"null"[..], |(_, j)| j);
        match &mut self.target {
            Target::File { file, .. } => {
                Self::format_line(record, self.include_topic, topic_json, file)
            }
            Target::Stdout(out) => Self::format_line(record, self.include_topic, topic_json, out),
        }
    }

    /// Flushes the buffer, and fsyncs a file when configured.
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::File { file, .. } => {
                file.flush()?;
                if self.fsync {
                    file.get_ref().sync_data()?;
                }
                Ok(())
            }
            Target::Stdout(out) => out.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_cuts_a_torn_last_line_so_appends_start_on_a_fresh_line() {
        let dir = std::env::temp_dir().join(format!("tidemark-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (before, after) in [
            ("{\"a\":1}\n{\"b\":", "{\"a\":1}\n"),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("{\"torn", ""),
            ("", ""),
        ] {
            let path = dir.join("out.jsonl");
            std::fs::write(&path, before).unwrap();
            let w = JsonlWriter::open(path.to_str().unwrap(), false, true).unwrap();
            drop(w);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after, "{before:?}");
        }
        let big = format!("{}\n{}", "x".repeat(200_000), "y".repeat(100_000));
        let path = dir.join("big.jsonl");
        std::fs::write(&path, &big).unwrap();
        drop(JsonlWriter::open(path.to_str().unwrap(), false, true).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 200_001);
        let _ = std::fs::remove_dir_all(dir);
    }
}

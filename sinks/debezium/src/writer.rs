//! [`JsonlWriter`]: the only IO of the JSON-lines sink. Lines go to a buffered file (opened
//! for append, created if missing) or stdout; [`JsonlWriter::sync`] flushes the buffer and, for
//! a file with `fsync`, calls `fsync(2)` so the data survives a crash.
//!
//! With `include_topic`, a line is `{"topic":…,"key":…,"value":…}` plus `"headers":{name: JSON}`
//! when the record has Kafka headers (a primary-key change).
//!
//! # Traps
//! - A line is written whole into the buffer; a crash can still leave a partial last line in
//!   the file (the buffer is flushed in chunks). Readers must tolerate a torn final line; the
//!   position acknowledged is only ever that of data before the last successful `sync`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Stdout, Write};
use std::path::PathBuf;

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
    line: Vec<u8>,
}

impl JsonlWriter {
    /// Opens `path` for append (`-` = stdout).
    pub fn open(path: &str, fsync: bool, include_topic: bool) -> io::Result<Self> {
        let target = if path == "-" {
            Target::Stdout(BufWriter::new(io::stdout()))
        } else {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Target::File {
                file: BufWriter::with_capacity(1 << 16, file),
                path: PathBuf::from(path),
            }
        };
        Ok(JsonlWriter {
            target,
            fsync,
            include_topic,
            line: Vec::with_capacity(1024),
        })
    }

    /// Where the lines go (`-` for stdout).
    pub fn path(&self) -> String {
        match &self.target {
            Target::File { path, .. } => path.display().to_string(),
            Target::Stdout(_) => "-".to_owned(),
        }
    }

    /// Formats a record as one line (without the newline).
    pub fn format_line(record: &Record, include_topic: bool, out: &mut Vec<u8>) -> io::Result<()> {
        if !include_topic {
            out.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
            return Ok(());
        }
        // Key and value are JSON produced by the encoder: spliced in, not re-parsed.
        out.extend_from_slice(b"{\"topic\":");
        serde_json::to_writer(&mut *out, &record.topic).map_err(io::Error::other)?;
        out.extend_from_slice(b",\"key\":");
        out.extend_from_slice(record.key.as_deref().unwrap_or(b"null"));
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
        if !record.headers.is_empty() {
            // Kafka record headers (the primary-key change's `__debezium.newkey`/`oldkey`):
            // their values are the encoder's JSON key documents, spliced in like the key.
            out.extend_from_slice(b",\"headers\":{");
            for (i, (name, value)) in record.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, name).map_err(io::Error::other)?;
                out.push(b':');
                if serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok() {
                    out.extend_from_slice(value);
                } else {
                    let text = String::from_utf8_lossy(value);
                    serde_json::to_writer(&mut *out, &text).map_err(io::Error::other)?;
                }
            }
            out.push(b'}');
        }
        out.push(b'}');
        Ok(())
    }

    /// Buffers one record as a line.
    pub fn write_record(&mut self, record: &Record) -> io::Result<()> {
        self.line.clear();
        Self::format_line(record, self.include_topic, &mut self.line)?;
        self.line.push(b'\n');
        match &mut self.target {
            Target::File { file, .. } => file.write_all(&self.line),
            Target::Stdout(out) => out.write_all(&self.line),
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

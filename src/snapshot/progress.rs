//! What users see while a snapshot runs: a live per-table display on a terminal (rows done /
//! estimate, rows/s, ETA), plain `info` log lines otherwise, and the `tidemark_snapshot_*`
//! metrics (rows, rows remaining, chunks, duration per table).
//!
//! # Traps
//! - The display goes to stderr and only when stderr is a terminal: log files and pipes get
//!   one line per table per `progress_interval`, never carriage returns or ANSI codes.
//! - Estimates come from the planner's statistics (`pg_class.reltuples`,
//!   `information_schema.tables.table_rows`) and can be off either way: "remaining" never
//!   goes below zero and the ETA is only shown while rows remain by the estimate.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ProgressDisplay;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
struct TableStat {
    name: String,
    estimate: u64,
    rows: u64,
    chunks: u64,
    started: Option<Instant>,
    elapsed: Option<Duration>,
}

/// Progress of one running snapshot.
pub struct Progress {
    tables: Mutex<Vec<TableStat>>,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl Progress {
    /// Tables with their row estimates (index = the snapshot's table index); `done_rows` of
    /// a resumed snapshot count as done.
    pub fn new(metrics: Arc<Metrics>, tables: &[(String, u64, u64)]) -> Arc<Self> {
        let stats = tables
            .iter()
            .map(|(name, estimate, done)| {
                metrics
                    .snapshot_rows_remaining
                    .get_or_create(&metrics.table_labels(name))
                    .set(estimate.saturating_sub(*done) as i64);
                TableStat {
                    name: name.clone(),
                    estimate: *estimate,
                    rows: *done,
                    chunks: 0,
                    started: None,
                    elapsed: None,
                }
            })
            .collect();
        Arc::new(Progress {
            tables: Mutex::new(stats),
            started: Instant::now(),
            metrics,
        })
    }

    /// `rows` more rows of table `t` went out in one chunk.
    pub fn chunk(&self, t: usize, rows: u64) {
        let Ok(mut tables) = self.tables.lock() else {
            return;
        };
        let Some(s) = tables.get_mut(t) else { return };
        let started = *s.started.get_or_insert_with(Instant::now);
        s.rows += rows;
        s.chunks += 1;
        self.metrics.snapshot_chunk(
            &s.name,
            rows,
            Some(s.estimate.saturating_sub(s.rows) as i64),
            Some(started.elapsed().as_secs_f64()),
        );
    }

    /// Table `t` is read completely.
    pub fn table_done(&self, t: usize) {
        let Ok(mut tables) = self.tables.lock() else {
            return;
        };
        let Some(s) = tables.get_mut(t) else { return };
        let elapsed = s.started.map_or(Duration::ZERO, |st| st.elapsed());
        s.elapsed = Some(elapsed);
        let labels = self.metrics.table_labels(&s.name);
        self.metrics
            .snapshot_rows_remaining
            .get_or_create(&labels)
            .set(0);
        self.metrics
            .snapshot_duration_seconds
            .get_or_create(&labels)
            .set(elapsed.as_secs_f64());
        let rate = s.rows as f64 / elapsed.as_secs_f64().max(1e-3);
        tracing::info!(table = %s.name, rows = s.rows, chunks = s.chunks,
            seconds = format!("{:.1}", elapsed.as_secs_f64()), rows_per_s = rate as u64,
            "snapshot: table done");
    }

    /// Total rows so far.
    pub fn total_rows(&self) -> u64 {
        self.tables
            .lock()
            .map(|t| t.iter().map(|s| s.rows).sum())
            .unwrap_or(0)
    }

    /// One line per table (`public.t  512,000 / ~1,000,000 rows  51%  120,000 rows/s  ETA 4s`).
    pub fn render(&self) -> Vec<String> {
        let Ok(tables) = self.tables.lock() else {
            return vec![];
        };
        tables.iter().map(render_line).collect()
    }

    /// Shows progress until the returned guard is dropped: a live display on a terminal,
    /// log lines every `interval` otherwise.
    pub fn spawn_display(
        self: &Arc<Self>,
        mode: ProgressDisplay,
        interval: Duration,
    ) -> DisplayGuard {
        let terminal = mode == ProgressDisplay::Auto && std::io::stderr().is_terminal();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let me = self.clone();
        let task = (mode != ProgressDisplay::Off).then(|| {
            tokio::spawn(async move {
                let every = if terminal {
                    Duration::from_millis(500)
                } else {
                    interval
                };
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                let mut drawn = 0usize;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    let lines = me.render();
                    if terminal {
                        drawn = draw(&lines, drawn);
                    } else {
                        for l in &lines {
                            tracing::info!("snapshot progress: {l}");
                        }
                    }
                }
                if terminal {
                    draw(&me.render(), drawn);
                }
            })
        });
        DisplayGuard {
            stop,
            task,
            started: self.started,
        }
    }
}

/// Stops the display when dropped.
pub struct DisplayGuard {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl DisplayGuard {
    /// Stops the display and waits for its last frame.
    pub async fn finish(mut self) -> Duration {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.started.elapsed()
    }
}

impl Drop for DisplayGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Redraws `lines` over the `drawn` lines of the previous frame; returns the new count.
fn draw(lines: &[String], drawn: usize) -> usize {
    let mut err = std::io::stderr().lock();
    let mut out = String::new();
    if drawn > 0 {
        out.push_str(&format!("\x1b[{drawn}A"));
    }
    for l in lines {
        out.push_str("\x1b[2K");
        out.push_str(l);
        out.push('\n');
    }
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
    lines.len()
}

fn render_line(s: &TableStat) -> String {
    let elapsed = s
        .elapsed
        .or_else(|| s.started.map(|t| t.elapsed()))
        .unwrap_or(Duration::ZERO);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        s.rows as f64 / secs
    } else {
        0.0
    };
    let estimate = s.estimate.max(s.rows);
    let pct = (s.rows * 100).checked_div(estimate).unwrap_or(100);
    let state = match (s.elapsed, s.started) {
        (Some(_), _) => format!("done in {secs:.1}s"),
        (None, None) => "waiting".to_string(),
        (None, Some(_)) if rate > 0.0 && estimate > s.rows => {
            format!("ETA {:.0}s", (estimate - s.rows) as f64 / rate)
        }
        (None, Some(_)) => "reading".to_string(),
    };
    format!(
        "{:<32} {:>12} / ~{:<12} rows {:>3}%  {:>10} rows/s  {state}",
        s.name,
        group(s.rows),
        group(estimate),
        pct.min(100),
        group(rate as u64)
    )
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_rows_rate_and_state() {
        let m = Metrics::new("p");
        let p = Progress::new(
            m.clone(),
            &[
                ("public.a".into(), 1_000_000, 0),
                ("public.b".into(), 10, 0),
            ],
        );
        p.chunk(0, 16_384);
        p.table_done(1);
        let lines = p.render();
        assert!(lines[0].contains("16,384 / ~1,000,000"), "{}", lines[0]);
        assert!(lines[1].contains("done in"), "{}", lines[1]);
        let text = m.encode();
        assert!(
            text.contains("tidemark_snapshot_rows_total{pipeline=\"p\",table=\"public.a\"} 16384"),
            "{text}"
        );
        assert!(
            text.contains(
                "tidemark_snapshot_rows_remaining{pipeline=\"p\",table=\"public.a\"} 983616"
            ),
            "{text}"
        );
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
    }
}

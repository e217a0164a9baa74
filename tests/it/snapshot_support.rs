//! Helpers of the snapshot tests: replaying a JSON-lines output into the state a sink holds.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use std::process::Command;

use super::support::{Pipeline, TIDEMARK};

/// The payload of an output line's value (with or without `schemas_enable`).
pub fn payload(line: &Value) -> Option<&Value> {
    let v = &line["value"];
    if v.is_null() {
        return None;
    }
    Some(v.get("payload").unwrap_or(v))
}

/// An output line of `table` (the `schema.table` / `db.table` suffix of its topic), parsed;
/// `None` for other tables' lines and for what is not JSON (a torn last line after kill -9).
fn table_event(line: &str, table: &str) -> Option<Value> {
    let v = serde_json::from_str::<Value>(line).ok()?;
    let topic = v["topic"].as_str().unwrap_or_default();
    topic.ends_with(&format!(".{table}")).then_some(v)
}

/// The lines of `table` in `text` with their line numbers ([`table_event`]).
fn table_events<'a>(text: &'a str, table: &'a str) -> impl Iterator<Item = (usize, Value)> + 'a {
    text.lines()
        .enumerate()
        .filter_map(move |(n, line)| Some((n, table_event(line, table)?)))
}

/// What replaying an output gave.
#[derive(Debug, Default)]
pub struct Replay {
    /// key (its JSON text) → checksum of the row's `after` (its JSON text).
    pub rows: HashMap<String, u64>,
    /// Snapshot reads per key (a key read twice is a duplicate read).
    pub reads: HashMap<String, u32>,
    /// Events per op.
    pub ops: BTreeMap<String, u64>,
    /// `source.snapshot` values of the `r` events, counted.
    pub marks: BTreeMap<String, u64>,
}

impl Replay {
    /// Up to five keys read more than once by the snapshot, with their read counts.
    pub fn keys_read_twice(&self) -> Vec<(&String, &u32)> {
        self.reads.iter().filter(|(_, n)| **n > 1).take(5).collect()
    }
}

/// The state an `initial_only` pipeline `p` leaves for `table` (the quiescent reference).
pub fn initial_only_state(mut p: Pipeline, table: &str, timeout: Duration) -> Replay {
    p.spawn();
    let status = p.wait_exit(timeout).expect("initial_only exits");
    assert!(status.success(), "initial_only failed:\n{}", p.log_text());
    replay_file(&p.out, table)
}

/// Replays the output file at `path` (see [`replay`]), line by line.
pub fn replay_file(path: &std::path::Path, table: &str) -> Replay {
    use std::io::BufRead;
    let mut r = Replay::default();
    let Ok(f) = std::fs::File::open(path) else {
        return r;
    };
    for line in std::io::BufReader::with_capacity(1 << 20, f).lines() {
        let Ok(line) = line else { break };
        r.apply(&line, table);
    }
    r
}

/// Replays the lines of `table` (the `schema.table` / `db.table` suffix of the topic) into a
/// key → row map: `r`/`c`/`u` put the after image, `d` removes the before key.
pub fn replay(text: &str, table: &str) -> Replay {
    let mut r = Replay::default();
    for line in text.lines() {
        r.apply(line, table);
    }
    r
}

impl Replay {
    fn apply(&mut self, line: &str, table: &str) {
        let Some(v) = table_event(line, table) else {
            return;
        };
        let Some(p) = payload(&v) else { return };
        let op = p["op"].as_str().unwrap_or_default().to_string();
        *self.ops.entry(op.clone()).or_default() += 1;
        let key = v["key"].get("payload").unwrap_or(&v["key"]).to_string();
        match op.as_str() {
            "r" | "c" | "u" => {
                if op == "r" {
                    *self.reads.entry(key.clone()).or_default() += 1;
                    let mark = p["source"]["snapshot"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    *self.marks.entry(mark).or_default() += 1;
                }
                self.rows.insert(key, fnv(&p["after"].to_string()));
            }
            "d" => {
                self.rows.remove(&key);
            }
            _ => {}
        }
    }
}

/// A 64-bit FNV-1a checksum of a string (per-row checksums of the compared states).
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Asserts two replayed states are the same rows (count and per-row checksum), reporting a
/// few differences.
pub fn assert_same_state(what: &str, expected: &Replay, actual: &Replay) {
    if expected.rows == actual.rows {
        return;
    }
    let (e, a) = (&expected.rows, &actual.rows);
    let missing: Vec<&String> = e.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    let extra: Vec<&String> = a.keys().filter(|k| !e.contains_key(*k)).take(5).collect();
    let differ: Vec<&String> = e
        .iter()
        .filter(|(k, v)| a.get(*k).is_some_and(|x| x != *v))
        .map(|(k, _)| k)
        .take(5)
        .collect();
    panic!(
        "{what}: {} rows expected, {} present; missing {missing:?}; extra {extra:?}; rows that differ {differ:?}",
        e.len(),
        a.len()
    );
}

/// Waits until `done(p)`, failing with the log when the engine exits or `timeout` passes.
pub fn wait_for(
    what: &str,
    p: &mut Pipeline,
    timeout: Duration,
    done: impl FnMut(&Pipeline) -> bool,
) {
    wait_for_every(what, p, timeout, Duration::from_millis(100), done);
}

/// As [`wait_for`], checking `done` every `every` (short for the short windows of a test
/// that must act while something is in progress).
pub fn wait_for_every(
    what: &str,
    p: &mut Pipeline,
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut(&Pipeline) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(p) {
        if let Some(status) = p.try_wait() {
            panic!(
                "tidemark exited ({status}) while waiting for {what}:\n{}",
                p.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            p.log_text()
        );
        std::thread::sleep(every);
    }
}

/// The key bounds `[lo, hi)` of range `r` of a table whose ranges are cut at `bounds`
/// (integer single-column keys; the first range is open below, the last above).
pub fn range_bounds(bounds: &[i64], r: usize) -> (i64, i64) {
    let lo = if r == 0 { i64::MIN } else { bounds[r - 1] };
    let hi = if r == bounds.len() {
        i64::MAX
    } else {
        bounds[r]
    };
    (lo, hi)
}

/// The pipeline's JSON-lines output so far.
pub fn output(p: &Pipeline) -> String {
    std::fs::read_to_string(&p.out).unwrap_or_default()
}

/// MySQL/MariaDB: inserts a marker row and waits for it in the output (everything before it
/// is in).
#[cfg(feature = "mysql")]
pub fn wait_mysql_marker(p: &mut Pipeline, db: &str, timeout: Duration) {
    // Counted, so a test may wait for a marker more than once.
    let markers = |p: &Pipeline| output(p).matches(".zz_marker\"").count();
    let before = markers(p);
    super::mysql_support::sql(
        db,
        "CREATE TABLE IF NOT EXISTS zz_marker (id INT AUTO_INCREMENT PRIMARY KEY); INSERT INTO zz_marker VALUES ()",
    );
    wait_for("the end marker", p, timeout, |p| markers(p) > before);
}

/// What a filtered incremental snapshot of `table` (integer key `id`) left in an output text.
#[derive(Debug, Default)]
pub struct FilteredReads {
    /// `id` → the `after` image of its `op: r` event (the last one, if read twice).
    pub reads: BTreeMap<i64, Value>,
    /// Keys read more than once.
    pub twice: Vec<i64>,
    /// Keys any streamed `c`/`u`/`d` event touched (either image).
    pub touched: std::collections::HashSet<i64>,
}

impl FilteredReads {
    pub fn of(text: &str, table: &str) -> Self {
        let mut out = FilteredReads::default();
        for (_, v) in table_events(text, table) {
            let Some(p) = payload(&v) else { continue };
            let id = |image: &str| p[image]["id"].as_i64();
            match p["op"].as_str().unwrap_or_default() {
                "r" => {
                    let Some(k) = id("after") else { continue };
                    if out.reads.insert(k, p["after"].clone()).is_some() {
                        out.twice.push(k);
                    }
                }
                "c" | "u" | "d" => out
                    .touched
                    .extend(id("before").into_iter().chain(id("after"))),
                _ => {}
            }
        }
        out
    }

    /// The snapshot read exactly the rows `matches` accepts: every `op: r` row matches, none
    /// is read twice, every row of `matching_now` (the table's matching keys at the end) that
    /// the stream never touched was read, and a read key no longer matching was touched.
    pub fn assert_exactly(
        &self,
        what: &str,
        matching_now: &[i64],
        matches: impl Fn(&Value) -> bool,
    ) {
        let wrong: Vec<&Value> = self
            .reads
            .values()
            .filter(|a| !matches(a))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{what}: rows outside the filter read: {wrong:?}"
        );
        assert!(
            self.twice.is_empty(),
            "{what}: keys read twice: {:?}",
            &self.twice[..self.twice.len().min(5)]
        );
        let missing: Vec<&i64> = matching_now
            .iter()
            .filter(|k| !self.reads.contains_key(k) && !self.touched.contains(k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: matching rows never read: {missing:?}"
        );
        let now: std::collections::HashSet<&i64> = matching_now.iter().collect();
        let stray: Vec<&i64> = self
            .reads
            .keys()
            .filter(|k| !now.contains(k) && !self.touched.contains(k))
            .take(5)
            .collect();
        assert!(
            stray.is_empty(),
            "{what}: read rows that neither match now nor changed: {stray:?}"
        );
    }
}

/// The Kafka Connect type (`int32`, `int64`, …) of `column` in the `after` (or, for a delete,
/// `before`) struct of an output line's `schema` part (`schemas_enable = true`).
pub fn column_type<'a>(line: &'a Value, image: &str, column: &str) -> Option<&'a str> {
    let fields = line["value"]["schema"]["fields"].as_array()?;
    let image = fields.iter().find(|f| f["field"] == image)?;
    let col = image["fields"]
        .as_array()?
        .iter()
        .find(|f| f["field"] == column)?;
    col["type"].as_str()
}

/// A type change of `column` during an incremental snapshot, from the output's `schema` parts:
/// `op: r` rows that carry `new_type`, and events (line, op) that carry another type after one
/// carried `new_type` (must be none: a sink never sees the old type after the new one).
#[derive(Debug, Default)]
pub struct TypeReplay {
    pub reads_with_new: u64,
    pub backwards: Vec<(usize, String)>,
}

impl TypeReplay {
    pub fn of(text: &str, table: &str, column: &str, new_type: &str) -> Self {
        let mut r = TypeReplay::default();
        let mut seen_new = false;
        for (n, v) in table_events(text, table) {
            let Some(p) = payload(&v) else { continue };
            let op = p["op"].as_str().unwrap_or_default().to_string();
            let image = if op == "d" { "before" } else { "after" };
            let Some(ty) = column_type(&v, image, column) else {
                continue;
            };
            if ty == new_type {
                seen_new = true;
                if op == "r" {
                    r.reads_with_new += 1;
                }
            } else if seen_new {
                r.backwards.push((n, op));
            }
        }
        r
    }

    pub fn assert_forward(&self, column: &str) {
        assert!(
            self.backwards.is_empty(),
            "{} events had {column}'s old type after one with its new type, first (line, op): {:?}",
            self.backwards.len(),
            &self.backwards[..self.backwards.len().min(5)]
        );
        assert!(
            self.reads_with_new > 0,
            "no snapshot read with {column}'s new type: the type change did not land mid-snapshot"
        );
    }
}

/// What an incremental snapshot with DDL in the middle left in an output text, for `table`
/// (integer key `id`): the checks of the column sets in stream order, and each key's last
/// row image.
#[derive(Debug, Default)]
pub struct DdlReplay {
    /// `id` → the last `after` image (absent: deleted).
    pub rows: BTreeMap<i64, Value>,
    /// `op: r` rows carrying `column` (the added one), and those not carrying it once an
    /// event carried it (must be none).
    pub reads_with_added: u64,
    /// Events (any op) of the table after the first one with the added column that lack it,
    /// and after the first one without the dropped column that still carry it: (line, op).
    pub backwards: Vec<(usize, String)>,
    /// `op: r` rows with the added column whose value is not `added_value`.
    pub wrong_added: Vec<String>,
}

impl DdlReplay {
    /// Replays `text`: `added` appears once (ADD COLUMN, every row's value `added_value`),
    /// `dropped` disappears once (DROP COLUMN); the column set of the table's events never
    /// goes back (an event lacking `added` after one with it, or with `dropped` after one
    /// without it once `added` was seen, is "backwards").
    pub fn of(text: &str, table: &str, added: &str, added_value: i64, dropped: &str) -> Self {
        let mut r = DdlReplay::default();
        let (mut has_added, mut lost_dropped) = (false, false);
        for (n, v) in table_events(text, table) {
            let Some(p) = payload(&v) else { continue };
            let op = p["op"].as_str().unwrap_or_default().to_string();
            let image = if op == "d" { &p["before"] } else { &p["after"] };
            let Some(obj) = image.as_object() else {
                continue;
            };
            let with_added = obj.contains_key(added);
            let with_dropped = obj.contains_key(dropped);
            if (has_added && !with_added) || (lost_dropped && with_dropped) {
                r.backwards.push((n, op.clone()));
            }
            has_added |= with_added;
            lost_dropped |= has_added && !with_dropped;
            if op == "r" && with_added {
                r.reads_with_added += 1;
                if obj[added].as_i64() != Some(added_value) {
                    r.wrong_added.push(v.to_string());
                }
            }
            let Some(id) = obj.get("id").and_then(Value::as_i64) else {
                continue;
            };
            if op == "d" {
                r.rows.remove(&id);
            } else {
                r.rows.insert(id, p["after"].clone());
            }
        }
        r
    }

    /// Asserts the replay: no column set went back, every read after the ADD COLUMN has the
    /// value, some reads came after it (the DDL really was mid-snapshot), and the rows equal
    /// `expected` (`id` → (`v`, `added`), from the database): the same keys, the same `v`,
    /// and `added` equal wherever the row image carries it.
    pub fn assert_matches(&self, expected: &BTreeMap<i64, (i64, i64)>, added: &str) {
        assert!(
            self.backwards.is_empty(),
            "{} events went back to an older column set after a newer one, first (line, op): {:?}",
            self.backwards.len(),
            &self.backwards[..self.backwards.len().min(5)]
        );
        assert!(
            self.wrong_added.is_empty(),
            "{} reads with a wrong {added}, first: {:?}",
            self.wrong_added.len(),
            &self.wrong_added[..self.wrong_added.len().min(3)]
        );
        assert!(
            self.reads_with_added > 0,
            "no snapshot read after the ADD COLUMN: the DDL did not land mid-snapshot"
        );
        let keys: Vec<_> = self.rows.keys().collect();
        let want: Vec<_> = expected.keys().collect();
        assert_eq!(keys.len(), want.len(), "row count differs from the table");
        assert!(keys == want, "key sets differ from the table");
        for (id, (v, extra)) in expected {
            let got = &self.rows[id];
            assert_eq!(got["v"].as_i64(), Some(*v), "id {id}: {got}");
            if let Some(x) = got.get(added) {
                assert_eq!(x.as_i64(), Some(*extra), "id {id}: {got}");
            }
        }
    }
}

/// `tidemark status` of a pipeline.
pub fn status_text(p: &Pipeline) -> String {
    let out = Command::new(TIDEMARK)
        .args(["status", "--config"])
        .arg(&p.config)
        .output()
        .expect("tidemark status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tidemark snapshot` with `args`; (success, stdout + stderr).
pub fn snapshot_cli(p: &Pipeline, args: &[&str]) -> (bool, String) {
    let out = Command::new(TIDEMARK)
        .args(["snapshot", "--config"])
        .arg(&p.config)
        .args(args)
        .output()
        .expect("tidemark snapshot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until the incremental snapshot record of the first table satisfies `done`.
pub fn wait_entry(p: &mut Pipeline, what: &str, done: impl Fn(&Value) -> bool) {
    wait_for(what, p, Duration::from_secs(180), |p| {
        p.checkpoint().is_some_and(|c| {
            c["snapshot"]["kind"] == "incremental" && done(&c["snapshot"]["tables"][0])
        })
    });
}

/// Requests an incremental snapshot of `table` (with `filter`, if any) by `tidemark snapshot`
/// and waits until the first table's record has that filter and is complete; returns the
/// record.
pub fn snapshot_until_complete(p: &mut Pipeline, table: &str, filter: Option<&str>) -> Value {
    let mut args = vec!["--table", table];
    args.extend(filter.iter().flat_map(|f| ["--filter", f]));
    let (ok, text) = snapshot_cli(p, &args);
    assert!(ok, "{text}");
    let what = format!("the snapshot of {table} (filter {filter:?}) to finish");
    wait_entry(p, &what, |t| {
        t["filter"].as_str() == filter && t["complete"] == true
    });
    p.checkpoint().expect("a checkpoint")["snapshot"]["tables"][0].clone()
}

/// Asserts a finished filtered snapshot's record `t` (of `table`, `filter` matching `rows`
/// rows): every matching row read, its estimate within `range`, `tidemark status` showing
/// both, and the table's start logged with the estimate and where it came from (`source`,
/// e.g. "the planner's for the filter"). Returns the estimate.
pub fn assert_filtered_estimate(
    p: &Pipeline,
    t: &Value,
    (table, filter): (&str, &str),
    rows: u64,
    range: std::ops::RangeInclusive<u64>,
    source: &str,
) -> u64 {
    let estimate = t["estimate"].as_u64().expect("an estimate");
    assert_eq!(t["rows"], rows, "{t}");
    assert!(
        range.contains(&estimate),
        "the estimate of a filter matching {rows} rows is {estimate}, not in {range:?}"
    );
    let status = status_text(p);
    assert!(
        status.contains(&format!(
            "{table}: {rows} of ~{} rows durable (filter: {filter}), done",
            estimate.max(rows)
        )),
        "{status}"
    );
    let log = p.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("incremental snapshot: table started")
                && l.contains(source)
                && l.contains(&format!("estimate={estimate}"))),
        "{log}"
    );
    estimate
}

/// Asserts that `tidemark_snapshot_rows_remaining` of `table` is in `/metrics` and 0 (never
/// negative after an underestimate).
pub fn assert_no_rows_remaining(p: &Pipeline, table: &str) {
    let metrics = p.metrics();
    let remaining: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tidemark_snapshot_rows_remaining") && l.contains(table))
        .collect();
    assert!(
        !remaining.is_empty() && remaining.iter().all(|l| l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Snapshot reads (`op: r`) in the output so far.
pub fn reads(p: &Pipeline) -> usize {
    output(p).matches("\"op\":\"r\"").count()
}

/// What an output left of a table `(id, code, v)` (integers) whose primary key went from `id`
/// to `code` during its incremental snapshot: rows by `id`, and snapshot reads per `id`. A
/// delete finds its row by its event key: `id`, or `code` after the change (Postgres' default
/// replica identity gives only the key's columns in the before image, the others as zero).
#[derive(Debug, Default)]
pub struct RekeyReplay {
    /// `id` → (`code`, `v`).
    pub rows: BTreeMap<i64, (i64, i64)>,
    /// `id` → its `op: r` events.
    pub reads: BTreeMap<i64, u32>,
}

/// The rows of a client's output of three integer columns separated by `sep`, by the first.
pub fn int_triples(text: &str, sep: char) -> BTreeMap<i64, (i64, i64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(sep).map(|x| x.trim().parse::<i64>().ok());
            Some((f.next()??, (f.next()??, f.next()??)))
        })
        .collect()
}

/// Asserts the end of a primary key redefined mid-snapshot (`id` → `code`): the restart was
/// logged, the sink's rows of `table` in `p`'s output equal `expected` (`id` → (`code`, `v`),
/// from the database), and id 1, read before the change, was read again after the restart.
pub fn assert_rekeyed(p: &Pipeline, table: &str, expected: &BTreeMap<i64, (i64, i64)>) {
    let log = p.log_text();
    assert!(log.contains(RESTARTED_LIVE), "{log}");
    let replay = RekeyReplay::of(&output(p), table);
    assert_eq!(
        &replay.rows, expected,
        "the sink's rows differ from the table's"
    );
    assert!(
        replay.reads.get(&1).copied().unwrap_or(0) >= 2,
        "id 1 (read before the DDL) was not read again after the restart: {:?}",
        replay.reads.get(&1)
    );
}

impl RekeyReplay {
    pub fn of(text: &str, table: &str) -> Self {
        let mut r = RekeyReplay::default();
        for (_, v) in table_events(text, table) {
            let Some(p) = payload(&v) else { continue };
            let int = |image: &str, c: &str| p[image][c].as_i64();
            match p["op"].as_str().unwrap_or_default() {
                op @ ("r" | "c" | "u") => {
                    let (Some(id), Some(code), Some(v)) =
                        (int("after", "id"), int("after", "code"), int("after", "v"))
                    else {
                        panic!("a {op} event without id, code, v: {v}");
                    };
                    if op == "r" {
                        *r.reads.entry(id).or_default() += 1;
                    }
                    r.rows.insert(id, (code, v));
                }
                "d" => {
                    let key = v["key"].get("payload").unwrap_or(&v["key"]);
                    match (key["id"].as_i64(), key["code"].as_i64()) {
                        (Some(id), _) => {
                            r.rows.remove(&id);
                        }
                        (None, Some(code)) => r.rows.retain(|_, (c, _)| *c != code),
                        _ => panic!("a delete keyed by neither id nor code: {v}"),
                    }
                }
                _ => {}
            }
        }
        r
    }
}

/// How the log says a live key change restarted a table's snapshot (`rekey`).
pub const RESTARTED_LIVE: &str = "starts again from its first key, chunked by the new key";

/// How the log says a resume found the table keyed otherwise than its recorded last key.
pub const RESTARTED_ON_RESUME: &str =
    "the table's key changed since its last chunk; its snapshot starts again from its first key";

/// The log line (and the start of a stopped table's reason) of `table`'s primary key going
/// from `from` to `to` mid-snapshot.
pub fn key_changed(table: &str, from: &str, to: &str) -> String {
    format!(
        "primary key of {table} changed from ({from}) to ({to}) during its incremental snapshot"
    )
}

/// The incremental snapshot record of `table` in `p`'s checkpoint.
pub fn snapshot_record(p: &Pipeline, table: &str) -> Option<Value> {
    let c = p.checkpoint()?;
    if c["snapshot"]["kind"] != "incremental" {
        return None;
    }
    c["snapshot"]["tables"]
        .as_array()?
        .iter()
        .find(|t| t["table"] == table)
        .cloned()
}

/// Waits (up to 600 s: a PostgreSQL chunk may wait for `wal_writer_delay` to see its
/// watermarks, looking every 20 ms) until the incremental snapshot record of `table`
/// satisfies `done`; returns it.
pub fn wait_record(
    p: &mut Pipeline,
    table: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let every = Duration::from_millis(20);
    wait_for_every(what, p, Duration::from_secs(600), every, |p| {
        snapshot_record(p, table).is_some_and(|t| done(&t))
    });
    snapshot_record(p, table).expect("the record just seen")
}

/// The length of `text` up to its last newline: where a run after a kill -9 appends (the
/// sink cuts a torn last line off).
pub fn complete_len(text: &str) -> usize {
    text.rfind('\n').map_or(0, |i| i + 1)
}

/// The log since `from` (a length of an earlier [`Pipeline::log_text`]).
fn log_since(p: &Pipeline, from: usize) -> String {
    let log = p.log_text();
    log.get(from..).unwrap_or_default().to_string()
}

/// The `tidemark status` line of `table`.
fn status_line(p: &Pipeline, table: &str) -> String {
    let status = status_text(p);
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{table}: ")))
        .unwrap_or_else(|| panic!("no line of {table} in tidemark status:\n{status}"))
        .to_string()
}

/// Round `r` (1, 2, …) of DML on the table `t (id PRIMARY KEY, code, v)` of `rows` rows
/// (`code = 100000 - id`, distinct) of [`kill9_after_rekey`], in SQL both servers take: `v`
/// of a low and a high `id` (read early by `id`, early by `code`), a `code` (a key change once
/// `code` is the key), an insert (`code = r`: below every other while `rows` < 99,990) and
/// two deletes; each round touches its own rows.
pub fn rekey_dml(rows: i64, r: i64) -> String {
    format!(
        "UPDATE t SET v = {r} WHERE id IN ({low}, {high});
         UPDATE t SET code = {recoded} WHERE id = {recode};
         INSERT INTO t VALUES ({new}, {r}, {r});
         DELETE FROM t WHERE id IN ({gone}, {middle});",
        low = 10 * r + 1,
        high = rows - 10 * r - 1,
        recode = 10 * r + 2,
        recoded = 200_000 + 10 * r + 2,
        new = rows + r,
        gone = 10 * r + 3,
        middle = rows / 2 + r,
    )
}

/// A source's side of [`kill9_after_rekey`] and [`rekeyed_mid_snapshot`].
pub struct RekeySource<'a> {
    /// The table's name in the checkpoint (`public.t`, `db.t`).
    pub table: &'a str,
    /// Rows the table was created with.
    pub rows: i64,
    /// Runs SQL in the test database; returns the client's output.
    pub sql: &'a dyn Fn(&str) -> String,
    /// The client's column separator.
    pub sep: char,
    /// The DDL that makes `column` the primary key instead of the current one.
    pub redefine: &'a dyn Fn(&str) -> String,
    /// Waits until everything committed so far is in the output.
    pub marker: &'a dyn Fn(&mut Pipeline),
}

/// Runs `ddl` (by `sql`) on a table of 20,000 rows whose incremental snapshot is under way in
/// `p`, asserting the snapshot was not over yet.
pub fn ddl_mid_snapshot(p: &Pipeline, sql: &dyn Fn(&str) -> String, ddl: &str) {
    sql(ddl);
    let at_ddl = reads(p);
    assert!(
        at_ddl < 20_000,
        "the snapshot read {at_ddl} rows before the DDL: not mid-snapshot"
    );
}

/// The primary key redefined (`id` → `code`) during the incremental snapshot of `s`'s table
/// (of [`RekeySource::rows`] rows, its snapshot on `id` under way in `p`), with DML with the DDL
/// and after the restart: the restart is logged, the table's snapshot finishes on `code`, and
/// the sink's rows equal the table's, id 1 read again ([`assert_rekeyed`]).
pub fn rekeyed_mid_snapshot(p: &mut Pipeline, s: &RekeySource) {
    let ddl = format!(
        "{};
         UPDATE t SET v = 1 WHERE id IN (5, 10000, 19999);
         UPDATE t SET code = 200000 + id WHERE id IN (6, 15000);
         INSERT INTO t VALUES (20001, 50, 2);
         DELETE FROM t WHERE id IN (7, 12000);",
        (s.redefine)("code")
    );
    ddl_mid_snapshot(p, s.sql, &ddl);
    let why = key_changed(s.table, "id", "code");
    wait_for("the restart", p, Duration::from_secs(120), |p| {
        p.log_text().contains(&why)
    });
    (s.sql)(
        "UPDATE t SET v = 3 WHERE id IN (8, 11000);
         INSERT INTO t VALUES (20002, 60, 4);
         DELETE FROM t WHERE id IN (9, 13000);",
    );
    wait_for(
        "the restarted snapshot to finish",
        p,
        Duration::from_secs(180),
        |p| {
            snapshot_record(p, s.table)
                .is_some_and(|t| t["complete"] == true && t["key"] == serde_json::json!(["code"]))
        },
    );
    (s.marker)(p);
    p.stop();
    let expected = int_triples(&(s.sql)("SELECT id, code, v FROM t ORDER BY id"), s.sep);
    assert_rekeyed(p, "t", &expected);
}

/// How the log says a table's incremental snapshot ended.
const TABLE_DONE: &str = "incremental snapshot: table done";

/// Overrides `checkpoint.interval`: no checkpoint while a run lasts (but its very first).
const NO_CHECKPOINT: (&str, &str) = ("TIDEMARK__CHECKPOINT__INTERVAL", "1h");

/// kill -9 right after a primary key is redefined mid incremental snapshot, twice, on the
/// table of `s` whose snapshot (on `id`) is under way in `p`, with DML before, with and after
/// each DDL and while the engine is down:
///
/// (a) `id` → `code`; once a checkpoint holds the restart on `code` and a `code` last key,
///     kill -9. The next run resumes after that key: no restart (log), every row it reads has
///     a greater `code`.
/// (b) that run has no checkpoint but its first (`checkpoint.interval` 1 h); `code` → `id`,
///     kill -9 as soon as the log says so. The checkpoint still holds `code` and the same last
///     key, so the next run (usual interval) must see the recorded key is not the table's and
///     start again from its first key on `id` (log): every row of the table is read (or
///     streamed) in that run.
///
/// At the end the record is complete on `id` (checkpoint and `status`) and the sink's rows
/// equal the table's.
pub fn kill9_after_rekey(p: &mut Pipeline, s: &RekeySource) {
    let (table, rows) = (s.table, s.rows);
    assert!(rows < 99_990, "rekey_dml's codes need fewer rows");
    let sql = |text: &str| {
        (s.sql)(text);
    };
    sql(&rekey_dml(rows, 1));
    sql(&format!("{}; {}", (s.redefine)("code"), rekey_dml(rows, 2)));

    // (a) The restart on `code` and some of its chunks are durable.
    wait_record(p, table, "new-key chunks in a checkpoint", |t| {
        assert!(
            t["complete"] == false,
            "the snapshot ended before the kill: {t}"
        );
        t["key"] == serde_json::json!(["code"]) && t["last_key"].is_array()
    });
    p.kill9();
    let at_a = snapshot_record(p, table).expect("a checkpoint");
    let durable: i64 = at_a["last_key"][0]
        .as_str()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("a code last key: {at_a}"));
    assert!(
        at_a["key"] == serde_json::json!(["code"]) && at_a["complete"] == false,
        "the kill must land mid-snapshot on code: {at_a}"
    );
    let line = status_line(p, table);
    assert!(line.ends_with(&format!("after key {durable}")), "{line}");
    let log = p.log_text();
    assert!(log.contains(&key_changed(table, "id", "code")), "{log}");
    assert!(log.contains(RESTARTED_LIVE), "{log}");
    sql(&rekey_dml(rows, 3));
    let (out_a, log_a) = (complete_len(&output(p)), log.len());

    // The resume goes on after `code`'s last key.
    p.env.push((NO_CHECKPOINT.0.into(), NO_CHECKPOINT.1.into()));
    p.start();
    sql(&rekey_dml(rows, 4));
    // A run without checkpoints shows its end in the log only.
    let not_done = |p: &Pipeline| {
        let run = log_since(p, log_a);
        assert!(
            !run.contains(TABLE_DONE),
            "the snapshot ended before the DDL: {run}"
        );
    };
    wait_for(
        "chunks after the resume",
        p,
        Duration::from_secs(180),
        |p| {
            not_done(p);
            let out = output(p);
            out.get(out_a..)
                .unwrap_or_default()
                .matches("\"op\":\"r\"")
                .count()
                >= 1000
        },
    );
    let out = output(p);
    let resumed = read_codes(&out[out_a..complete_len(&out)], table_name(table));
    assert!(!resumed.is_empty(), "no chunk read after the resume");
    let behind: Vec<&(i64, i64)> = resumed
        .iter()
        .filter(|(_, c)| *c <= durable)
        .take(5)
        .collect();
    assert!(
        behind.is_empty(),
        "rows at or below the durable last key code = {durable} read again (id, code): {behind:?}"
    );

    // (b) The key changes back; kill -9 before any checkpoint.
    sql(&format!("{}; {}", (s.redefine)("id"), rekey_dml(rows, 5)));
    let back = key_changed(table, "code", "id");
    wait_for_every(
        "the live restart on id",
        p,
        Duration::from_secs(180),
        Duration::from_millis(20),
        |p| {
            not_done(p);
            log_since(p, log_a).contains(&back)
        },
    );
    p.kill9();
    let run = log_since(p, log_a);
    assert!(run.contains("resuming the incremental snapshot"), "{run}");
    assert!(
        !run.contains(RESTARTED_ON_RESUME),
        "the resume on code restarted: {run}"
    );
    let at_b = snapshot_record(p, table).expect("a checkpoint");
    assert!(
        at_b["key"] == at_a["key"]
            && at_b["last_key"] == at_a["last_key"]
            && at_b["complete"] == false,
        "a checkpoint was saved after the resume: {at_b}, was {at_a}"
    );
    let line = status_line(p, table);
    assert!(line.ends_with(&format!("after key {durable}")), "{line}");
    sql(&rekey_dml(rows, 6));
    let (out_b, log_b) = (complete_len(&output(p)), p.log_text().len());

    // The resume sees `code` recorded, `id` the key: it starts again.
    p.env.retain(|(k, _)| k != NO_CHECKPOINT.0);
    let started = Instant::now();
    p.start();
    wait_for("the restart on resume", p, Duration::from_secs(180), |p| {
        log_since(p, log_b).contains(RESTARTED_ON_RESUME)
    });
    sql(&rekey_dml(rows, 7));
    let done = wait_record(p, table, "the snapshot to finish on id", |t| {
        t["complete"] == true && t["key"] == serde_json::json!(["id"])
    });
    let finished = started.elapsed();
    (s.marker)(p);
    p.stop();
    let run = log_since(p, log_b);
    let restart = run
        .lines()
        .find(|l| l.contains(RESTARTED_ON_RESUME))
        .expect("the restart line");
    assert!(
        restart.contains("old_key=code") && restart.contains("new_key=id"),
        "{restart}"
    );
    assert!(
        done["error"].is_null() && done["last_key"].is_null(),
        "{done}"
    );
    let line = status_line(p, table);
    assert!(line.ends_with(", done"), "{line}");
    let expected = int_triples(&(s.sql)("SELECT id, code, v FROM t ORDER BY id"), s.sep);
    assert!(expected.len() as i64 > rows - 20, "{} rows", expected.len());
    let all = output(p);
    let last = FilteredReads::of(&all[out_b..], table_name(table));
    let unread: Vec<&i64> = expected
        .keys()
        .filter(|id| !last.reads.contains_key(id) && !last.touched.contains(id))
        .take(5)
        .collect();
    assert!(
        unread.is_empty(),
        "rows neither read nor streamed after the restart on resume: {unread:?} ({} read)",
        last.reads.len()
    );
    // A delete's old tuple carries the key as of its WAL; a key taken from a later or earlier
    // catalog names columns the tuple lacks (zero here, as no key of `t` is).
    let zero_keyed: Vec<(usize, String)> = table_events(&all, table_name(table))
        .filter(|(_, v)| payload(v).is_some_and(|p| p["op"] == "d"))
        .filter(|(_, v)| {
            let key = v["key"].get("payload").unwrap_or(&v["key"]);
            key.as_object()
                .is_none_or(|k| k.values().any(|x| x.as_i64() == Some(0)))
        })
        .map(|(n, v)| (n + 1, v["key"].to_string()))
        .take(5)
        .collect();
    assert!(
        zero_keyed.is_empty(),
        "deletes keyed by a column their old tuple lacks (line, key): {zero_keyed:?}"
    );
    let replay = RekeyReplay::of(&all, table_name(table));
    assert_eq!(
        replay.rows, expected,
        "the sink's rows differ from the table's"
    );
    eprintln!(
        "kill9_after_rekey {table}: durable code last key {durable}; {} reads after it before the kill; {} reads after the restart on resume, {} rows, in {:?}",
        resumed.len(),
        last.reads.len(),
        expected.len(),
        finished
    );
}

/// `t` of `schema.t` / `db.t`.
fn table_name(table: &str) -> &str {
    table.rsplit_once('.').map_or(table, |(_, t)| t)
}

/// (`id`, `code`) of the `op: r` events of `table` (`t (id, code, v)`) in `text`.
fn read_codes(text: &str, table: &str) -> Vec<(i64, i64)> {
    table_events(text, table)
        .filter_map(|(_, v)| {
            let p = payload(&v)?;
            if p["op"] != "r" {
                return None;
            }
            Some((p["after"]["id"].as_i64()?, p["after"]["code"].as_i64()?))
        })
        .collect()
}

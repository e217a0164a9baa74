//! Dates, times, timestamps and intervals: calendar math by hand (proleptic Gregorian, year 0
//! = 1 BC, as Postgres does), text parsing of the ISO output forms, binary conversions.
//!
//! # Traps
//! - Postgres' binary epoch is 2000-01-01; Arrow's is 1970-01-01.
//! - `BC` comes last in the text, after the time and offset: `0044-03-15 12:00:00+00 BC`.
//! - Offsets can carry seconds (`-03:30:52`, local mean time before 1900).
//! - `infinity`/`-infinity` are sentinels: `i32::MAX/MIN` (date), `i64::MAX/MIN` (timestamps),
//!   both on the wire and in Arrow.
//! - `time` allows `24:00:00`.

use arrow_buffer::IntervalMonthDayNano;

use crate::error::ValueError;

/// Days from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_DAYS: i64 = 10_957;
/// µs from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_US: i64 = PG_EPOCH_DAYS * US_PER_DAY;
const US_PER_DAY: i64 = 86_400_000_000;
const US_PER_SEC: i64 = 1_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (year 0 = 1 BC).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    type_name: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str, type_name: &'static str) -> Self {
        Cursor {
            b: s.as_bytes(),
            i: 0,
            type_name,
        }
    }

    fn err(&self, reason: &'static str) -> ValueError {
        ValueError::InvalidText {
            type_name: self.type_name,
            offset: self.i,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), ValueError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    /// An unsigned decimal of `min..=max` digits.
    fn number(&mut self, min: usize, max: usize) -> Result<i64, ValueError> {
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            if self.i - start >= max {
                return Err(self.err("too many digits"));
            }
            v = v * 10 + (d - b'0') as i64;
            self.i += 1;
        }
        if self.i - start < min {
            return Err(self.err("digits expected"));
        }
        Ok(v)
    }

    /// `.ffffff` → µs (up to 6 digits; more must be zeros).
    fn fraction_us(&mut self) -> Result<i64, ValueError> {
        if !self.eat(b'.') {
            return Ok(0);
        }
        let start = self.i;
        let mut us = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            let n = self.i - start;
            if n < 6 {
                us = us * 10 + (d - b'0') as i64;
            } else if d != b'0' {
                return Err(self.err("more than microsecond precision"));
            }
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return Err(self.err("fraction digits expected"));
        }
        for _ in n..6 {
            us *= 10;
        }
        Ok(us)
    }

    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
}

/// `YYYY-MM-DD` → days since 1970 (year not yet BC-adjusted).
fn date_part(c: &mut Cursor<'_>) -> Result<(i64, u32, u32), ValueError> {
    let y = c.number(1, 9)?;
    c.expect(b'-', "expected '-'")?;
    let m = c.number(2, 2)? as u32;
    c.expect(b'-', "expected '-'")?;
    let d = c.number(2, 2)? as u32;
    if !(1..=12).contains(&m) {
        return Err(c.err("month out of range"));
    }
    Ok((y, m, d))
}

fn civil_days(c: &Cursor<'_>, (y, m, d): (i64, u32, u32), bc: bool) -> Result<i64, ValueError> {
    if y == 0 {
        return Err(c.err("year 0 does not exist"));
    }
    let y = if bc { 1 - y } else { y };
    if d == 0 || d > days_in_month(y, m) {
        return Err(c.err("day out of range"));
    }
    Ok(days_from_civil(y, m, d))
}

/// `HH:MM:SS[.ffffff]` → µs since midnight (24:00:00 allowed).
fn time_part(c: &mut Cursor<'_>) -> Result<i64, ValueError> {
    let h = c.number(2, 2)?;
    c.expect(b':', "expected ':'")?;
    let mi = c.number(2, 2)?;
    c.expect(b':', "expected ':'")?;
    let s = c.number(2, 2)?;
    let us = c.fraction_us()?;
    if mi > 59 || s > 59 || h > 24 || (h == 24 && (mi, s, us) != (0, 0, 0)) {
        return Err(c.err("time out of range"));
    }
    Ok(((h * 60 + mi) * 60 + s) * US_PER_SEC + us)
}

/// `±HH[:MM[:SS]]` → seconds east of UTC.
fn offset_part(c: &mut Cursor<'_>) -> Result<i64, ValueError> {
    let sign = match c.peek() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(c.err("expected a UTC offset")),
    };
    c.i += 1;
    let h = c.number(2, 2)?;
    let mut secs = h * 3600;
    if c.eat(b':') {
        secs += c.number(2, 2)? * 60;
        if c.eat(b':') {
            secs += c.number(2, 2)?;
        }
    }
    Ok(sign * secs)
}

fn strip_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(r) => (r, true),
        None => (s, false),
    }
}

/// Date text → days since 1970 (`infinity` → `i32::MAX`, `-infinity` → `i32::MIN`).
pub(crate) fn parse_date(s: &str) -> Result<i32, ValueError> {
    match s {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (body, bc) = strip_bc(s);
    let mut c = Cursor::new(body, "date");
    let ymd = date_part(&mut c)?;
    if !c.done() {
        return Err(c.err("trailing characters"));
    }
    let days = civil_days(&c, ymd, bc)?;
    i32::try_from(days).map_err(|_| c.err("date out of range"))
}

/// Time text → µs since midnight.
pub(crate) fn parse_time(s: &str) -> Result<i64, ValueError> {
    let mut c = Cursor::new(s, "time");
    let t = time_part(&mut c)?;
    if !c.done() {
        return Err(c.err("trailing characters"));
    }
    Ok(t)
}

/// Timestamp text → µs since the Unix epoch (UTC for timestamptz, with its offset applied).
pub(crate) fn parse_timestamp(s: &str, with_tz: bool) -> Result<i64, ValueError> {
    match s {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let type_name = if with_tz { "timestamptz" } else { "timestamp" };
    let (body, bc) = strip_bc(s);
    let mut c = Cursor::new(body, type_name);
    let ymd = date_part(&mut c)?;
    if !(c.eat(b' ') || c.eat(b'T')) {
        return Err(c.err("expected ' ' between date and time"));
    }
    let t = time_part(&mut c)?;
    let offset = if !c.done() && with_tz {
        offset_part(&mut c)?
    } else {
        0
    };
    if !c.done() {
        return Err(c.err("trailing characters"));
    }
    let days = civil_days(&c, ymd, bc)?;
    days.checked_mul(US_PER_DAY)
        .and_then(|v| v.checked_add(t))
        .and_then(|v| v.checked_sub(offset * US_PER_SEC))
        .filter(|v| *v != i64::MAX && *v != i64::MIN)
        .ok_or_else(|| out_of_range(type_name))
}

fn out_of_range(type_name: &'static str) -> ValueError {
    ValueError::OutOfRange {
        type_name,
        target: "i64 microseconds since 1970".into(),
        reason: "beyond the Unix-epoch microsecond range",
    }
}

/// Binary date (days since 2000) → days since 1970.
pub(crate) fn date_from_pg(days: i32) -> Result<i32, ValueError> {
    match days {
        i32::MAX | i32::MIN => Ok(days),
        d => i32::try_from(d as i64 + PG_EPOCH_DAYS).map_err(|_| out_of_range("date")),
    }
}

/// Binary timestamp (µs since 2000) → µs since 1970.
pub(crate) fn timestamp_from_pg(us: i64, type_name: &'static str) -> Result<i64, ValueError> {
    match us {
        i64::MAX | i64::MIN => Ok(us),
        v => v
            .checked_add(PG_EPOCH_US)
            .filter(|v| *v != i64::MAX)
            .ok_or_else(|| out_of_range(type_name)),
    }
}

/// Interval text in IntervalStyle `postgres`: `1 year 2 mons -3 days +04:05:06.789`.
pub(crate) fn parse_interval(s: &str) -> Result<IntervalMonthDayNano, ValueError> {
    let err = |offset, reason| ValueError::InvalidText {
        type_name: "interval",
        offset,
        reason,
    };
    let overflow = || ValueError::OutOfRange {
        type_name: "interval",
        target: "Interval(MonthDayNano)".into(),
        reason: "a field overflows",
    };
    let (mut months, mut days, mut us) = (0i32, 0i32, 0i64);
    let mut tokens = s.split(' ').filter(|t| !t.is_empty());
    let mut any = false;
    while let Some(tok) = tokens.next() {
        any = true;
        let offset = tok.as_ptr() as usize - s.as_ptr() as usize;
        if tok.contains(':') {
            let t = interval_time(tok).map_err(|r| err(offset, r))?;
            us = us.checked_add(t).ok_or_else(overflow)?;
            continue;
        }
        let n: i32 = tok.parse().map_err(|_| err(offset, "number expected"))?;
        let unit = tokens.next().ok_or_else(|| err(s.len(), "unit expected"))?;
        match unit {
            "year" | "years" => {
                let m = n.checked_mul(12).ok_or_else(overflow)?;
                months = months.checked_add(m).ok_or_else(overflow)?;
            }
            "mon" | "mons" => months = months.checked_add(n).ok_or_else(overflow)?,
            "day" | "days" => days = days.checked_add(n).ok_or_else(overflow)?,
            _ => return Err(err(offset, "unknown unit (IntervalStyle must be postgres)")),
        }
    }
    if !any {
        return Err(err(0, "empty interval"));
    }
    let nanos = us.checked_mul(1000).ok_or_else(overflow)?;
    Ok(IntervalMonthDayNano::new(months, days, nanos))
}

/// `[+-]H+:MM:SS[.ffffff]` → µs.
fn interval_time(tok: &str) -> Result<i64, &'static str> {
    let (neg, body) = match tok.as_bytes().first() {
        Some(b'-') => (true, &tok[1..]),
        Some(b'+') => (false, &tok[1..]),
        _ => (false, tok),
    };
    let mut parts = body.splitn(3, ':');
    let h = parts.next().ok_or("hours expected")?;
    let m = parts.next().ok_or("minutes expected")?;
    let sec = parts.next().unwrap_or("00");
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    let (s_int, s_frac) = sec.split_once('.').unwrap_or((sec, ""));
    if !digits(h) || !digits(m) || !digits(s_int) || !(s_frac.is_empty() || digits(s_frac)) {
        return Err("malformed time");
    }
    if s_frac.len() > 6 && s_frac[6..].bytes().any(|b| b != b'0') {
        return Err("more than microsecond precision");
    }
    let h: i64 = h.parse().map_err(|_| "hours out of range")?;
    let m: i64 = m.parse().map_err(|_| "minutes out of range")?;
    let sec: i64 = s_int.parse().map_err(|_| "seconds out of range")?;
    let mut frac: i64 = 0;
    for i in 0..6 {
        let d = s_frac.as_bytes().get(i).map_or(0, |b| (b - b'0') as i64);
        frac = frac * 10 + d;
    }
    // Every field is a digit string of any length: each product and sum is checked (minutes
    // or seconds of 15+ digits overflowed i64 µs, a panic in debug builds).
    let total = h
        .checked_mul(3600 * US_PER_SEC)
        .zip(m.checked_mul(60 * US_PER_SEC))
        .zip(sec.checked_mul(US_PER_SEC))
        .and_then(|((h, m), s)| h.checked_add(m)?.checked_add(s)?.checked_add(frac))
        .ok_or("time out of range")?;
    Ok(if neg { -total } else { total })
}

/// Renders µs since midnight as `HH:MM:SS[.ffffff]` (trailing fraction zeros trimmed).
pub(crate) fn render_time(out: &mut String, us: i64) {
    use std::fmt::Write;
    let (secs, frac) = (us.div_euclid(US_PER_SEC), us.rem_euclid(US_PER_SEC));
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    write!(out, "{h:02}:{m:02}:{s:02}").expect("String write");
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

/// Binary timetz (`i64` µs, `i32` zone in seconds *west* of UTC) → Postgres text.
pub(crate) fn render_timetz(b: &[u8]) -> Result<String, ValueError> {
    let (Some(t), Some(z)) = (b.get(0..8), b.get(8..12)) else {
        return Err(ValueError::InvalidBinary {
            type_name: "timetz",
            offset: 0,
            reason: "expected 12 bytes",
        });
    };
    if b.len() != 12 {
        return Err(ValueError::InvalidBinary {
            type_name: "timetz",
            offset: 12,
            reason: "expected 12 bytes",
        });
    }
    let us = i64::from_be_bytes(t.try_into().expect("8 bytes"));
    let zone = i32::from_be_bytes(z.try_into().expect("4 bytes"));
    let mut out = String::with_capacity(24);
    render_time(&mut out, us);
    let east = -(zone as i64);
    let a = east.abs();
    out.push(if east < 0 { '-' } else { '+' });
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    out.push_str(&format!("{h:02}"));
    if s != 0 {
        out.push_str(&format!(":{m:02}:{s:02}"));
    } else if m != 0 {
        out.push_str(&format!(":{m:02}"));
    }
    Ok(out)
}

/// `YYYY-MM-DD` of days since 1970 (years padded to 4 digits, more if needed); returns whether
/// the year is BC (the caller appends ` BC` after everything else, as `EncodeDateTime` does).
fn push_ymd(out: &mut String, days_1970: i64) -> bool {
    use std::fmt::Write;
    let (y, m, d) = civil_from_days(days_1970);
    let bc = y <= 0;
    let y = if bc { 1 - y } else { y };
    write!(out, "{y:04}-{m:02}-{d:02}").expect("String write");
    bc
}

/// Binary date (days since 2000) → `date_out` text with `DateStyle=ISO`.
pub(crate) fn render_date(out: &mut String, days_2000: i32) {
    match days_2000 {
        i32::MAX => out.push_str("infinity"),
        i32::MIN => out.push_str("-infinity"),
        d => {
            if push_ymd(out, d as i64 + PG_EPOCH_DAYS) {
                out.push_str(" BC");
            }
        }
    }
}

/// Binary timestamp (µs since 2000) → `timestamp_out` / `timestamptz_out` text with
/// `DateStyle=ISO` and `TimeZone=UTC` (the source's session settings): `2020-01-01 00:00:00.5`,
/// `+00` for timestamptz, ` BC` last.
pub(crate) fn render_timestamp(out: &mut String, us_2000: i64, with_tz: bool) {
    match us_2000 {
        i64::MAX => out.push_str("infinity"),
        i64::MIN => out.push_str("-infinity"),
        us => {
            let days = us.div_euclid(US_PER_DAY) + PG_EPOCH_DAYS;
            let bc = push_ymd(out, days);
            out.push(' ');
            render_time(out, us.rem_euclid(US_PER_DAY));
            if with_tz {
                out.push_str("+00");
            }
            if bc {
                out.push_str(" BC");
            }
        }
    }
}

/// Binary interval (`i64` µs, `i32` days, `i32` months) → `interval_out` text with
/// `IntervalStyle=postgres`: `1 year 2 mons -3 days +04:05:06.5`. Each non-zero part prints
/// with its sign; a positive part after a negative one gets a `+` (`AddPostgresIntPart`:
/// only the part right after a negative one); the time prints when it is non-zero or when
/// every other part is zero.
pub(crate) fn render_interval(out: &mut String, us: i64, days: i32, months: i32) {
    use std::fmt::Write;
    let start = out.len();
    let mut before_negative = false;
    let mut part = |out: &mut String, value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        if out.len() > start {
            out.push(' ');
        }
        if before_negative && value > 0 {
            out.push('+');
        }
        let plural = if value != 1 { "s" } else { "" };
        write!(out, "{value} {unit}{plural}").expect("String write");
        before_negative = value < 0;
    };
    part(out, i64::from(months / 12), "year");
    part(out, i64::from(months % 12), "mon");
    part(out, i64::from(days), "day");
    let is_zero = out.len() == start;
    let hours = us / 3_600_000_000;
    let rest = us % 3_600_000_000;
    let minutes = rest / 60_000_000;
    let rest = rest % 60_000_000;
    let seconds = rest / US_PER_SEC;
    let fraction = rest % US_PER_SEC;
    if is_zero || us != 0 {
        let minus = us < 0;
        if !is_zero {
            out.push(' ');
        }
        let sign = if minus {
            "-"
        } else if before_negative {
            "+"
        } else {
            ""
        };
        write!(
            out,
            "{sign}{:02}:{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs(),
            seconds.unsigned_abs()
        )
        .expect("String write");
        if fraction != 0 {
            let f = format!("{:06}", fraction.unsigned_abs());
            out.push('.');
            out.push_str(f.trim_end_matches('0'));
        }
    }
}

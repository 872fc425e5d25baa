//! Column values between their stored form and their fixture form, as
//! Django's serializer (through `DjangoJSONEncoder`) writes them. The stored
//! form is the one Django's SQLite backend writes; PostgreSQL's values are
//! selected in that same form (see `postgres`).

use std::io::{self, Write};

use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::Value;

use super::pyjson::{self, Style};

/// Column types whose fixture form differs from their SQLite form, read from
/// the declared type Django's SQLite backend gives each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Plain,
    /// `datetime`: stored `2024-01-01 15:08:00[.ffffff]`, written ISO 8601.
    DateTime,
    /// `time`: microseconds cut to milliseconds in fixtures.
    Time,
    /// `bool`: 0/1 in SQLite, `false`/`true` in fixtures.
    Bool,
    /// `BLOB`: base64 in fixtures.
    Blob,
    /// `decimal`: a string in fixtures.
    Decimal,
    /// `char(32)`: a UUID's hex digits, written with dashes.
    Uuid,
    /// `text` checked by `JSON_VALID`: written as the JSON value it holds.
    Json,
    /// PostgreSQL's `interval` (`DurationField`), stored as microseconds:
    /// written as Django's `duration_iso_string`.
    Duration,
}

impl ColumnKind {
    pub fn of_declared(declared: &str, json_checked: bool) -> ColumnKind {
        let t = declared.trim().to_ascii_lowercase();
        match t.as_str() {
            "datetime" | "timestamp" => ColumnKind::DateTime,
            "time" => ColumnKind::Time,
            "bool" | "boolean" => ColumnKind::Bool,
            "decimal" => ColumnKind::Decimal,
            "char(32)" => ColumnKind::Uuid,
            _ if t.contains("blob") => ColumnKind::Blob,
            _ if json_checked => ColumnKind::Json,
            _ => ColumnKind::Plain,
        }
    }
}

impl ColumnKind {
    /// The kind of a PostgreSQL column, by its type without modifiers.
    pub fn of_postgres(sql_type: &str) -> ColumnKind {
        match sql_type {
            "timestamp with time zone" | "timestamp without time zone" => ColumnKind::DateTime,
            "time without time zone" => ColumnKind::Time,
            "boolean" => ColumnKind::Bool,
            "bytea" => ColumnKind::Blob,
            "numeric" => ColumnKind::Decimal,
            "uuid" => ColumnKind::Uuid,
            "jsonb" | "json" => ColumnKind::Json,
            "interval" => ColumnKind::Duration,
            _ => ColumnKind::Plain,
        }
    }
}

pub use crate::config::Datetimes;

/// Django's `duration_iso_string`: `P1DT02H03M04.000005S`, `-P0DT00H00M01S`.
pub fn duration_to_fixture(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let total = micros.unsigned_abs();
    let (seconds, us) = (total / 1_000_000, total % 1_000_000);
    let days = seconds / 86_400;
    let (h, m, s) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    let frac = if us > 0 {
        format!(".{us:06}")
    } else {
        String::new()
    };
    format!("{sign}P{days}DT{h:02}H{m:02}M{s:02}{frac}S")
}

/// Microseconds of a duration as Django's `parse_duration` reads it: ISO 8601
/// (`P1DT02H03M04.5S`, the form it writes) or `[-][D ]HH:MM:SS[.f]`.
pub fn duration_from_fixture(s: &str) -> Option<i64> {
    let t = s.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let micros = match t.strip_prefix('P') {
        Some(iso) => iso_duration(iso)?,
        None => clock_duration(t)?,
    };
    Some(if negative { -micros } else { micros })
}

/// A number with an optional fraction, scaled by `unit` microseconds.
fn scaled(number: &str, unit: i64) -> Option<i64> {
    let (int, frac) = number.split_once(['.', ',']).unwrap_or((number, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = int.parse::<i64>().ok()?.checked_mul(unit)?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(12)
        .collect();
    let part = (digits.parse::<i128>().ok()? * unit as i128 / 1_000_000_000_000) as i64;
    whole.checked_add(part)
}

fn iso_duration(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut total = 0i64;
    let mut take = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut rest = part;
        for (letter, unit) in units {
            if let Some((n, tail)) = rest.split_once(*letter) {
                total = total.checked_add(scaled(n, *unit)?)?;
                rest = tail;
            }
        }
        rest.is_empty().then_some(())
    };
    take(date, &[('D', 86_400_000_000)])?;
    take(
        time,
        &[('H', 3_600_000_000), ('M', 60_000_000), ('S', 1_000_000)],
    )?;
    (!s.is_empty()).then_some(total)
}

fn clock_duration(s: &str) -> Option<i64> {
    let (days, clock) = match s.split_once(' ') {
        Some((d, c)) => (scaled(d.trim_end_matches(" days"), 86_400_000_000)?, c),
        None => (0, s),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m, s] => (scaled(h, 3_600_000_000)?, scaled(m, 60_000_000)?, s),
        [m, s] => (0, scaled(m, 60_000_000)?, s),
        [s] => (0, 0, s),
        _ => return None,
    };
    [days, h, m, scaled(sec, 1_000_000)?]
        .iter()
        .try_fold(0i64, |a, b| a.checked_add(*b))
}

/// `YYYY-MM-DD HH:MM:SS[.f]` split into date, time and fraction digits.
fn split_stored_datetime(s: &str) -> Option<(&str, &str, &str)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[10] != b' ' {
        return None;
    }
    let (time, frac) = split_time(&s[11..])?;
    let shape = |i: usize, c: u8| b.get(i).is_some_and(|x| *x == c);
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && shape(4, b'-') && digits(5..7) && shape(7, b'-') && digits(8..10)) {
        return None;
    }
    Some((&s[..10], time, frac))
}

/// `HH:MM:SS[.f]` split into the time and its fraction digits (without the dot).
fn split_time(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() < 8
        || !(digits(0..2) && b[2] == b':' && digits(3..5) && b[5] == b':' && digits(6..8))
    {
        return None;
    }
    let frac = &s[8..];
    if frac.is_empty() {
        return Some((s, ""));
    }
    let digits = frac.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((&s[..8], digits))
}

/// `DjangoJSONEncoder`'s fraction: milliseconds, cut, and only when the
/// microseconds are not zero.
fn millis(frac: &str) -> String {
    let mut micro: String = frac.chars().take(6).collect();
    while micro.len() < 6 {
        micro.push('0');
    }
    if micro.bytes().all(|c| c == b'0') {
        String::new()
    } else {
        format!(".{}", &micro[..3])
    }
}

/// The fixture form of a stored datetime.
pub fn datetime_to_fixture(s: &str, mode: Datetimes) -> Option<String> {
    let (date, time, frac) = split_stored_datetime(s)?;
    let frac = millis(frac);
    match mode {
        Datetimes::Utc => Some(format!("{date}T{time}{frac}Z")),
        Datetimes::Naive => Some(format!("{date}T{time}{frac}")),
        Datetimes::Verbatim => None,
    }
}

fn time_to_fixture(s: &str) -> Option<String> {
    let (time, frac) = split_time(s)?;
    Some(format!("{time}{}", millis(frac)))
}

/// Django's stored form of a time: six fraction digits, only when not zero.
fn time_from_fixture(s: &str) -> Option<String> {
    let (time, frac) = split_time(s)?;
    let mut micro: String = frac.chars().take(6).collect();
    while micro.len() < 6 {
        micro.push('0');
    }
    Some(if micro.bytes().all(|c| c == b'0') {
        time.to_string()
    } else {
        format!("{time}.{micro}")
    })
}

/// The stored form of a fixture datetime, as Django's SQLite backend writes
/// it (`isoformat(" ")`: microseconds only when non-zero).
pub fn datetime_from_fixture(
    s: &str,
    mode: Datetimes,
) -> std::result::Result<Option<String>, String> {
    if mode == Datetimes::Verbatim || s.len() < 19 || s.as_bytes()[10] != b'T' {
        return Ok(None);
    }
    let aware = s.ends_with('Z') || s[19..].contains(['+', '-']);
    let naive = |t: time::PrimitiveDateTime| {
        let base = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        match t.microsecond() {
            0 => base,
            us => format!("{base}.{us:06}"),
        }
    };
    if aware {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("{s:?} is not an ISO 8601 datetime: {e}"))?
            .to_offset(time::UtcOffset::UTC);
        Ok(Some(naive(time::PrimitiveDateTime::new(
            t.date(),
            t.time(),
        ))))
    } else {
        let f = time::macros::format_description!(
            version = 2,
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        let t = time::PrimitiveDateTime::parse(s, &f)
            .map_err(|e| format!("{s:?} is not an ISO 8601 datetime: {e}"))?;
        Ok(Some(naive(t)))
    }
}

/// `0f8fad5bd9cb469fa16570867728950e` → `0f8fad5b-d9cb-469f-a165-70867728950e`.
fn uuid_to_fixture(s: &str) -> Option<String> {
    (s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())).then(|| {
        let s = s.to_ascii_lowercase();
        format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        )
    })
}

/// Any form `uuid.UUID()` reads → the 32 hex digits Django stores.
fn uuid_from_fixture(s: &str) -> Option<String> {
    let t = s.trim_start_matches("urn:uuid:");
    let t = t.trim_start_matches('{').trim_end_matches('}');
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_lowercase())
}

/// A stored decimal as Django writes it: a string (its scale is not kept by
/// SQLite's `decimal` columns, so `12.5` stands for `12.50`).
fn decimal_text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) if f.is_finite() => Some(format!("{f}")),
        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
        _ => None,
    }
}

/// Write one stored value in its fixture form; the error says why it cannot be.
pub fn write_fixture_value(
    w: &mut impl Write,
    v: ValueRef<'_>,
    kind: ColumnKind,
    datetimes: Datetimes,
    style: Style,
    level: usize,
) -> std::result::Result<(), String> {
    let io = |e: io::Error| e.to_string();
    match (v, kind) {
        (ValueRef::Null, _) => w.write_all(b"null").map_err(io),
        (ValueRef::Integer(i @ (0 | 1)), ColumnKind::Bool) => w
            .write_all(if i == 1 { b"true" } else { b"false" })
            .map_err(io),
        (ValueRef::Integer(_) | ValueRef::Real(_), ColumnKind::Decimal) => {
            let text = decimal_text(v).ok_or("a decimal that is not finite")?;
            pyjson::write_str(w, &text, false).map_err(io)
        }
        (ValueRef::Integer(us), ColumnKind::Duration) => {
            pyjson::write_str(w, &duration_to_fixture(us), false).map_err(io)
        }
        (ValueRef::Integer(i), _) => w
            .write_all(itoa::Buffer::new().format(i).as_bytes())
            .map_err(io),
        (ValueRef::Real(f), _) if f.is_finite() => {
            w.write_all(pyjson::py_float(f).as_bytes()).map_err(io)
        }
        (ValueRef::Real(f), _) => Err(format!("{f} cannot be written in JSON")),
        (ValueRef::Text(t), _) => {
            let text =
                std::str::from_utf8(t).map_err(|_| "text that is not valid UTF-8".to_string())?;
            if kind == ColumnKind::Json
                && let Ok(value) = serde_json::from_str::<Value>(text)
            {
                return pyjson::write_value(w, &value, style, level).map_err(io);
            }
            let converted = match kind {
                ColumnKind::DateTime => datetime_to_fixture(text, datetimes),
                ColumnKind::Time => time_to_fixture(text),
                ColumnKind::Uuid => uuid_to_fixture(text),
                _ => None,
            };
            pyjson::write_str(w, converted.as_deref().unwrap_or(text), false).map_err(io)
        }
        // Django's BinaryField serializes as base64.
        (ValueRef::Blob(b), _) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(b);
            pyjson::write_str(w, &encoded, false).map_err(io)
        }
    }
}

/// A stored value in its fixture form, as a JSON value (natural keys, lists).
pub fn fixture_value(
    v: ValueRef<'_>,
    kind: ColumnKind,
    datetimes: Datetimes,
) -> std::result::Result<Value, String> {
    let mut out = Vec::new();
    write_fixture_value(&mut out, v, kind, datetimes, Style::default(), 0)?;
    serde_json::from_slice(&out).map_err(|e| e.to_string())
}

/// A fixture value in the form Django stores it in a column of `kind`.
pub fn sql_value(
    v: &Value,
    kind: ColumnKind,
    datetimes: Datetimes,
) -> std::result::Result<SqlValue, String> {
    if kind == ColumnKind::Json {
        if v.is_null() {
            return Ok(SqlValue::Null);
        }
        // `json.dumps` with its defaults, as Django's JSONField stores values.
        let mut out = Vec::new();
        let style = Style {
            indent: None,
            ascii: true,
        };
        pyjson::write_value(&mut out, v, style, 0).map_err(|e| e.to_string())?;
        return Ok(SqlValue::Text(
            String::from_utf8(out).map_err(|e| e.to_string())?,
        ));
    }
    if kind == ColumnKind::Duration {
        return match v {
            Value::Null => Ok(SqlValue::Null),
            Value::String(s) => duration_from_fixture(s)
                .map(SqlValue::Integer)
                .ok_or_else(|| format!("{s:?} is not a duration")),
            // `parse_duration(str(n))`: a number is seconds.
            Value::Number(n) => n
                .as_f64()
                .map(|f| SqlValue::Integer((f * 1e6).round() as i64))
                .ok_or_else(|| format!("{n} is not a duration")),
            other => Err(format!("{other} is not a duration")),
        };
    }
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                SqlValue::Integer(i)
            } else if n.is_u64() {
                return Err(format!("{n} does not fit a 64-bit integer"));
            } else {
                SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => match kind {
            ColumnKind::DateTime => {
                SqlValue::Text(datetime_from_fixture(s, datetimes)?.unwrap_or_else(|| s.clone()))
            }
            ColumnKind::Time => SqlValue::Text(time_from_fixture(s).unwrap_or_else(|| s.clone())),
            ColumnKind::Uuid => SqlValue::Text(uuid_from_fixture(s).unwrap_or_else(|| s.clone())),
            ColumnKind::Blob => SqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("binary value is not base64: {e}"))?,
            ),
            // Bound as text: the column's NUMERIC affinity stores it as
            // Django's own `str(Decimal)` would be stored.
            _ => SqlValue::Text(s.clone()),
        },
        Value::Array(_) | Value::Object(_) => {
            return Err("lists and objects are not column values".into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_take_the_fixture_form_and_back() {
        use Datetimes::*;
        let to = |s, m| datetime_to_fixture(s, m);
        assert_eq!(
            to("2024-01-01 15:08:00", Utc).as_deref(),
            Some("2024-01-01T15:08:00Z")
        );
        // Cut, not rounded, to milliseconds, as DjangoJSONEncoder does.
        assert_eq!(
            to("2024-01-01 15:08:00.999999", Utc).as_deref(),
            Some("2024-01-01T15:08:00.999Z")
        );
        assert_eq!(
            to("2024-01-01 15:08:00.000500", Utc).as_deref(),
            Some("2024-01-01T15:08:00.000Z")
        );
        assert_eq!(
            to("2024-01-01 15:08:00", Naive).as_deref(),
            Some("2024-01-01T15:08:00")
        );
        assert_eq!(to("2024-01-01 15:08:00", Verbatim), None);
        assert_eq!(to("yesterday at noon", Utc), None);
        assert_eq!(to("2024-01-01", Utc), None);
        let from = |s| datetime_from_fixture(s, Utc).unwrap();
        assert_eq!(
            from("2024-01-01T15:08:00.789Z").as_deref(),
            Some("2024-01-01 15:08:00.789000")
        );
        assert_eq!(
            from("2024-01-01T15:08:00.000Z").as_deref(),
            Some("2024-01-01 15:08:00")
        );
        assert_eq!(
            from("2024-01-01T16:08:00+01:00").as_deref(),
            Some("2024-01-01 15:08:00")
        );
        assert_eq!(from("2024-01-01"), None);
        assert!(datetime_from_fixture("2024-13-01T15:08:00Z", Utc).is_err());
    }

    #[test]
    fn durations_as_django_writes_and_reads_them() {
        let day = 86_400_000_000i64;
        for (us, text) in [
            (0, "P0DT00H00M00S"),
            (
                day + 2 * 3_600_000_000 + 3 * 60_000_000 + 4_000_005,
                "P1DT02H03M04.000005S",
            ),
            (-1_000_000, "-P0DT00H00M01S"),
            (400 * day + 1, "P400DT00H00M00.000001S"),
        ] {
            assert_eq!(duration_to_fixture(us), text);
            assert_eq!(duration_from_fixture(text), Some(us), "{text}");
        }
        assert_eq!(
            duration_from_fixture("1 02:00:00.5"),
            Some(day + 7_200_500_000)
        );
        assert_eq!(duration_from_fixture("PT1.5S"), Some(1_500_000));
        assert_eq!(duration_from_fixture("90"), Some(90_000_000));
        assert_eq!(duration_from_fixture("P1Y"), None);
        assert_eq!(duration_from_fixture("soon"), None);
    }

    #[test]
    fn times_uuids_and_decimals() {
        assert_eq!(
            time_to_fixture("09:30:15.789123").as_deref(),
            Some("09:30:15.789")
        );
        assert_eq!(time_to_fixture("18:00:00").as_deref(), Some("18:00:00"));
        assert_eq!(
            time_from_fixture("09:30:15.789").as_deref(),
            Some("09:30:15.789000")
        );
        assert_eq!(
            time_from_fixture("18:00:00.000").as_deref(),
            Some("18:00:00")
        );
        let hex = "0f8fad5bd9cb469fa16570867728950e";
        let dashed = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(uuid_to_fixture(hex).as_deref(), Some(dashed));
        assert_eq!(uuid_from_fixture(dashed).as_deref(), Some(hex));
        assert_eq!(uuid_to_fixture("not a uuid"), None);
        let value = |v, k| fixture_value(v, k, Datetimes::Utc).unwrap();
        assert_eq!(value(ValueRef::Real(12.5), ColumnKind::Decimal), "12.5");
        assert_eq!(value(ValueRef::Integer(3), ColumnKind::Decimal), "3");
        assert_eq!(
            value(ValueRef::Text(br#"{"k": "\u00e9"}"#), ColumnKind::Json),
            serde_json::json!({"k": "é"})
        );
        assert_eq!(
            sql_value(
                &serde_json::json!({"k": "é", "n": [1, 2.5]}),
                ColumnKind::Json,
                Datetimes::Utc
            )
            .unwrap(),
            SqlValue::Text(r#"{"k": "\u00e9", "n": [1, 2.5]}"#.into())
        );
    }
}

//! JSON written as Python's `json.dumps` writes it, for what Django's
//! serializer passes through it: `", "`/`": "` separators (`","` with an
//! indent), floats in `repr` form (`1e-05`, `1e+16`, `0.1`), and either raw
//! UTF-8 (fixtures, `ensure_ascii=False`) or `\uXXXX` escapes (JSON columns as
//! Django stores them).

use std::io::{self, Write};

use serde_json::Value;

/// How values are laid out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Spaces per level (`--indent N`); None: one line.
    pub indent: Option<usize>,
    /// Escape every non-ASCII character (`ensure_ascii=True`).
    pub ascii: bool,
}

impl Style {
    pub fn fixture(indent: Option<usize>) -> Style {
        Style {
            indent: indent.filter(|n| *n > 0),
            ascii: false,
        }
    }

    /// A new line and the indentation of `level`, or nothing on one line.
    pub fn newline(&self, level: usize) -> String {
        match self.indent {
            Some(n) => format!("\n{}", " ".repeat(n * level)),
            None => String::new(),
        }
    }

    /// What separates two items of a list or an object.
    pub fn comma(&self) -> &'static str {
        if self.indent.is_some() { "," } else { ", " }
    }
}

/// `value` at nesting `level` (the level of the line it starts on).
pub fn write_value(w: &mut impl Write, v: &Value, style: Style, level: usize) -> io::Result<()> {
    match v {
        Value::Null => w.write_all(b"null"),
        Value::Bool(b) => w.write_all(if *b { b"true" } else { b"false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => w.write_all(itoa::Buffer::new().format(i).as_bytes()),
            (_, Some(u)) => w.write_all(itoa::Buffer::new().format(u).as_bytes()),
            _ => w.write_all(py_float(n.as_f64().unwrap_or(f64::NAN)).as_bytes()),
        },
        Value::String(s) => write_str(w, s, style.ascii),
        Value::Array(items) => {
            if items.is_empty() {
                return w.write_all(b"[]");
            }
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(style.comma().as_bytes())?;
                }
                w.write_all(style.newline(level + 1).as_bytes())?;
                write_value(w, item, style, level + 1)?;
            }
            w.write_all(style.newline(level).as_bytes())?;
            w.write_all(b"]")
        }
        Value::Object(map) => {
            if map.is_empty() {
                return w.write_all(b"{}");
            }
            w.write_all(b"{")?;
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    w.write_all(style.comma().as_bytes())?;
                }
                w.write_all(style.newline(level + 1).as_bytes())?;
                write_str(w, k, style.ascii)?;
                w.write_all(b": ")?;
                write_value(w, item, style, level + 1)?;
            }
            w.write_all(style.newline(level).as_bytes())?;
            w.write_all(b"}")
        }
    }
}

/// A string literal. Without `ascii`, Python escapes the same characters as
/// serde_json; with it, everything outside `' '..='~'` too.
pub fn write_str(w: &mut impl Write, s: &str, ascii: bool) -> io::Result<()> {
    if !ascii || s.bytes().all(|b| (b' '..=b'~').contains(&b) || b < 0x20) {
        return serde_json::to_writer(w, s).map_err(io::Error::other);
    }
    let mut out = String::with_capacity(s.len() + 16);
    out.push('"');
    let mut units = [0u16; 2];
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    w.write_all(out.as_bytes())
}

/// Python's `repr` of a float: shortest digits that read back the same,
/// scientific notation below 1e-4 and from 1e16 on.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let (int, frac) = if point <= 0 {
            (
                "0".to_string(),
                format!("{}{digits}", "0".repeat((-point) as usize)),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_string(),
                digits[point as usize..].to_string(),
            )
        };
        let frac = if frac.is_empty() { "0".into() } else { frac };
        format!("{sign}{int}.{frac}")
    } else {
        let mant = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(v: &Value, style: Style) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v, style, 0).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_as_python_repr() {
        for (f, s) in [
            (0.1, "0.1"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (2.5, "2.5"),
            (-0.0, "-0.0"),
            (1e300, "1e+300"),
            (123456.78, "123456.78"),
            (1.5e-7, "1.5e-07"),
            (100.0, "100.0"),
        ] {
            assert_eq!(py_float(f), s, "{f}");
        }
    }

    #[test]
    fn layouts_like_json_dumps() {
        let v: Value =
            serde_json::from_str(r#"{"a": [1, 2.5, null, true], "é": {}, "l": []}"#).unwrap();
        assert_eq!(
            dumps(&v, Style::default()),
            r#"{"a": [1, 2.5, null, true], "é": {}, "l": []}"#
        );
        assert_eq!(
            dumps(&v, Style::fixture(Some(2))),
            "{\n  \"a\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"é\": {},\n  \"l\": []\n}"
        );
        let ascii = Style {
            indent: None,
            ascii: true,
        };
        let s = Value::String("crème \\u \"😀\"\n".into());
        assert_eq!(dumps(&s, ascii), r#""cr\u00e8me \\u \"\ud83d\ude00\"\n""#);
    }
}

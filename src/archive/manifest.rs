//! `manifest.json`: what an archive holds, in load order.

use std::collections::HashSet;
use std::path::{Component, Path};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest manifest we read: a real one is a few hundred bytes.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: String,
    /// Naive local time, `2024-01-01T12:12:12`.
    pub creation: String,
    /// Fixture paths inside the archive (`data/blog.json`), in load order; None: no data.
    pub datas: Option<Vec<String>>,
    /// Storage directories relative to the storages basepath; None: no storages.
    pub storages: Option<Vec<String>>,
}

/// The exact shape on disk; every key required, unknown keys refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: String,
    creation: String,
    datas: Option<Vec<String>>,
    storages: Option<Vec<String>>,
}

impl Manifest {
    /// Serialize like Python's `json.dumps` (Diskette's): `, ` and `: ` separators,
    /// non-ASCII escaped, keys in Diskette's order, no trailing newline.
    pub fn to_json(&self) -> String {
        let list = |v: &Option<Vec<String>>| match v {
            None => "null".to_string(),
            Some(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|s| py_json_string(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "{{\"version\": {}, \"creation\": {}, \"datas\": {}, \"storages\": {}}}",
            py_json_string(&self.version),
            py_json_string(&self.creation),
            list(&self.datas),
            list(&self.storages)
        )
    }

    /// Parse and validate: shape, types, every path relative and inside.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let bad = |m: String| Error::Archive(format!("invalid manifest.json: {m}"));
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        if !value.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        for key in ["version", "creation", "datas", "storages"] {
            if value.get(key).is_none() {
                return Err(bad(format!("missing key {key:?}")));
            }
        }
        // Read the bytes again as the typed shape: unlike `Value`, it refuses duplicate keys.
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            bad(format!("{path}: {}", e.into_inner()))
        })?;
        let manifest = Manifest {
            version: raw.version,
            creation: raw.creation,
            datas: raw.datas,
            storages: raw.storages,
        };
        manifest.validate().map_err(bad)?;
        Ok(manifest)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let datas = self.datas.as_deref().unwrap_or_default();
        let storages = self.storages.as_deref().unwrap_or_default();
        if datas.is_empty() && storages.is_empty() {
            return Err("it lists neither data nor storages".into());
        }
        let mut seen = HashSet::new();
        for d in datas {
            check_relative(d).map_err(|m| format!("datas: {d:?} {m}"))?;
            let p = Path::new(d);
            if p.parent() != Some(Path::new(super::DATA_DIR)) {
                return Err(format!("datas: {d:?} is not a file of the data/ directory"));
            }
            if !seen.insert(d.as_str()) {
                return Err(format!("datas: {d:?} is listed twice"));
            }
        }
        for (i, s) in storages.iter().enumerate() {
            check_relative(s).map_err(|m| format!("storages: {s:?} {m}"))?;
            let first = Path::new(s).components().next();
            if matches!(first, Some(Component::Normal(c)) if c == super::DATA_DIR || c == super::MANIFEST)
            {
                return Err(format!(
                    "storages: {s:?} collides with the data/ directory or the manifest"
                ));
            }
            for other in &storages[..i] {
                if Path::new(s).starts_with(other) || Path::new(other).starts_with(s) {
                    return Err(format!("storages: {s:?} and {other:?} overlap"));
                }
            }
        }
        Ok(())
    }
}

/// A path that is relative, made of normal components only, UTF-8 and printable.
pub fn check_relative(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("holds control characters");
    }
    if path.contains('\\') {
        return Err("holds a backslash");
    }
    if path.starts_with('/') {
        return Err("is absolute");
    }
    if path.len() > 4096 {
        return Err("is longer than 4096 bytes");
    }
    for part in path.trim_end_matches('/').split('/') {
        match part {
            "" => return Err("has an empty component"),
            "." | ".." => return Err("has a '.' or '..' component"),
            p if p.len() > 255 => return Err("has a component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// A JSON string as Python's `json.dumps` (ensure_ascii) writes it.
fn py_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_like_python_json_dumps() {
        let m = Manifest {
            version: "0.6.0".into(),
            creation: "2026-11-27T01:17:44".into(),
            datas: Some(vec![
                "data/djangocontribsites.json".into(),
                "data/blog.json".into(),
            ]),
            storages: None,
        };
        assert_eq!(
            m.to_json(),
            r#"{"version": "0.6.0", "creation": "2026-11-27T01:17:44", "datas": ["data/djangocontribsites.json", "data/blog.json"], "storages": null}"#
        );
        let m = Manifest {
            datas: None,
            storages: Some(vec!["médias".into()]),
            ..m
        };
        assert!(m.to_json().contains(r#""storages": ["m\u00e9dias"]"#));
        assert_eq!(Manifest::parse(m.to_json().as_bytes()).unwrap(), m);
    }

    #[test]
    fn refuses_bad_shapes() {
        for bad in [
            "[]",
            "{\"version\": \"1\"}",
            r#"{"version": 1, "creation": true, "datas": "x", "storages": {}}"#,
            r#"{"version": "1", "creation": "c", "datas": [1, null], "storages": null}"#,
            r#"{"version": "1", "creation": "c", "datas": null, "storages": ["../../outside"]}"#,
            r#"{"version": "1", "creation": "c", "datas": null, "storages": ["/abs"]}"#,
            r#"{"version": "1", "creation": "c", "datas": ["../../etc/passwd"], "storages": null}"#,
            r#"{"version": "1", "creation": "c", "datas": null, "storages": null}"#,
            r#"{"version": "1", "creation": "c", "datas": null, "storages": ["data"]}"#,
            r#"{"version": "1", "creation": "c", "datas": null, "storages": ["m", "m/sub"]}"#,
            r#"{"version": "1", "creation": "c", "datas": null, "storages": ["m"], "storages": ["n"]}"#,
        ] {
            assert!(Manifest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let ok = r#"{"version": "1", "creation": "c", "datas": ["data/a.json"], "storages": []}"#;
        assert!(Manifest::parse(ok.as_bytes()).is_ok());
    }
}

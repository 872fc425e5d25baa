//! The URL pieces the pages build: where to go after login, query components.

/// Only same-site relative paths are followed after login.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_string()
        }
        _ => "/dumps".to_string(),
    }
}

/// Percent-encode a query component.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_relative_only() {
        assert_eq!(safe_next(Some("/dumps/3?x=1")), "/dumps/3?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dumps", "{bad}");
        }
        assert_eq!(safe_next(None), "/dumps");
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("/dumps?a=1&b"), "/dumps%3Fa%3D1%26b");
    }
}

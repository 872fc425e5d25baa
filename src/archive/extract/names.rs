//! Entry names and link targets: checked, normalised, and shown in messages.

use crate::archive::manifest::check_relative;
use crate::error::{Error, Result};

/// The entry name, checked and normalised: leading `./` and one trailing `/`
/// removed. `None` for the archive root (`./`). The flag says whether the name
/// ended with `/`.
pub(super) fn normalize(raw: &[u8]) -> Result<Option<(String, bool)>> {
    let name = std::str::from_utf8(raw).map_err(|_| {
        Error::Archive(format!(
            "entry {}: name is not valid UTF-8",
            show(&String::from_utf8_lossy(raw))
        ))
    })?;
    let mut rest = name;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    if rest == "." {
        rest = "";
    }
    let trailing_slash = rest.ends_with('/') || (rest.is_empty() && name.ends_with('/'));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return if name.is_empty() {
            Err(Error::Archive("an entry has an empty name".into()))
        } else {
            Ok(None)
        };
    }
    check_relative(rest).map_err(|m| Error::Archive(format!("entry {}: name {m}", show(name))))?;
    let first = rest.split('/').next().unwrap_or_default().as_bytes();
    if first.len() == 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
        return Err(Error::Archive(format!(
            "entry {}: name has a drive prefix",
            show(name)
        )));
    }
    Ok(Some((rest.to_string(), trailing_slash)))
}

/// The target of the symbolic link `shown` (already [`show`]n), as UTF-8 text
/// that is neither empty nor absolute and has no backslash or control
/// character. Where it leads is checked once the storages are known.
pub(super) fn link_target(shown: &str, raw: Option<&[u8]>) -> Result<String> {
    let target = raw.ok_or_else(|| {
        Error::Archive(format!("entry {shown}: a symbolic link without a target"))
    })?;
    let target = std::str::from_utf8(target)
        .map_err(|_| Error::Archive(format!("entry {shown}: a link target that is not UTF-8")))?
        .to_string();
    if target.is_empty()
        || target.starts_with('/')
        || target.contains('\\')
        || target.chars().any(|c| c.is_control())
    {
        return Err(Error::Archive(format!(
            "entry {shown}: a symbolic link to {} is not allowed (only relative links inside a storage)",
            show(&target)
        )));
    }
    Ok(target)
}

/// The refusal of an entry whose content ends before its declared size.
pub(super) fn truncated_entry(name: &str, expected: u64, got: u64) -> Error {
    Error::Archive(format!(
        "entry {}: truncated ({got} of {expected} bytes)",
        show(name)
    ))
}

/// A name for an error message: quoted, escaped, and shortened when huge.
pub(super) fn show(name: &str) -> String {
    const MAX: usize = 120;
    if name.len() <= MAX {
        return format!("{name:?}");
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &name[..end], name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize(b"./a/b/").unwrap(), Some(("a/b".into(), true)));
        assert_eq!(normalize(b"././a").unwrap(), Some(("a".into(), false)));
        assert_eq!(normalize(b"./").unwrap(), None);
        assert_eq!(normalize(b".").unwrap(), None);
        for bad in [
            &b""[..],
            b"/abs",
            b"a/../b",
            b"a/./b",
            b"a//b",
            b"a\\b",
            b"a\x01b",
            b"C:/x",
            b"caf\xe9",
        ] {
            assert!(
                normalize(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

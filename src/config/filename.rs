//! Archive file names: `diskette{features}_{date}.tar.gz`.

/// Placeholders a pattern may use.
const PLACEHOLDERS: &[&str] = &["{features}", "{date}"];

/// Refuse patterns that would escape the dump directory or name no archive.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    if pattern.contains('/') || pattern.contains('\\') || pattern.contains('\0') {
        return Err(format!("{pattern:?} must be a file name, not a path"));
    }
    let mut rest = pattern.to_string();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "{pattern:?} has an unknown placeholder (known: {})",
            PLACEHOLDERS.join(", ")
        ));
    }
    if !pattern.ends_with(".tar.gz") {
        return Err(format!("{pattern:?} must end with .tar.gz"));
    }
    if pattern.starts_with('.') {
        return Err(format!("{pattern:?} must not start with a dot"));
    }
    Ok(())
}

/// `_data`, `_storages` or `_data_storages`.
pub fn features(with_data: bool, with_storages: bool) -> &'static str {
    match (with_data, with_storages) {
        (true, true) => "_data_storages",
        (true, false) => "_data",
        (false, true) => "_storages",
        (false, false) => "",
    }
}

/// Fill a pattern; `date` is like `2025-02-03T175309`.
pub fn render(pattern: &str, with_data: bool, with_storages: bool, date: &str) -> String {
    pattern
        .replace("{features}", features(with_data, with_storages))
        .replace("{date}", date)
}

/// The local date and time in the file-name form `2025-02-03T175309`.
pub fn date_stamp(now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour][minute][second]");
    now.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern() {
        let name = render(
            crate::config::DEFAULT_FILENAME,
            true,
            true,
            "2025-02-03T175309",
        );
        assert_eq!(name, "diskette_data_storages_2025-02-03T175309.tar.gz");
        assert_eq!(
            render("d{features}.tar.gz", false, true, ""),
            "d_storages.tar.gz"
        );
    }

    #[test]
    fn refuses_paths_and_unknown_placeholders() {
        assert!(validate_pattern("../x.tar.gz").is_err());
        assert!(validate_pattern("x{when}.tar.gz").is_err());
        assert!(validate_pattern("x.zip").is_err());
        assert!(validate_pattern("x{date}.tar.gz").is_ok());
    }

    #[test]
    fn date_form() {
        let t = time::macros::datetime!(2025-02-03 17:53:09 UTC);
        assert_eq!(date_stamp(t), "2025-02-03T175309");
    }
}

//! `[dump] verify_every`: a period such as `"1d"`, or never.

use std::time::Duration;

use serde::Deserialize;

/// How often available dumps are re-verified; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub Option<Duration>);

impl Default for Every {
    fn default() -> Self {
        Every(Some(Duration::from_secs(24 * 3600)))
    }
}

impl Every {
    /// `"1d"`, `"12h"`, `"30m"`, `"90s"`, a number of seconds, or `"never"` / `0`.
    pub fn parse(text: &str) -> std::result::Result<Every, String> {
        let text = text.trim();
        if text == "never" || text == "0" {
            return Ok(Every(None));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let unit_seconds = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 24 * 3600,
            _ => 0,
        };
        match digits.parse::<u64>() {
            Ok(n) if unit_seconds > 0 => {
                Ok(Every((n > 0).then(|| {
                    Duration::from_secs(n.saturating_mul(unit_seconds))
                })))
            }
            _ => Err(format!(
                "{text:?} is not a period such as \"1d\", \"12h\", \"30m\", \"90s\" or \"never\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(n) => Ok(Every((n > 0).then(|| Duration::from_secs(n)))),
            Raw::Text(t) => Every::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

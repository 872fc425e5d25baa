//! Domain values of the registry. Each has a parsing constructor, so an invalid
//! value cannot exist past the edge (form, query string, CLI, database row).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Passwords are checked and hashed below the registry, in `users`.
pub use crate::users::Password;

/// Primary key of a dump record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct DumpId(i64);

impl DumpId {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for DumpId {
    fn from(id: i64) -> Self {
        DumpId(id)
    }
}

impl FromStr for DumpId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<i64>() {
            Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(DumpId(n)),
            _ => Err(format!("{s:?} is not a dump id")),
        }
    }
}

impl fmt::Display for DumpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Primary key of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct UserId(i64);

/// Primary key of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct ApiKeyId(i64);

/// Primary key of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct ScheduleId(i64);

macro_rules! plain_id {
    ($t:ident, $what:literal) => {
        impl $t {
            pub fn get(self) -> i64 {
                self.0
            }
        }
        impl From<i64> for $t {
            fn from(id: i64) -> Self {
                $t(id)
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.parse::<i64>() {
                    Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok($t(n)),
                    _ => Err(format!("{s:?} is not {}", $what)),
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

plain_id!(UserId, "a user id");
plain_id!(ApiKeyId, "an API key id");
plain_id!(ScheduleId, "a schedule id");

/// `created` → `pending` → `processed` | `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpStatus {
    Created,
    Pending,
    Processed,
    Failed,
}

impl DumpStatus {
    pub const ALL: [DumpStatus; 4] = [Self::Created, Self::Pending, Self::Processed, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Pending => "pending",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    /// The job has not finished yet.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Created | Self::Pending)
    }
}

impl FromStr for DumpStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a dump status"))
    }
}

impl TryFrom<String> for DumpStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for DumpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an archive holds: data, storages, or both. Never neither (rule 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct OptionSet {
    with_data: bool,
    with_storages: bool,
}

impl OptionSet {
    pub const DATA: OptionSet = OptionSet {
        with_data: true,
        with_storages: false,
    };
    pub const STORAGES: OptionSet = OptionSet {
        with_data: false,
        with_storages: true,
    };
    pub const BOTH: OptionSet = OptionSet {
        with_data: true,
        with_storages: true,
    };
    pub const ALL: [OptionSet; 3] = [Self::BOTH, Self::DATA, Self::STORAGES];

    pub fn new(with_data: bool, with_storages: bool) -> Result<Self, String> {
        if with_data || with_storages {
            Ok(OptionSet {
                with_data,
                with_storages,
            })
        } else {
            Err("choose data, storages or both: an archive cannot hold neither".into())
        }
    }

    pub fn with_data(self) -> bool {
        self.with_data
    }

    pub fn with_storages(self) -> bool {
        self.with_storages
    }

    /// `data+storages`, `data`, `storages`: the value of the list filter.
    pub fn key(self) -> &'static str {
        match (self.with_data, self.with_storages) {
            (true, true) => "data+storages",
            (true, false) => "data",
            _ => "storages",
        }
    }

    pub fn label(self) -> &'static str {
        match (self.with_data, self.with_storages) {
            (true, true) => "Data + storages",
            (true, false) => "Data only",
            _ => "Storages only",
        }
    }
}

impl FromStr for OptionSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|o| o.key() == s)
            .ok_or_else(|| format!("{s:?} is not an option set"))
    }
}

/// BLAKE2b-512 digest as `b2sum` prints it: 128 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Checksum(String);

impl Checksum {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if crate::checksum::is_valid_hex(s) {
            Ok(Checksum(s.to_ascii_lowercase()))
        } else {
            Err("a checksum is 128 hexadecimal digits".into())
        }
    }
}

impl TryFrom<String> for Checksum {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A login name: 1 to 150 characters among letters, digits and `@.+-_`
/// (Django's rule, so user lists can be carried over).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Username {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.chars().count() <= 150
            && s.chars()
                .all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
        if ok {
            Ok(Username(s.to_string()))
        } else {
            Err("a username is 1 to 150 letters, digits or @ . + - _".into())
        }
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_set_refuses_neither() {
        assert!(OptionSet::new(false, false).is_err());
        assert_eq!(OptionSet::new(true, true).unwrap(), OptionSet::BOTH);
        for o in OptionSet::ALL {
            assert_eq!(o.key().parse::<OptionSet>().unwrap(), o);
        }
    }

    #[test]
    fn status_round_trips() {
        for s in DumpStatus::ALL {
            assert_eq!(s.as_str().parse::<DumpStatus>().unwrap(), s);
        }
        assert!("done".parse::<DumpStatus>().is_err());
    }

    #[test]
    fn dump_id_is_a_positive_integer() {
        assert_eq!("12".parse::<DumpId>().unwrap().get(), 12);
        for bad in ["0", "-1", "+3", "1e3", "", "x"] {
            assert!(bad.parse::<DumpId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_is_128_hex() {
        assert!("ab".parse::<Checksum>().is_err());
        let hex = "A".repeat(128);
        assert_eq!(hex.parse::<Checksum>().unwrap().as_str(), "a".repeat(128));
    }

    #[test]
    fn username_rules() {
        assert!("alice.b+c@x-y_z".parse::<Username>().is_ok());
        for bad in ["", "a b", "a/b", "<script>"] {
            assert!(bad.parse::<Username>().is_err(), "{bad}");
        }
        assert!("x".repeat(151).parse::<Username>().is_err());
    }
}

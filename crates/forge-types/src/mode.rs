use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a claim holds its paths. Serialized as `read`, `write` or `append`; a plan and the
/// events name claims by their plan key instead (`reads`, `writes`, `appends`: see
/// [`LockMode::plan_key`] and [`plan_key`](crate::plan_key)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Shared: any number of readers and appenders, no writer.
    Read,
    /// Exclusive: no other holder of an overlapping path.
    Write,
    /// Shared with readers and other appenders (files several tasks add to, like CHANGELOG.md);
    /// their concurrent additions are merged afterwards.
    Append,
}

impl LockMode {
    /// The three modes, in the order plans list their keys.
    pub const ALL: [LockMode; 3] = [Self::Read, Self::Write, Self::Append];

    /// Whether two holders in these modes may hold overlapping paths at the same time.
    pub fn compatible_with(self, other: LockMode) -> bool {
        !matches!(self, LockMode::Write) && !matches!(other, LockMode::Write)
    }

    /// The plan key that declares claims of this mode: `reads`, `writes` or `appends`.
    pub fn plan_key(self) -> &'static str {
        match self {
            Self::Read => "reads",
            Self::Write => "writes",
            Self::Append => "appends",
        }
    }

    /// The mode a plan key (`reads`, `writes`, `appends`) declares.
    pub fn from_plan_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.plan_key() == key)
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Read => "read",
            LockMode::Write => "write",
            LockMode::Append => "append",
        })
    }
}

/// A mode name that is neither a mode (`read`, `write`, `append`) nor a plan key (`reads`,
/// `writes`, `appends`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lock mode `{0}`: expected `reads`, `writes` or `appends`")]
pub struct UnknownMode(pub String);

impl FromStr for LockMode {
    type Err = UnknownMode;
    /// Reads a mode (`read`) or a plan key (`reads`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.plan_key() == s || m.to_string() == s)
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// Serializes a [`LockMode`] as its plan key (`reads`, `writes`, `appends`), for
/// `#[serde(with = "forge_types::plan_key")]`: how events record a claim's mode.
pub mod plan_key {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::LockMode;

    /// Writes the plan key.
    pub fn serialize<S: Serializer>(mode: &LockMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.plan_key())
    }

    /// Reads a plan key (or a mode name).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LockMode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keys_and_names_round_trip() {
        for mode in LockMode::ALL {
            assert_eq!(LockMode::from_plan_key(mode.plan_key()), Some(mode));
            assert_eq!(mode.plan_key().parse::<LockMode>(), Ok(mode));
            assert_eq!(mode.to_string().parse::<LockMode>(), Ok(mode));
        }
        assert_eq!(
            "exclusive".parse::<LockMode>().unwrap_err().to_string(),
            "unknown lock mode `exclusive`: expected `reads`, `writes` or `appends`"
        );
    }
}

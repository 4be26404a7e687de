use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::MergeError;

/// How conflicts on a path are settled, as written in a plan's `[merge]` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum MergeStrategy {
    /// Stop and report the conflict (the default): nothing is guessed.
    #[default]
    Fail,
    /// Keep the integrated tree's side (the work integrated earlier).
    Ours,
    /// Take the finishing task's side.
    Theirs,
    /// Keep both sides' added lines, ours first (for changelogs and lists).
    Union,
    /// Ask an agent to resolve the conflict markers.
    Agent,
    /// Run a merge driver command, git-style: `%O` base, `%A` ours (the result), `%B` theirs,
    /// `%P` the path.
    Driver(String),
}

impl FromStr for MergeStrategy {
    type Err = MergeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "fail" => Self::Fail,
            "ours" => Self::Ours,
            "theirs" => Self::Theirs,
            "union" => Self::Union,
            "agent" => Self::Agent,
            other => match other.strip_prefix("driver:") {
                Some(cmd) if cmd.trim().is_empty() => return Err(MergeError::EmptyDriver),
                Some(cmd) => Self::Driver(cmd.trim().to_owned()),
                None => return Err(MergeError::UnknownStrategy(other.to_owned())),
            },
        })
    }
}

impl fmt::Display for MergeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fail => f.write_str("fail"),
            Self::Ours => f.write_str("ours"),
            Self::Theirs => f.write_str("theirs"),
            Self::Union => f.write_str("union"),
            Self::Agent => f.write_str("agent"),
            Self::Driver(cmd) => write!(f, "driver:{cmd}"),
        }
    }
}

impl Serialize for MergeStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MergeStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "fail",
            "ours",
            "theirs",
            "union",
            "agent",
            "driver:merge %O %A %B",
        ] {
            assert_eq!(s.parse::<MergeStrategy>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            "driver:  ".parse::<MergeStrategy>(),
            Err(MergeError::EmptyDriver)
        ));
        assert!(
            matches!("Union".parse::<MergeStrategy>(), Err(MergeError::UnknownStrategy(s)) if s == "Union")
        );
    }
}

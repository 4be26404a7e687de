use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StagingError;

/// Which state of the repository a run starts from (`base = "head"` in a plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseMode {
    /// The tree of the git `HEAD` commit: uncommitted edits are not seen by agents.
    #[default]
    Head,
    /// The working tree as it is, including untracked files that are not ignored. Works outside git.
    Worktree,
}

impl FromStr for BaseMode {
    type Err = StagingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Self::Head),
            "worktree" => Ok(Self::Worktree),
            other => Err(StagingError::UnknownBase(other.to_owned())),
        }
    }
}

impl fmt::Display for BaseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Head => "head",
            Self::Worktree => "worktree",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for mode in [BaseMode::Head, BaseMode::Worktree] {
            assert_eq!(mode.to_string().parse::<BaseMode>().unwrap(), mode);
        }
        assert!(
            matches!("HEAD~1".parse::<BaseMode>(), Err(StagingError::UnknownBase(s)) if s == "HEAD~1")
        );
    }
}

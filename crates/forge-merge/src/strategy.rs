use std::fmt;
use std::str::FromStr;

use forge_locks::Pattern;
use forge_staging::RepoPath;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::MergeError;

/// How conflicts on a path are settled, as written in a plan's `[merge]` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum MergeStrategy {
    /// Stop and report the conflict (the default): nothing is guessed.
    #[default]
    Fail,
    /// Settle each conflicting hunk with the side of the task that comes first in task order
    /// (the `order` given to [`crate::Integration::integrate`]); changes that do not clash are
    /// kept from both sides, as `git merge-file --ours` does.
    Ours,
    /// The same with the side of the task that comes later in task order (`--theirs`).
    Theirs,
    /// Keep both sides' lines in each conflicting hunk, the earlier task's first (`--union`; for
    /// changelogs and lists). Applies to text files only.
    Union,
    /// Have an agent resolve it: the caller's [`crate::Resolver`] if one is set, otherwise the
    /// outcome asks for the task to be re-run on top of the integrated tree
    /// ([`crate::IntegrationStatus::NeedsRerun`]).
    Agent,
    /// Run a merge driver command, git-style, through `sh -c` in the repository's top
    /// directory: `%O` the base, `%A` the first side (where the result is written), `%B` the
    /// second side, `%P` the path, `%L` the marker size, `%S`/`%X`/`%Y` the labels of base and
    /// sides, `%%` a percent sign. Exit 0 means resolved. `mergiraf merge` plugs in this way.
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

/// Which [`MergeStrategy`] settles conflicts on a path (a plan's `[merge]` table).
///
/// Any `Fn(&RepoPath) -> MergeStrategy` is one, so a caller can match paths with its own
/// patterns; [`MergeRules`] matches globs.
pub trait StrategyFor: Send + Sync {
    /// The strategy for conflicts on `path`.
    fn strategy_for(&self, path: &RepoPath) -> MergeStrategy;
}

impl<F: Fn(&RepoPath) -> MergeStrategy + Send + Sync> StrategyFor for F {
    fn strategy_for(&self, path: &RepoPath) -> MergeStrategy {
        self(path)
    }
}

/// A `[merge]` table: glob patterns with their strategies, the first matching pattern winning,
/// and a default ([`MergeStrategy::Fail`] unless set) for paths no pattern matches.
///
/// Patterns are written in the claim dialect ([`forge_locks::Pattern`]), so a `[merge]` key and
/// a claim with the same text cover the same paths: relative to the repository root, `*` stays
/// within a segment, `**` spans segments, `?`, `[..]` and `{a,b}` work, `dir/` is the subtree.
/// `CHANGELOG.md` is the root's changelog only; `**/CHANGELOG.md` is every changelog.
///
/// ```
/// use forge_merge::{MergeRules, MergeStrategy, StrategyFor as _};
/// use forge_staging::RepoPath;
///
/// let rules = MergeRules::new([("CHANGELOG.md", MergeStrategy::Union),
///                              ("**/*.lock", MergeStrategy::Theirs)])?;
/// let at = |p| rules.strategy_for(&RepoPath::new(p).unwrap());
/// assert_eq!(at("CHANGELOG.md"), MergeStrategy::Union);
/// assert_eq!(at("docs/CHANGELOG.md"), MergeStrategy::Fail);
/// assert_eq!(at("a/b/Cargo.lock"), MergeStrategy::Theirs);
/// # Ok::<(), forge_merge::MergeError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MergeRules {
    rules: Vec<(Pattern, MergeStrategy)>,
    default: MergeStrategy,
}

impl MergeRules {
    /// Rules from `(pattern, strategy)` pairs, in order of precedence.
    pub fn new<'a>(
        rules: impl IntoIterator<Item = (&'a str, MergeStrategy)>,
    ) -> Result<Self, MergeError> {
        let rules = rules
            .into_iter()
            .map(|(pattern, strategy)| {
                Pattern::new(pattern).map(|p| (p, strategy)).map_err(|e| {
                    MergeError::InvalidPattern {
                        pattern: pattern.to_owned(),
                        reason: e.to_string(),
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            default: MergeStrategy::Fail,
        })
    }

    /// Sets the strategy for paths no pattern matches.
    #[must_use]
    pub fn with_default(mut self, strategy: MergeStrategy) -> Self {
        self.default = strategy;
        self
    }

    /// The patterns (normalized) and strategies, in order.
    pub fn rules(&self) -> &[(Pattern, MergeStrategy)] {
        &self.rules
    }
}

impl StrategyFor for MergeRules {
    fn strategy_for(&self, path: &RepoPath) -> MergeStrategy {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(path.as_str()))
            .map_or_else(|| self.default.clone(), |(_, s)| s.clone())
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
    fn rules_match_first_pattern_then_default() {
        let rules = MergeRules::new([
            ("CHANGELOG.md", MergeStrategy::Union),
            ("src/**/*.lock", MergeStrategy::Theirs),
            ("src/*", MergeStrategy::Ours),
        ])
        .unwrap()
        .with_default(MergeStrategy::Agent);
        let at = |p: &str| rules.strategy_for(&RepoPath::new(p).unwrap());
        assert_eq!(at("CHANGELOG.md"), MergeStrategy::Union);
        // One dialect with claims: a pattern without `/` is the root's file only.
        assert_eq!(at("docs/CHANGELOG.md"), MergeStrategy::Agent);
        assert_eq!(at("src/a/b/Cargo.lock"), MergeStrategy::Theirs);
        assert_eq!(at("src/x.lock"), MergeStrategy::Theirs);
        assert_eq!(at("src/main.rs"), MergeStrategy::Ours);
        assert_eq!(at("src/a/main.rs"), MergeStrategy::Agent);
        assert!(matches!(
            MergeRules::new([("src/[", MergeStrategy::Fail)]),
            Err(MergeError::InvalidPattern { pattern, .. }) if pattern == "src/["
        ));
        let closure = |p: &RepoPath| {
            if p.file_name() == "README.md" {
                MergeStrategy::Union
            } else {
                MergeStrategy::Fail
            }
        };
        assert_eq!(
            closure.strategy_for(&RepoPath::new("docs/README.md").unwrap()),
            MergeStrategy::Union
        );
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

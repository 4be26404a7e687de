use std::collections::BTreeMap;
use std::collections::btree_map;

use serde::{Deserialize, Serialize};

use crate::{Entry, RepoPath, StagingError};

/// What happened to one path relative to the snapshot a workspace started from.
///
/// A rename is a `Deleted` of the old path plus an `Added` of the new one; a change of kind (file
/// to symlink) or of the exec bit alone is a `Modified`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// The path did not exist and now does.
    Added(Entry),
    /// The path existed and now holds something else (content, exec bit, or kind).
    Modified {
        /// What the snapshot held.
        before: Entry,
        /// What the workspace holds now.
        after: Entry,
    },
    /// The path existed and is gone.
    Deleted(Entry),
}

impl Change {
    /// The entry before the change, if the path existed.
    pub fn before(&self) -> Option<&Entry> {
        match self {
            Self::Added(_) => None,
            Self::Modified { before, .. } | Self::Deleted(before) => Some(before),
        }
    }

    /// The entry after the change, if the path still exists.
    pub fn after(&self) -> Option<&Entry> {
        match self {
            Self::Deleted(_) => None,
            Self::Added(after) | Self::Modified { after, .. } => Some(after),
        }
    }

    /// The change from `before` to `after`, or `None` when they are the same.
    pub fn between(before: Option<Entry>, after: Option<Entry>) -> Option<Self> {
        match (before, after) {
            (None, None) => None,
            (None, Some(after)) => Some(Self::Added(after)),
            (Some(before), None) => Some(Self::Deleted(before)),
            (Some(before), Some(after)) if before == after => None,
            (Some(before), Some(after)) => Some(Self::Modified { before, after }),
        }
    }
}

/// Why a path a workspace holds was left out of its [`ChangeSet`]. Such paths are reported, never
/// dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The file is larger than the configured limit (`StagerConfig::max_file_size`).
    TooLarge {
        /// The file's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Not a regular file, symlink or directory (a FIFO, socket or device).
    Special {
        /// What it is (`fifo`, `socket`, `char device`, `block device`).
        kind: String,
    },
    /// The name cannot be a repository path (not UTF-8, for instance).
    InvalidName {
        /// Why.
        detail: String,
    },
    /// A nested git repository or submodule, whose files belong to another repository.
    NestedRepository,
    /// A path inside a submodule or nested repository of the run's base (whose files belong to
    /// another repository: Forge does not carry writes into them).
    InsideNestedRepository {
        /// The submodule's (or nested repository's) directory.
        repository: String,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { size, limit } => write!(
                f,
                "a file of {}, over the {} limit",
                human_size(*size),
                human_size(*limit)
            ),
            Self::Special { kind } => write!(f, "a {kind}, which a repository cannot hold"),
            Self::InvalidName { detail } => write!(f, "{detail}"),
            Self::NestedRepository => f.write_str("a nested git repository"),
            Self::InsideNestedRepository { repository } => write!(
                f,
                "inside the git submodule (or nested repository) `{repository}`, whose files \
                 belong to another repository: writes into submodules are not supported"
            ),
        }
    }
}

/// A byte count for people: `512 bytes`, `3.2 KiB`, `100 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    #[allow(clippy::cast_precision_loss)] // a rounded size for a message
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if (value - value.round()).abs() < 0.05 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.path, self.reason)
    }
}

/// A path that was seen but not captured, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Skipped {
    /// The repo-relative path (lossily converted to text when it is not UTF-8).
    pub path: String,
    /// Why it was left out.
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// Every change one workspace made to its snapshot, keyed by path in sorted (byte) order, plus
/// the paths that could not be captured ([`ChangeSet::skipped`]).
///
/// Serialized as `{"changes": {"path": {"op": …, …}}, "skipped": [...]}`; `skipped` is left out
/// when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    changes: BTreeMap<RepoPath, Change>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<Skipped>,
}

impl ChangeSet {
    /// Records `change` at `path`, replacing an earlier change there.
    pub fn insert(&mut self, path: RepoPath, change: Change) -> Option<Change> {
        self.changes.insert(path, change)
    }

    /// Removes the change at `path`.
    pub fn remove(&mut self, path: &RepoPath) -> Option<Change> {
        self.changes.remove(path)
    }

    /// The change at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Change> {
        self.changes.get(path)
    }

    /// Number of changed paths.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether nothing changed and nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.skipped.is_empty()
    }

    /// The changes in path order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&RepoPath, &Change)> {
        self.changes.iter()
    }

    /// The changed paths in order.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &RepoPath> {
        self.changes.keys()
    }

    /// Paths seen in the workspace but not captured (too large, special files, bad names), in
    /// path order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Reports a path that could not be captured.
    pub fn skip(&mut self, path: impl Into<String>, reason: SkipReason) {
        let path = path.into();
        match self.skipped.binary_search_by(|s| s.path.cmp(&path)) {
            Ok(i) => self.skipped[i].reason = reason,
            Err(i) => self.skipped.insert(i, Skipped { path, reason }),
        }
    }

    /// The single changeset equivalent to applying `self` and then `later`.
    ///
    /// `later` must have been taken against the result of `self`: its `before` entries must be
    /// what `self` left. Paths whose net effect is nothing (added then deleted, changed back)
    /// drop out. Skipped reports of `later` replace those of `self` for the same path.
    pub fn compose(&self, later: &ChangeSet) -> Result<ChangeSet, StagingError> {
        let mut out = self.clone();
        for (path, next) in &later.changes {
            let Some(first) = out.changes.remove(path) else {
                out.changes.insert(path.clone(), next.clone());
                continue;
            };
            let mismatch = |reason: &str| StagingError::ChangeMismatch {
                path: path.clone(),
                reason: reason.to_owned(),
            };
            // What the path held before `self` and after `self`.
            let (origin, middle) = (first.before().cloned(), first.after().cloned());
            if next.before() != middle.as_ref() {
                return Err(mismatch(match (&middle, next.before()) {
                    (Some(_), None) => "the later change adds a path the earlier one left in place",
                    (None, Some(_)) => "the later change expects a path the earlier one deleted",
                    _ => "the later change starts from different content than the earlier left",
                }));
            }
            if let Some(change) = Change::between(origin, next.after().cloned()) {
                out.changes.insert(path.clone(), change);
            }
        }
        for s in &later.skipped {
            out.skip(s.path.clone(), s.reason.clone());
        }
        Ok(out)
    }
}

impl FromIterator<(RepoPath, Change)> for ChangeSet {
    fn from_iter<I: IntoIterator<Item = (RepoPath, Change)>>(iter: I) -> Self {
        Self {
            changes: iter.into_iter().collect(),
            skipped: Vec::new(),
        }
    }
}

impl<'a> IntoIterator for &'a ChangeSet {
    type Item = (&'a RepoPath, &'a Change);
    type IntoIter = btree_map::Iter<'a, RepoPath, Change>;
    fn into_iter(self) -> Self::IntoIter {
        self.changes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContentHash;

    fn file(content: &[u8]) -> Entry {
        Entry::file(ContentHash::of(content), content.len() as u64, false)
    }

    fn p(s: &str) -> RepoPath {
        RepoPath::new(s).unwrap()
    }

    #[test]
    fn before_after() {
        let a = file(b"a");
        let b = file(b"b");
        assert_eq!(Change::Added(a.clone()).before(), None);
        assert_eq!(Change::Added(a.clone()).after(), Some(&a));
        let m = Change::Modified {
            before: a.clone(),
            after: b.clone(),
        };
        assert_eq!((m.before(), m.after()), (Some(&a), Some(&b)));
        assert_eq!(Change::Deleted(a.clone()).after(), None);
        assert_eq!(Change::between(Some(a.clone()), Some(a)), None);
    }

    #[test]
    fn serde_round_trip_in_path_order() {
        let e = file(b"a");
        let mut set: ChangeSet = [
            (p("z.rs"), Change::Deleted(e.clone())),
            (p("a.rs"), Change::Added(Entry::symlink("../outside"))),
        ]
        .into_iter()
        .collect();
        set.skip("big.bin", SkipReason::TooLarge { size: 10, limit: 5 });
        assert_eq!(
            set.skipped()[0].to_string(),
            "`big.bin`: a file of 10 bytes, over the 5 bytes limit"
        );
        assert_eq!(
            SkipReason::TooLarge {
                size: 101 << 20,
                limit: 100 << 20
            }
            .to_string(),
            "a file of 101 MiB, over the 100 MiB limit"
        );
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.find("a.rs").unwrap() < json.find("z.rs").unwrap());
        assert_eq!(serde_json::from_str::<ChangeSet>(&json).unwrap(), set);
        assert_eq!(
            set.paths().map(RepoPath::as_str).collect::<Vec<_>>(),
            ["a.rs", "z.rs"]
        );
        assert_eq!(set.skipped()[0].path, "big.bin");
        let empty = serde_json::to_string(&ChangeSet::default()).unwrap();
        assert_eq!(empty, r#"{"changes":{}}"#);
    }

    #[test]
    fn compose_cancels_and_chains() {
        let (a, b, c) = (file(b"a"), file(b"b"), file(b"c"));
        let first: ChangeSet = [
            (p("new"), Change::Added(a.clone())),
            (
                p("mod"),
                Change::Modified {
                    before: a.clone(),
                    after: b.clone(),
                },
            ),
            (p("gone"), Change::Deleted(a.clone())),
        ]
        .into_iter()
        .collect();
        let second: ChangeSet = [
            (p("new"), Change::Deleted(a.clone())),
            (
                p("mod"),
                Change::Modified {
                    before: b.clone(),
                    after: c.clone(),
                },
            ),
            (p("gone"), Change::Added(a.clone())),
        ]
        .into_iter()
        .collect();
        let both = first.compose(&second).unwrap();
        assert_eq!(both.len(), 1);
        assert_eq!(
            both.get("mod"),
            Some(&Change::Modified {
                before: a.clone(),
                after: c
            })
        );
        let stale: ChangeSet = [(p("new"), Change::Added(b))].into_iter().collect();
        assert!(matches!(
            first.compose(&stale),
            Err(StagingError::ChangeMismatch { path, .. }) if path.as_str() == "new"
        ));
    }
}

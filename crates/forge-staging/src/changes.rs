use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Entry, RepoPath};

/// What happened to one path relative to the snapshot a workspace started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

/// Every change one workspace made to its snapshot, keyed by path in sorted order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeSet {
    changes: BTreeMap<RepoPath, Change>,
}

impl ChangeSet {
    /// Records `change` at `path`, replacing an earlier change there.
    pub fn insert(&mut self, path: RepoPath, change: Change) -> Option<Change> {
        self.changes.insert(path, change)
    }

    /// The change at `path`, if any.
    pub fn get(&self, path: &RepoPath) -> Option<&Change> {
        self.changes.get(path)
    }

    /// Number of changed paths.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes in path order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&RepoPath, &Change)> {
        self.changes.iter()
    }

    /// The changed paths in order.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &RepoPath> {
        self.changes.keys()
    }
}

impl FromIterator<(RepoPath, Change)> for ChangeSet {
    fn from_iter<I: IntoIterator<Item = (RepoPath, Change)>>(iter: I) -> Self {
        Self {
            changes: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a ChangeSet {
    type Item = (&'a RepoPath, &'a Change);
    type IntoIter = std::collections::btree_map::Iter<'a, RepoPath, Change>;
    fn into_iter(self) -> Self::IntoIter {
        self.changes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContentHash;

    #[test]
    fn before_after() {
        let a = Entry::file(ContentHash::of(b"a"), 1, false);
        let b = Entry::file(ContentHash::of(b"b"), 1, false);
        assert_eq!(Change::Added(a).before(), None);
        assert_eq!(Change::Added(a).after(), Some(&a));
        let m = Change::Modified {
            before: a,
            after: b,
        };
        assert_eq!((m.before(), m.after()), (Some(&a), Some(&b)));
        assert_eq!(Change::Deleted(a).after(), None);
    }

    #[test]
    fn serde_round_trip_in_path_order() {
        let e = Entry::file(ContentHash::of(b"a"), 1, false);
        let set: ChangeSet = [
            (RepoPath::new("z.rs").unwrap(), Change::Deleted(e)),
            (RepoPath::new("a.rs").unwrap(), Change::Added(e)),
        ]
        .into_iter()
        .collect();
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.find("a.rs").unwrap() < json.find("z.rs").unwrap());
        assert_eq!(serde_json::from_str::<ChangeSet>(&json).unwrap(), set);
        assert_eq!(
            set.paths().map(RepoPath::as_str).collect::<Vec<_>>(),
            ["a.rs", "z.rs"]
        );
    }
}

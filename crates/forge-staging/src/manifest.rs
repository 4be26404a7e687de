use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::{Change, ChangeSet, Entry, RepoPath, StagingError};

/// The content of a tree: every file and symlink by path, in sorted (byte) order.
///
/// Directories are implied by the paths under them (an empty directory is not recorded, as in
/// git). Serialized as a JSON object `{"path": entry, …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Manifest {
    entries: BTreeMap<RepoPath, Entry>,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Sets the entry at `path`, returning the previous one.
    pub fn insert(&mut self, path: RepoPath, entry: Entry) -> Option<Entry> {
        self.entries.insert(path, entry)
    }

    /// Removes the entry at `path`.
    pub fn remove(&mut self, path: &str) -> Option<Entry> {
        self.entries.remove(path)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in path order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&RepoPath, &Entry)> {
        self.entries.iter()
    }

    /// The entries strictly under directory `dir` (`""` for all), in path order.
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a RepoPath, &'a Entry)> {
        let (lo, hi) = dir_range(dir);
        self.entries
            .range::<str, _>((Bound::Included(lo.as_str()), hi_bound(hi.as_deref())))
    }

    /// Whether some entry lies under directory `dir`.
    pub fn has_dir(&self, dir: &str) -> bool {
        self.under(dir).next().is_some()
    }

    /// The sum of the entries' sizes.
    pub fn total_size(&self) -> u64 {
        self.entries.values().map(Entry::size).sum()
    }

    /// The manifest after `changes`, checking that each change starts from what this manifest
    /// holds (an `Added` path must be absent, a `Modified` or `Deleted` one must hold `before`).
    pub fn apply(&self, changes: &ChangeSet) -> Result<Manifest, StagingError> {
        let mut out = self.clone();
        for (path, change) in changes {
            if out.get(path.as_str()) != change.before() {
                return Err(StagingError::ChangeMismatch {
                    path: path.clone(),
                    reason: match (out.get(path.as_str()), change.before()) {
                        (Some(_), None) => "it adds a path that already exists".to_owned(),
                        (None, Some(_)) => "it changes a path that does not exist".to_owned(),
                        _ => "it starts from different content than the manifest holds".to_owned(),
                    },
                });
            }
            match change.after() {
                Some(after) => out.insert(path.clone(), after.clone()),
                None => out.remove(path.as_str()),
            };
        }
        Ok(out)
    }

    /// The changes that turn `self` into `other`.
    pub fn diff(&self, other: &Manifest) -> ChangeSet {
        let mut set = ChangeSet::default();
        let (mut a, mut b) = (self.iter().peekable(), other.iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
            };
            let (path, change) = match order {
                Ordering::Less => {
                    let Some((path, old)) = a.next() else { break };
                    (path, Some(Change::Deleted(old.clone())))
                }
                Ordering::Greater => {
                    let Some((path, new)) = b.next() else { break };
                    (path, Some(Change::Added(new.clone())))
                }
                Ordering::Equal => {
                    let (Some((path, old)), Some((_, new))) = (a.next(), b.next()) else {
                        break;
                    };
                    (path, Change::between(Some(old.clone()), Some(new.clone())))
                }
            };
            if let Some(change) = change {
                set.insert(path.clone(), change);
            }
        }
        set
    }
}

impl FromIterator<(RepoPath, Entry)> for Manifest {
    fn from_iter<I: IntoIterator<Item = (RepoPath, Entry)>>(iter: I) -> Self {
        Self {
            entries: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Manifest {
    type Item = (&'a RepoPath, &'a Entry);
    type IntoIter = std::collections::btree_map::Iter<'a, RepoPath, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// The key range `[lo, hi)` holding exactly the paths under `dir`. Paths under `dir` are those
/// starting with `dir/`; since `0` follows `/` in byte order, they all sort before `dir0`.
pub(crate) fn dir_range(dir: &str) -> (String, Option<String>) {
    if dir.is_empty() {
        (String::new(), None)
    } else {
        (format!("{dir}/"), Some(format!("{dir}0")))
    }
}

pub(crate) fn hi_bound(hi: Option<&str>) -> Bound<&str> {
    hi.map_or(Bound::Unbounded, Bound::Excluded)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ContentHash;

    fn entry(seed: u8) -> Entry {
        match seed % 4 {
            0 => Entry::symlink(format!("target-{seed}").as_str()),
            n => Entry::file(ContentHash::of(&[seed]), u64::from(seed), n == 3),
        }
    }

    /// Manifests over a small path alphabet, so that random manifests overlap.
    fn manifest() -> impl Strategy<Value = Manifest> {
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "a/b", "a/c", "a.b", "b/x/y", "z", "é/ü"]),
            any::<u8>(),
            0..7,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (RepoPath::new(k).unwrap(), entry(v)))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn diff_then_apply_is_identity(a in manifest(), b in manifest()) {
            let d = a.diff(&b);
            prop_assert_eq!(a.apply(&d).unwrap(), b.clone());
            prop_assert!(a.diff(&a).is_empty());
            // Every change in a diff really changes something.
            for (_, change) in &d {
                prop_assert_ne!(change.before(), change.after());
            }
        }

        #[test]
        fn compose_equals_sequential_apply(a in manifest(), b in manifest(), c in manifest()) {
            let (ab, bc) = (a.diff(&b), b.diff(&c));
            let composed = ab.compose(&bc).unwrap();
            prop_assert_eq!(a.apply(&composed).unwrap(), c.clone());
            prop_assert_eq!(composed, a.diff(&c));
        }

        #[test]
        fn under_lists_exactly_the_paths_below(m in manifest(), dir in prop::sample::select(vec!["", "a", "b", "b/x", "z"])) {
            let got: Vec<_> = m.under(dir).map(|(p, _)| p.as_str().to_owned()).collect();
            let want: Vec<_> = m.iter()
                .map(|(p, _)| p.as_str().to_owned())
                .filter(|p| dir.is_empty() || p.starts_with(&format!("{dir}/")))
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn apply_rejects_stale_changes() {
        let m: Manifest = [(RepoPath::new("a").unwrap(), entry(1))]
            .into_iter()
            .collect();
        let add: ChangeSet = [(RepoPath::new("a").unwrap(), Change::Added(entry(2)))]
            .into_iter()
            .collect();
        assert!(matches!(
            m.apply(&add),
            Err(StagingError::ChangeMismatch { .. })
        ));
        let del: ChangeSet = [(RepoPath::new("b").unwrap(), Change::Deleted(entry(2)))]
            .into_iter()
            .collect();
        assert!(m.apply(&del).is_err());
    }
}

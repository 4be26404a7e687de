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

/// The first bytes of a manifest in binary form ([`Manifest::encode`]), with its version.
const BINARY_MAGIC: &[u8; 8] = b"FGMANIF1";

/// Tags of an entry in the binary form.
const TAG_FILE: u8 = 0;
const TAG_EXECUTABLE: u8 = 1;
const TAG_SYMLINK: u8 = 2;

impl Manifest {
    /// The manifest in Forge's compact binary form, which [`Manifest::decode`] reads back.
    ///
    /// A base snapshot's manifest names every file of the repository: as JSON, 100,000 files
    /// are 13.5 MB whose parse took ~150 ms of every run's start; this form is half the size
    /// and is read without parsing text or hex. Layout, integers little-endian: the magic
    /// `FGMANIF1`, the entry count (u64), then per entry in path order the path's length (u32)
    /// and bytes, a tag (0 file, 1 executable file, 2 symlink), and for a file its hash (32
    /// bytes) and size (u64), for a symlink its target's length (u32) and bytes (its hash is
    /// that of the target).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * 80);
        out.extend_from_slice(BINARY_MAGIC);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (path, entry) in &self.entries {
            put_bytes(&mut out, path.as_str().as_bytes());
            match entry {
                Entry::File {
                    hash,
                    size,
                    executable,
                } => {
                    out.push(if *executable {
                        TAG_EXECUTABLE
                    } else {
                        TAG_FILE
                    });
                    out.extend_from_slice(hash.as_bytes());
                    out.extend_from_slice(&size.to_le_bytes());
                }
                Entry::Symlink { target, .. } => {
                    out.push(TAG_SYMLINK);
                    put_bytes(&mut out, target.as_bytes());
                }
            }
        }
        out
    }

    /// Reads a manifest written by [`Manifest::encode`]. Bytes of any other shape (another
    /// format, a cut-off file, paths out of order or not valid repository paths) are an error
    /// saying what was wrong and at which byte; nothing panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(BINARY_MAGIC.len(), "the magic")? != BINARY_MAGIC {
            return Err("not a Forge manifest (wrong magic bytes)".to_owned());
        }
        let count = u64::from_le_bytes(r.array("the entry count")?);
        // Each entry takes at least 10 bytes (a symlink with a one-byte path): a count beyond
        // that is a corrupt file, not an allocation to attempt.
        let count = usize::try_from(count)
            .ok()
            .filter(|n| n.saturating_mul(10) <= bytes.len())
            .ok_or_else(|| format!("entry count {count} does not fit the file's size"))?;
        let mut entries: Vec<(RepoPath, Entry)> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = r.at;
            let raw = r.bytes_with_len("a path")?;
            let text = std::str::from_utf8(raw)
                .map_err(|_| format!("the path at byte {at} is not UTF-8"))?;
            let path = RepoPath::new(text)
                .map_err(|e| format!("the path at byte {at} is not valid: {e}"))?;
            if path.as_str() != text {
                return Err(format!("the path at byte {at} is not normalized: `{text}`"));
            }
            if entries.last().is_some_and(|(prev, _)| *prev >= path) {
                return Err(format!("the path `{path}` at byte {at} is out of order"));
            }
            let entry = match r.array::<1>("an entry's kind")?[0] {
                tag @ (TAG_FILE | TAG_EXECUTABLE) => {
                    let hash = crate::ContentHash::from_bytes(r.array("a hash")?);
                    let size = u64::from_le_bytes(r.array("a size")?);
                    Entry::file(hash, size, tag == TAG_EXECUTABLE)
                }
                TAG_SYMLINK => {
                    Entry::symlink(crate::LinkTarget::new(r.bytes_with_len("a link target")?))
                }
                other => return Err(format!("unknown entry kind {other} for `{path}`")),
            };
            entries.push((path, entry));
        }
        if r.at != bytes.len() {
            return Err(format!(
                "{} bytes follow the last entry",
                bytes.len() - r.at
            ));
        }
        // In order already: the map is built in one pass.
        Ok(Self {
            entries: entries.into_iter().collect(),
        })
    }
}

/// A length (u32, little-endian), then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Paths and link targets are far below 4 GiB (PATH_MAX is 4 KiB).
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads the binary form of a manifest, checking every length against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("the file ends inside {what} (at byte {})", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn bytes_with_len(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(self.array(what)?);
        self.take(len as usize, what)
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
        fn binary_form_round_trips(m in manifest()) {
            prop_assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn a_cut_or_damaged_binary_form_is_an_error(
            m in manifest(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bits in 1u8..,
        ) {
            let bytes = m.encode();
            // Every proper prefix is refused, never read as a smaller manifest.
            let at = cut.index(bytes.len());
            prop_assert!(Manifest::decode(&bytes[..at]).is_err());
            // A changed byte is refused or still yields a valid manifest: never a panic.
            let mut damaged = bytes.clone();
            let i = flip.index(damaged.len());
            damaged[i] ^= bits;
            if let Ok(read) = Manifest::decode(&damaged) {
                prop_assert!(read.iter().all(|(p, _)| RepoPath::new(p.as_str()).is_ok()));
            }
        }

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

    /// One entry's bytes: a path, then a regular file.
    fn one_file(path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, path.as_bytes());
        out.push(TAG_FILE);
        out.extend_from_slice(&[7; 32]);
        out.extend_from_slice(&1u64.to_le_bytes());
        out
    }

    fn with_entries(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = BINARY_MAGIC.to_vec();
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn binary_form_errors_say_what_is_wrong() {
        let err = |bytes: &[u8]| Manifest::decode(bytes).unwrap_err();
        assert!(err(b"{\"a.txt\":{\"kind\":\"file\"}}").contains("not a Forge manifest"));
        assert!(err(&with_entries(&[one_file("b"), one_file("a")])).contains("out of order"));
        assert!(err(&with_entries(&[one_file("a"), one_file("a")])).contains("out of order"));
        assert!(err(&with_entries(&[one_file("../x")])).contains("not valid"));
        assert!(err(&with_entries(&[one_file("a//b")])).contains("not"));
        let mut trailing = with_entries(&[one_file("a")]);
        trailing.push(0);
        assert!(err(&trailing).contains("1 bytes follow"));
        let mut huge = BINARY_MAGIC.to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&huge).contains("does not fit"));
        let mut kind = one_file("a");
        kind[5] = 9;
        assert!(err(&with_entries(&[kind])).contains("unknown entry kind 9"));
        assert_eq!(
            Manifest::decode(&with_entries(&[one_file("a"), one_file("b/c")]))
                .unwrap()
                .len(),
            2
        );
    }
}

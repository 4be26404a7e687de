use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::iter::Peekable;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::{partial_dir, read_json, write_json};
use crate::error::IoContext;
use crate::fsutil::{create_dirs_like, make_whiteout, remove_tree};
use crate::manifest::{dir_range, hi_bound};
use crate::{BaseSnapshot, BlobStore, ChangeSet, Entry, Manifest, RepoPath, StagingError};

/// What a workspace starts from: the run's base snapshot, optionally with a delta on top (the
/// changes integrated so far in the run).
///
/// The delta is materialized once, as a *layer* directory holding only its files plus overlayfs
/// whiteouts for its deletions, so building a snapshot costs what the delta holds, not what the
/// repository holds. Overlay workspaces stack that layer on the base tree; other strategies copy
/// from it. Cloning a `Snapshot` is cheap (two `Arc`s).
#[derive(Debug, Clone)]
pub struct Snapshot {
    base: Arc<BaseSnapshot>,
    delta: Option<Arc<Delta>>,
}

#[derive(Debug)]
struct Delta {
    dir: PathBuf,
    changes: ChangeSet,
    /// What each changed path holds now (`None`: deleted).
    entries: BTreeMap<RepoPath, Option<Entry>>,
    whiteouts: bool,
}

/// `delta.json` in a layer directory.
#[derive(Serialize, Deserialize)]
struct DeltaRecord {
    version: u32,
    /// Whether deletions are recorded as whiteouts (always, on Linux 5.8 and later).
    whiteouts: bool,
    changes: ChangeSet,
}

impl From<Arc<BaseSnapshot>> for Snapshot {
    fn from(base: Arc<BaseSnapshot>) -> Self {
        Self { base, delta: None }
    }
}

impl From<BaseSnapshot> for Snapshot {
    fn from(base: BaseSnapshot) -> Self {
        Arc::new(base).into()
    }
}

impl Snapshot {
    /// The base with `delta` on top, its layer built in the new directory `layer_dir` from the
    /// blobs in `store`.
    ///
    /// `delta` must be relative to the base: every `Modified` or `Deleted` change starts from
    /// the base's entry and every `Added` path is absent from the base (compose successive
    /// changesets with [`ChangeSet::compose`]). If `layer_dir` already holds the layer of the
    /// same delta (a resumed run), it is reused.
    pub fn with_delta(
        base: Arc<BaseSnapshot>,
        delta: &ChangeSet,
        store: &BlobStore,
        layer_dir: &Path,
    ) -> Result<Self, StagingError> {
        for (path, change) in delta {
            if base.manifest().get(path.as_str()) != change.before() {
                return Err(StagingError::ChangeMismatch {
                    path: path.clone(),
                    reason: "the delta does not start from the base snapshot's entry".to_owned(),
                });
            }
        }
        let record_path = layer_dir.join("delta.json");
        if layer_dir.exists() {
            let record: DeltaRecord = read_json(&record_path, "delta layer record")?;
            if record.changes != *delta {
                return Err(StagingError::AlreadyExists(layer_dir.to_path_buf()));
            }
            return Ok(Self::assemble(base, layer_dir, record));
        }
        let partial = partial_dir(layer_dir);
        remove_tree(&partial)?;
        let tree = partial.join("tree");
        fs::create_dir_all(&tree).ctx("create directory", &tree)?;
        let base_tree = base.tree_dir();
        for (path, change) in delta {
            let Some(after) = change.after() else {
                continue;
            };
            let dest = tree.join(path.as_str());
            create_dirs_like(&tree, path.parent().unwrap_or(""), &base_tree)?;
            match after {
                Entry::File {
                    hash, executable, ..
                } => store.copy_to(hash, &dest, *executable)?,
                Entry::Symlink { target, .. } => {
                    std::os::unix::fs::symlink(target.as_path(), &dest)
                        .ctx("create symlink", &dest)?;
                }
            }
        }
        let mut whiteouts = true;
        for (path, change) in delta {
            if change.after().is_some() {
                continue;
            }
            // A deleted path inside an added file's place, or where the layer now has a
            // directory, is hidden already; elsewhere a whiteout hides the base's entry.
            let dest = tree.join(path.as_str());
            if fs::symlink_metadata(&dest).is_ok() || ancestor_is_file(&tree, path) {
                continue;
            }
            create_dirs_like(&tree, path.parent().unwrap_or(""), &base_tree)?;
            if make_whiteout(&dest).is_err() {
                // Only kernels older than 5.8 refuse this; overlay staging then refuses the
                // snapshot, while the other strategies (which copy) do not need whiteouts.
                whiteouts = false;
            }
        }
        if let Some(base_layer) = base.git_layer() {
            crate::gitdir::build_delta(
                &base_layer,
                &tree,
                delta,
                &partial.join(crate::gitdir::LAYER),
            )?;
        }
        let record = DeltaRecord {
            version: 1,
            whiteouts,
            changes: delta.clone(),
        };
        write_json(&partial.join("delta.json"), &record)?;
        fs::rename(&partial, layer_dir).ctx("move the finished layer to", layer_dir)?;
        Ok(Self::assemble(base, layer_dir, record))
    }

    fn assemble(base: Arc<BaseSnapshot>, dir: &Path, record: DeltaRecord) -> Self {
        let entries = record
            .changes
            .iter()
            .map(|(p, c)| (p.clone(), c.after().cloned()))
            .collect();
        Self {
            base,
            delta: Some(Arc::new(Delta {
                dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
                changes: record.changes,
                entries,
                whiteouts: record.whiteouts,
            })),
        }
    }

    /// The run's base snapshot.
    pub fn base(&self) -> &BaseSnapshot {
        &self.base
    }

    /// The shared base snapshot.
    pub fn base_arc(&self) -> &Arc<BaseSnapshot> {
        &self.base
    }

    /// The delta on top of the base, if any.
    pub fn delta(&self) -> Option<&ChangeSet> {
        self.delta.as_ref().map(|d| &d.changes)
    }

    /// The delta layer's directory, if any.
    pub fn layer_dir(&self) -> Option<&Path> {
        self.delta.as_ref().map(|d| d.dir.as_path())
    }

    /// What `path` holds in this snapshot.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        match self.delta.as_ref().and_then(|d| d.entries.get(path)) {
            Some(now) => now.as_ref(),
            None => self.base.manifest().get(path),
        }
    }

    /// Every entry, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&RepoPath, &Entry)> {
        self.under("")
    }

    /// The entries strictly under directory `dir` (`""` for all), in path order.
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a RepoPath, &'a Entry)> {
        let (lo, hi) = dir_range(dir);
        let delta = self.delta.as_ref().map(|d| {
            d.entries
                .range::<str, _>((Bound::Included(lo.as_str()), hi_bound(hi.as_deref())))
        });
        Merged {
            base: self.base.manifest().under(dir).peekable(),
            delta: delta.into_iter().flatten().peekable(),
        }
    }

    /// Whether some entry lies under directory `dir`.
    pub fn has_dir(&self, dir: &str) -> bool {
        self.under(dir).next().is_some()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the snapshot holds nothing.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The snapshot's full manifest (a copy: O(entries)).
    pub fn manifest(&self) -> Manifest {
        self.iter().map(|(p, e)| (p.clone(), e.clone())).collect()
    }

    /// The file holding `path`'s content in this snapshot: in the delta layer or the base tree.
    pub(crate) fn source(&self, path: &str) -> PathBuf {
        match &self.delta {
            Some(d) if d.entries.contains_key(path) => d.dir.join("tree").join(path),
            _ => self.base.tree_dir().join(path),
        }
    }

    /// The directory whose `.git` is the repository workspaces staged from this snapshot get,
    /// if it has one.
    pub(crate) fn git_layer(&self) -> Option<PathBuf> {
        match &self.delta {
            Some(d) => {
                let dir = d.dir.join(crate::gitdir::LAYER);
                dir.join(".git").is_dir().then_some(dir)
            }
            None => self.base.git_layer(),
        }
    }

    /// The overlay lower directories, topmost first.
    pub(crate) fn lower_dirs(&self) -> Result<Vec<PathBuf>, StagingError> {
        let mut dirs: Vec<PathBuf> = self.git_layer().into_iter().collect();
        if let Some(d) = &self.delta {
            if !d.whiteouts {
                return Err(StagingError::Unsupported {
                    strategy: "overlay",
                    reason: "this kernel refused to create overlayfs whiteouts (Linux 5.8 or \
                             later is needed) for the snapshot's delta layer"
                        .to_owned(),
                });
            }
            dirs.push(d.dir.join("tree"));
        }
        dirs.push(self.base.tree_dir());
        Ok(dirs)
    }

    /// Paths where this snapshot may differ from the base commit.
    pub(crate) fn paths_off_commit(&self) -> impl Iterator<Item = &RepoPath> {
        self.base
            .dirty()
            .iter()
            .chain(self.delta.iter().flat_map(|d| d.entries.keys()))
    }

    /// The changes in `changes` expressed against the base (the delta composed with them).
    pub fn against_base(&self, changes: &ChangeSet) -> Result<ChangeSet, StagingError> {
        match &self.delta {
            Some(d) => d.changes.compose(changes),
            None => Ok(changes.clone()),
        }
    }
}

fn ancestor_is_file(tree: &Path, path: &RepoPath) -> bool {
    let mut cur = tree.to_path_buf();
    let segments: Vec<&str> = path.segments().collect();
    for seg in &segments[..segments.len().saturating_sub(1)] {
        cur.push(seg);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
    false
}

/// The base's entries with the delta's applied, in order.
struct Merged<'a, B, D>
where
    B: Iterator<Item = (&'a RepoPath, &'a Entry)>,
    D: Iterator<Item = (&'a RepoPath, &'a Option<Entry>)>,
{
    base: Peekable<B>,
    delta: Peekable<D>,
}

impl<'a, B, D> Iterator for Merged<'a, B, D>
where
    B: Iterator<Item = (&'a RepoPath, &'a Entry)>,
    D: Iterator<Item = (&'a RepoPath, &'a Option<Entry>)>,
{
    type Item = (&'a RepoPath, &'a Entry);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.delta.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((d, _))) => b.cmp(d),
            };
            match order {
                Ordering::Less => return self.base.next(),
                Ordering::Equal => {
                    self.base.next();
                }
                Ordering::Greater => {}
            }
            let (path, entry) = self.delta.next()?;
            if let Some(entry) = entry {
                return Some((path, entry));
            }
        }
    }
}

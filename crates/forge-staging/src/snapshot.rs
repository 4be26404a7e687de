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
/// The delta is materialized as a stack of *layer* directories, each holding only the files
/// one step changed plus overlayfs whiteouts for its deletions: [`Snapshot::with_delta`] makes
/// one layer of a whole delta, [`Snapshot::stack`] puts one step on top of an existing
/// snapshot, so building the next snapshot costs what that step holds, not what the run has
/// integrated so far, nor what the repository holds. Overlay workspaces use the layers as
/// lower directories; other strategies copy from them. Cloning a `Snapshot` is cheap.
///
/// # Compaction
///
/// Overlayfs walks every lower layer on a lookup miss and takes at most a page of mount
/// options, so the stack must stay shallow. Layers merge like the digits of a binary counter:
/// each layer covers a power-of-two number of steps, and a new step merges with the layers
/// below it that cover no more steps than the merged layer so far. After `n` steps the stack is
/// `popcount(n)` layers deep (at most 17 below 131,072 steps) and each change is re-linked
/// `log2(n)` times over the run. A merged layer hard-links the files of the layers it replaces
/// (same inode, same stat data: the git index built for them stays valid) and the layers
/// below it are shared with the snapshots made before.
#[derive(Debug, Clone)]
pub struct Snapshot {
    base: Arc<BaseSnapshot>,
    delta: Option<Arc<Delta>>,
}

#[derive(Debug)]
struct Delta {
    /// The layers, bottom first; the topmost holds the snapshot's git layer.
    layers: Vec<Arc<Layer>>,
    /// The whole delta against the base.
    changes: ChangeSet,
    /// What each changed path holds now (`None`: deleted) and the index of the topmost layer
    /// that changed it.
    entries: BTreeMap<RepoPath, (Option<Entry>, usize)>,
    /// Git: the objects directory every layer built on this chain writes into, and the commit
    /// the snapshot's commit sits on (the base layer's `HEAD`).
    git: Option<GitChain>,
}

#[derive(Debug, Clone)]
struct GitChain {
    objects: PathBuf,
    parent: String,
    parent_tree: String,
}

/// One layer directory: `tree/` (files and whiteouts), `git/` (the git layer of the snapshot
/// it was built for) and `delta.json`.
#[derive(Debug)]
struct Layer {
    dir: PathBuf,
    /// What this layer changes relative to the layers below it.
    changes: ChangeSet,
    /// How many steps it covers.
    steps: u64,
    whiteouts: bool,
}

/// The directory of a chain's first layer that holds the git objects of every layer stacked on
/// it.
const OBJECTS: &str = "objects";

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

/// Where a file of a layer being built comes from.
enum Source<'a> {
    /// The blob store.
    Store,
    /// The same path in an existing layer's tree (hard-linked).
    Layer(&'a Path),
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
        let from = Self::from(base);
        check_start(
            &from,
            delta,
            "the delta does not start from the base snapshot's entry",
        )?;
        let record_path = layer_dir.join("delta.json");
        if layer_dir.exists() {
            let record: DeltaRecord = read_json(&record_path, "delta layer record")?;
            if record.changes != *delta {
                return Err(StagingError::AlreadyExists(layer_dir.to_path_buf()));
            }
            let layer = Arc::new(Layer {
                dir: std::path::absolute(layer_dir).ctx("resolve", layer_dir)?,
                changes: record.changes,
                steps: 1,
                whiteouts: record.whiteouts,
            });
            let git = match from.base.git_layer() {
                Some(base_layer) if layer.dir.join(OBJECTS).is_dir() => {
                    let (parent, parent_tree) = crate::gitdir::head(&base_layer)?;
                    Some(GitChain {
                        objects: layer.dir.join(OBJECTS),
                        parent,
                        parent_tree,
                    })
                }
                _ => None,
            };
            let entries = layer
                .changes
                .iter()
                .map(|(p, c)| (p.clone(), (c.after().cloned(), 0)))
                .collect();
            return Ok(Self {
                base: from.base,
                delta: Some(Arc::new(Delta {
                    changes: layer.changes.clone(),
                    layers: vec![layer],
                    entries,
                    git,
                })),
            });
        }
        from.build(0, 1, delta, delta, store, layer_dir)
    }

    /// This snapshot with `step` on top, as one more layer built in the new directory
    /// `layer_dir` (which, when the stack is due for compaction, also takes over the files of
    /// the layers it replaces: see the type's documentation).
    ///
    /// `step` must start from this snapshot: every `Modified` or `Deleted` change from its
    /// entry, every `Added` path absent from it. An empty step still makes a new snapshot
    /// (with its own git layer), the same as this one.
    pub fn stack(
        &self,
        step: &ChangeSet,
        store: &BlobStore,
        layer_dir: &Path,
    ) -> Result<Self, StagingError> {
        check_start(
            self,
            step,
            "the step does not start from the snapshot's entry",
        )?;
        if layer_dir.exists() {
            return Err(StagingError::AlreadyExists(layer_dir.to_path_buf()));
        }
        let layers: &[Arc<Layer>] = self.delta.as_ref().map_or(&[], |d| &d.layers);
        // The binary counter: merge the layers that cover no more steps than the merge so far.
        let (mut keep, mut steps) = (layers.len(), 1);
        while keep > 0 && layers[keep - 1].steps <= steps {
            keep -= 1;
            steps += layers[keep].steps;
        }
        let mut merged = ChangeSet::default();
        for layer in &layers[keep..] {
            merged = merged.compose(&layer.changes)?;
        }
        let merged = merged.compose(step)?;
        self.build(keep, steps, &merged, step, store, layer_dir)
    }

    /// The number of layer directories the delta is made of (0 without a delta).
    pub fn depth(&self) -> usize {
        self.delta.as_ref().map_or(0, |d| d.layers.len())
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

    /// The topmost delta layer's directory, if any.
    pub fn layer_dir(&self) -> Option<&Path> {
        self.delta
            .as_ref()
            .and_then(|d| d.layers.last())
            .map(|l| l.dir.as_path())
    }

    /// What `path` holds in this snapshot.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        match self.delta.as_ref().and_then(|d| d.entries.get(path)) {
            Some((now, _)) => now.as_ref(),
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
                .map(|(p, (e, _))| (p, e))
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

    /// The file holding `path`'s content in this snapshot: in a delta layer or the base tree.
    pub(crate) fn source(&self, path: &str) -> PathBuf {
        match &self.delta {
            Some(d) => match d.entries.get(path) {
                Some((_, i)) => d.layers[*i].dir.join("tree").join(path),
                None => self.base.tree_dir().join(path),
            },
            None => self.base.tree_dir().join(path),
        }
    }

    /// The directory whose `.git` is the repository workspaces staged from this snapshot get,
    /// if it has one.
    pub(crate) fn git_layer(&self) -> Option<PathBuf> {
        match self.delta.as_ref().and_then(|d| d.layers.last()) {
            Some(top) => {
                let dir = top.dir.join(crate::gitdir::LAYER);
                dir.join(".git").is_dir().then_some(dir)
            }
            None => self.base.git_layer(),
        }
    }

    /// The overlay lower directories, topmost first.
    pub(crate) fn lower_dirs(&self) -> Result<Vec<PathBuf>, StagingError> {
        let mut dirs: Vec<PathBuf> = self.git_layer().into_iter().collect();
        if let Some(d) = &self.delta {
            for layer in d.layers.iter().rev() {
                if !layer.whiteouts {
                    return Err(StagingError::Unsupported {
                        strategy: "overlay",
                        reason: "this kernel refused to create overlayfs whiteouts (Linux 5.8 \
                                 or later is needed) for the snapshot's delta layer"
                            .to_owned(),
                    });
                }
                dirs.push(layer.dir.join("tree"));
            }
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

    /// The snapshot made of this one's bottom `keep` layers and a new layer built in
    /// `layer_dir` holding `merged` (the changes of the layers above `keep`, then `step`,
    /// relative to the bottom `keep` layers) and covering `steps` steps.
    fn build(
        &self,
        keep: usize,
        steps: u64,
        merged: &ChangeSet,
        step: &ChangeSet,
        store: &BlobStore,
        layer_dir: &Path,
    ) -> Result<Self, StagingError> {
        let layers: &[Arc<Layer>] = self.delta.as_ref().map_or(&[], |d| &d.layers);
        let (kept, replaced) = layers.split_at(keep);
        let partial = partial_dir(layer_dir);
        remove_tree(&partial)?;
        let tree = partial.join("tree");
        fs::create_dir_all(&tree).ctx("create directory", &tree)?;
        let (whiteouts, restat) = self.write_tree(kept, replaced, merged, step, store, &tree)?;
        let final_dir = std::path::absolute(layer_dir).ctx("resolve", layer_dir)?;
        let git = match self.git_layer() {
            Some(below) => {
                // The git layer below already holds everything but the step (and the copies
                // that replaced failed links).
                let mut changed: ChangeSet = step.clone();
                for path in restat {
                    if let Some(change) = merged.get(path.as_str()) {
                        changed.insert(path.clone(), change.clone());
                    }
                }
                // Every layer of a chain writes its objects into the chain's objects directory,
                // which the first layer holds beside (not in) its git layer: no mounted lower
                // directory ever changes.
                let chain = self.delta.as_ref().and_then(|d| d.git.clone());
                let (objects, objects_now) = match &chain {
                    Some(chain) => (chain.objects.clone(), chain.objects.clone()),
                    None => (final_dir.join(OBJECTS), partial.join(OBJECTS)),
                };
                let (parent, parent_tree) =
                    crate::gitdir::build_delta(&crate::gitdir::DeltaSpec {
                        below: &below,
                        tree: &tree,
                        changed: &changed,
                        total: self.delta().map_or(0, ChangeSet::len) + step.len(),
                        out: &partial.join(crate::gitdir::LAYER),
                        objects: &objects,
                        objects_now: &objects_now,
                        parent: chain
                            .as_ref()
                            .map(|c| (c.parent.as_str(), c.parent_tree.as_str())),
                    })?;
                Some(GitChain {
                    objects,
                    parent,
                    parent_tree,
                })
            }
            None => None,
        };
        let record = DeltaRecord {
            version: 1,
            whiteouts,
            changes: merged.clone(),
        };
        write_json(&partial.join("delta.json"), &record)?;
        fs::rename(&partial, layer_dir).ctx("move the finished layer to", layer_dir)?;
        let layer = Arc::new(Layer {
            dir: final_dir,
            changes: record.changes,
            steps,
            whiteouts,
        });
        // What each path holds now, and which layer holds it.
        let mut entries = self
            .delta
            .as_ref()
            .map(|d| d.entries.clone())
            .unwrap_or_default();
        let touched: Vec<RepoPath> = replaced
            .iter()
            .flat_map(|l| l.changes.paths())
            .chain(step.paths())
            .cloned()
            .collect();
        for path in touched {
            let now = match merged.get(path.as_str()) {
                Some(change) => Some((change.after().cloned(), keep)),
                None => kept.iter().enumerate().rev().find_map(|(i, l)| {
                    l.changes
                        .get(path.as_str())
                        .map(|c| (c.after().cloned(), i))
                }),
            };
            match now {
                Some(now) => entries.insert(path, now),
                None => entries.remove(&path),
            };
        }
        let changes = match &self.delta {
            Some(d) => d.changes.compose(step)?,
            None => step.clone(),
        };
        let mut layers = kept.to_vec();
        layers.push(layer);
        Ok(Self {
            base: self.base.clone(),
            delta: Some(Arc::new(Delta {
                layers,
                changes,
                entries,
                git,
            })),
        })
    }

    /// Writes the files and whiteouts of a new layer into `tree` (see [`Snapshot::build`]);
    /// returns whether every whiteout could be made and the paths whose file is a copy where
    /// a link to the same content below was wanted.
    fn write_tree<'a>(
        &self,
        kept: &[Arc<Layer>],
        replaced: &[Arc<Layer>],
        merged: &'a ChangeSet,
        step: &'a ChangeSet,
        store: &BlobStore,
        tree: &Path,
    ) -> Result<(bool, Vec<&'a RepoPath>), StagingError> {
        let tree = tree.to_path_buf();
        let base_tree = self.base.tree_dir();
        // Where each file comes from: the step's from the store, the others hard-linked from
        // the topmost replaced layer that holds them. A link that fails (another file system,
        // too many links) is a copy, and its path gets new stat data in the git layer.
        let mut restat: Vec<&'a RepoPath> = Vec::new();
        for (path, change) in merged {
            let Some(after) = change.after() else {
                continue;
            };
            let source = if step.get(path.as_str()).is_some() {
                Source::Store
            } else {
                replaced
                    .iter()
                    .rev()
                    .find(|l| l.changes.get(path.as_str()).is_some())
                    .map_or(Source::Store, |l| Source::Layer(&l.dir))
            };
            let dest = tree.join(path.as_str());
            create_dirs_like(&tree, path.parent().unwrap_or(""), &base_tree)?;
            if let Source::Layer(dir) = source {
                if fs::hard_link(dir.join("tree").join(path.as_str()), &dest).is_ok() {
                    continue;
                }
                restat.push(path);
            }
            write_entry(store, Some(after), &dest)?;
        }
        // A step path the merge left out (the layers it replaces changed it and the step
        // changed it back) shows through from below; git's index gets it from a link to
        // that file, so its stat data stays what the view shows.
        for (path, change) in step {
            if change.after().is_none() || merged.get(path.as_str()).is_some() {
                continue;
            }
            let below = kept
                .iter()
                .rev()
                .find(|l| l.changes.get(path.as_str()).is_some())
                .map_or_else(|| base_tree.clone(), |l| l.dir.join("tree"));
            let dest = tree.join(path.as_str());
            create_dirs_like(&tree, path.parent().unwrap_or(""), &base_tree)?;
            if fs::hard_link(below.join(path.as_str()), &dest).is_err() {
                write_entry(store, change.after(), &dest)?;
                restat.push(path);
            }
        }
        let mut whiteouts = true;
        for (path, change) in merged {
            if change.after().is_some() {
                continue;
            }
            // A deleted path inside an added file's place, or where the layer now has a
            // directory, is hidden already; elsewhere a whiteout hides the entry below.
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
        Ok((whiteouts, restat))
    }
}

/// Writes `entry` (a file from the store, or a symlink) at `dest`.
fn write_entry(store: &BlobStore, entry: Option<&Entry>, dest: &Path) -> Result<(), StagingError> {
    match entry {
        Some(Entry::File {
            hash, executable, ..
        }) => store.copy_to(hash, dest, *executable),
        Some(Entry::Symlink { target, .. }) => std::os::unix::fs::symlink(target.as_path(), dest)
            .ctx("create symlink", dest)
            .map_err(Into::into),
        None => Ok(()),
    }
}

/// Checks that every change of `changes` starts from what `snapshot` holds.
fn check_start(snapshot: &Snapshot, changes: &ChangeSet, reason: &str) -> Result<(), StagingError> {
    for (path, change) in changes {
        if snapshot.get(path.as_str()) != change.before() {
            return Err(StagingError::ChangeMismatch {
                path: path.clone(),
                reason: reason.to_owned(),
            });
        }
    }
    Ok(())
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

//! The copy and reflink strategies: the snapshot written out as a plain tree (copied, or cloned
//! copy-on-write), and changes found by comparing the tree with the snapshot's manifest.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::IoContext;
use crate::fsutil::par_map;
use crate::rules::IgnoreRules;
use crate::scan::{Capture, child};
use crate::slot::{Slot, WorkspaceRecord, create_slot, install_setup, skip_nested, write_entry};
use crate::stager::Shared;
use crate::{
    BaseSnapshot, ChangeSet, Entry, RepoPath, SkipReason, Snapshot, Stager, StagerConfig,
    StagerKind, StagingError, Workspace,
};

/// Stages workspaces as plain recursive copies of the snapshot (which holds only tracked and
/// not-ignored files). Always works; costs a full copy.
#[derive(Debug)]
pub struct CopyStager {
    shared: Arc<Shared>,
}

impl CopyStager {
    /// A copy stager.
    pub fn new(config: &StagerConfig) -> Result<Self, StagingError> {
        Ok(Self {
            shared: Shared::new(config)?,
        })
    }
}

impl Stager for CopyStager {
    fn strategy(&self) -> &str {
        StagerKind::Copy.name()
    }

    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Box<dyn Workspace>, StagingError> {
        stage_tree(&self.shared, snapshot, name, false)
    }
}

/// Stages workspaces as copy-on-write clones (`FICLONE`) of every file: no file data is copied,
/// only directory entries and inodes are made. Needs the run root on the same reflink-capable
/// file system (XFS, btrfs, bcachefs…) as the base snapshot.
#[derive(Debug)]
pub struct ReflinkStager {
    shared: Arc<Shared>,
}

/// Reflink support by file system (device number), probed once per process.
static PROBED: Mutex<Option<HashMap<u64, bool>>> = Mutex::new(None);

impl ReflinkStager {
    /// A reflink stager for snapshots of `base`, after checking that files can be cloned from
    /// the base's file system into the run root's.
    pub fn new(config: &StagerConfig, base: &BaseSnapshot) -> Result<Self, StagingError> {
        let shared = Shared::new(config)?;
        let unsupported = |reason: String| StagingError::Unsupported {
            strategy: "reflink",
            reason,
        };
        let tree = base.tree_dir();
        let base_dev = fs::metadata(&tree).ctx("stat", &tree)?.dev();
        let ws_dev = fs::metadata(&shared.workspaces)
            .ctx("stat", &shared.workspaces)?
            .dev();
        if base_dev != ws_dev {
            return Err(unsupported(format!(
                "the base snapshot `{}` and the run root `{}` are on different file systems",
                tree.display(),
                shared.workspaces.display()
            )));
        }
        let known = PROBED
            .lock()
            .ok()
            .and_then(|m| m.as_ref().and_then(|m| m.get(&ws_dev).copied()));
        let supported = known.unwrap_or_else(|| {
            let s = probe(&shared.workspaces);
            if let Ok(mut m) = PROBED.lock() {
                m.get_or_insert_with(HashMap::new).insert(ws_dev, s);
            }
            s
        });
        if !supported {
            return Err(unsupported(format!(
                "the file system of `{}` cannot clone files (FICLONE)",
                shared.workspaces.display()
            )));
        }
        Ok(Self { shared })
    }
}

fn probe(dir: &Path) -> bool {
    let src = dir.join(format!("probe-reflink-{}.src", std::process::id()));
    let dst = dir.join(format!("probe-reflink-{}.dst", std::process::id()));
    let ok = fs::write(&src, b"forge reflink probe").is_ok()
        && reflink_copy::reflink(&src, &dst).is_ok();
    let _ = fs::remove_file(&src);
    let _ = fs::remove_file(&dst);
    ok
}

impl Stager for ReflinkStager {
    fn strategy(&self) -> &str {
        StagerKind::Reflink.name()
    }

    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Box<dyn Workspace>, StagingError> {
        stage_tree(&self.shared, snapshot, name, true)
    }
}

fn stage_tree(
    shared: &Arc<Shared>,
    snapshot: &Snapshot,
    name: &str,
    clone: bool,
) -> Result<Box<dyn Workspace>, StagingError> {
    let kind = if clone {
        StagerKind::Reflink
    } else {
        StagerKind::Copy
    };
    let record = WorkspaceRecord {
        strategy: kind,
        ..WorkspaceRecord::default()
    };
    let mut slot = create_slot(shared, name, &record)?;
    let tree = slot.dir.join("tree");
    let stamp = (|| {
        fs::create_dir(&tree).ctx("create directory", &tree)?;
        materialize(snapshot, &tree, clone)?;
        if let Some(layer) = snapshot.git_layer() {
            crate::gitdir::install(&layer.join(".git"), &tree.join(".git"))?;
        }
        install_setup(shared, snapshot, &tree)?;
        // The file system's clock now: any file written after this has an mtime or ctime at
        // least as late.
        let stamp_path = slot.dir.join("stamp");
        fs::write(&stamp_path, b"").ctx("write", &stamp_path)?;
        let m = fs::symlink_metadata(&stamp_path).ctx("stat", &stamp_path)?;
        Ok((m.mtime(), m.mtime_nsec()))
    })();
    let stamp = match stamp {
        Ok(s) => s,
        Err(e) => {
            let _ = slot.release();
            return Err(e);
        }
    };
    Ok(Box::new(TreeWorkspace {
        slot,
        kind,
        path: tree,
        snapshot: snapshot.clone(),
        shared: Arc::clone(shared),
        stamp,
    }))
}

/// A workspace of the copy or reflink strategy: a plain tree; files whose mtime and ctime are
/// older than `stamp` (the file system's time when staging finished) and whose size matches
/// are unchanged.
#[derive(Debug)]
struct TreeWorkspace {
    slot: Slot,
    kind: StagerKind,
    path: PathBuf,
    snapshot: Snapshot,
    shared: Arc<Shared>,
    stamp: (i64, i64),
}

impl Workspace for TreeWorkspace {
    fn name(&self) -> &str {
        &self.slot.name
    }

    fn strategy(&self) -> &str {
        self.kind.name()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn changes(&self) -> Result<ChangeSet, StagingError> {
        let mut set = changes(self)?;
        skip_nested(&self.snapshot, &mut set);
        Ok(set)
    }

    fn dispose(mut self: Box<Self>) -> Result<(), StagingError> {
        self.slot.release()
    }
}

/// Writes every entry of `snapshot` under `root` (directories first, then files in parallel).
fn materialize(snapshot: &Snapshot, root: &Path, clone: bool) -> Result<(), StagingError> {
    let entries: Vec<(&RepoPath, &Entry)> = snapshot.iter().collect();
    let mut dirs = HashSet::new();
    for (path, _) in &entries {
        if let Some(parent) = path.parent()
            && !dirs.contains(parent)
        {
            let abs = root.join(parent);
            fs::create_dir_all(&abs).ctx("create directory", &abs)?;
            let mut p = parent;
            loop {
                dirs.insert(p);
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
        }
    }
    par_map(&entries, |(path, entry)| {
        write_entry(
            root,
            path.as_str(),
            entry,
            &snapshot.source(path.as_str()),
            clone,
        )
    })
    .into_iter()
    .collect()
}

/// Changes found by walking the whole tree and comparing with the snapshot: a file whose size
/// and exec bit match and whose mtime and ctime precede `stamp` is unchanged; others are hashed.
fn changes(ws: &TreeWorkspace) -> Result<ChangeSet, StagingError> {
    let config = &ws.shared.config;
    let mut walk = TreeWalk {
        cap: Capture::new(&config.store, config.max_file_size),
        rules: IgnoreRules::at_start(&ws.snapshot, &config.store),
        ws,
        stamp: ws.stamp,
        seen: HashSet::new(),
    };
    walk.dir(&ws.path, "")?;
    let TreeWalk { mut cap, seen, .. } = walk;
    for (path, entry) in ws.snapshot.iter() {
        if !seen.contains(path.as_str()) && !ws.shared.excluded.contains(path.as_str()) {
            cap.deleted(path, entry);
        }
    }
    Ok(cap.finish())
}

struct TreeWalk<'a> {
    cap: Capture<'a>,
    rules: IgnoreRules<'a>,
    ws: &'a TreeWorkspace,
    stamp: (i64, i64),
    seen: HashSet<String>,
}

impl TreeWalk<'_> {
    fn dir(&mut self, abs: &Path, rel: &str) -> Result<(), StagingError> {
        for entry in fs::read_dir(abs).ctx("list", abs)? {
            let entry = entry.ctx("list", abs)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.cap.out.skip(
                    child(rel, &name.to_string_lossy()),
                    SkipReason::InvalidName {
                        detail: "the name is not valid UTF-8".to_owned(),
                    },
                );
                continue;
            };
            let path = child(rel, name);
            if self.ws.shared.excluded.contains(&path) {
                continue;
            }
            let abs_entry = entry.path();
            let meta = fs::symlink_metadata(&abs_entry).ctx("stat", &abs_entry)?;
            if meta.is_dir() {
                if !self.ws.snapshot.has_dir(&path) && self.rules.is_ignored(&path, true) {
                    continue;
                }
                self.dir(&abs_entry, &path)?;
                continue;
            }
            let before = self.ws.snapshot.get(&path);
            if before.is_none() && self.rules.is_ignored(&path, false) {
                continue;
            }
            if let Some(before) = before {
                self.seen.insert(path.clone());
                if self.unchanged(&meta, before) {
                    continue;
                }
            }
            match RepoPath::new(&path) {
                Ok(p) => self.cap.record(p, &abs_entry, &meta, before)?,
                Err(e) => self.cap.out.skip(
                    path,
                    SkipReason::InvalidName {
                        detail: e.to_string(),
                    },
                ),
            }
        }
        Ok(())
    }

    fn unchanged(&self, meta: &fs::Metadata, before: &Entry) -> bool {
        let Entry::File {
            size, executable, ..
        } = before
        else {
            return false;
        };
        let older = |t: (i64, i64)| t < self.stamp;
        meta.is_file()
            && meta.len() == *size
            && (meta.mode() & 0o100 != 0) == *executable
            && older((meta.mtime(), meta.mtime_nsec()))
            && older((meta.ctime(), meta.ctime_nsec()))
    }
}

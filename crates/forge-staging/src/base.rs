use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::fsutil::{par_map, remove_tree};
use crate::git::{git, nul_records, run, status_paths};
use crate::gitdir::{self, BaseSpec, READ_ONLY_USER};
use crate::rules::{Excluded, IgnoreRules};
use crate::scan::child;
use crate::store::{hash_file, open_nofollow};
use crate::{BlobStore, Entry, LinkTarget, Manifest, RepoPath, SkipReason, Skipped, StagingError};

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

/// The on-disk record of a snapshot (`snapshot.json`), next to its manifest and `tree/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotRecord {
    version: u32,
    mode: BaseMode,
    repo: PathBuf,
    commit: Option<String>,
    /// Paths where the snapshot may differ from the commit (Worktree mode's uncommitted work).
    dirty: Vec<RepoPath>,
    skipped: Vec<Skipped>,
    /// The repository-wide ignore patterns in force when the snapshot was taken.
    excludes: String,
}

/// The version of `snapshot.json` this code writes. 2: a base in git has the link to the user's
/// git directory ([`crate::USER_GIT_LINK`]) and the fsmonitor hook that also works inside an
/// attempt's view of the repository. 3: the manifest is `manifest.bin`
/// ([`Manifest::encode`]) instead of `manifest.json` (read in a third of the time: every run
/// of a commit opens its base). Records of versions 1 and 2 are still opened (a resumed run),
/// but a cache of bases does not reuse them ([`BaseSnapshot::is_current`]).
const RECORD_VERSION: u32 = 3;

/// The snapshot's manifest, in binary form, next to `snapshot.json` (record version 3 on).
const MANIFEST_FILE: &str = "manifest.bin";

/// The state of the repository a run starts from, taken once per run and never changed after.
///
/// A snapshot lives in a directory the caller names (the run store, e.g.
/// `.forge/runs/<run>/base`): `tree/` holds its files as plain files (the lower layer every
/// overlay workspace is stacked on, and the source every copy is made from), `manifest.bin`
/// maps each path to its [`Entry`], and `snapshot.json` records the mode, the repository, the
/// commit and what was left out. Every file's content is also put into the [`BlobStore`]
/// (hard-linked, so it costs no space), so any blob a changeset names can be read by hash.
///
/// - [`BaseMode::Head`]: the tree of `HEAD`, checked out with git's own filters, as
///   `git worktree add` would (without touching the user's index or worktrees).
/// - [`BaseMode::Worktree`]: the working tree as it is: tracked files plus untracked files that
///   are not ignored (`.gitignore` files, `.git/info/exclude` and the global excludes file, read
///   through the `ignore` crate). Works outside git too.
///
/// Directories named `.git` and the top-level `.forge` are never part of a snapshot; neither are
/// nested repositories and submodules (listed in [`BaseSnapshot::skipped`]).
#[derive(Debug, Clone)]
pub struct BaseSnapshot {
    dir: PathBuf,
    record: SnapshotRecord,
    manifest: Manifest,
}

impl BaseSnapshot {
    /// Takes a snapshot of `repo` into the new directory `dir`, adding its files to `store`.
    ///
    /// `repo` may be any directory inside a git repository (its top level is used) or, in
    /// `Worktree` mode, any directory. The snapshot appears under `dir` only when complete.
    pub fn capture(
        repo: &Path,
        mode: BaseMode,
        dir: &Path,
        store: &BlobStore,
    ) -> Result<Self, StagingError> {
        let repo = fs::canonicalize(repo).ctx("open the repository", repo)?;
        if dir.exists() {
            return Err(StagingError::AlreadyExists(dir.to_path_buf()));
        }
        let git_root = run(git(&repo).args(["rev-parse", "--show-toplevel"]))
            .ok()
            .map(|out| PathBuf::from(std::ffi::OsStr::from_bytes(trim_newline(&out))));
        let root = git_root.clone().unwrap_or_else(|| repo.clone());
        let commit = match &git_root {
            Some(root) => run(git(root).args(["rev-parse", "--verify", "-q", "HEAD^{commit}"]))
                .ok()
                .map(|out| String::from_utf8_lossy(trim_newline(&out)).into_owned()),
            None => None,
        };
        if mode == BaseMode::Head && commit.is_none() {
            return Err(StagingError::NotGit {
                path: repo,
                reason: if git_root.is_some() {
                    "the repository has no commit yet; use the `worktree` base".to_owned()
                } else {
                    "it is not inside a git repository (or git is not installed); use the \
                     `worktree` base"
                        .to_owned()
                },
            });
        }

        let partial = partial_dir(dir);
        remove_tree(&partial)?;
        let tree = partial.join("tree");
        fs::create_dir_all(&tree).ctx("create directory", &tree)?;
        let excludes = if git_root.is_some() {
            read_excludes(&root)
        } else {
            String::new()
        };
        let mut skipped = Vec::new();
        let (manifest, dirty) = if let (BaseMode::Head, Some(commit)) = (mode, &commit) {
            (
                capture_head(&root, commit, &partial, store, &mut skipped)?,
                Vec::new(),
            )
        } else {
            let manifest = capture_worktree(
                &root,
                git_root.is_some(),
                &excludes,
                &tree,
                store,
                &mut skipped,
            )?;
            let dirty = if commit.is_some() {
                dirty_paths(&root)?
            } else {
                Vec::new()
            };
            (manifest, dirty)
        };
        skipped.sort_by(|a: &Skipped, b| a.path.cmp(&b.path));
        build_git_layer(
            git_root.as_deref(),
            commit.as_deref(),
            &partial,
            &manifest,
            &dirty,
        )?;
        let record = SnapshotRecord {
            version: RECORD_VERSION,
            mode,
            repo: root,
            commit,
            dirty,
            skipped,
            excludes,
        };
        let manifest_file = partial.join(MANIFEST_FILE);
        fs::write(&manifest_file, manifest.encode()).ctx("write", &manifest_file)?;
        // The repository is recorded relative to the snapshot's directory, so that a
        // repository holding its runs can be moved or copied: the copy's snapshot names the copy.
        let final_dir = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => fs::canonicalize(parent)
                .ctx("resolve", parent)?
                .join(dir.file_name().unwrap_or_default()),
            _ => std::path::absolute(dir).ctx("resolve", dir)?,
        };
        let stored = SnapshotRecord {
            repo: crate::relative_path(&final_dir, &record.repo),
            ..record.clone()
        };
        write_json(&partial.join("snapshot.json"), &stored)?;
        let sync_dir = fs::File::open(&partial).ctx("open", &partial)?;
        rustix::fs::syncfs(&sync_dir).ctx("sync the file system of", &partial)?;
        fs::rename(&partial, dir).ctx("move the finished snapshot to", dir)?;
        Ok(Self {
            dir: std::path::absolute(dir).ctx("resolve", dir)?,
            record,
            manifest,
        })
    }

    /// Opens a snapshot taken earlier (to resume a run).
    ///
    /// The repository is found relative to `dir`, as it was when the snapshot was taken: in a
    /// moved repository it is the moved one, in a copy the copy.
    pub fn open(dir: &Path) -> Result<Self, StagingError> {
        let mut record: SnapshotRecord = read_json(&dir.join("snapshot.json"), "snapshot record")?;
        let resolved_dir = fs::canonicalize(dir).ctx("resolve", dir)?;
        record.repo = crate::resolve_path(&resolved_dir, &record.repo);
        if !(1..=RECORD_VERSION).contains(&record.version) {
            return Err(StagingError::Corrupt {
                path: dir.join("snapshot.json"),
                what: "snapshot record",
                reason: format!("unknown version {}", record.version),
            });
        }
        let manifest = if record.version >= 3 {
            let path = dir.join(MANIFEST_FILE);
            let bytes = fs::read(&path).ctx("read", &path)?;
            Manifest::decode(&bytes).map_err(|reason| StagingError::Corrupt {
                path,
                what: "snapshot manifest",
                reason,
            })?
        } else {
            read_json(&dir.join("manifest.json"), "snapshot manifest")?
        };
        Ok(Self {
            dir: std::path::absolute(dir).ctx("resolve", dir)?,
            record,
            manifest,
        })
    }

    /// Whether the snapshot in `dir` is what this version of Forge captures: its record is of
    /// the current version and, for a base in git, it has the link to the user's git directory
    /// that an attempt's view of the repository needs ([`BaseSnapshot::user_git_link`]).
    /// Snapshots kept for reuse across runs (Forge's `.forge/bases/`) are captured again when
    /// this is false (also when `dir` holds no readable snapshot); an older snapshot can still
    /// be opened, to resume a run that used it. Reads the small record only, not the manifest.
    pub fn is_current(dir: &Path) -> bool {
        read_json::<SnapshotRecord>(&dir.join("snapshot.json"), "snapshot record").is_ok_and(
            |record| {
                record.version == RECORD_VERSION
                    && (record.commit.is_none()
                        || fs::symlink_metadata(dir.join(gitdir::USER_GIT_LINK))
                            .is_ok_and(|m| m.file_type().is_symlink()))
            },
        )
    }

    /// The snapshot's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory whose `.git` is the repository of workspaces staged from the base (see
    /// the `gitdir` module), if the snapshot has one (snapshots taken by older versions, or
    /// outside git where git is not installed, do not).
    pub(crate) fn git_layer(&self) -> Option<PathBuf> {
        let dir = self.dir.join(gitdir::LAYER);
        dir.join(".git").is_dir().then_some(dir)
    }

    /// The symbolic link to the user's git directory that workspace repositories reach the
    /// user's objects and configuration through ([`crate::USER_GIT_LINK`]), if the snapshot
    /// has one (a base in git, captured by this version).
    pub fn user_git_link(&self) -> Option<PathBuf> {
        let link = self.dir.join(gitdir::USER_GIT_LINK);
        std::fs::symlink_metadata(&link)
            .is_ok_and(|m| m.file_type().is_symlink())
            .then_some(link)
    }

    /// The directory holding the snapshot's files. Nothing may write to it.
    pub fn tree_dir(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Which state of the repository was taken.
    pub fn mode(&self) -> BaseMode {
        self.record.mode
    }

    /// The repository's top-level directory (canonical).
    pub fn repo(&self) -> &Path {
        &self.record.repo
    }

    /// The commit `HEAD` pointed to, if the repository is a git repository with a commit.
    pub fn commit(&self) -> Option<&str> {
        self.record.commit.as_deref()
    }

    /// Every file and symlink of the snapshot.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Paths left out of the snapshot (nested repositories, submodules, names that are not
    /// UTF-8), in path order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.record.skipped
    }

    /// The repository-wide ignore patterns in force when the snapshot was taken.
    pub(crate) fn excludes(&self) -> &str {
        &self.record.excludes
    }

    /// Paths where the snapshot may differ from [`BaseSnapshot::commit`] (uncommitted work in
    /// `Worktree` mode).
    pub(crate) fn dirty(&self) -> &[RepoPath] {
        &self.record.dirty
    }
}

/// Builds the git layer of the snapshot being captured in `partial` (with its files in
/// `partial/tree`, and for a `head` base the index `partial/index` of their checkout). Outside
/// git, a snapshot without a git layer is still a snapshot: a failure only leaves it out.
fn build_git_layer(
    repo: Option<&Path>,
    commit: Option<&str>,
    partial: &Path,
    manifest: &Manifest,
    dirty: &[RepoPath],
) -> Result<(), StagingError> {
    let index = partial.join("index");
    let tree = partial.join("tree");
    let off_commit: Vec<&str> = if commit.is_some() {
        dirty.iter().map(RepoPath::as_str).collect()
    } else {
        manifest.iter().map(|(p, _)| p.as_str()).collect()
    };
    let spec = BaseSpec {
        repo,
        commit,
        tree: &tree,
        index: index.is_file().then(|| index.clone()),
        off_commit,
    };
    let out = partial.join(gitdir::LAYER);
    match gitdir::build_base(&spec, &out) {
        Ok(()) => Ok(()),
        Err(_) if repo.is_none() => remove_tree(&out),
        Err(e) => Err(e),
    }
}

fn trim_newline(out: &[u8]) -> &[u8] {
    out.strip_suffix(b"\n").unwrap_or(out)
}

/// `<dir>.partial`: where a snapshot or layer is built before it is renamed into place.
pub(crate) fn partial_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dir.with_file_name(name)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StagingError> {
    let text = serde_json::to_vec(value).map_err(|e| StagingError::io("encode", path, e.into()))?;
    fs::write(path, text).ctx("write", path).map_err(Into::into)
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, StagingError> {
    let text = fs::read(path).ctx("read", path)?;
    serde_json::from_slice(&text).map_err(|e| StagingError::Corrupt {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    })
}

/// The global excludes file, then `$GIT_DIR/info/exclude` (which takes precedence, being later).
fn read_excludes(root: &Path) -> String {
    let mut text = String::new();
    if let Some(global) = ignore::gitignore::gitconfig_excludes_path()
        && let Ok(t) = fs::read_to_string(global)
    {
        text.push_str(&t);
        text.push('\n');
    }
    if let Ok(out) = run(git(root).args(["rev-parse", "--git-path", "info/exclude"])) {
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(trim_newline(&out)));
        if let Ok(t) = fs::read_to_string(root.join(p)) {
            text.push_str(&t);
        }
    }
    text
}

/// One path to capture: where it is, and what kind git (or the walk) says it is.
struct Item {
    path: RepoPath,
    source: PathBuf,
    symlink: bool,
    executable: bool,
}

/// Checks out `commit` into `<partial>/tree` through a temporary index, then hashes it.
fn capture_head(
    root: &Path,
    commit: &str,
    partial: &Path,
    store: &BlobStore,
    skipped: &mut Vec<Skipped>,
) -> Result<Manifest, StagingError> {
    let tree = partial.join("tree");
    let index = partial.join("index");
    run(git(root)
        .env("GIT_INDEX_FILE", &index)
        .args(READ_ONLY_USER)
        .args(["read-tree", commit]))?;
    // `--index` records the checked-out files' stat data: the index becomes the workspaces'
    // prebuilt one (see `gitdir`). Creating the files is most of a cold capture, and git's
    // parallel checkout does it several times faster than one process (see `checkout_workers`).
    run(git(root)
        .env("GIT_INDEX_FILE", &index)
        .args(READ_ONLY_USER)
        .arg("-c")
        .arg(format!("checkout.workers={}", checkout_workers()))
        .arg("--work-tree")
        .arg(&tree)
        .args(["checkout-index", "--all", "--force", "--quiet", "--index"]))?;
    let listing = run(git(root)
        .env("GIT_INDEX_FILE", &index)
        .args(READ_ONLY_USER)
        .args(["ls-files", "--stage", "-z"]))?;
    let mut items = Vec::new();
    for record in nul_records(&listing) {
        // `<mode> <object> <stage>\t<path>`
        let Some(tab) = record.iter().position(|&b| b == b'\t') else {
            continue;
        };
        let (meta, raw_path) = (&record[..tab], &record[tab + 1..]);
        let mode = meta.split(|&b| b == b' ').next().unwrap_or_default();
        let os_path = Path::new(std::ffi::OsStr::from_bytes(raw_path));
        let path = match RepoPath::from_path(os_path) {
            Ok(p) => p,
            Err(e) => {
                skipped.push(Skipped {
                    path: os_path.to_string_lossy().into_owned(),
                    reason: SkipReason::InvalidName {
                        detail: e.to_string(),
                    },
                });
                // Keep the tree equal to the manifest.
                let _ = fs::remove_file(tree.join(os_path));
                continue;
            }
        };
        match mode {
            b"160000" => skipped.push(Skipped {
                path: path.as_str().to_owned(),
                reason: SkipReason::NestedRepository,
            }),
            _ => items.push(Item {
                source: tree.join(path.as_str()),
                symlink: mode == b"120000",
                executable: mode == b"100755",
                path,
            }),
        }
    }
    hash_items(&items, store, |item| item.source.clone())
}

/// How many processes git's parallel checkout (`checkout.workers`) uses to write a `head`
/// base's files: two per CPU, at least two and at most eight. Creating 100,000 inodes is
/// kernel time spent mostly waiting (on ext4, for the inode allocator), so workers beyond the
/// CPUs still help: on 2 CPUs, four workers wrote 20,000 files in 2.3-2.9 s where one took
/// 10.8-13.8 s (benches/README.md, e2e, "the first agent on a big repository, cold").
fn checkout_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .saturating_mul(2)
        .clamp(2, 8)
}

/// Hashes each item's file where it already is, adding it to the store.
fn hash_items(
    items: &[Item],
    store: &BlobStore,
    at: impl Fn(&Item) -> PathBuf + Sync,
) -> Result<Manifest, StagingError> {
    let results = par_map(items, |item| -> Result<Entry, StagingError> {
        let file = at(item);
        if item.symlink {
            let target = fs::read_link(&file).ctx("read link", &file)?;
            let bytes = target.as_os_str().as_bytes();
            store.write(bytes)?;
            Ok(Entry::symlink(LinkTarget::new(bytes)))
        } else {
            let (hash, size) = hash_file(&file, &mut Vec::new())?;
            store.import(&file, &hash)?;
            Ok(Entry::file(hash, size, item.executable))
        }
    });
    items
        .iter()
        .zip(results)
        .map(|(item, entry)| Ok((item.path.clone(), entry?)))
        .collect()
}

/// Copies the working tree's tracked and not-ignored files into `tree`, hashing as it goes.
fn capture_worktree(
    root: &Path,
    is_git: bool,
    excludes: &str,
    tree: &Path,
    store: &BlobStore,
    skipped: &mut Vec<Skipped>,
) -> Result<Manifest, StagingError> {
    let mut tracked = BTreeSet::new();
    if is_git {
        let listing = run(git(root).args(["ls-files", "--stage", "-z"]))?;
        for record in nul_records(&listing) {
            if let Some(tab) = record.iter().position(|&b| b == b'\t') {
                if record.starts_with(b"160000") {
                    continue;
                }
                if let Ok(s) = std::str::from_utf8(&record[tab + 1..]) {
                    tracked.insert(s.to_owned());
                }
            }
        }
    }
    let mut walk = Walk {
        root,
        rules: IgnoreRules::new(root, excludes),
        excluded: Excluded::default(),
        tracked: &tracked,
        items: Vec::new(),
        skipped,
    };
    walk.dir("")?;
    let items = walk.items;
    let results = par_map(&items, |item| copy_item(item, tree, store));
    items
        .iter()
        .zip(results)
        .map(|(item, entry)| Ok((item.path.clone(), entry?)))
        .collect()
}

/// Copies one file into the snapshot tree, hashing the bytes copied; adds it to the store.
fn copy_item(item: &Item, tree: &Path, store: &BlobStore) -> Result<Entry, StagingError> {
    use std::io::{Read, Write};
    let dest = tree.join(item.path.as_str());
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).ctx("create directory", parent)?;
    }
    if item.symlink {
        let target = fs::read_link(&item.source).ctx("read link", &item.source)?;
        std::os::unix::fs::symlink(&target, &dest).ctx("create symlink", &dest)?;
        let bytes = target.as_os_str().as_bytes();
        store.write(bytes)?;
        return Ok(Entry::symlink(LinkTarget::new(bytes)));
    }
    let mut src = open_nofollow(&item.source)?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if item.executable { 0o755 } else { 0o644 })
        .open(&dest)
        .ctx("create", &dest)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 128 << 10];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).ctx("read", &item.source)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).ctx("write", &dest)?;
        size += n as u64;
    }
    let hash = crate::ContentHash::from_bytes(*hasher.finalize().as_bytes());
    store.import(&dest, &hash)?;
    Ok(Entry::file(hash, size, item.executable))
}

/// The walk of a working tree for `Worktree` mode.
struct Walk<'a> {
    root: &'a Path,
    rules: IgnoreRules<'static>,
    excluded: Excluded,
    tracked: &'a BTreeSet<String>,
    items: Vec<Item>,
    skipped: &'a mut Vec<Skipped>,
}

impl Walk<'_> {
    fn has_tracked_under(&self, dir: &str) -> bool {
        let (lo, hi) = crate::manifest::dir_range(dir);
        self.tracked
            .range::<str, _>((
                std::ops::Bound::Included(lo.as_str()),
                crate::manifest::hi_bound(hi.as_deref()),
            ))
            .next()
            .is_some()
    }

    fn dir(&mut self, rel: &str) -> Result<(), StagingError> {
        let abs = self.root.join(rel);
        let mut entries: Vec<_> = fs::read_dir(&abs)
            .ctx("list", &abs)?
            .collect::<Result<_, _>>()
            .ctx("list", &abs)?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.skipped.push(Skipped {
                    path: child(rel, &name.to_string_lossy()),
                    reason: SkipReason::InvalidName {
                        detail: "the name is not valid UTF-8".to_owned(),
                    },
                });
                continue;
            };
            let path = child(rel, name);
            if self.excluded.contains(&path) {
                continue;
            }
            let meta = entry.metadata().ctx("stat", &entry.path())?;
            let tracked = self.tracked.contains(&path);
            if meta.is_dir() {
                if entry.path().join(".git").exists() {
                    self.skipped.push(Skipped {
                        path,
                        reason: SkipReason::NestedRepository,
                    });
                    continue;
                }
                if self.rules.is_ignored(&path, true) && !self.has_tracked_under(&path) {
                    continue;
                }
                self.dir(&path)?;
                continue;
            }
            if !tracked && self.rules.is_ignored(&path, false) {
                continue;
            }
            let repo_path = match RepoPath::new(&path) {
                Ok(p) => p,
                Err(e) => {
                    self.skipped.push(Skipped {
                        path,
                        reason: SkipReason::InvalidName {
                            detail: e.to_string(),
                        },
                    });
                    continue;
                }
            };
            if !(meta.is_file() || meta.file_type().is_symlink()) {
                self.skipped.push(Skipped {
                    path,
                    reason: SkipReason::Special {
                        kind: crate::scan::special_kind(&meta).to_owned(),
                    },
                });
                continue;
            }
            self.items.push(Item {
                source: entry.path(),
                symlink: meta.file_type().is_symlink(),
                executable: meta.is_file() && meta.mode() & 0o100 != 0,
                path: repo_path,
            });
        }
        Ok(())
    }
}

/// Paths where the working tree differs from `HEAD` (modified, deleted, untracked).
fn dirty_paths(root: &Path) -> Result<Vec<RepoPath>, StagingError> {
    let out = run(git(root)
        // Never write the user's index, even to refresh its stat cache.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args([
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--ignore-submodules=all",
        ]))?;
    let mut paths: Vec<RepoPath> = status_paths(&out)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter_map(|p| RepoPath::new(p.trim_end_matches('/')).ok())
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
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

//! Applying the integrated tree to the user's working tree: three ways against the run's base,
//! atomically, with a journal that [`recover`] finishes or undoes after a crash.

mod safe;

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use forge_staging::{Entry, RepoPath};
use rustix::fs::AtFlags;
use serde::{Deserialize, Serialize};

use crate::error::IoContext as _;
use crate::merge::{PathMerger, PathResult, Settle, Side};
use crate::{Conflict, ConflictKind, GateReport, Integration, MergeError, MergeStrategy, Party};
use safe::{DirState, Identity, OnDisk, Root};

const JOURNAL: &str = "apply-journal.json";
const JOURNAL_VERSION: u32 = 1;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where an apply keeps its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The run's directory (`.forge/runs/<run>`): the journal `apply-journal.json` lives there
    /// while an apply is in progress. It must not be inside a directory the apply changes.
    pub run_dir: PathBuf,
    /// What to do where the user's own edits clash with the run's (default: keep the user's
    /// file and report the conflict).
    pub conflicts: ConflictChoices,
    /// Test hook: stop dead at this point, as a crash would (nothing cleaned up).
    #[doc(hidden)]
    pub crash_at: Option<CrashPoint>,
}

impl ApplyOptions {
    /// Options with the journal in `run_dir`.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            conflicts: ConflictChoices::default(),
            crash_at: None,
        }
    }
}

/// What an apply does with a path where the user's own edits clash with the run's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Leave the user's file exactly as it is and report the conflict.
    #[default]
    Keep,
    /// Write the file with diff3-style conflict markers (the user's lines, the base's, the
    /// run's), as `git merge-file --diff3` writes them, for the user to resolve. Binary files
    /// are kept.
    Markers,
    /// Merge, and settle each clashing hunk with the user's lines (`git merge -X ours`); a
    /// binary file stays the user's.
    Ours,
    /// Merge, and settle each clashing hunk with the run's lines (`git merge -X theirs`); a
    /// binary file becomes the run's.
    Theirs,
    /// Re-run the task that produced the path on top of the user's version (or, between two
    /// tasks, the task whose change was set aside on top of the integrated side), with the clash
    /// as its added instructions, then apply its new result. forge-merge cannot run agents: the
    /// caller (forge-exec) does the re-run; here the path is kept like [`OnConflict::Keep`].
    Agent,
}

impl std::str::FromStr for OnConflict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(Self::Keep),
            "markers" => Ok(Self::Markers),
            "ours" => Ok(Self::Ours),
            "theirs" => Ok(Self::Theirs),
            "agent" => Ok(Self::Agent),
            other => Err(format!(
                "`{other}` is not a way to settle conflicts (keep, markers, ours, theirs, agent)"
            )),
        }
    }
}

/// How each clashing path is settled: one choice for all paths, overridden per path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictChoices {
    /// The choice for paths not named in `paths`.
    pub all: OnConflict,
    /// Choices for single paths.
    pub paths: std::collections::BTreeMap<RepoPath, OnConflict>,
}

impl ConflictChoices {
    /// The choice for `path`.
    pub fn for_path(&self, path: &RepoPath) -> OnConflict {
        self.paths.get(path).copied().unwrap_or(self.all)
    }
}

/// Test hook: where a simulated crash stops an apply.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Temporary files written and synced, nothing renamed yet.
    Prepared,
    /// After this many of the commit's operations.
    AfterOps(usize),
}

/// A path the apply would not touch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The path.
    pub path: RepoPath,
    /// Why (a symlink on the way, a special file).
    pub reason: String,
}

/// What an apply did to the working tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Files and symlinks created or replaced.
    pub written: Vec<RepoPath>,
    /// Paths removed.
    pub deleted: Vec<RepoPath>,
    /// Of the written paths, those merged with the user's own edits made during the run.
    pub merged: Vec<RepoPath>,
    /// Paths that already held the integrated result.
    pub unchanged: Vec<RepoPath>,
    /// Paths where the user's edits clash with the run's: left exactly as the user has them,
    /// or (those also in `marked`) written with conflict markers.
    pub conflicts: Vec<Conflict>,
    /// Of the written paths, those written with conflict markers for the user to resolve
    /// ([`OnConflict::Markers`]); they are in `conflicts` too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marked: Vec<RepoPath>,
    /// Paths not touched for safety.
    pub refused: Vec<Refusal>,
}

impl ApplyReport {
    /// Whether everything the run changed is now in the working tree.
    pub fn is_complete(&self) -> bool {
        self.conflicts.is_empty() && self.refused.is_empty()
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "recovery", rename_all = "snake_case")]
pub enum Recovery {
    /// No apply was interrupted.
    Nothing,
    /// The apply had not reached its commit point: its temporary files were removed and the
    /// working tree is as it was before.
    RolledBack {
        /// How many operations were undone.
        operations: usize,
    },
    /// The apply had passed its commit point: it was finished, so the working tree holds the
    /// whole result.
    RolledForward {
        /// How many operations the apply had.
        operations: usize,
        /// Paths changed by someone since the crash, left as they are.
        skipped: Vec<RepoPath>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JournalState {
    /// Temporary files are being written: undo on recovery.
    Prepared,
    /// Renames are under way: finish on recovery.
    Committing,
}

/// One operation of an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Op {
    path: RepoPath,
    /// For writes: the directory (repo-relative, `""` for the root) and name of the temporary
    /// file holding the new content. `None` for a deletion.
    temp: Option<(String, String)>,
    /// What was at the path when planned (`None`: nothing), to notice later changes.
    expect: Option<Identity>,
    /// A directory is at the path and goes away (it holds only what this apply deletes).
    over_dir: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    version: u32,
    state: JournalState,
    /// The repository, relative to the run directory (absolute in journals of older versions).
    repo: PathBuf,
    /// The process that wrote the journal: while it lives, nobody else recovers its apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    ops: Vec<Op>,
}

/// Where an apply keeps its temporary files, inside the run directory: out of the user's
/// sight, and removed by [`recover`] (which any later command may run).
const TEMP_DIR: &str = "apply-tmp";

/// Moves the temporary files of `ops` into the run directory's [`TEMP_DIR`] wherever that is on
/// the same file system as the target's directory (a rename cannot cross file systems); the
/// others stay beside their targets.
fn relocate_temps(root: &mut Root, ops: &mut [Op], run_dir: &Path) -> Result<(), MergeError> {
    let repo = root.path().to_path_buf();
    let temp_abs = run_dir.join(TEMP_DIR);
    fs::create_dir_all(&temp_abs).ctx("create directory", &temp_abs)?;
    let canonical_repo = fs::canonicalize(&repo).ctx("resolve", &repo)?;
    let canonical_temp = fs::canonicalize(&temp_abs).ctx("resolve", &temp_abs)?;
    let Some(temp_rel) = canonical_temp
        .strip_prefix(&canonical_repo)
        .ok()
        .and_then(Path::to_str)
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let device = |root: &mut Root, dir: &str| match root.dir(dir) {
        Ok(DirState::Open(fd)) => rustix::fs::fstat(fd).ok().map(|st| st.st_dev),
        _ => None,
    };
    let Some(temp_dev) = device(root, &temp_rel) else {
        return Ok(());
    };
    for op in ops {
        if let Some((dir, _)) = &mut op.temp
            && device(root, dir) == Some(temp_dev)
        {
            dir.clone_from(&temp_rel);
        }
    }
    Ok(())
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Writes `path` so that a reader (or a crash) sees the old content or the new, never a mix
/// ([`forge_staging::write_atomically`]).
pub(crate) fn write_atomically(path: &Path, content: &[u8]) -> Result<(), MergeError> {
    forge_staging::write_atomically(path, content)
        .ctx("save", path)
        .map_err(Into::into)
}

fn split(path: &RepoPath) -> (&str, &str) {
    (path.parent().unwrap_or(""), path.file_name())
}

/// Applies the integrated tree of `integration` to the user's working tree (the base's
/// repository), if `gate` passed.
///
/// Only paths the run changed are looked at. For each, what is on disk now is compared with the
/// run's base: untouched paths get the run's result; paths the user edited during the run are
/// merged three ways (base, the user's file, the run's result) and get the merge if it is clean;
/// when it is not, the user's file is left exactly as it is and a [`Conflict`] reports it. Never
/// writes outside the repository, through a symlink, or into `.git/`.
///
/// All of it happens at once or not at all: new contents go to temporary files beside their
/// targets, everything is synced to disk, a journal records the commit point, then the files are
/// renamed into place. If the process dies, [`recover`] finishes or undoes the apply.
pub fn apply_to_worktree(
    integration: &Integration,
    options: &ApplyOptions,
    gate: &GateReport,
) -> Result<ApplyReport, MergeError> {
    if !gate.passed() {
        return Err(MergeError::GateFailed {
            summary: gate.summary(),
        });
    }
    let journal_path = options.run_dir.join(JOURNAL);
    if journal_path.exists() {
        return Err(MergeError::ApplyPending(journal_path));
    }
    let repo = integration.base().repo().to_path_buf();
    let mut root = Root::open(&repo).ctx("open the repository", &repo)?;
    let (mut ops, contents, mut report) = plan(integration, &mut root, &options.conflicts)?;
    if ops.is_empty() {
        return Ok(report);
    }
    fs::create_dir_all(&options.run_dir).ctx("create directory", &options.run_dir)?;
    relocate_temps(&mut root, &mut ops, &options.run_dir)?;
    let run_dir = fs::canonicalize(&options.run_dir).ctx("resolve", &options.run_dir)?;

    // Prepare: the journal first (so a crash from here on can be undone), then the temporary
    // files, then one sync of the whole file system.
    let mut journal = Journal {
        version: JOURNAL_VERSION,
        state: JournalState::Prepared,
        repo: forge_staging::relative_path(&run_dir, &repo),
        pid: Some(std::process::id()),
        ops,
    };
    write_journal(&journal_path, &journal)?;
    if let Err(e) = write_temps(&mut root, &journal.ops, &contents) {
        let _ = roll_back(&mut root, &journal);
        let _ = fs::remove_file(&journal_path);
        return Err(e);
    }
    rustix::fs::syncfs(root.fd()).ctx("sync the file system of", &repo)?;
    if options.crash_at == Some(CrashPoint::Prepared) {
        return Err(simulated_crash());
    }
    // Last check that nobody changed a target since it was planned.
    for op in &journal.ops {
        let (dir, name) = split(&op.path);
        let now = match root.dir(dir).ctx("open", &repo.join(dir))? {
            DirState::Open(fd) => {
                safe::identity(fd, name).ctx("stat", &repo.join(op.path.as_str()))?
            }
            _ => None,
        };
        if now != op.expect && !op.over_dir {
            roll_back(&mut root, &journal)?;
            fs::remove_file(&journal_path).ctx("remove", &journal_path)?;
            return Err(MergeError::io(
                "apply to",
                repo.join(op.path.as_str()),
                std::io::Error::other(
                    "it changed while the apply was being prepared; nothing was applied, try again",
                ),
            ));
        }
    }

    // Commit point.
    journal.state = JournalState::Committing;
    write_journal(&journal_path, &journal)?;
    let limit = match options.crash_at {
        Some(CrashPoint::AfterOps(n)) => Some(n),
        _ => None,
    };
    let skipped = commit(&mut root, &journal.ops, limit)?;
    if limit.is_some_and(|n| n < journal.ops.len()) {
        return Err(simulated_crash());
    }
    rustix::fs::syncfs(root.fd()).ctx("sync the file system of", &repo)?;
    fs::remove_file(&journal_path).ctx("remove", &journal_path)?;
    for path in skipped {
        report.written.retain(|p| *p != path);
        report.deleted.retain(|p| *p != path);
        report.refused.push(Refusal {
            path,
            reason: "it changed while the apply was committing; left as it is".to_owned(),
        });
    }
    Ok(report)
}

fn simulated_crash() -> MergeError {
    MergeError::io(
        "apply",
        PathBuf::new(),
        std::io::Error::other("simulated crash (test hook)"),
    )
}

fn write_journal(path: &Path, journal: &Journal) -> Result<(), MergeError> {
    let text = serde_json::to_vec(journal)
        .map_err(|e| MergeError::io("encode", path, std::io::Error::other(e)))?;
    write_atomically(path, &text)
}

/// What a new file or symlink gets: its entry, its content, its permission bits.
type NewContent = (Entry, Vec<u8>, u32);

/// The operations of an apply, the content each write needs, and the report so far.
type Plan = (Vec<Op>, Vec<Option<NewContent>>, ApplyReport);

/// Decides, path by path, what the working tree needs.
#[allow(clippy::too_many_lines)] // one match per state the path is found in
fn plan(
    integration: &Integration,
    root: &mut Root,
    choices: &ConflictChoices,
) -> Result<Plan, MergeError> {
    let store = integration.store();
    let base = integration.base().manifest();
    let repo = root.path().to_path_buf();
    let delta = integration.delta();
    let merger = PathMerger {
        store,
        repo: &repo,
        resolver: None,
        driver_timeout: std::time::Duration::from_secs(1),
        driver_runner: integration.command_runner(),
    };
    let deleted: BTreeSet<&RepoPath> = delta
        .iter()
        .filter(|(_, c)| c.after().is_none())
        .map(|(p, _)| p)
        .collect();
    let mut report = ApplyReport::default();
    let mut ops = Vec::new();
    let mut contents = Vec::new();
    for (path, change) in &delta {
        let base_entry = base.get(path.as_str());
        let desired = change.after();
        let (dir, name) = split(path);
        let abs = repo.join(path.as_str());
        let refuse = |reason: String| Refusal {
            path: path.clone(),
            reason,
        };
        let (disk, content, expect, placed) = match root.dir(dir).ctx("open", &repo.join(dir))? {
            DirState::Open(fd) => {
                let (disk, content) = safe::read_entry(fd, name).ctx("read", &abs)?;
                let id = safe::identity(fd, name).ctx("stat", &abs)?;
                (disk, content, id, dir.to_owned())
            }
            DirState::Missing { deepest_rel, .. } => (OnDisk::Absent, None, None, deepest_rel),
            DirState::Blocked { at, symlink: true } => {
                report.refused.push(refuse(format!(
                    "`{at}` is a symlink; Forge never writes through one"
                )));
                continue;
            }
            DirState::Blocked { at, symlink: false } => {
                // A file where the path's directory should be: our own deletion of that file
                // (a file that becomes a directory) makes room, anything else is a clash.
                let ours = RepoPath::new(&at).is_ok_and(|p| deleted.contains(&p));
                if desired.is_none() {
                    report.unchanged.push(path.clone());
                } else if ours {
                    // The temporary file goes above the file in the way.
                    let placed = at.rfind('/').map_or(String::new(), |i| at[..i].to_owned());
                    let entry = desired.cloned().unwrap_or_else(|| Entry::symlink(""));
                    let data = file_content(store, &entry)?;
                    let exec = entry.is_executable();
                    contents.push(Some((entry, data, safe::mode_for(None, exec))));
                    ops.push(Op {
                        path: path.clone(),
                        temp: Some((placed, temp_name())),
                        expect: None,
                        over_dir: false,
                    });
                    report.written.push(path.clone());
                } else {
                    report.conflicts.push(user_conflict(
                        integration,
                        path,
                        ConflictKind::FileDirectory,
                        Some(format!("`{at}` is not a directory in the working tree")),
                    ));
                }
                continue;
            }
        };
        let on_disk = match &disk {
            OnDisk::Absent => None,
            OnDisk::Entry(e) => Some(e),
            OnDisk::Special => {
                report.refused.push(refuse(
                    "it is a special file (FIFO, socket or device)".to_owned(),
                ));
                continue;
            }
            OnDisk::Directory => {
                if desired.is_none() {
                    report.unchanged.push(path.clone());
                } else if only_deletions_below(root, path, &deleted)? {
                    let entry = desired.cloned().unwrap_or_else(|| Entry::symlink(""));
                    let data = file_content(store, &entry)?;
                    let exec = entry.is_executable();
                    contents.push(Some((entry, data, safe::mode_for(None, exec))));
                    ops.push(Op {
                        path: path.clone(),
                        temp: Some((placed, temp_name())),
                        expect,
                        over_dir: true,
                    });
                    report.written.push(path.clone());
                } else {
                    report.conflicts.push(user_conflict(
                        integration,
                        path,
                        ConflictKind::FileDirectory,
                        Some("it is a directory in the working tree".to_owned()),
                    ));
                }
                continue;
            }
        };
        if on_disk == desired {
            report.unchanged.push(path.clone());
            continue;
        }
        let target = if on_disk == base_entry {
            desired.cloned()
        } else {
            // The user changed this path during the run: merge, never overwrite.
            if let Some(content) = &content {
                store.write(content)?;
            }
            let tasks = integration.writers(path.as_str());
            let label = if tasks.is_empty() {
                "forge".to_owned()
            } else {
                tasks.join(", ")
            };
            let mut all = vec![Party::WorkingTree];
            all.extend(tasks.into_iter().map(Party::Task));
            let choice = choices.for_path(path);
            let strategy = match choice {
                OnConflict::Ours => MergeStrategy::Ours,
                OnConflict::Theirs => MergeStrategy::Theirs,
                OnConflict::Keep | OnConflict::Markers | OnConflict::Agent => MergeStrategy::Fail,
            };
            match merger.merge(
                path,
                base_entry,
                Side {
                    entry: on_disk,
                    label: Party::WORKING_TREE_LABEL,
                },
                Side {
                    entry: desired,
                    label: &label,
                },
                &strategy,
                all,
            )? {
                PathResult::Clean(entry) => {
                    if entry.as_ref() == on_disk {
                        report.unchanged.push(path.clone());
                        continue;
                    }
                    report.merged.push(path.clone());
                    entry
                }
                PathResult::Conflict { conflict, settle } => {
                    if let Settle::Take(entry) = settle {
                        report.merged.push(path.clone());
                        entry
                    } else if let (
                        OnConflict::Markers,
                        Some(hash),
                        Some(Entry::File { executable, .. }),
                    ) = (choice, conflict.marked, on_disk)
                    {
                        let size = store.read(&hash)?.len() as u64;
                        report.marked.push(path.clone());
                        report.conflicts.push(conflict);
                        Some(Entry::File {
                            hash,
                            size,
                            executable: *executable,
                        })
                    } else {
                        report.conflicts.push(conflict);
                        continue;
                    }
                }
            }
        };
        match target {
            Some(entry) => {
                let data = file_content(store, &entry)?;
                let mode = safe::mode_for(expect.as_ref(), entry.is_executable());
                contents.push(Some((entry, data, mode)));
                ops.push(Op {
                    path: path.clone(),
                    temp: Some((placed, temp_name())),
                    expect,
                    over_dir: false,
                });
                report.written.push(path.clone());
            }
            None => {
                contents.push(None);
                ops.push(Op {
                    path: path.clone(),
                    temp: None,
                    expect,
                    over_dir: false,
                });
                report.deleted.push(path.clone());
            }
        }
    }
    Ok((ops, contents, report))
}

/// A conflict between the user's working tree and the run.
fn user_conflict(
    integration: &Integration,
    path: &RepoPath,
    kind: ConflictKind,
    note: Option<String>,
) -> Conflict {
    let mut tasks = vec![Party::WorkingTree];
    tasks.extend(
        integration
            .writers(path.as_str())
            .into_iter()
            .map(Party::Task),
    );
    let mut c = Conflict::new(path.clone(), kind, tasks, MergeStrategy::Fail);
    c.note = note;
    c
}

fn file_content(store: &forge_staging::BlobStore, entry: &Entry) -> Result<Vec<u8>, MergeError> {
    match entry {
        Entry::File { hash, .. } => Ok(store.read(hash)?),
        Entry::Symlink { .. } => Ok(Vec::new()),
    }
}

/// Whether everything below directory `path` on disk is a file this apply deletes.
fn only_deletions_below(
    root: &mut Root,
    path: &RepoPath,
    deleted: &BTreeSet<&RepoPath>,
) -> Result<bool, MergeError> {
    let dir = root.path().join(path.as_str());
    let mut stack = vec![(dir, path.as_str().to_owned())];
    while let Some((abs, rel)) = stack.pop() {
        for entry in fs::read_dir(&abs).ctx("list", &abs)? {
            let entry = entry.ctx("list", &abs)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = format!("{rel}/{name}");
            let meta = fs::symlink_metadata(entry.path()).ctx("stat", &entry.path())?;
            if meta.is_dir() {
                stack.push((entry.path(), child_rel));
            } else if !RepoPath::new(&child_rel).is_ok_and(|p| deleted.contains(&p)) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// A fresh name for a temporary file.
fn temp_name() -> String {
    format!(
        ".forge-apply-{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes every new content to its temporary file: beside its target, or in the deepest
/// existing directory above it when the target's directory does not exist yet.
fn write_temps(
    root: &mut Root,
    ops: &[Op],
    contents: &[Option<NewContent>],
) -> Result<(), MergeError> {
    let repo = root.path().to_path_buf();
    for (op, content) in ops.iter().zip(contents) {
        let (Some((dir, temp)), Some((entry, data, mode))) = (&op.temp, content) else {
            continue;
        };
        let DirState::Open(fd) = root.dir(dir).ctx("open", &repo.join(dir))? else {
            return Err(MergeError::io(
                "open",
                repo.join(dir),
                std::io::Error::other("the directory changed while the apply was prepared"),
            ));
        };
        safe::create(fd, temp, entry, data, *mode)
            .ctx("write a temporary file in", &repo.join(dir))?;
    }
    Ok(())
}

/// Renames, deletes and directory changes of the commit, in an order that works: deletions
/// first, then directories that must go, then writes (creating directories as needed), then the
/// directories deletions emptied. Returns the paths skipped because they changed.
fn commit(root: &mut Root, ops: &[Op], limit: Option<usize>) -> Result<Vec<RepoPath>, MergeError> {
    let repo = root.path().to_path_buf();
    let mut skipped = Vec::new();
    let mut done = 0;
    let mut emptied = BTreeSet::new();
    for op in ops.iter().filter(|o| o.temp.is_none()) {
        if limit.is_some_and(|n| done >= n) {
            return Ok(skipped);
        }
        done += 1;
        let (dir, name) = split(&op.path);
        let abs = repo.join(op.path.as_str());
        let DirState::Open(fd) = root.dir(dir).ctx("open", &repo.join(dir))? else {
            continue;
        };
        match safe::identity(fd, name).ctx("stat", &abs)? {
            None => continue,
            Some(now) if Some(now) != op.expect || safe::is_dir(&now) => {
                skipped.push(op.path.clone());
                continue;
            }
            Some(_) => {}
        }
        rustix::fs::unlinkat(fd, name, AtFlags::empty()).ctx("remove", &abs)?;
        emptied.insert(dir.to_owned());
    }
    for op in ops.iter().filter(|o| o.over_dir) {
        let (dir, name) = split(&op.path);
        if let DirState::Open(fd) = root.dir(dir).ctx("open", &repo.join(dir))?
            && safe::identity(fd, name)
                .ctx("stat", &repo.join(op.path.as_str()))?
                .is_some_and(|id| safe::is_dir(&id))
        {
            safe::remove_empty_tree(fd, name)
                .ctx("remove directory", &repo.join(op.path.as_str()))?;
        }
    }
    for op in ops {
        let Some((temp_dir, temp)) = &op.temp else {
            continue;
        };
        if limit.is_some_and(|n| done >= n) {
            return Ok(skipped);
        }
        done += 1;
        let (dir, name) = split(&op.path);
        let abs = repo.join(op.path.as_str());
        let temp_abs = repo.join(temp_dir).join(temp);
        // A handle of its own on the temporary file's directory: the target's may differ.
        let temp_fd = match root.dir(temp_dir).ctx("open", &repo.join(temp_dir))? {
            DirState::Open(fd) => rustix::io::dup(fd).ctx("open", &repo.join(temp_dir))?,
            _ => continue,
        };
        if safe::identity(temp_fd.as_fd(), temp)
            .ctx("stat", &temp_abs)?
            .is_none()
        {
            continue; // renamed before a crash
        }
        let fd = root
            .create_dirs(dir)
            .ctx("create directory", &repo.join(dir))?;
        let now = safe::identity(fd, name).ctx("stat", &abs)?;
        if now != op.expect && !op.over_dir {
            rustix::fs::unlinkat(temp_fd.as_fd(), temp.as_str(), AtFlags::empty())
                .ctx("remove", &temp_abs)?;
            skipped.push(op.path.clone());
            continue;
        }
        rustix::fs::renameat(temp_fd.as_fd(), temp.as_str(), fd, name)
            .ctx("rename into place", &abs)?;
    }
    for dir in emptied.iter().rev() {
        safe::remove_empty_dirs(root, dir);
    }
    Ok(skipped)
}

/// Removes the temporary files of an apply that did not reach its commit point.
fn roll_back(root: &mut Root, journal: &Journal) -> Result<usize, MergeError> {
    let repo = root.path().to_path_buf();
    let mut n = 0;
    for op in &journal.ops {
        let Some((dir, temp)) = &op.temp else {
            continue;
        };
        if let DirState::Open(fd) = root.dir(dir).ctx("open", &repo.join(dir))? {
            match rustix::fs::unlinkat(fd, temp.as_str(), AtFlags::empty()) {
                Ok(()) => n += 1,
                Err(e) if e == rustix::io::Errno::NOENT => {}
                Err(e) => {
                    return Err(MergeError::io(
                        "remove",
                        repo.join(dir).join(temp),
                        e.into(),
                    ));
                }
            }
        }
    }
    Ok(n)
}

/// Finishes or undoes an apply that was interrupted (the process was killed, the machine lost
/// power): before its commit point the working tree is left as it was, after it the apply is
/// completed. Safe to call when nothing was interrupted, and again after a crash during
/// recovery.
pub fn recover(run_dir: &Path) -> Result<Recovery, MergeError> {
    let journal_path = run_dir.join(JOURNAL);
    let text = match fs::read(&journal_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovery::Nothing),
        Err(e) => return Err(MergeError::io("read", journal_path, e)),
    };
    let journal: Journal = serde_json::from_slice(&text).map_err(|e| MergeError::Corrupt {
        path: journal_path.clone(),
        what: "apply journal",
        reason: e.to_string(),
    })?;
    if journal.version != JOURNAL_VERSION {
        return Err(MergeError::Corrupt {
            path: journal_path,
            what: "apply journal",
            reason: format!("unknown version {}", journal.version),
        });
    }
    let resolved = fs::canonicalize(run_dir).ctx("resolve", run_dir)?;
    let repo = forge_staging::resolve_path(&resolved, &journal.repo);
    let mut root = Root::open(&repo).ctx("open the repository", &repo)?;
    let recovery = match journal.state {
        JournalState::Prepared => {
            roll_back(&mut root, &journal)?;
            Recovery::RolledBack {
                operations: journal.ops.len(),
            }
        }
        JournalState::Committing => {
            let skipped = commit(&mut root, &journal.ops, None)?;
            Recovery::RolledForward {
                operations: journal.ops.len(),
                skipped,
            }
        }
    };
    rustix::fs::syncfs(root.fd()).ctx("sync the file system of", &repo)?;
    fs::remove_file(&journal_path).ctx("remove", &journal_path)?;
    Ok(recovery)
}

/// [`recover`], but only for an apply whose process is gone: what any command may call on a
/// run directory without disturbing an apply under way in another process. An apply recorded
/// by an older version (without its process) is left to `forge apply`.
pub fn recover_abandoned(run_dir: &Path) -> Result<Recovery, MergeError> {
    let journal_path = run_dir.join(JOURNAL);
    let text = match fs::read(&journal_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovery::Nothing),
        Err(e) => return Err(MergeError::io("read", journal_path, e)),
    };
    // A journal being written (or torn) is left alone here; `recover` reports it.
    let Ok(journal) = serde_json::from_slice::<Journal>(&text) else {
        return Ok(Recovery::Nothing);
    };
    match journal.pid {
        Some(pid) if pid != std::process::id() && !alive(pid) => recover(run_dir),
        _ => Ok(Recovery::Nothing),
    }
}

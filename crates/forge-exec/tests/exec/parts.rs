//! An `ExecutionManager` built from parts written here: a plain-copy stager and its workspace,
//! a lock manager and a merger that wrap Forge's own and record what they are asked, and an
//! event sink that records every event. The run goes through the traits alone.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use forge_events::{EventKind, EventSink, EventsError, TaskId};
use forge_exec::store::RunStore;
use forge_exec::{ApplyMode, CancelHandle, ExecutionManager};
use forge_locks::{
    AcquireOptions, Claim, LocalLockManager, LockError, LockManager, LockSet, LockSnapshot, OwnerId,
};
use forge_merge::{Integration, IntegrationOutcome, MergeError, Merger, Violation};
use forge_staging::{
    BaseSnapshot, BlobStore, Change, ChangeSet, ContentHash, Entry, IoContext, LinkTarget,
    RepoPath, Snapshot, Stager, StagingError, Workspace,
};

use crate::manager::{lit, plan, profiles, repo, script};

/// What the parts were asked, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, line: String) {
    log.lock().unwrap().push(line);
}

/// Stages a workspace as a plain copy of the snapshot's files, read from the object store.
struct PlainCopy {
    root: PathBuf,
    store: BlobStore,
    log: Log,
    hold: Option<Arc<Hold>>,
}

/// Holds the disposal of workspace `name` until workspace `until` is staged (or a minute has
/// passed, so that a run that waits for the disposal first still ends, and fails the test).
struct Hold {
    name: String,
    until: String,
    staged: (Mutex<bool>, Condvar),
}

impl Hold {
    fn new(name: &str, until: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            until: until.to_owned(),
            staged: (Mutex::new(false), Condvar::new()),
        })
    }

    fn staging(&self, name: &str) {
        if name == self.until {
            *self.staged.0.lock().unwrap() = true;
            self.staged.1.notify_all();
        }
    }

    fn disposing(&self, name: &str) {
        if name == self.name {
            let staged = self.staged.0.lock().unwrap();
            let _ = self
                .staged
                .1
                .wait_timeout_while(staged, Duration::from_mins(1), |s| !*s)
                .unwrap();
        }
    }
}

impl Stager for PlainCopy {
    fn strategy(&self) -> &'static str {
        "plain-copy"
    }

    fn stage(&self, snapshot: &Snapshot, name: &str) -> Result<Box<dyn Workspace>, StagingError> {
        note(&self.log, format!("stage {name}"));
        if let Some(hold) = &self.hold {
            hold.staging(name);
        }
        let path = self.root.join(name);
        for (file, entry) in snapshot.iter() {
            let dest = path.join(file.as_str());
            fs::create_dir_all(dest.parent().unwrap()).ctx("create", &dest)?;
            match entry.link_target() {
                Some(target) => {
                    std::os::unix::fs::symlink(target.as_path(), &dest).ctx("symlink", &dest)?;
                }
                None => {
                    fs::write(&dest, self.store.read(&entry.hash())?).ctx("write", &dest)?;
                    let mode = if entry.is_executable() { 0o755 } else { 0o644 };
                    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                        .ctx("chmod", &dest)?;
                }
            }
        }
        fs::create_dir_all(&path).ctx("create", &path)?;
        Ok(Box::new(PlainWorkspace {
            name: name.to_owned(),
            path,
            snapshot: snapshot.clone(),
            store: self.store.clone(),
            log: self.log.clone(),
            hold: self.hold.clone(),
        }))
    }
}

struct PlainWorkspace {
    name: String,
    path: PathBuf,
    snapshot: Snapshot,
    store: BlobStore,
    log: Log,
    hold: Option<Arc<Hold>>,
}

impl std::fmt::Debug for PlainWorkspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainWorkspace")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PlainWorkspace {
    fn walk(&self, dir: &Path, found: &mut Vec<(String, PathBuf)>) -> Result<(), StagingError> {
        for entry in fs::read_dir(dir).ctx("list", dir)? {
            let entry = entry.ctx("list", dir)?;
            let abs = entry.path();
            let rel = abs.strip_prefix(&self.path).unwrap();
            let rel = rel.to_str().unwrap().to_owned();
            if rel == ".git" || rel == ".forge" {
                continue;
            }
            if entry.file_type().ctx("stat", &abs)?.is_dir() {
                self.walk(&abs, found)?;
            } else {
                found.push((rel, abs));
            }
        }
        Ok(())
    }
}

impl Workspace for PlainWorkspace {
    fn name(&self) -> &str {
        &self.name
    }

    fn strategy(&self) -> &'static str {
        "plain-copy"
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn changes(&self) -> Result<ChangeSet, StagingError> {
        note(&self.log, format!("changes {}", self.name));
        let mut found = Vec::new();
        self.walk(&self.path, &mut found)?;
        let mut set = ChangeSet::default();
        for (rel, abs) in &found {
            let meta = fs::symlink_metadata(abs).ctx("stat", abs)?;
            let now = if meta.file_type().is_symlink() {
                Entry::symlink(LinkTarget::new(
                    fs::read_link(abs)
                        .ctx("read link", abs)?
                        .into_os_string()
                        .into_encoded_bytes(),
                ))
            } else {
                let (hash, size): (ContentHash, u64) = self.store.write_file(abs)?;
                Entry::file(hash, size, meta.permissions().mode() & 0o100 != 0)
            };
            let before = self.snapshot.get(rel).cloned();
            if let Some(change) = Change::between(before, Some(now)) {
                set.insert(RepoPath::new(rel)?, change);
            }
        }
        for (path, entry) in self.snapshot.iter() {
            if !found.iter().any(|(rel, _)| rel == path.as_str()) {
                set.insert(path.clone(), Change::Deleted(entry.clone()));
            }
        }
        Ok(set)
    }

    fn dispose(self: Box<Self>) -> Result<(), StagingError> {
        note(&self.log, format!("dispose {}", self.name));
        if let Some(hold) = &self.hold {
            hold.disposing(&self.name);
        }
        fs::remove_dir_all(&self.path).ctx("remove", &self.path)?;
        note(&self.log, format!("disposed {}", self.name));
        Ok(())
    }
}

/// Forge's lock manager, with every acquisition recorded.
struct RecordingLocks {
    inner: LocalLockManager,
    log: Log,
}

impl RecordingLocks {
    fn record(&self, owner: &OwnerId, claims: &[Claim]) {
        let claims: Vec<String> = claims.iter().map(ToString::to_string).collect();
        note(&self.log, format!("acquire {owner}: {}", claims.join(", ")));
    }
}

#[async_trait::async_trait]
impl LockManager for RecordingLocks {
    async fn acquire(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        opts: &AcquireOptions,
    ) -> Result<LockSet, LockError> {
        self.record(owner, claims);
        self.inner.acquire(owner, claims, opts).await
    }

    fn try_acquire(&self, owner: &OwnerId, claims: &[Claim]) -> Result<LockSet, LockError> {
        self.record(owner, claims);
        self.inner.try_acquire(owner, claims)
    }

    fn release_all(&self, owner: &OwnerId) {
        self.inner.release_all(owner);
    }

    fn snapshot(&self) -> LockSnapshot {
        self.inner.snapshot()
    }
}

/// Forge's integration, with every task it integrates recorded.
struct RecordingMerger {
    inner: Box<dyn Merger>,
    log: Log,
}

impl Merger for RecordingMerger {
    fn base(&self) -> &Arc<BaseSnapshot> {
        self.inner.base()
    }

    fn store(&self) -> &BlobStore {
        self.inner.store()
    }

    fn version(&self) -> u64 {
        self.inner.version()
    }

    fn delta(&self) -> ChangeSet {
        self.inner.delta()
    }

    fn integrate_audited(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
        violations: Vec<Violation>,
    ) -> Result<IntegrationOutcome, MergeError> {
        let paths: Vec<&str> = changes.paths().map(RepoPath::as_str).collect();
        note(&self.log, format!("integrate {task}: {}", paths.join(", ")));
        self.inner
            .integrate_audited(task, changes, order, violations)
    }

    fn save(&self, path: &Path) -> Result<(), MergeError> {
        self.inner.save(path)
    }

    fn empty(&self) -> Box<dyn Merger> {
        Box::new(RecordingMerger {
            inner: self.inner.empty(),
            log: self.log.clone(),
        })
    }
}

/// Every event, as published.
#[derive(Default)]
struct RecordingSink {
    events: Mutex<Vec<(Option<TaskId>, EventKind)>>,
}

impl EventSink for RecordingSink {
    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        let mut events = self.events.lock().unwrap();
        events.push((task, kind));
        Ok(events.len() as u64)
    }
}

fn lines(log: &Log, prefix: &str) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_runs_on_parts_written_outside_forge() {
    let repo = repo(&[("README.md", "x\n")]);
    let scratch = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nagent = \"sim\"\n\
         [[task]]\nid = \"first\"\nwrites = [\"a.txt\"]\nprompt = {}\n\
         [[task]]\nid = \"second\"\nafter = [\"first\"]\nreads = [\"a.txt\"]\nwrites = [\"b.txt\"]\nprompt = {}\n",
        lit(&script(&["write a.txt", "from the first task", "end"])),
        lit(&script(&["run cat a.txt > b.txt"])),
    );
    let log: Log = Arc::default();
    let store = BlobStore::open(RunStore::new(repo.path()).objects_dir()).unwrap();
    let stager = Arc::new(PlainCopy {
        root: scratch.path().to_path_buf(),
        store,
        log: log.clone(),
        hold: None,
    });
    let locks = Arc::new(RecordingLocks {
        inner: LocalLockManager::new(),
        log: log.clone(),
    });
    let sink = Arc::new(RecordingSink::default());
    let merger_log = log.clone();
    let report = ExecutionManager::builder()
        .repo(repo.path())
        .plan(plan(&text))
        .profiles(profiles())
        .stager_impl(stager)
        .locks(locks)
        .merger(move |integration: Integration| {
            Box::new(RecordingMerger {
                inner: Box::new(integration),
                log: merger_log.clone(),
            })
        })
        .events(sink.clone())
        .apply(ApplyMode::WorkingTree)
        .build()
        .unwrap()
        .run(CancelHandle::new())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), 0, "{report:#?}");

    // The result went through the custom workspace (the second task read the first one's
    // file in it) and was applied.
    let read = |p: &str| fs::read_to_string(repo.path().join(p)).unwrap();
    assert_eq!(read("a.txt"), "from the first task\n");
    assert_eq!(read("b.txt"), "from the first task\n");

    // Each attempt: staged, captured, disposed of, in that order (the disposal in the
    // background: the next attempt may be staged before it); nothing left behind.
    let stager_calls: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| {
            ["stage ", "changes ", "dispose "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .cloned()
        .collect();
    let at = |line: &str| stager_calls.iter().position(|l| l == line).unwrap();
    for (before, after) in [
        ("stage first-1", "changes first-1"),
        ("changes first-1", "dispose first-1"),
        ("changes first-1", "stage second-1"),
        ("stage second-1", "changes second-1"),
        ("changes second-1", "dispose second-1"),
    ] {
        assert!(
            at(before) < at(after),
            "{before} before {after}: {stager_calls:?}"
        );
    }
    assert_eq!(stager_calls.len(), 6, "{stager_calls:?}");
    assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);

    // Each task's claims, through the custom lock manager.
    assert_eq!(
        lines(&log, "acquire "),
        [
            "acquire first#1: write a.txt",
            "acquire second#1: read a.txt, write b.txt",
        ]
    );

    // Each task's changes, through the custom merger, in order.
    assert_eq!(
        lines(&log, "integrate "),
        ["integrate first: a.txt", "integrate second: b.txt"]
    );

    assert_events(&sink, scratch.path());
    // The journal holds the same story as the sink.
    let journal = crate::manager::journal(repo.path(), &report.run);
    assert_eq!(journal.len(), sink.events.lock().unwrap().len());
}

/// The sink saw the run in order, the workspaces as the custom stager made them (under
/// `scratch`).
fn assert_events(sink: &RecordingSink, scratch: &Path) {
    let events = sink.events.lock().unwrap();
    let order: Vec<(Option<&str>, &str)> = events
        .iter()
        .map(|(t, k)| (t.as_ref().map(TaskId::as_str), k.type_name()))
        .filter(|(_, k)| {
            [
                "run_started",
                "task_started",
                "merge_integrated",
                "apply_finished",
                "run_finished",
            ]
            .contains(k)
        })
        .collect();
    assert_eq!(
        order,
        [
            (None, "run_started"),
            (Some("first"), "task_started"),
            (Some("first"), "merge_integrated"),
            (Some("second"), "task_started"),
            (Some("second"), "merge_integrated"),
            (None, "apply_finished"),
            (None, "run_finished"),
        ]
    );
    for (task, kind) in events.iter() {
        if let EventKind::TaskStarted {
            strategy,
            workspace,
            ..
        } = kind
        {
            let task = task.as_ref().unwrap().as_str();
            assert_eq!(strategy, "plain-copy");
            assert_eq!(Path::new(workspace), scratch.join(format!("{task}-1")));
        }
    }
}

/// A workspace's disposal does not hold up what comes after its attempt: the next task is
/// staged while the first task's workspace is still being disposed of, and the run ends only
/// once every workspace is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_disposed_of_off_the_attempts_path() {
    let repo = repo(&[("README.md", "x\n")]);
    let scratch = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nagent = \"sim\"\n\
         [[task]]\nid = \"first\"\nwrites = [\"a.txt\"]\nprompt = {}\n\
         [[task]]\nid = \"second\"\nafter = [\"first\"]\nwrites = [\"b.txt\"]\nprompt = {}\n",
        lit(&script(&["write a.txt", "one", "end"])),
        lit(&script(&["write b.txt", "two", "end"])),
    );
    let log: Log = Arc::default();
    let store = BlobStore::open(RunStore::new(repo.path()).objects_dir()).unwrap();
    let stager = Arc::new(PlainCopy {
        root: scratch.path().to_path_buf(),
        store,
        log: log.clone(),
        hold: Some(Hold::new("first-1", "second-1")),
    });
    let report = ExecutionManager::builder()
        .repo(repo.path())
        .plan(plan(&text))
        .profiles(profiles())
        .stager_impl(stager)
        .apply(ApplyMode::None)
        .build()
        .unwrap()
        .run(CancelHandle::new())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let calls = log.lock().unwrap().clone();
    let at = |line: &str| {
        calls
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no `{line}` in {calls:?}"))
    };
    // The first workspace was still being disposed of when the second task was staged (its
    // disposal waited for that staging).
    assert!(at("stage second-1") < at("disposed first-1"), "{calls:?}");
    // The run waited for every disposal: nothing is left.
    at("disposed second-1");
    assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
}

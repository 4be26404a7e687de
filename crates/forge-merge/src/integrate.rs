//! The merge queue: each task's changes folded into the integrated tree as the task finishes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forge_staging::{
    BaseSnapshot, BlobStore, Change, ChangeSet, Entry, Manifest, RepoPath, Snapshot,
};
use forge_types::TaskId;
use serde::{Deserialize, Serialize};

use crate::driver::{CommandRunner, DEFAULT_DRIVER_TIMEOUT, StandaloneRunner};
use crate::error::IoContext as _;
use crate::merge::{PathMerger, PathResult, Settle, Side};
use crate::{
    AuditPolicy, Conflict, ConflictKind, MergeError, MergeRules, MergeStrategy, Party, Resolver,
    StrategyFor, Violation,
};

/// Folds finished tasks' changes into an integrated tree, and hands that tree out: the merge
/// queue's capability. forge-exec's pipeline holds one as `Box<dyn Merger>` and uses nothing
/// else of it, so an embedder or a test can put its own in (or wrap [`Integration`], the
/// implementation Forge uses).
///
/// Required are the state ([`Merger::base`], [`Merger::store`], [`Merger::version`],
/// [`Merger::delta`]), the fold ([`Merger::integrate_audited`]), persistence
/// ([`Merger::save`]) and a fresh start ([`Merger::empty`], for resume, fix rounds and gate
/// bisection, which integrate again from the base).
pub trait Merger: Send + Sync {
    /// The run's base snapshot, which [`Merger::delta`] is relative to.
    fn base(&self) -> &Arc<BaseSnapshot>;

    /// The object store holding every content of the integrated tree.
    fn store(&self) -> &BlobStore;

    /// The integrated tree's version: 0 for the base, one more for each task that changed it.
    fn version(&self) -> u64;

    /// The integrated tree as changes against the base (what [`Snapshot::with_delta`] takes).
    fn delta(&self) -> ChangeSet;

    /// Integrates `changes`, made by `task` (at place `order` in task order), which were
    /// audited with the result `violations` (see [`Integration::integrate_audited`]).
    fn integrate_audited(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
        violations: Vec<Violation>,
    ) -> Result<IntegrationOutcome, MergeError>;

    /// Saves the integrated tree to `path`, atomically, as a record [`Integration::open`] reads
    /// (`forge apply` opens it after the run).
    fn save(&self, path: &Path) -> Result<(), MergeError>;

    /// An empty merger of the same kind and settings over the same base and store: the tree
    /// at version 0.
    fn empty(&self) -> Box<dyn Merger>;

    /// Integrates the changes of `task`, which passed the claim audit.
    fn integrate(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
    ) -> Result<IntegrationOutcome, MergeError> {
        self.integrate_audited(task, changes, order, Vec::new())
    }

    /// The integrated tree as a [`Snapshot`] (its delta layer built in the new directory
    /// `layer_dir`), to stage a workspace from: a re-run, or the gate.
    fn snapshot(&self, layer_dir: &Path) -> Result<Snapshot, MergeError> {
        Ok(Snapshot::with_delta(
            self.base().clone(),
            &self.delta(),
            self.store(),
            layer_dir,
        )?)
    }
}

impl<M: Merger + ?Sized> Merger for Box<M> {
    fn base(&self) -> &Arc<BaseSnapshot> {
        (**self).base()
    }

    fn store(&self) -> &BlobStore {
        (**self).store()
    }

    fn version(&self) -> u64 {
        (**self).version()
    }

    fn delta(&self) -> ChangeSet {
        (**self).delta()
    }

    fn integrate_audited(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
        violations: Vec<Violation>,
    ) -> Result<IntegrationOutcome, MergeError> {
        (**self).integrate_audited(task, changes, order, violations)
    }

    fn save(&self, path: &Path) -> Result<(), MergeError> {
        (**self).save(path)
    }

    fn empty(&self) -> Box<dyn Merger> {
        (**self).empty()
    }

    fn snapshot(&self, layer_dir: &Path) -> Result<Snapshot, MergeError> {
        (**self).snapshot(layer_dir)
    }
}

/// What became of one task's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// Every change of the task is in the integrated tree (some perhaps settled by a strategy:
    /// see the resolved conflicts).
    Integrated,
    /// Some paths conflicted and their strategy did not settle them: those paths keep the
    /// integrated tree's side, every other change of the task is in.
    Conflicted,
    /// A conflict's strategy is `agent` and no resolver settled it: nothing of the task was
    /// integrated; re-run `task` on top of the integrated tree at version `on_top_of`, with the
    /// conflicts described.
    NeedsRerun {
        /// The task to re-run.
        task: TaskId,
        /// The integrated tree's version to start it from.
        on_top_of: u64,
    },
    /// The task changed paths outside its write claims and the policy is `reject`: nothing of
    /// it was integrated.
    Rejected,
}

/// The result of integrating one task: what went in, what clashed, what was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationOutcome {
    /// The task.
    pub task: TaskId,
    /// Its place in task order.
    pub order: u64,
    /// What became of it (serialized as `{"kind": "integrated" | "conflicted" | "needs_rerun" |
    /// "rejected", …}`).
    pub status: IntegrationStatus,
    /// The paths whose change from this task is now in the integrated tree (as is, merged
    /// with others' changes, or settled by a strategy), in order.
    pub integrated: Vec<RepoPath>,
    /// Of those, the paths others had changed meanwhile, merged three ways.
    pub merged: Vec<RepoPath>,
    /// Every conflict met, settled or not.
    pub conflicts: Vec<Conflict>,
    /// Changes outside the task's write claims (empty under the `allow` policy).
    pub violations: Vec<Violation>,
    /// The integrated tree's version after this task (unchanged if nothing went in).
    pub version: u64,
}

impl IntegrationOutcome {
    /// The conflicts no strategy settled.
    pub fn unresolved(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.iter().filter(|c| !c.resolved)
    }
}

impl fmt::Display for IntegrationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unresolved = self.unresolved().count();
        match &self.status {
            IntegrationStatus::Integrated => write!(
                f,
                "{}: integrated {} path(s), {} merged, {} conflict(s) resolved",
                self.task,
                self.integrated.len(),
                self.merged.len(),
                self.conflicts.len()
            ),
            IntegrationStatus::Conflicted => write!(
                f,
                "{}: integrated {} path(s); {unresolved} conflict(s) left unresolved",
                self.task,
                self.integrated.len()
            ),
            IntegrationStatus::NeedsRerun { on_top_of, .. } => write!(
                f,
                "{}: {} conflict(s) for an agent; re-run on top of version {on_top_of}",
                self.task,
                self.conflicts.len()
            ),
            IntegrationStatus::Rejected => write!(
                f,
                "{}: rejected, {} change(s) outside its write claims",
                self.task,
                self.violations.len()
            ),
        }
    }
}

/// One task's contribution to the integrated tree, in the order tasks were integrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The task.
    pub task: TaskId,
    /// Its place in task order.
    pub order: u64,
    /// The integrated tree's version this step made.
    pub version: u64,
    /// What it changed in the integrated tree (relative to the tree before it).
    pub changes: ChangeSet,
}

/// Who wrote a path, when, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Write {
    version: u64,
    task: TaskId,
    order: u64,
    entry: Option<Entry>,
}

/// The state that is saved and restored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    version: u64,
    /// The paths where the integrated tree differs from the base (`None`: deleted).
    tree: BTreeMap<RepoPath, Option<Entry>>,
    /// Each path's writes, oldest first.
    writers: BTreeMap<RepoPath, Vec<Write>>,
    steps: Vec<Step>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    state: State,
}

/// The integrated tree of a run and the queue that builds it (the [`Merger`] of Forge).
///
/// It starts as the run's base snapshot. [`Integration::integrate`] is called as each task
/// finishes, with the task's [`ChangeSet`], which was captured against the snapshot the task
/// started from: each change's `before` entry is that snapshot's state of the path, so it is the
/// path's merge base. A path nobody else changed since is taken as is; a path others changed
/// meanwhile is merged three ways (task's start, integrated tree now, task's result), text line
/// by line with the same result as `git merge-file`. What cannot be merged is a [`Conflict`],
/// settled (or not) by the path's [`MergeStrategy`].
///
/// `order` is the task's place in the plan (any key that orders tasks the same way each run):
/// `ours`, `theirs` and `union` favour the side of the task earlier or later in that order, not
/// the one that happened to finish first, and conflict markers put the earlier task first; when
/// no conflict occurs, the integrated tree is the same whatever order tasks finished in.
///
/// The tree lives in the object store as entries (new contents, merge results), never in the
/// user's checkout; [`Integration::snapshot`] materializes it for a workspace (to re-run a task
/// or run the gate), and [`Integration::save`] / [`Integration::open`] persist it for resume.
pub struct Integration {
    base: Arc<BaseSnapshot>,
    store: BlobStore,
    strategies: Arc<dyn StrategyFor>,
    resolver: Option<Arc<dyn Resolver>>,
    audit_policy: AuditPolicy,
    driver_timeout: Duration,
    command_runner: Arc<dyn CommandRunner>,
    state: State,
}

impl fmt::Debug for Integration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Integration")
            .field("base", &self.base.dir())
            .field("version", &self.state.version)
            .field("changed_paths", &self.state.tree.len())
            .field("audit_policy", &self.audit_policy)
            .finish_non_exhaustive()
    }
}

const RECORD_VERSION: u32 = 1;

impl Integration {
    /// An integrated tree equal to `base`, whose contents (and the tasks') are in `store`.
    /// Conflicts default to [`MergeStrategy::Fail`], claim violations to
    /// [`AuditPolicy::Reject`], and no [`Resolver`] is set.
    pub fn new(base: Arc<BaseSnapshot>, store: BlobStore) -> Self {
        Self {
            base,
            store,
            strategies: Arc::new(MergeRules::default()),
            resolver: None,
            audit_policy: AuditPolicy::default(),
            driver_timeout: DEFAULT_DRIVER_TIMEOUT,
            command_runner: Arc::new(StandaloneRunner),
            state: State::default(),
        }
    }

    /// Sets how conflicts are settled per path (a plan's `[merge]` table).
    #[must_use]
    pub fn with_strategies(mut self, strategies: impl StrategyFor + 'static) -> Self {
        self.strategies = Arc::new(strategies);
        self
    }

    /// Sets the resolver of `agent` conflicts.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Sets what happens to tasks with claim violations.
    #[must_use]
    pub fn with_audit_policy(mut self, policy: AuditPolicy) -> Self {
        self.audit_policy = policy;
        self
    }

    /// Sets how long a merge driver may run (default 120 s).
    #[must_use]
    pub fn with_driver_timeout(mut self, timeout: Duration) -> Self {
        self.driver_timeout = timeout;
        self
    }

    /// Sets what runs merge drivers (`driver:<command>` strategies); by default
    /// [`StandaloneRunner`](crate::StandaloneRunner). Kept by [`Merger::empty`].
    #[must_use]
    pub fn with_command_runner(mut self, runner: Arc<dyn CommandRunner>) -> Self {
        self.command_runner = runner;
        self
    }

    /// What runs merge drivers.
    pub(crate) fn command_runner(&self) -> &dyn CommandRunner {
        &*self.command_runner
    }

    /// The run's base snapshot.
    pub fn base(&self) -> &Arc<BaseSnapshot> {
        &self.base
    }

    /// The object store holding every content of the integrated tree.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The integrated tree's version: 0 for the base, one more for each task that changed it.
    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// What the integrated tree holds at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        match self.state.tree.get(path) {
            Some(entry) => entry.as_ref(),
            None => self.base.manifest().get(path),
        }
    }

    /// The integrated tree as changes against the base (what [`Snapshot::with_delta`] takes).
    pub fn delta(&self) -> ChangeSet {
        self.state
            .tree
            .iter()
            .filter_map(|(path, now)| {
                Change::between(
                    self.base.manifest().get(path.as_str()).cloned(),
                    now.clone(),
                )
                .map(|c| (path.clone(), c))
            })
            .collect()
    }

    /// The whole integrated tree.
    pub fn manifest(&self) -> Manifest {
        let mut m = self.base.manifest().clone();
        for (path, entry) in &self.state.tree {
            match entry {
                Some(e) => m.insert(path.clone(), e.clone()),
                None => m.remove(path.as_str()),
            };
        }
        m
    }

    /// The tasks integrated so far and what each changed, in integration order.
    pub fn steps(&self) -> &[Step] {
        &self.state.steps
    }

    /// The integrated tree as a [`Snapshot`] (its delta layer built in the new directory
    /// `layer_dir`), to stage a workspace from: a re-run, or the gate.
    pub fn snapshot(&self, layer_dir: &Path) -> Result<Snapshot, MergeError> {
        Ok(Snapshot::with_delta(
            self.base.clone(),
            &self.delta(),
            &self.store,
            layer_dir,
        )?)
    }

    /// Saves the integrated tree and its history to `path` (atomically: a reader sees the old
    /// record or the new one).
    pub fn save(&self, path: &Path) -> Result<(), MergeError> {
        let record = Record {
            version: RECORD_VERSION,
            state: self.state.clone(),
        };
        let text = serde_json::to_vec(&record)
            .map_err(|e| MergeError::io("encode", path, std::io::Error::other(e)))?;
        crate::apply::write_atomically(path, &text)
    }

    /// An integration restored from a record [`Integration::save`] wrote, over the same base and
    /// store. Strategies, resolver and policy are set again by the caller.
    pub fn open(
        path: &Path,
        base: Arc<BaseSnapshot>,
        store: BlobStore,
    ) -> Result<Self, MergeError> {
        let text = fs::read(path).ctx("read", path)?;
        let corrupt = |reason: String| MergeError::Corrupt {
            path: path.to_path_buf(),
            what: "integration record",
            reason,
        };
        let record: Record = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if record.version != RECORD_VERSION {
            return Err(corrupt(format!("unknown version {}", record.version)));
        }
        let mut integration = Self::new(base, store);
        integration.state = record.state;
        Ok(integration)
    }

    /// Integrates `changes`, made by `task` (at place `order` in task order), as the task
    /// finishes. Same as [`Integration::integrate_audited`] with no claim violations.
    pub fn integrate(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
    ) -> Result<IntegrationOutcome, MergeError> {
        self.integrate_audited(task, changes, order, Vec::new())
    }

    /// The tasks that wrote the integrated tree's current entry at `path` (the last writer
    /// first), for reports.
    pub fn writers(&self, path: &str) -> Vec<TaskId> {
        let mut out = Vec::new();
        if let Some(writes) = self.state.writers.get(path) {
            for w in writes.iter().rev() {
                if !out.contains(&w.task) {
                    out.push(w.task.clone());
                }
            }
        }
        out
    }

    /// Integrates `changes`, made by `task` (at place `order` in task order), which were
    /// audited with the result `violations` (see [`crate::audit`]).
    ///
    /// With violations and the `reject` policy nothing is integrated. Otherwise each path is
    /// taken or merged; conflicts are settled by the path's strategy. If any conflict needs an
    /// agent and no resolver settles it, nothing is integrated and the outcome says
    /// [`IntegrationStatus::NeedsRerun`]. Else every change that merged (or was settled) goes in
    /// at once, as one new version of the tree.
    #[allow(clippy::needless_pass_by_value)]
    pub fn integrate_audited(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
        violations: Vec<Violation>,
    ) -> Result<IntegrationOutcome, MergeError> {
        let violations = match self.audit_policy {
            AuditPolicy::Allow => Vec::new(),
            AuditPolicy::Reject | AuditPolicy::Warn => violations,
        };
        let mut outcome = IntegrationOutcome {
            task: task.clone(),
            order,
            status: IntegrationStatus::Integrated,
            integrated: Vec::new(),
            merged: Vec::new(),
            conflicts: Vec::new(),
            violations,
            version: self.state.version,
        };
        if !outcome.violations.is_empty() && self.audit_policy == AuditPolicy::Reject {
            outcome.status = IntegrationStatus::Rejected;
            return Ok(outcome);
        }

        let merger = PathMerger {
            store: &self.store,
            repo: self.base.repo(),
            resolver: self.resolver.as_deref(),
            driver_timeout: self.driver_timeout,
            driver_runner: &*self.command_runner,
        };
        let mut pending: BTreeMap<RepoPath, Option<Entry>> = BTreeMap::new();
        let mut rerun = false;
        for (path, change) in changes {
            let current = self.get(path.as_str());
            let (start, result) = (change.before(), change.after());
            if current == start {
                pending.insert(path.clone(), result.cloned());
                outcome.integrated.push(path.clone());
                continue;
            }
            if current == result {
                outcome.integrated.push(path.clone());
                continue;
            }
            // Others changed the path since the task started: merge three ways.
            let finishing = Side {
                entry: result,
                label: task.as_str(),
            };
            rerun |= self.merge_changed(
                &merger,
                path,
                start,
                finishing,
                order,
                &mut pending,
                &mut outcome,
            )?;
        }
        rerun |= self.settle_file_directory_clashes(task, &mut pending, &mut outcome);

        if rerun {
            outcome.status = IntegrationStatus::NeedsRerun {
                task: task.clone(),
                on_top_of: self.state.version,
            };
            outcome.integrated.clear();
            outcome.merged.clear();
            return Ok(outcome);
        }
        self.commit(task, order, pending);
        outcome.version = self.state.version;
        if outcome.conflicts.iter().any(|c| !c.resolved) {
            outcome.status = IntegrationStatus::Conflicted;
        }
        Ok(outcome)
    }

    /// Merges a path others changed since the task started into `pending`, recording the
    /// result in `outcome`. Returns whether the conflict asks for a re-run.
    #[allow(clippy::too_many_arguments)]
    fn merge_changed(
        &self,
        merger: &PathMerger<'_>,
        path: &RepoPath,
        start: Option<&Entry>,
        finishing: Side<'_>,
        order: u64,
        pending: &mut BTreeMap<RepoPath, Option<Entry>>,
        outcome: &mut IntegrationOutcome,
    ) -> Result<bool, MergeError> {
        let others = self.writers_since(path, start);
        let others_label = if others.is_empty() {
            "integrated".to_owned()
        } else {
            others
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut tasks: Vec<Party> = others.iter().map(|(t, _)| Party::Task(t.clone())).collect();
        tasks.push(Party::Task(outcome.task.clone()));
        let integrated = Side {
            entry: self.get(path.as_str()),
            label: &others_label,
        };
        // Sides go in task order, so results do not depend on which task finished first.
        let (first, second) = if others.iter().all(|&(_, o)| order > o) {
            (integrated, finishing)
        } else {
            (finishing, integrated)
        };
        let strategy = self.strategies.strategy_for(path);
        let mut rerun = false;
        match merger.merge(path, start, first, second, &strategy, tasks)? {
            PathResult::Clean(entry) => {
                pending.insert(path.clone(), entry);
                outcome.integrated.push(path.clone());
                outcome.merged.push(path.clone());
            }
            PathResult::Conflict { conflict, settle } => {
                match settle {
                    Settle::Take(entry) => {
                        pending.insert(path.clone(), entry);
                        outcome.integrated.push(path.clone());
                        outcome.merged.push(path.clone());
                    }
                    Settle::Keep => {}
                    Settle::Rerun => rerun = true,
                }
                outcome.conflicts.push(conflict);
            }
        }
        Ok(rerun)
    }

    /// The tasks (with their order) that wrote `path` after it held `start`, oldest first.
    fn writers_since(&self, path: &RepoPath, start: Option<&Entry>) -> Vec<(TaskId, u64)> {
        let mut out: Vec<(TaskId, u64)> = Vec::new();
        if let Some(writes) = self.state.writers.get(path) {
            for w in writes.iter().rev() {
                if w.entry.as_ref() == start {
                    break;
                }
                if !out.iter().any(|(t, _)| *t == w.task) {
                    out.push((w.task.clone(), w.order));
                }
            }
        }
        out.reverse();
        out
    }

    /// What `path` holds once `pending` is applied.
    fn after<'a>(
        &'a self,
        pending: &'a BTreeMap<RepoPath, Option<Entry>>,
        path: &str,
    ) -> Option<&'a Entry> {
        match pending.get(path) {
            Some(entry) => entry.as_ref(),
            None => self.get(path),
        }
    }

    /// A path that makes `path` clash once `pending` is applied: a file at one of its parent
    /// directories, or an entry below it.
    fn clash_for(
        &self,
        pending: &BTreeMap<RepoPath, Option<Entry>>,
        path: &RepoPath,
    ) -> Option<String> {
        let s = path.as_str();
        for (i, _) in s.match_indices('/') {
            if self.after(pending, &s[..i]).is_some() {
                return Some(s[..i].to_owned());
            }
        }
        let (lo, hi) = (format!("{s}/"), format!("{s}0"));
        let range = (Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str()));
        let base_below = self.base.manifest().under(s).map(|(p, _)| p);
        let tree_below = self
            .state
            .tree
            .range::<str, _>(range)
            .filter(|(_, e)| e.is_some())
            .map(|(p, _)| p);
        let pending_below = pending
            .range::<str, _>(range)
            .filter(|(_, e)| e.is_some())
            .map(|(p, _)| p);
        base_below
            .chain(tree_below)
            .chain(pending_below)
            .find(|p| self.after(pending, p.as_str()).is_some())
            .map(|p| p.as_str().to_owned())
    }

    /// Finds paths the task would put where a directory is (or under a file), keeps the
    /// integrated side there and reports a conflict. Returns whether one asks for a re-run.
    fn settle_file_directory_clashes(
        &self,
        task: &TaskId,
        pending: &mut BTreeMap<RepoPath, Option<Entry>>,
        outcome: &mut IntegrationOutcome,
    ) -> bool {
        let mut rerun = false;
        loop {
            let clash = pending
                .iter()
                .filter(|(_, e)| e.is_some())
                .find_map(|(p, _)| self.clash_for(pending, p).map(|other| (p.clone(), other)));
            let Some((path, other)) = clash else {
                return rerun;
            };
            pending.remove(&path);
            outcome.integrated.retain(|p| *p != path);
            outcome.merged.retain(|p| *p != path);
            let strategy = self.strategies.strategy_for(&path);
            let mut tasks: Vec<Party> = RepoPath::new(&other)
                .ok()
                .and_then(|p| self.state.writers.get(&p))
                .and_then(|w| w.last())
                .map(|w| vec![Party::Task(w.task.clone())])
                .unwrap_or_default();
            tasks.push(Party::Task(task.clone()));
            let mut conflict = Conflict::new(path, ConflictKind::FileDirectory, tasks, strategy);
            conflict.note = Some(format!("clashes with `{other}`"));
            if conflict.strategy == MergeStrategy::Agent {
                rerun = true;
            }
            outcome.conflicts.push(conflict);
        }
    }

    /// Applies `pending` as one new version of the tree.
    fn commit(&mut self, task: &TaskId, order: u64, pending: BTreeMap<RepoPath, Option<Entry>>) {
        let mut changes = ChangeSet::default();
        for (path, entry) in pending {
            if let Some(change) = Change::between(self.get(path.as_str()).cloned(), entry) {
                changes.insert(path, change);
            }
        }
        if changes.is_empty() {
            return;
        }
        self.state.version += 1;
        let version = self.state.version;
        for (path, change) in &changes {
            let after = change.after().cloned();
            if self.base.manifest().get(path.as_str()) == after.as_ref() {
                self.state.tree.remove(path.as_str());
            } else {
                self.state.tree.insert(path.clone(), after.clone());
            }
            self.state
                .writers
                .entry(path.clone())
                .or_default()
                .push(Write {
                    version,
                    task: task.clone(),
                    order,
                    entry: after,
                });
        }
        self.state.steps.push(Step {
            task: task.clone(),
            order,
            version,
            changes,
        });
    }
}

impl Merger for Integration {
    fn base(&self) -> &Arc<BaseSnapshot> {
        Integration::base(self)
    }

    fn store(&self) -> &BlobStore {
        Integration::store(self)
    }

    fn version(&self) -> u64 {
        Integration::version(self)
    }

    fn delta(&self) -> ChangeSet {
        Integration::delta(self)
    }

    fn integrate_audited(
        &mut self,
        task: &TaskId,
        changes: &ChangeSet,
        order: u64,
        violations: Vec<Violation>,
    ) -> Result<IntegrationOutcome, MergeError> {
        Integration::integrate_audited(self, task, changes, order, violations)
    }

    fn save(&self, path: &Path) -> Result<(), MergeError> {
        Integration::save(self, path)
    }

    fn empty(&self) -> Box<dyn Merger> {
        Box::new(Integration {
            base: self.base.clone(),
            store: self.store.clone(),
            strategies: self.strategies.clone(),
            resolver: self.resolver.clone(),
            audit_policy: self.audit_policy,
            driver_timeout: self.driver_timeout,
            command_runner: self.command_runner.clone(),
            state: State::default(),
        })
    }

    fn snapshot(&self, layer_dir: &Path) -> Result<Snapshot, MergeError> {
        Integration::snapshot(self, layer_dir)
    }
}

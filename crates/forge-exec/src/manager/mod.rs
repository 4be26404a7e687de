//! The [`ExecutionManager`]: one run of a plan, through every part of Forge.
//!
//! ```text
//! build(): load or reload the plan, check every agent is installed, open the run store and
//!          its journal (the EventBus: subscribe to it before run() for a live view)
//! run():   run_started; for a new run, plan_preview (the plan's lock analysis and time
//!          estimate, [`crate::plan::preview`], with durations from the repository's earlier runs)
//!          capture the base snapshot once
//!          Scheduler (critical path, concurrency, retries, timeouts, cancel) runs each attempt,
//!          one value through one module per step (`attempt`; steps 2-4 are the runner's:
//!          [`crate::runner`], this machine or a cluster):
//!            1 locks    acquire the task's claims (all or nothing; `task_waiting_locks` names
//!                       who is in the way)
//!            2 stage    a workspace from the integrated tree at that moment (base + everything
//!                       integrated so far, which includes the task's dependencies)
//!            3 agent    spawn the profile's command in it, own process group, parse its output
//!                       into progress and usage events, every line in output.log
//!            4 capture  the ChangeSet; audit it against the write and append claims
//!            5 persist  blobs synced and changes.json written before anything is integrated
//!            6 merge    integrate it (`agent` conflicts re-run the task on top, `[merge]
//!                       reruns` times) into the run's one integration state
//!                       (`integrated`); then release the locks
//!          the gate in a workspace staged from the integrated tree
//!          result.json + integration.json; apply if asked ([`ApplyMode`]); run_finished
//! ```
//!
//! Releasing a task's locks only after its changes are integrated is what makes the design's
//! promise hold: a task granted a claim always starts from a tree holding the work of every
//! task that held a conflicting claim before it.
//!
//! A run is resumable at any point: [`ExecutionManagerBuilder::resume`] folds the journal,
//! reuses every finished task (its persisted `ChangeSet` is integrated again, in the same order),
//! re-runs interrupted attempts from a fresh workspace, after stopping whatever the dead process
//! left (agent processes, mounts, worktrees) and finishing or undoing a torn apply.

pub mod add;
mod apply;
pub(crate) mod attempt;
mod audit;
mod bisect;
mod budget;
mod candidates;
pub(crate) mod check;
mod fix;
mod integrated;
mod layers;
pub(crate) mod pipeline;
mod resume;
mod retry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forge_events::{
    BusOptions, EventBus, EventKind, EventSink, EventsError, RunId, RunStatus, RunSummary, TaskId,
    TaskStatus,
};
use forge_locks::{LocalLockManager, LockManager};
use forge_merge::{Conflict, GateReport, Integration, MergeRules, MergeStrategy, Merger};

use self::integrated::IntegrationState;
use forge_staging::{BaseMode, BaseSnapshot, BlobStore, Stager, StagerConfig, StagerKind};
use parking_lot::Mutex;

pub use apply::{
    ApplyMode, ApplyRequest, ApplySummary, ConflictRerun, DiffSection, TaskSelection, apply_run,
    apply_run_with, integrated_diff, prepare_agent_reruns, recover_abandoned_applies, run_diff,
    run_summary,
};
pub use bisect::{
    BisectOptions, BisectStep, GateBisect, IntegratedChanges, bisect_gate, first_failing,
};
pub use budget::{ModelPrice, Prices};
pub use candidates::{Candidate, run_candidates};
pub use resume::cleanup_leftovers;
pub use retry::{RetryOrigin, RetryRequest, dependents};

use crate::ExecError;
use crate::plan::{Plan, PlanOptions};
use crate::process::ProcessOptions;
use crate::runner::{AttemptRunner, RunnerConfig};
use crate::sched::{CancelHandle, Scheduler, SchedulerOptions, TaskReport};
use crate::store::{RunResult, RunStore, read_json, write_json};
use forge_agents::Profiles;

/// How a run ended, with everything a caller needs to report it and decide on the apply.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run.
    pub run: RunId,
    /// How it ended.
    pub status: RunStatus,
    /// Every task, in plan order.
    pub tasks: Vec<TaskReport>,
    /// Conflicts no strategy settled (their paths keep the integrated tree's side).
    pub conflicts: Vec<Conflict>,
    /// Conflicts met and settled by their strategy.
    pub resolved_conflicts: usize,
    /// The gate's report, if it ran (it runs when no task failed and the run was not
    /// cancelled).
    pub gate: Option<GateReport>,
    /// Paths the integrated result changes relative to the base.
    pub files_changed: Vec<forge_events::RepoPath>,
    /// What the apply did, if the builder asked for one and the run could be applied.
    pub applied: Option<ApplySummary>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Whether this was a resumed run.
    pub resumed: bool,
    /// Wall time of this process's part of the run.
    pub duration: Duration,
    /// The bisect of a failed gate: the first task whose changes make it fail.
    pub bisect: Option<GateBisect>,
}

impl RunReport {
    /// Whether the result may be applied: every task succeeded, no conflict is left and the
    /// gate passed.
    pub fn applicable(&self) -> bool {
        !self.cancelled
            && self.tasks.iter().all(|t| t.status == TaskStatus::Succeeded)
            && self.conflicts.is_empty()
            && self.gate.as_ref().is_none_or(GateReport::passed)
    }

    /// Tasks with each status.
    pub fn count(&self, status: TaskStatus) -> usize {
        self.tasks.iter().filter(|t| t.status == status).count()
    }

    /// The `forge` exit code for this outcome: 0 success, 1 tasks failed, 3 unresolved merge
    /// conflicts, 4 gate failed, 130 cancelled.
    pub fn exit_code(&self) -> i32 {
        if self.cancelled {
            130
        } else if self.tasks.iter().any(|t| t.status != TaskStatus::Succeeded) {
            1
        } else if !self.conflicts.is_empty() {
            3
        } else if self.gate.as_ref().is_some_and(|g| !g.passed()) {
            4
        } else {
            0
        }
    }
}

/// Edits the stager's configuration before it is built.
type ConfigEdit = Box<dyn FnOnce(&mut StagerConfig) + Send>;

/// Makes the run's merger from the [`Integration`] Forge would use (over the run's base and
/// store, with the plan's `[merge]` strategies and violation policy).
type MergerFn = Arc<dyn Fn(Integration) -> Box<dyn Merger> + Send + Sync>;

/// Where the stager comes from.
enum StagerChoice {
    Kind(StagerKind),
    Given(Arc<dyn Stager>),
}

/// Builds an [`ExecutionManager`]; every part has a default.
pub struct ExecutionManagerBuilder {
    repo: Option<PathBuf>,
    plan: Option<Plan>,
    resume: Option<RunId>,
    retry: Option<RetryRequest>,
    profiles: Option<Profiles>,
    locks: Option<Arc<dyn LockManager>>,
    stager: StagerChoice,
    stager_config: Option<ConfigEdit>,
    events: Vec<Arc<dyn EventSink>>,
    apply: ApplyMode,
    scheduler: SchedulerOptions,
    process: ProcessOptions,
    bus: BusOptions,
    runner: RunnerConfig,
    prices: Prices,
    merger: Option<MergerFn>,
}

impl Default for ExecutionManagerBuilder {
    fn default() -> Self {
        Self {
            repo: None,
            plan: None,
            resume: None,
            retry: None,
            profiles: None,
            locks: None,
            stager: StagerChoice::Kind(StagerKind::Auto),
            stager_config: None,
            events: Vec::new(),
            apply: ApplyMode::None,
            scheduler: SchedulerOptions::default(),
            // Agents run contained: everything an attempt starts ends with it.
            process: ProcessOptions {
                pid_namespace: true,
                ..ProcessOptions::default()
            },
            bus: BusOptions::default(),
            runner: RunnerConfig::Local,
            prices: Prices::default(),
            merger: None,
        }
    }
}

impl ExecutionManagerBuilder {
    /// Where attempts run (default: this machine). A cluster that does not answer fails the
    /// run before anything starts.
    #[must_use]
    pub fn runner(mut self, runner: RunnerConfig) -> Self {
        self.runner = runner;
        self
    }

    /// The repository to run in (default: the git top level of the current directory, or the
    /// current directory).
    #[must_use]
    pub fn repo(mut self, repo: impl Into<PathBuf>) -> Self {
        self.repo = Some(repo.into());
        self
    }

    /// The plan to run (a new run). Not needed with [`ExecutionManagerBuilder::resume`].
    #[must_use]
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Resume run `run` of this repository instead of starting a new one: its plan copy is
    /// loaded, finished tasks are reused, interrupted ones run again.
    #[must_use]
    pub fn resume(mut self, run: RunId) -> Self {
        self.resume = Some(run);
        self
    }

    /// Retry one task of run `run` (finished, failed or interrupted) instead of starting a new
    /// run: the task runs again with `request.prompt` added to its instructions (continuing
    /// the agent's session where its profile can), then every task depending on it; every
    /// other task's result is kept. Integration, gate and apply follow as in a run. The request
    /// is journaled (`task_retry_requested`), so a retry killed midway resumes like any run.
    /// [`ExecutionManagerBuilder::build`] refuses a task the plan does not have, or one that
    /// never ran because a task it depends on failed (retry that one).
    #[must_use]
    pub fn retry(mut self, run: RunId, request: RetryRequest) -> Self {
        self.resume = Some(run);
        self.retry = Some(request);
        self
    }

    /// Agent profiles (default: the built-in ones).
    #[must_use]
    pub fn profiles(mut self, profiles: Profiles) -> Self {
        self.profiles = Some(profiles);
        self
    }

    /// The lock manager (default: a new [`LocalLockManager`]).
    #[must_use]
    pub fn locks(mut self, locks: Arc<dyn LockManager>) -> Self {
        self.locks = Some(locks);
        self
    }

    /// The staging strategy (default [`StagerKind::Auto`]: the best this machine supports).
    #[must_use]
    pub fn stager(mut self, kind: StagerKind) -> Self {
        self.stager = StagerChoice::Kind(kind);
        self
    }

    /// A stager built by the caller (for tests and embedders with their own strategy).
    #[must_use]
    pub fn stager_impl(mut self, stager: Arc<dyn Stager>) -> Self {
        self.stager = StagerChoice::Given(stager);
        self
    }

    /// Adjusts the stager's configuration before it is built (shared directories such as
    /// `node_modules`, files copied in, the size limit).
    #[must_use]
    pub fn stager_config(mut self, edit: impl FnOnce(&mut StagerConfig) + Send + 'static) -> Self {
        self.stager_config = Some(Box::new(edit));
        self
    }

    /// Another sink that receives every event (besides the run's journaled [`EventBus`]).
    #[must_use]
    pub fn events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events.push(sink);
        self
    }

    /// Apply the result at the end of the run when it may be applied (default: no, the
    /// caller decides with [`apply_run`]).
    #[must_use]
    pub fn apply(mut self, mode: ApplyMode) -> Self {
        self.apply = mode;
        self
    }

    /// Scheduler settings (retry backoff, kill grace).
    #[must_use]
    pub fn scheduler_options(mut self, options: SchedulerOptions) -> Self {
        self.scheduler = options;
        self
    }

    /// Process settings (grace periods, line and log limits, containment). The default runs
    /// each attempt in its own PID namespace (`pid_namespace`); per-task `memory`/`cpus` and
    /// the plan's `[isolation] require` are added to these for each attempt.
    #[must_use]
    pub fn process_options(mut self, options: ProcessOptions) -> Self {
        self.process = options;
        self
    }

    /// Prices per model, to give a cost to agents that report tokens only (default: none,
    /// their cost is unknown).
    #[must_use]
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = prices;
        self
    }

    /// The merge queue (default: [`Integration`]). The run's base is captured when the run
    /// starts, so `make` is given the integration Forge would use (over that base and the
    /// run's object store, with the plan's `[merge]` strategies and violation policy) and
    /// returns the merger to use instead: a wrapper around it, or a merger of its own.
    #[must_use]
    pub fn merger(
        mut self,
        make: impl Fn(Integration) -> Box<dyn Merger> + Send + Sync + 'static,
    ) -> Self {
        self.merger = Some(Arc::new(make));
        self
    }

    /// Event bus settings.
    #[must_use]
    pub fn bus_options(mut self, options: BusOptions) -> Self {
        self.bus = options;
        self
    }

    /// Checks everything that can be checked before a task runs — the repository, the plan,
    /// every agent's program — then creates (or reopens) the run and its journal.
    #[allow(clippy::too_many_lines)] // the checks, in the order they are made
    pub fn build(self) -> Result<ExecutionManager, ExecError> {
        let repo = match self.repo {
            Some(repo) => repo,
            None => default_repo()?,
        };
        let repo = std::fs::canonicalize(&repo).map_err(|e| ExecError::io("open", &repo, e))?;
        let store = RunStore::new(&repo);
        let profiles = self.profiles.unwrap_or_else(Profiles::builtin);
        let resuming = self.resume.is_some();
        let (run, mut plan) = match (self.resume, self.plan) {
            (Some(_), Some(_)) => {
                return Err(ExecError::Config(
                    "give the builder either a plan (a new run) or a run to resume, not both"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(ExecError::Config(
                    "no plan: call .plan(plan) for a new run or .resume(run) to resume one".into(),
                ));
            }
            (Some(run), None) => {
                if !store.exists(&run) {
                    return Err(ExecError::RunNotFound {
                        run: run.to_string(),
                        dir: store.runs_dir(),
                    });
                }
                if let Some(owner) = store.owner(&run)
                    && owner.alive
                    && owner.pid != i32::try_from(std::process::id()).unwrap_or(-1)
                {
                    return Err(ExecError::RunBusy {
                        run: run.to_string(),
                        pid: owner.pid,
                    });
                }
                let copy = store.plan_copy(&run);
                let opts = PlanOptions {
                    agents: profiles.names().map(str::to_owned).collect(),
                    ..PlanOptions::default()
                };
                let plan = Plan::load(&copy, &opts).map_err(|e| match e {
                    e if copy.exists() => ExecError::Plan(e),
                    _ => ExecError::Corrupt {
                        path: copy.clone(),
                        reason: "the run's plan copy is missing".into(),
                    },
                })?;
                check_isolation(&plan, &self.process)?;
                (run, plan)
            }
            (None, Some(plan)) => {
                check_isolation(&plan, &self.process)?;
                let run = store.new_run(&plan.name)?;
                crate::store::write_atomically(&store.plan_copy(&run), plan.to_toml().as_bytes())?;
                (run, plan)
            }
        };
        // Every agent the unfinished part of the plan needs must be installed: say so now,
        // not when the task's turn comes.
        profiles
            .check_available(plan.tasks.iter().map(|t| t.agent.as_str()))
            .map_err(|e| ExecError::Agent(e.to_string()))?;
        let mut history = Vec::new();
        if resuming {
            // The dead process's agents go first: one of them may still hold the journal open.
            resume::kill_run_processes(&run);
        }
        let journal = store.journal(&run);
        let deadline = Instant::now() + Duration::from_secs(3);
        let bus = loop {
            history.clear();
            match EventBus::open_with(run.clone(), &journal, &self.bus, |e| {
                if resuming {
                    history.push(e.clone());
                }
            }) {
                Ok(bus) => break bus,
                // A process that is going away may hold the lock for a moment.
                Err(EventsError::Locked { .. }) if resuming && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        add::extend_plan(&mut plan, &history, &journal)?;
        if let Some(request) = &self.retry {
            retry::check_request(&plan, &run, &history, request)?;
        }
        let locks = self
            .locks
            .unwrap_or_else(|| Arc::new(LocalLockManager::new()));
        Ok(ExecutionManager {
            repo,
            store,
            run,
            plan: Arc::new(plan),
            profiles: Arc::new(profiles),
            locks,
            stager: self.stager,
            stager_config: self.stager_config,
            bus,
            extra: self.events,
            apply: self.apply,
            scheduler: self.scheduler,
            process: self.process,
            history: resuming.then_some(history),
            prices: self.prices,
            merger: self.merger,
            retry: self.retry,
            runner: self.runner,
        })
    }
}

/// The git top level of the current directory, or the current directory.
fn default_repo() -> Result<PathBuf, ExecError> {
    let cwd = std::env::current_dir().map_err(|e| ExecError::io("find", Path::new("."), e))?;
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(&cwd)
        .stderr(std::process::Stdio::null())
        .output();
    Ok(match out {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim_end())
        }
        _ => cwd,
    })
}

/// One run of a plan: locks, staging, agents, merge queue, gate and apply, wired together.
///
/// ```no_run
/// # async fn example() -> Result<(), forge_exec::ExecError> {
/// use forge_exec::{CancelHandle, ExecutionManager, Plan, PlanOptions};
/// let plan = Plan::load(std::path::Path::new("plan.toml"), &PlanOptions::default())?;
/// let manager = ExecutionManager::builder().repo(".").plan(plan).build()?;
/// let mut live = manager.bus().subscribe(); // for a live view
/// let report = manager.run(CancelHandle::new()).await?;
/// std::process::exit(report.exit_code());
/// # }
/// ```
pub struct ExecutionManager {
    repo: PathBuf,
    store: RunStore,
    run: RunId,
    plan: Arc<Plan>,
    profiles: Arc<Profiles>,
    locks: Arc<dyn LockManager>,
    stager: StagerChoice,
    stager_config: Option<ConfigEdit>,
    bus: EventBus,
    extra: Vec<Arc<dyn EventSink>>,
    apply: ApplyMode,
    scheduler: SchedulerOptions,
    process: ProcessOptions,
    /// The journal so far, when resuming.
    history: Option<Vec<forge_events::Event>>,
    prices: Prices,
    merger: Option<MergerFn>,
    /// The task to retry, if this is a retry.
    retry: Option<RetryRequest>,
    runner: RunnerConfig,
}

impl std::fmt::Debug for ExecutionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionManager")
            .field("repo", &self.repo)
            .field("run", &self.run)
            .field("tasks", &self.plan.tasks.len())
            .field("resume", &self.history.is_some())
            .finish_non_exhaustive()
    }
}

/// `[isolation] require = true` on a host without PID namespaces: refused before anything runs.
fn check_isolation(plan: &Plan, process: &ProcessOptions) -> Result<(), ExecError> {
    if !(plan.isolation.require || process.require_isolation) {
        return Ok(());
    }
    match crate::process::pid_namespace_support() {
        crate::process::PidNamespaceSupport::Unavailable(why) => Err(ExecError::Config(format!(
            "the plan requires isolation (`[isolation] require = true`) but this host gives attempts no PID namespace: {why}; run as root or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces), or remove the requirement to run attempts in their process group only"
        ))),
        _ => Ok(()),
    }
}

/// Publishes to the run's bus (the journal) and to every extra sink.
pub(crate) struct Fanout {
    pub(crate) bus: EventBus,
    pub(crate) extra: Vec<Arc<dyn EventSink>>,
}

impl EventSink for Fanout {
    fn publish(&self, task: Option<TaskId>, kind: EventKind) -> Result<u64, EventsError> {
        for sink in &self.extra {
            let _ = sink.publish(task.clone(), kind.clone());
        }
        self.bus.publish(task, kind)
    }
}

/// What the pipeline's attempts share.
pub(crate) struct Shared {
    pub(crate) run: RunId,
    pub(crate) store: RunStore,
    pub(crate) plan: Arc<Plan>,
    pub(crate) profiles: Arc<Profiles>,
    pub(crate) locks: Arc<dyn LockManager>,
    pub(crate) stager: Arc<dyn Stager>,
    pub(crate) blobs: BlobStore,
    /// What the run has integrated: the tree, the attempts in it, the conflicts.
    pub(crate) integration: Mutex<IntegrationState>,
    /// The integrated tree's latest snapshot (layers are kept until the run ends: workspaces
    /// stand on them).
    pub(crate) snapshots: Mutex<layers::Snapshots>,
    pub(crate) events: Arc<Fanout>,
    pub(crate) process: ProcessOptions,
    /// Each task's place in the plan: its order key in the integration.
    pub(crate) order: HashMap<TaskId, u64>,
    /// The locks of tasks whose attempt failed, kept until their retry starts (or they end).
    pub(crate) kept_locks: Mutex<HashMap<TaskId, forge_locks::LockSet>>,
    /// Turns for the file-system-heavy steps (staging a workspace, capturing its changes): at
    /// most one per CPU at once, so a burst of tasks starting together does not starve the
    /// threads that relay agents' output as events.
    pub(crate) heavy: tokio::sync::Semaphore,
    /// Whether the run already said that its attempts run without a PID namespace.
    pub(crate) warned_no_namespace: std::sync::atomic::AtomicBool,
    /// What the run and its tasks spent, against their budgets.
    pub(crate) spend: budget::Spend,
    /// Prices per model.
    pub(crate) prices: Prices,
    /// Retried tasks: how their attempts start (the journal's `task_retry_requested`).
    pub(crate) retries: Mutex<HashMap<TaskId, retry::RetryContext>>,
    /// Where attempts' stage → agent → capture run: this machine or a cluster.
    pub(crate) runner: Arc<dyn AttemptRunner>,
    /// Workspaces being disposed of in the background, waited for before the run cleans up.
    pub(crate) disposals: attempt::capture::Disposals,
}

impl Shared {
    pub(crate) fn publish(&self, task: &TaskId, kind: EventKind) {
        let _ = self.events.publish_task(task, kind);
    }
}

impl ExecutionManager {
    /// A builder with every part defaulted.
    pub fn builder() -> ExecutionManagerBuilder {
        ExecutionManagerBuilder::default()
    }

    /// The run's id.
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// The repository.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The plan being run.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The run's event bus: subscribe before [`ExecutionManager::run`] to see every event.
    pub fn bus(&self) -> EventBus {
        self.bus.clone()
    }

    /// The run store of the repository.
    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// Runs (or resumes) the plan to its end. Errors are failures of Forge itself (the
    /// journal, the file system); failed tasks, conflicts and a failed gate are in the report.
    #[allow(clippy::too_many_lines)] // the run, top to bottom
    pub async fn run(self, cancel: CancelHandle) -> Result<RunReport, ExecError> {
        let started = Instant::now();
        let Self {
            repo,
            store,
            run,
            plan,
            profiles,
            locks,
            stager,
            stager_config,
            bus,
            extra,
            apply,
            mut scheduler,
            process,
            mut history,
            retry,
            runner,
            prices,
            merger,
        } = self;
        store.claim_owner(&run)?;
        let events = Arc::new(Fanout {
            bus: bus.clone(),
            extra,
        });
        let resumed = history.is_some();
        let contained = process.pid_namespace;
        if contained {
            // The mount namespace this run's attempts' views start from: the host's mounts as
            // they are now, without any workspace (see `refresh_view_template`); dropped below.
            let _ = blocking(crate::process::refresh_view_template).await;
        }
        let outcome = async {
            if history.is_some() {
                // Whatever the dead process left: its agents, mounts, worktrees, a torn apply.
                let run2 = run.clone();
                let store2 = store.clone();
                blocking(move || cleanup_leftovers(&store2, &run2)).await??;
            }
            // Where attempts run: a cluster is asked first, so an unreachable one stops the
            // run before anything starts.
            if plan.gate.on == crate::plan::GateOn::Cluster && runner == RunnerConfig::Local {
                return Err(ExecError::Config(
                    "the plan's gate runs on the cluster (`[gate] on = \"cluster\"`) but attempts \
                     run on this machine: set `[runner] kind = \"ray\"` in forge.toml (or \
                     `--runner ray://host:port`), or remove `on` to gate locally; nothing was run"
                        .to_owned(),
                ));
            }
            if let (RunnerConfig::Ray(_), Some(task)) =
                (&runner, plan.tasks.iter().find(|t| !t.check.is_empty()))
            {
                return Err(ExecError::Config(format!(
                    "task `{}` has per-task `check` commands, which run only on this machine \
                     today, but attempts run on a Ray cluster: remove `check` (the gate still \
                     runs), or run with the local runner; nothing was run",
                    task.id
                )));
            }
            let runner: Arc<dyn AttemptRunner> = match runner {
                RunnerConfig::Local => Arc::new(crate::runner::local::LocalRunner),
                RunnerConfig::Ray(config) => Arc::new(
                    crate::runner::ray::RayRunner::start(
                        config,
                        BlobStore::open(store.objects_dir())?,
                        &run,
                        &store.run_dir(&run),
                        history.is_some(),
                    )
                    .await?,
                ),
            };
            events.publish_run(EventKind::RunStarted {
                plan: plan.name.clone(),
                plan_hash: plan_hash(&plan),
                tasks: u32::try_from(plan.tasks.len()).unwrap_or(u32::MAX),
                concurrency: u32::try_from(plan.concurrency).unwrap_or(u32::MAX),
                base: plan.base.to_string(),
            })?;
            // A retry is journaled before anything runs, and folded like any other event.
            if let (Some(request), Some(history)) = (&retry, history.as_mut()) {
                let kind = retry::request_event(&plan, request);
                let seq = events.publish_task(&request.task, kind.clone())?;
                history.push(forge_events::Event::new(
                    run.clone(),
                    seq,
                    Some(request.task.clone()),
                    kind,
                ));
            }
            let mut prior = history.as_ref().map(|h| resume::analyze(&plan, h));
            if let Some(prior) = prior.as_mut() {
                resume::reattach(prior, &runner.reattachable());
            }
            // What the run will do (estimates from earlier runs), worked out while the base is
            // captured and published before any task is queued. History that cannot be read
            // leaves the estimates unknown, as the preview then says; it does not stop the run.
            let preview = (!resumed).then(|| {
                let (runs_dir, run2, plan2) = (store.runs_dir(), run.clone(), plan.clone());
                tokio::task::spawn_blocking(move || {
                    let estimates =
                        crate::plan::preview::Estimates::from_runs(&runs_dir, Some(&run2))
                            .unwrap_or_default();
                    crate::plan::preview::preview(&plan2, &estimates)
                })
            });

            // The base, once per run.
            let blobs = BlobStore::open(store.objects_dir())?;
            let base_dir = store.base_dir(&run);
            let base = {
                let (repo, blobs, mode, store) =
                    (repo.clone(), blobs.clone(), plan.base, store.clone());
                blocking(move || base_snapshot(&store, &repo, mode, &base_dir, &blobs)).await??
            };
            let base = Arc::new(base);
            let stager: Arc<dyn Stager> = match stager {
                StagerChoice::Given(s) => s,
                StagerChoice::Kind(kind) => {
                    let mut config = StagerConfig::new(store.work_dir(&run), blobs.clone());
                    if let Some(edit) = stager_config {
                        edit(&mut config);
                    }
                    let base = base.clone();
                    Arc::from(blocking(move || kind.build(&config, &base)).await??)
                }
            };
            let rules = merge_rules(&plan)?;
            let integration = crate::driver::install(
                Integration::new(base.clone(), blobs.clone())
                    .with_strategies(rules)
                    .with_audit_policy(plan.on_violation),
                crate::driver::for_run(&run, &process, &cancel),
                &plan,
            );
            let mut integration = IntegrationState::new(match &merger {
                Some(make) => make(integration),
                None => Box::new(integration),
            });
            if let Some(prior) = &prior {
                let (store2, run2, order) = (store.clone(), run.clone(), prior.integrated.clone());
                let plan2 = plan.clone();
                integration =
                    blocking(move || integration.rebuild(&store2, &run2, &plan2, &order)).await??;
                scheduler.prior = prior.tasks.clone();
            }
            let shared = Arc::new(Shared {
                run: run.clone(),
                store: store.clone(),
                plan: plan.clone(),
                profiles,
                locks,
                stager: stager.clone(),
                blobs: blobs.clone(),
                integration: Mutex::new(integration),
                snapshots: Mutex::new(layers::Snapshots::default()),
                events: events.clone(),
                process,
                order: plan
                    .tasks
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.id.clone(), i as u64))
                    .collect(),
                kept_locks: Mutex::new(HashMap::new()),
                heavy: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
                ),
                warned_no_namespace: std::sync::atomic::AtomicBool::new(false),
                spend: history
                    .as_deref()
                    .map(budget::Spend::from_history)
                    .unwrap_or_default(),
                prices,
                retries: Mutex::new(
                    prior
                        .as_mut()
                        .map(|p| std::mem::take(&mut p.retries))
                        .unwrap_or_default(),
                ),
                runner,
                disposals: attempt::capture::Disposals::default(),
            });
            if let Some(preview) = preview {
                let preview = preview
                    .await
                    .map_err(|e| ExecError::Store(format!("the plan preview failed: {e}")))?;
                events.publish_run(EventKind::PlanPreview { preview })?;
            }
            let runner = attempt::PipelineRunner::new(shared.clone());
            let mut rounds_used = history.as_deref().map_or(0, fix::rounds_used);
            let mut took_added = false;
            let mut options = scheduler;
            let (sched, gate, bisect) = loop {
                let sink: Arc<dyn EventSink> = events.clone();
                let (added, intake) = add::intake(&shared);
                let sched = Scheduler::new(&plan, &runner, sink, options.clone())
                    .intake(added)
                    .run(&cancel)
                    .await;
                took_added |= intake.finish().await;
                let any_failed = sched
                    .tasks
                    .iter()
                    .any(|t| t.status != TaskStatus::Succeeded);
                // The gate, on the integrated tree.
                let gate = if sched.cancelled || any_failed || plan.gate.commands.is_empty() {
                    None
                } else {
                    Some(pipeline::run_gate(&shared, &cancel).await?)
                };
                // A red gate: find the task that broke it.
                let bisect = match &gate {
                    Some(g) if !g.passed() && !cancel.is_cancelled() => {
                        Some(bisect::run_bisect(&shared, &cancel, history.as_deref()).await?)
                    }
                    _ => None,
                };
                // ... and send it back with the failure (`[gate] fix_rounds`).
                let next = fix::next_round(
                    plan.gate.fix_rounds,
                    rounds_used,
                    gate.as_ref(),
                    bisect.as_ref(),
                )
                .filter(|request| add::fix_round_allowed(&shared, took_added, request));
                match next {
                    Some(request) if !cancel.is_cancelled() => {
                        rounds_used += 1;
                        let prior = fix::start_round(&shared, &request).await?;
                        options = fix::options(&options, prior);
                        // Steps of this bisect describe trees of the last round only.
                        history = None;
                    }
                    _ => break (sched, gate, bisect),
                }
            };
            let (unresolved, resolved) = shared.integration.lock().conflicts();
            let files_changed: Vec<forge_events::RepoPath> = shared
                .integration
                .lock()
                .integration()
                .delta()
                .paths()
                .cloned()
                .collect();
            let mut report = RunReport {
                run: run.clone(),
                status: RunStatus::Failed,
                tasks: sched.tasks,
                conflicts: unresolved,
                resolved_conflicts: resolved,
                gate,
                files_changed,
                applied: None,
                cancelled: sched.cancelled,
                resumed,
                duration: started.elapsed(),
                bisect,
            };
            // Persist what `forge apply` needs: the integrated tree and the outcome.
            {
                let integration_path = store.run_dir(&run).join("integration.json");
                let integration = &shared.integration;
                integration.lock().save(&integration_path)?;
            }
            let result = RunResult {
                status: if report.cancelled {
                    RunStatus::Cancelled
                } else if report.applicable() {
                    RunStatus::Succeeded
                } else {
                    RunStatus::Failed
                },
                applicable: report.applicable(),
                gate: report.gate.clone(),
                failed: report
                    .tasks
                    .iter()
                    .filter(|t| t.status != TaskStatus::Succeeded)
                    .map(|t| t.id.clone())
                    .collect(),
                conflicts: report.conflicts.clone(),
                integrated: shared.integration.lock().integrated().to_vec(),
                bisect: report.bisect.clone(),
            };
            write_json(&store.result_path(&run), &result)?;
            report.status = result.status;
            // Workspaces are gone (once their disposals end); the layers they stood on can go
            // too, while the result is applied (the apply touches neither).
            shared.disposals.finish().await;
            shared.snapshots.lock().clear();
            let base = shared.integration.lock().integration().base().clone();
            drop(runner);
            drop(shared);
            let work = store.work_dir(&run);
            let cleanup = tokio::task::spawn_blocking(move || {
                let _ = forge_staging::gc(&work);
                let _ = std::fs::remove_dir_all(work.join("layers"));
            });
            let applied = if apply != ApplyMode::None && report.applicable() {
                Some(apply::apply_with(&store, &run, apply, Some(&*events), Some(base)).await)
            } else {
                None
            };
            let _ = cleanup.await;
            report.applied = applied.transpose()?;
            Ok::<RunReport, ExecError>(report)
        }
        .await;
        if contained {
            // The template holds a copy of every host mount: not past the run (a later
            // contained process outside a run copies the host's namespace as it is then).
            crate::process::drop_view_template();
        }

        let (status, summary) = match &outcome {
            Ok(report) => (
                report.status,
                RunSummary {
                    succeeded: count(report, TaskStatus::Succeeded),
                    failed: count(report, TaskStatus::Failed),
                    timed_out: count(report, TaskStatus::TimedOut),
                    cancelled: count(report, TaskStatus::Cancelled),
                    skipped: count(report, TaskStatus::Skipped),
                    conflicts: u32::try_from(report.conflicts.len() + report.resolved_conflicts)
                        .unwrap_or(u32::MAX),
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    message: summary_message(report),
                },
            ),
            Err(e) => (
                RunStatus::Failed,
                RunSummary {
                    succeeded: 0,
                    failed: 0,
                    timed_out: 0,
                    cancelled: 0,
                    skipped: 0,
                    conflicts: 0,
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    message: Some(e.to_string()),
                },
            ),
        };
        let _ = events.publish_run(EventKind::RunFinished { status, summary });
        let closed = bus.close();
        store.release_owner(&run);
        let report = outcome?;
        closed?;
        Ok(report)
    }
}

/// The run's base snapshot: reopened on resume; for a `head` base, shared by every run of the
/// same commit (`.forge/bases/<commit>`, the run's `base` a symlink to it), captured by the
/// first of them; else captured for this run.
fn base_snapshot(
    store: &RunStore,
    repo: &Path,
    mode: BaseMode,
    base_dir: &Path,
    blobs: &BlobStore,
) -> Result<BaseSnapshot, ExecError> {
    if std::fs::symlink_metadata(base_dir).is_ok() {
        return Ok(BaseSnapshot::open(base_dir)?);
    }
    if mode == BaseMode::Head
        && let Some(commit) = head_commit(repo)
    {
        let bases = store.bases_dir();
        std::fs::create_dir_all(&bases).map_err(|e| ExecError::io("create", &bases, e))?;
        let cached = bases.join(&commit);
        // One capture per commit, even when runs start together.
        let lock_path = bases.join(format!("{commit}.lock"));
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| ExecError::io("create", &lock_path, e))?;
        lock.lock()
            .map_err(|e| ExecError::io("lock", &lock_path, e))?;
        // A base an older version cached lacks what attempts need now: captured again.
        if !BaseSnapshot::is_current(&cached) {
            if cached.exists() {
                std::fs::remove_dir_all(&cached)
                    .map_err(|e| ExecError::io("remove", &cached, e))?;
            }
            BaseSnapshot::capture(repo, mode, &cached, blobs)?;
        }
        drop(lock);
        std::os::unix::fs::symlink(Path::new("../../bases").join(&commit), base_dir)
            .map_err(|e| ExecError::io("link", base_dir, e))?;
        return Ok(BaseSnapshot::open(base_dir)?);
    }
    Ok(BaseSnapshot::capture(repo, mode, base_dir, blobs)?)
}

/// The commit `HEAD` names in the repository at `repo`, if any.
fn head_commit(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .current_dir(repo)
        .args(["rev-parse", "--verify", "-q", "HEAD^{commit}"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && commit.len() >= 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(commit)
}

fn count(report: &RunReport, status: TaskStatus) -> u32 {
    u32::try_from(report.count(status)).unwrap_or(u32::MAX)
}

/// Why a run did not succeed, in one line (none when it did).
fn summary_message(report: &RunReport) -> Option<String> {
    if report.cancelled {
        return Some(format!(
            "cancelled; resume with `forge resume {}`",
            report.run
        ));
    }
    let failed: Vec<&str> = report
        .tasks
        .iter()
        .filter(|t| t.status != TaskStatus::Succeeded)
        .map(|t| t.id.as_str())
        .collect();
    if !failed.is_empty() {
        return Some(format!("tasks not succeeded: {}", failed.join(", ")));
    }
    if !report.conflicts.is_empty() {
        let paths: Vec<&str> = report.conflicts.iter().map(|c| c.path.as_str()).collect();
        return Some(format!("unresolved merge conflicts: {}", paths.join(", ")));
    }
    if let Some(gate) = report.gate.as_ref().filter(|g| !g.passed()) {
        return Some(match &report.bisect {
            Some(b) if !b.cancelled => format!("gate failed: {}; {}", gate.summary(), b.message()),
            _ => format!("gate failed: {}", gate.summary()),
        });
    }
    None
}

/// A hash of the plan as run, for `run_started`.
fn plan_hash(plan: &Plan) -> String {
    forge_staging::ContentHash::of(plan.to_toml().as_bytes()).to_string()
}

/// The plan's `[merge]` rules; paths matched by some task's `appends` default to `union`.
fn merge_rules(plan: &Plan) -> Result<MergeRules, ExecError> {
    let mut rules: Vec<(String, MergeStrategy)> = plan
        .merge
        .iter()
        .map(|r| (r.pattern.as_str().to_owned(), r.strategy.clone()))
        .collect();
    for task in &plan.tasks {
        for claim in &task.appends {
            let pattern = claim.pattern.as_str();
            if !rules.iter().any(|(p, _)| p == pattern) {
                rules.push((pattern.to_owned(), MergeStrategy::Union));
            }
        }
    }
    Ok(MergeRules::new(
        rules.iter().map(|(p, s)| (p.as_str(), s.clone())),
    )?)
}

/// Runs blocking work (file-system walks, staging, merging) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::Store(format!("a background task failed: {e}")))
}

/// Reads a run's `result.json`.
pub(crate) fn read_result(store: &RunStore, run: &RunId) -> Result<RunResult, ExecError> {
    read_json(&store.result_path(run))
}

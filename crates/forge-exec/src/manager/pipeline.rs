//! One attempt of a task through the pipeline: locks, workspace, agent, capture, merge.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use forge_events::{ClaimRecord, EventKind, EventSink as _, OutputStream, TaskId, TaskStatus};
use forge_locks::{AcquireOptions, Claim, LockError, LockSet, OwnerId};
use forge_merge::{
    Conflict, Gate, GateCommand, GateReport, IntegrationOutcome, IntegrationStatus, Violation,
};
use forge_staging::{ChangeSet, Snapshot, Workspace};

use super::{Shared, blocking};
use crate::ExecError;
use crate::agent::{AgentEvent, OutputFormat, OutputParser, PromptVars};
use crate::plan::Task;
use crate::process::{AttemptEnv, Limits, ProcessOptions, run_process_in};
use crate::runner::{Pass, Ran};
use crate::sched::{AttemptContext, CancelHandle, TaskOutcome, TaskRunner};
use crate::store::write_json;

/// Raw output lines published as `task_output` per attempt and second, at most (the log
/// file has them all).
const OUTPUT_EVENTS_PER_SECOND: u32 = 20;

/// The [`TaskRunner`] of the `ExecutionManager`.
pub(crate) struct PipelineRunner {
    shared: Arc<Shared>,
}

impl PipelineRunner {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait::async_trait]
impl TaskRunner for PipelineRunner {
    async fn run(&self, task: &Task, attempt: u32, ctx: AttemptContext) -> TaskOutcome {
        // A spent budget starts nothing new.
        if let Some(why) = super::budget::refuse_start(&self.shared, task) {
            return TaskOutcome::failed(why);
        }
        // 1. Locks: those a failed attempt kept for its retry, or taken now.
        let kept = self.shared.kept_locks.lock().remove(&task.id);
        let locks = match kept {
            Some(locks) => locks,
            None => match acquire(&self.shared, task, attempt, &ctx).await {
                Ok(Some(locks)) => locks,
                Ok(None) => return cancelled("cancelled while waiting for locks"),
                Err(e) => return TaskOutcome::failed(e.to_string()),
            },
        };
        let outcome = match attempt_task(&self.shared, task, attempt, &ctx).await {
            Ok(outcome) => outcome,
            Err(e) => TaskOutcome::failed(e.to_string()),
        };
        // A failed attempt may be retried: the task keeps its locks (its place) until the
        // scheduler says it has ended (`task_ended`), so that no other task slips in between.
        if matches!(outcome.status, TaskStatus::Failed | TaskStatus::TimedOut)
            && !ctx.cancel.is_cancelled()
        {
            self.shared.kept_locks.lock().insert(task.id.clone(), locks);
        }
        outcome
    }

    fn reports_start(&self) -> bool {
        true
    }

    fn task_ended(&self, task: &TaskId) {
        // Dropping the set releases the claims.
        drop(self.shared.kept_locks.lock().remove(task));
    }
}

fn claim_records(claims: &[Claim]) -> Vec<ClaimRecord> {
    claims
        .iter()
        .map(|c| ClaimRecord {
            mode: match c.mode {
                forge_locks::LockMode::Read => "reads",
                forge_locks::LockMode::Write => "writes",
                forge_locks::LockMode::Append => "appends",
            }
            .to_owned(),
            pattern: c.pattern.as_str().to_owned(),
        })
        .collect()
}

fn cancelled(message: &str) -> TaskOutcome {
    TaskOutcome {
        status: TaskStatus::Cancelled,
        ..TaskOutcome::failed(message)
    }
}

/// Takes the task's claims, waiting (and saying for whom) if others hold conflicting ones.
async fn acquire(
    shared: &Shared,
    task: &Task,
    attempt: u32,
    ctx: &AttemptContext,
) -> Result<Option<LockSet>, ExecError> {
    let claims: Vec<Claim> = task.claims().cloned().collect();
    let owner = OwnerId::new(task.id.as_str(), attempt);
    match shared.locks.try_acquire(&owner, &claims) {
        Ok(set) => return Ok(Some(set)),
        Err(LockError::WouldBlock { blocked_by }) => {
            let mut by: Vec<TaskId> = blocked_by
                .iter()
                .filter_map(|o| TaskId::new(o.name()).ok())
                .collect();
            by.dedup();
            shared.publish(
                &task.id,
                EventKind::TaskWaitingLocks {
                    claims: claim_records(&claims),
                    blocked_by: by,
                },
            );
        }
        Err(e) => return Err(ExecError::Store(format!("locks of `{}`: {e}", task.id))),
    }
    let options = AcquireOptions::default();
    tokio::select! {
        set = shared.locks.acquire(&owner, &claims, &options) => match set {
            Ok(set) => Ok(Some(set)),
            Err(LockError::Deadlock { cycle, .. }) => {
                let cycle: Vec<TaskId> = cycle.iter().filter_map(|o| TaskId::new(o.name()).ok()).collect();
                shared.publish(&task.id, EventKind::LockDeadlock { cycle, victim: task.id.clone() });
                Err(ExecError::Store(format!("`{}` was chosen to break a lock deadlock", task.id)))
            }
            Err(e) => Err(ExecError::Store(format!("locks of `{}`: {e}", task.id))),
        },
        () = ctx.cancel.cancelled() => {
            shared.locks.release_all(&owner);
            Ok(None)
        }
    }
}

/// The integrated tree now, as a snapshot to stage from (one layer per version, stacked).
async fn current_snapshot(shared: &Arc<Shared>) -> Result<Arc<Snapshot>, ExecError> {
    super::layers::current(shared).await
}

/// What a conflicting first pass tells the agent when it runs again on top.
fn describe_conflicts(shared: &Shared, task: &Task, outcome: &IntegrationOutcome) -> String {
    let mut text = String::from(
        "\n\n---\nForge: your previous changes conflicted with work other tasks finished meanwhile. \
         You are now running on top of the integrated tree, which already holds their work. \
         Make your changes again so that both are kept.\n",
    );
    for c in &outcome.conflicts {
        let _ = write!(
            text,
            "\n- `{}` ({}): also changed by {}",
            c.path,
            c.kind,
            c.tasks
                .iter()
                .filter(|t| t.task() != Some(task.id.as_str()))
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(marked) = c.marked.as_ref().and_then(|h| shared.blobs.read(h).ok()) {
            let marked = String::from_utf8_lossy(&marked);
            let shown: String = marked.chars().take(4000).collect();
            let _ = write!(text, "; the file with conflict markers:\n```\n{shown}\n```");
        }
    }
    text
}

/// Publishes a merge's conflicts and result, records them, in the integration's order.
fn record_integration(shared: &Shared, task: &Task, attempt: u32, outcome: &IntegrationOutcome) {
    let mut conflicts = shared.conflicts.lock();
    for c in &outcome.conflicts {
        publish_conflict(shared, &task.id, c, c.resolved);
        if c.resolved {
            conflicts.1 += 1;
        } else {
            conflicts.0.push(c.clone());
        }
    }
    shared.publish(
        &task.id,
        EventKind::MergeIntegrated {
            files: outcome
                .integrated
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        },
    );
    shared.integrated.lock().push((task.id.clone(), attempt));
}

/// The run's process options with the task's limits and the plan's isolation requirement.
fn attempt_options(shared: &Shared, task: &Task) -> ProcessOptions {
    let mut options = shared.process.clone();
    options.limits = Limits {
        memory: task.memory,
        cpus: task.cpus,
    };
    // The repository path shows the workspace (with a PID namespace, where one can be had).
    options.repo_view = Some(crate::process::RepoView::new(
        shared.store.root().parent().unwrap_or(shared.store.root()),
    ));
    if shared.plan.isolation.require {
        options.pid_namespace = true;
        options.require_isolation = true;
    }
    options
}

fn publish_conflict(shared: &Shared, task: &TaskId, c: &Conflict, resolved: bool) {
    shared.publish(
        task,
        EventKind::MergeConflict {
            path: c.path.as_str().to_owned(),
            tasks: c
                .tasks
                .iter()
                // The working tree is not a task; task ids came from valid `TaskId`s.
                .filter_map(|t| t.task().and_then(|id| TaskId::new(id).ok()))
                .collect(),
            strategy: c.strategy.to_string(),
            resolved,
        },
    );
}

/// Turns what the agent printed into events.
pub(crate) struct OutputEvents<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) task: &'a TaskId,
    pub(crate) parser: OutputParser,
    pub(crate) text: bool,
    pub(crate) buf: Vec<AgentEvent>,
    pub(crate) window: Instant,
    pub(crate) in_window: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) attempt: u32,
    /// Cancelled to stop the agent when its parser gives up on it.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// Why the agent was stopped: it kept failing to reach its model.
    pub(crate) gave_up: Option<String>,
    /// The task (its model and budget).
    pub(crate) spec: &'a Task,
    /// Why the agent was stopped: its task or the run went over budget.
    pub(crate) over_budget: Option<String>,
    /// The session the agent named.
    pub(crate) session: Option<String>,
}

impl<'a> OutputEvents<'a> {
    /// For an agent whose output is in `format`.
    pub(crate) fn new(
        shared: &'a Shared,
        spec: &'a Task,
        attempt: u32,
        format: OutputFormat,
        ctx: &AttemptContext,
    ) -> Self {
        Self {
            shared,
            task: &spec.id,
            parser: OutputParser::new(format),
            text: format == OutputFormat::Text,
            buf: Vec::new(),
            window: Instant::now(),
            in_window: 0,
            last_error: None,
            attempt,
            stop: ctx.cancel.child_token(),
            gave_up: None,
            spec,
            over_budget: None,
            session: None,
        }
    }

    pub(crate) fn line(&mut self, stream: OutputStream, line: &str) {
        self.parser.line(stream, line, &mut self.buf);
        self.publish_parsed();
        // Raw lines of plain-text agents (and anyone's stderr), rate-limited.
        if self.text || stream == OutputStream::Stderr {
            if self.window.elapsed().as_secs() >= 1 {
                self.window = Instant::now();
                self.in_window = 0;
            }
            if self.in_window < OUTPUT_EVENTS_PER_SECOND {
                self.in_window += 1;
                self.shared.publish(
                    self.task,
                    EventKind::TaskOutput {
                        stream,
                        line: line.to_owned(),
                    },
                );
            }
        }
    }

    /// After the process ended: what the parser held back (a final result, buffered text).
    pub(crate) fn finish(&mut self) {
        self.parser.finish(&mut self.buf);
        self.publish_parsed();
    }

    fn publish_parsed(&mut self) {
        for event in self.buf.drain(..) {
            let kind = match event {
                AgentEvent::Progress {
                    message,
                    tool,
                    files,
                } => EventKind::TaskProgress {
                    message,
                    tool,
                    files,
                },
                AgentEvent::Usage {
                    tokens_in,
                    tokens_out,
                    cost_usd,
                } => {
                    let (cost_usd, over) = super::budget::on_usage(
                        self.shared,
                        self.spec,
                        tokens_in,
                        tokens_out,
                        cost_usd,
                    );
                    if let Some(why) = over
                        && self.over_budget.is_none()
                    {
                        self.stop.cancel();
                        self.over_budget = Some(why);
                    }
                    EventKind::TaskUsage {
                        tokens_in,
                        tokens_out,
                        cost_usd,
                    }
                }
                AgentEvent::Error(message) => {
                    self.last_error = Some(message.clone());
                    EventKind::TaskProgress {
                        message: format!("error: {message}"),
                        tool: None,
                        files: Vec::new(),
                    }
                }
                AgentEvent::Result { text, is_error } => {
                    if is_error {
                        self.last_error = Some(text.clone());
                    }
                    continue;
                }
                AgentEvent::Session(session) => EventKind::TaskSession {
                    attempt: self.attempt,
                    session: self.session.insert(session).clone(),
                },
                AgentEvent::GiveUp(reason) => {
                    self.stop.cancel();
                    let message = format!("giving up: {reason}");
                    self.gave_up = Some(reason);
                    EventKind::TaskProgress {
                        message,
                        tool: None,
                        files: Vec::new(),
                    }
                }
            };
            self.shared.publish(self.task, kind);
        }
    }
}

/// Runs one attempt, start to end, under the task's locks (held by the caller until after the
/// changes were integrated).
#[allow(clippy::too_many_lines)] // the pipeline, step by step
async fn attempt_task(
    shared: &Arc<Shared>,
    task: &Task,
    attempt: u32,
    ctx: &AttemptContext,
) -> Result<TaskOutcome, ExecError> {
    let Some(profile) = shared.profiles.get(&task.agent) else {
        return Ok(TaskOutcome::failed(format!(
            "unknown agent profile `{}`",
            task.agent
        )));
    };
    let attempt_dir = shared
        .store
        .attempt_dir(&shared.run, task.id.as_str(), attempt);
    std::fs::create_dir_all(&attempt_dir).map_err(|e| ExecError::io("create", &attempt_dir, e))?;
    // A retried task starts from its previous attempt: prompt, session, workspace state.
    let start = super::retry::attempt_start(shared, task, profile);
    let mut prompt = start.prompt;
    let mut session = start.session;
    let mut restore = start.restore;
    let mut pass = 0u32;
    // Rounds of `check` feedback so far (the agent runs again in the same state).
    let mut check_round = 0u32;
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(cancelled("cancelled before the agent started"));
        }
        // 2. A workspace from the integrated tree as it is now.
        let snapshot = current_snapshot(shared).await?;
        // A cluster runner runs the attempt elsewhere (no per-task checks or session resume
        // there yet); the local route below stages, runs and captures on this machine.
        let changes: ChangeSet = if let Some(remote) = shared.runner.clone() {
            let ran = remote
                .run(
                    shared,
                    Pass {
                        task,
                        attempt,
                        pass,
                        prompt: &prompt,
                        snapshot,
                        ctx,
                        attempt_dir: &attempt_dir,
                        profile,
                    },
                )
                .await?;
            match ran {
                Ran::Changes(changes) => changes,
                Ran::Ended(outcome) => return Ok(outcome),
            }
        } else {
            let suffix = match (pass, check_round) {
                (0, 0) => String::new(),
                (0, n) => format!("-check{n}"),
                (p, 0) => format!("-rerun{p}"),
                (p, n) => format!("-rerun{p}-check{n}"),
            };
            let name = format!("{}-{attempt}{suffix}", task.id);
            let stager = shared.stager.clone();
            let ws: Workspace = {
                let _turn = shared.heavy.acquire().await;
                blocking(move || stager.stage(&snapshot, &name)).await??
            };
            if let Some(changes) = restore.take() {
                let (root, blobs) = (ws.host_path().to_path_buf(), shared.blobs.clone());
                blocking(move || super::retry::restore_changes(&root, &changes, &blobs)).await??;
            }
            if pass == 0 && check_round == 0 {
                shared.publish(
                    &task.id,
                    EventKind::TaskStarted {
                        attempt,
                        agent: task.agent.clone(),
                        workspace: ws.path().display().to_string(),
                        strategy: ws.kind().name().to_owned(),
                    },
                );
            }
            // 3. The agent.
            let prompt_file = attempt_dir.join(format!("prompt{suffix}.md"));
            std::fs::write(&prompt_file, &prompt)
                .map_err(|e| ExecError::io("write", &prompt_file, e))?;
            let vars = PromptVars {
                prompt: &prompt,
                prompt_file: &prompt_file,
                model: task.model.as_deref(),
            };
            let resumed = match &session {
                Some(id) => profile.resume_command(&vars, id),
                None => Ok(None),
            };
            let mut spec = match resumed {
                Ok(Some(spec)) => Ok(spec),
                Ok(None) => profile.command(&vars),
                Err(e) => Err(e),
            }
            .map_err(|e| ExecError::Agent(e.to_string()))?;
            ws.path().clone_into(&mut spec.cwd);
            spec.env
                .extend(task.env.iter().map(|(k, v)| (k.into(), v.into())));
            let log_path = attempt_dir.join(format!("output{suffix}.log"));
            let mut output = OutputEvents {
                shared,
                task: &task.id,
                parser: OutputParser::new(profile.format)
                    .with_workspace(ws.path())
                    .with_view(shared.store.root().parent().unwrap_or(ws.path())),
                text: profile.format == OutputFormat::Text,
                buf: Vec::new(),
                window: Instant::now(),
                in_window: 0,
                last_error: None,
                attempt,
                stop: ctx.cancel.child_token(),
                gave_up: None,
                spec: task,
                over_budget: None,
                session: None,
            };
            let stop = output.stop.clone();
            let env = AttemptEnv {
                run: &shared.run,
                task: task.id.as_str(),
                attempt,
            };
            let mut options = attempt_options(shared, task);
            let state = match crate::agent::state::for_task(profile, &task.env, &attempt_dir) {
                Ok(state) => state,
                Err(e) => {
                    dispose(ws).await;
                    return Ok(TaskOutcome::failed(e.to_string()));
                }
            };
            if let Some(view) = &mut options.repo_view {
                view.user_git = ws.snapshot().base().user_git_link();
            }
            if let Some(state) = &state {
                let (var, dir) = state.env();
                spec.env.push((var, dir));
                if let Some(view) = &mut options.repo_view {
                    view.writable.push(state.dir().to_path_buf());
                }
            }
            let exit = run_process_in(
                &spec,
                &env,
                &log_path,
                &mut |stream, line| output.line(stream, line),
                &stop,
                &ctx.kill,
                &options,
                Some(&|cmd| ws.prepare_command(cmd).map_err(std::io::Error::other)),
            )
            .await;
            if let Some(state) = state {
                state.finish();
            }
            output.finish();
            let last_error = output
                .last_error
                .take()
                .or_else(|| output.parser.last_stderr().map(str::to_owned));
            let gave_up = output.gave_up.take();
            let over_budget = output.over_budget.take();
            let agent_session = output.session.take();
            let exit = match exit {
                Ok(exit) => exit,
                Err(e) => {
                    dispose(ws).await;
                    return Ok(TaskOutcome::failed(format!(
                        "could not start `{}` for agent `{}`: {e}",
                        spec.program.to_string_lossy(),
                        task.agent
                    )));
                }
            };
            if let Some(why) = &exit.no_namespace
                && !shared.warned_no_namespace.swap(true, Ordering::Relaxed)
            {
                let _ = shared.events.publish(
                None,
                EventKind::RunWarning {
                    message: format!(
                        "attempts run without their own PID namespace ({why}): a process an agent detaches with `setsid` can outlive its attempt; run as root or allow unprivileged user namespaces, or set `[isolation] require = true` to refuse"
                    ),
                },
            );
            }
            if let Some(reason) = gave_up
                && !ctx.cancel.is_cancelled()
            {
                dispose(ws).await;
                return Ok(TaskOutcome {
                    status: TaskStatus::Failed,
                    exit_code: exit.code,
                    signal: exit.signal,
                    files_changed: Vec::new(),
                    message: Some(format!("the agent could not reach its model: {reason}")),
                });
            }
            if let Some(why) = over_budget
                && !ctx.cancel.is_cancelled()
            {
                dispose(ws).await;
                return Ok(TaskOutcome {
                    status: TaskStatus::Failed,
                    exit_code: exit.code,
                    signal: exit.signal,
                    files_changed: Vec::new(),
                    message: Some(format!("stopped: {why}")),
                });
            }
            if exit.stopped || ctx.cancel.is_cancelled() {
                dispose(ws).await;
                return Ok(TaskOutcome {
                    status: TaskStatus::Cancelled,
                    exit_code: exit.code,
                    signal: exit.signal,
                    files_changed: Vec::new(),
                    message: Some("stopped".into()),
                });
            }
            if exit.code != Some(0) {
                // What it did so far is where a retry of the task starts.
                super::retry::keep_changes_and_dispose(shared, task, attempt, ws).await;
                let what = match (exit.code, exit.signal) {
                    _ if exit.memory_limit_hit => format!(
                        "killed by its memory limit ({}); raise `memory` for this task",
                        task.memory
                            .map_or_else(String::new, crate::process::format_memory)
                    ),
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(code), _) => format!("exited with code {code}"),
                    (None, None) => "ended without a status".to_owned(),
                };
                let message = match last_error {
                    Some(err) => format!("{what}: {}", first_line(&err)),
                    None => what,
                };
                return Ok(TaskOutcome {
                    status: TaskStatus::Failed,
                    exit_code: exit.code,
                    signal: exit.signal,
                    files_changed: Vec::new(),
                    message: Some(message),
                });
            }
            // Checks in the task's workspace; a failure goes back to the agent.
            if !task.check.is_empty() {
                check_round += 1;
                match super::check::run_checks(shared, task, attempt, check_round, &ws, ctx).await?
                {
                    super::check::CheckOutcome::Passed => {}
                    super::check::CheckOutcome::Stopped => {
                        dispose(ws).await;
                        return Ok(cancelled("stopped while its check ran"));
                    }
                    super::check::CheckOutcome::Failed {
                        command,
                        how,
                        output,
                    } => {
                        if check_round > task.check_rounds {
                            super::retry::keep_changes_and_dispose(shared, task, attempt, ws).await;
                            return Ok(TaskOutcome::failed(format!(
                                "its check `{command}` failed ({how}){}",
                                if task.check_rounds > 0 {
                                    format!(
                                        " after {} round(s) of feedback to the agent",
                                        task.check_rounds
                                    )
                                } else {
                                    String::new()
                                }
                            )));
                        }
                        let text = super::check::feedback(&command, &how, &output);
                        // The agent goes on from where it is: same session where it can, same files.
                        let turn = shared.heavy.acquire().await;
                        let (ws, changes) = blocking(move || {
                            let changes = ws.changes();
                            (ws, changes)
                        })
                        .await?;
                        drop(turn);
                        dispose(ws).await;
                        restore = Some(changes?);
                        let continued = agent_session
                            .or_else(|| session.clone())
                            .filter(|_| profile.can_resume());
                        prompt = match &continued {
                            Some(_) => text,
                            None => format!(
                                "{}\n\n---\nYour changes so far are in the workspace.\n{text}",
                                task.prompt
                            ),
                        };
                        session = continued;
                        continue;
                    }
                }
            }
            // 4. Capture, 5. persist: durable before anything is integrated or recorded.
            let turn = shared.heavy.acquire().await;
            let (ws, changes) = blocking(move || {
                let changes = ws.changes();
                (ws, changes)
            })
            .await?;
            drop(turn);
            dispose(ws).await;
            changes?
        };
        {
            let (blobs, path, changes) = (
                shared.blobs.clone(),
                shared
                    .store
                    .changes_path(&shared.run, task.id.as_str(), attempt),
                changes.clone(),
            );
            blocking(move || -> Result<(), ExecError> {
                blobs.sync()?;
                write_json(&path, &changes)
            })
            .await??;
        }
        if !changes.skipped().is_empty() {
            return Ok(TaskOutcome::failed(super::audit::uncarried(
                changes.skipped(),
            )));
        }
        let violations: Vec<Violation> = {
            let (task2, changes2, blobs) = (task.clone(), changes.clone(), shared.blobs.clone());
            blocking(move || super::audit::claim_violations(&task2, &changes2, &blobs)).await??
        };
        if !violations.is_empty() {
            shared.publish(
                &task.id,
                EventKind::ClaimViolation {
                    paths: violations
                        .iter()
                        .map(|v| v.path.as_str().to_owned())
                        .collect(),
                    policy: shared.plan.on_violation.to_string(),
                },
            );
        }
        // 6. Merge, in the integration's order (events published under its lock).
        let outcome = {
            let (shared2, task2, changes2) = (shared.clone(), task.clone(), changes.clone());
            let violations = violations.clone();
            blocking(move || -> Result<IntegrationOutcome, ExecError> {
                let order = shared2.order.get(&task2.id).copied().unwrap_or(u64::MAX);
                let mut integration = shared2.integration.lock();
                let outcome = integration.integrate_audited(
                    task2.id.as_str(),
                    &changes2,
                    order,
                    violations,
                )?;
                if matches!(
                    outcome.status,
                    IntegrationStatus::Integrated | IntegrationStatus::Conflicted
                ) {
                    record_integration(&shared2, &task2, attempt, &outcome);
                }
                Ok(outcome)
            })
            .await??
        };
        let files: Vec<String> = changes.paths().map(|p| p.as_str().to_owned()).collect();
        match &outcome.status {
            IntegrationStatus::Integrated | IntegrationStatus::Conflicted => {
                return Ok(TaskOutcome {
                    files_changed: files,
                    ..TaskOutcome::succeeded()
                });
            }
            IntegrationStatus::Rejected => {
                let shown: Vec<String> = violations
                    .iter()
                    .take(10)
                    .map(ToString::to_string)
                    .collect();
                let more = violations.len().saturating_sub(shown.len());
                return Ok(TaskOutcome::failed(format!(
                    "changed files its claims do not permit ({}{}); nothing of it was \
                     integrated (on_violation = \"reject\"): claim them in `writes`, or set \
                     on_violation",
                    shown.join("; "),
                    if more > 0 {
                        format!("; and {more} more")
                    } else {
                        String::new()
                    }
                )));
            }
            IntegrationStatus::NeedsRerun { .. } => {
                if pass >= shared.plan.merge_reruns {
                    let mut conflicts = shared.conflicts.lock();
                    for c in &outcome.conflicts {
                        publish_conflict(shared, &task.id, c, false);
                        conflicts.0.push(c.clone());
                    }
                    let paths: Vec<&str> =
                        outcome.conflicts.iter().map(|c| c.path.as_str()).collect();
                    return Ok(TaskOutcome::failed(format!(
                        "merge conflict on {} still unresolved after {} re-run(s) on top of the \
                         integrated tree",
                        paths.join(", "),
                        pass
                    )));
                }
                let paths: Vec<&str> = outcome.conflicts.iter().map(|c| c.path.as_str()).collect();
                shared.publish(
                    &task.id,
                    EventKind::TaskProgress {
                        message: format!(
                            "merge conflict on {}: re-running on top of the integrated tree",
                            paths.join(", ")
                        ),
                        tool: None,
                        files: paths.iter().map(|p| (*p).to_owned()).collect(),
                    },
                );
                prompt = format!(
                    "{}{}",
                    task.prompt,
                    describe_conflicts(shared, task, &outcome)
                );
                session = None;
                pass += 1;
            }
        }
    }
}

pub(crate) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Removes a workspace off the async threads; a failure leaves it for `forge gc`. Not
/// throttled: disposing frees what the next stages need.
pub(crate) async fn dispose(ws: Workspace) {
    let _ = blocking(move || ws.dispose()).await;
}

/// Runs the gate's commands one after another in a workspace staged from the integrated
/// tree, with an event before and after each.
pub(crate) async fn run_gate(
    shared: &Arc<Shared>,
    cancel: &CancelHandle,
) -> Result<GateReport, ExecError> {
    let started = Instant::now();
    let snapshot = current_snapshot(shared).await?;
    // `[gate] on = "cluster"`: a job of the cluster runner, on the integrated tree.
    if shared.plan.gate.on == crate::plan::GateOn::Cluster
        && let Some(runner) = &shared.runner
    {
        return runner.gate(shared, snapshot, cancel).await;
    }
    let stager = shared.stager.clone();
    let ws = blocking(move || stager.stage(&snapshot, "gate")).await??;
    let ws = Arc::new(ws);
    let mut report = GateReport::default();
    let mut failed = false;
    for command in &shared.plan.gate.commands {
        let gate = Gate {
            commands: vec![GateCommand {
                name: command.clone(),
                command: command.clone(),
                timeout: shared.plan.gate.timeout,
            }],
            parallel: false,
        };
        if failed || cancel.is_cancelled() {
            report.commands.push(forge_merge::CommandReport {
                name: command.clone(),
                command: command.clone(),
                status: forge_merge::CommandStatus::Skipped,
                duration_ms: 0,
                output: String::new(),
                output_truncated: false,
                tests: None,
            });
            continue;
        }
        let _ = shared.events.publish_run(EventKind::GateStarted {
            command: command.clone(),
        });
        let ws2 = ws.clone();
        let mut results = blocking(move || gate.run_in(&ws2)).await?;
        let Some(result) = results.pop() else {
            continue;
        };
        let _ = shared.events.publish_run(EventKind::GateFinished {
            command: command.clone(),
            passed: result.passed(),
            exit_code: match result.status {
                forge_merge::CommandStatus::Passed => Some(0),
                forge_merge::CommandStatus::Failed { code } => Some(code),
                _ => None,
            },
            duration_ms: result.duration_ms,
            tests_passed: result.tests.map(|t| t.passed),
            tests_failed: result.tests.map(|t| t.failed),
        });
        failed = !result.passed();
        report.commands.push(result);
    }
    if let Ok(ws) = Arc::try_unwrap(ws) {
        dispose(ws).await;
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

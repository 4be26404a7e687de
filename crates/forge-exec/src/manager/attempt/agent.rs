//! Step 3, agent (on this machine): the profile's command in the attempt's workspace, in its own
//! process group (and PID namespace where the host allows), every line in the attempt's output
//! log, its JSONL parsed into progress, usage and session events as it comes.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use forge_events::{EventKind, EventSink as _, OutputStream, TaskId, TaskStatus};

use super::Attempt;
use crate::ExecError;
use crate::manager::Shared;
use crate::plan::Task;
use crate::process::{AttemptEnv, Limits, ProcessExit, ProcessOptions, run_process_in};
use crate::sched::{AttemptContext, TaskOutcome};
use forge_agents::{AgentEvent, OutputFormat, OutputParser, PromptVars};

/// Raw output lines published as `task_output` per attempt and second, at most (the log
/// file has them all).
const OUTPUT_EVENTS_PER_SECOND: u32 = 20;

/// Runs the agent in the attempt's workspace. A run that did not succeed ends the attempt (what
/// a failed agent changed is kept for a retry to start from); else the attempt goes on with the
/// session the agent named.
pub(crate) async fn run(shared: &Arc<Shared>, mut a: Attempt) -> Attempt {
    let ran = match spawn(shared, &mut a).await {
        Ok(Ok(ran)) => ran,
        Ok(Err(outcome)) => return a.end(outcome),
        Err(e) => return a.fail(&e),
    };
    a.agent_session = ran.session;
    let exit = ran.exit;
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
    let cancelled = a.ctx.cancel.is_cancelled();
    let ended = |message: String| TaskOutcome {
        status: TaskStatus::Failed,
        exit_code: exit.code,
        signal: exit.signal,
        files_changed: Vec::new(),
        message: Some(message),
    };
    if let Some(reason) = ran.gave_up
        && !cancelled
    {
        return a.end(ended(format!(
            "the agent could not reach its model: {reason}"
        )));
    }
    if let Some(why) = ran.over_budget
        && !cancelled
    {
        return a.end(ended(format!("stopped: {why}")));
    }
    if exit.stopped || cancelled {
        return a.end(TaskOutcome {
            status: TaskStatus::Cancelled,
            ..ended("stopped".into())
        });
    }
    if exit.code != Some(0) {
        let what = match (exit.code, exit.signal) {
            _ if exit.memory_limit_hit => format!(
                "killed by its memory limit ({}); raise `memory` for this task",
                a.task
                    .memory
                    .map_or_else(String::new, crate::process::format_memory)
            ),
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(code), _) => format!("exited with code {code}"),
            (None, None) => "ended without a status".to_owned(),
        };
        let message = match ran.last_error {
            Some(err) => format!("{what}: {}", first_line(&err)),
            None => what,
        };
        // What it did so far is where a retry of the task starts.
        a = super::capture::keep_for_retry(shared, a).await;
        return a.end(ended(message));
    }
    a
}

/// What one run of the agent gave.
struct Ran {
    exit: ProcessExit,
    /// Its last error (or stderr line), for the failure's message.
    last_error: Option<String>,
    /// Why it was stopped: it kept failing to reach its model.
    gave_up: Option<String>,
    /// Why it was stopped: over budget.
    over_budget: Option<String>,
    /// The session it named.
    session: Option<String>,
}

/// Writes the prompt, builds the command (continuing the session where the profile can) and
/// runs it to its end. `Ok(Err(_))`: the agent could not be started.
async fn spawn(
    shared: &Arc<Shared>,
    a: &mut Attempt,
) -> Result<Result<Ran, TaskOutcome>, ExecError> {
    let Some(ws) = a.workspace.as_ref() else {
        return Err(ExecError::Store(format!(
            "attempt {} of `{}` has no workspace to run its agent in",
            a.number,
            a.id()
        )));
    };
    let (task, profile) = (&a.task, &a.profile);
    let suffix = a.suffix();
    let prompt_file = a.dir.join(format!("prompt{suffix}.md"));
    std::fs::write(&prompt_file, &a.prompt).map_err(|e| ExecError::io("write", &prompt_file, e))?;
    let vars = PromptVars {
        prompt: &a.prompt,
        prompt_file: &prompt_file,
        model: task.model.as_deref(),
    };
    let resumed = match &a.session {
        Some(id) => profile.resume_command(&vars, id),
        None => Ok(None),
    };
    let mut spec = match resumed {
        Ok(Some(line)) => Ok(line),
        Ok(None) => profile.command(&vars),
        Err(e) => Err(e),
    }
    .map(crate::CommandSpec::from)
    .map_err(|e| ExecError::Agent(e.to_string()))?;
    ws.path().clone_into(&mut spec.cwd);
    spec.env
        .extend(task.env.iter().map(|(k, v)| (k.into(), v.into())));
    let log_path = a.dir.join(format!("output{suffix}.log"));
    let mut output = OutputEvents::new(shared, task, a.number, profile.format, &a.ctx);
    output.parser = OutputParser::new(profile.format)
        .with_workspace(ws.path())
        .with_view(shared.store.root().parent().unwrap_or(ws.path()));
    let stop = output.stop.clone();
    let env = AttemptEnv {
        run: &shared.run,
        task: task.id.as_str(),
        attempt: a.number,
    };
    let mut options = attempt_options(shared, task);
    let state =
        match profile.private_state(&a.dir.parent().unwrap_or(&a.dir).join("home"), &task.env) {
            Ok(state) => state,
            Err(e) => return Ok(Err(TaskOutcome::failed(e.to_string()))),
        };
    let tmp = match own_tmp(shared, a.dir.join(format!("tmp{suffix}"))).await? {
        Ok(tmp) => tmp,
        Err(outcome) => return Ok(Err(outcome)),
    };
    private_state(
        &mut spec,
        options.repo_view.as_mut(),
        state.as_ref(),
        ws.snapshot().base().user_git_link(),
        tmp.as_deref(),
    );
    // The spawn sets the directory (`spec.cwd`, the workspace) and `FORGE_WORKSPACE` itself;
    // without a hook it can take its fast routes (no copy of Forge, see `process/leader.rs`).
    let prepare =
        |cmd: &mut std::process::Command| ws.prepare_command(cmd).map_err(std::io::Error::other);
    let exit = run_process_in(
        &spec,
        &env,
        &log_path,
        &mut |stream, line| output.line(stream, line),
        &stop,
        &a.ctx.kill,
        &options,
        ws.needs_command_hook()
            .then_some(&prepare as &crate::process::PrepareCommand<'_>),
    )
    .await;
    if let Some(state) = state {
        state.finish();
    }
    drop_tmp(shared, &task.id, a.number, tmp).await?;
    output.finish();
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            return Ok(Err(TaskOutcome::failed(format!(
                "could not start `{}` for agent `{}`: {e}",
                spec.program.to_string_lossy(),
                task.agent
            ))));
        }
    };
    Ok(Ok(Ran {
        exit,
        last_error: output
            .last_error
            .take()
            .or_else(|| output.parser.last_stderr().map(str::to_owned)),
        gave_up: output.gave_up.take(),
        over_budget: output.over_budget.take(),
        session: output.session.take(),
    }))
}

/// The first line of a message.
pub(crate) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
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
        self.parser
            .line(crate::process::agent_stream(stream), line, &mut self.buf);
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
                    let (cost_usd, over) = crate::manager::budget::on_usage(
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

/// The attempt's own directory for temporary files, `tmp` (`/tmp` in its view, see
/// `process::RepoView::tmp`), made empty for each attempt; removed when the agent has ended.
/// None where the plan shares the host's `/tmp` (`[isolation] shared_tmp`).
async fn own_tmp(
    shared: &Shared,
    tmp: std::path::PathBuf,
) -> Result<Result<Option<std::path::PathBuf>, TaskOutcome>, ExecError> {
    if shared.plan.isolation.shared_tmp {
        return Ok(Ok(None));
    }
    let made = {
        let tmp = tmp.clone();
        crate::manager::blocking(move || {
            if std::fs::symlink_metadata(&tmp).is_ok() {
                remove_tmp(&tmp).map_err(|e| format!("remove {}: {e}", tmp.display()))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(|e| format!("create {}: {e}", tmp.display()))
        })
        .await?
    };
    Ok(made.map(|()| Some(tmp)).map_err(|e| {
        TaskOutcome::failed(format!(
            "could not make the attempt's directory for temporary files: {e}"
        ))
    }))
}

/// Removes the attempt's directory for temporary files (see [`own_tmp`]); one that cannot be
/// removed is left with a warning.
async fn drop_tmp(
    shared: &Shared,
    task: &TaskId,
    attempt: u32,
    tmp: Option<std::path::PathBuf>,
) -> Result<(), ExecError> {
    let Some(tmp) = tmp else {
        return Ok(());
    };
    let removed = {
        let tmp = tmp.clone();
        crate::manager::blocking(move || remove_tmp(&tmp)).await?
    };
    if let Err(e) = removed {
        let _ = shared.events.publish(
            Some(task.clone()),
            EventKind::RunWarning {
                message: format!(
                    "could not remove the temporary files of attempt {attempt} ({}): {e}; \
                     remove the directory by hand",
                    tmp.display()
                ),
            },
        );
    }
    Ok(())
}

/// Points the agent at its private state (its CLI's variable, a writable directory in its
/// view) and its own `/tmp`; the view reaches the user's git directory through `user_git`.
fn private_state(
    spec: &mut crate::CommandSpec,
    view: Option<&mut crate::process::RepoView>,
    state: Option<&forge_agents::PrivateState>,
    user_git: Option<std::path::PathBuf>,
    tmp: Option<&std::path::Path>,
) {
    if let Some(state) = state {
        let (var, dir) = state.env();
        spec.env.push((var, dir));
    }
    if let Some(view) = view {
        if let Some(state) = state {
            view.writable.push(state.dir().to_path_buf());
        }
        view.user_git = user_git;
        if let Some(tmp) = tmp {
            view.tmp = Some(tmp.to_path_buf());
            keep_named_in_env(view, spec);
        }
    }
}

/// What the agent's environment names under the host's `/tmp` stays visible in its view: its
/// environment as the spawn makes it (the command's values over Forge's own), but for the
/// variables the spawn sets itself.
fn keep_named_in_env(view: &mut crate::process::RepoView, spec: &crate::CommandSpec) {
    let inherited: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    let mut agent_env: std::collections::BTreeMap<&std::ffi::OsStr, &std::ffi::OsStr> =
        std::collections::BTreeMap::new();
    for (k, v) in inherited.iter().chain(spec.env.iter()) {
        agent_env.insert(k, v);
    }
    for own in ["PWD", "OLDPWD", "TMPDIR"] {
        agent_env.remove(std::ffi::OsStr::new(own));
    }
    view.keep_named_in(agent_env);
}

/// Removes an attempt's directory for temporary files, also where the agent left directories
/// without write permission (a Go module cache, a `chmod -w`): those are made writable first,
/// each through a descriptor opened without following links (a process left behind cannot
/// swap one for a link to elsewhere). Links inside are removed, never followed.
fn remove_tmp(dir: &std::path::Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut todo = vec![rustix::fs::open(dir, flags, Mode::empty())?];
    while let Some(fd) = todo.pop() {
        if let Ok(stat) = rustix::fs::fstat(&fd) {
            let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(stat.st_mode) | Mode::RWXU);
        }
        let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if entry.file_type() == rustix::fs::FileType::Directory
                && name != c"."
                && name != c".."
                && let Ok(child) = rustix::fs::openat(&fd, name, flags, Mode::empty())
            {
                todo.push(child);
            }
        }
    }
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// Read-only directories an agent left are removed; a link to a directory outside is
    /// removed without touching what it points at.
    #[test]
    fn remove_tmp_takes_read_only_directories_and_leaves_links_targets_alone() {
        let root = tempfile::tempdir().unwrap();
        let (tmp, outside) = (root.path().join("tmp"), root.path().join("outside"));
        std::fs::create_dir_all(tmp.join("cache/mod/deep")).unwrap();
        std::fs::write(tmp.join("cache/mod/deep/f"), "x").unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.join("cache/link")).unwrap();
        for dir in ["cache/mod/deep", "cache/mod", "cache"] {
            std::fs::set_permissions(tmp.join(dir), std::fs::Permissions::from_mode(0o500))
                .unwrap();
        }
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o500)).unwrap();
        super::remove_tmp(&tmp).unwrap();
        assert!(!tmp.exists());
        assert!(outside.join("keep").exists());
        let mode = std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o500, "the link's target was changed");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

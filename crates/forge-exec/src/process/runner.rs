//! The one process-group runner: spawn, read, escalate (SIGINT → grace → SIGTERM → grace →
//! SIGKILL on the group), and return only when no process of the group is left.

use std::path::Path;
use std::time::Duration;

use forge_events::OutputStream;
use tokio_util::sync::CancellationToken;

use super::child::{Child, Containment};
use super::group::end_group;
use super::log::LogFile;
use super::reader::{Sink, Stream};
use super::{AttemptEnv, CommandSpec, Limits, RepoView, spawn};

/// Limits and timings of process attempts.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// After SIGINT, how long before SIGTERM.
    pub interrupt_grace: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub terminate_grace: Duration,
    /// Longer lines are cut here (the rest of the line is dropped, the cut is marked).
    pub max_line: usize,
    /// The log file stops growing here (a final line says so); output is still parsed.
    pub max_log_bytes: u64,
    /// Run each attempt in its own PID namespace (see `contain.rs`), so everything it
    /// started ends with it. Costs a `fork`-based spawn instead of the `posix_spawn` fast path.
    pub pid_namespace: bool,
    /// With `pid_namespace`, refuse to run (an error) where no PID namespace can be had,
    /// instead of falling back to the process group.
    pub require_isolation: bool,
    /// Resource limits, enforced by a cgroup per attempt.
    pub limits: Limits,
    /// After the agent exits, how long output still held open by processes it left behind
    /// is read before they are killed and their pipes closed.
    pub drain_after_exit: Duration,
    /// With `pid_namespace` (where one can be had), show the workspace at this repository
    /// path in a private mount namespace, with `.forge/` and the user's git directory
    /// read-only and the namespace's own `/proc` (see `view.rs`). `PWD`, `OLDPWD` and
    /// `FORGE_WORKSPACE` are then the repository path.
    pub repo_view: Option<RepoView>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            interrupt_grace: Duration::from_secs(5),
            terminate_grace: Duration::from_secs(5),
            max_line: 64 * 1024,
            max_log_bytes: 256 * 1024 * 1024,
            pid_namespace: false,
            require_isolation: false,
            limits: Limits::default(),
            drain_after_exit: Duration::from_secs(2),
            repo_view: None,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether Forge stopped it (timeout or cancel).
    pub stopped: bool,
    /// Whether the kernel killed a process of the attempt for its memory limit.
    pub memory_limit_hit: bool,
    /// Whether it ran in its own PID namespace (`None` when none was asked for; `Some(why)`
    /// when one was asked for but the host allows none and it ran in its process group).
    pub no_namespace: Option<String>,
}

/// Spawns `spec`, feeds each output line to the log at `log_path` and to `on_line`, and waits
/// for the process and its whole group. `cancel` stops it gracefully, `kill` at once.
pub async fn run_process(
    spec: &CommandSpec,
    env: &AttemptEnv<'_>,
    log_path: &Path,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
    cancel: &CancellationToken,
    kill: &CancellationToken,
    options: &ProcessOptions,
) -> std::io::Result<ProcessExit> {
    run_process_in(spec, env, log_path, on_line, cancel, kill, options, None).await
}

/// A hook that sets a command up before it is spawned (such as
/// `forge_staging::Workspace::prepare_command`, which may enter a namespace).
///
/// In a PID namespace the agent is started from the command's program, arguments and
/// variables as its getters show them (see `contain.rs`): a hook may add `pre_exec` steps,
/// variables (and remove some) and arguments, but `env_clear` and
/// `arg0` are not seen there; set what the agent needs instead.
pub type PrepareCommand<'a> = dyn Fn(&mut std::process::Command) -> std::io::Result<()> + Sync + 'a;

/// How long a child's pipes stay *quiet* (not registered with the runtime's reactor, read only
/// when the child exits) before they are watched live. Most short commands are done well
/// within it, and then the exit is the attempt's only wake-up; a longer one loses nothing:
/// its output is read live from here on, and at worst it waited this long once on a full pipe.
const LIVE_AFTER: Duration = Duration::from_millis(10);

/// [`run_process`], with `prepare` (when given) called on the command after Forge set it up
/// (arguments, `FORGE_*` variables, process group) and before the standard streams are set and
/// it is spawned: how a workspace puts the process in its directory (and namespace). Without
/// a hook the command is spawned directly (see the module docs).
#[allow(clippy::too_many_arguments)] // the pieces of one attempt, each given by a different part
pub async fn run_process_in(
    spec: &CommandSpec,
    env: &AttemptEnv<'_>,
    log_path: &Path,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
    cancel: &CancellationToken,
    kill: &CancellationToken,
    options: &ProcessOptions,
    prepare: Option<&PrepareCommand<'_>>,
) -> std::io::Result<ProcessExit> {
    run_group(
        spec,
        env,
        Some(log_path),
        on_line,
        cancel,
        kill,
        options,
        prepare,
    )
    .await
}

/// [`run_process_in`] with the log optional: the one runner behind agents, checks, the gate
/// and the planner.
#[allow(clippy::too_many_arguments)] // the pieces of one attempt, each given by a different part
pub(crate) async fn run_group(
    spec: &CommandSpec,
    env: &AttemptEnv<'_>,
    log_path: Option<&Path>,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
    cancel: &CancellationToken,
    kill: &CancellationToken,
    options: &ProcessOptions,
    prepare: Option<&PrepareCommand<'_>>,
) -> std::io::Result<ProcessExit> {
    let (out_pipe, out_child) = std::io::pipe()?;
    let (err_pipe, err_child) = std::io::pipe()?;
    let mut out = Stream::new(OutputStream::Stdout, out_pipe, options.max_line);
    let mut err = Stream::new(OutputStream::Stderr, err_pipe, options.max_line);
    let contain = Containment::new(options, env)?;
    let mut child = Child::spawn(spec, env, prepare, &contain, out_child, err_child)?;
    let pgid = child.pgid();
    let mut sink = Sink {
        log: LogFile::new(log_path, options.max_log_bytes),
        on_line,
    };
    let mut status: Option<spawn::Exit> = None;
    let mut stopped = false;
    let mut killed = false;
    // Once the group is seen empty it stays empty: only members can create members.
    let mut group_gone = pgid.is_none();
    // Escalation: next signal and when.
    let mut escalation: Option<(rustix::process::Signal, tokio::time::Instant)> = None;
    let go_live = tokio::time::sleep(LIVE_AFTER);
    tokio::pin!(go_live);
    let mut live = false;
    // When output is still held open after the agent's exit: the end of the wait for it.
    let mut drain_until: Option<tokio::time::Instant> = None;
    while status.is_none() || out.is_open() || err.is_open() {
        let next_signal_at = escalation.map(|(_, at)| at);
        tokio::select! {
            s = child.wait(), if status.is_none() => {
                status = Some(s?);
                // Usually the pipes are at end-of-file now and this is all the reading there is.
                out.drain(&mut sink);
                err.drain(&mut sink);
                // The leader is gone; whatever it left behind in its group goes too, or the
                // pipes (inherited by grandchildren) would never close.
                if let Some(pgid) = pgid {
                    group_gone = end_group(pgid, options.terminate_grace.min(Duration::from_millis(500))).await;
                }
                if out.is_open() || err.is_open() {
                    out.drain(&mut sink);
                    err.drain(&mut sink);
                    out.go_live(&mut sink);
                    err.go_live(&mut sink);
                    live = true;
                    // Held by a process that left the group (`setsid`): read it a little
                    // longer, then it is killed and its pipes are closed.
                    drain_until = Some(tokio::time::Instant::now() + options.drain_after_exit);
                }
            },
            () = async { if let Some(at) = drain_until { tokio::time::sleep_until(at).await } }, if drain_until.is_some() => {
                drain_until = None;
                if let Some(cgroup) = &contain.cgroup {
                    cgroup.kill_all();
                }
                out.close(&mut sink);
                err.close(&mut sink);
            },
            n = out.read_live(), if out.is_live() => out.on_read(n, &mut sink),
            n = err.read_live(), if err.is_live() => err.on_read(n, &mut sink),
            () = &mut go_live, if !live && status.is_none() => {
                live = true;
                out.go_live(&mut sink);
                err.go_live(&mut sink);
            },
            () = cancel.cancelled(), if !stopped && status.is_none() => {
                stopped = true;
                if let Some(pgid) = pgid {
                    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::INT);
                }
                escalation = Some((rustix::process::Signal::TERM, tokio::time::Instant::now() + options.interrupt_grace));
            },
            () = kill.cancelled(), if !killed && status.is_none() => {
                stopped = true;
                killed = true;
                if let Some(pgid) = pgid {
                    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                }
                // Repeat the kill shortly in case a member was forking at that moment.
                escalation = Some((rustix::process::Signal::KILL, tokio::time::Instant::now() + Duration::from_millis(100)));
            },
            () = async { if let Some(at) = next_signal_at { tokio::time::sleep_until(at).await } }, if next_signal_at.is_some() && status.is_none() => {
                if let (Some(pgid), Some((signal, _))) = (pgid, escalation) {
                    let _ = rustix::process::kill_process_group(pgid, signal);
                    escalation = (signal == rustix::process::Signal::TERM)
                        .then(|| (rustix::process::Signal::KILL, tokio::time::Instant::now() + options.terminate_grace));
                }
            },
        }
    }
    if let Some(pgid) = pgid
        && !group_gone
    {
        end_group(pgid, Duration::ZERO).await;
    }
    let memory_limit_hit = contain.cgroup.as_ref().is_some_and(|cgroup| {
        cgroup.kill_all();
        cgroup.memory_limit_hit()
    });
    sink.log.finish()?;
    let status = status.ok_or_else(|| std::io::Error::other("process status lost"))?;
    Ok(ProcessExit {
        code: status.code,
        signal: status.signal,
        stopped,
        memory_limit_hit,
        no_namespace: contain.no_namespace.clone(),
    })
}

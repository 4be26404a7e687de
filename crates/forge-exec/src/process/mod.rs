//! Running a command as an attempt: its own process group, output read line by line into the
//! attempt's log and a parser, and the whole group stopped on timeout or cancel.
//!
//! Spawning is `posix_spawn` into a new process group: called directly with the parent's
//! environment plus the attempt's variables when no hook has to prepare the command (see
//! `spawn.rs`: std would rebuild the whole environment on every spawn), through
//! `std::process::Command` with `process_group(0)` otherwise (std takes its own `posix_spawn`
//! path unless the hook adds a `pre_exec`).
//!
//! Stopping escalates SIGINT → grace → SIGTERM → grace → SIGKILL on the *group*, and the runner
//! does not return until no process of the group is left (checked in `/proc`), so grandchildren
//! that ignore signals do not outlive their task. A process that leaves the group with `setsid`
//! escapes this; with [`ProcessOptions::pid_namespace`] (the manager's default) the attempt runs
//! in its own PID namespace, which ends with the agent and takes every such process along (see
//! `contain.rs`, which also sets up the cgroup for [`Limits`]). Either way, output still held
//! open after the agent's exit is read for [`ProcessOptions::drain_after_exit`] at most, so an
//! attempt never waits on a pipe held by a leftover process.
//!
//! Every spawn gets `PWD` and `OLDPWD` (the workspace) and a port range of its own
//! (`FORGE_PORT_BASE`, `FORGE_PORT_COUNT`, see [`PortRange`]).
//!
//! An attempt costs little more than the `posix_spawn` itself when its command is short: the
//! child's stdin is one `/dev/null` kept open for the process; its stdout and stderr pipes are
//! not registered with the reactor for the first 10 ms, so until then the only thing waited on
//! is the child's exit (its pidfd), after which the pipes are read to
//! their end without blocking (`preadv2(RWF_NOWAIT)`). A short command thus wakes the runtime
//! once, when it is gone, instead of once for its pipes closing and again for its exit; one
//! that runs longer has its pipes read live from then on (at worst it waited 10 ms on a full
//! pipe once). An attempt whose future is dropped before its end (its caller gave up on it)
//! kills its group on the way out.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use forge_events::{OutputStream, RunId, TaskStatus};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::plan::Task;
use crate::sched::{AttemptContext, TaskOutcome, TaskRunner};

mod contain;
mod ports;
mod spawn;
mod view;

pub use contain::{
    AttemptCgroup, CgroupError, Limits, PidNamespaceSupport, format_memory, parse_memory,
    pid_namespace_support,
};
pub use forge_agents::find_program;
pub use ports::{FIRST_PORT, LAST_PORT, PORTS_PER_ATTEMPT, PortRange};
pub use view::RepoView;

/// What to spawn for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program (looked up on `PATH` when it has no `/`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The working directory (also `FORGE_WORKSPACE`).
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
}

impl CommandSpec {
    /// `sh -c <script>` in `cwd`: what the `shell` agent runs.
    pub fn shell(script: &str, cwd: &Path) -> Self {
        Self {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
        }
    }
}

impl From<forge_agents::CommandLine> for CommandSpec {
    /// An agent's command line, to be given its working directory (`cwd` is left empty).
    fn from(line: forge_agents::CommandLine) -> Self {
        Self {
            program: line.program,
            args: line.args,
            cwd: PathBuf::new(),
            env: line.env,
        }
    }
}

/// The agent parsers' name for an output stream.
pub(crate) fn agent_stream(stream: forge_events::OutputStream) -> forge_agents::Stream {
    match stream {
        forge_events::OutputStream::Stdout => forge_agents::Stream::Stdout,
        forge_events::OutputStream::Stderr => forge_agents::Stream::Stderr,
    }
}

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

/// The identity of an attempt, given to the process as `FORGE_*` variables.
#[derive(Debug, Clone)]
pub struct AttemptEnv<'a> {
    /// `FORGE_RUN_ID`.
    pub run: &'a RunId,
    /// `FORGE_TASK_ID`.
    pub task: &'a str,
    /// `FORGE_ATTEMPT`.
    pub attempt: u32,
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
pub type PrepareCommand<'a> = dyn Fn(&mut std::process::Command) -> std::io::Result<()> + Sync + 'a;

/// How long a child's pipes stay *quiet* (not registered with the runtime's reactor, read only
/// when the child exits) before they are watched live. Most short commands are done well
/// within it, and then the exit is the attempt's only wake-up; a longer one loses nothing:
/// its output is read live from here on, and at worst it waited this long once on a full pipe.
const LIVE_AFTER: Duration = Duration::from_millis(10);

/// Most bytes one pipe is read for in one go outside the reactor (a group member may still be
/// writing when the leader exits); the rest is read live.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Size of the buffers pipes are read into.
const READ_CHUNK: usize = 16 * 1024;

/// What contains one attempt besides its process group.
struct Containment {
    /// How the leader enters its own PID namespace, when it does.
    namespace: Option<contain::NsRoute>,
    /// Why it does not although asked to (the host allows none).
    no_namespace: Option<String>,
    /// Its cgroup, when limits were asked for.
    cgroup: Option<AttemptCgroup>,
    /// Its port range.
    ports: Option<PortRange>,
    /// The repository path that shows its workspace (only with a PID namespace).
    view: Option<RepoView>,
}

impl Containment {
    fn new(options: &ProcessOptions, env: &AttemptEnv<'_>) -> std::io::Result<Self> {
        let (namespace, no_namespace) = if options.pid_namespace {
            match contain::NsRoute::supported() {
                Ok(route) => (Some(route), None),
                Err(why) if options.require_isolation => {
                    return Err(std::io::Error::other(format!(
                        "isolation is required (`[isolation] require = true`) but this host gives no PID namespace: {why}; run as root or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1), or drop the requirement"
                    )));
                }
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        let cgroup = if options.limits.any() {
            let name = format!("{}-{}", env.task, env.attempt);
            Some(AttemptCgroup::create(&name, &options.limits).map_err(std::io::Error::other)?)
        } else {
            None
        };
        Ok(Self {
            namespace,
            no_namespace,
            view: namespace.and(options.repo_view.clone()),
            cgroup,
            ports: PortRange::take(),
        })
    }

    /// Whether nothing but the process group contains it (the `posix_spawn` fast path applies).
    fn is_plain(&self) -> bool {
        self.namespace.is_none() && self.cgroup.is_none()
    }
}

/// A spawned attempt's leader process.
enum Child {
    Direct(spawn::DirectChild),
    Std(tokio::process::Child),
}

impl Child {
    /// Spawns `spec` with the attempt's variables, its standard streams and, when given,
    /// `prepare` applied: directly when no hook has to see the command and the direct path
    /// applies, else through `std::process::Command`.
    fn spawn(
        spec: &CommandSpec,
        env: &AttemptEnv<'_>,
        prepare: Option<&PrepareCommand<'_>>,
        contain: &Containment,
        stdout: std::io::PipeWriter,
        stderr: std::io::PipeWriter,
    ) -> std::io::Result<Self> {
        Self::spawn_inner(spec, env, prepare, contain, stdout, stderr).map_err(|e| {
            // `ENOENT` from a spawn reads as a missing program; say when it is the directory.
            if e.kind() == std::io::ErrorKind::NotFound && !spec.cwd.is_dir() {
                std::io::Error::new(
                    e.kind(),
                    format!("working directory `{}` does not exist", spec.cwd.display()),
                )
            } else {
                e
            }
        })
    }

    fn spawn_inner(
        spec: &CommandSpec,
        env: &AttemptEnv<'_>,
        prepare: Option<&PrepareCommand<'_>>,
        contain: &Containment,
        stdout: std::io::PipeWriter,
        stderr: std::io::PipeWriter,
    ) -> std::io::Result<Self> {
        let attempt = env.attempt.to_string();
        let port_base = contain
            .ports
            .as_ref()
            .map_or_else(String::new, |p| p.base().to_string());
        let port_count = if contain.ports.is_some() {
            PORTS_PER_ATTEMPT.to_string()
        } else {
            String::new()
        };
        let mut vars: Vec<(&OsStr, &OsStr)> = vec![
            ("FORGE_RUN_ID".as_ref(), env.run.as_str().as_ref()),
            ("FORGE_TASK_ID".as_ref(), env.task.as_ref()),
            ("FORGE_ATTEMPT".as_ref(), attempt.as_ref()),
            ("FORGE_WORKSPACE".as_ref(), spec.cwd.as_os_str()),
            // A shell trusts an inherited `PWD` naming its directory; tools that read `PWD`
            // (rather than `getcwd`) must find the workspace, never Forge's own directory.
            ("PWD".as_ref(), spec.cwd.as_os_str()),
            ("OLDPWD".as_ref(), spec.cwd.as_os_str()),
        ];
        if contain.ports.is_some() {
            vars.push(("FORGE_PORT_BASE".as_ref(), port_base.as_ref()));
            vars.push(("FORGE_PORT_COUNT".as_ref(), port_count.as_ref()));
        }
        if prepare.is_none() && contain.is_plain() {
            // The child's stdin is `dup2`ed from the shared `/dev/null` itself.
            let own;
            let stdin = match shared_dev_null() {
                Some(fd) => fd,
                None => {
                    own = dev_null()?;
                    own.as_fd()
                }
            };
            if let Some(child) = spawn::spawn(spec, &vars, [stdin, stdout.as_fd(), stderr.as_fd()])?
            {
                // Dropping this process's copies of the child's ends (here, on return) lets
                // the pipes reach end-of-file when the child's side closes.
                return Ok(Self::Direct(child));
            }
        }
        let mut command = std::process::Command::new(&spec.program);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // First: every later hook and the agent see default handling of the stop signals.
        contain::default_signals(&mut command);
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .envs(vars);
        if let Some(cgroup) = &contain.cgroup {
            contain::join_cgroups(&mut command, cgroup.procs_files()?);
        }
        if let Some(prepare) = prepare {
            prepare(&mut command)?;
        }
        if let Some(view) = &contain.view {
            let prepared = view::Prepared::new(view, &spec.cwd)?;
            let repo = std::ffi::OsStr::from_bytes(prepared.repo().to_bytes());
            command
                .env("PWD", repo)
                .env("OLDPWD", repo)
                .env("FORGE_WORKSPACE", repo);
            view::enter_view(&mut command, prepared);
        }
        // Last: hooks added after it would run in the agent only, not in the leader.
        if let Some(route) = &contain.namespace {
            contain::enter_pid_namespace(&mut command, *route, contain.view.is_some());
        }
        command
            .stdin(Stdio::from(dev_null()?))
            .stdout(stdout)
            .stderr(stderr);
        // The command (and with it this process's copies of the child's ends) is dropped
        // right after the spawn, so the pipes reach end-of-file when the child's side closes.
        tokio::process::Command::from(command)
            .spawn()
            .map(Self::Std)
    }

    /// The leader's pid, which is also its group's id; `None` once std has reaped it.
    fn pgid(&self) -> Option<rustix::process::Pid> {
        match self {
            Self::Direct(child) => Some(child.pid()),
            Self::Std(child) => child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        }
    }

    /// Waits for the leader to exit (cancel-safe).
    async fn wait(&mut self) -> std::io::Result<spawn::Exit> {
        match self {
            Self::Direct(child) => child.wait().await,
            Self::Std(child) => child.wait().await.map(|status| spawn::Exit {
                code: status.code(),
                signal: std::os::unix::process::ExitStatusExt::signal(&status),
            }),
        }
    }
}

impl Drop for Child {
    /// An attempt abandoned before its leader was reaped (its future dropped) takes its whole
    /// group with it: the direct child kills it itself; here std's is killed, and tokio reaps
    /// the leader in the background.
    fn drop(&mut self) {
        if let Self::Std(child) = self
            && let Some(pgid) = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

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

/// A child's standard input: `/dev/null`, opened once per process and duplicated per spawn
/// (cheaper than a path lookup per spawn). Falls back to opening it each time.
fn dev_null() -> std::io::Result<std::fs::File> {
    match shared_dev_null() {
        Some(fd) => fd.try_clone_to_owned().map(std::fs::File::from),
        None => std::fs::File::open("/dev/null"),
    }
}

/// `/dev/null`, opened once for the process (close-on-exec, as Rust opens every file).
fn shared_dev_null() -> Option<std::os::fd::BorrowedFd<'static>> {
    static NULL: OnceLock<Option<std::fs::File>> = OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok())
        .as_ref()
        .map(AsFd::as_fd)
}

/// Where lines go: the attempt's log and the caller's handler.
struct Sink<'a> {
    log: LogFile<'a>,
    on_line: &'a mut (dyn FnMut(OutputStream, &str) + Send),
}

impl Sink<'_> {
    fn line(&mut self, stream: OutputStream, line: &str) {
        self.log.line(line);
        (self.on_line)(stream, line);
    }
}

/// One output stream of the child: the read end of its pipe and the line splitter.
struct Stream {
    source: Source,
    split: LineSplitter,
}

enum Source {
    /// Not registered with the reactor: read without blocking when the child exits.
    Quiet(OwnedFd),
    /// Registered with the reactor, read as output arrives.
    Live {
        reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        buf: Vec<u8>,
    },
    /// End-of-file (or a read error, which ends the stream the same way).
    Closed,
}

impl Stream {
    fn new(stream: OutputStream, pipe: std::io::PipeReader, max_line: usize) -> Self {
        Self {
            source: Source::Quiet(OwnedFd::from(pipe)),
            split: LineSplitter::new(stream, max_line),
        }
    }

    fn is_open(&self) -> bool {
        !matches!(self.source, Source::Closed)
    }

    fn is_live(&self) -> bool {
        matches!(self.source, Source::Live { .. })
    }

    fn close(&mut self, sink: &mut Sink<'_>) {
        self.source = Source::Closed;
        if let Some(rest) = self.split.finish() {
            sink.line(self.split.stream, &rest);
        }
    }

    /// Reads a quiet pipe until it is empty (or at end-of-file, which closes the stream), up to
    /// [`DRAIN_LIMIT`] bytes.
    fn drain(&mut self, sink: &mut Sink<'_>) {
        let Source::Quiet(fd) = &self.source else {
            return;
        };
        let eof = DRAIN_BUF.with(|buf| {
            let mut own;
            let mut shared = buf.try_borrow_mut();
            let buf: &mut [u8] = match shared.as_deref_mut() {
                Ok(buf) => buf,
                Err(_) => {
                    own = vec![0; READ_CHUNK];
                    &mut own
                }
            };
            let mut total = 0;
            loop {
                match read_nowait(fd, buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        total += n;
                        self.split.feed(&buf[..n], |s, l| sink.line(s, l));
                        if total >= DRAIN_LIMIT {
                            break false;
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => break false,
                    Err(_) => break true,
                }
            }
        });
        if eof {
            self.close(sink);
        }
    }

    /// Registers a quiet pipe with the reactor.
    fn go_live(&mut self, sink: &mut Sink<'_>) {
        let fd = match std::mem::replace(&mut self.source, Source::Closed) {
            Source::Quiet(fd) => fd,
            other => {
                self.source = other;
                return;
            }
        };
        // tokio's wrappers for a child's pipes take any pipe read end.
        let reader: std::io::Result<Box<dyn tokio::io::AsyncRead + Unpin + Send>> =
            match self.split.stream {
                OutputStream::Stdout => {
                    tokio::process::ChildStdout::from_std(std::process::ChildStdout::from(fd))
                        .map(|r| Box::new(r) as _)
                }
                OutputStream::Stderr => {
                    tokio::process::ChildStderr::from_std(std::process::ChildStderr::from(fd))
                        .map(|r| Box::new(r) as _)
                }
            };
        match reader {
            Ok(reader) => {
                self.source = Source::Live {
                    reader,
                    buf: vec![0; READ_CHUNK],
                };
            }
            // Like a read error: the stream ends (and the child gets EPIPE if it writes on).
            Err(_) => self.close(sink),
        }
    }

    /// The next chunk of a live pipe (into its buffer); never ready for other sources.
    async fn read_live(&mut self) -> std::io::Result<usize> {
        match &mut self.source {
            Source::Live { reader, buf } => reader.read(buf).await,
            Source::Quiet(_) | Source::Closed => std::future::pending().await,
        }
    }

    fn on_read(&mut self, n: std::io::Result<usize>, sink: &mut Sink<'_>) {
        match (n, &self.source) {
            (Ok(n), Source::Live { buf, .. }) if n > 0 => {
                self.split.feed(&buf[..n], |s, l| sink.line(s, l));
                // A running agent's log is followed live (`forge logs --follow`, the
                // dashboard): what was read is on disk before the next read.
                sink.log.flush_now();
            }
            _ => self.close(sink),
        }
    }
}

thread_local! {
    /// The buffer quiet pipes are drained into (one per thread: draining never awaits).
    static DRAIN_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads what is in a pipe now without blocking and without a system call to make the pipe
/// non-blocking: `preadv2(RWF_NOWAIT)` (pipes support it since Linux 5.8). Where the kernel
/// does not, the pipe is made non-blocking (tokio keeps it so if it goes live) and read plainly.
fn read_nowait(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, rustix::io::Errno> {
    static NO_NOWAIT: AtomicBool = AtomicBool::new(false);
    if !NO_NOWAIT.load(Ordering::Relaxed) {
        match rustix::io::preadv2(
            fd,
            &mut [std::io::IoSliceMut::new(buf)],
            u64::MAX,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS,
            ) => {
                NO_NOWAIT.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    rustix::io::ioctl_fionbio(fd, true)?;
    rustix::io::read(fd, buf)
}

/// Terminates what is left of a process group: SIGTERM, up to `grace` for it to go, then
/// SIGKILL until no member is left. Returns whether the group is empty.
async fn end_group(pgid: rustix::process::Pid, grace: Duration) -> bool {
    if !group_alive(pgid) {
        return true;
    }
    if !grace.is_zero() {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
        let until = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < until && group_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for _ in 0..500 {
        if !group_alive(pgid) {
            return true;
        }
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !group_alive(pgid)
}

/// Whether any live (non-zombie) process is in group `pgid`. `kill(-pgid, 0)` answers first;
/// when it finds members, `/proc` tells live ones from zombies waiting for their reaper.
pub fn group_alive(pgid: rustix::process::Pid) -> bool {
    // The common case costs one system call: no member at all, not even a zombie.
    if rustix::process::test_kill_process_group(pgid) == Err(rustix::io::Errno::SRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let want = pgid.as_raw_nonzero().get();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(want) && state != Some("Z") && state != Some("X") {
            return true;
        }
    }
    false
}

/// Splits a byte stream into lines without holding more than `max` bytes of a line.
struct LineSplitter {
    stream: OutputStream,
    max: usize,
    partial: Vec<u8>,
    /// Dropping the rest of an over-long line until its newline.
    skipping: bool,
}

impl LineSplitter {
    fn new(stream: OutputStream, max: usize) -> Self {
        Self {
            stream,
            max: max.max(16),
            partial: Vec::new(),
            skipping: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(OutputStream, &str)) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest, ends) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.skipping {
                let room = self.max - self.partial.len();
                if chunk.len() > room {
                    self.partial.extend_from_slice(&chunk[..room]);
                    let mut line = String::from_utf8_lossy(&self.partial).into_owned();
                    line.push_str(" …[line cut]");
                    emit(self.stream, &line);
                    self.partial.clear();
                    self.skipping = !ends;
                } else if ends && self.partial.is_empty() {
                    // A whole line within this chunk: no copy.
                    let line = String::from_utf8_lossy(chunk);
                    emit(self.stream, line.trim_end_matches('\r'));
                } else {
                    self.partial.extend_from_slice(chunk);
                    if ends {
                        let line = String::from_utf8_lossy(&self.partial);
                        emit(self.stream, line.trim_end_matches('\r'));
                        self.partial.clear();
                    }
                }
            } else if ends {
                self.skipping = false;
            }
            bytes = rest;
        }
    }

    fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(line)
    }
}

/// The attempt's `output.log`, capped. Created (with its directories) on the first line, so an
/// attempt that prints nothing costs no inode; readers treat a missing log as empty.
struct LogFile<'a> {
    path: &'a Path,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    cap: u64,
    capped: bool,
    error: Option<std::io::Error>,
}

impl<'a> LogFile<'a> {
    fn new(path: &'a Path, cap: u64) -> Self {
        Self {
            path,
            file: None,
            written: 0,
            cap,
            capped: false,
            error: None,
        }
    }

    fn open(&mut self) -> Option<&mut std::io::BufWriter<std::fs::File>> {
        if self.file.is_none() && self.error.is_none() {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(self.path));
            match opened {
                Ok(f) => self.file = Some(std::io::BufWriter::with_capacity(64 * 1024, f)),
                Err(e) => self.error = Some(e),
            }
        }
        self.file.as_mut()
    }

    fn line(&mut self, line: &str) {
        if self.capped || self.error.is_some() {
            return;
        }
        let len = line.len() as u64 + 1;
        let over = self.written + len > self.cap;
        let cap = self.cap;
        let Some(file) = self.open() else { return };
        let result = if over {
            writeln!(
                file,
                "[forge: output.log reached its limit of {cap} bytes; later output is not logged]"
            )
        } else {
            writeln!(file, "{line}")
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
        if over {
            self.capped = true;
        } else {
            self.written += len;
        }
    }

    /// Writes what is buffered (a failure is kept and reported by `finish`).
    fn flush_now(&mut self) {
        if self.error.is_none()
            && let Some(file) = self.file.as_mut()
            && let Err(e) = std::io::Write::flush(file)
        {
            self.error = Some(e);
        }
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.file.as_mut().map_or(Ok(()), std::io::Write::flush)
    }
}

/// Builds the command of an attempt.
pub type CommandFactory = dyn Fn(&Task, u32) -> Result<CommandSpec, String> + Send + Sync;

/// Called with every output line of an attempt.
pub type LineHandler = dyn Fn(&AttemptContext, OutputStream, &str) + Send + Sync;

/// The default [`TaskRunner`] for commands: each attempt spawns a process (by default the
/// task's prompt as a `sh -c` script in `workdir`, which is the `shell` agent), logs its output
/// to `<logs>/<task>/<attempt>/output.log` and hands each line to a handler.
pub struct ProcessRunner {
    run: RunId,
    logs: PathBuf,
    factory: Arc<CommandFactory>,
    on_line: Option<Arc<LineHandler>>,
    options: ProcessOptions,
}

impl ProcessRunner {
    /// Runs each task's prompt with `sh -c` in `workdir`; logs go under `logs`.
    pub fn shell(run: RunId, workdir: PathBuf, logs: PathBuf) -> Self {
        let factory = move |task: &Task, _attempt: u32| {
            let mut spec = CommandSpec::shell(&task.prompt, &workdir);
            spec.env = task.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
            Ok(spec)
        };
        Self::new(run, logs, Arc::new(factory))
    }

    /// Runs what `factory` builds for each attempt.
    pub fn new(run: RunId, logs: PathBuf, factory: Arc<CommandFactory>) -> Self {
        Self {
            run,
            logs,
            factory,
            on_line: None,
            options: ProcessOptions::default(),
        }
    }

    /// Hands every output line to `handler` (e.g. an agent's JSONL parser).
    #[must_use]
    pub fn on_line(mut self, handler: Arc<LineHandler>) -> Self {
        self.on_line = Some(handler);
        self
    }

    /// Changes limits and grace periods.
    #[must_use]
    pub fn options(mut self, options: ProcessOptions) -> Self {
        self.options = options;
        self
    }

    /// `<logs>/<task>/<attempt>/output.log`.
    pub fn log_path(&self, task: &Task, attempt: u32) -> PathBuf {
        forge_events::layout::attempt_log(&self.logs.join(task.id.as_str()), attempt)
    }
}

#[async_trait::async_trait]
impl TaskRunner for ProcessRunner {
    async fn run(&self, task: &Task, attempt: u32, ctx: AttemptContext) -> TaskOutcome {
        let spec = match (self.factory)(task, attempt) {
            Ok(spec) => spec,
            Err(e) => return TaskOutcome::failed(e),
        };
        ctx.started(&task.agent, &spec.cwd.to_string_lossy(), "none");
        let handler = self.on_line.clone();
        let ctx_for_lines = ctx.clone();
        let mut on_line = move |stream: OutputStream, line: &str| {
            if let Some(h) = &handler {
                h(&ctx_for_lines, stream, line);
            }
        };
        let env = AttemptEnv {
            run: &self.run,
            task: task.id.as_str(),
            attempt,
        };
        let log = self.log_path(task, attempt);
        match run_process(
            &spec,
            &env,
            &log,
            &mut on_line,
            &ctx.cancel,
            &ctx.kill,
            &self.options,
        )
        .await
        {
            Ok(exit) => {
                let status = if exit.stopped {
                    TaskStatus::Cancelled
                } else if exit.code == Some(0) {
                    TaskStatus::Succeeded
                } else {
                    TaskStatus::Failed
                };
                TaskOutcome {
                    status,
                    exit_code: exit.code,
                    signal: exit.signal,
                    files_changed: Vec::new(),
                    message: None,
                }
            }
            Err(e) => TaskOutcome::failed(format!(
                "cannot run `{}`: {e}",
                spec.program.to_string_lossy()
            )),
        }
    }

    fn reports_start(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(OutputStream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |_, l| out.push(l.to_owned()));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn lines_across_chunks_and_cut_lines() {
        assert_eq!(
            split(100, &[b"ab", b"c\nd", b"e\r\n", b"tail"]),
            ["abc", "de", "tail"]
        );
        let long = vec![b'x'; 40];
        let got = split(16, &[&long, b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(&"x".repeat(16)) && got[0].ends_with("[line cut]"));
        assert_eq!(got[1], "next");
        assert_eq!(split(100, &[b"\xff\xfe ok\n"]), ["\u{fffd}\u{fffd} ok"]);
        // Whole lines within one chunk, and a line of exactly the limit, are not cut.
        assert_eq!(
            split(16, &[b"one\ntwo\r\n", b"sixteen-bytes-xx\nx"]),
            ["one", "two", "sixteen-bytes-xx", "x"]
        );
    }
}

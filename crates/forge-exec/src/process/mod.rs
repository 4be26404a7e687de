//! Running a command as an attempt: its own process group, output read line by line into the
//! attempt's log and a parser, and the whole group stopped on timeout or cancel.
//!
//! Spawning is `posix_spawn` into a new process group: called directly with the parent's
//! environment plus the attempt's variables when no hook has to prepare the command (see
//! `spawn.rs`: std would rebuild the whole environment on every spawn), through
//! `std::process::Command` with `process_group(0)` otherwise (std takes its own `posix_spawn`
//! path unless the hook adds a `pre_exec`). A contained attempt without a caller's hook is
//! spawned the way `posix_spawn` spawns, with the namespaces set up on the way (`leader.rs`).
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

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use forge_events::RunId;

mod child;
mod contain;
mod group;
mod init_program;
mod leader;
mod lines;
mod log;
mod ports;
mod reader;
mod runner;
mod spawn;
mod task;
mod view;

pub use contain::{
    AttemptCgroup, CgroupError, Limits, PidNamespaceSupport, format_memory, parse_memory,
    pid_namespace_support,
};
pub use forge_agents::find_program;
pub use group::group_alive;
pub use ports::{FIRST_PORT, LAST_PORT, PORTS_PER_ATTEMPT, PortRange};
pub(crate) use runner::run_group;
pub use runner::{PrepareCommand, ProcessExit, ProcessOptions, run_process, run_process_in};
pub use task::{CommandFactory, LineHandler, ProcessRunner};
pub use view::RepoView;
pub(crate) use view::{
    drop_template as drop_view_template, refresh_template as refresh_view_template,
};

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

//! Running the gate: the project's own build and test commands on the integrated tree, through
//! the same process-group runner as the agents ([`crate::process`]).
//!
//! What a gate *is* and what its report says ([`Gate`], [`GateCommand`], [`GateReport`], the
//! test counts parsed from a runner's summary) lives in `forge_merge`, which applies a result
//! only with a passed report; running the commands lives here, so that a gate command is
//! contained like an attempt: its own process group and, where the host allows, its own PID
//! namespace (a `setsid` child or a daemon it leaves ends with it), the run's `FORGE_RUN_ID` in
//! its environment (so `forge resume` after a crash finds and stops it), the output held open by
//! a leftover process read for a bounded time only, and a time limit or a cancel that stops its
//! whole tree with the one escalation policy (SIGINT → grace → SIGTERM → grace → SIGKILL, the
//! graces of [`ProcessOptions`]). That set-up is [`ContainedRunner`]'s, shared with merge
//! drivers.
//!
//! Each command runs as `sh -c <command>` in the workspace with `FORGE_RUN_ID`,
//! `FORGE_TASK_ID=gate`, `FORGE_ATTEMPT=<the command's number, from 1>` and `FORGE_WORKSPACE`.
//!
//! Commands run one after another through one loop, [`run_sequence`], whatever runs each
//! command (this machine's [`GateRunner`], or a cluster for `[gate] on = "cluster"`): it holds
//! the rule that a failure or a cancel skips the rest, and tells a [`GateObserver`] before and
//! after each command (a run publishes `gate_started` / `gate_finished` from there).

use std::future::Future;
use std::time::{Duration, Instant};

use forge_events::{OutputStream, RunId};
use forge_merge::{
    CommandEnd, CommandReport, CommandStatus, Gate, GateCommand, GateReport, TestCountParser,
};
use forge_staging::{Snapshot, Stager, Workspace};
use tokio_util::sync::CancellationToken;

use crate::ExecError;
use crate::contained::{ContainedRunner, Tail};
use crate::process::{CommandSpec, ProcessOptions};

/// What `FORGE_TASK_ID` says in a gate command's environment.
pub const GATE_TASK_ID: &str = "gate";

/// Runs gate commands for one run, contained like the run's attempts.
///
/// ```no_run
/// # async fn gate(ws: &dyn forge_staging::Workspace) -> Result<(), Box<dyn std::error::Error>> {
/// use forge_exec::gate::GateRunner;
/// use forge_merge::Gate;
///
/// let runner = GateRunner::new(forge_events::RunId::new("r1")?);
/// let reports = runner.run_in(&Gate::new(["cargo build", "cargo test"]), ws, &()).await;
/// assert!(reports.iter().all(forge_merge::CommandReport::passed));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GateRunner {
    contained: ContainedRunner,
}

impl GateRunner {
    /// A runner for `run`'s gate: each command in its own PID namespace where the host has
    /// one (else its process group), never cancelled from outside.
    pub fn new(run: RunId) -> Self {
        Self {
            contained: ContainedRunner::new(run, GATE_TASK_ID),
        }
    }

    /// Changes containment, grace periods and limits (the run's [`ProcessOptions`]). A
    /// `repo_view` is dropped: the gate runs in its workspace at the workspace's own path.
    #[must_use]
    pub fn options(self, options: ProcessOptions) -> Self {
        Self {
            contained: self.contained.options(options),
        }
    }

    /// Stops a running command when `cancel` fires (gracefully: the escalation) or `kill`
    /// fires (at once); commands not yet started are then reported as skipped.
    #[must_use]
    pub fn cancel_on(self, cancel: CancellationToken, kill: CancellationToken) -> Self {
        Self {
            contained: self.contained.cancel_on(cancel, kill),
        }
    }

    /// Whether a cancel was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.contained.is_cancelled()
    }

    /// Runs one command (number `number`, from 1) in `ws` and reports it. A command that cannot
    /// be started is reported as [`CommandStatus::NotStarted`], never an error.
    pub async fn run_command(
        &self,
        ws: &dyn Workspace,
        command: &GateCommand,
        number: u32,
    ) -> CommandReport {
        let mut report = CommandReport {
            name: command.name.clone(),
            command: command.command.clone(),
            status: CommandStatus::Passed,
            duration_ms: 0,
            output: String::new(),
            output_truncated: false,
            tests: None,
        };
        let spec = CommandSpec::shell(&command.command, ws.path());
        let mut parser = TestCountParser::default();
        let mut tail = Tail::default();
        let mut on_line = |_: OutputStream, line: &str| {
            parser.line(line);
            tail.push(line);
        };
        let started = Instant::now();
        let prepare = |cmd: &mut std::process::Command| {
            ws.prepare_command(cmd).map_err(std::io::Error::other)
        };
        let result = self
            .contained
            .run(&spec, number, command.timeout, &mut on_line, Some(&prepare))
            .await;
        report.duration_ms = millis(started.elapsed());
        match result {
            Err(e) => {
                report.status = CommandStatus::NotStarted {
                    reason: e.to_string(),
                };
            }
            Ok(ended) => {
                report.status = match ended.end() {
                    CommandEnd::TimedOut => CommandStatus::TimedOut,
                    CommandEnd::Exited(0) => CommandStatus::Passed,
                    CommandEnd::Exited(code) => CommandStatus::Failed { code },
                    CommandEnd::Signaled(signal) => CommandStatus::Killed { signal },
                };
                report.tests = parser.finish();
                (report.output, report.output_truncated) = tail.finish();
            }
        }
        report
    }

    /// Runs `gate`'s commands one after another in `ws` ([`run_sequence`]: stopping at the
    /// first failure or a cancel, the rest reported as skipped), telling `observer` before and
    /// after each command (`&()` tells no one).
    pub async fn run_in(
        &self,
        gate: &Gate,
        ws: &dyn Workspace,
        observer: &dyn GateObserver,
    ) -> Vec<CommandReport> {
        run_sequence(
            &gate.commands,
            || self.is_cancelled(),
            |command, number| self.run_command(ws, command, number),
            observer,
        )
        .await
    }

    /// Runs `gate` on `snapshot` (the integrated tree) in workspaces made by `stager`, named
    /// `name` (and `name-1`, `name-2`… when parallel), disposed of afterwards. Blocks the
    /// calling thread: call it from a thread of its own or `spawn_blocking`, never from async
    /// code (the commands run on a small runtime of this call's own).
    pub fn run_blocking(
        &self,
        gate: &Gate,
        stager: &dyn Stager,
        snapshot: &Snapshot,
        name: &str,
    ) -> Result<GateReport, ExecError> {
        let started = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ExecError::Store(format!("cannot start the gate's runtime: {e}")))?;
        let commands = if gate.parallel && gate.commands.len() > 1 {
            let mut workspaces = Vec::with_capacity(gate.commands.len());
            for i in 0..gate.commands.len() {
                match stager.stage(snapshot, &format!("{name}-{}", i + 1)) {
                    Ok(ws) => workspaces.push(ws),
                    Err(e) => {
                        dispose_all(workspaces);
                        return Err(e.into());
                    }
                }
            }
            let reports = runtime.block_on(futures::future::join_all(
                gate.commands
                    .iter()
                    .zip(&workspaces)
                    .enumerate()
                    .map(|(i, (command, ws))| self.run_command(&**ws, command, number(i))),
            ));
            dispose_all(workspaces);
            reports
        } else {
            let ws = stager.stage(snapshot, name)?;
            let reports = runtime.block_on(self.run_in(gate, &*ws, &()));
            ws.dispose()?;
            reports
        };
        Ok(GateReport {
            commands,
            duration_ms: millis(started.elapsed()),
        })
    }
}

/// Hears of each gate command as it starts and as it ends: how a run publishes `gate_started`
/// and `gate_finished`. Both methods do nothing unless overridden; `()` hears nothing.
pub trait GateObserver: Sync {
    /// Command number `number` (from 1) is about to run.
    fn started(&self, number: u32, command: &GateCommand) {
        let _ = (number, command);
    }

    /// Command number `number` ended with `report` (a command skipped after a failure or a
    /// cancel never started, and is not heard of).
    fn finished(&self, number: u32, report: &CommandReport) {
        let _ = (number, report);
    }
}

impl GateObserver for () {}

/// The gate's one loop: runs `commands` in order, each through `run_one` (given the command and
/// its number, from 1), telling `observer` before and after each. Once a command has not
/// passed, or `is_cancelled` says so, the remaining commands are not run and are reported as
/// [`CommandStatus::Skipped`]. Returns a report per command, in order.
pub async fn run_sequence<'c, F, Fut>(
    commands: &'c [GateCommand],
    is_cancelled: impl Fn() -> bool,
    mut run_one: F,
    observer: &dyn GateObserver,
) -> Vec<CommandReport>
where
    F: FnMut(&'c GateCommand, u32) -> Fut,
    Fut: Future<Output = CommandReport>,
{
    let mut out = Vec::with_capacity(commands.len());
    let mut failed = false;
    for (i, command) in commands.iter().enumerate() {
        if failed || is_cancelled() {
            out.push(skipped(command));
            continue;
        }
        let number = number(i);
        observer.started(number, command);
        let report = run_one(command, number).await;
        observer.finished(number, &report);
        failed = !report.passed();
        out.push(report);
    }
    out
}

fn dispose_all(workspaces: Vec<Box<dyn Workspace>>) {
    for ws in workspaces {
        // A workspace left behind is removed by `forge gc`.
        let _ = ws.dispose();
    }
}

/// The report of a command not run because an earlier one failed (or the run was cancelled).
pub fn skipped(command: &GateCommand) -> CommandReport {
    CommandReport {
        name: command.name.clone(),
        command: command.command.clone(),
        status: CommandStatus::Skipped,
        duration_ms: 0,
        output: String::new(),
        output_truncated: false,
        tests: None,
    }
}

fn number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

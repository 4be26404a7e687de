//! Merge drivers (`driver:<command>` in a plan's `[merge]`) run by the one process-group runner
//! ([`crate::process`]), like agents and the gate.
//!
//! forge-merge decides when a driver runs and what it is given; it calls a
//! [`forge_merge::CommandRunner`] to run it, and on its own uses a stand-alone one. Every
//! [`forge_merge::Integration`] Forge builds (a run, its resume, its gate bisection, `forge
//! apply`) gets a [`DriverRunner`] instead, so a driver is contained like an attempt: its own
//! process group and, where the host allows, its own PID namespace; the run's `FORGE_RUN_ID`
//! in its environment (so `forge resume` after a crash finds and stops it); a time limit or
//! the run's cancel stopping its whole tree with the one escalation policy (SIGINT → grace →
//! SIGTERM → grace → SIGKILL, the graces of [`ProcessOptions`]): the set-up of a
//! [`ContainedRunner`], shared with the gate.
//!
//! The command runs as `sh -c <command>` in the repository's top directory, with
//! `FORGE_RUN_ID`, `FORGE_TASK_ID=merge-driver`, `FORGE_ATTEMPT=1` and `FORGE_WORKSPACE` (that
//! directory).

use std::sync::Arc;

use forge_events::{OutputStream, RunId};
use forge_merge::{CommandOutcome, CommandRunner, Integration, ShellCommand};
use tokio_util::sync::CancellationToken;

use crate::contained::{ContainedRunner, Tail};
use crate::plan::Plan;
use crate::process::{CommandSpec, ProcessOptions};
use crate::sched::CancelHandle;

/// What `FORGE_TASK_ID` says in a merge driver's environment.
pub const DRIVER_TASK_ID: &str = "merge-driver";

/// Runs a run's merge drivers through Forge's process runner: install it with
/// [`forge_merge::Integration::with_command_runner`].
///
/// ```no_run
/// # fn f(base: std::sync::Arc<forge_staging::BaseSnapshot>, store: forge_staging::BlobStore)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use forge_exec::driver::DriverRunner;
/// use forge_merge::Integration;
///
/// let runner = DriverRunner::new(forge_events::RunId::new("r1")?);
/// let integration = Integration::new(base, store).with_command_runner(Arc::new(runner));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DriverRunner {
    contained: ContainedRunner,
}

impl DriverRunner {
    /// A runner for `run`'s merge drivers: each in its own PID namespace where the host has
    /// one (else its process group), never cancelled from outside.
    pub fn new(run: RunId) -> Self {
        Self {
            contained: ContainedRunner::new(run, DRIVER_TASK_ID),
        }
    }

    /// Changes containment, grace periods and limits (the run's [`ProcessOptions`]). A
    /// `repo_view` is dropped: a driver runs in the repository itself.
    #[must_use]
    pub fn options(self, options: ProcessOptions) -> Self {
        Self {
            contained: self.contained.options(options),
        }
    }

    /// Stops a running driver when `cancel` fires (gracefully: the escalation) or `kill`
    /// fires (at once).
    #[must_use]
    pub fn cancel_on(self, cancel: CancellationToken, kill: CancellationToken) -> Self {
        Self {
            contained: self.contained.cancel_on(cancel, kill),
        }
    }

    async fn run_async(&self, command: &ShellCommand<'_>) -> std::io::Result<CommandOutcome> {
        let spec = CommandSpec::shell(command.line, command.dir);
        // Whole lines, room for at least one of the longest; cut to `keep` bytes at the end.
        let max_line = self.contained.process_options().max_line;
        let mut tail = Tail::new(command.keep.max(max_line + 64));
        let mut on_line = |_: OutputStream, line: &str| tail.push(line);
        let ended = self
            .contained
            .run(&spec, 1, command.timeout, &mut on_line, None)
            .await?;
        let mut output = tail.finish().0.into_bytes();
        if output.len() > command.keep {
            output.drain(..output.len() - command.keep);
        }
        Ok(CommandOutcome {
            ended: ended.end(),
            output,
        })
    }
}

impl CommandRunner for DriverRunner {
    /// Runs the driver on a thread and a small runtime of its own, so it may be called from
    /// any thread, async worker or not (forge-merge's calls block).
    fn run(&self, command: &ShellCommand<'_>) -> std::io::Result<CommandOutcome> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("forge-merge-driver".to_owned())
                .spawn_scoped(scope, || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(self.run_async(command))
                })?
                .join()
                .unwrap_or_else(|_| {
                    Err(std::io::Error::other(
                        "the thread running the merge driver panicked",
                    ))
                })
        })
    }
}

/// `integration` with `runner` running its merge drivers, within the plan's time limit
/// (`[merge] driver_timeout`; forge-merge's 2 minutes when the plan gives none).
pub(crate) fn install(
    integration: Integration,
    runner: Arc<dyn CommandRunner>,
    plan: &Plan,
) -> Integration {
    let integration = integration.with_command_runner(runner);
    match plan.merge_driver_timeout {
        Some(limit) => integration.with_driver_timeout(limit),
        None => integration,
    }
}

/// The driver runner of a run: `run`'s id, its process options, stopped by its cancel.
pub(crate) fn for_run(
    run: &RunId,
    options: &ProcessOptions,
    cancel: &CancelHandle,
) -> Arc<dyn CommandRunner> {
    let (stop, kill) = cancel.tokens();
    Arc::new(
        DriverRunner::new(run.clone())
            .options(options.clone())
            .cancel_on(stop, kill),
    )
}

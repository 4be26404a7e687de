//! One contained command: what the gate's commands ([`crate::gate::GateRunner`]) and merge
//! drivers ([`crate::driver::DriverRunner`]) share.
//!
//! Both run a shell command line of a run's through the one process-group runner
//! ([`crate::process`]) contained like an attempt: its own process group and, where the host
//! allows, its own PID namespace (a `setsid` child or a daemon it leaves ends with it); the
//! run's `FORGE_RUN_ID`, a `FORGE_TASK_ID` naming what runs (`gate`, `merge-driver`), a
//! `FORGE_ATTEMPT` and `FORGE_WORKSPACE` in its environment (so `forge resume` after a crash
//! finds and stops it); the run's limits and grace periods ([`ProcessOptions`]); a time limit or
//! the run's cancel stopping its whole tree with the one escalation policy (SIGINT → grace →
//! SIGTERM → grace → SIGKILL). Neither writes a log file: the caller keeps the end of the output
//! (a tail of whole lines) for its report.
//!
//! A [`ContainedRunner`] holds that set-up once per run; [`ContainedRunner::run`] runs one
//! command with it and says how it ended ([`ContainedExit`]). What the output means and how an
//! end is reported stays with the gate and the driver.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use forge_exec::contained::ContainedRunner;
//! use forge_exec::process::CommandSpec;
//!
//! let runner = ContainedRunner::new(forge_events::RunId::new("r1")?, "lint");
//! let spec = CommandSpec::shell("cargo clippy", std::path::Path::new("/src/project"));
//! let mut lines = Vec::new();
//! let end = runner
//!     .run(&spec, 1, Some(Duration::from_secs(600)), &mut |_, line: &str| {
//!         lines.push(line.to_owned());
//!     }, None)
//!     .await?;
//! println!("{:?} after {} lines", end.end(), lines.len());
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use forge_events::{OutputStream, RunId};
use forge_merge::CommandEnd;
use tokio_util::sync::CancellationToken;

use crate::process::{
    AttemptEnv, CommandSpec, PrepareCommand, ProcessExit, ProcessOptions, run_group,
};

/// How much of a command's output a gate report keeps (its end).
pub(crate) const OUTPUT_KEPT: usize = 64 << 10;

/// Runs a run's commands other than agents (gate commands, merge drivers) contained like its
/// attempts: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ContainedRunner {
    run: RunId,
    task: &'static str,
    options: ProcessOptions,
    cancel: CancellationToken,
    kill: CancellationToken,
}

impl ContainedRunner {
    /// A runner of `run`'s commands that say `FORGE_TASK_ID=<task>`: each in its own PID
    /// namespace where the host has one (else its process group), never cancelled from
    /// outside.
    pub fn new(run: RunId, task: &'static str) -> Self {
        Self {
            run,
            task,
            options: ProcessOptions {
                pid_namespace: true,
                ..ProcessOptions::default()
            },
            cancel: CancellationToken::new(),
            kill: CancellationToken::new(),
        }
    }

    /// Changes containment, grace periods and limits (the run's [`ProcessOptions`]). A
    /// `repo_view` is dropped: these commands run at their directory's own path.
    #[must_use]
    pub fn options(mut self, options: ProcessOptions) -> Self {
        self.options = options;
        self.options.repo_view = None;
        self
    }

    /// Stops a running command when `cancel` fires (gracefully: the escalation) or `kill`
    /// fires (at once).
    #[must_use]
    pub fn cancel_on(mut self, cancel: CancellationToken, kill: CancellationToken) -> Self {
        self.cancel = cancel;
        self.kill = kill;
        self
    }

    /// Whether a cancel was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.kill.is_cancelled()
    }

    /// The run whose commands these are (`FORGE_RUN_ID`).
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// The containment, grace periods and limits each command gets.
    pub fn process_options(&self) -> &ProcessOptions {
        &self.options
    }

    /// Runs `spec` as `FORGE_ATTEMPT=<attempt>`, each output line to `on_line`, `prepare`
    /// (when given) called on the command before it is spawned (how a workspace puts it in its
    /// directory). After `time_limit` the command is stopped like a cancel of it alone. Returns
    /// once no process of it is left; an error only when it could not be run.
    pub async fn run(
        &self,
        spec: &CommandSpec,
        attempt: u32,
        time_limit: Option<Duration>,
        on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
        prepare: Option<&PrepareCommand<'_>>,
    ) -> std::io::Result<ContainedExit> {
        let env = AttemptEnv {
            run: &self.run,
            task: self.task,
            attempt,
        };
        // A time limit is a cancel of this command only.
        let stop = self.cancel.child_token();
        let running = run_group(
            spec,
            &env,
            None,
            on_line,
            &stop,
            &self.kill,
            &self.options,
            prepare,
        );
        let (exit, timed_out) = with_time_limit(running, time_limit, &stop).await;
        Ok(ContainedExit {
            exit: exit?,
            timed_out,
        })
    }
}

/// How a contained command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainedExit {
    /// The process's end as the runner saw it.
    pub exit: ProcessExit,
    /// Whether its time limit stopped it.
    pub timed_out: bool,
}

impl ContainedExit {
    /// The end in one word: stopped by its time limit, else its exit code or the signal that
    /// ended it.
    pub fn end(&self) -> CommandEnd {
        if self.timed_out {
            return CommandEnd::TimedOut;
        }
        match (self.exit.code, self.exit.signal) {
            (Some(code), _) => CommandEnd::Exited(code),
            (None, signal) => CommandEnd::Signaled(signal.unwrap_or(0)),
        }
    }
}

/// Awaits `running`, cancelling `stop` once `limit` has passed (then awaiting the stop);
/// returns its result and whether the limit was hit.
async fn with_time_limit<T>(
    running: impl std::future::Future<Output = T>,
    limit: Option<Duration>,
    stop: &CancellationToken,
) -> (T, bool) {
    let Some(limit) = limit else {
        return (running.await, false);
    };
    tokio::pin!(running);
    tokio::select! {
        result = &mut running => (result, false),
        () = tokio::time::sleep(limit) => {
            stop.cancel();
            (running.await, true)
        }
    }
}

/// The end of a command's combined output: whole lines, at most `keep` bytes ([`OUTPUT_KEPT`]
/// for the gate).
pub(crate) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    keep: usize,
    truncated: bool,
}

impl Default for Tail {
    fn default() -> Self {
        Self::new(OUTPUT_KEPT)
    }
}

impl Tail {
    /// An empty tail keeping at most `keep` bytes.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            keep,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, line: &str) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_owned());
        while self.bytes > self.keep
            && let Some(first) = self.lines.pop_front()
        {
            self.bytes -= first.len() + 1;
            self.truncated = true;
        }
    }

    /// The lines kept, each ended by a newline, and whether any were dropped.
    pub(crate) fn finish(self) -> (String, bool) {
        let mut out = String::with_capacity(self.bytes);
        for line in self.lines {
            out.push_str(&line);
            out.push('\n');
        }
        (out, self.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_whole_lines_up_to_its_limit() {
        let mut tail = Tail::default();
        let line = "x".repeat(1000);
        for _ in 0..100 {
            tail.push(&line);
        }
        tail.push("last");
        let (out, truncated) = tail.finish();
        assert!(truncated);
        assert!(out.len() <= OUTPUT_KEPT);
        let mut small = Tail::new(8);
        small.push("abc");
        small.push("defg");
        assert_eq!(small.finish(), ("defg\n".to_owned(), true));
        assert!(out.ends_with("x\nlast\n"));
        let mut short = Tail::default();
        short.push("one");
        assert_eq!(short.finish(), ("one\n".to_owned(), false));
    }
}

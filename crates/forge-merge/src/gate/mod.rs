//! The gate: the project's own build and test commands, run on the integrated tree before
//! anything is applied.

mod counts;
#[cfg(test)]
mod samples;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forge_staging::{Snapshot, Stager, Workspace};
use serde::{Deserialize, Serialize};

pub use counts::{TestCounts, parse_test_counts};

use crate::MergeError;
use crate::process::{self, Ended};

/// How much of each command's output a report keeps (its end).
const OUTPUT_KEPT: usize = 64 << 10;

/// One command of the gate, run with `sh -c` in the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateCommand {
    /// A short name for reports (`build`, `test`).
    pub name: String,
    /// The shell command line.
    pub command: String,
    /// How long it may run; then its process group is interrupted, terminated, killed.
    #[serde(
        default,
        with = "opt_duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

impl GateCommand {
    /// A command named after itself, without a time limit.
    pub fn new(command: &str) -> Self {
        Self {
            name: command.to_owned(),
            command: command.to_owned(),
            timeout: None,
        }
    }
}

/// The commands the integrated tree must pass before it is applied (a plan's `[gate]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Gate {
    /// The commands, in order.
    pub commands: Vec<GateCommand>,
    /// Run them all at once (each in a workspace of its own) rather than one after another in
    /// one workspace, stopping at the first failure.
    #[serde(default)]
    pub parallel: bool,
}

/// How one gate command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandStatus {
    /// It exited with 0.
    Passed,
    /// It exited with another code.
    Failed {
        /// The exit code.
        code: i32,
    },
    /// A signal ended it.
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// It ran past its time limit and was killed.
    TimedOut,
    /// It could not be started.
    NotStarted {
        /// Why.
        reason: String,
    },
    /// It was not run because an earlier command failed.
    Skipped,
}

/// The result of one gate command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReport {
    /// The command's name.
    pub name: String,
    /// The command line.
    pub command: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: CommandStatus,
    /// How long it ran.
    pub duration_ms: u64,
    /// The end of its combined output.
    pub output: String,
    /// Whether the start of the output was dropped.
    pub output_truncated: bool,
    /// The test counts it printed, when a known test runner's summary was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
}

impl CommandReport {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.status == CommandStatus::Passed
    }
}

/// The result of running the gate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GateReport {
    /// Each command's result, in the gate's order.
    pub commands: Vec<CommandReport>,
    /// How long the whole gate took.
    pub duration_ms: u64,
}

impl GateReport {
    /// The report of a gate with no commands: it passes. Pass it to the apply functions to
    /// apply without a gate.
    pub fn not_run() -> Self {
        Self::default()
    }

    /// Whether every command passed (so the result may be applied).
    pub fn passed(&self) -> bool {
        self.commands.iter().all(CommandReport::passed)
    }

    /// The test counts of all commands together, if any command printed some.
    pub fn tests(&self) -> Option<TestCounts> {
        self.commands
            .iter()
            .filter_map(|c| c.tests)
            .reduce(|mut a, b| {
                a += b;
                a
            })
    }

    /// One line for people: `All tests pass (12/12)`, `cargo test failed (exit 101): 2 of 14
    /// tests failed`, …
    pub fn summary(&self) -> String {
        if self.commands.is_empty() {
            return "No gate commands: nothing was checked".to_owned();
        }
        let tests = self.tests();
        if self.passed() {
            return match tests {
                Some(t) if t.ran() > 0 => format!("All tests pass ({}/{})", t.passed, t.ran()),
                _ => format!("All {} gate command(s) pass", self.commands.len()),
            };
        }
        let mut out = String::new();
        for c in self
            .commands
            .iter()
            .filter(|c| !c.passed() && c.status != CommandStatus::Skipped)
        {
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "`{}` ", c.name);
            let _ = match &c.status {
                CommandStatus::Failed { code } => write!(out, "failed (exit {code})"),
                CommandStatus::Killed { signal } => write!(out, "was killed (signal {signal})"),
                CommandStatus::TimedOut => write!(out, "timed out"),
                CommandStatus::NotStarted { reason } => write!(out, "could not start: {reason}"),
                CommandStatus::Passed | CommandStatus::Skipped => Ok(()),
            };
            if let Some(t) = c.tests.filter(|t| t.failed > 0) {
                let _ = write!(out, ": {} of {} tests failed", t.failed, t.ran());
            } else if c.tests.is_none()
                && let Some(last) = c.output.lines().map(str::trim).rfind(|l| !l.is_empty())
            {
                // Output no known runner wrote: its last line is usually the verdict.
                let last: String = last.chars().take(200).collect();
                let _ = write!(out, ": {last}");
            }
        }
        out
    }
}

impl Gate {
    /// A gate running `commands` one after another.
    pub fn new<'a>(commands: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            commands: commands.into_iter().map(GateCommand::new).collect(),
            parallel: false,
        }
    }

    /// Runs the gate on `snapshot` (the integrated tree: [`crate::Integration::snapshot`]) in
    /// workspaces made by `stager`, named `name` (and `name-1`, `name-2`… when parallel),
    /// disposed of afterwards.
    pub fn run(
        &self,
        stager: &dyn Stager,
        snapshot: &Snapshot,
        name: &str,
    ) -> Result<GateReport, MergeError> {
        let start = Instant::now();
        let commands = if self.parallel && self.commands.len() > 1 {
            let results = Mutex::new(Vec::new());
            std::thread::scope(|scope| -> Result<(), MergeError> {
                let mut handles = Vec::new();
                for (i, command) in self.commands.iter().enumerate() {
                    let ws = stager.stage(snapshot, &format!("{name}-{}", i + 1))?;
                    let results = &results;
                    handles.push(scope.spawn(move || {
                        let report = run_one(&*ws, command);
                        let _ = ws.dispose();
                        if let Ok(mut r) = results.lock() {
                            r.push((i, report));
                        }
                    }));
                }
                for h in handles {
                    let _ = h.join();
                }
                Ok(())
            })?;
            let mut results = results.into_inner().unwrap_or_default();
            results.sort_by_key(|(i, _)| *i);
            results.into_iter().map(|(_, r)| r).collect()
        } else {
            let ws = stager.stage(snapshot, name)?;
            let reports = self.run_in(&*ws);
            ws.dispose()?;
            reports
        };
        Ok(GateReport {
            commands,
            duration_ms: millis(start.elapsed()),
        })
    }

    /// Runs the commands one after another in `workspace`, stopping at the first failure (the
    /// rest are reported as skipped).
    pub fn run_in(&self, workspace: &dyn Workspace) -> Vec<CommandReport> {
        let mut out = Vec::with_capacity(self.commands.len());
        let mut failed = false;
        for command in &self.commands {
            if failed {
                out.push(CommandReport {
                    name: command.name.clone(),
                    command: command.command.clone(),
                    status: CommandStatus::Skipped,
                    duration_ms: 0,
                    output: String::new(),
                    output_truncated: false,
                    tests: None,
                });
                continue;
            }
            let report = run_one(workspace, command);
            failed = !report.passed();
            out.push(report);
        }
        out
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one command in `ws` and reports it.
fn run_one(ws: &dyn Workspace, command: &GateCommand) -> CommandReport {
    let mut report = CommandReport {
        name: command.name.clone(),
        command: command.command.clone(),
        status: CommandStatus::Passed,
        duration_ms: 0,
        output: String::new(),
        output_truncated: false,
        tests: None,
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&command.command);
    if let Err(e) = ws.prepare_command(&mut cmd) {
        report.status = CommandStatus::NotStarted {
            reason: e.to_string(),
        };
        return report;
    }
    let mut parser = counts::CountParser::default();
    let finished = process::run(cmd, command.timeout, OUTPUT_KEPT, |line| {
        parser.line(&String::from_utf8_lossy(line));
    });
    match finished {
        Err(e) => {
            report.status = CommandStatus::NotStarted {
                reason: e.to_string(),
            };
        }
        Ok(f) => {
            report.status = match f.ended {
                Ended::Exited(0) => CommandStatus::Passed,
                Ended::Exited(code) => CommandStatus::Failed { code },
                Ended::Signaled(signal) => CommandStatus::Killed { signal },
                Ended::TimedOut => CommandStatus::TimedOut,
            };
            report.duration_ms = millis(f.duration);
            report.output = String::from_utf8_lossy(&f.output).into_owned();
            report.output_truncated = f.truncated;
            report.tests = parser.finish();
        }
    }
    report
}

/// `Option<Duration>` as milliseconds.
mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: CommandStatus, tests: Option<TestCounts>) -> CommandReport {
        CommandReport {
            name: "cargo test".into(),
            command: "cargo test".into(),
            status,
            duration_ms: 5,
            output: String::new(),
            output_truncated: false,
            tests,
        }
    }

    #[test]
    fn summaries() {
        let t = |p, f| {
            Some(TestCounts {
                passed: p,
                failed: f,
                skipped: 0,
            })
        };
        let ok = GateReport {
            commands: vec![report(CommandStatus::Passed, t(12, 0))],
            duration_ms: 5,
        };
        assert!(ok.passed());
        assert_eq!(ok.summary(), "All tests pass (12/12)");
        let bad = GateReport {
            commands: vec![
                report(CommandStatus::Failed { code: 101 }, t(12, 2)),
                report(CommandStatus::Skipped, None),
            ],
            duration_ms: 5,
        };
        assert!(!bad.passed());
        assert_eq!(
            bad.summary(),
            "`cargo test` failed (exit 101): 2 of 14 tests failed"
        );
        assert!(GateReport::not_run().passed());
        let json = serde_json::to_value(&bad.commands[0]).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["code"], 101);
        assert_eq!(
            serde_json::from_value::<CommandReport>(json).unwrap(),
            bad.commands[0]
        );
        let cmd = GateCommand {
            timeout: Some(Duration::from_secs(2)),
            ..GateCommand::new("make")
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<GateCommand>(&json).unwrap(), cmd);
    }
}

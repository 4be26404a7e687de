//! The gate of a run: its commands in a workspace staged from the integrated tree. (An
//! attempt's own steps are in [`super::attempt`].)

use std::sync::Arc;
use std::time::Instant;

use forge_events::{EventKind, EventSink as _};
use forge_merge::{GateCommand, GateReport};
use forge_staging::Snapshot;

use super::attempt::capture::dispose;
use super::{Shared, blocking};
use crate::ExecError;
use crate::sched::CancelHandle;

/// The integrated tree now, as a snapshot to stage from (one layer per version, stacked).
async fn current_snapshot(shared: &Arc<Shared>) -> Result<Arc<Snapshot>, ExecError> {
    super::layers::current(shared).await
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
    if shared.plan.gate.on == crate::plan::GateOn::Cluster {
        return shared.runner.gate(shared, snapshot, cancel).await;
    }
    let stager = shared.stager.clone();
    let ws = blocking(move || stager.stage(&snapshot, "gate")).await??;
    let mut report = GateReport::default();
    let mut failed = false;
    let runner = super::bisect::gate_runner(shared, cancel);
    for (i, command) in shared.plan.gate.commands.iter().enumerate() {
        let command = GateCommand {
            timeout: shared.plan.gate.timeout,
            ..GateCommand::new(command)
        };
        if failed || cancel.is_cancelled() {
            report.commands.push(crate::gate::skipped(&command));
            continue;
        }
        let _ = shared.events.publish_run(EventKind::GateStarted {
            command: command.command.clone(),
        });
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let result = runner.run_command(&*ws, &command, number).await;
        let command = command.command;
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
    dispose(ws).await;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

//! The gate of a run: its commands in a workspace staged from the integrated tree. (An
//! attempt's own steps are in [`super::attempt`].)

use std::sync::Arc;
use std::time::Instant;

use forge_events::{EventKind, EventSink as _};
use forge_merge::{CommandReport, CommandStatus, Gate, GateCommand, GateReport};
use forge_staging::Snapshot;

use super::attempt::capture::dispose;
use super::{Shared, blocking};
use crate::ExecError;
use crate::gate::GateObserver;
use crate::plan::Plan;
use crate::sched::CancelHandle;

/// The integrated tree now, as a snapshot to stage from (one layer per version, stacked).
async fn current_snapshot(shared: &Arc<Shared>) -> Result<Arc<Snapshot>, ExecError> {
    super::layers::current(shared).await
}

/// The plan's `[gate]` as the commands to run, one after another, each with the gate's
/// time limit: what the local gate, the cluster gate and the bisect run.
pub(crate) fn plan_gate(plan: &Plan) -> Gate {
    Gate {
        commands: plan
            .gate
            .commands
            .iter()
            .map(|c| GateCommand {
                timeout: plan.gate.timeout,
                ..GateCommand::new(c)
            })
            .collect(),
        parallel: false,
    }
}

/// Publishes `gate_started` / `gate_finished` for each command of the run's gate.
pub(crate) struct GateEvents<'a>(pub(crate) &'a Shared);

impl GateObserver for GateEvents<'_> {
    fn started(&self, _: u32, command: &GateCommand) {
        let _ = self.0.events.publish_run(EventKind::GateStarted {
            command: command.command.clone(),
        });
    }

    fn finished(&self, _: u32, report: &CommandReport) {
        let _ = self.0.events.publish_run(EventKind::GateFinished {
            command: report.command.clone(),
            passed: report.passed(),
            exit_code: match report.status {
                CommandStatus::Passed => Some(0),
                CommandStatus::Failed { code } => Some(code),
                _ => None,
            },
            duration_ms: report.duration_ms,
            tests_passed: report.tests.map(|t| t.passed),
            tests_failed: report.tests.map(|t| t.failed),
        });
    }
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
    let runner = super::bisect::gate_runner(shared, cancel);
    let commands = runner
        .run_in(&plan_gate(&shared.plan), &*ws, &GateEvents(shared))
        .await;
    dispose(ws).await;
    Ok(GateReport {
        commands,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

//! The gate on the cluster (`[gate] on = "cluster"`): each gate command is a Ray job that runs
//! `forge attempt` on the integrated tree, shipped like an attempt's start tree (only the blobs
//! the node's cache lacks), with nothing captured back. Its output comes back over the data
//! channel into the command's report; `gate_started` / `gate_finished` go to the journal as
//! for the local gate. A command runs after the previous one passed, through the same loop as
//! locally ([`crate::gate::run_sequence`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use forge_merge::{CommandReport, CommandStatus, GateCommand, GateReport, parse_test_counts};
use forge_staging::{Manifest, Snapshot};
use serde_json::json;

use super::channel::{NodeResult, Order};
use super::{POLL, RayRunner, terminal};
use crate::ExecError;
use crate::gate::run_sequence;
use crate::manager::Shared;
use crate::manager::pipeline::{GateEvents, plan_gate};

/// The most output kept per gate command (the start is dropped first, as locally the tail is
/// what tells why a build failed).
const MAX_OUTPUT: usize = 1 << 20;

/// Gate runs of this process so far (fix rounds run the gate again): part of the job ids.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// How a gate job ended.
enum Ended {
    Result(NodeResult),
    TimedOut,
    Cancelled,
    Failed(String),
}

pub(super) async fn run(
    ray: &RayRunner,
    shared: &Arc<Shared>,
    tree: Arc<Snapshot>,
    cancel: &crate::CancelHandle,
) -> Result<GateReport, ExecError> {
    let started = Instant::now();
    let round = RUNS.fetch_add(1, Ordering::Relaxed);
    let manifest = crate::manager::blocking(move || tree.manifest()).await?;
    let gate = plan_gate(&shared.plan);
    let commands = run_sequence(
        &gate.commands,
        || cancel.is_cancelled(),
        |command, number| run_command(ray, shared, (round, number), &manifest, command, cancel),
        &GateEvents(shared),
    )
    .await;
    Ok(GateReport {
        commands,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Runs gate command number `number` (from 1) of gate run `round` as a Ray job on `tree`.
async fn run_command(
    ray: &RayRunner,
    shared: &Shared,
    (round, number): (u32, u32),
    tree: &Manifest,
    command: &GateCommand,
    cancel: &crate::CancelHandle,
) -> CommandReport {
    let began = Instant::now();
    let id = format!("{}gate-{round}-{}", ray.prefix, number.saturating_sub(1));
    let order = Order {
        run: shared.run.to_string(),
        task: "gate".to_owned(),
        attempt: 1,
        program: Some("/bin/sh".to_owned()),
        args: vec!["-c".to_owned(), command.command.clone()],
        env: Vec::new(),
        prompt: String::new(),
        tree: tree.clone(),
        capture: false,
    };
    let mut output = String::new();
    let mut truncated = false;
    let ended = follow(
        ray,
        &id,
        order,
        (cancel, command.timeout),
        &mut output,
        &mut truncated,
    )
    .await;
    let (status, note) = match ended {
        Ended::Result(r) => match (r.error, r.exit_code, r.signal) {
            (Some(e), ..) => (
                CommandStatus::NotStarted {
                    reason: format!("on node {}: {e}", r.node),
                },
                None,
            ),
            (None, Some(0), _) => (CommandStatus::Passed, None),
            (None, _, Some(signal)) => (CommandStatus::Killed { signal }, None),
            (None, Some(code), None) => (CommandStatus::Failed { code }, None),
            (None, None, None) => (
                CommandStatus::NotStarted {
                    reason: "the node reported no exit status".to_owned(),
                },
                None,
            ),
        },
        Ended::TimedOut => (CommandStatus::TimedOut, None),
        Ended::Cancelled => (CommandStatus::Skipped, Some("cancelled")),
        Ended::Failed(why) => (CommandStatus::NotStarted { reason: why }, None),
    };
    if let Some(note) = note {
        let _ = write!(output, "\n[forge: {note}]\n");
    }
    CommandReport {
        name: command.name.clone(),
        command: command.command.clone(),
        tests: parse_test_counts(&output),
        status,
        duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        output,
        output_truncated: truncated,
    }
}

/// Submits the job and follows it to its end, its output lines appended to `output`.
async fn follow(
    ray: &RayRunner,
    id: &str,
    order: Order,
    (cancel, timeout): (&crate::CancelHandle, Option<Duration>),
    output: &mut String,
    truncated: &mut bool,
) -> Ended {
    let mut inbox = ray.channel.open(id, order);
    let submitted = ray
        .submit(
            id,
            id,
            &std::collections::BTreeMap::new(),
            json!({ "forge_gate": "1" }),
        )
        .await;
    if let Err(e) = submitted {
        ray.channel.close(id);
        return Ended::Failed(e);
    }
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut poll = tokio::time::interval(POLL);
    let mut keep = |line: &str, output: &mut String| {
        output.push_str(line);
        output.push('\n');
        if output.len() > MAX_OUTPUT {
            let cut = output.len() - MAX_OUTPUT;
            let cut = (cut..output.len())
                .find(|&i| output.is_char_boundary(i))
                .unwrap_or(output.len());
            output.drain(..cut);
            *truncated = true;
        }
    };
    let ended = loop {
        tokio::select! {
            line = inbox.output.recv() => {
                if let Some(line) = line {
                    keep(&line.line, output);
                }
            }
            result = &mut inbox.result => {
                while let Ok(line) = inbox.output.try_recv() {
                    keep(&line.line, output);
                }
                break match result {
                    Ok(result) => Ended::Result(result),
                    Err(_) => Ended::Failed("the data channel closed".to_owned()),
                };
            }
            _ = poll.tick() => {
                if cancel.is_cancelled() {
                    ray.stop(id).await;
                    break Ended::Cancelled;
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    ray.stop(id).await;
                    break Ended::TimedOut;
                }
                if let Ok((status, message, _)) = ray.job(id).await
                    && terminal(&status)
                {
                    if let Ok(Ok(result)) =
                        tokio::time::timeout(Duration::from_secs(2), &mut inbox.result).await
                    {
                        while let Ok(line) = inbox.output.try_recv() {
                            keep(&line.line, output);
                        }
                        break Ended::Result(result);
                    }
                    break Ended::Failed(format!(
                        "the Ray job {id} ended ({status}) without a result: {message}"
                    ));
                }
            }
        }
    };
    ray.channel.close(id);
    ended
}

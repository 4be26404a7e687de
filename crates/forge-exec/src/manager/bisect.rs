//! Gate bisect: when the gate fails on the integrated tree, find the task that broke it.
//!
//! The integrated tree is the base plus every task's `ChangeSet`, folded in one after another (the
//! integration order). Forge gates trees holding a *prefix* of that order — the base and the
//! first `k` `ChangeSets` — and searches for the smallest `k` whose tree fails: task `k` (counted
//! from 1) is the first failing task, and `k = 0` means the base itself fails. A task is only
//! integrated after its dependencies were (it starts from a tree holding them), so every prefix
//! keeps each task together with its dependencies: no tree is one the run could not have made.
//!
//! Several trees are gated at once (up to the plan's `concurrency`): each round splits the
//! range still in doubt into `concurrency + 1` parts, so `n` integrated tasks take about
//! `log(n + 1) / log(concurrency + 1)` rounds. Each step is journaled (`gate_bisect_step`);
//! a resumed run reuses the steps it finds instead of gating those trees again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use forge_events::{Event, EventKind, EventSink as _, TaskId};
use forge_merge::{Gate, GateReport, IntegrationStatus, Merger};
use forge_staging::{ChangeSet, Stager};
use serde::{Deserialize, Serialize};

use super::{Shared, blocking};
use crate::ExecError;
use crate::gate::GateRunner;
use crate::sched::CancelHandle;
use crate::store::read_json;

/// One integrated task: its `ChangeSet` and its place in the plan (the merge's order key).
#[derive(Debug, Clone)]
pub struct IntegratedChanges {
    /// The task.
    pub task: TaskId,
    /// Its order key, as it was integrated with (its index in the plan).
    pub order: u64,
    /// What it changed.
    pub changes: ChangeSet,
}

/// Settings of a bisect.
#[derive(Debug, Clone, Default)]
pub struct BisectOptions {
    /// Trees gated at once (at least 1).
    pub concurrency: usize,
    /// Results already known, by prefix length (a resumed run's journaled steps): these trees
    /// are not gated again.
    pub known: HashMap<usize, bool>,
}

/// One tree a bisect gated (or took from `known`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BisectStep {
    /// How many `ChangeSets` the tree held (0: the base alone).
    pub changesets: usize,
    /// The last task whose `ChangeSet` it held.
    pub last: Option<TaskId>,
    /// Whether every gate command passed.
    pub passed: bool,
    /// The gate's report (`None` for a result taken from `known`).
    pub report: Option<GateReport>,
}

/// What a bisect found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateBisect {
    /// The integrated tasks, in integration order.
    pub tasks: Vec<TaskId>,
    /// The first task whose `ChangeSet` makes the gate fail (`None` if the base fails, or the
    /// bisect was cancelled).
    pub culprit: Option<TaskId>,
    /// Whether the base alone fails the gate.
    pub base_fails: bool,
    /// Gate runs made (known results not counted).
    pub gate_runs: u32,
    /// Whether it was cancelled before it could name anything.
    #[serde(default)]
    pub cancelled: bool,
    /// The gate's report on the first failing tree (the culprit's `ChangeSet` on top of every
    /// one before it), when this process gated it: the failure to show or feed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<GateReport>,
}

impl GateBisect {
    /// One line for people: what the bisect found.
    pub fn message(&self) -> String {
        let runs = format!(
            "{} gate run{}",
            self.gate_runs,
            if self.gate_runs == 1 { "" } else { "s" }
        );
        match (&self.culprit, self.base_fails, self.cancelled) {
            (_, _, true) => format!("bisect cancelled after {runs}"),
            (_, true, _) => format!(
                "the base itself fails the gate, without any task's changes (bisected in {runs})"
            ),
            (Some(task), ..) => {
                format!(
                    "`{task}` is the first task whose changes fail the gate (bisected in {runs})"
                )
            }
            (None, false, false) => format!("no task named (bisected in {runs})"),
        }
    }
}

/// Finds the smallest `k` in `0..=count` for which `probe(k)` fails, knowing that `count`
/// fails (it is never probed) and assuming that once a prefix fails, every longer one does.
/// `probe(k)` returns `Some(passed)`, or `None` to stop the search (then the result is `None`).
/// Each round probes up to `concurrency` values of `k` at once, on threads of their own.
pub fn first_failing<E: Send>(
    count: usize,
    concurrency: usize,
    probe: impl Fn(usize) -> Result<Option<bool>, E> + Sync,
) -> Result<Option<usize>, E> {
    // Every k < lo passed (or is unknown when lo = 0), hi fails: the answer is in lo..=hi.
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let n = hi - lo;
        let p = concurrency.clamp(1, n);
        let points: Vec<usize> = (1..=p).map(|i| lo + i * n / (p + 1)).collect();
        let results: Vec<Result<Option<bool>, E>> = if points.len() == 1 {
            vec![probe(points[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = points
                    .iter()
                    .map(|&k| {
                        let probe = &probe;
                        scope.spawn(move || probe(k))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(Ok(None)))
                    .collect()
            })
        };
        let mut outcomes = Vec::with_capacity(points.len());
        for (k, r) in points.iter().zip(results) {
            match r? {
                Some(passed) => outcomes.push((*k, passed)),
                None => return Ok(None),
            }
        }
        if let Some(k) = outcomes.iter().filter(|(_, p)| !p).map(|(k, _)| *k).min() {
            hi = k;
        }
        // Passes above the lowest failure (a flaky gate) say nothing the failure does not.
        if let Some(k) = outcomes
            .iter()
            .filter(|(k, p)| *p && *k < hi)
            .map(|(k, _)| *k)
            .max()
        {
            lo = lo.max(k + 1);
        }
    }
    Ok(Some(hi))
}

/// Bisects a failed gate over `integrated` (in integration order; the tree holding all of them
/// failed `gate`): gates trees holding the base and a prefix of them, staged by `stager` from
/// delta layers made under `layers`, until it names the first failing task or finds that the
/// base fails. `new_integration` makes an empty integration of the run's base with the run's
/// merge strategies; `on_step` hears of every tree's result as it comes (from several threads).
/// `runner` runs the gate's commands (contained, with the run's id); blocks the calling thread.
#[allow(clippy::too_many_arguments)] // the parts of a run a bisect needs, none optional
pub fn bisect_gate(
    integrated: &[IntegratedChanges],
    new_integration: &(dyn Fn() -> Box<dyn Merger> + Sync),
    gate: &Gate,
    runner: &GateRunner,
    stager: &dyn Stager,
    layers: &Path,
    options: &BisectOptions,
    cancel: &CancelHandle,
    on_step: &(dyn Fn(&BisectStep) + Sync),
) -> Result<GateBisect, ExecError> {
    let tasks: Vec<TaskId> = integrated.iter().map(|c| c.task.clone()).collect();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let failing = parking_lot::Mutex::new(HashMap::<usize, GateReport>::new());
    let probe = |k: usize| -> Result<Option<bool>, ExecError> {
        let last = k.checked_sub(1).map(|i| tasks[i].clone());
        if let Some(&passed) = options.known.get(&k) {
            on_step(&BisectStep {
                changesets: k,
                last,
                passed,
                report: None,
            });
            return Ok(Some(passed));
        }
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let report = gate_prefix(
            &integrated[..k],
            new_integration,
            gate,
            runner,
            stager,
            layers,
        )?;
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let passed = report.passed();
        let step = BisectStep {
            changesets: k,
            last,
            passed,
            report: Some(report),
        };
        on_step(&step);
        if let (false, Some(report)) = (passed, step.report) {
            failing.lock().insert(k, report);
        }
        Ok(Some(passed))
    };
    let found = first_failing(integrated.len(), options.concurrency, probe)?;
    let gate_runs = runs.into_inner();
    Ok(match found {
        None => GateBisect {
            tasks,
            culprit: None,
            base_fails: false,
            gate_runs,
            cancelled: true,
            failing: None,
        },
        Some(k) => GateBisect {
            culprit: k.checked_sub(1).map(|i| tasks[i].clone()),
            tasks,
            base_fails: k == 0,
            gate_runs,
            cancelled: false,
            failing: failing.lock().remove(&k),
        },
    })
}

/// Gates the base with `prefix` integrated.
fn gate_prefix(
    prefix: &[IntegratedChanges],
    new_integration: &(dyn Fn() -> Box<dyn Merger> + Sync),
    gate: &Gate,
    runner: &GateRunner,
    stager: &dyn Stager,
    layers: &Path,
) -> Result<GateReport, ExecError> {
    let mut integration = new_integration();
    for c in prefix {
        let outcome = integration.integrate(&c.task, &c.changes, c.order)?;
        if let IntegrationStatus::NeedsRerun { .. } | IntegrationStatus::Rejected = outcome.status {
            return Err(ExecError::Store(format!(
                "bisecting the gate: the changes of `{}` no longer integrate as they did ({outcome})",
                c.task
            )));
        }
    }
    let k = prefix.len();
    let dir = layers.join(format!("p{k}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| ExecError::io("remove", &dir, e))?;
    }
    std::fs::create_dir_all(layers).map_err(|e| ExecError::io("create", layers, e))?;
    let snapshot = integration.snapshot(&dir)?;
    let report = runner.run_blocking(gate, stager, &snapshot, &format!("bisect-{k}"));
    drop(snapshot);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// The results of the latest bisect in `history` over the same integrated `tasks` (a resumed
/// run's), by prefix length.
pub(crate) fn known_steps(history: &[Event], tasks: &[TaskId]) -> HashMap<usize, bool> {
    let mut known = HashMap::new();
    let mut same = false;
    for event in history {
        match &event.kind {
            EventKind::GateBisectStarted { tasks: t, .. } => {
                known.clear();
                same = t == tasks;
            }
            EventKind::GateBisectStep {
                changesets,
                last,
                passed,
                ..
            } if same => {
                let k = *changesets as usize;
                let expected = k.checked_sub(1).and_then(|i| tasks.get(i));
                if k <= tasks.len() && last.as_ref() == expected {
                    known.insert(k, *passed);
                }
            }
            _ => {}
        }
    }
    known
}

/// The runner of the run's gate commands: contained like its attempts, stopped by its cancel.
pub(crate) fn gate_runner(shared: &Shared, cancel: &CancelHandle) -> GateRunner {
    let (stop, kill) = cancel.tokens();
    GateRunner::new(shared.run.clone())
        .options(shared.process.clone())
        .cancel_on(stop, kill)
}

/// The run's bisect of its failed gate, with its events.
pub(crate) async fn run_bisect(
    shared: &Arc<Shared>,
    cancel: &CancelHandle,
    history: Option<&[Event]>,
) -> Result<GateBisect, ExecError> {
    let order: Vec<(TaskId, u32)> = shared.integration.lock().integrated().to_vec();
    let tasks: Vec<TaskId> = order.iter().map(|(t, _)| t.clone()).collect();
    let known = history.map(|h| known_steps(h, &tasks)).unwrap_or_default();
    let concurrency = shared.plan.concurrency.max(1);
    let _ = shared.events.publish_run(EventKind::GateBisectStarted {
        tasks: tasks.clone(),
        concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX),
    });
    let (shared2, cancel2) = (shared.clone(), cancel.clone());
    let bisect = blocking(move || -> Result<GateBisect, ExecError> {
        let shared = shared2;
        let mut integrated = Vec::with_capacity(order.len());
        for (task, attempt) in &order {
            let path = shared
                .store
                .changes_path(&shared.run, task.as_str(), *attempt);
            integrated.push(IntegratedChanges {
                task: task.clone(),
                order: shared.order.get(task).copied().unwrap_or(u64::MAX),
                changes: read_json(&path)?,
            });
        }
        let template = shared.integration.lock().integration().empty();
        let new_integration = move || template.empty();
        let gate = super::pipeline::plan_gate(&shared.plan);
        let layers = shared.store.work_dir(&shared.run).join("bisect");
        let on_step = |step: &BisectStep| {
            let failed_command = step.report.as_ref().and_then(|r| {
                r.commands
                    .iter()
                    .find(|c| !c.passed() && c.status != forge_merge::CommandStatus::Skipped)
                    .map(|c| c.name.clone())
            });
            let _ = shared.events.publish_run(EventKind::GateBisectStep {
                changesets: u32::try_from(step.changesets).unwrap_or(u32::MAX),
                last: step.last.clone(),
                passed: step.passed,
                failed_command,
                duration_ms: step.report.as_ref().map_or(0, |r| r.duration_ms),
                reused: step.report.is_none(),
            });
        };
        let options = BisectOptions { concurrency, known };
        let result = bisect_gate(
            &integrated,
            &new_integration,
            &gate,
            &gate_runner(&shared, &cancel2),
            shared.stager.as_ref(),
            &layers,
            &options,
            &cancel2,
            &on_step,
        );
        let _ = std::fs::remove_dir_all(&layers);
        result
    })
    .await?;
    match &bisect {
        Ok(found) => {
            let _ = shared.events.publish_run(EventKind::GateBisectFinished {
                culprit: found.culprit.clone(),
                base_fails: found.base_fails,
                gate_runs: found.gate_runs,
                message: found.message(),
            });
        }
        Err(e) => {
            let _ = shared.events.publish_run(EventKind::GateBisectFinished {
                culprit: None,
                base_fails: false,
                gate_runs: 0,
                message: format!("the bisect failed: {e}"),
            });
        }
    }
    bisect
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer and the probes made, for a culprit at `culprit` (0: the base fails).
    fn search(count: usize, concurrency: usize, culprit: usize) -> (usize, usize) {
        let probes = std::sync::atomic::AtomicUsize::new(0);
        let found = first_failing::<()>(count, concurrency, |k| {
            assert!(k < count, "the failing full tree is never probed");
            probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Some(k < culprit))
        })
        .unwrap()
        .unwrap();
        (found, probes.into_inner())
    }

    #[test]
    fn finds_every_culprit_within_the_bound() {
        for count in 1..=70 {
            for culprit in 0..=count {
                for concurrency in [1, 2, 3, 4, 8] {
                    let (found, probes) = search(count, concurrency, culprit);
                    assert_eq!(found, culprit, "count {count} concurrency {concurrency}");
                    // ceil(log2(count + 1)) probes for the sequential search.
                    if concurrency == 1 {
                        let bound = (usize::BITS - count.leading_zeros()) as usize;
                        assert!(probes <= bound, "{probes} > {bound} for {count}");
                    }
                }
            }
        }
        // Eight tasks: at most four gate runs, one or two at a time.
        for culprit in 0..=8 {
            assert!(search(8, 1, culprit).1 <= 4);
            assert!(search(8, 2, culprit).1 <= 4);
        }
    }

    #[test]
    fn stops_when_a_probe_says_stop() {
        let found = first_failing::<()>(8, 2, |_| Ok(None)).unwrap();
        assert_eq!(found, None);
        let err = first_failing(8, 3, |k| if k == 2 { Err("boom") } else { Ok(Some(true)) });
        assert_eq!(err, Err("boom"));
    }

    #[test]
    fn a_flaky_pass_above_a_failure_is_ignored() {
        // Prefix 2 fails, 5 "passes": the lowest failure wins.
        let found = first_failing::<()>(8, 8, |k| Ok(Some(!(2..5).contains(&k) && k != 6)))
            .unwrap()
            .unwrap();
        assert_eq!(found, 2);
    }
}

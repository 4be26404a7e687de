//! The plan preview: what a run of a plan will do, before it starts.
//!
//! [`preview`] looks at a validated [`Plan`] the way the scheduler and the lock manager will:
//! which tasks can run together, which are serialized and why (an `after` edge, or claims that
//! overlap with a write so the locks let one of them at a time), the critical path, and — when
//! every task has an estimate — the wall time a simulation of the scheduler gives against the
//! sequential sum. Estimates come from the plan's `estimate` keys, else from the repository's
//! earlier runs ([`Estimates::from_runs`]: the median duration of the task id, then of the
//! agent), else they are unknown and the time is not guessed.
//!
//! The result is [`forge_events::PlanPreview`]: the `plan_preview` event the
//! [`ExecutionManager`](crate::ExecutionManager) publishes after `run_started`, and what
//! `forge check` prints. [`remaining`] turns it and a run's state into a live ETA.

use std::collections::HashMap;
use std::time::Duration;

use forge_events::{
    ClaimRecord, Overlap, PlanPreview, PreviewTask, RunState, SerialReason, Serialized, TaskId,
    TaskPhase, Timestamp,
};
use forge_locks::{Claim, OwnerId};

use super::Plan;

mod estimates;
mod schedule;

pub use estimates::{Estimates, HISTORY_RUNS};
use schedule::{Sim, critical_path, simulate, topological};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn overlap(first: &Claim, then: &Claim, path: &str) -> Overlap {
    Overlap {
        first_claim: claim_record(first),
        then_claim: claim_record(then),
        path: path.to_owned(),
    }
}

fn claim_record(claim: &Claim) -> ClaimRecord {
    ClaimRecord {
        mode: claim.mode,
        pattern: claim.pattern.as_str().to_owned(),
    }
}

/// The preview of `plan` (validated: ids unique, no cycles) with `estimates` for tasks
/// without an `estimate` key.
pub fn preview(plan: &Plan, estimates: &Estimates) -> PlanPreview {
    let n = plan.tasks.len();
    let index = super::positions(plan.tasks.iter().map(|t| &t.id));
    let tasks: Vec<PreviewTask> = plan
        .tasks
        .iter()
        .map(|t| {
            let (estimate_ms, estimate_from) = estimates.for_task(t);
            PreviewTask {
                id: t.id.clone(),
                agent: t.agent.clone(),
                claims: t.claims().map(claim_record).collect(),
                after: t.after.clone(),
                estimate_ms,
                estimate_from,
                files: t.files,
            }
        })
        .collect();

    let deps = super::dependency_positions(plan.tasks.iter().map(|t| t.after.as_slice()), &index);
    let (serialized, more_serialized, excludes) = serialized(plan, &index, &deps, overlaps(plan));

    let order = topological(&deps);
    let weights: Vec<u64> = tasks.iter().map(|t| t.estimate_ms.unwrap_or(0)).collect();

    let together = together(&order, &deps, &excludes);

    let known = tasks.iter().all(|t| t.estimate_ms.is_some());
    let concurrency = plan.concurrency.max(1);
    let estimate_ms = known.then(|| {
        simulate(&Sim {
            durations: &weights,
            deps: &deps,
            excludes: &excludes,
            concurrency,
            done: &vec![false; n],
            running: &[],
        })
    });
    PlanPreview {
        concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX),
        together: together
            .into_iter()
            .map(|g| g.into_iter().map(|i| plan.tasks[i].id.clone()).collect())
            .collect(),
        serialized,
        more_serialized,
        critical_path: critical_path(&order, &deps, &weights)
            .into_iter()
            .map(|i| plan.tasks[i].id.clone())
            .collect(),
        estimate_ms,
        sequential_ms: known.then(|| weights.iter().fold(0u64, |a, &w| a.saturating_add(w))),
        tasks,
    }
}

/// The pairs of claims that cover a common path, one of them a write (one pair of claims per
/// pair of tasks), as task indices with the claims oriented from the first task to the second.
fn overlaps(plan: &Plan) -> Vec<(usize, usize, Overlap)> {
    let sets: Vec<(OwnerId, Vec<Claim>)> = plan
        .tasks
        .iter()
        .map(|t| (OwnerId::new(t.id.clone(), 0), t.claims().cloned().collect()))
        .collect();
    let by_name: HashMap<&str, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut pairs: Vec<(usize, usize, Overlap)> = forge_locks::claim_overlaps(&sets)
        .into_iter()
        .filter_map(|c| {
            let a = *by_name.get(c.first.name())?;
            let b = *by_name.get(c.second.name())?;
            Some(if a <= b {
                (
                    a,
                    b,
                    overlap(&c.first_claim, &c.second_claim, &c.example_path),
                )
            } else {
                (
                    b,
                    a,
                    overlap(&c.second_claim, &c.first_claim, &c.example_path),
                )
            })
        })
        .collect();
    pairs.sort_by_key(|(a, b, _)| (*a, *b));
    pairs.dedup_by_key(|(a, b, _)| (*a, *b));
    pairs
}

/// Most pairs serialized by the locks a preview lists; [`PlanPreview::more_serialized`]
/// counts the others (a plan where many tasks read what many others write has quadratically
/// many such pairs).
pub const MAX_LOCK_PAIRS: usize = 200;

/// Every `after` edge (with the overlap it keeps apart, if any), then the overlaps no chain of
/// edges orders (the locks serialize them; at most [`MAX_LOCK_PAIRS`] listed, the rest
/// counted); and for each task, the tasks it excludes.
fn serialized(
    plan: &Plan,
    index: &HashMap<&TaskId, usize>,
    deps: &[Vec<usize>],
    overlaps: Vec<(usize, usize, Overlap)>,
) -> (Vec<Serialized>, u64, Vec<Vec<usize>>) {
    let n = plan.tasks.len();
    let reach = Reach::new(deps);
    let mut edge_overlap: HashMap<(usize, usize), Overlap> = HashMap::new();
    let mut excludes = vec![Vec::new(); n];
    let mut locks = Vec::new();
    let mut more = 0u64;
    for (a, b, o) in overlaps {
        if deps[b].contains(&a) || deps[a].contains(&b) {
            edge_overlap.insert((a, b), o);
        } else if reach.ordered(a, b) || reach.ordered(b, a) {
            // Kept apart by a chain of `after` edges: nothing to say about this pair.
        } else {
            excludes[a].push(b);
            excludes[b].push(a);
            if locks.len() < MAX_LOCK_PAIRS {
                locks.push(Serialized {
                    first: plan.tasks[a].id.clone(),
                    then: plan.tasks[b].id.clone(),
                    reason: SerialReason::Locks,
                    overlap: Some(o),
                });
            } else {
                more += 1;
            }
        }
    }
    let mut serialized = Vec::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        for dep in &t.after {
            let Some(&d) = index.get(dep).filter(|&&d| d != i) else {
                continue;
            };
            // Oriented from the dependency to the task.
            let overlap = edge_overlap.get(&(d.min(i), d.max(i))).map(|o| {
                if d <= i {
                    o.clone()
                } else {
                    Overlap {
                        first_claim: o.then_claim.clone(),
                        then_claim: o.first_claim.clone(),
                        path: o.path.clone(),
                    }
                }
            });
            serialized.push(Serialized {
                first: dep.clone(),
                then: t.id.clone(),
                reason: SerialReason::After,
                overlap,
            });
        }
    }
    serialized.extend(locks);
    (serialized, more, excludes)
}

/// Whether a chain of `after` edges leads from one task to another: the transitive closure
/// as bit sets (n² bits) for plans up to [`Reach::CLOSURE_LIMIT`] tasks, a walk per question
/// beyond.
struct Reach<'a> {
    deps: &'a [Vec<usize>],
    /// `closure[i]`: the tasks `i` runs after, directly or not.
    closure: Option<Vec<Vec<u64>>>,
}

impl<'a> Reach<'a> {
    const CLOSURE_LIMIT: usize = 20_000;

    fn new(deps: &'a [Vec<usize>]) -> Self {
        let n = deps.len();
        if n > Self::CLOSURE_LIMIT {
            return Self {
                deps,
                closure: None,
            };
        }
        let words = n.div_ceil(64);
        let mut closure = vec![vec![0u64; words]; n];
        for i in topological(deps) {
            for &d in &deps[i] {
                let (low, high) = closure.split_at_mut(i.max(d));
                let (row, from) = if i < d {
                    (&mut low[i], &high[0])
                } else {
                    (&mut high[0], &low[d])
                };
                for (w, f) in row.iter_mut().zip(from) {
                    *w |= f;
                }
                row[d / 64] |= 1 << (d % 64);
            }
        }
        Self {
            deps,
            closure: Some(closure),
        }
    }

    /// Whether `to` runs after `from` (through any chain of edges).
    fn ordered(&self, from: usize, to: usize) -> bool {
        match &self.closure {
            Some(closure) => closure[to][from / 64] & (1 << (from % 64)) != 0,
            None => {
                let mut seen = vec![false; self.deps.len()];
                let mut stack = vec![to];
                while let Some(i) = stack.pop() {
                    for &d in &self.deps[i] {
                        if d == from {
                            return true;
                        }
                        if !seen[d] {
                            seen[d] = true;
                            stack.push(d);
                        }
                    }
                }
                false
            }
        }
    }
}

/// Most groups of tasks that can run together a preview lists.
pub const MAX_GROUPS: usize = 200;

/// Groups of tasks that can run at the same time (at most [`MAX_GROUPS`]): layers by the
/// longest chain of `after` edges; within a layer, tasks whose claims do not exclude each other.
fn together(order: &[usize], deps: &[Vec<usize>], excludes: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut depth = vec![0usize; n];
    for &i in order {
        depth[i] = deps[i].iter().map(|&d| depth[d] + 1).max().unwrap_or(0);
    }
    let mut layers: Vec<Vec<usize>> =
        vec![Vec::new(); depth.iter().copied().max().map_or(0, |d| d + 1)];
    for (i, &d) in depth.iter().enumerate() {
        layers[d].push(i);
    }
    let mut together: Vec<Vec<usize>> = Vec::new();
    let mut covered = vec![false; n];
    let mut in_group = vec![false; n];
    for members in layers {
        if together.len() >= MAX_GROUPS {
            break;
        }
        if members.iter().all(|&i| excludes[i].is_empty()) {
            if members.len() > 1 {
                together.push(members);
            }
            continue;
        }
        // Each task not yet in a group seeds one: the tasks of the layer compatible with all
        // of it, in plan order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &seed in &members {
            if covered[seed] {
                continue;
            }
            let mut group = vec![seed];
            in_group[seed] = true;
            for &j in &members {
                if j != seed && !excludes[j].iter().any(|&x| in_group[x]) {
                    group.push(j);
                    in_group[j] = true;
                }
            }
            group.sort_unstable();
            for &i in &group {
                covered[i] = true;
                in_group[i] = false;
            }
            groups.push(group);
        }
        together.extend(groups.into_iter().filter(|g| g.len() > 1));
    }
    together.truncate(MAX_GROUPS);

    together
}

/// The estimated time until the run of `preview` ends, from its `state` at `now`: running
/// tasks need what is left of their estimate (nothing once over it), tasks not started their
/// whole estimate, scheduled as [`preview`] simulates (with the lock exclusions the preview
/// lists: beyond [`MAX_LOCK_PAIRS`] of them the time is a little optimistic). `None` when a
/// task still to finish has no estimate.
pub fn remaining(preview: &PlanPreview, state: &RunState, now: Timestamp) -> Option<Duration> {
    let n = preview.tasks.len();
    let index = super::positions(preview.tasks.iter().map(|t| &t.id));
    let mut durations = vec![0u64; n];
    let mut done = vec![false; n];
    let mut running = Vec::new();
    for (i, t) in preview.tasks.iter().enumerate() {
        let phase = state
            .task(t.id.as_str())
            .map_or(TaskPhase::Queued, |s| s.status);
        match phase {
            TaskPhase::Succeeded
            | TaskPhase::Failed
            | TaskPhase::TimedOut
            | TaskPhase::Cancelled
            | TaskPhase::Skipped => done[i] = true,
            TaskPhase::Running => {
                let estimate = t.estimate_ms?;
                let since = state
                    .task(t.id.as_str())
                    .and_then(|s| s.attempt_started_at.or(s.started_at));
                let elapsed = since.map_or(0, |s| {
                    u64::try_from(now.as_millisecond().saturating_sub(s.as_millisecond()))
                        .unwrap_or(0)
                });
                running.push((i, estimate.saturating_sub(elapsed)));
            }
            TaskPhase::Queued | TaskPhase::WaitingLocks | TaskPhase::Retrying => {
                durations[i] = t.estimate_ms?;
            }
        }
    }
    let deps =
        super::dependency_positions(preview.tasks.iter().map(|t| t.after.as_slice()), &index);
    let mut excludes = vec![Vec::new(); n];
    for s in &preview.serialized {
        if let (SerialReason::Locks, Some(&a), Some(&b)) =
            (s.reason, index.get(&s.first), index.get(&s.then))
        {
            excludes[a].push(b);
            excludes[b].push(a);
        }
    }
    Some(Duration::from_millis(simulate(&Sim {
        durations: &durations,
        deps: &deps,
        excludes: &excludes,
        concurrency: usize::try_from(preview.concurrency.max(1)).unwrap_or(1),
        done: &done,
        running: &running,
    })))
}

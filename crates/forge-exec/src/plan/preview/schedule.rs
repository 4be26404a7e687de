//! The scheduler as the preview imagines it: a DAG's order and critical path, and a simulation
//! of ready tasks starting longest-chain first under concurrency and lock exclusions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Kahn's order of a dependency list (tasks in a cycle, which a validated plan has not, are
/// left out).
pub(super) fn topological(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut missing: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
    let mut k = 0;
    while k < order.len() {
        let i = order[k];
        k += 1;
        for &j in &dependents[i] {
            missing[j] -= 1;
            if missing[j] == 0 {
                order.push(j);
            }
        }
    }
    order
}

/// The chain with the largest total weight (then the most tasks), first task first.
pub(super) fn critical_path(order: &[usize], deps: &[Vec<usize>], weights: &[u64]) -> Vec<usize> {
    let n = deps.len();
    let mut best: Vec<(u64, usize)> = vec![(0, 0); n];
    let mut prev: Vec<Option<usize>> = vec![None; n];
    for &i in order {
        let before = deps[i]
            .iter()
            .copied()
            .max_by_key(|&d| (best[d], std::cmp::Reverse(d)));
        let base = before.map_or((0, 0), |d| best[d]);
        best[i] = (base.0.saturating_add(weights[i]), base.1 + 1);
        prev[i] = before;
    }
    let Some(mut at) = order
        .iter()
        .copied()
        .max_by_key(|&i| (best[i], std::cmp::Reverse(i)))
    else {
        return Vec::new();
    };
    let mut path = vec![at];
    while let Some(p) = prev[at] {
        path.push(p);
        at = p;
    }
    path.reverse();
    path
}

/// A scheduling problem: every task's duration, dependencies and lock exclusions, the
/// concurrency, what is done and what runs (with the time it still needs).
pub(super) struct Sim<'a> {
    pub(super) durations: &'a [u64],
    pub(super) deps: &'a [Vec<usize>],
    pub(super) excludes: &'a [Vec<usize>],
    pub(super) concurrency: usize,
    pub(super) done: &'a [bool],
    pub(super) running: &'a [(usize, u64)],
}

/// The time until every task is done when ready tasks start as the scheduler starts them:
/// longest remaining chain first, at most `concurrency` at once, never two that exclude each
/// other.
pub(super) fn simulate(sim: &Sim<'_>) -> u64 {
    let n = sim.durations.len();
    // Priority: the longest chain from the task to the end.
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in sim.deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let order = topological(sim.deps);
    let mut rank = vec![0u64; n];
    for &i in order.iter().rev() {
        let tail = dependents[i].iter().map(|&j| rank[j]).max().unwrap_or(0);
        rank[i] = sim.durations[i].saturating_add(tail);
    }
    let mut finished = sim.done.to_vec();
    let mut started = sim.done.to_vec();
    let mut missing: Vec<usize> = sim
        .deps
        .iter()
        .map(|ds| ds.iter().filter(|&&d| !finished[d]).count())
        .collect();
    let mut running: Vec<(usize, u64)> = Vec::new();
    for &(i, left) in sim.running {
        if i < n && !started[i] {
            started[i] = true;
            running.push((i, left));
        }
    }
    // Ready tasks, longest remaining chain first, then plan order.
    let mut ready: BinaryHeap<(u64, Reverse<usize>)> = (0..n)
        .filter(|&i| !started[i] && missing[i] == 0)
        .map(|i| (rank[i], Reverse(i)))
        .collect();
    let mut now = 0u64;
    loop {
        let mut held = Vec::new();
        while running.len() < sim.concurrency {
            let Some((r, Reverse(i))) = ready.pop() else {
                break;
            };
            if running.iter().any(|(x, _)| sim.excludes[i].contains(x)) {
                held.push((r, Reverse(i)));
                continue;
            }
            started[i] = true;
            running.push((i, now.saturating_add(sim.durations[i])));
        }
        ready.extend(held);
        let Some(next) = running.iter().map(|&(_, end)| end).min() else {
            return now;
        };
        now = next;
        let mut ended = Vec::new();
        running.retain(|&(i, end)| {
            if end <= now {
                ended.push(i);
                false
            } else {
                true
            }
        });
        for i in ended {
            finished[i] = true;
            for &j in &dependents[i] {
                missing[j] = missing[j].saturating_sub(1);
                if missing[j] == 0 && !started[j] {
                    ready.push((rank[j], Reverse(j)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulation_respects_concurrency_dependencies_and_exclusions() {
        let durations = [10, 10, 10, 5];
        let deps = [vec![], vec![], vec![], vec![0]];
        let none = vec![Vec::new(); 4];
        let sim = |concurrency, excludes: &[Vec<usize>]| {
            simulate(&Sim {
                durations: &durations,
                deps: &deps,
                excludes,
                concurrency,
                done: &[false; 4],
                running: &[],
            })
        };
        assert_eq!(sim(4, &none), 15);
        assert_eq!(sim(1, &none), 35);
        // 1 and 2 exclude each other: one of them waits.
        let excl = [vec![], vec![2], vec![1], vec![]];
        assert_eq!(sim(4, &excl), 20);
    }
}

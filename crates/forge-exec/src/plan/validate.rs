//! Checks that need the whole plan: ids, dependencies, cycles, agents, pools and claims that
//! would collide.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use forge_events::TaskId;
use forge_locks::{Claim, OwnerId};
use petgraph::graph::{DiGraph, NodeIndex};

use super::parse::{Spans, did_you_mean};
use super::problem::Problem;
use super::{Plan, PlanOptions, Task};

/// Runs every whole-plan check. `spans` locate problems in the source, when there is one.
pub(crate) fn validate(
    plan: &Plan,
    spans: Option<&Spans>,
    opts: &PlanOptions,
    problems: &mut Vec<Problem>,
) {
    let task_span = |i: usize| spans.and_then(|s| s.tasks.get(i));
    let at = |msg: String, span: Option<&std::ops::Range<usize>>| Problem::new(msg, span.cloned());

    // Duplicate ids: the first definition wins, later ones are reported.
    let mut index: FxHashMap<&TaskId, usize> =
        FxHashMap::with_capacity_and_hasher(plan.tasks.len(), rustc_hash::FxBuildHasher);
    for (i, task) in plan.tasks.iter().enumerate() {
        if let Some(&first) = index.get(&task.id) {
            let mut p = at(
                format!("duplicate task id `{}`", task.id),
                task_span(i).map(|s| &s.id),
            )
            .label("used again here");
            if let Some(first) = task_span(first) {
                p = p.note(&first.id, "first used here");
            }
            problems.push(p.help("task ids must be unique; rename one of them"));
        } else {
            index.insert(&task.id, i);
        }
    }

    for (i, task) in plan.tasks.iter().enumerate() {
        let spans = task_span(i);
        // Agents.
        if !task.agent.is_empty() && !opts.agents.contains(&task.agent) {
            let mut p = at(
                format!("task `{}` uses unknown agent `{}`", task.id, task.agent),
                spans.and_then(|s| s.agent.as_ref()),
            )
            .label("unknown agent");
            p = match did_you_mean(&task.agent, opts.agents.iter().map(String::as_str)) {
                Some(s) => p.help(format!("did you mean `{s}`?")),
                None => p.help(format!("known agents: {}", opts.agents.join(", "))),
            };
            problems.push(p);
        }
        if spans.is_none() && task.timeout.is_some_and(|t| t.is_zero()) {
            problems.push(at(
                format!(
                    "task `{}` has a zero timeout, which would stop every attempt at once",
                    task.id
                ),
                None,
            ));
        }
        if spans.is_none() && task.prompt.trim().is_empty() {
            problems.push(at(format!("task `{}` has an empty prompt", task.id), None));
        }
        // Pools.
        if let Some(pool) = &task.pool
            && !plan.pools.contains_key(pool)
        {
            let mut p = at(
                format!(
                    "task `{}` uses pool `{pool}`, which `[pools]` does not define",
                    task.id
                ),
                spans.and_then(|s| s.pool.as_ref()),
            )
            .label("unknown pool");
            p = match did_you_mean(pool, plan.pools.keys().map(String::as_str)) {
                Some(s) => p.help(format!("did you mean `{s}`?")),
                None => p.help(format!("define it: `[pools]` `{pool} = 2`")),
            };
            problems.push(p);
        }
        // Dependencies.
        for (k, dep) in task.after.iter().enumerate() {
            let span = spans.and_then(|s| s.after.get(k));
            if *dep == task.id {
                problems.push(
                    at(format!("task `{}` runs after itself", task.id), span)
                        .label("self-dependency"),
                );
            } else if !index.contains_key(dep) {
                let mut p = at(
                    format!(
                        "task `{}` runs after `{dep}`, which is not a task of this plan",
                        task.id
                    ),
                    span,
                )
                .label("no such task");
                if let Some(s) =
                    did_you_mean(dep.as_str(), plan.tasks.iter().map(|t| t.id.as_str()))
                {
                    p = p.help(format!("did you mean `{s}`?"));
                }
                problems.push(p);
            }
        }
    }

    let deps = graph(plan, &index);
    report_cycles(plan, &deps, spans, problems);
    report_conflicts(plan, &deps, spans, problems);
}

/// The dependency graph: an edge `dep -> task` for each `after` entry that names a task.
pub(crate) fn graph<S: std::hash::BuildHasher>(
    plan: &Plan,
    index: &HashMap<&TaskId, usize, S>,
) -> DiGraph<usize, ()> {
    let mut g = DiGraph::with_capacity(plan.tasks.len(), plan.tasks.len());
    for i in 0..plan.tasks.len() {
        g.add_node(i);
    }
    for (i, task) in plan.tasks.iter().enumerate() {
        for dep in &task.after {
            if let Some(&d) = index.get(dep)
                && d != i
            {
                g.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
            }
        }
    }
    g
}

fn report_cycles(
    plan: &Plan,
    g: &DiGraph<usize, ()>,
    spans: Option<&Spans>,
    problems: &mut Vec<Problem>,
) {
    for scc in petgraph::algo::tarjan_scc(g) {
        if scc.len() < 2 {
            continue;
        }
        let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        // Walk inside the component from its first task (in plan order) until a task repeats.
        let start = scc.iter().copied().min_by_key(|n| g[*n]).unwrap_or(scc[0]);
        let mut path = vec![start];
        let mut seen = std::collections::HashMap::from([(start, 0usize)]);
        let cycle = loop {
            let here = *path.last().unwrap_or(&start);
            // Tasks this one must run before; we print "a -> b" as "b runs after a".
            let Some(next) = g
                .neighbors_directed(here, petgraph::Direction::Outgoing)
                .filter(|n| members.contains(n))
                .min_by_key(|n| g[*n])
            else {
                break Vec::new();
            };
            if let Some(&at) = seen.get(&next) {
                let mut c = path[at..].to_vec();
                c.push(next);
                break c;
            }
            seen.insert(next, path.len());
            path.push(next);
        };
        if cycle.is_empty() {
            continue;
        }
        let names: Vec<&str> = cycle
            .iter()
            .map(|n| plan.tasks[g[*n]].id.as_str())
            .collect();
        // Point at the `after` entry of the second task that names the first.
        let (a, b) = (g[cycle[0]], g[cycle[1]]);
        let span = spans.and_then(|s| {
            let k = plan.tasks[b]
                .after
                .iter()
                .position(|d| *d == plan.tasks[a].id)?;
            s.tasks.get(b)?.after.get(k)
        });
        problems.push(
            Problem::new(
                format!("dependency cycle: {}", names.join(" -> ")),
                span.cloned(),
            )
            .label("closes the cycle")
            .help("each task here runs after the previous one; remove one `after` entry"),
        );
    }
}

/// Whether `from` must finish before `to` can start (a path of `after` edges).
pub(crate) fn ordered(g: &DiGraph<usize, ()>, from: usize, to: usize) -> bool {
    petgraph::algo::has_path_connecting(g, NodeIndex::new(from), NodeIndex::new(to), None)
}

/// The write/append claims of each task, for conflict analysis. Reads are left out: a reader
/// and a writer of one file are serialized by the locks at run time, which is not an error.
///
/// Candidates of one group (`candidate_of`) hold their claims shared with each other: only the
/// group's first candidate stands for the group against other tasks.
pub(crate) fn write_sets(plan: &Plan) -> Vec<(OwnerId, Vec<Claim>)> {
    let mut groups = std::collections::HashSet::new();
    plan.tasks
        .iter()
        .map(|t| {
            let stands = t.candidate_of.as_ref().is_none_or(|g| groups.insert(g));
            let claims: Vec<Claim> = if stands {
                t.writes.iter().chain(&t.appends).cloned().collect()
            } else {
                Vec::new()
            };
            (OwnerId::new(t.id.clone(), 0), claims)
        })
        .collect()
}

fn report_conflicts(
    plan: &Plan,
    deps: &DiGraph<usize, ()>,
    spans: Option<&Spans>,
    problems: &mut Vec<Problem>,
) {
    let sets = write_sets(plan);
    let conflicts = forge_locks::claim_overlaps(&sets);
    if conflicts.is_empty() {
        return;
    }
    let position: FxHashMap<&str, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    for c in conflicts {
        let (Some(&i), Some(&j)) = (position.get(c.first.name()), position.get(c.second.name()))
        else {
            continue;
        };
        if ordered(deps, i, j) || ordered(deps, j, i) {
            continue;
        }
        let (first, second): (&Task, &Task) = (&plan.tasks[i], &plan.tasks[j]);
        let claim_span = |index: usize, claim: &Claim| {
            let task = &plan.tasks[index];
            let task_spans = spans?.tasks.get(index)?;
            match task.writes.iter().position(|w| w == claim) {
                Some(k) => task_spans.writes.get(k),
                None => task_spans
                    .appends
                    .get(task.appends.iter().position(|a| a == claim)?),
            }
        };
        let mut p = Problem::new(
            format!(
                "tasks `{}` and `{}` both write `{}` (`{}` and `{}`) and neither runs after the other",
                first.id, second.id, c.example_path, c.first_claim.pattern, c.second_claim.pattern
            ),
            claim_span(j, &c.second_claim).cloned(),
        )
        .label(format!("overlaps `{}` of task `{}`", c.first_claim.pattern, first.id));
        if let Some(span) = claim_span(i, &c.first_claim) {
            p = p.note(span, format!("claimed by task `{}` here", first.id));
        }
        problems.push(p.help(format!(
            "add `after = [\"{}\"]` to task `{}`, or narrow the claims so they share no file",
            first.id, second.id
        )));
    }
}

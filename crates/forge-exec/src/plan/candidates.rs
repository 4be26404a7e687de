//! `candidates = N`: a task run as N candidates side by side, to compare and pick one.

use std::collections::HashSet;

use forge_events::TaskId;

use super::Plan;
use super::parse::Spans;
use super::problem::Problem;

/// Replaces each task with `candidates = N` (N > 1) by the tasks `<id>-1` … `<id>-N`, each a
/// copy with `candidate_of = "<id>"`, keeping `spans` parallel to the tasks.
pub(crate) fn expand(plan: &mut Plan, spans: &mut Spans) {
    if plan.tasks.iter().all(|t| t.candidates <= 1) {
        return;
    }
    let tasks = std::mem::take(&mut plan.tasks);
    let task_spans = std::mem::take(&mut spans.tasks);
    let mut spans_iter = task_spans.into_iter();
    for task in tasks {
        let span = spans_iter.next().unwrap_or_default();
        if task.candidates <= 1 {
            plan.tasks.push(task);
            spans.tasks.push(span);
            continue;
        }
        for k in 1..=task.candidates {
            let Ok(id) = TaskId::new(format!("{}-{k}", task.id)) else {
                continue;
            };
            let mut member = task.clone();
            member.id = id;
            member.candidates = 1;
            member.candidate_of = Some(task.id.clone());
            plan.tasks.push(member);
            spans.tasks.push(span.clone());
        }
    }
}

/// Refuses `after` edges onto candidates: a candidate is never integrated, so nothing can
/// start from its work. Such edges are taken out (so they are reported once, here).
pub(crate) fn check_after(plan: &mut Plan, spans: &Spans, problems: &mut Vec<Problem>) {
    let groups: HashSet<TaskId> = plan
        .tasks
        .iter()
        .filter_map(|t| t.candidate_of.clone())
        .collect();
    if groups.is_empty() {
        return;
    }
    let members: HashSet<TaskId> = plan
        .tasks
        .iter()
        .filter(|t| t.candidate_of.is_some())
        .map(|t| t.id.clone())
        .collect();
    for (i, task) in plan.tasks.iter_mut().enumerate() {
        let mut k = 0;
        task.after.retain(|dep| {
            let span = spans.tasks.get(i).and_then(|s| s.after.get(k)).cloned();
            k += 1;
            if !groups.contains(dep) && !members.contains(dep) {
                return true;
            }
            problems.push(
                Problem::new(
                    format!(
                        "task `{}` runs after `{dep}`, which is run as candidates: candidates \
                         are compared and one is chosen after the run, never integrated, so no \
                         task can start from their work",
                        task.id
                    ),
                    span,
                )
                .label("run it in a later run, after applying the chosen candidate"),
            );
            false
        });
    }
}

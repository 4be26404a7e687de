//! `candidates = N`: a task run as N candidates side by side, to compare and pick one.

use forge_events::TaskId;

use super::Plan;
use super::parse::Spans;

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

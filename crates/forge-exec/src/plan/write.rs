//! Writing a plan back as TOML: the run store's copy, `forge plan` and `forge split` output.

use std::time::Duration;

use toml::{Table, Value};

use super::{OnFailure, Plan, RetryOn, Task};
use crate::HumanDuration;

fn duration(d: Duration) -> Value {
    Value::String(HumanDuration::new(d).to_string())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|s| Value::String(s.to_owned()))
            .collect(),
    )
}

fn retry_on(r: &RetryOn) -> Value {
    let mut items: Vec<Value> = r
        .exit_codes
        .iter()
        .map(|c| Value::Integer(i64::from(*c)))
        .collect();
    for (set, name) in [(r.timeout, "timeout"), (r.signal, "signal"), (r.any, "any")] {
        if set {
            items.push(Value::String(name.to_owned()));
        }
    }
    Value::Array(items)
}

fn task_table(task: &Task) -> Table {
    let mut t = Table::new();
    t.insert("id".into(), Value::String(task.id.to_string()));
    t.insert("agent".into(), Value::String(task.agent.clone()));
    if let Some(model) = &task.model {
        t.insert("model".into(), Value::String(model.clone()));
    }
    t.insert("prompt".into(), Value::String(task.prompt.clone()));
    if task.candidates > 1 {
        t.insert("candidates".into(), Value::Integer(task.candidates.into()));
    }
    if let Some(group) = &task.candidate_of {
        t.insert("candidate_of".into(), Value::String(group.to_string()));
    }
    for (key, claims) in [
        ("reads", &task.reads),
        ("writes", &task.writes),
        ("appends", &task.appends),
    ] {
        if !claims.is_empty() {
            t.insert(
                key.into(),
                strings(claims.iter().map(|c| c.pattern.as_str())),
            );
        }
    }
    if !task.after.is_empty() {
        t.insert(
            "after".into(),
            strings(task.after.iter().map(forge_events::TaskId::as_str)),
        );
    }
    if let Some(d) = task.timeout {
        t.insert("timeout".into(), duration(d));
    }
    if task.retries > 0 {
        t.insert("retries".into(), Value::Integer(i64::from(task.retries)));
    }
    if !task.retry_on.is_unset() {
        t.insert("retry_on".into(), retry_on(&task.retry_on));
    }
    if let Some(d) = task.estimate {
        t.insert("estimate".into(), duration(d));
    }
    if let Some(n) = task.files {
        t.insert(
            "files".into(),
            Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        );
    }
    if !task.env.is_empty() {
        t.insert(
            "env".into(),
            Value::Table(
                task.env
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    if let Some(pool) = &task.pool {
        t.insert("pool".into(), Value::String(pool.clone()));
    }
    if let Some(bytes) = task.memory {
        t.insert(
            "memory".into(),
            Value::Integer(i64::try_from(bytes).unwrap_or(i64::MAX)),
        );
    }
    if let Some(cpus) = task.cpus {
        t.insert("cpus".into(), Value::Float(cpus));
    }
    write_budget(&mut t, &task.budget);
    if !task.check.is_empty() {
        t.insert(
            "check".into(),
            strings(task.check.iter().map(String::as_str)),
        );
    }
    if task.check_rounds != 1 {
        t.insert(
            "check_rounds".into(),
            Value::Integer(i64::from(task.check_rounds)),
        );
    }
    if !task.resources.is_empty() {
        t.insert(
            "resources".into(),
            Value::Table(
                task.resources
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Float(*v)))
                    .collect(),
            ),
        );
    }
    t
}

/// `max_cost_usd` and `max_tokens`, when set.
fn write_budget(t: &mut Table, budget: &super::Budget) {
    if let Some(usd) = budget.max_cost_usd {
        t.insert("max_cost_usd".into(), Value::Float(usd));
    }
    if let Some(n) = budget.max_tokens {
        t.insert(
            "max_tokens".into(),
            Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        );
    }
}

impl Plan {
    /// The plan as a TOML document that [`Plan::parse`] reads back into an equal plan: every
    /// task written out in full (defaults applied, `prompt_file`s inlined as `prompt`).
    ///
    /// ```
    /// # use std::path::Path;
    /// # use forge_exec::plan::{Plan, PlanFormat, PlanOptions};
    /// let text = "[defaults]\nagent = \"sim\"\nretries = 2\n[[task]]\nid = \"a\"\nprompt = \"hi\"\n";
    /// let plan = Plan::parse(text, Path::new("p.toml"), PlanFormat::Toml, &PlanOptions::default())?;
    /// let written = plan.to_toml();
    /// assert!(written.contains("retries = 2"));
    /// let again = Plan::parse(&written, Path::new("p.toml"), PlanFormat::Toml, &PlanOptions::default())?;
    /// assert_eq!(again.tasks, plan.tasks);
    /// # Ok::<(), forge_exec::PlanError>(())
    /// ```
    pub fn to_toml(&self) -> String {
        let mut doc = Table::new();
        if !self.name.is_empty() {
            doc.insert("name".into(), Value::String(self.name.clone()));
        }
        doc.insert(
            "concurrency".into(),
            Value::Integer(i64::try_from(self.concurrency).unwrap_or(i64::MAX)),
        );
        doc.insert("base".into(), Value::String(self.base.to_string()));
        doc.insert(
            "on_failure".into(),
            Value::String(
                match self.on_failure {
                    OnFailure::KeepGoing => "keep_going",
                    OnFailure::FailFast => "fail_fast",
                }
                .to_owned(),
            ),
        );
        doc.insert(
            "on_violation".into(),
            Value::String(self.on_violation.to_string()),
        );
        if !self.pools.is_empty() {
            doc.insert(
                "pools".into(),
                Value::Table(
                    self.pools
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                Value::Integer(i64::try_from(*v).unwrap_or(i64::MAX)),
                            )
                        })
                        .collect(),
                ),
            );
        }
        let mut merge = Table::new();
        for rule in &self.merge {
            merge.insert(
                rule.pattern.as_str().to_owned(),
                Value::String(rule.strategy.to_string()),
            );
        }
        if self.merge_reruns != 1 {
            merge.insert(
                "reruns".into(),
                Value::Integer(i64::from(self.merge_reruns)),
            );
        }
        if let Some(timeout) = self.merge_driver_timeout {
            merge.insert("driver_timeout".into(), duration(timeout));
        }
        if !merge.is_empty() {
            doc.insert("merge".into(), Value::Table(merge));
        }
        if !self.gate.commands.is_empty()
            || self.gate.timeout.is_some()
            || self.gate.fix_rounds != 1
        {
            let mut gate = Table::new();
            gate.insert(
                "commands".into(),
                strings(self.gate.commands.iter().map(String::as_str)),
            );
            if let Some(d) = self.gate.timeout {
                gate.insert("timeout".into(), duration(d));
            }
            if self.gate.fix_rounds != 1 {
                gate.insert(
                    "fix_rounds".into(),
                    Value::Integer(i64::from(self.gate.fix_rounds)),
                );
            }
            doc.insert("gate".into(), Value::Table(gate));
        }
        write_budget(&mut doc, &self.budget);
        if self.isolation != crate::plan::Isolation::default() {
            let mut isolation = Table::new();
            if self.isolation.require {
                isolation.insert("require".into(), Value::Boolean(true));
            }
            if self.isolation.shared_tmp {
                isolation.insert("shared_tmp".into(), Value::Boolean(true));
            }
            doc.insert("isolation".into(), Value::Table(isolation));
        }
        doc.insert(
            "task".into(),
            Value::Array(
                self.tasks
                    .iter()
                    .map(|t| Value::Table(task_table(t)))
                    .collect(),
            ),
        );
        // A table of strings, integers and arrays always serializes.
        toml::to_string(&doc).unwrap_or_default()
    }
}

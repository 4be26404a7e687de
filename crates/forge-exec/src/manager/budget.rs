//! Budgets: what tasks and the run may spend (`max_cost_usd`, `max_tokens`), enforced from the
//! agents' usage events as they arrive, and the per-model price table (`[prices]` of
//! `forge.toml`) that gives a cost to agents that report tokens only (codex, droid).
//!
//! There are no built-in prices: they change, and a stale price would be a wrong budget. A
//! model without a price has an unknown cost ("n/a"); its tokens still count.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use forge_events::{Event, EventKind, EventSink as _, TaskId};
use parking_lot::Mutex;

use crate::ExecError;
use crate::plan::Budget;

/// What one model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// Per million input tokens.
    pub input: f64,
    /// Per million output tokens.
    pub output: f64,
}

/// Prices by model name, as the user set them (`[prices]` of `forge.toml`):
///
/// ```toml
/// [prices]
/// "gpt-5-codex" = { input = 1.25, output = 10.0 }   # US dollars per million tokens
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    models: BTreeMap<String, ModelPrice>,
}

impl Prices {
    /// No prices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the price of `model`.
    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.models.insert(model.into(), price);
    }

    /// The price of `model`, if set.
    pub fn get(&self, model: &str) -> Option<ModelPrice> {
        self.models.get(model).copied()
    }

    /// The cost of `tokens_in` and `tokens_out` for `model`, if it has a price.
    pub fn cost(&self, model: Option<&str>, tokens_in: u64, tokens_out: u64) -> Option<f64> {
        let price = self.get(model?)?;
        #[allow(clippy::cast_precision_loss)] // token counts
        let usd = (tokens_in as f64 * price.input + tokens_out as f64 * price.output) / 1e6;
        Some(usd)
    }

    /// The `[prices]` table of the `forge.toml` at `path` (no table: no prices). Each entry is
    /// `"<model>" = { input = <usd per million>, output = <usd per million> }`.
    pub fn from_config(table: &toml::Table, path: &Path) -> Result<Self, ExecError> {
        let mut prices = Self::new();
        let Some(value) = table.get("prices") else {
            return Ok(prices);
        };
        let bad = |what: String| {
            ExecError::Config(format!(
                "{}: {what}; write `[prices]` entries as \"<model>\" = {{ input = 1.25, output = 10.0 }} (US dollars per million tokens)",
                path.display()
            ))
        };
        let models = value
            .as_table()
            .ok_or_else(|| bad("`prices` must be a table".into()))?;
        for (model, entry) in models {
            let entry = entry
                .as_table()
                .ok_or_else(|| bad(format!("`prices.{model}` must be a table")))?;
            let mut price = ModelPrice {
                input: 0.0,
                output: 0.0,
            };
            for (key, v) in entry {
                #[allow(clippy::cast_precision_loss)] // prices
                let usd = v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .filter(|p| *p >= 0.0 && p.is_finite())
                    .ok_or_else(|| {
                        bad(format!(
                            "`prices.{model}.{key}` must be a number of dollars, zero or more"
                        ))
                    })?;
                match key.as_str() {
                    "input" => price.input = usd,
                    "output" => price.output = usd,
                    other => {
                        return Err(bad(format!(
                            "`prices.{model}` has an unknown key `{other}` (the keys are input, output)"
                        )));
                    }
                }
            }
            prices.insert(model.clone(), price);
        }
        Ok(prices)
    }
}

/// Tokens and dollars spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    tokens: u64,
    cost_usd: f64,
}

impl Totals {
    fn add(&mut self, tokens: u64, cost_usd: Option<f64>) {
        self.tokens = self.tokens.saturating_add(tokens);
        self.cost_usd += cost_usd.unwrap_or(0.0);
    }
}

/// What the run and each task spent so far, against their budgets.
#[derive(Debug, Default)]
pub(crate) struct Spend {
    state: Mutex<SpendState>,
}

#[derive(Debug, Default)]
struct SpendState {
    run: Totals,
    tasks: HashMap<TaskId, Totals>,
    /// Why the run is over its budget, once it is.
    run_over: Option<String>,
    /// Whether `run_over` was announced.
    announced: bool,
}

impl Spend {
    /// The spending an earlier process of this run journaled (`task_usage` events).
    pub(crate) fn from_history(history: &[Event]) -> Self {
        let spend = Self::default();
        for event in history {
            if let (
                Some(task),
                EventKind::TaskUsage {
                    tokens_in,
                    tokens_out,
                    cost_usd,
                },
            ) = (&event.task, &event.kind)
            {
                let mut s = spend.state.lock();
                let tokens = tokens_in.saturating_add(*tokens_out);
                s.run.add(tokens, *cost_usd);
                s.tasks
                    .entry(task.clone())
                    .or_default()
                    .add(tokens, *cost_usd);
            }
        }
        spend
    }

    /// Records usage of `task`; returns why the attempt must stop, if the task or the run is
    /// now over its budget.
    pub(crate) fn record(
        &self,
        task: &TaskId,
        tokens: u64,
        cost_usd: Option<f64>,
        task_budget: &Budget,
        run_budget: &Budget,
    ) -> Option<String> {
        let mut s = self.state.lock();
        s.run.add(tokens, cost_usd);
        let t = {
            let t = s.tasks.entry(task.clone()).or_default();
            t.add(tokens, cost_usd);
            *t
        };
        if s.run_over.is_none() {
            s.run_over = run_budget.exceeded(s.run.tokens, s.run.cost_usd);
        }
        if let Some(why) = task_budget.exceeded(t.tokens, t.cost_usd) {
            return Some(format!("over the task's budget: {why}"));
        }
        s.run_over
            .as_ref()
            .map(|why| format!("over the run's budget: {why}"))
    }

    /// Why `task` may not start (again): its own budget or the run's is spent. The second
    /// value is true the first time the run's budget is named (to say so once).
    pub(crate) fn refuse(
        &self,
        task: &TaskId,
        task_budget: &Budget,
        run_budget: &Budget,
    ) -> Option<(String, bool)> {
        let mut s = self.state.lock();
        if s.run_over.is_none() {
            s.run_over = run_budget.exceeded(s.run.tokens, s.run.cost_usd);
        }
        if let Some(why) = s.run_over.clone() {
            let first = !s.announced;
            s.announced = true;
            return Some((format!("the run's budget is spent ({why})"), first));
        }
        let t = s.tasks.get(task).copied().unwrap_or_default();
        task_budget
            .exceeded(t.tokens, t.cost_usd)
            .or_else(|| {
                // Exactly at the limit: nothing is left for another attempt.
                let at_limit = task_budget.max_tokens.is_some_and(|m| t.tokens >= m)
                    || task_budget.max_cost_usd.is_some_and(|m| t.cost_usd >= m);
                at_limit.then(|| format!("{} tokens, ${:.4} used", t.tokens, t.cost_usd))
            })
            .map(|why| (format!("the task's budget is spent ({why})"), false))
    }
}

/// A usage event of `task`'s agent: its cost (reported, or priced by the model's price), and
/// why the attempt must stop, if the task or the run is now over budget.
pub(crate) fn on_usage(
    shared: &super::Shared,
    task: &crate::plan::Task,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: Option<f64>,
) -> (Option<f64>, Option<String>) {
    let cost_usd = cost_usd.or_else(|| {
        shared
            .prices
            .cost(task.model.as_deref(), tokens_in, tokens_out)
    });
    let over = shared.spend.record(
        &task.id,
        tokens_in.saturating_add(tokens_out),
        cost_usd,
        &task.budget,
        &shared.plan.budget,
    );
    (cost_usd, over)
}

/// Why `task` may not start an attempt, if a budget is spent (the run's is announced once,
/// as a `run_warning`).
pub(crate) fn refuse_start(shared: &super::Shared, task: &crate::plan::Task) -> Option<String> {
    let (why, first) = shared
        .spend
        .refuse(&task.id, &task.budget, &shared.plan.budget)?;
    if first {
        let _ = shared.events.publish_run(EventKind::RunWarning {
            message: format!("{why}: no new task or attempt starts"),
        });
    }
    Some(format!("not started: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_come_from_forge_toml_and_bad_ones_are_named() {
        let table: toml::Table =
            toml::from_str("[prices]\n\"gpt-5\" = { input = 1.25, output = 10 }\n").unwrap();
        let prices = Prices::from_config(&table, Path::new("forge.toml")).unwrap();
        let cost = prices.cost(Some("gpt-5"), 1_000_000, 100_000).unwrap();
        assert!((cost - 2.25).abs() < 1e-9);
        assert_eq!(prices.cost(Some("other"), 1, 1), None);
        assert_eq!(prices.cost(None, 1, 1), None);
        let bad: toml::Table =
            toml::from_str("[prices]\n\"gpt-5\" = { input = \"cheap\" }\n").unwrap();
        let err = Prices::from_config(&bad, Path::new("forge.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`prices.gpt-5.input` must be a number of dollars"),
            "{err}"
        );
    }

    #[test]
    fn the_task_and_the_run_budget_stop_spending() {
        let spend = Spend::default();
        let a = TaskId::new("a").unwrap();
        let b = TaskId::new("b").unwrap();
        let task = Budget {
            max_tokens: Some(1000),
            max_cost_usd: None,
        };
        let run = Budget {
            max_tokens: None,
            max_cost_usd: Some(1.0),
        };
        assert_eq!(spend.record(&a, 600, None, &task, &run), None);
        let why = spend.record(&a, 600, None, &task, &run).unwrap();
        assert_eq!(
            why,
            "over the task's budget: 1200 tokens used, over max_tokens = 1000"
        );
        assert!(spend.refuse(&a, &task, &run).is_some());
        assert!(spend.refuse(&b, &task, &run).is_none());
        let why = spend.record(&b, 10, Some(1.5), &task, &run).unwrap();
        assert!(
            why.starts_with("over the run's budget: $1.5000 spent"),
            "{why}"
        );
        let (why, first) = spend.refuse(&b, &Budget::default(), &run).unwrap();
        assert!(why.starts_with("the run's budget is spent"), "{why}");
        assert!(first);
        assert!(!spend.refuse(&b, &Budget::default(), &run).unwrap().1);
    }
}

//! Estimates from the repository's earlier runs: medians per task id, then per agent.

use std::collections::HashMap;
use std::path::Path;

use forge_events::{EstimateSource, RunId, RunState, TaskPhase};

use super::millis;
use crate::plan::Task;

/// How many of the most recent runs [`Estimates::from_runs`] reads.
pub const HISTORY_RUNS: usize = 50;

/// Durations learned from earlier runs: the median per task id and per agent, of tasks that
/// succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimates {
    by_task: HashMap<String, u64>,
    by_agent: HashMap<String, u64>,
    runs: usize,
}

impl Estimates {
    /// No history: only the plan's own `estimate` keys count.
    pub fn none() -> Self {
        Self::default()
    }

    /// The medians over these runs' succeeded tasks.
    pub fn from_states<'a>(states: impl IntoIterator<Item = &'a RunState>) -> Self {
        let mut by_task: HashMap<String, Vec<u64>> = HashMap::new();
        let mut by_agent: HashMap<String, Vec<u64>> = HashMap::new();
        let mut runs = 0;
        for state in states {
            runs += 1;
            for t in &state.tasks {
                let (TaskPhase::Succeeded, Some(ms)) = (t.status, t.duration_ms) else {
                    continue;
                };
                by_task
                    .entry(t.id.as_str().to_owned())
                    .or_default()
                    .push(ms);
                if let Some(agent) = &t.agent {
                    by_agent.entry(agent.clone()).or_default().push(ms);
                }
            }
        }
        Self {
            by_task: medians(by_task),
            by_agent: medians(by_agent),
            runs,
        }
    }

    /// The medians over the most recent [`HISTORY_RUNS`] runs under `runs_dir` (a
    /// `.forge/runs` directory), leaving out `except` (the run being previewed). A missing
    /// directory is no history; a journal that cannot be read is left out (it says nothing
    /// reliable about durations).
    pub fn from_runs(runs_dir: &Path, except: Option<&RunId>) -> Result<Self, crate::ExecError> {
        let runs = forge_events::list_runs(runs_dir)?;
        let states: Vec<RunState> = runs
            .iter()
            .filter(|info| Some(&info.id) != except)
            .take(HISTORY_RUNS)
            .filter_map(|info| RunState::from_journal(&info.journal).ok())
            .collect();
        Ok(Self::from_states(&states))
    }

    /// How many runs the medians come from.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// The estimate of `task`: the plan's, else its id's median, else its agent's median.
    pub fn for_task(&self, task: &Task) -> (Option<u64>, EstimateSource) {
        if let Some(d) = task.estimate {
            return (Some(millis(d)), EstimateSource::Plan);
        }
        if let Some(&ms) = self.by_task.get(task.id.as_str()) {
            return (Some(ms), EstimateSource::TaskHistory);
        }
        if let Some(&ms) = self.by_agent.get(&task.agent) {
            return (Some(ms), EstimateSource::AgentHistory);
        }
        (None, EstimateSource::Unknown)
    }
}

fn medians(samples: HashMap<String, Vec<u64>>) -> HashMap<String, u64> {
    samples
        .into_iter()
        .filter_map(|(key, mut values)| {
            values.sort_unstable();
            let n = values.len();
            let median = match n {
                0 => return None,
                n if n % 2 == 1 => values[n / 2],
                n => {
                    let sum = u128::from(values[n / 2 - 1]) + u128::from(values[n / 2]);
                    u64::try_from(sum / 2).unwrap_or(u64::MAX)
                }
            };
            Some((key, median))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let m = medians(HashMap::from([
            ("a".to_owned(), vec![5, 1, 3]),
            ("b".to_owned(), vec![4, 1, 3, 2]),
            ("c".to_owned(), vec![u64::MAX, u64::MAX]),
        ]));
        assert_eq!(m["a"], 3);
        assert_eq!(m["b"], 2);
        assert_eq!(m["c"], u64::MAX);
    }
}

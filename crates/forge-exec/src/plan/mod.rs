//! Plans: the TOML (or JSON) file that says which agents do what, in which order, on which files.
//!
//! The schema is documented in `docs/plan.md` and in the crate docs. Loading is two passes over a
//! spanned document tree: the schema walker reads every key (unknown keys, wrong types, bad
//! durations and invalid globs are reported, with "did you mean" where a name is close), then the
//! whole-plan checks look at ids, dependencies, cycles, agents, pools and write claims that would
//! collide. All problems are reported together, each with `file:line:col` and a caret snippet.

mod candidates;
mod parse;
pub mod preview;
mod problem;
pub mod split;
mod tree;
mod validate;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_events::TaskId;
use forge_locks::{Claim, Pattern};
use forge_merge::{AuditPolicy, MergeStrategy};
use forge_staging::BaseMode;

pub use problem::{PlanError, PlanSource, Problem};

/// The agent profiles built into Forge (more can be defined in `forge.toml`).
pub const BUILTIN_AGENTS: &[&str] = &[
    "droid", "claude", "codex", "gemini", "opencode", "amp", "aider", "shell", "sim",
];

/// What to do when a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Tasks that do not depend on the failed one go on (its dependents are skipped).
    #[default]
    KeepGoing,
    /// Start nothing new; tasks already running finish.
    FailFast,
}

/// When a failed attempt is retried (if `retries` allows another attempt).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// These exit codes.
    pub exit_codes: Vec<i32>,
    /// A timed-out attempt.
    pub timeout: bool,
    /// An attempt killed by a signal it did not receive from Forge (a crash).
    pub signal: bool,
    /// Any failure.
    pub any: bool,
}

impl RetryOn {
    /// With no condition given, any failure is retried.
    pub fn is_unset(&self) -> bool {
        self.exit_codes.is_empty() && !self.timeout && !self.signal && !self.any
    }
}

/// A spending limit, from the agents' usage as it is reported (`max_cost_usd`, `max_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    /// Most US dollars to spend (reported by the agent, or priced by `[prices]`).
    pub max_cost_usd: Option<f64>,
    /// Most tokens to use, input and output together.
    pub max_tokens: Option<u64>,
}

impl Budget {
    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.max_cost_usd.is_none() && self.max_tokens.is_none()
    }

    /// Why `tokens` and `cost_usd` spent are over this budget, if they are.
    pub fn exceeded(&self, tokens: u64, cost_usd: f64) -> Option<String> {
        if let Some(max) = self.max_tokens.filter(|m| tokens > *m) {
            return Some(format!("{tokens} tokens used, over max_tokens = {max}"));
        }
        if let Some(max) = self.max_cost_usd.filter(|m| cost_usd > *m) {
            return Some(format!("${cost_usd:.4} spent, over max_cost_usd = {max}"));
        }
        None
    }
}

/// One task of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Unique id.
    pub id: TaskId,
    /// Agent profile (`droid`, `claude`, …, `shell`, `sim`).
    pub agent: String,
    /// The model to ask the agent for (`{model}` in its profile's arguments), if any.
    pub model: Option<String>,
    /// What the agent is asked to do (the file's content when `prompt_file` was given).
    pub prompt: String,
    /// Where the prompt came from, if from a file.
    pub prompt_file: Option<PathBuf>,
    /// Shared claims.
    pub reads: Vec<Claim>,
    /// Exclusive claims.
    pub writes: Vec<Claim>,
    /// Claims shared with other appenders, merged afterwards.
    pub appends: Vec<Claim>,
    /// Tasks that must succeed before this one starts.
    pub after: Vec<TaskId>,
    /// Per-attempt time limit.
    pub timeout: Option<Duration>,
    /// Further attempts after the first.
    pub retries: u32,
    /// Which failures are retried.
    pub retry_on: RetryOn,
    /// Expected duration, for critical-path ordering.
    pub estimate: Option<Duration>,
    /// Extra environment for the agent.
    pub env: BTreeMap<String, String>,
    /// Concurrency pool (see [`Plan::pools`]).
    pub pool: Option<String>,
    /// How many files the task works on (`files`, written by `forge split`): progress counts
    /// them as tasks finish.
    pub files: Option<u64>,
    /// Most memory (bytes) an attempt's processes may use together (`memory = "2G"`).
    pub memory: Option<u64>,
    /// CPU time an attempt may use, in CPUs (`cpus = 1.5`).
    pub cpus: Option<f64>,
    /// What the task's attempts may spend together (`max_cost_usd`, `max_tokens`).
    pub budget: Budget,
    /// Commands run in the task's workspace right after its agent exits, before its changes
    /// are integrated (`check = ["cargo check -p api"]`): a failure is fed back to the agent.
    pub check: Vec<String>,
    /// How many times a failed check is fed back to the agent before the attempt fails
    /// (`check_rounds`, default 1; 0: a failed check fails the attempt at once).
    pub check_rounds: u32,
    /// What a cluster runner's node must offer to run an attempt (`resources = { CPU = 2,
    /// agent = 1 }`): Ray's resources by name. The local runner ignores them.
    pub resources: BTreeMap<String, f64>,
    /// `candidates = N`: run the task as N candidates side by side, to compare and pick one
    /// (see [`Task::candidate_of`]). Expanded when the plan is parsed: such a task becomes
    /// the tasks `<id>-1` … `<id>-N`, and every task of a parsed plan has 1 here.
    pub candidates: u32,
    /// `candidate_of = "<group>"`: the task is one candidate of the group: candidates of one
    /// group hold their claims shared with each other (none waits for another), start from the
    /// same integrated tree, and are never integrated: each one's persisted `ChangeSet` is
    /// applied only when it is chosen (`forge apply --tasks <candidate>`).
    pub candidate_of: Option<TaskId>,
}

impl Task {
    /// A task with defaults: no claims, no dependencies, no timeout, no retries.
    pub fn new(id: TaskId, agent: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            id,
            agent: agent.into(),
            model: None,
            prompt: prompt.into(),
            prompt_file: None,
            reads: Vec::new(),
            writes: Vec::new(),
            appends: Vec::new(),
            after: Vec::new(),
            timeout: None,
            retries: 0,
            retry_on: RetryOn::default(),
            estimate: None,
            env: BTreeMap::new(),
            pool: None,
            files: None,
            memory: None,
            cpus: None,
            budget: Budget::default(),
            check: Vec::new(),
            check_rounds: 1,
            resources: BTreeMap::new(),
            candidates: 1,
            candidate_of: None,
        }
    }

    /// Every claim of the task: reads, writes, appends.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.reads.iter().chain(&self.writes).chain(&self.appends)
    }
}

/// `[isolation]`: how far attempts must be contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Refuse to run attempts where the host gives no PID namespace, instead of running them
    /// in their process group only (and saying so once per run).
    pub require: bool,
    /// Let attempts see the host's `/tmp` (`shared_tmp = true`) instead of a `/tmp` of their
    /// own, for agents that must read or leave files there; parallel agents then share it.
    pub shared_tmp: bool,
}

/// A `[merge]` rule: conflicts on paths matching `pattern` are settled by `strategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRule {
    /// Which paths.
    pub pattern: Pattern,
    /// How.
    pub strategy: MergeStrategy,
}

/// The `[gate]`: commands the integrated result must pass before it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Shell commands, run in order.
    pub commands: Vec<String>,
    /// Time limit per command.
    pub timeout: Option<Duration>,
    /// Fix rounds (`fix_rounds`, default 1): when the gate fails and its bisect names a task,
    /// that task is retried with the failure as feedback, its dependents re-run, and the gate
    /// runs again, at most this many times.
    pub fix_rounds: u32,
    /// Where the gate runs (`on`, default `"local"`).
    pub on: GateOn,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            commands: Vec::new(),
            timeout: None,
            fix_rounds: 1,
            on: GateOn::Local,
        }
    }
}

/// Where the gate runs (`[gate] on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GateOn {
    /// On this machine, in a workspace of the integrated tree (the default).
    #[default]
    Local,
    /// As a job of the run's cluster runner, on the integrated tree shipped like an attempt's
    /// start tree (`[runner] kind = "ray"`).
    Cluster,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Run name.
    pub name: String,
    /// How many tasks run at once.
    pub concurrency: usize,
    /// What the run starts from.
    pub base: BaseMode,
    /// What a failure does to the rest.
    pub on_failure: OnFailure,
    /// The tasks, in plan order.
    pub tasks: Vec<Task>,
    /// Per-pool concurrency limits.
    pub pools: BTreeMap<String, usize>,
    /// Conflict strategies by path.
    pub merge: Vec<MergeRule>,
    /// How many times a task whose changes conflict under the `agent` strategy is re-run on
    /// top of the integrated tree (`[merge] reruns`, default 1).
    pub merge_reruns: u32,
    /// How long a merge driver (`driver:<command>`) may run before it is stopped and its
    /// merge counted as failed (`[merge] driver_timeout`; `None`: 2 minutes).
    pub merge_driver_timeout: Option<Duration>,
    /// What happens to a task that changed files outside its write and append claims
    /// (`on_violation`: `reject`, the default, integrates none of its changes).
    pub on_violation: AuditPolicy,
    /// Checks before applying.
    pub gate: Gate,
    /// How attempts are contained (`[isolation]`).
    pub isolation: Isolation,
    /// What the whole run may spend (top-level `max_cost_usd`, `max_tokens`).
    pub budget: Budget,
    /// Where the plan came from.
    pub source: Option<PlanSource>,
}

/// How the plan is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// TOML (the default).
    Toml,
    /// JSON (comments and trailing commas allowed).
    Json,
}

/// What to do with tasks whose write claims overlap while neither runs after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Report them as problems (the default): the user decides the order.
    #[default]
    Reject,
    /// Add the minimal `after` edges, in plan order ([`Plan::serialize_conflicts`]).
    Serialize,
}

/// Options for loading and validating plans.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Agent profiles that exist (built-in ones by default).
    pub agents: Vec<String>,
    /// Overlapping write claims without an order.
    pub conflicts: ConflictPolicy,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            agents: BUILTIN_AGENTS.iter().map(|s| (*s).to_owned()).collect(),
            conflicts: ConflictPolicy::Reject,
        }
    }
}

/// The error for a plan file that is not UTF-8, pointing at its first bad byte (shown as `�`).
fn not_utf8(path: &Path, bytes: &[u8], e: std::str::Utf8Error) -> PlanError {
    let at = e.valid_up_to();
    let bad = bytes.get(at).copied().unwrap_or_default();
    // The lossy text has the same bytes up to `at`, then U+FFFD (3 bytes) for the bad sequence.
    let text = String::from_utf8_lossy(bytes);
    PlanError {
        source: Some(PlanSource {
            path: path.to_path_buf(),
            text: Arc::from(text.as_ref()),
        }),
        problems: vec![
            Problem::new(
                format!("the plan is not valid UTF-8: byte 0x{bad:02x} is not part of a character"),
                Some(at..at + '\u{fffd}'.len_utf8()),
            )
            .label("invalid UTF-8")
            .help("save the plan file as UTF-8"),
        ],
    }
}

/// An `after` edge added by [`Plan::serialize_conflicts`]: `task` now runs after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedEdge {
    /// The later task.
    pub task: TaskId,
    /// What it now waits for.
    pub after: TaskId,
}

/// Each task's position in a plan's task list, by id.
pub(crate) fn positions<'a>(ids: impl Iterator<Item = &'a TaskId>) -> HashMap<&'a TaskId, usize> {
    ids.enumerate().map(|(i, id)| (id, i)).collect()
}

/// For each task (given by its `after` list, in plan order), the positions of the tasks it runs
/// after; unknown ids and a task's edge to itself are left out.
pub(crate) fn dependency_positions<'a>(
    afters: impl Iterator<Item = &'a [TaskId]>,
    positions: &HashMap<&TaskId, usize>,
) -> Vec<Vec<usize>> {
    afters
        .enumerate()
        .map(|(i, after)| {
            after
                .iter()
                .filter_map(|d| positions.get(d).copied())
                .filter(|&d| d != i)
                .collect()
        })
        .collect()
}

impl Plan {
    /// Reads and validates a plan file: JSON if its name ends in `.json`, TOML otherwise.
    /// `prompt_file`s are read relative to the plan's directory.
    pub fn load(path: &Path, opts: &PlanOptions) -> Result<Plan, PlanError> {
        let bytes = std::fs::read(path).map_err(|e| PlanError {
            source: None,
            problems: vec![Problem::new(
                format!("cannot read plan file {}: {e}", path.display()),
                None,
            )],
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => return Err(not_utf8(path, e.as_bytes(), e.utf8_error())),
        };
        let format = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            PlanFormat::Json
        } else {
            PlanFormat::Toml
        };
        Self::parse(&text, path, format, opts)
    }

    /// Parses and validates plan text. `path` names it in messages and anchors `prompt_file`s.
    pub fn parse(
        text: &str,
        path: &Path,
        format: PlanFormat,
        opts: &PlanOptions,
    ) -> Result<Plan, PlanError> {
        let source = PlanSource {
            path: path.to_path_buf(),
            text: Arc::from(text),
        };
        let mut problems = Vec::new();
        let root = match format {
            PlanFormat::Toml => tree::from_toml(text, &mut problems),
            PlanFormat::Json => tree::from_json(text, &mut problems),
        };
        let base_dir = path.parent();
        let mut walker = parse::Walker::new(base_dir);
        let parsed = root.and_then(|root| walker.plan(&root));
        problems.append(&mut walker.problems);
        let Some((mut plan, mut spans)) = parsed else {
            return Err(PlanError {
                source: Some(source),
                problems,
            });
        };
        candidates::expand(&mut plan, &mut spans);
        candidates::check_after(&mut plan, &spans, &mut problems);
        let mut whole = Vec::new();
        let serialize = opts.conflicts == ConflictPolicy::Serialize;
        if serialize {
            // Only ordered plans can be serialized; cycles and the rest are still reported.
            plan.serialize_conflicts();
        }
        validate::validate(&plan, Some(&spans), opts, &mut whole);
        problems.append(&mut whole);
        problems.sort_by_key(|p| p.span.as_ref().map_or(usize::MAX, |s| s.start));
        plan.source = Some(source.clone());
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(PlanError {
                source: Some(source),
                problems,
            })
        }
    }

    /// Validates a plan built in code (problems have no source positions).
    pub fn validate(&self, opts: &PlanOptions) -> Result<(), PlanError> {
        let mut problems = Vec::new();
        validate::validate(self, None, opts, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanError {
                source: None,
                problems,
            })
        }
    }

    /// The task with this id.
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == *id)
    }

    /// Orders every pair of tasks whose write (or append) claims overlap and that are not yet
    /// ordered, by making the later task (in plan order) run after the earlier one. For each
    /// task, earlier conflicting tasks are considered nearest first, so an edge is only added
    /// when no chain of edges already orders the pair: no added edge is implied by the others.
    /// Returns the edges added.
    pub fn serialize_conflicts(&mut self) -> Vec<AddedEdge> {
        let sets = validate::write_sets(self);
        let conflicts = forge_locks::claim_overlaps(&sets);
        if conflicts.is_empty() {
            return Vec::new();
        }
        let position: HashMap<String, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str().to_owned(), i))
            .collect();
        // Earlier conflicting tasks of each task, nearest first.
        let mut earlier: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for c in &conflicts {
            if let (Some(&i), Some(&j)) =
                (position.get(c.first.name()), position.get(c.second.name()))
            {
                earlier.entry(j.max(i)).or_default().push(j.min(i));
            }
        }
        let index: HashMap<&TaskId, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (&t.id, i))
            .collect();
        let mut g = validate::graph(self, &index);
        let mut added = Vec::new();
        for (j, mut before) in earlier {
            before.sort_unstable_by(|a, b| b.cmp(a));
            before.dedup();
            for i in before {
                if validate::ordered(&g, i, j) || validate::ordered(&g, j, i) {
                    continue;
                }
                g.add_edge(
                    petgraph::graph::NodeIndex::new(i),
                    petgraph::graph::NodeIndex::new(j),
                    (),
                );
                added.push(AddedEdge {
                    task: self.tasks[j].id.clone(),
                    after: self.tasks[i].id.clone(),
                });
            }
        }
        for edge in &added {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == edge.task) {
                t.after.push(edge.after.clone());
            }
        }
        added
    }
}

#[cfg(test)]
mod tests;

//! The schema walker: turns a document tree into a [`Plan`] plus the spans of what it read,
//! collecting every problem instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use forge_events::TaskId;
use forge_locks::{Claim, LockMode};
use forge_merge::{AuditPolicy, MergeStrategy};
use forge_staging::BaseMode;

use super::problem::Problem;
use super::tree::{Key, Kind, Node};
use super::{Budget, Gate, GateOn, Isolation, MergeRule, OnFailure, Plan, RetryOn, Task};
use crate::HumanDuration;

/// Where each part of a task was written, for messages.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskSpans {
    pub(crate) id: Range<usize>,
    pub(crate) agent: Option<Range<usize>>,
    pub(crate) prompt: Option<Range<usize>>,
    pub(crate) after: Vec<Range<usize>>,
    /// Spans of the claims in the order of `reads`, `writes`, `appends` as stored in the task.
    pub(crate) reads: Vec<Range<usize>>,
    pub(crate) writes: Vec<Range<usize>>,
    pub(crate) appends: Vec<Range<usize>>,
    pub(crate) pool: Option<Range<usize>>,
}

/// Spans of a parsed plan, parallel to its tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    pub(crate) tasks: Vec<TaskSpans>,
}

const TOP_KEYS: &[&str] = &[
    "name",
    "concurrency",
    "base",
    "on_failure",
    "on_violation",
    "defaults",
    "task",
    "pools",
    "merge",
    "gate",
    "isolation",
    "max_cost_usd",
    "max_tokens",
];
const DEFAULT_KEYS: &[&str] = &[
    "agent",
    "model",
    "timeout",
    "retries",
    "retry_on",
    "estimate",
    "env",
    "pool",
    "memory",
    "cpus",
    "max_cost_usd",
    "max_tokens",
    "check",
    "check_rounds",
];
const TASK_KEYS: &[&str] = &[
    "id",
    "agent",
    "model",
    "prompt",
    "prompt_file",
    "reads",
    "writes",
    "appends",
    "after",
    "timeout",
    "retries",
    "retry_on",
    "estimate",
    "env",
    "pool",
    "files",
    "memory",
    "cpus",
    "max_cost_usd",
    "max_tokens",
    "check",
    "check_rounds",
    "resources",
    "candidates",
    "candidate_of",
];
const RESOURCES_HELP: &str =
    "write the amounts a node must offer, such as `resources = { CPU = 2, agent = 1 }`";
const GATE_KEYS: &[&str] = &["commands", "timeout", "fix_rounds", "on"];

/// `<what>.<key>`, formatted only when a message needs it.
struct Field<'a>(&'a dyn fmt::Display, &'a str);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A quoted owner (``task `api` ``) reads as "`timeout` of task `api`", not as a key path
        // with quotes inside quotes.
        let owner = self.0.to_string();
        if owner.contains('`') {
            write!(f, "`{}` of {owner}", self.1)
        } else {
            write!(f, "{owner}.{}", self.1)
        }
    }
}

/// `what` in backquotes, unless it quotes its own parts already.
fn quoted(what: &dyn fmt::Display) -> String {
    let text = what.to_string();
    if text.contains('`') {
        text
    } else {
        format!("`{text}`")
    }
}

/// `task #<n>` or ``task `<id>` ``, formatted only when a message needs it.
enum TaskName<'a> {
    Index(usize),
    Id(&'a TaskId),
}

impl fmt::Display for TaskName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskName::Index(i) => write!(f, "task #{}", i + 1),
            TaskName::Id(id) => write!(f, "task `{id}`"),
        }
    }
}

/// The `[defaults]` a task inherits.
#[derive(Debug, Default)]
struct Defaults {
    agent: Option<(String, Range<usize>)>,
    model: Option<String>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    retry_on: Option<RetryOn>,
    estimate: Option<Duration>,
    env: BTreeMap<String, String>,
    pool: Option<(String, Range<usize>)>,
    memory: Option<u64>,
    cpus: Option<f64>,
    budget: Budget,
    check: Vec<String>,
    check_rounds: Option<u32>,
}

pub(crate) struct Walker<'a> {
    pub(crate) problems: Vec<Problem>,
    /// Directory `prompt_file`s are relative to.
    base_dir: Option<&'a Path>,
}

/// "Did you mean": shared with the agent profiles (edits and swaps of neighbours).
pub(crate) use forge_agents::did_you_mean;

impl<'a> Walker<'a> {
    pub(crate) fn new(base_dir: Option<&'a Path>) -> Self {
        Self {
            problems: Vec::new(),
            base_dir,
        }
    }

    fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    fn type_error(&mut self, what: &dyn fmt::Display, expected: &str, node: &Node) {
        self.push(
            Problem::at(
                format!(
                    "{} must be {expected}, not {}",
                    quoted(what),
                    node.type_name()
                ),
                &node.span,
            )
            .label(format!("expected {expected}")),
        );
    }

    fn table<'n, 'd>(
        &mut self,
        what: &dyn fmt::Display,
        node: &'n Node<'d>,
    ) -> Option<&'n [(Key<'d>, Node<'d>)]> {
        match &node.kind {
            Kind::Table(entries) => Some(entries),
            _ => {
                self.type_error(what, "a table", node);
                None
            }
        }
    }

    /// Reports unknown and repeated keys of a table.
    fn check_keys(&mut self, what: &dyn fmt::Display, entries: &[(Key, Node)], allowed: &[&str]) {
        for (i, (key, _)) in entries.iter().enumerate() {
            if let Some((first, _)) = entries[..i].iter().find(|(k, _)| k.name == key.name) {
                self.push(
                    Problem::at(
                        format!("`{}` is given twice in {what}", key.name),
                        &key.span,
                    )
                    .label("repeated here")
                    .note(&first.span, "first given here"),
                );
            }
            if !allowed.contains(&key.name.as_ref()) {
                let mut p = Problem::at(format!("unknown key `{}` in {what}", key.name), &key.span)
                    .label("unknown key");
                p = match did_you_mean(&key.name, allowed.iter().copied()) {
                    Some(s) => p.help(format!("did you mean `{s}`?")),
                    None => p.help(format!("the keys of {what} are: {}", allowed.join(", "))),
                };
                self.push(p);
            }
        }
    }

    fn string(&mut self, what: &dyn fmt::Display, node: &Node) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.to_string()),
            _ => {
                self.type_error(what, "a string", node);
                None
            }
        }
    }

    fn uint(&mut self, what: &dyn fmt::Display, node: &Node, min: i64, max: i64) -> Option<i64> {
        match node.kind {
            Kind::Int(i) if (min..=max).contains(&i) => Some(i),
            Kind::Int(i) => {
                self.push(
                    Problem::at(
                        format!("{} must be between {min} and {max}, not {i}", quoted(what)),
                        &node.span,
                    )
                    .label("out of range"),
                );
                None
            }
            _ => {
                self.type_error(what, "an integer", node);
                None
            }
        }
    }

    fn strings(&mut self, what: &dyn fmt::Display, node: &Node) -> Vec<(String, Range<usize>)> {
        match &node.kind {
            Kind::Array(items) => items
                .iter()
                .filter_map(|item| self.string(what, item).map(|s| (s, item.span.clone())))
                .collect(),
            // A single string is accepted where a list is expected: `writes = "src/**"`.
            Kind::Str(s) => vec![(s.to_string(), node.span.clone())],
            _ => {
                self.type_error(what, "an array of strings", node);
                Vec::new()
            }
        }
    }

    fn duration(&mut self, what: &dyn fmt::Display, node: &Node) -> Option<Duration> {
        let text = self.string(what, node)?;
        match text.parse::<HumanDuration>() {
            Ok(d) => Some(d.as_duration()),
            Err(e) => {
                self.push(
                    Problem::at(format!("{}: {e}", quoted(what)), &node.span)
                        .label("not a duration"),
                );
                None
            }
        }
    }

    /// A time limit: a duration longer than zero (a zero limit would stop every attempt at once).
    fn timeout(&mut self, what: &dyn fmt::Display, node: &Node) -> Option<Duration> {
        let d = self.duration(what, node)?;
        if d.is_zero() {
            self.push(
                Problem::at(
                    format!("{} must be longer than zero", quoted(what)),
                    &node.span,
                )
                .label("a zero time limit stops every attempt at once")
                .help("give a limit such as \"30m\", or leave the key out for no limit"),
            );
            return None;
        }
        Some(d)
    }

    /// A memory limit: a size such as `"512M"` or `"2G"`, or a number of bytes.
    fn memory(&mut self, what: &dyn fmt::Display, node: &Node) -> Option<u64> {
        let parsed = match &node.kind {
            Kind::Str(s) => crate::process::parse_memory(s),
            Kind::Int(i) => u64::try_from(*i)
                .map_err(|_| format!("{i} is not a size"))
                .and_then(|b| crate::process::parse_memory(&b.to_string())),
            _ => {
                self.type_error(what, "a size such as \"2G\"", node);
                return None;
            }
        };
        match parsed {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.push(
                    Problem::at(format!("`{what}`: {e}"), &node.span)
                        .label("not a memory size")
                        .help("give a size such as \"512M\" or \"2G\" (K, M, G, T are powers of 1024)"),
                );
                None
            }
        }
    }

    /// `max_cost_usd` (US dollars above zero) or `max_tokens` (a count above zero) into `budget`.
    fn budget_key(&mut self, what: &dyn fmt::Display, key: &str, node: &Node, budget: &mut Budget) {
        if key == "max_tokens" {
            if let Some(n) = self.uint(what, node, 1, i64::MAX) {
                budget.max_tokens = u64::try_from(n).ok();
            }
            return;
        }
        #[allow(clippy::cast_precision_loss)] // dollar amounts
        let usd = match node.kind {
            Kind::Int(i) => i as f64,
            Kind::Float(f) => f,
            _ => {
                self.type_error(what, "an amount of US dollars such as 2.5", node);
                return;
            }
        };
        if usd > 0.0 && usd.is_finite() {
            budget.max_cost_usd = Some(usd);
        } else {
            self.push(
                Problem::at(
                    format!("`{what}` must be above zero, not {usd}"),
                    &node.span,
                )
                .label("out of range")
                .help("give the most US dollars to spend, such as 2.5"),
            );
        }
    }

    /// A CPU limit: a number of CPUs above zero, such as `1` or `1.5`.
    fn cpus(&mut self, what: &dyn fmt::Display, node: &Node) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // small counts
        let n = match node.kind {
            Kind::Int(i) => i as f64,
            Kind::Float(f) => f,
            _ => {
                self.type_error(what, "a number of CPUs such as 1.5", node);
                return None;
            }
        };
        if (0.01..=4096.0).contains(&n) {
            Some(n)
        } else {
            self.push(
                Problem::at(
                    format!("`{what}` must be between 0.01 and 4096, not {n}"),
                    &node.span,
                )
                .label("out of range")
                .help("give the CPUs an attempt may use, such as 1 or 1.5"),
            );
            None
        }
    }

    fn isolation(&mut self, node: &Node) -> Isolation {
        let mut isolation = Isolation::default();
        let Some(entries) = self.table(&"isolation", node) else {
            return isolation;
        };
        self.check_keys(&"[isolation]", entries, &["require", "shared_tmp"]);
        for (key, value) in entries {
            let (field, what) = match &*key.name {
                "require" => (&mut isolation.require, "isolation.require"),
                "shared_tmp" => (&mut isolation.shared_tmp, "isolation.shared_tmp"),
                _ => continue,
            };
            match value.kind {
                Kind::Bool(b) => *field = b,
                _ => self.type_error(&what, "true or false", value),
            }
        }
        isolation
    }

    fn env(&mut self, what: &dyn fmt::Display, node: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.table(what, node) else {
            return out;
        };
        for (key, value) in entries {
            if key.name.is_empty() || key.name.contains(['=', '\0']) {
                self.push(
                    Problem::at(
                        format!("invalid environment variable name `{}`", key.name),
                        &key.span,
                    )
                    .label("names cannot be empty or contain `=`"),
                );
                continue;
            }
            if let Some(v) = self.string(&format_args!("{what}.{}", key.name), value) {
                if v.contains('\0') {
                    self.push(Problem::at(
                        "environment values cannot contain NUL bytes",
                        &value.span,
                    ));
                } else {
                    out.insert(key.name.to_string(), v);
                }
            }
        }
        out
    }

    /// A cluster runner's resources: names to amounts above zero (`{ CPU = 2, agent = 1 }`).
    fn resources(&mut self, what: &dyn fmt::Display, node: &Node) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.table(what, node) else {
            return out;
        };
        for (key, value) in entries {
            #[allow(clippy::cast_precision_loss)] // small counts
            let amount = match value.kind {
                Kind::Int(i) => i as f64,
                Kind::Float(f) => f,
                _ => {
                    self.type_error(
                        &format_args!("resource `{}` of {what}", key.name),
                        "an amount such as 1 or 0.5",
                        value,
                    );
                    continue;
                }
            };
            if key.name.is_empty() || !(amount > 0.0 && amount.is_finite()) {
                let message = format!(
                    "resource `{}` of {what} must have an amount above zero",
                    key.name
                );
                self.push(
                    Problem::at(message, &value.span)
                        .label("not a positive amount")
                        .help(RESOURCES_HELP),
                );
                continue;
            }
            out.insert(key.name.to_string(), amount);
        }
        out
    }

    fn retry_on(&mut self, what: &dyn fmt::Display, node: &Node) -> Option<RetryOn> {
        let Kind::Array(items) = &node.kind else {
            self.type_error(
                what,
                "an array of exit codes and \"timeout\", \"signal\" or \"any\"",
                node,
            );
            return None;
        };
        let mut out = RetryOn::default();
        for item in items {
            match &item.kind {
                Kind::Int(code) => match i32::try_from(*code) {
                    Ok(c) => out.exit_codes.push(c),
                    Err(_) => self.push(Problem::at("exit code out of range", &item.span)),
                },
                Kind::Str(s) if s == "timeout" => out.timeout = true,
                Kind::Str(s) if s == "signal" => out.signal = true,
                Kind::Str(s) if s == "any" => out.any = true,
                _ => self.push(
                    Problem::at(format!("invalid {} entry", quoted(what)), &item.span)
                        .label("not an exit code, \"timeout\", \"signal\" or \"any\""),
                ),
            }
        }
        Some(out)
    }

    fn claims(
        &mut self,
        what: &dyn fmt::Display,
        node: &Node,
        mode: LockMode,
    ) -> (Vec<Claim>, Vec<Range<usize>>) {
        let mut claims = Vec::new();
        let mut spans = Vec::new();
        for (text, span) in self.strings(what, node) {
            match Claim::new(&text, mode) {
                Ok(c) => {
                    claims.push(c);
                    spans.push(span);
                }
                Err(forge_locks::LockError::InvalidPattern { reason, .. }) => self.push(
                    Problem::at(
                        format!("invalid claim `{text}` in {}: {reason}", quoted(what)),
                        &span,
                    )
                    .label("invalid glob"),
                ),
                Err(e) => self.push(Problem::at(format!("invalid claim `{text}`: {e}"), &span)),
            }
        }
        (claims, spans)
    }

    fn defaults(&mut self, node: &Node) -> Defaults {
        let mut d = Defaults::default();
        let Some(entries) = self.table(&"defaults", node) else {
            return d;
        };
        self.check_keys(&"[defaults]", entries, DEFAULT_KEYS);
        for (key, value) in entries {
            match key.name.as_ref() {
                "agent" => {
                    d.agent = self
                        .string(&"defaults.agent", value)
                        .map(|s| (s, value.span.clone()));
                }
                "model" => d.model = self.string(&"defaults.model", value),
                "timeout" => d.timeout = self.timeout(&"defaults.timeout", value),
                "retries" => {
                    d.retries = self
                        .uint(&"defaults.retries", value, 0, 100)
                        .and_then(|r| u32::try_from(r).ok());
                }
                "retry_on" => d.retry_on = self.retry_on(&"defaults.retry_on", value),
                "estimate" => d.estimate = self.duration(&"defaults.estimate", value),
                "env" => d.env = self.env(&"defaults.env", value),
                "memory" => d.memory = self.memory(&"defaults.memory", value),
                "cpus" => d.cpus = self.cpus(&"defaults.cpus", value),
                "max_cost_usd" | "max_tokens" => {
                    self.budget_key(
                        &Field(&"defaults", &key.name),
                        &key.name,
                        value,
                        &mut d.budget,
                    );
                }
                "check" => d.check = self.checks(&"defaults.check", value),
                "check_rounds" => {
                    d.check_rounds = self
                        .uint(&"defaults.check_rounds", value, 0, 100)
                        .and_then(|r| u32::try_from(r).ok());
                }
                "pool" => {
                    d.pool = self
                        .string(&"defaults.pool", value)
                        .map(|s| (s, value.span.clone()));
                }
                _ => {}
            }
        }
        d
    }

    fn task(
        &mut self,
        node: &Node,
        index: usize,
        defaults: &Defaults,
    ) -> Option<(Task, TaskSpans)> {
        let entries = self.table(&"task", node)?;
        let what = TaskName::Index(index);
        self.check_keys(&format_args!("[[task]] #{}", index + 1), entries, TASK_KEYS);
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let mut spans = TaskSpans::default();
        let id = match get("id") {
            Some(v) => {
                spans.id = v.span.clone();
                let text = self.string(&format_args!("{what}.id"), v)?;
                match TaskId::new(text) {
                    Ok(id) => id,
                    Err(e) => {
                        self.push(Problem::at(e.to_string(), &v.span).label("invalid task id"));
                        return None;
                    }
                }
            }
            None => {
                self.push(
                    Problem::at(
                        format!("{what} has no `id`"),
                        &(node.span.start..node.span.start + 1),
                    )
                    .help("every task needs a unique `id = \"…\"`"),
                );
                return None;
            }
        };
        let id_for_name = id.clone();
        let what = TaskName::Id(&id_for_name);
        let agent = match get("agent") {
            Some(v) => {
                spans.agent = Some(v.span.clone());
                self.string(&format_args!("{what}.agent"), v)
                    .unwrap_or_default()
            }
            None => match &defaults.agent {
                Some((a, span)) => {
                    spans.agent = Some(span.clone());
                    a.clone()
                }
                None => {
                    self.push(
                        Problem::at(format!("{what} has no `agent` and `[defaults]` gives none"), &spans.id)
                            .help("set `agent = \"droid\"` (or claude, codex, gemini, …) on the task or in [defaults]"),
                    );
                    String::new()
                }
            },
        };
        let (prompt, prompt_file) =
            self.prompt(&what, get("prompt"), get("prompt_file"), &mut spans);
        let mut task = Task {
            id,
            agent,
            model: defaults.model.clone(),
            prompt: prompt.unwrap_or_default(),
            prompt_file,
            reads: Vec::new(),
            writes: Vec::new(),
            appends: Vec::new(),
            after: Vec::new(),
            timeout: defaults.timeout,
            retries: defaults.retries.unwrap_or(0),
            retry_on: defaults.retry_on.clone().unwrap_or_default(),
            estimate: defaults.estimate,
            env: defaults.env.clone(),
            pool: defaults.pool.as_ref().map(|(p, _)| p.clone()),
            files: None,
            memory: defaults.memory,
            cpus: defaults.cpus,
            budget: defaults.budget,
            check: defaults.check.clone(),
            check_rounds: defaults.check_rounds.unwrap_or(1),
            resources: BTreeMap::new(),
            candidates: 1,
            candidate_of: None,
        };
        spans.pool = defaults.pool.as_ref().map(|(_, s)| s.clone());
        self.task_fields(&what, entries, &mut task, &mut spans);
        Some((task, spans))
    }

    /// The optional fields of a task (claims, dependencies, limits, environment).
    fn task_fields(
        &mut self,
        what: &dyn fmt::Display,
        entries: &[(Key, Node)],
        task: &mut Task,
        spans: &mut TaskSpans,
    ) {
        for (key, value) in entries {
            let field = Field(what, &key.name);
            match key.name.as_ref() {
                "reads" => (task.reads, spans.reads) = self.claims(&field, value, LockMode::Read),
                "writes" => {
                    (task.writes, spans.writes) = self.claims(&field, value, LockMode::Write);
                }
                "appends" => {
                    (task.appends, spans.appends) = self.claims(&field, value, LockMode::Append);
                }
                "after" => {
                    for (dep, span) in self.strings(&field, value) {
                        match TaskId::new(dep.clone()) {
                            Ok(dep) => {
                                task.after.push(dep);
                                spans.after.push(span);
                            }
                            Err(_) => self.push(
                                Problem::at(
                                    format!(
                                        "{what} runs after `{dep}`, which is not a valid task id"
                                    ),
                                    &span,
                                )
                                .label("no such task"),
                            ),
                        }
                    }
                }
                "model" => {
                    if let Some(m) = self.string(&field, value) {
                        task.model = Some(m);
                    }
                }
                "timeout" => task.timeout = self.timeout(&field, value).or(task.timeout),
                "retries" => {
                    if let Some(r) = self.uint(&field, value, 0, 100) {
                        task.retries = u32::try_from(r).unwrap_or(0);
                    }
                }
                "retry_on" => {
                    if let Some(r) = self.retry_on(&field, value) {
                        task.retry_on = r;
                    }
                }
                "estimate" => task.estimate = self.duration(&field, value).or(task.estimate),
                "files" => {
                    if let Some(n) = self.uint(&field, value, 0, i64::MAX) {
                        task.files = u64::try_from(n).ok();
                    }
                }
                "env" => task.env.extend(self.env(&field, value)),
                "memory" => task.memory = self.memory(&field, value).or(task.memory),
                "cpus" => task.cpus = self.cpus(&field, value).or(task.cpus),
                "max_cost_usd" | "max_tokens" => {
                    self.budget_key(&field, &key.name, value, &mut task.budget);
                }
                "check" => task.check = self.checks(&field, value),
                "check_rounds" => {
                    if let Some(r) = self.uint(&field, value, 0, 100) {
                        task.check_rounds = u32::try_from(r).unwrap_or(1);
                    }
                }
                "resources" => task.resources = self.resources(&field, value),
                "candidates" => {
                    if let Some(n) = self.uint(&field, value, 1, 20) {
                        task.candidates = u32::try_from(n).unwrap_or(1);
                    }
                }
                "candidate_of" => {
                    if let Some(group) = self.string(&field, value) {
                        match TaskId::new(group.clone()) {
                            Ok(group) => task.candidate_of = Some(group),
                            Err(_) => self.push(
                                Problem::at(
                                    format!(
                                        "{what} is a candidate of `{group}`, which is not a valid task id"
                                    ),
                                    &value.span,
                                )
                                .label("write the group's id, such as \"impl\""),
                            ),
                        }
                    }
                }
                "pool" => {
                    task.pool = self.string(&field, value);
                    spans.pool = Some(value.span.clone());
                }
                _ => {}
            }
        }
    }

    /// `check = ["cmd", …]`: non-empty command lines.
    fn checks(&mut self, what: &dyn fmt::Display, node: &Node) -> Vec<String> {
        let mut out = Vec::new();
        for (cmd, span) in self.strings(what, node) {
            if cmd.trim().is_empty() {
                self.push(
                    Problem::at(format!("empty command in {}", quoted(what)), &span)
                        .label("write the command line, e.g. \"cargo check\""),
                );
            } else {
                out.push(cmd);
            }
        }
        out
    }

    fn prompt(
        &mut self,
        what: &dyn fmt::Display,
        prompt: Option<&Node>,
        prompt_file: Option<&Node>,
        spans: &mut TaskSpans,
    ) -> (Option<String>, Option<std::path::PathBuf>) {
        match (prompt, prompt_file) {
            (Some(p), Some(f)) => {
                self.push(
                    Problem::at(
                        format!("{what} has both `prompt` and `prompt_file`"),
                        &f.span,
                    )
                    .note(&p.span, "`prompt` given here")
                    .help("keep one of them"),
                );
                (None, None)
            }
            (Some(p), None) => {
                spans.prompt = Some(p.span.clone());
                let text = self.string(&format_args!("{what}.prompt"), p);
                if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    self.push(
                        Problem::at(format!("{what} has an empty prompt"), &p.span)
                            .label("empty")
                            .help("say what the agent should do"),
                    );
                }
                (text, None)
            }
            (None, Some(f)) => {
                spans.prompt = Some(f.span.clone());
                let Some(name) = self.string(&format_args!("{what}.prompt_file"), f) else {
                    return (None, None);
                };
                let path = self
                    .base_dir
                    .map_or_else(|| std::path::PathBuf::from(&name), |d| d.join(&name));
                match std::fs::read_to_string(&path) {
                    Ok(text) if text.trim().is_empty() => {
                        self.push(
                            Problem::at(format!("{what}: prompt file `{name}` is empty"), &f.span)
                                .label("empty file"),
                        );
                        (None, Some(path))
                    }
                    Ok(text) => (Some(text), Some(path)),
                    Err(e) => {
                        self.push(
                            Problem::at(
                                format!(
                                    "{what}: cannot read prompt file `{}`: {e}",
                                    path.display()
                                ),
                                &f.span,
                            )
                            .label("unreadable")
                            .help("paths are relative to the plan file's directory"),
                        );
                        (None, Some(path))
                    }
                }
            }
            (None, None) => {
                self.push(
                    Problem::at(format!("{what} has no `prompt`"), &spans.id)
                        .help("add `prompt = \"…\"` or `prompt_file = \"path\"`"),
                );
                (None, None)
            }
        }
    }

    fn gate(&mut self, node: &Node) -> Gate {
        let mut gate = Gate::default();
        let Some(entries) = self.table(&"gate", node) else {
            return gate;
        };
        self.check_keys(&"[gate]", entries, GATE_KEYS);
        for (key, value) in entries {
            match key.name.as_ref() {
                "commands" => {
                    for (cmd, span) in self.strings(&"gate.commands", value) {
                        if cmd.trim().is_empty() {
                            self.push(Problem::at("empty gate command", &span));
                        } else {
                            gate.commands.push(cmd);
                        }
                    }
                }
                "timeout" => gate.timeout = self.timeout(&"gate.timeout", value),
                "on" => match self.string(&"gate.on", value).as_deref() {
                    Some("local") => gate.on = GateOn::Local,
                    Some("cluster") => gate.on = GateOn::Cluster,
                    Some(other) => self.push(
                        Problem::at(
                            format!("`gate.on` must be \"local\" or \"cluster\", not \"{other}\""),
                            &value.span,
                        )
                        .help("\"cluster\" runs the gate as a job of the run's cluster runner; \"local\" (the default) on this machine"),
                    ),
                    None => {}
                },
                "fix_rounds" => {
                    if let Some(n) = self.uint(&"gate.fix_rounds", value, 0, 100) {
                        gate.fix_rounds = u32::try_from(n).unwrap_or(1);
                    }
                }
                _ => {}
            }
        }
        gate
    }

    fn merge(
        &mut self,
        node: &Node,
        reruns: &mut u32,
        driver_timeout: &mut Option<Duration>,
    ) -> Vec<MergeRule> {
        let mut rules = Vec::new();
        let Some(entries) = self.table(&"merge", node) else {
            return rules;
        };
        for (key, value) in entries {
            // `reruns` (an integer) is a setting, not a path pattern.
            if key.name == "reruns" && !matches!(value.kind, Kind::Str(_)) {
                if let Some(n) = self.uint(&"merge.reruns", value, 0, 10) {
                    *reruns = u32::try_from(n).unwrap_or(1);
                }
                continue;
            }
            // So is `driver_timeout` (a duration), unless its value is a strategy: then it is
            // the rule of a file of that name.
            if key.name == "driver_timeout"
                && !matches!(&value.kind, Kind::Str(s) if s.parse::<MergeStrategy>().is_ok())
            {
                *driver_timeout = self.timeout(&"merge.driver_timeout", value);
                continue;
            }
            let pattern = match forge_locks::Pattern::new(&key.name) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.push(Problem::at(
                        format!("invalid path pattern in [merge]: {e}"),
                        &key.span,
                    ));
                    None
                }
            };
            let Some(text) = self.string(&format_args!("merge.\"{}\"", key.name), value) else {
                continue;
            };
            match text.parse::<MergeStrategy>() {
                Ok(strategy) => {
                    if let Some(pattern) = pattern {
                        rules.push(MergeRule { pattern, strategy });
                    }
                }
                Err(e) => {
                    self.push(Problem::at(e.to_string(), &value.span).label("unknown strategy"));
                }
            }
        }
        rules
    }

    fn pools(&mut self, node: &Node) -> BTreeMap<String, usize> {
        let mut pools = BTreeMap::new();
        let Some(entries) = self.table(&"pools", node) else {
            return pools;
        };
        for (key, value) in entries {
            if let Some(n) = self.uint(&format_args!("pools.{}", key.name), value, 1, 1_000_000) {
                pools.insert(key.name.to_string(), usize::try_from(n).unwrap_or(1));
            }
        }
        pools
    }

    /// Reads the whole document.
    pub(crate) fn plan(&mut self, root: &Node) -> Option<(Plan, Spans)> {
        let entries = self.table(&"the plan", root)?;
        self.check_keys(&"the plan", entries, TOP_KEYS);
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let defaults = get("defaults")
            .map(|d| self.defaults(d))
            .unwrap_or_default();
        let mut plan = Plan {
            name: String::new(),
            concurrency: 4,
            base: BaseMode::Head,
            on_failure: OnFailure::KeepGoing,
            tasks: Vec::new(),
            pools: BTreeMap::new(),
            merge: Vec::new(),
            merge_reruns: 1,
            merge_driver_timeout: None,
            on_violation: AuditPolicy::Reject,
            gate: Gate::default(),
            isolation: Isolation::default(),
            budget: Budget::default(),
            source: None,
        };
        for key in ["max_cost_usd", "max_tokens"] {
            if let Some(v) = get(key) {
                self.budget_key(&key, key, v, &mut plan.budget);
            }
        }
        let mut spans = Spans::default();
        if let Some(v) = get("name") {
            plan.name = self.string(&"name", v).unwrap_or_default();
        }
        if let Some(v) = get("concurrency")
            && let Some(n) = self.uint(&"concurrency", v, 1, 100_000)
        {
            plan.concurrency = usize::try_from(n).unwrap_or(1);
        }
        if let Some(v) = get("base")
            && let Some(text) = self.string(&"base", v)
        {
            match text.parse::<BaseMode>() {
                Ok(b) => plan.base = b,
                Err(e) => self.push(Problem::at(e.to_string(), &v.span).label("unknown base")),
            }
        }
        if let Some(v) = get("on_failure") {
            match self.string(&"on_failure", v).as_deref() {
                Some("keep_going") => plan.on_failure = OnFailure::KeepGoing,
                Some("fail_fast") => plan.on_failure = OnFailure::FailFast,
                Some(other) => self.push(
                    Problem::at(format!("unknown `on_failure` value `{other}`"), &v.span)
                        .help("use \"keep_going\" (independent tasks go on) or \"fail_fast\" (start nothing new after a failure)"),
                ),
                None => {}
            }
        }
        if let Some(v) = get("pools") {
            plan.pools = self.pools(v);
        }
        if let Some(v) = get("merge") {
            plan.merge = self.merge(v, &mut plan.merge_reruns, &mut plan.merge_driver_timeout);
        }
        if let Some(v) = get("on_violation")
            && let Some(text) = self.string(&"on_violation", v)
        {
            match text.parse::<AuditPolicy>() {
                Ok(p) => plan.on_violation = p,
                Err(e) => self.push(Problem::at(e, &v.span).help(
                    "use \"reject\" (default: changes outside the claims are not integrated), \"warn\" or \"allow\"",
                )),
            }
        }
        if let Some(v) = get("gate") {
            plan.gate = self.gate(v);
        }
        if let Some(v) = get("isolation") {
            plan.isolation = self.isolation(v);
        }
        match get("task") {
            Some(Node {
                kind: Kind::Array(items),
                ..
            }) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some((task, task_spans)) = self.task(item, i, &defaults) {
                        plan.tasks.push(task);
                        spans.tasks.push(task_spans);
                    }
                }
            }
            Some(other) => self.type_error(&"task", "an array of tables (`[[task]]`)", other),
            None => self.push(
                Problem::new(
                    "the plan has no tasks",
                    Some(root.span.start..root.span.start),
                )
                .help("add a `[[task]]` table with `id`, `agent` and `prompt`"),
            ),
        }
        Some((plan, spans))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("wirtes", TASK_KEYS.iter().copied()),
            Some("writes")
        );
        assert_eq!(
            did_you_mean("dependencies", TASK_KEYS.iter().copied()),
            None
        );
        assert_eq!(
            did_you_mean("aftr", TASK_KEYS.iter().copied()),
            Some("after")
        );
    }
}

//! The event schema: one versioned envelope ([`Event`]) around a typed payload ([`EventKind`]).

use std::fmt;

use jiff::Timestamp;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{EventsError, RepoPath, RunId, TaskId, TaskStatus};

/// The schema version written in every event's `v` field.
///
/// Readers accept any version: unknown `type`s and fields are kept, not refused. A known `type`
/// whose fields do not parse is an error for this version or older (the journal is corrupt) and an
/// [`EventKind::Unknown`] for newer versions (the schema moved on).
pub const EVENT_VERSION: u32 = 1;

/// One thing that happened in a run, as written to the journal and sent to every reader.
///
/// Serialized as one flat JSON object: the envelope fields, then the payload's fields with its
/// `type` tag, then any fields this version does not know:
///
/// ```json
/// {"v":1,"seq":7,"ts":"2026-11-24T14:03:07.123Z","run":"r1","task":"backend",
///  "type":"task_started","attempt":1,"agent":"droid","workspace":"/tmp/w","strategy":"overlay"}
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Schema version of the writer ([`EVENT_VERSION`] for events made by this crate).
    pub v: u32,
    /// Position in the run: 1 for the first event, then +1 per event, assigned by the bus.
    pub seq: u64,
    /// When the event was published (UTC, millisecond precision; written as RFC 3339).
    pub ts: Timestamp,
    /// The run it belongs to.
    pub run: RunId,
    /// The task it is about, for task events (and merges of one task's changes).
    pub task: Option<TaskId>,
    /// What happened.
    pub kind: EventKind,
    /// Fields this version does not know, kept so that a round trip loses nothing.
    pub extra: Map<String, Value>,
}

impl Event {
    /// An event stamped now with the current schema version and no extra fields.
    pub fn new(run: RunId, seq: u64, task: Option<TaskId>, kind: EventKind) -> Self {
        Self {
            v: EVENT_VERSION,
            seq,
            ts: now_millis(),
            run,
            task,
            kind,
            extra: Map::new(),
        }
    }

    /// The `type` tag, e.g. `task_started`.
    pub fn type_name(&self) -> &str {
        self.kind.type_name()
    }

    /// Whether the journal must fsync this event before `publish` returns (see
    /// [`EventKind::is_transition`]).
    pub fn is_transition(&self) -> bool {
        self.kind.is_transition()
    }

    /// The event as one line of compact JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(192);
        self.write_json(&mut out);
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the event as compact JSON (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing JSON into a Vec fails only for maps with non-string keys, which events do not
        // have; should it ever fail, the partial output is removed so `out` stays valid.
        let start = out.len();
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.truncate(start);
        }
    }

    /// Parses one event from its JSON text.
    pub fn from_json(json: &str) -> Result<Self, EventsError> {
        serde_json::from_str(json).map_err(|e| EventsError::InvalidEvent {
            reason: e.to_string(),
        })
    }
}

/// The current time, truncated to whole milliseconds (what the journal can represent).
pub fn now_millis() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
}

/// Which output stream a [`EventKind::TaskOutput`] line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// The agent's standard output.
    Stdout,
    /// The agent's standard error.
    Stderr,
}

/// How a run ended, as reported by [`EventKind::RunFinished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every task succeeded, the gate passed and the result was applied.
    Succeeded,
    /// A task failed, the gate failed, or a conflict stopped the apply.
    Failed,
    /// The run was interrupted (Ctrl-C, `forge cancel`) before it finished.
    Cancelled,
}

impl RunStatus {
    /// The snake-case name used in events, e.g. `succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One claim of a task, as plain data: the lock mode and the glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// How the claim holds its paths, written as its plan key (`reads`, `writes` or
    /// `appends`).
    #[serde(with = "forge_types::plan_key")]
    pub mode: forge_types::LockMode,
    /// The gitignore-style pattern, e.g. `src/api/**`.
    pub pattern: String,
}

/// The totals reported when a run finishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Tasks that succeeded.
    pub succeeded: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Tasks whose last attempt timed out.
    pub timed_out: u32,
    /// Tasks cancelled.
    pub cancelled: u32,
    /// Tasks skipped because a dependency did not succeed.
    pub skipped: u32,
    /// Merge conflicts met (resolved or not).
    pub conflicts: u32,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
    /// A one-line human summary, e.g. why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An event `type` this version does not know, kept whole so nothing is lost on a round trip.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UnknownKind {
    /// The `type` tag as written.
    #[serde(rename = "type")]
    pub kind: String,
    /// Every other payload field, as raw JSON.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Serialize for UnknownKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", &self.kind)?;
        // Fields named like the envelope (only a hand-made value can have them) would write a
        // key twice.
        for (key, value) in &self.fields {
            if key != "type" && !ENVELOPE.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Defines [`EventKind`] and everything derived from its variant list in one place: the private
/// `Known` mirror that parses known types with precise errors, the `type` names and each type's
/// field names (used to keep unknown fields).
macro_rules! event_kinds {
    ($(
        $(#[$vmeta:meta])*
        $variant:ident = $name:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ),* $(,)?) => {
        /// What happened: the payload of an [`Event`], tagged by `type` in snake case.
        ///
        /// Everything is plain data (ids, repo-relative `/`-separated paths as strings, numbers),
        /// so a journal can be read without any other Forge crate. Durations are in milliseconds.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "type")]
        #[non_exhaustive]
        pub enum EventKind {
            $(
                $(#[$vmeta])*
                #[serde(rename = $name)]
                $variant { $( $(#[$fmeta])* $field: $ty ),* },
            )*
            /// A `type` this version does not know (written by a newer Forge), kept as raw JSON.
            #[serde(untagged)]
            Unknown(UnknownKind),
        }

        /// One struct per known type, so a payload parses straight into its type (and a
        /// malformed known event is an error naming its field, not an `Unknown`).
        #[allow(non_snake_case)]
        mod wire {
            use super::*;
            $(
                #[derive(Deserialize)]
                pub(super) struct $variant { $( $(#[$fmeta])* pub(super) $field: $ty ),* }
            )*
        }

        /// Parses the payload fields of the known type `name` (`None` if it is not known).
        fn parse_known(
            name: &str,
            payload: Map<String, Value>,
        ) -> Option<Result<EventKind, serde_json::Error>> {
            let payload = Value::Object(payload);
            Some(match name {
                $(
                    $name => serde_json::from_value::<wire::$variant>(payload)
                        .map(|wire::$variant { $($field),* }| EventKind::$variant { $($field),* }),
                )*
                _ => return None,
            })
        }

        impl EventKind {
            /// The `type` tag, e.g. `task_started` (for [`EventKind::Unknown`], the tag as
            /// written).
            pub fn type_name(&self) -> &str {
                match self {
                    $( Self::$variant { .. } => $name, )*
                    Self::Unknown(unknown) => &unknown.kind,
                }
            }
        }

        /// The payload fields of each known `type` (besides `type` itself). Fields of an event
        /// that are neither envelope fields nor listed here are kept in [`Event::extra`].
        const KNOWN: &[(&str, &[&str])] = &[ $( ($name, &[ $( stringify!($field) ),* ]), )* ];
    };
}

event_kinds! {

    /// The run began (always `seq` 1 of a new run).
    RunStarted = "run_started" {
        /// The plan's `name`.
        plan: String,
        /// A hash of the plan file, so resume can tell whether the plan changed.
        plan_hash: String,
        /// How many tasks the plan has.
        tasks: u32,
        /// How many tasks may run at once.
        concurrency: u32,
        /// The base the run starts from: `head` or `worktree`.
        base: String,
    },
    /// What the run will do, before any task starts (a new run only, right after
    /// `run_started`): tasks, agents, claims, lock analysis, critical path and estimates.
    PlanPreview = "plan_preview" {
        /// The preview.
        preview: crate::PlanPreview,
    },
    /// A task entered the queue (emitted for every task, in plan order).
    TaskQueued = "task_queued" {
        /// The tasks it runs after.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        after: Vec<TaskId>,
        /// The plan's estimate of its duration, in milliseconds (weights the critical path).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimate_ms: Option<u64>,
    },
    /// A task is ready but waits for locks held by others.
    TaskWaitingLocks = "task_waiting_locks" {
        /// The claims it asked for.
        claims: Vec<ClaimRecord>,
        /// The tasks holding conflicting locks.
        blocked_by: Vec<TaskId>,
    },
    /// An attempt of a task started: locks granted, workspace staged, agent spawned.
    TaskStarted = "task_started" {
        /// The attempt number, from 1.
        attempt: u32,
        /// The agent profile, e.g. `droid`, `claude`, `sim`.
        agent: String,
        /// The workspace directory the agent runs in.
        workspace: String,
        /// How the workspace was staged: `overlay`, `reflink`, `worktree` or `copy`.
        strategy: String,
    },
    /// The agent reported progress (a message, a tool call, files it touched).
    TaskProgress = "task_progress" {
        /// What the agent said or did.
        message: String,
        /// The tool it used, if any (`edit`, `bash`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        /// Files touched by this step.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
    },
    /// A line of the agent's raw output. Producers rate-limit these; `output.log` has them all.
    TaskOutput = "task_output" {
        /// Which stream it came from.
        stream: OutputStream,
        /// The line, without its newline.
        line: String,
    },
    /// Tokens (and cost) the agent used since its previous usage report.
    TaskUsage = "task_usage" {
        /// Input tokens.
        tokens_in: u64,
        /// Output tokens.
        tokens_out: u64,
        /// Cost in US dollars, when the agent reports it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The agent named its own session (Claude's `session_id`, Codex's `thread_id`, Gemini's,
    /// opencode's and droid's session ids), so a later attempt can continue it.
    TaskSession = "task_session" {
        /// The attempt the session belongs to.
        attempt: u32,
        /// The session id, as the agent's CLI names it.
        session: String,
    },
    /// An attempt failed and the task will be tried again.
    TaskRetrying = "task_retrying" {
        /// The attempt that will run next.
        attempt: u32,
        /// How long until it starts, in milliseconds.
        delay_ms: u64,
        /// Why the previous attempt failed.
        reason: String,
    },
    /// An attempt ended (or a task was skipped or cancelled without running).
    TaskFinished = "task_finished" {
        /// How it ended.
        status: TaskStatus,
        /// The agent's exit code, if it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Wall time of the attempt in milliseconds.
        duration_ms: u64,
        /// Files its captured `ChangeSet` changes.
        #[serde(default)]
        files_changed: Vec<RepoPath>,
        /// Why it failed, timed out, was cancelled or skipped, in words (absent on success),
        /// e.g. "skipped because `backend` did not succeed".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A task changed files outside its claims.
    ClaimViolation = "claim_violation" {
        /// The offending paths.
        paths: Vec<RepoPath>,
        /// What the run's policy did about it: `fail`, `warn`, …
        policy: String,
    },
    /// A lock wait cycle was found; `victim` is failed (or retried) to break it.
    LockDeadlock = "lock_deadlock" {
        /// The tasks in the cycle, each waiting for the next.
        cycle: Vec<TaskId>,
        /// The task chosen to give up its wait.
        victim: TaskId,
    },
    /// A task's changes were integrated into the run's result.
    MergeIntegrated = "merge_integrated" {
        /// Files it changed that are now integrated.
        files: Vec<RepoPath>,
    },
    /// Two changes to one path met; `strategy` says how it was (or was not) resolved.
    MergeConflict = "merge_conflict" {
        /// The path in conflict.
        path: RepoPath,
        /// The tasks whose changes met.
        tasks: Vec<TaskId>,
        /// The merge strategy applied: `fail`, `ours`, `theirs`, `union`, `agent`, `driver:<cmd>`.
        strategy: String,
        /// Whether the strategy resolved it.
        #[serde(default)]
        resolved: bool,
    },
    /// A gate command started on the integrated result.
    GateStarted = "gate_started" {
        /// The command line, e.g. `cargo test`.
        command: String,
    },
    /// A gate command ended.
    GateFinished = "gate_finished" {
        /// The command line.
        command: String,
        /// Whether it passed (exit code 0).
        passed: bool,
        /// Its exit code, if it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Wall time in milliseconds.
        #[serde(default)]
        duration_ms: u64,
        /// Tests passed, when the output could be parsed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tests_passed: Option<u64>,
        /// Tests failed, when the output could be parsed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tests_failed: Option<u64>,
    },
    /// The result was applied to the user's working tree and/or a branch.
    ApplyFinished = "apply_finished" {
        /// Where it went: `worktree`, `branch` or `both`.
        target: String,
        /// Files written.
        files: Vec<String>,
        /// Paths left in conflict with the user's own edits.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        conflicts: Vec<String>,
        /// The branch committed to, if any (`forge/<run>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        /// The commit made, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// The tasks whose result was applied, when not all of them were (a partial apply,
        /// `forge apply --tasks`); empty for the whole run.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tasks: Vec<String>,
    },
    /// Something about the run the user should know that does not stop it, such as attempts
    /// running without their own PID namespace on this host (said once per run).
    RunWarning = "run_warning" {
        /// What, and what to do about it.
        message: String,
    },
    /// The run ended (always the last event of a run).
    RunFinished = "run_finished" {
        /// How it ended.
        status: RunStatus,
        /// The totals.
        summary: RunSummary,
    },
    /// A task of a finished, failed or interrupted run runs again (`forge retry`, a gate fix
    /// round): a new attempt with `prompt` added to its instructions, then every task in
    /// `dependents`, whose earlier results are discarded. Every other task's result is kept.
    TaskRetryRequested = "task_retry_requested" {
        /// The instructions added to the task's prompt (feedback, the user's words).
        prompt: String,
        /// The tasks that depend on it, directly or not: they run again on top of it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dependents: Vec<TaskId>,
        /// Who asked: `user` (`forge retry`, the library) or `gate` (a fix round).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        origin: String,
    },
    /// One of a task's `check` commands ran in its workspace after its agent exited.
    TaskCheck = "task_check" {
        /// The attempt it checked.
        attempt: u32,
        /// The command line.
        command: String,
        /// Whether it passed (exit code 0).
        passed: bool,
        /// Its exit code, if it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// The check round, from 1: round `n + 1` follows the agent's work on the feedback of
        /// round `n`.
        round: u32,
    },
    /// The gate failed on the integrated tree: Forge looks for the first task that makes it fail
    /// by gating trees that hold the integrated `ChangeSets` up to some task (in integration order,
    /// so every task's dependencies come with it), several at once.
    GateBisectStarted = "gate_bisect_started" {
        /// The integrated tasks, in integration order (the order the trees grow in).
        tasks: Vec<TaskId>,
        /// How many trees are gated at once (the plan's `concurrency`).
        concurrency: u32,
    },
    /// The gate ran on one tree of a bisect.
    GateBisectStep = "gate_bisect_step" {
        /// How many of the integrated `ChangeSets` the tree held (0: the base alone).
        changesets: u32,
        /// The last task whose `ChangeSet` the tree held (none for the base).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last: Option<TaskId>,
        /// Whether every gate command passed on it.
        passed: bool,
        /// The first gate command that failed on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed_command: Option<String>,
        /// Wall time in milliseconds.
        #[serde(default)]
        duration_ms: u64,
        /// Whether the result is an earlier process's step of this bisect (a resumed run), not
        /// a new gate run.
        #[serde(default)]
        reused: bool,
    },
    /// The bisect ended: it names the first task whose `ChangeSet` makes the gate fail, or says
    /// that the base itself fails.
    GateBisectFinished = "gate_bisect_finished" {
        /// The first failing task (none when the base fails, or the bisect could not finish).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        culprit: Option<TaskId>,
        /// Whether the base, without any task's changes, already fails the gate.
        #[serde(default)]
        base_fails: bool,
        /// Gate runs the bisect made (results reused on resume not counted).
        gate_runs: u32,
        /// What it found, in one line for people.
        message: String,
    },
    /// A task was added to the run while it runs (`forge add`): it is scheduled like a task
    /// of the plan, after the tasks in `after`, under its claims' locks. A resumed run takes
    /// it from here (the run's `plan.toml` does not hold it).
    TaskAdded = "task_added" {
        /// What the agent is asked to do.
        prompt: String,
        /// The agent profile, e.g. `claude`, `sim`.
        agent: String,
        /// Shared claims (globs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reads: Vec<String>,
        /// Exclusive claims (globs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        writes: Vec<String>,
        /// Claims shared with other appenders (globs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        appends: Vec<String>,
        /// The tasks it runs after.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        after: Vec<TaskId>,
    },
    /// A runner placed an attempt on a node of a cluster (the Ray runner, once Ray says where
    /// the attempt's job runs). Local attempts have no such event: they run on this machine.
    TaskPlaced = "task_placed" {
        /// The attempt placed.
        attempt: u32,
        /// The node's address, as the cluster names it (`10.0.0.7`).
        node: String,
        /// The cluster's own id of the node (Ray's node id), when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<String>,
    },
}

/// The envelope's field names, which no payload may use.
const ENVELOPE: [&str; 5] = ["v", "seq", "ts", "run", "task"];

impl EventKind {
    /// Whether this is a state transition, which the journal fsyncs before `publish` returns:
    /// the run starting, a task starting, finishing or being added, a merge result, a gate
    /// result, the apply and the run finishing. Progress, output, usage, queueing and lock waits are batched.
    pub fn is_transition(&self) -> bool {
        matches!(
            self,
            Self::RunStarted { .. }
                | Self::TaskStarted { .. }
                | Self::TaskFinished { .. }
                | Self::MergeIntegrated { .. }
                | Self::MergeConflict { .. }
                | Self::GateFinished { .. }
                | Self::ApplyFinished { .. }
                | Self::RunFinished { .. }
                | Self::TaskRetryRequested { .. }
                | Self::GateBisectStep { .. }
                | Self::GateBisectFinished { .. }
                | Self::TaskAdded { .. }
        )
    }

    /// The `type` names this version knows, in schema order.
    pub fn known_types() -> impl Iterator<Item = &'static str> {
        KNOWN.iter().map(|(name, _)| *name)
    }

    /// The static name and payload field names of a known `type`.
    fn known(type_name: &str) -> Option<(&'static str, &'static [&'static str])> {
        KNOWN.iter().find(|(name, _)| *name == type_name).copied()
    }
}

/// Writes a timestamp as RFC 3339 UTC with exactly three fractional digits.
struct Millis<'a>(&'a Timestamp);

impl Serialize for Millis<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Events come by the thousand per millisecond under load: each thread keeps the last
        // millisecond it formatted and reuses the text.
        thread_local! {
            static LAST: std::cell::RefCell<(i128, StackStr)> =
                std::cell::RefCell::new((i128::MIN, StackStr::default()));
        }
        let nanos = self.0.as_nanosecond();
        let cached = LAST.with(|last| {
            let last = last.borrow();
            (last.0 == nanos).then(|| last.1.clone())
        });
        let buf = match cached {
            Some(buf) => buf,
            None => {
                let mut buf = StackStr::default();
                jiff::fmt::temporal::DateTimePrinter::new()
                    .precision(Some(3))
                    .print_timestamp(self.0, jiff::fmt::StdFmtWrite(&mut buf))
                    .map_err(serde::ser::Error::custom)?;
                LAST.with(|last| *last.borrow_mut() = (nanos, buf.clone()));
                buf
            }
        };
        s.serialize_str(buf.as_str())
    }
}

/// A small fixed buffer for formatting a timestamp without allocating.
#[derive(Default, Clone)]
struct StackStr {
    buf: [u8; 32],
    len: usize,
}

impl StackStr {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The payload with its tag, flattened into the envelope.
#[derive(Serialize)]
struct Wire<'a> {
    v: u32,
    seq: u64,
    ts: Millis<'a>,
    run: &'a RunId,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a TaskId>,
    #[serde(flatten)]
    kind: &'a EventKind,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// Extra fields, minus any that would collide with envelope or payload fields (a hand-made event
/// could put them there; writing a key twice would make the JSON ambiguous).
struct Extra<'a> {
    extra: &'a Map<String, Value>,
    kind: &'a EventKind,
}

impl Serialize for Extra<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let taken: &[&str] = match self.kind {
            EventKind::Unknown(_) => &[],
            known => EventKind::known(known.type_name()).map_or(&[], |(_, fields)| fields),
        };
        let mut map = s.serialize_map(None)?;
        for (key, value) in self.extra {
            let clash = key == "type"
                || ENVELOPE.contains(&key.as_str())
                || taken.contains(&key.as_str())
                || matches!(self.kind, EventKind::Unknown(u) if u.fields.contains_key(key));
            if !clash {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            v: self.v,
            seq: self.seq,
            ts: Millis(&self.ts),
            run: &self.run,
            task: self.task.as_ref(),
            kind: &self.kind,
            extra: Extra {
                extra: &self.extra,
                kind: &self.kind,
            },
        }
        .serialize(s)
    }
}

fn required<T, E: de::Error>(value: Option<T>, key: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(key))
}

/// Parses a payload of schema version `v` (the object's fields other than the envelope and
/// `type`), splitting off the fields its type does not know. A known type that does not parse
/// is an error up to [`EVENT_VERSION`] and kept as [`EventKind::Unknown`] for newer versions.
fn parse_payload<E: de::Error>(
    v: u32,
    type_name: String,
    fields: Vec<(String, Value)>,
) -> Result<(EventKind, Map<String, Value>), E> {
    let Some((name, known)) = EventKind::known(&type_name) else {
        return Ok((
            EventKind::Unknown(UnknownKind {
                kind: type_name,
                fields: fields.into_iter().collect(),
            }),
            Map::new(),
        ));
    };
    let (payload, extra): (Map<String, Value>, Map<String, Value>) = fields
        .into_iter()
        .partition(|(key, _)| known.contains(&key.as_str()));
    if v <= EVENT_VERSION {
        return match parse_known(name, payload) {
            Some(Ok(kind)) => Ok((kind, extra)),
            Some(Err(e)) => Err(E::custom(format_args!("invalid `{name}` event: {e}"))),
            None => Err(E::custom(format_args!("`{name}` has no parser"))),
        };
    }
    // A newer writer: its version of this type may differ. Keep it whole if it does not parse.
    if let Some(Ok(kind)) = parse_known(name, payload.clone()) {
        return Ok((kind, extra));
    }
    let mut fields = payload;
    fields.extend(extra);
    Ok((
        EventKind::Unknown(UnknownKind {
            kind: type_name,
            fields,
        }),
        Map::new(),
    ))
}

impl<'de> Deserialize<'de> for EventKind {
    /// Parses a payload with its `type` tag; fields the type does not know are dropped (an
    /// [`Event`] keeps them in [`Event::extra`]).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let mut type_name = None;
        let mut fields = Vec::with_capacity(map.len());
        for (key, value) in map {
            if key == "type" {
                match value {
                    Value::String(name) => type_name = Some(name),
                    _ => return Err(de::Error::custom("field `type`: expected a string")),
                }
            } else {
                fields.push((key, value));
            }
        }
        let type_name = required(type_name, "type")?;
        parse_payload(EVENT_VERSION, type_name, fields).map(|(kind, _)| kind)
    }
}

/// A key of an event object: the envelope's fields are recognized without allocating.
enum Key {
    V,
    Seq,
    Ts,
    Run,
    Task,
    Type,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "v" => Key::V,
                    "seq" => Key::Seq,
                    "ts" => Key::Ts,
                    "run" => Key::Run,
                    "task" => Key::Task,
                    "type" => Key::Type,
                    other => Key::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads an event object field by field: the envelope straight into its types, the rest kept
/// for the payload parser.
struct EventVisitor;

impl<'de> de::Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let (mut v, mut seq, mut ts, mut run, mut task, mut type_name) =
            (None, None, None, None, None, None);
        let mut fields = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::V => v = Some(field(map.next_value::<u32>(), "v")?),
                Key::Seq => seq = Some(field(map.next_value::<u64>(), "seq")?),
                Key::Ts => {
                    let text: String = field(map.next_value(), "ts")?;
                    ts = Some(text.parse::<Timestamp>().map_err(|e| {
                        de::Error::custom(format_args!("field `ts`: `{text}` is not RFC 3339: {e}"))
                    })?);
                }
                Key::Run => run = Some(field(map.next_value::<RunId>(), "run")?),
                Key::Task => task = field(map.next_value::<Option<TaskId>>(), "task")?,
                Key::Type => type_name = Some(field(map.next_value::<String>(), "type")?),
                Key::Other(key) => fields.push((key, map.next_value::<Value>()?)),
            }
        }
        let v = required(v, "v")?;
        let (kind, extra) = parse_payload(v, required(type_name, "type")?, fields)?;
        Ok(Event {
            v,
            seq: required(seq, "seq")?,
            ts: required(ts, "ts")?,
            run: required(run, "run")?,
            task,
            kind,
            extra,
        })
    }
}

/// Names the field in a value's parse error.
fn field<T, E: de::Error>(value: Result<T, E>, key: &'static str) -> Result<T, E> {
    value.map_err(|e| E::custom(format_args!("field `{key}`: {e}")))
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

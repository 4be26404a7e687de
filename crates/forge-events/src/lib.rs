//! Forge's typed event stream.
//!
//! Everything Forge does during a run — a task queued, waiting on locks, started, printing progress,
//! finished; a merge integrated or in conflict; the gate; the apply — is reported as one typed
//! **event**. Events are the only way the engine talks to the outside: the live terminal table,
//! `forge run --json`, `forge status`, the SSE server and the web dashboard are all readers of the
//! same stream, and the run's **journal** (`.forge/runs/<run>/events.jsonl`) is its durable copy and
//! the source of truth for crash resume.
//!
//! This crate depends on no other Forge crate: events carry plain data (ids, paths as strings,
//! numbers), so any tool can read a journal without linking the engine.
//!
//! # Design
//!
//! - **Schema** ([`Event`], [`EventKind`]): one flat JSON object per event — envelope `v`, `seq`,
//!   `ts` (RFC 3339 UTC, milliseconds), `run`, `task`, then the payload tagged `type`. Readers are
//!   forward compatible: an unknown `type` becomes [`EventKind::Unknown`] holding its raw JSON,
//!   unknown fields land in [`Event::extra`], and both are written back unchanged.
//! - **Bus** ([`EventBus`]): the one place a run's events are published. It assigns `seq` and
//!   the time, appends to an in-memory tail and hands the event to the journal, never waiting for
//!   a reader. Each [`Subscription`] is a cursor into that tail: it takes every event after its
//!   cursor in batches, so it sees each event exactly once, in order. A reader that falls behind
//!   further than memory holds reads the gap from the journal and continues live — it never
//!   loses events, and a slow reader never slows the producer.
//! - **Journal** ([`Journal`]): append-only JSONL. State transitions are fsynced before
//!   `publish` returns; progress and output are written in batches within 50 ms. A torn last
//!   line (a crash mid-write) is ignored and cut off on reopen; any other damage is an error
//!   naming its line. [`replay`] reads from any seq; [`follow`] tails a journal another process
//!   writes.
//! - **Fold** ([`RunState`]): the current view of a run as a pure function of its events, used by
//!   `forge status`, the dashboard and resume. It is serializable, and folding in pieces (with
//!   the state saved to JSON in between) equals folding at once.
//! - **Producers** see only the small, object-safe [`EventSink`] trait (the bus implements it;
//!   [`VecSink`] collects events in tests).
//! - **SSE server and web dashboard** (cargo feature `http`, module `http`): the dashboard at
//!   `/` (plain HTML/CSS/JS embedded in the binary: runs list, DAG with the critical path, live
//!   task table, lock waits, conflicts, gate, apply and a following log tail), `GET /api/runs`,
//!   `/api/overview`, `/api/runs/{id}` (the fold as JSON), `/api/runs/{id}/events` (Server-Sent
//!   Events with `Last-Event-ID` resume) and `/api/runs/{id}/tasks/{task}/log`; loopback by
//!   default, a token (bearer header, `?token=` or cookie) otherwise.
//!
//! # Publishing and subscribing
//!
//! ```
//! use forge_events::{BusOptions, EventBus, EventKind, EventSink, TaskId, TaskStatus};
//!
//! # let dir = tempfile::tempdir()?;
//! # let journal = dir.path().join(".forge/runs/r1/events.jsonl");
//! let rt = tokio::runtime::Runtime::new()?;
//! let bus = EventBus::open("r1".parse()?, &journal, &BusOptions::default())?;
//! let mut live = bus.subscribe();
//!
//! let task: TaskId = "backend".parse()?;
//! bus.publish_task(&task, EventKind::TaskProgress {
//!     message: "editing src/api.rs".into(),
//!     tool: Some("edit".into()),
//!     files: vec!["src/api.rs".into()],
//! })?;
//! // A transition: on disk (fsynced) when publish returns.
//! let seq = bus.publish_task(&task, EventKind::TaskFinished {
//!     status: TaskStatus::Succeeded,
//!     exit_code: Some(0),
//!     duration_ms: 1200,
//!     files_changed: vec!["src/api.rs".parse()?],
//!     reason: None,
//! })?;
//! assert_eq!(seq, 2);
//!
//! rt.block_on(async {
//!     let first = live.recv().await?.expect("bus open");
//!     assert_eq!((first.seq, first.type_name()), (1, "task_progress"));
//!     let second = live.recv().await?.expect("bus open");
//!     assert_eq!(second.type_name(), "task_finished");
//!     Ok::<_, forge_events::EventsError>(())
//! })?;
//! bus.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Replaying and folding
//!
//! ```
//! use forge_events::{BusOptions, EventBus, EventKind, RunState, TaskPhase, TaskStatus, replay};
//!
//! # let dir = tempfile::tempdir()?;
//! # let journal = dir.path().join("events.jsonl");
//! # {
//! #     let bus = EventBus::open("r1".parse()?, &journal, &BusOptions::default())?;
//! #     let t = "backend".parse()?;
//! #     bus.publish(Some(t), EventKind::TaskQueued { after: vec![], estimate_ms: None })?;
//! #     bus.publish(Some("backend".parse()?), EventKind::TaskFinished {
//! #         status: TaskStatus::Succeeded, exit_code: Some(0), duration_ms: 5, files_changed: vec![],
//! #         reason: None,
//! #     })?;
//! # }
//! // Everything from seq 2 on, as written.
//! for event in replay(&journal, 2)? {
//!     let event = event?;
//!     assert!(event.seq >= 2);
//! }
//! // The current view of the run, e.g. for `forge status` or resume.
//! let state = RunState::from_journal(&journal)?;
//! assert_eq!(state.task("backend").unwrap().status, TaskPhase::Succeeded);
//! assert_eq!(state.counts.succeeded, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Serving a run
//!
//! With the `http` feature, `http::Server` serves every run under a `.forge/runs` directory;
//! a run of this process can be attached so its events stream without polling the journal.
//!
//! ```
//! # #[cfg(feature = "http")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use forge_events::http::{ServeOptions, Server};
//! use forge_events::{BusOptions, EventBus, EventKind};
//!
//! # let dir = tempfile::tempdir()?;
//! let runs = dir.path().join(".forge/runs");
//! let bus = EventBus::open("r1".parse()?, runs.join("r1/events.jsonl"), &BusOptions::default())?;
//! bus.publish(None, EventKind::GateStarted { command: "cargo test".into() })?;
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let opts = ServeOptions::default().attach(bus.clone());
//!     // Loopback needs no token; any other address does (`ServeOptions::token`).
//!     let server = Server::start("127.0.0.1:0".parse()?, runs, opts).await?;
//!     let url = format!("http://{}/api/runs/r1/events", server.local_addr());
//!     // `curl -N $url` prints `retry: 3000`, then `id: 1`, `event: gate_started`,
//!     // `data: {"v":1,"seq":1,...}`, then every later event as it is published.
//!     # let _ = url;
//!     server.shutdown();
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```

mod bisect;
mod bus;
mod error;
mod event;
#[cfg(feature = "http")]
pub mod http;
mod ids;
mod journal;
pub mod layout;
mod preview;
mod runs;
mod state;
mod status;

pub use bisect::{BisectRecord, BisectStepRecord};
pub use bus::{BusOptions, EventBus, EventSink, Subscription, VecSink};
pub use error::EventsError;
pub use event::{
    ClaimRecord, EVENT_VERSION, Event, EventKind, OutputStream, RunStatus, RunSummary, UnknownKind,
    now_millis,
};
pub use forge_types::{IdError, LockMode, RepoPath};
pub use ids::{RunId, TaskId};
pub use jiff::Timestamp;
pub use journal::{
    DEFAULT_BATCH_WINDOW, DEFAULT_POLL_INTERVAL, Follow, Journal, Replay, follow, read_journal,
    read_journal_bytes, replay,
};
pub use preview::{EstimateSource, Overlap, PlanPreview, PreviewTask, SerialReason, Serialized};
pub use runs::{JOURNAL_FILE, RunInfo, journal_path, list_runs, run_info};
pub use state::{
    ApplyRecord, ConflictRecord, DeadlockRecord, GateResult, PlanInfo, Progress, Retry, RunPhase,
    RunState, TaskCounts, TaskPhase, TaskState, Usage, ViolationRecord,
};
pub use status::TaskStatus;

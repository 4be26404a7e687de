//! Forge's merge queue: integrate each agent's changes as its task finishes, settle what can be
//! settled, prove the result with the project's own commands, and only then touch the user's
//! files, atomically.
//!
//! Peers either leave merging to the user or squash-merge and stop at the first conflict, and
//! users lose local edits when the result lands. Forge instead keeps an **integrated tree** of
//! its own (in the content-addressed store of [`forge_staging`], never in the user's checkout)
//! and folds every finished task into it.
//!
//! # The pieces
//!
//! - [`Integration`] (the [`Merger`]): `integrate(task, &changes, order)` as each task
//!   finishes, returning an [`IntegrationOutcome`]. Each change's `before` entry is the snapshot
//!   the task started from, so it is that path's merge base: a path only the task changed is
//!   taken, a path others changed meanwhile is merged three ways. Text merges line by line with
//!   [`merge_text`], which gives **the same bytes as `git merge-file`** (its line diff makes
//!   xdiff's choices: Myers with the same heuristics and hunk sliding; tested against the git
//!   binary on generated inputs, LF, CRLF, missing final newlines, every conflict style).
//!   Identical changes are not conflicts; exec bits merge on their own; modify/delete,
//!   add/add, binary, file/directory and symlink clashes are [`Conflict`]s.
//! - [`MergeStrategy`] per path ([`MergeRules`] or any [`StrategyFor`]): `fail` reports the
//!   conflict (with diff3-marked hunks) and keeps the integrated side; `ours`/`theirs`/`union`
//!   settle conflicting hunks by **task order**, so results never depend on which task finished
//!   first; `driver:<cmd>` runs a git-compatible merge driver (`mergiraf merge` plugs in)
//!   through a [`CommandRunner`] ([`StandaloneRunner`] alone, Forge's process runner in Forge);
//!   `agent` goes to a [`Resolver`] the caller plugs in, or asks for the task to be re-run on
//!   top of the integrated tree ([`IntegrationStatus::NeedsRerun`]).
//! - [`audit`]: changes outside a task's write claims ([`Violation`]); the [`AuditPolicy`]
//!   rejects, warns or allows. Claims are matched by a closure, so no lock crate is needed.
//! - [`Gate`]: build and test commands for a workspace staged from the integrated tree (run by
//!   `forge_exec::gate`, contained like an agent); the [`GateReport`] has exit codes,
//!   durations, output and [`TestCounts`] parsed from cargo test, nextest, pytest, go test,
//!   jest, vitest, node and the plain `N passed, N failed` line ("All tests pass (12/12)"). An
//!   apply takes the report: only a passed gate lets the result through.
//! - [`apply_to_worktree`]: three ways against the run's base, so the user's own edits made
//!   during the run are merged, and where they clash reported, never overwritten; atomic
//!   (temporary files beside their targets, synced, a journal, renames), with [`recover`] to
//!   finish or undo an apply a crash interrupted; confined to the repository (no symlink is
//!   ever followed, `.git/` is out of reach).
//! - [`apply_to_branch`]: one commit per task (or a squash) on `forge/<run>` with git plumbing,
//!   never touching the user's index, `HEAD` or files.
//!
//! Nothing here publishes events: outcomes and reports are plain values (serde-ready) that
//! forge-exec turns into events. Every call blocks; use `spawn_blocking` from async code.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use forge_merge::{apply_to_worktree, ApplyOptions, GateReport, Integration, IntegrationStatus, TaskId};
//! use forge_staging::{BaseMode, BaseSnapshot, BlobStore, Change, ChangeSet, Entry, RepoPath};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let (repo, run) = (tmp.path().join("repo"), tmp.path().join("run"));
//! # std::fs::create_dir_all(&repo)?;
//! std::fs::write(repo.join("notes.md"), "# Notes\n\nintro\n\nend\n")?;
//! let store = BlobStore::open(run.join("objects"))?;
//! let base = Arc::new(BaseSnapshot::capture(&repo, BaseMode::Worktree, &run.join("base"), &store)?);
//!
//! // Two tasks started from the base and edited different lines of the same file.
//! let edit = |text: &str| -> Result<ChangeSet, Box<dyn std::error::Error>> {
//!     let before = base.manifest().get("notes.md").cloned().ok_or("missing")?;
//!     let after = Entry::file(store.write(text.as_bytes())?, text.len() as u64, false);
//!     Ok([(RepoPath::new("notes.md")?, Change::Modified { before, after })].into_iter().collect())
//! };
//! let mut integration = Integration::new(base.clone(), store.clone());
//! integration.integrate(&TaskId::new("intro")?, &edit("# Notes\n\nINTRO\n\nend\n")?, 1)?;
//! let outcome = integration.integrate(&TaskId::new("end")?, &edit("# Notes\n\nintro\n\nEND\n")?, 2)?;
//! assert_eq!(outcome.status, IntegrationStatus::Integrated);
//! assert_eq!(outcome.merged.len(), 1);
//!
//! // Then the result is applied (after a gate: `forge_exec::gate` runs one on the integrated
//! // tree and hands its report here; without a gate, `GateReport::not_run()`).
//! let report = GateReport::not_run();
//! let applied = apply_to_worktree(&integration, &ApplyOptions::new(run.join("apply")), &report)?;
//! assert!(applied.is_complete());
//! assert_eq!(std::fs::read_to_string(repo.join("notes.md"))?, "# Notes\n\nINTRO\n\nEND\n");
//! # Ok(())
//! # }
//! ```

mod apply;
mod audit;
mod branch;
mod conflict;
mod diff;
mod driver;
mod error;
mod gate;
mod integrate;
mod merge;
mod settle;
mod strategy;
mod text;
mod unified;

pub use apply::{
    ApplyOptions, ApplyReport, ConflictChoices, CrashPoint, OnConflict, Recovery, Refusal,
    apply_to_worktree, recover, recover_abandoned,
};
pub use audit::{AuditPolicy, ChangeKind, Violation, audit, only_additions};
pub use branch::{
    BranchCommit, BranchOptions, BranchReport, apply_to_branch, open_pull_request, push_branch,
};
pub use conflict::{Conflict, ConflictHunk, ConflictKind, Party};
pub use driver::{CommandEnd, CommandOutcome, CommandRunner, ShellCommand, StandaloneRunner};
pub use error::MergeError;
pub use forge_types::{IoError, TaskId};
pub use gate::{
    CommandReport, CommandStatus, Gate, GateCommand, GateReport, TestCountParser, TestCounts,
    parse_test_counts,
};
pub use integrate::{Integration, IntegrationOutcome, IntegrationStatus, Merger, Step};
pub use merge::{Resolution, ResolveRequest, Resolver};
pub use settle::{SettledClash, TaskClash};
pub use strategy::{MergeRules, MergeStrategy, StrategyFor};
pub use text::{
    ConflictRegion, ConflictStyle, DEFAULT_MARKER_SIZE, Favor, TextMerge, TextMergeOptions,
    is_binary, merge_text,
};
pub use unified::{
    CONTEXT_LINES, DiffHunk, DiffLine, FileDiff, FileStatus, LineKind, diff_change_set, diff_file,
    render_stat,
};

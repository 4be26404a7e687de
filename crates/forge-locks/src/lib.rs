//! Read/write/append locks on gitignore-style path globs, with exact overlap and deadlock
//! detection.
//!
//! Forge runs several coding agents on one repository at once. Each task declares which files it
//! reads, writes and appends to as **claims** (`src/api/**`, `docs/*.md`, `CHANGELOG.md`) and
//! holds them while its agent runs, so two agents never write the same file. This crate is that
//! lock manager. It depends on no other Forge crate and can be used alone.
//!
//! # Design
//!
//! - **Claims are globs, compared exactly.** A [`Pattern`] is a gitignore-style glob anchored at
//!   the repository root. Two claims conflict iff their [`LockMode`]s are incompatible and *some
//!   path matches both patterns*: `src/**/*.ts` and `src/**/*.md` never conflict, `src/**` and
//!   `src/api/x.rs` do. Each pattern is compiled once to a DFA; overlap is decided on the product
//!   automaton, and [`Pattern::example_common_path`] names a path both match for messages.
//! - **Hierarchy for speed.** Claims are indexed by their literal leading directories, so a
//!   request only meets the claims above and below it in the tree, never `docs/**` when it
//!   claims `src/api/**`.
//! - **All-or-nothing, FIFO-fair.** [`LockManager::acquire`] never holds part of its set while it
//!   waits. A request is granted only if it is compatible with the holders *and* with earlier
//!   waiters it conflicts with (so writers never starve), while requests on unrelated paths are
//!   never held back by a queue they do not conflict with.
//! - **Deadlocks are found, not prevented.** [`LockManager::extend`] takes more claims while
//!   holding some, which can deadlock. A wait-for graph with *hard* edges (waiting on a holder)
//!   and *soft* edges (queued behind a conflicting earlier waiter) is searched after
//!   [`AcquireOptions::deadlock_timeout`]; a cycle of hard edges fails exactly one request with
//!   [`LockError::Deadlock`] (chosen by [`VictimPolicy`]), a cycle that only exists because of
//!   queue order is resolved by reordering the queue. No false deadlocks: a victim is only ever
//!   chosen on a cycle of real holds.
//! - **Guards.** A granted [`LockSet`] releases its claims when dropped;
//!   [`LockManager::release_all`] cleans up after a crashed owner.
//! - [`claim_overlaps`] is the plan-time view of the same rules: which declared claim sets could not
//!   run at the same time, with an example path, so a planner can order or reject them.
//!
//! # Example: one task waits for another
//!
//! ```
//! use std::time::Duration;
//! use forge_locks::{AcquireOptions, Claim, LocalLockManager, LockError, LockManager, OwnerId, TaskId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), LockError> {
//! let locks = LocalLockManager::new();
//! let backend = OwnerId::new(TaskId::new("backend")?, 1);
//! let tests = OwnerId::new(TaskId::new("tests")?, 1);
//!
//! let held = locks.acquire(&backend, &[Claim::write("src/api/")?], &AcquireOptions::default()).await?;
//!
//! // `tests` wants to read a file under src/api/: it is blocked by `backend`.
//! let wants = [Claim::read("src/api/auth.rs")?, Claim::write("tests/**")?];
//! match locks.try_acquire(&tests, &wants) {
//!     Err(LockError::WouldBlock { blocked_by }) => assert_eq!(blocked_by, [backend.clone()]),
//!     other => panic!("expected to be blocked, got {other:?}"),
//! }
//! let waiting = tokio::spawn({
//!     let locks = locks.clone();
//!     async move { locks.acquire(&tests, &wants, &AcquireOptions::default()).await }
//! });
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! assert_eq!(locks.snapshot().waiters.len(), 1);
//!
//! drop(held); // backend finishes: tests gets its claims
//! let granted = waiting.await.expect("task ran")?;
//! assert_eq!(granted.claims().len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Example: a deadlock is detected and one request fails
//!
//! ```
//! use std::time::Duration;
//! use forge_locks::{AcquireOptions, Claim, LocalLockManager, LockError, LockManager, OwnerId, TaskId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), LockError> {
//! let locks = LocalLockManager::new();
//! let opts = AcquireOptions { deadlock_timeout: Duration::ZERO, ..AcquireOptions::default() };
//! let (a, b) = (OwnerId::new(TaskId::new("a")?, 1), OwnerId::new(TaskId::new("b")?, 1));
//! let _a_holds = locks.acquire(&a, &[Claim::write("x.rs")?], &opts).await?;
//! let _b_holds = locks.acquire(&b, &[Claim::write("y.rs")?], &opts).await?;
//!
//! // a waits for y.rs (held by b) ...
//! let a_waits = tokio::spawn({
//!     let (locks, a, opts) = (locks.clone(), a.clone(), opts.clone());
//!     async move { locks.extend(&a, &[Claim::write("y.rs")?], &opts).await }
//! });
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! // ... and b now waits for x.rs (held by a): a cycle. The youngest request, b's, fails.
//! let err = locks.extend(&b, &[Claim::write("x.rs")?], &opts).await.unwrap_err();
//! assert_eq!(err, LockError::Deadlock { cycle: vec![b.clone(), a.clone()] });
//!
//! // b gives up what it held; a's request goes through.
//! locks.release_all(&b);
//! let granted = a_waits.await.expect("task ran")?;
//! assert_eq!(granted.owner(), &a);
//! # Ok(())
//! # }
//! ```

mod analysis;
mod claim;
mod core;
mod error;
mod index;
mod manager;
mod pattern;
mod snapshot;

pub use analysis::{ClaimOverlap, claim_overlaps};
pub use claim::{Claim, OwnerId};
pub use error::LockError;
pub use forge_types::{LockMode, TaskId};
pub use manager::{
    AcquireOptions, LocalLockManager, LockManager, LockSet, ReleaseSet, VictimPolicy,
};
pub use pattern::Pattern;
pub use snapshot::{ClaimState, EdgeKind, LockSnapshot, WaitEdge, WaitForGraph, WaiterState};

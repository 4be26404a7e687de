//! The `LockManager` trait and its in-process implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::core::{Core, ReqId, Requested, SetId};
use crate::{Claim, ClaimOverlap, LockError, LockSnapshot, OwnerId};

/// Which request of a deadlock cycle fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VictimPolicy {
    /// The most recent request (the least time spent waiting). PostgreSQL's and InnoDB's habit.
    #[default]
    Youngest,
    /// The request with the lowest [`AcquireOptions::priority`] (e.g. the task with the least
    /// work done); among equals, the youngest.
    LowestPriority,
}

/// How a request waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireOptions {
    /// Give up after this long with [`LockError::Timeout`]; `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// Wait this long before looking for a deadlock (checks are not free, and most waits end
    /// sooner); zero checks at once. Later checks back off exponentially while the request waits.
    pub deadlock_timeout: Duration,
    /// The victim policy this request applies when *its* check finds a cycle.
    pub victim: VictimPolicy,
    /// Importance for [`VictimPolicy::LowestPriority`]: higher survives.
    pub priority: i64,
}

impl Default for AcquireOptions {
    fn default() -> Self {
        Self {
            timeout: None,
            deadlock_timeout: Duration::from_millis(100),
            victim: VictimPolicy::Youngest,
            priority: 0,
        }
    }
}

/// Held claims. Dropping the set releases them.
#[must_use = "dropping a LockSet releases its claims at once"]
pub struct LockSet {
    owner: OwnerId,
    claims: Arc<[Claim]>,
    id: u64,
    releaser: Option<Arc<dyn ReleaseSet>>,
}

/// How a [`LockSet`] gives its claims back. Implemented by lock managers; only needed to write
/// a new [`LockManager`].
pub trait ReleaseSet: Send + Sync {
    /// Releases the set with this id. Unknown ids (already released) are ignored.
    fn release_set(&self, id: u64);
}

impl LockSet {
    /// A set as handed out by a lock manager: `releaser.release_set(id)` runs on drop.
    pub fn new(
        owner: OwnerId,
        claims: impl Into<Arc<[Claim]>>,
        id: u64,
        releaser: Arc<dyn ReleaseSet>,
    ) -> Self {
        Self {
            owner,
            claims: claims.into(),
            id,
            releaser: Some(releaser),
        }
    }

    /// Who holds the set.
    pub fn owner(&self) -> &OwnerId {
        &self.owner
    }

    /// The claims held.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// Releases the claims now (the same as dropping the set).
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if let Some(releaser) = self.releaser.take() {
            releaser.release_set(self.id);
        }
    }
}

impl Drop for LockSet {
    fn drop(&mut self) {
        self.release_now();
    }
}

impl fmt::Debug for LockSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockSet")
            .field("owner", &self.owner)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Read/write/append locks on path patterns.
///
/// Implemented by [`LocalLockManager`]. Dyn-compatible, so an engine can hold an
/// `Arc<dyn LockManager>` and tests can swap in their own.
#[async_trait::async_trait]
pub trait LockManager: Send + Sync {
    /// Waits until every claim can be held at once, then holds them all. A request never holds
    /// part of its set while it waits, so claim sets requested this way by owners that hold
    /// nothing else cannot deadlock each other.
    async fn acquire(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        opts: &AcquireOptions,
    ) -> Result<LockSet, LockError>;

    /// Takes the claims if that is possible right now (respecting the queue), or fails with
    /// [`LockError::WouldBlock`] naming who is in the way.
    fn try_acquire(&self, owner: &OwnerId, claims: &[Claim]) -> Result<LockSet, LockError>;

    /// Acquires more claims while holding others. This can deadlock; the detector then fails
    /// one request of the cycle with [`LockError::Deadlock`].
    async fn extend(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        opts: &AcquireOptions,
    ) -> Result<LockSet, LockError> {
        self.acquire(owner, claims, opts).await
    }

    /// Releases everything `owner` holds and cancels its waiting request (for crash paths).
    /// Its [`LockSet`]s become inert.
    fn release_all(&self, owner: &OwnerId);

    /// Holders, waiters and the wait-for graph.
    fn snapshot(&self) -> LockSnapshot;

    /// Plan-time analysis: every pair of claim sets that would conflict (see [`claim_overlaps`](crate::claim_overlaps)).
    fn claim_overlaps(&self, sets: &[(OwnerId, Vec<Claim>)]) -> Vec<ClaimOverlap> {
        crate::claim_overlaps(sets)
    }
}

/// The in-process lock manager: one table behind a mutex, FIFO-fair, deadlock-detecting.
///
/// Cheap to clone (clones share the table).
#[derive(Clone, Default)]
pub struct LocalLockManager {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    core: Core,
    senders: FxHashMap<ReqId, oneshot::Sender<Result<SetId, LockError>>>,
}

impl State {
    /// Delivers the core's completions. A grant whose requester has gone is released again.
    fn flush(&mut self) {
        while !self.core.completions.is_empty() {
            let completions = std::mem::take(&mut self.core.completions);
            for c in completions {
                let undelivered = match self.senders.remove(&c.req) {
                    Some(tx) => tx.send(c.result).err(),
                    None => Some(c.result),
                };
                if let Some(Ok(set)) = undelivered {
                    self.core.release_set(set);
                }
            }
        }
    }
}

impl ReleaseSet for Shared {
    fn release_set(&self, id: u64) {
        let mut state = self.state.lock();
        state.core.release_set(id);
        state.flush();
    }
}

impl fmt::Debug for LocalLockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLockManager").finish_non_exhaustive()
    }
}

impl LocalLockManager {
    /// An empty lock table.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`LockManager::acquire`] without the boxing a trait object needs: the call to use
    /// when the concrete type is known.
    pub async fn acquire(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        opts: &AcquireOptions,
    ) -> Result<LockSet, LockError> {
        let claims: Arc<[Claim]> = claims.into();
        let (req, rx) = {
            let mut state = self.shared.state.lock();
            match state.core.request(owner, claims.clone(), opts.priority)? {
                Requested::Granted(set) => {
                    drop(state);
                    return Ok(self.lock_set(owner, claims, set));
                }
                Requested::Queued(req) => {
                    let (tx, rx) = oneshot::channel();
                    state.senders.insert(req, tx);
                    if opts.deadlock_timeout.is_zero() {
                        state.core.check_deadlock(req, opts.victim);
                        state.flush();
                    }
                    (req, rx)
                }
            }
        };
        self.wait(owner, claims, opts, req, rx).await
    }

    /// [`LockManager::extend`] without boxing.
    pub async fn extend(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        opts: &AcquireOptions,
    ) -> Result<LockSet, LockError> {
        LocalLockManager::acquire(self, owner, claims, opts).await
    }

    fn lock_set(&self, owner: &OwnerId, claims: Arc<[Claim]>, id: SetId) -> LockSet {
        LockSet::new(owner.clone(), claims, id, self.shared.clone())
    }

    async fn wait(
        &self,
        owner: &OwnerId,
        claims: Arc<[Claim]>,
        opts: &AcquireOptions,
        req: ReqId,
        rx: oneshot::Receiver<Result<SetId, LockError>>,
    ) -> Result<LockSet, LockError> {
        let mut guard = PendingGuard {
            shared: &self.shared,
            req,
            rx: Some(rx),
        };
        let start = Instant::now();
        let deadline = opts.timeout.map(|t| start + t);
        let mut check_delay = opts.deadlock_timeout.max(Duration::from_millis(1));
        let mut next_check = start + opts.deadlock_timeout;
        loop {
            let step = {
                let Some(rx) = guard.rx.as_mut() else {
                    return Err(LockError::Cancelled {
                        owner: owner.clone(),
                    });
                };
                let timeout = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    result = rx => Step::Done(result),
                    () = tokio::time::sleep_until(next_check) => Step::CheckDeadlock,
                    () = timeout => Step::TimedOut,
                }
            };
            match step {
                Step::Done(result) => {
                    guard.rx = None;
                    return match result {
                        Ok(Ok(set)) => Ok(self.lock_set(owner, claims.clone(), set)),
                        Ok(Err(e)) => Err(e),
                        // The manager never drops a sender without sending; be safe anyway.
                        Err(_) => Err(LockError::Cancelled {
                            owner: owner.clone(),
                        }),
                    };
                }
                Step::CheckDeadlock => {
                    let mut state = self.shared.state.lock();
                    state.core.check_deadlock(req, opts.victim);
                    state.flush();
                    next_check = Instant::now() + check_delay;
                    check_delay = check_delay.saturating_mul(2);
                }
                Step::TimedOut => {
                    let mut state = self.shared.state.lock();
                    if state.core.is_waiting(req) {
                        let blocked_by = state.core.blocked_by(req);
                        let waited = start.elapsed();
                        state.core.cancel(req);
                        state.senders.remove(&req);
                        state.flush();
                        guard.rx = None;
                        return Err(LockError::Timeout { waited, blocked_by });
                    }
                    // Completed meanwhile: the answer is in the channel.
                }
            }
        }
    }
}

enum Step {
    Done(Result<Result<SetId, LockError>, oneshot::error::RecvError>),
    CheckDeadlock,
    TimedOut,
}

/// Cleans up a waiting request whose future is dropped: the request leaves the queue, or, if it
/// was granted in the meantime, the grant is released.
struct PendingGuard<'a> {
    shared: &'a Arc<Shared>,
    req: ReqId,
    rx: Option<oneshot::Receiver<Result<SetId, LockError>>>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let mut state = self.shared.state.lock();
        if state.core.is_waiting(self.req) {
            state.core.cancel(self.req);
            state.senders.remove(&self.req);
        } else if let Ok(Ok(set)) = rx.try_recv() {
            state.core.release_set(set);
        }
        state.flush();
    }
}

#[async_trait::async_trait]
impl LockManager for LocalLockManager {
    async fn acquire(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        opts: &AcquireOptions,
    ) -> Result<LockSet, LockError> {
        LocalLockManager::acquire(self, owner, claims, opts).await
    }

    fn try_acquire(&self, owner: &OwnerId, claims: &[Claim]) -> Result<LockSet, LockError> {
        let claims: Arc<[Claim]> = claims.into();
        let set = self
            .shared
            .state
            .lock()
            .core
            .try_request(owner, claims.clone())?;
        Ok(self.lock_set(owner, claims, set))
    }

    fn release_all(&self, owner: &OwnerId) {
        let mut state = self.shared.state.lock();
        state.core.release_all(owner);
        state.flush();
    }

    fn snapshot(&self) -> LockSnapshot {
        self.shared.state.lock().core.snapshot()
    }
}

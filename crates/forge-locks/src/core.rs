//! The lock table as a synchronous state machine.
//!
//! [`Core`] holds granted lock sets, the FIFO queue of waiting requests and the wait-for graph
//! logic. It never blocks and never sleeps: operations return at once and record the outcome of
//! any request they complete in `completions`. The async [`LocalLockManager`](crate::LocalLockManager)
//! wraps it in a mutex and turns completions into wake-ups; tests drive it directly, which makes
//! every interleaving reproducible.
//!
//! # Rules
//!
//! - **Grant**: a request is granted iff none of its claims conflicts with a claim held by
//!   another owner, nor with a claim of an *earlier* waiting request of another owner
//!   (PostgreSQL's rule: writers cannot starve, and a request on unrelated paths is never held
//!   back by a queue it does not conflict with). A request is all-or-nothing.
//! - **Wake-up**: a waiter can only become grantable when something it conflicts with goes away
//!   (a released set, or an earlier waiter that left the queue), so only those waiters are
//!   re-examined, in queue order.
//! - **Wait-for graph**: a waiting request has a *hard* edge to each other owner holding a
//!   conflicting claim, and a *soft* edge to each earlier waiter of another owner whose request
//!   conflicts with it. A cycle of hard edges is a deadlock: exactly one request in it (the
//!   youngest, or the one of lowest priority) fails. A cycle that needs a soft edge is only an
//!   artifact of queue order: it is resolved by reordering the waiters in it (each one placed
//!   after the holders-in-waiting it needs), without a victim. Since soft edges always point to
//!   earlier requests, no cycle is made of soft edges alone; every cycle runs through an owner
//!   that waits while holding claims, which is why plain `acquire`s by owners that hold nothing
//!   can never deadlock and are checked in O(1).

use std::collections::{BTreeMap, BinaryHeap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use crate::index::ClaimIndex;
use crate::snapshot::{ClaimState, EdgeKind, LockSnapshot, WaitEdge, WaitForGraph, WaiterState};
use crate::{Claim, LockError, LockMode, OwnerId, Pattern, VictimPolicy};

/// Identifies a granted lock set.
pub(crate) type SetId = u64;
/// Identifies a waiting request. Ids grow with time, so a larger id is a younger request.
pub(crate) type ReqId = u64;

/// How many reorder rounds one deadlock check may perform before it gives up (it never declares
/// a deadlock it has not proven; a later check continues).
const MAX_REORDER_ROUNDS: usize = 8;

#[derive(Debug)]
struct HeldSet {
    owner: OwnerId,
    claims: Arc<[Claim]>,
}

#[derive(Debug, Default)]
struct OwnerState {
    sets: SmallVec<[SetId; 2]>,
    waiting: Option<ReqId>,
}

impl OwnerState {
    fn is_idle(&self) -> bool {
        self.sets.is_empty() && self.waiting.is_none()
    }
}

#[derive(Debug)]
struct Waiter {
    owner: OwnerId,
    claims: Arc<[Claim]>,
    /// Position key in the queue (reordering permutes these among waiters).
    order: u64,
    priority: i64,
    since: Instant,
}

/// The outcome of a request that did not complete synchronously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) req: ReqId,
    pub(crate) result: Result<SetId, LockError>,
}

/// What a new request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requested {
    Granted(SetId),
    Queued(ReqId),
}

/// Out-edges of one waiting request (usually few).
type Edges = SmallVec<[(ReqId, EdgeKind); 4]>;

/// A node of the depth-first search: a request, its out-edges, the index of the next edge.
type Frame = (ReqId, Edges, usize);

/// A cycle found in the wait-for graph: waiting requests, each waiting for the next (the last for
/// the first), with the kind of each edge.
type Cycle = Vec<(ReqId, EdgeKind)>;

#[derive(Debug, Default)]
pub(crate) struct Core {
    next_id: u64,
    sets: FxHashMap<SetId, HeldSet>,
    held: ClaimIndex<SetId>,
    /// Owners holding or waiting, plus idle entries kept for reuse (an owner that releases
    /// often acquires again) until they outnumber the active ones.
    owners: FxHashMap<OwnerId, OwnerState>,
    idle_owners: usize,
    queue: BTreeMap<u64, ReqId>,
    waiters: FxHashMap<ReqId, Waiter>,
    waiting: ClaimIndex<ReqId>,
    /// Requests completed by the last operations, drained by the caller.
    pub(crate) completions: Vec<Completion>,
}

impl Core {
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new request. Granted at once when nothing conflicts, queued otherwise.
    pub(crate) fn request(
        &mut self,
        owner: &OwnerId,
        claims: impl Into<Arc<[Claim]>>,
        priority: i64,
    ) -> Result<Requested, LockError> {
        let claims = claims.into();
        self.ensure_not_waiting(owner)?;
        if self.first_blocker(owner, &claims, u64::MAX).is_none() {
            return Ok(Requested::Granted(self.insert_set(owner.clone(), claims)));
        }
        let req = self.fresh_id();
        let order = req;
        self.waiting.insert_set(&claims, req);
        self.queue.insert(order, req);
        self.update_owner(owner, |o| o.waiting = Some(req));
        self.waiters.insert(
            req,
            Waiter {
                owner: owner.clone(),
                claims,
                order,
                priority,
                since: Instant::now(),
            },
        );
        Ok(Requested::Queued(req))
    }

    /// A request that must not wait: granted, or `WouldBlock` naming who is in the way.
    pub(crate) fn try_request(
        &mut self,
        owner: &OwnerId,
        claims: impl Into<Arc<[Claim]>>,
    ) -> Result<SetId, LockError> {
        let claims = claims.into();
        self.ensure_not_waiting(owner)?;
        let blocked_by = self.blockers(owner, &claims, u64::MAX);
        if blocked_by.is_empty() {
            Ok(self.insert_set(owner.clone(), claims))
        } else {
            Err(LockError::WouldBlock { blocked_by })
        }
    }

    fn ensure_not_waiting(&self, owner: &OwnerId) -> Result<(), LockError> {
        if self.owners.get(owner).is_some_and(|o| o.waiting.is_some()) {
            return Err(LockError::OwnerBusy {
                owner: owner.clone(),
            });
        }
        Ok(())
    }

    /// Updates the state of `owner`, creating it (or reviving an idle entry). The key is only
    /// cloned for a new entry.
    fn update_owner(&mut self, owner: &OwnerId, f: impl FnOnce(&mut OwnerState)) {
        if let Some(state) = self.owners.get_mut(owner) {
            if state.is_idle() {
                self.idle_owners -= 1;
            }
            f(state);
        } else {
            let mut state = OwnerState::default();
            f(&mut state);
            self.owners.insert(owner.clone(), state);
        }
    }

    fn owner_went_idle(&mut self) {
        self.idle_owners += 1;
        let active = self.owners.len() - self.idle_owners;
        if self.idle_owners > 2 * active + 64 {
            self.owners.retain(|_, state| !state.is_idle());
            self.idle_owners = 0;
        }
    }

    /// Whether `owner` holds or waits for anything.
    #[cfg(test)]
    pub(crate) fn is_active(&self, owner: &OwnerId) -> bool {
        self.owners.get(owner).is_some_and(|s| !s.is_idle())
    }

    fn insert_set(&mut self, owner: OwnerId, claims: Arc<[Claim]>) -> SetId {
        let id = self.fresh_id();
        self.held.insert_set(&claims, id);
        self.update_owner(&owner, |o| o.sets.push(id));
        self.sets.insert(id, HeldSet { owner, claims });
        id
    }

    /// Whether `req` is still waiting.
    pub(crate) fn is_waiting(&self, req: ReqId) -> bool {
        self.waiters.contains_key(&req)
    }

    /// The claims of a granted set, if it is still held.
    #[cfg(test)]
    pub(crate) fn set_claims(&self, set: SetId) -> Option<(&OwnerId, &[Claim])> {
        self.sets.get(&set).map(|s| (&s.owner, &*s.claims))
    }

    /// Releases a granted set (unknown ids are ignored: the set may have gone with
    /// `release_all`). Waiters it blocked are granted if they now can be.
    pub(crate) fn release_set(&mut self, set: SetId) {
        let Some(held) = self.sets.remove(&set) else {
            return;
        };
        self.held.remove_set(&held.claims, set);
        if let Some(state) = self.owners.get_mut(&held.owner) {
            state.sets.retain(|s| *s != set);
            if state.is_idle() {
                self.owner_went_idle();
            }
        }
        self.wake(&held.claims);
    }

    /// Removes a waiting request without granting it; waiters queued behind it are re-examined.
    /// Returns its owner if it was waiting.
    pub(crate) fn cancel(&mut self, req: ReqId) -> Option<OwnerId> {
        let waiter = self.remove_waiter(req)?;
        self.wake(&waiter.claims);
        Some(waiter.owner)
    }

    fn remove_waiter(&mut self, req: ReqId) -> Option<Waiter> {
        let waiter = self.waiters.remove(&req)?;
        self.queue.remove(&waiter.order);
        self.waiting.remove_set(&waiter.claims, req);
        if let Some(state) = self.owners.get_mut(&waiter.owner) {
            state.waiting = None;
            if state.is_idle() {
                self.owner_went_idle();
            }
        }
        Some(waiter)
    }

    /// Releases everything `owner` holds and fails its waiting request with `Cancelled`.
    pub(crate) fn release_all(&mut self, owner: &OwnerId) {
        let Some(state) = self.owners.get(owner) else {
            return;
        };
        let sets = state.sets.clone();
        if let Some(req) = state.waiting {
            self.cancel(req);
            self.completions.push(Completion {
                req,
                result: Err(LockError::Cancelled {
                    owner: owner.clone(),
                }),
            });
        }
        for set in sets {
            self.release_set(set);
        }
    }

    /// Calls `f` with the owner of every claim that conflicts with one of `claims`: held by
    /// another owner, or requested by another owner's waiting request ordered before `before`.
    fn for_each_blocker(
        &self,
        owner: &OwnerId,
        claims: &[Claim],
        before: u64,
        mut f: impl FnMut(&OwnerId) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for claim in claims {
            self.held
                .for_each_conflict(claim, |_, set, _| match self.sets.get(&set) {
                    Some(held) if held.owner != *owner => f(&held.owner),
                    _ => ControlFlow::Continue(()),
                })?;
            self.waiting
                .for_each_conflict(claim, |_, req, _| match self.waiters.get(&req) {
                    Some(w) if w.order < before && w.owner != *owner => f(&w.owner),
                    _ => ControlFlow::Continue(()),
                })?;
        }
        ControlFlow::Continue(())
    }

    fn first_blocker(&self, owner: &OwnerId, claims: &[Claim], before: u64) -> Option<OwnerId> {
        let mut found = None;
        let _ = self.for_each_blocker(owner, claims, before, |o| {
            found = Some(o.clone());
            ControlFlow::Break(())
        });
        found
    }

    /// Every owner in the way of `claims`, sorted, without duplicates.
    fn blockers(&self, owner: &OwnerId, claims: &[Claim], before: u64) -> Vec<OwnerId> {
        let mut out: Vec<OwnerId> = Vec::new();
        let _ = self.for_each_blocker(owner, claims, before, |o| {
            out.push(o.clone());
            ControlFlow::Continue(())
        });
        out.sort();
        out.dedup();
        out
    }

    /// Who a waiting request is waiting for (holders and earlier conflicting waiters).
    pub(crate) fn blocked_by(&self, req: ReqId) -> Vec<OwnerId> {
        self.waiters
            .get(&req)
            .map(|w| self.blockers(&w.owner, &w.claims, w.order))
            .unwrap_or_default()
    }

    fn grantable(&self, req: ReqId) -> bool {
        self.waiters
            .get(&req)
            .is_some_and(|w| self.first_blocker(&w.owner, &w.claims, w.order).is_none())
    }

    fn grant(&mut self, req: ReqId) {
        if let Some(waiter) = self.remove_waiter(req) {
            let set = self.insert_set(waiter.owner, waiter.claims);
            self.completions.push(Completion {
                req,
                result: Ok(set),
            });
        }
    }

    /// Re-examines, in queue order, the waiters that conflict with `freed` claims.
    fn wake(&mut self, freed: &[Claim]) {
        let mut candidates: Vec<(u64, ReqId)> = Vec::new();
        for claim in freed {
            let _ = self.waiting.for_each_conflict(claim, |_, req, _| {
                if let Some(w) = self.waiters.get(&req) {
                    candidates.push((w.order, req));
                }
                ControlFlow::Continue(())
            });
        }
        self.grant_in_order(candidates);
    }

    fn grant_in_order(&mut self, mut candidates: Vec<(u64, ReqId)>) {
        candidates.sort_unstable();
        candidates.dedup();
        for (_, req) in candidates {
            if self.grantable(req) {
                self.grant(req);
            }
        }
    }

    /// Out-edges of a waiting request in the wait-for graph, deduplicated, hard edges winning.
    fn edges(&self, req: ReqId, hard_only: bool) -> Edges {
        let Some(w) = self.waiters.get(&req) else {
            return Edges::new();
        };
        let mut out = Edges::new();
        for claim in w.claims.iter() {
            let _ = self.held.for_each_conflict(claim, |_, set, _| {
                if let Some(held) = self.sets.get(&set)
                    && held.owner != w.owner
                    && let Some(next) = self.owners.get(&held.owner).and_then(|o| o.waiting)
                {
                    out.push((next, EdgeKind::Hard));
                }
                ControlFlow::Continue(())
            });
            if !hard_only {
                let _ = self.waiting.for_each_conflict(claim, |_, other, _| {
                    if let Some(o) = self.waiters.get(&other)
                        && o.order < w.order
                        && o.owner != w.owner
                    {
                        out.push((other, EdgeKind::Soft));
                    }
                    ControlFlow::Continue(())
                });
            }
        }
        // `Hard` sorts before `Soft`: dedup keeps the hard edge of a pair.
        out.sort_unstable();
        out.dedup_by_key(|&mut (r, _)| r);
        out
    }

    /// Whether some waiting request has a hard edge to another waiting request. Every cycle
    /// contains one (soft edges only point back in time), so without one there is none.
    fn some_hard_edge_between_waiters(&self) -> bool {
        self.waiters.values().any(|w| {
            let Some(state) = self.owners.get(&w.owner) else {
                return false;
            };
            // Does anyone else wait for what this waiting owner holds?
            state.sets.iter().any(|set| {
                self.sets.get(set).is_some_and(|held| {
                    held.claims.iter().any(|claim| {
                        self.waiting
                            .for_each_conflict(claim, |_, other, _| {
                                match self.waiters.get(&other) {
                                    Some(o) if o.owner != w.owner => ControlFlow::Break(()),
                                    _ => ControlFlow::Continue(()),
                                }
                            })
                            .is_break()
                    })
                })
            })
        })
    }

    /// A cycle through `start`, by depth-first search.
    fn find_cycle(&self, start: ReqId, hard_only: bool) -> Option<Cycle> {
        let mut stack: Vec<Frame> = Vec::with_capacity(self.waiters.len().min(1 << 16));
        stack.push((start, self.edges(start, hard_only), 0));
        // Nodes entered once: a node that is on the path or fully explored needs no second visit
        // (only paths back to `start` matter).
        let mut seen: FxHashSet<ReqId> =
            FxHashSet::with_capacity_and_hasher(self.waiters.len(), rustc_hash::FxBuildHasher);
        seen.insert(start);
        while let Some((_, edges, next)) = stack.last_mut() {
            let Some(&(to, _)) = edges.get(*next) else {
                stack.pop();
                continue;
            };
            *next += 1;
            if to == start {
                // Each node on the stack waits for the next (by the edge it took last); the
                // last one waits for `start`.
                return Some(
                    stack
                        .iter()
                        .map(|(n, e, idx)| (*n, e[*idx - 1].1))
                        .collect(),
                );
            }
            if seen.insert(to) {
                stack.push((to, self.edges(to, hard_only), 0));
            }
        }
        None
    }

    /// Whether any waiting owner also holds claims: without one, no hard edge points at a
    /// waiting node, so no cycle can exist.
    fn some_waiter_holds(&self) -> bool {
        self.waiters.values().any(|w| {
            self.owners
                .get(&w.owner)
                .is_some_and(|o| !o.sets.is_empty())
        })
    }

    /// Looks for a deadlock through `req` and resolves it: a hard cycle fails exactly one victim
    /// (chosen by `policy`); a cycle that needs soft edges is broken by reordering the queue.
    /// Returns the cycle (victim first) when a victim was failed.
    pub(crate) fn check_deadlock(
        &mut self,
        req: ReqId,
        policy: VictimPolicy,
    ) -> Option<Vec<OwnerId>> {
        for _ in 0..MAX_REORDER_ROUNDS {
            if !self.is_waiting(req) || !self.some_waiter_holds() {
                return None;
            }
            if let Some(cycle) = self.find_cycle(req, true) {
                return Some(self.fail_victim(&cycle, policy));
            }
            if !self.some_hard_edge_between_waiters() {
                return None;
            }
            let cycle = self.find_cycle(req, false)?;
            let members: Vec<ReqId> = cycle.iter().map(|&(r, _)| r).collect();
            if !self.reorder(&members) {
                // The members' hard edges form a cycle of their own that does not run through
                // `req`: a real deadlock elsewhere. Resolve it from one of its members.
                for &m in &members {
                    if let Some(cycle) = self.find_cycle(m, true) {
                        return Some(self.fail_victim(&cycle, policy));
                    }
                }
                return None;
            }
        }
        None
    }

    fn fail_victim(&mut self, cycle: &Cycle, policy: VictimPolicy) -> Vec<OwnerId> {
        let victim_index = cycle
            .iter()
            .enumerate()
            .max_by_key(|&(_, &(r, _))| {
                let priority = self.waiters.get(&r).map_or(0, |w| w.priority);
                match policy {
                    VictimPolicy::Youngest => (0, r),
                    // Lowest priority loses; among equals, the youngest.
                    VictimPolicy::LowestPriority => (priority.saturating_neg(), r),
                }
            })
            .map_or(0, |(i, _)| i);
        let owners: Vec<OwnerId> = cycle
            .iter()
            .cycle()
            .skip(victim_index)
            .take(cycle.len())
            .filter_map(|&(r, _)| self.waiters.get(&r).map(|w| w.owner.clone()))
            .collect();
        let victim = cycle[victim_index].0;
        if let Some(waiter) = self.remove_waiter(victim) {
            self.completions.push(Completion {
                req: victim,
                result: Err(LockError::Deadlock {
                    cycle: owners.clone(),
                }),
            });
            self.wake(&waiter.claims);
        }
        owners
    }

    /// Reorders `members` so that every member comes after the members whose owners hold what
    /// it needs (a stable topological order of their hard edges), then grants what it can.
    /// Returns false when their hard edges are cyclic (no order helps).
    fn reorder(&mut self, members: &[ReqId]) -> bool {
        let index: FxHashMap<ReqId, usize> =
            members.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        let mut graph = petgraph::graph::DiGraph::<ReqId, ()>::with_capacity(members.len(), 0);
        let nodes: Vec<_> = members.iter().map(|&r| graph.add_node(r)).collect();
        for (i, &m) in members.iter().enumerate() {
            for (to, kind) in self.edges(m, true) {
                if kind == EdgeKind::Hard
                    && let Some(&j) = index.get(&to)
                {
                    // `to` must be granted (and released) before `m` can be.
                    graph.add_edge(nodes[j], nodes[i], ());
                }
            }
        }
        let order_of = |r: ReqId| self.waiters.get(&r).map_or(u64::MAX, |w| w.order);
        // Kahn's algorithm, always taking the ready member that is earliest in the queue.
        let mut indegree: Vec<usize> = nodes
            .iter()
            .map(|&n| {
                graph
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = indegree
            .iter()
            .enumerate()
            .filter(|&(_, &d)| d == 0)
            .map(|(i, _)| std::cmp::Reverse((order_of(members[i]), i)))
            .collect();
        let mut sorted = Vec::with_capacity(members.len());
        while let Some(std::cmp::Reverse((_, i))) = ready.pop() {
            sorted.push(members[i]);
            for next in graph.neighbors_directed(nodes[i], petgraph::Direction::Outgoing) {
                let j = next.index();
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(std::cmp::Reverse((order_of(members[j]), j)));
                }
            }
        }
        if sorted.len() != members.len() {
            return false;
        }
        let mut orders: Vec<u64> = members.iter().map(|&r| order_of(r)).collect();
        orders.sort_unstable();
        for &r in members {
            if let Some(w) = self.waiters.get(&r) {
                self.queue.remove(&w.order);
            }
        }
        for (&r, &order) in sorted.iter().zip(&orders) {
            if let Some(w) = self.waiters.get_mut(&r) {
                w.order = order;
                self.queue.insert(order, r);
            }
        }
        let claims: Vec<Claim> = members
            .iter()
            .filter_map(|r| self.waiters.get(r))
            .flat_map(|w| w.claims.iter().cloned())
            .collect();
        // (`wake` takes a slice of the freed claims.)
        let candidates: Vec<(u64, ReqId)> = members
            .iter()
            .filter_map(|&r| self.waiters.get(&r).map(|w| (w.order, r)))
            .collect();
        self.grant_in_order(candidates);
        self.wake(&claims);
        true
    }

    /// Holders, waiters and the wait-for graph, for `forge status` and debugging.
    pub(crate) fn snapshot(&self) -> LockSnapshot {
        let now = Instant::now();
        let mut per_pattern: BTreeMap<(Pattern, LockMode), ClaimState> = BTreeMap::new();
        for (pattern, mode, set) in self.held.iter() {
            if let Some(held) = self.sets.get(&set) {
                entry(&mut per_pattern, pattern, mode)
                    .holders
                    .push(held.owner.clone());
            }
        }
        let queue: Vec<ReqId> = self.queue.values().copied().collect();
        for &req in &queue {
            if let Some(w) = self.waiters.get(&req) {
                for claim in w.claims.iter() {
                    entry(&mut per_pattern, &claim.pattern, claim.mode)
                        .waiters
                        .push(w.owner.clone());
                }
            }
        }
        let mut claims: Vec<ClaimState> = per_pattern.into_values().collect();
        for c in &mut claims {
            c.holders.sort();
            c.holders.dedup();
        }
        let waiters: Vec<WaiterState> = queue
            .iter()
            .enumerate()
            .filter_map(|(position, &req)| {
                let w = self.waiters.get(&req)?;
                Some(WaiterState {
                    owner: w.owner.clone(),
                    claims: w.claims.to_vec(),
                    position,
                    waited: now.saturating_duration_since(w.since),
                    blocked_by: self.blocked_by(req),
                })
            })
            .collect();
        let mut nodes: Vec<OwnerId> = self
            .owners
            .iter()
            .filter(|(_, state)| !state.is_idle())
            .map(|(owner, _)| owner.clone())
            .collect();
        nodes.sort();
        let mut edges = Vec::new();
        for &req in &queue {
            let Some(w) = self.waiters.get(&req) else {
                continue;
            };
            // Edges to holders that are not waiting matter for display too.
            let mut hard: Vec<OwnerId> = Vec::new();
            for claim in w.claims.iter() {
                let _ = self.held.for_each_conflict(claim, |_, set, _| {
                    if let Some(held) = self.sets.get(&set)
                        && held.owner != w.owner
                    {
                        hard.push(held.owner.clone());
                    }
                    ControlFlow::Continue(())
                });
            }
            hard.sort();
            hard.dedup();
            for to in &hard {
                edges.push(WaitEdge {
                    from: w.owner.clone(),
                    to: to.clone(),
                    kind: EdgeKind::Hard,
                });
            }
            for (to, kind) in self.edges(req, false) {
                if kind == EdgeKind::Soft
                    && let Some(t) = self.waiters.get(&to)
                    && !hard.contains(&t.owner)
                {
                    edges.push(WaitEdge {
                        from: w.owner.clone(),
                        to: t.owner.clone(),
                        kind,
                    });
                }
            }
        }
        LockSnapshot {
            claims,
            waiters,
            graph: WaitForGraph { nodes, edges },
        }
    }
}

/// The snapshot entry of one claim, created on first use.
fn entry<'m>(
    map: &'m mut BTreeMap<(Pattern, LockMode), ClaimState>,
    pattern: &Pattern,
    mode: LockMode,
) -> &'m mut ClaimState {
    map.entry((pattern.clone(), mode))
        .or_insert_with(|| ClaimState {
            claim: Claim {
                pattern: pattern.clone(),
                mode,
            },
            holders: Vec::new(),
            waiters: Vec::new(),
        })
}

#[cfg(test)]
mod tests;

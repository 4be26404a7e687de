//! Tests of the lock table's rules, driven synchronously: a model-based property test against a
//! simple reference, and an exhaustive exploration of interleavings for classic deadlocks.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::TaskId;

fn owner(i: usize) -> OwnerId {
    OwnerId::new(TaskId::new(format!("o{i}")).unwrap(), 1)
}

fn claim(pattern: &str, mode: LockMode) -> Claim {
    Claim::new(pattern, mode).unwrap()
}

fn drain(core: &mut Core) -> Vec<Completion> {
    std::mem::take(&mut core.completions)
}

// ---------------------------------------------------------------------------------------------
// Rules, one by one.

#[test]
fn writers_do_not_starve_behind_a_stream_of_readers() {
    let mut core = Core::default();
    let r1 = core
        .request(&owner(1), vec![claim("f", LockMode::Read)], 0)
        .unwrap();
    let Requested::Granted(r1) = r1 else { panic!() };
    let w = core
        .request(&owner(2), vec![claim("f", LockMode::Write)], 0)
        .unwrap();
    let Requested::Queued(w) = w else { panic!() };
    // A later reader is compatible with the holder but conflicts with the queued writer.
    let r3 = core
        .request(&owner(3), vec![claim("f", LockMode::Read)], 0)
        .unwrap();
    let Requested::Queued(r3) = r3 else {
        panic!("reader jumped the queued writer")
    };
    core.release_set(r1);
    let done = drain(&mut core);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].req, w);
    let Ok(w_set) = done[0].result else { panic!() };
    assert!(core.is_waiting(r3));
    core.release_set(w_set);
    assert_eq!(drain(&mut core)[0].req, r3);
}

#[test]
fn unrelated_requests_are_not_held_back_by_the_queue() {
    let mut core = Core::default();
    let Requested::Granted(_) = core
        .request(&owner(1), vec![claim("src/**", LockMode::Write)], 0)
        .unwrap()
    else {
        panic!()
    };
    let Requested::Queued(_) = core
        .request(&owner(2), vec![claim("src/a.rs", LockMode::Write)], 0)
        .unwrap()
    else {
        panic!()
    };
    // docs/** overlaps neither holder nor waiter: granted at once.
    assert!(matches!(
        core.request(&owner(3), vec![claim("docs/**", LockMode::Write)], 0)
            .unwrap(),
        Requested::Granted(_)
    ));
    // Reads of src/*.md conflict with the holder (src/**) → queued.
    assert!(matches!(
        core.request(&owner(4), vec![claim("src/*.md", LockMode::Read)], 0)
            .unwrap(),
        Requested::Queued(_)
    ));
}

#[test]
fn requests_are_all_or_nothing() {
    let mut core = Core::default();
    let Requested::Granted(held) = core
        .request(&owner(1), vec![claim("b", LockMode::Write)], 0)
        .unwrap()
    else {
        panic!()
    };
    let Requested::Queued(req) = core
        .request(
            &owner(2),
            vec![claim("a", LockMode::Write), claim("b", LockMode::Write)],
            0,
        )
        .unwrap()
    else {
        panic!()
    };
    // While waiting, owner 2 holds nothing: `a` is free for others.
    assert!(
        core.try_request(&owner(3), vec![claim("a", LockMode::Read)])
            .is_err(),
        "a is requested by an earlier waiter, so fairness keeps a new reader behind it"
    );
    assert!(core.sets.values().all(|s| s.owner != owner(2)));
    core.release_set(held);
    let done = drain(&mut core);
    assert_eq!(done[0].req, req);
    let Ok(set) = done[0].result else { panic!() };
    assert_eq!(core.set_claims(set).unwrap().1.len(), 2);
}

#[test]
fn appends_share_with_appends_and_reads_not_writes() {
    let mut core = Core::default();
    assert!(
        core.try_request(&owner(1), vec![claim("CHANGELOG.md", LockMode::Append)])
            .is_ok()
    );
    assert!(
        core.try_request(&owner(2), vec![claim("CHANGELOG.md", LockMode::Append)])
            .is_ok()
    );
    assert!(
        core.try_request(&owner(3), vec![claim("*.md", LockMode::Read)])
            .is_ok()
    );
    let err = core
        .try_request(&owner(4), vec![claim("CHANGELOG.md", LockMode::Write)])
        .unwrap_err();
    assert_eq!(
        err,
        LockError::WouldBlock {
            blocked_by: vec![owner(1), owner(2), owner(3)]
        }
    );
}

#[test]
fn an_owner_waits_for_one_thing_at_a_time() {
    let mut core = Core::default();
    core.request(&owner(1), vec![claim("a", LockMode::Write)], 0)
        .unwrap();
    core.request(&owner(2), vec![claim("a", LockMode::Write)], 0)
        .unwrap();
    assert_eq!(
        core.request(&owner(2), vec![claim("b", LockMode::Write)], 0),
        Err(LockError::OwnerBusy { owner: owner(2) })
    );
}

#[test]
fn release_all_cancels_the_waiting_request_and_frees_holds() {
    let mut core = Core::default();
    core.request(&owner(1), vec![claim("a", LockMode::Write)], 0)
        .unwrap();
    core.request(&owner(2), vec![claim("b", LockMode::Write)], 0)
        .unwrap();
    let Requested::Queued(req) = core
        .request(&owner(2), vec![claim("a", LockMode::Write)], 0)
        .unwrap()
    else {
        panic!()
    };
    let Requested::Queued(req3) = core
        .request(&owner(3), vec![claim("b", LockMode::Read)], 0)
        .unwrap()
    else {
        panic!()
    };
    core.release_all(&owner(2));
    let done = drain(&mut core);
    assert!(done.contains(&Completion {
        req,
        result: Err(LockError::Cancelled { owner: owner(2) })
    }));
    assert!(done.iter().any(|c| c.req == req3 && c.result.is_ok()));
    assert!(!core.is_active(&owner(2)));
}

// ---------------------------------------------------------------------------------------------
// Model-based property test.

/// Patterns of the model; `UNIVERSE` holds a path for every overlap among them (checked below).
const PATTERNS: [&str; 8] = [
    "a/x", "a/y", "b/x", "a/**", "b/**", "**/x", "*/y", "{a,b}/x",
];

fn universe() -> Vec<String> {
    let names = ["a", "b", "x", "y"];
    let mut out: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    for a in names {
        for b in names {
            out.push(format!("{a}/{b}"));
            for c in names {
                out.push(format!("{a}/{b}/{c}"));
            }
        }
    }
    out
}

/// Reference conflict: brute force over the universe with globset's own matcher.
fn reference_conflict(a: &Claim, b: &Claim, universe: &[String]) -> bool {
    if a.mode.compatible_with(b.mode) {
        return false;
    }
    let m = |p: &Pattern| {
        globset::GlobBuilder::new(p.as_str())
            .literal_separator(true)
            .build()
            .unwrap()
            .compile_matcher()
    };
    let (ma, mb) = (m(&a.pattern), m(&b.pattern));
    universe
        .iter()
        .any(|path| ma.is_match(path) && mb.is_match(path))
}

#[derive(Debug, Clone)]
enum Op {
    /// acquire, or extend when the owner holds something
    Request {
        owner: usize,
        claims: Vec<(usize, LockMode)>,
        priority: i64,
    },
    Try {
        owner: usize,
        claims: Vec<(usize, LockMode)>,
    },
    /// release the owner's n-th held set
    Release {
        owner: usize,
        nth: usize,
    },
    /// the owner's waiting request gives up (timeout or dropped future)
    GiveUp {
        owner: usize,
    },
    Check {
        owner: usize,
        lowest_priority: bool,
    },
    ReleaseAll {
        owner: usize,
    },
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop_oneof![
        Just(LockMode::Read),
        Just(LockMode::Write),
        Just(LockMode::Append)
    ]
}

fn claims() -> impl Strategy<Value = Vec<(usize, LockMode)>> {
    prop::collection::vec((0..PATTERNS.len(), mode()), 1..=3)
}

fn op() -> impl Strategy<Value = Op> {
    let o = 0..8usize;
    prop_oneof![
        4 => (o.clone(), claims(), -2..3i64).prop_map(|(owner, claims, priority)| Op::Request { owner, claims, priority }),
        1 => (o.clone(), claims()).prop_map(|(owner, claims)| Op::Try { owner, claims }),
        3 => (o.clone(), 0..3usize).prop_map(|(owner, nth)| Op::Release { owner, nth }),
        1 => o.clone().prop_map(|owner| Op::GiveUp { owner }),
        2 => (o.clone(), any::<bool>()).prop_map(|(owner, lowest_priority)| Op::Check { owner, lowest_priority }),
        1 => o.prop_map(|owner| Op::ReleaseAll { owner }),
    ]
}

/// What the test knows: sets held per owner, the waiting request per owner.
#[derive(Default)]
struct Model {
    held: BTreeMap<usize, Vec<(SetId, Vec<Claim>)>>,
    waiting: BTreeMap<usize, (ReqId, Vec<Claim>)>,
    /// request -> how it ended
    ended: BTreeMap<ReqId, &'static str>,
}

struct Harness {
    core: Core,
    model: Model,
    universe: Vec<String>,
}

impl Harness {
    fn owner_of_req(&self, req: ReqId) -> Option<usize> {
        self.model
            .waiting
            .iter()
            .find(|(_, (r, _))| *r == req)
            .map(|(o, _)| *o)
    }

    /// Hard wait-for edges by brute force: waiting owner -> owners holding a conflicting claim.
    fn reference_hard_edges(&self) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for (&w, (_, wants)) in &self.model.waiting {
            for (&h, sets) in &self.model.held {
                if h == w {
                    continue;
                }
                let conflict = sets.iter().flat_map(|(_, c)| c).any(|held| {
                    wants
                        .iter()
                        .any(|want| reference_conflict(want, held, &self.universe))
                });
                if conflict {
                    edges.entry(w).or_default().insert(h);
                }
            }
        }
        edges
    }

    fn reference_cycle_through(&self, start: usize) -> bool {
        let edges = self.reference_hard_edges();
        let mut stack = vec![start];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            for &m in edges.get(&n).into_iter().flatten() {
                if m == start {
                    return true;
                }
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        false
    }

    /// Applies completions to the model and checks FIFO at each grant.
    fn absorb(&mut self) {
        for c in drain(&mut self.core) {
            let owner = self
                .owner_of_req(c.req)
                .expect("completion for a request the model knows");
            let (_, claims) = self.model.waiting.remove(&owner).unwrap();
            match c.result {
                Ok(set) => {
                    self.model
                        .held
                        .entry(owner)
                        .or_default()
                        .push((set, claims));
                    self.model.ended.insert(c.req, "granted");
                }
                Err(LockError::Deadlock { .. }) => {
                    self.model.ended.insert(c.req, "victim");
                }
                Err(LockError::Cancelled { .. }) => {
                    self.model.ended.insert(c.req, "cancelled");
                }
                Err(e) => panic!("unexpected completion error {e}"),
            }
        }
    }

    fn check_invariants(&self) {
        // Never two conflicting holders.
        let all: Vec<(usize, &Claim)> = self
            .model
            .held
            .iter()
            .flat_map(|(&o, sets)| {
                sets.iter()
                    .flat_map(move |(_, c)| c.iter().map(move |c| (o, c)))
            })
            .collect();
        for (i, (oa, a)) in all.iter().enumerate() {
            for (ob, b) in &all[i + 1..] {
                assert!(
                    oa == ob || !reference_conflict(a, b, &self.universe),
                    "o{oa} holds {a} while o{ob} holds {b}"
                );
            }
        }
        // The core agrees with the model about who waits.
        for (&o, (req, _)) in &self.model.waiting {
            assert!(
                self.core.is_waiting(*req),
                "o{o}'s request vanished without a completion"
            );
        }
        assert_eq!(self.core.waiters.len(), self.model.waiting.len());
        // Queue discipline: no waiter is grantable (it would have been granted) ...
        for (&o, (req, _)) in &self.model.waiting {
            assert!(
                !self.core.grantable(*req),
                "o{o} could be granted but still waits"
            );
        }
    }

    /// FIFO: when `req` is granted, no earlier waiter (in current queue order) of another owner
    /// that conflicts with it remains queued.
    fn check_fifo_before_grant(&self, granted: &[(ReqId, Vec<Claim>, u64, usize)]) {
        for (req, claims, order, owner) in granted {
            for (&o, (other, wants)) in &self.model.waiting {
                if o == *owner || other == req {
                    continue;
                }
                let Some(w) = self.core.waiters.get(other) else {
                    continue;
                };
                if w.order < *order {
                    let conflict = claims.iter().any(|a| {
                        wants
                            .iter()
                            .any(|b| reference_conflict(a, b, &self.universe))
                    });
                    assert!(
                        !conflict,
                        "o{owner} was granted ahead of earlier conflicting waiter o{o}"
                    );
                }
            }
        }
    }

    /// Runs a deadlock check for `o` and compares it with the reference wait-for graph.
    fn check_op(&mut self, o: usize, lowest_priority: bool) {
        let Some((req, _)) = self.model.waiting.get(&o).cloned() else {
            return;
        };
        let expect_cycle = self.reference_cycle_through(o);
        let policy = if lowest_priority {
            VictimPolicy::LowestPriority
        } else {
            VictimPolicy::Youngest
        };
        match self.core.check_deadlock(req, policy) {
            Some(cycle) => {
                // Reported only on a real cycle of holds, each waiting for the next.
                let edges = self.reference_hard_edges();
                let idx: Vec<usize> = cycle
                    .iter()
                    .map(|id| id.name()[1..].parse().unwrap())
                    .collect();
                for (i, &a) in idx.iter().enumerate() {
                    let b = idx[(i + 1) % idx.len()];
                    assert!(
                        edges.get(&a).is_some_and(|s| s.contains(&b)),
                        "reported cycle {cycle:?} has no hard edge o{a} -> o{b}"
                    );
                }
            }
            None => assert!(!expect_cycle, "missed a deadlock through o{o}"),
        }
    }

    fn run(&mut self, op: &Op) {
        let to_claims = |v: &[(usize, LockMode)]| {
            v.iter()
                .map(|&(p, m)| claim(PATTERNS[p], m))
                .collect::<Vec<_>>()
        };
        // Orders of the waiters before the op, to check FIFO among the ones it grants.
        let orders_before: BTreeMap<ReqId, u64> = self
            .core
            .waiters
            .iter()
            .map(|(r, w)| (*r, w.order))
            .collect();
        let waiting_before = self.model.waiting.clone();
        match op {
            Op::Request {
                owner: o,
                claims,
                priority,
            } => {
                let claims = to_claims(claims);
                match self.core.request(&owner(*o), claims.clone(), *priority) {
                    Ok(Requested::Granted(set)) => {
                        assert!(!self.model.waiting.contains_key(o));
                        self.model.held.entry(*o).or_default().push((set, claims));
                    }
                    Ok(Requested::Queued(req)) => {
                        self.model.waiting.insert(*o, (req, claims));
                    }
                    Err(LockError::OwnerBusy { .. }) => assert!(self.model.waiting.contains_key(o)),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Try { owner: o, claims } => {
                let claims = to_claims(claims);
                match self.core.try_request(&owner(*o), claims.clone()) {
                    Ok(set) => self.model.held.entry(*o).or_default().push((set, claims)),
                    Err(LockError::WouldBlock { blocked_by }) => assert!(!blocked_by.is_empty()),
                    Err(LockError::OwnerBusy { .. }) => assert!(self.model.waiting.contains_key(o)),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Release { owner: o, nth } => {
                if let Some(sets) = self.model.held.get_mut(o)
                    && *nth < sets.len()
                {
                    let (set, _) = sets.remove(*nth);
                    self.core.release_set(set);
                }
            }
            Op::GiveUp { owner: o } => {
                if let Some((req, _)) = self.model.waiting.remove(o) {
                    assert_eq!(self.core.cancel(req), Some(owner(*o)));
                    self.model.ended.insert(req, "gave up");
                }
            }
            Op::Check {
                owner: o,
                lowest_priority,
            } => self.check_op(*o, *lowest_priority),
            Op::ReleaseAll { owner: o } => {
                self.core.release_all(&owner(*o));
                self.model.held.remove(o);
            }
        }
        // Grants made by this op, for the FIFO check (queue orders as they were before).
        let granted: Vec<(ReqId, Vec<Claim>, u64, usize)> = self
            .core
            .completions
            .iter()
            .filter(|c| c.result.is_ok())
            .filter_map(|c| {
                let (&o, (_, claims)) = waiting_before.iter().find(|(_, (r, _))| *r == c.req)?;
                Some((c.req, claims.clone(), *orders_before.get(&c.req)?, o))
            })
            .collect();
        if !matches!(op, Op::Check { .. }) {
            // Only deadlock resolution may reorder; other grants follow the queue.
            self.check_fifo_before_grant(&granted);
        }
        self.absorb();
        self.check_invariants();
    }

    /// Lets the system run to the end: every owner that is not waiting finishes and releases;
    /// every waiter gets its deadlock check. All waiters must end granted or as victims.
    fn settle(&mut self) {
        for _round in 0..64 {
            if self.model.waiting.is_empty() {
                break;
            }
            let waiting: Vec<(usize, ReqId)> = self
                .model
                .waiting
                .iter()
                .map(|(o, (r, _))| (*o, *r))
                .collect();
            for (_, req) in &waiting {
                if self.core.is_waiting(*req) {
                    self.core.check_deadlock(*req, VictimPolicy::Youngest);
                    self.absorb();
                }
            }
            let idle: Vec<usize> = self
                .model
                .held
                .keys()
                .copied()
                .filter(|o| !self.model.waiting.contains_key(o))
                .collect();
            for o in idle {
                self.core.release_all(&owner(o));
                self.model.held.remove(&o);
                self.absorb();
            }
            // Victims give up what they hold, as a real task would.
            let victims: Vec<usize> = self
                .model
                .held
                .keys()
                .copied()
                .filter(|o| !self.model.waiting.contains_key(o))
                .collect();
            for o in victims {
                self.core.release_all(&owner(o));
                self.model.held.remove(&o);
                self.absorb();
            }
            self.check_invariants();
        }
        assert!(
            self.model.waiting.is_empty(),
            "waiters never resolved: {:?}",
            self.model.waiting.keys()
        );
    }
}

#[test]
fn model_patterns_are_covered_by_the_universe() {
    let universe = universe();
    for a in PATTERNS {
        for b in PATTERNS {
            let (ca, cb) = (claim(a, LockMode::Write), claim(b, LockMode::Write));
            assert_eq!(
                ca.pattern.overlaps(&cb.pattern),
                reference_conflict(&ca, &cb, &universe),
                "{a} vs {b}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lock_table_matches_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut h = Harness { core: Core::default(), model: Model::default(), universe: universe() };
        for op in &ops {
            h.run(op);
        }
        h.settle();
        prop_assert!(h.core.waiters.is_empty());
        prop_assert!(h.core.queue.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Interleaving exploration: every order of the owners' steps, deadlock checks included.

#[derive(Debug, Clone, Copy)]
enum Step {
    Acquire(&'static str, LockMode),
    Check,
}

/// All merges of the owners' step lists that keep each owner's own order.
fn interleavings(lens: &[usize]) -> Vec<Vec<usize>> {
    fn go(left: &mut Vec<usize>, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if left.iter().all(|&n| n == 0) {
            out.push(cur.clone());
            return;
        }
        for i in 0..left.len() {
            if left[i] > 0 {
                left[i] -= 1;
                cur.push(i);
                go(left, cur, out);
                cur.pop();
                left[i] += 1;
            }
        }
    }
    let mut out = Vec::new();
    go(&mut lens.to_vec(), &mut Vec::new(), &mut out);
    out
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    victims: usize,
    finished: usize,
}

/// Runs the owners' scripts in the given interleaving. An owner whose request is queued pauses
/// (its later acquire steps wait) until it is granted; its `Check` steps run the detector on
/// its waiting request. At the end every owner that finished releases everything, victims
/// release everything, and the rest must complete.
fn explore(scripts: &[Vec<Step>], order: &[usize]) -> Outcome {
    let mut core = Core::default();
    let n = scripts.len();
    let mut pos = vec![0usize; n];
    let mut waiting: Vec<Option<ReqId>> = vec![None; n];
    let mut victim = vec![false; n];
    let mut outcome = Outcome::default();
    let absorb = |core: &mut Core,
                  waiting: &mut Vec<Option<ReqId>>,
                  victim: &mut Vec<bool>,
                  outcome: &mut Outcome| {
        for c in drain(core) {
            let who = waiting.iter().position(|w| *w == Some(c.req)).unwrap();
            waiting[who] = None;
            match c.result {
                Ok(_) => {}
                Err(LockError::Deadlock { .. }) => {
                    victim[who] = true;
                    outcome.victims += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    // Deferred steps of owners that are waiting, run once they are granted.
    let mut backlog: Vec<Vec<Step>> = vec![Vec::new(); n];
    let run_step =
        |core: &mut Core, who: usize, step: Step, waiting: &mut Vec<Option<ReqId>>| match step {
            Step::Acquire(p, m) => {
                if let Requested::Queued(req) =
                    core.request(&owner(who), vec![claim(p, m)], 0).unwrap()
                {
                    waiting[who] = Some(req);
                }
            }
            Step::Check => {
                if let Some(req) = waiting[who] {
                    core.check_deadlock(req, VictimPolicy::Youngest);
                }
            }
        };
    for &who in order {
        let step = scripts[who][pos[who]];
        pos[who] += 1;
        if victim[who] {
            continue;
        }
        match (step, waiting[who]) {
            (Step::Acquire(..), Some(_)) => backlog[who].push(step),
            _ => run_step(&mut core, who, step, &mut waiting),
        }
        absorb(&mut core, &mut waiting, &mut victim, &mut outcome);
    }
    // Run to completion: release finished owners and victims; run backlogs; check waiters.
    for _ in 0..32 {
        for who in 0..n {
            if waiting[who].is_none() && !victim[who] && !backlog[who].is_empty() {
                let steps = std::mem::take(&mut backlog[who]);
                for (i, step) in steps.iter().enumerate() {
                    if waiting[who].is_some() {
                        backlog[who].extend_from_slice(&steps[i..]);
                        break;
                    }
                    run_step(&mut core, who, *step, &mut waiting);
                    absorb(&mut core, &mut waiting, &mut victim, &mut outcome);
                }
            }
        }
        for who in 0..n {
            if let Some(req) = waiting[who] {
                core.check_deadlock(req, VictimPolicy::Youngest);
                absorb(&mut core, &mut waiting, &mut victim, &mut outcome);
            }
        }
        for who in 0..n {
            if waiting[who].is_none() && backlog[who].is_empty() && core.is_active(&owner(who)) {
                if !victim[who] {
                    outcome.finished += 1;
                }
                core.release_all(&owner(who));
                absorb(&mut core, &mut waiting, &mut victim, &mut outcome);
            }
        }
        if waiting.iter().all(Option::is_none)
            && backlog.iter().all(Vec::is_empty)
            && (0..n).all(|who| !core.is_active(&owner(who)))
        {
            break;
        }
    }
    assert!(waiting.iter().all(Option::is_none), "stuck in {order:?}");
    outcome
}

fn explore_all(scripts: &[Vec<Step>]) -> BTreeSet<usize> {
    let lens: Vec<usize> = scripts.iter().map(Vec::len).collect();
    let mut victims_seen = BTreeSet::new();
    for order in interleavings(&lens) {
        let outcome = explore(scripts, &order);
        assert_eq!(
            outcome.victims + outcome.finished,
            scripts.len(),
            "{order:?}: {outcome:?}"
        );
        victims_seen.insert(outcome.victims);
    }
    victims_seen
}

const W: LockMode = LockMode::Write;
const R: LockMode = LockMode::Read;

#[test]
fn two_owner_cycle_has_exactly_one_victim_in_every_interleaving() {
    let scripts = vec![
        vec![Step::Acquire("x", W), Step::Acquire("y", W), Step::Check],
        vec![Step::Acquire("y", W), Step::Acquire("x", W), Step::Check],
    ];
    // Some interleavings never form the cycle (one owner finishes first): 0 victims there,
    // exactly 1 whenever it forms, never 2.
    assert_eq!(explore_all(&scripts), BTreeSet::from([0, 1]));
}

#[test]
fn three_owner_cycle_has_exactly_one_victim_in_every_interleaving() {
    let scripts = vec![
        vec![Step::Acquire("x", W), Step::Acquire("y", W), Step::Check],
        vec![Step::Acquire("y", W), Step::Acquire("z", W), Step::Check],
        vec![Step::Acquire("z", W), Step::Acquire("x", W), Step::Check],
    ];
    assert_eq!(explore_all(&scripts), BTreeSet::from([0, 1]));
}

#[test]
fn cycle_through_a_soft_edge_is_resolved_without_a_victim() {
    // a holds read x; b queues write x behind it (hard b -> a); c, holding write y, asks read x:
    // compatible with a's read but queued behind b's write (soft c -> b); a then asks read y
    // (hard a -> c). The cycle a -> c -> b -> a exists only through the queue order.
    let scripts = vec![
        vec![Step::Acquire("x", R), Step::Acquire("y", R), Step::Check],
        vec![Step::Acquire("x", W), Step::Check],
        vec![Step::Acquire("y", W), Step::Acquire("x", R), Step::Check],
    ];
    assert_eq!(explore_all(&scripts), BTreeSet::from([0]));
    // The specific order that builds the soft cycle, checked step by step.
    let mut core = Core::default();
    let Requested::Granted(_) = core.request(&owner(0), vec![claim("x", R)], 0).unwrap() else {
        panic!()
    };
    let Requested::Granted(_) = core.request(&owner(2), vec![claim("y", W)], 0).unwrap() else {
        panic!()
    };
    let Requested::Queued(b) = core.request(&owner(1), vec![claim("x", W)], 0).unwrap() else {
        panic!()
    };
    let Requested::Queued(c) = core.request(&owner(2), vec![claim("x", R)], 0).unwrap() else {
        panic!()
    };
    let Requested::Queued(a) = core.request(&owner(0), vec![claim("y", R)], 0).unwrap() else {
        panic!()
    };
    assert!(core.find_cycle(a, true).is_none(), "no cycle of holds");
    let cycle = core
        .find_cycle(a, false)
        .expect("a cycle through the queue order");
    assert!(cycle.iter().any(|&(_, k)| k == EdgeKind::Soft));
    assert_eq!(core.check_deadlock(a, VictimPolicy::Youngest), None);
    // Reordering let c (read x, compatible with a's read) go first.
    let done = drain(&mut core);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].req, c);
    assert!(core.is_waiting(a) && core.is_waiting(b));
}

#[test]
fn lowest_priority_policy_picks_the_least_valuable_request() {
    let mut core = Core::default();
    for (i, p) in ["x", "y", "z"].iter().enumerate() {
        core.request(&owner(i), vec![claim(p, W)], 0).unwrap();
    }
    let Requested::Queued(r0) = core.request(&owner(0), vec![claim("y", W)], 5).unwrap() else {
        panic!()
    };
    let Requested::Queued(_) = core.request(&owner(1), vec![claim("z", W)], 1).unwrap() else {
        panic!()
    };
    let Requested::Queued(r2) = core.request(&owner(2), vec![claim("x", W)], 9).unwrap() else {
        panic!()
    };
    let cycle = core
        .check_deadlock(r0, VictimPolicy::LowestPriority)
        .unwrap();
    assert_eq!(cycle, vec![owner(1), owner(2), owner(0)]);
    let done = drain(&mut core);
    assert!(matches!(&done[0].result, Err(LockError::Deadlock { cycle: c }) if c[0] == owner(1)));
    // With the default policy the youngest (o2's request) would have been chosen.
    let _ = r2;
}

#[test]
fn a_deadlock_is_found_from_any_member_of_the_cycle() {
    for checker in 0..3 {
        let mut core = Core::default();
        for (i, p) in ["x", "y", "z"].iter().enumerate() {
            core.request(&owner(i), vec![claim(p, W)], 0).unwrap();
        }
        let reqs: Vec<ReqId> = ["y", "z", "x"]
            .iter()
            .enumerate()
            .map(
                |(i, p)| match core.request(&owner(i), vec![claim(p, W)], 0).unwrap() {
                    Requested::Queued(r) => r,
                    Requested::Granted(_) => panic!(),
                },
            )
            .collect();
        let cycle = core
            .check_deadlock(reqs[checker], VictimPolicy::Youngest)
            .unwrap();
        // The youngest request is o2's, whoever runs the check.
        assert_eq!(cycle[0], owner(2));
        assert_eq!(drain(&mut core).len(), 1);
        // A second check finds nothing more.
        assert_eq!(core.check_deadlock(reqs[0], VictimPolicy::Youngest), None);
    }
}

#[test]
fn the_model_test_reaches_deadlocks_waits_and_give_ups() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut ended: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..200 {
        let ops = prop::collection::vec(op(), 1..60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut h = Harness {
            core: Core::default(),
            model: Model::default(),
            universe: universe(),
        };
        for op in &ops {
            h.run(op);
        }
        h.settle();
        for how in h.model.ended.values() {
            *ended.entry(how).or_default() += 1;
        }
    }
    for how in ["granted", "victim", "cancelled", "gave up"] {
        assert!(
            ended.get(how).copied().unwrap_or(0) >= 5,
            "too few `{how}` endings: {ended:?}"
        );
    }
}

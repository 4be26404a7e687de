//! forge-locks through its public API: patterns against a brute-force oracle, and the async
//! lock manager on a real tokio runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::sync::Arc;
use std::time::Duration;

use forge_locks::{
    AcquireOptions, Claim, EdgeKind, LocalLockManager, LockError, LockManager, LockMode, OwnerId,
    Pattern, TaskId, VictimPolicy,
};
use parking_lot::Mutex;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Overlap against brute-force enumeration.

const SEGMENT_NAMES: [&str; 5] = ["a", "b", "c", "ab", "ba"];

/// Every path of 1 to 4 segments over `SEGMENT_NAMES` (780 paths): a witness for any overlap of
/// two generated patterns (at most 3 segments each) has at most 4 segments over these names.
fn universe() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut layer: Vec<String> = vec![String::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for prefix in &layer {
            for s in SEGMENT_NAMES {
                next.push(if prefix.is_empty() {
                    s.to_owned()
                } else {
                    format!("{prefix}/{s}")
                });
            }
        }
        out.extend(next.iter().cloned());
        layer = next;
    }
    out
}

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "b", "ab", "*", "?", "**", "[ab]", "[!a]", "a*", "*b", "{a,b}", "{a,ba}", "?b",
    ])
}

fn glob() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..=3).prop_map(|s| s.join("/"))
}

fn oracle(pattern: &str) -> globset::GlobMatcher {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .unwrap()
        .compile_matcher()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn overlap_equals_brute_force(a in glob(), b in glob()) {
        let (pa, pb) = (Pattern::new(&a).unwrap(), Pattern::new(&b).unwrap());
        let (ma, mb) = (oracle(pa.as_str()), oracle(pb.as_str()));
        let universe = universe();
        for path in &universe {
            prop_assert_eq!(pa.matches(path), ma.is_match(path), "{} ~ {}", a, path);
        }
        let brute = universe.iter().find(|p| ma.is_match(p) && mb.is_match(p));
        prop_assert_eq!(pa.overlaps(&pb), brute.is_some(), "{} vs {}: witness {:?}", a, b, brute);
        prop_assert_eq!(pb.overlaps(&pa), brute.is_some());
        match pa.example_common_path(&pb) {
            Some(example) => {
                prop_assert!(ma.is_match(&example) && mb.is_match(&example), "{} vs {}: {}", a, b, example);
            }
            None => prop_assert!(brute.is_none()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The async manager.

fn o(name: &str) -> OwnerId {
    OwnerId::new(TaskId::new(name).unwrap(), 1)
}

fn w(p: &str) -> Claim {
    Claim::write(p).unwrap()
}

fn r(p: &str) -> Claim {
    Claim::read(p).unwrap()
}

fn quick() -> AcquireOptions {
    AcquireOptions {
        deadlock_timeout: Duration::ZERO,
        ..AcquireOptions::default()
    }
}

/// Waits until the manager shows `n` waiters (the spawned requests have queued).
async fn until_waiters(locks: &LocalLockManager, n: usize) {
    for _ in 0..2000 {
        if locks.snapshot().waiters.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("expected {n} waiters, have {:?}", locks.snapshot().waiters);
}

#[tokio::test]
async fn waiters_are_granted_when_holders_release() {
    let locks = LocalLockManager::new();
    let held = locks
        .acquire(&o("a"), &[w("src/**")], &AcquireOptions::default())
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(&o("b"), &[r("src/lib.rs")], &AcquireOptions::default())
                .await
        }
    });
    until_waiters(&locks, 1).await;
    let snap = locks.snapshot();
    assert_eq!(snap.waiters[0].blocked_by, [o("a")]);
    assert_eq!(snap.graph.edges.len(), 1);
    assert_eq!(snap.graph.edges[0].kind, EdgeKind::Hard);
    assert!(
        snap.graph
            .to_dot()
            .contains("\"b#1\" -> \"a#1\" [style=solid];")
    );
    held.release();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.owner(), &o("b"));
    assert!(locks.snapshot().waiters.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_names_who_was_in_the_way() {
    let locks = LocalLockManager::new();
    let _held = locks.try_acquire(&o("a"), &[w("x")]).unwrap();
    let opts = AcquireOptions {
        timeout: Some(Duration::from_secs(5)),
        ..AcquireOptions::default()
    };
    let err = locks.acquire(&o("b"), &[r("x")], &opts).await.unwrap_err();
    match err {
        LockError::Timeout { waited, blocked_by } => {
            assert!(waited >= Duration::from_secs(5));
            assert_eq!(blocked_by, [o("a")]);
        }
        other => panic!("{other}"),
    }
    // The timed-out request left the queue.
    assert!(locks.snapshot().waiters.is_empty());
}

#[tokio::test]
async fn a_dropped_request_leaves_the_queue_and_unblocks_later_ones() {
    let locks = LocalLockManager::new();
    let held = locks.try_acquire(&o("a"), &[r("x")]).unwrap();
    // b (write x) queues; c (read x) queues behind b by fairness.
    let b = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(&o("b"), &[w("x")], &AcquireOptions::default())
                .await
        }
    });
    until_waiters(&locks, 1).await;
    let c = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(&o("c"), &[r("x")], &AcquireOptions::default())
                .await
        }
    });
    until_waiters(&locks, 2).await;
    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    // With b gone, c is compatible with the reader a and is granted.
    let c_set = c.await.unwrap().unwrap();
    assert_eq!(c_set.claims(), [r("x")]);
    drop(held);
}

#[tokio::test]
async fn try_acquire_respects_the_queue_and_names_blockers() {
    let locks = LocalLockManager::new();
    let _a = locks.try_acquire(&o("a"), &[r("docs/**")]).unwrap();
    let _waiter = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(&o("b"), &[w("docs/guide.md")], &AcquireOptions::default())
                .await
        }
    });
    until_waiters(&locks, 1).await;
    // A reader of docs/guide.md is compatible with a, but would overtake the queued writer b.
    assert_eq!(
        locks.try_acquire(&o("c"), &[r("docs/*.md")]).unwrap_err(),
        LockError::WouldBlock {
            blocked_by: vec![o("b")]
        }
    );
    // Unrelated paths are not held back.
    assert!(locks.try_acquire(&o("d"), &[w("src/**")]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_way_deadlock_fails_exactly_one_request() {
    for deadlock_timeout in [Duration::ZERO, Duration::from_millis(20)] {
        let locks = LocalLockManager::new();
        let opts = AcquireOptions {
            deadlock_timeout,
            ..AcquireOptions::default()
        };
        let names = ["a", "b", "c"];
        let files = ["x", "y", "z"];
        let mut held = Vec::new();
        for (n, f) in names.iter().zip(files) {
            held.push(locks.acquire(&o(n), &[w(f)], &opts).await.unwrap());
        }
        let mut tasks = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let (locks, opts, owner, want) =
                (locks.clone(), opts.clone(), o(n), w(files[(i + 1) % 3]));
            tasks.push(tokio::spawn(async move {
                let result = locks.extend(&owner, &[want], &opts).await;
                if result.is_err() {
                    // A victim gives up what it held, as a task would.
                    locks.release_all(&owner);
                }
                result.map(|set| {
                    drop(set);
                    locks.release_all(&owner);
                })
            }));
        }
        let mut victims = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => {}
                Err(LockError::Deadlock { cycle }) => {
                    assert_eq!(cycle.len(), 3);
                    victims += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(victims, 1, "deadlock_timeout {deadlock_timeout:?}");
        drop(held);
    }
}

#[tokio::test(start_paused = true)]
async fn priority_policy_spares_valuable_work() {
    let locks = LocalLockManager::new();
    let _x = locks.try_acquire(&o("valuable"), &[w("x")]).unwrap();
    let _y = locks.try_acquire(&o("cheap"), &[w("y")]).unwrap();
    let valuable = tokio::spawn({
        let locks = locks.clone();
        async move {
            let opts = AcquireOptions {
                priority: 100,
                victim: VictimPolicy::LowestPriority,
                ..quick()
            };
            locks.extend(&o("valuable"), &[w("y")], &opts).await
        }
    });
    until_waiters(&locks, 1).await;
    // The younger request is the valuable task's victim under this policy? No: the cheap one.
    let opts = AcquireOptions {
        priority: 1,
        victim: VictimPolicy::LowestPriority,
        ..quick()
    };
    let err = locks
        .extend(&o("cheap"), &[w("x")], &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Deadlock { ref cycle } if cycle[0] == o("cheap")));
    locks.release_all(&o("cheap"));
    assert!(valuable.await.unwrap().is_ok());
}

#[tokio::test]
async fn release_all_cancels_a_waiting_request() {
    let locks = LocalLockManager::new();
    let _a = locks.try_acquire(&o("a"), &[w("x")]).unwrap();
    let b_set = locks.try_acquire(&o("b"), &[w("y")]).unwrap();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .extend(&o("b"), &[w("x")], &AcquireOptions::default())
                .await
        }
    });
    until_waiters(&locks, 1).await;
    locks.release_all(&o("b"));
    assert_eq!(
        waiting.await.unwrap().unwrap_err(),
        LockError::Cancelled { owner: o("b") }
    );
    // y is free now even though b's LockSet still exists; dropping it later is harmless.
    assert!(locks.try_acquire(&o("c"), &[w("y")]).is_ok());
    drop(b_set);
}

#[tokio::test]
async fn owner_busy_while_waiting() {
    let locks = LocalLockManager::new();
    let _a = locks.try_acquire(&o("a"), &[w("x")]).unwrap();
    let _waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire(&o("b"), &[w("x")], &AcquireOptions::default())
                .await
        }
    });
    until_waiters(&locks, 1).await;
    assert_eq!(
        locks.try_acquire(&o("b"), &[w("other")]).unwrap_err(),
        LockError::OwnerBusy { owner: o("b") }
    );
}

#[test]
fn invalid_claims_are_refused_with_the_pattern() {
    for bad in ["/abs", "../up", "", ".git/config", "a/[b"] {
        let err = Claim::write(bad).unwrap_err();
        assert!(
            matches!(&err, LockError::InvalidPattern { pattern, .. } if pattern == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(&format!("`{bad}`")));
    }
}

#[test]
fn the_manager_is_usable_as_a_trait_object() {
    let locks: Arc<dyn LockManager> = Arc::new(LocalLockManager::new());
    let set = locks
        .try_acquire(&o("a"), &[Claim::new("a/**", LockMode::Append).unwrap()])
        .unwrap();
    assert_eq!(locks.snapshot().claims.len(), 1);
    drop(set);
    assert!(locks.snapshot().claims.is_empty());
    let found = locks.claim_overlaps(&[(o("a"), vec![w("src/**")]), (o("b"), vec![r("src/x.rs")])]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].example_path, "src/x.rs");
}

/// Many tasks on two worker threads acquire random claim sets; at no moment do two holders
/// conflict (checked against a registry updated while the claims are held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_holders_never_conflict() {
    let locks = LocalLockManager::new();
    let patterns = [
        "src/**",
        "src/a.rs",
        "src/b.rs",
        "docs/*.md",
        "docs/x.md",
        "**/*.md",
        "CHANGELOG.md",
        "tests/**",
    ];
    let holding: Arc<Mutex<Vec<(usize, Claim)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let (locks, holding) = (locks.clone(), holding.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = t as u64 * 2_654_435_761 + 1;
            let mut next = move |n: usize| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                usize::try_from(seed % n as u64).unwrap()
            };
            for round in 0..25 {
                let claims: Vec<Claim> = (0..=next(3))
                    .map(|_| {
                        let mode = [LockMode::Read, LockMode::Write, LockMode::Append][next(3)];
                        Claim::new(patterns[next(patterns.len())], mode).unwrap()
                    })
                    .collect();
                let owner = OwnerId::new(TaskId::new(format!("t{t}")).unwrap(), round + 1);
                let set = locks
                    .acquire(&owner, &claims, &AcquireOptions::default())
                    .await
                    .unwrap();
                {
                    let mut h = holding.lock();
                    for (other, held) in h.iter() {
                        for c in &claims {
                            assert!(
                                *other == t
                                    || c.mode.compatible_with(held.mode)
                                    || !c.pattern.overlaps(&held.pattern),
                                "t{t} got {c} while t{other} holds {held}"
                            );
                        }
                    }
                    h.extend(claims.iter().map(|c| (t, c.clone())));
                }
                tokio::task::yield_now().await;
                holding.lock().retain(|(o, _)| *o != t);
                drop(set);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(locks.snapshot().claims.is_empty());
}

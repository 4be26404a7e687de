//! `bench-locks`: forge-locks' lock manager side by side with a naive per-path `RwLock` map.
//!
//! `cargo run --release -p forge-benches --bin bench-locks -- [--quick]`
//! Rows: `uncontended_acquire_release`, `contended_grants`, `overlap_checks`,
//! `deadlock_detect_10k`, `hot_lock_1000_waiters`, `memory_10k_claims` (see `benches/README.md`).
//! `--only <id prefix>` runs a subset, for profiling.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)] // a bench binary
#![allow(clippy::cast_precision_loss)] // counts and nanoseconds as f64 figures

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use forge_benches::{Better, Report, Row, median, peak_rss_bytes, quick_from_args};
use forge_locks::TaskId;
use forge_locks::{
    AcquireOptions, Claim, LocalLockManager, LockManager, LockSet, OwnerId, Pattern,
};
use parking_lot::{Mutex, RwLock};

const REPS: usize = 5;

/// Polls a future once with a no-op waker: the uncontended path completes without waiting.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// The peer: one `RwLock` per exact path in a map, locked in path order.
#[derive(Default)]
struct NaiveRwLockMap {
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

enum NaiveGuard {
    #[allow(dead_code)] // held for its Drop
    Write(parking_lot::ArcRwLockWriteGuard<parking_lot::RawRwLock, ()>),
}

impl NaiveRwLockMap {
    fn acquire(&self, paths: &[&str]) -> Vec<NaiveGuard> {
        let mut sorted: Vec<&str> = paths.to_vec();
        sorted.sort_unstable();
        let locks: Vec<Arc<RwLock<()>>> = {
            let mut map = self.locks.lock();
            sorted
                .iter()
                .map(|p| map.entry((*p).to_owned()).or_default().clone())
                .collect()
        };
        locks
            .into_iter()
            .map(|l| NaiveGuard::Write(l.write_arc()))
            .collect()
    }
}

fn uncontended(report: &mut Report, quick: bool) {
    let iters: u32 = if quick { 200_000 } else { 1_000_000 };
    let locks = LocalLockManager::new();
    let owner = owner("bench", 1);
    let claims = [
        Claim::write("src/api/auth.rs").unwrap(),
        Claim::read("src/models/**").unwrap(),
        Claim::append("CHANGELOG.md").unwrap(),
    ];
    let opts = AcquireOptions::default();
    let naive = NaiveRwLockMap::default();
    let paths = ["src/api/auth.rs", "src/models/user.rs", "CHANGELOG.md"];
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        let start = Instant::now();
        for _ in 0..iters {
            let mut fut = std::pin::pin!(locks.acquire(&owner, &claims, &opts));
            let Poll::Ready(Ok(set)) = poll_once(fut.as_mut()) else {
                panic!("uncontended acquire must complete at once");
            };
            drop(set);
        }
        ours.push(f64::from(iters) / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for _ in 0..iters {
            drop(naive.acquire(&paths));
        }
        peer.push(f64::from(iters) / start.elapsed().as_secs_f64());
    }
    report.push(
        Row::new(
            "uncontended_acquire_release",
            median(&ours),
            "ops/s",
            Better::Higher,
            REPS,
        )
        .peer("naive-rwlock-map", median(&peer))
        .goal(">= 1000000"),
    );
}

fn contended(report: &mut Report, quick: bool) {
    let rounds = if quick { 200 } else { 1_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let paths: Arc<Vec<String>> = Arc::new(
        (0..1000)
            .map(|i| format!("src/m{}/f{i}.rs", i % 37))
            .collect(),
    );
    let mut samples = Vec::new();
    for rep in 0..REPS {
        let locks = LocalLockManager::new();
        let grants = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..64u64 {
                let (locks, grants, paths) = (locks.clone(), grants.clone(), paths.clone());
                tasks.push(tokio::spawn(async move {
                    let mut seed = (t + 1) * 0x9E37_79B9_7F4A_7C15 + rep as u64;
                    let mut next = move |n: usize| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        usize::try_from(seed % n as u64).unwrap()
                    };
                    for round in 0..rounds {
                        let claims: Vec<Claim> = (0..=next(4).min(3))
                            .map(|_| {
                                let p = &paths[next(paths.len())];
                                if next(4) == 0 {
                                    Claim::write(p)
                                } else {
                                    Claim::read(p)
                                }
                                .unwrap()
                            })
                            .collect();
                        let owner = owner(format!("t{t}"), round + 1);
                        let set = locks
                            .acquire(&owner, &claims, &AcquireOptions::default())
                            .await
                            .unwrap();
                        grants.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        drop(set);
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
        samples.push(grants.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64());
    }
    report.push(
        Row::new(
            "contended_grants",
            median(&samples),
            "grants/s",
            Better::Higher,
            REPS,
        )
        .extra("owners", 64)
        .extra("paths", 1000)
        .extra("worker_threads", 2),
    );
}

fn overlap_checks(report: &mut Report, quick: bool) {
    let texts = [
        "src/api/**",
        "src/models/**",
        "src/api/auth.rs",
        "src/main.rs",
        "src/**/*.ts",
        "src/**/*.md",
        "tests/**",
        "tests/api/*.rs",
        "docs/*.md",
        "docs/guide/intro.md",
        "CHANGELOG.md",
        "README.md",
        "**/*.rs",
        "{web,app}/src/**",
        "web/src/components/Button.tsx",
        "web/src/components/**/*.tsx",
        "Cargo.toml",
        "crates/*/Cargo.toml",
        "crates/forge-locks/src/**",
        "package.json",
    ];
    let patterns: Vec<Pattern> = texts.iter().map(|t| Pattern::new(t).unwrap()).collect();
    // Warm the compiled-pattern cache, as a running manager would be.
    for a in &patterns {
        for b in &patterns {
            let _ = a.overlaps(b);
        }
    }
    let loops = if quick { 2_000 } else { 10_000 };
    let mut samples = Vec::new();
    let mut overlapping = 0usize;
    for _ in 0..REPS {
        let start = Instant::now();
        overlapping = 0;
        for _ in 0..loops {
            for a in &patterns {
                for b in &patterns {
                    overlapping +=
                        usize::from(std::hint::black_box(a).overlaps(std::hint::black_box(b)));
                }
            }
        }
        let checks = loops * patterns.len() * patterns.len();
        samples.push(checks as f64 / start.elapsed().as_secs_f64());
    }
    report.push(
        Row::new(
            "overlap_checks",
            median(&samples),
            "checks/s",
            Better::Higher,
            REPS,
        )
        .goal(">= 1000000")
        .extra("pairs", patterns.len() * patterns.len())
        .extra("overlapping_pairs", overlapping / loops),
    );
}

/// Queues `owners` waiting requests (futures polled once and kept pending).
type Pending = Pin<Box<dyn Future<Output = Result<LockSet, forge_locks::LockError>>>>;

fn deadlock_detect(report: &mut Report, quick: bool) {
    let n: usize = 10_000;
    let reps = if quick { 3 } else { REPS };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..reps {
        let ms = rt.block_on(async {
            let locks = LocalLockManager::new();
            let patient = AcquireOptions { deadlock_timeout: Duration::from_hours(1), ..AcquireOptions::default() };
            let owners: Vec<OwnerId> = (0..n).map(|i| owner(format!("o{i}"), 1)).collect();
            let files: Vec<Claim> = (0..n).map(|i| Claim::write(&format!("d{}/f{i}", i % 100)).unwrap()).collect();
            let held: Vec<LockSet> = (0..n).map(|i| locks.try_acquire(&owners[i], &[files[i].clone()]).unwrap()).collect();
            // o0 -> o1 -> ... -> o(n-1): each waits for the next one's file.
            let mut pending: Vec<Pending> = Vec::new();
            for i in 0..n - 1 {
                let (locks, owner, want, opts) = (locks.clone(), owners[i].clone(), files[i + 1].clone(), patient.clone());
                let mut fut: Pending = Box::pin(async move { locks.extend(&owner, &[want], &opts).await });
                assert!(poll_once(fut.as_mut()).is_pending());
                pending.push(fut);
            }
            // The last one closes the cycle and checks at once.
            let now = AcquireOptions { deadlock_timeout: Duration::ZERO, ..AcquireOptions::default() };
            let closing_claims = [files[0].clone()];
            let start = Instant::now();
            let mut closing = std::pin::pin!(locks.extend(&owners[n - 1], &closing_claims, &now));
            let outcome = poll_once(closing.as_mut());
            let elapsed = start.elapsed();
            assert!(matches!(outcome, Poll::Ready(Err(forge_locks::LockError::Deadlock { ref cycle })) if cycle.len() == n));
            drop(pending);
            drop(held);
            elapsed.as_secs_f64() * 1e3
        });
        samples.push(ms);
    }
    report.push(
        Row::new(
            "deadlock_detect_10k",
            median(&samples),
            "ms",
            Better::Lower,
            reps,
        )
        .goal("< 10")
        .extra("waiters", n),
    );
}

fn hot_lock(report: &mut Report, quick: bool) {
    let n = 1000;
    let checks = if quick { 5 } else { 15 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = rt.block_on(async {
        let locks = LocalLockManager::new();
        let hot = Claim::write("src/hot.rs").unwrap();
        let _holder = locks
            .try_acquire(&owner("holder", 1), std::slice::from_ref(&hot))
            .unwrap();
        let patient = AcquireOptions {
            deadlock_timeout: Duration::from_hours(1),
            ..AcquireOptions::default()
        };
        // Every waiter also holds a file of its own, so the detector cannot skip the graph
        // (owners that hold nothing cannot be in a cycle): the expensive case.
        let mut held = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        for i in 0..n {
            let owner = owner(format!("w{i}"), 1);
            held.push(
                locks
                    .try_acquire(&owner, &[Claim::write(&format!("own/{i}")).unwrap()])
                    .unwrap(),
            );
            let (locks, hot, opts) = (locks.clone(), hot.clone(), patient.clone());
            let mut fut: Pending =
                Box::pin(async move { locks.extend(&owner, &[hot], &opts).await });
            assert!(poll_once(fut.as_mut()).is_pending());
            pending.push(fut);
        }
        let now = AcquireOptions {
            deadlock_timeout: Duration::ZERO,
            ..AcquireOptions::default()
        };
        let mut samples = Vec::new();
        for c in 0..checks {
            let owner = owner(format!("checker{c}"), 1);
            let _own = locks
                .try_acquire(&owner, &[Claim::write(&format!("checker/{c}")).unwrap()])
                .unwrap();
            let want = [hot.clone()];
            let start = Instant::now();
            let mut fut = std::pin::pin!(locks.extend(&owner, &want, &now));
            assert!(poll_once(fut.as_mut()).is_pending(), "no deadlock exists");
            samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
        drop(pending);
        samples
    });
    report.push(
        Row::new(
            "hot_lock_1000_waiters",
            median(&samples),
            "ms",
            Better::Lower,
            samples.len(),
        )
        .goal("< 10")
        .extra("waiters", n),
    );
}

fn memory(report: &mut Report) {
    let n = 10_000;
    let locks = LocalLockManager::new();
    let before = peak_rss_bytes().unwrap_or(0);
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let owner = owner(format!("task-{i}"), 1);
        // Half exact files, half subtrees, spread over directories as in a large plan.
        let claim = if i % 2 == 0 {
            Claim::write(&format!("pkg{}/src/file{i}.rs", i % 50))
        } else {
            Claim::read(&format!("pkg{}/mod{i}/", i % 50))
        }
        .unwrap();
        held.push(locks.try_acquire(&owner, &[claim]).unwrap());
    }
    let after = peak_rss_bytes().unwrap_or(0);
    assert_eq!(locks.snapshot().claims.len(), n);
    report.push(
        Row::new(
            "memory_10k_claims",
            after.saturating_sub(before) as f64,
            "bytes",
            Better::Lower,
            1,
        )
        .goal("< 10485760")
        .extra("claims", n),
    );
    drop(held);
}

/// The owner for attempt `attempt` of the task `name` (a valid id: the bench makes them).
fn owner(name: impl Into<String>, attempt: u32) -> OwnerId {
    OwnerId::new(TaskId::new(name).unwrap(), attempt)
}

fn main() {
    let quick = quick_from_args();
    // `--only <row id prefix>` runs a subset (for profiling).
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |id: &str| only.as_deref().is_none_or(|o| id.starts_with(o));
    let mut report = Report::new("locks", quick);
    // Memory first, before other rows raise the peak.
    if run("memory_10k_claims") {
        memory(&mut report);
    }
    if run("uncontended_acquire_release") {
        uncontended(&mut report, quick);
    }
    if run("contended_grants") {
        contended(&mut report, quick);
    }
    if run("overlap_checks") {
        overlap_checks(&mut report, quick);
    }
    if run("deadlock_detect_10k") {
        deadlock_detect(&mut report, quick);
    }
    if run("hot_lock_1000_waiters") {
        hot_lock(&mut report, quick);
    }
    println!();
    print!("{}", report.table());
    match report.write() {
        Ok(path) => println!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("bench-locks: cannot write the report: {e}");
            std::process::exit(1);
        }
    }
}

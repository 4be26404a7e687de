//! The bus: seqs, subscribers that never lose events, durability through the journal.

use std::sync::Arc;
use std::time::Duration;

use forge_events::{
    BusOptions, EventBus, EventKind, EventSink, EventsError, RunState, Subscription, TaskPhase,
    TaskStatus, VecSink, read_journal,
};
use proptest::prelude::*;

use super::common::{finished, progress, run_id, task};

fn small() -> BusOptions {
    BusOptions {
        tail: 8,
        retain: 8,
        ..BusOptions::default()
    }
}

async fn collect(sub: &mut Subscription, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), sub.recv())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("bus still open");
        seqs.push(event.seq);
    }
    seqs
}

fn seqs(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

#[tokio::test]
async fn publish_assigns_seqs_and_subscribers_get_every_event_in_order() {
    let bus = EventBus::in_memory(run_id(), &BusOptions::default());
    let mut a = bus.subscribe();
    let mut b = bus.subscribe();
    for i in 0..10 {
        assert_eq!(
            bus.publish(Some(task("t")), progress(format!("{i}")))
                .unwrap(),
            i + 1
        );
    }
    assert_eq!(collect(&mut a, 10).await, seqs(1..=10));
    assert_eq!(collect(&mut b, 10).await, seqs(1..=10));
    assert_eq!(bus.last_seq(), 10);
}

#[tokio::test]
async fn a_lagging_subscriber_catches_up_from_the_journal_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(run_id(), dir.path().join("events.jsonl"), &small()).unwrap();
    let mut slow = bus.subscribe();
    // An 8-deep tail: 1000 unread events force journal reads.
    for i in 0..1000u64 {
        let kind = if i % 97 == 0 {
            finished(TaskStatus::Succeeded)
        } else {
            progress(format!("p{i}"))
        };
        bus.publish(Some(task("t")), kind).unwrap();
    }
    assert_eq!(collect(&mut slow, 1000).await, seqs(1..=1000));
    // And it continues live.
    bus.publish(None, progress("live")).unwrap();
    assert_eq!(collect(&mut slow, 1).await, vec![1001]);
}

#[tokio::test]
async fn a_lagging_subscriber_of_a_memory_bus_catches_up_from_memory() {
    let bus = EventBus::in_memory(run_id(), &small());
    let mut slow = bus.subscribe();
    for _ in 0..300 {
        bus.publish(None, progress("x")).unwrap();
    }
    assert_eq!(collect(&mut slow, 300).await, seqs(1..=300));
}

#[tokio::test]
async fn subscribe_from_replays_then_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(run_id(), dir.path().join("events.jsonl"), &small()).unwrap();
    for _ in 0..50 {
        bus.publish(None, progress("x")).unwrap();
    }
    let mut sub = bus.subscribe_from(20);
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                bus.publish(None, progress("y")).unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    assert_eq!(collect(&mut sub, 81).await, seqs(20..=100));
    publisher.await.unwrap();
    // From 0 (or 1) means everything; from beyond the end means live only.
    assert_eq!(
        collect(&mut bus.subscribe_from(0), 100).await,
        seqs(1..=100)
    );
    let mut future = bus.subscribe_from(500);
    bus.publish(None, progress("z")).unwrap();
    assert_eq!(collect(&mut future, 1).await, vec![101]);
}

#[tokio::test]
async fn many_publishers_and_readers_agree_on_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(run_id(), dir.path().join("events.jsonl"), &small()).unwrap();
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let mut sub = bus.subscribe();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(event) = sub.recv().await.unwrap() {
                    got.push(event.seq);
                    if got.len() % (7 + r) == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                got
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let kind = if i % 50 == 0 {
                        finished(TaskStatus::Succeeded)
                    } else {
                        progress(format!("{w}:{i}"))
                    };
                    bus.publish(Some(task(&format!("w{w}"))), kind).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    bus.close().unwrap();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), seqs(1..=1000));
    }
    let journal: Vec<u64> = read_journal(bus.journal_path().unwrap())
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(journal, seqs(1..=1000));
}

#[tokio::test]
async fn transitions_are_durable_when_publish_returns_and_progress_follows_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let bus = EventBus::open(run_id(), &path, &BusOptions::default()).unwrap();
    bus.publish(Some(task("a")), progress("thinking")).unwrap();
    bus.publish(Some(task("a")), finished(TaskStatus::Succeeded))
        .unwrap();
    // Read by another handle, no flush asked for: both are there (the transition carried the
    // batch before it).
    assert_eq!(read_journal(&path).unwrap().len(), 2);
    // A lone progress event is written by the background flusher without further publishes.
    bus.publish(Some(task("a")), progress("more")).unwrap();
    let mut waited = Duration::ZERO;
    while read_journal(&path).unwrap().len() < 3 {
        assert!(
            waited < Duration::from_secs(10),
            "batched event never written"
        );
        std::thread::sleep(Duration::from_millis(5));
        waited += Duration::from_millis(5);
    }
}

#[tokio::test]
async fn close_ends_subscriptions_after_the_last_event_and_refuses_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(run_id(), dir.path().join("events.jsonl"), &small()).unwrap();
    let mut sub = bus.subscribe();
    for _ in 0..20 {
        bus.publish(None, progress("x")).unwrap();
    }
    bus.close().unwrap();
    assert!(bus.is_closed());
    assert!(matches!(
        bus.publish(None, progress("late")),
        Err(EventsError::Closed { .. })
    ));
    assert_eq!(collect(&mut sub, 20).await, seqs(1..=20));
    assert!(sub.recv().await.unwrap().is_none());
    assert!(sub.is_finished());
    // A subscription made after closing still replays.
    let mut late = bus.subscribe_from(1);
    assert_eq!(collect(&mut late, 20).await, seqs(1..=20));
    assert!(late.recv().await.unwrap().is_none());
}

#[tokio::test]
async fn dropping_the_last_handle_closes_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let bus = EventBus::open(run_id(), &path, &BusOptions::default()).unwrap();
    let mut sub = bus.subscribe();
    let clone = bus.clone();
    bus.publish(None, progress("x")).unwrap();
    drop(bus);
    clone.publish(None, progress("y")).unwrap();
    drop(clone);
    assert_eq!(read_journal(&path).unwrap().len(), 2);
    assert_eq!(collect(&mut sub, 2).await, [1, 2]);
    assert!(sub.recv().await.unwrap().is_none());
}

#[test]
fn reopening_continues_the_seq_and_folds_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    {
        let bus = EventBus::open(run_id(), &path, &BusOptions::default()).unwrap();
        bus.publish(
            Some(task("a")),
            EventKind::TaskQueued {
                after: vec![],
                estimate_ms: None,
            },
        )
        .unwrap();
        bus.publish(Some(task("a")), finished(TaskStatus::Succeeded))
            .unwrap();
        bus.publish(
            Some(task("b")),
            EventKind::TaskQueued {
                after: vec![task("a")],
                estimate_ms: None,
            },
        )
        .unwrap();
    }
    let mut state = RunState::new();
    let bus = EventBus::open_with(run_id(), &path, &BusOptions::default(), |e| {
        state.apply(e);
    })
    .unwrap();
    assert_eq!(state.task("a").unwrap().status, TaskPhase::Succeeded);
    assert_eq!(state.task("b").unwrap().status, TaskPhase::Queued);
    assert_eq!(
        bus.publish(Some(task("b")), progress("resumed")).unwrap(),
        4
    );
    bus.close().unwrap();
    assert_eq!(read_journal(&path).unwrap().len(), 4);

    let err = EventBus::open("other".parse().unwrap(), &path, &BusOptions::default()).unwrap_err();
    assert!(matches!(err, EventsError::RunMismatch { .. }), "{err}");
}

#[test]
fn try_recv_reads_without_a_runtime() {
    let bus = EventBus::in_memory(run_id(), &small());
    let mut sub = bus.subscribe();
    assert!(sub.try_recv().unwrap().is_none());
    for _ in 0..30 {
        bus.publish(None, progress("x")).unwrap();
    }
    let mut got = Vec::new();
    while let Some(event) = sub.try_recv().unwrap() {
        got.push(event.seq);
    }
    assert_eq!(got, seqs(1..=30));
    let events = bus.events(10, 12).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [10, 11, 12]
    );
}

#[test]
fn sinks_are_object_safe_and_interchangeable() {
    fn produce(sink: &dyn EventSink) {
        sink.publish_run(EventKind::GateStarted {
            command: "make".into(),
        })
        .unwrap();
        sink.publish_task(&task("a"), progress("x")).unwrap();
    }
    let vec_sink = Arc::new(VecSink::new(run_id()));
    let sinks: Vec<Arc<dyn EventSink>> = vec![
        vec_sink.clone(),
        Arc::new(EventBus::in_memory(run_id(), &BusOptions::default())),
    ];
    for sink in &sinks {
        produce(sink.as_ref());
    }
    assert_eq!(vec_sink.types(), ["gate_started", "task_progress"]);
    let events = vec_sink.events();
    assert_eq!(events[1].seq, 2);
    assert_eq!(events[1].task, Some(task("a")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any interleaving of publish bursts and reads, with tiny buffers, delivers 1..=n exactly.
    #[test]
    fn subscribers_never_see_gaps_or_duplicates(
        steps in prop::collection::vec((0usize..40, 0usize..40), 1..12),
        tail in 1usize..10,
        extra_retain in 0usize..20,
        journaled in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let options = BusOptions { tail, retain: tail + extra_retain, ..BusOptions::default() };
            let bus = if journaled {
                EventBus::open(run_id(), dir.path().join("events.jsonl"), &options).unwrap()
            } else {
                EventBus::in_memory(run_id(), &options)
            };
            let mut sub = bus.subscribe();
            let mut got = Vec::new();
            let mut published = 0usize;
            for (burst, reads) in steps {
                for _ in 0..burst {
                    bus.publish(None, progress("x")).unwrap();
                }
                published += burst;
                for _ in 0..reads.min(published - got.len()) {
                    got.push(sub.recv().await.unwrap().unwrap().seq);
                }
            }
            bus.close().unwrap();
            while let Some(event) = sub.recv().await.unwrap() {
                got.push(event.seq);
            }
            prop_assert_eq!(got, (1..=published as u64).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn events_a_slow_subscriber_still_needs_are_kept_in_memory_up_to_the_retain_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let options = BusOptions {
        tail: 8,
        retain: 1000,
        ..BusOptions::default()
    };
    let bus = EventBus::open(run_id(), &path, &options).unwrap();
    let mut slow = bus.subscribe();
    for _ in 0..500 {
        bus.publish(None, progress("x")).unwrap();
    }
    // Without the journal file, the 500 unread events can only come from memory.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(collect(&mut slow, 500).await, seqs(1..=500));

    // Past the retain limit the journal is the only source: gone, so the catch-up fails
    // loudly instead of skipping events.
    let bus = EventBus::open(run_id(), dir.path().join("again.jsonl"), &small()).unwrap();
    let mut slow = bus.subscribe();
    for _ in 0..100 {
        bus.publish(None, progress("x")).unwrap();
    }
    bus.flush().unwrap();
    std::fs::remove_file(dir.path().join("again.jsonl")).unwrap();
    let err = slow.recv().await.unwrap_err();
    assert!(matches!(err, EventsError::Io { .. }), "{err}");
    // A dropped subscriber no longer holds events back.
    drop(slow);
    for _ in 0..100 {
        bus.publish(None, progress("y")).unwrap();
    }
    assert_eq!(bus.events(193, 200).unwrap().len(), 8);
}

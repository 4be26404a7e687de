//! The journal: durability policy, torn tails, corruption, replay, follow.

use std::fs;
use std::io::Write;
use std::time::Duration;

use forge_events::{
    Event, EventKind, EventsError, Journal, TaskStatus, follow, read_journal, replay,
};

use super::common::{finished, progress, run_id, task};

fn ev(seq: u64, kind: EventKind) -> Event {
    Event::new(run_id(), seq, Some(task("a")), kind)
}

/// A journal with `n` events, alternating progress and transitions.
fn write_journal(path: &std::path::Path, n: u64) -> Vec<Event> {
    let mut journal = Journal::open(path).unwrap();
    let events: Vec<Event> = (1..=n)
        .map(|seq| {
            if seq % 2 == 0 {
                ev(seq, finished(TaskStatus::Succeeded))
            } else {
                ev(seq, progress(format!("step {seq} ünïcödé")))
            }
        })
        .collect();
    for event in &events {
        journal.append(event).unwrap();
    }
    journal.sync().unwrap();
    events
}

#[test]
fn transitions_are_on_disk_when_append_returns_and_progress_is_batched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/r/events.jsonl");
    let mut journal = Journal::open(&path).unwrap();
    assert!(path.exists(), "created with its parent directories");
    journal.append(&ev(1, progress("working"))).unwrap();
    journal.append(&ev(2, progress("still working"))).unwrap();
    assert_eq!(
        fs::read(&path).unwrap().len(),
        0,
        "progress waits in the batch"
    );
    assert!(journal.pending_since().is_some());
    journal
        .append(&ev(3, finished(TaskStatus::Succeeded)))
        .unwrap();
    assert_eq!(journal.synced_seq(), 3);
    // Another reader sees all three without any flush by the writer.
    let seqs: Vec<u64> = read_journal(&path).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(journal.pending_since().is_none());
}

#[test]
fn a_batch_older_than_the_window_is_written_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut journal = Journal::open(&path).unwrap();
    journal.set_batch_window(Duration::from_millis(1));
    journal.append(&ev(1, progress("a"))).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    journal.append(&ev(2, progress("b"))).unwrap();
    assert_eq!(read_journal(&path).unwrap().len(), 2);
}

#[test]
fn appends_must_follow_in_seq_order_and_stay_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut journal = Journal::open(&path).unwrap();
    journal.append(&ev(5, progress("a"))).unwrap();
    let err = journal.append(&ev(5, progress("again"))).unwrap_err();
    assert!(
        matches!(
            err,
            EventsError::OutOfOrder {
                seq: 5,
                last_seq: 5,
                ..
            }
        ),
        "{err}"
    );
    let mut other = ev(6, progress("b"));
    other.run = "other-run".parse().unwrap();
    let err = journal.append(&other).unwrap_err();
    assert!(matches!(err, EventsError::RunMismatch { .. }), "{err}");
    journal.append(&ev(6, progress("c"))).unwrap();
    journal.sync().unwrap();
    assert_eq!(read_journal(&path).unwrap().len(), 2);
}

#[test]
fn cutting_the_last_record_at_every_byte_recovers_every_complete_event() {
    let dir = tempfile::tempdir().unwrap();
    let whole_path = dir.path().join("whole.jsonl");
    let events = write_journal(&whole_path, 4);
    let bytes = fs::read(&whole_path).unwrap();
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    for cut in last_start..=bytes.len() {
        let path = dir.path().join(format!("cut-{cut}.jsonl"));
        fs::write(&path, &bytes[..cut]).unwrap();
        let complete = if cut == bytes.len() { 4 } else { 3 };

        // Readers ignore the torn line.
        assert_eq!(
            read_journal(&path).unwrap(),
            events[..complete],
            "cut at {cut}"
        );

        // Reopening for append cuts it off and hands over every complete event.
        let mut seen = Vec::new();
        let mut journal = Journal::open_with(&path, |e| seen.push(e.clone())).unwrap();
        assert_eq!(seen, events[..complete], "cut at {cut}");
        assert_eq!(journal.last_seq(), complete as u64);
        let torn = if cut == bytes.len() {
            0
        } else {
            cut - last_start
        };
        assert_eq!(journal.recovered_torn_bytes(), torn as u64);
        assert_eq!(journal.run(), Some(&run_id()));

        // And appends cleanly after.
        let next = ev(complete as u64 + 1, finished(TaskStatus::Failed));
        journal.append(&next).unwrap();
        drop(journal);
        let mut expected = events[..complete].to_vec();
        expected.push(next);
        assert_eq!(read_journal(&path).unwrap(), expected, "cut at {cut}");
    }
}

#[test]
fn corruption_in_the_middle_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_journal(&path, 5);
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();

    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Not JSON.
        (
            {
                lines[2] = "{\"v\":1,\"seq\":3,garbage".to_owned();
                lines.join("\n").into_bytes()
            },
            "column",
        ),
        // Seq going backwards.
        (
            {
                let mut l = text.lines().map(str::to_owned).collect::<Vec<_>>();
                l[2] = l[0].clone();
                l.join("\n").into_bytes()
            },
            "does not follow",
        ),
        // Not UTF-8.
        (
            {
                let mut b = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    if i == 2 {
                        b.extend_from_slice(b"\xff\xfe\n");
                    } else {
                        b.extend_from_slice(line.as_bytes());
                        b.push(b'\n');
                    }
                }
                b
            },
            "UTF-8",
        ),
        // Another run's event.
        (
            {
                let mut l = text.lines().map(str::to_owned).collect::<Vec<_>>();
                l[2] = l[2].replace("\"run-1\"", "\"run-2\"");
                (l.join("\n") + "\n").into_bytes()
            },
            "run-2",
        ),
    ];
    for (bytes, needle) in cases {
        let path = dir.path().join("bad.jsonl");
        fs::write(&path, &bytes).unwrap();
        let err = Journal::open(&path).unwrap_err();
        match &err {
            EventsError::Corrupt {
                line,
                reason,
                path: p,
            } => {
                assert_eq!(*line, 3, "{err}");
                assert!(
                    reason.contains(needle) || err.to_string().contains(needle),
                    "{err}"
                );
                assert_eq!(p, &path);
            }
            other => panic!("expected Corrupt, got {other}"),
        }
        // The file is left alone (nothing truncated).
        assert_eq!(fs::read(&path).unwrap(), bytes);
        // Replay gives what precedes the damage, then the error.
        let results: Vec<_> = replay(&path, 0).unwrap().collect();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(matches!(
            results[2],
            Err(EventsError::Corrupt { line: 3, .. })
        ));
    }
}

#[test]
fn blank_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_journal(&path, 2);
    let text = fs::read_to_string(&path).unwrap().replace('\n', "\n\n");
    fs::write(&path, text).unwrap();
    assert_eq!(read_journal(&path).unwrap().len(), 2);
}

#[test]
fn replay_starts_at_any_seq_of_a_long_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let events = write_journal(&path, 1500);
    for from in [0, 1, 2, 255, 256, 257, 1000, 1500, 1501, 9999] {
        let got: Vec<u64> = replay(&path, from)
            .unwrap()
            .map(|e| e.unwrap().seq)
            .collect();
        let want: Vec<u64> = events
            .iter()
            .map(|e| e.seq)
            .filter(|&s| s >= from)
            .collect();
        assert_eq!(got, want, "from {from}");
    }
}

#[test]
fn missing_journal_is_an_error_naming_it() {
    let err = replay("/nonexistent/forge/events.jsonl", 0).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/forge/events.jsonl"),
        "{err}"
    );
}

#[tokio::test]
async fn follow_sees_appends_including_lines_written_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_journal(&path, 3);
    let mut follower = follow(&path, 2)
        .unwrap()
        .poll_interval(Duration::from_millis(5));
    assert_eq!(follower.next().await.unwrap().seq, 2);
    assert_eq!(follower.next().await.unwrap().seq, 3);
    assert!(follower.try_next().unwrap().is_none());

    let writer_path = path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&writer_path)
            .unwrap();
        for seq in 4..=20u64 {
            let line = ev(seq, progress(format!("piece {seq}"))).to_json() + "\n";
            let (a, b) = line.as_bytes().split_at(line.len() / 2);
            file.write_all(a).unwrap();
            file.flush().unwrap();
            std::thread::sleep(Duration::from_millis(2));
            file.write_all(b).unwrap();
        }
    });
    for seq in 4..=20u64 {
        let event = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .expect("follow delivers appended events")
            .unwrap();
        assert_eq!(event.seq, seq);
    }
    writer.await.unwrap();
    assert_eq!(follower.last_seq(), 20);
    assert!(follower.drain().unwrap().is_empty());
}

#[test]
fn a_journal_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let first = Journal::open(&path).unwrap();
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, EventsError::Locked { .. }), "{err}");
    // Readers are not blocked.
    assert!(read_journal(&path).unwrap().is_empty());
    drop(first);
    Journal::open(&path).unwrap();
}

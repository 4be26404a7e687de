//! `bench-events`: forge-events' bus, journal and SSE server side by side with peers.
//!
//! `cargo run --release -p forge-benches --bin bench-events -- [--quick]`
//! Rows: `publish_throughput`, `journal_append`, `journal_fsync_transitions`,
//! `sse_fanout_100x1000`, `sse_fanout_1000x100`, `sse_fanout_1000x1000`,
//! `sse_idle_client_memory` (see `benches/README.md`). `--only <id prefix>` runs a subset.
//!
//! Peers, measured in the same run (A B A B …): a raw `tokio::sync::broadcast` of the same
//! `Arc<Event>` payload; a naive `BufWriter` JSONL writer and a write+fdatasync per line; a plain
//! axum SSE loop (`axum::response::Sse` over a broadcast, one event per frame, serialized per
//! client). SSE clients are raw HTTP/1.1 connections on loopback in this process, reading the
//! chunked stream and timing each event from just before `publish` to its `id:` line.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)] // a bench binary
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // counts, nanoseconds and percentages as figures

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use forge_benches::{Better, Report, Row, current_rss_bytes, median, quick_from_args};
use forge_events::http::{ServeOptions, Server};
use forge_events::{BusOptions, Event, EventBus, EventKind, Journal, RunId, TaskId, TaskStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

const REPS: usize = 5;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run_id() -> RunId {
    "bench".parse().unwrap()
}

fn task_id() -> TaskId {
    "task-1".parse().unwrap()
}

/// The payload every row publishes: a typical progress report.
fn progress(i: u64) -> EventKind {
    EventKind::TaskProgress {
        message: format!("editing src/module_{i}.rs: applying the requested change"),
        tool: Some("edit".to_owned()),
        files: Vec::new(),
    }
}

fn transition() -> EventKind {
    EventKind::TaskFinished {
        status: TaskStatus::Succeeded,
        exit_code: Some(0),
        duration_ms: 1234,
        files_changed: forge_events::RepoPath::new("src/lib.rs")
            .into_iter()
            .collect(),
        reason: None,
    }
}

// ---------------------------------------------------------------------------------------------
// publish_throughput

/// Events/s through a journaled `EventBus` to 4 subscribers, until each has every event.
fn bus_throughput(rt: &tokio::runtime::Runtime, n: u64, journaled: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let bus = if journaled {
        EventBus::open(
            run_id(),
            dir.path().join("events.jsonl"),
            &BusOptions::default(),
        )
        .unwrap()
    } else {
        EventBus::in_memory(run_id(), &BusOptions::default())
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut sub = bus.subscribe();
            rt.spawn(async move {
                let mut count = 0u64;
                while let Some(event) = sub.recv().await.unwrap() {
                    count += 1;
                    if event.seq == n {
                        break;
                    }
                }
                (count, Instant::now())
            })
        })
        .collect();
    let start = Instant::now();
    let producer = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            let task = task_id();
            for i in 0..n {
                bus.publish(Some(task.clone()), progress(i)).unwrap();
            }
        })
    };
    producer.join().unwrap();
    let mut end = start;
    for reader in readers {
        let (count, done) = rt.block_on(reader).unwrap();
        assert_eq!(count, n, "a subscriber lost events");
        end = end.max(done);
    }
    bus.close().unwrap();
    n as f64 / (end - start).as_secs_f64()
}

/// The peer: a raw broadcast of the same `Arc<Event>`s to 4 receivers, buffering as many
/// events as the bus keeps in memory for laggards (`BusOptions::retain`). A receiver that lags
/// further skips what was overwritten — that is what a raw broadcast does — so the peer's figure
/// counts the events that reached its receivers (per receiver, per second); returns that, the
/// delivered share in percent, and the raw publish rate.
fn broadcast_throughput(rt: &tokio::runtime::Runtime, n: u64) -> (f64, f64, f64) {
    let (tx, _) = broadcast::channel::<Arc<Event>>(BusOptions::default().retain);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut rx = tx.subscribe();
            rt.spawn(async move {
                let mut count = 0u64;
                loop {
                    match rx.recv().await {
                        Ok(event) => {
                            count += 1;
                            if event.seq == n {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
                (count, Instant::now())
            })
        })
        .collect();
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        let (run, task) = (run_id(), task_id());
        for i in 0..n {
            let event = Event::new(run.clone(), i + 1, Some(task.clone()), progress(i));
            let _ = tx.send(Arc::new(event));
        }
    });
    producer.join().unwrap();
    let mut end = start;
    let mut delivered = 0;
    for reader in readers {
        let (count, done) = rt.block_on(reader).unwrap();
        delivered += count;
        end = end.max(done);
    }
    let secs = (end - start).as_secs_f64();
    let delivered_per_receiver = delivered as f64 / 4.0;
    (
        delivered_per_receiver / secs,
        delivered_per_receiver / n as f64 * 100.0,
        n as f64 / secs,
    )
}

fn publish_throughput(report: &mut Report, quick: bool) {
    let rt = runtime();
    let n = if quick { 100_000 } else { 500_000 };
    let (mut ours, mut memory) = (vec![], vec![]);
    let (mut peer, mut peer_pct, mut peer_published) = (vec![], vec![], vec![]);
    for _ in 0..REPS {
        ours.push(bus_throughput(&rt, n, true));
        let (rate, pct, published) = broadcast_throughput(&rt, n);
        peer.push(rate);
        peer_pct.push(pct);
        peer_published.push(published);
        memory.push(bus_throughput(&rt, n, false));
    }
    report.push(
        Row::new(
            "publish_throughput",
            median(&ours),
            "events/s",
            Better::Higher,
            REPS,
        )
        .peer("tokio-broadcast", median(&peer))
        .goal("ratio >= 0.8")
        .extra("events", n)
        .extra("subscribers", 4)
        .extra("journaled", true)
        .extra("in_memory_bus_events_per_s", median(&memory).round())
        .extra("peer_delivered_pct", median(&peer_pct))
        .extra("peer_published_per_s", median(&peer_published).round()),
    );
}

// ---------------------------------------------------------------------------------------------
// journal_append, journal_fsync_transitions

/// Events/s appended through `Journal::append` (the batching policy: transitions fsynced at
/// once, the rest written in batches), then synced.
fn journal_append_rate(n: u64, kind: fn(u64) -> EventKind) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path().join("events.jsonl")).unwrap();
    let start = Instant::now();
    let (run, task) = (run_id(), task_id());
    for i in 0..n {
        let event = Event::new(run.clone(), i + 1, Some(task.clone()), kind(i));
        journal.append(&event).unwrap();
    }
    journal.sync().unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// Events/s published through a journaled bus by `publishers` threads, until closed (all
/// written and fsynced).
fn bus_append(n: u64, kind: fn(u64) -> EventKind, publishers: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::open(
        run_id(),
        dir.path().join("events.jsonl"),
        &BusOptions::default(),
    )
    .unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..publishers)
        .map(|_| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                let task = task_id();
                for i in 0..n / publishers {
                    bus.publish(Some(task.clone()), kind(i)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    bus.close().unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// The naive peer: one buffered JSONL stream, fdatasync per line (`sync_each`) or at the end.
fn naive_append(n: u64, kind: fn(u64) -> EventKind, sync_each: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("events.jsonl")).unwrap();
    let start = Instant::now();
    let (run, task) = (run_id(), task_id());
    if sync_each {
        let mut file = file;
        for i in 0..n {
            let event = Event::new(run.clone(), i + 1, Some(task.clone()), kind(i));
            let mut line = serde_json::to_vec(&event).unwrap();
            line.push(b'\n');
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
        }
    } else {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
        for i in 0..n {
            let event = Event::new(run.clone(), i + 1, Some(task.clone()), kind(i));
            serde_json::to_writer(&mut out, &event).unwrap();
            out.write_all(b"\n").unwrap();
        }
        out.into_inner().unwrap().sync_data().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn journal(report: &mut Report, quick: bool) {
    let n = if quick { 100_000 } else { 500_000 };
    let (mut ours, mut peer, mut bus) = (vec![], vec![], vec![]);
    for _ in 0..REPS {
        ours.push(journal_append_rate(n, progress));
        peer.push(naive_append(n, progress, false));
        bus.push(bus_append(n, progress, 1));
    }
    report.push(
        Row::new(
            "journal_append",
            median(&ours),
            "events/s",
            Better::Higher,
            REPS,
        )
        .peer("bufwriter-jsonl", median(&peer))
        .extra("events", n)
        .extra(
            "policy",
            "batched: one write per 50 ms or 256 KiB, fsync at the end",
        )
        .extra("through_bus_events_per_s", median(&bus).round()),
    );

    let n = if quick { 200 } else { 1000 };
    let (mut ours, mut peer, mut grouped) = (vec![], vec![], vec![]);
    for _ in 0..REPS {
        ours.push(journal_append_rate(n, |_| transition()));
        peer.push(naive_append(n, |_| transition(), true));
        grouped.push(bus_append(n, |_| transition(), 4));
    }
    report.push(
        Row::new(
            "journal_fsync_transitions",
            median(&ours),
            "transitions/s",
            Better::Higher,
            REPS,
        )
        .peer("write+fdatasync", median(&peer))
        .extra("transitions", n)
        .extra("bus_four_publishers_per_s", median(&grouped).round()),
    );
}

// ---------------------------------------------------------------------------------------------
// SSE

/// Publish times by seq (ns since `base`), shared with the clients.
struct Clock {
    base: Instant,
    sent: Vec<AtomicU64>,
}

impl Clock {
    fn new(n: u64) -> Self {
        Self {
            base: Instant::now(),
            sent: (0..=n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// Decodes `Transfer-Encoding: chunked` and splits the SSE stream into lines, without copying
/// more than partial lines (the clients share the CPU with the server, so they must be cheap).
#[derive(Default)]
struct StreamDecoder {
    /// A chunk-size line read in part.
    size_line: Vec<u8>,
    /// Bytes left in the current chunk; `None` while reading a size line.
    left: Option<usize>,
    /// CRLF bytes to skip after a chunk.
    skip: usize,
    /// An SSE line read in part.
    line: Vec<u8>,
}

impl StreamDecoder {
    /// Feeds received bytes; calls `on_id` with the seq of every `id:` line.
    fn feed(&mut self, bytes: &[u8], mut on_id: impl FnMut(u64)) {
        let mut p = 0;
        while p < bytes.len() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() - p);
                p += n;
                self.skip -= n;
                continue;
            }
            match self.left {
                None => match bytes[p..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.size_line.extend_from_slice(&bytes[p..p + i]);
                        let text = std::str::from_utf8(&self.size_line).unwrap();
                        let hex = text.split(';').next().unwrap().trim();
                        self.left = Some(usize::from_str_radix(hex, 16).unwrap());
                        self.size_line.clear();
                        p += i + 1;
                    }
                    None => {
                        self.size_line.extend_from_slice(&bytes[p..]);
                        p = bytes.len();
                    }
                },
                Some(left) => {
                    let n = left.min(bytes.len() - p);
                    self.lines(&bytes[p..p + n], &mut on_id);
                    p += n;
                    if n == left {
                        self.left = None;
                        self.skip = 2;
                    } else {
                        self.left = Some(left - n);
                    }
                }
            }
        }
    }

    fn lines(&mut self, mut data: &[u8], on_id: &mut impl FnMut(u64)) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                Self::line(&data[..i], on_id);
            } else {
                self.line.extend_from_slice(&data[..i]);
                Self::line(&self.line, on_id);
                self.line.clear();
            }
            data = &data[i + 1..];
        }
        self.line.extend_from_slice(data);
    }

    fn line(line: &[u8], on_id: &mut impl FnMut(u64)) {
        if let Some(id) = line.strip_prefix(b"id: ") {
            on_id(std::str::from_utf8(id).unwrap().parse().unwrap());
        }
    }
}

/// Connects, sends the request and reads the response head; returns the stream and any body
/// bytes read with the head.
async fn open_stream(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            return (stream, head.split_off(end + 4));
        }
    }
}

/// One client: reads until it has seen `last`, timing every event.
async fn sse_client(
    addr: SocketAddr,
    path: String,
    clock: Arc<Clock>,
    last: u64,
    ready: Arc<AtomicUsize>,
    deadline: Arc<AtomicU64>,
) -> Vec<u32> {
    let (mut stream, rest) = open_stream(addr, &path).await;
    ready.fetch_add(1, Ordering::SeqCst);
    let mut decoder = StreamDecoder::default();
    let mut latencies = Vec::with_capacity(usize::try_from(last).unwrap());
    let mut seen = 0;
    let record = |seq: u64, now: u64, latencies: &mut Vec<u32>| {
        let sent = clock.sent[usize::try_from(seq).unwrap()].load(Ordering::Acquire);
        latencies.push((now.saturating_sub(sent) / 1000) as u32);
        seq
    };
    let now = clock.now();
    decoder.feed(&rest, |seq| {
        seen = seen.max(record(seq, now, &mut latencies));
    });
    let mut buf = vec![0u8; 16 * 1024];
    while seen < last {
        let timeout = Duration::from_nanos(
            deadline
                .load(Ordering::Relaxed)
                .saturating_sub(clock.now())
                .max(1_000_000),
        );
        match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let now = clock.now();
                decoder.feed(&buf[..n], |seq| {
                    seen = seen.max(record(seq, now, &mut latencies));
                });
            }
            _ => break,
        }
    }
    latencies
}

/// What one fan-out run measured.
struct Fanout {
    delivered_pct: f64,
    deliveries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The plain axum SSE loop: every client subscribes to a broadcast and formats each event
/// itself, one SSE event per frame.
fn peer_app(tx: broadcast::Sender<Arc<Event>>) -> axum::Router {
    axum::Router::new().route(
        "/events",
        axum::routing::get(move || {
            let rx = tx.subscribe();
            async move {
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    loop {
                        match rx.recv().await {
                            Ok(event) => {
                                let sse = SseEvent::default()
                                    .id(event.seq.to_string())
                                    .event(event.type_name())
                                    .data(event.to_json());
                                return Some((Ok::<_, Infallible>(sse), rx));
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                });
                Sse::new(stream).keep_alive(KeepAlive::default())
            }
        }),
    )
}

async fn serve_peer(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// `clients` clients of one run while `rate` events/s are published for `secs` seconds.
fn fanout(clients: usize, rate: u64, secs: u64, peer: bool) -> Fanout {
    let rt = runtime();
    let n = rate * secs;
    let clock = Arc::new(Clock::new(n));
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let bus = EventBus::open(
        run_id(),
        runs.join("bench/events.jsonl"),
        &BusOptions::default(),
    )
    .unwrap();
    let (tx, _) = broadcast::channel::<Arc<Event>>(1024);
    let (addr, server) = rt.block_on(async {
        if peer {
            let (addr, task) = serve_peer(peer_app(tx.clone())).await;
            (addr, Err(task))
        } else {
            let opts = ServeOptions::default().attach(bus.clone());
            let server = Server::start("127.0.0.1:0".parse().unwrap(), runs.clone(), opts)
                .await
                .unwrap();
            (server.local_addr(), Ok(server))
        }
    });
    let path = if peer {
        "/events"
    } else {
        "/api/runs/bench/events"
    }
    .to_owned();
    let ready = Arc::new(AtomicUsize::new(0));
    // Clients stop waiting 20 s after the last publish is due.
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            rt.spawn(sse_client(
                addr,
                path.clone(),
                Arc::clone(&clock),
                n,
                Arc::clone(&ready),
                Arc::clone(&deadline),
            ))
        })
        .collect();
    let wait_start = Instant::now();
    while ready.load(Ordering::SeqCst) < clients {
        assert!(
            wait_start.elapsed() < Duration::from_mins(1),
            "clients failed to connect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));

    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    deadline.store(
        clock.now() + Duration::from_secs(secs + 20).as_nanos() as u64,
        Ordering::Relaxed,
    );
    let publisher = {
        let (clock, bus, tx) = (Arc::clone(&clock), bus.clone(), tx.clone());
        std::thread::spawn(move || {
            let (run, task) = (run_id(), task_id());
            for i in 0..n {
                let due = start + interval * u32::try_from(i).unwrap();
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let seq = i + 1;
                clock.sent[seq as usize].store(clock.now(), Ordering::Release);
                if peer {
                    let event = Event::new(run.clone(), seq, Some(task.clone()), progress(i));
                    let _ = tx.send(Arc::new(event));
                } else {
                    assert_eq!(bus.publish(Some(task.clone()), progress(i)).unwrap(), seq);
                }
            }
        })
    };
    publisher.join().unwrap();
    let publish_secs = start.elapsed().as_secs_f64();
    let mut latencies: Vec<u32> = Vec::with_capacity(clients * n as usize);
    for task in tasks {
        latencies.extend(rt.block_on(task).unwrap());
    }
    match server {
        Ok(server) => server.shutdown(),
        Err(task) => task.abort(),
    }
    bus.close().unwrap();
    drop(rt);
    let delivered = latencies.len();
    latencies.sort_unstable();
    Fanout {
        delivered_pct: delivered as f64 / (clients as f64 * n as f64) * 100.0,
        deliveries_per_s: delivered as f64 / publish_secs,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    }
}

fn sse_fanout(report: &mut Report, quick: bool, clients: usize, rate: u64, goal_ms: f64) {
    let secs = if quick { 2 } else { 5 };
    let reps = if quick { 1 } else { 3 };
    let (mut ours, mut peers) = (vec![], vec![]);
    // A warm-up pair (not counted): the first run of a process pays for page faults and
    // thread start-up. Then A B, B A, … so neither side always goes first.
    fanout(clients.min(100), rate, 1, false);
    fanout(clients.min(100), rate, 1, true);
    for rep in 0..reps {
        if rep % 2 == 0 {
            ours.push(fanout(clients, rate, secs, false));
            peers.push(fanout(clients, rate, secs, true));
        } else {
            peers.push(fanout(clients, rate, secs, true));
            ours.push(fanout(clients, rate, secs, false));
        }
    }
    let med =
        |runs: &[Fanout], f: fn(&Fanout) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let id = format!("sse_fanout_{clients}x{rate}");
    let p99 = med(&ours, |f| f.p99_ms);
    report.push(
        Row::new(&id, p99, "ms p99", Better::Lower, reps)
            .peer("axum-sse-loop", med(&peers, |f| f.p99_ms))
            .goal(&format!("p99 < {goal_ms} ms, 100 % delivered"))
            .extra("clients", clients)
            .extra("events_per_s", rate)
            .extra("seconds", secs)
            .extra(
                "deliveries_per_s",
                med(&ours, |f| f.deliveries_per_s).round(),
            )
            .extra("delivered_pct", med(&ours, |f| f.delivered_pct))
            .extra("p50_ms", med(&ours, |f| f.p50_ms))
            .extra("p99_ms", p99)
            .extra("peer_delivered_pct", med(&peers, |f| f.delivered_pct))
            .extra("peer_p50_ms", med(&peers, |f| f.p50_ms)),
    );
}

/// The server half of `sse_idle_client_memory`, run in a child process (`--serve-idle ours` or
/// `--serve-idle peer`) so its RSS holds nothing but the server: prints its port, then answers
/// each line on stdin with its current RSS in bytes.
fn serve_idle(kind: &str) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let bus = EventBus::open(
        run_id(),
        runs.join("bench/events.jsonl"),
        &BusOptions::default(),
    )
    .unwrap();
    bus.publish(None, progress(0)).unwrap();
    let (tx, _) = broadcast::channel::<Arc<Event>>(1024);
    let (addr, _guard) = rt.block_on(async {
        if kind == "peer" {
            let (addr, task) = serve_peer(peer_app(tx.clone())).await;
            (addr, Err(task))
        } else {
            let opts = ServeOptions::default().attach(bus.clone());
            let server = Server::start("127.0.0.1:0".parse().unwrap(), runs.clone(), opts)
                .await
                .unwrap();
            (server.local_addr(), Ok(server))
        }
    });
    println!("{}", addr.port());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).unwrap() > 0 {
        println!("{}", current_rss_bytes().unwrap());
        std::io::stdout().flush().unwrap();
        line.clear();
    }
}

/// RSS per idle connected SSE client of a server in a child process (see [`serve_idle`]):
/// connect 50 clients and drop them (warm-up), read the RSS, connect `clients` clients that
/// stay idle, read the RSS again.
fn idle_memory(clients: usize, kind: &str) -> f64 {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--serve-idle", kind])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ask = |line: &mut String| {
        line.clear();
        stdout.read_line(line).unwrap();
        line.trim().parse::<u64>().unwrap()
    };
    let mut line = String::new();
    let port = ask(&mut line);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let path = if kind == "peer" {
        "/events"
    } else {
        "/api/runs/bench/events?from=2"
    };
    let rt = runtime();
    let per_client = rt.block_on(async {
        let warm: Vec<_> =
            futures::future::join_all((0..50).map(|_| open_stream(addr, path))).await;
        drop(warm);
        tokio::time::sleep(Duration::from_millis(300)).await;
        writeln!(stdin, "rss").unwrap();
        let before = ask(&mut line);
        let mut held = Vec::with_capacity(clients);
        for chunk in 0..clients.div_ceil(100) {
            let batch = (clients - chunk * 100).min(100);
            let streams =
                futures::future::join_all((0..batch).map(|_| open_stream(addr, path))).await;
            held.extend(streams.into_iter().map(|(stream, _)| stream));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        writeln!(stdin, "rss").unwrap();
        let after = ask(&mut line);
        drop(held);
        after.saturating_sub(before) as f64 / clients as f64
    });
    drop(stdin);
    child.wait().unwrap();
    per_client
}

fn sse_memory(report: &mut Report, quick: bool) {
    let clients = if quick { 1000 } else { 5000 };
    let reps = if quick { 1 } else { 3 };
    let (mut ours, mut peer) = (vec![], vec![]);
    for _ in 0..reps {
        ours.push(idle_memory(clients, "ours"));
        peer.push(idle_memory(clients, "peer"));
    }
    report.push(
        Row::new(
            "sse_idle_client_memory",
            median(&ours),
            "bytes",
            Better::Lower,
            reps,
        )
        .peer("axum-sse-loop", median(&peer))
        .goal("< 16384")
        .extra("clients", clients)
        .extra("measured", "server process RSS, clients in another process"),
    );
}

fn main() {
    let quick = quick_from_args();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-idle") {
        serve_idle(&args[i + 1]);
        return;
    }
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |id: &str| only.as_deref().is_none_or(|o| id.starts_with(o));
    let mut report = Report::new("events", quick);
    // Memory first, before other rows raise the heap.
    if run("sse_idle_client_memory") {
        sse_memory(&mut report, quick);
    }
    if run("publish_throughput") {
        publish_throughput(&mut report, quick);
    }
    if run("journal") {
        journal(&mut report, quick);
    }
    for (clients, rate, goal) in [(100, 1000, 10.0), (1000, 100, 25.0), (1000, 1000, 100.0)] {
        if run(&format!("sse_fanout_{clients}x{rate}")) {
            sse_fanout(&mut report, quick, clients, rate, goal);
        }
    }
    println!();
    print!("{}", report.table());
    let path = report.write().unwrap();
    println!("wrote {}", path.display());
}

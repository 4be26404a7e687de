//! The SSE server through a real HTTP client on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use forge_events::http::{ServeOptions, Server};
use forge_events::{
    BusOptions, Event, EventBus, EventKind, EventsError, RunState, TaskStatus, read_journal,
};
use futures::{Stream, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::common::{finished, progress, run_id, task};

/// One message of an event stream.
#[derive(Debug, Default, Clone)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// A minimal SSE reader over a real response body.
struct Sse {
    body: ByteStream,
    buf: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl Sse {
    async fn connect(url: &str, last_event_id: Option<&str>) -> Self {
        let client = reqwest::Client::new();
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let headers = response.headers().clone();
        Self {
            body: Box::pin(response.bytes_stream()),
            buf: Vec::new(),
            headers,
        }
    }

    async fn message(&mut self) -> Message {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut message = Message::default();
                for line in text.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        message.comments.push(comment.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(": ") {
                        match field {
                            "id" => message.id = Some(value.to_owned()),
                            "event" => message.event = Some(value.to_owned()),
                            "data" => message.data = Some(value.to_owned()),
                            "retry" => message.retry = Some(value.parse().unwrap()),
                            other => panic!("unexpected field {other}"),
                        }
                    }
                }
                return message;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("the server sends within 30 s")
                .expect("the stream stays open")
                .unwrap();
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next event (skipping hints and keep-alives), parsed and checked against its frame.
    async fn event(&mut self) -> Event {
        loop {
            let message = self.message().await;
            if let Some(data) = message.data {
                let event = Event::from_json(&data).unwrap();
                assert_eq!(message.id.unwrap(), event.seq.to_string());
                assert_eq!(message.event.unwrap(), event.type_name());
                return event;
            }
        }
    }

    async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.event().await);
        }
        out
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    runs: PathBuf,
    bus: EventBus,
    server: Server,
}

impl Setup {
    /// A run under a temporary runs directory, served either from its attached bus or by
    /// following its journal.
    async fn new(attach: bool, bus_options: &BusOptions, opts: ServeOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join(".forge/runs");
        let bus = EventBus::open(run_id(), runs.join("run-1/events.jsonl"), bus_options).unwrap();
        let opts = ServeOptions {
            poll_interval: Duration::from_millis(5),
            ..opts
        };
        let opts = if attach {
            opts.attach(bus.clone())
        } else {
            opts
        };
        let server = Server::start("127.0.0.1:0".parse().unwrap(), runs.clone(), opts)
            .await
            .unwrap();
        Self {
            _dir: dir,
            runs,
            bus,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    fn events_url(&self) -> String {
        self.url("/api/runs/run-1/events")
    }

    fn publish(&self, n: usize) {
        for i in 0..n {
            let kind = if i % 10 == 9 {
                finished(TaskStatus::Succeeded)
            } else {
                progress(format!("step {i}"))
            };
            self.bus.publish(Some(task("a")), kind).unwrap();
        }
    }
}

async fn live_delivery(attach: bool) {
    let setup = Setup::new(attach, &BusOptions::default(), ServeOptions::default()).await;
    let mut sse = Sse::connect(&setup.events_url(), None).await;
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let hello = sse.message().await;
    assert_eq!(hello.retry, Some(3000));
    let bus = setup.bus.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..60 {
            bus.publish(Some(task("a")), progress(format!("{i}")))
                .unwrap();
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    });
    let got = sse.events(60).await;
    publisher.await.unwrap();
    assert_eq!(seqs(&got), (1..=60).collect::<Vec<_>>());
    // What arrives is exactly what the journal holds.
    setup.bus.flush().unwrap();
    assert_eq!(
        got,
        read_journal(setup.bus.journal_path().unwrap()).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_from_an_attached_bus() {
    live_delivery(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_following_a_journal_written_by_another_writer() {
    live_delivery(false).await;
}

async fn reconnect(attach: bool) {
    let setup = Setup::new(attach, &BusOptions::default(), ServeOptions::default()).await;
    setup.publish(25);
    let mut first = Sse::connect(&setup.events_url(), None).await;
    let got = first.events(20).await;
    assert_eq!(seqs(&got), (1..=20).collect::<Vec<_>>());
    drop(first);
    setup.publish(25);
    // Reconnect as EventSource does: same URL (even with a `from`), plus Last-Event-ID.
    let url = format!("{}?from=3", setup.events_url());
    let mut second = Sse::connect(&url, Some("20")).await;
    let got = second.events(30).await;
    assert_eq!(seqs(&got), (21..=50).collect::<Vec<_>>());
    setup.publish(5);
    assert_eq!(seqs(&second.events(5).await), (51..=55).collect::<Vec<_>>());
    // `from` alone starts at that seq.
    let mut third = Sse::connect(&url, None).await;
    assert_eq!(seqs(&third.events(53).await), (3..=55).collect::<Vec<_>>());
    // A cursor past the end waits for new events.
    let mut fourth = Sse::connect(&setup.events_url(), Some("55")).await;
    setup.publish(1);
    assert_eq!(fourth.event().await.seq, 56);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_event_id_has_no_gaps_and_no_duplicates() {
    reconnect(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_to_a_followed_journal_has_no_gaps_and_no_duplicates() {
    reconnect(false).await;
}

async fn slow_client(attach: bool) {
    // Tiny buffers everywhere, so the client lags behind the broadcast, the ring and the bus.
    let bus_options = BusOptions {
        tail: 32,
        retain: 32,
        ..BusOptions::default()
    };
    let opts = ServeOptions {
        capacity: 8,
        ring: 16,
        ..ServeOptions::default()
    };
    let setup = Setup::new(attach, &bus_options, opts).await;
    let mut sse = Sse::connect(&setup.events_url(), None).await;
    sse.message().await;
    // 8000 events of ~1 KiB each (8 MB): more than loopback socket buffers hold, published
    // while the client reads nothing.
    let filler = "x".repeat(1000);
    let n = 8000;
    for i in 0..n {
        let kind = if i % 100 == 99 {
            finished(TaskStatus::Succeeded)
        } else {
            progress(format!("{i} {filler}"))
        };
        setup.bus.publish(Some(task("a")), kind).unwrap();
    }
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(sse.event().await.seq);
        if got.len() % 500 == 0 {
            // Keep being slow now and then.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(got, (1..=n as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_of_an_attached_bus_still_receives_every_event() {
    slow_client(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_of_a_followed_journal_still_receives_every_event() {
    slow_client(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_comments_flow_on_an_idle_stream() {
    let opts = ServeOptions {
        keep_alive: Duration::from_millis(50),
        retry: Duration::from_millis(1500),
        ..ServeOptions::default()
    };
    let setup = Setup::new(false, &BusOptions::default(), opts).await;
    let mut sse = Sse::connect(&setup.events_url(), None).await;
    assert_eq!(sse.message().await.retry, Some(1500));
    let message = sse.message().await;
    assert_eq!(message.comments, ["keep-alive"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_run_state_are_served_as_json() {
    let setup = Setup::new(false, &BusOptions::default(), ServeOptions::default()).await;
    setup
        .bus
        .publish(
            None,
            EventKind::RunStarted {
                plan: "auth".into(),
                plan_hash: "h".into(),
                tasks: 1,
                concurrency: 1,
                base: "head".into(),
            },
        )
        .unwrap();
    setup.publish(10);
    // A directory that is not a run, and one without a journal, are not listed.
    std::fs::create_dir_all(setup.runs.join(".hidden")).unwrap();
    std::fs::create_dir_all(setup.runs.join("empty-run")).unwrap();

    let runs: serde_json::Value = reqwest::get(setup.url("/api/runs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], "run-1");
    assert_eq!(runs[0]["plan"], "auth");
    assert_eq!(runs[0]["last_seq"], 11);

    let response = reqwest::get(setup.url("/api/runs/run-1")).await.unwrap();
    assert_eq!(response.status(), 200);
    let state: RunState = response.json().await.unwrap();
    let journal = setup.bus.journal_path().unwrap().to_path_buf();
    assert_eq!(state, RunState::from_journal(&journal).unwrap());
    assert_eq!(state.last_seq, 11);
    assert_eq!(state.plan.unwrap().name, "auth");

    // The same from an attached bus.
    let attached = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        PathBuf::from("/nonexistent"),
        ServeOptions::default().attach(setup.bus.clone()),
    )
    .await
    .unwrap();
    let url = format!("http://{}/api/runs/run-1", attached.local_addr());
    let from_bus: RunState = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(from_bus, RunState::from_journal(&journal).unwrap());
    let url = format!("http://{}/api/runs", attached.local_addr());
    let runs: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(runs[0]["id"], "run-1");
    attached.shutdown();
}

async fn status_and_error(url: &str, header: Option<(&str, &[u8])>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some((name, value)) = header {
        request = request.header(
            name,
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        return (status, String::new());
    }
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let setup = Setup::new(false, &BusOptions::default(), ServeOptions::default()).await;
    setup.publish(1);
    for path in [
        "/api/runs/nope/events",
        "/api/runs/nope",
        "/api/runs/..%2Fetc/events",
    ] {
        let (status, body) = status_and_error(&setup.url(path), None).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("unknown run"), "{body}");
    }
    for bad in [
        &b"abc"[..],
        b"-1",
        b"1.5",
        b"99999999999999999999999",
        b"12 3",
    ] {
        let (status, body) =
            status_and_error(&setup.events_url(), Some(("Last-Event-ID", bad))).await;
        assert_eq!(status, 400, "{bad:?}");
        assert!(body.contains("Last-Event-ID"), "{body}");
    }
    let (status, body) = status_and_error(&format!("{}?from=soon", setup.events_url()), None).await;
    assert_eq!(status, 400);
    assert!(body.contains("from"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_last_event_ids_get_200_or_400_never_a_crash() {
    let setup = Setup::new(false, &BusOptions::default(), ServeOptions::default()).await;
    setup.publish(3);
    let url = setup.events_url();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let values =
        prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..24);
    for _ in 0..64 {
        let value = values.new_tree(&mut runner).unwrap().current();
        let (status, _) = status_and_error(&url, Some(("Last-Event-ID", &value))).await;
        assert!(status == 200 || status == 400, "{value:?} -> {status}");
    }
    // The server is still fine.
    assert_eq!(
        reqwest::get(setup.url("/api/runs")).await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_off_loopback_and_then_checked() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().to_path_buf();
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = Server::start(any, runs.clone(), ServeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, EventsError::TokenRequired { .. }), "{err}");
    let err = Server::start(any, runs.clone(), ServeOptions::default().token(""))
        .await
        .unwrap_err();
    assert!(matches!(err, EventsError::TokenRequired { .. }), "{err}");

    let server = Server::start(any, runs.clone(), ServeOptions::default().token("s3cret"))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/api/runs", server.local_addr().port());
    let client = reqwest::Client::new();
    let status = |auth: Option<&'static str>| {
        let mut request = client.get(&url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some("Bearer wrong")).await, 401);
    assert_eq!(status(Some("Bearer s3cre")).await, 401);
    assert_eq!(status(Some("Basic s3cret")).await, 401);
    assert_eq!(status(Some("Bearer s3cret")).await, 200);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    server.shutdown();

    // Loopback with a token checks it too; without one it is open.
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        runs,
        ServeOptions::default().token("t"),
    )
    .await
    .unwrap();
    let url = format!("http://{}/api/runs", server.local_addr());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_app_served_with_a_token_is_protected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let app = forge_events::http::router(dir.path().to_path_buf(), ServeOptions::default())
        .route("/dashboard", axum::routing::get(|| async { "hi" }));
    let server = Server::start_with("0.0.0.0:0".parse().unwrap(), app, Some("k"))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/dashboard", server.local_addr().port());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
    let ok = reqwest::Client::new()
        .get(&url)
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "hi");
    server.shutdown();
}

/// Sends `head` on a fresh connection (raw TCP: the `Host` is whatever the test says) and
/// returns the status code of the answer.
async fn raw_status(addr: SocketAddr, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

fn get_with_host(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_host_names_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".forge/runs");
    let bus = EventBus::open(
        run_id(),
        runs.join("run-1/events.jsonl"),
        &BusOptions::default(),
    )
    .unwrap();
    bus.publish(Some(task("a")), progress("x")).unwrap();
    bus.flush().unwrap();
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        runs.clone(),
        ServeOptions::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let port = addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "[::1]".to_owned(),
        format!("127.1.2.3:{port}"),
    ] {
        for path in ["/api/runs", "/api/runs/run-1", "/"] {
            assert_eq!(
                raw_status(addr, &get_with_host(path, &host)).await,
                200,
                "{host} {path}"
            );
        }
    }
    // A page of another site whose name now resolves to 127.0.0.1 (DNS rebinding) sends its
    // own name: refused, on every route.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("[::2]:{port}"),
        format!("10.0.0.1:{port}"),
        format!("localhost:{port}x"),
        format!("localhost:{port}@evil.example"),
    ] {
        for path in ["/api/runs", "/api/overview", "/api/runs/run-1/events", "/"] {
            assert_eq!(
                raw_status(addr, &get_with_host(path, &host)).await,
                403,
                "{host} {path}"
            );
        }
    }
    // An absolute-form target names the host that counts.
    assert_eq!(
        raw_status(
            addr,
            &format!(
                "GET http://evil.example:{port}/api/runs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )
        )
        .await,
        403
    );
    // No `Host` at all (HTTP/1.0) is refused too; the error says what to do.
    assert_eq!(
        raw_status(addr, "GET /api/runs HTTP/1.0\r\n\r\n").await,
        403
    );
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/api/runs"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("evil.example") && body.contains("--token"),
        "{body}"
    );
    server.shutdown();

    // With a token, any name may be used (the token is the protection).
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        runs,
        ServeOptions::default().token("t"),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    assert_eq!(
        raw_status(
            addr,
            "GET /api/runs HTTP/1.1\r\nHost: forge.example\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n"
        )
        .await,
        200
    );
    server.shutdown();

    // An app served with `start_with` and no token gets the same rule.
    let app = forge_events::http::router(dir.path().to_path_buf(), ServeOptions::default());
    let server = Server::start_with("127.0.0.1:0".parse().unwrap(), app, None)
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(
        raw_status(addr, &get_with_host("/api/runs", "evil.example")).await,
        403
    );
    assert_eq!(
        raw_status(addr, &get_with_host("/api/runs", "localhost")).await,
        200
    );
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_are_cut_off_but_streams_stay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let setup = Setup::new(
        true,
        &BusOptions::default(),
        ServeOptions {
            header_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        },
    )
    .await;
    let addr = setup.server.local_addr();
    // An event stream opened before: its head was complete, so it is not cut off.
    setup.publish(1);
    let mut sse = Sse::connect(&setup.events_url(), None).await;
    assert_eq!(sse.event().await.seq, 1);

    // Many slow clients: a request line and part of the headers, then nothing.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // The server closes each (the bound only keeps a broken server from hanging the test).
    for mut stream in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_mins(1), stream.read_to_end(&mut buf))
            .await
            .expect("the server kept a connection whose headers never ended");
        // Closed: an end of file (perhaps after a 408 answer) or a reset.
        if let Ok(n) = read {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
        }
    }
    // The stream outlived the header timeout and still delivers.
    setup.publish(1);
    assert_eq!(sse.event().await.seq, 2);
    // And the server still answers complete requests.
    assert_eq!(
        raw_status(addr, &get_with_host("/api/runs", "127.0.0.1")).await,
        200
    );
}

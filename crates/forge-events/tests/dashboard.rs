//! The web dashboard: its routes through a real HTTP client, and the page itself in headless
//! Chromium following a run whose journal this test writes live (as `forge run` would, while
//! `forge serve` follows it).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::print_stderr,
    clippy::doc_markdown
)]

mod browser;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forge_events::http::{RunOverview, ServeOptions, Server};
use forge_events::{
    BusOptions, ClaimRecord, EventBus, EventKind, OutputStream, RunPhase, RunState, RunStatus,
    RunSummary, TaskId, TaskStatus, Timestamp, UnknownKind,
};
use serde_json::Value;

use browser::Browser;

const TOKEN: &str = "s3cret token/with+odd=chars";

// ---- a run written by the test ----

/// A run being written to `<runs>/<id>/events.jsonl`, with task logs beside it.
struct Run {
    bus: EventBus,
    dir: PathBuf,
}

fn tid(id: &str) -> TaskId {
    id.parse().unwrap()
}

impl Run {
    fn open(runs: &Path, id: &str) -> Self {
        let dir = runs.join(id);
        let bus = EventBus::open(
            id.parse().unwrap(),
            dir.join("events.jsonl"),
            &BusOptions::default(),
        )
        .unwrap();
        Self { bus, dir }
    }

    fn run(&self, kind: EventKind) -> u64 {
        let seq = self.bus.publish(None, kind).unwrap();
        self.bus.flush().unwrap();
        seq
    }

    fn task(&self, task: &str, kind: EventKind) -> u64 {
        let seq = self.bus.publish(Some(tid(task)), kind).unwrap();
        self.bus.flush().unwrap();
        seq
    }

    fn log(&self, task: &str, attempt: u32, lines: impl IntoIterator<Item = String>) {
        use std::io::Write;
        let dir = self.dir.join("tasks").join(task).join(attempt.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("output.log"))
            .unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
    }

    fn started(plan: &str, tasks: u32) -> EventKind {
        EventKind::RunStarted {
            plan: plan.into(),
            plan_hash: "b3:5f2a".into(),
            tasks,
            concurrency: 3,
            base: "head".into(),
        }
    }

    fn queued(after: &[&str]) -> EventKind {
        Self::queued_for(after, None)
    }

    fn queued_for(after: &[&str], estimate_ms: Option<u64>) -> EventKind {
        EventKind::TaskQueued {
            after: after.iter().map(|a| tid(a)).collect(),
            estimate_ms,
        }
    }

    fn attempt(n: u32) -> EventKind {
        EventKind::TaskStarted {
            attempt: n,
            agent: "sim".into(),
            workspace: format!("/tmp/forge-ws/{n}"),
            strategy: "overlay".into(),
        }
    }

    fn progress(message: &str, tool: Option<&str>, files: &[&str]) -> EventKind {
        EventKind::TaskProgress {
            message: message.into(),
            tool: tool.map(Into::into),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn usage(tokens_in: u64, tokens_out: u64, cost: f64) -> EventKind {
        EventKind::TaskUsage {
            tokens_in,
            tokens_out,
            cost_usd: Some(cost),
        }
    }

    fn finished(status: TaskStatus, ms: u64, files: &[&str], reason: Option<&str>) -> EventKind {
        EventKind::TaskFinished {
            status,
            exit_code: Some(i32::from(status.is_failure())),
            duration_ms: ms,
            files_changed: files
                .iter()
                .map(|f| forge_events::RepoPath::new(f).unwrap())
                .collect(),
            reason: reason.map(Into::into),
        }
    }

    fn conflict(path: &str, tasks: &[&str], strategy: &str, resolved: bool) -> EventKind {
        EventKind::MergeConflict {
            path: forge_events::RepoPath::new(path).unwrap(),
            tasks: tasks.iter().map(|t| tid(t)).collect(),
            strategy: strategy.into(),
            resolved,
        }
    }

    fn run_finished(status: RunStatus, succeeded: u32, failed: u32, conflicts: u32) -> EventKind {
        EventKind::RunFinished {
            status,
            summary: RunSummary {
                succeeded,
                failed,
                conflicts,
                duration_ms: 4321,
                ..RunSummary::default()
            },
        }
    }
}

/// A finished two-task run.
fn write_finished_run(runs: &Path, id: &str) {
    let run = Run::open(runs, id);
    run.run(Run::started("docs", 2));
    run.task("intro", Run::queued(&[]));
    run.task("guide", Run::queued(&["intro"]));
    run.task("intro", Run::attempt(1));
    run.task(
        "intro",
        Run::finished(TaskStatus::Succeeded, 900, &["README.md"], None),
    );
    run.task("guide", Run::attempt(1));
    run.task(
        "guide",
        Run::finished(TaskStatus::Failed, 700, &[], Some("exit code 1")),
    );
    run.run(Run::conflict(
        "README.md",
        &["intro", "guide"],
        "union",
        true,
    ));
    run.run(Run::run_finished(RunStatus::Failed, 1, 1, 1));
    run.bus.close().unwrap();
}

async fn serve(runs: &Path, opts: ServeOptions) -> Server {
    serve_at("127.0.0.1:0".parse().unwrap(), runs, opts).await
}

async fn serve_at(addr: SocketAddr, runs: &Path, opts: ServeOptions) -> Server {
    let opts = ServeOptions {
        poll_interval: Duration::from_millis(10),
        retry: Duration::from_millis(300),
        ..opts
    };
    Server::start(addr, runs.to_path_buf(), opts).await.unwrap()
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.local_addr())
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` header"))
        .to_str()
        .unwrap()
}

// ---- the routes ----

/// An embedder's routes are served under the access rule; their mutating requests are refused
/// when they come from another site, and `/api/features` names what they offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_routes_refuse_cross_site_requests() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".forge/runs");
    std::fs::create_dir_all(&runs).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let routes = axum::Router::new().route(
        "/api/act",
        axum::routing::post(move || {
            let calls = Arc::clone(&counted);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                "done"
            }
        }),
    );
    for token in [None, Some(TOKEN)] {
        let mut opts = ServeOptions::default().routes(routes.clone(), &["act"]);
        if let Some(token) = token {
            opts = opts.token(token);
        }
        let server = serve(&runs, opts).await;
        let own = format!("http://{}", server.local_addr());
        let client = reqwest::Client::new();
        let post = |origin: Option<&str>, site: Option<&str>| {
            let mut request = client.post(url(&server, "/api/act"));
            if let Some(origin) = origin {
                request = request.header("Origin", origin);
            }
            if let Some(site) = site {
                request = request.header("Sec-Fetch-Site", site);
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let before = calls.load(Ordering::SeqCst);
        // Another site, by its Origin or by the browser's word: refused, not run.
        for (origin, site) in [
            (Some("http://evil.example"), None),
            (Some("null"), None),
            (Some(own.replace("http://", "https://evil.").as_str()), None),
            (None, Some("cross-site")),
        ] {
            let response = post(origin, site).await.unwrap();
            assert_eq!(response.status(), 403, "{origin:?} {site:?}");
            let body = response.text().await.unwrap();
            assert!(body.contains("cross-site request refused"), "{body}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), before);
        // This server's own page, and a client that is not a browser: run.
        for (origin, site) in [(Some(own.as_str()), Some("same-origin")), (None, None)] {
            let response = post(origin, site).await.unwrap();
            assert_eq!(response.status(), 200, "{origin:?} {site:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), before + 2);
        // With a token, the embedder's routes need it like the API.
        if token.is_some() {
            let response = client.post(url(&server, "/api/act")).send().await.unwrap();
            assert_eq!(response.status(), 401);
        }
        let features: Value = client
            .get(url(&server, "/api/features"))
            .bearer_auth(token.unwrap_or(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(features, serde_json::json!(["act"]));
        server.shutdown();
    }
    // A server without an embedder offers nothing more.
    let server = serve(&runs, ServeOptions::default()).await;
    let features: Value = get(&url(&server, "/api/features"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(features, serde_json::json!([]));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_embedded_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), ServeOptions::default().token(TOKEN)).await;
    // The page holds no data: served without the token, with the policy and a validator.
    for (path, content_type, marker) in [
        ("/", "text/html; charset=utf-8", "assets/app.js"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        (
            "/assets/app.css",
            "text/css; charset=utf-8",
            "prefers-color-scheme",
        ),
        ("/assets/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let response = get(&url(&server, path)).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        let csp = header(&response, "content-security-policy").to_owned();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let etag = header(&response, "etag").to_owned();
        let body = response.text().await.unwrap();
        assert!(body.contains(marker), "{path}");
        let again = reqwest::Client::new()
            .get(url(&server, path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let missing = get(&url(&server, "/assets/nope.js")).await;
    assert_eq!(missing.status(), 404);
    // The API still needs the token.
    assert_eq!(get(&url(&server, "/api/runs")).await.status(), 401);
    server.shutdown();
}

/// What the page is made of: no URL of another host anywhere (no CDN, fonts or analytics), and
/// a listener for every event type this version writes.
#[test]
fn the_page_names_no_other_host_and_folds_every_event_type() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    for entry in std::fs::read_dir(&assets).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // The SVG namespace is a name, not a request.
        let text = text.replace("http://www.w3.org/2000/svg", "");
        for needle in ["http://", "https://", "//cdn", "@import", "url(http"] {
            assert!(
                !text.contains(needle),
                "{} mentions `{needle}`",
                path.display()
            );
        }
    }
    let js = std::fs::read_to_string(assets.join("app.js")).unwrap();
    for kind in EventKind::known_types() {
        assert!(
            js.contains(&format!("'{kind}'")),
            "app.js does not fold `{kind}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_logs_are_read_from_an_offset_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::open(dir.path(), "r1");
    run.task("api", Run::queued(&[]));
    let server = serve(dir.path(), ServeOptions::default()).await;
    let log = |query: &str| url(&server, &format!("/api/runs/r1/tasks/api/log{query}"));

    // No attempt yet: empty, attempt 0.
    let response = get(&log("")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-forge-log-attempt"), "0");
    assert_eq!(header(&response, "x-forge-log-offset"), "0");
    assert_eq!(response.text().await.unwrap(), "");

    run.log("api", 1, (1..=3).map(|i| format!("line {i}")));
    let response = get(&log("?attempt=1&offset=0")).await;
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header(&response, "x-forge-log-attempt"), "1");
    assert_eq!(header(&response, "x-forge-log-start"), "0");
    assert_eq!(header(&response, "x-forge-log-size"), "21");
    let next: u64 = header(&response, "x-forge-log-offset").parse().unwrap();
    assert_eq!(response.text().await.unwrap(), "line 1\nline 2\nline 3\n");
    assert_eq!(next, 21);

    // Following: only what was appended since.
    run.log("api", 1, ["line 4".to_owned()]);
    let response = get(&log(&format!("?attempt=1&offset={next}"))).await;
    assert_eq!(header(&response, "x-forge-log-offset"), "28");
    assert_eq!(response.text().await.unwrap(), "line 4\n");
    let response = get(&log("?attempt=1&offset=28")).await;
    assert_eq!(response.text().await.unwrap(), "");

    // A tail starts at a line.
    let response = get(&log("?attempt=1&tail=10")).await;
    assert_eq!(header(&response, "x-forge-log-start"), "21");
    assert_eq!(response.text().await.unwrap(), "line 4\n");

    // The latest attempt by default; one answer is capped, the rest follows from the offset.
    let big: Vec<String> = (0..9000).map(|i| format!("{i:>39}")).collect();
    run.log("api", 2, big);
    let response = get(&log("")).await;
    assert_eq!(header(&response, "x-forge-log-attempt"), "2");
    assert_eq!(header(&response, "x-forge-log-size"), "360000");
    let next: u64 = header(&response, "x-forge-log-offset").parse().unwrap();
    assert_eq!(next, 256 * 1024);
    assert_eq!(response.bytes().await.unwrap().len(), 256 * 1024);
    let response = get(&log(&format!("?offset={next}"))).await;
    assert_eq!(header(&response, "x-forge-log-offset"), "360000");
    assert_eq!(response.bytes().await.unwrap().len(), 360_000 - 256 * 1024);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_log_requests_cannot_leave_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::open(dir.path(), "r1");
    run.task("api", Run::queued(&[]));
    run.log("api", 1, ["secret-free".to_owned()]);
    // A file a path escape would reach.
    std::fs::write(dir.path().join("r1/events.log"), "escaped").unwrap();
    let server = serve(dir.path(), ServeOptions::default()).await;
    for (path, status, words) in [
        (
            "/api/runs/r1/tasks/..%2F..%2Fr1/log",
            400,
            "invalid task id",
        ),
        ("/api/runs/r1/tasks/.hidden/log", 400, "invalid task id"),
        ("/api/runs/r1/tasks/a%20b/log", 400, "invalid task id"),
        (
            "/api/runs/r1/tasks/..%2Fevents.log/log",
            400,
            "invalid task id",
        ),
        ("/api/runs/..%2Fr1/tasks/api/log", 404, "unknown run"),
        ("/api/runs/nope/tasks/api/log", 404, "unknown run"),
        (
            "/api/runs/r1/tasks/api/log?attempt=-1",
            400,
            "invalid attempt",
        ),
        (
            "/api/runs/r1/tasks/api/log?attempt=..",
            400,
            "invalid attempt",
        ),
        (
            "/api/runs/r1/tasks/api/log?attempt=1%2F..",
            400,
            "invalid attempt",
        ),
        (
            "/api/runs/r1/tasks/api/log?offset=1e3",
            400,
            "invalid offset",
        ),
        ("/api/runs/r1/tasks/api/log?tail=x", 400, "invalid tail"),
        (
            "/api/runs/r1/tasks/api/log?attempt=99999999999",
            400,
            "invalid attempt",
        ),
    ] {
        let response = get(&url(&server, path)).await;
        assert_eq!(response.status(), status, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains(words), "{path}: {body}");
        assert!(!body.contains("escaped"), "{path}: {body}");
    }
    // A task that exists in no event still reads as an empty log (it may not have started).
    let response = get(&url(&server, "/api/runs/r1/tasks/other/log")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-forge-log-attempt"), "0");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_accepted_as_header_query_or_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::open(dir.path(), "r1");
    run.run(Run::started("p", 1));
    let server = serve(dir.path(), ServeOptions::default().token(TOKEN)).await;
    let runs = url(&server, "/api/runs");
    // Redirects are looked at, not followed.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    let encoded: String = form_encode(TOKEN);
    assert_eq!(status(client.get(&runs)).await, 401);
    assert_eq!(status(client.get(&runs).bearer_auth("wrong")).await, 401);
    assert_eq!(status(client.get(&runs).bearer_auth(TOKEN)).await, 200);
    assert_eq!(status(client.get(format!("{runs}?token=wrong"))).await, 401);
    assert_eq!(status(client.get(format!("{runs}?token="))).await, 401);
    assert_eq!(
        status(client.get(format!("{runs}?token={}", &encoded[..encoded.len() - 1]))).await,
        401
    );
    // A query token is taken once: the answer sets the cookie and sends the client to the
    // same address without the token.
    let response = client
        .get(format!("{runs}?token={encoded}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), "/api/runs");
    let cookie = header(&response, "set-cookie").to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    assert!(
        !pair.contains(TOKEN),
        "the cookie carries the token encoded: {pair}"
    );
    assert_eq!(
        status(client.get(&runs).header("Cookie", format!("a=b; {pair}"))).await,
        200
    );
    assert_eq!(
        status(client.get(&runs).header("Cookie", "forge_token=00ff")).await,
        401
    );
    // A browser follows the redirect with the cookie, and gets the answer there.
    let follow = |response: reqwest::Response| {
        let location = url(&server, header(&response, "location"));
        let cookie = header(&response, "set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        client.get(location).header("Cookie", cookie).send()
    };
    let answer = follow(
        client
            .get(format!("{runs}?token={encoded}"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("\"r1\""));
    // An EventSource passes the token in its URL: the other parameters are kept, the token
    // goes, and the stream answers the redirected request.
    let events = client
        .get(url(
            &server,
            &format!("/api/runs/r1/events?from=1&token={encoded}&x=%20y"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 303);
    assert_eq!(
        header(&events, "location"),
        "/api/runs/r1/events?from=1&x=%20y"
    );
    let events = follow(events).await.unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(header(&events, "content-type"), "text/event-stream");
    drop(events);
    // Every API route is protected; the page is not, but a token in its address is taken
    // into the cookie and dropped from the address too.
    for path in [
        "/api/overview",
        "/api/runs/r1",
        "/api/runs/r1/events",
        "/api/runs/r1/tasks/a/log",
    ] {
        assert_eq!(status(client.get(url(&server, path))).await, 401, "{path}");
    }
    assert_eq!(status(client.get(url(&server, "/"))).await, 200);
    assert_eq!(status(client.get(url(&server, "/?token=wrong"))).await, 200);
    let page = client
        .get(url(&server, &format!("/?run=r1&token={encoded}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(header(&page, "location"), "/?run=r1");
    assert!(header(&page, "set-cookie").starts_with("forge_token="));
    server.shutdown();

    // A whole app protected with `start_with`: the page needs the token once in its address,
    // then the cookie carries it for the page's assets.
    let app = forge_events::http::router(dir.path().to_path_buf(), ServeOptions::default());
    let server = Server::start_with("127.0.0.1:0".parse().unwrap(), app, Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(status(client.get(url(&server, "/"))).await, 401);
    let page = client
        .get(url(&server, &format!("/?token={encoded}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(header(&page, "location"), "/");
    let pair = header(&page, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        status(
            client
                .get(url(&server, "/assets/app.js"))
                .header("Cookie", pair)
        )
        .await,
        200
    );
    server.shutdown();
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_live_and_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_finished_run(dir.path(), "old");
    let live = Run::open(dir.path(), "live");
    live.run(Run::started("auth", 3));
    for (t, after) in [("a", &[][..]), ("b", &["a"][..]), ("c", &["a"][..])] {
        live.task(t, Run::queued(after));
    }
    live.task("a", Run::attempt(1));
    let server = serve(dir.path(), ServeOptions::default()).await;
    let overview = || async {
        let list: Vec<RunOverview> = get(&url(&server, "/api/overview"))
            .await
            .json()
            .await
            .unwrap();
        list
    };
    let list = overview().await;
    assert_eq!(list.len(), 2);
    let old = list.iter().find(|r| r.info.id.as_str() == "old").unwrap();
    assert_eq!(old.phase, RunPhase::Failed);
    assert_eq!(
        (old.counts.total, old.counts.succeeded, old.counts.failed),
        (2, 1, 1)
    );
    assert_eq!((old.conflicts, old.duration_ms), (1, Some(4321)));
    assert!(old.finished_at.is_some());
    let l = list.iter().find(|r| r.info.id.as_str() == "live").unwrap();
    assert_eq!(l.phase, RunPhase::Running);
    assert_eq!(
        (l.counts.total, l.counts.running, l.counts.queued),
        (3, 1, 2)
    );
    assert_eq!(
        (l.conflicts, l.duration_ms, l.error.as_deref()),
        (0, None, None)
    );

    // It follows the journal as it grows.
    live.task("a", Run::finished(TaskStatus::Succeeded, 10, &["x"], None));
    live.run(Run::conflict("x", &["a", "b"], "fail", false));
    let list = overview().await;
    let l = list.iter().find(|r| r.info.id.as_str() == "live").unwrap();
    assert_eq!(
        (l.counts.succeeded, l.counts.running, l.conflicts),
        (1, 0, 1)
    );
    // The plain listing is unchanged: `RunInfo`s.
    let runs: Vec<Value> = get(&url(&server, "/api/runs")).await.json().await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.get("counts").is_none()));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_route_folds_what_was_appended_like_a_full_fold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1/events.jsonl");
    let run = Run::open(dir.path(), "r1");
    let server = serve(dir.path(), ServeOptions::default()).await;
    let state = || async {
        let state: RunState = get(&url(&server, "/api/runs/r1"))
            .await
            .json()
            .await
            .unwrap();
        state
    };
    run.run(Run::started("p", 2));
    assert_eq!(state().await, RunState::from_journal(&path).unwrap());
    for round in 0..5u64 {
        run.task("a", Run::queued(&[]));
        run.task("a", Run::attempt(1));
        run.task("a", Run::usage(10 * round, 5, 0.001));
        run.task(
            "a",
            EventKind::TaskOutput {
                stream: OutputStream::Stdout,
                line: format!("round {round}"),
            },
        );
        assert_eq!(state().await, RunState::from_journal(&path).unwrap());
    }
    run.bus.close().unwrap();
    drop(run);
    // A torn last line (a writer that died mid-write) is not folded, then is once complete.
    let full = std::fs::read(&path).unwrap();
    let before = RunState::from_journal(&path).unwrap();
    let mut torn = full.clone();
    let extra = br#"{"v":1,"seq":22,"ts":"2026-01-01T00:00:00.000Z","run":"r1","task":"b","type":"task_queued"}"#;
    torn.extend_from_slice(&extra[..40]);
    std::fs::write(&path, &torn).unwrap();
    assert_eq!(state().await, before);
    let mut whole = full.clone();
    whole.extend_from_slice(extra);
    whole.push(b'\n');
    std::fs::write(&path, &whole).unwrap();
    let after = state().await;
    assert_eq!(after, RunState::from_journal(&path).unwrap());
    assert_eq!(after.last_seq, 22);
    assert!(after.task("b").is_some());
    // A journal replaced by a shorter one is folded again from its start.
    let first_line = full.iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&path, &full[..first_line]).unwrap();
    let restarted = state().await;
    assert_eq!(restarted.last_seq, 1);
    assert_eq!(restarted, RunState::from_journal(&path).unwrap());
    server.shutdown();
}

// ---- the page, in Chromium ----

/// Replaces every RFC 3339 timestamp string by its canonical form (the page keeps the event's
/// text, `…:07.100Z`; the server prints `…:07.1Z`), and every number by its `f64` value (JSON
/// does not tell `1` from `1.0`; JavaScript has only the one).
fn canonical(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        Value::String(text) => {
            if text.len() >= 20
                && text.ends_with('Z')
                && let Ok(ts) = text.parse::<Timestamp>()
            {
                *text = ts.to_string();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical),
        Value::Object(map) => map.values_mut().for_each(canonical),
        _ => {}
    }
}

/// The page's own fold, next to the server's.
async fn assert_page_state_matches_server(browser: &Browser, server: &Server) {
    let client = reqwest::Client::new();
    let mut expected: Value = client
        .get(url(server, "/api/runs/run-live"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last_seq = expected["last_seq"].as_u64().unwrap();
    browser
        .wait_for_js(
            &format!("window.forgeDashboard.state() && window.forgeDashboard.state().last_seq === {last_seq}"),
            Duration::from_secs(15),
        )
        .await;
    let mut page = browser.js("return window.forgeDashboard.state();").await;
    canonical(&mut expected);
    canonical(&mut page);
    assert_eq!(
        page, expected,
        "the page's fold differs from the server's RunState"
    );
}

async fn wait_until_not_live(browser: &Browser) {
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state !== 'live'",
            Duration::from_secs(10),
        )
        .await;
}

/// Between two snapshots of the page's stream stats: `published` events arrived, each once.
fn assert_stream_continued(before: &Value, after: &Value, published: u64) {
    assert_eq!(after["duplicates"], 0, "{after}");
    assert_eq!(after["skipped"], before["skipped"], "{before} -> {after}");
    assert_eq!(
        after["applied"].as_u64().unwrap() - before["applied"].as_u64().unwrap(),
        published,
        "every event once: {before} -> {after}"
    );
}

fn claims(writes: &str) -> Vec<ClaimRecord> {
    vec![ClaimRecord {
        mode: forge_events::LockMode::Write,
        pattern: writes.into(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_live_run_in_chromium() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let secs = Duration::from_secs;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".forge/runs");
    write_finished_run(&runs, "run-old");
    let run = Run::open(&runs, "run-live");
    run.run(Run::started("auth", 6));
    // The plan's estimates weigh the critical path: through `frontend` (1 min), not `backend`
    // (1 s); tasks without one weigh the mean of the known ones.
    let plan: [(&str, &[&str], Option<u64>); 6] = [
        ("models", &[], None),
        ("docs", &[], None),
        ("backend", &["models"], Some(1_000)),
        ("frontend", &["models"], Some(60_000)),
        ("tests", &["backend", "frontend"], None),
        ("changelog", &["docs"], None),
    ];
    for (task, after, estimate) in plan {
        run.task(task, Run::queued_for(after, estimate));
    }
    let server = serve(&runs, ServeOptions::default().token(TOKEN)).await;
    let addr = server.local_addr();
    let origin = format!("http://{addr}");

    // 1. Without the token the page asks for it; given once, it is kept for the tab.
    browser.open(&format!("{origin}/")).await;
    browser.wait_for("#token-form", secs(10)).await;
    let first = browser.console_errors().await;
    assert!(
        first.iter().all(|e| e.message.contains("401")),
        "only the refused request may be logged: {first:?}"
    );
    let input = browser.wait_for("#token-input", secs(5)).await;
    input.send_keys(TOKEN).await.unwrap();
    browser
        .client()
        .find(fantoccini::Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("tr.run[data-run='run-old'][data-state='failed']", secs(10))
        .await;
    browser
        .wait_for(
            "tr.run[data-run='run-live'][data-state='running']",
            secs(10),
        )
        .await;
    browser.screenshot("dashboard-runs.png").await;

    // 2. The run page: every task queued, the DAG with its critical path.
    browser
        .client()
        .find(fantoccini::Locator::Css("tr.run[data-run='run-live'] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js(
            "document.querySelectorAll(\"tr.task[data-state='queued']\").length === 6",
            secs(10),
        )
        .await;
    assert_eq!(browser.count("svg.dag g.node").await, 6);
    assert_eq!(browser.count("svg.dag path.edge").await, 5);
    let critical = browser
        .js("return Array.from(document.querySelectorAll('svg.dag g.node.critical')).map(n => n.dataset.task).sort();")
        .await;
    assert_eq!(critical, serde_json::json!(["frontend", "models", "tests"]));
    assert_eq!(browser.count("svg.dag path.edge.critical").await, 2);
    assert_eq!(browser.js("return location.search;").await, "?run=run-live");

    // 3. Tasks change state live; the selected task's log follows its output.log.
    run.task("models", Run::attempt(1));
    run.task("docs", Run::attempt(1));
    run.task(
        "models",
        Run::progress(
            "editing src/models/user.rs",
            Some("edit"),
            &["src/models/user.rs"],
        ),
    );
    run.task("models", Run::usage(12_000, 3_400, 0.0125));
    run.log(
        "models",
        1,
        (1..=20).map(|i| format!("models says line {i}")),
    );
    browser
        .wait_for(
            "tr.task[data-task='models'][data-state='running']",
            secs(10),
        )
        .await;
    browser
        .wait_for("tr.task[data-task='docs'][data-state='running']", secs(10))
        .await;
    browser
        .wait_for_js(
            "document.querySelector(\"tr.task[data-task='models'] td.activity\").textContent.includes('editing src/models/user.rs')",
            secs(10),
        )
        .await;
    // The node a cluster runner placed the attempt on, in its own column.
    run.task(
        "models",
        EventKind::TaskPlaced {
            attempt: 1,
            node: "10.0.0.7".into(),
            node_id: Some("c0ffee".into()),
        },
    );
    browser
        .wait_for_js(
            "document.querySelector(\"tr.task[data-task='models'] td.node\").textContent === '10.0.0.7' && document.querySelector(\"tr.task[data-task='docs'] td.node\").textContent === ''",
            secs(10),
        )
        .await;
    browser
        .wait_for(
            "svg.dag g.node[data-task='models'][data-state='running']",
            secs(5),
        )
        .await;
    browser
        .client()
        .find(fantoccini::Locator::Css("tr.task[data-task='models']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js(
            "(document.querySelector('#log-text') || {}).textContent?.includes('models says line 20')",
            secs(10),
        )
        .await;
    run.log(
        "models",
        1,
        (21..=40).map(|i| format!("models says line {i}")),
    );
    browser
        .wait_for_js(
            "document.querySelector('#log-text').textContent.includes('models says line 40')",
            secs(10),
        )
        .await;
    let log_text = browser
        .js("return document.querySelector('#log-text').textContent;")
        .await;
    let log_text = log_text.as_str().unwrap();
    assert_eq!(
        log_text.matches("models says line 20\n").count(),
        1,
        "each line once: {log_text}"
    );

    // 4. Lock waits, a retry, conflicts.
    run.task(
        "models",
        Run::finished(TaskStatus::Succeeded, 1500, &["src/models/user.rs"], None),
    );
    run.task(
        "models",
        EventKind::MergeIntegrated {
            files: vec![forge_events::RepoPath::new("src/models/user.rs").unwrap()],
        },
    );
    run.task("backend", Run::attempt(1));
    run.task(
        "frontend",
        EventKind::TaskWaitingLocks {
            claims: claims("src/api/**"),
            blocked_by: vec![tid("backend")],
        },
    );
    browser
        .wait_for(
            "tr.task[data-task='frontend'][data-state='waiting_locks']",
            secs(10),
        )
        .await;
    browser
        .wait_for(
            "#locks li.wait[data-task='frontend'] .tag[data-task='backend']",
            secs(10),
        )
        .await;
    run.task(
        "backend",
        Run::finished(
            TaskStatus::Failed,
            800,
            &[],
            Some("exit code 1: tests failed"),
        ),
    );
    run.task(
        "backend",
        EventKind::TaskRetrying {
            attempt: 2,
            delay_ms: 100,
            reason: "exit code 1: tests failed".into(),
        },
    );
    browser
        .wait_for(
            "tr.task[data-task='backend'][data-state='retrying']",
            secs(10),
        )
        .await;
    run.task("backend", Run::attempt(2));
    run.task(
        "backend",
        Run::progress("rewriting the handler", Some("edit"), &["src/api/auth.rs"]),
    );
    run.task("frontend", Run::attempt(1));
    run.task("docs", Run::progress("thinking", None, &[]));
    // A type a newer Forge writes: the page cannot listen for it, and counts it as RunState does.
    run.task(
        "docs",
        EventKind::Unknown(UnknownKind {
            kind: "task_paused".into(),
            fields: serde_json::Map::from_iter([("why".to_owned(), Value::from("quota"))]),
        }),
    );
    run.task(
        "docs",
        Run::finished(TaskStatus::Succeeded, 2100, &["CHANGELOG.md"], None),
    );
    run.task("changelog", Run::attempt(1));
    run.run(Run::conflict(
        "CHANGELOG.md",
        &["docs", "changelog"],
        "union",
        true,
    ));
    run.run(Run::conflict(
        "src/api/routes.rs",
        &["backend", "frontend"],
        "fail",
        false,
    ));
    browser
        .wait_for(
            "#conflicts li.conflict[data-path='src/api/routes.rs'][data-resolved='false']",
            secs(10),
        )
        .await;
    browser
        .wait_for(
            "#conflicts li.conflict[data-path='CHANGELOG.md'][data-resolved='true']",
            secs(10),
        )
        .await;
    browser
        .wait_for_js(
            "document.querySelector(\"tr.task[data-task='backend'] td.num\").textContent === '2'",
            secs(10),
        )
        .await;
    assert_eq!(browser.count("#locks li.wait").await, 0, "the wait ended");
    assert_eq!(
        browser
            .js("return document.querySelector('#conflicts .count').textContent;")
            .await,
        "2"
    );
    // A red gate bisected to its first failing task.
    run.run(EventKind::GateBisectStarted {
        tasks: vec![tid("docs"), tid("backend")],
        concurrency: 2,
    });
    run.run(EventKind::GateBisectStep {
        changesets: 1,
        last: Some(tid("docs")),
        passed: true,
        failed_command: None,
        duration_ms: 900,
        reused: false,
    });
    run.run(EventKind::GateBisectFinished {
        culprit: Some(tid("backend")),
        base_fails: false,
        gate_runs: 1,
        message: "`backend` is the first task whose changes fail the gate (bisected in 1 gate run)"
            .into(),
    });
    browser
        .wait_for("#gate .bisect[data-culprit='backend']", secs(10))
        .await;
    browser.color_scheme(false).await;
    browser.screenshot("dashboard-run.png").await;
    browser.color_scheme(true).await;
    browser
        .wait_for_js(
            "getComputedStyle(document.body).backgroundColor !== 'rgb(246, 247, 249)'",
            secs(5),
        )
        .await;
    browser.screenshot("dashboard-run-dark.png").await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let outside = browser.requests_outside(&origin).await;
    assert!(outside.is_empty(), "requests to other hosts: {outside:?}");
    assert_page_state_matches_server(&browser, &server).await;
    let stats = browser.js("return window.forgeDashboard.stats();").await;
    assert_eq!(stats["skipped"], 1, "the unknown event: {stats}");

    // 5. The server restarts; what happened meanwhile arrives, without gaps or duplicates.
    // (a) The browser reconnects by itself, sending Last-Event-ID.
    let before = browser.js("return window.forgeDashboard.stats();").await;
    let seq_before = run.bus.last_seq();
    server.shutdown();
    wait_until_not_live(&browser).await;
    run.task("backend", Run::usage(30_000, 9_000, 0.05));
    run.task(
        "backend",
        Run::finished(TaskStatus::Succeeded, 1900, &["src/api/auth.rs"], None),
    );
    let server = serve_at(addr, &runs, ServeOptions::default().token(TOKEN)).await;
    browser
        .wait_for(
            "tr.task[data-task='backend'][data-state='succeeded']",
            secs(20),
        )
        .await;
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'live'",
            secs(10),
        )
        .await;
    let after = browser.js("return window.forgeDashboard.stats();").await;
    eprintln!("stream across a restart: {before} -> {after}");
    assert_eq!(
        after["connects"], 1,
        "the browser's own stream went on: {after}"
    );
    assert_stream_continued(&before, &after, run.bus.last_seq() - seq_before);

    // (b) A proxy answers 503 while the server is down: the browser gives its stream up, and
    // the page opens a new one from the seq after the last it folded.
    let before = after;
    let seq_before = run.bus.last_seq();
    server.shutdown();
    wait_until_not_live(&browser).await;
    let proxy = Server::start_with(
        addr,
        axum::Router::new().fallback(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
        None,
    )
    .await
    .unwrap();
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'closed'",
            secs(10),
        )
        .await;
    proxy.shutdown();
    run.task(
        "frontend",
        Run::finished(TaskStatus::Succeeded, 2500, &["web/login.tsx"], None),
    );
    run.task("tests", Run::attempt(1));
    let server = serve_at(addr, &runs, ServeOptions::default().token(TOKEN)).await;
    browser
        .wait_for("tr.task[data-task='tests'][data-state='running']", secs(20))
        .await;
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'live'",
            secs(10),
        )
        .await;
    let after = browser.js("return window.forgeDashboard.stats();").await;
    eprintln!("stream across a restart behind a proxy: {before} -> {after}");
    let from = after["from"].as_array().unwrap();
    assert!(from.len() >= 2, "the page opened a new stream: {after}");
    assert!(
        from[1..].iter().all(|f| f.as_u64() == Some(seq_before + 1)),
        "each new stream starts after the last seq folded ({seq_before}): {after}"
    );
    assert_stream_continued(&before, &after, run.bus.last_seq() - seq_before);
    // The page did not reload the run's state: it continued the stream.
    let state_loads = browser
        .requests()
        .await
        .iter()
        .filter(|u| u.ends_with("/api/runs/run-live"))
        .count();
    assert_eq!(state_loads, 1);
    // Only the cut streams, the refused reconnects and the proxy's 503s may have been logged
    // while the server was down.
    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.message.contains("net::ERR_CONNECTION_REFUSED")
                || e.message.contains("net::ERR_INCOMPLETE_CHUNKED_ENCODING")
                || e.message.contains("503")),
        "console errors: {errors:?}"
    );

    // 6. The run ends: gate, apply, run_finished.
    run.task(
        "changelog",
        Run::finished(TaskStatus::Succeeded, 600, &["CHANGELOG.md"], None),
    );
    run.task("tests", Run::usage(8_000, 2_000, 0.01));
    run.task(
        "tests",
        Run::finished(TaskStatus::Succeeded, 3000, &["tests/auth.rs"], None),
    );
    run.run(EventKind::GateStarted {
        command: "cargo test".into(),
    });
    browser
        .wait_for("#gate li.gate[data-state='running']", secs(10))
        .await;
    run.run(EventKind::GateFinished {
        command: "cargo test".into(),
        passed: true,
        exit_code: Some(0),
        duration_ms: 5400,
        tests_passed: Some(42),
        tests_failed: Some(0),
    });
    run.run(EventKind::ApplyFinished {
        target: "worktree".into(),
        files: vec!["src/models/user.rs".into(), "src/api/auth.rs".into()],
        conflicts: vec![],
        branch: Some("forge/run-live".into()),
        commit: Some("0123456789abcdef0123".into()),
        tasks: vec![],
    });
    run.run(Run::run_finished(RunStatus::Succeeded, 6, 0, 2));
    browser
        .wait_for("#run-phase[data-state='succeeded']", secs(10))
        .await;
    browser
        .wait_for_js(
            "document.querySelector('#gate .tests').textContent.includes('42 passed')",
            secs(5),
        )
        .await;
    assert_eq!(browser.count("tr.task[data-state='succeeded']").await, 6);
    assert_page_state_matches_server(&browser, &server).await;
    run.bus.close().unwrap();

    // 7. A finished run replays from its state; the token given as `#token=` is taken and
    // removed from the address.
    browser.js("sessionStorage.clear(); return true;").await;
    browser
        .open(&format!(
            "{origin}/?run=run-old#token={}",
            form_encode(TOKEN)
        ))
        .await;
    browser
        .wait_for("tr.task[data-task='guide'][data-state='failed']", secs(10))
        .await;
    browser
        .wait_for("#run-phase[data-state='failed']", secs(5))
        .await;
    assert_eq!(browser.js("return location.hash;").await, "");
    assert_eq!(
        browser.js("return window.forgeDashboard.hasToken();").await,
        true
    );
    // Back to the list: the live run is now listed as succeeded, with its conflicts.
    browser
        .client()
        .find(fantoccini::Locator::Css("#home"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for(
            "tr.run[data-run='run-live'][data-state='succeeded']",
            secs(10),
        )
        .await;
    let conflicts = browser
        .js("return document.querySelector(\"tr.run[data-run='run-live']\").children[6].textContent;")
        .await;
    assert_eq!(conflicts, "2");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let outside = browser.requests_outside(&origin).await;
    assert!(outside.is_empty(), "requests to other hosts: {outside:?}");

    // 8. The server goes away and comes back with another token: the page of the finished run
    // does not reconnect, and opened again asks for the new token.
    browser
        .client()
        .find(fantoccini::Locator::Css("tr.run[data-run='run-live'] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'live'",
            secs(10),
        )
        .await;
    server.shutdown();
    wait_until_not_live(&browser).await;
    // The run is finished: its page says so instead of reconnecting.
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'done'",
            secs(10),
        )
        .await;
    let server = serve_at(addr, &runs, ServeOptions::default().token("another")).await;
    // Opened again, it asks for the new token instead of failing without a word.
    browser.open(&format!("{origin}/?run=run-live")).await;
    browser.wait_for("#token-form", secs(15)).await;
    browser
        .wait_for("#token-input", secs(5))
        .await
        .send_keys("another")
        .await
        .unwrap();
    browser
        .client()
        .find(fantoccini::Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#run-phase[data-state='succeeded']", secs(10))
        .await;
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'live'",
            secs(10),
        )
        .await;
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().all(|e| e.message.contains("401")
            || e.message.contains("net::ERR_CONNECTION_REFUSED")
            || e.message.contains("net::ERR_INCOMPLETE_CHUNKED_ENCODING")),
        "console errors: {errors:?}"
    );
    let outside = browser.requests_outside(&origin).await;
    assert!(outside.is_empty(), "requests to other hosts: {outside:?}");
    browser.close().await;
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_folds_an_interrupted_and_resumed_run_like_the_server() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".forge/runs");
    let run = Run::open(&runs, "run-live");
    run.run(Run::started("stop", 2));
    run.task("a", Run::queued(&[]));
    run.task("b", Run::queued(&[]));
    run.task("b", Run::attempt(1));
    run.task("b", Run::finished(TaskStatus::Succeeded, 5, &[], None));
    run.task("a", Run::attempt(1));
    // Ctrl-C: `a` is stopped; the run is resumed a moment later and `a` runs again.
    run.task(
        "a",
        Run::finished(TaskStatus::Cancelled, 10, &[], Some("stopped")),
    );
    run.run(Run::run_finished(RunStatus::Cancelled, 1, 0, 0));
    std::thread::sleep(Duration::from_millis(30));
    run.run(Run::started("stop", 2));
    run.task("a", Run::attempt(2));
    run.task("a", Run::finished(TaskStatus::Succeeded, 7, &[], None));
    run.run(Run::run_finished(RunStatus::Succeeded, 2, 0, 0));
    let server = serve(&runs, ServeOptions::default().token(TOKEN)).await;
    let origin = format!("http://{}", server.local_addr());
    browser
        .open(&format!(
            "{origin}/?run=run-live#token={}",
            form_encode(TOKEN)
        ))
        .await;
    browser
        .wait_for(
            "#run-phase[data-state='succeeded']",
            Duration::from_secs(10),
        )
        .await;
    let state = RunState::from_journal(runs.join("run-live/events.jsonl")).unwrap();
    assert_eq!(state.task("a").unwrap().interrupted, 1);
    assert_page_state_matches_server(&browser, &server).await;
    run.bus.close().unwrap();
}

/// A cancelled task is neither done nor failed, a change a conflict dropped is not called
/// integrated, and long ids that differ at their end stay apart in the graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_tells_cancelled_dropped_and_long_named_tasks_apart() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let secs = Duration::from_secs;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".forge/runs");
    let run = Run::open(&runs, "run-live");
    let ids = [
        "task-with-a-longish-name-01",
        "task-with-a-longish-name-02",
        "task-with-a-longish-name-03",
    ];
    run.run(Run::started("long", 3));
    for id in ids {
        run.task(id, Run::queued(&[]));
    }
    // 01 is integrated; the same file from 02 meets it under `fail` and is dropped; 03 is
    // cancelled before it starts.
    run.task(ids[0], Run::attempt(1));
    run.task(ids[1], Run::attempt(1));
    run.task(
        ids[0],
        EventKind::MergeIntegrated {
            files: vec![forge_events::RepoPath::new("notes.txt").unwrap()],
        },
    );
    run.task(
        ids[0],
        Run::finished(TaskStatus::Succeeded, 500, &["notes.txt"], None),
    );
    run.run(Run::conflict("notes.txt", &ids[..2], "fail", false));
    run.task(ids[1], EventKind::MergeIntegrated { files: vec![] });
    run.task(
        ids[1],
        Run::finished(TaskStatus::Succeeded, 600, &["notes.txt"], None),
    );
    run.task(
        ids[2],
        Run::finished(TaskStatus::Cancelled, 0, &[], Some("the run was cancelled")),
    );
    run.run(EventKind::RunFinished {
        status: RunStatus::Cancelled,
        summary: RunSummary {
            succeeded: 2,
            cancelled: 1,
            conflicts: 1,
            duration_ms: 700,
            ..RunSummary::default()
        },
    });
    let server = serve(&runs, ServeOptions::default().token(TOKEN)).await;
    let origin = format!("http://{}", server.local_addr());

    // The runs list: cancelled, not failed.
    browser
        .open(&format!("{origin}/#token={}", form_encode(TOKEN)))
        .await;
    browser
        .wait_for(
            "tr.run[data-run='run-live'][data-state='cancelled']",
            secs(10),
        )
        .await;
    let cell = browser
        .js("return document.querySelector(\"tr.run[data-run='run-live'] .tasks-cell\").textContent;")
        .await;
    assert_eq!(cell, "2/3 · 1 cancelled");

    // The run page.
    browser.open(&format!("{origin}/?run=run-live")).await;
    browser
        .wait_for("tr.task[data-state='cancelled']", secs(10))
        .await;
    let head = browser
        .js("return document.querySelector('.progress').textContent;")
        .await;
    assert!(
        head.as_str().unwrap().contains("2/3 tasks · 1 cancelled"),
        "{head}"
    );
    let lost = format!("tr.task[data-task='{}'] td.activity.lost", ids[1]);
    browser.wait_for(&lost, secs(5)).await;
    let text = browser
        .js(&format!(
            "return document.querySelector(\"{lost}\").textContent;"
        ))
        .await;
    assert_eq!(
        text,
        "1 file changed, 0 integrated; not integrated: notes.txt"
    );
    assert_eq!(
        browser
            .count(&format!("tr.task[data-task='{}'] td.activity.lost", ids[0]))
            .await,
        0
    );
    let labels = browser
        .js("return Array.from(document.querySelectorAll('svg.dag g.node')).map(n => n.querySelector('text').textContent);")
        .await;
    let labels: Vec<&str> = labels
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 3, "{labels:?}");
    for (label, n) in labels.iter().zip(["01", "02", "03"]) {
        assert!(label.contains('…') && label.ends_with(n), "{labels:?}");
        assert!(label.chars().count() <= 19, "{labels:?}");
    }
    assert_page_state_matches_server(&browser, &server).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    run.bus.close().unwrap();
}

/// A task added while the page watches (`forge add`) joins its table and its total, folded
/// from the live stream as the server folds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_folds_a_task_added_while_it_watches() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let secs = Duration::from_secs;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join(".forge/runs");
    let run = Run::open(&runs, "run-live");
    run.run(Run::started("grow", 1));
    run.task("a", Run::queued(&[]));
    run.task("a", Run::attempt(1));
    let server = serve(&runs, ServeOptions::default().token(TOKEN)).await;
    let origin = format!("http://{}", server.local_addr());
    browser
        .open(&format!(
            "{origin}/?run=run-live#token={}",
            form_encode(TOKEN)
        ))
        .await;
    browser
        .wait_for("tr.task[data-task='a'][data-state='running']", secs(10))
        .await;
    run.task(
        "late",
        EventKind::TaskAdded {
            prompt: "Document it".into(),
            agent: "sim".into(),
            reads: vec![],
            writes: vec!["docs/**".into()],
            appends: vec![],
            after: vec![tid("a")],
        },
    );
    run.task("late", Run::queued(&["a"]));
    browser
        .wait_for("tr.task[data-task='late'][data-state='queued']", secs(10))
        .await;
    assert_page_state_matches_server(&browser, &server).await;
    run.task("a", Run::finished(TaskStatus::Succeeded, 5, &[], None));
    run.task("late", Run::attempt(1));
    run.task("late", Run::finished(TaskStatus::Succeeded, 5, &[], None));
    run.run(Run::run_finished(RunStatus::Succeeded, 2, 0, 0));
    browser
        .wait_for("#run-phase[data-state='succeeded']", secs(10))
        .await;
    assert_page_state_matches_server(&browser, &server).await;
    let total = browser
        .js("return window.forgeDashboard.state().counts.total;")
        .await;
    assert_eq!(total, 2);
    run.bus.close().unwrap();
}

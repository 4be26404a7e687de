//! The dashboard does things, in headless Chromium against the real `forge serve` (loopback,
//! no token): a finished run's page says so, shows a task's transcript and diff, and applies
//! chosen tasks; a running run is aborted from its page; a form on another site posting to the
//! apply route is refused. The journal proves each action. Skipped (with a note) when Chromium
//! is not installed, unless `FORGE_REQUIRE_BROWSER=1`.

use std::io::{Read as _, Write as _};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Repo, json_lines, task, wait_until};

use crate::dashboard::browser;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(repo: &Repo, port: u16) -> Child {
    let bind = format!("127.0.0.1:{port}");
    let child = repo
        .cmd(&["serve", "--bind", &bind])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(&bind).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "forge serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn journal(repo: &Repo, run: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(
        repo.path()
            .join(".forge/runs")
            .join(run)
            .join("events.jsonl"),
    )
    .unwrap();
    json_lines(&text)
}

fn of_type(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

/// A page on another site (another origin): a form that posts to `target` as soon as it loads.
fn other_site(target: String) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let page = format!(
            "<!doctype html><form id=f method=post enctype=text/plain action=\"{target}\">\
             <input name='{{\"tasks\":[\"a\"],\"x\":\"' value='\"}}'></form>\
             <script>document.getElementById('f').submit()</script>"
        );
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
    });
    (port, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one story: open, review, refuse, apply, abort
async fn dashboard_reviews_applies_and_aborts_runs() {
    let Some(browser) = browser::Browser::launch().await else {
        return;
    };
    let secs = Duration::from_secs;
    let repo = Repo::new();
    let plan = repo.plan(
        "two",
        &format!(
            "name = \"two\"\n{}{}",
            task(
                "a",
                "writes = [\"a/**\"]",
                "say Writing a\nwrite a/x\nx\nend"
            ),
            task("b", "writes = [\"b/**\"]", "write b/y\ny\nend"),
        ),
    );
    repo.forge(&["run", &plan, "--no-apply"]).expect(0);
    let done = repo.runs()[0].clone();
    let port = free_port();
    let mut server = serve(&repo, port);
    let origin = format!("http://127.0.0.1:{port}");

    // A finished run: the page says so, and offers to apply its succeeded tasks.
    browser.open(&format!("{origin}/?run={done}")).await;
    browser.wait_for("#run-finished", secs(10)).await;
    let note: Value = browser
        .js("return document.getElementById('run-finished').textContent;")
        .await;
    assert!(
        note.as_str().unwrap().contains("has finished (succeeded)"),
        "{note}"
    );
    browser
        .wait_for("#apply-form input[data-task='b']", secs(5))
        .await;

    // A task's transcript and diff.
    browser
        .wait_for("tr.task[data-task='a']", secs(5))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for_js(
            "(() => { const t = document.querySelector('#transcript .t-tool[data-status=\"ok\"] .t-head');\
             return !!t && t.textContent.includes('a/x (+1)'); })()",
            secs(10),
        )
        .await;
    let text: Value = browser
        .js("return document.getElementById('transcript').textContent;")
        .await;
    assert!(text.as_str().unwrap().contains("Writing a"), "{text}");
    browser
        .js("const s = document.getElementById('log-view'); s.value = 'diff'; s.dispatchEvent(new Event('change')); return null;")
        .await;
    browser
        .wait_for_js(
            "(() => { const d = document.getElementById('diff-text'); return !!d && d.textContent.includes('+x'); })()",
            secs(10),
        )
        .await;

    // Another site's form posting to the apply route is refused, and nothing is applied.
    let (evil, evil_server) = other_site(format!("{origin}/api/runs/{done}/apply"));
    browser.open(&format!("http://127.0.0.1:{evil}/")).await;
    browser
        .wait_for_js(
            "document.body && document.body.textContent.includes('cross-site request refused')",
            secs(10),
        )
        .await;
    evil_server.join().unwrap();
    assert!(of_type(&journal(&repo, &done), "apply_finished").is_empty());
    assert!(!repo.path().join("a/x").exists());
    // The same from a client that says it comes from elsewhere, without a browser.
    let refused = reqwest::Client::new()
        .post(format!("{origin}/api/runs/{done}/apply"))
        .header("Origin", "http://evil.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Apply only `a` from the page: the journal records it, the working tree has it.
    browser.open(&format!("{origin}/?run={done}")).await;
    browser
        .wait_for("#apply-form input[data-task='b']", secs(10))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#apply", secs(5))
        .await
        .click()
        .await
        .unwrap();
    wait_until(30, "the apply to reach the journal", || {
        !of_type(&journal(&repo, &done), "apply_finished").is_empty()
    });
    let applied = of_type(&journal(&repo, &done), "apply_finished");
    assert_eq!(applied[0]["tasks"], serde_json::json!(["a"]), "{applied:?}");
    assert_eq!(repo.read("a/x"), "x\n");
    assert!(!repo.path().join("b/y").exists());
    browser.wait_for("#apply li.applied", secs(10)).await;

    // A running run is aborted from its page.
    let slow = repo.plan(
        "slow",
        &format!(
            "name = \"slow\"\n{}",
            task(
                "wait",
                "writes = [\"w/**\"]",
                "say Waiting\nsleep 120s\nwrite w/z\nz\nend"
            )
        ),
    );
    let mut run = repo
        .cmd(&["run", &slow, "--no-apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = String::new();
    wait_until(30, "the slow run to start", || {
        let runs = repo.runs();
        match runs.iter().find(|r| **r != done) {
            Some(id) => {
                running.clone_from(id);
                journal(&repo, id)
                    .iter()
                    .any(|e| e["type"] == "task_started")
            }
            None => false,
        }
    });
    browser.open(&format!("{origin}/?run={running}")).await;
    browser
        .wait_for("tr.task[data-task='wait'][data-state='running']", secs(10))
        .await;
    browser
        .wait_for("#abort", secs(5))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#run-phase[data-state='cancelled']", secs(30))
        .await;
    assert_eq!(run.wait().unwrap().code(), Some(130));
    let finished = of_type(&journal(&repo, &running), "run_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["status"], "cancelled", "{finished:?}");
    browser.wait_for("#run-finished", secs(10)).await;

    // The run is over: when the server goes away, the page says the run finished instead of
    // reconnecting.
    server.kill().unwrap();
    server.wait().unwrap();
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'done'",
            secs(20),
        )
        .await;
    let stats: Value = browser.js("return window.forgeDashboard.stats();").await;
    assert_eq!(stats["connects"], 1, "{stats}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_retries_a_failed_task_with_added_instructions() {
    let Some(browser) = browser::Browser::launch().await else {
        return;
    };
    let secs = Duration::from_secs;
    let repo = Repo::new();
    let plan = repo.plan(
        "flaky",
        &format!(
            "name = \"flaky\"\n{}",
            task(
                "a",
                "writes = [\"a/**\"]\nretries = 0",
                "fail-on-attempt 1 7\nwrite a/x\nx\nend"
            ),
        ),
    );
    repo.forge(&["run", &plan, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();
    let port = free_port();
    let mut server = serve(&repo, port);
    let origin = format!("http://127.0.0.1:{port}");
    browser.open(&format!("{origin}/?run={run}")).await;
    browser
        .wait_for("tr.task[data-task='a'][data-state='failed']", secs(10))
        .await;
    browser
        .wait_for("#retry-prompt", secs(5))
        .await
        .send_keys("Mind the edge case.")
        .await
        .unwrap();
    browser
        .wait_for("#retry", secs(5))
        .await
        .click()
        .await
        .unwrap();
    // The retry is journaled with the instructions, and the page follows it to its end.
    browser
        .wait_for("tr.task[data-task='a'][data-state='succeeded']", secs(60))
        .await;
    let requested = of_type(&journal(&repo, &run), "task_retry_requested");
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(requested[0]["task"], "a");
    assert!(
        requested[0].to_string().contains("Mind the edge case."),
        "{requested:?}"
    );
    // Not applied: the retry ran with --no-apply.
    assert!(!repo.path().join("a/x").exists());
    server.kill().unwrap();
    server.wait().unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_settles_a_conflict_between_tasks() {
    let Some(browser) = browser::Browser::launch().await else {
        return;
    };
    let secs = Duration::from_secs;
    let repo = Repo::new();
    repo.write("notes.txt", "start\n");
    let plan = repo.plan(
        "clash",
        &format!(
            "name = \"clash\"\n{}{}[merge]\n\"notes.txt\" = \"fail\"\n",
            // Both run at once (the sleeps outlast staging), so their appends meet.
            task(
                "a",
                "appends = [\"notes.txt\"]",
                "sleep 800ms\nappend notes.txt from a"
            ),
            task(
                "b",
                "appends = [\"notes.txt\"]",
                "sleep 800ms\nappend notes.txt from b"
            ),
        ),
    );
    repo.forge(&["run", &plan, "--no-apply"]).expect(3);
    let run = repo.runs()[0].clone();
    let result: Value =
        serde_json::from_str(&repo.read(&format!(".forge/runs/{run}/result.json"))).unwrap();
    let theirs = result["conflicts"][0]["tasks"][1]
        .as_str()
        .unwrap()
        .to_owned();
    let port = free_port();
    let mut server = serve(&repo, port);
    let origin = format!("http://127.0.0.1:{port}");
    browser.open(&format!("{origin}/?run={run}")).await;
    browser.wait_for("#apply-conflicts", secs(10)).await;
    browser
        .js("const s = document.getElementById('apply-conflicts'); s.value = 'theirs'; s.dispatchEvent(new Event('change')); return null;")
        .await;
    browser
        .wait_for("#apply", secs(5))
        .await
        .click()
        .await
        .unwrap();
    wait_until(30, "the apply to reach the journal", || {
        !of_type(&journal(&repo, &run), "apply_finished").is_empty()
    });
    // The set-aside task's lines were taken where the two clash.
    assert_eq!(repo.read("notes.txt"), format!("start\nfrom {theirs}\n"));
    server.kill().unwrap();
    server.wait().unwrap();
    browser.close().await;
}

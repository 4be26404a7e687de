//! The dashboard in headless Chromium, served by the real `forge serve` while the real
//! `forge run` runs a `sim` plan: rows appear and change state live, a merge conflict shows up,
//! and after `forge serve` restarts the page goes on where it left off. Skipped (with a note)
//! when Chromium is not installed, unless `FORGE_REQUIRE_BROWSER=1`.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::Repo;

#[path = "../../../forge-events/tests/browser/mod.rs"]
pub(crate) mod browser;

const TOKEN: &str = "s3cret-dashboard-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `forge serve` on `port`, up and answering.
fn serve(repo: &Repo, port: u16) -> Child {
    let bind = format!("127.0.0.1:{port}");
    let child = repo
        .cmd(&["serve", "--bind", &bind, "--token", TOKEN])
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

fn script(lines: &[&str]) -> String {
    format!("'''\n```forge-sim\n{}\n```\n'''", lines.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_a_real_run_across_a_server_restart() {
    let Some(browser) = browser::Browser::launch().await else {
        return;
    };
    let repo = Repo::new();
    repo.write("CHANGELOG.md", "# Changes\nunreleased\n");
    let plan = repo.plan(
        "dash",
        &format!(
            "name = \"dash\"\nconcurrency = 3\n[defaults]\nagent = \"sim\"\n\
             [merge]\n\"CHANGELOG.md\" = \"fail\"\n\
             [[task]]\nid = \"models\"\nwrites = [\"models/**\"]\nprompt = {}\n\
             [[task]]\nid = \"backend\"\nafter = [\"models\"]\nwrites = [\"api/**\"]\nprompt = {}\n\
             [[task]]\nid = \"one\"\nappends = [\"CHANGELOG.md\"]\nprompt = {}\n\
             [[task]]\nid = \"two\"\nappends = [\"CHANGELOG.md\"]\nprompt = {}\n",
            script(&[
                "say modelling",
                "sleep 1500ms",
                "write models/user.rs",
                "pub struct User;",
                "end"
            ]),
            script(&[
                "say serving",
                "sleep 3s",
                "write api/auth.rs",
                "pub fn login() {}",
                "end"
            ]),
            script(&["append CHANGELOG.md - one", "sleep 300ms"]),
            script(&["sleep 800ms", "append CHANGELOG.md - two"]),
        ),
    );
    let port = free_port();
    let mut server = serve(&repo, port);
    let mut run = repo
        .cmd(&["run", &plan, "--no-apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The run id, once the run store has it.
    let start = Instant::now();
    let run_id = loop {
        let dir = repo.path().join(".forge/runs");
        if let Some(id) = std::fs::read_dir(&dir)
            .ok()
            .and_then(|mut d| d.find_map(Result::ok))
            .filter(|e| e.path().join("events.jsonl").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
        {
            break id;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no run appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    let origin = format!("http://127.0.0.1:{port}");
    browser
        .open(&format!("{origin}/?run={run_id}&token={TOKEN}"))
        .await;
    let secs = Duration::from_secs;
    // The token in the address was taken into the cookie and dropped from the address (the
    // server redirected); the page and its event stream go on with the cookie.
    let address: Value = browser.js("return location.href;").await;
    assert_eq!(address, format!("{origin}/?run={run_id}"));
    // Rows appear and change state live.
    browser
        .wait_for(
            "tr.task[data-task='models'][data-state='running']",
            secs(20),
        )
        .await;
    browser
        .wait_for("tr.task[data-task='backend'][data-state='queued']", secs(5))
        .await;
    // The plan preview came with the run: its critical path, and no estimate to show yet
    // (this repository has no earlier runs and the plan no `estimate` keys).
    let path: Value = browser
        .js("return window.forgeDashboard.state().preview.critical_path;")
        .await;
    assert_eq!(path, serde_json::json!(["models", "backend"]));
    let estimate: Value = browser
        .js("return document.querySelector(\"[data-stat='estimate'] .v\").textContent;")
        .await;
    assert_eq!(estimate, "unknown");
    browser
        .wait_for(
            "tr.task[data-task='models'][data-state='succeeded']",
            secs(20),
        )
        .await;
    browser
        .wait_for(
            "tr.task[data-task='backend'][data-state='running']",
            secs(20),
        )
        .await;
    // The same line edited by two tasks under `fail`: an unresolved conflict naming the path.
    browser
        .wait_for(
            "#conflicts li.conflict[data-path='CHANGELOG.md'][data-resolved='false']",
            secs(20),
        )
        .await;
    // The server restarts while `backend` still runs; the page reconnects and goes on.
    let before: Value = browser.js("return window.forgeDashboard.stats();").await;
    server.kill().unwrap();
    server.wait().unwrap();
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state !== 'live'",
            secs(10),
        )
        .await;
    let mut server = serve(&repo, port);
    browser
        .wait_for_js(
            "document.getElementById('conn').dataset.state === 'live'",
            secs(20),
        )
        .await;
    browser
        .wait_for(
            "tr.task[data-task='backend'][data-state='succeeded']",
            secs(30),
        )
        .await;
    assert!(
        run.wait().unwrap().code() == Some(3),
        "unresolved conflict: exit 3"
    );
    // The page's fold ends equal to the journal's, every event once.
    let journal = std::fs::read_to_string(
        repo.path()
            .join(".forge/runs")
            .join(&run_id)
            .join("events.jsonl"),
    )
    .unwrap();
    let last_seq = journal.lines().count();
    browser
        .wait_for_js(
            &format!(
                "window.forgeDashboard.state() && window.forgeDashboard.state().last_seq === {last_seq}"
            ),
            secs(20),
        )
        .await;
    let after: Value = browser.js("return window.forgeDashboard.stats();").await;
    assert_eq!(after["duplicates"], 0, "{after}");
    assert_eq!(after["skipped"], 0, "{after}");
    assert!(
        after["applied"].as_u64().unwrap() > before["applied"].as_u64().unwrap(),
        "events arrived after the restart: {before} -> {after}"
    );
    // The page loaded the state up to `from - 1`, then streamed the rest: each event once.
    let from = after["from"][0].as_u64().unwrap();
    assert_eq!(
        after["applied"].as_u64().unwrap(),
        last_seq as u64 + 1 - from,
        "{after}"
    );
    browser
        .wait_for(
            "tr.task[data-task='two'], tr.task[data-task='one']",
            secs(5),
        )
        .await;
    let shot = browser.screenshot("dashboard-forge-serve.png").await;
    assert!(shot.exists());
    // No requests elsewhere; no console errors but the expected ones of the outage.
    assert!(browser.requests_outside(&origin).await.is_empty());
    let errors: Vec<_> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| {
            !(e.message.contains("ERR_CONNECTION_REFUSED")
                || e.message.contains("net::ERR")
                || e.message.contains("EventSource"))
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    server.kill().unwrap();
    server.wait().unwrap();
    browser.close().await;
}

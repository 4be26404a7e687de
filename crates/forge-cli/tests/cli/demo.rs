//! `forge demo` end to end, and `forge serve` / `forge run --serve`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Stdio;

use crate::util::{Repo, Run, forge_cmd, interrupt, task};

#[test]
fn the_demo_runs_gates_and_applies() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("demo");
    let out = Run::from(
        forge_cmd()
            .args(["demo", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap(),
    )
    .expect(0);
    for want in [
        "docs: waiting for locks held by tests",
        "tests: retrying: attempt 2",
        "merge conflict in CHANGELOG.md between frontend and backend: resolved by union",
        "gate: sh test.sh passed",
        "✓ Gate: sh test.sh — 10/10 passed",
        "✓ 5 tasks, ",
        "Applied to the working tree",
        "Where to look:",
    ] {
        assert!(out.stdout.contains(want), "{want}:\n{}", out.stdout);
    }
    let changelog = std::fs::read_to_string(dir.join("CHANGELOG.md")).unwrap();
    assert!(
        changelog.contains("- Backend: ") && changelog.contains("- Frontend: "),
        "{changelog}"
    );
    assert!(dir.join("src/auth/auth.sh").is_file());
    let tests = std::process::Command::new("sh")
        .arg("test.sh")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(tests.status.success());
    assert!(String::from_utf8_lossy(&tests.stdout).contains("10 passed, 0 failed"));
    // A second demo needs an empty directory.
    let again = Run::from(
        forge_cmd()
            .args(["demo", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_answers_for_the_runs_of_the_repository() {
    let repo = Repo::new();
    let file = repo.plan(
        "one",
        &task("a", "writes = [\"a/**\"]", "write a/x\nx\nend"),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    let mut child = repo
        .cmd(&["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split([' ', '/'])
        .next()
        .unwrap()
        .to_owned();
    let list = get(&addr, "/api/runs");
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    assert!(list.contains(&run), "{list}");
    let state = get(&addr, &format!("/api/runs/{run}"));
    assert!(state.contains("\"phase\":\"succeeded\""), "{state}");
    interrupt(child.id());
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let out = repo.forge(&["serve", "--bind", "0.0.0.0:0"]).expect(2);
    assert!(out.stderr.contains("without a token"), "{}", out.stderr);
}

#[test]
fn run_serve_streams_the_run_while_it_goes() {
    let repo = Repo::new();
    let file = repo.plan(
        "served",
        &task(
            "a",
            "writes = [\"a/**\"]",
            "say Working\nsleep 1500ms\nwrite a/x\nx\nend",
        ),
    );
    let mut child = repo
        .cmd(&["run", &file, "--no-apply", "--serve=127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("Dashboard: http://127.0.0.1:"), "{line}");
    let addr = line["Dashboard: http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let list = get(&addr, "/api/runs");
    assert!(
        list.starts_with("HTTP/1.1 200") && list.contains("served-"),
        "{list}"
    );
    // When the run is over the page keeps its server, with the final state, until Ctrl-C.
    let mut said = String::new();
    while !said.contains("the dashboard stays up at") {
        let mut next = String::new();
        assert!(stderr.read_line(&mut next).unwrap() > 0, "{said}");
        said.push_str(&next);
    }
    assert!(said.contains("until you press Ctrl-C"), "{said}");
    let run = repo.runs()[0].clone();
    let state = get(&addr, &format!("/api/runs/{run}"));
    assert!(state.contains("\"phase\":\"succeeded\""), "{state}");
    interrupt(child.id());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

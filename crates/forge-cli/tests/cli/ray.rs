//! Attempts on a real Ray cluster (two nodes on loopback, started per test by
//! `forge_testkit::ray`): the same applied tree as the local runner, live output, each task on
//! the node its resources name, a dependency's work seen on another node. They skip when Ray is
//! not installed, and fail instead when `FORGE_REQUIRE_RAY=1` (CI).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;

use forge_testkit::ray::{NodeSpec, RayCluster, require};
use serde_json::json;

use crate::util::Repo;

/// Every file under `dir` but `.git` and `.forge`: content and exec bit.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, bool)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel == ".git" || rel == ".forge" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    rel,
                    (
                        std::fs::read(&p).unwrap(),
                        meta.permissions().mode() & 0o111 != 0,
                    ),
                );
            }
        }
    }
    out
}

fn plan(go: &Path) -> String {
    let go = go.display();
    format!(
        r#"name = "cluster"

[[task]]
id = "first"
agent = "shell"
writes = ["a.txt"]
resources = {{ head = 1 }}
prompt = '''
echo waiting-for-go
i=0
while [ ! -f {go} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -f {go} ] || exit 7
printf 'from the head\n' > a.txt
'''

[[task]]
id = "second"
agent = "shell"
after = ["first"]
reads = ["a.txt"]
writes = ["b.txt", "README.md"]
resources = {{ second = 1 }}
prompt = '''
cat a.txt > b.txt
echo 'and the second node' >> b.txt
printf '# changed\n' > README.md
chmod +x b.txt
'''
"#
    )
}

#[test]
fn tasks_pinned_to_two_nodes_stream_live_and_apply_the_same_tree_as_the_local_runner() {
    let Some(ray) = require() else { return };
    let cluster = RayCluster::start(
        &ray,
        &[
            NodeSpec::new(json!({"head": 1})),
            NodeSpec::new(json!({"second": 1})),
        ],
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let go = scratch.path().join("go");

    // The local runner's result, the reference.
    let local = Repo::new();
    let file = local.plan("cluster", &plan(&go));
    std::fs::write(&go, "").unwrap();
    local.forge(&["run", &file, "--yes"]).expect(0);
    std::fs::remove_file(&go).unwrap();

    let repo = Repo::new();
    let file = repo.plan("cluster", &plan(&go));
    repo.write(
        "forge.toml",
        &format!(
            "[runner]\nkind = \"ray\"\naddress = \"{}\"\nforge = \"{}\"\nenv = {{ FORGE_NODE_CACHE = \"{}\" }}\n",
            cluster.dashboard_url(),
            env!("CARGO_BIN_EXE_forge"),
            scratch.path().join("cache").display()
        ),
    );
    repo.commit("forge.toml");
    let mut child = repo
        .cmd(&["run", &file, "--yes", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    // Live: the first task's output arrives while it still waits for the go file (which only
    // this test creates, after seeing that line); were output not live, it would never come.
    let mut events = Vec::new();
    for event in &rx {
        let seen = event["type"] == "task_output"
            && event["task"] == "first"
            && event["line"]
                .as_str()
                .is_some_and(|l| l.contains("waiting-for-go"));
        assert_ne!(event["type"], "task_finished", "{event}");
        events.push(event);
        if seen {
            break;
        }
    }
    assert!(
        !events.is_empty() && events.last().unwrap()["type"] == "task_output",
        "the output never came: {events:?}"
    );
    std::fs::write(&go, "").unwrap();
    events.extend(rx.iter());
    reader.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{events:#?}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each task ran on the node its resources name.
    let on_node = |task: &str| -> String {
        events
            .iter()
            .filter(|e| e["type"] == "task_progress" && e["task"] == task)
            .filter_map(|e| e["message"].as_str())
            .find(|m| m.starts_with("on Ray node "))
            .unwrap_or_else(|| panic!("no node for {task}: {events:#?}"))
            .to_owned()
    };
    assert!(
        on_node("first").starts_with("on Ray node 127.0.0.2 "),
        "{}",
        on_node("first")
    );
    assert!(
        on_node("second").starts_with("on Ray node 127.0.0.3 "),
        "{}",
        on_node("second")
    );
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "task_started")
        .filter_map(|e| e["strategy"].as_str())
        .collect();
    assert_eq!(started, ["ray", "ray"]);

    // The dependency's work was there on the other node, and the applied tree is the local
    // runner's, byte for byte (exec bits too).
    assert_eq!(repo.read("b.txt"), "from the head\nand the second node\n");
    let mut ours = tree(repo.path());
    ours.remove("forge.toml");
    assert_eq!(ours, tree(local.path()));
}

#[test]
fn an_unreachable_cluster_is_a_clear_error_before_anything_starts() {
    let repo = Repo::new();
    let file = repo.plan(
        "one",
        "[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"echo hi > a.txt\"\n",
    );
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = repo.forge(&[
        "run",
        &file,
        "--yes",
        "--runner",
        &format!("ray://127.0.0.1:{port}"),
    ]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "the Ray cluster at http://127.0.0.1:{port} is unreachable"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("started attempt"), "{}", out.stdout);
    assert!(!repo.path().join("a.txt").exists());

    let bad = repo.forge(&["run", &file, "--runner", "ray:/nowhere"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--runner ray:/nowhere"),
        "{}",
        bad.stderr
    );
}

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
git rev-parse --is-inside-work-tree > /dev/null || exit 9
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

[[task]]
id = "third"
agent = "shell"
after = ["second"]
reads = ["b.txt"]
writes = ["c.txt"]
resources = {{ head = 1 }}
prompt = "cat b.txt README.md > c.txt"
"#
    )
}

/// The node of each task is an event of its own (`task_placed`), folded into the state that
/// `forge status` (table and `--json`) and the summary show.
fn nodes_are_shown(repo: &Repo, events: &[serde_json::Value]) {
    let placed: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "task_placed")
        .map(|e| {
            assert_eq!(e["attempt"], 1, "{e}");
            (
                e["task"].as_str().unwrap().to_owned(),
                e["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (task, ip) in [
        ("first", "127.0.0.2"),
        ("second", "127.0.0.3"),
        ("third", "127.0.0.2"),
    ] {
        assert!(
            placed.iter().any(|(t, n)| t == task && n == ip),
            "{task} on {ip}: {placed:?}"
        );
    }
    let run = repo.runs().remove(0);
    let status = repo.forge(&["status", &run, "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let state: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let node_of = |task: &str| {
        state["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == task)
            .map(|t| t["node"].clone())
            .unwrap()
    };
    assert_eq!(node_of("first"), "127.0.0.2", "{state:#}");
    assert_eq!(node_of("second"), "127.0.0.3", "{state:#}");
    let table = repo.forge(&["status", &run]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(" second "))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(row.contains("shell  127.0.0.3  "), "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains("On nodes 127.0.0.2 (first and third) · 127.0.0.3 (second)"),
        "{}",
        table.stdout
    );
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
    // Outside `/tmp`: an attempt on this machine has its own.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let go = scratch.path().join("go");

    // The local runner's result, the reference.
    let local = Repo::new();
    let file = local.plan("cluster", &plan(&go));
    std::fs::write(&go, "").unwrap();
    local.forge(&["run", &file, "--yes"]).expect(0);
    std::fs::remove_file(&go).unwrap();

    let repo = Repo::new();
    let file = repo.plan("cluster", &plan(&go));
    ray_toml(&repo, &cluster);
    let (child, rx, reader) = spawn_run(&repo, &["run", &file, "--yes", "--json"]);
    // Live: the first task's output arrives while it still waits for the go file (which only
    // this test creates, after seeing that line); were output not live, it would never come.
    let mut events = Vec::new();
    events_until(&rx, &mut events, |e| {
        assert_ne!(e["type"], "task_finished", "{e}");
        e["type"] == "task_output"
            && e["task"] == "first"
            && e["line"].as_str() == Some("waiting-for-go")
    });
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
    assert_eq!(started, ["ray", "ray", "ray"]);
    assert!(
        on_node("third").starts_with("on Ray node 127.0.0.2 "),
        "{}",
        on_node("third")
    );

    nodes_are_shown(&repo, &events);

    // Start trees ship incrementally: each node fetches only the blobs its cache lacks. The
    // head, back for `third`, already holds the base and what `first` made there.
    let fetched = |task: &str| -> String {
        events
            .iter()
            .filter(|e| e["type"] == "task_output" && e["task"] == task)
            .filter_map(|e| e["line"].as_str())
            .find(|l| l.starts_with("forge attempt on "))
            .unwrap_or_else(|| panic!("no shipping line for {task}: {events:#?}"))
            .to_owned()
    };
    assert!(
        fetched("first").contains("fetched 4 blob(s) for the 4 path(s)"),
        "{}",
        fetched("first")
    );
    assert!(
        fetched("second").contains("fetched 5 blob(s) for the 5 path(s)"),
        "{}",
        fetched("second")
    );
    assert!(
        fetched("third").contains("fetched 2 blob(s) for the 6 path(s)"),
        "{}",
        fetched("third")
    );

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

/// Spawns `forge <args>` and returns the child and its `--json` events as they come.
fn spawn_run(
    repo: &Repo,
    args: &[&str],
) -> (
    std::process::Child,
    mpsc::Receiver<serde_json::Value>,
    std::thread::JoinHandle<()>,
) {
    let mut child = repo
        .cmd(args)
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
    (child, rx, reader)
}

/// Events from `rx` until one for which `stop` holds (kept); panics if the stream ends first.
fn events_until(
    rx: &mpsc::Receiver<serde_json::Value>,
    events: &mut Vec<serde_json::Value>,
    mut stop: impl FnMut(&serde_json::Value) -> bool,
) {
    for event in rx {
        let done = stop(&event);
        events.push(event);
        if done {
            return;
        }
    }
    panic!("the run ended first: {events:#?}");
}

fn ray_toml(repo: &Repo, cluster: &RayCluster) {
    repo.write(
        "forge.toml",
        &format!(
            "[runner]\nkind = \"ray\"\naddress = \"{}\"\nforge = \"{}\"\n",
            cluster.dashboard_url(),
            env!("CARGO_BIN_EXE_forge"),
        ),
    );
    repo.commit("forge.toml");
}

fn progress_on(events: &[serde_json::Value], ip: &str) -> bool {
    events.iter().any(|e| {
        e["type"] == "task_progress"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("on Ray node {ip} ")))
    })
}

#[test]
fn a_node_lost_mid_attempt_fails_it_and_the_retry_succeeds_on_the_head() {
    let Some(ray) = require() else { return };
    let mut cluster = RayCluster::start(
        &ray,
        &[
            NodeSpec::new(json!({"head": 1, "agent": 1})),
            NodeSpec::new(json!({"agent": 1})),
        ],
    )
    .unwrap();
    // The head's `agent` is taken by another job, so the first attempt lands on the second node.
    let (code, body) = cluster
        .post(
            "/api/jobs/",
            &json!({"submission_id": "blocker", "entrypoint": "sleep 600",
                    "entrypoint_resources": {"head": 1, "agent": 1}}),
        )
        .unwrap();
    assert_eq!(code, 200, "{body}");
    crate::util::wait_until(60, "the blocker job to run", || {
        cluster.job_status("blocker") == "RUNNING"
    });
    // Outside `/tmp`: an attempt on this machine has its own.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let go = scratch.path().join("go");
    let repo = Repo::new();
    let file = repo.plan(
        "lost",
        &format!(
            "[[task]]\nid = \"work\"\nagent = \"shell\"\nwrites = [\"out.txt\"]\nretries = 1\n\
             resources = {{ agent = 1 }}\nprompt = '''\necho waiting-for-go\ni=0\n\
             while [ ! -f {go} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n\
             [ -f {go} ] || exit 7\necho done > out.txt\n'''\n",
            go = go.display()
        ),
    );
    ray_toml(&repo, &cluster);
    let (child, rx, reader) = spawn_run(&repo, &["run", &file, "--yes", "--json"]);
    let mut events = Vec::new();
    events_until(&rx, &mut events, |e| {
        e["type"] == "task_output" && e["line"].as_str() == Some("waiting-for-go")
    });
    if !progress_on(&events, "127.0.0.3") {
        events_until(&rx, &mut events, |e| {
            e["type"] == "task_progress"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("on Ray node "))
        });
    }
    assert!(progress_on(&events, "127.0.0.3"), "{events:#?}");
    cluster.kill_node(1);
    let (code, body) = cluster.post("/api/jobs/blocker/stop", &json!({})).unwrap();
    assert_eq!(code, 200, "{body}");
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
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        text.contains("node lost: Ray node 127.0.0.3"),
        "{events:#?}"
    );
    assert!(progress_on(&events, "127.0.0.2"), "{events:#?}");
    assert_eq!(repo.read("out.txt"), "done\n");
}

#[test]
fn cancelling_a_run_stops_its_ray_job_and_the_agent_process() {
    let Some(ray) = require() else { return };
    let cluster = RayCluster::start(&ray, &[NodeSpec::new(json!({"head": 1}))]).unwrap();
    // Outside `/tmp`: an attempt on this machine has its own.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let pid_file = scratch.path().join("pid");
    let repo = Repo::new();
    let file = repo.plan(
        "cancel",
        &format!(
            "[[task]]\nid = \"long\"\nagent = \"shell\"\nprompt = '''\necho $$ > {}\necho started\nsleep 300\n'''\n",
            pid_file.display()
        ),
    );
    ray_toml(&repo, &cluster);
    let (child, rx, reader) = spawn_run(&repo, &["run", &file, "--no-apply", "--json"]);
    let mut events = Vec::new();
    events_until(&rx, &mut events, |e| {
        e["type"] == "task_output" && e["line"].as_str() == Some("started")
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let job = events
        .iter()
        .find(|e| e["type"] == "task_started")
        .and_then(|e| e["workspace"].as_str())
        .and_then(|w| w.strip_prefix("ray:"))
        .unwrap()
        .to_owned();
    crate::util::interrupt(child.id());
    events.extend(rx.iter());
    reader.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cluster.job_status(&job), "STOPPED");
    // The agent (its shell) is gone: no process, or only a zombie not yet reaped.
    crate::util::wait_until(30, "the agent's process to end", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    });
}

/// The Ray job of `task` (its `task_started`'s workspace is `ray:<job id>`) and its attempt.
fn job_of(events: &[serde_json::Value], task: &str) -> (String, u64) {
    events
        .iter()
        .find(|e| e["type"] == "task_started" && e["task"] == task)
        .map_or_else(
            || panic!("no task_started for {task}: {events:#?}"),
            |e| {
                (
                    e["workspace"]
                        .as_str()
                        .and_then(|w| w.strip_prefix("ray:"))
                        .unwrap()
                        .to_owned(),
                    e["attempt"].as_u64().unwrap(),
                )
            },
        )
}

#[test]
#[allow(clippy::too_many_lines)] // killed, then resumed: one story
fn resume_after_forge_was_killed_reattaches_to_running_jobs_and_retries_gone_ones() {
    let Some(ray) = require() else { return };
    let cluster = RayCluster::start(&ray, &[NodeSpec::new(json!({"head": 1}))]).unwrap();
    // Outside `/tmp`: an attempt on this machine has its own.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let go = scratch.path().join("go");
    let (kept_runs, gone_runs) = (scratch.path().join("kept"), scratch.path().join("gone"));
    let wait = format!(
        "i=0\nwhile [ ! -f {go} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n\
         [ -f {go} ] || exit 7\n",
        go = go.display()
    );
    let repo = Repo::new();
    let file = repo.plan(
        "killed",
        &format!(
            "concurrency = 2\n\
             [[task]]\nid = \"kept\"\nagent = \"shell\"\nwrites = [\"out.txt\"]\nprompt = '''\n\
             echo run >> {kept}\necho started-kept\n{wait}echo done > out.txt\necho after-go\n'''\n\
             [[task]]\nid = \"gone\"\nagent = \"shell\"\nwrites = [\"gone.txt\"]\nprompt = '''\n\
             echo run >> {gone}\necho started-gone\n{wait}echo again > gone.txt\n'''\n",
            kept = kept_runs.display(),
            gone = gone_runs.display(),
        ),
    );
    ray_toml(&repo, &cluster);
    let (mut child, rx, reader) = spawn_run(&repo, &["run", &file, "--yes", "--json"]);
    let mut events = Vec::new();
    let mut started = 0;
    events_until(&rx, &mut events, |e| {
        if e["type"] == "task_output"
            && matches!(e["line"].as_str(), Some("started-kept" | "started-gone"))
        {
            started += 1;
        }
        started == 2
    });
    let (kept_job, _) = job_of(&events, "kept");
    let (gone_job, _) = job_of(&events, "gone");
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(cluster.job_status(&kept_job), "RUNNING");
    // One job is gone while forge is down: its attempt must run again.
    let (code, body) = cluster
        .post(&format!("/api/jobs/{gone_job}/stop"), &json!({}))
        .unwrap();
    assert_eq!(code, 200, "{body}");
    crate::util::wait_until(60, "the stopped job to end", || {
        cluster.job_status(&gone_job) == "STOPPED"
    });

    let run = repo.runs().remove(0);
    let (child, rx, reader) = spawn_run(&repo, &["resume", &run, "--yes", "--json"]);
    let mut events = Vec::new();
    let mut both = 0;
    events_until(&rx, &mut events, |e| {
        if e["type"] == "task_started" {
            both += 1;
        }
        both == 2
    });
    // The running job was taken over, not stopped: the same job, the same attempt.
    assert_eq!(
        job_of(&events, "kept"),
        (kept_job.clone(), 1),
        "{events:#?}"
    );
    assert_eq!(cluster.job_status(&kept_job), "RUNNING");
    let (new_gone, gone_attempt) = job_of(&events, "gone");
    assert_ne!(new_gone, gone_job);
    assert_eq!(gone_attempt, 2);
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
    // Its live output came to the resumed run; the kept task's agent ran once, the gone one's
    // twice.
    assert!(
        events.iter().any(|e| e["type"] == "task_output"
            && e["task"] == "kept"
            && e["line"].as_str() == Some("after-go")),
        "{events:#?}"
    );
    assert!(
        serde_json::to_string(&events)
            .unwrap()
            .contains(&format!("reattached to Ray job {kept_job}")),
        "{events:#?}"
    );
    assert_eq!(std::fs::read_to_string(&kept_runs).unwrap(), "run\n");
    assert_eq!(std::fs::read_to_string(&gone_runs).unwrap(), "run\nrun\n");
    assert_eq!(cluster.job_status(&kept_job), "SUCCEEDED");
    assert_eq!(repo.read("out.txt"), "done\n");
    assert_eq!(repo.read("gone.txt"), "again\n");
    let journal =
        std::fs::read_to_string(repo.path().join(format!(".forge/runs/{run}/events.jsonl")))
            .unwrap();
    for task in ["kept", "gone"] {
        let integrated = crate::util::json_lines(&journal)
            .into_iter()
            .filter(|e| e["type"] == "merge_integrated" && e["task"] == task)
            .count();
        assert_eq!(integrated, 1, "{task}: {journal}");
    }
}

#[test]
fn the_gate_runs_as_a_ray_job_on_the_integrated_tree() {
    let Some(ray) = require() else { return };
    let cluster = RayCluster::start(&ray, &[NodeSpec::new(json!({"head": 1}))]).unwrap();
    // Outside `/tmp`: an attempt on this machine has its own.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let marker = scratch.path().join("gate-dir");
    let repo = Repo::new();
    let file = repo.plan(
        "gated",
        &format!(
            "[[task]]\nid = \"work\"\nagent = \"shell\"\nwrites = [\"a.txt\"]\n\
             prompt = \"echo from the task > a.txt\"\n\
             [gate]\non = \"cluster\"\ncommands = [\"grep -q 'from the task' a.txt && pwd > {} \
             && echo gate-on-node\", \"echo 'test result: ok. 3 passed; 0 failed'\"]\n",
            marker.display()
        ),
    );
    ray_toml(&repo, &cluster);
    let out = repo.forge(&["run", &file, "--yes", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, out.stdout);
    let events = crate::util::json_lines(&out.stdout);
    let finished: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "gate_finished")
        .collect();
    assert_eq!(finished.len(), 2, "{events:#?}");
    assert!(finished.iter().all(|e| e["passed"] == true), "{events:#?}");
    assert_eq!(finished[1]["tests_passed"], 3, "{events:#?}");
    // It ran in a node's workspace (`forge attempt`'s), not in a local gate workspace, on the
    // integrated tree (the task's a.txt was there).
    let dir = std::fs::read_to_string(&marker).unwrap();
    assert!(dir.contains("forge-attempt-"), "{dir}");
    assert!(!dir.contains(".forge"), "{dir}");
    // Its output is in the run's result, as a local gate's.
    let run = repo.runs().remove(0);
    let result =
        std::fs::read_to_string(repo.path().join(format!(".forge/runs/{run}/result.json")))
            .unwrap();
    assert!(result.contains("gate-on-node"), "{result}");
    assert_eq!(repo.read("a.txt"), "from the task\n");
}

#[test]
fn a_cluster_gate_without_a_cluster_runner_is_refused_before_anything_runs() {
    let repo = Repo::new();
    let file = repo.plan(
        "gated",
        "[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"echo hi > a.txt\"\n\
         [gate]\non = \"cluster\"\ncommands = [\"true\"]\n",
    );
    let out = repo.forge(&["run", &file, "--yes"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("`[gate] on = \"cluster\"`") && out.stderr.contains("[runner]"),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("a.txt").exists());
    let bad = repo.plan(
        "bad",
        "[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"true\"\n[gate]\non = \"moon\"\n",
    );
    let out = repo.forge(&["run", &bad, "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`gate.on` must be \"local\" or \"cluster\", not \"moon\""),
        "{}",
        out.stderr
    );
}

#[test]
fn per_task_checks_on_a_ray_runner_are_refused_before_anything_runs() {
    // No cluster needed: the plan is refused before the cluster is asked.
    let repo = Repo::new();
    let file = repo.plan(
        "checked",
        "[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"echo hi > a.txt\"\n\
         check = [\"test -f a.txt\"]\n",
    );
    let out = repo.forge(&["run", &file, "--yes", "--runner", "ray://127.0.0.1:9"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("task `a` has per-task `check` commands, which run only on this machine"),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("a.txt").exists());
}

//! `forge plan`: the planner agent (simulated) answers; a valid plan is written, an invalid one
//! is shown and nothing is written.

use std::io::Write as _;

use forge_testkit::procs::marked_processes as marked;

use crate::util::Repo;

#[test]
fn a_planner_answer_becomes_a_validated_plan_file() {
    let repo = Repo::new();
    repo.write("src/api/mod.rs", "// api\n");
    let request = r#"Add a health endpoint and its tests.

~~~forge-sim
say Looking around
write scratch.txt
the planner may not change the repository
end
result
Here is the plan:
```json
{"name": "health", "task": [
  {"id": "api", "prompt": "Add GET /health", "writes": ["src/api/**"]},
  {"id": "tests", "prompt": "Test GET /health", "writes": ["src/api/**", "tests/**"]}
], "gate": {"commands": ["true"]}}
```
end
~~~
"#;
    let out = repo
        .forge(&["plan", request, "--agent", "sim", "-o", "health.toml"])
        .expect(0);
    assert!(
        out.stdout.contains("Plan health (2 tasks"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Ordered tests after api: their write claims overlap."),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("discarded"), "{}", out.stdout);
    assert!(
        !repo.path().join("scratch.txt").exists(),
        "the planner wrote into the repository"
    );
    let text = repo.read("health.toml");
    assert!(
        text.starts_with("# Written by `forge plan` (sim) for:\n#   Add a health endpoint"),
        "{text}"
    );
    assert!(text.contains("after = [\"api\"]"), "{text}");
    assert!(text.contains("agent = \"sim\""), "{text}");
    // It runs.
    let run = repo.forge(&["run", "health.toml", "--no-apply"]).expect(0);
    assert!(run.stdout.contains("gate: true passed"), "{}", run.stdout);
}

#[test]
fn an_invalid_answer_is_shown_and_nothing_is_written() {
    let repo = Repo::new();
    let request = "x\n~~~forge-sim\nresult {\"task\": [{\"id\": \"a\", \"prompt\": \"p\", \"writes\": [\"../up\"]}]}\n~~~\n";
    let out = repo.forge(&["plan", request, "--agent", "sim"]).expect(2);
    assert!(
        out.stderr.contains("answered with an invalid plan"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`..` segments are not allowed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("It answered:\n{\"task\""),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("plan.toml").exists());

    let out = repo
        .forge(&[
            "plan",
            "y\n~~~forge-sim\nresult I would rather not\n~~~\n",
            "--agent",
            "sim",
        ])
        .expect(2);
    assert!(
        out.stderr.contains("answered with no JSON plan twice"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("I would rather not"), "{}", out.stderr);

    let out = repo
        .forge(&["plan", "z\n~~~forge-sim\nfail 5\n~~~\n", "--agent", "sim"])
        .expect(1);
    assert!(
        out.stderr.contains("exited with code 5 without a plan"),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("plan.toml").exists());
}

#[test]
fn ctrl_c_stops_the_planner_and_writes_nothing() {
    let repo = Repo::new();
    let mark = format!("planner-ctrl-c-{}", std::process::id());
    let child = repo
        .cmd(&[
            "plan",
            "w\n~~~forge-sim\nsay Pondering\nhang\n~~~\n",
            "--agent",
            "sim",
        ])
        .env("FORGE_TEST_MARK", &mark)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The planner (the simulated agent, which inherits the mark forge was given) runs.
    crate::util::wait_until(60, "the planner process", || {
        marked(&mark).iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"sim-agent"))
        })
    });
    crate::util::interrupt(child.id());
    let out = crate::util::Run::from(child.wait_with_output().unwrap()).expect(130);
    assert!(
        out.stderr.contains("interrupted; the planner was stopped"),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("plan.toml").exists());
    // Nothing of the planner is left (forge waited for its whole group).
    assert_eq!(marked(&mark), Vec::<i32>::new());
    // Its sandbox is gone.
    crate::util::wait_until(10, "the sandbox to be removed", || {
        std::fs::read_dir(repo.path().join(".forge/planner")).is_ok_and(|mut d| d.next().is_none())
    });
}

/// Whether the host gives a PID namespace (the binary decides the same way, by trying);
/// otherwise says why, and fails when `FORGE_REQUIRE_CONTAINMENT=1` (CI).
fn namespaces(test: &str) -> bool {
    let ok = ["-p -f true", "-U -r -p -f true"].iter().any(|args| {
        std::process::Command::new("unshare")
            .args(args.split(' '))
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        assert!(
            std::env::var_os("FORGE_REQUIRE_CONTAINMENT").is_none_or(|v| v != "1"),
            "{test}: containment is required (FORGE_REQUIRE_CONTAINMENT=1) but unavailable"
        );
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: no PID namespace can be had here (unshare -p / -Urp refused)"
        );
    }
    ok
}

/// A planner that leaves a `setsid` child holding its standard output answers all the same:
/// Forge does not wait for that child, and the child ends with the planner.
#[test]
fn a_setsid_child_holding_the_planners_output_ends_with_it() {
    let test = "a_setsid_child_holding_the_planners_output_ends_with_it";
    if !namespaces(test) {
        return;
    }
    let repo = Repo::new();
    repo.write("src/a.rs", "// a\n");
    let mark = format!("planner-setsid-{}", std::process::id());
    let flags = tempfile::tempdir().unwrap();
    let held = flags.path().join("held");
    // The planner: a shell that starts a `setsid` child on its own stdout (and waits until it
    // runs), then becomes the simulated agent answering from the prompt file.
    repo.write(
        "forge.toml",
        &format!(
            "[agents.leaky]\nprogram = \"sh\"\nargs = [\"-c\", \"setsid sh -c 'echo held; touch {held}; exec sleep 1000' </dev/null & \
             while [ ! -e {held} ]; do sleep 0.01; done; exec {forge} sim-agent -f \\\"$0\\\"\", \"{{prompt_file}}\"]\nformat = \"droid\"\n",
            held = held.display(),
            forge = env!("CARGO_BIN_EXE_forge"),
        ),
    );
    let request = r#"Split it.

~~~forge-sim
result
```json
{"name": "one", "task": [{"id": "a", "prompt": "Edit a", "writes": ["src/a.rs"]}]}
```
end
~~~
"#;
    let mut child = repo
        .cmd(&[
            "plan",
            request,
            "--agent",
            "leaky",
            "--task-agent",
            "sim",
            "-o",
            "one.toml",
        ])
        .env("FORGE_TEST_MARK", &mark)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard, not a timing check: the child would hold the output for 1000 s.
    let mut status = None;
    crate::util::wait_until(120, "the planner to answer", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let out = crate::util::Run::from(child.wait_with_output().unwrap()).expect(0);
    assert!(held.exists(), "the planner's child ran: {}", out.stderr);
    assert!(repo.path().join("one.toml").exists());
    assert_eq!(
        marked(&mark),
        Vec::<i32>::new(),
        "a process the planner left behind is alive"
    );
}

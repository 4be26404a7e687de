//! `forge plan`: the planner agent (simulated) answers; a valid plan is written, an invalid one
//! is shown and nothing is written.

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
    let child = repo
        .cmd(&[
            "plan",
            "w\n~~~forge-sim\nsay Pondering\nhang\n~~~\n",
            "--agent",
            "sim",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its sandbox exists once the planner is on its way.
    crate::util::wait_until(20, "the planner's sandbox", || {
        std::fs::read_dir(repo.path().join(".forge/planner")).is_ok_and(|mut d| d.next().is_some())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    crate::util::interrupt(child.id());
    let out = crate::util::Run::from(child.wait_with_output().unwrap()).expect(130);
    assert!(
        out.stderr.contains("interrupted; the planner was stopped"),
        "{}",
        out.stderr
    );
    assert!(!repo.path().join("plan.toml").exists());
    // Its sandbox is gone.
    crate::util::wait_until(10, "the sandbox to be removed", || {
        std::fs::read_dir(repo.path().join(".forge/planner")).is_ok_and(|mut d| d.next().is_none())
    });
}

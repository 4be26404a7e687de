//! `forge run --task "<prompt>"`: one task without a plan file, run, applied and inspected like
//! any other.

use crate::util::Repo;

fn prompt(script: &str) -> String {
    format!("Add the module.\n\n```forge-sim\n{script}\n```\n")
}

#[test]
fn one_task_without_a_plan() {
    let repo = Repo::new();
    let out = repo
        .forge(&[
            "run",
            "--task",
            &prompt("say On it\nwrite src/auth.rs\npub fn login() {}\nend"),
            "--agent",
            "sim",
            "--writes",
            "src/**",
            "-y",
        ])
        .expect(0);
    assert!(out.stdout.contains("task: succeeded"), "{}", out.stdout);
    assert_eq!(repo.read("src/auth.rs"), "pub fn login() {}\n");
    let run = repo.runs()[0].clone();
    // The run keeps its plan: the task, its agent and its claim.
    let plan =
        std::fs::read_to_string(repo.path().join(".forge/runs").join(&run).join("plan.toml"))
            .unwrap();
    assert!(plan.contains("id = \"task\""), "{plan}");
    assert!(plan.contains("src/**"), "{plan}");
    let logs = repo.forge(&["logs", "task", &run]).expect(0);
    assert!(logs.stdout.contains("On it"), "{}", logs.stdout);
    assert!(logs.stdout.contains("src/auth.rs (+1)"), "{}", logs.stdout);
    let diff = repo.forge(&["diff", &run, "task"]).expect(0);
    assert!(
        diff.stdout.contains("+pub fn login() {}"),
        "{}",
        diff.stdout
    );
}

#[test]
fn writes_outside_the_claim_are_what_the_claim_says() {
    // The claim given with --writes is enforced like a plan's: a write elsewhere is a
    // violation the default policy refuses.
    let repo = Repo::new();
    let out = repo.forge(&[
        "run",
        "--task",
        &prompt("write docs/x.md\nx\nend"),
        "--agent",
        "sim",
        "--writes",
        "src/**",
        "-y",
    ]);
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!repo.path().join("docs/x.md").exists());
}

#[test]
fn a_plan_or_a_task_is_needed_and_task_flags_need_a_task() {
    let repo = Repo::new();
    let out = repo.forge(&["run"]).expect(2);
    assert!(out.stderr.contains("--task"), "{}", out.stderr);
    let out = repo
        .forge(&["run", "plan.toml", "--agent", "sim"])
        .expect(2);
    assert!(out.stderr.contains("--task"), "{}", out.stderr);
    let out = repo.forge(&["run", "plan.toml", "--task", "x"]).expect(2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = repo
        .forge(&["run", "--task", " ", "--agent", "sim"])
        .expect(2);
    assert!(
        out.stderr.contains("--task needs a prompt"),
        "{}",
        out.stderr
    );
    let out = repo
        .forge(&["run", "--task", "x", "--agent", "nope"])
        .expect(2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}

//! `forge split`: balanced, disjoint tasks along directory boundaries.

use forge_exec::plan::{Plan, PlanOptions};

use crate::util::Repo;

#[test]
fn split_balances_directories_into_a_valid_plan() {
    let repo = Repo::new();
    let sizes = [
        ("src/api", 40),
        ("src/db", 25),
        ("src/ui", 20),
        ("src/util", 5),
        ("lib", 10),
    ];
    for (dir, n) in sizes {
        for i in 0..n {
            repo.write(&format!("{dir}/f{i}.rs"), "fn f() {}\n");
        }
    }
    repo.write("src/notes.txt", "not matched\n");
    repo.write("target/debug/x.rs", "ignored by git\n");
    repo.write(".gitignore", ".forge/\ntarget/\n");
    let out = repo
        .forge(&[
            "split",
            "--files",
            "**/*.rs",
            "--workers",
            "4",
            "--prompt",
            "Document {files} in {dir}",
            "--agent",
            "sim",
        ])
        .expect(0);
    let counts: Vec<usize> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Worker "))
        .map(|l| {
            let inner = l.rsplit_once('(').unwrap().1;
            inner.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(counts.len(), 4, "{}", out.stdout);
    assert_eq!(counts.iter().sum::<usize>(), 100, "{}", out.stdout);
    // A fair share is 25; no worker is more than 10 % over it.
    assert!(
        counts.iter().all(|&c| c <= 27),
        "{counts:?}\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("Worker 1: "), "{}", out.stdout);
    assert!(out.stdout.contains("src/db/**"), "{}", out.stdout);
    // The plan loads without conflicts (overlapping writes would be rejected).
    let plan = Plan::load(&repo.path().join("plan.toml"), &PlanOptions::default()).unwrap();
    assert_eq!(plan.tasks.len(), 4);
    let mut files = 0;
    for t in &plan.tasks {
        assert_eq!(t.agent, "sim");
        assert!(t.prompt.starts_with("Document "), "{}", t.prompt);
        assert!(!t.prompt.contains("{files}") && !t.prompt.contains("{dir}"));
        assert!(!t.prompt.contains("target/"), "{}", t.prompt);
        files += t.prompt.matches(".rs").count();
    }
    assert_eq!(files, 100);
    // It does not overwrite without --force.
    let again = repo
        .forge(&[
            "split",
            "--files",
            "**/*.rs",
            "--workers",
            "2",
            "--prompt",
            "x",
        ])
        .expect(2);
    assert!(
        again.stderr.contains("plan.toml already exists"),
        "{}",
        again.stderr
    );
    repo.forge(&[
        "split",
        "--files",
        "**/*.rs",
        "--workers",
        "2",
        "--prompt",
        "x",
        "--force",
    ])
    .expect(0);
}

#[test]
fn split_reports_globs_that_match_nothing_or_are_invalid() {
    let repo = Repo::new();
    let out = repo
        .forge(&[
            "split",
            "--files",
            "src/**",
            "--workers",
            "2",
            "--prompt",
            "x",
        ])
        .expect(2);
    assert!(out.stderr.contains("no file under"), "{}", out.stderr);
    let out = repo
        .forge(&[
            "split",
            "--files",
            "/abs/**",
            "--workers",
            "2",
            "--prompt",
            "x",
        ])
        .expect(2);
    assert!(out.stderr.contains("--files '/abs/**'"), "{}", out.stderr);
    assert!(!repo.path().join("plan.toml").exists());
}

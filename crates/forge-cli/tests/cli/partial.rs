//! `forge apply --tasks`: the result of some tasks (and what they depend on), also after other
//! tasks failed; applying more later writes only what is not there yet.

use crate::util::{Repo, task};

/// Six tasks: `b` after `a`, `f` after `e`, and `e` fails.
fn six(repo: &Repo) -> String {
    let mut plan = String::from("name = \"six\"\n");
    for (id, extra) in [("a", ""), ("b", "after = [\"a\"]"), ("c", ""), ("d", "")] {
        plan.push_str(&task(
            id,
            &format!("writes = [\"{id}/**\"]\n{extra}"),
            &format!("write {id}/out.txt\n{id} was here\nend"),
        ));
    }
    plan.push_str(&task(
        "e",
        "writes = [\"e/**\"]",
        "write e/out.txt\nhalf\nend\nfail 3",
    ));
    plan.push_str(&task(
        "f",
        "writes = [\"f/**\"]\nafter = [\"e\"]",
        "write f/out.txt\nf\nend",
    ));
    repo.plan("six", &plan)
}

#[test]
fn four_of_six_tasks_apply_with_their_dependencies_and_the_rest_later() {
    let repo = Repo::new();
    let file = six(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();

    // The whole run cannot be applied: a task failed.
    let out = repo.forge(&["apply", &run]).expect(1);
    assert!(
        out.stderr.contains("tasks did not succeed: e"),
        "{}",
        out.stderr
    );

    // `b` needs `a`: Forge adds it and says so.
    let out = repo.forge(&["apply", &run, "--tasks", "b"]).expect(0);
    assert!(
        out.stdout.contains("Also applying a: b depends on it."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Applied to the working tree: 2 files written."),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("a/out.txt"), "a was here\n");
    assert_eq!(repo.read("b/out.txt"), "b was here\n");
    assert!(!repo.path().join("c/out.txt").exists());

    // The rest later: `a` and `b` are there already and are not written again.
    let out = repo
        .forge(&["apply", &run, "--tasks", "a,b,c", "--tasks", "d"])
        .expect(0);
    // In the order the run integrated them (which is the order they finished in).
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Applying the result of 4 tasks: "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let mut named: Vec<&str> = line.trim_end_matches('.').split(", ").collect();
    named.sort_unstable();
    assert_eq!(named, ["a", "b", "c", "d"]);
    assert!(
        out.stdout
            .contains("Applied to the working tree: 2 files written."),
        "{}",
        out.stdout
    );
    for id in ["a", "b", "c", "d"] {
        assert_eq!(
            repo.read(&format!("{id}/out.txt")),
            format!("{id} was here\n")
        );
    }
    assert!(!repo.path().join("e").exists());
    assert!(!repo.path().join("f").exists());

    // The journal records which tasks each apply took.
    let journal = repo.path().join(format!(".forge/runs/{run}/events.jsonl"));
    let applies: Vec<serde_json::Value> = std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "apply_finished")
        .collect();
    assert_eq!(applies.len(), 2);
    let mut took: Vec<&str> = applies[1]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    took.sort_unstable();
    assert_eq!(took, ["a", "b", "c", "d"]);
}

#[test]
fn a_task_that_failed_or_depends_on_one_is_refused_by_name() {
    let repo = Repo::new();
    let file = six(&repo);
    repo.forge(&["run", &file, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();
    let out = repo.forge(&["apply", &run, "--tasks", "e"]).expect(2);
    assert!(
        out.stderr.contains("task `e`") && out.stderr.contains("did not succeed"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["apply", &run, "--tasks", "a,f"]).expect(2);
    assert!(
        out.stderr.contains("task `e`") && out.stderr.contains("f depends on it"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["apply", &run, "--tasks", "zz"]).expect(2);
    assert!(
        out.stderr.contains("task `zz`") && out.stderr.contains("its tasks: a, b, c, d, e, f"),
        "{}",
        out.stderr
    );
    assert!(
        !repo.path().join("a").exists(),
        "a refused apply writes nothing"
    );
}

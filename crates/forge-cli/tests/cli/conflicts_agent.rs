//! `forge apply --conflicts agent`: the task that produced a clashing path runs again on top of
//! the other side's version (the user's, or the integrated side of a conflict between tasks)
//! with the clash as its instructions, and its resolution is applied. The sim agent's script
//! resolves diff3 markers when it finds them (keeping both sides, dropping the base's lines),
//! and makes its change otherwise.

use crate::util::{Repo, task};

/// A `run` line for the sim agent: resolve the markers in `file` if it has some, else `edit`.
fn resolve_or(file: &str, edit: &str) -> String {
    format!(
        r"run if grep -q '^=======$' {file}; then awk '/^<<<<<<< /{{next}} /^[|][|][|][|][|][|][|] /{{skip=1; next}} /^=======$/{{skip=0; next}} /^>>>>>>> /{{next}} !skip' {file} > {file}.tmp && mv {file}.tmp {file}; else {edit}; fi"
    )
}

#[test]
fn a_clash_with_your_edit_is_resolved_by_the_task_on_top_of_your_version() {
    let repo = Repo::new();
    repo.write("lib.txt", "one\ntwo\nthree\n");
    let file = repo.plan(
        "edit",
        &task(
            "edit",
            "writes = [\"lib.txt\", \"other.txt\"]",
            &format!(
                "{}\nwrite other.txt\nchanged\nend",
                resolve_or("lib.txt", "sed -i 's/two/2 (run)/' lib.txt")
            ),
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    repo.write("lib.txt", "one\nTWO (mine)\nthree\n");
    let out = repo
        .forge(&["apply", &run, "--conflicts", "agent"])
        .expect(0);
    assert!(
        out.stdout
            .contains("Re-running edit on top of your version to resolve lib.txt."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Applied to the working tree"),
        "{}",
        out.stdout
    );
    // Both changes, from the agent's resolution of the markers it was given.
    assert_eq!(repo.read("lib.txt"), "one\nTWO (mine)\n2 (run)\nthree\n");
    assert_eq!(repo.read("other.txt"), "changed\n");
    // The re-run is the task's next attempt, told about the clash.
    let prompt = std::fs::read_to_string(
        repo.path()
            .join(".forge/runs")
            .join(&run)
            .join("events.jsonl"),
    )
    .unwrap();
    assert!(
        prompt.contains("the user's own edits in their working tree"),
        "the retry request carries the clash"
    );
}

#[test]
fn a_conflict_between_tasks_is_resolved_by_the_set_aside_task() {
    let repo = Repo::new();
    repo.write("notes.txt", "start\n");
    let script = |id: &str| {
        format!(
            "sleep 800ms\n{}",
            resolve_or("notes.txt", &format!("echo 'from {id}' >> notes.txt"))
        )
    };
    let file = repo.plan(
        "clash",
        &format!(
            "{}{}[merge]\n\"notes.txt\" = \"fail\"\n",
            task("a", "appends = [\"notes.txt\"]", &script("a")),
            task("b", "appends = [\"notes.txt\"]", &script("b")),
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(3);
    let run = repo.runs()[0].clone();
    let result: serde_json::Value =
        serde_json::from_str(&repo.read(&format!(".forge/runs/{run}/result.json"))).unwrap();
    let tasks = &result["conflicts"][0]["tasks"];
    let (ours, theirs) = (tasks[0].as_str().unwrap(), tasks[1].as_str().unwrap());
    let out = repo
        .forge(&["apply", &run, "--conflicts", "agent=notes.txt"])
        .expect(0);
    assert!(
        out.stdout.contains(&format!(
            "Re-running {theirs} on top of the integrated side to resolve notes.txt."
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        repo.read("notes.txt"),
        format!("start\nfrom {ours}\nfrom {theirs}\n")
    );
}

#[test]
fn a_re_run_that_fails_leaves_your_file_and_says_so() {
    let repo = Repo::new();
    repo.write("lib.txt", "one\ntwo\n");
    let file = repo.plan(
        "edit",
        &task(
            "edit",
            "writes = [\"lib.txt\"]\nretries = 0",
            "fail-on-attempt 2 5\nreplace lib.txt two => 2 (run)",
        ),
    );
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    repo.write("lib.txt", "one\nTWO (mine)\n");
    let out = repo
        .forge(&["apply", &run, "--conflicts", "agent"])
        .expect(1);
    assert!(
        out.stdout
            .contains("The re-run of edit did not resolve it; nothing more was applied."),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("lib.txt"), "one\nTWO (mine)\n");
}

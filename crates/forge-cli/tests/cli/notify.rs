//! Notifications: the `notify` command of forge.toml runs when a run ends (with the run, its
//! status and a message in its environment); a failing notifier is a warning, never a failed
//! run; a `notify` that is not a string is a clear configuration error.

use crate::util::{Repo, task};

#[test]
fn the_notify_command_runs_when_a_run_ends() {
    let repo = Repo::new();
    let out_dir = tempfile::tempdir().unwrap();
    let log = out_dir.path().join("notified.txt");
    repo.write(
        "forge.toml",
        &format!(
            "notify = 'printf \"%s|%s|%s|%s\\n\" \"$FORGE_NOTIFY_EVENT\" \"$FORGE_RUN_ID\" \"$FORGE_RUN_STATUS\" \"$FORGE_NOTIFY_MESSAGE\" >> {}'\n",
            log.display()
        ),
    );
    repo.commit("forge.toml");
    let plan = repo.plan("n", &task("a", "writes = [\"a/**\"]", "write a/x\nx\nend"));
    repo.forge(&["run", &plan, "--no-apply"]).expect(0);
    let run = repo.runs()[0].clone();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text,
        format!("finished|{run}|succeeded|Forge run {run} succeeded\n")
    );

    // A failed run says so.
    let plan = repo.plan("f", &task("b", "writes = [\"b/**\"]", "fail 3"));
    repo.forge(&["run", &plan, "--no-apply"]).expect(1);
    let failed = repo.runs()[0].clone();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.ends_with(&format!(
            "finished|{failed}|failed|Forge run {failed} failed\n"
        )),
        "{text}"
    );
}

#[test]
fn a_failing_notifier_is_a_warning() {
    let repo = Repo::new();
    repo.write(
        "forge.toml",
        "notify = \"echo no notifier here >&2; exit 4\"\n",
    );
    repo.commit("forge.toml");
    let plan = repo.plan("n", &task("a", "writes = [\"a/**\"]", "write a/x\nx\nend"));
    let out = repo.forge(&["run", &plan, "--no-apply"]).expect(0);
    assert!(
        out.stderr
            .contains("warning: the notify command of forge.toml (`echo no notifier here >&2; exit 4`) exited with code 4: no notifier here"),
        "{}",
        out.stderr
    );
}

#[test]
fn notify_and_bell_must_have_their_types() {
    let repo = Repo::new();
    repo.write("forge.toml", "notify = 3\n");
    let out = repo.forge(&["runs"]).expect(2);
    assert!(
        out.stderr.contains("`notify` must be a string"),
        "{}",
        out.stderr
    );
    repo.write("forge.toml", "[run]\nbell = \"loud\"\n");
    let out = repo.forge(&["runs"]).expect(2);
    assert!(
        out.stderr.contains("`run.bell` must be true or false"),
        "{}",
        out.stderr
    );
}

//! The workspace an agent runs in is a git repository at the task's start state: a `shell`
//! task reviews its own work with `git status` and `git diff`, commits, and the run captures
//! exactly its files while nothing it did in git reaches the user's repository.

use crate::util::Repo;

#[test]
fn a_task_sees_its_own_changes_in_git_and_its_commits_stay_in_the_workspace() {
    let repo = Repo::new();
    let script = r#"set -e
test -z "$(git status --porcelain --untracked-files=all)"
test "$(git log -1 --format=%s)" = "plan gitcheck"
test "$(git branch --show-current)" = main
echo changed >> README.md
mkdir -p src
echo new > src/new.txt
git status --porcelain --untracked-files=all
git diff
test "$(git status --porcelain --untracked-files=all | tr '\n' ,)" = " M README.md,?? src/new.txt,"
git diff | grep -qx '+changed'
git add -A
git -c user.name=Agent -c user.email=agent@forge.invalid commit -q -m 'agent commit'
git branch agent-branch
git rev-parse HEAD > src/agent-head.txt
"#;
    let file = repo.plan(
        "gitcheck",
        &format!(
            "name = \"gitcheck\"\n[[task]]\nid = \"edit\"\nagent = \"shell\"\n\
             writes = [\"README.md\", \"src/**\"]\nprompt = '''\n{script}'''\n"
        ),
    );
    let refs_before = repo.git(&["for-each-ref"]);
    let out = repo.forge(&["run", &file, "--yes"]).expect(0);
    assert!(
        out.stdout.contains("edit: integrated (3 files)"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.read("README.md"), "# Test project\nchanged\n");
    assert_eq!(repo.read("src/new.txt"), "new\n");
    // The agent's commit and branch live only in its workspace.
    let agent_head = repo.read("src/agent-head.txt");
    let agent_head = agent_head.trim();
    assert_eq!(agent_head.len(), 40, "{agent_head}");
    let missing = std::process::Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .args(["cat-file", "-e", agent_head])
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "the agent's commit reached the user's objects"
    );
    assert_eq!(repo.git(&["for-each-ref"]), refs_before);
    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "plan gitcheck\n");
}

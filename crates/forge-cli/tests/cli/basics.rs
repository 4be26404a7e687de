//! Help, version, completions, usage errors, configuration, the simulated agent.

use crate::util::{Repo, Run, forge_cmd, task};

fn forge(args: &[&str]) -> Run {
    Run::from(forge_cmd().args(args).output().unwrap())
}

#[test]
fn version_prints_the_crate_version() {
    let out = forge(&["--version"]).expect(0);
    assert_eq!(
        out.stdout.trim(),
        format!("forge {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let out = forge(&["--help"]).expect(0);
    for word in [
        "run",
        "resume",
        "status",
        "logs",
        "runs",
        "abort",
        "apply",
        "gc",
        "plan",
        "split",
        "init",
        "demo",
        "serve",
        "completions",
    ] {
        assert!(
            out.stdout.contains(&format!("\n  {word} ")),
            "{word}: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("sim-agent"), "hidden: {}", out.stdout);
    for line in [
        "0    success",
        "1    tasks failed",
        "2    usage, configuration or plan error",
        "3    unresolved merge conflicts",
        "4    the gate failed",
        "130  interrupted",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
    let run = forge(&["run", "--help"]).expect(0);
    for flag in ["--yes", "--no-apply", "--branch", "--json", "--serve"] {
        assert!(run.stdout.contains(flag), "{flag}: {}", run.stdout);
    }
    assert!(run.stdout.contains("130  interrupted"), "{}", run.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let out = forge(&["--no-such-flag"]).expect(2);
    assert!(out.stderr.contains("--no-such-flag"), "{}", out.stderr);
    let out = forge(&["run", "a.toml", "--yes", "--branch"]).expect(2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = forge(&["split", "--files", "x"]).expect(2);
    assert!(out.stderr.contains("--workers"), "{}", out.stderr);
}

#[test]
fn completions_for_each_shell() {
    let bash = forge(&["completions", "bash"]).expect(0);
    assert!(bash.stdout.contains("_forge()"), "{}", bash.stdout);
    assert!(bash.stdout.contains("resume"), "{}", bash.stdout);
    let zsh = forge(&["completions", "zsh"]).expect(0);
    assert!(zsh.stdout.contains("#compdef forge"), "{}", zsh.stdout);
    let fish = forge(&["completions", "fish"]).expect(0);
    assert!(fish.stdout.contains("complete -c forge"), "{}", fish.stdout);
    forge(&["completions", "tcsh"]).expect(2);
}

#[test]
fn sim_agent_runs_a_script_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = Run::from(
        forge_cmd()
            .current_dir(dir.path())
            .args([
                "sim-agent",
                "--format",
                "claude",
                "Do it.\n```forge-sim\nwrite hello.txt\nhi\nend\nresult ok\n```\n",
            ])
            .output()
            .unwrap(),
    )
    .expect(0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hello.txt")).unwrap(),
        "hi\n"
    );
    let last = out.stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["type"], "result");
    // Its own exit codes pass through.
    let out = Run::from(
        forge_cmd()
            .current_dir(dir.path())
            .args(["sim-agent", "```forge-sim\nfail 7\n```"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 7);
}

#[test]
fn commands_on_a_repository_without_runs_say_what_to_do() {
    let repo = Repo::new();
    let out = repo.forge(&["status"]).expect(2);
    assert!(
        out.stderr.starts_with("error: no runs yet in "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: start one with `forge run <plan.toml>`"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["runs"]).expect(0);
    assert!(out.stdout.contains("No runs yet"), "{}", out.stdout);
    let out = repo.forge(&["logs", "x", "no-such-run"]).expect(2);
    assert!(
        out.stderr.contains("no run `no-such-run`"),
        "{}",
        out.stderr
    );
    let out = repo.forge(&["run", "missing.toml"]).expect(2);
    assert!(
        out.stderr.contains("no plan file at missing.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn repo_flag_and_environment_choose_the_repository() {
    let repo = Repo::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Run::from(
        forge_cmd()
            .current_dir(elsewhere.path())
            .args(["--repo", repo.path().to_str().unwrap(), "runs"])
            .output()
            .unwrap(),
    )
    .expect(0);
    assert!(
        out.stdout.contains(&repo.path().display().to_string()),
        "{}",
        out.stdout
    );
    let out = Run::from(
        forge_cmd()
            .current_dir(elsewhere.path())
            .env("FORGE_REPO", repo.path())
            .args(["runs"])
            .output()
            .unwrap(),
    )
    .expect(0);
    assert!(
        out.stdout.contains(&repo.path().display().to_string()),
        "{}",
        out.stdout
    );
    let out = Run::from(
        forge_cmd()
            .args(["--repo", "/no/such/dir", "runs"])
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(
        out.stderr
            .contains("--repo /no/such/dir: no such directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn forge_toml_is_found_walking_up_and_checked() {
    let repo = Repo::new();
    repo.write("forge.toml", "[run]\napply = \"sometimes\"\n");
    std::fs::create_dir_all(repo.path().join("a/b")).unwrap();
    let out = Run::from(
        forge_cmd()
            .current_dir(repo.path().join("a/b"))
            .args(["runs"])
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(
        out.stderr
            .contains("forge.toml: `run.apply` must be one of"),
        "{}",
        out.stderr
    );
    // The environment overrides the file's value only when it is itself valid.
    let out = Run::from(
        forge_cmd()
            .current_dir(repo.path())
            .env("FORGE_APPLY", "never")
            .args(["runs"])
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(out.stderr.contains("`run.apply`"), "{}", out.stderr);
}

#[test]
fn a_bad_plan_is_reported_with_file_line_and_caret() {
    let repo = Repo::new();
    let plan = format!(
        "name = \"bad\"\n{}[[task]]\nid = \"b\"\nagent = \"clade\"\nprompt = \"x\"\nafter = [\"nope\"]\n",
        task("a", "", "say hi")
    );
    let file = repo.plan("bad", &plan);
    let out = repo.forge(&["run", &file]).expect(2);
    assert!(
        out.stderr.contains("unknown agent `clade`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `claude`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> bad.toml:"), "{}", out.stderr);
    assert!(out.stderr.contains('^'), "{}", out.stderr);
    assert!(out.stderr.contains("`nope`"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("error: the plan bad.toml has 2 problems"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: fix the plan"), "{}", out.stderr);
    // Nothing ran.
    assert!(repo.runs().is_empty());
}

#[test]
fn a_missing_agent_binary_is_one_clear_error_before_anything_runs() {
    let repo = Repo::new();
    repo.write(
        "forge.toml",
        "[agents.ghost]\nprogram = \"forge-test-no-such-agent\"\ninstall = \"install the ghost agent\"\n",
    );
    let file = repo.plan(
        "ghost",
        "[[task]]\nid = \"a\"\nagent = \"ghost\"\nprompt = \"boo\"\n",
    );
    let out = repo.forge(&["run", &file, "--yes"]).expect(2);
    assert!(
        out.stderr
            .contains("`forge-test-no-such-agent` not found on PATH"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("install the ghost agent"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{}",
        out.stderr
    );
}

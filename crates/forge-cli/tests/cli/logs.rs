//! `forge logs`: the transcript of an attempt (text, tool calls with their line counts,
//! results, errors, usage), `--raw` for the output as the agent wrote it, `--json` for the
//! transcript object, in every output format the simulated agent speaks.

use crate::util::{Repo, task};

const SCRIPT: &str = "say Adding the module\nwrite src/auth.rs\npub fn login() {}\nfn helper() {}\nend\nreplace src/auth.rs login => sign_in\nrun echo built\nrun ls no-such-file";

fn run_with(format: &str) -> (Repo, String) {
    let repo = Repo::new();
    repo.write(
        "forge.toml",
        &format!("[agents.sim]\nformat = \"{format}\"\n"),
    );
    repo.commit("forge.toml");
    let plan = repo.plan("t", &task("auth", "writes = [\"src/**\"]", SCRIPT));
    // The last command fails, so does the task: its transcript says why.
    repo.forge(&["run", &plan, "--no-apply"]).expect(1);
    let run = repo.runs()[0].clone();
    (repo, run)
}

#[test]
fn logs_show_the_transcript_in_every_format() {
    for format in ["droid", "claude", "codex", "gemini", "amp"] {
        let (repo, run) = run_with(format);
        let out = repo.forge(&["logs", "auth", &run]).expect(0);
        let text = &out.stdout;
        assert!(text.contains("Adding the module"), "{format}:\n{text}");
        let wrote = [
            "● Write src/auth.rs (+2)",
            "● Create src/auth.rs (+2)",
            "● Create src/auth.rs\n",
        ];
        assert!(wrote.iter().any(|w| text.contains(w)), "{format}:\n{text}");
        assert!(text.contains("● Edit src/auth.rs"), "{format}:\n{text}");
        assert!(text.contains("● Run echo built"), "{format}:\n{text}");
        // A failed call is marked, and its output follows it.
        assert!(text.contains("✗ Run ls no-such-file"), "{format}:\n{text}");
        // No JSON: that is what --raw is for.
        assert!(!text.contains("{\"type\""), "{format}:\n{text}");

        let raw = repo.forge(&["logs", "auth", &run, "--raw"]).expect(0);
        assert!(
            raw.stdout.lines().any(|l| l.starts_with('{')),
            "{format}: {}",
            raw.stdout
        );

        let json = repo.forge(&["logs", "auth", &run, "--json"]).expect(0);
        let t: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(t["format"], format);
        let tools: Vec<&str> = t["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "tool")
            .map(|e| e["summary"].as_str().unwrap())
            .collect();
        assert!(tools.contains(&"Run echo built"), "{format}: {tools:?}");
        let failed = t["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "tool" && e["status"] == "failed")
            .unwrap_or_else(|| panic!("{format}: {t}"));
        assert_eq!(failed["summary"], "Run ls no-such-file");
    }
}

#[test]
fn logs_json_and_raw_exclude_each_other_and_follow() {
    let repo = Repo::new();
    let out = repo.forge(&["logs", "x", "--json", "--raw"]).expect(2);
    assert!(out.stderr.contains("--raw"), "{}", out.stderr);
    let out = repo.forge(&["logs", "x", "--json", "--follow"]).expect(2);
    assert!(out.stderr.contains("--follow"), "{}", out.stderr);
}

#[test]
fn logs_of_an_agent_no_longer_configured_print_the_output_as_it_is() {
    let (repo, run) = run_with("claude");
    // The profile the run used is gone: the format is unknown, so the log is shown raw, and
    // the user is told why.
    let journal = repo
        .path()
        .join(".forge/runs")
        .join(&run)
        .join("events.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(
        &journal,
        text.replace("\"agent\":\"sim\"", "\"agent\":\"gone\""),
    )
    .unwrap();
    let out = repo.forge(&["logs", "auth", &run]).expect(0);
    assert!(
        out.stderr.contains("agent `gone` is not configured"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("{\"type\""), "{}", out.stdout);
}

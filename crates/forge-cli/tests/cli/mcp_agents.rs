//! `forge mcp` used by the real agent hosts at their pinned versions, offline: the scripted
//! model of `forge-testkit` calls Forge's MCP tools through the host, which starts `forge mcp`
//! from the configuration `forge init` wrote. The planner and the tasks are the `sim` agent
//! (the host starts the server with an environment of its choosing; the model server is the
//! host's only).

use std::path::PathBuf;
use std::process::Command;

use forge_testkit::{ModelServer, Script, Turn, agents};
use serde_json::json;

use crate::util::Repo;

/// What `/forge-parallel` says first (the outer conversation's phrase).
const OUTER: &str = "Do the following request with several agents working in parallel";

/// A request the `sim` planner answers with a plan of two `sim` tasks.
fn request() -> String {
    let plan = json!({"name": "greet", "task": [
        {"id": "hello", "prompt": "Create hello.txt.\n\n~~~forge-sim\nwrite hello.txt\nhello\nend\n~~~\n",
         "writes": ["hello.txt"]},
        {"id": "notes", "prompt": "Write the notes.\n\n~~~forge-sim\nwrite docs/notes.md\nnotes\nend\n~~~\n",
         "writes": ["docs/**"]},
    ]});
    format!("MCP-REQ greet the user\n\n~~~forge-sim\nresult\n```json\n{plan}\n```\nend\n~~~\n")
}

/// The model's turns: plan, run, wait, apply through `prefix`ed tool names, then an answer
/// carrying what the apply returned (the run's summary).
fn turns(prefix: &str) -> Vec<Turn> {
    vec![
        Turn::tool(
            format!("{prefix}forge_plan"),
            json!({"request": request(), "agent": "sim", "output": ".forge/plan.toml"}),
        ),
        Turn::tool(
            format!("{prefix}forge_run"),
            json!({"plan": ".forge/plan.toml"}),
        ),
        Turn::tool(format!("{prefix}forge_wait"), json!({"timeout_secs": 300})),
        Turn::tool(format!("{prefix}forge_apply"), json!({})),
        Turn::text("Applied. Forge reported: {tool_result}"),
    ]
}

/// `PATH` with the `forge` under test and the agent CLIs first.
fn path_with(bin: &std::path::Path) -> std::ffi::OsString {
    let forge_dir = PathBuf::from(env!("CARGO_BIN_EXE_forge"))
        .parent()
        .unwrap()
        .to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![forge_dir, bin.to_owned()];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap()
}

/// `program args…` in `repo` with the agent's private home and `PATH`.
fn host(program: &std::path::Path, repo: &Repo, setup: &agents::Setup, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo.path())
        .env("PATH", path_with(program.parent().unwrap()))
        .env("PWD", repo.path())
        .args(args)
        .stdin(std::process::Stdio::null());
    for (k, v) in &setup.env {
        cmd.env(k, v);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FORGE_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// What every host's test checks once the host exited: the plan, one succeeded run, the
/// files applied, the summary in the final answer and (`offered`: for a host that lists MCP
/// tools up front rather than behind a tool search) the tools offered to the model.
fn check_outcome(repo: &Repo, server: &ModelServer, stdout: &str, prefix: &str, offered: bool) {
    assert!(repo.path().join(".forge/plan.toml").is_file(), "{stdout}");
    let runs = repo.runs();
    assert_eq!(runs.len(), 1, "{stdout}");
    let status = repo.forge(&["status", &runs[0], "--json"]).expect(0);
    assert!(
        status.stdout.contains("\"phase\": \"succeeded\""),
        "{}",
        status.stdout
    );
    assert_eq!(repo.read("hello.txt"), "hello\n");
    assert_eq!(repo.read("docs/notes.md"), "notes\n");
    let calls: Vec<_> = server
        .model_calls()
        .into_iter()
        .filter(|c| c.user_text.contains(OUTER))
        .collect();
    let tools = &calls
        .first()
        .expect("no model call of the outer conversation")
        .tools;
    for tool in [
        "forge_plan",
        "forge_run",
        "forge_wait",
        "forge_apply",
        "forge_status",
    ] {
        assert!(
            !offered || tools.contains(&format!("{prefix}{tool}")),
            "{tools:?}"
        );
    }
    assert_eq!(calls.iter().map(|c| c.answered).max(), Some(4), "{stdout}");
    // The answer carries what forge_apply returned: the run, its summary, the files.
    assert!(stdout.contains("Applied. Forge reported: "), "{stdout}");
    assert!(stdout.contains(&runs[0]), "{stdout}");
    assert!(stdout.contains("2 tasks, 2 files changed"), "{stdout}");
    assert!(stdout.contains("hello.txt"), "{stdout}");
}

/// Claude Code: `/forge-parallel` as `forge init` installed it (its `allowed-tools` let the
/// MCP tools run), the servers of `.mcp.json` as `forge init` wrote it.
#[test]
fn claude_plans_runs_waits_and_applies_through_forge_mcp() {
    let Some(program) = agents::require("claude") else {
        return;
    };
    let server = ModelServer::start(Script::new().when(OUTER, turns("mcp__forge__"))).unwrap();
    let home = tempfile::Builder::new()
        .prefix("forge-agent-home-")
        .tempdir()
        .unwrap();
    let setup = agents::setup("claude", &server.url(), home.path()).unwrap();
    let repo = Repo::new();
    repo.forge(&["init", "--claude"]).expect(0);
    let mut claude = host(
        &program,
        &repo,
        &setup,
        &[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--mcp-config",
            ".mcp.json",
            "--",
            "/forge-parallel MCP-REQ greet the user",
        ],
    );
    // The MCP tools in the first request, not behind Claude Code's tool search: the test
    // checks they were offered.
    claude.env("ENABLE_TOOL_SEARCH", "false");
    let out = claude.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_outcome(&repo, &server, &stdout, "mcp__forge__", true);
}

/// droid: `droid exec` in the repository, the servers of `.factory/mcp.json` as `forge init`
/// wrote it.
#[test]
fn droid_plans_runs_waits_and_applies_through_forge_mcp() {
    let Some(program) = agents::require("droid") else {
        return;
    };
    let server = ModelServer::start(Script::new().when(OUTER, turns(DROID_PREFIX))).unwrap();
    let home = tempfile::Builder::new()
        .prefix("forge-agent-home-")
        .tempdir()
        .unwrap();
    let setup = agents::setup("droid", &server.url(), home.path()).unwrap();
    let repo = Repo::new();
    repo.forge(&["init", "--droid"]).expect(0);
    let model = setup.plan_model.clone().unwrap();
    let prompt = format!("{OUTER}, with the forge MCP tools: MCP-REQ greet the user");
    let out = host(
        &program,
        &repo,
        &setup,
        &[
            "exec",
            "--auto",
            "high",
            "-o",
            "stream-json",
            "--model",
            &model,
            &prompt,
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // droid always keeps MCP tools behind its ToolSearch; that the calls by these names ran is
    // what shows they are its names.
    check_outcome(&repo, &server, &stdout, DROID_PREFIX, false);
}

/// How droid names an MCP server's tools for the model.
const DROID_PREFIX: &str = "forge___";

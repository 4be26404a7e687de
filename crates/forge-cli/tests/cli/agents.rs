//! The real agent CLIs (Claude Code, Codex, Gemini CLI, opencode, droid) at their pinned
//! versions (`.ci/agents/`), driven through the real `forge` binary against the scripted model
//! server of `forge-testkit` on 127.0.0.1. Each test skips with the reason when its CLI is not
//! installed, and fails instead when `FORGE_REQUIRE_AGENTS=1` (CI).
//!
//! Per agent: a plan of three tasks (tokens, tool calls, sessions, logs, `--json`, a prompt that
//! starts with `-`, stderr kept out of progress, apply), a write outside the claims, a model that
//! is down or refuses, and a command the model asks the agent to run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use forge_testkit::{ModelServer, Recorded, Script, Turn, agents};
use serde_json::{Value, json};

use crate::util::{Repo, Run, json_lines};

/// One agent CLI pointed at a scripted model, and a repository to run plans in.
struct Agent {
    name: &'static str,
    repo: Repo,
    server: ModelServer,
    bin: PathBuf,
    home: tempfile::TempDir,
    setup: agents::Setup,
}

impl Agent {
    /// `None` (the test is skipped, saying why) when the CLI is not installed.
    fn start(name: &'static str, script: Script) -> Option<Self> {
        let program = agents::require(name)?;
        let server = ModelServer::start(script).unwrap();
        let home = tempfile::Builder::new()
            .prefix("forge-agent-home-")
            .tempdir()
            .unwrap();
        let setup = agents::setup(name, &server.url(), home.path()).unwrap();
        Some(Self {
            name,
            repo: Repo::new(),
            server,
            bin: program.parent().unwrap().to_owned(),
            home,
            setup,
        })
    }

    /// The plan's `[defaults]`: this agent, a generous timeout (a dead model must fail the task
    /// long before it), no retries.
    fn defaults(&self) -> String {
        let model = self
            .setup
            .plan_model
            .as_ref()
            .map(|m| format!("model = \"{m}\"\n"))
            .unwrap_or_default();
        format!(
            "[defaults]\nagent = \"{}\"\ntimeout = \"10m\"\nretries = 0\n{model}\n",
            self.name
        )
    }

    /// `forge <args>` with the CLI on `PATH` and its private home in the environment.
    fn forge(&self, args: &[&str]) -> Run {
        let mut cmd = self.repo.cmd(args);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        // As a shell started in the repository sets it: agents that trust `$PWD` (opencode)
        // must still work in their workspace, never here.
        cmd.env("PWD", self.repo.path());
        for (k, v) in &self.setup.env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().unwrap())
    }

    /// The journal of run `run`.
    fn events(&self, run: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(
            self.repo
                .path()
                .join(format!(".forge/runs/{run}/events.jsonl")),
        )
        .unwrap();
        json_lines(&text)
    }

    /// The output log of `task`'s first attempt.
    fn log(&self, run: &str, task: &str) -> String {
        std::fs::read_to_string(
            self.repo
                .path()
                .join(format!(".forge/runs/{run}/tasks/{task}/1/output.log")),
        )
        .unwrap_or_default()
    }

    /// The model calls of the conversation whose prompt holds `needle`.
    fn calls(&self, needle: &str) -> Vec<Recorded> {
        self.server
            .model_calls()
            .into_iter()
            .filter(|r| r.user_text.contains(needle))
            .collect()
    }

    /// An environment for a task (`env = {…}` in the plan) that points this agent at `url`
    /// from a home of its own.
    fn task_env(&self, url: &str, tag: &str) -> String {
        let home = self.home.path().join(tag);
        let setup = agents::setup(self.name, url, &home).unwrap();
        let pairs: Vec<String> = setup
            .env
            .iter()
            .map(|(k, v)| format!("{k} = {}", toml_string(v)))
            .collect();
        format!("env = {{ {} }}", pairs.join(", "))
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The model asks the agent to create `rel` with `content`, with the agent's own tool.
fn write_turn(agent: &str, rel: &str, content: &str) -> Turn {
    match agent {
        "claude" => Turn::tool(
            "Write",
            json!({"file_path": format!("{{cwd}}/{rel}"), "content": content}),
        ),
        "codex" => {
            let mut patch = format!("*** Begin Patch\n*** Add File: {rel}\n");
            for line in content.lines() {
                let _ = writeln!(patch, "+{line}");
            }
            patch.push_str("*** End Patch\n");
            Turn::tool("apply_patch", Value::String(patch))
        }
        "gemini" => Turn::tool("write_file", json!({"file_path": rel, "content": content})),
        "opencode" => Turn::tool(
            "write",
            json!({"filePath": format!("{{cwd}}/{rel}"), "content": content}),
        ),
        "droid" => Turn::tool(
            "Create",
            json!({"file_path": format!("{{cwd}}/{rel}"), "content": content}),
        ),
        other => panic!("no write tool known for {other}"),
    }
}

/// The model asks the agent to run `command` with its shell tool.
fn run_turn(agent: &str, command: &str) -> Turn {
    match agent {
        "claude" => Turn::tool(
            "Bash",
            json!({"command": command, "description": "Run the command"}),
        ),
        // Waits for the command to end (codex's default hands a still-running command back
        // after a few seconds, which a loaded machine reaches before `uname` has written).
        "codex" => Turn::tool(
            "exec_command",
            json!({"cmd": command, "yield_time_ms": 60000}),
        ),
        "gemini" => Turn::tool(
            "run_shell_command",
            json!({"command": command, "description": "Run the command"}),
        ),
        "opencode" => Turn::tool(
            "bash",
            json!({"command": command, "description": "Run the command"}),
        ),
        "droid" => Turn::tool(
            "Execute",
            json!({"command": command, "riskLevelReason": "It writes a build output in the workspace.", "riskLevel": "low"}),
        ),
        other => panic!("no shell tool known for {other}"),
    }
}

fn of_task<'a>(events: &'a [Value], task: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["task"] == task && e["type"] == kind)
        .collect()
}

/// The cost the agent itself reported in its output, if it reports one.
fn reported_cost(agent: &str, log: &str) -> Option<f64> {
    let mut total: Option<f64> = None;
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let cost = match (agent, v["type"].as_str()) {
            ("claude", Some("result")) => v["total_cost_usd"].as_f64(),
            ("opencode", Some("step_finish")) => v["part"]["cost"].as_f64(),
            ("droid", Some("completion")) => v["cost_usd"].as_f64(),
            _ => None,
        };
        if let Some(c) = cost {
            *total.get_or_insert(0.0) += c;
        }
    }
    total
}

const TASKS: [(&str, &str, &str, &str); 3] = [
    ("alpha", "TASK-ALPHA", "src/a.txt", "alpha\n"),
    ("beta", "TASK-BETA", "src/b.txt", "beta\n"),
    ("gamma", "TASK-GAMMA", "docs/c.md", "gamma\n"),
];

/// Whether some string in `values` is `text`.
fn contains_string(values: &[Value], text: &str) -> bool {
    fn walk(v: &Value, text: &str) -> bool {
        match v {
            Value::String(s) => s == text,
            Value::Array(items) => items.iter().any(|i| walk(i, text)),
            Value::Object(map) => map.values().any(|i| walk(i, text)),
            _ => false,
        }
    }
    values.iter().any(|v| walk(v, text))
}

/// Points 1, 2, 5, 6 and 7 of the suite: three tasks (one `after`, one prompt a markdown list)
/// succeed; only `forge apply` puts their files in the working tree; tokens (and cost where
/// the agent reports it) are what the model server reported; the agent's real tool calls are
/// the tasks' activity; stderr stays out of it; each attempt's session is in the journal;
/// `--json` is the event stream; `forge logs` shows the agent's output.
#[allow(clippy::too_many_lines)] // one scenario, checked fact by fact
fn three_tasks(name: &'static str) {
    let mut script = Script::new();
    for (i, (_, needle, rel, content)) in TASKS.iter().enumerate() {
        let n = u64::try_from(i).unwrap();
        script = script.when(
            *needle,
            vec![
                write_turn(name, rel, content).usage(1000 + n * 100, 40 + n),
                Turn::text(format!("Finished {needle}.")).usage(1500 + n * 10, 20 + n),
            ],
        );
    }
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    let gamma_prompt = "- TASK-GAMMA: create docs/c.md\n- nothing else";
    let plan = format!(
        "name = \"real-{name}\"\n{}\
         [[task]]\nid = \"alpha\"\nprompt = \"TASK-ALPHA: create src/a.txt\"\nwrites = [\"src/a.txt\"]\n\n\
         [[task]]\nid = \"beta\"\nprompt = \"TASK-BETA: create src/b.txt\"\nwrites = [\"src/b.txt\"]\n\n\
         [[task]]\nid = \"gamma\"\nprompt = '''{gamma_prompt}'''\nwrites = [\"docs/c.md\"]\nafter = [\"alpha\"]\n",
        agent.defaults(),
    );
    let file = agent.repo.plan("three", &plan);
    let out = agent
        .forge(&["run", &file, "--json", "--no-apply"])
        .expect(0);
    // --json: every line is an event.
    let streamed = json_lines(&out.stdout);
    assert!(
        streamed
            .iter()
            .all(|e| e["type"].is_string() && e["seq"].is_u64())
    );
    assert_eq!(
        streamed.last().unwrap()["status"],
        "succeeded",
        "{}",
        out.stdout
    );
    let run = streamed[0]["run"].as_str().unwrap().to_owned();
    let journal = agent.events(&run);
    assert_eq!(streamed, journal, "--json streams the journal");
    for (_, _, rel, _) in TASKS {
        assert!(!agent.repo.path().join(rel).exists(), "{rel} before apply");
    }
    for (id, needle, rel, _) in TASKS {
        let log = agent.log(&run, id);
        let finished = of_task(&journal, id, "task_finished");
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0]["status"], "succeeded", "{id}: {log}");
        // Tokens: exactly what the model server reported to this conversation.
        let calls = agent.calls(needle);
        assert!(!calls.is_empty(), "{id}: no model call held `{needle}`");
        let (want_in, want_out) = calls
            .iter()
            .fold((0, 0), |(i, o), r| (i + r.usage.0, o + r.usage.1));
        let usage = of_task(&journal, id, "task_usage");
        let got_in: u64 = usage.iter().map(|e| e["tokens_in"].as_u64().unwrap()).sum();
        let got_out: u64 = usage
            .iter()
            .map(|e| e["tokens_out"].as_u64().unwrap())
            .sum();
        assert_eq!((got_in, got_out), (want_in, want_out), "{id}: {log}");
        // Cost: what the agent reported, and none where it reports none.
        let cost: Option<f64> = usage
            .iter()
            .filter_map(|e| e["cost_usd"].as_f64())
            .reduce(|a, b| a + b);
        match (reported_cost(name, &log), cost) {
            (None, None) => {}
            (Some(want), Some(got)) => assert!((want - got).abs() < 1e-9, "{id}: {want} != {got}"),
            (want, got) => panic!("{id}: cost {got:?}, the agent reported {want:?}"),
        }
        // The agent's real tool call is the task's activity.
        let progress = of_task(&journal, id, "task_progress");
        assert!(
            progress.iter().any(
                |e| e["files"] == json!([rel]) && e["message"].as_str().unwrap().ends_with(rel)
            ),
            "{id}: no progress naming {rel}: {progress:?}"
        );
        // Stderr chatter is output, never the activity.
        for line in of_task(&journal, id, "task_output")
            .iter()
            .filter(|e| e["stream"] == "stderr")
        {
            let line = line["line"].as_str().unwrap().trim();
            assert!(
                !progress.iter().any(|p| p["message"] == line),
                "{id}: stderr line shown as progress: {line}"
            );
        }
        // The session the agent reported, per attempt.
        let sessions = of_task(&journal, id, "task_session");
        assert_eq!(sessions.len(), 1, "{id}: {sessions:?}");
        assert_eq!(sessions[0]["attempt"], 1);
        let session = sessions[0]["session"].as_str().unwrap();
        assert!(
            log.contains(session),
            "{id}: session {session} not in its output"
        );
        if let Some(sent) = calls.iter().find_map(Recorded::session) {
            assert_eq!(session, sent, "{id}: the session the CLI sent to the model");
        }
        // `forge logs` shows the agent's output.
        let logs = agent.forge(&["logs", id, &run]).expect(0);
        assert!(
            logs.stdout.contains(&format!("Finished {needle}.")),
            "{}",
            logs.stdout
        );
        // As a transcript: the call that wrote the task's file, with its arguments, and the
        // usage; not the JSON lines (`--raw` has those).
        let call = logs
            .stdout
            .lines()
            .find(|l| l.starts_with("● ") && l.contains(rel))
            .unwrap_or_else(|| panic!("{id}: no tool call naming {rel}:\n{}", logs.stdout));
        assert!(
            ["● Write ", "● Create ", "● Edit "]
                .iter()
                .any(|verb| call.starts_with(verb)),
            "{id}: {call}"
        );
        assert!(logs.stdout.contains("Usage: "), "{id}: {}", logs.stdout);
        assert!(!logs.stdout.contains("{\"type\""), "{id}: {}", logs.stdout);
        let raw = agent.forge(&["logs", id, &run, "--raw"]).expect(0);
        assert!(raw.stdout.contains("{\""), "{id}: {}", raw.stdout);
    }
    // The markdown-list prompt reached the model intact.
    assert!(
        agent
            .server
            .model_calls()
            .iter()
            .any(|r| r.user_text.contains(gamma_prompt)),
        "the prompt starting with `-` did not reach the model intact: {:?}",
        agent
            .calls("TASK-GAMMA")
            .iter()
            .map(|r| &r.user_text)
            .collect::<Vec<_>>()
    );
    // Only Forge's apply writes the working tree.
    let applied = agent.forge(&["apply", &run]).expect(0);
    assert!(
        applied.stdout.contains("3 files written"),
        "{}",
        applied.stdout
    );
    for (_, _, rel, content) in TASKS {
        assert_eq!(agent.repo.read(rel), content);
    }
}

/// Point 3: a write outside the task's claims is flagged and not integrated.
fn write_outside_claims(name: &'static str) {
    let script = Script::new().when(
        "TASK-ROGUE",
        vec![
            write_turn(name, "src/outside.txt", "rogue\n"),
            Turn::text("Finished TASK-ROGUE."),
        ],
    );
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    let plan = format!(
        "name = \"rogue-{name}\"\n{}[[task]]\nid = \"rogue\"\nprompt = \"TASK-ROGUE: edit src/a.txt\"\nwrites = [\"src/a.txt\"]\n",
        agent.defaults()
    );
    let file = agent.repo.plan("rogue", &plan);
    let out = agent.forge(&["run", &file, "--yes"]).expect(1);
    let run = agent.repo.runs()[0].clone();
    let journal = agent.events(&run);
    let violations = of_task(&journal, "rogue", "claim_violation");
    assert_eq!(violations.len(), 1, "{}", out.stdout);
    assert_eq!(violations[0]["paths"], json!(["src/outside.txt"]));
    assert!(of_task(&journal, "rogue", "merge_integrated").is_empty());
    let finished = of_task(&journal, "rogue", "task_finished");
    assert_eq!(finished[0]["status"], "failed");
    assert!(
        finished[0]["reason"]
            .as_str()
            .unwrap()
            .contains("src/outside.txt was added outside the task's write claims"),
        "{finished:?}"
    );
    assert!(!agent.repo.path().join("src/outside.txt").exists());
}

/// Point 4: a model that is down (nothing listening), refuses (HTTP 401) or fails (HTTP 500
/// every time) fails the task long before its timeout, with the agent's own words as the
/// reason in the summary, the journal and `forge status` (the dashboard's state).
#[allow(clippy::print_stderr)] // the reasons and durations, for whoever reads the test's output
fn model_down_or_refusing(name: &'static str, words: &[(&str, &[&str])]) {
    let script = Script::new()
        .always(
            "TASK-REFUSED",
            Turn::fail(401, "invalid x-api-key (scripted refusal)"),
        )
        .always("TASK-BROKEN", Turn::fail(500, "scripted internal error"));
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    // A port nobody listens on: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let plan = format!(
        "name = \"down-{name}\"\n{}\
         [[task]]\nid = \"down\"\nprompt = \"TASK-DOWN: create src/a.txt\"\nwrites = [\"src/a.txt\"]\n{}\n\n\
         [[task]]\nid = \"refused\"\nprompt = \"TASK-REFUSED: create src/b.txt\"\nwrites = [\"src/b.txt\"]\n\n\
         [[task]]\nid = \"broken\"\nprompt = \"TASK-BROKEN: create src/c.txt\"\nwrites = [\"src/c.txt\"]\n",
        agent.defaults(),
        agent.task_env(&dead, "dead"),
    );
    let file = agent.repo.plan("down", &plan);
    let out = agent.forge(&["run", &file]).expect(1);
    let run = agent.repo.runs()[0].clone();
    let journal = agent.events(&run);
    // `forge status` exits with the run's code: 1, a task failed.
    let status = agent.forge(&["status", &run, "--json"]).expect(1);
    let status_json = vec![serde_json::from_str::<Value>(&status.stdout).unwrap()];
    let mut reasons = BTreeMap::new();
    for (id, expected) in words {
        let finished = of_task(&journal, id, "task_finished");
        assert_eq!(finished.len(), 1, "{id}");
        assert_eq!(
            finished[0]["status"],
            "failed",
            "{id}: {}",
            agent.log(&run, id)
        );
        let reason = finished[0]["reason"].as_str().unwrap().to_owned();
        assert!(
            expected
                .iter()
                .any(|w| reason.to_lowercase().contains(&w.to_lowercase())),
            "{id}: reason `{reason}` says none of {expected:?}; log:\n{}",
            agent.log(&run, id)
        );
        let first_line = reason.lines().next().unwrap();
        assert!(
            out.stdout.contains(first_line),
            "{id}: summary lacks `{first_line}`:\n{}",
            out.stdout
        );
        assert!(
            contains_string(&status_json, &reason),
            "{id}: `forge status --json` lacks the reason: {}",
            status.stdout
        );
        eprintln!(
            "{name} {id}: failed after {} ms: {reason}",
            finished[0]["duration_ms"]
        );
        reasons.insert(*id, reason);
    }
    assert_eq!(reasons.len(), 3);
}

/// An unattended agent may run the project's commands in its workspace: the model asks it to
/// run one, and the command's output is integrated.
fn runs_commands(name: &'static str) {
    let script = Script::new().when(
        "TASK-BUILD",
        vec![
            run_turn(name, "mkdir -p out && uname -s > out/built.txt"),
            Turn::text("Finished TASK-BUILD."),
        ],
    );
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    let plan = format!(
        "name = \"build-{name}\"\n{}[[task]]\nid = \"build\"\nprompt = \"TASK-BUILD: run the build\"\nwrites = [\"out/**\"]\n",
        agent.defaults()
    );
    let file = agent.repo.plan("build", &plan);
    let out = agent.forge(&["run", &file, "--yes"]);
    let run = agent.repo.runs()[0].clone();
    let log = agent.log(&run, "build");
    let out = out.expect(0);
    let built = std::fs::read_to_string(agent.repo.path().join("out/built.txt"));
    assert_eq!(
        built.ok().as_deref(),
        Some("Linux\n"),
        "{}\n{log}",
        out.stdout
    );
    let journal = agent.events(&run);
    let progress = of_task(&journal, "build", "task_progress");
    assert!(
        progress
            .iter()
            .any(|e| e["tool"] == "bash" && e["message"].as_str().unwrap().contains("uname -s")),
        "{progress:?}"
    );
}

/// `forge retry`: the task's first attempt writes one file; retried with added instructions,
/// an agent whose profile can continue its session (`continued`) reaches the model with the
/// first attempt's messages (model answers already in its history, the same session); the
/// others start a new conversation whose prompt holds the first attempt's final message and
/// diff. Both files are in the result.
fn retry_continues_the_session(name: &'static str, continued: bool) {
    // A resumed conversation holds both phrases: its rule comes first. The turn a conversation
    // gets is the number of model answers in its history, so the retry's turns are padded: a
    // continued session starts past the padding, a new one would write the file several times.
    // A shell command, relative to the agent's working directory: a continued session's
    // history names the first attempt's workspace, which is gone.
    let second = run_turn(name, "mkdir -p src && echo second > src/second.txt");
    let script = Script::new()
        .when(
            "TASK-RETRY-TWO",
            vec![
                second.clone(),
                second.clone(),
                second.clone(),
                second.clone(),
                second,
                Turn::text("Finished TASK-RETRY-TWO."),
            ],
        )
        .when(
            "TASK-RETRY-ONE",
            vec![
                write_turn(name, "src/first.txt", "first\n"),
                Turn::text("Finished TASK-RETRY-ONE."),
            ],
        );
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    let plan = format!(
        "name = \"retry-{name}\"\n{}[[task]]\nid = \"work\"\nprompt = \"TASK-RETRY-ONE: write the first file\"\nwrites = [\"src/**\"]\n",
        agent.defaults()
    );
    let file = agent.repo.plan("retry", &plan);
    agent.forge(&["run", &file, "--no-apply"]).expect(0);
    let run = agent.repo.runs()[0].clone();
    let first_calls = agent.calls("TASK-RETRY-ONE").len();
    let out = agent.forge(&[
        "retry",
        "work",
        &run,
        "--prompt",
        "TASK-RETRY-TWO: now write the second file",
        "--yes",
    ]);
    let log = std::fs::read_to_string(
        agent
            .repo
            .path()
            .join(format!(".forge/runs/{run}/tasks/work/2/output.log")),
    )
    .unwrap_or_default();
    assert_eq!(out.code, 0, "{}\n{}\n{log}", out.stdout, out.stderr);
    let read = |rel: &str| std::fs::read_to_string(agent.repo.path().join(rel)).ok();
    assert_eq!(
        read("src/first.txt").as_deref(),
        Some("first\n"),
        "{}\n{log}",
        out.stdout
    );
    assert_eq!(
        read("src/second.txt").as_deref(),
        Some("second\n"),
        "{}\n{log}",
        out.stdout
    );
    let retried: Vec<Recorded> = agent
        .calls("TASK-RETRY-TWO")
        .into_iter()
        .filter(|r| r.is_model_call() && !r.tools.is_empty())
        .collect();
    let first = retried.first().expect("the retry reached the model");
    assert!(first_calls >= 2);
    let sessions: Vec<String> = of_task(&agent.events(&run), "work", "task_session")
        .iter()
        .map(|e| e["session"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    // Either way the model sees the first attempt's work.
    assert!(
        first.user_text.contains("TASK-RETRY-ONE"),
        "{}",
        first.user_text
    );
    if continued {
        // The earlier conversation itself: the model's answers are in the history.
        assert!(
            first.answered >= 2,
            "answers in the history: {}",
            first.answered
        );
        assert_eq!(
            sessions[0], sessions[1],
            "the retry continues the first session"
        );
    } else {
        assert_eq!(first.answered, 0, "a new conversation");
        for shown in ["Finished TASK-RETRY-ONE.", "+first", "src/first.txt"] {
            assert!(
                first.user_text.contains(shown),
                "{shown}: {}",
                first.user_text
            );
        }
    }
}

#[test]
fn claude_retry_continues_the_session() {
    retry_continues_the_session("claude", true);
}

#[test]
fn codex_retry_continues_the_session() {
    retry_continues_the_session("codex", true);
}

#[test]
fn gemini_retry_continues_the_session() {
    retry_continues_the_session("gemini", true);
}

#[test]
fn opencode_retry_continues_the_session() {
    retry_continues_the_session("opencode", true);
}

#[test]
fn droid_retry_continues_the_session() {
    retry_continues_the_session("droid", false);
}

const CLAUDE_WORDS: [(&str, &[&str]); 3] = [
    ("down", &["Connection refused", "Connection error"]),
    ("refused", &["Invalid API key"]),
    ("broken", &["scripted internal error", "500"]),
];

#[test]
fn claude_three_tasks() {
    three_tasks("claude");
}

#[test]
fn claude_write_outside_claims() {
    write_outside_claims("claude");
}

#[test]
fn claude_model_down_or_refusing() {
    model_down_or_refusing("claude", &CLAUDE_WORDS);
}

#[test]
fn claude_runs_commands() {
    runs_commands("claude");
}

const CODEX_WORDS: [(&str, &[&str]); 3] = [
    (
        "down",
        &[
            "error sending request",
            "Connection refused",
            "stream disconnected",
        ],
    ),
    ("refused", &["invalid x-api-key", "401", "Unauthorized"]),
    ("broken", &["scripted internal error", "500", "high demand"]),
];

#[test]
fn codex_three_tasks() {
    three_tasks("codex");
}

#[test]
fn codex_write_outside_claims() {
    write_outside_claims("codex");
}

#[test]
fn codex_model_down_or_refusing() {
    model_down_or_refusing("codex", &CODEX_WORDS);
}

#[test]
fn codex_runs_commands() {
    runs_commands("codex");
}

/// Eight real codex attempts at once against the scripted model all succeed: each in its own
/// PID and mount namespace (codex's own sandbox runs its commands there, on the namespace's
/// `/proc`), each writing its file with codex's tools and running a command.
#[test]
fn codex_eight_attempts_at_once() {
    let mut script = Script::new();
    for i in 0..8 {
        script = script.when(
            format!("TASK-EIGHT-{i}:"),
            vec![
                write_turn("codex", &format!("out/c{i}.txt"), &format!("c{i}\n")),
                run_turn("codex", &format!("uname -s > out/u{i}.txt")),
                Turn::text(format!("Finished TASK-EIGHT-{i}.")),
            ],
        );
    }
    let Some(agent) = Agent::start("codex", script) else {
        return;
    };
    let mut plan = format!(
        "name = \"codex-eight\"\nconcurrency = 8\n{}",
        agent.defaults()
    );
    for i in 0..8 {
        let _ = write!(
            plan,
            "[[task]]\nid = \"c{i}\"\nprompt = \"TASK-EIGHT-{i}: create out/c{i}.txt\"\nwrites = [\"out/c{i}.txt\", \"out/u{i}.txt\"]\n\n"
        );
    }
    let file = agent.repo.plan("eight", &plan);
    let out = agent.forge(&["run", &file, "--yes"]);
    let run = agent.repo.runs()[0].clone();
    let logs: Vec<String> = (0..8).map(|i| agent.log(&run, &format!("c{i}"))).collect();
    let out = out.expect(0);
    for (i, log) in logs.iter().enumerate() {
        assert!(
            out.stdout.contains(&format!("c{i}: integrated")),
            "{}\n{log}",
            out.stdout,
        );
        let written = std::fs::read_to_string(agent.repo.path().join(format!("out/c{i}.txt")))
            .unwrap_or_else(|e| format!("<out/c{i}.txt: {e}>"));
        assert_eq!(written, format!("c{i}\n"), "{}\n{log}", out.stdout);
        let uname = std::fs::read_to_string(agent.repo.path().join(format!("out/u{i}.txt")))
            .unwrap_or_else(|e| format!("<out/u{i}.txt: {e}>"));
        assert_eq!(uname, "Linux\n", "{log}");
    }
}

const GEMINI_WORDS: [(&str, &[&str]); 3] = [
    (
        "down",
        &["fetch failed", "ECONNREFUSED", "Connection refused"],
    ),
    ("refused", &["invalid x-api-key", "API key"]),
    ("broken", &["scripted internal error", "500"]),
];

#[test]
fn gemini_three_tasks() {
    three_tasks("gemini");
}

#[test]
fn gemini_write_outside_claims() {
    write_outside_claims("gemini");
}

#[test]
fn gemini_model_down_or_refusing() {
    model_down_or_refusing("gemini", &GEMINI_WORDS);
}

#[test]
fn gemini_runs_commands() {
    runs_commands("gemini");
}

const OPENCODE_WORDS: [(&str, &[&str]); 3] = [
    (
        "down",
        &["Unable to connect", "ECONNREFUSED", "Connection refused"],
    ),
    ("refused", &["invalid x-api-key", "API key"]),
    ("broken", &["scripted internal error", "500"]),
];

#[test]
fn opencode_three_tasks() {
    three_tasks("opencode");
}

#[test]
fn opencode_write_outside_claims() {
    write_outside_claims("opencode");
}

#[test]
fn opencode_model_down_or_refusing() {
    model_down_or_refusing("opencode", &OPENCODE_WORDS);
}

#[test]
fn opencode_runs_commands() {
    runs_commands("opencode");
}

const DROID_WORDS: [(&str, &[&str]); 3] = [
    ("down", &["Connection", "ECONNREFUSED", "fetch failed"]),
    ("refused", &["invalid x-api-key", "API key", "401"]),
    // Read from droid's log: droid itself prints nothing while it retries (about four minutes).
    (
        "broken",
        &["HTTP 500: scripted internal error (3 failed model calls in a row)"],
    ),
];

#[test]
fn droid_three_tasks() {
    three_tasks("droid");
}

#[test]
fn droid_write_outside_claims() {
    write_outside_claims("droid");
}

#[test]
fn droid_model_down_or_refusing() {
    model_down_or_refusing("droid", &DROID_WORDS);
}

#[test]
fn droid_runs_commands() {
    runs_commands("droid");
}

const VALID_PLAN: &str = r#"```json
{"name": "greet", "task": [
  {"id": "hello", "prompt": "Create hello.txt saying hello", "writes": ["hello.txt"]},
  {"id": "docs", "prompt": "Mention hello.txt in README.md", "writes": ["README.md"], "after": ["hello"]}
]}
```"#;

const CYCLIC_PLAN: &str = r#"```json
{"name": "greet", "task": [
  {"id": "a", "prompt": "x", "writes": ["a.txt"], "after": ["b"]},
  {"id": "b", "prompt": "y", "writes": ["b.txt"], "after": ["a"]}
]}
```"#;

/// `forge plan "<request>" --agent <name>`: a plan answered → a valid plan file; an invalid
/// one → the problems go back to the planner for one repair round; invalid twice → a clear
/// error and nothing written.
fn planner(name: &'static str) {
    let script = Script::new()
        .when("PLAN-OK", vec![Turn::text(VALID_PLAN)])
        // The repair prompt repeats the request: its own rule comes first.
        .when("What is wrong with it", vec![Turn::text(VALID_PLAN)])
        .when("PLAN-REPAIR", vec![Turn::text(CYCLIC_PLAN)])
        .when("PLAN-BAD", vec![Turn::text(CYCLIC_PLAN)]);
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    let out = agent
        .forge(&[
            "plan",
            "PLAN-OK: greet the user",
            "--agent",
            name,
            "-o",
            "ok.toml",
        ])
        .expect(0);
    let written = agent.repo.read("ok.toml");
    assert!(
        written.contains("id = \"hello\""),
        "{written}\n{}",
        out.stdout
    );

    // Repaired: the second call was shown its answer and the cycle.
    agent.server.set_script(
        Script::new()
            .when("What is wrong with it", vec![Turn::text(VALID_PLAN)])
            .when("PLAN-REPAIR", vec![Turn::text(CYCLIC_PLAN)]),
    );
    let out = agent
        .forge(&[
            "plan",
            "PLAN-REPAIR: greet the user",
            "--agent",
            name,
            "-o",
            "repaired.toml",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("asking it to repair it"),
        "{}",
        out.stdout
    );
    assert!(agent.repo.read("repaired.toml").contains("id = \"docs\""));
    let repair = agent
        .server
        .model_calls()
        .into_iter()
        .find(|r| r.user_text.contains("What is wrong with it"))
        .expect("a repair round");
    assert!(repair.user_text.contains("cycle"), "{}", repair.user_text);

    // Invalid twice: a clear error, nothing written.
    agent
        .server
        .set_script(Script::new().when("PLAN-BAD", vec![Turn::text(CYCLIC_PLAN)]));
    let out = agent
        .forge(&[
            "plan",
            "PLAN-BAD: greet the user",
            "--agent",
            name,
            "-o",
            "bad.toml",
        ])
        .expect(2);
    assert!(out.stderr.contains("twice"), "{}", out.stderr);
    assert!(out.stderr.contains("cycle"), "{}", out.stderr);
    assert!(!agent.repo.path().join("bad.toml").exists());
}

#[test]
fn claude_planner() {
    planner("claude");
}

#[test]
fn codex_planner() {
    planner("codex");
}

/// `forge plan --agent droid`: droid plans offline on the scripted model (its default model is
/// the scripted one in the test's settings, as a user's `sessionDefaultSettings.model` would be).
#[test]
fn droid_planner() {
    planner("droid");
}

/// `/forge-parallel` as `forge init` installs it, in the real Claude Code: the scripted model
/// runs `forge plan` and `forge run` with its Bash tool (the planner and the tasks are Claude
/// Code again, on the same scripted model), and the run's result reaches the agent.
#[test]
fn claude_forge_parallel_slash_command() {
    let outer = "Do the following request with several agents working in parallel";
    let command = "forge plan --agent claude -o .forge/plan.toml 'PARALLEL-REQ greet the user' \
                   && forge run .forge/plan.toml --no-apply";
    let script = Script::new()
        .when(
            outer,
            vec![
                run_turn("claude", command),
                Turn::text("Forge planned and ran it; see above."),
            ],
        )
        .when("You are the planner of Forge", vec![Turn::text(VALID_PLAN)])
        .when(
            "Create hello.txt saying hello",
            vec![
                write_turn("claude", "hello.txt", "hello\n"),
                Turn::text("Created."),
            ],
        )
        .when(
            "Mention hello.txt in README.md",
            vec![
                write_turn("claude", "README.md", "# Test project\n\nSee hello.txt.\n"),
                Turn::text("Mentioned."),
            ],
        );
    let Some(agent) = Agent::start("claude", script) else {
        return;
    };
    agent.forge(&["init", "--claude"]).expect(0);
    let forge_dir = PathBuf::from(env!("CARGO_BIN_EXE_forge"))
        .parent()
        .unwrap()
        .to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![forge_dir, agent.bin.clone()];
    dirs.extend(std::env::split_paths(&path));
    let mut claude = std::process::Command::new(agent.bin.join("claude"));
    claude
        .current_dir(agent.repo.path())
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("PWD", agent.repo.path())
        .args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--",
            "/forge-parallel PARALLEL-REQ greet the user",
        ])
        .stdin(std::process::Stdio::null());
    for (k, v) in &agent.setup.env {
        claude.env(k, v);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FORGE_") {
            claude.env_remove(&key);
        }
    }
    let out = claude.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The run happened: planned by the planner, both tasks run, kept for review.
    let runs = agent.repo.runs();
    assert_eq!(runs.len(), 1, "{stdout}");
    let journal = agent.events(&runs[0]);
    assert_eq!(journal.last().unwrap()["status"], "succeeded", "{stdout}");
    assert!(!agent.repo.path().join("hello.txt").exists());
    // Its result went back to the agent: the model call after the Bash call holds it.
    let outer_calls = agent.calls(outer);
    let after = outer_calls
        .iter()
        .find(|c| c.answered == 1)
        .expect("a second outer call");
    let history = after.body["messages"].to_string();
    assert!(
        history.contains(&format!("run {} succeeded", runs[0])),
        "the run's result did not reach the agent: {history}"
    );
    assert!(stdout.contains("Forge planned and ran it"), "{stdout}");
}

/// The planner cannot change the user's files: a real Claude Code told (by the script) to write
/// one while planning writes into its throwaway workspace only, and Forge says it discarded it.
#[test]
fn claude_planner_that_writes_is_contained_and_reported() {
    let script = Script::new().when(
        "PLAN-WRITER",
        vec![
            write_turn("claude", "README.md", "overwritten by the planner\n"),
            Turn::text(VALID_PLAN),
        ],
    );
    let Some(agent) = Agent::start("claude", script) else {
        return;
    };
    let out = agent
        .forge(&[
            "plan",
            "PLAN-WRITER: greet the user",
            "--agent",
            "claude",
            "-o",
            "p.toml",
        ])
        .expect(0);
    assert!(
        out.stdout
            .contains("The planner changed 1 file in its sandbox; they were discarded."),
        "{}",
        out.stdout
    );
    assert_eq!(agent.repo.read("README.md"), "# Test project\n");
    assert!(
        agent
            .repo
            .git(&["status", "--porcelain"])
            .lines()
            .all(|l| l.ends_with("p.toml"))
    );
}

/// A budget exceeded mid-attempt stops the real agent: the model reports big usage with a tool
/// call whose command would take a minute before writing its file; the task fails over its
/// budget and the file never comes.
fn budget_stops_the_agent(name: &'static str) {
    let script = Script::new().when(
        "TASK-SPEND",
        vec![
            run_turn(name, "sleep 60 && mkdir -p out && echo late > out/late.txt")
                .usage(500_000, 1_000),
            Turn::text("Finished TASK-SPEND."),
        ],
    );
    let Some(agent) = Agent::start(name, script) else {
        return;
    };
    let plan = format!(
        "name = \"spend-{name}\"\n{}[[task]]\nid = \"spend\"\nprompt = \"TASK-SPEND: spend a lot\"\nwrites = [\"out/**\"]\nmax_tokens = 100000\n",
        agent.defaults()
    );
    let file = agent.repo.plan("spend", &plan);
    let out = agent.forge(&["run", &file, "--no-apply"]);
    let run = agent.repo.runs()[0].clone();
    let log = agent.log(&run, "spend");
    let out = out.expect(1);
    let journal = agent.events(&run);
    let finished = of_task(&journal, "spend", "task_finished");
    let reason = finished
        .last()
        .and_then(|e| e["reason"].as_str())
        .unwrap_or_default();
    assert!(
        reason.contains("over the task's budget") && reason.contains("max_tokens = 100000"),
        "{reason}\n{}\n{log}",
        out.stdout
    );
    let used: u64 = of_task(&journal, "spend", "task_usage")
        .iter()
        .map(|e| e["tokens_in"].as_u64().unwrap_or(0))
        .sum();
    assert!(used >= 500_000, "{used}\n{log}");
    assert!(
        finished
            .last()
            .is_some_and(|e| e["files_changed"].as_array().is_none_or(Vec::is_empty)),
        "{finished:?}"
    );
}

#[test]
fn claude_budget_stops_the_agent() {
    budget_stops_the_agent("claude");
}

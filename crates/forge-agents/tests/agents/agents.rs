//! Agent profiles and output parsers through the public API: every fixture of
//! `tests/fixtures/agents/` parses into the expected progress, usage and result; unknown events
//! are ignored and non-JSON lines are text; `forge.toml` overrides; missing programs.

use std::path::Path;

use forge_agents::Stream;
use forge_agents::{
    AgentError, AgentEvent, OutputFormat, OutputParser, Profiles, PromptVars, Usage,
};
use proptest::prelude::*;
use serde_json::Value;

const WORKSPACE: &str = "/work/repo";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

type Step = (String, Option<String>, Vec<String>);

/// What a parser made of some output.
struct Parsed {
    events: Vec<AgentEvent>,
    progress: Vec<Step>,
    errors: Vec<String>,
    results: Vec<(String, bool)>,
    usage: Usage,
    result: Option<String>,
}

fn parse_lines(format: OutputFormat, lines: &[(Stream, &str)]) -> Parsed {
    let mut parser = OutputParser::new(format).with_workspace(WORKSPACE);
    let mut events = Vec::new();
    for (stream, line) in lines {
        parser.line(*stream, line, &mut events);
    }
    parser.finish(&mut events);
    summarize(events, &parser)
}

fn summarize(events: Vec<AgentEvent>, parser: &OutputParser) -> Parsed {
    let mut progress = Vec::new();
    let mut errors = Vec::new();
    let mut results = Vec::new();
    let mut sum = Usage::default();
    for e in &events {
        match e {
            AgentEvent::Progress {
                message,
                tool,
                files,
            } => progress.push((message.clone(), tool.clone(), files.clone())),
            AgentEvent::Usage {
                tokens_in,
                tokens_out,
                cost_usd,
            } => {
                sum.tokens_in += tokens_in;
                sum.tokens_out += tokens_out;
                if let Some(c) = cost_usd {
                    *sum.cost_usd.get_or_insert(0.0) += c;
                }
            }
            AgentEvent::Error(m) => errors.push(m.clone()),
            AgentEvent::Result { text, is_error } => results.push((text.clone(), *is_error)),
            AgentEvent::Session(_) | AgentEvent::GiveUp(_) => {}
        }
    }
    assert_eq!(
        sum,
        parser.usage_total(),
        "usage events add up to the total"
    );
    Parsed {
        events,
        progress,
        errors,
        results,
        usage: parser.usage_total(),
        result: parser.result().map(str::to_owned),
    }
}

fn parse_fixture(format: OutputFormat, name: &str) -> Parsed {
    let text = fixture(name);
    let lines: Vec<(Stream, &str)> = text.lines().map(|l| (Stream::Stdout, l)).collect();
    parse_lines(format, &lines)
}

fn say(text: &str) -> Step {
    (text.to_owned(), None, Vec::new())
}

fn tool(message: &str, tool: &str, files: &[&str]) -> Step {
    (
        message.to_owned(),
        Some(tool.to_owned()),
        files.iter().map(|f| (*f).to_owned()).collect(),
    )
}

fn assert_cost(usage: &Usage, want: f64) {
    let got = usage.cost_usd.expect("a cost");
    assert!((got - want).abs() < 1e-9, "cost {got}, want {want}");
}

#[test]
fn droid_fixture() {
    let p = parse_fixture(OutputFormat::Droid, "droid.jsonl");
    let done = "Added JWT middleware and the /api/auth endpoints; the api tests pass.";
    assert_eq!(
        p.progress,
        [
            say("I'll look at the existing auth module first."),
            tool("Read src/api/auth.rs", "read", &[]),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("Create src/api/jwt.rs", "write", &["src/api/jwt.rs"]),
            tool("Run cargo test -p api", "bash", &[]),
            tool(
                "Run cargo test -p api failed: error[E0425]: cannot find function `issue_token` in this scope…",
                "bash",
                &[]
            ),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("Run cargo test -p api", "bash", &[]),
            say(done),
        ]
    );
    assert_eq!(
        p.usage,
        Usage {
            tokens_in: 18_234 + 40_960 + 2_048,
            tokens_out: 1_532,
            cost_usd: None
        }
    );
    assert_eq!(p.results, [(done.to_owned(), false)]);
    assert!(p.errors.is_empty());
    assert!(matches!(p.events.last(), Some(AgentEvent::Result { .. })));
}

#[test]
fn claude_fixture() {
    let p = parse_fixture(OutputFormat::Claude, "claude.jsonl");
    let done = "Done: /api/auth/login and /api/auth/logout are in place behind the JWT middleware, and the api tests pass.";
    assert_eq!(
        p.progress,
        [
            say("I'll add the endpoints. Let me read the router first."),
            tool("Read src/api/mod.rs", "read", &[]),
            tool("Write src/api/auth.rs", "write", &["src/api/auth.rs"]),
            tool("Edit src/api/mod.rs", "edit", &["src/api/mod.rs"]),
            tool("Run cargo test -p api 2>&1 | tail -5", "bash", &[]),
            tool(
                "Run cargo test -p api 2>&1 | tail -5 failed: Exit code 101…",
                "bash",
                &[]
            ),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("Update the todo list", "todo", &[]),
            say(done),
        ]
    );
    // The result's session totals win; the split message `msg_01A` is counted once.
    assert_eq!(p.usage.tokens_in, 17 + 7_657 + 124_003);
    assert_eq!(p.usage.tokens_out, 1_145);
    assert_cost(&p.usage, 0.087_321_3);
    let first_usage: Vec<&AgentEvent> = p
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Usage { .. }))
        .take(2)
        .collect();
    assert_eq!(
        first_usage,
        [
            &AgentEvent::Usage {
                tokens_in: 17_996,
                tokens_out: 3,
                cost_usd: None
            },
            &AgentEvent::Usage {
                tokens_in: 0,
                tokens_out: 93,
                cost_usd: None
            }
        ]
    );
    assert_eq!(p.results, [(done.to_owned(), false)]);
    assert_eq!(p.result.as_deref(), Some(done));
}

#[test]
fn amp_fixture() {
    let p = parse_fixture(OutputFormat::Amp, "amp.jsonl");
    let done = "The auth endpoints are in place and the api tests pass.";
    assert_eq!(
        p.progress,
        [
            say("I'll read the auth module first."),
            tool("Read src/api/auth.rs", "read", &[]),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("Create src/api/jwt.rs", "write", &["src/api/jwt.rs"]),
            tool("Run cargo test -p api", "bash", &[]),
            say(done),
        ]
    );
    // No totals in Amp's result: the per-message usage is all there is.
    assert_eq!(
        p.usage,
        Usage {
            tokens_in: 5_128 + 5_256 + 5_476 + 5_566 + 5_676,
            tokens_out: 61 + 98 + 77 + 35 + 22,
            cost_usd: None
        }
    );
    assert_eq!(p.results, [(done.to_owned(), false)]);
}

#[test]
fn codex_fixture() {
    let p = parse_fixture(OutputFormat::Codex, "codex.jsonl");
    let done = "Added /api/auth/login and JWT middleware; `cargo test -p api` passes.";
    assert_eq!(
        p.progress,
        [
            say("I'll add the auth endpoints and run the tests."),
            tool("Run rg -n \"fn login\" src", "bash", &[]),
            tool(
                "Edit src/api/auth.rs, src/api/jwt.rs",
                "edit",
                &["src/api/auth.rs", "src/api/jwt.rs"]
            ),
            tool("Update the todo list", "todo", &[]),
            tool("Run cargo test -p api", "bash", &[]),
            tool("Run cargo test -p api failed: exit code 101", "bash", &[]),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("docs.search", "mcp", &[]),
            tool("Run cargo test -p api", "bash", &[]),
            say(done),
        ]
    );
    assert_eq!(
        p.usage,
        Usage {
            tokens_in: 24_763,
            tokens_out: 1_822,
            cost_usd: None
        }
    );
    assert_eq!(p.results, [(done.to_owned(), false)]);
}

#[test]
fn gemini_fixture() {
    let p = parse_fixture(OutputFormat::Gemini, "gemini.jsonl");
    let done = "The endpoints are in place and the tests pass.";
    assert_eq!(
        p.progress,
        [
            say("I'll start by reading the auth module."),
            tool("Read src/api/auth.rs", "read", &[]),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("Write src/api/jwt.rs", "write", &["src/api/jwt.rs"]),
            tool("Run cargo test -p api", "bash", &[]),
            tool(
                "Run cargo test -p api failed: Command exited with code 101",
                "bash",
                &[]
            ),
            say("Warning: Loop detection: the same tool call was repeated"),
            tool("Search issue_token", "search", &[]),
            say(done),
        ]
    );
    assert_eq!(
        p.usage,
        Usage {
            tokens_in: 45_120,
            tokens_out: 1_890,
            cost_usd: None
        }
    );
    assert_eq!(p.results, [(done.to_owned(), false)]);
}

#[test]
fn opencode_fixture() {
    let p = parse_fixture(OutputFormat::Opencode, "opencode.jsonl");
    let done = "The auth endpoints are added; `cargo test -p api` still fails on a missing import, which I noted in the todo list.";
    assert_eq!(
        p.progress,
        [
            say("I'll add the auth endpoints."),
            tool("Read src/api/auth.rs", "read", &[]),
            tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"]),
            tool("Write src/api/jwt.rs", "write", &["src/api/jwt.rs"]),
            tool("Run cargo test -p api", "bash", &[]),
            tool(
                "Run cargo test -p api failed: Command failed with exit code 101",
                "bash",
                &[]
            ),
            tool("Update the todo list", "todo", &[]),
            say(done),
        ]
    );
    assert_eq!(p.errors, ["Rate limit exceeded; retrying in 2s"]);
    assert_eq!(p.usage.tokens_in, 12_034 + 4_096 + 2_301 + 16_128 + 512);
    assert_eq!(p.usage.tokens_out, 845 + 310 + 64);
    assert_cost(&p.usage, 0.0215 + 0.0112);
    // No final event in this format: `finish` gives the last text as the result.
    assert_eq!(p.results, [(done.to_owned(), false)]);
}

#[test]
fn aider_fixture() {
    let p = parse_fixture(OutputFormat::Text, "aider.txt");
    assert_eq!(p.progress.len(), 14);
    assert_eq!(p.progress[0], say("Aider v0.86.1"));
    assert_eq!(
        p.progress[5],
        say("I'll make login return a token from the new JWT helper.")
    );
    assert_eq!(
        p.progress[13],
        tool("Edit src/api/auth.rs", "edit", &["src/api/auth.rs"])
    );
    assert_eq!(
        p.usage,
        Usage {
            tokens_in: 14_000,
            tokens_out: 512,
            cost_usd: Some(0.04)
        }
    );
    let result = p.result.unwrap();
    assert!(result.starts_with("Aider v0.86.1\n"), "{result}");
    assert!(
        result.ends_with("Applied edit to src/api/auth.rs"),
        "{result}"
    );
    assert_eq!(p.results.len(), 1);
}

#[test]
fn unknown_events_and_fields_are_ignored_and_other_lines_are_text() {
    for format in OutputFormat::ALL {
        let p = parse_lines(
            format,
            &[
                (
                    Stream::Stdout,
                    r#"{"type":"brand_new_event","x":{"y":[1,2]}}"#,
                ),
                (Stream::Stdout, r#"{"no_type_at_all":true}"#),
                (Stream::Stdout, "   "),
                (Stream::Stderr, "npm WARN deprecated something@1.0.0"),
                (Stream::Stdout, "\u{1b}[32mplain\u{1b}[0m text"),
                (Stream::Stdout, "{not json"),
            ],
        );
        let messages: Vec<&str> = p.progress.iter().map(|(m, _, _)| m.as_str()).collect();
        if format == OutputFormat::Text {
            assert_eq!(
                messages,
                [
                    r#"{"type":"brand_new_event","x":{"y":[1,2]}}"#,
                    r#"{"no_type_at_all":true}"#,
                    "npm WARN deprecated something@1.0.0",
                    "plain text",
                    "{not json"
                ],
                "{format}"
            );
        } else {
            // Standard error of a structured agent is chatter, not activity (it stays in the
            // log, and is the reason of a failure that gives no other).
            assert_eq!(messages, ["plain text", "{not json"], "{format}");
            assert!(
                p.errors.is_empty() && p.usage == Usage::default(),
                "{format}"
            );
        }
    }
    // Known events with fields this version does not know still parse.
    let p = parse_lines(
        OutputFormat::Droid,
        &[(
            Stream::Stdout,
            r#"{"type":"message","role":"assistant","text":"hi","mood":"great","v":2}"#,
        )],
    );
    assert_eq!(p.progress, [say("hi")]);
}

#[test]
fn paths_outside_the_workspace_are_kept_as_written() {
    let mut parser = OutputParser::new(OutputFormat::Claude).with_workspace(WORKSPACE);
    let mut out = Vec::new();
    parser.line(
        Stream::Stdout,
        r#"{"type":"assistant","message":{"id":"m","content":[{"type":"tool_use","id":"t","name":"Write","input":{"file_path":"/etc/hosts","content":""}},{"type":"tool_use","id":"u","name":"Edit","input":{"file_path":"src/./x.rs"}}]}}"#,
        &mut out,
    );
    assert_eq!(
        out,
        [
            AgentEvent::Progress {
                message: "Write /etc/hosts".into(),
                tool: Some("write".into()),
                files: vec!["/etc/hosts".into()]
            },
            AgentEvent::Progress {
                message: "Edit src/x.rs".into(),
                tool: Some("edit".into()),
                files: vec!["src/x.rs".into()]
            }
        ]
    );
    // Without a workspace, paths are reported as the agent wrote them.
    let mut parser = OutputParser::new(OutputFormat::Gemini);
    let mut out = Vec::new();
    parser.line(
        Stream::Stdout,
        r#"{"type":"tool_use","tool_name":"write_file","tool_id":"w","parameters":{"file_path":"/work/repo/a.rs"}}"#,
        &mut out,
    );
    assert!(matches!(&out[0], AgentEvent::Progress { files, .. } if files == &["/work/repo/a.rs"]));
    assert_eq!(
        forge_agents::relative_path("/work/repo/a/b.rs", Path::new(WORKSPACE)).as_deref(),
        Some("a/b.rs")
    );
    assert_eq!(
        forge_agents::relative_path("/tmp/x", Path::new(WORKSPACE)),
        None
    );
}

#[test]
fn error_results_and_failed_turns() {
    let p = parse_lines(
        OutputFormat::Codex,
        &[
            (
                Stream::Stdout,
                r#"{"type":"error","message":"stream disconnected"}"#,
            ),
            (
                Stream::Stdout,
                r#"{"type":"turn.failed","error":{"message":"usage limit reached"}}"#,
            ),
        ],
    );
    assert_eq!(p.errors, ["stream disconnected", "usage limit reached"]);
    assert_eq!(p.results, [("usage limit reached".to_owned(), true)]);
    let p = parse_lines(
        OutputFormat::Gemini,
        &[(
            Stream::Stdout,
            r#"{"type":"result","status":"error","error":{"type":"FatalTurnLimitedError","message":"turn limit"},"stats":{"input_tokens":10,"output_tokens":1}}"#,
        )],
    );
    assert_eq!(p.results, [("turn limit".to_owned(), true)]);
    assert_eq!(p.usage.tokens_in, 10);
    let p = parse_lines(
        OutputFormat::Droid,
        &[(
            Stream::Stdout,
            r#"{"type":"error","source":"cli","message":"Insufficient permissions to run Execute","timestamp":1}"#,
        )],
    );
    assert_eq!(p.errors, ["Insufficient permissions to run Execute"]);
    assert!(
        p.results.is_empty(),
        "droid has no result without completion"
    );
}

#[test]
fn missing_programs_are_one_clear_error_before_the_run() {
    let mut profiles = Profiles::builtin();
    let table: toml::Table = toml::from_str(
        "[droid]\nprogram = \"forge-test-no-such-droid\"\n[codex]\nprogram = \"forge-test-no-such-codex\"\n",
    )
    .unwrap();
    profiles.apply_config(&table).unwrap();
    let err = profiles
        .check_available(["shell", "droid", "droid", "codex"])
        .unwrap_err();
    let AgentError::Unavailable(list) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(list.len(), 2, "each missing agent once");
    assert_eq!(
        list[0].to_string(),
        "`forge-test-no-such-droid` not found on PATH (agent `droid`); install Factory's droid CLI (`curl -fsSL https://app.factory.ai/cli | sh`, see https://docs.factory.ai/cli) or choose another agent with `agent = \"…\"`"
    );
    assert!(
        err.to_string().contains(
            "`forge-test-no-such-codex` not found on PATH (agent `codex`); install the Codex CLI"
        ),
        "{err}"
    );
    let found = profiles.check_available(["shell"]).unwrap();
    assert!(found["shell"].is_absolute());
    let err = profiles.check_available(["gemni"]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown agent `gemni` (did you mean `gemini`?)"),
        "{err}"
    );
}

#[test]
fn forge_toml_adds_and_overrides_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("my-agent");
    std::fs::write(&agent, "#!/bin/sh\necho \"$@\"\n").unwrap();
    let mut perms = std::fs::metadata(&agent).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&agent, perms).unwrap();
    let forge_toml = dir.path().join("forge.toml");
    let text = format!(
        "[defaults]\nagent = \"mine\"\n\n[agents.claude]\nargs = [\"-p\", \"{{prompt}}\", \"--output-format\", \"stream-json\", \"--verbose\", \"--model\", \"{{model}}\"]\nenv = {{ CLAUDE_CONFIG_DIR = \"/opt/claude\" }}\n\n[agents.mine]\nprogram = \"{}\"\nargs = [\"--prompt-file={{prompt_file}}\", \"--model\", \"{{model}}\"]\nformat = \"codex\"\n",
        agent.display()
    );
    std::fs::write(&forge_toml, &text).unwrap();
    let mut profiles = Profiles::builtin();
    profiles.apply_config_source(&text, &forge_toml).unwrap();

    let vars = PromptVars {
        prompt: "fix it",
        prompt_file: Path::new("/tmp/p.md"),
        model: None,
    };
    let claude = profiles.get("claude").unwrap();
    let spec = claude.command(&vars).unwrap();
    assert_eq!(spec.program, "claude");
    assert_eq!(
        spec.args,
        [
            "-p",
            "fix it",
            "--output-format",
            "stream-json",
            "--verbose"
        ]
    );
    assert_eq!(
        spec.env,
        [("CLAUDE_CONFIG_DIR".into(), "/opt/claude".into())]
    );
    let mine = profiles.get("mine").unwrap();
    assert_eq!(mine.format, OutputFormat::Codex);
    assert_eq!(
        mine.command(&PromptVars {
            model: Some("o3"),
            ..vars
        })
        .unwrap()
        .args,
        ["--prompt-file=/tmp/p.md", "--model", "o3"]
    );
    assert_eq!(
        mine.command(&vars).unwrap().args,
        ["--prompt-file=/tmp/p.md"]
    );
    assert_eq!(profiles.check_available(["mine"]).unwrap()["mine"], agent);

    // A mistake names the file, line and column, and the key.
    let bad = "[agents.mine]\nprogram = \"x\"\nformt = \"codex\"\n";
    let err = Profiles::builtin()
        .apply_config_source(bad, &forge_toml)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:1: unknown key `formt` in [agents.mine] (did you mean `format`?); known keys: program, args, format, env, install, resume, home_var, seed",
            forge_toml.display()
        )
    );
    assert!(matches!(err, AgentError::Config { key: Some(ref k), .. } if k == "formt"));
}

#[test]
fn templates_leave_out_an_absent_model_with_its_option() {
    let profiles = Profiles::builtin();
    for name in profiles.names() {
        let p = profiles.get(name).unwrap();
        let without = p
            .command(&PromptVars {
                prompt: "p",
                prompt_file: Path::new("/f"),
                model: None,
            })
            .unwrap()
            .args;
        let with = p
            .command(&PromptVars {
                prompt: "p",
                prompt_file: Path::new("/f"),
                model: Some("the-model"),
            })
            .unwrap()
            .args;
        assert!(!without.iter().any(|a| a == "--model"), "{name}");
        if p.args.iter().any(|a| a.contains("{model}")) {
            let at = with.iter().position(|a| a == "--model").unwrap();
            assert_eq!(with[at + 1], "the-model", "{name}");
            assert_eq!(with.len(), without.len() + 2, "{name}");
        } else {
            assert_eq!(with, without, "{name} ignores the model");
        }
    }
}

// ---- properties ----

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "message",
            "content",
            "usage",
            "item",
            "part",
            "tokens",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "id",
            "text",
            "tool_use_id",
            "is_error",
            "isError",
            "parameters",
            "toolName",
            "stats",
            "result",
            "total_cost_usd",
            "changes",
            "command",
            "exit_code",
            "status",
            "state",
            "delta",
            "role",
            "finalText",
            "error",
            "cost",
            "cache",
            "input",
            "name",
            "tool",
            "tool_id",
            "tool_name",
            "path",
            "file_path",
            "kind",
            "server",
            "subtype",
            "severity",
            "level",
            "models",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        prop::sample::select(vec![
            "assistant",
            "user",
            "tool_use",
            "text",
            "tool_result",
            "error",
            "success",
            "failed",
            "completed",
            "command_execution",
            "file_change",
            "agent_message",
            "mcp_tool_call",
            "todo_list",
            "web_search",
            "add",
            "delete",
            "warning",
        ])
        .prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_event() -> impl Strategy<Value = String> {
    let types = prop::sample::select(vec![
        "system",
        "message",
        "tool_call",
        "tool_result",
        "error",
        "completion",
        "assistant",
        "user",
        "result",
        "thread.started",
        "item.started",
        "item.completed",
        "turn.completed",
        "turn.failed",
        "init",
        "tool_use",
        "text",
        "step_finish",
        "done",
        "unknown",
    ]);
    (
        types,
        prop::collection::btree_map(json_key(), json_value(), 0..6),
    )
        .prop_map(|(t, fields)| {
            let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
            object.insert("type".into(), Value::from(t));
            Value::Object(object).to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any bytes never panic, and a line that is not a JSON object is exactly one text event.
    #[test]
    fn any_line_parses_and_non_json_lines_are_text(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        format in prop::sample::select(OutputFormat::ALL.to_vec()),
    ) {
        let line = String::from_utf8_lossy(&bytes).replace('\n', " ");
        let mut parser = OutputParser::new(format);
        let mut out = Vec::new();
        parser.line(Stream::Stdout, &line, &mut out);
        let object = serde_json::from_str::<Value>(line.trim()).is_ok_and(|v| v.is_object());
        if !object && !line.contains('\u{1b}') {
            let text = line.trim();
            if text.is_empty() {
                prop_assert!(out.is_empty());
            } else {
                prop_assert_eq!(out, vec![AgentEvent::Progress {
                    message: text.to_owned(), tool: None, files: vec![],
                }]);
            }
        }
        parser.finish(&mut Vec::new());
    }

    /// Arbitrary events of known and unknown types never panic, and the usage events always add
    /// up to the total.
    #[test]
    fn any_events_keep_usage_consistent(
        lines in prop::collection::vec(json_event(), 0..24),
        format in prop::sample::select(OutputFormat::ALL.to_vec()),
    ) {
        let mut parser = OutputParser::new(format).with_workspace(WORKSPACE);
        let mut out = Vec::new();
        for l in &lines {
            parser.line(Stream::Stdout, l, &mut out);
        }
        parser.finish(&mut out);
        let mut sum = Usage::default();
        for e in &out {
            if let AgentEvent::Usage { tokens_in, tokens_out, cost_usd } = e {
                sum.tokens_in = sum.tokens_in.saturating_add(*tokens_in);
                sum.tokens_out = sum.tokens_out.saturating_add(*tokens_out);
                if let Some(c) = cost_usd {
                    *sum.cost_usd.get_or_insert(0.0) += c;
                }
            }
        }
        prop_assert_eq!(sum, parser.usage_total());
        let results = out.iter().filter(|e| matches!(e, AgentEvent::Result { .. })).count();
        prop_assert!(results <= lines.len() + 1);
    }
}

fn resumed(profiles: &Profiles, name: &str, model: Option<&str>) -> Option<Vec<String>> {
    let vars = PromptVars {
        prompt: "- go on",
        prompt_file: Path::new("/tmp/p.md"),
        model,
    };
    profiles
        .get(name)
        .unwrap()
        .resume_command(&vars, "S-1")
        .unwrap()
        .map(|c| {
            c.args
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        })
}

/// `resume` is a small template inserted into `args` before the prompt, so a profile's
/// command line is written once.
#[test]
fn resume_is_inserted_before_the_prompt() {
    let profiles = Profiles::builtin();
    assert_eq!(
        resumed(&profiles, "claude", Some("opus")).unwrap(),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Bash",
            "--model",
            "opus",
            "--resume",
            "S-1",
            "--",
            "- go on"
        ]
    );
    assert_eq!(
        resumed(&profiles, "codex", None).unwrap(),
        [
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            "resume",
            "S-1",
            "--",
            "- go on"
        ]
    );
    assert_eq!(
        resumed(&profiles, "sim", None).unwrap(),
        [
            "sim-agent",
            "--format",
            "droid",
            "--resume",
            "S-1",
            "-f",
            "/tmp/p.md"
        ]
    );
    assert_eq!(
        resumed(&profiles, "gemini", None).unwrap(),
        [
            "--skip-trust",
            "--resume",
            "S-1",
            "--prompt=- go on",
            "-o",
            "stream-json",
            "--approval-mode",
            "yolo"
        ]
    );
    assert_eq!(
        resumed(&profiles, "opencode", None).unwrap(),
        [
            "run",
            "--format",
            "json",
            "--print-logs",
            "--log-level",
            "ERROR",
            "--session",
            "S-1",
            "--",
            "- go on"
        ]
    );
    // droid's sessions live in Factory's service: a retry starts a new one.
    for cannot in ["droid", "aider", "amp", "shell"] {
        assert_eq!(resumed(&profiles, cannot, None), None, "{cannot}");
        assert!(!profiles.get(cannot).unwrap().can_resume());
    }
}

/// A user profile sets `resume` in forge.toml; with no prompt argument it goes at the end, and
/// the old whole-command-line key is a clear error naming the new one.
#[test]
fn forge_toml_sets_resume_and_names_it_for_resume_args() {
    let dir = tempfile::tempdir().unwrap();
    let forge_toml = dir.path().join("forge.toml");
    let text = "[agents.mine]\nprogram = \"mine\"\nargs = [\"run\", \"--json\", \"-m\", \"{prompt}\"]\nresume = [\"--continue={session}\"]\n\n[agents.stdin]\nprogram = \"other\"\nargs = [\"--batch\"]\nresume = [\"--session\", \"{session}\"]\n";
    let mut profiles = Profiles::builtin();
    profiles.apply_config_source(text, &forge_toml).unwrap();
    assert_eq!(
        resumed(&profiles, "mine", None).unwrap(),
        ["run", "--json", "--continue=S-1", "-m", "- go on"]
    );
    assert_eq!(
        resumed(&profiles, "stdin", None).unwrap(),
        ["--batch", "--session", "S-1"]
    );
    // `[]` turns resuming off for a built-in profile.
    profiles
        .apply_config_source("[agents.claude]\nresume = []\n", &forge_toml)
        .unwrap();
    assert_eq!(resumed(&profiles, "claude", None), None);

    let old = "[agents.mine]\nprogram = \"mine\"\nresume_args = [\"--resume\", \"{session}\", \"{prompt}\"]\n";
    let err = Profiles::builtin()
        .apply_config_source(old, &forge_toml)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:1: [agents.mine] `resume_args` is replaced by `resume`: only the arguments that continue a session, which Forge inserts before the prompt (e.g. `resume = [\"--resume\", \"{{session}}\"]`)",
            forge_toml.display()
        )
    );
    // A bad template in `resume` names its element.
    let err = Profiles::builtin()
        .apply_config_source(
            "[agents.mine]\nprogram = \"mine\"\nresume = [\"--resume\", \"{sesion}\"]\n",
            &forge_toml,
        )
        .unwrap_err();
    assert!(err.to_string().contains("`{sesion}`"), "{err}");
}

//! Transcripts of every built-in format: the documented fixtures, what the real agent CLIs
//! printed against the scripted model, and the simulated agent in each format. Each shows the
//! assistant's text, its tool calls with their key arguments and line counts, their results,
//! errors, the answer and the usage.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use forge_agents::{Entry, OutputFormat, ToolStatus, Transcript, transcript};

const SIM: &str = env!("CARGO_BIN_EXE_forge-sim-agent");

fn fixture(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(format: OutputFormat, path: &str) -> Transcript {
    transcript(format, &[PathBuf::from("/work/repo")], &fixture(path))
}

/// Each tool call as `heading [status]`.
fn calls(t: &Transcript) -> Vec<String> {
    t.entries
        .iter()
        .filter_map(|e| match e {
            Entry::Tool(call) => Some(format!("{} [{:?}]", call.heading(), call.status)),
            _ => None,
        })
        .collect()
}

fn texts(t: &Transcript) -> Vec<&str> {
    t.entries
        .iter()
        .filter_map(|e| match e {
            Entry::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn errors(t: &Transcript) -> Vec<&str> {
    t.entries
        .iter()
        .filter_map(|e| match e {
            Entry::Error { message } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

fn output_of<'a>(t: &'a Transcript, heading: &str) -> (&'a str, usize) {
    t.entries
        .iter()
        .find_map(|e| match e {
            Entry::Tool(call) if call.heading() == heading => {
                Some((call.output.as_deref().unwrap_or(""), call.output_lines))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no call {heading}: {t:#?}"))
}

#[test]
fn droid_fixture() {
    let t = read(OutputFormat::Droid, "droid.jsonl");
    assert_eq!(
        calls(&t),
        [
            "Read src/api/auth.rs [Ok]",
            "Edit src/api/auth.rs (+3 −1) [Ok]",
            "Create src/api/jwt.rs (+3) [Ok]",
            "Run cargo test -p api [Failed]",
            "Edit src/api/auth.rs (+1) [Ok]",
            "Run cargo test -p api [Ok]",
        ]
    );
    assert_eq!(
        texts(&t),
        [
            "I'll look at the existing auth module first.",
            "Added JWT middleware and the /api/auth endpoints; the api tests pass."
        ]
    );
    let (out, lines) = output_of(&t, "Run cargo test -p api");
    assert!(out.starts_with("error[E0425]"), "{out}");
    assert_eq!(lines, 2);
    assert_eq!(
        t.session.as_deref(),
        Some("6f0c2b5e-8d7a-4c1e-9b3f-2a1d4e5f6a7b")
    );
    assert_eq!(t.usage.tokens_out, 1532);
    assert!(t.result.as_ref().is_some_and(|r| !r.is_error));
}

#[test]
fn claude_and_amp_fixtures() {
    let t = read(OutputFormat::Claude, "claude.jsonl");
    assert_eq!(
        calls(&t),
        [
            "Read src/api/mod.rs [Ok]",
            "Write src/api/auth.rs (+3) [Ok]",
            "Edit src/api/mod.rs (+1) [Ok]",
            "Run cargo test -p api 2>&1 | tail -5 [Failed]",
            "Edit src/api/auth.rs (+2) [Ok]",
            "Update the todo list [Ok]",
        ]
    );
    let (out, _) = output_of(&t, "Run cargo test -p api 2>&1 | tail -5");
    assert_eq!(
        out,
        "Exit code 101\nerror[E0425]: cannot find function `issue_token` in this scope"
    );
    // The thinking block is not part of the transcript; the text is.
    assert_eq!(texts(&t).len(), 2, "{t:#?}");
    assert_eq!(t.usage.cost_usd, Some(0.087_321_3));
    assert_eq!(
        t.result.as_ref().map(|r| r.text.as_str()),
        Some(
            "Done: /api/auth/login and /api/auth/logout are in place behind the JWT middleware, and the api tests pass."
        )
    );

    let t = read(OutputFormat::Amp, "amp.jsonl");
    assert_eq!(
        calls(&t),
        [
            "Read src/api/auth.rs [Ok]",
            "Edit src/api/auth.rs (+1 −1) [Ok]",
            "Create src/api/jwt.rs (+1) [Ok]",
            "Run cargo test -p api [Ok]",
        ]
    );
}

#[test]
fn codex_fixture() {
    let t = read(OutputFormat::Codex, "codex.jsonl");
    assert_eq!(
        calls(&t),
        [
            "Run rg -n \"fn login\" src [Ok]",
            "Edit src/api/auth.rs, src/api/jwt.rs [Ok]",
            "Update the todo list [Ok]",
            "Run cargo test -p api [Failed]",
            "Edit src/api/auth.rs [Ok]",
            "docs.search [Ok]",
            "Run cargo test -p api [Ok]",
        ]
    );
    let failed = t
        .entries
        .iter()
        .find_map(|e| match e {
            Entry::Tool(c) if c.status == ToolStatus::Failed => c.output.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        failed,
        "exit code 101\nerror[E0425]: cannot find function `issue_token`"
    );
    assert_eq!(output_of(&t, "docs.search").0, "Tokens expire after 1h.");
    // Reasoning is not shown; the messages are.
    assert_eq!(texts(&t).len(), 2);
    assert_eq!(t.usage.tokens_in, 24763);
}

#[test]
fn gemini_fixture() {
    let t = read(OutputFormat::Gemini, "gemini.jsonl");
    assert_eq!(
        calls(&t),
        [
            "Read src/api/auth.rs [Ok]",
            "Edit src/api/auth.rs (+1 −1) [Ok]",
            "Write src/api/jwt.rs (+1) [Ok]",
            "Run cargo test -p api [Failed]",
            "Search issue_token [Ok]",
        ]
    );
    // Streamed chunks are joined into one text each.
    assert_eq!(
        texts(&t),
        [
            "I'll start by reading the auth module.",
            "The endpoints are in place and the tests pass."
        ]
    );
    assert_eq!(
        output_of(&t, "Run cargo test -p api").0,
        "Command exited with code 101"
    );
    assert!(
        t.entries.iter().any(
            |e| matches!(e, Entry::Notice { message } if message.starts_with("Loop detection"))
        )
    );
}

#[test]
fn opencode_fixture() {
    let t = read(OutputFormat::Opencode, "opencode.jsonl");
    assert_eq!(
        calls(&t),
        [
            "Read src/api/auth.rs [Ok]",
            "Edit src/api/auth.rs (+1 −1) [Ok]",
            "Write src/api/jwt.rs (+1) [Ok]",
            "Run cargo test -p api [Failed]",
            "Update the todo list [Ok]",
        ]
    );
    assert_eq!(errors(&t), ["Rate limit exceeded; retrying in 2s"]);
    assert_eq!(t.usage.cost_usd, Some(0.0327));
    assert!(t.result.is_some());
}

#[test]
fn aider_text_fixture() {
    let t = read(OutputFormat::Text, "aider.txt");
    assert_eq!(calls(&t), ["Edit src/api/auth.rs [Ok]"]);
    assert!(texts(&t)[0].starts_with("Aider v"), "{t:#?}");
    assert_eq!(t.usage.tokens_out, 512);
}

/// What the real CLIs printed for the scripted session (one file written, then "All done.").
#[test]
fn real_agent_outputs() {
    for (format, file, call) in [
        (
            OutputFormat::Claude,
            "real/claude-success.jsonl",
            "Write src/a.txt (+1) [Ok]",
        ),
        (
            OutputFormat::Codex,
            "real/codex-success.jsonl",
            "Create src/a.txt [Ok]",
        ),
        (
            OutputFormat::Droid,
            "real/droid-success.jsonl",
            "Create src/a.txt (+1) [Ok]",
        ),
        (
            OutputFormat::Gemini,
            "real/gemini-success.jsonl",
            "Write src/a.txt (+1) [Ok]",
        ),
        (
            OutputFormat::Opencode,
            "real/opencode-success.jsonl",
            "Write src/a.txt (+1) [Ok]",
        ),
    ] {
        let t = read(format, file);
        assert_eq!(calls(&t), [call], "{file}");
        assert_eq!(texts(&t), ["All done."], "{file}");
        assert_eq!((t.usage.tokens_in, t.usage.tokens_out), (200, 20), "{file}");
        assert!(t.session.is_some(), "{file}");
    }
    // A model that cannot be reached: the failed calls and the agent's own last words.
    let t = read(OutputFormat::Claude, "real/claude-down.jsonl");
    let errors = errors(&t);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("Model call failed"), "{errors:?}");
    assert!(errors[3].contains("ECONNREFUSED"), "{errors:?}");
}

/// The simulated agent, in every format it speaks, run for real in a temporary directory: its
/// output reads back as the calls it made.
#[test]
fn simulated_agent_in_every_format() {
    let script = "say Adding auth\nwrite src/auth.rs\npub fn login() {}\nfn x() {}\nend\nreplace src/auth.rs login => sign_in\nrun echo built\nrun false";
    // Every format but opencode's, which the simulated agent does not speak.
    for format in OutputFormat::ALL {
        if format == OutputFormat::Opencode {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let prompt = format!("Do it.\n\n```forge-sim\n{script}\n```\n");
        let out = Command::new(SIM)
            .args(["--format", format.name(), &prompt])
            .current_dir(dir.path())
            .env_remove("FORGE_ATTEMPT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        let t = transcript(format, &[dir.path().to_path_buf()], &log);
        if format == OutputFormat::Text {
            // Plain text has no structured calls: its lines are what it said.
            let text = texts(&t).join("\n");
            assert!(text.contains("Run echo built\nbuilt"), "{t:#?}");
            continue;
        }
        let calls = calls(&t);
        assert!(
            calls.iter().any(|c| c == "Write src/auth.rs (+2) [Ok]"
                || c == "Create src/auth.rs (+2) [Ok]"
                || c == "Create src/auth.rs [Ok]"),
            "{format}: {calls:?}\n{log}"
        );
        assert!(
            calls.iter().any(|c| c.starts_with("Edit src/auth.rs")),
            "{format}: {calls:?}"
        );
        assert!(
            calls.contains(&"Run echo built [Ok]".to_owned()),
            "{format}: {calls:?}"
        );
        assert!(
            calls.contains(&"Run false [Failed]".to_owned()),
            "{format}: {calls:?}\n{log}"
        );
        assert!(texts(&t).contains(&"Adding auth"), "{format}: {t:#?}");
    }
}

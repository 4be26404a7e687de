//! What the real agent CLIs printed, at their pinned versions (`.ci/agents/package.json`),
//! against the scripted model server (`forge-testkit`), parsed: sessions, tool calls, usage,
//! failed model calls, the agent's own error words, and standard error kept out of progress.
//! The fixtures in `tests/fixtures/agents/real/` are `<agent>-<case>.jsonl` (standard output)
//! and `.stderr`, with the workspace path replaced by `/work/repo`; the README there names the
//! versions.

use std::path::Path;

use forge_agents::Stream;
use forge_agents::{AgentEvent, OutputFormat, OutputParser, Usage};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents/real")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Parsed {
    events: Vec<AgentEvent>,
    parser: OutputParser,
}

impl Parsed {
    fn progress(&self) -> Vec<(&str, Option<&str>, &[String])> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Progress {
                    message,
                    tool,
                    files,
                } => Some((message.as_str(), tool.as_deref(), files.as_slice())),
                _ => None,
            })
            .collect()
    }

    fn errors(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Error(m) => Some(m.as_str()),
                _ => None,
            })
            .collect()
    }

    fn sessions(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Session(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    fn gave_up(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::GiveUp(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Parses `<case>.jsonl` as standard output and `<case>.stderr` as standard error, in that
/// order (the CLIs write their chatter first).
fn parse(format: OutputFormat, case: &str) -> Parsed {
    let mut parser = OutputParser::new(format).with_workspace("/work/repo");
    let mut events = Vec::new();
    for line in read(&format!("{case}.stderr")).lines() {
        parser.line(Stream::Stderr, line, &mut events);
    }
    for line in read(&format!("{case}.jsonl")).lines() {
        parser.line(Stream::Stdout, line, &mut events);
    }
    parser.finish(&mut events);
    Parsed { events, parser }
}

fn usage(p: &Parsed) -> (u64, u64) {
    let Usage {
        tokens_in,
        tokens_out,
        ..
    } = p.parser.usage_total();
    (tokens_in, tokens_out)
}

#[test]
fn claude_success() {
    let p = parse(OutputFormat::Claude, "claude-success");
    assert_eq!(p.sessions(), ["f447d3c9-9a73-4742-8721-e2ce11b977cf"]);
    assert_eq!(
        p.parser.session(),
        Some("f447d3c9-9a73-4742-8721-e2ce11b977cf")
    );
    let progress = p.progress();
    assert_eq!(
        progress[0],
        (
            "Write src/a.txt",
            Some("write"),
            &["src/a.txt".to_owned()][..]
        )
    );
    assert_eq!(usage(&p), (200, 20));
    assert_eq!(
        p.parser.usage_total().cost_usd,
        Some(0.001_200_000_000_000_000_1)
    );
    assert_eq!(p.parser.result(), Some("All done."));
    // `[claude-code:unrecognized_model] …` on stderr is not activity.
    assert!(
        !progress
            .iter()
            .any(|(m, _, _)| m.contains("unrecognized_model"))
    );
    assert!(
        p.parser
            .last_stderr()
            .unwrap()
            .contains("unrecognized_model")
    );
}

#[test]
fn claude_refused_and_down_say_why_in_its_words() {
    let p = parse(OutputFormat::Claude, "claude-401");
    let retries: Vec<&str> = p
        .progress()
        .iter()
        .map(|(m, _, _)| *m)
        .filter(|m| m.starts_with("Model call failed"))
        .collect();
    assert_eq!(
        retries,
        [
            "Model call failed: HTTP 401: authentication_failed; retry 1 of 3",
            "Model call failed: HTTP 401: authentication_failed; retry 2 of 3",
            "Model call failed: HTTP 401: authentication_failed; retry 3 of 3",
        ]
    );
    assert_eq!(p.errors(), ["Invalid API key · Fix external API key"]);
    assert!(p.parser.result_is_error());
    // Claude's own bound (3) comes before Forge's.
    assert!(p.gave_up().is_empty());
    let p = parse(OutputFormat::Claude, "claude-down");
    assert!(
        p.progress()
            .iter()
            .any(|(m, _, _)| *m == "Model call failed: no response; retry 1 of 3")
    );
    assert_eq!(p.errors().len(), 1);
    assert!(
        p.errors()[0].starts_with("API Error: Connection refused"),
        "{:?}",
        p.errors()
    );
}

#[test]
fn codex_success_and_its_stdin_chatter() {
    let p = parse(OutputFormat::Codex, "codex-success");
    assert_eq!(p.sessions(), ["01a238b5-31d1-7a20-90d5-641986fff867"]);
    assert!(p.progress().contains(&(
        "Create src/a.txt",
        Some("edit"),
        &["src/a.txt".to_owned()][..]
    )));
    assert_eq!(usage(&p), (200, 20));
    assert_eq!(p.parser.usage_total().cost_usd, None);
    assert!(
        !p.progress()
            .iter()
            .any(|(m, _, _)| m.contains("Reading additional input from stdin"))
    );
    assert!(p.errors().is_empty());
}

#[test]
fn codex_down_is_given_up_after_three_reconnects() {
    let p = parse(OutputFormat::Codex, "codex-down");
    assert_eq!(
        p.gave_up(),
        ["Connection failed: error sending request (3 failed model calls in a row)"]
    );
    assert!(
        p.errors().is_empty(),
        "reconnects are not errors: {:?}",
        p.errors()
    );
}

#[test]
fn gemini_success_and_refusal() {
    let p = parse(OutputFormat::Gemini, "gemini-success");
    assert_eq!(p.sessions(), ["d6ab9bbc-f495-4d80-bc96-0c2b991979b4"]);
    assert!(p.progress().contains(&(
        "Write src/a.txt",
        Some("write"),
        &["src/a.txt".to_owned()][..]
    )));
    assert_eq!(usage(&p), (200, 20));
    assert_eq!(p.parser.result(), Some("All done."));
    assert!(!p.progress().iter().any(|(m, _, _)| m.contains("Ripgrep")));
    let p = parse(OutputFormat::Gemini, "gemini-401");
    assert_eq!(p.errors().len(), 1);
    assert!(p.errors()[0].contains("invalid x-api-key (scripted refusal)"));
    assert!(p.parser.result_is_error());
}

#[test]
fn opencode_success() {
    let p = parse(OutputFormat::Opencode, "opencode-success");
    assert_eq!(p.sessions(), ["ses_dc74a0bfcffebyb2aiblDbAiwf"]);
    assert!(p.progress().contains(&(
        "Write src/a.txt",
        Some("write"),
        &["src/a.txt".to_owned()][..]
    )));
    assert_eq!(usage(&p), (200, 20));
    assert_eq!(p.parser.result(), Some("All done."));
}

#[test]
fn droid_success_and_down() {
    let p = parse(OutputFormat::Droid, "droid-success");
    assert_eq!(p.sessions(), ["aebee98a-9926-4a44-9764-ccbe6b20b807"]);
    assert!(p.progress().contains(&(
        "Create src/a.txt",
        Some("write"),
        &["src/a.txt".to_owned()][..]
    )));
    assert_eq!(usage(&p), (200, 20));
    assert_eq!(p.parser.result(), Some("All done."));
    // The agent loop's reason stays the error; the CLI's closing `Exec failed` does not hide it.
    let p = parse(OutputFormat::Droid, "droid-down");
    assert_eq!(p.errors(), ["Connection error."]);
}

#[test]
fn gemini_failing_model_is_given_up_after_three_attempts() {
    let p = parse(OutputFormat::Gemini, "gemini-500");
    assert_eq!(
        p.gave_up(),
        ["HTTP 500: invalid x-api-key (scripted refusal) (3 failed model calls in a row)"]
    );
    assert!(
        !p.progress()
            .iter()
            .any(|(m, _, _)| m.starts_with("Attempt "))
    );
}

/// droid 0.225.2 against a model answering HTTP 500, its log on standard error
/// (`FACTORY_LOG_FILE=/dev/stderr`, as the built-in profile runs it), stopped after 25 s: two
/// failed model calls, in droid's words, among the log's other (offline) errors.
#[test]
fn droid_failed_model_calls_are_read_from_its_log() {
    let p = parse(OutputFormat::Droid, "droid-500");
    let failed: Vec<&str> = p
        .progress()
        .into_iter()
        .map(|(m, _, _)| m)
        .filter(|m| m.starts_with("Model call failed"))
        .collect();
    assert_eq!(
        failed,
        [
            "Model call failed: HTTP 500: scripted internal error; retrying",
            "Model call failed: HTTP 500: scripted internal error; retrying"
        ]
    );
    // The log is not activity, and two failed calls are not yet enough to give up.
    assert_eq!(p.progress().len(), 2, "{:?}", p.progress());
    assert!(p.gave_up().is_empty());
    assert_eq!(p.sessions(), ["6e6d3bf0-ba1a-46fa-98fe-6be9d5bd3dcb"]);
    // Of the log, only an `ERROR` entry (with its error) can be the reason droid failed.
    assert_eq!(
        p.parser.last_stderr(),
        Some(
            "Failed to persist session to cloud after retries: TypeError: getaddrinfo ENOTFOUND api.factory.ai"
        )
    );
}

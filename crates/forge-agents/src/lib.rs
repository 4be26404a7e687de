//! Run AI coding-agent CLIs and read what they print in one format.
//!
//! Every coding agent — Factory's `droid exec`, Claude Code, Codex, Gemini CLI, opencode, Amp,
//! aider — is started differently and prints its own stream: its own JSONL events for text,
//! tool calls, usage, errors, retries and its session, or plain text. Every tool that drives
//! agents rewrites the same adapters. This crate is those adapters, usable alone: it knows how
//! to start each CLI unattended ([`Profile`]) and turns its output, line by line, into one
//! normalized model ([`AgentEvent`]), and it has a simulated agent ([`sim`]) that prints each
//! format for tests. It starts no processes itself: the caller spawns the [`CommandLine`] in the
//! directory the agent works in, however it likes, and feeds each output line to an
//! [`OutputParser`].
//!
//! # Design
//!
//! - **Profiles are data.** A [`Profile`] is a program, argument templates with `{prompt}`,
//!   `{prompt_file}` and `{model}`, extra environment, the [`OutputFormat`] it prints, a
//!   `resume` template that continues one of the agent's own sessions, and where the CLI keeps
//!   its state ([`AgentHome`]). [`Profiles::builtin`] knows `droid`, `claude`, `codex`,
//!   `gemini`, `opencode`, `amp`, `aider`, `shell` and `sim`; a `forge.toml`'s `[agents.<name>]`
//!   tables add profiles or override fields ([`Profiles::apply_config_source`]). Programs are
//!   resolved on `PATH` before anything starts ([`Profiles::check_available`]), so a missing CLI
//!   is one clear error up front, not a task that fails twenty minutes in.
//! - **One module per output format** (`format/droid.rs`, `format/claude.rs`, …) behind one
//!   small dispatch in the parser; adding a format touches its module, [`OutputFormat`], and its
//!   fixtures in `tests/fixtures/agents/`. The normalized model is small on purpose: progress
//!   (text, or a one-line summary of a tool call such as `Edit src/api/auth.rs`, with the files
//!   it changed), usage deltas, errors, the agent's session, a final result, and "give up" when
//!   the agent keeps failing to reach its model. Unknown events and fields are ignored and lines
//!   that are not JSON objects are text, so a newer CLI degrades to less detail, never to a
//!   failure.
//! - **Transcripts** ([`transcript`]) read the same streams for a person: each tool call with
//!   its arguments and result, errors, the final answer.
//! - **No dependency on the rest of Forge.** The crate uses its own [`Stream`] and
//!   [`CommandLine`] rather than Forge's event and process types; Forge maps [`AgentEvent`]s to
//!   its journal events. Nothing here prints or panics on what an agent prints.
//!
//! # Usage accounting
//!
//! Usage events are deltas; [`OutputParser::usage_total`] is their sum. Each format is counted
//! once: Claude and Amp report per-message usage as messages arrive (a message split over several
//! events counts once) and the `result` event's totals reconcile the sum (only the difference is
//! reported, with `total_cost_usd`); Codex reports per turn; Droid's `completion` and Gemini's
//! `result` carry totals for the session; opencode reports per step; aider (text) per message.
//! Input tokens include cached input (cache reads and writes), output tokens include reasoning
//! tokens.
//!
//! # Paths
//!
//! Agents name files as they like, usually absolute. [`OutputParser::with_workspace`] makes
//! paths under the workspace repo-relative (`/`-separated) in both the `files` of a progress event
//! and its message; paths outside it are kept as given. [`relative_path`] does the same for one
//! path.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use forge_agents::{AgentEvent, OutputFormat, OutputParser, Profiles, PromptVars, Stream};
//!
//! // How `claude` is started for a prompt, without and with a model.
//! let profiles = Profiles::builtin();
//! let claude = profiles.get("claude").unwrap();
//! let vars = PromptVars { prompt: "Fix the bug", prompt_file: Path::new("/tmp/p.md"), model: None };
//! let spec = claude.command(&vars).unwrap();
//! assert_eq!(spec.program, "claude");
//! assert!(!spec.args.iter().any(|a| a == "--model"));
//! let spec = claude.command(&PromptVars { model: Some("opus"), ..vars }).unwrap();
//! assert!(spec.args.windows(2).any(|w| w[0] == "--model" && w[1] == "opus"));
//!
//! // What it prints, parsed.
//! let mut parser = OutputParser::new(OutputFormat::Claude).with_workspace("/repo");
//! let mut events = Vec::new();
//! for line in [
//!     r#"{"type":"system","subtype":"init","session_id":"s","model":"claude-sonnet-4-5"}"#,
//!     r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t1","name":"Edit","input":{"file_path":"/repo/src/lib.rs","old_string":"a","new_string":"b"}}],"usage":{"input_tokens":100,"output_tokens":20}}}"#,
//!     "a line that is not JSON",
//!     r#"{"type":"result","subtype":"success","is_error":false,"result":"Fixed.","total_cost_usd":0.01,"usage":{"input_tokens":150,"output_tokens":40}}"#,
//! ] {
//!     parser.line(Stream::Stdout, line, &mut events);
//! }
//! // The agent's own session id, which a later attempt can continue.
//! assert_eq!(events[0], AgentEvent::Session("s".into()));
//! assert_eq!(events[1], AgentEvent::Usage { tokens_in: 100, tokens_out: 20, cost_usd: None });
//! assert_eq!(events[2], AgentEvent::Progress {
//!     message: "Edit src/lib.rs".into(), tool: Some("edit".into()), files: vec!["src/lib.rs".into()],
//! });
//! assert_eq!(events[3], AgentEvent::Progress {
//!     message: "a line that is not JSON".into(), tool: None, files: vec![],
//! });
//! assert_eq!(parser.result(), Some("Fixed."));
//! assert_eq!(parser.usage_total().tokens_in, 150);
//! assert_eq!(parser.usage_total().cost_usd, Some(0.01));
//! ```

mod command;
mod config;
mod duration;
mod format;
mod parse;
mod profile;
pub mod sim;
mod state;
mod summary;
mod transcript;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use command::{CommandLine, find_program};
pub use duration::{DurationError, HumanDuration};
pub use parse::{MAX_FAILED_MODEL_CALLS, OutputParser, relative_path};
pub use profile::{Profile, Profiles, PromptVars};
pub use state::{AgentHome, PrivateState};
pub use transcript::{
    Entry, FinalAnswer, RESULT_LINES, ToolEntry, ToolStatus, Transcript, TranscriptBuilder,
    transcript,
};

/// Which output stream of the agent a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The agent's standard output (its JSONL, or its text).
    Stdout,
    /// The agent's standard error (its chatter and, for some CLIs, its errors).
    Stderr,
}

/// The output format of an agent CLI, which selects its parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Factory's `droid exec -o stream-json`.
    Droid,
    /// Claude Code's `--output-format stream-json --verbose`.
    Claude,
    /// `codex exec --json`.
    Codex,
    /// Gemini CLI's `-o stream-json`.
    Gemini,
    /// `opencode run --format json`.
    Opencode,
    /// Amp's `--stream-json` (Claude Code compatible).
    Amp,
    /// Plain text: every line is progress, standard output is the result.
    Text,
}

impl OutputFormat {
    /// Every format, in a stable order.
    pub const ALL: [OutputFormat; 7] = [
        Self::Droid,
        Self::Claude,
        Self::Codex,
        Self::Gemini,
        Self::Opencode,
        Self::Amp,
        Self::Text,
    ];

    /// The name used in `forge.toml` and on the command line (`droid`, `claude`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Droid => "droid",
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
            Self::Opencode => "opencode",
            Self::Amp => "amp",
            Self::Text => "text",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputFormat {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| AgentError::UnknownFormat { name: s.to_owned() })
    }
}

/// Tokens (and cost) an agent used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, cached input included.
    pub tokens_in: u64,
    /// Output tokens, reasoning included.
    pub tokens_out: u64,
    /// Cost in US dollars, when the agent reports it.
    pub cost_usd: Option<f64>,
}

impl Usage {
    fn add(&mut self, tokens_in: u64, tokens_out: u64, cost_usd: Option<f64>) {
        self.tokens_in = self.tokens_in.saturating_add(tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(tokens_out);
        if let Some(c) = cost_usd {
            *self.cost_usd.get_or_insert(0.0) += c;
        }
    }
}

/// What an [`OutputParser`] makes of an agent's output.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The agent said or did something: assistant text, or a one-line summary of a tool call.
    Progress {
        /// The text, or the summary (`Edit src/api/auth.rs`, `Run cargo test`).
        message: String,
        /// The kind of tool used, if any: `edit`, `write`, `delete`, `bash`, `read`, `search`,
        /// `web`, `todo`, `task`, or the agent's own (lower-cased) tool name.
        tool: Option<String>,
        /// Files this step changed, as the agent named them (see [`OutputParser::with_workspace`]).
        files: Vec<String>,
    },
    /// Tokens (and cost) used since the previous usage event.
    Usage {
        /// Input tokens.
        tokens_in: u64,
        /// Output tokens.
        tokens_out: u64,
        /// Cost in US dollars, when reported.
        cost_usd: Option<f64>,
    },
    /// An error the agent reported (an API failure, a fatal stream error). Whether the attempt
    /// failed is decided by the exit code, not by this.
    Error(String),
    /// The agent named its session (reported once per attempt), so a later attempt can
    /// continue it.
    Session(String),
    /// The agent keeps failing to reach its model (a bounded number of failed model calls in a
    /// row): the attempt should be stopped and failed with this reason, the agent's own words.
    GiveUp(String),
    /// The agent's final answer.
    Result {
        /// The result text (for a planner, e.g. a JSON plan).
        text: String,
        /// Whether the agent reported the run as failed.
        is_error: bool,
    },
}

/// Errors of agent profiles.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent's program is not installed (or not executable).
    #[error("{}", not_found(agent, program, hint))]
    NotFound {
        /// The profile name.
        agent: String,
        /// The program looked for.
        program: String,
        /// How to install it.
        hint: String,
    },
    /// No profile has this name.
    #[error("unknown agent `{name}`{}; known agents: {known}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// A close known name.
        suggestion: Option<String>,
        /// The known names, comma-separated.
        known: String,
    },
    /// An output format name that does not exist.
    #[error(
        "unknown output format `{name}`; use one of droid, claude, codex, gemini, opencode, amp, text"
    )]
    UnknownFormat {
        /// The name given.
        name: String,
    },
    /// A problem in the `[agents]` part of `forge.toml`.
    #[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Config {
        /// `file:line:col` when known.
        location: Option<String>,
        /// The agent (table) the problem is in.
        agent: String,
        /// The key involved, if any.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// An argument template that cannot be expanded.
    #[error("agent `{agent}`: argument `{template}`: {reason}")]
    Template {
        /// The profile name.
        agent: String,
        /// The template as written.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// An expanded argument (usually the prompt) is longer than the OS allows for one argument.
    #[error(
        "agent `{agent}`: an argument would be {bytes} bytes, more than the {limit} bytes the OS allows for one argument; pass the prompt as `{{prompt_file}}` in this agent's `args`"
    )]
    ArgumentTooLong {
        /// The profile name.
        agent: String,
        /// The argument's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Several agents cannot be used (every one is listed).
    #[error("{}", join_errors(.0))]
    Unavailable(Vec<AgentError>),
}

fn not_found(agent: &str, program: &str, hint: &str) -> String {
    let what = if program.contains('/') {
        format!("`{program}` does not exist or is not executable")
    } else {
        format!("`{program}` not found on PATH")
    };
    let whose = if agent == program {
        String::new()
    } else {
        format!(" (agent `{agent}`)")
    };
    format!("{what}{whose}; {hint} or choose another agent with `agent = \"…\"`")
}

fn join_errors(errors: &[AgentError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Edit distance (insertions, deletions, substitutions and swaps of neighbours), for "did you
/// mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j - 1] + cost).min(prev[j] + 1).min(row[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, row);
    }
    prev[b.len()]
}

/// The closest candidate within a third of the word's length (1 to 3 edits).
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_by_name() {
        for f in OutputFormat::ALL {
            assert_eq!(f.name().parse::<OutputFormat>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
        let err = "stream-json".parse::<OutputFormat>().unwrap_err();
        assert!(err.to_string().contains("`stream-json`"), "{err}");
    }

    #[test]
    fn not_found_names_program_agent_and_hint() {
        let e = AgentError::NotFound {
            agent: "droid".into(),
            program: "droid".into(),
            hint: "install Factory's droid CLI".into(),
        };
        assert_eq!(
            e.to_string(),
            "`droid` not found on PATH; install Factory's droid CLI or choose another agent with `agent = \"…\"`"
        );
        let e = AgentError::NotFound {
            agent: "sim".into(),
            program: "/x/forge".into(),
            hint: "h".into(),
        };
        assert!(
            e.to_string()
                .starts_with("`/x/forge` does not exist or is not executable (agent `sim`); h")
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("clade", ["claude", "codex"]), Some("claude"));
        assert_eq!(did_you_mean("zzz", ["claude", "codex"]), None);
        assert_eq!(distance("wirte", "write"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}

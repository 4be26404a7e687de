//! [`OutputParser`]: one agent attempt's output, line by line, into [`AgentEvent`]s.
//!
//! Each format follows its CLI's documented stream schema (the sources are named in
//! `tests/fixtures/agents/README.md`):
//!
//! | format | text | tool calls | usage | result |
//! | --- | --- | --- | --- | --- |
//! | droid | `message` (assistant) | `tool_call` / `tool_result` | `completion.usage` (totals) | `completion.finalText` |
//! | claude, amp | `assistant` text blocks | `tool_use` blocks / `user` `tool_result` blocks | per message, reconciled by `result.usage` + `total_cost_usd` | `result.result` |
//! | codex | `agent_message` items | `command_execution`, `file_change`, `mcp_tool_call`, … items | `turn.completed.usage` (per turn) | last agent message |
//! | gemini | `message` (assistant; `delta` chunks joined) | `tool_use` / `tool_result` | `result.stats` (totals) | last assistant message |
//! | opencode | `text` parts | `tool_use` parts | `step_finish` tokens and cost (per step) | last text |
//! | text | every line | aider's `Applied edit to <path>` | aider's `Tokens: … Cost: $…` lines | standard output |
//!
//! Lines that are not JSON objects are text (ANSI escapes removed); JSON objects of unknown
//! `type` are ignored, except that a structured log line with `"level": "error"` is an error.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};

use crate::Stream;
use serde_json::Value;

use crate::format::{self, Format};
use crate::summary::{ToolCall, one_line, summarize};
use crate::{AgentEvent, OutputFormat, Usage};

/// Longest progress message, in characters (the whole output is in `output.log`).
const MAX_MESSAGE: usize = 4000;
/// Tool calls remembered to name their results.
const MAX_PENDING_TOOLS: usize = 256;
/// Failed model calls in a row (retries the agent reported) after which the attempt is given
/// up: a model that is down or refuses fails the task in seconds, not at its timeout. Agents
/// that bound their own retries lower (Forge runs Claude Code with `CLAUDE_CODE_MAX_RETRIES=3`)
/// stop first, with their own message; Codex, whose retries back off to minutes, is given up
/// after three.
pub const MAX_FAILED_MODEL_CALLS: u32 = 6;

/// Parses one attempt's output. Feed it every line of both streams with [`OutputParser::line`],
/// then call [`OutputParser::finish`] once the process has exited.
#[derive(Debug)]
pub struct OutputParser {
    kind: OutputFormat,
    /// The reader of the format's stream (`format/<name>.rs`).
    format: Box<dyn Format>,
    core: Core,
}

/// What every format shares: the state of one attempt's output and the steps the formats
/// drive (say, tool call and result, usage, failed model call, result).
#[derive(Debug)]
pub(crate) struct Core {
    /// The workspace as given and canonicalized, to make paths relative.
    roots: Vec<PathBuf>,
    usage: Usage,
    pub(crate) result: Option<(String, bool)>,
    pub(crate) last_text: Option<String>,
    /// Tool calls awaiting their results: id, summary, tool kind.
    tools: VecDeque<(String, String, String)>,
    finished: bool,
    /// The session id the agent reported.
    session: Option<String>,
    /// Failed model calls in a row, how many end the attempt, and whether it was given up.
    pub(crate) failed_calls: u32,
    max_failed_calls: u32,
    gave_up: bool,
    /// The last line a structured agent wrote to standard error (not progress: often chatter,
    /// sometimes the only reason it gives for failing).
    pub(crate) last_stderr: Option<String>,
}

pub(crate) fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A token count: a non-negative integer (floats are truncated, anything else is 0).
pub(crate) fn count(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(n) => n.as_u64().unwrap_or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f > 0.0)
                .map_or(0, |f| {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let whole = f as u64;
                    whole
                })
        }),
        None => 0,
    }
}

pub(crate) fn cost(v: &Value, key: &str) -> Option<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|c| c.is_finite() && *c >= 0.0)
}

/// Text of a tool result's `content`: a string, or text blocks.
pub(crate) fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| str_of(b, "text"))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other @ Value::Object(_)) => str_of(other, "message")
            .or_else(|| str_of(other, "text"))
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

pub(crate) fn progress(
    message: String,
    tool: Option<String>,
    files: Vec<String>,
    out: &mut Vec<AgentEvent>,
) {
    out.push(AgentEvent::Progress {
        message,
        tool,
        files,
    });
}

/// Cuts a message to [`MAX_MESSAGE`] characters.
pub(crate) fn cap(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Removes ANSI escape sequences (colours, cursor moves) from a line.
pub(crate) fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out.into()
}

/// `path` relative to the first of `roots` it is under, `/`-separated and normalized; a relative
/// path is normalized as is. `None` if it is outside every root or climbs out with `..`.
fn relative_to_roots(path: &str, roots: &[PathBuf]) -> Option<String> {
    let p = Path::new(path);
    let rest = if p.is_absolute() {
        roots.iter().find_map(|r| p.strip_prefix(r).ok())?
    } else {
        p
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// `path` (as an agent wrote it) relative to `workspace`, `/`-separated: absolute paths under
/// the workspace (or under its canonical form) lose the prefix, relative paths are normalized
/// (`./a/../b` → `b`). `None` for paths outside the workspace.
pub fn relative_path(path: &str, workspace: &Path) -> Option<String> {
    let mut roots = vec![workspace.to_path_buf()];
    if let Ok(canonical) = workspace.canonicalize()
        && canonical != workspace
    {
        roots.push(canonical);
    }
    relative_to_roots(path, &roots)
}

impl OutputParser {
    /// A parser for `format`; paths are reported as the agent wrote them.
    pub fn new(format: OutputFormat) -> Self {
        let reader = format::for_format(format);
        Self {
            kind: format,
            core: Core {
                roots: Vec::new(),
                usage: Usage::default(),
                result: None,
                last_text: None,
                tools: VecDeque::new(),
                finished: false,
                session: None,
                failed_calls: 0,
                max_failed_calls: reader.max_failed_calls(),
                gave_up: false,
                last_stderr: None,
            },
            format: reader,
        }
    }

    /// Reports paths under `workspace` relative to it (`/`-separated), in files and messages;
    /// paths outside it stay as written.
    #[must_use]
    pub fn with_workspace(mut self, workspace: impl Into<PathBuf>) -> Self {
        let workspace = workspace.into();
        let canonical = workspace.canonicalize().ok();
        self.core.roots = vec![workspace];
        if let Some(c) = canonical
            && c != self.core.roots[0]
        {
            self.core.roots.push(c);
        }
        self
    }

    /// Also reports paths under `repo` relative to it: the repository path that shows the
    /// workspace to the agent (Forge's mount-namespace view). Checked after the workspace's own.
    #[must_use]
    pub fn with_view(mut self, repo: impl Into<PathBuf>) -> Self {
        let repo = repo.into();
        if !self.core.roots.contains(&repo) {
            self.core.roots.push(repo);
        }
        self
    }

    /// The format this parser reads.
    pub fn format(&self) -> OutputFormat {
        self.kind
    }

    /// The final result text: the agent's explicit result if it gave one, otherwise its last
    /// assistant text (for `text` agents: standard output, its last 65,536 bytes).
    pub fn result(&self) -> Option<&str> {
        self.format.result(&self.core)
    }

    /// Whether the agent reported its run as failed.
    pub fn result_is_error(&self) -> bool {
        self.core.result.as_ref().is_some_and(|(_, e)| *e)
    }

    /// Usage reported so far (the sum of the usage events).
    pub fn usage_total(&self) -> Usage {
        self.core.usage
    }

    /// The session id the agent reported, if it did.
    pub fn session(&self) -> Option<&str> {
        self.core.session.as_deref()
    }

    /// The last line a structured agent wrote to standard error. Such lines are kept out of
    /// progress (they are mostly chatter: "Reading additional input from stdin…"), but when the
    /// agent fails without an error event this is usually its reason.
    pub fn last_stderr(&self) -> Option<&str> {
        self.core.last_stderr.as_deref()
    }

    /// Parses one line of output (without its newline).
    pub fn line(&mut self, stream: Stream, line: &str, out: &mut Vec<AgentEvent>) {
        self.format.line(&mut self.core, stream, line, out);
    }

    /// Ends the attempt: emits what is still buffered and, for agents whose output has no
    /// explicit final event (`opencode`, `text`), the result.
    pub fn finish(&mut self, out: &mut Vec<AgentEvent>) {
        if self.core.finished {
            return;
        }
        self.core.finished = true;
        self.format.finish(&mut self.core, out);
    }
}

impl Core {
    /// The result so far: the explicit one, else the last assistant text.
    pub(crate) fn result(&self) -> Option<&str> {
        match &self.result {
            Some((text, _)) => Some(text),
            None => self.last_text.as_deref(),
        }
    }

    /// Reads what every JSON event may carry (the session id; a structured error log line)
    /// and returns its `type`, which the format reads.
    pub(crate) fn json<'v>(&mut self, v: &'v Value, out: &mut Vec<AgentEvent>) -> Option<&'v str> {
        if self.session.is_none() {
            let session = str_of(v, "session_id")
                .or_else(|| str_of(v, "sessionID"))
                .or_else(|| {
                    (str_of(v, "type") == Some("thread.started"))
                        .then(|| str_of(v, "thread_id"))
                        .flatten()
                })
                .filter(|s| !s.is_empty());
            if let Some(session) = session {
                self.session = Some(session.to_owned());
                out.push(AgentEvent::Session(session.to_owned()));
            }
        }
        let Some(kind) = str_of(v, "type") else {
            // A structured log line (`{"level":"error","error":{"message":…}}`).
            if matches!(str_of(v, "level"), Some("error" | "fatal")) {
                let message = v
                    .get("error")
                    .and_then(|e| str_of(e, "message"))
                    .or_else(|| str_of(v, "msg"))
                    .or_else(|| str_of(v, "message"));
                if let Some(m) = message {
                    out.push(AgentEvent::Error(cap(m.trim())));
                }
            }
            return None;
        };
        Some(kind)
    }

    pub(crate) fn rel(&self, path: &str) -> String {
        if self.roots.is_empty() {
            path.to_owned()
        } else {
            relative_to_roots(path, &self.roots).unwrap_or_else(|| path.to_owned())
        }
    }

    /// Assistant text.
    pub(crate) fn say(&mut self, text: &str, out: &mut Vec<AgentEvent>) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.last_text = Some(text.to_owned());
        progress(cap(text), None, Vec::new(), out);
    }

    pub(crate) fn tool_call(
        &mut self,
        id: Option<&str>,
        name: &str,
        input: &Value,
        out: &mut Vec<AgentEvent>,
    ) {
        let call = summarize(name, input, &|p| self.rel(p));
        self.emit_call(id, call, out);
    }

    pub(crate) fn emit_call(
        &mut self,
        id: Option<&str>,
        call: ToolCall,
        out: &mut Vec<AgentEvent>,
    ) {
        if self.tools.len() >= MAX_PENDING_TOOLS {
            self.tools.pop_front();
        }
        self.tools.push_back((
            id.unwrap_or_default().to_owned(),
            call.message.clone(),
            call.tool.clone(),
        ));
        progress(call.message, Some(call.tool), call.files, out);
    }

    /// Takes the pending call `id` (a result without an id takes the oldest call).
    pub(crate) fn take_call(&mut self, id: Option<&str>) -> Option<(String, String)> {
        let at = match id.filter(|id| !id.is_empty()) {
            Some(id) => self.tools.iter().position(|(i, _, _)| i == id)?,
            None => 0,
        };
        self.tools.remove(at).map(|(_, m, t)| (m, t))
    }

    pub(crate) fn has_call(&self, id: &str) -> bool {
        self.tools.iter().any(|(i, _, _)| i == id)
    }

    pub(crate) fn tool_done(&mut self, id: Option<&str>) {
        self.take_call(id);
    }

    pub(crate) fn tool_failed(
        &mut self,
        id: Option<&str>,
        detail: &str,
        out: &mut Vec<AgentEvent>,
    ) {
        let detail = one_line(detail);
        let (message, tool) = match self.take_call(id) {
            Some((m, t)) => (m, Some(t)),
            None => ("A tool call".to_owned(), None),
        };
        let message = if detail.is_empty() {
            format!("{message} failed")
        } else {
            format!("{message} failed: {detail}")
        };
        progress(one_line(&message), tool, Vec::new(), out);
    }

    pub(crate) fn add_usage(
        &mut self,
        tokens_in: u64,
        tokens_out: u64,
        cost_usd: Option<f64>,
        out: &mut Vec<AgentEvent>,
    ) {
        if tokens_in == 0 && tokens_out == 0 && cost_usd.is_none() {
            return;
        }
        self.usage.add(tokens_in, tokens_out, cost_usd);
        out.push(AgentEvent::Usage {
            tokens_in,
            tokens_out,
            cost_usd,
        });
    }

    /// Reports what a session total adds to what was already reported.
    pub(crate) fn reconcile_usage(
        &mut self,
        total_in: u64,
        total_out: u64,
        total_cost: Option<f64>,
        out: &mut Vec<AgentEvent>,
    ) {
        let cost = total_cost.map(|c| (c - self.usage.cost_usd.unwrap_or(0.0)).max(0.0));
        self.add_usage(
            total_in.saturating_sub(self.usage.tokens_in),
            total_out.saturating_sub(self.usage.tokens_out),
            cost,
            out,
        );
    }

    /// A model call failed and the agent retries: progress, and once too many failed in a
    /// row, [`AgentEvent::GiveUp`] with `detail`.
    pub(crate) fn model_call_failed(
        &mut self,
        detail: &str,
        retry: &str,
        out: &mut Vec<AgentEvent>,
    ) {
        self.failed_calls += 1;
        let detail = one_line(detail);
        progress(
            cap(&format!("Model call failed: {detail}{retry}")),
            None,
            Vec::new(),
            out,
        );
        if self.failed_calls >= self.max_failed_calls && !self.gave_up {
            self.gave_up = true;
            out.push(AgentEvent::GiveUp(format!(
                "{detail} ({} failed model calls in a row)",
                self.failed_calls
            )));
        }
    }

    pub(crate) fn set_result(&mut self, text: String, is_error: bool, out: &mut Vec<AgentEvent>) {
        self.result = Some((text.clone(), is_error));
        out.push(AgentEvent::Result { text, is_error });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn run(format: OutputFormat, lines: &[&str]) -> (Vec<AgentEvent>, OutputParser) {
        let mut p = OutputParser::new(format);
        let mut out = Vec::new();
        for l in lines {
            p.line(Stream::Stdout, l, &mut out);
        }
        p.finish(&mut out);
        (out, p)
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m ok"), "red ok");
        assert_eq!(strip_ansi("\u{1b}]0;title\u{7}x"), "x");
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn paths_relative_to_workspace() {
        let roots = vec![PathBuf::from("/w/repo")];
        assert_eq!(
            relative_to_roots("/w/repo/src/a.rs", &roots).unwrap(),
            "src/a.rs"
        );
        assert_eq!(relative_to_roots("./src/../b.rs", &roots).unwrap(), "b.rs");
        assert_eq!(relative_to_roots("/elsewhere/x", &roots), None);
        assert_eq!(relative_to_roots("../x", &roots), None);
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        let inside = canonical.join("f.txt");
        assert_eq!(
            relative_path(inside.to_str().unwrap(), dir.path()).unwrap(),
            "f.txt"
        );
    }

    #[test]
    fn structured_error_logs_and_scalars() {
        let (out, _) = run(
            OutputFormat::Droid,
            &[
                r#"{"level":"error","error":{"name":"E","message":"quota exceeded"}}"#,
                r#"{"level":"info","msg":"starting"}"#,
                "42",
                r#"{"type":"brand_new_event","x":1}"#,
            ],
        );
        assert_eq!(
            out,
            [
                AgentEvent::Error("quota exceeded".into()),
                AgentEvent::Progress {
                    message: "42".into(),
                    tool: None,
                    files: vec![]
                }
            ]
        );
    }
}

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

use super::summary::{ToolCall, command_text, list_files, one_line, summarize};
use super::{AgentEvent, OutputFormat, Usage};

/// Longest progress message, in characters (the whole output is in `output.log`).
const MAX_MESSAGE: usize = 4000;
/// How much standard output a text agent's result keeps (its tail).
const MAX_TEXT_RESULT: usize = 64 * 1024;
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
    format: OutputFormat,
    /// The workspace as given and canonicalized, to make paths relative.
    roots: Vec<PathBuf>,
    usage: Usage,
    result: Option<(String, bool)>,
    last_text: Option<String>,
    /// Gemini's streamed `delta` chunks of the current assistant message.
    pending: String,
    /// Claude: the last message id and the usage already counted for it.
    message_usage: Option<(String, u64, u64)>,
    /// Tool calls awaiting their results: id, summary, tool kind.
    tools: VecDeque<(String, String, String)>,
    /// A text agent's standard output (its tail).
    stdout_text: String,
    finished: bool,
    /// The session id the agent reported.
    session: Option<String>,
    /// Failed model calls in a row, and whether the attempt was given up.
    failed_calls: u32,
    gave_up: bool,
    /// The last line a structured agent wrote to standard error (not progress: often chatter,
    /// sometimes the only reason it gives for failing).
    last_stderr: Option<String>,
    /// Droid: whether an error came before the CLI's closing one.
    droid_error_seen: bool,
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A codex `file_change` item's changes: the verb (`Create`, `Delete`, `Edit`) and the path
/// as `rel` shows it. Read the same way for live activity and for transcripts.
pub(super) fn codex_file_changes(
    item: &Value,
    rel: impl Fn(&str) -> String,
) -> Vec<(&'static str, String)> {
    item.get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|change| {
            let path = str_of(change, "path")?;
            let verb = match str_of(change, "kind") {
                Some("add") => "Create",
                Some("delete") => "Delete",
                _ => "Edit",
            };
            Some((verb, rel(path)))
        })
        .collect()
}

/// A token count: a non-negative integer (floats are truncated, anything else is 0).
fn count(v: &Value, key: &str) -> u64 {
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

fn cost(v: &Value, key: &str) -> Option<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|c| c.is_finite() && *c >= 0.0)
}

/// Text of a tool result's `content`: a string, or text blocks.
fn content_text(v: Option<&Value>) -> String {
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

fn progress(message: String, tool: Option<String>, files: Vec<String>, out: &mut Vec<AgentEvent>) {
    out.push(AgentEvent::Progress {
        message,
        tool,
        files,
    });
}

/// Cuts a message to [`MAX_MESSAGE`] characters.
fn cap(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Removes ANSI escape sequences (colours, cursor moves) from a line.
pub(super) fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
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
        Self {
            format,
            roots: Vec::new(),
            usage: Usage::default(),
            result: None,
            last_text: None,
            pending: String::new(),
            message_usage: None,
            tools: VecDeque::new(),
            stdout_text: String::new(),
            finished: false,
            session: None,
            failed_calls: 0,
            gave_up: false,
            last_stderr: None,
            droid_error_seen: false,
        }
    }

    /// Reports paths under `workspace` relative to it (`/`-separated), in files and messages;
    /// paths outside it stay as written.
    #[must_use]
    pub fn with_workspace(mut self, workspace: impl Into<PathBuf>) -> Self {
        let workspace = workspace.into();
        let canonical = workspace.canonicalize().ok();
        self.roots = vec![workspace];
        if let Some(c) = canonical
            && c != self.roots[0]
        {
            self.roots.push(c);
        }
        self
    }

    /// Also reports paths under `repo` relative to it: the repository path that shows the
    /// workspace to the agent (see `process::RepoView`). Checked after the workspace's own.
    #[must_use]
    pub fn with_view(mut self, repo: impl Into<PathBuf>) -> Self {
        let repo = repo.into();
        if !self.roots.contains(&repo) {
            self.roots.push(repo);
        }
        self
    }

    /// The format this parser reads.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// The final result text: the agent's explicit result if it gave one, otherwise its last
    /// assistant text (for `text` agents: standard output, its last 65,536 bytes).
    pub fn result(&self) -> Option<&str> {
        match (&self.result, self.format) {
            (Some((text, _)), _) => Some(text),
            (None, OutputFormat::Text) => Some(self.stdout_text.trim()).filter(|t| !t.is_empty()),
            (None, _) => self
                .last_text
                .as_deref()
                .or_else(|| Some(self.pending.trim()).filter(|t| !t.is_empty())),
        }
    }

    /// Whether the agent reported its run as failed.
    pub fn result_is_error(&self) -> bool {
        self.result.as_ref().is_some_and(|(_, e)| *e)
    }

    /// Usage reported so far (the sum of the usage events).
    pub fn usage_total(&self) -> Usage {
        self.usage
    }

    /// The session id the agent reported, if it did.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The last line a structured agent wrote to standard error. Such lines are kept out of
    /// progress (they are mostly chatter: "Reading additional input from stdin…"), but when the
    /// agent fails without an error event this is usually its reason.
    pub fn last_stderr(&self) -> Option<&str> {
        self.last_stderr.as_deref()
    }

    /// Parses one line of output (without its newline).
    pub fn line(&mut self, stream: Stream, line: &str, out: &mut Vec<AgentEvent>) {
        if self.format == OutputFormat::Text {
            self.text_line(stream, line, out);
            return;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.starts_with('{')
            && let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(trimmed)
        {
            self.json(&value, out);
            return;
        }
        let text = cap(strip_ansi(trimmed).trim());
        if stream == Stream::Stderr {
            if self.format == OutputFormat::Gemini
                && let Some(detail) = gemini_retry(&text)
            {
                self.model_call_failed(&detail, "; retrying", out);
            }
            if self.format == OutputFormat::Opencode
                && let Some(detail) = opencode_stream_error(&text)
            {
                self.model_call_failed(&detail, "; retrying", out);
            }
            if !text.is_empty() {
                self.last_stderr = Some(text);
            }
            return;
        }
        progress(text, None, Vec::new(), out);
    }

    /// Ends the attempt: emits what is still buffered and, for agents whose output has no
    /// explicit final event (`opencode`, `text`), the result.
    pub fn finish(&mut self, out: &mut Vec<AgentEvent>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.flush_pending(out);
        if self.result.is_none()
            && matches!(self.format, OutputFormat::Opencode | OutputFormat::Text)
            && let Some(text) = self.result().map(str::to_owned)
        {
            self.set_result(text, false, out);
        }
    }

    fn text_line(&mut self, stream: Stream, line: &str, out: &mut Vec<AgentEvent>) {
        let clean = strip_ansi(line);
        if stream == Stream::Stdout {
            self.stdout_text.push_str(&clean);
            self.stdout_text.push('\n');
            if self.stdout_text.len() > 2 * MAX_TEXT_RESULT {
                let mut cut = self.stdout_text.len() - MAX_TEXT_RESULT;
                while !self.stdout_text.is_char_boundary(cut) {
                    cut += 1;
                }
                self.stdout_text.drain(..cut);
            }
        }
        let trimmed = clean.trim();
        if trimmed.is_empty() {
            return;
        }
        // aider reports its edits and usage in plain text.
        if let Some(path) = trimmed.strip_prefix("Applied edit to ") {
            let path = self.rel(path.trim());
            progress(
                format!("Edit {path}"),
                Some("edit".to_owned()),
                vec![path],
                out,
            );
            return;
        }
        if let Some((tokens_in, tokens_out, cost_usd)) = aider_usage(trimmed) {
            self.add_usage(tokens_in, tokens_out, cost_usd, out);
        }
        progress(cap(trimmed), None, Vec::new(), out);
    }

    fn json(&mut self, v: &Value, out: &mut Vec<AgentEvent>) {
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
            return;
        };
        match self.format {
            OutputFormat::Droid => self.droid(kind, v, out),
            OutputFormat::Claude | OutputFormat::Amp => self.claude(kind, v, out),
            OutputFormat::Codex => self.codex(kind, v, out),
            OutputFormat::Gemini => self.gemini(kind, v, out),
            OutputFormat::Opencode => self.opencode(kind, v, out),
            OutputFormat::Text => {}
        }
    }

    // ---- shared steps ----

    fn rel(&self, path: &str) -> String {
        if self.roots.is_empty() {
            path.to_owned()
        } else {
            relative_to_roots(path, &self.roots).unwrap_or_else(|| path.to_owned())
        }
    }

    /// Assistant text.
    fn say(&mut self, text: &str, out: &mut Vec<AgentEvent>) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.last_text = Some(text.to_owned());
        progress(cap(text), None, Vec::new(), out);
    }

    fn flush_pending(&mut self, out: &mut Vec<AgentEvent>) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            self.say(&text, out);
        }
    }

    fn tool_call(
        &mut self,
        id: Option<&str>,
        name: &str,
        input: &Value,
        out: &mut Vec<AgentEvent>,
    ) {
        let call = summarize(name, input, &|p| self.rel(p));
        self.emit_call(id, call, out);
    }

    fn emit_call(&mut self, id: Option<&str>, call: ToolCall, out: &mut Vec<AgentEvent>) {
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
    fn take_call(&mut self, id: Option<&str>) -> Option<(String, String)> {
        let at = match id.filter(|id| !id.is_empty()) {
            Some(id) => self.tools.iter().position(|(i, _, _)| i == id)?,
            None => 0,
        };
        self.tools.remove(at).map(|(_, m, t)| (m, t))
    }

    fn has_call(&self, id: &str) -> bool {
        self.tools.iter().any(|(i, _, _)| i == id)
    }

    fn tool_done(&mut self, id: Option<&str>) {
        self.take_call(id);
    }

    fn tool_failed(&mut self, id: Option<&str>, detail: &str, out: &mut Vec<AgentEvent>) {
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

    fn add_usage(
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
    fn reconcile_usage(
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

    /// How many failed model calls in a row end the attempt: Codex, Gemini CLI and opencode
    /// back off to minutes between calls (4 s, 8 s, 13 s, …; opencode 2 s doubling to 30 s), so
    /// three; others [`MAX_FAILED_MODEL_CALLS`].
    fn max_failed_calls(&self) -> u32 {
        match self.format {
            OutputFormat::Codex | OutputFormat::Gemini | OutputFormat::Opencode => 3,
            _ => MAX_FAILED_MODEL_CALLS,
        }
    }

    /// A model call failed and the agent retries: progress, and once too many failed in a
    /// row, [`AgentEvent::GiveUp`] with `detail`.
    fn model_call_failed(&mut self, detail: &str, retry: &str, out: &mut Vec<AgentEvent>) {
        self.failed_calls += 1;
        let detail = one_line(detail);
        progress(
            cap(&format!("Model call failed: {detail}{retry}")),
            None,
            Vec::new(),
            out,
        );
        if self.failed_calls >= self.max_failed_calls() && !self.gave_up {
            self.gave_up = true;
            out.push(AgentEvent::GiveUp(format!(
                "{detail} ({} failed model calls in a row)",
                self.failed_calls
            )));
        }
    }

    fn set_result(&mut self, text: String, is_error: bool, out: &mut Vec<AgentEvent>) {
        self.result = Some((text.clone(), is_error));
        out.push(AgentEvent::Result { text, is_error });
    }

    // ---- formats ----

    /// Factory droid `exec -o stream-json`.
    fn droid(&mut self, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        match kind {
            "message" => {
                if str_of(v, "role") == Some("assistant")
                    && let Some(text) = str_of(v, "text")
                {
                    self.say(text, out);
                }
            }
            "tool_call" => {
                let name = str_of(v, "toolName")
                    .or_else(|| str_of(v, "toolId"))
                    .unwrap_or("tool");
                let input = v.get("parameters").unwrap_or(&Value::Null);
                self.tool_call(str_of(v, "id"), name, input, out);
            }
            "tool_result" => {
                let id = str_of(v, "id");
                if v.get("isError").and_then(Value::as_bool) == Some(true) {
                    let detail = v
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .map_or_else(|| content_text(v.get("value")), str::to_owned);
                    self.tool_failed(id, &detail, out);
                } else {
                    self.tool_done(id);
                }
            }
            "error" => {
                if let Some(m) = str_of(v, "message") {
                    // The CLI's own closing `Exec failed` follows the agent loop's reason
                    // (`Connection error.`): that reason stays the error.
                    if str_of(v, "source") == Some("cli") && self.droid_error_seen {
                        progress(cap(&format!("error: {}", m.trim())), None, Vec::new(), out);
                    } else {
                        self.droid_error_seen = true;
                        out.push(AgentEvent::Error(cap(m.trim())));
                    }
                }
            }
            "completion" => {
                if let Some(u) = v.get("usage") {
                    let tokens_in = count(u, "input_tokens")
                        + count(u, "cache_read_input_tokens")
                        + count(u, "cache_creation_input_tokens");
                    let tokens_out = count(u, "output_tokens") + count(u, "thinking_tokens");
                    self.reconcile_usage(tokens_in, tokens_out, cost(v, "cost_usd"), out);
                }
                let text = text_of(v, "finalText")
                    .or_else(|| self.last_text.clone())
                    .unwrap_or_default();
                self.set_result(text, false, out);
            }
            _ => {}
        }
    }

    /// Claude Code `--output-format stream-json --verbose` (and Amp's compatible stream).
    fn claude(&mut self, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        match kind {
            "system" if str_of(v, "subtype") == Some("api_retry") => {
                let detail = match (
                    v.get("error_status").and_then(Value::as_u64),
                    str_of(v, "error"),
                ) {
                    (Some(status), Some(e)) if e != "unknown" => format!("HTTP {status}: {e}"),
                    (Some(status), _) => format!("HTTP {status}"),
                    (None, Some(e)) if e != "unknown" => e.to_owned(),
                    (None, _) => "no response".to_owned(),
                };
                let retry = match (
                    v.get("attempt").and_then(Value::as_u64),
                    v.get("max_retries").and_then(Value::as_u64),
                ) {
                    (Some(a), Some(m)) => format!("; retry {a} of {m}"),
                    _ => String::new(),
                };
                self.model_call_failed(&detail, &retry, out);
            }
            "assistant" => {
                let message = v.get("message").unwrap_or(&Value::Null);
                if let Some(err) = str_of(v, "error") {
                    // A synthetic message whose text is the API error, in the agent's words.
                    let text = match message.get("content") {
                        Some(content) => content_text(Some(content)),
                        None => String::new(),
                    };
                    let text = if text.trim().is_empty() {
                        format!("the agent reported `{err}`")
                    } else {
                        text.trim().to_owned()
                    };
                    out.push(AgentEvent::Error(cap(&text)));
                    return;
                }
                self.failed_calls = 0;
                if let Some(u) = message.get("usage") {
                    self.claude_message_usage(str_of(message, "id"), u, out);
                }
                match message.get("content") {
                    Some(Value::String(text)) => self.say(text, out),
                    Some(Value::Array(blocks)) => {
                        for block in blocks {
                            match str_of(block, "type") {
                                Some("text") => {
                                    if let Some(t) = str_of(block, "text") {
                                        self.say(t, out);
                                    }
                                }
                                Some("tool_use") => {
                                    let name = str_of(block, "name").unwrap_or("tool");
                                    let input = block.get("input").unwrap_or(&Value::Null);
                                    self.tool_call(str_of(block, "id"), name, input, out);
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            "user" => {
                let blocks = v
                    .get("message")
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_array);
                for block in blocks.into_iter().flatten() {
                    if str_of(block, "type") != Some("tool_result") {
                        continue;
                    }
                    let id = str_of(block, "tool_use_id");
                    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                        let detail = content_text(block.get("content"));
                        self.tool_failed(id, &detail, out);
                    } else {
                        self.tool_done(id);
                    }
                }
            }
            "result" => {
                let subtype = str_of(v, "subtype").unwrap_or("");
                let total_cost = cost(v, "total_cost_usd").or_else(|| cost(v, "cost_usd"));
                if let Some(u) = v.get("usage") {
                    let (tokens_in, tokens_out) = claude_tokens(u);
                    self.reconcile_usage(tokens_in, tokens_out, total_cost, out);
                } else if total_cost.is_some() {
                    self.reconcile_usage(0, 0, total_cost, out);
                }
                let is_error = v.get("is_error").and_then(Value::as_bool) == Some(true)
                    || subtype.starts_with("error");
                let text = match text_of(v, "result") {
                    Some(t) => t,
                    None if is_error => format!("the agent stopped: {subtype}"),
                    None => self.last_text.clone().unwrap_or_default(),
                };
                self.set_result(text, is_error, out);
            }
            _ => {}
        }
    }

    /// One message's usage, counted once however many events repeat it.
    fn claude_message_usage(&mut self, id: Option<&str>, u: &Value, out: &mut Vec<AgentEvent>) {
        let (tokens_in, tokens_out) = claude_tokens(u);
        let (add_in, add_out) = match (&mut self.message_usage, id) {
            (Some((last, seen_in, seen_out)), Some(id)) if last == id => {
                let add = (
                    tokens_in.saturating_sub(*seen_in),
                    tokens_out.saturating_sub(*seen_out),
                );
                *seen_in = (*seen_in).max(tokens_in);
                *seen_out = (*seen_out).max(tokens_out);
                add
            }
            _ => {
                self.message_usage =
                    Some((id.unwrap_or_default().to_owned(), tokens_in, tokens_out));
                (tokens_in, tokens_out)
            }
        };
        self.add_usage(add_in, add_out, None, out);
    }

    /// `codex exec --json`.
    fn codex(&mut self, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        match kind {
            "item.started" => {
                if let Some(item) = v.get("item") {
                    self.codex_item(item, false, out);
                }
            }
            "item.completed" => {
                self.failed_calls = 0;
                if let Some(item) = v.get("item") {
                    self.codex_item(item, true, out);
                }
            }
            "turn.completed" => {
                if let Some(u) = v.get("usage") {
                    self.add_usage(
                        count(u, "input_tokens"),
                        count(u, "output_tokens") + count(u, "reasoning_output_tokens"),
                        None,
                        out,
                    );
                }
                let text = self.last_text.clone().unwrap_or_default();
                self.set_result(text, false, out);
            }
            "turn.failed" => {
                let message = v
                    .get("error")
                    .and_then(|e| str_of(e, "message"))
                    .unwrap_or("the turn failed")
                    .trim()
                    .to_owned();
                out.push(AgentEvent::Error(cap(&message)));
                self.set_result(message, true, out);
            }
            "error" => {
                if let Some(m) = str_of(v, "message") {
                    // `Reconnecting... 2/5 (stream disconnected …)`, `Reconnecting... waiting
                    // for network (Connection failed: …)`: a failed model call it retries.
                    match m.trim().strip_prefix("Reconnecting...") {
                        Some(rest) => {
                            let rest = rest.trim();
                            let detail = match (rest.find('('), rest.rfind(')')) {
                                (Some(a), Some(b)) if a < b => &rest[a + 1..b],
                                _ => rest,
                            };
                            self.model_call_failed(detail, "; retrying", out);
                        }
                        None => out.push(AgentEvent::Error(cap(m.trim()))),
                    }
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per item type
    fn codex_item(&mut self, item: &Value, completed: bool, out: &mut Vec<AgentEvent>) {
        let id = str_of(item, "id").unwrap_or_default();
        let item_type = str_of(item, "type").or_else(|| str_of(item, "item_type"));
        match item_type {
            Some("agent_message" | "assistant_message") if completed => {
                if let Some(t) = str_of(item, "text") {
                    self.say(t, out);
                }
            }
            Some("command_execution") => {
                if !self.has_call(id) {
                    let command = item
                        .get("command")
                        .and_then(command_text)
                        .unwrap_or_default();
                    let input = serde_json::json!({ "command": command });
                    self.tool_call(Some(id), "bash", &input, out);
                }
                if completed {
                    let exit = item.get("exit_code").and_then(Value::as_i64);
                    let failed = matches!(str_of(item, "status"), Some("failed" | "declined"))
                        || exit.is_some_and(|c| c != 0);
                    if failed {
                        let detail = match (exit, str_of(item, "status")) {
                            (Some(c), _) => format!("exit code {c}"),
                            (None, Some(s)) => s.to_owned(),
                            (None, None) => String::new(),
                        };
                        self.tool_failed(Some(id), &detail, out);
                    } else {
                        self.tool_done(Some(id));
                    }
                }
            }
            Some("file_change") if completed => {
                let changes = codex_file_changes(item, |p| self.rel(p));
                let files: Vec<String> = changes.iter().map(|(_, p)| p.clone()).collect();
                let mut message = match changes.as_slice() {
                    [(verb, p)] => format!("{verb} {p}"),
                    _ => format!("Edit {}", list_files(&files)),
                };
                if str_of(item, "status") == Some("failed") {
                    message.push_str(" failed");
                }
                progress(message, Some("edit".to_owned()), files, out);
            }
            Some("mcp_tool_call") => {
                if !self.has_call(id) {
                    let server = str_of(item, "server").unwrap_or("mcp");
                    let tool = str_of(item, "tool").unwrap_or("tool");
                    let call = ToolCall {
                        message: one_line(&format!("{server}.{tool}")),
                        tool: "mcp".to_owned(),
                        files: Vec::new(),
                    };
                    self.emit_call(Some(id), call, out);
                }
                if completed {
                    match item.get("error").filter(|e| !e.is_null()) {
                        Some(e) => {
                            let detail = content_text(Some(e));
                            self.tool_failed(Some(id), &detail, out);
                        }
                        None => self.tool_done(Some(id)),
                    }
                }
            }
            Some("web_search") => {
                if !self.has_call(id) {
                    let input = serde_json::json!({ "query": str_of(item, "query") });
                    self.tool_call(Some(id), "web_search", &input, out);
                }
                if completed {
                    self.tool_done(Some(id));
                }
            }
            Some("todo_list") if !completed && !self.has_call(id) => {
                self.tool_call(Some(id), "todo_write", &Value::Null, out);
            }
            Some("todo_list") if completed => self.tool_done(Some(id)),
            Some("error") if completed => {
                if let Some(m) = str_of(item, "message") {
                    out.push(AgentEvent::Error(cap(m.trim())));
                }
            }
            _ => {}
        }
    }

    /// Gemini CLI `-o stream-json`.
    fn gemini(&mut self, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        if kind != "message" {
            self.flush_pending(out);
        }
        match kind {
            "message" => {
                if str_of(v, "role") != Some("assistant") {
                    return;
                }
                let content = str_of(v, "content").unwrap_or("");
                if v.get("delta").and_then(Value::as_bool) == Some(true) {
                    self.pending.push_str(content);
                } else {
                    self.flush_pending(out);
                    self.say(content, out);
                }
            }
            "tool_use" => {
                let name = str_of(v, "tool_name").unwrap_or("tool");
                let input = v.get("parameters").unwrap_or(&Value::Null);
                self.tool_call(str_of(v, "tool_id"), name, input, out);
            }
            "tool_result" => {
                let id = str_of(v, "tool_id");
                if str_of(v, "status") == Some("error") {
                    let detail = v
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .map_or_else(|| text_of(v, "output").unwrap_or_default(), str::to_owned);
                    self.tool_failed(id, &detail, out);
                } else {
                    self.tool_done(id);
                }
            }
            "error" => {
                let message = str_of(v, "message").unwrap_or("error").trim();
                if str_of(v, "severity") == Some("warning") {
                    progress(cap(&format!("Warning: {message}")), None, Vec::new(), out);
                } else {
                    out.push(AgentEvent::Error(cap(message)));
                }
            }
            "result" => {
                if let Some(stats) = v.get("stats") {
                    let (tokens_in, tokens_out) = gemini_tokens(stats);
                    self.reconcile_usage(tokens_in, tokens_out, None, out);
                }
                if str_of(v, "status") == Some("error") {
                    let message = v
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .unwrap_or("the agent failed")
                        .trim()
                        .to_owned();
                    out.push(AgentEvent::Error(cap(&message)));
                    self.set_result(message, true, out);
                } else {
                    let text = self.last_text.clone().unwrap_or_default();
                    self.set_result(text, false, out);
                }
            }
            _ => {}
        }
    }

    /// `opencode run --format json`.
    fn opencode(&mut self, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        let part = v.get("part").unwrap_or(&Value::Null);
        match kind {
            "text" => {
                if let Some(t) = str_of(part, "text") {
                    self.say(t, out);
                }
            }
            "tool_use" => {
                let name = str_of(part, "tool").unwrap_or("tool");
                let state = part.get("state").unwrap_or(&Value::Null);
                let input = state.get("input").unwrap_or(&Value::Null);
                let id = str_of(part, "callID").or_else(|| str_of(part, "id"));
                self.tool_call(id, name, input, out);
                if str_of(state, "status") == Some("error") {
                    let detail = content_text(state.get("error"));
                    self.tool_failed(id, &detail, out);
                } else {
                    self.tool_done(id);
                }
            }
            "step_finish" => {
                let tokens = part.get("tokens").unwrap_or(&Value::Null);
                let cache = tokens.get("cache").unwrap_or(&Value::Null);
                self.add_usage(
                    count(tokens, "input") + count(cache, "read") + count(cache, "write"),
                    count(tokens, "output") + count(tokens, "reasoning"),
                    cost(part, "cost"),
                    out,
                );
            }
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let message = e
                    .get("data")
                    .and_then(|d| str_of(d, "message"))
                    .or_else(|| str_of(e, "message"))
                    .or_else(|| str_of(e, "name"))
                    .or_else(|| e.as_str())
                    .unwrap_or("error");
                out.push(AgentEvent::Error(cap(message.trim())));
            }
            "done" if self.result.is_none() => {
                let text = self.last_text.clone().unwrap_or_default();
                self.set_result(text, false, out);
            }
            _ => {}
        }
    }
}

/// opencode's log line for a failed call of the main model (its profile asks for error logs on
/// standard error, `--print-logs --log-level ERROR`): `… level=ERROR … message="stream error" …
/// small=false … error.error="AI_APICallError: …"`. Its JSON output says nothing until it has
/// retried for about 90 s; these lines are how its failed calls are counted. The reason is
/// the error, without the SDK's class name.
fn opencode_stream_error(line: &str) -> Option<String> {
    if !line.contains("level=ERROR")
        || !line.contains("message=\"stream error\"")
        || line.contains("small=true")
    {
        return None;
    }
    let start = line.find("error.error=\"")? + "error.error=\"".len();
    let rest = &line[start..];
    let error = &rest[..rest.find('"').unwrap_or(rest.len())];
    let error = error
        .split_once(": ")
        .filter(|(class, _)| class.starts_with("AI_"))
        .map_or(error, |(_, message)| message);
    Some(if error.trim().is_empty() {
        "the model call failed".to_owned()
    } else {
        error.trim().to_owned()
    })
}

/// Gemini CLI's retry line on standard error, `Attempt 2 failed with status 500. Retrying with
/// backoff... _ApiError: {"error":{"code":500,"message":"…"}}`: the reason, the API's message
/// when it gives one.
fn gemini_retry(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Attempt ")?;
    let (_, after) = rest.split_once(" failed")?;
    if let Some(i) = after.find("\"message\":\"") {
        let message = &after[i + "\"message\":\"".len()..];
        let end = message.find('"').unwrap_or(message.len());
        let status = after
            .strip_prefix(" with status ")
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .filter(|s| !s.is_empty());
        return Some(match status {
            Some(status) => format!("HTTP {status}: {}", &message[..end]),
            None => message[..end].to_owned(),
        });
    }
    // `Attempt 1 failed. Retrying with backoff... Error: exception TypeError: fetch failed
    // sending request`: the error after the backoff note, else what precedes it.
    let (before, error) = match after.split_once("Retrying with backoff...") {
        Some((before, error)) => (before, error.trim()),
        None => (after, ""),
    };
    let error = error.strip_prefix("Error:").unwrap_or(error).trim();
    let error = error.strip_prefix("exception").unwrap_or(error).trim();
    let reason = if error.is_empty() {
        before
            .trim_start_matches([':', ' '])
            .trim_end_matches(['.', ' '])
    } else {
        error
    };
    Some(if reason.is_empty() {
        "the model call failed".to_owned()
    } else {
        reason.to_owned()
    })
}

/// aider's usage line: `Tokens: 2.3k sent, 1.1k cache write, 5.0k cache hit, 301 received.
/// Cost: $0.01 message, $0.02 session.` (cost per message; counts are rounded by aider).
fn aider_usage(line: &str) -> Option<(u64, u64, Option<f64>)> {
    let rest = line.strip_prefix("Tokens: ")?;
    let (tokens, cost_part) = match rest.split_once(" Cost: ") {
        Some((t, c)) => (t, Some(c)),
        None => (rest, None),
    };
    let (mut tokens_in, mut tokens_out, mut any) = (0, 0, false);
    for item in tokens.trim_end_matches('.').split(", ") {
        let (number, label) = item.trim().split_once(' ')?;
        let n = aider_count(number)?;
        match label.trim_end_matches('.') {
            "sent" | "cache write" | "cache hit" => tokens_in += n,
            "received" => tokens_out += n,
            _ => continue,
        }
        any = true;
    }
    let cost_usd = cost_part.and_then(|c| {
        let first = c.split(',').next()?.trim();
        let amount = first.strip_prefix('$')?.split_whitespace().next()?;
        amount
            .parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c >= 0.0)
    });
    any.then_some((tokens_in, tokens_out, cost_usd))
}

/// `512`, `2.3k`, `1.2M` as a count.
fn aider_count(text: &str) -> Option<u64> {
    let (digits, scale) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1e3),
        'm' | 'M' => (&text[..text.len() - 1], 1e6),
        _ => (text, 1.0),
    };
    let value = digits.parse::<f64>().ok()? * scale;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

/// Claude usage: every kind of input (fresh, cache writes, cache reads) and the output.
fn claude_tokens(u: &Value) -> (u64, u64) {
    (
        count(u, "input_tokens")
            + count(u, "cache_creation_input_tokens")
            + count(u, "cache_read_input_tokens"),
        count(u, "output_tokens"),
    )
}

/// Gemini `result.stats`: the stream schema (`input_tokens`, `output_tokens`), or the older
/// per-model breakdown (`models.<m>.tokens.prompt` / `candidates`).
fn gemini_tokens(stats: &Value) -> (u64, u64) {
    if stats.get("input_tokens").is_some() || stats.get("output_tokens").is_some() {
        return (count(stats, "input_tokens"), count(stats, "output_tokens"));
    }
    let mut totals = (0, 0);
    if let Some(models) = stats.get("models").and_then(Value::as_object) {
        for m in models.values() {
            let t = m.get("tokens").unwrap_or(&Value::Null);
            totals.0 += count(t, "prompt");
            totals.1 += count(t, "candidates") + count(t, "thoughts");
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: OutputFormat, lines: &[&str]) -> (Vec<AgentEvent>, OutputParser) {
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
    fn claude_usage_counts_a_split_message_once_and_reconciles() {
        let (out, p) = run(
            OutputFormat::Claude,
            &[
                r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"a"}],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}}"#,
                r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":7}}}"#,
                r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.2,"usage":{"input_tokens":12,"cache_read_input_tokens":5,"output_tokens":9}}"#,
            ],
        );
        let usage: Vec<(u64, u64)> = out
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Usage {
                    tokens_in,
                    tokens_out,
                    ..
                } => Some((*tokens_in, *tokens_out)),
                _ => None,
            })
            .collect();
        assert_eq!(usage, [(15, 3), (0, 4), (2, 2)]);
        assert_eq!(
            p.usage_total(),
            Usage {
                tokens_in: 17,
                tokens_out: 9,
                cost_usd: Some(0.2)
            }
        );
    }

    #[test]
    fn claude_error_results() {
        let (out, p) = run(
            OutputFormat::Claude,
            &[r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#],
        );
        assert_eq!(
            out,
            [AgentEvent::Result {
                text: "the agent stopped: error_max_turns".into(),
                is_error: true
            }]
        );
        assert!(p.result_is_error());
    }

    #[test]
    fn gemini_deltas_join_into_one_message() {
        let (out, p) = run(
            OutputFormat::Gemini,
            &[
                r#"{"type":"message","role":"assistant","content":"Hel","delta":true}"#,
                r#"{"type":"message","role":"assistant","content":"lo.","delta":true}"#,
                r#"{"type":"result","status":"success","stats":{"input_tokens":5,"output_tokens":2}}"#,
            ],
        );
        assert_eq!(
            out[0],
            AgentEvent::Progress {
                message: "Hello.".into(),
                tool: None,
                files: vec![]
            }
        );
        assert_eq!(p.result(), Some("Hello."));
    }

    #[test]
    fn opencode_stream_error_lines() {
        let line = r#"timestamp=2026-12-03T02:20:28.370Z level=ERROR run=9cc531ef message="stream error" providerID=forge modelID=m1 session.id=ses_x small=false agent=build mode=primary error.error="AI_APICallError: scripted internal error""#;
        assert_eq!(
            opencode_stream_error(line).as_deref(),
            Some("scripted internal error")
        );
        assert_eq!(
            opencode_stream_error(&line.replace("small=false", "small=true")),
            None
        );
        assert_eq!(opencode_stream_error("level=INFO message=\"stream\""), None);
        let mut parser = OutputParser::new(OutputFormat::Opencode);
        let mut out = Vec::new();
        for _ in 0..3 {
            parser.line(Stream::Stderr, line, &mut out);
        }
        assert!(
            out.iter().any(
                |e| matches!(e, AgentEvent::GiveUp(r) if r.contains("scripted internal error"))
            ),
            "{out:?}"
        );
    }

    #[test]
    fn gemini_retry_lines() {
        assert_eq!(
            gemini_retry(
                r#"Attempt 2 failed with status 500. Retrying with backoff... _ApiError: {"error":{"code":500,"message":"scripted internal error","status":"INTERNAL"}}"#
            )
            .as_deref(),
            Some("HTTP 500: scripted internal error")
        );
        assert_eq!(
            gemini_retry(
                "Attempt 1 failed. Retrying with backoff... Error: exception TypeError: fetch failed sending request"
            )
            .as_deref(),
            Some("TypeError: fetch failed sending request")
        );
        assert_eq!(
            gemini_retry("Attempt 1 failed: socket hang up. Retrying with backoff...").as_deref(),
            Some("socket hang up")
        );
        assert_eq!(gemini_retry("Ripgrep is not available."), None);
        let mut p = OutputParser::new(OutputFormat::Gemini);
        let mut out = Vec::new();
        for n in 1..=3 {
            p.line(
                Stream::Stderr,
                &format!("Attempt {n} failed with status 503. Retrying with backoff... {{\"message\":\"overloaded\"}}"),
                &mut out,
            );
        }
        assert_eq!(
            out.last(),
            Some(&AgentEvent::GiveUp(
                "HTTP 503: overloaded (3 failed model calls in a row)".into()
            ))
        );
    }

    #[test]
    fn text_agents_result_is_stdout() {
        let mut p = OutputParser::new(OutputFormat::Text);
        let mut out = Vec::new();
        p.line(Stream::Stdout, "one", &mut out);
        p.line(Stream::Stderr, "warn", &mut out);
        p.line(Stream::Stdout, "", &mut out);
        p.line(Stream::Stdout, "two", &mut out);
        p.finish(&mut out);
        p.finish(&mut out);
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(
            out[3],
            AgentEvent::Result {
                text: "one\n\ntwo".into(),
                is_error: false
            }
        );
    }

    #[test]
    fn aider_lines() {
        assert_eq!(
            aider_usage(
                "Tokens: 2.3k sent, 1.1k cache write, 5.0k cache hit, 301 received. Cost: $0.01 message, $0.02 session."
            ),
            Some((8400, 301, Some(0.01)))
        );
        assert_eq!(
            aider_usage("Tokens: 512 sent, 12 received."),
            Some((512, 12, None))
        );
        assert_eq!(aider_usage("Tokens: lots"), None);
        assert_eq!(aider_usage("hello"), None);
    }

    #[test]
    fn long_text_output_keeps_its_tail() {
        let mut p = OutputParser::new(OutputFormat::Text);
        let mut out = Vec::new();
        let line = "é".repeat(1000);
        for _ in 0..200 {
            p.line(Stream::Stdout, &line, &mut out);
        }
        p.line(Stream::Stdout, "last", &mut out);
        let r = p.result().unwrap();
        assert!(r.len() <= 2 * MAX_TEXT_RESULT && r.ends_with("last"));
        let AgentEvent::Progress { message, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(message.chars().count(), 1000);
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

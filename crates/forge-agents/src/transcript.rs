//! [`Transcript`]: an attempt's `output.log` as the conversation a person reads — the
//! assistant's text, each tool call with its key arguments and the lines it changed
//! (`Edit src/api/auth.rs (+12 −3)`, `Run cargo test`), each call's result shortened, errors,
//! the final answer and the usage.
//!
//! The [`OutputParser`] turns output into progress events for the live table: one line per
//! step, no results. A transcript keeps more of each step, so it reads each format's events
//! itself (the same schemas, see `tests/fixtures/agents/README.md`) and uses the parser for
//! what both must agree on: usage, errors, the session and the result.
//!
//! ```
//! use forge_agents::{Entry, OutputFormat, TranscriptBuilder};
//!
//! let mut t = TranscriptBuilder::new(OutputFormat::Claude).with_root("/repo");
//! for line in [
//!     r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Fixing."},{"type":"tool_use","id":"t1","name":"Edit","input":{"file_path":"/repo/src/lib.rs","old_string":"a","new_string":"b\nc"}}]}}"#,
//!     r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"The file was updated."}]}}"#,
//!     r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","usage":{"input_tokens":10,"output_tokens":5}}"#,
//! ] {
//!     t.line(line);
//! }
//! let t = t.finish();
//! assert_eq!(t.entries[0], Entry::Text { text: "Fixing.".into() });
//! let Entry::Tool(call) = &t.entries[1] else { panic!() };
//! assert_eq!(call.heading(), "Edit src/lib.rs (+2 −1)");
//! assert_eq!(call.output.as_deref(), Some("The file was updated."));
//! assert_eq!(t.usage.tokens_out, 5);
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use crate::Stream;
use serde::Serialize;
use serde_json::{Value, json};

use super::summary::{ToolCall, command_text, list_files, one_line, summarize};
use super::{AgentEvent, OutputFormat, OutputParser, Usage, relative_path};
use crate::format::codex_file_changes;
use crate::parse::{str_of, strip_ansi};

/// Lines of a tool's result a transcript keeps.
pub const RESULT_LINES: usize = 4;
/// Characters of one kept result line.
const RESULT_LINE_CHARS: usize = 200;
/// Characters of one text or error entry.
const MAX_TEXT: usize = 8000;

/// One attempt's conversation, ready to render.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// The output format it was read as.
    pub format: OutputFormat,
    /// The agent's session id, when it reported one.
    pub session: Option<String>,
    /// What happened, in order.
    pub entries: Vec<Entry>,
    /// Tokens (and cost) used, as the live table counts them.
    pub usage: Usage,
    /// The agent's final answer, when it gave one.
    pub result: Option<FinalAnswer>,
}

/// The agent's final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalAnswer {
    /// Its text.
    pub text: String,
    /// Whether the agent reported the attempt as failed.
    pub is_error: bool,
}

/// One step of a transcript (tagged `kind` in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entry {
    /// What the assistant said.
    Text {
        /// The text (consecutive chunks joined).
        text: String,
    },
    /// A tool call and its result.
    Tool(ToolEntry),
    /// An error the agent reported (an API failure, a model that cannot be reached).
    Error {
        /// The agent's words.
        message: String,
    },
    /// A warning the agent reported that did not stop it.
    Notice {
        /// The agent's words.
        message: String,
    },
    /// Lines outside the agent's structured stream (its standard error, a wrapper's output).
    Output {
        /// The lines, joined by newlines.
        text: String,
    },
}

/// A tool call with its key arguments and shortened result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolEntry {
    /// The one-line summary: `Edit src/api/auth.rs`, `Run cargo test`.
    pub summary: String,
    /// The kind of tool: `edit`, `write`, `delete`, `bash`, `read`, `search`, `web`, `todo`,
    /// `task`, `mcp`, or the agent's own (lower-cased) tool name.
    pub tool: String,
    /// Files the call changed, repo-relative when under the workspace.
    pub files: Vec<String>,
    /// Lines the call added, when its arguments or result tell.
    pub added: Option<u64>,
    /// Lines the call removed, when its arguments or result tell.
    pub removed: Option<u64>,
    /// Whether it finished, failed, or had no result in the output.
    pub status: ToolStatus,
    /// The first [`RESULT_LINES`] lines of its result (or of its error), each cut short.
    pub output: Option<String>,
    /// How many lines the whole result had.
    pub output_lines: usize,
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    /// No result was seen (the attempt ended first, or the format reports none).
    Pending,
    /// It succeeded.
    Ok,
    /// It failed.
    Failed,
}

impl ToolEntry {
    /// The summary with the changed line counts: `Edit src/api/auth.rs (+12 −3)`.
    pub fn heading(&self) -> String {
        match (self.added, self.removed) {
            (None, None) => self.summary.clone(),
            (Some(a), None | Some(0)) => format!("{} (+{a})", self.summary),
            (None, Some(r)) => format!("{} (−{r})", self.summary),
            (Some(a), Some(r)) => format!("{} (+{a} −{r})", self.summary),
        }
    }
}

/// Builds a [`Transcript`] from an attempt's output, line by line.
#[derive(Debug)]
pub struct TranscriptBuilder {
    format: OutputFormat,
    roots: Vec<PathBuf>,
    parser: OutputParser,
    entries: Vec<Entry>,
    /// Open tool calls: the agent's call id → index in `entries`.
    open: HashMap<String, usize>,
    /// Gemini's streamed `delta` chunks of the current assistant message.
    pending: String,
    events: Vec<AgentEvent>,
}

impl TranscriptBuilder {
    /// A builder for output in `format`; paths are kept as the agent wrote them until roots
    /// are given.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            roots: Vec::new(),
            parser: OutputParser::new(format),
            entries: Vec::new(),
            open: HashMap::new(),
            pending: String::new(),
            events: Vec::new(),
        }
    }

    /// Reports paths under `root` (the attempt's workspace, or the repository the agent saw
    /// in its place) relative to it. May be given several times; the first match wins.
    #[must_use]
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.roots.push(root.into());
        self
    }

    /// The entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many leading entries are final: later lines can still add a result to an open tool
    /// call, or join text to the last entry, so a follower prints up to here.
    pub fn settled(&self) -> usize {
        let first_open = self
            .open
            .values()
            .copied()
            .min()
            .unwrap_or(self.entries.len());
        first_open.min(self.entries.len().saturating_sub(1))
    }

    /// Reads one line of output (without its newline).
    pub fn line(&mut self, line: &str) {
        self.parser.line(Stream::Stdout, line, &mut self.events);
        let trimmed = line.trim();
        if self.format == OutputFormat::Text {
            self.take_text_events();
            return;
        }
        if trimmed.starts_with('{')
            && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(trimmed)
        {
            if let Some(kind) = v.get("type").and_then(Value::as_str) {
                match self.format {
                    OutputFormat::Droid => self.droid(kind, &v),
                    OutputFormat::Claude | OutputFormat::Amp => self.claude(kind, &v),
                    OutputFormat::Codex => self.codex(kind, &v),
                    OutputFormat::Gemini => self.gemini(kind, &v),
                    OutputFormat::Opencode => self.opencode(kind, &v),
                    OutputFormat::Text => {}
                }
            }
            self.take_problems();
            return;
        }
        self.take_problems();
        let text = strip_ansi(trimmed);
        if !text.trim().is_empty() {
            self.output(text.trim());
        }
    }

    /// Ends the output and returns the transcript.
    pub fn finish(mut self) -> Transcript {
        self.flush_text();
        self.parser.finish(&mut self.events);
        if self.format == OutputFormat::Text {
            self.take_text_events();
        } else {
            self.take_problems();
        }
        let result = self
            .parser
            .result()
            .filter(|t| !t.trim().is_empty())
            .map(|text| FinalAnswer {
                text: text.trim().to_owned(),
                is_error: self.parser.result_is_error(),
            });
        Transcript {
            format: self.format,
            session: self.parser.session().map(str::to_owned),
            entries: self.entries,
            usage: self.parser.usage_total(),
            result,
        }
    }

    // ---- what the parser decides ----

    /// Errors and warnings the parser saw in the last line (it knows each format's retry and
    /// error shapes); its other events are the transcript's own to make.
    fn take_problems(&mut self) {
        for event in std::mem::take(&mut self.events) {
            match event {
                AgentEvent::Error(message) | AgentEvent::GiveUp(message) => {
                    self.push(Entry::Error { message });
                }
                AgentEvent::Progress {
                    message,
                    tool: None,
                    ..
                } => {
                    if message.starts_with("Model call failed") {
                        self.push(Entry::Error { message });
                    } else if let Some(m) = message
                        .strip_prefix("Warning: ")
                        .or_else(|| message.strip_prefix("error: "))
                    {
                        self.push(Entry::Notice {
                            message: m.to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// A text agent's events: edits are tool calls, every other line is what it said.
    fn take_text_events(&mut self) {
        for event in std::mem::take(&mut self.events) {
            match event {
                AgentEvent::Progress {
                    message,
                    tool: Some(tool),
                    files,
                } => self.push(Entry::Tool(ToolEntry {
                    summary: message,
                    tool,
                    files,
                    added: None,
                    removed: None,
                    status: ToolStatus::Ok,
                    output: None,
                    output_lines: 0,
                })),
                AgentEvent::Progress { message, .. } => self.text(&message, true),
                AgentEvent::Error(message) | AgentEvent::GiveUp(message) => {
                    self.push(Entry::Error { message });
                }
                _ => {}
            }
        }
    }

    // ---- shared steps ----

    fn rel(&self, path: &str) -> String {
        self.roots
            .iter()
            .find_map(|root| relative_path(path, root))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| path.to_owned())
    }

    fn push(&mut self, entry: Entry) {
        self.flush_text();
        self.entries.push(entry);
    }

    /// Assistant text; `join` appends it to a text entry just before (lines of a text agent).
    fn text(&mut self, text: &str, join: bool) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if join && let Some(Entry::Text { text: last }) = self.entries.last_mut() {
            if last.len() < MAX_TEXT {
                last.push('\n');
                last.push_str(text);
            }
            return;
        }
        self.push(Entry::Text { text: cut(text) });
    }

    fn output(&mut self, text: &str) {
        self.flush_text();
        if let Some(Entry::Output { text: last }) = self.entries.last_mut() {
            if last.len() < MAX_TEXT {
                last.push('\n');
                last.push_str(text);
            }
            return;
        }
        self.entries.push(Entry::Output {
            text: text.to_owned(),
        });
    }

    fn flush_text(&mut self) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            let text = text.trim();
            if !text.is_empty() {
                self.entries.push(Entry::Text { text: cut(text) });
            }
        }
    }

    /// Starts a tool call (unless `id` is already open) and returns its index.
    fn call(&mut self, id: Option<&str>, name: &str, input: &Value) -> usize {
        let call = summarize(name, input, &|p| self.rel(p));
        let counts = line_counts(name, input);
        self.call_with(id, call, counts)
    }

    fn call_with(&mut self, id: Option<&str>, call: ToolCall, counts: Option<(u64, u64)>) -> usize {
        if let Some(&at) = id.and_then(|id| self.open.get(id)) {
            return at;
        }
        self.push(Entry::Tool(ToolEntry {
            summary: call.message,
            tool: call.tool,
            files: call.files,
            added: counts.map(|c| c.0),
            removed: counts.map(|c| c.1),
            status: ToolStatus::Pending,
            output: None,
            output_lines: 0,
        }));
        let at = self.entries.len() - 1;
        // A call without an id waits for a result without one (which takes the oldest call).
        let key = match id.filter(|id| !id.is_empty()) {
            Some(id) => id.to_owned(),
            None => format!("\u{0}{at}"),
        };
        self.open.insert(key, at);
        at
    }

    /// The result of the open call `id` (without an id: the oldest open call).
    fn done(&mut self, id: Option<&str>, failed: bool, output: &str) -> Option<usize> {
        let at = match id.filter(|id| !id.is_empty()) {
            Some(id) => self.open.remove(id)?,
            None => {
                let (key, at) = self.open.iter().min_by_key(|(_, at)| **at)?;
                let (key, at) = (key.clone(), *at);
                self.open.remove(&key);
                at
            }
        };
        if let Some(Entry::Tool(t)) = self.entries.get_mut(at) {
            finish_call(t, failed, output);
        }
        Some(at)
    }

    fn set_counts(&mut self, at: usize, counts: (u64, u64)) {
        if let Some(Entry::Tool(t)) = self.entries.get_mut(at) {
            t.added = Some(counts.0);
            t.removed = Some(counts.1);
        }
    }

    // ---- formats ----

    fn droid(&mut self, kind: &str, v: &Value) {
        match kind {
            "message" if str_of(v, "role") == Some("assistant") => {
                if let Some(t) = str_of(v, "text") {
                    self.text(t, false);
                }
            }
            "tool_call" => {
                let name = str_of(v, "toolName")
                    .or_else(|| str_of(v, "toolId"))
                    .unwrap_or("tool");
                let input = v.get("parameters").unwrap_or(&Value::Null);
                self.call(str_of(v, "id"), name, input);
            }
            "tool_result" => {
                let failed = v.get("isError").and_then(Value::as_bool) == Some(true);
                let output = if failed {
                    v.get("error")
                        .and_then(|e| str_of(e, "message"))
                        .map_or_else(|| content_text(v.get("value")), str::to_owned)
                } else {
                    content_text(v.get("value"))
                };
                let diff = v.get("value").and_then(|value| str_of(value, "diff"));
                if let Some(at) = self.done(str_of(v, "id"), failed, &output)
                    && let Some(diff) = diff
                {
                    self.set_counts(at, diff_counts(diff));
                }
            }
            _ => {}
        }
    }

    fn claude(&mut self, kind: &str, v: &Value) {
        match kind {
            "assistant" if v.get("error").is_none() => {
                match v.get("message").and_then(|m| m.get("content")) {
                    Some(Value::String(text)) => self.text(text, false),
                    Some(Value::Array(blocks)) => {
                        for block in blocks {
                            match str_of(block, "type") {
                                Some("text") => {
                                    if let Some(t) = str_of(block, "text") {
                                        self.text(t, false);
                                    }
                                }
                                Some("tool_use") => {
                                    let name = str_of(block, "name").unwrap_or("tool");
                                    let input = block.get("input").unwrap_or(&Value::Null);
                                    self.call(str_of(block, "id"), name, input);
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
                    if str_of(block, "type") == Some("tool_result") {
                        let failed = block.get("is_error").and_then(Value::as_bool) == Some(true);
                        let output = content_text(block.get("content"));
                        self.done(str_of(block, "tool_use_id"), failed, &output);
                    }
                }
            }
            _ => {}
        }
    }

    fn codex(&mut self, kind: &str, v: &Value) {
        let completed = kind == "item.completed";
        if !matches!(kind, "item.started" | "item.updated" | "item.completed") {
            return;
        }
        let Some(item) = v.get("item") else { return };
        let id = str_of(item, "id");
        match str_of(item, "type").or_else(|| str_of(item, "item_type")) {
            Some("agent_message" | "assistant_message") if completed => {
                if let Some(t) = str_of(item, "text") {
                    self.text(t, false);
                }
            }
            Some("command_execution") => {
                let command = item
                    .get("command")
                    .and_then(command_text)
                    .unwrap_or_default();
                self.call(id, "bash", &json!({ "command": command }));
                if completed {
                    let exit = item.get("exit_code").and_then(Value::as_i64);
                    let failed = matches!(str_of(item, "status"), Some("failed" | "declined"))
                        || exit.is_some_and(|c| c != 0);
                    let mut output = str_of(item, "aggregated_output")
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned();
                    if failed && let Some(code) = exit {
                        output = if output.is_empty() {
                            format!("exit code {code}")
                        } else {
                            format!("exit code {code}\n{output}")
                        };
                    }
                    self.done(id, failed, &output);
                }
            }
            Some("file_change") if completed => {
                let changes = codex_file_changes(item, |p| self.rel(p));
                let files: Vec<String> = changes.iter().map(|(_, p)| p.clone()).collect();
                let message = match changes.as_slice() {
                    [(verb, p)] => format!("{verb} {p}"),
                    _ => format!("Edit {}", list_files(&files)),
                };
                let call = ToolCall {
                    message,
                    tool: "edit".to_owned(),
                    files,
                };
                self.call_with(id, call, None);
                let failed = str_of(item, "status") == Some("failed");
                self.done(id, failed, "");
            }
            Some("mcp_tool_call") => {
                let server = str_of(item, "server").unwrap_or("mcp");
                let tool = str_of(item, "tool").unwrap_or("tool");
                let call = ToolCall {
                    message: one_line(&format!("{server}.{tool}")),
                    tool: "mcp".to_owned(),
                    files: Vec::new(),
                };
                self.call_with(id, call, None);
                if completed {
                    match item.get("error").filter(|e| !e.is_null()) {
                        Some(e) => self.done(id, true, &content_text(Some(e))),
                        None => {
                            let result = item.get("result").and_then(|r| r.get("content"));
                            self.done(id, false, &content_text(result))
                        }
                    };
                }
            }
            Some("web_search") => {
                self.call(id, "web_search", &json!({ "query": str_of(item, "query") }));
                if completed {
                    self.done(id, false, "");
                }
            }
            Some("todo_list") => {
                self.call(id, "todo_write", &Value::Null);
                if completed {
                    self.done(id, false, "");
                }
            }
            _ => {}
        }
    }

    fn gemini(&mut self, kind: &str, v: &Value) {
        if kind != "message" {
            self.flush_text();
        }
        match kind {
            "message" if str_of(v, "role") == Some("assistant") => {
                let content = str_of(v, "content").unwrap_or("");
                if v.get("delta").and_then(Value::as_bool) == Some(true) {
                    self.pending.push_str(content);
                } else {
                    self.flush_text();
                    self.text(content, false);
                }
            }
            "tool_use" => {
                let name = str_of(v, "tool_name").unwrap_or("tool");
                let input = v.get("parameters").unwrap_or(&Value::Null);
                self.call(str_of(v, "tool_id"), name, input);
            }
            "tool_result" => {
                let failed = str_of(v, "status") == Some("error");
                let output = match v.get("error").and_then(|e| str_of(e, "message")) {
                    Some(m) if failed => m.to_owned(),
                    _ => content_text(v.get("output")),
                };
                self.done(str_of(v, "tool_id"), failed, &output);
            }
            _ => {}
        }
    }

    fn opencode(&mut self, kind: &str, v: &Value) {
        let part = v.get("part").unwrap_or(&Value::Null);
        match kind {
            "text" => {
                if let Some(t) = str_of(part, "text") {
                    self.text(t, false);
                }
            }
            "tool_use" => {
                let name = str_of(part, "tool").unwrap_or("tool");
                let state = part.get("state").unwrap_or(&Value::Null);
                let input = state.get("input").unwrap_or(&Value::Null);
                let id = str_of(part, "callID").or_else(|| str_of(part, "id"));
                self.call(id, name, input);
                match str_of(state, "status") {
                    Some("error") => {
                        self.done(id, true, &content_text(state.get("error")));
                    }
                    Some("completed") => {
                        self.done(id, false, &content_text(state.get("output")));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Reads a whole `output.log` into a transcript.
pub fn transcript(format: OutputFormat, roots: &[PathBuf], output: &str) -> Transcript {
    let mut builder = TranscriptBuilder::new(format);
    for root in roots {
        builder = builder.with_root(root.clone());
    }
    for line in output.lines() {
        builder.line(line);
    }
    builder.finish()
}

fn finish_call(t: &mut ToolEntry, failed: bool, output: &str) {
    t.status = if failed {
        ToolStatus::Failed
    } else {
        ToolStatus::Ok
    };
    let (short, lines) = shorten(output);
    t.output = (!short.is_empty()).then_some(short);
    t.output_lines = lines;
}

/// The first [`RESULT_LINES`] non-blank lines of `text`, each cut to a readable length, and
/// how many lines it had.
fn shorten(text: &str) -> (String, usize) {
    let text = strip_ansi(text.trim());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let kept: Vec<String> = lines
        .iter()
        .take(RESULT_LINES)
        .map(|l| {
            let l = l.trim_end();
            match l.char_indices().nth(RESULT_LINE_CHARS) {
                Some((i, _)) => format!("{}…", &l[..i]),
                None => l.to_owned(),
            }
        })
        .collect();
    (kept.join("\n"), lines.len())
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The text of a result: a string, text blocks, or an object's message/text/output.
fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.as_str().or_else(|| str_of(b, "text")))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other @ Value::Object(_)) => ["message", "text", "output", "content", "diff"]
            .iter()
            .find_map(|k| str_of(other, k))
            .unwrap_or("")
            .to_owned(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

const OLD_KEYS: &[&str] = &["old_string", "old_str", "oldString"];
const NEW_KEYS: &[&str] = &["new_string", "new_str", "newString"];

/// Lines a call adds and removes, from its arguments: an edit's old and new text, the edits
/// of a multi-edit, a written file's content, a patch's `+`/`-` lines.
fn line_counts(name: &str, input: &Value) -> Option<(u64, u64)> {
    let field =
        |keys: &[&str], v: &Value| keys.iter().find_map(|k| str_of(v, k).map(str::to_owned));
    if let (Some(old), Some(new)) = (field(OLD_KEYS, input), field(NEW_KEYS, input)) {
        return Some(edit_counts(&old, &new));
    }
    if let Some(edits) = input.get("edits").and_then(Value::as_array) {
        let mut total = (0, 0);
        for e in edits {
            let (a, r) = edit_counts(
                &field(OLD_KEYS, e).unwrap_or_default(),
                &field(NEW_KEYS, e).unwrap_or_default(),
            );
            total = (total.0 + a, total.1 + r);
        }
        return Some(total);
    }
    let key: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .flat_map(char::to_lowercase)
        .collect();
    if key.contains("patch") {
        let text = ["input", "patch", "patchText", "patch_text"]
            .iter()
            .find_map(|k| str_of(input, k))
            .or_else(|| input.as_str())?;
        return Some(diff_counts(text));
    }
    let content = str_of(input, "content")?;
    matches!(
        key.as_str(),
        "write" | "writefile" | "create" | "createfile" | "newfile" | "overwrite"
    )
    .then(|| (count_lines(content), 0))
}

fn count_lines(text: &str) -> u64 {
    text.lines().count() as u64
}

/// An edit replacing `old` with `new`, as lines added and removed (lines both keep at the
/// start and the end do not count).
fn edit_counts(old: &str, new: &str) -> (u64, u64) {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (
        (new.len() - prefix - suffix) as u64,
        (old.len() - prefix - suffix) as u64,
    )
}

/// `+` and `-` lines of a unified diff or an `apply_patch` text, headers excluded.
fn diff_counts(diff: &str) -> (u64, u64) {
    let mut counts = (0, 0);
    for line in diff.lines() {
        if line.starts_with("+++") || line.starts_with("---") || line.starts_with("***") {
            continue;
        }
        if line.starts_with('+') {
            counts.0 += 1;
        } else if line.starts_with('-') {
            counts.1 += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_counts_skip_kept_lines() {
        assert_eq!(edit_counts("a", "b"), (1, 1));
        assert_eq!(edit_counts("fn x", "use y;\n\nfn x"), (2, 0));
        assert_eq!(edit_counts("a\nb\nc", "a\nc"), (0, 1));
        assert_eq!(edit_counts("", "x\ny"), (2, 0));
    }

    #[test]
    fn shorten_keeps_the_first_lines_and_counts_all() {
        let (short, lines) = shorten("1\n2\n\n3\n4\n5\n6\n");
        assert_eq!(short, "1\n2\n3\n4");
        assert_eq!(lines, 6);
        let long = "x".repeat(300);
        let (short, _) = shorten(&long);
        assert_eq!(short.chars().count(), RESULT_LINE_CHARS + 1);
    }

    #[test]
    fn results_without_ids_close_the_oldest_call() {
        let mut b = TranscriptBuilder::new(OutputFormat::Claude);
        b.line(r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash","input":{"command":"ls"}}]}}"#);
        b.line(r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"a\nb","is_error":true}]}}"#);
        let t = b.finish();
        let Entry::Tool(call) = &t.entries[0] else {
            panic!("{t:?}")
        };
        assert_eq!(call.status, ToolStatus::Failed, "{t:?}");
        assert_eq!(call.heading(), "Run ls");
        assert_eq!(call.output.as_deref(), Some("a\nb"));
        assert_eq!(call.output_lines, 2);
    }
}

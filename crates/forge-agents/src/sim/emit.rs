//! What the simulated agent prints: each step as the events a real agent of the chosen format
//! would print (the same schemas as the fixtures in `tests/fixtures/agents/`), with plausible,
//! deterministic usage.

use std::io::Write;
use std::time::Instant;

use serde_json::{Value, json};

use crate::OutputFormat;

/// A step seen as a tool call.
#[derive(Debug, Clone)]
pub(super) enum Call<'a> {
    /// A whole file written (`created` if it did not exist).
    Write {
        path: &'a str,
        abs: String,
        content: &'a str,
        created: bool,
    },
    /// A string replaced (`old` empty for an append).
    Edit {
        path: &'a str,
        abs: String,
        old: &'a str,
        new: String,
    },
    /// A file deleted.
    Delete { path: &'a str, abs: String },
    /// A shell command.
    Shell { command: String },
}

impl Call<'_> {
    /// The one-line summary the text format prints.
    fn summary(&self) -> String {
        match self {
            Call::Write {
                path,
                created: true,
                ..
            } => format!("Create {path}"),
            Call::Write { path, .. } => format!("Write {path}"),
            Call::Edit { path, .. } => format!("Edit {path}"),
            Call::Delete { path, .. } => format!("Delete {path}"),
            Call::Shell { command } => format!("Run {command}"),
        }
    }

    /// Roughly how much text the model would have produced for the call.
    fn size(&self) -> usize {
        match self {
            Call::Write { path, content, .. } => path.len() + content.len(),
            Call::Edit { path, old, new, .. } => path.len() + old.len() + new.len(),
            Call::Delete { path, .. } => path.len(),
            Call::Shell { command } => command.len(),
        }
    }
}

/// Writes JSON with `type`, `subtype` and `id` first in every object, as the agents print them
/// (the other keys follow in sorted order).
fn write_json(out: &mut String, value: &Value) {
    const FIRST: [&str; 3] = ["type", "subtype", "id"];
    match value {
        Value::Object(map) => {
            out.push('{');
            let first = FIRST
                .iter()
                .filter_map(|k| map.get_key_value(*k))
                .map(|(k, v)| (k.as_str(), v));
            let rest = map
                .iter()
                .filter(|(k, _)| !FIRST.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v));
            for (i, (k, v)) in first.chain(rest).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k).to_string());
                out.push(':');
                write_json(out, v);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, v);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Prints the events of one run in one format.
pub(super) struct Emitter<'w> {
    format: OutputFormat,
    out: &'w mut dyn Write,
    err: &'w mut dyn Write,
    session: String,
    cwd: String,
    model: String,
    started: Instant,
    /// Model turns so far (each message and tool call is one).
    turns: u64,
    prompt_tokens: u64,
    tokens_in: u64,
    tokens_out: u64,
    next_id: u64,
    tool_calls: u64,
    /// The last assistant text printed.
    last_say: Option<String>,
}

impl<'w> Emitter<'w> {
    /// Names `session` as the session (`--resume`) instead of a new one.
    pub(super) fn continue_session(&mut self, session: String) {
        self.session = session;
    }

    pub(super) fn new(
        format: OutputFormat,
        out: &'w mut dyn Write,
        err: &'w mut dyn Write,
        cwd: String,
        model: Option<String>,
        prompt_len: usize,
    ) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            format,
            out,
            err,
            session: format!("sim-{:x}-{nanos:08x}", std::process::id()),
            cwd,
            model: model.unwrap_or_else(|| "forge-sim".to_owned()),
            started: Instant::now(),
            turns: 0,
            prompt_tokens: (prompt_len / 4) as u64,
            tokens_in: 0,
            tokens_out: 0,
            next_id: 0,
            tool_calls: 0,
            last_say: None,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn emit(&mut self, value: &Value) {
        let mut line = String::with_capacity(256);
        write_json(&mut line, value);
        line.push('\n');
        // A closed stdout must not stop the work: the files are what matters.
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
    }

    fn text(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn millis() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn iso_now() -> String {
        jiff::Timestamp::now().to_string()
    }

    fn duration_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// One model turn's usage: the context grows with every turn, the output with the text.
    fn turn(&mut self, text_len: usize) -> (u64, u64) {
        self.turns += 1;
        let tokens_in = 1_000 + 50 * self.turns + self.prompt_tokens;
        let tokens_out = 10 + (text_len / 4) as u64;
        self.tokens_in += tokens_in;
        self.tokens_out += tokens_out;
        (tokens_in, tokens_out)
    }

    /// Claude Sonnet's list price per token, for a plausible cost.
    fn cost(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let cost = self.tokens_in as f64 * 3e-6 + self.tokens_out as f64 * 15e-6;
        (cost * 1e6).round() / 1e6
    }

    fn claude_usage(tokens_in: u64, tokens_out: u64) -> Value {
        json!({
            "input_tokens": tokens_in,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": tokens_out,
        })
    }

    pub(super) fn init(&mut self) {
        let tools = [
            "Read",
            "LS",
            "Execute",
            "Edit",
            "Create",
            "ApplyPatch",
            "Grep",
            "Glob",
        ];
        match self.format {
            OutputFormat::Droid => self.emit(&json!({
                "type": "system", "subtype": "init", "cwd": self.cwd,
                "session_id": self.session, "tools": tools, "model": self.model,
            })),
            OutputFormat::Claude | OutputFormat::Amp => self.emit(&json!({
                "type": "system", "subtype": "init", "cwd": self.cwd,
                "session_id": self.session,
                "tools": ["Bash", "Edit", "Glob", "Grep", "Read", "Write"],
                "mcp_servers": [], "model": self.model,
                "permissionMode": "acceptEdits", "apiKeySource": "none",
            })),
            OutputFormat::Codex => {
                self.emit(&json!({"type": "thread.started", "thread_id": self.session}));
                self.emit(&json!({"type": "turn.started"}));
            }
            OutputFormat::Gemini => self.emit(&json!({
                "type": "init", "timestamp": Self::iso_now(),
                "session_id": self.session, "model": self.model,
            })),
            OutputFormat::Opencode | OutputFormat::Text => {}
        }
    }

    pub(super) fn say(&mut self, text: &str) {
        self.last_say = Some(text.to_owned());
        let (tokens_in, tokens_out) = self.turn(text.len());
        match self.format {
            OutputFormat::Droid => {
                let id = self.id("msg-");
                self.emit(&json!({
                    "type": "message", "role": "assistant", "id": id, "text": text,
                    "timestamp": Self::millis(), "session_id": self.session,
                }));
            }
            OutputFormat::Claude | OutputFormat::Amp => {
                let id = self.id("msg_sim_");
                self.emit(&json!({
                    "type": "assistant",
                    "message": {
                        "id": id, "type": "message", "role": "assistant", "model": self.model,
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": null,
                        "usage": Self::claude_usage(tokens_in, tokens_out),
                    },
                    "parent_tool_use_id": null, "session_id": self.session,
                }));
            }
            OutputFormat::Codex => {
                let id = self.id("item_");
                self.emit(&json!({
                    "type": "item.completed",
                    "item": {"id": id, "type": "agent_message", "text": text},
                }));
            }
            OutputFormat::Gemini => self.emit(&json!({
                "type": "message", "timestamp": Self::iso_now(),
                "role": "assistant", "content": text,
            })),
            OutputFormat::Opencode | OutputFormat::Text => self.text(text),
        }
    }

    /// Prints a tool call; returns its id for [`Emitter::call_done`].
    pub(super) fn call(&mut self, call: &Call<'_>) -> String {
        self.tool_calls += 1;
        let (tokens_in, tokens_out) = self.turn(call.size());
        match self.format {
            OutputFormat::Droid => {
                let id = self.id("call_");
                let message_id = self.id("msg-");
                let (name, parameters) = match call {
                    Call::Write { abs, content, .. } => {
                        ("Create", json!({"file_path": abs, "content": content}))
                    }
                    Call::Edit { abs, old, new, .. } => (
                        "Edit",
                        json!({"file_path": abs, "old_str": old, "new_str": new}),
                    ),
                    Call::Delete { abs, .. } => (
                        "ApplyPatch",
                        json!({"input": format!("*** Begin Patch\n*** Delete File: {abs}\n*** End Patch")}),
                    ),
                    Call::Shell { command } => ("Execute", json!({"command": command})),
                };
                self.emit(&json!({
                    "type": "tool_call", "id": id, "messageId": message_id, "toolId": name,
                    "toolName": name, "parameters": parameters,
                    "timestamp": Self::millis(), "session_id": self.session,
                }));
                id
            }
            OutputFormat::Claude | OutputFormat::Amp => {
                let id = self.id("toolu_sim_");
                let message_id = self.id("msg_sim_");
                let (name, input) = match call {
                    Call::Write { abs, content, .. } => {
                        ("Write", json!({"file_path": abs, "content": content}))
                    }
                    Call::Edit { abs, old, new, .. } => (
                        "Edit",
                        json!({"file_path": abs, "old_string": old, "new_string": new}),
                    ),
                    Call::Delete { path, .. } => (
                        "Bash",
                        json!({"command": format!("rm {path}"), "description": format!("Delete {path}")}),
                    ),
                    Call::Shell { command } => ("Bash", json!({"command": command})),
                };
                self.emit(&json!({
                    "type": "assistant",
                    "message": {
                        "id": message_id, "type": "message", "role": "assistant",
                        "model": self.model,
                        "content": [{"type": "tool_use", "id": id, "name": name, "input": input}],
                        "stop_reason": "tool_use",
                        "usage": Self::claude_usage(tokens_in, tokens_out),
                    },
                    "parent_tool_use_id": null, "session_id": self.session,
                }));
                id
            }
            OutputFormat::Codex => {
                let id = self.id("item_");
                if let Call::Shell { command } = call {
                    self.emit(&json!({
                        "type": "item.started",
                        "item": {
                            "id": id, "type": "command_execution", "command": command,
                            "aggregated_output": "", "exit_code": null, "status": "in_progress",
                        },
                    }));
                }
                // File changes are reported once applied (`call_done`).
                id
            }
            OutputFormat::Gemini => {
                let id = self.id("tool_");
                let (name, parameters) = match call {
                    Call::Write { abs, content, .. } => {
                        ("write_file", json!({"file_path": abs, "content": content}))
                    }
                    Call::Edit { abs, old, new, .. } => (
                        "replace",
                        json!({"file_path": abs, "old_string": old, "new_string": new}),
                    ),
                    Call::Delete { path, .. } => (
                        "run_shell_command",
                        json!({"command": format!("rm {path}")}),
                    ),
                    Call::Shell { command } => ("run_shell_command", json!({"command": command})),
                };
                self.emit(&json!({
                    "type": "tool_use", "timestamp": Self::iso_now(), "tool_name": name,
                    "tool_id": id, "parameters": parameters,
                }));
                id
            }
            OutputFormat::Opencode | OutputFormat::Text => {
                let line = call.summary();
                self.text(&line);
                String::new()
            }
        }
    }

    /// Prints a tool call's outcome: its output, or what went wrong (with the exit code of a
    /// command).
    pub(super) fn call_done(
        &mut self,
        id: &str,
        call: &Call<'_>,
        outcome: &Result<String, String>,
        exit_code: Option<i32>,
    ) {
        let is_error = outcome.is_err();
        let text = match outcome {
            Ok(t) | Err(t) => t.as_str(),
        };
        match self.format {
            OutputFormat::Droid => {
                let message_id = self.id("msg-");
                let name = match call {
                    Call::Write { .. } => "Create",
                    Call::Edit { .. } => "Edit",
                    Call::Delete { .. } => "ApplyPatch",
                    Call::Shell { .. } => "Execute",
                };
                let mut event = json!({
                    "type": "tool_result", "id": id, "messageId": message_id, "toolId": name,
                    "isError": is_error, "timestamp": Self::millis(), "session_id": self.session,
                });
                if is_error {
                    event["error"] = json!({"type": "tool_error", "message": text});
                } else {
                    event["value"] = json!(text);
                }
                self.emit(&event);
            }
            OutputFormat::Claude | OutputFormat::Amp => self.emit(&json!({
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [{
                        "tool_use_id": id, "type": "tool_result", "content": text,
                        "is_error": is_error,
                    }],
                },
                "parent_tool_use_id": null, "session_id": self.session,
            })),
            OutputFormat::Codex => {
                let status = if is_error { "failed" } else { "completed" };
                let item = match call {
                    Call::Shell { command } => json!({
                        "id": id, "type": "command_execution", "command": command,
                        "aggregated_output": text, "exit_code": exit_code, "status": status,
                    }),
                    Call::Write { abs, created, .. } => json!({
                        "id": id, "type": "file_change", "status": status,
                        "changes": [{"path": abs, "kind": if *created { "add" } else { "update" }}],
                    }),
                    Call::Edit { abs, .. } => json!({
                        "id": id, "type": "file_change", "status": status,
                        "changes": [{"path": abs, "kind": "update"}],
                    }),
                    Call::Delete { abs, .. } => json!({
                        "id": id, "type": "file_change", "status": status,
                        "changes": [{"path": abs, "kind": "delete"}],
                    }),
                };
                self.emit(&json!({"type": "item.completed", "item": item}));
            }
            OutputFormat::Gemini => {
                let mut event = json!({
                    "type": "tool_result", "timestamp": Self::iso_now(), "tool_id": id,
                    "status": if is_error { "error" } else { "success" },
                });
                if is_error {
                    event["error"] = json!({"type": "tool_error", "message": text});
                } else {
                    event["output"] = json!(text);
                }
                self.emit(&event);
            }
            OutputFormat::Opencode | OutputFormat::Text => {
                if is_error {
                    let _ = writeln!(self.err, "error: {text}");
                    let _ = self.err.flush();
                } else if matches!(call, Call::Shell { .. }) {
                    for line in text.lines() {
                        self.text(line);
                    }
                }
            }
        }
    }

    /// The run succeeded with `result` as its final text.
    pub(super) fn finish_ok(&mut self, result: &str) {
        // A result that is not the last message is one more model turn: Codex, Gemini and text
        // print it as a message (`say` counts it), Droid and Claude carry it in their final
        // event, so the totals are the same in every format.
        let needs_message = self.last_say.as_deref() != Some(result) && !result.is_empty();
        if needs_message
            && matches!(
                self.format,
                OutputFormat::Droid | OutputFormat::Claude | OutputFormat::Amp
            )
        {
            self.turn(result.len());
        }
        match self.format {
            OutputFormat::Droid => {
                let event = json!({
                    "type": "completion", "finalText": result, "numTurns": self.turns,
                    "durationMs": self.duration_ms(), "session_id": self.session,
                    "timestamp": Self::millis(),
                    "usage": {
                        "input_tokens": self.tokens_in, "output_tokens": self.tokens_out,
                        "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
                    },
                });
                self.emit(&event);
            }
            OutputFormat::Claude | OutputFormat::Amp => {
                let event = self.claude_result(result, false, "success");
                self.emit(&event);
            }
            OutputFormat::Codex => {
                if needs_message {
                    self.say(result);
                }
                let event = json!({
                    "type": "turn.completed",
                    "usage": {
                        "input_tokens": self.tokens_in, "cached_input_tokens": 0,
                        "output_tokens": self.tokens_out,
                    },
                });
                self.emit(&event);
            }
            OutputFormat::Gemini => {
                if needs_message {
                    self.say(result);
                }
                let event = json!({
                    "type": "result", "timestamp": Self::iso_now(), "status": "success",
                    "stats": self.gemini_stats(),
                });
                self.emit(&event);
            }
            OutputFormat::Opencode | OutputFormat::Text => {
                if needs_message {
                    self.say(result);
                }
            }
        }
    }

    /// The run failed: `message` says why.
    pub(super) fn finish_err(&mut self, message: &str) {
        match self.format {
            OutputFormat::Droid => self.emit(&json!({
                "type": "error", "source": "cli", "message": message,
                "timestamp": Self::millis(),
            })),
            OutputFormat::Claude | OutputFormat::Amp => {
                let event = self.claude_result(message, true, "error_during_execution");
                self.emit(&event);
            }
            OutputFormat::Codex => self.emit(&json!({
                "type": "turn.failed", "error": {"message": message},
            })),
            OutputFormat::Gemini => {
                self.emit(&json!({
                    "type": "error", "timestamp": Self::iso_now(), "severity": "error",
                    "message": message,
                }));
                let event = json!({
                    "type": "result", "timestamp": Self::iso_now(), "status": "error",
                    "error": {"type": "FatalError", "message": message},
                    "stats": self.gemini_stats(),
                });
                self.emit(&event);
            }
            OutputFormat::Opencode | OutputFormat::Text => {
                let _ = writeln!(self.err, "error: {message}");
                let _ = self.err.flush();
            }
        }
    }

    fn claude_result(&self, text: &str, is_error: bool, subtype: &str) -> Value {
        let duration = self.duration_ms();
        json!({
            "type": "result", "subtype": subtype, "is_error": is_error,
            "duration_ms": duration, "duration_api_ms": duration, "num_turns": self.turns,
            "result": text, "session_id": self.session, "total_cost_usd": self.cost(),
            "usage": Self::claude_usage(self.tokens_in, self.tokens_out),
            "permission_denials": [],
        })
    }

    fn gemini_stats(&self) -> Value {
        json!({
            "total_tokens": self.tokens_in + self.tokens_out,
            "input_tokens": self.tokens_in, "output_tokens": self.tokens_out,
            "cached": 0, "input": self.tokens_in,
            "duration_ms": self.duration_ms(), "tool_calls": self.tool_calls,
        })
    }

    /// Flushes what is printed (before sleeping or hanging).
    pub(super) fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_type_first() {
        let mut out = String::new();
        write_json(
            &mut out,
            &json!({"z": [1, {"b": "\"", "type": "t"}], "id": 3, "subtype": "s", "type": "x"}),
        );
        assert_eq!(
            out,
            r#"{"type":"x","subtype":"s","id":3,"z":[1,{"type":"t","b":"\""}]}"#
        );
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["z"][1]["b"], "\"");
    }
}

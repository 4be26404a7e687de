//! `codex exec --json`: `thread.started`, `item.started` / `item.completed` (agent messages,
//! commands, file changes, MCP tool calls, web searches, todo lists, errors), `turn.completed`
//! with the turn's usage, `turn.failed`, and `error` (`Reconnecting...` is a failed model call).

use serde_json::Value;

use super::Format;
use crate::AgentEvent;
use crate::parse::{Core, cap, content_text, count, progress, str_of};
use crate::summary::{ToolCall, command_text, list_files, one_line};

/// Codex's stream.
#[derive(Debug, Default)]
pub(super) struct Codex;

impl Format for Codex {
    /// Codex backs off to minutes between calls (4 s, 8 s, 13 s, …).
    fn max_failed_calls(&self) -> u32 {
        3
    }

    /// `codex exec --json`.
    fn event(&mut self, core: &mut Core, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        match kind {
            "item.started" => {
                if let Some(item) = v.get("item") {
                    Self::item(core, item, false, out);
                }
            }
            "item.completed" => {
                core.failed_calls = 0;
                if let Some(item) = v.get("item") {
                    Self::item(core, item, true, out);
                }
            }
            "turn.completed" => {
                if let Some(u) = v.get("usage") {
                    core.add_usage(
                        count(u, "input_tokens"),
                        count(u, "output_tokens") + count(u, "reasoning_output_tokens"),
                        None,
                        out,
                    );
                }
                let text = core.last_text.clone().unwrap_or_default();
                core.set_result(text, false, out);
            }
            "turn.failed" => {
                let message = v
                    .get("error")
                    .and_then(|e| str_of(e, "message"))
                    .unwrap_or("the turn failed")
                    .trim()
                    .to_owned();
                out.push(AgentEvent::Error(cap(&message)));
                core.set_result(message, true, out);
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
                            core.model_call_failed(detail, "; retrying", out);
                        }
                        None => out.push(AgentEvent::Error(cap(m.trim()))),
                    }
                }
            }
            _ => {}
        }
    }
}

impl Codex {
    #[allow(clippy::too_many_lines)] // one arm per item type
    fn item(core: &mut Core, item: &Value, completed: bool, out: &mut Vec<AgentEvent>) {
        let id = str_of(item, "id").unwrap_or_default();
        let item_type = str_of(item, "type").or_else(|| str_of(item, "item_type"));
        match item_type {
            Some("agent_message" | "assistant_message") if completed => {
                if let Some(t) = str_of(item, "text") {
                    core.say(t, out);
                }
            }
            Some("command_execution") => {
                if !core.has_call(id) {
                    let command = item
                        .get("command")
                        .and_then(command_text)
                        .unwrap_or_default();
                    let input = serde_json::json!({ "command": command });
                    core.tool_call(Some(id), "bash", &input, out);
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
                        core.tool_failed(Some(id), &detail, out);
                    } else {
                        core.tool_done(Some(id));
                    }
                }
            }
            Some("file_change") if completed => {
                let changes = codex_file_changes(item, |p| core.rel(p));
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
                if !core.has_call(id) {
                    let server = str_of(item, "server").unwrap_or("mcp");
                    let tool = str_of(item, "tool").unwrap_or("tool");
                    let call = ToolCall {
                        message: one_line(&format!("{server}.{tool}")),
                        tool: "mcp".to_owned(),
                        files: Vec::new(),
                    };
                    core.emit_call(Some(id), call, out);
                }
                if completed {
                    match item.get("error").filter(|e| !e.is_null()) {
                        Some(e) => {
                            let detail = content_text(Some(e));
                            core.tool_failed(Some(id), &detail, out);
                        }
                        None => core.tool_done(Some(id)),
                    }
                }
            }
            Some("web_search") => {
                if !core.has_call(id) {
                    let input = serde_json::json!({ "query": str_of(item, "query") });
                    core.tool_call(Some(id), "web_search", &input, out);
                }
                if completed {
                    core.tool_done(Some(id));
                }
            }
            Some("todo_list") if !completed && !core.has_call(id) => {
                core.tool_call(Some(id), "todo_write", &Value::Null, out);
            }
            Some("todo_list") if completed => core.tool_done(Some(id)),
            Some("error") if completed => {
                if let Some(m) = str_of(item, "message") {
                    out.push(AgentEvent::Error(cap(m.trim())));
                }
            }
            _ => {}
        }
    }
}

/// A codex `file_change` item's changes: the verb (`Create`, `Delete`, `Edit`) and the path
/// as `rel` shows it. Read the same way for live activity and for transcripts.
pub(crate) fn codex_file_changes(
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

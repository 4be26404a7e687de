//! Factory's `droid exec -o stream-json`: `message` (assistant text), `tool_call` /
//! `tool_result`, `error`, and `completion` with the session's usage and the final text.

use serde_json::Value;

use super::Format;
use crate::AgentEvent;
use crate::parse::{Core, cap, content_text, cost, count, progress, str_of, text_of};

/// droid's stream.
#[derive(Debug, Default)]
pub(super) struct Droid {
    /// Whether an error came before the CLI's closing one.
    error_seen: bool,
}

impl Format for Droid {
    /// Factory droid `exec -o stream-json`.
    fn event(&mut self, core: &mut Core, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        match kind {
            "message" => {
                if str_of(v, "role") == Some("assistant")
                    && let Some(text) = str_of(v, "text")
                {
                    core.say(text, out);
                }
            }
            "tool_call" => {
                let name = str_of(v, "toolName")
                    .or_else(|| str_of(v, "toolId"))
                    .unwrap_or("tool");
                let input = v.get("parameters").unwrap_or(&Value::Null);
                core.tool_call(str_of(v, "id"), name, input, out);
            }
            "tool_result" => {
                let id = str_of(v, "id");
                if v.get("isError").and_then(Value::as_bool) == Some(true) {
                    let detail = v
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .map_or_else(|| content_text(v.get("value")), str::to_owned);
                    core.tool_failed(id, &detail, out);
                } else {
                    core.tool_done(id);
                }
            }
            "error" => {
                if let Some(m) = str_of(v, "message") {
                    // The CLI's own closing `Exec failed` follows the agent loop's reason
                    // (`Connection error.`): that reason stays the error.
                    if str_of(v, "source") == Some("cli") && self.error_seen {
                        progress(cap(&format!("error: {}", m.trim())), None, Vec::new(), out);
                    } else {
                        self.error_seen = true;
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
                    core.reconcile_usage(tokens_in, tokens_out, cost(v, "cost_usd"), out);
                }
                let text = text_of(v, "finalText")
                    .or_else(|| core.last_text.clone())
                    .unwrap_or_default();
                core.set_result(text, false, out);
            }
            _ => {}
        }
    }
}

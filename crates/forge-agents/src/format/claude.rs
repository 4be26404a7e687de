//! Claude Code's `--output-format stream-json --verbose`, and Amp's compatible `--stream-json`:
//! `system` (init, `api_retry`), `assistant` messages with text and `tool_use` blocks (and
//! their usage), `user` messages with `tool_result` blocks, and the closing `result`.

use serde_json::Value;

use super::Format;
use crate::AgentEvent;
use crate::parse::{Core, cap, content_text, cost, count, str_of, text_of};

/// Claude Code's (and Amp's) stream.
#[derive(Debug, Default)]
pub(super) struct Claude {
    /// The last message id and the usage already counted for it.
    last_message: Option<(String, u64, u64)>,
}

impl Format for Claude {
    /// Claude Code `--output-format stream-json --verbose` (and Amp's compatible stream).
    fn event(&mut self, core: &mut Core, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
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
                core.model_call_failed(&detail, &retry, out);
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
                core.failed_calls = 0;
                if let Some(u) = message.get("usage") {
                    self.message_usage(core, str_of(message, "id"), u, out);
                }
                match message.get("content") {
                    Some(Value::String(text)) => core.say(text, out),
                    Some(Value::Array(blocks)) => {
                        for block in blocks {
                            match str_of(block, "type") {
                                Some("text") => {
                                    if let Some(t) = str_of(block, "text") {
                                        core.say(t, out);
                                    }
                                }
                                Some("tool_use") => {
                                    let name = str_of(block, "name").unwrap_or("tool");
                                    let input = block.get("input").unwrap_or(&Value::Null);
                                    core.tool_call(str_of(block, "id"), name, input, out);
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
                        core.tool_failed(id, &detail, out);
                    } else {
                        core.tool_done(id);
                    }
                }
            }
            "result" => {
                let subtype = str_of(v, "subtype").unwrap_or("");
                let total_cost = cost(v, "total_cost_usd").or_else(|| cost(v, "cost_usd"));
                if let Some(u) = v.get("usage") {
                    let (tokens_in, tokens_out) = claude_tokens(u);
                    core.reconcile_usage(tokens_in, tokens_out, total_cost, out);
                } else if total_cost.is_some() {
                    core.reconcile_usage(0, 0, total_cost, out);
                }
                let is_error = v.get("is_error").and_then(Value::as_bool) == Some(true)
                    || subtype.starts_with("error");
                let text = match text_of(v, "result") {
                    Some(t) => t,
                    None if is_error => format!("the agent stopped: {subtype}"),
                    None => core.last_text.clone().unwrap_or_default(),
                };
                core.set_result(text, is_error, out);
            }
            _ => {}
        }
    }
}

impl Claude {
    /// One message's usage, counted once however many events repeat it.
    fn message_usage(
        &mut self,
        core: &mut Core,
        id: Option<&str>,
        u: &Value,
        out: &mut Vec<AgentEvent>,
    ) {
        let (tokens_in, tokens_out) = claude_tokens(u);
        let (add_in, add_out) = match (&mut self.last_message, id) {
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
                self.last_message =
                    Some((id.unwrap_or_default().to_owned(), tokens_in, tokens_out));
                (tokens_in, tokens_out)
            }
        };
        core.add_usage(add_in, add_out, None, out);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::run;
    use crate::{OutputFormat, Usage};

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
}

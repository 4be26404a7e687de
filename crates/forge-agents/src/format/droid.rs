//! Factory's `droid exec -o stream-json`: `message` (assistant text), `tool_call` /
//! `tool_result`, `error`, and `completion` with the session's usage and the final text.
//!
//! droid prints nothing while it retries a failing model call (five to ten times, up to 30 s
//! apart: about four minutes against a model that answers HTTP 500). Its log does record each
//! one, and `FACTORY_LOG_FILE` sends that log where it is asked to: the built-in profile sets it
//! to `/dev/stderr`, and the log's `[LLM] LLM error` entry, followed by the call's
//! `Error: <status> <body>` line, is a failed model call here.

use serde_json::Value;

use super::Format;
use crate::AgentEvent;
use crate::parse::{Core, cap, content_text, cost, count, progress, str_of, text_of};

/// droid's stream.
#[derive(Debug, Default)]
pub(super) struct Droid {
    /// Whether an error came before the CLI's closing one.
    error_seen: bool,
    /// A failed model call whose `Error:` line (droid's words) is still to come: the status
    /// the log entry named, as a fallback reason.
    failed_call: Option<String>,
    /// The message of the log's last `ERROR` entry, while its next line (the error itself) may
    /// still come.
    error_entry: Option<String>,
}

/// The start of droid's log entry for a failed model call.
const LLM_ERROR: &str = "WARN: [LLM] LLM error";

impl Format for Droid {
    /// droid backs off to 30 s between calls.
    fn max_failed_calls(&self) -> u32 {
        3
    }

    /// Standard error is droid's log: only its `ERROR` entries (`Error running droid command`,
    /// with the error on the next line: `MetaError: Failed to fetch session`) can be a reason.
    fn stderr_reason(&mut self, stderr_line: &str) -> Option<String> {
        if let Some(message) = stderr_line
            .split_once("Z] ERROR: ")
            .filter(|(ts, _)| ts.starts_with('['))
            .map(|(_, m)| m.split(" | Context: ").next().unwrap_or(m).trim())
        {
            self.error_entry = Some(message.to_owned());
            return Some(message.to_owned());
        }
        let message = self.error_entry.take()?;
        let line = stderr_line.trim();
        if line.is_empty() || line.starts_with('[') || line.starts_with("at ") {
            return None;
        }
        Some(format!("{message}: {line}"))
    }

    fn failed_call(&mut self, stderr_line: &str) -> Option<String> {
        if let Some(at) = stderr_line.find(LLM_ERROR) {
            // A call that failed before its `Error:` line came is reported with its status.
            let earlier = self.failed_call.take();
            let context = stderr_line[at..]
                .split_once("Context: ")
                .and_then(|(_, json)| serde_json::from_str::<Value>(json).ok());
            let status = context
                .as_ref()
                .and_then(|c| c.get("statusCode"))
                .and_then(Value::as_u64)
                .map_or_else(
                    || "the model call failed".to_owned(),
                    |s| format!("HTTP {s}"),
                );
            self.failed_call = Some(status);
            return earlier;
        }
        self.failed_call.as_ref()?;
        if let Some(error) = stderr_line.strip_prefix("Error: ") {
            let status = self.failed_call.take().unwrap_or_default();
            return Some(error_words(error, &status));
        }
        // Another log entry (not the call's own `Retry attempt failed`) before its `Error:` line.
        if stderr_line.starts_with('[')
            && stderr_line.contains("Z] ")
            && !stderr_line.contains("Retry attempt failed")
        {
            return self.failed_call.take();
        }
        None
    }

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

/// droid's `Error:` line of a failed call — `500 {"type":"error","error":{"message":"…"}}` from
/// the provider's SDK, or its own words (`Connection error.`) — as `HTTP 500: …`.
fn error_words(error: &str, status: &str) -> String {
    let error = error.trim();
    let (code, body) = error.split_once(' ').unwrap_or((error, ""));
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) {
        let message = serde_json::from_str::<Value>(body).ok().and_then(|v| {
            v.get("error")
                .and_then(|e| str_of(e, "message").map(str::to_owned))
                .or_else(|| str_of(&v, "message").map(str::to_owned))
        });
        let message = message.unwrap_or_else(|| body.trim().to_owned());
        return if message.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {message}")
        };
    }
    if error.is_empty() {
        status.to_owned()
    } else {
        error.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_entries_of_the_log_are_reasons() {
        let mut d = Droid::default();
        let lines = [
            "[2026-12-03T05:34:21.258Z] WARN: No credentials found | Context: {}",
            "[2026-12-03T05:34:21.290Z] ERROR: Error running droid command",
            "MetaError: Failed to fetch session",
            "    at <anonymous> (src/entrypoints/exec/handler.ts:837:23)",
            "[2026-12-03T05:34:21.295Z] INFO: [ProcessTracker] Killing all tracked processes | Context: {}",
        ];
        let reasons: Vec<Option<String>> = lines.iter().map(|l| d.stderr_reason(l)).collect();
        assert_eq!(
            reasons,
            [
                None,
                Some("Error running droid command".to_owned()),
                Some("Error running droid command: MetaError: Failed to fetch session".to_owned()),
                None,
                None,
            ]
        );
    }

    #[test]
    fn errors_in_droids_words() {
        let body = r#"500 {"type":"error","error":{"type":"api_error","message":"scripted internal error"}}"#;
        assert_eq!(
            error_words(body, "HTTP 500"),
            "HTTP 500: scripted internal error"
        );
        assert_eq!(
            error_words("503 upstream down", "HTTP 503"),
            "HTTP 503: upstream down"
        );
        assert_eq!(error_words("Connection error.", "x"), "Connection error.");
        assert_eq!(error_words("", "HTTP 502"), "HTTP 502");
    }

    #[test]
    fn a_log_entry_and_its_error_line_are_one_failed_call() {
        let mut d = Droid::default();
        let entry = r#"[2026-12-03T05:28:49.433Z] WARN: [LLM] LLM error | Context: {"attempt":1,"statusCode":500,"failureReason":"overloaded"}"#;
        assert_eq!(d.failed_call(entry), None);
        assert_eq!(
            d.failed_call("[2026-12-03T05:28:49.441Z] WARN: Retry attempt failed"),
            None
        );
        assert_eq!(d.failed_call("Caused by:"), None);
        assert_eq!(
            d.failed_call(r#"Error: 500 {"type":"error","error":{"message":"boom"}}"#)
                .as_deref(),
            Some("HTTP 500: boom")
        );
        // Other errors of the log (its cloud sync, offline) are not model calls.
        assert_eq!(
            d.failed_call("Error: getaddrinfo ENOTFOUND api.factory.ai"),
            None
        );
        // An entry whose `Error:` line never comes is reported at the next entry.
        assert_eq!(d.failed_call(entry), None);
        assert_eq!(
            d.failed_call("[2026-12-03T05:28:50.000Z] INFO: something else")
                .as_deref(),
            Some("HTTP 500")
        );
    }
}

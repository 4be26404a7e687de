//! Gemini CLI's `-o stream-json`: `message` (assistant text, streamed as `delta` chunks that are
//! joined), `tool_use` / `tool_result`, `error`, and `result` with the session's stats. Its
//! failed model calls show only as retry lines on standard error.

use serde_json::Value;

use super::Format;
use crate::AgentEvent;
use crate::parse::{Core, cap, count, progress, str_of, text_of};

/// Gemini CLI's stream.
#[derive(Debug, Default)]
pub(super) struct Gemini {
    /// The streamed `delta` chunks of the current assistant message.
    pending: String,
}

impl Gemini {
    fn flush(&mut self, core: &mut Core, out: &mut Vec<AgentEvent>) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            core.say(&text, out);
        }
    }
}

impl Format for Gemini {
    /// Gemini CLI backs off to minutes between calls.
    fn max_failed_calls(&self) -> u32 {
        3
    }

    /// Gemini CLI `-o stream-json`.
    fn event(&mut self, core: &mut Core, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        if kind != "message" {
            self.flush(core, out);
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
                    self.flush(core, out);
                    core.say(content, out);
                }
            }
            "tool_use" => {
                let name = str_of(v, "tool_name").unwrap_or("tool");
                let input = v.get("parameters").unwrap_or(&Value::Null);
                core.tool_call(str_of(v, "tool_id"), name, input, out);
            }
            "tool_result" => {
                let id = str_of(v, "tool_id");
                if str_of(v, "status") == Some("error") {
                    let detail = v
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .map_or_else(|| text_of(v, "output").unwrap_or_default(), str::to_owned);
                    core.tool_failed(id, &detail, out);
                } else {
                    core.tool_done(id);
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
                    core.reconcile_usage(tokens_in, tokens_out, None, out);
                }
                if str_of(v, "status") == Some("error") {
                    let message = v
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .unwrap_or("the agent failed")
                        .trim()
                        .to_owned();
                    out.push(AgentEvent::Error(cap(&message)));
                    core.set_result(message, true, out);
                } else {
                    let text = core.last_text.clone().unwrap_or_default();
                    core.set_result(text, false, out);
                }
            }
            _ => {}
        }
    }

    fn failed_call(&mut self, stderr_line: &str) -> Option<String> {
        retry_line(stderr_line)
    }

    fn result<'a>(&'a self, core: &'a Core) -> Option<&'a str> {
        core.result()
            .or_else(|| Some(self.pending.trim()).filter(|t| !t.is_empty()))
    }

    fn finish(&mut self, core: &mut Core, out: &mut Vec<AgentEvent>) {
        self.flush(core, out);
    }
}

/// Gemini CLI's retry line on standard error, `Attempt 2 failed with status 500. Retrying with
/// backoff... _ApiError: {"error":{"code":500,"message":"…"}}`: the reason, the API's message
/// when it gives one.
pub(crate) fn retry_line(line: &str) -> Option<String> {
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
    use crate::parse::tests::run;
    use crate::{OutputFormat, OutputParser, Stream};

    #[test]
    fn gemini_retry_lines() {
        assert_eq!(
            retry_line(
                r#"Attempt 2 failed with status 500. Retrying with backoff... _ApiError: {"error":{"code":500,"message":"scripted internal error","status":"INTERNAL"}}"#
            )
            .as_deref(),
            Some("HTTP 500: scripted internal error")
        );
        assert_eq!(
            retry_line(
                "Attempt 1 failed. Retrying with backoff... Error: exception TypeError: fetch failed sending request"
            )
            .as_deref(),
            Some("TypeError: fetch failed sending request")
        );
        assert_eq!(
            retry_line("Attempt 1 failed: socket hang up. Retrying with backoff...").as_deref(),
            Some("socket hang up")
        );
        assert_eq!(retry_line("Ripgrep is not available."), None);
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
}

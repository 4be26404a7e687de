//! `opencode run --format json`: `text` parts, `tool_use` parts (call and result in one),
//! `step_finish` with the step's tokens and cost, `error`; the result is the last text. Its
//! failed model calls show only in its error log on standard error.

use serde_json::Value;

use super::Format;
use crate::AgentEvent;
use crate::parse::{Core, cap, content_text, cost, count, str_of};

/// opencode's stream.
#[derive(Debug, Default)]
pub(super) struct Opencode;

impl Format for Opencode {
    /// opencode backs off from 2 s doubling to 30 s between calls.
    fn max_failed_calls(&self) -> u32 {
        3
    }

    /// `opencode run --format json`.
    fn event(&mut self, core: &mut Core, kind: &str, v: &Value, out: &mut Vec<AgentEvent>) {
        let part = v.get("part").unwrap_or(&Value::Null);
        match kind {
            "text" => {
                if let Some(t) = str_of(part, "text") {
                    core.say(t, out);
                }
            }
            "tool_use" => {
                let name = str_of(part, "tool").unwrap_or("tool");
                let state = part.get("state").unwrap_or(&Value::Null);
                let input = state.get("input").unwrap_or(&Value::Null);
                let id = str_of(part, "callID").or_else(|| str_of(part, "id"));
                core.tool_call(id, name, input, out);
                if str_of(state, "status") == Some("error") {
                    let detail = content_text(state.get("error"));
                    core.tool_failed(id, &detail, out);
                } else {
                    core.tool_done(id);
                }
            }
            "step_finish" => {
                let tokens = part.get("tokens").unwrap_or(&Value::Null);
                let cache = tokens.get("cache").unwrap_or(&Value::Null);
                core.add_usage(
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
            "done" if core.result.is_none() => {
                let text = core.last_text.clone().unwrap_or_default();
                core.set_result(text, false, out);
            }
            _ => {}
        }
    }

    fn failed_call(&mut self, stderr_line: &str) -> Option<String> {
        stream_error(stderr_line)
    }

    fn finish(&mut self, core: &mut Core, out: &mut Vec<AgentEvent>) {
        if core.result.is_none()
            && let Some(text) = core.result().map(str::to_owned)
        {
            core.set_result(text, false, out);
        }
    }
}

/// opencode's log line for a failed call of the main model (its profile asks for error logs on
/// standard error, `--print-logs --log-level ERROR`): `… level=ERROR … message="stream error" …
/// small=false … error.error="AI_APICallError: …"`. Its JSON output says nothing until it has
/// retried for about 90 s; these lines are how its failed calls are counted. The reason is
/// the error, without the SDK's class name.
pub(crate) fn stream_error(line: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OutputFormat, OutputParser, Stream};

    #[test]
    fn opencode_stream_error_lines() {
        let line = r#"timestamp=2026-12-03T02:20:28.370Z level=ERROR run=9cc531ef message="stream error" providerID=forge modelID=m1 session.id=ses_x small=false agent=build mode=primary error.error="AI_APICallError: scripted internal error""#;
        assert_eq!(
            stream_error(line).as_deref(),
            Some("scripted internal error")
        );
        assert_eq!(
            stream_error(&line.replace("small=false", "small=true")),
            None
        );
        assert_eq!(stream_error("level=INFO message=\"stream\""), None);
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
}

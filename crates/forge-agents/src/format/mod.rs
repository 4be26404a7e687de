//! One module per output format, behind the [`Format`] trait and the one dispatch [`for_format`].
//!
//! A format reads the events of its CLI's stream and drives the shared steps of [`Core`] (say,
//! tool call, tool result, usage, failed model call, result). Adding a format is a module here,
//! an [`OutputFormat`] variant, an arm in [`for_format`], and its fixtures.

mod claude;
mod codex;
mod droid;
mod gemini;
mod opencode;
mod text;

use serde_json::Value;

pub(crate) use codex::codex_file_changes;

use crate::parse::{Core, cap, progress, strip_ansi};
use crate::{AgentEvent, MAX_FAILED_MODEL_CALLS, OutputFormat, Stream};

/// The reader of one format's stream. Its state is what the format alone needs (Claude's
/// per-message usage, Gemini's streamed chunks); everything shared is in [`Core`].
pub(crate) trait Format: std::fmt::Debug + Send {
    /// One JSON event of type `kind` (the session and structured error logs are already read).
    fn event(&mut self, core: &mut Core, kind: &str, v: &Value, out: &mut Vec<AgentEvent>);

    /// The reason of a failed model call the agent retries, when `stderr_line` reports one.
    fn failed_call(&mut self, stderr_line: &str) -> Option<String> {
        let _ = stderr_line;
        None
    }

    /// What of a standard-error line may be the agent's reason for failing (kept as the last
    /// standard-error line); `None` for lines that cannot be (a log's routine entries).
    fn stderr_reason(&mut self, stderr_line: &str) -> Option<String> {
        (!stderr_line.is_empty()).then(|| stderr_line.to_owned())
    }

    /// How many failed model calls in a row end the attempt.
    fn max_failed_calls(&self) -> u32 {
        MAX_FAILED_MODEL_CALLS
    }

    /// One line of output: JSON objects are events, other lines text (progress on standard
    /// output; on standard error kept as the last error line, or a failed model call).
    fn line(&mut self, core: &mut Core, stream: Stream, line: &str, out: &mut Vec<AgentEvent>) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.starts_with('{')
            && let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(trimmed)
        {
            if let Some(kind) = core.json(&value, out) {
                self.event(core, kind, &value, out);
            }
            return;
        }
        let text = cap(strip_ansi(trimmed).trim());
        if stream == Stream::Stderr {
            if let Some(detail) = self.failed_call(&text) {
                core.model_call_failed(&detail, "; retrying", out);
            }
            if let Some(reason) = self.stderr_reason(&text) {
                core.last_stderr = Some(reason);
            }
            return;
        }
        progress(text, None, Vec::new(), out);
    }

    /// The final result text so far.
    fn result<'a>(&'a self, core: &'a Core) -> Option<&'a str> {
        core.result()
    }

    /// The agent's output ended: emit what is still buffered (and a result, for formats that
    /// have no closing event).
    fn finish(&mut self, core: &mut Core, out: &mut Vec<AgentEvent>) {
        let _ = (core, out);
    }
}

/// The reader of `format`.
pub(crate) fn for_format(format: OutputFormat) -> Box<dyn Format> {
    match format {
        OutputFormat::Droid => Box::<droid::Droid>::default(),
        OutputFormat::Claude | OutputFormat::Amp => Box::<claude::Claude>::default(),
        OutputFormat::Codex => Box::new(codex::Codex),
        OutputFormat::Gemini => Box::<gemini::Gemini>::default(),
        OutputFormat::Opencode => Box::new(opencode::Opencode),
        OutputFormat::Text => Box::<text::Text>::default(),
    }
}

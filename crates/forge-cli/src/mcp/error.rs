//! A failed tool call: Forge's message and hint, returned to the host as an MCP tool error
//! (`isError: true`), never as a dropped connection.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

use crate::error::CliError;

/// What went wrong in a tool call, as Forge says it on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolError {
    /// What went wrong and where, in one sentence.
    pub(crate) what: String,
    /// A preformatted report shown before it (a plan's caret diagnostics).
    pub(crate) report: Option<String>,
    /// What to do about it.
    pub(crate) hint: Option<String>,
}

impl ToolError {
    /// An error without a hint.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            report: None,
            hint: None,
        }
    }

    /// Adds what to do about it.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Reads the report a `forge` command printed on stderr: everything before its last
    /// `error: ` line, that line, and the `hint: ` line after it. `None` when it has none.
    pub(crate) fn from_report(stderr: &str) -> Option<Self> {
        let start = match stderr.rfind("\nerror: ") {
            Some(i) => i + 1,
            None if stderr.starts_with("error: ") => 0,
            None => return None,
        };
        let report = stderr[..start].trim_end();
        let rest = &stderr[start + "error: ".len()..];
        let (what, hint) = match rest.find("\nhint: ") {
            Some(i) => (&rest[..i], Some(rest[i + "\nhint: ".len()..].trim())),
            None => (rest, None),
        };
        Some(Self {
            what: what.trim().to_owned(),
            report: (!report.is_empty()).then(|| report.to_owned()),
            hint: hint.filter(|h| !h.is_empty()).map(str::to_owned),
        })
    }

    /// The text the host shows: the report, `error: …`, `hint: …`.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if let Some(report) = &self.report {
            out.push_str(report);
            out.push('\n');
        }
        out.push_str("error: ");
        out.push_str(&self.what);
        if let Some(hint) = &self.hint {
            out.push_str("\nhint: ");
            out.push_str(hint);
        }
        out
    }
}

impl From<CliError> for ToolError {
    fn from(err: CliError) -> Self {
        Self {
            what: err.what,
            report: err.report.map(|r| r.trim_end().to_owned()),
            hint: err.hint,
        }
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(self.text())]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commands_report_splits_into_what_and_hint() {
        let e = ToolError::from_report("error: no run `x` in /r/.forge/runs\nhint: `forge runs` lists the runs of this repository\n").unwrap();
        assert_eq!(e.what, "no run `x` in /r/.forge/runs");
        assert_eq!(
            e.hint.as_deref(),
            Some("`forge runs` lists the runs of this repository")
        );
        assert_eq!(e.report, None);
        let e = ToolError::from_report(
            "error: unknown field\n --> p.toml:1:1\n\nerror: the plan p.toml has 1 problem\nhint: fix it\n",
        )
        .unwrap();
        assert_eq!(e.what, "the plan p.toml has 1 problem");
        assert_eq!(
            e.report.as_deref(),
            Some("error: unknown field\n --> p.toml:1:1")
        );
        assert_eq!(
            e.text(),
            "error: unknown field\n --> p.toml:1:1\nerror: the plan p.toml has 1 problem\nhint: fix it"
        );
        assert_eq!(ToolError::from_report("warning only\n"), None);
    }
}

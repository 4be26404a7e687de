//! Exit codes and the one-paragraph error report.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

use crate::term::Style;

/// What `forge` exits with. The table is in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Everything worked.
    Success,
    /// Tasks failed, or the run could not finish.
    Failed,
    /// Usage, configuration or plan error: nothing ran.
    Usage,
    /// Merge conflicts are left unresolved.
    Conflicts,
    /// The gate failed.
    GateFailed,
    /// Interrupted by Ctrl-C (or `forge abort`).
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Conflicts => 3,
            Self::GateFailed => 4,
            Self::Interrupted => 130,
        }
    }

    /// The exit for a code the engine computed (`RunReport::exit_code`); unknown codes are
    /// failures.
    pub(crate) fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Success,
            2 => Self::Usage,
            3 => Self::Conflicts,
            4 => Self::GateFailed,
            130 => Self::Interrupted,
            _ => Self::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A failure of a command, rendered as one paragraph: what went wrong (naming the file, run or
/// task involved), then what to do about it. Never a backtrace or a `Debug` dump.
#[derive(Debug)]
pub(crate) struct CliError {
    /// How the process exits.
    pub(crate) exit: Exit,
    /// What went wrong and where, in one sentence.
    pub(crate) what: String,
    /// A preformatted report printed as is after `what` (e.g. a plan's caret diagnostics).
    pub(crate) report: Option<String>,
    /// What to do about it.
    pub(crate) hint: Option<String>,
}

/// The result of a command.
pub(crate) type CliResult<T = Exit> = Result<T, CliError>;

impl CliError {
    /// A usage or configuration error (exit 2).
    pub(crate) fn usage(what: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            what: what.into(),
            report: None,
            hint: None,
        }
    }

    /// A failure while doing the work (exit 1).
    pub(crate) fn failed(what: impl Into<String>) -> Self {
        Self {
            exit: Exit::Failed,
            what: what.into(),
            report: None,
            hint: None,
        }
    }

    /// An I/O failure on `path`.
    pub(crate) fn io(action: &str, path: &Path, err: &std::io::Error) -> Self {
        Self::failed(format!(
            "cannot {action} {}: {}",
            path.display(),
            io_reason(err)
        ))
    }

    /// Adds what to do about it.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a preformatted report.
    #[must_use]
    pub(crate) fn report(mut self, report: impl Into<String>) -> Self {
        self.report = Some(report.into());
        self
    }

    /// Sets the exit code.
    #[must_use]
    pub(crate) fn exit(mut self, exit: Exit) -> Self {
        self.exit = exit;
        self
    }

    /// The text printed on stderr.
    pub(crate) fn render(&self, style: Style) -> String {
        let mut out = String::new();
        if let Some(report) = &self.report {
            out.push_str(report.trim_end());
            out.push('\n');
        }
        let _ = writeln!(out, "{} {}", style.red_bold("error:"), self.what);
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "{} {hint}", style.cyan("hint:"));
        }
        out
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Style::plain()))
    }
}

/// An I/O error in words, without Rust's `(os error N)` suffix.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

impl From<forge_exec::PlanError> for CliError {
    fn from(err: forge_exec::PlanError) -> Self {
        // The render ends with `error: the plan … has N problems`, which is our `what`.
        let rendered = err.render();
        let (report, what) = match rendered.rfind("error: ") {
            Some(i) => (
                rendered[..i].to_owned(),
                rendered[i + "error: ".len()..].to_owned(),
            ),
            None => (rendered, "the plan is invalid".to_owned()),
        };
        CliError::usage(what.trim())
            .report(report)
            .hint("fix the plan and run the command again (nothing was started)")
    }
}

impl From<forge_events::EventsError> for CliError {
    fn from(err: forge_events::EventsError) -> Self {
        CliError::failed(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        let table = [
            (Exit::Success, 0),
            (Exit::Failed, 1),
            (Exit::Usage, 2),
            (Exit::Conflicts, 3),
            (Exit::GateFailed, 4),
            (Exit::Interrupted, 130),
        ];
        for (exit, code) in table {
            assert_eq!(exit.code(), code);
            assert_eq!(Exit::from_code(i32::from(code)), exit);
            assert!(crate::cli::EXIT_CODES_HELP.contains(&format!("  {code} ")));
        }
        assert_eq!(Exit::from_code(77), Exit::Failed);
    }

    #[test]
    fn an_error_is_what_then_what_to_do() {
        let err = CliError::usage("no plan at plan.toml").hint("write one with `forge split`");
        assert_eq!(
            err.to_string(),
            "error: no plan at plan.toml\nhint: write one with `forge split`\n"
        );
    }

    #[test]
    fn io_errors_lose_the_os_error_suffix() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&err), "No such file or directory");
    }
}

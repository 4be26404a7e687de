//! `forge logs` without `--raw`: an attempt's output as a readable transcript — what the agent
//! said, each tool call with its key arguments and changed lines, results shortened, errors
//! highlighted, the answer and the usage at the end. The transcript itself is
//! `forge_agents::Transcript`; this module finds the attempt's format and renders it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use forge_agents::{
    Entry, OutputFormat, ToolEntry, ToolStatus, Transcript, TranscriptBuilder, transcript,
};
use forge_events::{RunId, RunState, TaskState};
use forge_exec::store::RunStore;

use crate::config::Context;
use crate::error::{CliError, CliResult};
use crate::render::format;
use crate::term::Style;

/// The output format of the agent a task ran with, from this repository's profiles; `None`
/// when that agent is no longer configured.
pub(crate) fn format_of(ctx: &Context, agent: Option<&str>) -> CliResult<Option<OutputFormat>> {
    let Some(agent) = agent else { return Ok(None) };
    let profiles = crate::agents::profiles(ctx)?;
    Ok(profiles.get(agent).map(|p| p.format))
}

/// Where the agent may have named files: its workspace, and the repository it saw in its place.
fn roots(ctx: &Context, task: &TaskState) -> Vec<PathBuf> {
    task.workspace
        .iter()
        .map(PathBuf::from)
        .chain([ctx.repo.clone()])
        .collect()
}

/// The transcript of attempt `attempt` of `task` (for `--json` and the dashboard).
pub(crate) fn read(ctx: &Context, run: &RunId, task: &str, attempt: u32) -> CliResult<Transcript> {
    let store = RunStore::new(&ctx.repo);
    let state = RunState::from_journal(store.journal(run))?;
    let Some(task) = state.task(task) else {
        return Err(CliError::usage(format!("run {run} has no task `{task}`")));
    };
    let format = format_of(ctx, task.agent.as_deref())?.unwrap_or(OutputFormat::Text);
    let path = store.log_path(run, task.id.as_str(), attempt);
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(CliError::io("read", &path, &e)),
    };
    Ok(transcript(format, &roots(ctx, task), &text))
}

/// Renders an attempt's output as it arrives: each entry once it is final, the rest and the
/// footer at the end.
pub(crate) struct Reader {
    builder: TranscriptBuilder,
    partial: Vec<u8>,
    printed: usize,
    style: Style,
}

impl Reader {
    /// A reader of `task`'s output in `format`.
    pub(crate) fn new(ctx: &Context, task: &TaskState, format: OutputFormat, style: Style) -> Self {
        let mut builder = TranscriptBuilder::new(format);
        for root in roots(ctx, task) {
            builder = builder.with_root(root);
        }
        Self {
            builder,
            partial: Vec::new(),
            printed: 0,
            style,
        }
    }

    /// Reads more of the log and prints what became final.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.builder
                .line(String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'));
        }
        let settled = self.builder.settled();
        let mut out = String::new();
        for entry in &self.builder.entries()[self.printed.min(settled)..settled] {
            out.push_str(&entry_text(entry, self.style));
        }
        self.printed = self.printed.max(settled);
        crate::render::write_stdout(&out);
    }

    /// Ends the log: prints the remaining entries, the answer and the usage.
    pub(crate) fn finish(mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.builder.line(&String::from_utf8_lossy(&line));
        }
        let t = self.builder.finish();
        let mut out = String::new();
        for entry in t.entries.iter().skip(self.printed) {
            out.push_str(&entry_text(entry, self.style));
        }
        out.push_str(&footer(&t, self.style));
        crate::render::write_stdout(&out);
    }
}

fn indent(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(out, "{}{line}", if i == 0 { first } else { rest });
    }
    out
}

fn entry_text(entry: &Entry, style: Style) -> String {
    match entry {
        Entry::Text { text } => format!("{}\n", text.trim_end()),
        Entry::Tool(call) => tool_text(call, style),
        Entry::Error { message } => {
            let text = indent(message, &format!("{} ", style.red_bold("✗ error:")), "    ");
            each_line(&text, |l| style.red(l))
        }
        Entry::Notice { message } => style.yellow(&indent(message, "! ", "  ")),
        Entry::Output { text } => each_line(&indent(text, "  ", "  "), |l| style.dim(l)),
        _ => String::new(),
    }
}

/// Each line of `text` through `paint`, newline-terminated.
fn each_line(text: &str, paint: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let _ = writeln!(out, "{}", paint(line));
    }
    out
}

fn tool_text(call: &ToolEntry, style: Style) -> String {
    let heading = call.heading();
    let mut out = match call.status {
        ToolStatus::Failed => format!("{} {}\n", style.red_bold("✗"), style.red(&heading)),
        ToolStatus::Ok => format!("{} {}\n", style.cyan("●"), style.bold(&heading)),
        ToolStatus::Pending => format!("{} {heading}\n", style.dim("○")),
    };
    if let Some(output) = &call.output {
        let body = indent(output, "  ⎿ ", "    ");
        out.push_str(&if call.status == ToolStatus::Failed {
            style.red(&body)
        } else {
            style.dim(&body)
        });
        let shown = output.lines().count();
        if call.output_lines > shown {
            let n = call.output_lines - shown;
            let more = format!("    … {n} more line{}\n", if n == 1 { "" } else { "s" });
            out.push_str(&style.dim(&more));
        }
    }
    out
}

fn footer(t: &Transcript, style: Style) -> String {
    let mut out = String::new();
    let last_text = t.entries.iter().rev().find_map(|e| match e {
        Entry::Text { text } => Some(text.trim()),
        _ => None,
    });
    if let Some(result) = &t.result
        && t.format != OutputFormat::Text
        && (result.is_error || last_text != Some(result.text.trim()))
    {
        if result.is_error {
            out.push_str(&indent(
                &result.text,
                &format!("{} ", style.red_bold("✗ failed:")),
                "  ",
            ));
        } else {
            out.push_str(&indent(
                &result.text,
                &format!("{} ", style.green("✓")),
                "  ",
            ));
        }
    }
    let u = t.usage;
    if u.tokens_in > 0 || u.tokens_out > 0 || u.cost_usd.is_some() {
        let mut line = format!(
            "Usage: {} tokens in, {} out",
            format::tokens(u.tokens_in),
            format::tokens(u.tokens_out)
        );
        if let Some(c) = u.cost_usd {
            let _ = write!(line, ", {}", format::cost(c));
        }
        let _ = writeln!(out, "{}", style.dim(&line));
    }
    out
}

/// The log's path for a message when the agent is not configured any more.
pub(crate) fn unknown_agent_note(agent: Option<&str>, path: &Path) -> String {
    format!(
        "note: agent `{}` is not configured in this repository any more, so its output format is unknown; showing {} as it is (the same as --raw)",
        agent.unwrap_or("?"),
        path.display()
    )
}

//! Plan problems and their rendering as `file:line:col` diagnostics with caret snippets.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One thing wrong with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where, as a byte range of the plan text (absent for plans built in code).
    pub span: Option<Range<usize>>,
    /// A shorter label shown under the caret.
    pub label: Option<String>,
    /// Other places involved (e.g. the first definition of a duplicate id).
    pub notes: Vec<(Range<usize>, String)>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Problem {
    pub(crate) fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Self {
            message: message.into(),
            span,
            label: None,
            notes: Vec::new(),
            help: None,
        }
    }

    pub(crate) fn at(message: impl Into<String>, span: &Range<usize>) -> Self {
        Self::new(message, Some(span.clone()))
    }

    #[must_use]
    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    #[must_use]
    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub(crate) fn note(mut self, span: &Range<usize>, text: impl Into<String>) -> Self {
        self.notes.push((span.clone(), text.into()));
        self
    }
}

/// Where a plan came from: its path (as given) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSource {
    /// The file name shown in messages.
    pub path: PathBuf,
    /// The whole text.
    pub text: Arc<str>,
}

impl PlanSource {
    /// `line:col` (1-based, columns in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before, |i| &before[i + 1..])
            .chars()
            .count()
            + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Everything wrong with a plan, reported at once.
#[derive(Debug, Clone)]
pub struct PlanError {
    /// The plan's source, when it came from a file.
    pub source: Option<PlanSource>,
    /// The problems, in the order of the file.
    pub problems: Vec<Problem>,
}

impl PlanError {
    /// Renders every problem as a compiler-style diagnostic: `error: …`, ` --> plan.toml:12:5`,
    /// the line with a caret under the offending text, notes and a `help:` line.
    pub fn render(&self) -> String {
        let renderer = Renderer::plain();
        let mut out = String::new();
        for problem in &self.problems {
            out.push_str(&render_one(&renderer, self.source.as_ref(), problem));
            out.push_str("\n\n");
        }
        let n = self.problems.len();
        let _ = write!(
            out,
            "error: the plan{} has {n} problem{}",
            self.source
                .as_ref()
                .map(|s| format!(" {}", s.path.display()))
                .unwrap_or_default(),
            if n == 1 { "" } else { "s" }
        );
        out
    }

    /// `path:line:col: message` for each problem, one per line (for logs and tests).
    pub fn short(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| match (&self.source, &p.span) {
                (Some(src), Some(span)) => {
                    let (line, col) = src.line_col(span.start);
                    format!("{}:{line}:{col}: {}", src.path.display(), p.message)
                }
                (Some(src), None) => format!("{}: {}", src.path.display(), p.message),
                (None, _) => p.message.clone(),
            })
            .collect()
    }
}

fn render_one(renderer: &Renderer, source: Option<&PlanSource>, problem: &Problem) -> String {
    let title = Level::ERROR.primary_title(problem.message.as_str());
    let mut groups: Vec<Group<'_>> = Vec::new();
    match (source, &problem.span) {
        (Some(src), Some(span)) => {
            let path = path_str(&src.path);
            let mut snippet = Snippet::source(&*src.text).path(path).annotation(
                AnnotationKind::Primary
                    .span(clamp(span, src.text.len()))
                    .label(problem.label.as_deref().unwrap_or("")),
            );
            for (note_span, text) in &problem.notes {
                snippet = snippet.annotation(
                    AnnotationKind::Context
                        .span(clamp(note_span, src.text.len()))
                        .label(text.as_str()),
                );
            }
            groups.push(title.element(snippet));
        }
        _ => groups.push(Group::with_title(title)),
    }
    if let Some(help) = &problem.help {
        groups.push(Group::with_title(
            Level::HELP.secondary_title(help.as_str()),
        ));
    }
    renderer.render(&groups)
}

fn clamp(span: &Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    start..span.end.clamp(start, len)
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let src = PlanSource {
            path: "p.toml".into(),
            text: "a = 1\nnamé = \"x\"\n".into(),
        };
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        // "namé = " is 8 bytes, 7 characters.
        assert_eq!(src.line_col(6 + 8), (2, 8));
        assert_eq!(src.line_col(999), (3, 1));
    }
}

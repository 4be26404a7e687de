//! The terminal: whether output goes to one, how wide it is, and colours.

use std::io::IsTerminal;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::cli::ColorChoice;

/// Whether stdout is a terminal.
pub(crate) fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stdin and stdout are both terminals (so we may ask a question).
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The width of the terminal on stdout, or `None` when it is not a terminal. `COLUMNS` wins
/// when set (as in most tools), so output can be sized for tests and pipes.
pub(crate) fn width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(cols);
    }
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Colours and emphasis, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    color: bool,
}

impl Style {
    /// No colours.
    pub(crate) fn plain() -> Self {
        Self { color: false }
    }

    /// Colours for a stream: `--color`, then `NO_COLOR`, then whether it is a terminal.
    pub(crate) fn for_stream(choice: Option<ColorChoice>, is_tty: bool) -> Self {
        let color = match choice.unwrap_or(ColorChoice::Auto) {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_tty
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        };
        Self { color }
    }

    /// Whether colours are on.
    pub(crate) fn is_color(self) -> bool {
        self.color
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Green (success).
    pub(crate) fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Red (failure).
    pub(crate) fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Bold red (error headers).
    pub(crate) fn red_bold(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Yellow (waiting, cancelled, warnings).
    pub(crate) fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Cyan (running, hints).
    pub(crate) fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }

    /// Dim (secondary information).
    pub(crate) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Bold (headers).
    pub(crate) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// The display width of `text` (escape sequences are not expected in it).
pub(crate) fn display_width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` with control characters as spaces: a cell must not move the cursor.
fn without_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to at most `max` columns, with `…` when cut; control characters become spaces.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let clean = without_controls(text);
    if display_width(&clean) <= max {
        return clean;
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in clean.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `text` cut to at most `max` columns by replacing its middle with `…`: both ends stay, so
/// names that differ only at the end (`task-with-a-longish-name-07`) stay apart.
pub(crate) fn elide_middle(text: &str, max: usize) -> String {
    let clean = without_controls(text);
    if display_width(&clean) <= max {
        return clean;
    }
    if max < 3 {
        return truncate(&clean, max);
    }
    let budget = max - 1;
    let tail_budget = budget.div_ceil(2);
    let head_budget = budget - tail_budget;
    let mut tail = Vec::new();
    let mut used = 0;
    for c in clean.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_budget {
            break;
        }
        tail.push(c);
        used += w;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in clean.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > head_budget {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out.extend(tail.into_iter().rev());
    out
}

/// `text` padded with spaces to `width` columns (cut first if longer).
pub(crate) fn pad(text: &str, width: usize) -> String {
    let mut out = truncate(text, width);
    let w = display_width(&out);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(w)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_columns_not_bytes() {
        assert_eq!(truncate("Edit src/api/auth.rs", 9), "Edit src…");
        assert_eq!(truncate("短い文字列", 5), "短い…");
        assert_eq!(display_width(&truncate("短い文字列", 5)), 5);
        assert_eq!(truncate("ok", 5), "ok");
        assert_eq!(truncate("a\tb\nc", 10), "a b c");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("abcdef", 4), "abc…");
    }

    #[test]
    fn long_names_keep_both_ends() {
        assert_eq!(elide_middle("short", 10), "short");
        let a = elide_middle("task-with-a-longish-name-07", 20);
        assert_eq!(a, "task-with…sh-name-07");
        assert_eq!(display_width(&a), 20);
        assert_ne!(a, elide_middle("task-with-a-longish-name-08", 20));
        assert!(display_width(&elide_middle("日本語のとても長い名前です", 9)) <= 9);
    }

    #[test]
    fn plain_style_adds_nothing() {
        let s = Style::plain();
        assert_eq!(s.green("ok"), "ok");
        let c = Style::for_stream(Some(ColorChoice::Always), false);
        assert_eq!(c.green("ok"), "\x1b[32mok\x1b[0m");
    }
}

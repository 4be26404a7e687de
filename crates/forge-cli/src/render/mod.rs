//! Showing a run: the live table on a terminal, one line per state change otherwise, or the raw
//! event stream as JSON lines. All three are fed the same events and fold them into the same
//! [`RunState`], so what `forge run` shows live is what `forge status` shows later.

pub(crate) mod bisect;
pub(crate) mod format;
pub(crate) mod lines;
pub(crate) mod retry;
pub(crate) mod summary;
pub(crate) mod table;

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use forge_events::{Event, RunState, Timestamp};

use crate::term::{self, Style};
use table::{Layout, TableInfo};

/// The shortest time between two redraws of the live table (10 frames per second).
pub(crate) const FRAME: Duration = Duration::from_millis(100);

/// How a run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The live table, redrawn in place (a terminal).
    Table,
    /// One line per state change (a pipe or a log).
    Lines,
    /// Every event as one line of JSON on stdout.
    Json,
}

impl Mode {
    /// The table on a terminal, lines otherwise, JSON when asked.
    pub(crate) fn pick(json: bool) -> Self {
        if json {
            Self::Json
        } else if term::stdout_is_tty() {
            Self::Table
        } else {
            Self::Lines
        }
    }
}

/// Folds events and shows them in one [`Mode`].
#[derive(Debug)]
pub(crate) struct Live {
    mode: Mode,
    style: Style,
    state: RunState,
    info: TableInfo,
    /// Lines of the table on screen (to move up over them on redraw).
    drawn: usize,
    frame: usize,
    last_draw: Option<Instant>,
    cursor_hidden: bool,
}

impl Live {
    /// A renderer in `mode`.
    pub(crate) fn new(mode: Mode, info: TableInfo, style: Style) -> Self {
        Self {
            mode,
            style,
            state: RunState::new(),
            info,
            drawn: 0,
            frame: 0,
            last_draw: None,
            cursor_hidden: false,
        }
    }

    /// The state folded so far.
    pub(crate) fn state(&self) -> &RunState {
        &self.state
    }

    /// Folds events without printing them (the history of a resumed run).
    pub(crate) fn seed<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for event in events {
            self.state.apply(event);
        }
    }

    /// Folds a batch of events and prints what the mode prints for them now (lines and JSON
    /// right away; the table on the next [`Live::tick`]).
    pub(crate) fn events<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        let mut out = String::new();
        for event in events {
            if !self.state.apply(event) {
                continue;
            }
            match self.mode {
                Mode::Json => {
                    out.push_str(&event.to_json());
                    out.push('\n');
                }
                Mode::Lines => {
                    if let Some(l) = lines::line(event, &self.state) {
                        out.push_str(&l);
                        out.push('\n');
                    }
                }
                Mode::Table => {}
            }
        }
        if !out.is_empty() {
            write_stdout(&out);
        }
    }

    /// Redraws the table (spinner, clock, new events) once a frame has passed since the last draw.
    pub(crate) fn tick(&mut self) {
        if self.mode != Mode::Table {
            return;
        }
        let due = self.last_draw.is_none_or(|t| t.elapsed() >= FRAME);
        if due {
            self.frame = self.frame.wrapping_add(1);
            self.draw(Some(self.frame));
        }
    }

    /// Draws the table now (`frame: None` for a still picture).
    fn draw(&mut self, frame: Option<usize>) {
        let (width, height) = size();
        let layout = Layout {
            width: width.saturating_sub(1).max(30),
            max_rows: height.saturating_sub(6).max(3),
            frame,
        };
        let lines = table::render(
            &self.state,
            &self.info,
            forge_events::now_millis(),
            layout,
            self.style,
        );
        let mut buf = String::with_capacity(lines.len() * 100);
        if !self.cursor_hidden {
            buf.push_str("\x1b[?25l");
            self.cursor_hidden = true;
        }
        if self.drawn > 0 {
            let _ = write!(buf, "\r\x1b[{}A", self.drawn);
        }
        for l in &lines {
            buf.push_str("\x1b[2K");
            buf.push_str(l);
            buf.push('\n');
        }
        // A shorter table than last time leaves old lines below: clear them.
        buf.push_str("\x1b[J");
        self.drawn = lines.len();
        self.last_draw = Some(Instant::now());
        write_stdout(&buf);
    }

    /// Prints a message: above the live table (which is redrawn below it), or on stderr in the
    /// other modes.
    pub(crate) fn note(&mut self, message: &str) {
        match self.mode {
            Mode::Table => {
                let mut buf = String::new();
                if self.drawn > 0 {
                    let _ = write!(buf, "\r\x1b[{}A\x1b[J", self.drawn);
                    self.drawn = 0;
                }
                buf.push_str(message);
                buf.push('\n');
                write_stdout(&buf);
                self.draw(Some(self.frame));
            }
            Mode::Lines | Mode::Json => {
                errln!("{message}");
            }
        }
    }

    /// Draws the final, still table and gives the cursor back.
    pub(crate) fn finish(&mut self) {
        if self.mode == Mode::Table {
            self.draw(None);
            self.show_cursor();
        }
    }

    fn show_cursor(&mut self) {
        if self.cursor_hidden {
            write_stdout("\x1b[?25h");
            self.cursor_hidden = false;
        }
    }

    /// The table as a still picture, for `forge status` (no cursor movement).
    pub(crate) fn still(state: &RunState, info: &TableInfo, style: Style) -> String {
        let (width, height) = size();
        let layout = Layout {
            width: width.saturating_sub(1).max(30),
            max_rows: if term::stdout_is_tty() {
                height.saturating_sub(6).max(3)
            } else {
                usize::MAX
            },
            frame: None,
        };
        let now: Timestamp = forge_events::now_millis();
        let mut out = table::render(state, info, now, layout, style).join("\n");
        out.push('\n');
        out
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.show_cursor();
    }
}

/// The terminal's columns and rows (100×40 when not a terminal, `COLUMNS` honoured).
fn size() -> (usize, usize) {
    let width = term::width().unwrap_or(100);
    let height = rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .filter(|s| s.ws_row > 0)
        .map_or(40, |s| usize::from(s.ws_row));
    (width, height)
}

/// Writes to stdout and flushes; a closed pipe is not an error worth dying loudly for.
pub(crate) fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

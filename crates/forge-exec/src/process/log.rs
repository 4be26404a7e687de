//! The attempt's capped `output.log`.

use std::io::Write;
use std::path::Path;

/// The attempt's `output.log`, capped. Created (with its directories) on the first line, so an
/// attempt that prints nothing costs no inode; readers treat a missing log as empty. Without a
/// path (a gate command, whose report keeps its output) nothing is written.
pub(super) struct LogFile<'a> {
    path: Option<&'a Path>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    cap: u64,
    capped: bool,
    error: Option<std::io::Error>,
}

impl<'a> LogFile<'a> {
    pub(super) fn new(path: Option<&'a Path>, cap: u64) -> Self {
        Self {
            path,
            file: None,
            written: 0,
            cap,
            capped: false,
            error: None,
        }
    }

    fn open(&mut self) -> Option<&mut std::io::BufWriter<std::fs::File>> {
        let path = self.path?;
        if self.file.is_none() && self.error.is_none() {
            let opened = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(path));
            match opened {
                Ok(f) => self.file = Some(std::io::BufWriter::with_capacity(64 * 1024, f)),
                Err(e) => self.error = Some(e),
            }
        }
        self.file.as_mut()
    }

    pub(super) fn line(&mut self, line: &str) {
        if self.capped || self.error.is_some() || self.path.is_none() {
            return;
        }
        let len = line.len() as u64 + 1;
        let over = self.written + len > self.cap;
        let cap = self.cap;
        let Some(file) = self.open() else { return };
        let result = if over {
            writeln!(
                file,
                "[forge: output.log reached its limit of {cap} bytes; later output is not logged]"
            )
        } else {
            writeln!(file, "{line}")
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
        if over {
            self.capped = true;
        } else {
            self.written += len;
        }
    }

    /// Writes what is buffered (a failure is kept and reported by `finish`).
    pub(super) fn flush_now(&mut self) {
        if self.error.is_none()
            && let Some(file) = self.file.as_mut()
            && let Err(e) = std::io::Write::flush(file)
        {
            self.error = Some(e);
        }
    }

    pub(super) fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.file.as_mut().map_or(Ok(()), std::io::Write::flush)
    }
}

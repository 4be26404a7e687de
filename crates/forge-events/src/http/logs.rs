//! `GET /api/runs/{id}/tasks/{task}/log`: a task attempt's `output.log`, read from a byte
//! offset, so a page can follow it by polling.
//!
//! The log of attempt `n` of task `t` is `<run dir>/tasks/<t>/<n>/output.log`. The run and task
//! ids are validated ([`RunId`], [`TaskId`]: safe path segments) and the attempt is a number, so
//! no request reaches outside the run's `tasks` directory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::TaskId;

/// Most bytes one log request returns; a client asks again from the offset it got.
pub(super) const LOG_CHUNK_MAX: u64 = 256 * 1024;

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// At this byte offset (past the end reads nothing).
    Offset(u64),
    /// This many bytes before the end, moved forward to the next line start.
    Tail(u64),
}

/// What a log request read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LogChunk {
    /// The attempt read (0: the task has no attempt directory yet).
    pub(super) attempt: u32,
    /// Offset of the first byte returned.
    pub(super) start: u64,
    /// The bytes (at most [`LOG_CHUNK_MAX`]).
    pub(super) bytes: Vec<u8>,
    /// Size of the log when it was read (0 while it does not exist).
    pub(super) size: u64,
}

impl LogChunk {
    /// The offset to ask for next.
    pub(super) fn next(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// The directory holding a task's attempts.
pub(super) fn task_dir(run_dir: &Path, task: &TaskId) -> PathBuf {
    crate::layout::RunDir::at(run_dir).task(task)
}

/// The latest attempt with a directory under `task_dir`, if any.
fn latest_attempt(task_dir: &Path) -> io::Result<Option<u32>> {
    let entries = match std::fs::read_dir(task_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut latest = None;
    for entry in entries {
        let entry = entry?;
        // Only canonical numbers: `01` or `+1` are not attempt directories Forge writes.
        let attempt = entry
            .file_name()
            .to_str()
            .filter(|name| !name.starts_with(['0', '+']))
            .and_then(|name| name.parse::<u32>().ok());
        if let Some(attempt) = attempt {
            latest = latest.max(Some(attempt));
        }
    }
    Ok(latest)
}

/// Reads the log of `attempt` (the latest when `None`) of the task whose directory is
/// `task_dir`. A missing log reads as empty: it is created on the attempt's first line.
pub(super) fn read(task_dir: &Path, attempt: Option<u32>, start: Start) -> io::Result<LogChunk> {
    let attempt = match attempt {
        Some(attempt) => attempt,
        None => match latest_attempt(task_dir)? {
            Some(attempt) => attempt,
            None => {
                return Ok(LogChunk {
                    attempt: 0,
                    start: 0,
                    bytes: Vec::new(),
                    size: 0,
                });
            }
        },
    };
    let path = crate::layout::attempt_log(task_dir, attempt);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                attempt,
                start: 0,
                bytes: Vec::new(),
                size: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let (mut begin, align) = match start {
        Start::Offset(offset) => (offset.min(size), false),
        Start::Tail(tail) => {
            let begin = size.saturating_sub(tail);
            (begin, begin > 0)
        }
    };
    let len = (size - begin).min(LOG_CHUNK_MAX);
    file.seek(SeekFrom::Start(begin))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    if align {
        // A tail starts at a line: the partial line before the first newline is left out.
        if let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            bytes.drain(..=newline);
            begin += newline as u64 + 1;
        }
    }
    Ok(LogChunk {
        attempt,
        start: begin,
        bytes,
        size,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(dir: &Path, attempt: &str, text: &[u8]) {
        let d = dir.join(attempt);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("output.log"), text).unwrap();
    }

    #[test]
    fn reads_from_offsets_and_tails() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path();
        write(task, "1", b"one\ntwo\nthree\n");
        let all = read(task, None, Start::Offset(0)).unwrap();
        assert_eq!((all.attempt, all.start, all.size), (1, 0, 14));
        assert_eq!(all.bytes, b"one\ntwo\nthree\n");
        assert_eq!(all.next(), 14);
        let rest = read(task, Some(1), Start::Offset(4)).unwrap();
        assert_eq!(rest.bytes, b"two\nthree\n");
        let none = read(task, Some(1), Start::Offset(99)).unwrap();
        assert_eq!((none.start, none.bytes.len(), none.next()), (14, 0, 14));
        let tail = read(task, Some(1), Start::Tail(8)).unwrap();
        assert_eq!((tail.start, &tail.bytes[..]), (8, &b"three\n"[..]));
        let whole = read(task, Some(1), Start::Tail(100)).unwrap();
        assert_eq!(whole.start, 0);
        assert_eq!(whole.bytes.len(), 14);
    }

    #[test]
    fn picks_the_latest_attempt_and_treats_missing_logs_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path();
        let empty = read(task, None, Start::Offset(0)).unwrap();
        assert_eq!((empty.attempt, empty.size), (0, 0));
        write(task, "1", b"first\n");
        write(task, "10", b"tenth\n");
        write(task, "2", b"second\n");
        std::fs::create_dir_all(task.join("011")).unwrap();
        std::fs::create_dir_all(task.join("notes")).unwrap();
        let latest = read(task, None, Start::Offset(0)).unwrap();
        assert_eq!((latest.attempt, &latest.bytes[..]), (10, &b"tenth\n"[..]));
        let missing = read(task, Some(7), Start::Offset(0)).unwrap();
        assert_eq!((missing.attempt, missing.size), (7, 0));
    }

    #[test]
    fn caps_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'x'; usize::try_from(LOG_CHUNK_MAX).unwrap() + 10];
        write(dir.path(), "1", &big);
        let first = read(dir.path(), None, Start::Offset(0)).unwrap();
        assert_eq!(first.bytes.len() as u64, LOG_CHUNK_MAX);
        let second = read(dir.path(), None, Start::Offset(first.next())).unwrap();
        assert_eq!(second.bytes.len(), 10);
        assert_eq!(second.next(), second.size);
    }
}

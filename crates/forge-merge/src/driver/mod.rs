//! Git-compatible merge drivers: `driver:<command>` with `%O %A %B %P` placeholders, run by a
//! [`CommandRunner`] ([`StandaloneRunner`] unless the caller installs another).

use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use forge_staging::RepoPath;

use crate::MergeError;
use crate::error::IoContext as _;
mod run;

pub use run::{CommandEnd, CommandOutcome, CommandRunner, ShellCommand, StandaloneRunner};

/// How much of the end of a driver's output a failure note keeps.
const OUTPUT_KEPT: usize = 16 << 10;

/// How long a merge driver may run by default.
pub(crate) const DEFAULT_DRIVER_TIMEOUT: Duration = Duration::from_mins(2);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a driver is given.
pub(crate) struct DriverInput<'a> {
    pub(crate) path: &'a RepoPath,
    pub(crate) base: &'a [u8],
    pub(crate) first: &'a [u8],
    pub(crate) second: &'a [u8],
    /// Labels of base, first and second side (`%S`, `%X`, `%Y`).
    pub(crate) labels: [&'a str; 3],
}

/// How a driver run ended.
pub(crate) enum DriverResult {
    /// Exit 0: the merged content (what it left in `%A`).
    Resolved(Vec<u8>),
    /// Anything else, described.
    Failed(String),
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, MergeError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("forge-merge-{}-{n}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ctx("create directory", &dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `'text'` for `sh`, with embedded quotes escaped.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The command line with git's placeholders filled in (each value shell-quoted).
fn expand(template: &str, files: [&Path; 3], input: &DriverInput<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('O') => out.push_str(&shell_quote(&files[0].to_string_lossy())),
            Some('A') => out.push_str(&shell_quote(&files[1].to_string_lossy())),
            Some('B') => out.push_str(&shell_quote(&files[2].to_string_lossy())),
            Some('P') => out.push_str(&shell_quote(input.path.as_str())),
            Some('L') => out.push_str(&crate::text::DEFAULT_MARKER_SIZE.to_string()),
            Some('S') => out.push_str(&shell_quote(input.labels[0])),
            Some('X') => out.push_str(&shell_quote(input.labels[1])),
            Some('Y') => out.push_str(&shell_quote(input.labels[2])),
            Some('%') | None => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

/// Runs the driver `template` through `sh -c` in `cwd` (by `runner`) on temporary files holding
/// the three versions (named after the path's extension, so drivers that look at it can), and
/// returns what it left in `%A` when it exits 0.
pub(crate) fn run_driver(
    template: &str,
    cwd: &Path,
    input: &DriverInput<'_>,
    timeout: Duration,
    runner: &dyn CommandRunner,
) -> Result<DriverResult, MergeError> {
    let tmp = TempDir::new()?;
    let ext = Path::new(input.path.file_name())
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let files = [
        tmp.0.join(format!("base{ext}")),
        tmp.0.join(format!("ours{ext}")),
        tmp.0.join(format!("theirs{ext}")),
    ];
    for (file, content) in files.iter().zip([input.base, input.first, input.second]) {
        fs::write(file, content).ctx("write", file)?;
    }
    let line = expand(template, [&files[0], &files[1], &files[2]], input);
    let finished = runner
        .run(&ShellCommand {
            line: &line,
            dir: cwd,
            timeout: Some(timeout),
            keep: OUTPUT_KEPT,
        })
        .map_err(|e| MergeError::Command {
            command: line.clone(),
            message: format!("cannot start it: {e}"),
        })?;
    let output = String::from_utf8_lossy(&finished.output).trim().to_owned();
    let why = match finished.ended {
        CommandEnd::Exited(0) => {
            let merged = fs::read(&files[1]).ctx("read the driver's result", &files[1])?;
            return Ok(DriverResult::Resolved(merged));
        }
        CommandEnd::Exited(code) => format!("merge driver `{line}` exited with {code}"),
        CommandEnd::Signaled(sig) => format!("merge driver `{line}` was killed by signal {sig}"),
        CommandEnd::TimedOut => format!(
            "merge driver `{line}` did not finish within {}s",
            timeout.as_secs()
        ),
    };
    Ok(DriverResult::Failed(if output.is_empty() {
        why
    } else {
        format!("{why}: {output}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &RepoPath) -> DriverInput<'_> {
        DriverInput {
            path,
            base: b"base\n",
            first: b"first\n",
            second: b"second\n",
            labels: ["base", "t1", "t2"],
        }
    }

    #[test]
    fn placeholders_are_quoted() {
        let path = RepoPath::new("it's/a file.rs").unwrap();
        let line = expand(
            "m %O %A %B %P %L %S %X %Y 100%% %Q",
            [Path::new("/t/o"), Path::new("/t/a"), Path::new("/t/b")],
            &input(&path),
        );
        assert_eq!(
            line,
            r"m '/t/o' '/t/a' '/t/b' 'it'\''s/a file.rs' 7 'base' 't1' 't2' 100% %Q"
        );
    }

    #[test]
    fn exit_zero_resolves_with_a() {
        let path = RepoPath::new("list.txt").unwrap();
        let cwd = std::env::temp_dir();
        let r = run_driver(
            "cat %B >> %A; test \"${PWD}\" = \"$(pwd)\"",
            &cwd,
            &input(&path),
            DEFAULT_DRIVER_TIMEOUT,
            &StandaloneRunner,
        )
        .unwrap();
        assert!(matches!(r, DriverResult::Resolved(ref c) if c == b"first\nsecond\n"));
        let r = run_driver(
            "echo nope; exit 1",
            &cwd,
            &input(&path),
            DEFAULT_DRIVER_TIMEOUT,
            &StandaloneRunner,
        )
        .unwrap();
        assert!(matches!(r, DriverResult::Failed(ref w) if w.contains("exited with 1: nope")));
    }
}

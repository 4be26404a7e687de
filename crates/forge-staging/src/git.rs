//! Running the real `git`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::StagingError;

/// A `git` command run in `dir`, with the environment variables that would redirect it
/// elsewhere (set when Forge itself runs from a git hook) removed.
pub(crate) fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_PREFIX")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, returning its standard output, or an error with its standard error.
pub(crate) fn run(cmd: &mut Command) -> Result<Vec<u8>, StagingError> {
    let output = cmd.output().map_err(|e| StagingError::Command {
        command: describe(cmd),
        message: format!("cannot start it: {e}"),
    })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(StagingError::Command {
            command: describe(cmd),
            message: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// The command line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits NUL-terminated output into its records.
pub(crate) fn nul_records(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    out.split(|&b| b == 0).filter(|r| !r.is_empty())
}

/// The paths named by `git status --porcelain=v1 -z --no-renames` output (`XY path` records).
pub(crate) fn status_paths(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    nul_records(out).filter_map(|r| r.get(3..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_records() {
        let out = b" M src/a.rs\0?? new file\0D  gone\0";
        let paths: Vec<_> = status_paths(out).collect();
        assert_eq!(paths, [&b"src/a.rs"[..], b"new file", b"gone"]);
    }

    #[test]
    fn failing_commands_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(git(dir.path()).args(["rev-parse", "--verify", "HEAD"])).unwrap_err();
        assert!(err.to_string().contains("rev-parse --verify HEAD"), "{err}");
    }
}

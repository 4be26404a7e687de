use std::path::{Path, PathBuf};

/// A file-system operation that failed: what was done, to which path, and the operating
/// system's error. The crates' own error enums wrap it (`#[error(transparent)] Io(#[from]
/// IoError)`), so one helper, [`IoContext::ctx`], serves all of them.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} `{}`: {source}", path.display())]
pub struct IoError {
    /// What was being done (`read`, `create directory`, `mount overlay on`, …).
    pub op: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// `op` on `path` failed with `source`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Adds the operation and path to an I/O result. The error type is always [`IoError`] (not a
/// type parameter), so `?` converts it into the caller's error through its `From<IoError>`
/// without annotations.
pub trait IoContext<T> {
    /// Names the operation and path of a failure.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError>;
}

/// For `std::io` results and any other whose error converts into `std::io::Error` (such as
/// `rustix`'s `Errno`).
impl<T, E: Into<std::io::Error>> IoContext<T> for Result<T, E> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(op, path, e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Wrapper {
        #[error(transparent)]
        Io(#[from] IoError),
    }

    fn read(path: &Path) -> Result<Vec<u8>, Wrapper> {
        Ok(std::fs::read(path).ctx("read", path)?)
    }

    #[test]
    fn names_the_operation_and_the_path() {
        let missing = Path::new("/nonexistent/forge-types-test");
        let err = read(missing).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read `/nonexistent/forge-types-test`: "),
            "{err}"
        );
        let Wrapper::Io(io) = err;
        assert_eq!(io.source.kind(), std::io::ErrorKind::NotFound);
    }
}

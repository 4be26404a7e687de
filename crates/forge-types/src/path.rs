use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path that is not an acceptable repo-relative path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path `{path}`: {reason}")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A repo-relative, `/`-separated, normalized path to a file (or symlink) in the repository.
///
/// Normalization drops `.` segments, repeated and trailing `/`. Refused: empty paths, absolute
/// paths, `..` segments, NUL bytes, any `.git` segment (git itself refuses to track those) and
/// anything under `.forge/` (Forge's own store). A `RepoPath` therefore can never name a file
/// outside the repository, whatever directory it is joined to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(String);

impl RepoPath {
    /// Validates and normalizes `path`.
    pub fn new(path: &str) -> Result<Self, PathError> {
        let invalid = |reason| PathError {
            path: path.to_owned(),
            reason,
        };
        if path.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        if path.starts_with('/') {
            return Err(invalid(
                "it is absolute; paths are relative to the repository root",
            ));
        }
        let mut out = String::with_capacity(path.len());
        for segment in path.split('/') {
            match segment {
                "" | "." => {}
                ".." => return Err(invalid("`..` segments are not allowed")),
                s if s.eq_ignore_ascii_case(".git") => {
                    return Err(invalid("paths inside `.git` are not allowed"));
                }
                ".forge" if out.is_empty() => {
                    return Err(invalid("paths inside `.forge/` are not allowed"));
                }
                s => {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(s);
                }
            }
        }
        if out.is_empty() {
            return Err(invalid("it names no file"));
        }
        Ok(Self(out))
    }

    /// The normalized path, e.g. `src/lib.rs`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, e.g. `["src", "lib.rs"]`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The parent directory (`src` for `src/lib.rs`), or `None` at the top level.
    pub fn parent(&self) -> Option<&str> {
        self.0.rfind('/').map(|i| &self.0[..i])
    }

    /// A repo path from a relative file-system path (as found by walking a directory).
    pub fn from_path(path: &std::path::Path) -> Result<Self, PathError> {
        match path.to_str() {
            Some(s) => Self::new(s),
            None => Err(PathError {
                path: path.to_string_lossy().into_owned(),
                reason: "it is not valid UTF-8",
            }),
        }
    }

    /// `self/name`, validated.
    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        Self::new(&format!("{}/{name}", self.0))
    }

    /// Whether `self` is `dir` or lies under it (`dir` given as a normalized path).
    pub fn starts_with_dir(&self, dir: &str) -> bool {
        self.0 == dir
            || (self.0.len() > dir.len()
                && self.0.starts_with(dir)
                && self.0.as_bytes()[dir.len()] == b'/')
    }

    /// The last segment (`lib.rs` for `src/lib.rs`).
    pub fn file_name(&self) -> &str {
        self.0.rfind('/').map_or(&self.0, |i| &self.0[i + 1..])
    }
}

impl FromStr for RepoPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

// Sound: `RepoPath` compares, orders and hashes exactly as its inner string does, so maps keyed
// by `RepoPath` can be searched (and ranged) by `&str`.
impl std::borrow::Borrow<str> for RepoPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RepoPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RepoPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl AsRef<str> for RepoPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for RepoPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RepoPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        for (input, want) in [
            ("a", "a"),
            ("./src//lib.rs", "src/lib.rs"),
            ("src/", "src"),
            ("a/./b/", "a/b"),
            ("docs/.forge/x", "docs/.forge/x"),
            (".gitignore", ".gitignore"),
        ] {
            assert_eq!(RepoPath::new(input).unwrap().as_str(), want);
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "/",
            ".",
            "./",
            "/etc/passwd",
            "a/../b",
            "..",
            ".git/HEAD",
            "sub/.Git/x",
            ".forge/runs/x",
            "a\0b",
        ] {
            assert!(
                matches!(RepoPath::new(bad), Err(PathError { ref path, .. }) if path == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parts() {
        let p = RepoPath::new("src/api/auth.rs").unwrap();
        assert_eq!(p.parent(), Some("src/api"));
        assert_eq!(p.file_name(), "auth.rs");
        assert_eq!(p.segments().collect::<Vec<_>>(), ["src", "api", "auth.rs"]);
        let top = RepoPath::new("README.md").unwrap();
        assert_eq!(top.parent(), None);
        assert_eq!(top.file_name(), "README.md");
        assert!(p.starts_with_dir("src"));
        assert!(p.starts_with_dir("src/api/auth.rs"));
        assert!(!p.starts_with_dir("sr"));
        assert!(!p.starts_with_dir("src/api/auth"));
        assert_eq!(p.join("x").unwrap().as_str(), "src/api/auth.rs/x");
        assert!(top.join("..").is_err());
        assert!(top.join(".git").is_err());
    }
}

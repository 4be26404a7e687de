use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LockError;

/// A validated, normalized, repo-relative path glob.
///
/// Syntax is gitignore's: `*` and `?` stay within one path segment, `**` as a whole segment spans
/// any number of segments, `[a-z]` / `[!a-z]` are classes, `{a,b}` alternatives, `\` escapes.
/// Patterns are anchored at the repository root (`*.rs` means top-level `.rs` files; write
/// `**/*.rs` for all of them). A trailing `/` means the whole subtree: `src/api/` is `src/api/**`.
/// A pattern without glob characters names exactly one file.
///
/// Normalization removes `./` segments and repeated `/`. Rejected: empty patterns, absolute paths,
/// `..` segments, anything inside `.git/` or `.forge/`, NUL bytes and malformed globs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// Parses and normalizes a pattern.
    pub fn new(pattern: &str) -> Result<Self, LockError> {
        let invalid = |reason: &str| LockError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        if pattern.trim().is_empty() {
            return Err(invalid("the pattern is empty"));
        }
        if pattern.contains('\0') {
            return Err(invalid("the pattern contains a NUL byte"));
        }
        if pattern.starts_with('/') || pattern.starts_with('\\') || has_drive_prefix(pattern) {
            return Err(invalid(
                "absolute paths are not allowed; write the path relative to the repository root",
            ));
        }
        let subtree = pattern.ends_with('/');
        let mut segments: Vec<&str> = Vec::new();
        for segment in pattern.split('/') {
            match segment {
                "" | "." => {}
                ".." => return Err(invalid("`..` segments are not allowed")),
                s if s.eq_ignore_ascii_case(".git") => {
                    return Err(invalid("paths inside `.git/` cannot be claimed"));
                }
                s => segments.push(s),
            }
        }
        if segments.first() == Some(&".forge") {
            return Err(invalid("paths inside `.forge/` cannot be claimed"));
        }
        if segments.is_empty() {
            return Err(invalid("the pattern names no path"));
        }
        if subtree && segments.last() != Some(&"**") {
            segments.push("**");
        }
        let text = segments.join("/");
        globset::GlobBuilder::new(&text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| invalid(&e.kind().to_string()))?;
        Ok(Self { text })
    }

    /// The normalized pattern text, e.g. `src/api/**` for the input `./src//api/`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `C:` style prefixes: refused so that a Windows absolute path is not taken for a relative one.
fn has_drive_prefix(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

impl FromStr for Pattern {
    type Err = LockError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
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
            ("src/main.rs", "src/main.rs"),
            ("./src//api/", "src/api/**"),
            ("src/api/**", "src/api/**"),
            ("src/api/**/", "src/api/**"),
            ("{a,b}/**", "{a,b}/**"),
            ("docs/./*.md", "docs/*.md"),
        ] {
            assert_eq!(Pattern::new(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "  ",
            "/etc/passwd",
            "\\x",
            "C:/x",
            "a/../b",
            "..",
            ".git/config",
            "a/.GIT/x",
            ".forge/runs",
            ".",
            "./",
            "a\0b",
            "src/[a",
            "{a,b",
        ] {
            let err = Pattern::new(bad).unwrap_err();
            assert!(
                matches!(&err, LockError::InvalidPattern { pattern, .. } if pattern == bad),
                "{bad:?}: {err}"
            );
        }
    }
}

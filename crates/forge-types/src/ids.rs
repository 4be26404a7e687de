use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An identifier (run or task id) that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{id}`: {reason}")]
pub struct IdError {
    /// `"task id"` or `"run id"`.
    pub what: &'static str,
    /// The offending input, as given.
    pub id: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// The longest identifier accepted: ids become directory names and appear in every event.
const MAX_ID_LEN: usize = 128;

/// Checks an identifier: 1 to 128 characters of ASCII letters, digits, `-`, `_` and `.`, not
/// starting with `.` (ids name directories such as `.forge/runs/<run>/tasks/<task>/`, so they must
/// be safe path segments everywhere).
fn validate(what: &'static str, id: &str) -> Result<(), IdError> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("it is longer than 128 characters")
    } else if id.starts_with('.') {
        Some("it starts with `.`")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only ASCII letters, digits, `-`, `_` and `.` are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(IdError {
            what,
            id: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Cloning is cheap (a shared string): every event carries its run id.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($what, &id)?;
                Ok(Self(Arc::from(id)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Identifies one task of a plan (`[[task]] id = "backend"`).
    ///
    /// Task ids are unique within a run and are safe to use as a path segment.
    TaskId,
    "task id"
);

id_type!(
    /// Identifies one run: the directory name under `.forge/runs/`.
    RunId,
    "run id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for ok in ["a", "backend", "api-v2", "task_1", "x.y", "A9"] {
            assert_eq!(TaskId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_unsafe_ids() {
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "é",
            "a\\b",
            &"x".repeat(129),
        ] {
            let err = TaskId::new(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdError {
                        what: "task id",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_validates() {
        let id: RunId = serde_json::from_str("\"20261124-run\"").unwrap();
        assert_eq!(id.to_string(), "20261124-run");
        assert!(serde_json::from_str::<RunId>("\"../x\"").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"20261124-run\"");
    }
}

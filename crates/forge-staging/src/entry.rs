use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::StagingError;

/// The BLAKE3 hash of a file's content: the key of Forge's content-addressed object store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `content`.
    pub fn of(content: &[u8]) -> Self {
        Self(*blake3::hash(content).as_bytes())
    }

    /// Wraps raw hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ContentHash {
    type Err = StagingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| StagingError::InvalidHash(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Twelve digits identify a blob in logs as well as git's short hashes do.
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What one path of a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A regular file.
    File {
        /// Hash of the content.
        hash: ContentHash,
        /// Size in bytes.
        size: u64,
        /// Whether the executable bit is set.
        executable: bool,
    },
    /// A symbolic link; its target is stored as a blob (`hash`), as git does.
    Symlink {
        /// Hash of the link target's bytes.
        hash: ContentHash,
    },
}

impl Entry {
    /// A regular file entry.
    pub fn file(hash: ContentHash, size: u64, executable: bool) -> Self {
        Self::File {
            hash,
            size,
            executable,
        }
    }

    /// The hash of the content (a file's bytes, or a symlink's target).
    pub fn hash(&self) -> ContentHash {
        match *self {
            Self::File { hash, .. } | Self::Symlink { hash } => hash,
        }
    }

    /// Whether this is an executable regular file.
    pub fn is_executable(&self) -> bool {
        matches!(
            self,
            Self::File {
                executable: true,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        let h = ContentHash::of(b"hello");
        assert_eq!(h.to_hex().len(), 64);
        assert_eq!(h.to_hex().parse::<ContentHash>().unwrap(), h);
        assert!("xyz".parse::<ContentHash>().is_err());
        assert!(h.to_hex()[..63].parse::<ContentHash>().is_err());
    }

    #[test]
    fn entry_serde_round_trip() {
        let e = Entry::file(ContentHash::of(b"x"), 1, true);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"kind\":\"file\""), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        assert!(e.is_executable());
    }
}

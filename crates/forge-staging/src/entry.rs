use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
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
        // Borrowed where the format allows: a manifest holds one hash per file.
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = ContentHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content hash (64 hexadecimal digits)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ContentHash, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Hex)
    }
}

/// A symbolic link's target, exactly as stored in the link: any bytes, never resolved.
///
/// Serialized as a string when the bytes are UTF-8 (the common case), otherwise as
/// `{"bytes": "<hex>"}`, so that a round trip through JSON is lossless.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkTarget(Vec<u8>);

impl LinkTarget {
    /// A target made of `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes of the target.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The target as a path, to pass to `symlink(2)`.
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The target as text, if it is UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl From<&str> for LinkTarget {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<&Path> for LinkTarget {
    fn from(p: &Path) -> Self {
        Self(p.as_os_str().as_bytes().to_vec())
    }
}

impl fmt::Display for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LinkTargetRepr {
    Text(String),
    Bytes { bytes: String },
}

impl Serialize for LinkTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_str() {
            Some(text) => s.serialize_str(text),
            None => LinkTargetRepr::Bytes {
                bytes: hex::encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for LinkTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match LinkTargetRepr::deserialize(d)? {
            LinkTargetRepr::Text(text) => Ok(Self(text.into_bytes())),
            LinkTargetRepr::Bytes { bytes } => hex::decode(&bytes)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What one path of a snapshot holds: a regular file or a symbolic link (directories are implied
/// by the paths under them, as in git).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// A symbolic link. Its target is kept as text, and also stored as a blob (`hash`), as git does.
    Symlink {
        /// Hash of the target's bytes (the blob holding the target).
        hash: ContentHash,
        /// The target, never resolved.
        target: LinkTarget,
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

    /// A symlink entry; its hash is that of the target's bytes.
    pub fn symlink(target: impl Into<LinkTarget>) -> Self {
        let target = target.into();
        Self::Symlink {
            hash: ContentHash::of(target.as_bytes()),
            target,
        }
    }

    /// The hash of the content (a file's bytes, or a symlink's target).
    pub fn hash(&self) -> ContentHash {
        match *self {
            Self::File { hash, .. } | Self::Symlink { hash, .. } => hash,
        }
    }

    /// The size of the content: a file's length, or the length of a symlink's target.
    pub fn size(&self) -> u64 {
        match self {
            Self::File { size, .. } => *size,
            Self::Symlink { target, .. } => target.as_bytes().len() as u64,
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

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        matches!(self, Self::Symlink { .. })
    }

    /// The symlink's target, if this is a symlink.
    pub fn link_target(&self) -> Option<&LinkTarget> {
        match self {
            Self::Symlink { target, .. } => Some(target),
            Self::File { .. } => None,
        }
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

    #[test]
    fn symlink_targets_round_trip_even_when_not_utf8() {
        for bytes in [b"../x".to_vec(), vec![0xff, b'/', 0xfe], Vec::new()] {
            let e = Entry::symlink(LinkTarget::new(bytes.clone()));
            assert_eq!(e.hash(), ContentHash::of(&bytes));
            assert_eq!(e.size(), bytes.len() as u64);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e, "{json}");
            assert_eq!(e.link_target().unwrap().as_bytes(), &bytes[..]);
        }
        let json = serde_json::to_string(&Entry::symlink("a/b")).unwrap();
        assert!(json.contains("\"target\":\"a/b\""), "{json}");
    }
}

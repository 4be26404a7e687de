use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::IoContext;
use crate::{ContentHash, StagingError};

/// Files larger than this are streamed rather than read whole.
const STREAM_ABOVE: u64 = 4 << 20;

/// A content-addressed store of blobs (file contents and symlink targets), keyed by BLAKE3 hash.
///
/// Layout: `<dir>/<first two hex digits>/<remaining 62 digits>`, each blob read-only, plus
/// `<dir>/tmp/` for writes in progress (a blob appears under its name only once complete, by an
/// atomic rename). Every read checks the content against its hash, so a damaged store is an
/// error, never silent corruption. Several processes may share one store.
///
/// Writes are not flushed one by one: call [`BlobStore::sync`] once before relying on them
/// surviving a power loss (Forge does so before it records a task as finished).
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Opens (creating if needed) the store in `dir`, and removes temporary files left by
    /// processes that no longer exist.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StagingError> {
        let dir = dir.into();
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).ctx("create the object store", &tmp)?;
        let store = Self {
            dir: std::path::absolute(&dir).ctx("resolve", &dir)?,
        };
        store.remove_stale_temp();
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a blob with `hash` is stored.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.blob_path(hash).exists()
    }

    /// Stores `content`, returning its hash. Storing what is already there costs one `stat`.
    pub fn write(&self, content: &[u8]) -> Result<ContentHash, StagingError> {
        let hash = ContentHash::of(content);
        let dest = self.blob_path(&hash);
        if dest.exists() {
            return Ok(hash);
        }
        let (tmp_path, mut tmp) = self.temp_file()?;
        let result = tmp
            .write_all(content)
            .ctx("write", &tmp_path)
            .map_err(Into::into)
            .and_then(|()| Self::publish(&tmp_path, &dest));
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        result.map(|()| hash)
    }

    /// Stores the content of the regular file at `path` (never following a symlink), streaming
    /// it, and returns its hash and size. The hash is of the bytes stored, even if the file
    /// changes meanwhile.
    pub fn write_file(&self, path: &Path) -> Result<(ContentHash, u64), StagingError> {
        let mut src = open_nofollow(path)?;
        let (tmp_path, mut tmp) = self.temp_file()?;
        let result = (|| {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 256 << 10];
            let mut size = 0u64;
            loop {
                let n = src.read(&mut buf).ctx("read", path)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                tmp.write_all(&buf[..n]).ctx("write", &tmp_path)?;
                size += n as u64;
            }
            let hash = ContentHash::from_bytes(*hasher.finalize().as_bytes());
            let dest = self.blob_path(&hash);
            if !dest.exists() {
                Self::publish(&tmp_path, &dest)?;
            }
            Ok((hash, size))
        })();
        let _ = fs::remove_file(&tmp_path);
        result
    }

    /// Adds the file at `path`, whose content the caller has just hashed to `hash`, by hard
    /// link when possible (no data is copied), else by copy. Used for the base snapshot's files.
    pub(crate) fn import(&self, path: &Path, hash: &ContentHash) -> Result<(), StagingError> {
        let dest = self.blob_path(hash);
        if dest.exists() {
            return Ok(());
        }
        let parent = self.fan_out_dir(hash);
        match fs::hard_link(path, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !parent.exists() => {
                fs::create_dir_all(&parent).ctx("create directory", &parent)?;
                self.import(path, hash)
            }
            Err(_) => self.write_file(path).map(|_| ()),
        }
    }

    /// The blob's content, checked against its hash.
    pub fn read(&self, hash: &ContentHash) -> Result<Vec<u8>, StagingError> {
        let path = self.blob_path(hash);
        let content = fs::read(&path).map_err(|e| self.missing_or(hash, &path, e))?;
        let actual = ContentHash::of(&content);
        if actual != *hash {
            return Err(StagingError::BlobCorrupt {
                path,
                expected: *hash,
                actual,
            });
        }
        Ok(content)
    }

    /// Writes the blob to a new file at `dest` (which must not exist) with the exec bit as
    /// given, checking the content against its hash as it goes; on a mismatch `dest` is
    /// removed and the error returned.
    pub fn copy_to(
        &self,
        hash: &ContentHash,
        dest: &Path,
        executable: bool,
    ) -> Result<(), StagingError> {
        let path = self.blob_path(hash);
        let mut src = File::open(&path).map_err(|e| self.missing_or(hash, &path, e))?;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .ctx("create", dest)?;
        let result = (|| {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = src.read(&mut buf).ctx("read", &path)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).ctx("write", dest)?;
            }
            let actual = ContentHash::from_bytes(*hasher.finalize().as_bytes());
            if actual != *hash {
                return Err(StagingError::BlobCorrupt {
                    path: path.clone(),
                    expected: *hash,
                    actual,
                });
            }
            set_executable(&out, executable)
                .ctx("set permissions of", dest)
                .map_err(Into::into)
        })();
        if result.is_err() {
            let _ = fs::remove_file(dest);
        }
        result
    }

    /// Makes every blob written so far durable (one `syncfs(2)` of the store's file system).
    pub fn sync(&self) -> Result<(), StagingError> {
        let dir = File::open(&self.dir).ctx("open", &self.dir)?;
        rustix::fs::syncfs(&dir)
            .ctx("sync the file system of", &self.dir)
            .map_err(Into::into)
    }

    /// Makes the blobs `hashes` durable, and only them: each blob's file is flushed, then each
    /// directory that holds one (once however many blobs it holds), then the store's own
    /// directory (a fan-out directory may be new). Where [`BlobStore::sync`] waits for
    /// everything written to the file system (other processes' writes included), this waits
    /// for the named files: what persisting one changeset needs.
    pub fn sync_blobs(
        &self,
        hashes: impl IntoIterator<Item = ContentHash>,
    ) -> Result<(), StagingError> {
        let mut dirs = std::collections::BTreeSet::new();
        for hash in hashes {
            let path = self.blob_path(&hash);
            let file = File::open(&path).map_err(|e| self.missing_or(&hash, &path, e))?;
            file.sync_data().ctx("sync", &path)?;
            dirs.insert(self.fan_out_dir(&hash));
        }
        if dirs.is_empty() {
            return Ok(());
        }
        dirs.insert(self.dir.clone());
        for dir in dirs {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .ctx("sync directory", &dir)?;
        }
        Ok(())
    }

    fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn fan_out_dir(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(&hash.to_hex()[..2])
    }

    fn missing_or(&self, hash: &ContentHash, path: &Path, e: io::Error) -> StagingError {
        if e.kind() == io::ErrorKind::NotFound {
            StagingError::BlobMissing {
                hash: *hash,
                store: self.dir.clone(),
            }
        } else {
            StagingError::io("read", path, e)
        }
    }

    fn temp_file(&self) -> Result<(PathBuf, File), StagingError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join("tmp")
            .join(format!("{}.{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx("create", &path)?;
        Ok((path, file))
    }

    /// Moves a finished temporary file to its blob name, read-only.
    fn publish(tmp: &Path, dest: &Path) -> Result<(), StagingError> {
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o444))
            .ctx("set permissions of", tmp)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).ctx("create directory", parent)?;
        }
        fs::rename(tmp, dest)
            .ctx("rename into place", dest)
            .map_err(Into::into)
    }

    fn remove_stale_temp(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.split('.').next());
            let alive = pid.is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if !alive {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Opens a regular file for reading without following a symlink in its last component.
pub(crate) fn open_nofollow(path: &Path) -> Result<File, StagingError> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ctx("open", path)?;
    Ok(File::from(fd))
}

/// Sets a file's mode to 0755 or 0644.
pub(crate) fn set_executable(file: &File, executable: bool) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(if executable {
        0o755
    } else {
        0o644
    }))
}

/// Hashes a regular file's content (never following a symlink), returning hash and size. Small
/// files are read whole into `buf` (which is kept, so the caller can store them without a second
/// read); large ones are streamed and `buf` is left empty.
pub(crate) fn hash_file(
    path: &Path,
    buf: &mut Vec<u8>,
) -> Result<(ContentHash, u64), StagingError> {
    let mut file = open_nofollow(path)?;
    buf.clear();
    let len = file.metadata().ctx("stat", path)?.len();
    if len <= STREAM_ABOVE {
        file.read_to_end(buf).ctx("read", path)?;
        return Ok((ContentHash::of(buf), buf.len() as u64));
    }
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut chunk).ctx("read", path)?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        size += n as u64;
    }
    Ok((ContentHash::from_bytes(*hasher.finalize().as_bytes()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("objects")).unwrap();
        let data = b"\x00\xffbinary\n".to_vec();
        let h = store.write(&data).unwrap();
        assert_eq!(h, ContentHash::of(&data));
        assert!(store.contains(&h));
        assert_eq!(store.read(&h).unwrap(), data);
        // Idempotent.
        assert_eq!(store.write(&data).unwrap(), h);

        let src = dir.path().join("big");
        let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &big).unwrap();
        let (hb, size) = store.write_file(&src).unwrap();
        assert_eq!((hb, size), (ContentHash::of(&big), big.len() as u64));
        let mut buf = Vec::new();
        assert_eq!(hash_file(&src, &mut buf).unwrap(), (hb, size));

        let out = dir.path().join("out");
        store.copy_to(&hb, &out, true).unwrap();
        assert_eq!(fs::read(&out).unwrap(), big);
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(
            fs::read_dir(store.dir().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
        store.sync().unwrap();
    }

    #[test]
    fn sync_blobs_flushes_the_named_blobs_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("objects")).unwrap();
        let (a, b) = (store.write(b"a").unwrap(), store.write(b"b").unwrap());
        store.sync_blobs([a, b, a]).unwrap();
        store.sync_blobs([]).unwrap();
        let missing = ContentHash::of(b"never stored");
        assert!(
            matches!(store.sync_blobs([a, missing]), Err(StagingError::BlobMissing { hash, .. }) if hash == missing)
        );
    }

    #[test]
    fn corruption_and_absence_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let h = store.write(b"hello").unwrap();
        let missing = ContentHash::of(b"nope");
        assert!(
            matches!(store.read(&missing), Err(StagingError::BlobMissing { hash, .. }) if hash == missing)
        );
        let path = store.blob_path(&h);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"jello").unwrap();
        assert!(
            matches!(store.read(&h), Err(StagingError::BlobCorrupt { expected, .. }) if expected == h)
        );
        let out = dir.path().join("out");
        assert!(store.copy_to(&h, &out, false).is_err());
        assert!(!out.exists(), "a corrupt copy is removed");
    }

    #[test]
    fn never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("o")).unwrap();
        fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("link")).unwrap();
        assert!(store.write_file(&dir.path().join("link")).is_err());
        assert!(hash_file(&dir.path().join("link"), &mut Vec::new()).is_err());
    }
}

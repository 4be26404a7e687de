//! Turning what a workspace holds into a [`ChangeSet`]: reading entries without following
//! symlinks, hashing, storing new blobs.

use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::IoContext;
use crate::store::hash_file;
use crate::{BlobStore, Change, ChangeSet, Entry, LinkTarget, RepoPath, SkipReason, StagingError};

/// Collects changes, storing the blobs of new content as it goes.
pub(crate) struct Capture<'a> {
    store: &'a BlobStore,
    limit: u64,
    buf: Vec<u8>,
    pub(crate) out: ChangeSet,
}

/// What a non-directory path holds now.
pub(crate) enum Found {
    /// A file or symlink, with its blob stored.
    Entry(Entry),
    /// Something that cannot be captured.
    Skip(SkipReason),
}

impl<'a> Capture<'a> {
    pub(crate) fn new(store: &'a BlobStore, limit: u64) -> Self {
        Self {
            store,
            limit,
            buf: Vec::new(),
            out: ChangeSet::default(),
        }
    }

    /// Records what the non-directory `abs` (at `path`) holds against `before`.
    pub(crate) fn record(
        &mut self,
        path: RepoPath,
        abs: &Path,
        meta: &Metadata,
        before: Option<&Entry>,
    ) -> Result<(), StagingError> {
        match self.read(abs, meta, before)? {
            Found::Entry(now) => {
                if let Some(change) = Change::between(before.cloned(), Some(now)) {
                    self.out.insert(path, change);
                }
            }
            Found::Skip(reason) => self.out.skip(path.as_str(), reason),
        }
        Ok(())
    }

    /// Records that `path` is gone.
    pub(crate) fn deleted(&mut self, path: &RepoPath, before: &Entry) {
        // A path already recorded as present (re-created under an opaque directory) stays so.
        if self.out.get(path.as_str()).is_none() {
            self.out
                .insert(path.clone(), Change::Deleted(before.clone()));
        }
    }

    /// Reads the entry at `abs`, storing its blob if it differs from `before`.
    pub(crate) fn read(
        &mut self,
        abs: &Path,
        meta: &Metadata,
        before: Option<&Entry>,
    ) -> Result<Found, StagingError> {
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(abs).ctx("read link", abs)?;
            let entry = Entry::symlink(LinkTarget::new(target.as_os_str().as_bytes()));
            if before != Some(&entry) {
                self.store.write(target.as_os_str().as_bytes())?;
            }
            return Ok(Found::Entry(entry));
        }
        if !ft.is_file() {
            return Ok(Found::Skip(SkipReason::Special {
                kind: special_kind(meta).to_owned(),
            }));
        }
        if meta.len() > self.limit {
            return Ok(Found::Skip(SkipReason::TooLarge {
                size: meta.len(),
                limit: self.limit,
            }));
        }
        let executable = meta.mode() & 0o100 != 0;
        let (hash, size) = hash_file(abs, &mut self.buf)?;
        let entry = Entry::file(hash, size, executable);
        if before == Some(&entry) {
            return Ok(Found::Entry(entry));
        }
        if self.buf.len() as u64 == size {
            self.store.write(&self.buf)?;
            Ok(Found::Entry(entry))
        } else {
            // Too large to have been kept in memory: stream it into the store. Its hash is of
            // what was stored, should the file have changed in between.
            let (hash, size) = self.store.write_file(abs)?;
            Ok(Found::Entry(Entry::file(hash, size, executable)))
        }
    }

    pub(crate) fn finish(self) -> ChangeSet {
        self.out
    }
}

/// A name for a special file's type.
pub(crate) fn special_kind(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "unknown"
    }
}

/// `dir/name` as a repo path string (`name` alone at the top).
pub(crate) fn child(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

//! File-system access confined to the repository: every directory is opened relative to its
//! parent with `O_NOFOLLOW`, so no path can lead outside the repository root or through a
//! symlink, whatever is renamed meanwhile.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use forge_staging::{ContentHash, Entry, LinkTarget};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};

/// What is at a path, as far as applying cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnDisk {
    Absent,
    Entry(Entry),
    Directory,
    /// A FIFO, socket or device: never touched.
    Special,
}

/// Enough of a file's `stat` to notice that someone changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: i64,
    mode: u32,
}

/// Where a directory stands.
pub(crate) enum DirState<'a> {
    /// It exists, and here it is.
    Open(BorrowedFd<'a>),
    /// It does not exist; `deepest` is its deepest existing ancestor, `deepest_rel` that
    /// ancestor's path (`""` for the root).
    Missing {
        deepest: BorrowedFd<'a>,
        deepest_rel: String,
    },
    /// A component is a symlink (`symlink`) or not a directory.
    Blocked { at: String, symlink: bool },
}

/// The repository root and the chain of directories opened last (kept open, so walking paths
/// in sorted order opens each directory once).
pub(crate) struct Root {
    path: PathBuf,
    fd: OwnedFd,
    stack: Vec<(String, OwnedFd)>,
}

fn open_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

impl Root {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
            stack: Vec::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens directory `rel` (`""` for the root).
    pub(crate) fn dir(&mut self, rel: &str) -> io::Result<DirState<'_>> {
        let components: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        // Keep the open prefix of the chain that `rel` shares.
        let mut keep = 0;
        while keep < self.stack.len() && keep < components.len() {
            let prefix = components[..=keep].join("/");
            if self.stack[keep].0 != prefix {
                break;
            }
            keep += 1;
        }
        self.stack.truncate(keep);
        for i in keep..components.len() {
            let parent = self
                .stack
                .last()
                .map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd());
            match open_dir(parent, components[i]) {
                Ok(fd) => self.stack.push((components[..=i].join("/"), fd)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let deepest_rel = self.stack.last().map_or(String::new(), |(p, _)| p.clone());
                    let deepest = self
                        .stack
                        .last()
                        .map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd());
                    return Ok(DirState::Missing {
                        deepest,
                        deepest_rel,
                    });
                }
                Err(e) => {
                    let at = components[..=i].join("/");
                    return match rustix::fs::statat(
                        parent,
                        components[i],
                        AtFlags::SYMLINK_NOFOLLOW,
                    ) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                            Ok(DirState::Blocked { at, symlink: true })
                        }
                        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                            Ok(DirState::Blocked { at, symlink: false })
                        }
                        _ => Err(e),
                    };
                }
            }
        }
        Ok(DirState::Open(
            self.stack
                .last()
                .map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd()),
        ))
    }

    /// Creates the directories of `rel` that are missing (mode 0755), returning the deepest.
    pub(crate) fn create_dirs(&mut self, rel: &str) -> io::Result<BorrowedFd<'_>> {
        loop {
            match self.dir(rel)? {
                DirState::Open(_) => break,
                DirState::Missing {
                    deepest,
                    deepest_rel,
                } => {
                    let rest = if deepest_rel.is_empty() {
                        rel
                    } else {
                        &rel[deepest_rel.len() + 1..]
                    };
                    let name = rest.split('/').next().unwrap_or(rest);
                    match rustix::fs::mkdirat(deepest, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        Err(e) if e == rustix::io::Errno::EXIST => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                DirState::Blocked { at, symlink } => {
                    return Err(io::Error::other(format!(
                        "`{at}` is {} where a directory is needed",
                        if symlink {
                            "a symlink"
                        } else {
                            "not a directory"
                        }
                    )));
                }
            }
        }
        match self.dir(rel)? {
            DirState::Open(fd) => Ok(fd),
            _ => Err(io::Error::other(format!("cannot open directory `{rel}`"))),
        }
    }
}

/// The `stat` identity of `name` in `dir` (not following a symlink), if it exists.
pub(crate) fn identity(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Identity>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: st.st_mtime,
            #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
            mtime_nsec: i64::try_from(st.st_mtime_nsec).unwrap_or(i64::MAX),
            mode: st.st_mode,
        })),
        Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the identity is that of a directory.
pub(crate) fn is_dir(id: &Identity) -> bool {
    FileType::from_raw_mode(id.mode) == FileType::Directory
}

/// Reads what is at `name` in `dir`, with the content of a regular file.
pub(crate) fn read_entry(dir: BorrowedFd<'_>, name: &str) -> io::Result<(OnDisk, Option<Vec<u8>>)> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(e) if e == rustix::io::Errno::NOENT => return Ok((OnDisk::Absent, None)),
        Err(e) => return Err(e.into()),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )?;
            let mut content = Vec::new();
            File::from(fd).read_to_end(&mut content)?;
            let entry = Entry::file(
                ContentHash::of(&content),
                content.len() as u64,
                st.st_mode & 0o100 != 0,
            );
            Ok((OnDisk::Entry(entry), Some(content)))
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
            Ok((
                OnDisk::Entry(Entry::symlink(LinkTarget::new(target.into_bytes()))),
                None,
            ))
        }
        FileType::Directory => Ok((OnDisk::Directory, None)),
        _ => Ok((OnDisk::Special, None)),
    }
}

/// Creates `name` in `dir` (which must not exist) holding `entry`: a file with `content` and
/// `mode`, or a symlink.
pub(crate) fn create(
    dir: BorrowedFd<'_>,
    name: &str,
    entry: &Entry,
    content: &[u8],
    mode: u32,
) -> io::Result<()> {
    match entry {
        Entry::Symlink { target, .. } => {
            rustix::fs::symlinkat(target.as_path().as_os_str().as_bytes(), dir, name)?;
        }
        Entry::File { .. } => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            let mut file = File::from(fd);
            file.write_all(content)?;
        }
    }
    Ok(())
}

/// The permission bits a file gets: those of the file it replaces (exec bits set or cleared
/// as `executable` says), or 0644 / 0755.
pub(crate) fn mode_for(existing: Option<&Identity>, executable: bool) -> u32 {
    match existing {
        Some(id) if FileType::from_raw_mode(id.mode) == FileType::RegularFile => {
            let perm = id.mode & 0o7777;
            if executable {
                perm | ((perm & 0o444) >> 2)
            } else {
                perm & !0o111
            }
        }
        _ => {
            if executable {
                0o755
            } else {
                0o644
            }
        }
    }
}

/// Removes the empty directory `rel` and its empty parents up to the root (not the root).
pub(crate) fn remove_empty_dirs(root: &mut Root, rel: &str) {
    let mut rel = rel.to_owned();
    while !rel.is_empty() {
        let (parent, name) = match rel.rfind('/') {
            Some(i) => (rel[..i].to_owned(), rel[i + 1..].to_owned()),
            None => (String::new(), rel.clone()),
        };
        let Ok(DirState::Open(fd)) = root.dir(&parent) else {
            return;
        };
        if rustix::fs::unlinkat(fd, name.as_str(), AtFlags::REMOVEDIR).is_err() {
            return;
        }
        rel = parent;
    }
}

/// Removes the directory tree `name` in `dir` if it holds nothing but empty directories.
pub(crate) fn remove_empty_tree(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let sub = open_dir(dir, name)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(String::from_utf8_lossy(n).into_owned());
        }
    }
    for n in names {
        remove_empty_tree(sub.as_fd(), &n)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

//! File-system helpers shared by the strategies.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::StagingError;
use crate::error::IoContext;

/// Writes `path` so that a reader (or a crash) sees the old content or the new, never a mix: a
/// temporary file beside it (a name unique to this process and call, so concurrent writers do
/// not share one), synced, renamed over `path`, then the directory synced. Creates the parent
/// directory when missing. The error names the step and file that failed.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state/result.json");
/// forge_staging::write_atomically(&path, b"{}")?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let step = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| step("create", dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let written = fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(content)?;
            file.sync_all()
        })
        .map_err(|e| step("write", &tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| step("rename into place", path, e)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| step("sync directory", dir, e))
}

/// The path that leads from directory `from` to `to`, both absolute and free of `.`/`..`
/// (`../../a` from `/x/y/z` to `/x/a`): what a record kept in a repository stores, so that the
/// repository can be moved or copied with it.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The inverse of [`relative_path`]: `stored` read from a record in directory `dir` (an
/// absolute `stored`, written by older versions, is returned as it is), resolved on disk when
/// it exists.
pub fn resolve_path(dir: &Path, stored: &Path) -> PathBuf {
    if stored.is_absolute() {
        return stored.to_path_buf();
    }
    let joined = dir.join(stored);
    fs::canonicalize(&joined).unwrap_or(joined)
}

/// Removes the tree at `path` (if it exists) without ever crossing into another file system: a
/// directory still mounted below `path` is an error, so a failed unmount can never cause the
/// files of a mounted workspace (or anything else) to be deleted. Directories without write or
/// search permission (overlayfs leaves `work/work` at mode 000) are opened up first.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StagingError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        // Nothing there (a path under a file is nowhere either).
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(StagingError::io("stat", path, e)),
    };
    if !meta.is_dir() {
        return fs::remove_file(path)
            .ctx("remove", path)
            .map_err(Into::into);
    }
    remove_dir_on(path, meta.dev())
}

fn remove_dir_on(dir: &Path, dev: u64) -> Result<(), StagingError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .ctx("open up permissions of", dir)?;
            fs::read_dir(dir).ctx("list", dir)?
        }
        Err(e) => return Err(StagingError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).ctx("stat", &path)?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(StagingError::io(
                    "remove",
                    &path,
                    io::Error::other("a file system is still mounted there"),
                ));
            }
            remove_dir_on(&path, dev)?;
        } else {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                        .ctx("open up permissions of", dir)?;
                    fs::remove_file(&path).ctx("remove", &path)?;
                }
                Err(e) => return Err(StagingError::io("remove", &path, e)),
            }
        }
    }
    fs::remove_dir(dir)
        .ctx("remove directory", dir)
        .map_err(Into::into)
}

/// A mount listed in `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub(crate) struct MountPoint {
    /// Where it is mounted.
    pub(crate) path: PathBuf,
    /// The file-system type (`overlay`, `fuse.fuse-overlayfs`, …).
    pub(crate) fs_type: String,
}

/// The mounts of this process's mount namespace at or under `root`, deepest first.
pub(crate) fn mounts_under(root: &Path) -> Vec<MountPoint> {
    mounts_of_process_under("self", root)
}

/// The mounts of process `pid`'s mount namespace (`self` for ours) at or under `root`,
/// deepest first.
pub(crate) fn mounts_of_process_under(pid: &str, root: &Path) -> Vec<MountPoint> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    let mut found: Vec<MountPoint> = text
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|m| m.path.starts_with(root))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.path.components().count()));
    found
}

/// Parses one line of `mountinfo(5)`: field 5 is the mount point (octal-escaped), and the file
/// system type follows the ` - ` separator.
fn parse_mountinfo_line(line: &str) -> Option<MountPoint> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let fs_type = after.split(' ').next()?;
    Some(MountPoint {
        path: PathBuf::from(unescape_octal(mount_point)),
        fs_type: fs_type.to_owned(),
    })
}

fn unescape_octal(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Creates an overlayfs whiteout (a character device 0/0) at `path`. Unprivileged processes may
/// create this one device since Linux 5.8.
pub(crate) fn make_whiteout(path: &Path) -> rustix::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
}

/// Whether the file type and device number make a whiteout.
pub(crate) fn is_whiteout_device(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the extended attribute `name` of `path` (not followed) starts with `y`.
pub(crate) fn xattr_is_yes(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, name, &mut buf), Ok(n) if n >= 1 && buf[0].eq_ignore_ascii_case(&b'y'))
}

/// Whether the extended attribute `name` of `path` (not followed) exists.
pub(crate) fn has_xattr(path: &Path, name: &str) -> bool {
    rustix::fs::lgetxattr(path, name, &mut [0u8; 0]).is_ok()
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), to tell a live process from a
/// later one that reuses its id.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Runs `f` on every item with up to `threads` worker threads, returning results in order.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(4);
    if threads <= 1 || items.len() < 64 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut all: Vec<(usize, R)> = parts.drain(..).flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Creates `dir` and its missing parents below `root`, giving each new directory the mode of
/// the same directory in `like` when it exists there (so an overlay's upper directory does not
/// change the mode the agent sees).
pub(crate) fn create_dirs_like(root: &Path, rel: &str, like: &Path) -> Result<(), StagingError> {
    if rel.is_empty() {
        return Ok(());
    }
    let mut cur = root.to_path_buf();
    let mut model = like.to_path_buf();
    for seg in rel.split('/') {
        cur.push(seg);
        model.push(seg);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(StagingError::io(
                    "create directory",
                    &cur,
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ));
            }
            Err(_) => {}
        }
        fs::create_dir(&cur).ctx("create directory", &cur)?;
        if let Ok(m) = fs::metadata(&model)
            && m.is_dir()
        {
            let _ = fs::set_permissions(&cur, fs::Permissions::from_mode(m.mode() & 0o7777));
        }
    }
    Ok(())
}

#[cfg(test)]
mod relative_tests {
    use super::*;

    #[test]
    fn relative_paths_lead_back() {
        for (from, to, want) in [
            ("/r/.forge/runs/x/base", "/r", "../../../.."),
            ("/a/b", "/a/c/d", "../c/d"),
            ("/a", "/a", "."),
            ("/a/b", "/", "../.."),
        ] {
            assert_eq!(
                relative_path(Path::new(from), Path::new(to)),
                Path::new(want)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x/y");
        fs::create_dir_all(&deep).unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let deep = fs::canonicalize(&deep).unwrap();
        assert_eq!(resolve_path(&deep, &relative_path(&deep, &root)), root);
        assert_eq!(resolve_path(&deep, Path::new("/abs")), Path::new("/abs"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo_line(
            "42 27 0:39 / /tmp/a\\040b/m rw,nodev - fuse.fuse-overlayfs fuse-overlayfs rw",
        )
        .unwrap();
        assert_eq!(m.path, PathBuf::from("/tmp/a b/m"));
        assert_eq!(m.fs_type, "fuse.fuse-overlayfs");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn remove_tree_opens_locked_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("t/work/work");
        fs::create_dir_all(&locked).unwrap();
        fs::write(locked.join("f"), b"x").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        remove_tree(&dir.path().join("t")).unwrap();
    }

    #[test]
    fn par_map_keeps_order() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            par_map(&items, |x| x * 2),
            (0..1000).map(|x| x * 2).collect::<Vec<_>>()
        );
    }
}

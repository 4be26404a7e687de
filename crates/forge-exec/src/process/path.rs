//! Finding a program on `PATH`, as `execvp` would.

use std::path::{Path, PathBuf};

/// Finds an executable on `PATH` (or checks a path containing `/`), as `execvp` would.
///
/// Resolve agent binaries once before a run: a missing one is then a clear error up front, and
/// each spawn skips the `PATH` search (on a long `PATH`, a dozen failed `execve`s per spawn).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path() {
        let sh = find_program("sh").expect("sh is installed");
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(find_program("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("no-such-program-forge"), None);
        assert_eq!(find_program("/etc/hostname-not-executable"), None);
    }
}

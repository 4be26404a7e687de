//! A hostile attempt for containment tests: a script that tries every route from an attempt
//! to the user's repository, and a byte-for-byte picture of a directory to compare before and
//! after it ran.

use std::collections::BTreeMap;
use std::path::Path;

/// Every entry under `dir` (skipping the relative paths in `skip` and what is below them):
/// a file's content, a symbolic link's target, a directory (its name ends with `/`), each with
/// its mode. Two pictures are equal when nothing below `dir` changed byte for byte.
///
/// # Errors
///
/// When a directory cannot be listed or an entry read.
pub fn tree(dir: &Path, skip: &[&str]) -> std::io::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), mode));
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                out.insert(rel, (target.as_os_str().as_bytes().to_vec(), mode));
            } else {
                out.insert(rel, (std::fs::read(&path)?, mode));
            }
        }
    }
    Ok(out)
}

/// A `shell` task that tries every route to the user's repository at `repo` at once and
/// checks, inside its attempt, that each one lands in its workspace (exit 3 with the reason
/// on stderr otherwise): `$PWD`, `cd ..` and back, the absolute path, `git -C <repo>` (commit,
/// branch, config, hooks), writing `.forge/` and the user's git directory, unmounting the view,
/// and the host's `/proc`; plus a `setsid` child holding stdout and a double-forked daemon.
///
/// # Errors
///
/// When the repository's root commit cannot be read (`git rev-list`).
pub fn every_route(repo: &Path) -> std::io::Result<String> {
    let r = repo.display();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-list", "--max-parents=0", "HEAD"])
        .output()?;
    let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || root.is_empty() {
        return Err(std::io::Error::other(format!(
            "no root commit in {r}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(format!(
        r#"set -u
R='{r}'
fail() {{ echo "contained: $1" >&2; exit 3; }}
[ "$PWD" = "$R" ] || fail "PWD is $PWD"
[ "$(pwd -P)" = "$R" ] || fail "the working directory is $(pwd -P)"
echo pwd > "$PWD/by-pwd.txt"
echo abs > "$R/by-abs.txt"
(cd .. && echo up > "$(basename "$R")/by-cdup.txt") || fail "cd .. and back"
git -C "$R" log --format=%H | grep -qx {root} || fail "the user's history is not visible: $(git -C "$R" log --format=%H 2>&1)"
git -C "$R" -c user.name=h -c user.email=h@h.invalid commit -q --allow-empty -m hostile || fail "git commit"
git -C "$R" branch hostile-branch || fail "git branch"
git -C "$R" config hostile.key yes || fail "git config"
echo 'exit 1' > "$R/.git/hooks/pre-commit"
# The run's base shows the user's git directory (a mount); other bases' links lead to the
# workspace's own `.git` here.
G=
for g in "$R"/.forge/bases/*/user/git; do [ -L "$g" ] || G=$g; done
[ -n "$G" ] && [ -d "$G/objects" ] || fail "the user's git directory is not visible"
for target in "$R/.forge/pwned" "$G/config" "$G/refs/heads/pwned" "$G/hooks/pre-commit"; do
    if (echo pwned >> "$target") 2>/dev/null; then fail "$target is writable"; fi
done
for f in "$R"/.forge/runs/*/events.jsonl; do
    if (echo pwned >> "$f") 2>/dev/null; then fail "$f is writable"; fi
done
if umount -l "$R" 2>/dev/null; then fail "the view could be unmounted"; fi
[ "$(ls /proc | grep -c '^[0-9][0-9]*$')" -lt 20 ] || fail "the host's /proc is visible: $(ls /proc | grep -c '^[0-9][0-9]*$') processes"
[ "$(cat /proc/1/comm)" != systemd ] || fail "pid 1 is the host's"
setsid sh -c 'echo held; touch held; exec sleep 1000' &
( ( setsid sh -c 'touch daemon; exec sleep 1000' </dev/null >/dev/null 2>&1 & ) & )
while [ ! -e held ] || [ ! -e daemon ]; do sleep 0.01; done
echo escaped
"#
    ))
}

/// What differs between two [`tree`] pictures: each path added, removed or changed, with how.
pub fn changed(
    before: &BTreeMap<String, (Vec<u8>, u32)>,
    after: &BTreeMap<String, (Vec<u8>, u32)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => out.push(format!("{path}: removed")),
            Some(now) if now != was => out.push(format!("{path}: changed")),
            Some(_) => {}
        }
    }
    out.extend(
        after
            .keys()
            .filter(|p| !before.contains_key(*p))
            .map(|p| format!("{p}: added")),
    );
    out
}

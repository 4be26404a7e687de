//! The init program (`init/main.rs`, built by `build.rs`) in a sealed memory file, which a
//! contained attempt's init `exec`s (see `leader.rs`): made once per process, on first use.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The program's bytes, when `build.rs` could build it for this target.
#[cfg(forge_init)]
const PROGRAM: Option<&[u8]> = Some(include_bytes!(env!("FORGE_INIT_PROGRAM")));
#[cfg(not(forge_init))]
const PROGRAM: Option<&[u8]> = None;

/// Made once: a failure here (no memory files, out of descriptors) leaves the process with
/// the forked init, which works everywhere.
static FILE: OnceLock<Option<OwnedFd>> = OnceLock::new();
static REFUSED: AtomicBool = AtomicBool::new(false);

/// The memory file holding the program (close-on-exec, sealed against every change), or `None`
/// where there is none: not built for this target, no memory files, or `exec` of one refused
/// once (see [`refused`]).
pub(super) fn fd() -> Option<RawFd> {
    file().map(AsRawFd::as_raw_fd)
}

fn file() -> Option<&'static OwnedFd> {
    if REFUSED.load(Ordering::Relaxed) {
        return None;
    }
    FILE.get_or_init(|| make(PROGRAM?).ok()).as_ref()
}

/// Notes that this host refused to `exec` the memory file (a `vm.memfd_noexec` policy, a
/// security module): later attempts' init is a copy of Forge.
pub(super) fn refused() {
    REFUSED.store(true, Ordering::Relaxed);
}

fn make(program: &[u8]) -> std::io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // `MFD_EXEC` (Linux 6.3) keeps a `vm.memfd_noexec = 1` host from sealing it non-executable;
    // older kernels refuse the flag.
    let fd = rustix::fs::memfd_create(c"forge-init", flags | MemfdFlags::EXEC)
        .or_else(|_| rustix::fs::memfd_create(c"forge-init", flags))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, program)?;
    let fd = OwnedFd::from(file);
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_program_is_built_and_sealed() {
        if super::PROGRAM.is_none() {
            assert!(
                std::env::var("FORGE_REQUIRE_CONTAINMENT").as_deref() != Ok("1"),
                "forge-init was not built (see build.rs's warning), and FORGE_REQUIRE_CONTAINMENT is set"
            );
            eprintln!("skipped: forge-init is not built for this target");
            return;
        }
        let fd = super::file().expect("a memory file");
        let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
        assert!(seals.contains(rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SEAL));
        assert!(
            rustix::io::write(fd, b"x").is_err(),
            "the program can be changed"
        );
    }
}

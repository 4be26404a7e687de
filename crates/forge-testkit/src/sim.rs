//! The simulated agent's program (`forge-sim-agent`, a binary of `forge-agents`) for the tests of
//! crates that cannot name it with `env!("CARGO_BIN_EXE_…")` (cargo sets that only for a
//! package's own binaries).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The path of an up-to-date `forge-sim-agent`, built once per test process with the cargo that
/// runs the tests (the same target directory and profile).
///
/// # Panics
///
/// When it cannot be built (cargo's own words are on standard error): the tests that need it
/// cannot run then.
pub fn sim_agent() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| match build() {
        Ok(path) => path,
        Err(e) => panic!("cannot build the simulated agent (forge-sim-agent): {e}"),
    })
}

fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "forge-agents",
        "--bin",
        "forge-sim-agent",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build -p forge-agents` exited with {}",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "forge-sim-agent")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo named no forge-sim-agent executable".to_owned())
}

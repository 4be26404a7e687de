//! Agents start with default handling of Forge's stop signals even when Forge itself ignores
//! them (started as a background job of a script, or under `nohup`): otherwise an agent would
//! ignore the SIGINT of a timeout or cancel and end only at the SIGTERM escalation.
//!
//! Its own test binary: it sets this process's SIGINT and SIGTERM to "ignore", which no other
//! test should inherit.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Setting this process's signal dispositions is the point of the test.
#![allow(unsafe_code)]

use std::path::Path;

use forge_events::{OutputStream, RunId};
use forge_exec::process::{AttemptEnv, run_process};
use forge_exec::{CommandSpec, ProcessOptions};
use tokio_util::sync::CancellationToken;

/// The `SigIgn` mask the child reports for itself.
async fn child_ignored_mask(dir: &Path, options: &ProcessOptions) -> u64 {
    let spec = CommandSpec {
        program: "sh".into(),
        args: vec!["-c".into(), "grep '^SigIgn:' /proc/self/status".into()],
        cwd: dir.to_path_buf(),
        env: vec![("FORGE_SIGNALS_TEST".into(), "1".into())],
    };
    let run = RunId::new("signals").unwrap();
    let env = AttemptEnv {
        run: &run,
        task: "t",
        attempt: 1,
    };
    let mut lines = Vec::new();
    let mut on_line = |_: OutputStream, line: &str| lines.push(line.to_owned());
    let exit = run_process(
        &spec,
        &env,
        &dir.join("output.log"),
        &mut on_line,
        &CancellationToken::new(),
        &CancellationToken::new(),
        options,
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0), "{lines:?}");
    let line = lines
        .iter()
        .find(|l| l.starts_with("SigIgn:"))
        .unwrap_or_else(|| panic!("no SigIgn line in {lines:?}"));
    u64::from_str_radix(line.trim_start_matches("SigIgn:").trim(), 16).unwrap()
}

#[tokio::test]
async fn agents_get_default_stop_signals_though_forge_ignores_them() {
    // SAFETY: setting a disposition has no preconditions; nothing else in this binary relies
    // on SIGINT or SIGTERM.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    let bit = |sig: libc::c_int| 1u64 << (sig - 1);
    let dir = tempfile::tempdir().unwrap();
    // The fast path (`posix_spawn`), the `fork` path (a PID namespace where the host allows
    // one; the process group otherwise, through the same `Command`).
    for (route, options) in [
        ("posix_spawn", ProcessOptions::default()),
        (
            "namespace",
            ProcessOptions {
                pid_namespace: true,
                ..ProcessOptions::default()
            },
        ),
    ] {
        let mask = child_ignored_mask(dir.path(), &options).await;
        assert_eq!(
            mask & (bit(libc::SIGINT) | bit(libc::SIGTERM)),
            0,
            "{route}: the agent ignores SIGINT or SIGTERM (SigIgn {mask:x})"
        );
    }
}

//! Merge drivers run by forge-exec's process runner ([`DriverRunner`]), called as forge-merge
//! calls them: the run's environment, the output's end, and a time limit that ends the
//! driver's whole process tree with the runner's escalation.

use std::time::Duration;

use forge_events::RunId;
use forge_exec::driver::DriverRunner;
use forge_exec::process::ProcessOptions;
use forge_merge::{CommandEnd, CommandRunner, ShellCommand};
use forge_testkit::procs::marked_processes;

/// Short graces, with the process group only (no PID namespace needed on this host).
fn quick() -> ProcessOptions {
    ProcessOptions {
        pid_namespace: false,
        interrupt_grace: Duration::from_millis(300),
        terminate_grace: Duration::from_millis(300),
        drain_after_exit: Duration::from_millis(300),
        ..ProcessOptions::default()
    }
}

#[test]
fn a_driver_sees_the_run_and_keeps_the_end_of_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let runner = DriverRunner::new(RunId::new("r-driver").unwrap()).options(quick());
    let outcome = runner
        .run(&ShellCommand {
            line: "seq 1 1000; echo \"$FORGE_RUN_ID $FORGE_TASK_ID $FORGE_ATTEMPT\" >&2; \
                   test \"$(pwd)\" = \"$FORGE_WORKSPACE\"; exit 4",
            dir: dir.path(),
            timeout: None,
            keep: 40,
        })
        .unwrap();
    assert_eq!(outcome.ended, CommandEnd::Exited(4));
    let output = String::from_utf8(outcome.output).unwrap();
    assert!(output.len() <= 40, "{output:?}");
    assert!(
        output.ends_with("999\n1000\nr-driver merge-driver 1\n"),
        "{output:?}"
    );
}

#[test]
fn a_driver_out_of_time_ends_with_its_whole_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mark = format!("driver-limit-{}", std::process::id());
    let runner = DriverRunner::new(RunId::new("r-driver").unwrap()).options(quick());
    let line = format!("export FORGE_TEST_MARK={mark}; sleep 30 & sleep 30; echo never");
    let outcome = runner
        .run(&ShellCommand {
            line: &line,
            dir: dir.path(),
            timeout: Some(Duration::from_millis(300)),
            keep: 1024,
        })
        .unwrap();
    assert_eq!(outcome.ended, CommandEnd::TimedOut);
    assert!(!String::from_utf8_lossy(&outcome.output).contains("never"));
    assert_eq!(
        marked_processes(&mark),
        Vec::<i32>::new(),
        "a process of the timed-out driver is alive"
    );
}

/// Called from inside an async runtime (as a library user's integration might be), the runner
/// works: it runs the driver on a thread and runtime of its own instead of nesting runtimes.
#[tokio::test]
async fn a_driver_can_be_run_from_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let runner = DriverRunner::new(RunId::new("r-driver").unwrap()).options(quick());
    let outcome = runner
        .run(&ShellCommand {
            line: "echo ok",
            dir: dir.path(),
            timeout: None,
            keep: 1024,
        })
        .unwrap();
    assert_eq!(outcome.ended, CommandEnd::Exited(0));
    assert_eq!(outcome.output, b"ok\n");
}

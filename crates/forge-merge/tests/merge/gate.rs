//! The gate, run for real in workspaces staged from the integrated tree.

use std::time::Duration;

use forge_merge::{CommandStatus, Gate, GateCommand};
use forge_staging::{StagerConfig, StagerKind};
use forge_testkit::procs::group_is_gone;

use crate::common::{Fixture, tid};

#[test]
fn runs_in_a_workspace_of_the_integrated_tree_and_counts_tests() {
    let f = Fixture::git(&[("README.md", "r\n")]);
    let mut i = f.integration();
    let t = f.task_from_base(&[(
        "test.sh",
        Some("test -f README.md && test \"$PWD\" = \"$FORGE_WORKSPACE\" && echo '3 passed, 0 failed'\n"),
    )]);
    i.integrate(&tid("tests"), &t, 1).unwrap();
    let snapshot = i.snapshot(&f.run.join("layers/gate")).unwrap();
    let stager = StagerKind::Auto
        .build(&StagerConfig::new(&f.run, f.store.clone()), &f.base)
        .unwrap();
    let gate = Gate::new(["sh test.sh", "cargo --version >/dev/null 2>&1 || true"]);
    let report = gate.run(stager.as_ref(), &snapshot, "gate").unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.summary(), "All tests pass (3/3)");
    assert_eq!(report.commands[0].output, "3 passed, 0 failed\n");
    // The user's checkout has no test.sh: the gate ran on the integrated tree.
    assert!(!f.repo.join("test.sh").exists());
}

#[test]
fn a_failure_stops_the_sequence_and_time_limits_hold() {
    let f = Fixture::plain(&[("a", "a\n")]);
    let i = f.integration();
    let snapshot = i.snapshot(&f.run.join("layers/g")).unwrap();
    let stager = StagerKind::Copy
        .build(&StagerConfig::new(&f.run, f.store.clone()), &f.base)
        .unwrap();
    let gate = Gate {
        commands: vec![
            GateCommand::new(
                "echo 'test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s'; exit 101",
            ),
            GateCommand::new("echo never"),
        ],
        parallel: false,
    };
    let report = gate.run(stager.as_ref(), &snapshot, "g1").unwrap();
    assert!(!report.passed());
    assert_eq!(
        report.commands[0].status,
        CommandStatus::Failed { code: 101 }
    );
    assert_eq!(report.commands[1].status, CommandStatus::Skipped);
    assert!(
        report
            .summary()
            .ends_with("failed (exit 101): 1 of 5 tests failed"),
        "{}",
        report.summary()
    );

    let pgid_dir = tempfile::tempdir().unwrap();
    let pgid_file = pgid_dir.path().join("pgid");
    let slow = Gate {
        commands: vec![
            GateCommand {
                timeout: Some(Duration::from_millis(300)),
                ..GateCommand::new(&format!(
                    "echo $$ > '{}'; sleep 30 & sleep 30",
                    pgid_file.display()
                ))
            },
            GateCommand::new("sleep 0.2; echo done"),
        ],
        parallel: true,
    };
    let report = slow.run(stager.as_ref(), &snapshot, "g2").unwrap();
    assert_eq!(report.commands[0].status, CommandStatus::TimedOut);
    let pgid: i32 = std::fs::read_to_string(&pgid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        group_is_gone(pgid),
        "a process of the timed-out gate command is alive"
    );
    assert_eq!(
        report.commands[1].status,
        CommandStatus::Passed,
        "parallel: both ran"
    );
    assert_eq!(report.commands[1].output, "done\n");
}

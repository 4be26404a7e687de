//! The gate, run for real through the process-group runner in workspaces staged from the
//! integrated tree: its commands see the run's id, a time limit or a cancel ends their whole
//! process tree, and a process a command leaves behind (even one that left its group with
//! `setsid` and holds its output open) ends with it.
//!
//! Tests that need a PID namespace skip with the reason where the host has none, and fail
//! instead when `FORGE_REQUIRE_CONTAINMENT=1` (CI).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_events::RunId;
use forge_exec::gate::{GateObserver, GateRunner, run_sequence};
use forge_exec::process::{PidNamespaceSupport, ProcessOptions, pid_namespace_support};
use forge_merge::{CommandReport, CommandStatus, Gate, GateCommand, GateReport, Integration};
use forge_staging::{
    BaseMode, BaseSnapshot, BlobStore, Snapshot, Stager, StagerConfig, StagerKind,
};
use forge_testkit::procs::marked_processes;
use tokio_util::sync::CancellationToken;

fn namespaces_or_skip(test: &str) -> bool {
    match pid_namespace_support() {
        PidNamespaceSupport::Unavailable(why) => {
            assert!(
                std::env::var_os("FORGE_REQUIRE_CONTAINMENT").is_none_or(|v| v != "1"),
                "{test}: containment is required (FORGE_REQUIRE_CONTAINMENT=1) but unavailable: {why}"
            );
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
            false
        }
        _ => true,
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    run: PathBuf,
    store: BlobStore,
    base: Arc<BaseSnapshot>,
    stager: Box<dyn Stager>,
}

impl Fixture {
    fn new(kind: StagerKind) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let run = tmp.path().join("run");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(repo.join("README.md"), "r\n").unwrap();
        let store = BlobStore::open(run.join("objects")).unwrap();
        let base = Arc::new(
            BaseSnapshot::capture(&repo, BaseMode::Worktree, &run.join("base"), &store).unwrap(),
        );
        let stager = kind
            .build(&StagerConfig::new(run.join("work"), store.clone()), &base)
            .unwrap();
        Self {
            _tmp: tmp,
            repo,
            run,
            store,
            base,
            stager,
        }
    }

    fn base_tree(&self) -> Snapshot {
        Snapshot::from(Arc::clone(&self.base))
    }
}

/// Options with short graces, so an escalation to SIGKILL does not make the suite slow.
fn quick(pid_namespace: bool) -> ProcessOptions {
    ProcessOptions {
        pid_namespace,
        interrupt_grace: Duration::from_millis(300),
        terminate_grace: Duration::from_millis(300),
        drain_after_exit: Duration::from_millis(300),
        ..ProcessOptions::default()
    }
}

fn mark(test: &str) -> String {
    format!("gate-{test}-{}", std::process::id())
}

/// Runs the gate on its own thread, failing (not hanging) if it does not come back: a gate that
/// waits on a leftover process would block for the 1000 s its `sleep` lasts.
fn run_gate(
    runner: &GateRunner,
    gate: &Gate,
    f: &Fixture,
    snapshot: &Snapshot,
    name: &str,
) -> GateReport {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = tx.send(runner.run_blocking(gate, f.stager.as_ref(), snapshot, name));
        });
        rx.recv_timeout(Duration::from_mins(2))
            .expect("the gate did not come back: it waited for a process its command left")
            .unwrap()
    })
}

#[test]
fn runs_on_the_integrated_tree_with_the_runs_id_and_counts_tests() {
    let f = Fixture::new(StagerKind::Auto);
    // A task's change, captured from a real workspace and integrated.
    let ws = f.stager.stage(&f.base_tree(), "t").unwrap();
    std::fs::write(
        ws.path().join("test.sh"),
        "test -f README.md && test \"$PWD\" = \"$FORGE_WORKSPACE\" \
         && test \"$FORGE_RUN_ID\" = r-gate && test \"$FORGE_TASK_ID\" = gate \
         && test \"$FORGE_ATTEMPT\" = 1 && echo '3 passed, 0 failed'\n",
    )
    .unwrap();
    let changes = ws.changes().unwrap();
    ws.dispose().unwrap();
    let mut integration = Integration::new(Arc::clone(&f.base), f.store.clone());
    integration
        .integrate(&forge_events::TaskId::new("tests").unwrap(), &changes, 1)
        .unwrap();
    let snapshot = integration.snapshot(&f.run.join("layers/gate")).unwrap();

    let runner = GateRunner::new(RunId::new("r-gate").unwrap());
    let gate = Gate::new(["sh test.sh", "echo to-stderr >&2"]);
    let report = run_gate(&runner, &gate, &f, &snapshot, "gate");
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.summary(), "All tests pass (3/3)");
    assert_eq!(report.commands[0].output, "3 passed, 0 failed\n");
    assert_eq!(report.commands[1].output, "to-stderr\n");
    // The user's checkout has no test.sh: the gate ran on the integrated tree.
    assert!(!f.repo.join("test.sh").exists());
}

#[test]
fn a_failure_stops_the_sequence() {
    let f = Fixture::new(StagerKind::Copy);
    let gate = Gate {
        commands: vec![
            GateCommand::new(
                "echo 'test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s'; exit 101",
            ),
            GateCommand::new("echo never"),
        ],
        parallel: false,
    };
    let runner = GateRunner::new(RunId::new("r").unwrap());
    let report = run_gate(&runner, &gate, &f, &f.base_tree(), "g1");
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
}

/// A time limit ends the command's whole process tree, with and without a PID namespace; a
/// parallel gate runs its other command meanwhile.
#[test]
fn a_time_limit_ends_the_whole_group() {
    let mut routes = vec![false];
    if namespaces_or_skip("a_time_limit_ends_the_whole_group (namespace route)") {
        routes.push(true);
    }
    for namespace in routes {
        let f = Fixture::new(StagerKind::Copy);
        let mark = mark(&format!("limit-{namespace}"));
        let slow = Gate {
            commands: vec![
                GateCommand {
                    timeout: Some(Duration::from_millis(300)),
                    ..GateCommand::new(&format!(
                        "export FORGE_TEST_MARK={mark}; sleep 30 & sleep 30; echo never"
                    ))
                },
                GateCommand::new("sleep 0.2; echo done"),
            ],
            parallel: true,
        };
        let runner = GateRunner::new(RunId::new("r").unwrap()).options(quick(namespace));
        let report = run_gate(&runner, &slow, &f, &f.base_tree(), "g2");
        assert_eq!(
            report.commands[0].status,
            CommandStatus::TimedOut,
            "{report:?}"
        );
        assert!(!report.commands[0].output.contains("never"));
        assert_eq!(
            marked_processes(&mark),
            Vec::<i32>::new(),
            "namespace {namespace}: a process of the timed-out gate command is alive"
        );
        assert_eq!(
            report.commands[1].status,
            CommandStatus::Passed,
            "parallel: both ran"
        );
        assert_eq!(report.commands[1].output, "done\n");
    }
}

/// A script that leaves a `setsid` child holding its stdout and a double-forked daemon, all
/// marked, then goes on with `then`.
fn hostile(dir: &Path, mark: &str, then: &str) -> String {
    format!(
        "export FORGE_TEST_MARK={mark}; \
         setsid sh -c 'echo held; touch {d}/held; exec sleep 1000' & \
         ( ( setsid sh -c 'touch {d}/daemon; exec sleep 1000' </dev/null >/dev/null 2>&1 & ) & ); \
         while [ ! -e {d}/held ] || [ ! -e {d}/daemon ]; do sleep 0.01; done; \
         echo ready; {then}",
        d = dir.display()
    )
}

#[test]
fn a_setsid_child_holding_the_output_ends_with_the_gate_command() {
    let test = "a_setsid_child_holding_the_output_ends_with_the_gate_command";
    if !namespaces_or_skip(test) {
        return;
    }
    let f = Fixture::new(StagerKind::Copy);
    let flags = tempfile::tempdir().unwrap();
    let mark = mark("setsid");
    let gate = Gate::new([hostile(flags.path(), &mark, "echo done").as_str()]);
    let runner = GateRunner::new(RunId::new("r").unwrap()).options(quick(true));
    let report = run_gate(&runner, &gate, &f, &f.base_tree(), "g3");
    assert!(report.passed(), "{report:?}");
    assert!(report.commands[0].output.contains("done"), "{report:?}");
    assert_eq!(
        marked_processes(&mark),
        Vec::<i32>::new(),
        "a process the gate command left behind is alive"
    );
}

#[test]
fn a_cancel_ends_the_gate_commands_whole_tree_and_skips_the_rest() {
    let test = "a_cancel_ends_the_gate_commands_whole_tree_and_skips_the_rest";
    if !namespaces_or_skip(test) {
        return;
    }
    let f = Fixture::new(StagerKind::Copy);
    let flags = tempfile::tempdir().unwrap();
    let mark = mark("cancel");
    let gate = Gate::new([
        hostile(flags.path(), &mark, "sleep 1000").as_str(),
        "echo never",
    ]);
    let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
    let runner = GateRunner::new(RunId::new("r").unwrap())
        .options(quick(true))
        .cancel_on(cancel.clone(), kill);
    let daemon = flags.path().join("daemon");
    std::thread::scope(|scope| {
        // Cancels once the command's leftovers run (a wait for a state, not a timing).
        scope.spawn(|| {
            for _ in 0..12_000 {
                if daemon.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            cancel.cancel();
        });
        let report = run_gate(&runner, &gate, &f, &f.base_tree(), "g4");
        assert!(
            matches!(report.commands[0].status, CommandStatus::Killed { .. }),
            "{report:?}"
        );
        assert_eq!(report.commands[1].status, CommandStatus::Skipped);
    });
    assert_eq!(
        marked_processes(&mark),
        Vec::<i32>::new(),
        "a process of the cancelled gate command is alive"
    );
}

/// What an observer heard: `started` and `finished` calls, in order.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<String>>);

impl GateObserver for Heard {
    fn started(&self, number: u32, command: &GateCommand) {
        self.0
            .lock()
            .unwrap()
            .push(format!("started {number} {}", command.command));
    }

    fn finished(&self, number: u32, report: &CommandReport) {
        self.0
            .lock()
            .unwrap()
            .push(format!("finished {number} {:?}", report.status));
    }
}

/// The observer hears each command run in a real workspace, before and after it, and nothing
/// of the commands skipped after a failure.
#[tokio::test]
async fn the_observer_hears_each_command_run_and_none_skipped() {
    let f = Fixture::new(StagerKind::Copy);
    let ws = f.stager.stage(&f.base_tree(), "observed").unwrap();
    let gate = Gate::new(["test -f README.md", "exit 3", "echo never"]);
    let heard = Heard::default();
    let reports = GateRunner::new(RunId::new("r").unwrap())
        .run_in(&gate, &*ws, &heard)
        .await;
    ws.dispose().unwrap();
    let statuses: Vec<_> = reports.iter().map(|r| r.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            CommandStatus::Passed,
            CommandStatus::Failed { code: 3 },
            CommandStatus::Skipped
        ]
    );
    assert_eq!(
        *heard.0.lock().unwrap(),
        [
            "started 1 test -f README.md",
            "finished 1 Passed",
            "started 2 exit 3",
            "finished 2 Failed { code: 3 }",
        ]
    );
}

/// The one gate loop holds its rule whatever runs each command (a cluster does, for
/// `[gate] on = "cluster"`): after a cancel, the rest are skipped and never run.
#[tokio::test]
async fn the_gate_loop_skips_the_rest_after_a_cancel_whatever_runs_the_commands() {
    let gate = Gate::new(["one", "two", "three"]);
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let ran = std::sync::Mutex::new(Vec::new());
    let heard = Heard::default();
    let reports = run_sequence(
        &gate.commands,
        || cancelled.load(std::sync::atomic::Ordering::SeqCst),
        |command, number| {
            ran.lock().unwrap().push(number);
            // The first command is cancelled from outside while it runs, and still passes.
            cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
            let report = CommandReport {
                name: command.name.clone(),
                command: command.command.clone(),
                status: CommandStatus::Passed,
                duration_ms: 0,
                output: String::new(),
                output_truncated: false,
                tests: None,
            };
            async move { report }
        },
        &heard,
    )
    .await;
    assert_eq!(*ran.lock().unwrap(), [1]);
    let statuses: Vec<_> = reports.iter().map(|r| r.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            CommandStatus::Passed,
            CommandStatus::Skipped,
            CommandStatus::Skipped
        ]
    );
    assert_eq!(reports[2].command, "three");
    assert_eq!(
        *heard.0.lock().unwrap(),
        ["started 1 one", "finished 1 Passed"]
    );
}

//! Real processes: output, exit codes and signals, environment, and killing whole process trees.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_events::{OutputStream, RunId, TaskId, TaskStatus, VecSink};
use forge_exec::plan::{Plan, PlanFormat, PlanOptions, Task};
use forge_exec::process::{AttemptEnv, group_alive, run_process, run_process_in};
use forge_exec::{
    CancelHandle, CommandSpec, ProcessOptions, ProcessRunner, Scheduler, SchedulerOptions,
};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

fn shell_plan(tasks: &[(&str, &str, Option<Duration>)]) -> Plan {
    let mut plan = Plan::parse(
        "[[task]]\nid = \"x\"\nagent = \"shell\"\nprompt = \"true\"\n",
        Path::new("p.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    )
    .unwrap();
    plan.tasks = tasks
        .iter()
        .map(|(id, script, timeout)| {
            let mut t = Task::new(TaskId::new(*id).unwrap(), "shell", *script);
            t.timeout = *timeout;
            t
        })
        .collect();
    plan
}

fn quick_stop() -> ProcessOptions {
    ProcessOptions {
        interrupt_grace: Duration::from_millis(300),
        terminate_grace: Duration::from_millis(300),
        ..ProcessOptions::default()
    }
}

fn opts() -> SchedulerOptions {
    SchedulerOptions {
        jitter: false,
        kill_grace: Duration::from_secs(10),
        ..SchedulerOptions::default()
    }
}

/// Whether a pid names a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
            !matches!(state.as_deref(), Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

fn pids_in(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[tokio::test]
async fn output_lines_exit_code_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Arc<Mutex<Vec<(OutputStream, String)>>> = Arc::default();
    let script = "echo \"run=$FORGE_RUN_ID task=$FORGE_TASK_ID attempt=$FORGE_ATTEMPT ws=$FORGE_WORKSPACE\"; echo oops >&2; printf 'no newline'; exit 3";
    let plan = shell_plan(&[("t", script, None)]);
    let runner = ProcessRunner::shell(
        RunId::new("run1").unwrap(),
        dir.path().to_path_buf(),
        dir.path().join("logs"),
    )
    .on_line({
        let lines = lines.clone();
        Arc::new(move |_ctx, stream, line| lines.lock().push((stream, line.to_owned())))
    });
    let events = Arc::new(VecSink::new(RunId::new("run1").unwrap()));
    let report = Scheduler::new(&plan, &runner, events.clone(), opts())
        .run(&CancelHandle::new())
        .await;
    let t = &report.tasks[0];
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.outcome.as_ref().unwrap().exit_code, Some(3));
    let lines = lines.lock().clone();
    let ws = dir.path().display();
    assert!(
        lines.contains(&(
            OutputStream::Stdout,
            format!("run=run1 task=t attempt=1 ws={ws}")
        )),
        "{lines:?}"
    );
    assert!(lines.contains(&(OutputStream::Stderr, "oops".into())));
    assert!(lines.contains(&(OutputStream::Stdout, "no newline".into())));
    let log = std::fs::read_to_string(dir.path().join("logs/t/1/output.log")).unwrap();
    assert!(
        log.contains("attempt=1") && log.contains("oops") && log.contains("no newline"),
        "{log}"
    );
    assert!(events.types().contains(&"task_started".to_owned()));
}

#[tokio::test]
async fn a_signal_death_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let plan = shell_plan(&[("t", "kill -SEGV $$", None)]);
    let runner = ProcessRunner::shell(
        RunId::new("r").unwrap(),
        dir.path().to_path_buf(),
        dir.path().join("logs"),
    );
    let report = Scheduler::new(
        &plan,
        &runner,
        Arc::new(VecSink::new(RunId::new("r").unwrap())),
        opts(),
    )
    .run(&CancelHandle::new())
    .await;
    let outcome = report.tasks[0].outcome.clone().unwrap();
    assert_eq!(report.tasks[0].status, TaskStatus::Failed);
    assert_eq!(outcome.signal, Some(11));
    assert_eq!(outcome.exit_code, None);
}

/// A task whose shell and grandchildren ignore SIGINT (and one ignores SIGTERM too): on
/// timeout the whole tree is gone when the attempt ends.
#[tokio::test]
async fn timeout_kills_the_whole_process_tree() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "trap '' INT; echo $$ >> {p}; (trap '' INT TERM; sleep 1000 & echo $! >> {p}; wait) & (trap '' INT; sleep 1000) & echo $! >> {p}; wait",
        p = pids.display()
    );
    let plan = shell_plan(&[("tree", &script, Some(Duration::from_millis(500)))]);
    let runner = ProcessRunner::shell(
        RunId::new("r").unwrap(),
        dir.path().to_path_buf(),
        dir.path().join("logs"),
    )
    .options(quick_stop());
    let report = Scheduler::new(
        &plan,
        &runner,
        Arc::new(VecSink::new(RunId::new("r").unwrap())),
        opts(),
    )
    .run(&CancelHandle::new())
    .await;
    assert_eq!(report.tasks[0].status, TaskStatus::TimedOut);
    let pids = pids_in(&pids);
    assert!(
        pids.len() >= 3,
        "the script recorded its processes: {pids:?}"
    );
    let leader = rustix::process::Pid::from_raw(pids[0]).unwrap();
    assert!(
        !group_alive(leader),
        "process group {} still has members",
        pids[0]
    );
    for pid in &pids {
        assert!(!alive(*pid), "process {pid} survived");
    }
}

#[tokio::test]
async fn second_cancel_kills_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let trapped = dir.path().join("trapped");
    let script = format!(
        "trap '' INT TERM; touch {}; while :; do sleep 0.05; done",
        trapped.display()
    );
    let plan = shell_plan(&[("stubborn", &script, None)]);
    let runner = ProcessRunner::shell(
        RunId::new("r").unwrap(),
        dir.path().to_path_buf(),
        dir.path().join("logs"),
    )
    .options(ProcessOptions {
        interrupt_grace: Duration::from_hours(1),
        terminate_grace: Duration::from_hours(1),
        ..ProcessOptions::default()
    });
    let cancel = CancelHandle::new();
    let events = Arc::new(VecSink::new(RunId::new("r").unwrap()));
    let run = {
        let (cancel, events) = (cancel.clone(), events.clone());
        tokio::spawn(async move {
            Scheduler::new(&plan, &runner, events, opts())
                .run(&cancel)
                .await
        })
    };
    // Once the task ignores the signals (a cancel before its `trap` would end it).
    while !events.types().contains(&"task_started".to_owned()) || !trapped.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !run.is_finished(),
        "the first cancel only interrupts; the task ignores it"
    );
    cancel.cancel();
    // Guard against a hang (not a timing assertion): the kill must end the run.
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("killed")
        .unwrap();
    assert_eq!(report.tasks[0].status, TaskStatus::Cancelled);
    assert!(report.cancelled);
}

#[tokio::test]
async fn floods_of_output_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let count = Arc::new(Mutex::new((0usize, 0usize)));
    let mut on_line = {
        let count = count.clone();
        move |_s: OutputStream, line: &str| {
            let mut c = count.lock();
            c.0 += 1;
            c.1 = c.1.max(line.len());
        }
    };
    // 300,000 lines, then one 20 MB line without a newline.
    let spec = CommandSpec::shell(
        "seq 1 300000; head -c 20000000 /dev/zero | tr '\\0' x",
        dir.path(),
    );
    let exit = run_process(
        &spec,
        &AttemptEnv {
            run: &RunId::new("r").unwrap(),
            task: "flood",
            attempt: 1,
        },
        &log,
        &mut on_line,
        &CancellationToken::new(),
        &CancellationToken::new(),
        &ProcessOptions {
            max_line: 4096,
            max_log_bytes: 1 << 20,
            ..ProcessOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0));
    let (lines, longest) = *count.lock();
    assert_eq!(
        lines, 300_001,
        "every line reached the handler (the long one cut once)"
    );
    assert!(
        longest <= 4096 + 32,
        "lines are cut at the limit: {longest}"
    );
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= (1 << 20) + 200, "log capped: {size}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .ends_with("later output is not logged]\n")
    );
}

#[tokio::test]
async fn a_missing_program_is_a_failed_attempt_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let plan = shell_plan(&[("t", "unused", None)]);
    let runner = ProcessRunner::new(
        RunId::new("r").unwrap(),
        dir.path().join("logs"),
        Arc::new(|_t: &Task, _a: u32| {
            Ok(CommandSpec {
                program: "/nonexistent/agent".into(),
                args: vec![],
                cwd: PathBuf::from("/"),
                env: vec![],
            })
        }),
    );
    let report = Scheduler::new(
        &plan,
        &runner,
        Arc::new(VecSink::new(RunId::new("r").unwrap())),
        opts(),
    )
    .run(&CancelHandle::new())
    .await;
    assert_eq!(report.tasks[0].status, TaskStatus::Failed);
    assert!(
        report.tasks[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("cannot run `/nonexistent/agent`"),
        "{:?}",
        report.tasks[0].reason
    );
}

/// What one `run_process` call saw.
struct Ran {
    exit: forge_exec::process::ProcessExit,
    lines: Vec<(OutputStream, String)>,
}

/// Runs `script` with `sh -c` in `dir` (log in `dir/out.log`), calling `also` on each line.
async fn run_script(
    dir: &Path,
    script: &str,
    options: &ProcessOptions,
    mut also: impl FnMut(&str) + Send,
) -> Ran {
    let mut lines = Vec::new();
    let mut on_line = |stream: OutputStream, line: &str| {
        also(line);
        lines.push((stream, line.to_owned()));
    };
    let run_id = RunId::new("r").unwrap();
    let spec = CommandSpec::shell(script, dir);
    let log = dir.join("out.log");
    let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
    let env = AttemptEnv {
        run: &run_id,
        task: "t",
        attempt: 1,
    };
    let run = run_process(&spec, &env, &log, &mut on_line, &cancel, &kill, options);
    // Guard against a hang (not a timing assertion).
    let exit = tokio::time::timeout(Duration::from_mins(1), run)
        .await
        .expect("the attempt ended")
        .unwrap();
    Ran { exit, lines }
}

fn text_of(lines: &[(OutputStream, String)], stream: OutputStream) -> Vec<&str> {
    lines
        .iter()
        .filter(|(s, _)| *s == stream)
        .map(|(_, l)| l.as_str())
        .collect()
}

#[tokio::test]
async fn stdin_is_dev_null() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run_script(
        dir.path(),
        "readlink /proc/self/fd/0; cat; echo read-to-the-end",
        &ProcessOptions::default(),
        |_| {},
    )
    .await;
    assert_eq!(ran.exit.code, Some(0));
    assert_eq!(
        text_of(&ran.lines, OutputStream::Stdout),
        ["/dev/null", "read-to-the-end"]
    );
}

/// A quick command that writes more than a pipe holds to both streams at once: nothing is
/// lost or mixed up, and the command is not stuck on a full pipe.
#[tokio::test]
async fn a_quick_flood_on_both_streams_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let script = "head -c 300000 /dev/zero | tr '\\0' o | fold -w 100 & \
                  head -c 200000 /dev/zero | tr '\\0' e | fold -w 50 >&2; wait";
    let ran = run_script(dir.path(), script, &ProcessOptions::default(), |_| {}).await;
    assert_eq!(ran.exit.code, Some(0));
    let out = text_of(&ran.lines, OutputStream::Stdout);
    let err = text_of(&ran.lines, OutputStream::Stderr);
    assert_eq!(out.len(), 3000);
    assert!(out.iter().all(|l| *l == "o".repeat(100)));
    assert_eq!(err.len(), 4000);
    assert!(err.iter().all(|l| *l == "e".repeat(50)));
    let log = std::fs::read_to_string(dir.path().join("out.log")).unwrap();
    assert_eq!(log.len(), 300_000 + 3000 + 200_000 + 4000);
}

/// Output is read while the command runs: this one waits for the test to see its first line.
#[tokio::test]
async fn output_is_read_while_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    let script = format!(
        "echo ready; echo to-stderr >&2; while [ ! -e {f} ]; do sleep 0.01; done; echo seen",
        f = flag.display()
    );
    let ran = run_script(dir.path(), &script, &ProcessOptions::default(), |line| {
        if line == "ready" {
            std::fs::write(&flag, "").unwrap();
        }
    })
    .await;
    assert_eq!(ran.exit.code, Some(0));
    assert_eq!(text_of(&ran.lines, OutputStream::Stdout), ["ready", "seen"]);
    assert_eq!(text_of(&ran.lines, OutputStream::Stderr), ["to-stderr"]);
}

/// A leader that closes its output early is still waited for, and its exit code reported.
#[tokio::test]
async fn a_leader_that_closes_its_output_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let script = format!(
        "echo before; exec >&- 2>&-; sleep 0.3; touch {d}; exit 7",
        d = done.display()
    );
    let ran = run_script(dir.path(), &script, &ProcessOptions::default(), |_| {}).await;
    assert_eq!(ran.exit.code, Some(7));
    assert!(done.exists(), "the attempt ended before its leader");
    assert_eq!(text_of(&ran.lines, OutputStream::Stdout), ["before"]);
}

/// A background member that keeps the pipes open does not keep the attempt waiting: once the
/// leader exits, its group is ended.
#[tokio::test]
async fn members_holding_the_pipes_are_ended_after_the_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 1000 & echo $! >> {p}; echo started",
        p = pids.display()
    );
    let ran = run_script(dir.path(), &script, &quick_stop(), |_| {}).await;
    assert_eq!(ran.exit.code, Some(0));
    assert_eq!(text_of(&ran.lines, OutputStream::Stdout), ["started"]);
    let pids = pids_in(&pids);
    assert_eq!(pids.len(), 1);
    assert!(!alive(pids[0]), "the background sleep survived");
}

/// A member that closed its output (so the pipes reach end-of-file) and ignores SIGTERM still
/// does not outlive the attempt.
#[tokio::test]
async fn a_member_that_closed_its_output_does_not_outlive_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "(trap '' TERM; exec sleep 1000 >/dev/null 2>&1) & echo $! >> {p}; exit 2",
        p = pids.display()
    );
    let ran = run_script(dir.path(), &script, &quick_stop(), |_| {}).await;
    assert_eq!(ran.exit.code, Some(2));
    let pids = pids_in(&pids);
    assert_eq!(pids.len(), 1);
    assert!(!alive(pids[0]), "the detached sleep survived");
}

/// Many attempts in a row (quick ones that never go live and slower ones that do) each see
/// exactly their own output.
#[tokio::test]
async fn attempts_in_a_row_see_only_their_own_output() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        let script = if i % 4 == 0 {
            format!("echo out{i}; sleep 0.03; echo err{i} >&2")
        } else {
            format!("echo out{i}; echo err{i} >&2")
        };
        let ran = run_script(dir.path(), &script, &ProcessOptions::default(), |_| {}).await;
        assert_eq!(ran.exit.code, Some(0));
        assert_eq!(
            text_of(&ran.lines, OutputStream::Stdout),
            [format!("out{i}")]
        );
        assert_eq!(
            text_of(&ran.lines, OutputStream::Stderr),
            [format!("err{i}")]
        );
    }
}

/// Runs `spec` as attempt 1 of task `t` of run `r`: through the direct spawn (`run_process`)
/// or, with `std_path`, through `std::process::Command` (`run_process_in` with a hook that
/// changes nothing). Returns the exit and the stdout lines, or the spawn error.
async fn run_spec(
    spec: &CommandSpec,
    std_path: bool,
) -> std::io::Result<(Option<i32>, Vec<String>)> {
    let mut lines = Vec::new();
    let mut on_line = |stream: OutputStream, line: &str| {
        if stream == OutputStream::Stdout {
            lines.push(line.to_owned());
        }
    };
    let run_id = RunId::new("r").unwrap();
    let env = AttemptEnv {
        run: &run_id,
        task: "t",
        attempt: 1,
    };
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("out.log");
    let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
    let options = ProcessOptions::default();
    let exit = if std_path {
        let keep = |_: &mut std::process::Command| Ok(());
        run_process_in(
            spec,
            &env,
            &log,
            &mut on_line,
            &cancel,
            &kill,
            &options,
            Some(&keep),
        )
        .await
    } else {
        run_process(spec, &env, &log, &mut on_line, &cancel, &kill, &options).await
    }?;
    Ok((exit.code, lines))
}

/// The direct spawn gives a child exactly what std's would: the parent's environment with the
/// task's variables over it (the last of a repeated name wins, `FORGE_*` over the task's),
/// the arguments as given, the working directory, its own process group, an empty signal
/// mask and default `SIGPIPE`.
#[tokio::test]
async fn the_direct_spawn_gives_the_child_what_std_gives() {
    let dir = tempfile::tempdir().unwrap();
    let script = "env | LC_ALL=C sort | grep -v '^_='; pwd; printf '<%s>' \"$0\" \"$@\"; echo; \
                  ps -o pgid= -p $$ | tr -d ' ' > pg; [ \"$(cat pg)\" = $$ ] && echo own-group; \
                  grep -E '^(SigBlk|SigIgn)' /proc/self/status; \
                  (yes | head -c 1 >/dev/null; echo pipe-ok)";
    let spec = CommandSpec {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            script.into(),
            "zero".into(),
            "a b".into(),
            "".into(),
            "c".into(),
        ],
        cwd: dir.path().to_path_buf(),
        env: vec![
            ("FORGE_TEST_X".into(), "1".into()),
            ("HOME".into(), "/overridden".into()),
            ("FORGE_TEST_X".into(), "2".into()),
            ("FORGE_TASK_ID".into(), "from-the-spec".into()),
        ],
    };
    let (code, direct) = run_spec(&spec, false).await.unwrap();
    assert_eq!(code, Some(0), "{direct:?}");
    let (code, std) = run_spec(&spec, true).await.unwrap();
    assert_eq!(code, Some(0), "{std:?}");
    // Signals 1–31 only: glibc keeps 32 and 33 for itself, and whether a child inherits an
    // ignored one depends on the route (its `posix_spawn` leaves them as the parent has them,
    // `fork` does not), which no agent can observe through a signal it may use.
    // The port range is whichever was free at the spawn (other tests of this binary hold
    // some at the same time): each run has one, the two need not be the same.
    let standard = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .map(|l| {
                if let Some(mask) = l.strip_prefix("SigIgn:") {
                    format!(
                        "SigIgn:\t{:016x}",
                        u64::from_str_radix(mask.trim(), 16).unwrap() & 0x7fff_ffff
                    )
                } else if let Some(base) = l.strip_prefix("FORGE_PORT_BASE=") {
                    let base: u16 = base.parse().unwrap();
                    assert!((40_000..60_000).contains(&base), "{l}");
                    "FORGE_PORT_BASE=<a free range>".to_owned()
                } else {
                    l
                }
            })
            .collect()
    };
    let (direct, std) = (standard(direct), standard(std));
    assert_eq!(direct, std);
    for expected in [
        "FORGE_TEST_X=2".to_owned(),
        "HOME=/overridden".to_owned(),
        "FORGE_TASK_ID=t".to_owned(),
        "FORGE_RUN_ID=r".to_owned(),
        "FORGE_ATTEMPT=1".to_owned(),
        "FORGE_PORT_BASE=<a free range>".to_owned(),
        format!("FORGE_WORKSPACE={}", dir.path().display()),
        format!("PATH={}", std::env::var("PATH").unwrap()),
        dir.path().display().to_string(),
        "<zero><a b><><c>".to_owned(),
        "own-group".to_owned(),
        "SigBlk:\t0000000000000000".to_owned(),
        "pipe-ok".to_owned(),
    ] {
        assert!(
            direct.contains(&expected),
            "{expected:?} missing from {direct:#?}"
        );
    }
    // SIGPIPE (13) is not ignored in the child although Rust ignores it in the parent.
    let ignored = direct
        .iter()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap();
    assert_eq!(ignored & (1 << 12), 0, "SigIgn {ignored:x}");
    assert_eq!(
        direct
            .iter()
            .filter(|l| l.starts_with("FORGE_TEST_X="))
            .count(),
        1
    );
    assert_eq!(direct.iter().filter(|l| l.starts_with("HOME=")).count(), 1);
}

/// A program named without a `/` is looked up on the `PATH` the task gives, when it gives one
/// (the direct spawn would search the parent's, so std's path takes it).
#[tokio::test]
async fn a_program_is_found_on_the_tasks_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("forge-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho found \"$@\"\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let spec = CommandSpec {
        program: "forge-test-tool".into(),
        args: vec!["x".into()],
        cwd: dir.path().to_path_buf(),
        env: vec![("PATH".into(), path.into())],
    };
    let (code, lines) = run_spec(&spec, false).await.unwrap();
    assert_eq!((code, lines), (Some(0), vec!["found x".to_owned()]));
}

/// A relative program path is taken from the working directory the attempt runs in.
#[tokio::test]
async fn a_relative_program_is_run_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\npwd\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let spec = CommandSpec {
        program: "./tool.sh".into(),
        args: vec![],
        cwd: dir.path().to_path_buf(),
        env: vec![],
    };
    let (code, lines) = run_spec(&spec, false).await.unwrap();
    assert_eq!(
        (code, lines),
        (Some(0), vec![dir.path().display().to_string()])
    );
}

/// A working directory that does not exist is named in the error, on both spawn paths.
#[tokio::test]
async fn a_missing_working_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone");
    let spec = CommandSpec {
        program: "/bin/true".into(),
        args: vec![],
        cwd: missing.clone(),
        env: vec![],
    };
    for std_path in [false, true] {
        let err = run_spec(&spec, std_path).await.unwrap_err().to_string();
        assert!(
            err.contains("working directory") && err.contains(&missing.display().to_string()),
            "{err}"
        );
    }
}

/// An attempt whose future is dropped half-way (its caller gave up on it) leaves nothing
/// behind: its group is killed and its leader reaped, not left a zombie.
#[tokio::test]
async fn an_abandoned_attempt_leaves_no_process_and_no_zombie() {
    for std_path in [false, true] {
        abandon(std_path).await;
    }
}

async fn abandon(std_path: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "echo $$ >> {p}; sleep 1000 & echo $! >> {p}; echo started; wait",
        p = pids.display()
    );
    let spec = CommandSpec::shell(&script, dir.path());
    let mut run = Box::pin(run_spec(&spec, std_path));
    // Run it until both pids are written, then drop it.
    loop {
        tokio::select! {
            r = &mut run => panic!("the attempt ended on its own: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if pids_in(&pids).len() == 2 {
                    break;
                }
            }
        }
    }
    drop(run);
    let pids = pids_in(&pids);
    // Reaping happens off the runtime's threads: wait for it (bounded, not a timing check).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (alive(pids[1]) || Path::new(&format!("/proc/{}", pids[0])).exists())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(pids[1]),
        "the background sleep survived: {:?}",
        std::fs::read_to_string(format!("/proc/{}/stat", pids[1]))
    );
    assert!(
        !Path::new(&format!("/proc/{}", pids[0])).exists(),
        "the leader was not reaped"
    );
}

/// The attempt's log is written as output arrives, not only at the end: `forge logs --follow`
/// and the dashboard read it while the agent still runs. The command here waits until the
/// test has found its first line in the log file.
#[tokio::test]
async fn the_log_follows_a_running_command() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    let log = dir.path().join("out.log");
    let script = format!(
        "echo first; while [ ! -e {f} ]; do sleep 0.01; done; echo second",
        f = flag.display()
    );
    let options = ProcessOptions::default();
    let run = run_script(dir.path(), &script, &options, |_| {});
    let watch = async {
        // Bounded: if the log were written only at the end, this gives up and the test fails.
        for _ in 0..2000 {
            if std::fs::read_to_string(&log).is_ok_and(|l| l == "first\n") {
                std::fs::write(&flag, "").unwrap();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::fs::write(&flag, "").unwrap();
        false
    };
    let (ran, seen_live) = tokio::join!(run, watch);
    assert!(
        seen_live,
        "the first line was not in the log while the command ran"
    );
    assert_eq!(ran.exit.code, Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
}

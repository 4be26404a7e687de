//! Containment of an attempt's process tree: a hostile script that escapes its process group
//! (`setsid` holding stdout, a double-forked daemon) ends with the attempt on every path, memory
//! limits end an attempt with that reason, and every spawn gets `PWD` and its port range.
//!
//! Tests that need a PID namespace or a writable cgroup skip with the reason where the host has
//! none, and fail instead when `FORGE_REQUIRE_CONTAINMENT=1` (CI).

use forge_testkit::procs::marked_processes;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use forge_events::{OutputStream, RunId};
use forge_exec::CommandSpec;
use forge_exec::process::{
    AttemptEnv, Limits, PidNamespaceSupport, ProcessExit, ProcessOptions, pid_namespace_support,
    run_process,
};
use tokio_util::sync::CancellationToken;

/// Whether the host can contain attempts; otherwise prints why (and fails when required).
fn namespaces_or_skip(test: &str) -> bool {
    match pid_namespace_support() {
        PidNamespaceSupport::Unavailable(why) => skip(test, why),
        _ => true,
    }
}

fn skip(test: &str, why: &str) -> bool {
    assert!(
        std::env::var_os("FORGE_REQUIRE_CONTAINMENT").is_none_or(|v| v != "1"),
        "{test}: containment is required (FORGE_REQUIRE_CONTAINMENT=1) but unavailable: {why}"
    );
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
    false
}

/// A script that leaves, before it exits 0 (or waits to be stopped), a `setsid` child holding
/// its stdout and a double-forked daemon, and says when both run.
fn hostile(dir: &Path, then: &str) -> String {
    format!(
        "setsid sh -c 'echo held; touch {d}/held; exec sleep 1000' & \
         ( ( setsid sh -c 'touch {d}/daemon; exec sleep 1000' </dev/null >/dev/null 2>&1 & ) & ); \
         while [ ! -e {d}/held ] || [ ! -e {d}/daemon ]; do sleep 0.01; done; \
         echo ready; {then}",
        d = dir.display()
    )
}

struct Ran {
    exit: ProcessExit,
    lines: Vec<(OutputStream, String)>,
}

/// Runs `script` under `options` with a unique mark; `on_ready` sees the cancel and kill tokens
/// when the script prints `ready`.
async fn run(
    dir: &Path,
    mark: &str,
    script: &str,
    options: &ProcessOptions,
    on_ready: impl Fn(&CancellationToken, &CancellationToken) + Send + Sync,
) -> std::io::Result<Ran> {
    let mut spec = CommandSpec::shell(script, dir);
    spec.env.push(("FORGE_TEST_MARK".into(), mark.into()));
    let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
    let mut lines = Vec::new();
    let mut on_line = |stream: OutputStream, line: &str| {
        if line == "ready" {
            on_ready(&cancel, &kill);
        }
        lines.push((stream, line.to_owned()));
    };
    let run_id = RunId::new("r").unwrap();
    let env = AttemptEnv {
        run: &run_id,
        task: "t",
        attempt: 1,
    };
    let log = dir.join("out.log");
    // Guards against a hang (not a timing assertion): the leftovers sleep 1000 s.
    let exit = tokio::time::timeout(
        Duration::from_mins(2),
        run_process(&spec, &env, &log, &mut on_line, &cancel, &kill, options),
    )
    .await
    .expect("the attempt did not wait for the processes it left behind")?;
    Ok(Ran { exit, lines })
}

fn contained() -> ProcessOptions {
    ProcessOptions {
        pid_namespace: true,
        interrupt_grace: Duration::from_millis(300),
        terminate_grace: Duration::from_millis(300),
        ..ProcessOptions::default()
    }
}

fn mark(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

#[tokio::test]
async fn setsid_children_and_daemons_end_when_the_agent_exits() {
    if !namespaces_or_skip("setsid_children_and_daemons_end_when_the_agent_exits") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mark = mark("exit");
    let ran = run(
        dir.path(),
        &mark,
        &hostile(dir.path(), "exit 0"),
        &contained(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(ran.exit.code, Some(0), "{:?}", ran.lines);
    assert!(!ran.exit.stopped);
    assert_eq!(ran.exit.no_namespace, None);
    let out: Vec<&str> = ran.lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(out.contains(&"held") && out.contains(&"ready"), "{out:?}");
    assert_eq!(
        marked_processes(&mark),
        Vec::<i32>::new(),
        "processes of the attempt are alive"
    );
}

#[tokio::test]
async fn a_failing_agent_takes_its_escaped_processes_along() {
    if !namespaces_or_skip("a_failing_agent_takes_its_escaped_processes_along") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mark = mark("fail");
    let ran = run(
        dir.path(),
        &mark,
        &hostile(dir.path(), "exit 3"),
        &contained(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(ran.exit.code, Some(3));
    assert_eq!(marked_processes(&mark), Vec::<i32>::new());
}

#[tokio::test]
async fn cancel_and_kill_end_escaped_processes() {
    if !namespaces_or_skip("cancel_and_kill_end_escaped_processes") {
        return;
    }
    for (how, hard) in [("cancel", false), ("kill", true)] {
        let dir = tempfile::tempdir().unwrap();
        let mark = mark(how);
        let ran = run(
            dir.path(),
            &mark,
            &hostile(dir.path(), "sleep 1000"),
            &contained(),
            |cancel, kill| {
                if hard {
                    kill.cancel();
                } else {
                    cancel.cancel();
                }
            },
        )
        .await
        .unwrap();
        assert!(ran.exit.stopped, "{how}");
        // The agent died of the signal it was sent, relayed by the leader.
        assert!(ran.exit.signal.is_some(), "{how}: {:?}", ran.exit);
        assert_eq!(marked_processes(&mark), Vec::<i32>::new(), "{how}");
    }
}

/// Without a PID namespace (the fallback), output held by a `setsid` child is read for a
/// bounded time after the agent exits; the attempt does not wait for that child.
#[tokio::test]
async fn the_fallback_does_not_wait_on_a_pipe_held_by_a_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let mark = mark("fallback");
    let options = ProcessOptions {
        drain_after_exit: Duration::from_millis(200),
        ..ProcessOptions::default()
    };
    let script = format!(
        "setsid sh -c 'echo held; touch {d}/held; sleep 1000' & \
         while [ ! -e {d}/held ]; do sleep 0.01; done; echo ready",
        d = dir.path().display()
    );
    let ran = run(dir.path(), &mark, &script, &options, |_, _| {})
        .await
        .unwrap();
    assert_eq!(ran.exit.code, Some(0));
    let out: Vec<&str> = ran.lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(out, ["held", "ready"]);
    // Without a namespace or cgroup the escaped child is out of Forge's reach (which also
    // shows that the scan the other tests rely on finds such a process): end it here.
    let leftovers = marked_processes(&mark);
    assert!(!leftovers.is_empty());
    for pid in leftovers {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

#[tokio::test]
async fn a_memory_hog_fails_with_the_memory_limit_as_reason() {
    let test = "a_memory_hog_fails_with_the_memory_limit_as_reason";
    if !namespaces_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mark = mark("hog");
    let options = ProcessOptions {
        limits: Limits {
            memory: Some(64 << 20),
            cpus: Some(1.0),
        },
        ..contained()
    };
    // A shell variable of 400 MB, built in a child of the agent.
    let script = hostile(
        dir.path(),
        "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
    );
    let ran = match run(dir.path(), &mark, &script, &options, |_, _| {}).await {
        Ok(ran) => ran,
        Err(e) => {
            skip(test, &format!("no cgroup for limits: {e}"));
            return;
        }
    };
    assert!(ran.exit.memory_limit_hit, "{:?} {:?}", ran.exit, ran.lines);
    assert!(
        !ran.lines.iter().any(|(_, l)| l.starts_with("survived")),
        "{:?}",
        ran.lines
    );
    assert_eq!(marked_processes(&mark), Vec::<i32>::new());
}

// Limits that cannot be enforced (no writable cgroup) are a clear error: proven through the
// binary as an unprivileged user (forge-cli's `contain` tests), where that is certain.

#[tokio::test]
async fn every_spawn_route_sets_pwd_and_a_port_range() {
    let mut routes = vec![("fast", ProcessOptions::default())];
    if namespaces_or_skip("every_spawn_route_sets_pwd_and_a_port_range (namespace route)") {
        routes.push(("namespace", contained()));
    }
    for (route, options) in routes {
        let dir = tempfile::tempdir().unwrap();
        let ran = run(
            dir.path(),
            &mark("pwd"),
            "echo \"$PWD|$OLDPWD|$FORGE_PORT_BASE|$FORGE_PORT_COUNT\"; pwd -P",
            &options,
            |_, _| {},
        )
        .await
        .unwrap();
        let out: Vec<&str> = ran.lines.iter().map(|(_, l)| l.as_str()).collect();
        let ws = dir.path().to_str().unwrap();
        let fields: Vec<&str> = out[0].split('|').collect();
        assert_eq!(&fields[..2], [ws, ws], "{route}: {out:?}");
        let base: u16 = fields[2].parse().unwrap();
        assert!((forge_exec::process::FIRST_PORT..forge_exec::process::LAST_PORT).contains(&base));
        assert_eq!(fields[3], "10");
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(out[1], real.to_str().unwrap(), "{route}");
    }
}

#[tokio::test]
async fn concurrent_attempts_get_disjoint_port_ranges() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let flag = tempfile::tempdir().unwrap();
    // Each attempt holds its range until all four have printed theirs.
    let script = format!(
        "echo $FORGE_PORT_BASE; touch {f}/$$; while [ $(ls {f} | wc -l) -lt 4 ]; do sleep 0.01; done",
        f = flag.path().display()
    );
    let options = ProcessOptions::default();
    let runs = dirs
        .iter()
        .map(|d| run(d.path(), "ports", &script, &options, |_, _| {}));
    let mut bases: Vec<u16> = futures_lite(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().lines[0].1.parse().unwrap())
        .collect();
    bases.sort_unstable();
    for pair in bases.windows(2) {
        assert!(pair[1] - pair[0] >= 10, "{bases:?}");
    }
}

/// Runs the futures concurrently on this task.
async fn futures_lite<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// The repository path shows the workspace, on every staging strategy this machine supports:
/// a hostile script's every route lands in its workspace (its files are captured), and the
/// user's working tree, `.git` and `.forge` stay byte-identical, with nothing of it alive.
#[tokio::test]
#[allow(clippy::too_many_lines)] // four strategies, two runs each, every check spelled out
async fn every_route_to_the_repository_lands_in_the_workspace_on_every_strategy() {
    use forge_events::TaskStatus;
    use forge_exec::{ApplyMode, CancelHandle, ExecutionManager};
    use forge_staging::StagerKind;
    let test = "every_route_to_the_repository_lands_in_the_workspace_on_every_strategy";
    if !namespaces_or_skip(test) {
        return;
    }
    for kind in [
        StagerKind::Overlay,
        StagerKind::Reflink,
        StagerKind::Worktree,
        StagerKind::Copy,
    ] {
        // Reflink needs a file system that clones (CI mounts one: `FORGE_TEST_REFLINK_DIR`).
        let reflink_dir =
            std::env::var_os("FORGE_TEST_REFLINK_DIR").filter(|_| kind == StagerKind::Reflink);
        let repo = match &reflink_dir {
            Some(dir) => {
                let repo = tempfile::tempdir_in(dir).unwrap();
                empty_repo_at(repo.path());
                repo
            }
            None => crate::manager::repo(&[("README.md", "# hi\n"), ("src/lib.rs", "x\n")]),
        };
        let run = |text: String| {
            let plan = crate::manager::plan(&text);
            let dir = repo.path().to_path_buf();
            async move {
                ExecutionManager::builder()
                    .repo(&dir)
                    .plan(plan)
                    .profiles(crate::manager::profiles())
                    .stager(kind)
                    .apply(ApplyMode::None)
                    .build()
                    .unwrap()
                    .run(CancelHandle::new())
                    .await
            }
        };
        // An earlier run, so that `.forge` holds a journal the hostile task could reach.
        let first = run(
            "[[task]]\nid = \"first\"\nagent = \"shell\"\nwrites = [\"a\"]\nprompt = \"echo a > a\"\n"
                .to_owned(),
        )
        .await;
        match &first {
            Err(e) if e.to_string().contains("is not available here") => {
                // `.ci/run` names the strategies it prepared: those must run.
                let required = std::env::var("FORGE_REQUIRE_STRATEGIES").unwrap_or_default();
                let names: &[&str] = match kind {
                    StagerKind::Overlay => &["overlay-direct", "overlay-userns", "overlay-fuse"],
                    StagerKind::Reflink => &["reflink"],
                    StagerKind::Worktree => &["worktree"],
                    _ => &["copy"],
                };
                assert!(
                    !required
                        .split(',')
                        .any(|r| r == "all" || names.contains(&r.trim())),
                    "{test}: {kind:?} is required (FORGE_REQUIRE_STRATEGIES={required}): {e}"
                );
                let _ = writeln!(std::io::stderr(), "{test}: {kind:?} skipped: {e}");
                continue;
            }
            Err(e) => panic!("{kind:?}: {e}"),
            Ok(report) => assert_eq!(report.tasks[0].status, TaskStatus::Succeeded),
        }
        let user_tree = forge_testkit::hostile::tree(repo.path(), &[".forge"]).unwrap();
        let forge_before = forge_testkit::hostile::tree(&repo.path().join(".forge"), &[]).unwrap();
        let mark = mark(&format!("view-{kind:?}"));
        let report = run(format!(
            "[[task]]\nid = \"hostile\"\nagent = \"shell\"\nwrites = [\"**\"]\n\
             env = {{ FORGE_TEST_MARK = \"{mark}\" }}\nprompt = '''{}'''\n",
            forge_testkit::hostile::every_route(repo.path()).unwrap()
        ))
        .await
        .unwrap();
        let task = &report.tasks[0];
        assert_eq!(
            task.status,
            TaskStatus::Succeeded,
            "{kind:?}: {:?} {:?}",
            task.reason,
            task.outcome
        );
        let files = &task.outcome.as_ref().unwrap().files_changed;
        for f in ["by-pwd.txt", "by-abs.txt", "by-cdup.txt", "held", "daemon"] {
            assert!(
                files.iter().any(|p| p.as_str() == f),
                "{kind:?}: {f} not captured: {files:?}"
            );
        }
        assert!(
            files.iter().all(|p| !p.as_str().starts_with(".git")),
            "{files:?}"
        );
        let after = forge_testkit::hostile::tree(repo.path(), &[".forge"]).unwrap();
        assert_eq!(
            forge_testkit::hostile::changed(&user_tree, &after),
            Vec::<String>::new(),
            "{kind:?}: the user's tree or .git changed"
        );
        let forge_after = forge_testkit::hostile::tree(&repo.path().join(".forge"), &[]).unwrap();
        for (path, before) in &forge_before {
            if path.ends_with('/') {
                continue;
            }
            assert_eq!(
                forge_after.get(path),
                Some(before),
                "{kind:?}: .forge/{path} changed"
            );
        }
        assert!(!forge_after.contains_key("pwned"), "{kind:?}");
        assert_eq!(marked_processes(&mark), Vec::<i32>::new(), "{kind:?}");
    }
}

/// The namespace route's agent is started by Forge's own `exec` (not std's): it must behave as
/// std's does on the other routes: `PATH` searched in the agent's environment, arguments and
/// variables passed, the exit code and a killing signal relayed, a missing program (absolute
/// or looked up) the spawn's error, a script without `#!` run by `/bin/sh`.
#[tokio::test]
async fn the_namespace_route_execs_the_agent_as_std_does() {
    let mut routes = vec![("fast", ProcessOptions::default())];
    if namespaces_or_skip("the_namespace_route_execs_the_agent_as_std_does") {
        routes.push(("namespace", contained()));
    }
    for (route, options) in routes {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let agent = bin.join("forge-test-agent");
        executable(
            &agent,
            "#!/bin/sh\necho \"$0|$1|$2|$FORGE_TEST_VAR|$PATH\"\n[ \"$1\" = die ] && kill -TERM $$\nexit 7\n",
        );
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let run = |program: &str, args: &[&str]| {
            let spec = CommandSpec {
                program: program.into(),
                args: args.iter().map(Into::into).collect(),
                cwd: dir.path().to_path_buf(),
                env: vec![
                    ("PATH".into(), path.clone().into()),
                    ("FORGE_TEST_VAR".into(), "a b".into()),
                ],
            };
            run_lines(spec, dir.path().join("out.log"), options.clone())
        };
        // Found through the agent's own PATH (not Forge's), with its arguments and variables.
        let (exit, lines) = run("forge-test-agent", &["one", "two words"])
            .await
            .unwrap();
        assert_eq!(
            lines,
            [format!("{}|one|two words|a b|{path}", agent.display())],
            "{route}"
        );
        assert_eq!((exit.code, exit.signal), (Some(7), None), "{route}");
        // A signal that ends the agent is the attempt's.
        let (exit, _) = run("forge-test-agent", &["die"]).await.unwrap();
        assert_eq!(exit.signal, Some(libc::SIGTERM), "{route}: {exit:?}");
        // A missing program, absolute or looked up, is the spawn's error.
        for missing in ["/nonexistent/agent", "forge-no-such-agent"] {
            let err = run(missing, &[]).await.unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::NotFound,
                "{route} {missing}: {err}"
            );
        }
        // A script without `#!` runs with `/bin/sh`, as `execvp` runs it.
        executable(&bin.join("forge-test-plain"), "echo \"plain|$1\"\n");
        let (exit, lines) = run("forge-test-plain", &["x y"]).await.unwrap();
        assert_eq!(lines, ["plain|x y"], "{route}");
        assert_eq!(exit.code, Some(0), "{route}");
    }
}

/// Runs `spec` as attempt 1 of task `t` under `options`: its exit and the lines it printed.
async fn run_lines(
    spec: CommandSpec,
    log: std::path::PathBuf,
    options: ProcessOptions,
) -> std::io::Result<(ProcessExit, Vec<String>)> {
    let run_id = RunId::new("r").unwrap();
    let env = AttemptEnv {
        run: &run_id,
        task: "t",
        attempt: 1,
    };
    let (cancel, kill) = (CancellationToken::new(), CancellationToken::new());
    let mut lines = Vec::new();
    let exit = run_process(
        &spec,
        &env,
        &log,
        &mut |_, line: &str| lines.push(line.to_owned()),
        &cancel,
        &kill,
        &options,
    )
    .await?;
    Ok((exit, lines))
}

/// Writes `text` to `path` as an executable file.
fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The pid of process `pid` in its own PID namespace (the last of `NSpid` in
/// `/proc/<pid>/status`), if it is alive.
fn pid_in_namespace(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The parent pid of process `pid` (from `/proc/<pid>/stat`), if it is alive.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The namespace route's leader is gone once the agent runs: the agent's parent, the init of
/// its PID namespace, is a child of Forge itself (no forked leader of Forge stands between for
/// the attempt's life, as on std's route), it is in the namespace of the agent, not of Forge,
/// and it does not share Forge's memory.
#[tokio::test]
async fn the_attempts_init_is_forges_own_child() {
    if !namespaces_or_skip("the_attempts_init_is_forges_own_child") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mark = mark("init");
    let seen = std::sync::Mutex::new(None);
    let ran = run(
        dir.path(),
        &mark,
        "echo ready; exec sleep 1000",
        &contained(),
        |cancel, _| {
            // The agent (`sh`, then `sleep`) and the init are the marked processes (the init
            // carries the agent's environment); the agent's parent is the init.
            let agent: Vec<i32> = marked_processes(&mark)
                .into_iter()
                .filter(|pid| pid_in_namespace(*pid) != Some(1))
                .collect();
            let init = agent.first().and_then(|pid| parent_of(*pid));
            let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
            // Whether the init shares this process's memory (`kcmp(KCMP_VM)`: 0 when it does).
            let shares_memory = init.map(|init| {
                const KCMP_VM: libc::c_long = 1;
                // SAFETY: `kcmp` only compares two processes' resources.
                #[allow(unsafe_code)]
                unsafe {
                    libc::syscall(
                        libc::SYS_kcmp,
                        libc::c_long::from(libc::getpid()),
                        libc::c_long::from(init),
                        KCMP_VM,
                        0,
                        0,
                    ) == 0
                }
            });
            // What the init runs, and its arguments.
            let exe = init.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
            let cmdline = init.and_then(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok());
            *seen.lock().unwrap() = Some((
                agent.len(),
                init.and_then(parent_of),
                init.and_then(ns),
                agent.first().and_then(|pid| ns(*pid)),
                shares_memory,
                exe,
                cmdline,
            ));
            cancel.cancel();
        },
    )
    .await
    .unwrap();
    assert!(ran.exit.stopped, "{:?}", ran.lines);
    let (agents, forge, init_ns, agent_ns, shares_memory, exe, cmdline) =
        seen.lock().unwrap().take().unwrap();
    // Where forge-exec's build script built it, the init is the init program from its memory
    // file, not a copy of Forge (unless this host refuses to run memory files), and its
    // arguments (which every user can read) hold none of the agent's environment.
    let exe = exe.expect("the init's program");
    if exe.to_string_lossy().starts_with("/memfd:forge-init") {
        let cmdline = cmdline.expect("the init's arguments");
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        assert_eq!(words.first(), Some(&&b"forge-init"[..]));
        assert!(
            !words.iter().any(|w| w.starts_with(b"FORGE_TEST_MARK=")),
            "{:?}",
            String::from_utf8_lossy(&cmdline)
        );
    } else {
        assert!(
            !cfg!(forge_init)
                || std::env::var_os("FORGE_REQUIRE_CONTAINMENT").is_none_or(|v| v != "1"),
            "the init is {} (FORGE_REQUIRE_CONTAINMENT=1, forge-init built)",
            exe.display()
        );
        eprintln!(
            "the_attempts_init_is_forges_own_child: the init runs {} (no init program here)",
            exe.display()
        );
    }
    assert_eq!(agents, 1);
    // The agent can trace its PID 1 (same user): PID 1 must never be Forge's own memory.
    assert_eq!(shares_memory, Some(false));
    assert_eq!(forge, i32::try_from(std::process::id()).ok());
    assert_eq!(init_ns, agent_ns);
    assert_ne!(init_ns, std::fs::read_link("/proc/self/ns/pid").ok());
}

/// Makes `dir` a git repository with one empty commit.
fn empty_repo_at(dir: &Path) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "base",
        ][..],
    ] {
        assert!(
            std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }
}

/// A tmpfs mounted (shared) on a temporary directory for one test, unmounted when dropped.
struct SharedTmpfs(tempfile::TempDir);

impl SharedTmpfs {
    /// `None` where this process may not mount (not root).
    fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated strings; the mount is undone in `drop`.
        #[allow(unsafe_code)]
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) == 0
                && libc::mount(
                    std::ptr::null(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_SHARED,
                    std::ptr::null(),
                ) == 0
        };
        let this = Self(dir);
        mounted.then_some(this)
    }
}

impl Drop for SharedTmpfs {
    fn drop(&mut self) {
        if let Ok(path) = std::ffi::CString::new(self.0.path().as_os_str().as_encoded_bytes()) {
            // SAFETY: a NUL-terminated path; detaching only.
            #[allow(unsafe_code)]
            unsafe {
                libc::umount2(path.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// The mount points of this process's namespace below `dir` (strictly).
fn mount_points_below(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

/// Where the host's mounts are shared (systemd's default: `/` is), the overlay Forge mounts
/// for a workspace is shared too, and a clone of it is its peer: nothing an attempt's view
/// mounts on its clone (the read-only `.forge`, the user's git directory, the state
/// directories) may spread to the host's overlay.
#[tokio::test]
async fn nothing_mounted_in_a_view_spreads_to_the_host() {
    use forge_events::TaskStatus;
    use forge_exec::{ApplyMode, CancelHandle, ExecutionManager};
    use forge_staging::StagerKind;
    let test = "nothing_mounted_in_a_view_spreads_to_the_host";
    if !namespaces_or_skip(test) {
        return;
    }
    let Some(shared) = SharedTmpfs::new() else {
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: this process may not mount a tmpfs (not root)"
        );
        return;
    };
    let repo = shared.0.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    empty_repo_at(&repo);
    let manager = ExecutionManager::builder()
        .repo(&repo)
        .plan(crate::manager::plan(
            "[[task]]\nid = \"a\"\nagent = \"shell\"\nwrites = [\"a.txt\"]\n\
             prompt = \"echo a > a.txt; sleep 1\"\n",
        ))
        .profiles(crate::manager::profiles())
        .stager(StagerKind::Overlay)
        .apply(ApplyMode::None)
        .build()
        .unwrap();
    let run = tokio::spawn(manager.run(CancelHandle::new()));
    // While the agent runs: the only mounts below the repository are the workspace's overlay
    // (and nothing below its merged directory).
    let mut seen = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = mount_points_below(&repo);
        if now.iter().any(|p| p.ends_with("/merged")) {
            seen = now;
            break;
        }
    }
    let report = run.await.unwrap();
    let report = match report {
        Err(e) if e.to_string().contains("is not available here") => {
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {e}");
            return;
        }
        other => other.unwrap(),
    };
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded);
    if seen.is_empty() {
        // The overlay is mounted in a holder's namespace here, not in this one.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: no workspace mounted in this namespace"
        );
        return;
    }
    assert!(
        seen.iter().all(|p| p.ends_with("/merged")),
        "mounts of the view reached the host: {seen:?}"
    );
    assert_eq!(mount_points_below(&repo), Vec::<String>::new());
}

/// Each attempt has its own `/tmp` (and `TMPDIR` names it): two attempts at once write the same
/// path in `/tmp` and each reads back its own, neither sees the host's `/tmp` but for a
/// directory its environment names, nothing else reaches the host's, and the directories are
/// gone when the attempts end. The repository lies under
/// `/tmp` here, so its path is made in the private `/tmp` and still shows the workspace.
#[tokio::test]
async fn each_attempt_has_its_own_tmp() {
    use forge_events::TaskStatus;
    use forge_exec::{ApplyMode, CancelHandle, ExecutionManager};
    use forge_staging::StagerKind;
    use std::fmt::Write as _;
    let test = "each_attempt_has_its_own_tmp";
    if !namespaces_or_skip(test) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("forge-private-tmp")
        .tempdir_in("/tmp")
        .unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    empty_repo_at(&repo);
    let id = std::process::id();
    let host_marker = std::path::PathBuf::from(format!("/tmp/forge-host-marker-{id}"));
    std::fs::write(&host_marker, "host").unwrap();
    let shared = format!("/tmp/forge-shared-{id}");
    // A directory the agent's environment names stays the host's, both ways.
    let kept = dir.path().join("kept");
    std::fs::create_dir(&kept).unwrap();
    std::fs::write(kept.join("in.txt"), "host\n").unwrap();
    let mut plan = String::from("concurrency = 2\n");
    for task in ["a", "b"] {
        let _ = write!(
            plan,
            "[[task]]\nid = \"{task}\"\nagent = \"shell\"\nwrites = [\"{task}.txt\"]\n\
             env = {{ KEPT = \"{kept}\" }}\n\
             prompt = '''test ! -e {marker} || exit 3; test \"$(pwd)\" = {repo} || exit 4; \
             echo {task} > {shared}; sleep 1; test \"$(cat {shared})\" = {task} || exit 5; \
             test \"$(cat $KEPT/in.txt)\" = host || exit 6; echo {task} > $KEPT/{task}.out; \
             echo \"$TMPDIR\" > {task}.txt'''\n",
            marker = host_marker.display(),
            repo = repo.display(),
            kept = kept.display(),
        );
    }
    let manager = ExecutionManager::builder()
        .repo(&repo)
        .plan(crate::manager::plan(&plan))
        .profiles(crate::manager::profiles())
        .stager(StagerKind::Overlay)
        .apply(ApplyMode::WorkingTree)
        .build()
        .unwrap();
    let report = manager.run(CancelHandle::new()).await;
    let _ = std::fs::remove_file(&host_marker);
    let report = match report {
        Err(e) if e.to_string().contains("is not available here") => {
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {e}");
            return;
        }
        other => other.unwrap(),
    };
    for task in &report.tasks {
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:#?}");
        let tmpdir = std::fs::read_to_string(repo.join(format!("{}.txt", task.id))).unwrap();
        assert_eq!(tmpdir, "/tmp\n", "TMPDIR of {}", task.id);
    }
    assert!(
        !Path::new(&shared).exists(),
        "an attempt's /tmp reached the host's"
    );
    for task in ["a", "b"] {
        assert_eq!(
            std::fs::read_to_string(kept.join(format!("{task}.out"))).unwrap(),
            format!("{task}\n")
        );
    }
    let leftovers: Vec<_> = walkdir(&repo.join(".forge/runs"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tmp"))
        })
        .collect();
    assert_eq!(
        leftovers,
        Vec::<std::path::PathBuf>::new(),
        "attempts' /tmp left behind"
    );
}

/// `[isolation] shared_tmp = true`: attempts see the host's `/tmp`.
#[tokio::test]
async fn shared_tmp_shows_the_hosts_tmp() {
    use forge_events::TaskStatus;
    use forge_exec::{ApplyMode, CancelHandle, ExecutionManager};
    use forge_staging::StagerKind;
    if !namespaces_or_skip("shared_tmp_shows_the_hosts_tmp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    empty_repo_at(&repo);
    let host_marker =
        std::path::PathBuf::from(format!("/tmp/forge-shared-marker-{}", std::process::id()));
    std::fs::write(&host_marker, "host").unwrap();
    let manager = ExecutionManager::builder()
        .repo(&repo)
        .plan(crate::manager::plan(&format!(
            "[isolation]\nshared_tmp = true\n[[task]]\nid = \"c\"\nagent = \"shell\"\n\
             writes = [\"c.txt\"]\nprompt = '''test -e {} && echo seen > c.txt'''\n",
            host_marker.display()
        )))
        .profiles(crate::manager::profiles())
        .stager(StagerKind::Overlay)
        .apply(ApplyMode::WorkingTree)
        .build()
        .unwrap();
    let report = manager.run(CancelHandle::new()).await.unwrap();
    let _ = std::fs::remove_file(&host_marker);
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    assert_eq!(
        std::fs::read_to_string(repo.join("c.txt")).unwrap(),
        "seen\n"
    );
}

/// Every directory below `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
                todo.push(entry.path());
            }
        }
    }
    out
}

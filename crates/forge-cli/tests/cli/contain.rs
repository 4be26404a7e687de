//! Contained attempts through the real binary: a hostile `shell` agent that escapes its process
//! group (`setsid` holding stdout, a double-forked daemon) leaves nothing alive after success,
//! a timeout, the second Ctrl-C, Forge being killed, and under an unprivileged user namespace;
//! a memory hog under `memory` fails with that reason.
//!
//! Tests needing a PID namespace (or a cgroup, or `unshare`) skip with the reason where the host
//! has none, and fail instead when `FORGE_REQUIRE_CONTAINMENT=1` (CI).

use forge_testkit::procs::marked_processes as marked;
use std::io::{BufRead, BufReader, Write as _};
use std::process::Stdio;

use crate::util::{Repo, interrupt, wait_until};

fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("FORGE_REQUIRE_CONTAINMENT").is_none_or(|v| v != "1"),
        "{test}: containment is required (FORGE_REQUIRE_CONTAINMENT=1) but unavailable: {why}"
    );
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// Whether `unshare -p -f` works here (the binary decides the same way, by trying).
fn namespaces(test: &str) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["-p", "-f", "true"])
        .status()
        .is_ok_and(|s| s.success())
        || std::process::Command::new("unshare")
            .args(["-U", "-r", "-p", "-f", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        skip(
            test,
            "no PID namespace can be had here (unshare -p / -Urp refused)",
        );
    }
    ok
}

fn mark(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// A `shell` task whose script leaves a `setsid` child holding stdout and a double-forked
/// daemon, prints `escaped`, then runs `then`.
fn hostile_task(id: &str, mark: &str, extra: &str, then: &str) -> String {
    let script = format!(
        "setsid sh -c 'echo held; touch held; exec sleep 1000' & \
         ( ( setsid sh -c 'touch daemon; exec sleep 1000' </dev/null >/dev/null 2>&1 & ) & ); \
         while [ ! -e held ] || [ ! -e daemon ]; do sleep 0.01; done; echo escaped; {then}"
    );
    format!(
        "[[task]]\nid = \"{id}\"\nagent = \"shell\"\nwrites = [\"**\"]\n{extra}\nenv = {{ FORGE_TEST_MARK = \"{mark}\" }}\nprompt = '''{script}'''\n\n"
    )
}

#[test]
fn escaped_processes_end_with_a_successful_attempt() {
    if !namespaces("escaped_processes_end_with_a_successful_attempt") {
        return;
    }
    let repo = Repo::new();
    let mark = mark("ok");
    let file = repo.plan("ok", &hostile_task("t", &mark, "", "echo done > out.txt"));
    let run = repo.forge(&["run", &file, "--no-apply"]).expect(0);
    assert!(run.stdout.contains("t: succeeded"), "{}", run.stdout);
    assert!(!run.stdout.contains("warning:"), "{}", run.stdout);
    assert_eq!(
        marked(&mark),
        Vec::<i32>::new(),
        "processes of the attempt are alive"
    );
}

#[test]
fn escaped_processes_end_with_a_timed_out_attempt() {
    if !namespaces("escaped_processes_end_with_a_timed_out_attempt") {
        return;
    }
    let repo = Repo::new();
    let mark = mark("timeout");
    let file = repo.plan(
        "slow",
        &hostile_task(
            "t",
            &mark,
            "timeout = \"1s\"",
            "trap '' INT TERM; sleep 1000",
        ),
    );
    let run = repo.forge(&["run", &file, "--no-apply"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("t: timed out"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(marked(&mark), Vec::<i32>::new());
}

#[test]
fn the_second_ctrl_c_ends_every_attempt_at_once() {
    if !namespaces("the_second_ctrl_c_ends_every_attempt_at_once") {
        return;
    }
    let repo = Repo::new();
    let mark = mark("ctrlc");
    // Both attempts ignore the polite signals: only the second Ctrl-C (a kill) ends them.
    let stubborn = "trap '' INT TERM; sleep 1000";
    let plan = format!(
        "concurrency = 2\n{}{}",
        hostile_task("a", &mark, "", stubborn).replace("writes = [\"**\"]", "writes = [\"a/**\"]"),
        hostile_task("b", &mark, "", stubborn).replace("writes = [\"**\"]", "writes = [\"b/**\"]"),
    );
    let file = repo.plan("stubborn", &plan);
    let mut child = repo
        .cmd(&["run", &file, "--no-apply", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut escaped = 0;
    while escaped < 2 && stdout.read_line(&mut line).unwrap() > 0 {
        if line.contains("\"line\":\"escaped\"") {
            escaped += 1;
        }
        line.clear();
    }
    assert_eq!(escaped, 2, "both attempts started their escapees");
    interrupt(child.id());
    interrupt(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(marked(&mark), Vec::<i32>::new());
}

#[test]
fn a_killed_forge_takes_its_attempts_along() {
    if !namespaces("a_killed_forge_takes_its_attempts_along") {
        return;
    }
    let repo = Repo::new();
    let mark = mark("crash");
    let file = repo.plan("crash", &hostile_task("t", &mark, "", "sleep 1000"));
    let mut child = repo
        .cmd(&["run", &file, "--no-apply", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains("\"line\":\"escaped\"") {
        line.clear();
    }
    assert!(!marked(&mark).is_empty(), "the attempt runs");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel delivers the death signals; wait for it (a hang guard, not a timing check).
    wait_until(30, "the attempt's processes to end", || {
        marked(&mark).is_empty()
    });
}

#[test]
fn a_memory_hog_fails_with_the_memory_limit_as_reason() {
    let test = "a_memory_hog_fails_with_the_memory_limit_as_reason";
    if !namespaces(test) {
        return;
    }
    let repo = Repo::new();
    let mark = mark("hog");
    let file = repo.plan(
        "hog",
        &hostile_task(
            "hog",
            &mark,
            "memory = \"64M\"\ncpus = 1.5",
            "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived",
        ),
    );
    let run = repo.forge(&["run", &file, "--no-apply"]);
    if run.stdout.contains("cannot enforce memory") {
        skip(test, "no writable cgroup here");
        return;
    }
    assert_ne!(run.code, 0);
    assert!(
        run.stdout.contains("hog: failed")
            && run.stdout.contains("killed by its memory limit (64M)"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(marked(&mark), Vec::<i32>::new());
}

/// Without root: as an unprivileged user (Forge takes a user namespace for the PID namespace
/// itself) and under `unshare -Ur` (root in a user namespace, not on the host), the attempt is
/// still contained, and a limit that needs the host's cgroups is refused with a clear error
/// instead of being dropped.
#[test]
fn unprivileged_routes_contain_attempts_and_refuse_unenforceable_limits() {
    let test = "unprivileged_routes_contain_attempts_and_refuse_unenforceable_limits";
    let works = |args: &[&str]| {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .is_ok_and(|s| s.success())
    };
    let nobody = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ];
    let mut routes: Vec<(&str, Vec<&str>)> = Vec::new();
    if works(&[&nobody[..], &["unshare", "-U", "-r", "-p", "-f", "true"]].concat()) {
        routes.push(("unprivileged user", nobody.to_vec()));
    } else {
        skip(
            test,
            "an unprivileged user cannot have a user namespace here",
        );
    }
    if works(&[&nobody[..], &["unshare", "-U", "-r", "true"]].concat()) {
        routes.push((
            "unshare -Ur",
            [&nobody[..], &["unshare", "-U", "-r", "--"]].concat(),
        ));
    }
    for (route, prefix) in routes {
        let repo = Repo::new();
        let home = tempfile::tempdir().unwrap();
        for dir in [repo.path(), home.path()] {
            assert!(works(&["chmod", "-R", "a+rwX", dir.to_str().unwrap()]));
        }
        let mark = mark(&route.replace(' ', "-"));
        let file = repo.plan(
            "userns",
            &format!(
                "{}{}{PROC_TASK}",
                hostile_task("t", &mark, "", "echo done > t.txt").replace(
                    "writes = [\"**\"]",
                    "writes = [\"t.txt\", \"held\", \"daemon\"]"
                ),
                "[[task]]\nid = \"limited\"\nagent = \"shell\"\nwrites = [\"l\"]\nmemory = \"1G\"\nprompt = \"true\"\n",
            ),
        );
        let mut cmd = std::process::Command::new(prefix[0]);
        cmd.args(&prefix[1..])
            .arg(env!("CARGO_BIN_EXE_forge"))
            .args(["run", &file, "--no-apply"])
            .current_dir(repo.path())
            .env("HOME", home.path())
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "safe.directory")
            .env("GIT_CONFIG_VALUE_0", "*")
            .stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FORGE_") {
                cmd.env_remove(&key);
            }
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("t: succeeded"),
            "{route}: {stdout}\n{stderr}"
        );
        assert!(!stdout.contains("warning:"), "{route}: {stdout}");
        assert!(
            stdout.contains("limited: failed") && stdout.contains("cannot enforce memory = 1G"),
            "{route}: {stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("proc: succeeded"),
            "{route}: the attempt saw the host's /proc: {stdout}\n{stderr}"
        );
        assert_eq!(marked(&mark), Vec::<i32>::new(), "{route}");
    }
}

/// A task that succeeds only where its `/proc` is its own namespace's: a handful of processes
/// (its init, the shell, `ls`), PID 1 being Forge's init, not the host's hundreds.
const PROC_TASK: &str = "\n[[task]]\nid = \"proc\"\nagent = \"shell\"\nwrites = [\"p.txt\"]\nprompt = \"n=$(ls /proc | grep -c ^[0-9]); test $n -lt 10 && echo $n > p.txt\"\n";

/// Where no PID namespace can be had (here: an unprivileged user in a user namespace that maps
/// no one, so it may create no other), attempts run in their process group, the run says so
/// once, and `[isolation] require = true` refuses to start.
#[test]
fn without_namespaces_the_run_warns_once_or_refuses_when_isolation_is_required() {
    let test = "without_namespaces_the_run_warns_once_or_refuses_when_isolation_is_required";
    let prefix = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
        "unshare",
        "-U",
        "--",
    ];
    let works = std::process::Command::new(prefix[0])
        .args(&prefix[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        skip(
            test,
            "cannot run as an unprivileged user in an unmapped user namespace",
        );
        return;
    }
    let repo = Repo::new();
    let two = "[[task]]\nid = \"a\"\nagent = \"shell\"\nwrites = [\"a.txt\"]\nprompt = \"echo a > a.txt\"\n\n\
               [[task]]\nid = \"b\"\nagent = \"shell\"\nwrites = [\"b.txt\"]\nprompt = \"echo b > b.txt\"\n";
    let open = repo.plan("open", two);
    let strict = repo.plan("strict", &format!("[isolation]\nrequire = true\n\n{two}"));
    let home = tempfile::tempdir().unwrap();
    for dir in [repo.path(), home.path()] {
        assert!(
            std::process::Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(dir)
                .status()
                .unwrap()
                .success()
        );
    }
    let forge = |plan: &str| {
        let mut cmd = std::process::Command::new(prefix[0]);
        cmd.args(&prefix[1..])
            .arg(env!("CARGO_BIN_EXE_forge"))
            .args(["run", plan, "--no-apply"])
            .current_dir(repo.path())
            .env("HOME", home.path())
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "safe.directory")
            .env("GIT_CONFIG_VALUE_0", "*")
            .stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FORGE_") {
                cmd.env_remove(&key);
            }
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = forge(&open);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout
            .matches("warning: attempts run without their own PID namespace")
            .count(),
        1,
        "{stdout}"
    );
    let (code, stdout, stderr) = forge(&strict);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the plan requires isolation (`[isolation] require = true`)"),
        "{stderr}"
    );
    assert!(!stdout.contains("started attempt"), "{stdout}");
}

/// Through the real binary, as this user, as an unprivileged user and under `unshare -Ur`: a
/// hostile task's every route to the repository (`$PWD`, `cd ..`, the absolute path,
/// `git -C <repo>`, `.forge/`, the user's `.git`, unmounting its view, the host's `/proc`,
/// `setsid`, a daemon) lands in its workspace, and the user's working tree, `.git` and `.forge`
/// are byte-identical afterwards, with nothing of the attempt alive.
#[test]
#[allow(clippy::too_many_lines)] // three routes, one hostile run each, every check spelled out
fn every_route_to_the_repository_lands_in_the_workspace_on_every_privilege_route() {
    let test = "every_route_to_the_repository_lands_in_the_workspace_on_every_privilege_route";
    if !namespaces(test) {
        return;
    }
    let works = |args: &[&str]| {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let nobody = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ];
    let mut routes: Vec<(&str, Vec<&str>)> = vec![("this user", Vec::new())];
    if works(&[&nobody[..], &["unshare", "-U", "-r", "-m", "true"]].concat()) {
        routes.push(("unprivileged user", nobody.to_vec()));
        routes.push((
            "unshare -Ur",
            [&nobody[..], &["unshare", "-U", "-r", "--"]].concat(),
        ));
    } else {
        skip(
            test,
            "an unprivileged user cannot have a user namespace here: only this user's route runs",
        );
    }
    for (route, prefix) in routes {
        let repo = Repo::new();
        let home = tempfile::tempdir().unwrap();
        for dir in [repo.path(), home.path()] {
            assert!(works(&["chmod", "-R", "a+rwX", dir.to_str().unwrap()]));
        }
        let forge = |plan: &str| {
            let mut cmd = std::process::Command::new(if prefix.is_empty() {
                env!("CARGO_BIN_EXE_forge")
            } else {
                prefix[0]
            });
            if !prefix.is_empty() {
                cmd.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_forge"));
            }
            cmd.args(["run", plan, "--no-apply"])
                .current_dir(repo.path())
                .env("HOME", home.path())
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "safe.directory")
                .env("GIT_CONFIG_VALUE_0", "*")
                .stdin(Stdio::null());
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("FORGE_") {
                    cmd.env_remove(&key);
                }
            }
            let out = cmd.output().unwrap();
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        // An earlier run, so that `.forge` holds a journal the hostile task could reach.
        let first = repo.plan(
            "first",
            "[[task]]\nid = \"first\"\nagent = \"shell\"\nwrites = [\"a\"]\nprompt = \"echo a > a\"\n",
        );
        let (stdout, stderr) = forge(&first);
        assert!(
            stdout.contains("first: succeeded"),
            "{route}: {stdout}\n{stderr}"
        );
        let mark = mark(&format!("view-{}", route.replace(' ', "-")));
        let file = repo.plan(
            "hostile",
            &format!(
                "[[task]]\nid = \"hostile\"\nagent = \"shell\"\nwrites = [\"**\"]\n\
                 env = {{ FORGE_TEST_MARK = \"{mark}\" }}\nprompt = '''{}'''\n",
                forge_testkit::hostile::every_route(repo.path()).unwrap()
            ),
        );
        let user_tree = forge_testkit::hostile::tree(repo.path(), &[".forge"]).unwrap();
        let forge_before = forge_testkit::hostile::tree(&repo.path().join(".forge"), &[]).unwrap();
        let (stdout, stderr) = forge(&file);
        let log = repo
            .runs()
            .iter()
            .filter(|r| r.starts_with("hostile"))
            .map(|r| repo.read(&format!(".forge/runs/{r}/tasks/hostile/1/output.log")))
            .collect::<String>();
        assert!(
            stdout.contains("hostile: succeeded"),
            "{route}: {stdout}\n{stderr}\n{log}"
        );
        assert!(!stdout.contains("warning:"), "{route}: {stdout}");
        let after = forge_testkit::hostile::tree(repo.path(), &[".forge"]).unwrap();
        assert_eq!(
            forge_testkit::hostile::changed(&user_tree, &after),
            Vec::<String>::new(),
            "{route}: the user's tree or .git changed"
        );
        let forge_after = forge_testkit::hostile::tree(&repo.path().join(".forge"), &[]).unwrap();
        for (path, before) in &forge_before {
            if !path.ends_with('/') {
                assert_eq!(
                    forge_after.get(path),
                    Some(before),
                    "{route}: .forge/{path} changed"
                );
            }
        }
        assert!(!forge_after.contains_key("pwned"), "{route}");
        assert_eq!(marked(&mark), Vec::<i32>::new(), "{route}");
    }
}

/// A gate command carries the run's id, and what it started (a `setsid` child included) does
/// not outlive a Forge killed with SIGKILL once the run is resumed: the PID namespace takes it
/// along where the host has one, `forge resume` finds it by `FORGE_RUN_ID` where not.
#[test]
fn a_gate_command_carries_the_run_id_and_ends_with_a_killed_forge_and_resume() {
    let repo = Repo::new();
    let mark = mark("gate-crash");
    let flags = tempfile::tempdir().unwrap();
    let d = flags.path().display();
    // The first time it leaves a `setsid` child and waits; the resumed run's gate passes.
    let gate = format!(
        "echo \"$FORGE_RUN_ID\" > {d}/run-id; if [ -e {d}/first ]; then echo gate-ok; else \
         setsid sh -c 'touch {d}/first; exec sleep 1000' </dev/null >/dev/null 2>&1 & \
         while [ ! -e {d}/first ]; do sleep 0.01; done; exec sleep 1000; fi"
    );
    let file = repo.plan(
        "gated",
        &format!(
            "{}[gate]\ncommands = ['''{gate}''']\n",
            crate::util::task("a", "writes = [\"a/**\"]", "write a/x\nx\nend")
        ),
    );
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .env("FORGE_TEST_MARK", &mark)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(120, "the gate command's setsid child", || {
        flags.path().join("first").exists()
    });
    let run = repo.runs()[0].clone();
    assert_eq!(
        std::fs::read_to_string(flags.path().join("run-id"))
            .unwrap()
            .trim(),
        run,
        "the gate command's FORGE_RUN_ID"
    );
    assert!(
        marked(&mark).len() > 1,
        "the gate command and its child run"
    );
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    let out = repo.forge(&["resume", &run, "--no-apply"]).expect(0);
    assert!(out.stdout.contains("passed"), "{}", out.stdout);
    // A hang guard, not a timing check: the kernel's death signals may still be on their way.
    wait_until(30, "the first gate command's processes to end", || {
        marked(&mark).is_empty()
    });
}

/// An attempt's mount table holds no other workspace's mount, so
/// a sandbox in the agent that walks the table and remounts every entry (Codex's `bwrap`)
/// never trips over a workspace disposed of meanwhile on the host, and sibling workspaces are
/// not visible.
#[test]
fn an_attempt_sees_no_other_workspace_mounted() {
    if !namespaces("an_attempt_sees_no_other_workspace_mounted") {
        return;
    }
    let repo = Repo::new();
    let list = r"awk '/ - (overlay|fuse)/ && $5 ~ /\/\.forge\// { print $5 }' /proc/self/mountinfo";
    let plan = format!(
        "concurrency = 2\n\n\
         [[task]]\nid = \"a\"\nagent = \"shell\"\nwrites = [\"a.txt\"]\nprompt = '''sleep 2; echo a > a.txt'''\n\n\
         [[task]]\nid = \"b\"\nagent = \"shell\"\nwrites = [\"b.txt\"]\nprompt = '''sleep 0.5; {list} > b.txt; echo seen >> b.txt'''\n"
    );
    let file = repo.plan("mounts", &plan);
    let run = repo.forge(&["run", &file, "--yes"]).expect(0);
    assert!(run.stdout.contains("b: integrated"), "{}", run.stdout);
    assert_eq!(repo.read("a.txt"), "a\n");
    let seen = repo.read("b.txt");
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.last(), Some(&"seen"), "{seen}");
    // Its own workspace's mount only (git's fsmonitor hook finds its upper directory there;
    // the `.forge` of the view, a copy, shows it a second time, beside the covered original).
    let mounts = &lines[..lines.len() - 1];
    assert!(
        mounts.iter().all(|m| m.ends_with("/workspaces/b-1/merged")),
        "mounts of workspaces seen by b: {seen}"
    );
}

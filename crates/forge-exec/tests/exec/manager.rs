//! The `ExecutionManager` end to end: the simulated agent in real git repositories, real
//! workspaces, real merges, the gate, the apply, and crash resume.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use forge_agents::Profiles;
use forge_events::{Event, EventKind, RunId, TaskStatus, read_journal_bytes};
use forge_exec::plan::{Plan, PlanFormat, PlanOptions};
use forge_exec::store::RunStore;
use forge_exec::{ApplyMode, CancelHandle, ExecutionManager, RunReport, SchedulerOptions};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repository with a few committed files.
pub(crate) fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["config", "user.name", "Forge Test"]);
    git(dir.path(), &["config", "user.email", "test@forge.invalid"]);
    std::fs::write(dir.path().join(".gitignore"), ".forge/\n").unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "base"]);
    dir
}

pub(crate) fn profiles() -> Profiles {
    let mut p = Profiles::builtin();
    p.set_sim_program(forge_testkit::sim_agent(), Vec::new());
    p
}

pub(crate) fn plan(text: &str) -> Plan {
    match Plan::parse(
        text,
        Path::new("plan.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    ) {
        Ok(plan) => plan,
        Err(e) => panic!("{}", e.render()),
    }
}

/// A sim task's prompt: the script in a `forge-sim` block.
pub(crate) fn script(lines: &[&str]) -> String {
    format!("Do the work.\n```forge-sim\n{}\n```\n", lines.join("\n"))
}

fn quick() -> SchedulerOptions {
    SchedulerOptions {
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        jitter: false,
        kill_grace: Duration::from_secs(2),
        ..SchedulerOptions::default()
    }
}

pub(crate) async fn run(repo: &Path, plan: Plan, apply: ApplyMode) -> RunReport {
    ExecutionManager::builder()
        .repo(repo)
        .plan(plan)
        .profiles(profiles())
        .scheduler_options(quick())
        .apply(apply)
        .build()
        .unwrap()
        .run(CancelHandle::new())
        .await
        .unwrap()
}

pub(crate) fn journal(repo: &Path, run: &RunId) -> Vec<Event> {
    let path = RunStore::new(repo).journal(run);
    read_journal_bytes(&path, &std::fs::read(&path).unwrap()).unwrap()
}

fn read(repo: &Path, path: &str) -> String {
    std::fs::read_to_string(repo.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn status(report: &RunReport) -> BTreeMap<String, TaskStatus> {
    report
        .tasks
        .iter()
        .map(|t| (t.id.to_string(), t.status))
        .collect()
}

/// Processes still carrying the run's id in their environment.
fn leftover_processes(run: &RunId) -> Vec<u32> {
    let marker = format!("FORGE_RUN_ID={run}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(env) = std::fs::read(entry.path().join("environ"))
            && env.split(|b| *b == 0).any(|v| v == marker.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// A toml string literal holding `text`.
pub(crate) fn lit(text: &str) -> String {
    format!("'''\n{text}'''")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_disjoint_tasks_are_integrated_gated_and_applied() {
    let repo = repo(&[("README.md", "demo\n")]);
    let mut text = String::from(
        "name = \"four\"\nconcurrency = 4\n[defaults]\nagent = \"sim\"\n[gate]\ncommands = [\"test -f api/a.rs && test -f web/b.js && test -f tests/c.sh && test -f docs/d.md\"]\n",
    );
    for (id, dir, file) in [
        ("api", "api", "a.rs"),
        ("web", "web", "b.js"),
        ("tests", "tests", "c.sh"),
        ("docs", "docs", "d.md"),
    ] {
        let _ = write!(
            text,
            "[[task]]\nid = \"{id}\"\nwrites = [\"{dir}/**\"]\nprompt = {}\n",
            lit(&script(&[
                "say starting",
                "sleep 100ms",
                &format!("write {dir}/{file}"),
                &format!("made by {id}"),
                "end",
            ]))
        );
    }
    let report = run(repo.path(), plan(&text), ApplyMode::WorkingTree).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert!(report.gate.as_ref().unwrap().passed());
    assert_eq!(report.files_changed.len(), 4);
    assert!(report.applied.is_some());
    assert_eq!(read(repo.path(), "api/a.rs"), "made by api\n");
    assert_eq!(read(repo.path(), "docs/d.md"), "made by docs\n");
    // The journal tells the whole story, in order.
    let events = journal(repo.path(), &report.run);
    let types: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(types.first(), Some(&"run_started"));
    assert_eq!(types.last(), Some(&"run_finished"));
    for t in [
        "task_queued",
        "task_started",
        "task_progress",
        "merge_integrated",
        "gate_started",
        "gate_finished",
        "apply_finished",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    // Workspaces are gone.
    let work = RunStore::new(repo.path()).work_dir(&report.run);
    let left: Vec<_> = std::fs::read_dir(work.join("workspaces"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_after_another_sees_its_work() {
    let repo = repo(&[("README.md", "x\n")]);
    let text = format!(
        "[defaults]\nagent = \"sim\"\n\
         [[task]]\nid = \"first\"\nwrites = [\"a.txt\"]\nprompt = {}\n\
         [[task]]\nid = \"second\"\nafter = [\"first\"]\nreads = [\"a.txt\"]\nwrites = [\"b.txt\"]\nprompt = {}\n",
        lit(&script(&["write a.txt", "from the first task", "end"])),
        lit(&script(&["run cat a.txt > b.txt"])),
    );
    let report = run(repo.path(), plan(&text), ApplyMode::WorkingTree).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(read(repo.path(), "b.txt"), "from the first task\n");
}

/// Two tasks holding only an `appends` claim on CHANGELOG.md, each adding a line at its end.
fn changelog_plan(strategy: Option<&str>) -> String {
    let merge = strategy
        .map(|s| format!("[merge]\n\"CHANGELOG.md\" = \"{s}\"\n"))
        .unwrap_or_default();
    let mut text = format!("concurrency = 2\n[defaults]\nagent = \"sim\"\n{merge}");
    for (id, delay) in [("one", "100ms"), ("two", "600ms")] {
        let change = format!("append CHANGELOG.md - {id}");
        let _ = write!(
            text,
            "[[task]]\nid = \"{id}\"\nappends = [\"CHANGELOG.md\"]\nprompt = {}\n",
            lit(&script(&[&change, &format!("sleep {delay}")]))
        );
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_run_at_once_and_union_keeps_both_lines() {
    let repo = repo(&[("CHANGELOG.md", "# Changes\n")]);
    let report = run(
        repo.path(),
        plan(&changelog_plan(None)),
        ApplyMode::WorkingTree,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let log = read(repo.path(), "CHANGELOG.md");
    assert!(log.contains("- one\n") && log.contains("- two\n"), "{log}");
    // They ran at once: the second started before the first finished.
    let events = journal(repo.path(), &report.run);
    let at = |task: &str, ty: &str| {
        events
            .iter()
            .find(|e| {
                e.task.as_ref().is_some_and(|t| t.as_str() == task) && e.kind.type_name() == ty
            })
            .unwrap()
            .seq
    };
    assert!(at("two", "task_started") < at("one", "task_finished"));
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::MergeConflict { strategy, resolved: true, .. } if strategy == "union")),
        "the appends met and union settled it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_added_at_one_place_under_fail_are_a_conflict_naming_both_tasks() {
    let repo = repo(&[("CHANGELOG.md", "# Changes\nunreleased\n")]);
    let report = run(
        repo.path(),
        plan(&changelog_plan(Some("fail"))),
        ApplyMode::WorkingTree,
    )
    .await;
    assert_eq!(report.exit_code(), 3, "{report:#?}");
    assert!(report.applied.is_none());
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(
        report.conflicts[0].tasks,
        [
            forge_merge::Party::Task(forge_events::TaskId::new("one").unwrap()),
            forge_merge::Party::Task(forge_events::TaskId::new("two").unwrap())
        ]
    );
    let events = journal(repo.path(), &report.run);
    let conflict = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::MergeConflict {
                path,
                tasks,
                resolved,
                ..
            } => Some((path.clone(), tasks.clone(), *resolved)),
            _ => None,
        })
        .unwrap();
    assert_eq!(conflict.0.as_str(), "CHANGELOG.md");
    let names: Vec<&str> = conflict
        .1
        .iter()
        .map(forge_events::TaskId::as_str)
        .collect();
    assert_eq!(names, ["one", "two"]);
    assert!(!conflict.2);
    // Nothing was applied: the working tree is as it was.
    assert_eq!(read(repo.path(), "CHANGELOG.md"), "# Changes\nunreleased\n");
    // `forge apply` refuses too, saying why.
    let err = forge_exec::apply_run(repo.path(), &report.run, ApplyMode::WorkingTree)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unresolved on CHANGELOG.md"),
        "{err}"
    );
}

/// A merge driver inside a run goes through Forge's process runner: it sees the run's id (so a
/// resume after a crash finds and stops it) and `FORGE_TASK_ID=merge-driver`, and leaves no
/// process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_driver_runs_through_the_process_runner_with_the_runs_id() {
    let repo = repo(&[("CHANGELOG.md", "# Changes\nunreleased\n")]);
    let seen = tempfile::tempdir().unwrap();
    let env_file = seen.path().join("driver-env");
    let driver = format!(
        "driver:echo $FORGE_RUN_ID $FORGE_TASK_ID > {}; tail -n 1 %B >> %A",
        env_file.display()
    );
    let report = run(
        repo.path(),
        plan(&changelog_plan(Some(&driver))),
        ApplyMode::WorkingTree,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(
        read(repo.path(), "CHANGELOG.md"),
        "# Changes\nunreleased\n- one\n- two\n"
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        format!("{} merge-driver\n", report.run),
        "the driver ran without the run's environment: not through forge-exec's runner"
    );
    assert_eq!(leftover_processes(&report.run), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_driver_is_stopped_at_the_plans_driver_timeout() {
    let repo = repo(&[("CHANGELOG.md", "# Changes\nunreleased\n")]);
    // Without `driver_timeout` this driver would hold the merge for forge-merge's 2 minutes.
    let text = changelog_plan(Some("driver:sleep 600 & wait"))
        .replace("[merge]\n", "[merge]\ndriver_timeout = \"1s\"\n");
    let report = run(repo.path(), plan(&text), ApplyMode::WorkingTree).await;
    assert_eq!(report.exit_code(), 3, "{report:#?}");
    assert_eq!(report.conflicts.len(), 1, "{report:#?}");
    let note = report.conflicts[0].note.clone().unwrap_or_default();
    assert!(note.contains("did not finish within 1s"), "{note}");
    assert!(!report.conflicts[0].resolved);
    assert_eq!(read(repo.path(), "CHANGELOG.md"), "# Changes\nunreleased\n");
    assert_eq!(leftover_processes(&report.run), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_conflict_reruns_the_later_task_on_top() {
    let repo = repo(&[("CHANGELOG.md", "# Changes\n")]);
    let report = run(
        repo.path(),
        plan(&changelog_plan(Some("agent"))),
        ApplyMode::WorkingTree,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let log = read(repo.path(), "CHANGELOG.md");
    assert_eq!(log, "# Changes\n- one\n- two\n");
    let events = journal(repo.path(), &report.run);
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::TaskProgress { message, .. } if message.contains("re-running on top"))));
    // The re-run's prompt described the conflict.
    let store = RunStore::new(repo.path());
    let rerun = std::fs::read_to_string(
        store
            .attempt_dir(&report.run, "two", 1)
            .join("prompt-rerun1.md"),
    )
    .unwrap();
    assert!(
        rerun.contains("CHANGELOG.md") && rerun.contains("`one`"),
        "{rerun}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_skips_and_timeouts() {
    let repo = repo(&[("README.md", "x\n")]);
    let text = format!(
        "[defaults]\nagent = \"sim\"\n\
         [[task]]\nid = \"flaky\"\nretries = 1\nwrites = [\"flaky.txt\"]\nprompt = {}\n\
         [[task]]\nid = \"broken\"\nprompt = {}\n\
         [[task]]\nid = \"downstream\"\nafter = [\"broken\"]\nprompt = {}\n\
         [[task]]\nid = \"stuck\"\ntimeout = \"1s\"\nprompt = {}\n",
        lit(&script(&[
            "fail-on-attempt 1 7",
            "write flaky.txt",
            "ok",
            "end"
        ])),
        lit(&script(&["say giving up", "fail 2"])),
        lit(&script(&["say never runs"])),
        lit(&script(&["run sleep 60 &", "hang"])),
    );
    let report = run(repo.path(), plan(&text), ApplyMode::WorkingTree).await;
    let st = status(&report);
    assert_eq!(st["flaky"], TaskStatus::Succeeded);
    assert_eq!(report.tasks[0].attempts, 2);
    assert_eq!(st["broken"], TaskStatus::Failed);
    assert_eq!(st["downstream"], TaskStatus::Skipped);
    assert_eq!(
        report.tasks[2].reason.as_deref(),
        Some("skipped because `broken` did not succeed")
    );
    assert_eq!(st["stuck"], TaskStatus::TimedOut);
    assert_eq!(report.exit_code(), 1);
    assert!(report.applied.is_none() && report.gate.is_none());
    let events = journal(repo.path(), &report.run);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::TaskRetrying { attempt: 2, .. }))
    );
    // Nothing of the run is left running, grandchildren included.
    assert!(leftover_processes(&report.run).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_outside_the_claims_is_a_violation_and_not_integrated() {
    let repo = repo(&[("src/lib.rs", "// lib\n")]);
    let text = format!(
        "[defaults]\nagent = \"sim\"\n\
         [[task]]\nid = \"sneaky\"\nwrites = [\"docs/**\"]\nprompt = {}\n",
        lit(&script(&[
            "write docs/guide.md",
            "ok",
            "end",
            "replace src/lib.rs lib => hacked",
        ])),
    );
    let report = run(repo.path(), plan(&text), ApplyMode::WorkingTree).await;
    assert_eq!(status(&report)["sneaky"], TaskStatus::Failed);
    assert!(
        report.files_changed.is_empty(),
        "{:?}",
        report.files_changed
    );
    let events = journal(repo.path(), &report.run);
    let violation = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ClaimViolation { paths, policy } => Some((paths.clone(), policy.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        violation,
        (
            vec![forge_staging::RepoPath::new("src/lib.rs").unwrap()],
            "reject".to_owned()
        )
    );
    assert_eq!(read(repo.path(), "src/lib.rs"), "// lib\n");
    assert!(!repo.path().join("docs/guide.md").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_writes_ordered_by_after_never_run_at_once() {
    let repo = repo(&[("src/lib.rs", "v0\n")]);
    let text = format!(
        "concurrency = 4\n[defaults]\nagent = \"sim\"\n\
         [[task]]\nid = \"a\"\nwrites = [\"src/**\"]\nprompt = {}\n\
         [[task]]\nid = \"b\"\nafter = [\"a\"]\nwrites = [\"src/lib.rs\"]\nprompt = {}\n",
        lit(&script(&["sleep 300ms", "replace src/lib.rs v0 => v1"])),
        lit(&script(&["replace src/lib.rs v1 => v2"])),
    );
    let report = run(repo.path(), plan(&text), ApplyMode::WorkingTree).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(read(repo.path(), "src/lib.rs"), "v2\n");
    let events = journal(repo.path(), &report.run);
    let ts = |task: &str, ty: &str| {
        events
            .iter()
            .find(|e| {
                e.task.as_ref().is_some_and(|t| t.as_str() == task) && e.kind.type_name() == ty
            })
            .unwrap()
            .ts
    };
    assert!(ts("b", "task_started") >= ts("a", "task_finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_agent_binary_is_an_error_before_the_run() {
    let repo = repo(&[("README.md", "x\n")]);
    let mut profiles = profiles();
    profiles.set_sim_program("/nonexistent/forge-sim", Vec::new());
    let err = ExecutionManager::builder()
        .repo(repo.path())
        .plan(plan(
            "[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"x\"\n",
        ))
        .profiles(profiles)
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sim"), "{text}");
    // Nothing was started: no run in the store.
    assert!(
        forge_events::list_runs(&RunStore::new(repo.path()).runs_dir())
            .unwrap()
            .is_empty()
    );
}

// ---- crash resume ----------------------------------------------------------------------

/// The plan of the crash test: six tasks in a small DAG, each counting its invocations in a
/// side-channel file, with a retry, appends merged by union and a gate.
fn crash_plan(count_file: &Path) -> String {
    let count = count_file.display();
    let mut text = String::from(
        "name = \"crash\"\nconcurrency = 2\n[defaults]\nagent = \"sim\"\n\
         [gate]\ncommands = [\"test -f api/a.txt && test -f docs/d.txt\"]\n",
    );
    let tasks: [(&str, &str, &str, &[&str]); 6] = [
        ("models", "models/**", "", &[]),
        ("api", "api/**", "models/**", &["models"]),
        ("web", "web/**", "models/**", &["models"]),
        ("tests", "tests/**", "api/**", &["api"]),
        ("docs", "docs/**", "", &["web"]),
        ("notes", "notes/**", "", &[]),
    ];
    for (id, writes, reads, after) in tasks {
        let dir = writes.trim_end_matches("/**");
        let mut lines = vec![
            format!("run echo {id} >> {count}"),
            format!("say working on {id}"),
            "sleep 150ms".to_owned(),
            format!("write {dir}/{}.txt", &id[..1]),
            format!("content of {id}"),
            "end".to_owned(),
            format!("append CHANGELOG.md - {id}"),
        ];
        if id == "web" {
            lines.insert(1, "fail-on-attempt 1 3".to_owned());
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let _ = write!(
            text,
            "[[task]]\nid = \"{id}\"\nwrites = [\"{writes}\"]\nappends = [\"CHANGELOG.md\"]\n{}{}{}prompt = {}\n",
            if reads.is_empty() {
                String::new()
            } else {
                format!("reads = [\"{reads}\"]\n")
            },
            if after.is_empty() {
                String::new()
            } else {
                format!("after = {after:?}\n")
            },
            if id == "web" { "retries = 1\n" } else { "" },
            lit(&script(&lines)),
        );
    }
    text
}

/// The child process of the crash test: runs the plan in `FORGE_CRASH_REPO` until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_at_any_point_resumes_to_the_same_result as its child process"]
async fn crash_child() {
    let repo = PathBuf::from(std::env::var("FORGE_CRASH_REPO").unwrap());
    let count = PathBuf::from(std::env::var("FORGE_CRASH_COUNT").unwrap());
    let report = run(&repo, plan(&crash_plan(&count)), ApplyMode::WorkingTree).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
}

/// Every file of a working tree but `.git` and `.forge`.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name();
            if name == ".git" || name == ".forge" {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                let mut text = std::fs::read_to_string(&p).unwrap();
                if name == "CHANGELOG.md" {
                    // Appends merged by union land in the order tasks happened to finish.
                    let mut lines: Vec<&str> = text.lines().collect();
                    lines.sort_unstable();
                    text = lines.join("\n");
                }
                out.insert(name, text);
            }
        }
    }
    out
}

fn bytecount_lines(bytes: &[u8]) -> usize {
    // Complete lines only: a torn last line has no newline yet.
    bytes.split(|b| *b == b'\n').count() - 1
}

fn counts(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *out.entry(line.to_owned()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_any_point_resumes_to_the_same_result() {
    let files = [
        ("CHANGELOG.md", "# Changes\n"),
        ("README.md", "crash test\n"),
    ];
    // The uninterrupted run.
    let base = repo(&files);
    let base_count = base.path().join("../count-base");
    let report = run(
        base.path(),
        plan(&crash_plan(&base_count)),
        ApplyMode::WorkingTree,
    )
    .await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let expected = tree(base.path());
    let total_events = journal(base.path(), &report.run).len();
    assert!(total_events > 40, "{total_events}");
    let _ = std::fs::remove_file(&base_count);

    // Kill -9 at 20 points spread over the run, then resume each.
    let points: Vec<usize> = (0..20).map(|i| 1 + i * (total_events - 2) / 19).collect();
    let exe = std::env::current_exe().unwrap();
    for &point in &points {
        let repo = repo(&files);
        let count = repo.path().join(".git/forge-count");
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "manager::crash_child",
                "--ignored",
                "--nocapture",
            ])
            .env("FORGE_CRASH_REPO", repo.path())
            .env("FORGE_CRASH_COUNT", &count)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let runs_dir = RunStore::new(repo.path()).runs_dir();
        let started = Instant::now();
        let mut finished_early = false;
        loop {
            let lines = std::fs::read_dir(&runs_dir)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(Result::ok)
                .and_then(|e| std::fs::read(e.path().join("events.jsonl")).ok())
                .map_or(0, |b| bytecount_lines(&b));
            if lines >= point {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                finished_early = true;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_mins(1),
                "child stuck at point {point}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let run = RunStore::new(repo.path()).latest_run().unwrap().unwrap();
        // What had finished when the process died.
        let before = journal(repo.path(), &run);
        let finished: Vec<String> = forge_events::RunState::from_events(&before)
            .tasks
            .iter()
            .filter(|t| t.status.status() == Some(TaskStatus::Succeeded))
            .map(|t| t.id.to_string())
            .collect();
        let counted = counts(&count);
        let ended = before.iter().any(|e| e.kind.type_name() == "run_finished");
        if ended {
            assert!(finished_early || point >= total_events - 2);
        } else {
            let report = ExecutionManager::builder()
                .repo(repo.path())
                .resume(run.clone())
                .profiles(profiles())
                .scheduler_options(quick())
                .apply(ApplyMode::WorkingTree)
                .build()
                .unwrap()
                .run(CancelHandle::new())
                .await
                .unwrap();
            assert_eq!(report.exit_code(), 0, "point {point}: {report:#?}");
            assert!(report.resumed);
        }
        assert_eq!(tree(repo.path()), expected, "point {point}");
        let after = counts(&count);
        for task in &finished {
            assert_eq!(
                after.get(task),
                counted.get(task),
                "point {point}: `{task}` had finished and ran again"
            );
        }
        assert!(leftover_processes(&run).is_empty(), "point {point}");
    }
}

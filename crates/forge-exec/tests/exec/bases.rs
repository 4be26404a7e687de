//! The base snapshots a run starts from, as attempts see them through their view of the
//! repository: a base cached in `.forge/bases` by an older version is captured again (it lacks
//! the link to the user's git directory the view needs), and git's fsmonitor fast path works
//! inside the view (a fresh overlay workspace's `git status` reads the upper directory only).

use std::io::Write as _;
use std::path::Path;

use forge_events::TaskStatus;
use forge_exec::process::{PidNamespaceSupport, pid_namespace_support};
use forge_exec::{ApplyMode, CancelHandle, ExecutionManager, RunReport};
use forge_staging::{BaseSnapshot, StagerKind, USER_GIT_LINK};

async fn run(
    repo: &Path,
    kind: StagerKind,
    plan: &str,
) -> Result<RunReport, forge_exec::ExecError> {
    ExecutionManager::builder()
        .repo(repo)
        .plan(crate::manager::plan(plan))
        .profiles(crate::manager::profiles())
        .stager(kind)
        .apply(ApplyMode::WorkingTree)
        .build()
        .unwrap()
        .run(CancelHandle::new())
        .await
}

fn succeeded(report: &RunReport) {
    let task = &report.tasks[0];
    assert_eq!(
        task.status,
        TaskStatus::Succeeded,
        "{:?} {:?}",
        task.reason,
        task.outcome
    );
}

/// The one cached base of `repo` (`.forge/bases/<commit>`).
fn cached_base(repo: &Path) -> std::path::PathBuf {
    let bases = repo.join(".forge/bases");
    let dirs: Vec<_> = std::fs::read_dir(&bases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_base_cached_by_an_older_version_is_captured_again() {
    let repo = crate::manager::repo(&[("README.md", "# hi\n")]);
    let first = run(
        repo.path(),
        StagerKind::Auto,
        "[[task]]\nid = \"first\"\nagent = \"shell\"\nwrites = [\"a\"]\nprompt = \"echo a > a\"\n",
    )
    .await
    .unwrap();
    succeeded(&first);
    let cached = cached_base(repo.path());
    assert!(BaseSnapshot::is_current(&cached));
    // The cache as the version before the link existed left it: a version 1 record, no link.
    let record_path = cached.join("snapshot.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["version"] = 1.into();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    std::fs::remove_file(cached.join(USER_GIT_LINK)).unwrap();
    // ... and its manifest as JSON.
    let bin = cached.join("manifest.bin");
    let manifest = forge_staging::Manifest::decode(&std::fs::read(&bin).unwrap()).unwrap();
    std::fs::write(
        cached.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&bin).unwrap();
    let old = BaseSnapshot::open(&cached).expect("an older record still opens (resume)");
    assert!(!BaseSnapshot::is_current(&cached));
    assert_eq!(old.user_git_link(), None);

    // The agent reads the user's history, which its view reaches through the link only.
    let second = run(
        repo.path(),
        StagerKind::Auto,
        "[[task]]\nid = \"log\"\nagent = \"shell\"\nwrites = [\"log.txt\"]\n\
         prompt = '''set -e\ngit log -1 --format=%s > log.txt\n'''\n",
    )
    .await
    .unwrap();
    succeeded(&second);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("log.txt")).unwrap(),
        "base\n"
    );
    let cached = cached_base(repo.path());
    assert!(
        BaseSnapshot::is_current(&cached),
        "the old cache was used as it was"
    );
    assert!(
        BaseSnapshot::open(&cached)
            .unwrap()
            .user_git_link()
            .is_some()
    );
}

#[tokio::test]
async fn the_fsmonitor_hook_reports_the_upper_directory_inside_the_view() {
    let test = "the_fsmonitor_hook_reports_the_upper_directory_inside_the_view";
    if let PidNamespaceSupport::Unavailable(why) = pid_namespace_support() {
        assert!(
            std::env::var_os("FORGE_REQUIRE_CONTAINMENT").is_none_or(|v| v != "1"),
            "{test}: containment is required (FORGE_REQUIRE_CONTAINMENT=1) but unavailable: {why}"
        );
        let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
        return;
    }
    let repo = crate::manager::repo(&[("README.md", "# hi\n"), ("src/lib.rs", "x\n")]);
    let script = format!(
        "set -e\ntest \"$PWD\" = '{repo}'\necho new > new.txt\n\
         sh .git/forge-fsmonitor 2 forge-snapshot | tr '\\0' '\\n' > hook.txt\n\
         git status --porcelain --untracked-files=all > status.txt\n",
        repo = repo.path().display()
    );
    let report = run(
        repo.path(),
        StagerKind::Overlay,
        &format!(
            "[[task]]\nid = \"hook\"\nagent = \"shell\"\nwrites = [\"**\"]\nprompt = '''{script}'''\n"
        ),
    )
    .await;
    let report = match report {
        Err(e) if e.to_string().contains("is not available here") => {
            let required = std::env::var("FORGE_REQUIRE_STRATEGIES").unwrap_or_default();
            assert!(
                !required
                    .split(',')
                    .any(|r| r == "all" || r.starts_with("overlay")),
                "{test}: overlay is required (FORGE_REQUIRE_STRATEGIES={required}): {e}"
            );
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {e}");
            return;
        }
        other => other.unwrap(),
    };
    succeeded(&report);
    let hook = std::fs::read_to_string(repo.path().join("hook.txt")).unwrap();
    let lines: Vec<&str> = hook.lines().collect();
    assert_eq!(lines.first(), Some(&"forge-snapshot"), "{hook:?}");
    // What the agent wrote, and nothing else: not "everything changed" (`/`).
    assert!(lines.contains(&"new.txt"), "{hook:?}");
    assert!(
        !lines.contains(&"/"),
        "the hook reported every path: {hook:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("README")), "{hook:?}");
    let status = std::fs::read_to_string(repo.path().join("status.txt")).unwrap();
    assert!(status.contains("?? new.txt"), "{status:?}");
    assert!(!status.contains("README.md"), "{status:?}");
}

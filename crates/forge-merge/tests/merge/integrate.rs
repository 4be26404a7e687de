//! The merge queue: taking, merging, conflicts and their strategies, audit, persistence.

use std::sync::Arc;

use forge_merge::{
    AuditPolicy, CommandOutcome, CommandRunner, ConflictKind, Integration, IntegrationStatus,
    MergeError, MergeRules, MergeStrategy, Merger, Party, Resolution, ResolveRequest, Resolver,
    ShellCommand, StandaloneRunner, audit,
};
use forge_staging::{Entry, RepoPath, Snapshot, StagerConfig, StagerKind};
use proptest::prelude::*;

use crate::common::{Fixture, lines, tid};

fn p(s: &str) -> RepoPath {
    RepoPath::new(s).unwrap()
}

/// `lines("line", n)` with line `i` (1-based) replaced by `with`.
fn edit_line(n: usize, i: usize, with: &str) -> String {
    let mut v: Vec<String> = lines("line", n).lines().map(str::to_owned).collect();
    with.clone_into(&mut v[i - 1]);
    v.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn takes_what_only_the_task_changed() {
    let f = Fixture::git(&[("a.txt", "a\n"), ("b.txt", "b\n"), ("gone.txt", "x\n")]);
    let mut i = f.integration();
    let t1 = f.task_from_base(&[("a.txt", Some("A\n")), ("gone.txt", None)]);
    let t2 = f.task_from_base(&[("b.txt", Some("B\n")), ("new/c.txt", Some("C\n"))]);
    let o1 = i.integrate(&tid("t1"), &t1, 1).unwrap();
    assert_eq!(o1.status, IntegrationStatus::Integrated);
    assert_eq!(o1.integrated, [p("a.txt"), p("gone.txt")]);
    assert!(o1.merged.is_empty() && o1.conflicts.is_empty());
    assert_eq!(o1.version, 1);
    let o2 = i.integrate(&tid("t2"), &t2, 2).unwrap();
    assert_eq!(o2.version, 2);
    assert_eq!(f.content(&i, "a.txt").unwrap(), "A\n");
    assert_eq!(f.content(&i, "new/c.txt").unwrap(), "C\n");
    assert!(i.get("gone.txt").is_none());
    assert_eq!(i.delta().len(), 4);
    assert_eq!(
        i.steps()
            .iter()
            .map(|s| s.task.as_str())
            .collect::<Vec<_>>(),
        ["t1", "t2"]
    );
    // The user's checkout was not touched.
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        "a\n"
    );
    assert_eq!(i.writers("a.txt"), ["t1"]);
    assert_eq!(i.manifest().len(), 3);
}

#[test]
fn merges_paths_changed_meanwhile_line_by_line() {
    let base = lines("line", 20);
    let f = Fixture::git(&[("CHANGELOG.md", &base)]);
    let mut i = f.integration();
    let t1 = f.task_from_base(&[("CHANGELOG.md", Some(&edit_line(20, 2, "first")))]);
    let t2 = f.task_from_base(&[("CHANGELOG.md", Some(&edit_line(20, 15, "second")))]);
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let o = i.integrate(&tid("t2"), &t2, 2).unwrap();
    assert_eq!(o.status, IntegrationStatus::Integrated);
    assert_eq!(o.merged, [p("CHANGELOG.md")]);
    let merged = f.content(&i, "CHANGELOG.md").unwrap();
    assert!(
        merged.contains("first\n") && merged.contains("second\n"),
        "{merged}"
    );
    assert_eq!(merged.lines().count(), 20);
    // The same change made twice is not a conflict.
    let t3 = f.task_from_base(&[("CHANGELOG.md", Some(&edit_line(20, 2, "first")))]);
    let o = i.integrate(&tid("t3"), &t3, 3).unwrap();
    assert_eq!(o.status, IntegrationStatus::Integrated);
    assert!(o.conflicts.is_empty());
}

#[test]
fn conflicts_report_both_tasks_and_the_hunk_and_keep_the_integrated_side() {
    let f = Fixture::git(&[("src/lib.rs", &lines("line", 5)), ("other", "o\n")]);
    let mut i = f.integration();
    let t1 = f.task_from_base(&[("src/lib.rs", Some(&edit_line(5, 3, "from api")))]);
    let t2 = f.task_from_base(&[
        ("src/lib.rs", Some(&edit_line(5, 3, "from docs"))),
        ("other", Some("O\n")),
    ]);
    i.integrate(&tid("api"), &t1, 1).unwrap();
    let o = i.integrate(&tid("docs"), &t2, 2).unwrap();
    assert_eq!(o.status, IntegrationStatus::Conflicted);
    assert_eq!(o.integrated, [p("other")], "the rest of the task goes in");
    let c = &o.conflicts[0];
    assert_eq!(
        (c.kind, c.tasks.as_slice(), c.resolved, &c.strategy),
        (
            ConflictKind::Content,
            [Party::Task(tid("api")), Party::Task(tid("docs"))].as_slice(),
            false,
            &MergeStrategy::Fail
        )
    );
    assert_eq!(
        c.hunks[0].text,
        "<<<<<<< api\nfrom api\n||||||| base\nline 3\n=======\nfrom docs\n>>>>>>> docs\n"
    );
    assert_eq!(
        (c.hunks[0].base.clone(), c.hunks[0].first.clone()),
        (2..3, 2..3)
    );
    let marked = String::from_utf8(f.store.read(&c.marked.unwrap()).unwrap()).unwrap();
    assert!(
        marked.starts_with("line 1\nline 2\n<<<<<<< api\n"),
        "{marked}"
    );
    assert_eq!(
        f.content(&i, "src/lib.rs").unwrap(),
        edit_line(5, 3, "from api")
    );
    assert_eq!(f.content(&i, "other").unwrap(), "O\n");
    assert_eq!(o.unresolved().count(), 1);
    assert!(o.to_string().contains("1 conflict(s) left unresolved"));
}

#[test]
fn ours_theirs_and_union_follow_task_order_not_finishing_order() {
    let base = "# Changes\n\n## Unreleased\n";
    let f = Fixture::git(&[("CHANGELOG.md", base), ("a.txt", "a\n")]);
    let rules = || {
        MergeRules::new([
            ("CHANGELOG.md", MergeStrategy::Union),
            ("*.txt", MergeStrategy::Theirs),
        ])
        .unwrap()
    };
    let t_early = f.task_from_base(&[
        ("CHANGELOG.md", Some(&format!("{base}- api\n"))),
        ("a.txt", Some("early\n")),
    ]);
    let t_late = f.task_from_base(&[
        ("CHANGELOG.md", Some(&format!("{base}- docs\n"))),
        ("a.txt", Some("late\n")),
    ]);
    let mut results = Vec::new();
    for finishing_order in [["early", "late"], ["late", "early"]] {
        let mut i = f.integration().with_strategies(rules());
        for name in finishing_order {
            let (changes, order) = if name == "early" {
                (&t_early, 1)
            } else {
                (&t_late, 2)
            };
            let o = i.integrate(&tid(name), changes, order).unwrap();
            assert_eq!(o.status, IntegrationStatus::Integrated, "{o:?}");
        }
        results.push((
            f.content(&i, "CHANGELOG.md").unwrap(),
            f.content(&i, "a.txt").unwrap(),
        ));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].0, format!("{base}- api\n- docs\n"));
    assert_eq!(results[0].1, "late\n");
}

#[test]
fn agent_conflicts_ask_for_a_rerun_or_go_to_the_resolver() {
    let f = Fixture::git(&[("x.rs", "fn x() {}\n"), ("y.rs", "y\n")]);
    let t1 = f.task_from_base(&[("x.rs", Some("fn x() { 1 }\n"))]);
    let t2 = f.task_from_base(&[("x.rs", Some("fn x() { 2 }\n")), ("y.rs", Some("Y\n"))]);
    let agent = || {
        MergeRules::new([])
            .unwrap()
            .with_default(MergeStrategy::Agent)
    };

    let mut i = f.integration().with_strategies(agent());
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let o = i.integrate(&tid("t2"), &t2, 2).unwrap();
    assert_eq!(
        o.status,
        IntegrationStatus::NeedsRerun {
            task: tid("t2"),
            on_top_of: 1
        }
    );
    assert!(o.integrated.is_empty());
    assert_eq!(o.conflicts[0].strategy, MergeStrategy::Agent);
    assert_eq!(
        f.content(&i, "y.rs").unwrap(),
        "y\n",
        "nothing of t2 went in"
    );
    assert_eq!(i.version(), 1);
    let json = serde_json::to_value(&o).unwrap();
    assert_eq!(json["status"]["kind"], "needs_rerun");
    assert_eq!(json["status"]["on_top_of"], 1);
    let back: forge_merge::IntegrationOutcome = serde_json::from_value(json).unwrap();
    assert_eq!(back, o);

    struct Both;
    impl Resolver for Both {
        fn resolve(&self, r: &ResolveRequest<'_>) -> Result<Resolution, MergeError> {
            assert_eq!(
                r.conflict.tasks,
                [Party::Task(tid("t1")), Party::Task(tid("t2"))]
            );
            Ok(Resolution::Content(b"fn x() { 1 + 2 }\n".to_vec()))
        }
    }
    let mut i = f
        .integration()
        .with_strategies(agent())
        .with_resolver(Arc::new(Both));
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let o = i.integrate(&tid("t2"), &t2, 2).unwrap();
    assert_eq!(o.status, IntegrationStatus::Integrated);
    assert!(o.conflicts[0].resolved);
    assert_eq!(f.content(&i, "x.rs").unwrap(), "fn x() { 1 + 2 }\n");
}

#[test]
fn a_driver_merges_with_a_real_command() {
    let f = Fixture::git(&[("deps.lock", "a 1\nc 1\n")]);
    // A git-style driver: keep the sorted union of both sides' lines, written into %A.
    let driver = MergeStrategy::Driver("sort -u %A %B -o %A.sorted && mv %A.sorted %A".into());
    let mut i = f
        .integration()
        .with_strategies(MergeRules::new([("*.lock", driver.clone())]).unwrap());
    let t1 = f.task_from_base(&[("deps.lock", Some("a 2\nc 1\n"))]);
    let t2 = f.task_from_base(&[("deps.lock", Some("a 3\nc 1\n"))]);
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let o = i.integrate(&tid("t2"), &t2, 2).unwrap();
    assert_eq!(o.status, IntegrationStatus::Integrated, "{o:?}");
    assert!(o.conflicts[0].resolved);
    assert_eq!(f.content(&i, "deps.lock").unwrap(), "a 2\na 3\nc 1\n");
}

/// A runner written by the caller: records each command line and where it ran, then runs it
/// with the stand-alone runner.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<(String, std::path::PathBuf)>>);

impl CommandRunner for Recording {
    fn run(&self, command: &ShellCommand<'_>) -> std::io::Result<CommandOutcome> {
        self.0
            .lock()
            .unwrap()
            .push((command.line.to_owned(), command.dir.to_path_buf()));
        StandaloneRunner.run(command)
    }
}

/// A driver goes through the runner the caller installed (also in an empty integration made
/// from it, as gate bisection makes), in the repository's top directory.
#[test]
fn a_driver_runs_through_the_installed_command_runner() {
    let f = Fixture::git(&[("deps.lock", "a 1\nc 1\n")]);
    let driver = MergeStrategy::Driver("sort -u %A %B -o %A.sorted && mv %A.sorted %A".into());
    let runner = Arc::new(Recording::default());
    let mut i = f
        .integration()
        .with_strategies(MergeRules::new([("*.lock", driver)]).unwrap())
        .with_command_runner(runner.clone());
    let t1 = f.task_from_base(&[("deps.lock", Some("a 2\nc 1\n"))]);
    let t2 = f.task_from_base(&[("deps.lock", Some("a 3\nc 1\n"))]);
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let o = i.integrate(&tid("t2"), &t2, 2).unwrap();
    assert!(o.conflicts[0].resolved, "{o:?}");
    assert_eq!(f.content(&i, "deps.lock").unwrap(), "a 2\na 3\nc 1\n");
    {
        let calls = runner.0.lock().unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].0.starts_with("sort -u '"), "{calls:?}");
        assert_eq!(calls[0].1, i.base().repo());
    }
    let mut again = Merger::empty(&i);
    again.integrate(&tid("t1"), &t1, 1).unwrap();
    again.integrate(&tid("t2"), &t2, 2).unwrap();
    assert_eq!(runner.0.lock().unwrap().len(), 2, "empty() kept the runner");
}

/// A driver the runner cannot start is an error naming its command line, never a silent drop.
#[test]
fn a_driver_that_cannot_start_is_an_error_naming_it() {
    struct Refusing;
    impl CommandRunner for Refusing {
        fn run(&self, _: &ShellCommand<'_>) -> std::io::Result<CommandOutcome> {
            Err(std::io::Error::other("no shell here"))
        }
    }
    let f = Fixture::git(&[("deps.lock", "a 1\n")]);
    let mut i = f
        .integration()
        .with_strategies(
            MergeRules::new([("*.lock", MergeStrategy::Driver("merge-it %A %B".into()))]).unwrap(),
        )
        .with_command_runner(Arc::new(Refusing));
    let t1 = f.task_from_base(&[("deps.lock", Some("a 2\n"))]);
    let t2 = f.task_from_base(&[("deps.lock", Some("a 3\n"))]);
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let err = i.integrate(&tid("t2"), &t2, 2).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("merge-it") && text.contains("no shell here"),
        "{text}"
    );
}

#[test]
fn other_kinds_of_conflict() {
    let f = Fixture::git(&[("m.txt", "m\n"), ("bin", "\0one"), ("dir/f", "f\n")]);
    let mut i = f.integration();
    let t1 = f.task_from_base(&[
        ("m.txt", None),
        ("bin", Some("\0two")),
        ("added", Some("one\n")),
        ("file", Some("x\n")),
    ]);
    let t2 = f.task_from_base(&[
        ("m.txt", Some("M\n")),
        ("bin", Some("\0three")),
        ("added", Some("two\n")),
        ("file/inside", Some("y\n")),
        ("dir", Some("now a file\n")),
    ]);
    i.integrate(&tid("t1"), &t1, 1).unwrap();
    let o = i.integrate(&tid("t2"), &t2, 2).unwrap();
    let kinds: Vec<_> = o
        .conflicts
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    assert!(
        kinds.contains(&("m.txt", ConflictKind::ModifyDelete)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("bin", ConflictKind::Binary)), "{kinds:?}");
    assert!(
        kinds.contains(&("added", ConflictKind::AddAdd)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("file/inside", ConflictKind::FileDirectory)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("dir", ConflictKind::FileDirectory)),
        "{kinds:?}"
    );
    assert!(i.get("file/inside").is_none() && i.get("dir").is_none());
    assert_eq!(f.content(&i, "dir/f").unwrap(), "f\n");
}

#[test]
fn symlinks_and_exec_bits() {
    let f = Fixture::git(&[("run.sh", "echo hi\n"), ("cfg", "c\n")]);
    let mut i = f.integration();
    let base = f.base.manifest().get("run.sh").unwrap().clone();
    let Entry::File { hash, size, .. } = base.clone() else {
        panic!()
    };
    // One task makes run.sh executable, another edits its content: both go in.
    let exec: forge_staging::ChangeSet = [(
        p("run.sh"),
        forge_staging::Change::Modified {
            before: base.clone(),
            after: Entry::file(hash, size, true),
        },
    )]
    .into_iter()
    .collect();
    let edit = f.task_from_base(&[("run.sh", Some("echo hello\n"))]);
    i.integrate(&tid("chmod"), &exec, 1).unwrap();
    let o = i.integrate(&tid("edit"), &edit, 2).unwrap();
    assert_eq!(o.status, IntegrationStatus::Integrated);
    let now = i.get("run.sh").unwrap();
    assert!(now.is_executable());
    assert_eq!(f.content(&i, "run.sh").unwrap(), "echo hello\n");
    // Turning a file into a symlink while another task edits it: a conflict.
    let cfg = f.base.manifest().get("cfg").unwrap().clone();
    let link: forge_staging::ChangeSet = [(
        p("cfg"),
        forge_staging::Change::Modified {
            before: cfg,
            after: Entry::symlink("../elsewhere"),
        },
    )]
    .into_iter()
    .collect();
    i.integrate(&tid("link"), &link, 3).unwrap();
    let o = i
        .integrate(&tid("edit2"), &f.task_from_base(&[("cfg", Some("C\n"))]), 4)
        .unwrap();
    assert_eq!(o.conflicts[0].kind, ConflictKind::Symlink);
}

#[test]
fn claim_violations_follow_the_policy() {
    let f = Fixture::git(&[("src/a.rs", "a\n"), ("README.md", "r\n")]);
    let changes = f.task_from_base(&[("src/a.rs", Some("A\n")), ("README.md", Some("R\n"))]);
    let claims = ["src/"];
    let violations = audit(&changes, &claims, |c, path| path.as_str().starts_with(c));
    assert_eq!(violations.len(), 1);
    for (policy, status, reported, applied) in [
        (AuditPolicy::Reject, IntegrationStatus::Rejected, 1, false),
        (AuditPolicy::Warn, IntegrationStatus::Integrated, 1, true),
        (AuditPolicy::Allow, IntegrationStatus::Integrated, 0, true),
    ] {
        let mut i = f.integration().with_audit_policy(policy);
        let o = i
            .integrate_audited(&tid("t"), &changes, 1, violations.clone())
            .unwrap();
        assert_eq!(o.status, status);
        assert_eq!(o.violations.len(), reported);
        assert_eq!(f.content(&i, "README.md").unwrap() == "R\n", applied);
    }
}

#[test]
fn save_open_and_snapshot_for_a_workspace() {
    let f = Fixture::git(&[("a", "a\n")]);
    let mut i = f.integration();
    let t = f.task_from_base(&[("a", Some("A\n")), ("b/c", Some("C\n"))]);
    i.integrate(&tid("t"), &t, 1).unwrap();
    let record = f.run.join("integration.json");
    i.save(&record).unwrap();
    let again = Integration::open(&record, f.base.clone(), f.store.clone()).unwrap();
    assert_eq!(again.delta(), i.delta());
    assert_eq!(again.version(), 1);
    // The same through the trait the pipeline holds; `empty` starts again from the base.
    let boxed: Box<dyn Merger> = Box::new(again);
    assert_eq!((boxed.version(), boxed.delta()), (1, i.delta()));
    let mut empty = boxed.empty();
    assert_eq!((empty.version(), empty.delta().len()), (0, 0));
    empty.integrate(&tid("t"), &t, 1).unwrap();
    assert_eq!(empty.delta(), i.delta());

    let snapshot: Snapshot = i.snapshot(&f.run.join("layers/1")).unwrap();
    let stager = StagerKind::Copy
        .build(&StagerConfig::new(&f.run, f.store.clone()), &f.base)
        .unwrap();
    let ws = stager.stage(&snapshot, "rerun").unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.host_path().join("b/c")).unwrap(),
        "C\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.host_path().join("a")).unwrap(),
        "A\n"
    );
    ws.dispose().unwrap();

    std::fs::write(&record, b"{").unwrap();
    assert!(matches!(
        Integration::open(&record, f.base.clone(), f.store.clone()),
        Err(MergeError::Corrupt { .. })
    ));
}

/// N tasks that each edit their own hunks of shared files (hunks apart by at least one line,
/// since git counts touching hunks as a conflict) and add files of their own.
fn disjoint_tasks() -> impl Strategy<Value = (usize, Vec<Vec<(usize, usize)>>, Vec<usize>)> {
    (2usize..6, 40usize..80).prop_flat_map(|(tasks, n)| {
        // Assign every third line to a random task (or nobody): slots never touch.
        let owners = prop::collection::vec(0..tasks + 1, n / 3);
        let order = Just((0..tasks).collect::<Vec<_>>()).prop_shuffle();
        (Just(n), owners, order).prop_map(move |(n, owners, order)| {
            let mut per_task = vec![Vec::new(); tasks];
            for (slot, owner) in owners.into_iter().enumerate() {
                if owner < tasks {
                    per_task[owner].push((slot * 3 + 1, slot % 3));
                }
            }
            (n, per_task, order)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Integrating changesets that touch disjoint hunks gives the same tree whatever order the
    /// tasks finish in, and it equals applying all their edits in sequence.
    #[test]
    fn order_independent_and_equal_to_sequential((n, per_task, order) in disjoint_tasks()) {
        let base: Vec<String> = (0..n).map(|i| format!("base {i}")).collect();
        let render = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
        let f = Fixture::plain(&[("shared.txt", &render(&base)), ("keep", "k\n")]);
        // Each task: edit kind 0 = replace the line, 1 = insert after it, 2 = delete it.
        let apply_edits = |lines: &[String], edits: &[(usize, usize)], task: usize| {
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                match edits.iter().find(|(at, _)| *at == i) {
                    Some((_, 0)) => out.push(format!("task {task} replaced {i}")),
                    Some((_, 1)) => {
                        out.push(l.clone());
                        out.push(format!("task {task} inserted after {i}"));
                    }
                    Some(_) => {}
                    None => out.push(l.clone()),
                }
            }
            out
        };
        let changes: Vec<_> = per_task
            .iter()
            .enumerate()
            .map(|(t, edits)| {
                let own = format!("own/{t}.txt");
                f.task_from_base(&[
                    ("shared.txt", Some(&render(&apply_edits(&base, edits, t)))),
                    (own.as_str(), Some("mine\n")),
                ])
            })
            .collect();
        let all: Vec<(usize, usize)> = per_task.iter().flatten().copied().collect();
        let expected = {
            let mut out = Vec::new();
            for (i, l) in base.iter().enumerate() {
                let owner = per_task.iter().position(|e| e.iter().any(|(at, _)| *at == i));
                match (owner, all.iter().find(|(at, _)| *at == i)) {
                    (Some(t), Some((_, 0))) => out.push(format!("task {t} replaced {i}")),
                    (Some(t), Some((_, 1))) => {
                        out.push(l.clone());
                        out.push(format!("task {t} inserted after {i}"));
                    }
                    (Some(_), Some(_)) => {}
                    _ => out.push(l.clone()),
                }
            }
            render(&out)
        };
        let mut trees = Vec::new();
        for finishing in [order.clone(), (0..per_task.len()).collect()] {
            let mut i = f.integration();
            for &t in &finishing {
                let o = i.integrate(&tid(&format!("t{t}")), &changes[t], t as u64).unwrap();
                prop_assert_eq!(o.status, IntegrationStatus::Integrated);
                prop_assert!(o.conflicts.is_empty());
            }
            prop_assert_eq!(f.content(&i, "shared.txt").unwrap(), expected.clone());
            trees.push(i.manifest());
        }
        prop_assert_eq!(&trees[0], &trees[1]);
    }

    /// Whatever tasks do to a few files, every change of a task is in the integrated tree
    /// right after it is integrated, or a conflict names the path.
    #[test]
    fn nothing_is_lost_without_a_conflict(
        tasks in prop::collection::vec(
            prop::collection::vec((0usize..4, 0usize..12, 0u8..4), 1..5),
            2..6,
        ),
        order in Just((0..6u64).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let files = ["a.txt", "b.txt", "c.txt", "d.txt"];
        let base_text = lines("base", 12);
        let f = Fixture::plain(&[
            ("a.txt", &base_text), ("b.txt", &base_text), ("c.txt", &base_text), ("d.txt", &base_text),
        ]);
        let mut i = f.integration();
        for (k, &t) in order.iter().filter(|&&t| (t as usize) < tasks.len()).enumerate() {
            // Each task starts from the integrated tree as it is now (as with locks granted
            // now) or from the base (appends, violations), alternately.
            let from_base = k % 2 == 0;
            let start = |path: &str| -> Option<String> {
                if from_base {
                    f.base.manifest().get(path).map(|e| String::from_utf8(f.store.read(&e.hash()).unwrap()).unwrap())
                } else {
                    f.content(&i, path)
                }
            };
            let mut edits: Vec<(String, Option<String>)> = Vec::new();
            let mut added_lines = Vec::new();
            for &(file, line, kind) in &tasks[t as usize] {
                let path = files[file];
                if edits.iter().any(|(p, _)| p == path) { continue; }
                let Some(text) = start(path) else { continue };
                let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
                let unique = format!("task {t} line {line} kind {kind}");
                match kind {
                    0 if line < v.len() => v[line] = unique.clone(),
                    1 => v.insert(line.min(v.len()), unique.clone()),
                    2 if line < v.len() => { v.remove(line); }
                    _ => { edits.push((path.to_owned(), None)); continue; }
                }
                if kind < 2 { added_lines.push((path.to_owned(), unique)); }
                edits.push((path.to_owned(), Some(v.iter().map(|l| format!("{l}\n")).collect())));
            }
            let edits_ref: Vec<(&str, Option<&str>)> =
                edits.iter().map(|(p, c)| (p.as_str(), c.as_deref())).collect();
            let changes = if from_base {
                f.task_from_base(&edits_ref)
            } else {
                f.changes(|p| i.get(p).cloned(), &edits_ref)
            };
            let o = i.integrate(&tid(&format!("t{t}")), &changes, t).unwrap();
            for (path, change) in &changes {
                let conflicted = o.conflicts.iter().any(|c| c.path == *path && !c.resolved);
                prop_assert!(
                    o.integrated.contains(path) || conflicted,
                    "{} lost without a conflict: {:?}", path, o
                );
                if conflicted { continue; }
                match change.after() {
                    None => prop_assert!(i.get(path.as_str()).is_none()),
                    Some(_) => {
                        let now = f.content(&i, path.as_str()).unwrap();
                        for (_, line) in added_lines.iter().filter(|(p, _)| p == path.as_str()) {
                            prop_assert!(now.lines().any(|l| l == line), "{} lost from {}", line, path);
                        }
                    }
                }
            }
        }
    }
}

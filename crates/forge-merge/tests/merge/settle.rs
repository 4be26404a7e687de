//! Settling, on apply, a conflict between tasks that no strategy settled
//! (`Integration::settle_clash`): compared with `git merge-file` on the same three versions,
//! the side integrated first being `ours` and the set-aside task `theirs`.

use forge_merge::{IntegrationStatus, OnConflict, TaskClash};

use crate::common::{Fixture, git_merge_file, lines, tid};

/// `lines("l", 10)` with the given 1-based lines replaced.
fn edited(edits: &[(usize, &str)]) -> String {
    let mut v: Vec<String> = lines("l", 10).lines().map(str::to_owned).collect();
    for (i, with) in edits {
        (*with).clone_into(&mut v[i - 1]);
    }
    v.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn settling_a_clash_between_tasks_is_what_git_merge_file_writes() {
    let cases = [
        (
            "a\nb\nc\n".to_owned(),
            "a\nB1\nc\n".to_owned(),
            "a\nB2\nc\n".to_owned(),
        ),
        (
            "start\n".to_owned(),
            "start\nfrom ours\n".to_owned(),
            "start\nfrom theirs\n".to_owned(),
        ),
        (
            lines("l", 10),
            edited(&[(2, "ours 2"), (8, "ours 8")]),
            edited(&[(2, "theirs 2"), (5, "theirs 5")]),
        ),
    ];
    for (base, ours, theirs) in &cases {
        for (how, args) in [
            (OnConflict::Markers, "--diff3"),
            (OnConflict::Ours, "--ours"),
            (OnConflict::Theirs, "--theirs"),
        ] {
            let f = Fixture::git(&[("f.txt", base)]);
            let mut i = f.integration();
            i.integrate(&tid("ours"), &f.task_from_base(&[("f.txt", Some(ours))]), 1)
                .unwrap();
            let set_aside = f.task_from_base(&[("f.txt", Some(theirs))]);
            let outcome = i.integrate(&tid("theirs"), &set_aside, 2).unwrap();
            assert_eq!(outcome.status, IntegrationStatus::Conflicted);
            let conflict = outcome.unresolved().next().unwrap().clone();
            let change = set_aside.get("f.txt").unwrap();
            let settled = i
                .settle_clash(
                    &TaskClash {
                        conflict: &conflict,
                        start: change.before(),
                        result: change.after(),
                    },
                    how,
                )
                .unwrap();
            assert_eq!(settled.ours, ["ours"]);
            assert_eq!(settled.theirs, "theirs");
            assert_eq!(settled.marked, how == OnConflict::Markers);
            assert!(!settled.kept);
            let (expected, _) =
                git_merge_file(base.as_bytes(), ours.as_bytes(), theirs.as_bytes(), &[args]);
            assert_eq!(
                f.content(&i, "f.txt").unwrap(),
                String::from_utf8(expected).unwrap(),
                "{how:?} on {base:?} / {ours:?} / {theirs:?}"
            );
        }
    }
}

#[test]
fn keep_and_agent_leave_the_integrated_side() {
    let f = Fixture::git(&[("f.txt", "a\nb\n")]);
    let mut i = f.integration();
    i.integrate(
        &tid("ours"),
        &f.task_from_base(&[("f.txt", Some("a\nB1\n"))]),
        1,
    )
    .unwrap();
    let set_aside = f.task_from_base(&[("f.txt", Some("a\nB2\n"))]);
    let outcome = i.integrate(&tid("theirs"), &set_aside, 2).unwrap();
    let conflict = outcome.unresolved().next().unwrap().clone();
    let change = set_aside.get("f.txt").unwrap();
    for how in [OnConflict::Keep, OnConflict::Agent] {
        let settled = i
            .settle_clash(
                &TaskClash {
                    conflict: &conflict,
                    start: change.before(),
                    result: change.after(),
                },
                how,
            )
            .unwrap();
        assert!(settled.kept && !settled.marked);
        assert_eq!(f.content(&i, "f.txt").unwrap(), "a\nB1\n");
    }
}

//! "Same hunks as git": `forge diff`'s rendering against the real `git diff --no-index` on
//! generated files (without git's indent heuristic, which the shared line diff does not use,
//! and without the function-name text git appends to hunk headers).

use forge_merge::diff_file;
use forge_staging::{ContentHash, Entry};
use proptest::prelude::*;

const WORDS: &[&str] = &["a", "b", "c", "{", "}", "", "  x = 1;", "fn f()", "d", "e"];

fn text(words: &[usize], final_newline: bool) -> Vec<u8> {
    let mut s = words
        .iter()
        .map(|&w| {
            WORDS
                .get(w)
                .map_or_else(|| format!("new {w}"), |s| (*s).to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n");
    if final_newline && !words.is_empty() {
        s.push('\n');
    }
    s.into_bytes()
}

/// The hunks of a unified diff: everything from the first `@@`, headers cut after their `@@`.
fn hunks(diff: &str) -> String {
    diff.lines()
        .skip_while(|l| !l.starts_with("@@"))
        .map(|l| match l.strip_prefix("@@") {
            Some(rest) => {
                let end = rest.find("@@").map_or(l.len(), |i| i + 4);
                format!("{}\n", &l[..end])
            }
            None => format!("{l}\n"),
        })
        .collect()
}

fn git_diff(old: &[u8], new: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old"), old).unwrap();
    std::fs::write(dir.path().join("new"), new).unwrap();
    let out = std::process::Command::new("git")
        .current_dir(dir.path())
        .args([
            "diff",
            "--no-index",
            "--no-indent-heuristic",
            "--no-color",
            "--no-ext-diff",
            "old",
            "new",
        ])
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hunks_equal_git_diff(
        old in prop::collection::vec(0..WORDS.len() + 6, 1..40),
        new in prop::collection::vec(0..WORDS.len() + 6, 1..40),
        nl in prop::array::uniform2(any::<bool>()),
    ) {
        let (old, new) = (text(&old, nl[0]), text(&new, nl[1]));
        prop_assume!(old != new);
        let entry = |c: &[u8]| Entry::file(ContentHash::of(c), c.len() as u64, false);
        let (eo, en) = (entry(&old), entry(&new));
        let ours = diff_file("f", Some((&eo, &old)), Some((&en, &new))).render(false);
        prop_assert_eq!(hunks(&ours), hunks(&git_diff(&old, &new)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A long file with a few scattered edits: hunks apart, joined, at both ends.
    #[test]
    fn scattered_edits_equal_git_diff(
        old in prop::collection::vec(0..WORDS.len() + 30, 10..80),
        edits in prop::collection::vec((any::<usize>(), 0..WORDS.len() + 30, any::<bool>()), 1..6),
        nl in any::<bool>(),
    ) {
        let mut new = old.clone();
        for (at, w, insert) in edits {
            let at = at % new.len();
            if insert { new.insert(at, w) } else { new[at] = w }
        }
        let (old, new) = (text(&old, nl), text(&new, nl));
        prop_assume!(old != new);
        let entry = |c: &[u8]| Entry::file(ContentHash::of(c), c.len() as u64, false);
        let (eo, en) = (entry(&old), entry(&new));
        let ours = diff_file("f", Some((&eo, &old)), Some((&en, &new))).render(false);
        prop_assert_eq!(hunks(&ours), hunks(&git_diff(&old, &new)));
    }
}

//! Plan-time claim-overlap analysis: which claim sets could not be held at the same time.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde::Serialize;

use crate::index::ClaimIndex;
use crate::{Claim, OwnerId};

/// Two claim sets that cannot be held at once, with the first pair of claims that clash and a
/// path both claims cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimOverlap {
    /// The owner listed first in the input.
    pub first: OwnerId,
    /// Its clashing claim.
    pub first_claim: Claim,
    /// The owner listed later.
    pub second: OwnerId,
    /// Its clashing claim.
    pub second_claim: Claim,
    /// A concrete path both claims cover.
    pub example_path: String,
}

impl fmt::Display for ClaimOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) and {} ({}) both claim `{}`",
            self.first, self.first_claim, self.second, self.second_claim, self.example_path
        )
    }
}

/// Every pair of claim sets that would conflict, in input order (by first set, then second).
///
/// Two sets conflict when one claim of each has incompatible modes and overlapping patterns.
/// Each pair of sets is reported once, with its first clashing pair of claims. Claims of the
/// same owner never conflict with each other. Indexed by literal directory, so plans with
/// thousands of tasks in distinct directories are analysed in near-linear time.
///
/// ```
/// use forge_locks::{claim_overlaps, Claim, OwnerId, TaskId};
///
/// let sets = vec![
///     (OwnerId::new(TaskId::new("backend")?, 0), vec![Claim::write("src/api/**")?]),
///     (OwnerId::new(TaskId::new("docs")?, 0), vec![Claim::write("docs/**")?, Claim::read("src/**")?]),
/// ];
/// let found = claim_overlaps(&sets);
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].to_string(),
///     "backend (write src/api/**) and docs (read src/**) both claim `src/api/a`");
/// # Ok::<(), forge_locks::LockError>(())
/// ```
pub fn claim_overlaps(sets: &[(OwnerId, Vec<Claim>)]) -> Vec<ClaimOverlap> {
    let mut index: ClaimIndex<usize> = ClaimIndex::default();
    for (i, (_, claims)) in sets.iter().enumerate() {
        index.insert_set(&Arc::from(claims.as_slice()), i);
    }
    // (first set, second set) -> (first claim, second claim), the earliest pair by claim order.
    let mut found: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
    for (i, (owner, claims)) in sets.iter().enumerate() {
        for (k, claim) in claims.iter().enumerate() {
            let _ = index.for_each_conflict(claim, |_, j, l| {
                if j > i && sets[j].0 != *owner {
                    found
                        .entry((i, j))
                        .and_modify(|best| *best = (*best).min((k, l)))
                        .or_insert((k, l));
                }
                ControlFlow::Continue(())
            });
        }
    }
    found
        .into_iter()
        .map(|((i, j), (k, l))| {
            let (a, b) = (&sets[i].1[k], &sets[j].1[l]);
            ClaimOverlap {
                first: sets[i].0.clone(),
                first_claim: a.clone(),
                second: sets[j].0.clone(),
                second_claim: b.clone(),
                example_path: a
                    .pattern
                    .example_common_path(&b.pattern)
                    .unwrap_or_else(|| a.pattern.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;

    fn set(name: &str, claims: &[Claim]) -> (OwnerId, Vec<Claim>) {
        (OwnerId::new(TaskId::new(name).unwrap(), 0), claims.to_vec())
    }

    #[test]
    fn reports_each_pair_once_in_order() {
        let w = |p| Claim::write(p).unwrap();
        let r = |p| Claim::read(p).unwrap();
        let a = |p| Claim::append(p).unwrap();
        let sets = [
            set("a", &[w("src/**"), w("CHANGELOG.md")]),
            set("b", &[w("src/api/x.rs"), r("src/lib.rs")]),
            set("c", &[r("docs/**"), a("CHANGELOG.md")]),
            set("d", &[a("CHANGELOG.md"), r("src/**")]),
            set("e", &[w("tests/**")]),
        ];
        let found = claim_overlaps(&sets);
        let pairs: Vec<(String, String, String)> = found
            .iter()
            .map(|c| {
                (
                    c.first.to_string(),
                    c.second.to_string(),
                    c.example_path.clone(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("a".into(), "b".into(), "src/api/x.rs".into()),
                ("a".into(), "c".into(), "CHANGELOG.md".into()),
                // The earliest clashing pair by claim order: write src/** vs read src/**.
                ("a".into(), "d".into(), "src/a".into()),
                ("b".into(), "d".into(), "src/api/x.rs".into()),
            ]
        );
        // c and d only append to CHANGELOG.md and read: compatible.
        assert_eq!(found[0].first_claim, w("src/**"));
        assert_eq!(found[0].second_claim, w("src/api/x.rs"));
    }

    #[test]
    fn same_owner_never_conflicts_with_itself() {
        let sets = [
            set("a", &[Claim::write("src/**").unwrap()]),
            set("a", &[Claim::write("src/x").unwrap()]),
        ];
        assert!(claim_overlaps(&sets).is_empty());
    }
}

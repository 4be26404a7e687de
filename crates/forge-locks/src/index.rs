//! An index of claims by their literal directory, so that conflict checks only look at claims
//! that could overlap.
//!
//! Every path a pattern matches starts with the pattern's leading literal segments
//! ([`Pattern::literal_dir`]). Two patterns can only overlap if one's literal directory is a
//! segment-prefix of the other's: `src/api/**` can meet `src/**` (ancestor) or
//! `src/api/v1/*.rs` (descendant), never `docs/**`. Buckets keyed by `<literal_dir>/` in a
//! `BTreeMap` make both lookups cheap: ancestors are point lookups, descendants a range.

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use crate::{Claim, LockMode, Pattern};

/// Claims indexed by literal directory, each with a value (a lock set or request id).
#[derive(Debug)]
pub(crate) struct ClaimIndex<T> {
    buckets: BTreeMap<Box<str>, Vec<(Pattern, LockMode, T)>>,
}

impl<T> Default for ClaimIndex<T> {
    fn default() -> Self {
        Self {
            buckets: BTreeMap::new(),
        }
    }
}

fn key_of(pattern: &Pattern) -> String {
    let dir = pattern.literal_dir();
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

impl<T: Copy + Eq> ClaimIndex<T> {
    pub(crate) fn insert(&mut self, claim: &Claim, value: T) {
        self.buckets
            .entry(key_of(&claim.pattern).into_boxed_str())
            .or_default()
            .push((claim.pattern.clone(), claim.mode, value));
    }

    pub(crate) fn remove(&mut self, claim: &Claim, value: T) {
        let key = key_of(&claim.pattern);
        if let Some(bucket) = self.buckets.get_mut(key.as_str()) {
            if let Some(i) = bucket
                .iter()
                .position(|(p, m, v)| *v == value && *m == claim.mode && *p == claim.pattern)
            {
                bucket.swap_remove(i);
            }
            if bucket.is_empty() {
                self.buckets.remove(key.as_str());
            }
        }
    }

    /// Calls `f` for every indexed claim that conflicts with `claim`: modes incompatible and
    /// patterns overlapping. Stops early when `f` breaks.
    pub(crate) fn for_each_conflict(
        &self,
        claim: &Claim,
        mut f: impl FnMut(&Pattern, LockMode, T) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut visit = |bucket: &Vec<(Pattern, LockMode, T)>| {
            for (pattern, mode, value) in bucket {
                if !claim.mode.compatible_with(*mode) && claim.pattern.overlaps(pattern) {
                    f(pattern, *mode, *value)?;
                }
            }
            ControlFlow::Continue(())
        };
        let key = key_of(&claim.pattern);
        // Ancestors, including the pattern's own bucket: "", "src/", "src/api/".
        if let Some(bucket) = self.buckets.get("") {
            visit(bucket)?;
        }
        for (i, _) in key.match_indices('/') {
            if let Some(bucket) = self.buckets.get(&key[..=i]) {
                visit(bucket)?;
            }
        }
        // Strict descendants: keys that start with `key` and are longer.
        if key.is_empty() {
            for (k, bucket) in &self.buckets {
                if !k.is_empty() {
                    visit(bucket)?;
                }
            }
        } else {
            // Every key below "src/api/" sorts before "src/api0" ('0' follows '/').
            let upper = format!("{}0", &key[..key.len() - 1]);
            for (_, bucket) in self.buckets.range::<str, _>((
                Bound::Excluded(key.as_str()),
                Bound::Excluded(upper.as_str()),
            )) {
                visit(bucket)?;
            }
        }
        ControlFlow::Continue(())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Pattern, LockMode, T)> {
        self.buckets
            .values()
            .flat_map(|b| b.iter().map(|(p, m, v)| (p, *m, *v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflicts(index: &ClaimIndex<u32>, claim: &Claim) -> Vec<u32> {
        let mut out = Vec::new();
        let _ = index.for_each_conflict(claim, |_, _, v| {
            out.push(v);
            ControlFlow::Continue(())
        });
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_ancestors_descendants_and_floating_patterns() {
        let mut index = ClaimIndex::default();
        let claims = [
            Claim::write("src/**").unwrap(),          // 0: ancestor
            Claim::write("src/api/x.rs").unwrap(),    // 1: descendant
            Claim::write("docs/**").unwrap(),         // 2: unrelated
            Claim::write("**/*.rs").unwrap(),         // 3: root bucket
            Claim::read("src/api/y.rs").unwrap(),     // 4: compatible mode
            Claim::write("src/apix/z.rs").unwrap(),   // 5: sibling with shared text prefix
            Claim::write("src/api/v1/*.md").unwrap(), // 6: descendant, no overlap
        ];
        for (i, c) in claims.iter().enumerate() {
            index.insert(c, u32::try_from(i).unwrap());
        }
        assert_eq!(
            conflicts(&index, &Claim::read("src/api/**/*.rs").unwrap()),
            [0, 1, 3]
        );
        assert_eq!(
            conflicts(&index, &Claim::write("src/api/**/*.rs").unwrap()),
            [0, 1, 3, 4]
        );
        assert_eq!(
            conflicts(&index, &Claim::write("**").unwrap()),
            [0, 1, 2, 3, 4, 5, 6]
        );
        index.remove(&claims[0], 0);
        index.remove(&claims[3], 3);
        assert_eq!(
            conflicts(&index, &Claim::write("src/api/**/*.rs").unwrap()),
            [1, 4]
        );
        assert_eq!(index.iter().count(), 5);
    }
}

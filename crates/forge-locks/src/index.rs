//! An index of claims by their literal directory, so that conflict checks only look at claims
//! that could overlap.
//!
//! Every path a pattern matches starts with the pattern's leading literal segments
//! ([`Pattern::literal_dir`]). Two patterns can only overlap if one's literal directory is a
//! segment-prefix of the other's: `src/api/**` can meet `src/**` (an ancestor) or
//! `src/api/v1/*.rs` (a descendant), never `docs/**`. Claims sit in a trie of path segments at
//! their literal directory; a query walks down its own directory (visiting ancestors) and then
//! the subtree below it (descendants). For exact paths that is a few hash lookups.

use std::ops::ControlFlow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::{Claim, LockMode, Pattern};

/// An indexed claim: its pattern and mode, the value of its set, its position in the set.
type Entry<T> = (Pattern, LockMode, T, u32);

#[derive(Debug)]
struct Node<T> {
    children: FxHashMap<u32, Node<T>>,
    entries: Vec<Entry<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            children: FxHashMap::default(),
            entries: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    /// Drops empty subtrees; returns whether this node is empty afterwards.
    fn prune(&mut self) -> bool {
        self.children.retain(|_, child| !child.prune());
        self.entries.is_empty() && self.children.is_empty()
    }

    fn count_nodes(&self) -> usize {
        1 + self.children.values().map(Node::count_nodes).sum::<usize>()
    }
}

/// Up to this many claims live in a flat list of claim sets: scanning a few claims is cheaper
/// than walking the trie, and a set is added or removed in one step. Past it, the index moves
/// to the trie (and back once the trie is empty). Unit tests use a tiny threshold so that the
/// model tests exercise the trie too.
const SMALL: usize = if cfg!(test) { 2 } else { 16 };

/// Claim sets indexed by literal directory, each set with a value (a lock set or request id).
#[derive(Debug)]
pub(crate) struct ClaimIndex<T> {
    /// The sets while they hold at most `SMALL` claims together (then the trie is empty).
    small: Vec<(Arc<[Claim]>, T)>,
    root: Node<T>,
    /// Claims in the index.
    len: usize,
    /// Nodes in the trie, including empty ones kept for reuse (pruned when they dominate).
    nodes: usize,
}

impl<T> Default for ClaimIndex<T> {
    fn default() -> Self {
        Self {
            small: Vec::new(),
            root: Node::default(),
            len: 0,
            nodes: 1,
        }
    }
}

impl<T: Copy + Eq> ClaimIndex<T> {
    /// Adds every claim of a set under `value` (which identifies the set).
    pub(crate) fn insert_set(&mut self, claims: &Arc<[Claim]>, value: T) {
        let in_small: usize = self.small.iter().map(|(c, _)| c.len()).sum();
        if self.len == in_small && self.len + claims.len() <= SMALL {
            self.small.push((claims.clone(), value));
            self.len += claims.len();
            return;
        }
        for (set, v) in std::mem::take(&mut self.small) {
            self.len -= set.len();
            self.insert_in_trie(&set, v);
        }
        self.insert_in_trie(claims, value);
    }

    fn insert_in_trie(&mut self, claims: &[Claim], value: T) {
        for (i, claim) in claims.iter().enumerate() {
            let mut node = &mut self.root;
            for &segment in claim.pattern.dir_ids() {
                node = node.children.entry(segment).or_insert_with(|| {
                    self.nodes += 1;
                    Node::default()
                });
            }
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            node.entries
                .push((claim.pattern.clone(), claim.mode, value, i));
            self.len += 1;
        }
    }

    /// Removes the set added under `value`.
    pub(crate) fn remove_set(&mut self, claims: &[Claim], value: T) {
        if !self.small.is_empty() {
            if let Some(i) = self.small.iter().position(|(_, v)| *v == value) {
                let (set, _) = self.small.swap_remove(i);
                self.len -= set.len();
            }
            return;
        }
        for claim in claims {
            let Some(node) = claim
                .pattern
                .dir_ids()
                .iter()
                .try_fold(&mut self.root, |node, segment| {
                    node.children.get_mut(segment)
                })
            else {
                continue;
            };
            if let Some(i) = node
                .entries
                .iter()
                .position(|(p, m, v, _)| *v == value && *m == claim.mode && *p == claim.pattern)
            {
                node.entries.swap_remove(i);
                self.len -= 1;
            }
        }
        // Empty nodes are kept (a path claimed once is often claimed again) until they
        // outnumber the entries.
        if self.nodes > 4 * self.len + 64 {
            self.root.prune();
            self.nodes = self.root.count_nodes();
        }
    }

    /// Calls `f` for every indexed claim that conflicts with `claim` (modes incompatible and
    /// patterns overlapping), with its mode, its set's value and its position in the set.
    /// Stops early when `f` breaks.
    pub(crate) fn for_each_conflict(
        &self,
        claim: &Claim,
        mut f: impl FnMut(LockMode, T, usize) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if self.len == 0 {
            return ControlFlow::Continue(());
        }
        if !self.small.is_empty() {
            for (set, value) in &self.small {
                for (i, other) in set.iter().enumerate() {
                    if !claim.mode.compatible_with(other.mode)
                        && claim.pattern.overlaps(&other.pattern)
                    {
                        f(other.mode, *value, i)?;
                    }
                }
            }
            return ControlFlow::Continue(());
        }
        let mut visit = |node: &Node<T>| {
            for (pattern, mode, value, i) in &node.entries {
                if !claim.mode.compatible_with(*mode) && claim.pattern.overlaps(pattern) {
                    f(*mode, *value, *i as usize)?;
                }
            }
            ControlFlow::Continue(())
        };
        // Ancestors, then the pattern's own node.
        let mut node = &self.root;
        visit(node)?;
        for segment in claim.pattern.dir_ids() {
            match node.children.get(segment) {
                Some(child) => node = child,
                None => return ControlFlow::Continue(()),
            }
            visit(node)?;
        }
        // Descendants.
        let mut stack: Vec<&Node<T>> = node.children.values().collect();
        while let Some(n) = stack.pop() {
            visit(n)?;
            stack.extend(n.children.values());
        }
        ControlFlow::Continue(())
    }

    /// Every indexed claim with its set's value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Pattern, LockMode, T)> {
        let mut stack = vec![&self.root];
        let trie = std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.children.values());
            Some(node.entries.iter().map(|(p, m, v, _)| (p, *m, *v)))
        })
        .flatten();
        self.small
            .iter()
            .flat_map(|(set, v)| set.iter().map(move |c| (&c.pattern, c.mode, *v)))
            .chain(trie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflicts(index: &ClaimIndex<u32>, claim: &Claim) -> Vec<u32> {
        let mut out = Vec::new();
        let _ = index.for_each_conflict(claim, |_, v, _| {
            if v != 1000 {
                out.push(v);
            }
            ControlFlow::Continue(())
        });
        out.sort_unstable();
        out
    }

    /// Fills the index with unrelated claims so that it uses the trie (or not).
    fn index_with_padding(trie: bool) -> ClaimIndex<u32> {
        let mut index = ClaimIndex::default();
        if trie {
            for i in 0..=SMALL {
                index.insert_set(
                    &Arc::from([Claim::write(&format!("pad/{i}")).unwrap()]),
                    1000,
                );
            }
            assert!(index.small.is_empty());
        }
        index
    }

    #[test]
    fn finds_ancestors_descendants_and_floating_patterns() {
        for trie in [false, true] {
            check_queries(index_with_padding(trie));
        }
    }

    fn check_queries(mut index: ClaimIndex<u32>) {
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
            index.insert_set(&Arc::from([c.clone()]), u32::try_from(i).unwrap());
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
        let padding = index.iter().filter(|e| e.2 == 1000).count();
        index.remove_set(std::slice::from_ref(&claims[0]), 0);
        index.remove_set(std::slice::from_ref(&claims[3]), 3);
        assert_eq!(
            conflicts(&index, &Claim::write("src/api/**/*.rs").unwrap()),
            [1, 4]
        );
        assert_eq!(index.iter().count(), 5 + padding);
    }

    #[test]
    fn empty_nodes_are_pruned_when_they_dominate() {
        let mut index = ClaimIndex::default();
        for i in 0..500u32 {
            let c: Arc<[Claim]> = Arc::from([
                Claim::write(&format!("d{i}/sub/file")).unwrap(),
                Claim::write(&format!("e{i}/x")).unwrap(),
                Claim::write(&format!("f{i}/y")).unwrap(),
            ]);
            index.insert_set(&c, i);
            index.remove_set(&c, i);
        }
        assert_eq!(index.len, 0);
        assert!(index.nodes <= 64 + 4, "{} nodes kept", index.nodes);
        assert_eq!(index.iter().count(), 0);
    }
}

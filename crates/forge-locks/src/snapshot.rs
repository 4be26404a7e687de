//! A point-in-time view of the lock table, for `forge status` and debugging.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::{Claim, OwnerId};

/// Why one owner waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// The other owner holds a conflicting claim.
    Hard,
    /// The other owner's request is earlier in the queue and conflicts (fairness keeps this one
    /// behind it).
    Soft,
}

/// One edge of the wait-for graph: `from` waits for `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitEdge {
    /// The waiting owner.
    pub from: OwnerId,
    /// The owner it waits for.
    pub to: OwnerId,
    /// Why.
    pub kind: EdgeKind,
}

/// The wait-for graph between owners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WaitForGraph {
    /// Every owner holding or waiting, sorted.
    pub nodes: Vec<OwnerId>,
    /// Who waits for whom.
    pub edges: Vec<WaitEdge>,
}

impl WaitForGraph {
    /// The graph as a petgraph `DiGraph`, for analysis (feature `petgraph`).
    #[cfg(feature = "petgraph")]
    pub fn to_petgraph(&self) -> petgraph::graph::DiGraph<OwnerId, EdgeKind> {
        let mut graph = petgraph::graph::DiGraph::new();
        let index: std::collections::HashMap<&OwnerId, _> = self
            .nodes
            .iter()
            .map(|n| (n, graph.add_node(n.clone())))
            .collect();
        for e in &self.edges {
            if let (Some(&a), Some(&b)) = (index.get(&e.from), index.get(&e.to)) {
                graph.add_edge(a, b, e.kind);
            }
        }
        graph
    }

    /// The graph in Graphviz DOT: hard edges solid, soft edges dashed.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph wait_for {\n  rankdir=LR;\n");
        for n in &self.nodes {
            let _ = writeln!(out, "  {};", dot_id(&n.to_string()));
        }
        for e in &self.edges {
            let style = match e.kind {
                EdgeKind::Hard => "solid",
                EdgeKind::Soft => "dashed",
            };
            let _ = writeln!(
                out,
                "  {} -> {} [style={style}];",
                dot_id(&e.from.to_string()),
                dot_id(&e.to.to_string())
            );
        }
        out.push_str("}\n");
        out
    }
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Holders and waiters of one claim (pattern and mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimState {
    /// The claim.
    pub claim: Claim,
    /// Owners holding it, sorted.
    pub holders: Vec<OwnerId>,
    /// Owners whose waiting request includes it, in queue order.
    pub waiters: Vec<OwnerId>,
}

/// One waiting request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaiterState {
    /// Who waits.
    pub owner: OwnerId,
    /// For what.
    pub claims: Vec<Claim>,
    /// Position in the queue (0 = first).
    pub position: usize,
    /// How long it has waited.
    pub waited: Duration,
    /// Holders and earlier waiters in its way.
    pub blocked_by: Vec<OwnerId>,
}

/// The whole lock table at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockSnapshot {
    /// Every held or awaited claim with its holders and waiters, sorted by pattern.
    pub claims: Vec<ClaimState>,
    /// Waiting requests in queue order.
    pub waiters: Vec<WaiterState>,
    /// Who waits for whom.
    pub graph: WaitForGraph,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;

    #[test]
    fn dot_quotes_and_styles() {
        // Owners are task ids, which hold no `"` or `\\`: quoting needs no escapes.
        let g = WaitForGraph {
            nodes: vec![
                OwnerId::new(TaskId::new("a.b").unwrap(), 1),
                OwnerId::new(TaskId::new("c").unwrap(), 0),
            ],
            edges: vec![WaitEdge {
                from: OwnerId::new(TaskId::new("a.b").unwrap(), 1),
                to: OwnerId::new(TaskId::new("c").unwrap(), 0),
                kind: EdgeKind::Soft,
            }],
        };
        let dot = g.to_dot();
        assert!(dot.contains(r#""a.b#1" -> "c" [style=dashed];"#), "{dot}");
    }

    #[cfg(feature = "petgraph")]
    #[test]
    fn petgraph_has_the_nodes_and_edges() {
        let g = WaitForGraph {
            nodes: vec![
                OwnerId::new(TaskId::new("a").unwrap(), 1),
                OwnerId::new(TaskId::new("c").unwrap(), 0),
            ],
            edges: vec![WaitEdge {
                from: OwnerId::new(TaskId::new("a").unwrap(), 1),
                to: OwnerId::new(TaskId::new("c").unwrap(), 0),
                kind: EdgeKind::Soft,
            }],
        };
        let pg = g.to_petgraph();
        assert_eq!((pg.node_count(), pg.edge_count()), (2, 1));
    }
}

//! The Ray harness itself: two nodes come up on loopback, and nothing of them is left after
//! the cluster is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use forge_testkit::ray::{NodeSpec, RayCluster, require};
use serde_json::json;

#[test]
fn two_nodes_come_up_on_loopback_and_are_gone_after_drop() {
    let Some(ray) = require() else { return };
    let cluster = RayCluster::start(
        &ray,
        &[
            NodeSpec::new(json!({"head": 1})),
            NodeSpec::new(json!({"second": 1})),
        ],
    )
    .unwrap();
    let (code, body) = cluster.get("/api/v0/nodes").unwrap();
    assert_eq!(code, 200, "{body}");
    let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut ips: Vec<String> = nodes["data"]["result"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_ip"].as_str().unwrap().to_owned())
        .collect();
    ips.sort();
    assert_eq!(ips, ["127.0.0.2", "127.0.0.3"]);
    let url = cluster.dashboard_url();
    drop(cluster);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the dashboard still answers after the cluster was dropped"
    );
}

//! A real Ray cluster on this machine's loopback addresses, for the cluster runner's tests.
//!
//! `.ci/run` installs Ray at a pinned version from `PyPI` into a virtual environment
//! (`target/ray-venv`); tests look there, at `FORGE_RAY_BIN` (the folder holding `ray`), then on
//! `PATH`. A test whose Ray is missing skips with the reason unless `FORGE_REQUIRE_RAY=1`, which CI
//! sets: then it fails.
//!
//! [`RayCluster::start`] runs `ray start --block` once per node, each in its own temporary folder
//! and process group, with its own custom resources. Nodes get their own loopback address
//! (127.0.0.2 for the head, 127.0.0.3, … for the others): Ray replaces `127.0.0.1` by the
//! machine's outward address, the others it keeps, so nodes talk to one another only through
//! loopback. The dashboard (and its job API) listens on 127.0.0.1. Dropping the cluster — also
//! when a test panics — kills every process of every node (found by a mark in their
//! environment, never by name), so clusters of tests do not outlive them. Each node's jobs get
//! their own `FORGE_NODE_CACHE` (under the node's folder), as separate machines would have. Clusters in one test
//! process take turns (Ray's agents use fixed default ports).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

/// Whether a missing Ray fails the test (`FORGE_REQUIRE_RAY=1`) instead of skipping it.
pub fn required() -> bool {
    std::env::var("FORGE_REQUIRE_RAY").is_ok_and(|v| v == "1")
}

/// The `ray` program: in `FORGE_RAY_BIN`, in `<target>/ray-venv/bin`, else on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FORGE_RAY_BIN") {
        let p = PathBuf::from(dir).join("ray");
        return p.is_file().then_some(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let p = target.join("ray-venv/bin/ray");
    if p.is_file() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("ray"))
            .find(|p| p.is_file())
    })
}

/// The `ray` program, or `None` after printing why the test is skipped.
///
/// # Panics
///
/// When Ray is missing and `FORGE_REQUIRE_RAY=1` (CI): the test fails.
#[allow(clippy::print_stderr)] // a skipped test says why, on the test's stderr
pub fn require() -> Option<PathBuf> {
    if let Some(p) = find() {
        return Some(p);
    }
    assert!(
        !required(),
        "FORGE_REQUIRE_RAY=1 but `ray` is not installed: run .ci/run, or \
         `python3 -m venv target/ray-venv && target/ray-venv/bin/pip install 'ray[default]==2.60.0'`"
    );
    eprintln!(
        "skipped: Ray is not installed (`python3 -m venv target/ray-venv && \
         target/ray-venv/bin/pip install 'ray[default]==2.60.0'`, or put `ray` on PATH)"
    );
    None
}

/// One node to start: its custom resources and CPUs.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Custom resources, as `ray start --resources` takes them (`{"head": 1}`).
    pub resources: serde_json::Value,
    /// Logical CPUs the node offers.
    pub cpus: u32,
}

impl NodeSpec {
    /// A node offering `resources` and two CPUs.
    pub fn new(resources: serde_json::Value) -> Self {
        Self { resources, cpus: 2 }
    }
}

/// One running node.
#[derive(Debug)]
struct Node {
    child: Child,
    mark: String,
    ip: String,
    dir: PathBuf,
}

impl Node {
    /// Kills every process of the node (SIGKILL), and waits until none is left.
    fn kill(&mut self) {
        for _ in 0..50 {
            let pids = crate::procs::marked_processes(&self.mark);
            if pids.is_empty() {
                break;
            }
            for pid in pids.into_iter().filter_map(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Ray cluster of real processes on loopback, stopped when dropped.
#[derive(Debug)]
pub struct RayCluster {
    nodes: Vec<Node>,
    dashboard: SocketAddr,
    gcs: String,
    dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RayCluster {
    /// Starts a head node (`nodes[0]`) and the other nodes, and waits until all are alive.
    pub fn start(ray: &Path, nodes: &[NodeSpec]) -> Result<Self, String> {
        let turn = TURN.lock();
        // Short paths: Ray's Unix sockets live under the temp dir (108 bytes at most).
        let dir = tempfile::Builder::new()
            .prefix("fray")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let io = |e: std::io::Error| format!("a free port: {e}");
        let dashboard = SocketAddr::from(([127, 0, 0, 1], free_port().map_err(io)?));
        let gcs_port = free_port().map_err(io)?;
        let gcs = format!("127.0.0.2:{gcs_port}");
        let mut cluster = Self {
            nodes: Vec::new(),
            dashboard,
            gcs,
            dir,
            _turn: turn,
        };
        let id = COUNTER.fetch_add(1, Ordering::Relaxed);
        for (i, spec) in nodes.iter().enumerate() {
            let ip = format!("127.0.0.{}", i + 2);
            let node_dir = cluster.dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir).map_err(|e| format!("{e}"))?;
            let mut cmd = Command::new(ray);
            cmd.arg("start").arg("--block");
            if i == 0 {
                cmd.args(["--head", "--port", &gcs_port.to_string()])
                    .args(["--dashboard-host", "127.0.0.1"])
                    .args(["--dashboard-port", &dashboard.port().to_string()])
                    .args([
                        "--ray-client-server-port",
                        &free_port().map_err(io)?.to_string(),
                    ]);
            } else {
                cmd.args(["--address", &cluster.gcs]);
            }
            let mark = format!("ray-{}-{id}-{i}", std::process::id());
            cmd.args(["--node-ip-address", &ip])
                .args(["--resources", &spec.resources.to_string()])
                .args(["--num-cpus", &spec.cpus.to_string()])
                .args([
                    "--dashboard-agent-listen-port",
                    &free_port().map_err(io)?.to_string(),
                ])
                .arg("--temp-dir")
                .arg(&node_dir)
                .arg("--disable-usage-stats")
                .env("RAY_USAGE_STATS_ENABLED", "0")
                .env("FORGE_TEST_MARK", &mark)
                // Each node its own blob cache, as on separate machines.
                .env("FORGE_NODE_CACHE", node_dir.join("forge-cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(node_dir.join("ray-start.log"))
                        .map_err(|e| format!("{e}"))?,
                );
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = cmd
                .spawn()
                .map_err(|e| format!("`{}` did not start: {e}", ray.display()))?;
            cluster.nodes.push(Node {
                child,
                mark,
                ip,
                dir: node_dir,
            });
            cluster.wait_alive(i + 1)?;
        }
        Ok(cluster)
    }

    /// `http://127.0.0.1:<port>`: the dashboard, where the job API is.
    pub fn dashboard_url(&self) -> String {
        format!("http://{}", self.dashboard)
    }

    /// The loopback address node `i` runs on.
    pub fn node_ip(&self, i: usize) -> &str {
        &self.nodes[i].ip
    }

    /// Kills every process of node `i` at once (SIGKILL): a node lost.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// The log of `ray start` of node `i` (for a failing test's message).
    pub fn start_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("ray-start.log")).unwrap_or_default()
    }

    /// `GET path` on the dashboard: the status code and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http(self.dashboard, "GET", path, None)
    }

    /// `POST path` on the dashboard with a JSON body: the status code and body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> std::io::Result<(u16, String)> {
        http(self.dashboard, "POST", path, Some(body))
    }

    /// The status of job `id` (`PENDING`, `RUNNING`, `STOPPED`, …), or `""` when unknown.
    pub fn job_status(&self, id: &str) -> String {
        self.get(&format!("/api/jobs/{id}"))
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["status"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn wait_alive(&mut self, want: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            if let Ok((200, body)) = self.get("/api/v0/nodes") {
                let alive = body.matches("\"ALIVE\"").count();
                if alive >= want {
                    return Ok(());
                }
            }
            if let Some(node) = self.nodes.last_mut()
                && let Ok(Some(status)) = node.child.try_wait()
            {
                return Err(format!(
                    "`ray start` ended ({status}) before its node came up:\n{}",
                    std::fs::read_to_string(node.dir.join("ray-start.log")).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{want} Ray node(s) not alive after 120 s:\n{}",
                    self.nodes
                        .last()
                        .and_then(|n| std::fs::read_to_string(n.dir.join("ray-start.log")).ok())
                        .unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().rev() {
            node.kill();
        }
    }
}

/// A plain HTTP/1.0 request on loopback.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((code, body))
}

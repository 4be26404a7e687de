//! The node's side of a cluster attempt: what `forge attempt` does where the job landed.
//!
//! It fetches the attempt's order over the run's data channel, lays out the start tree from the
//! node's blob cache (fetching only the blobs the cache lacks, each checked against its hash)
//! as a git repository whose one commit is that tree, runs the agent there in its own process group, streams each line it prints back as it comes,
//! then captures what changed against the start tree, uploads the new blobs and posts the
//! changes. SIGTERM or SIGINT (Ray stopping the job) stops the agent's whole process tree.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_events::{OutputStream, RunId};
use forge_staging::{BlobStore, ChangeSet, Entry, LinkTarget, Manifest, RepoPath};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::ray::channel::{NodeResult, Order, OutputLine, PROMPT_FILE};
use crate::ExecError;
use crate::process::{AttemptEnv, CommandSpec, ProcessOptions, run_process_in};

/// Where `forge attempt` finds its order and sends its results.
#[derive(Debug, Clone)]
pub struct NodeAttempt {
    /// The run's data channel (`http://host:port`).
    pub server: String,
    /// The attempt's key there.
    pub key: String,
    /// The run's token.
    pub token: String,
    /// The node's blob cache (kept across attempts and runs).
    pub cache: PathBuf,
}

/// What the node did, for `forge attempt` to say.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// Start-tree blobs fetched (the others were in the cache).
    pub fetched: usize,
    /// Files in the start tree.
    pub files: usize,
    /// The agent's exit code.
    pub exit_code: Option<i32>,
}

fn err(what: impl std::fmt::Display) -> ExecError {
    ExecError::Agent(format!("forge attempt: {what}"))
}

/// Runs the attempt; its outcome goes to the data channel, this returns what happened here.
#[allow(clippy::too_many_lines)] // fetch, lay out, run, capture, post
pub async fn run_attempt(at: &NodeAttempt) -> Result<NodeReport, ExecError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(err)?;
    let auth = format!("Bearer {}", at.token);
    let base = at.server.trim_end_matches('/');
    let shipping = std::time::Instant::now();
    let order: Order = http
        .get(format!("{base}/v1/attempts/{}", at.key))
        .header("authorization", &auth)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| err(format!("the order of attempt `{}`: {e}", at.key)))?
        .json()
        .await
        .map_err(|e| err(format!("the order of attempt `{}`: {e}", at.key)))?;
    let order_ms = shipping.elapsed().as_millis();
    let node = node_name();
    let post_result = |result: NodeResult| {
        let (http, auth) = (http.clone(), auth.clone());
        let url = format!("{base}/v1/attempts/{}/result", at.key);
        async move { post_until_taken(&http, &url, &auth, &result).await }
    };

    // The start tree: blobs the cache lacks, then the files.
    std::fs::create_dir_all(&at.cache).map_err(|e| ExecError::io("create", &at.cache, e))?;
    let cache = BlobStore::open(&at.cache)?;
    let mut fetched = 0usize;
    let mut fetched_bytes = 0usize;
    for (path, entry) in order.tree.iter() {
        if let Entry::File { hash, .. } = entry
            && !cache.contains(hash)
        {
            let body = http
                .get(format!("{base}/v1/blobs/{hash}"))
                .header("authorization", &auth)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| err(format!("blob of `{path}`: {e}")))?
                .bytes()
                .await
                .map_err(|e| err(format!("blob of `{path}`: {e}")))?;
            fetched_bytes += body.len();
            let got = cache.write(&body)?;
            if got != *hash {
                return Err(err(format!(
                    "the blob of `{path}` arrived with hash {got}, not {hash}"
                )));
            }
            fetched += 1;
        }
    }
    let blobs_ms = shipping.elapsed().as_millis() - order_ms;
    let work = tempfile::Builder::new()
        .prefix("forge-attempt-")
        .tempdir()
        .map_err(|e| err(format!("a workspace: {e}")))?;
    let ws = work.path().join("ws");
    {
        let (tree, cache, ws) = (order.tree.clone(), cache.clone(), ws.clone());
        tokio::task::spawn_blocking(move || lay_out(&tree, &cache, &ws))
            .await
            .map_err(err)??;
    }
    let layout_ms = shipping.elapsed().as_millis() - order_ms - blobs_ms;
    git_start(&ws).await;
    let prompt_file = work.path().join("prompt.md");
    std::fs::write(&prompt_file, &order.prompt)
        .map_err(|e| ExecError::io("write", &prompt_file, e))?;

    // The agent, its lines posted in batches as they come.
    let program = match &order.program {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(|e| err(format!("own program: {e}")))?,
    };
    let prompt_path = prompt_file.to_string_lossy().into_owned();
    let spec = CommandSpec {
        program: program.into_os_string(),
        args: order
            .args
            .iter()
            .map(|a| a.replace(PROMPT_FILE, &prompt_path).into())
            .collect(),
        cwd: ws.clone(),
        env: order
            .env
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    };
    // Said first, in the attempt's output: what the node's cache saved.
    let pending: Arc<Mutex<Vec<OutputLine>>> = Arc::new(Mutex::new(vec![OutputLine {
        stream: OutputStream::Stderr,
        line: format!(
            "forge attempt on {node}: fetched {fetched} blob(s) for the {} path(s) of the start \
             tree (the rest were in the node's cache): order {order_ms} ms, blobs {blobs_ms} ms \
             ({fetched_bytes} bytes), lay-out {layout_ms} ms",
            order.tree.len()
        ),
    }]));
    let done = CancellationToken::new();
    let sender = {
        let (pending, done, http, auth) =
            (pending.clone(), done.clone(), http.clone(), auth.clone());
        let url = format!("{base}/v1/attempts/{}/output", at.key);
        tokio::spawn(async move {
            let mut give_up = None;
            loop {
                let last = tokio::select! {
                    () = done.cancelled() => true,
                    () = tokio::time::sleep(Duration::from_millis(100)) => false,
                };
                let lines = std::mem::take(&mut *pending.lock());
                if !lines.is_empty() {
                    let sent = http
                        .post(&url)
                        .header("authorization", &auth)
                        .json(&lines)
                        .send()
                        .await;
                    // The run's process may be gone for a while (killed, then resumed): its
                    // lines wait here (up to a bound) for the process that reattaches.
                    let keep = match &sent {
                        Err(_) => true,
                        Ok(r) => r.status() == reqwest::StatusCode::NOT_FOUND,
                    };
                    if keep {
                        let mut pending = pending.lock();
                        let mut kept = lines;
                        kept.append(&mut pending);
                        let over = kept.len().saturating_sub(MAX_KEPT_LINES);
                        kept.drain(..over);
                        *pending = kept;
                    }
                }
                if last {
                    // The last lines go before the result, whenever the run takes them.
                    let deadline = *give_up
                        .get_or_insert_with(|| tokio::time::Instant::now() + RESULT_PATIENCE);
                    if pending.lock().is_empty() || tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    };
    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let signals = {
        let (stop, kill) = (stop.clone(), kill.clone());
        tokio::spawn(async move {
            let (Ok(mut term), Ok(mut int)) = (
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            // Ray kills this process soon after: the agent's tree goes now.
            stop.cancel();
            kill.cancel();
        })
    };
    let run = RunId::new(&order.run).map_err(err)?;
    let env = AttemptEnv {
        run: &run,
        task: &order.task,
        attempt: order.attempt,
    };
    let log = work.path().join("output.log");
    let exit = {
        let pending = pending.clone();
        run_process_in(
            &spec,
            &env,
            &log,
            &mut move |stream: OutputStream, line: &str| {
                pending.lock().push(OutputLine {
                    stream,
                    line: line.to_owned(),
                });
            },
            &stop,
            &kill,
            &ProcessOptions::default(),
            None,
        )
        .await
    };
    signals.abort();
    done.cancel();
    let _ = sender.await;
    let mut result = NodeResult {
        node: node.clone(),
        exit_code: None,
        signal: None,
        stopped: false,
        error: None,
        changes: ChangeSet::default(),
    };
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            result.error = Some(format!(
                "could not start `{}`: {e}",
                spec.program.to_string_lossy()
            ));
            post_result(result).await?;
            return Ok(NodeReport {
                fetched,
                files: order.tree.len(),
                exit_code: None,
            });
        }
    };
    result.exit_code = exit.code;
    result.signal = exit.signal;
    result.stopped = exit.stopped;
    if exit.code == Some(0) && !exit.stopped && order.capture {
        // Capture: the tree now against the start tree; new blobs go up first.
        let (ws2, cache2) = (ws.clone(), cache.clone());
        let after = tokio::task::spawn_blocking(move || scan(&ws2, &cache2))
            .await
            .map_err(err)??;
        let changes = order.tree.diff(&after);
        for (path, change) in changes.iter() {
            if let Some(Entry::File { hash, .. }) = change.after() {
                let body = cache.read(hash)?;
                http.put(format!("{base}/v1/blobs/{hash}"))
                    .header("authorization", &auth)
                    .body(body)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| err(format!("uploading `{path}`: {e}")))?;
            }
        }
        result.changes = changes;
    }
    post_result(result).await?;
    Ok(NodeReport {
        fetched,
        files: order.tree.len(),
        exit_code: exit.code,
    })
}

/// Output lines a node keeps while the run's process cannot take them (the oldest go first).
const MAX_KEPT_LINES: usize = 100_000;

/// How long a node keeps trying to hand its result to the run: a run whose process died can be
/// resumed within this time and take it (`forge resume` reattaches to the job).
const RESULT_PATIENCE: Duration = Duration::from_mins(10);

/// Posts the result until the run takes it. While the run's process is unreachable, or has not
/// opened the attempt (a resumed run reattaches when the scheduler reaches the task), it tries
/// again every second, for [`RESULT_PATIENCE`].
async fn post_until_taken(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    result: &NodeResult,
) -> Result<(), ExecError> {
    let deadline = tokio::time::Instant::now() + RESULT_PATIENCE;
    loop {
        let why = match http
            .post(url)
            .header("authorization", auth)
            .json(result)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                format!("the run has no attempt open at {url} (404)")
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(err(format!(
                    "posting the result: {status}: {}",
                    text.trim()
                )));
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(err(format!(
                "posting the result: the run did not take it within {} s ({why}); was its \
                 `forge` killed and not resumed?",
                RESULT_PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The node's name in results: the host name and, under Ray, the node's address.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    match std::env::var("RAY_NODE_IP_ADDRESS") {
        Ok(ip) if !ip.is_empty() => format!("{host} ({ip})"),
        _ => host,
    }
}

/// Makes the workspace a git repository whose one commit is the start tree, as a local
/// workspace is, so `git status` and `git diff` show the agent its own changes. Without `git`
/// on the node the agent still runs (and the changes are captured all the same).
async fn git_start(ws: &Path) {
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=Forge",
            "-c",
            "user.email=forge@localhost",
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            "the attempt's start tree",
        ],
    ] {
        let ok = tokio::process::Command::new("git")
            .args(args)
            .current_dir(ws)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !ok {
            return;
        }
    }
}

/// Writes `tree` under `dir` from the cache.
fn lay_out(tree: &Manifest, cache: &BlobStore, dir: &Path) -> Result<(), ExecError> {
    std::fs::create_dir_all(dir).map_err(|e| ExecError::io("create", dir, e))?;
    for (path, entry) in tree.iter() {
        let dest = dir.join(path.as_str());
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ExecError::io("create", parent, e))?;
        }
        match entry {
            // Read whole (checked against its hash) and written: start trees are mostly small
            // files, for which `copy_to`'s streaming buffer costs more than the copy.
            Entry::File {
                hash, executable, ..
            } => {
                let content = cache.read(hash)?;
                std::fs::write(&dest, &content).map_err(|e| ExecError::io("write", &dest, e))?;
                if *executable {
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| ExecError::io("set permissions of", &dest, e))?;
                }
            }
            Entry::Symlink { target, .. } => std::os::unix::fs::symlink(target.as_path(), &dest)
                .map_err(|e| ExecError::io("create symlink", &dest, e))?,
        }
    }
    Ok(())
}

/// The tree under `dir` (without `.git`), its files' content put in `cache`.
fn scan(dir: &Path, cache: &BlobStore) -> Result<Manifest, ExecError> {
    let mut out = Manifest::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&abs).map_err(|e| ExecError::io("read", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ExecError::io("read", &abs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && name == ".git" {
                continue;
            }
            let path = entry.path();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| ExecError::io("stat", &path, e))?;
            let value = if meta.is_dir() {
                stack.push((path, child));
                continue;
            } else if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| ExecError::io("read link", &path, e))?;
                Entry::symlink(LinkTarget::new(
                    std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec(),
                ))
            } else if meta.is_file() {
                let (hash, size) = cache.write_file(&path)?;
                Entry::file(hash, size, meta.permissions().mode() & 0o111 != 0)
            } else {
                continue;
            };
            let repo_path = RepoPath::new(&child).map_err(|e| err(format!("`{child}`: {e}")))?;
            out.insert(repo_path, value);
        }
    }
    Ok(out)
}

//! The Ray runner: each attempt is a job submitted through Ray's HTTP job API (the one
//! `ray job submit` uses; no Python in Forge), whose entrypoint is `forge attempt` on the node.
//!
//! The job's resources are the task's `resources` (`CPU`, `GPU` and `memory` become the
//! entrypoint's CPUs, GPUs and memory; the others Ray's custom resources), so Ray places it. The
//! node fetches the attempt's order and the blobs its cache lacks over the run's
//! [data channel](channel), streams the agent's output back as it comes, and posts its changes;
//! this side verifies them (every blob by its hash, every change against the start tree) before
//! the pipeline persists them. A job whose node dies fails the attempt with "node lost", so the
//! scheduler retries it, and Ray places the retry on a node that is alive.

pub mod channel;
mod gate;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_events::{EventKind, TaskStatus};
use forge_merge::GateReport;
use forge_staging::{BlobStore, ChangeSet, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use self::channel::{Channel, NodeResult, Order, PROMPT_FILE};
use super::{AttemptRunner, RayConfig};
use crate::ExecError;
use crate::manager::Shared;
use crate::manager::attempt::Attempt;
use crate::manager::attempt::agent::OutputEvents;
use crate::sched::TaskOutcome;
use forge_agents::PromptVars;

/// How often a running job's status (and its node's) is looked at.
const POLL: Duration = Duration::from_millis(500);
/// How many times a job is submitted when the head answers with a server error.
const SUBMIT_TRIES: u32 = 4;

/// Runs attempts as Ray jobs.
pub(crate) struct RayRunner {
    config: RayConfig,
    http: reqwest::Client,
    channel: Channel,
    /// `forge-<run>-<session>-`: the start of this process's job ids. The session (random)
    /// keeps a resumed run's jobs apart from those of the process it replaces.
    prefix: String,
    /// Jobs of a dead process of this run still running, by (task, attempt): a resumed run
    /// reattaches to them instead of running the attempt again. Taken when reattached.
    leftovers: parking_lot::Mutex<HashMap<(String, u32), String>>,
}

/// What a run keeps of its data channel (`.forge/runs/<run>/runner.json`, readable by its
/// owner only), so that a resumed run listens where its jobs still running post, with the
/// token they hold.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    listen: SocketAddr,
    token: String,
}

/// `runner.json` of a run.
fn saved_path(run_dir: &Path) -> PathBuf {
    run_dir.join("runner.json")
}

fn save(run_dir: &Path, saved: &Saved) -> Result<(), ExecError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = saved_path(run_dir);
    let text = serde_json::to_vec(saved)
        .map_err(|e| ExecError::Config(format!("the runner's state: {e}")))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ExecError::io("create", &path, e))?;
    std::io::Write::write_all(&mut file, &text).map_err(|e| ExecError::io("write", &path, e))
}

impl RayRunner {
    /// Checks that the cluster answers, then opens the data channel. A resumed run
    /// (`resuming`) listens where its dead process did, with its token, and keeps the jobs that
    /// process left running (first passes of attempts) to reattach to; any other job of the run
    /// still running is stopped (its attempt runs again). If the old address cannot be had, every
    /// such job is stopped.
    pub(crate) async fn start(
        config: RayConfig,
        blobs: BlobStore,
        run: &forge_events::RunId,
        run_dir: &Path,
        resuming: bool,
    ) -> Result<Self, ExecError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ExecError::Config(format!("an HTTP client: {e}")))?;
        let version = format!("{}/api/version", config.address);
        let answer = http.get(&version).send().await;
        match answer {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                return Err(ExecError::Config(format!(
                    "the Ray cluster at {} answered {} to {version}: is this a Ray dashboard? \
                     Check `[runner] address` (or `--runner`)",
                    config.address,
                    r.status()
                )));
            }
            Err(e) => {
                return Err(ExecError::Config(format!(
                    "the Ray cluster at {} is unreachable ({e}); start one (`ray start --head`) \
                     or fix `[runner] address` (or `--runner ray://host:port`); nothing was run",
                    config.address
                )));
            }
        }
        // The dead process's channel, when its address is still this run's to have.
        let old = if resuming {
            std::fs::read(saved_path(run_dir))
                .ok()
                .and_then(|text| serde_json::from_slice::<Saved>(&text).ok())
                .filter(|old| {
                    old.listen.ip() == config.listen.ip()
                        && (config.listen.port() == 0 || config.listen.port() == old.listen.port())
                })
        } else {
            None
        };
        let (channel, reattach) = match old {
            Some(old) => match Channel::start(old.listen, blobs.clone(), Some(old.token)).await {
                Ok(channel) => (channel, true),
                Err(_) => (Channel::start(config.listen, blobs, None).await?, false),
            },
            None => (Channel::start(config.listen, blobs, None).await?, false),
        };
        save(
            run_dir,
            &Saved {
                listen: channel.addr(),
                token: channel.token().to_owned(),
            },
        )?;
        let session = &channel::new_token()?[..8];
        let runner = Self {
            prefix: format!("forge-{run}-{session}-"),
            config,
            http,
            channel,
            leftovers: parking_lot::Mutex::new(HashMap::new()),
        };
        runner
            .sort_leftovers(&format!("forge-{run}-"), reattach)
            .await;
        Ok(runner)
    }

    /// Jobs of this run still pending or running: the first passes of attempts are kept to
    /// reattach to (when `reattach`), the others stopped.
    async fn sort_leftovers(&self, run_prefix: &str, reattach: bool) {
        let url = format!("{}/api/jobs/", self.config.address);
        let Ok(response) = self.http.get(&url).send().await else {
            return;
        };
        let Ok(Value::Array(jobs)) = response.json::<Value>().await else {
            return;
        };
        for job in jobs {
            let id = job["submission_id"].as_str().unwrap_or_default();
            let status = job["status"].as_str().unwrap_or_default();
            if !id.starts_with(run_prefix) || terminal(status) {
                continue;
            }
            let meta = &job["metadata"];
            let attempt = meta["forge_attempt"]
                .as_str()
                .and_then(|a| a.parse::<u32>().ok());
            let task = meta["forge_task"].as_str();
            match (reattach, task, attempt, meta["forge_pass"].as_str()) {
                (true, Some(task), Some(attempt), Some("0")) => {
                    self.leftovers
                        .lock()
                        .insert((task.to_owned(), attempt), id.to_owned());
                }
                _ => self.stop(id).await,
            }
        }
    }

    /// Submits the job `id`, running `forge attempt` for the channel's `key`, placed by
    /// `resources`, with `metadata` (strings) for a later process of the run to read.
    async fn submit(
        &self,
        id: &str,
        key: &str,
        resources: &std::collections::BTreeMap<String, f64>,
        metadata: Value,
    ) -> Result<(), String> {
        let mut entrypoint = String::new();
        for word in [
            self.config.forge.as_str(),
            "attempt",
            "--server",
            &self.channel.url(),
            "--key",
            key,
        ] {
            let _ = write!(entrypoint, "{} ", quote(word));
        }
        let mut env: serde_json::Map<String, Value> = self
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        env.insert(
            "FORGE_ATTEMPT_TOKEN".into(),
            Value::String(self.channel.token().to_owned()),
        );
        let mut body = json!({
            "submission_id": id,
            "entrypoint": entrypoint.trim_end(),
            "runtime_env": { "env_vars": env },
            "metadata": metadata,
        });
        let mut custom = serde_json::Map::new();
        for (name, amount) in resources {
            match name.as_str() {
                "CPU" => body["entrypoint_num_cpus"] = json!(amount),
                "GPU" => body["entrypoint_num_gpus"] = json!(amount),
                "memory" => body["entrypoint_memory"] = json!(amount.round()),
                _ => {
                    custom.insert(name.clone(), json!(amount));
                }
            }
        }
        if !custom.is_empty() {
            body["entrypoint_resources"] = Value::Object(custom);
        }
        let url = format!("{}/api/jobs/", self.config.address);
        // A loaded head answers 5xx now and then (its job manager timed out starting the
        // job's supervisor): submit again, a few times. A retry that finds the job already
        // there means an earlier try went through.
        let mut tries = 0;
        loop {
            tries += 1;
            let r = self
                .http
                .post(&url)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("could not submit the job to {url}: {e}"))?;
            let status = r.status();
            if status.is_success() {
                return Ok(());
            }
            let text = r.text().await.unwrap_or_default();
            if tries > 1 && text.contains("already exists") {
                return Ok(());
            }
            if !status.is_server_error() || tries == SUBMIT_TRIES {
                return Err(format!("Ray refused the job ({status}): {}", text.trim()));
            }
            tokio::time::sleep(POLL * tries).await;
        }
    }

    /// The job's status, its message and the node its entrypoint runs on.
    async fn job(&self, id: &str) -> Result<(String, String, Option<String>), String> {
        let url = format!("{}/api/jobs/{id}", self.config.address);
        let v: Value = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            v["status"].as_str().unwrap_or("").to_owned(),
            v["message"].as_str().unwrap_or("").to_owned(),
            v["driver_node_id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        ))
    }

    /// A node's address and whether it is alive, from the state API.
    async fn node(&self, node_id: &str) -> Option<(String, bool)> {
        let url = format!(
            "{}/api/v0/nodes?filter_keys=node_id&filter_predicates=%3D&filter_values={node_id}",
            self.config.address
        );
        let v: Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
        let node = v["data"]["result"]["result"].as_array()?.first()?.clone();
        Some((
            node["node_ip"].as_str().unwrap_or("?").to_owned(),
            node["state"].as_str() == Some("ALIVE"),
        ))
    }

    /// Says on which node an attempt runs (a `task_progress` "on Ray node `<ip>` (`<id>`)").
    async fn placed(
        &self,
        shared: &Shared,
        task: &forge_events::TaskId,
        attempt: u32,
        driver: String,
    ) -> (String, String) {
        let ip = self
            .node(&driver)
            .await
            .map_or_else(|| "?".to_owned(), |(ip, _)| ip);
        shared.publish(
            task,
            EventKind::TaskPlaced {
                attempt,
                node: ip.clone(),
                node_id: Some(driver.clone()),
            },
        );
        shared.publish(
            task,
            EventKind::TaskProgress {
                message: format!("on Ray node {ip} ({})", &driver[..driver.len().min(12)]),
                tool: None,
                files: Vec::new(),
            },
        );
        (driver, ip)
    }

    /// Whether the node is (or within Ray's health-check time becomes) dead.
    async fn node_dies(&self, node_id: &str) -> bool {
        for _ in 0..60 {
            match self.node(node_id).await {
                Some((_, false)) => return true,
                Some((_, true)) => tokio::time::sleep(Duration::from_millis(500)).await,
                None => return false,
            }
        }
        false
    }

    /// Stops the job and waits (a while) until Ray says it ended.
    async fn stop(&self, id: &str) {
        let url = format!("{}/api/jobs/{id}/stop", self.config.address);
        let _ = self.http.post(&url).send().await;
        for _ in 0..120 {
            match self.job(id).await {
                Ok((status, _, _)) if terminal(&status) => return,
                Err(_) => return,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

fn terminal(status: &str) -> bool {
    matches!(status, "SUCCEEDED" | "FAILED" | "STOPPED")
}

/// `word` quoted for the job's shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// What a job gave back.
enum Ran {
    /// The agent succeeded; its changes against the start tree, every blob in the run's store.
    Changes(ChangeSet),
    /// No changes to integrate: why (failed, stopped, could not start, node lost).
    Ended(TaskOutcome),
}

fn failed(message: String) -> Ran {
    Ran::Ended(TaskOutcome::failed(message))
}

/// Checks a node's changes before anything keeps them: against the start tree, and every blob
/// they add by its hash in the run's store.
fn verify(changes: &ChangeSet, start: &Snapshot, blobs: &BlobStore) -> Result<(), String> {
    for (path, change) in changes.iter() {
        if change.before() != start.get(path.as_str()) {
            return Err(format!(
                "the node's change of `{path}` does not start from the attempt's start tree"
            ));
        }
        if let Some(forge_staging::Entry::File { hash, .. }) = change.after() {
            blobs
                .read(hash)
                .map_err(|e| format!("the node's content of `{path}`: {e}"))?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl AttemptRunner for RayRunner {
    async fn gate(
        &self,
        shared: &Arc<Shared>,
        tree: Arc<forge_staging::Snapshot>,
        cancel: &crate::CancelHandle,
    ) -> Result<GateReport, ExecError> {
        gate::run(self, shared, tree, cancel).await
    }

    fn continues_attempts(&self) -> bool {
        false
    }

    fn reattachable(&self) -> Vec<(forge_events::TaskId, u32)> {
        self.leftovers
            .lock()
            .keys()
            .filter_map(|(task, attempt)| {
                forge_events::TaskId::new(task)
                    .ok()
                    .map(|task| (task, *attempt))
            })
            .collect()
    }

    async fn run(&self, shared: &Arc<Shared>, mut a: Attempt) -> Attempt {
        match self.job_of(shared, &mut a).await {
            Ok(Ran::Changes(changes)) => {
                a.changes = Some(changes);
                a
            }
            Ok(Ran::Ended(outcome)) => a.end(outcome),
            Err(e) => a.fail(&e),
        }
    }
}

impl RayRunner {
    /// The attempt as a Ray job: submitted (or a dead process's job taken over), followed to
    /// its end, its changes verified.
    #[allow(clippy::too_many_lines)] // submit, follow, collect: one loop
    async fn job_of(&self, shared: &Arc<Shared>, a: &mut Attempt) -> Result<Ran, ExecError> {
        let Some(start) = a.start.clone() else {
            return Err(ExecError::Store(format!(
                "attempt {} of `{}` has no start tree",
                a.number,
                a.id()
            )));
        };
        let task = a.task.clone();
        let task = &task;
        let attempt = a.number;
        // A job a dead process of this run left running for this very attempt: taken over.
        let reattached = if a.pass == 0 {
            self.leftovers
                .lock()
                .remove(&(task.id.as_str().to_owned(), attempt))
        } else {
            None
        };
        let id = reattached
            .clone()
            .unwrap_or_else(|| format!("{}{}-{attempt}-{}", self.prefix, task.id, a.pass));
        let key = id.clone();
        let spec = a
            .profile
            .command(&PromptVars {
                prompt: &a.prompt,
                prompt_file: std::path::Path::new(PROMPT_FILE),
                model: task.model.as_deref(),
            })
            .map_err(|e| ExecError::Agent(e.to_string()))?;
        // The simulated agent is `forge sim-agent`: the node runs its own `forge`.
        let given = std::path::Path::new(&spec.program);
        let own = std::env::current_exe().ok().as_deref() == Some(given)
            || given.file_name().and_then(|n| n.to_str()) == Some("forge");
        let program = (!own).then(|| spec.program.to_string_lossy().into_owned());
        let tree = {
            let snapshot = start.clone();
            crate::manager::blocking(move || snapshot.manifest()).await?
        };
        let order = Order {
            run: shared.run.to_string(),
            task: task.id.to_string(),
            attempt,
            program,
            args: spec
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .chain(task.env.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
            prompt: a.prompt.clone(),
            tree,
            capture: true,
        };
        let mut inbox = self.channel.open(&key, order);
        a.announce(&format!("ray:{id}"), "ray");
        if reattached.is_some() {
            shared.publish(
                &task.id,
                EventKind::TaskProgress {
                    message: format!(
                        "reattached to Ray job {id}, still running after the run's process ended"
                    ),
                    tool: None,
                    files: Vec::new(),
                },
            );
        } else if let Err(e) = self
            .submit(
                &id,
                &key,
                &task.resources,
                json!({
                    "forge_task": task.id.as_str(),
                    "forge_attempt": attempt.to_string(),
                    "forge_pass": a.pass.to_string(),
                }),
            )
            .await
        {
            self.channel.close(&key);
            return Ok(failed(e));
        }
        let suffix = if a.pass == 0 {
            String::new()
        } else {
            format!("-rerun{}", a.pass)
        };
        let log_path = a.dir.join(format!("output{suffix}.log"));
        // A reattached attempt's log goes on where the dead process's stopped.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(reattached.is_some())
            .truncate(reattached.is_none())
            .open(&log_path)
            .map_err(|e| ExecError::io("create", &log_path, e))?;
        let mut output = OutputEvents::new(shared, task, attempt, a.profile.format, &a.ctx);
        let mut poll = tokio::time::interval(POLL);
        let mut node: Option<(String, String)> = None;
        let outcome = loop {
            tokio::select! {
                line = inbox.output.recv() => {
                    if let Some(line) = line {
                        let _ = std::io::Write::write_all(&mut log, format!("{}\n", line.line).as_bytes());
                        output.line(line.stream, &line.line);
                    }
                }
                result = &mut inbox.result => {
                    // Lines posted before the result are already queued: take them first.
                    while let Ok(line) = inbox.output.try_recv() {
                        let _ = std::io::Write::write_all(&mut log, format!("{}\n", line.line).as_bytes());
                        output.line(line.stream, &line.line);
                    }
                    match result {
                        Ok(result) => break Ok(result),
                        Err(_) => break Err(failed("the data channel closed".into())),
                    }
                }
                _ = poll.tick() => {
                    let Ok((status, message, driver)) = self.job(&id).await else { continue };
                    if let Some(driver) = driver.filter(|d| node.as_ref().is_none_or(|(n, _)| n != d)) {
                        node = Some(self.placed(shared, &task.id, attempt, driver).await);
                    }
                    if let Some((driver, ip)) = &node
                        && let Some((_, false)) = self.node(driver).await
                    {
                        self.stop(&id).await;
                        break Err(failed(format!("node lost: Ray node {ip} ({driver}) died during the attempt")));
                    }
                    if terminal(&status) {
                        // The result may be on its way: give it a moment.
                        if let Ok(Ok(result)) = tokio::time::timeout(Duration::from_secs(2), &mut inbox.result).await {
                            break Ok(result);
                        }
                        // A job whose node died can fail before Ray marks the node dead.
                        if status == "FAILED"
                            && let Some((driver, ip)) = &node
                            && self.node_dies(driver).await
                        {
                            break Err(failed(format!("node lost: Ray node {ip} ({driver}) died during the attempt")));
                        }
                        break Err(failed(format!("the Ray job {id} ended ({status}) without a result: {message}")));
                    }
                }
                () = output.stop.cancelled() => {
                    self.stop(&id).await;
                    let reason = output.gave_up.take();
                    break Err(Ran::Ended(match reason {
                        Some(reason) if !a.ctx.cancel.is_cancelled() => TaskOutcome::failed(format!("the agent could not reach its model: {reason}")),
                        _ => TaskOutcome { status: TaskStatus::Cancelled, ..TaskOutcome::failed("stopped") },
                    }));
                }
            }
        };
        output.finish();
        self.channel.close(&key);
        // An attempt quicker than one look at its job still says where it ran.
        if node.is_none()
            && let Ok((_, _, Some(driver))) = self.job(&id).await
        {
            self.placed(shared, &task.id, attempt, driver).await;
        }
        let result: NodeResult = match outcome {
            Ok(result) => result,
            Err(ran) => return Ok(ran),
        };
        if let Some(error) = result.error {
            return Ok(failed(format!("on node {}: {error}", result.node)));
        }
        if result.stopped {
            return Ok(Ran::Ended(TaskOutcome {
                status: TaskStatus::Cancelled,
                exit_code: result.exit_code,
                signal: result.signal,
                ..TaskOutcome::failed("stopped")
            }));
        }
        if result.exit_code != Some(0) {
            let what = match (result.exit_code, result.signal) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(code), _) => format!("exited with code {code}"),
                (None, None) => "ended without a status".to_owned(),
            };
            let message = match output.last_error.take() {
                Some(err) => format!("{what}: {}", err.lines().next().unwrap_or(&err)),
                None => what,
            };
            return Ok(Ran::Ended(TaskOutcome {
                status: TaskStatus::Failed,
                exit_code: result.exit_code,
                signal: result.signal,
                files_changed: Vec::new(),
                message: Some(message),
            }));
        }
        if let Err(e) = verify(&result.changes, &start, &shared.blobs) {
            return Ok(failed(e));
        }
        Ok(Ran::Changes(result.changes))
    }
}

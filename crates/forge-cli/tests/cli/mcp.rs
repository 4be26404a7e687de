//! `forge mcp` through a real MCP client: the SDK's client spawns the real binary on a real
//! repository, runs the `sim` agent through the tools, and checks what the protocol carries
//! (schemas, structured results, progress, cancellation, tool errors) and what lands on disk.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, ProgressNotificationParam,
    ReadResourceRequestParams, Request, ResourceContents, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Value, json};

use crate::util::{Repo, task, wait_until};

/// A client that records the progress notifications it receives.
#[derive(Clone, Default)]
struct Client {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Client {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }
}

type Session = RunningService<RoleClient, Client>;

/// `forge mcp` in `repo`, connected.
async fn connect(repo: &Repo) -> (Session, Client) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FORGE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("mcp").current_dir(repo.path());
    let transport = TokioChildProcess::new(cmd).unwrap();
    let client = Client::default();
    let session = client.clone().serve(transport).await.unwrap();
    (session, client)
}

fn params(tool: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(map) = args else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(tool.to_owned()).with_arguments(map)
}

/// Calls `tool`, which must succeed, and returns its structured result.
async fn call(session: &Session, tool: &str, args: Value) -> Value {
    let result = session.call_tool(params(tool, args)).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{tool}: {}", text(&result));
    result
        .structured_content
        .unwrap_or_else(|| panic!("{tool} returned no structured content"))
}

/// Calls `tool`, which must fail as a tool error, and returns its text.
async fn call_err(session: &Session, tool: &str, args: Value) -> String {
    let result = session.call_tool(params(tool, args)).await.unwrap();
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} did not fail: {result:?}"
    );
    text(&result)
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A plan of two `sim` tasks writing `src/a.txt` and `docs/b.md`; `second` sleeps `secs`.
fn two_tasks(secs: u32) -> String {
    format!(
        "name = \"pair\"\n\n{}{}",
        task(
            "first",
            "writes = [\"src/**\"]",
            "say Writing a\nwrite src/a.txt\nalpha\nend"
        ),
        task(
            "second",
            "writes = [\"docs/**\"]\nafter = [\"first\"]",
            &format!("say Thinking hard\nsleep {secs}s\nwrite docs/b.md\nbeta\nend\nsay Done")
        )
    )
}

const TOOLS: [&str; 10] = [
    "forge_plan",
    "forge_validate",
    "forge_run",
    "forge_status",
    "forge_wait",
    "forge_logs",
    "forge_diff",
    "forge_apply",
    "forge_abort",
    "forge_retry",
];

#[test]
fn the_server_introduces_itself_its_tools_and_resources() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, _) = connect(&repo).await;
        let info = session.peer_info().unwrap();
        assert_eq!(info.server_info.as_ref().unwrap().name, "forge");
        assert!(info.capabilities.tools.is_some());
        assert!(info.capabilities.resources.is_some());
        assert!(
            info.instructions.as_deref().unwrap().contains("forge_run"),
            "{info:?}"
        );
        let tools = session.list_all_tools().await.unwrap();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        let mut want = TOOLS.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
        for tool in &tools {
            assert!(
                tool.description.as_deref().is_some_and(|d| d.len() > 40),
                "{tool:?}"
            );
            assert_eq!(tool.input_schema["type"], "object", "{tool:?}");
            let output = tool
                .output_schema
                .as_ref()
                .unwrap_or_else(|| panic!("{} has no output schema", tool.name));
            assert_eq!(output["type"], "object", "{tool:?}");
        }
        let run_tool = tools.iter().find(|t| t.name == "forge_run").unwrap();
        let props = run_tool.input_schema["properties"].as_object().unwrap();
        assert!(props.contains_key("plan") && props.contains_key("plan_text"));
        let logs = tools.iter().find(|t| t.name == "forge_logs").unwrap();
        assert_eq!(logs.input_schema["required"], json!(["task"]));

        let resources = session.list_all_resources().await.unwrap();
        assert_eq!(resources.len(), 1, "no runs yet: {resources:?}");
        assert_eq!(resources[0].uri, "forge://runs");
        let templates = session.list_all_resource_templates().await.unwrap();
        assert_eq!(templates[0].uri_template, "forge://runs/{run}");
        session.cancel().await.unwrap();
    });
}

fn resource_text(contents: &[ResourceContents]) -> String {
    match &contents[0] {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn plan_validate_run_wait_diff_logs_and_apply_through_the_tools() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, client) = connect(&repo).await;

        // forge_validate: problems with their line and column.
        let bad = call(
            &session,
            "forge_validate",
            json!({"plan": "name = \"x\"\n\n[[task]]\nid = \"a\"\nprompt = \"p\"\nagent = \"nosuch\"\n"}),
        )
        .await;
        assert_eq!(bad["valid"], false, "{bad}");
        let problem = &bad["errors"][0];
        assert!(problem["message"].as_str().unwrap().contains("nosuch"), "{bad}");
        assert_eq!(problem["line"], 6, "{bad}");
        assert_eq!(problem["column"], 9, "{bad}");
        assert!(bad["report"].as_str().unwrap().contains("plan.toml:6:9"), "{bad}");
        let good = call(&session, "forge_validate", json!({"plan": two_tasks(0)})).await;
        assert_eq!(good["valid"], true, "{good}");
        assert_eq!(good["tasks"][1]["after"], json!(["first"]), "{good}");

        // forge_plan: the (simulated) planner's answer becomes a validated plan file.
        let request = "Add a greeting.\n\n~~~forge-sim\nresult\n```json\n{\"name\": \"greet\", \"task\": [{\"id\": \"hello\", \"prompt\": \"Write hello\", \"writes\": [\"hello/**\"]}]}\n```\nend\n~~~\n";
        let planned = call(
            &session,
            "forge_plan",
            json!({"request": request, "agent": "sim", "output": "plans/greet.toml"}),
        )
        .await;
        assert_eq!(planned["name"], "greet", "{planned}");
        assert_eq!(planned["path"], "plans/greet.toml", "{planned}");
        assert_eq!(planned["tasks"][0]["writes"], json!(["hello/**"]), "{planned}");
        assert_eq!(repo.read("plans/greet.toml"), planned["plan"].as_str().unwrap());
        // Without `output`, nothing is written.
        let unwritten = call(
            &session,
            "forge_plan",
            json!({"request": request, "agent": "sim"}),
        )
        .await;
        assert_eq!(unwritten["path"], Value::Null);
        let text = unwritten["plan"].as_str().unwrap();
        assert!(text.contains("id = \"hello\""), "{text}");
        assert!(
            text.contains("# Review it, then: forge run plan.toml\n"),
            "{text}"
        );
        let scratch: Vec<_> = std::fs::read_dir(repo.path().join(".forge/mcp"))
            .unwrap()
            .collect();
        assert!(scratch.is_empty(), "{scratch:?}");

        // forge_run returns the id at once; forge_wait sends progress, then the summary.
        let started = call(&session, "forge_run", json!({"plan_text": two_tasks(1)})).await;
        let run = started["run"].as_str().unwrap().to_owned();
        let handle = session
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(params(
                    "forge_wait",
                    json!({"run": run}),
                ))),
                PeerRequestOptions::no_options(),
            )
            .await
            .unwrap();
        let token = handle.progress_token.clone();
        let ServerResult::CallToolResult(waited) = handle.await_response().await.unwrap() else {
            panic!("not a tool result")
        };
        let waited = waited.structured_content.unwrap();
        assert_eq!(waited["finished"], true, "{waited}");
        assert_eq!(waited["timed_out"], false, "{waited}");
        let status = &waited["status"];
        assert_eq!(status["run"], run.as_str());
        assert_eq!(status["phase"], "succeeded", "{status}");
        assert_eq!(status["exit_code"], 0);
        assert_eq!(status["done_tasks"], 2);
        assert!(
            status["summary"].as_str().unwrap().contains("2 tasks, 2 files changed"),
            "{status}"
        );
        let progress = client.progress.lock().unwrap().clone();
        assert!(progress.len() >= 2, "{progress:?}");
        assert!(progress.iter().all(|p| p.progress_token == token));
        assert!(
            progress.windows(2).all(|w| w[0].progress < w[1].progress),
            "progress must grow: {progress:?}"
        );
        assert!(
            progress
                .iter()
                .any(|p| p.message.as_deref().is_some_and(|m| m.contains("tasks done"))),
            "{progress:?}"
        );

        // An ordinary run: `forge status` and `forge runs` know it.
        let cli = repo.forge(&["status", &run, "--json"]).expect(0);
        assert!(cli.stdout.contains("\"succeeded\""), "{}", cli.stdout);
        assert_eq!(repo.runs()[0], run);

        let status = call(&session, "forge_status", json!({"run": &run[..8]})).await;
        assert_eq!(status["tasks"][0]["id"], "first");
        assert_eq!(status["tasks"][0]["status"], "succeeded");
        assert_eq!(status["tasks"][1]["files_changed"], json!(["docs/b.md"]));

        let logs = call(&session, "forge_logs", json!({"task": "second", "run": run})).await;
        assert!(logs["text"].as_str().unwrap().contains("Thinking hard"), "{logs}");
        assert_eq!(logs["truncated"], false);
        let cut = call(
            &session,
            "forge_logs",
            json!({"task": "second", "run": run, "max_bytes": 10}),
        )
        .await;
        assert_eq!(cut["truncated"], true, "{cut}");
        assert!(cut["text"].as_str().unwrap().len() <= 10);

        let diff = call(&session, "forge_diff", json!({"run": run})).await;
        let patch = diff["patch"].as_str().unwrap();
        assert!(patch.contains("+alpha") && patch.contains("+beta"), "{patch}");
        let one = call(&session, "forge_diff", json!({"run": run, "tasks": ["second"]})).await;
        let patch = one["patch"].as_str().unwrap();
        assert!(patch.contains("+beta") && !patch.contains("+alpha"), "{patch}");
        assert!(one["diff"].is_object(), "{one}");

        // Resources: the list of runs and the run's state.
        let resources = session.list_all_resources().await.unwrap();
        let uri = format!("forge://runs/{run}");
        assert!(resources.iter().any(|r| r.uri == uri), "{resources:?}");
        let read = session
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
            .unwrap();
        let state: Value = serde_json::from_str(&resource_text(&read.contents)).unwrap();
        assert_eq!(state["phase"], "succeeded");
        let read = session
            .read_resource(ReadResourceRequestParams::new("forge://runs"))
            .await
            .unwrap();
        let runs: Value = serde_json::from_str(&resource_text(&read.contents)).unwrap();
        assert_eq!(runs[0]["id"], run.as_str());

        // Nothing landed before forge_apply; then everything did.
        assert!(!repo.path().join("src/a.txt").exists());
        let applied = call(&session, "forge_apply", json!({"run": run})).await;
        assert_eq!(applied["exit_code"], 0, "{applied}");
        let files = applied["applied"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 2, "{applied}");
        assert_eq!(repo.read("src/a.txt"), "alpha\n");
        assert_eq!(repo.read("docs/b.md"), "beta\n");
        session.cancel().await.unwrap();
    });
}

#[test]
fn only_chosen_tasks_are_applied_and_a_branch_gets_the_rest() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, _) = connect(&repo).await;
        let file = repo.plan("pair", &two_tasks(0));
        let started = call(&session, "forge_run", json!({"plan": file})).await;
        let run = started["run"].as_str().unwrap().to_owned();
        assert_eq!(started["plan"], "pair.toml");
        call(&session, "forge_wait", json!({"run": run})).await;
        let applied = call(
            &session,
            "forge_apply",
            json!({"run": run, "tasks": ["first"]}),
        )
        .await;
        assert_eq!(
            applied["applied"]["files"],
            json!(["src/a.txt"]),
            "{applied}"
        );
        assert_eq!(repo.read("src/a.txt"), "alpha\n");
        assert!(!repo.path().join("docs/b.md").exists());
        let branch = call(&session, "forge_apply", json!({"run": run, "branch": true})).await;
        let name = branch["applied"]["branch"].as_str().unwrap();
        assert_eq!(name, format!("forge/{run}"));
        assert_eq!(repo.git(&["show", &format!("{name}:docs/b.md")]), "beta\n");
        session.cancel().await.unwrap();
    });
}

#[test]
fn bad_requests_are_tool_errors_and_the_connection_stays() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, _) = connect(&repo).await;
        // No runs yet.
        let e = call_err(&session, "forge_status", json!({})).await;
        assert!(e.starts_with("error: no runs yet in "), "{e}");
        assert!(e.contains("\nhint: start one with `forge run"), "{e}");

        let file = repo.plan("pair", &two_tasks(0));
        let run = call(&session, "forge_run", json!({"plan": file})).await["run"]
            .as_str()
            .unwrap()
            .to_owned();
        call(&session, "forge_wait", json!({"run": run})).await;

        for (tool, args, wanted) in [
            (
                "forge_status",
                json!({"run": "nope"}),
                "error: no run `nope` in ",
            ),
            (
                "forge_wait",
                json!({"run": "nope"}),
                "error: no run `nope` in ",
            ),
            (
                "forge_diff",
                json!({"run": "nope"}),
                "error: no run `nope` in ",
            ),
            (
                "forge_apply",
                json!({"run": "nope"}),
                "error: no run `nope` in ",
            ),
            (
                "forge_abort",
                json!({"run": "--all"}),
                "error: invalid run `--all`",
            ),
            ("forge_logs", json!({"task": "ghost", "run": run}), "ghost"),
            (
                "forge_run",
                json!({"plan": "../outside.toml"}),
                "is outside the repository",
            ),
            (
                "forge_run",
                json!({"plan": "/etc/hosts"}),
                "is outside the repository",
            ),
            (
                "forge_run",
                json!({"plan": "missing.toml"}),
                "error: no plan file at ",
            ),
            ("forge_run", json!({}), "give exactly one of `plan`"),
            (
                "forge_run",
                json!({"plan_text": "[[task]]\nid = \"a b\"\nprompt = \"p\"\n"}),
                "plan.toml:2:",
            ),
            (
                "forge_diff",
                json!({"run": run, "paths": ["../../etc"]}),
                "is outside the repository",
            ),
            (
                "forge_plan",
                json!({"request": "x", "output": ".git/config"}),
                "inside .git/",
            ),
            (
                "forge_plan",
                json!({"request": "  "}),
                "error: the request is empty",
            ),
            (
                "forge_validate",
                json!({"plan": "", "format": "yaml"}),
                "unknown plan format `yaml`",
            ),
        ] {
            let e = call_err(&session, tool, args.clone()).await;
            assert!(e.contains(wanted), "{tool} {args}: {e}");
            assert!(e.contains("error: "), "{tool} {args}: {e}");
            assert!(!e.contains("panicked"), "{e}");
        }
        // A plan named like a path is kept under .forge/mcp/ all the same.
        let named = format!(
            "name = \"../../escape\"\n\n{}",
            task("one", "writes = [\"one/**\"]", "write one/x\nx\nend")
        );
        let started = call(&session, "forge_run", json!({"plan_text": named})).await;
        let plan = started["plan"].as_str().unwrap();
        assert!(plan.starts_with(".forge/mcp/escape-"), "{started}");
        assert!(repo.path().join(plan).is_file(), "{started}");
        call(&session, "forge_wait", json!({"run": started["run"]})).await;
        // A failed `forge plan` (the planner is not installed) carries its hint.
        let e = call_err(
            &session,
            "forge_plan",
            json!({"request": "x", "agent": "nosuch-agent"}),
        )
        .await;
        assert!(e.contains("error: ") && e.contains("\nhint: "), "{e}");

        // Still there, still right.
        let status = call(&session, "forge_status", json!({"run": run})).await;
        assert_eq!(status["phase"], "succeeded");
        session.cancel().await.unwrap();
    });
}

#[test]
fn a_cancelled_wait_leaves_the_run_going_and_it_outlives_the_server() {
    let repo = Repo::new();
    let run = runtime().block_on(async {
        let (session, client) = connect(&repo).await;
        let file = repo.plan("pair", &two_tasks(3));
        let run = call(&session, "forge_run", json!({"plan": file})).await["run"]
            .as_str()
            .unwrap()
            .to_owned();
        let handle = session
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(params(
                    "forge_wait",
                    json!({"run": run}),
                ))),
                PeerRequestOptions::no_options(),
            )
            .await
            .unwrap();
        let progress = client.progress.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while progress.lock().unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress notification"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        handle
            .cancel(Some("the user went on".into()))
            .await
            .unwrap();
        // The server answers the next request; the run still goes.
        let status = call(&session, "forge_status", json!({"run": run})).await;
        assert_eq!(status["liveness"], "running", "{status}");
        // The host closes the server.
        session.cancel().await.unwrap();
        run
    });
    // The run goes on without it, to its end.
    wait_until(60, "the run to finish after the server ended", || {
        let out = repo.forge(&["status", &run, "--json"]);
        out.stdout.contains("\"phase\": \"succeeded\"")
    });
    repo.forge(&["apply", &run]).expect(0);
    assert_eq!(repo.read("docs/b.md"), "beta\n");
}

#[test]
fn abort_stops_a_run_which_stays_resumable() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, _) = connect(&repo).await;
        let file = repo.plan("pair", &two_tasks(120));
        let run = call(&session, "forge_run", json!({"plan": file})).await["run"]
            .as_str()
            .unwrap()
            .to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        loop {
            let s = call(&session, "forge_status", json!({"run": run})).await;
            if s["tasks"][1]["status"] == "running" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "second never ran: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let aborted = call(&session, "forge_abort", json!({"run": run})).await;
        assert_eq!(aborted["status"]["phase"], "cancelled", "{aborted}");
        assert_eq!(aborted["status"]["exit_code"], 130, "{aborted}");
        assert_eq!(aborted["status"]["tasks"][0]["status"], "succeeded");
        let waited = call(
            &session,
            "forge_wait",
            json!({"run": run, "timeout_secs": 5}),
        )
        .await;
        assert_eq!(waited["finished"], true, "{waited}");
        session.cancel().await.unwrap();
    });
}

#[test]
fn a_failed_task_is_retried_with_feedback_and_the_run_goes_on() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, _) = connect(&repo).await;
        let plan = format!(
            "name = \"fix\"\n\n{}{}",
            task("broken", "writes = [\"b/**\"]", "write b/partial.txt\nhalf\nend\nfail 3"),
            task(
                "after",
                "writes = [\"c/**\"]\nafter = [\"broken\"]",
                "write c/x\nc\nend"
            )
        );
        let run = call(&session, "forge_run", json!({"plan_text": plan})).await["run"]
            .as_str()
            .unwrap()
            .to_owned();
        let failed = call(&session, "forge_wait", json!({"run": run})).await;
        assert_eq!(failed["status"]["exit_code"], 1, "{failed}");
        assert_eq!(failed["status"]["tasks"][0]["status"], "failed", "{failed}");

        let e = call_err(&session, "forge_retry", json!({"run": run, "task": "brokn"})).await;
        assert!(e.contains("did you mean `broken`?"), "{e}");
        let feedback = "Finish the job.\n\n```forge-sim\nrun test -f b/partial.txt\nwrite b/done.txt\ndone\nend\n```\n";
        let retried = call(
            &session,
            "forge_retry",
            json!({"run": run, "task": "broken", "prompt": feedback}),
        )
        .await;
        assert_eq!(retried["run"], run.as_str(), "{retried}");
        let done = call(&session, "forge_wait", json!({"run": run})).await;
        assert_eq!(done["status"]["phase"], "succeeded", "{done}");
        assert_eq!(done["status"]["tasks"][0]["attempt"], 2, "{done}");
        assert_eq!(done["status"]["tasks"][1]["status"], "succeeded", "{done}");
        call(&session, "forge_apply", json!({"run": run})).await;
        assert_eq!(repo.read("b/done.txt"), "done\n");
        assert_eq!(repo.read("c/x"), "c\n");
        session.cancel().await.unwrap();
    });
}

#[test]
fn a_cancelled_plan_stops_its_planner_and_writes_nothing() {
    let repo = Repo::new();
    let mark = format!("mcp-plan-{}", std::process::id());
    runtime().block_on(async {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FORGE_") {
                cmd.env_remove(&key);
            }
        }
        cmd.arg("mcp")
            .current_dir(repo.path())
            .env("FORGE_TEST_MARK", &mark);
        let session = Client::default()
            .serve(TokioChildProcess::new(cmd).unwrap())
            .await
            .unwrap();
        let request = "Think long.\n\n~~~forge-sim\nsleep 60s\nresult\nnever\nend\n~~~\n";
        let handle = session
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(params(
                    "forge_plan",
                    json!({"request": request, "agent": "sim", "output": "p.toml"}),
                ))),
                PeerRequestOptions::no_options(),
            )
            .await
            .unwrap();
        // The server, `forge plan` and its planner agent.
        wait_until(30, "the planner to start", || {
            forge_testkit::procs::marked_processes(&mark).len() >= 3
        });
        handle.cancel(Some("changed my mind".into())).await.unwrap();
        wait_until(30, "the planner to stop", || {
            forge_testkit::procs::marked_processes(&mark).len() == 1
        });
        assert!(!repo.path().join("p.toml").exists());
        // The server goes on.
        let e = call_err(&session, "forge_status", json!({})).await;
        assert!(e.contains("no runs yet"), "{e}");
        session.cancel().await.unwrap();
    });
}

#[test]
fn requests_the_protocol_rejects_get_an_error_answer_not_a_dropped_connection() {
    let repo = Repo::new();
    runtime().block_on(async {
        let (session, _) = connect(&repo).await;
        // Arguments that do not fit the schema, an unknown tool: an error answer naming what
        // is wrong, not a dropped connection.
        for (tool, args, wanted) in [
            ("forge_logs", json!({}), "task"),
            ("forge_status", json!({"run": 5}), "expected a string"),
            ("forge_status", json!({"runn": "x"}), "runn"),
            ("forge_nothing", json!({}), "tool not found"),
        ] {
            let message = match session.call_tool(params(tool, args.clone())).await {
                Err(e) => e.to_string(),
                Ok(r) => {
                    assert_eq!(r.is_error, Some(true), "{tool} {args}: {r:?}");
                    text(&r)
                }
            };
            assert!(message.contains(wanted), "{tool} {args}: {message}");
        }
        assert!(
            session
                .read_resource(ReadResourceRequestParams::new("forge://elsewhere"))
                .await
                .is_err()
        );
        assert!(
            session
                .read_resource(ReadResourceRequestParams::new("forge://runs/nope"))
                .await
                .is_err()
        );
        let e = call_err(&session, "forge_status", json!({})).await;
        assert!(e.contains("no runs yet"), "{e}");
        session.cancel().await.unwrap();
    });
}

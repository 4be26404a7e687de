//! Budgets: `max_tokens` / `max_cost_usd` per task (plan keys) and per run (plan keys and
//! `forge run --max-tokens / --max-cost-usd`), enforced from the agent's usage events as they
//! arrive; `[prices]` in forge.toml gives a cost to tokens no agent priced.

use crate::util::Repo;

/// A `forge.toml` with the simulated agent speaking Claude's stream (a usage report per model
/// turn, no cost until the end) and a price for the model `priced`.
fn config(repo: &Repo) {
    repo.write(
        "forge.toml",
        &format!(
            "[agents.simclaude]\nprogram = \"{}\"\nargs = [\"sim-agent\", \"--format\", \"claude\", \"-f\", \"{{prompt_file}}\"]\nformat = \"claude\"\n\n[prices]\n\"priced\" = {{ input = 3.0, output = 15.0 }}\n",
            env!("CARGO_BIN_EXE_forge")
        ),
    );
    repo.commit("forge.toml");
}

/// A task that reports usage three times, then would think for a minute before writing its
/// file: a budget stops it at the usage reports, before the file.
fn spender(id: &str, extra: &str) -> String {
    format!(
        "[[task]]\nid = \"{id}\"\nagent = \"simclaude\"\nwrites = [\"{id}.txt\"]\n{extra}\nprompt = '''\nTask {id}.\n\n```forge-sim\nsay one\nsay two\nsay three\nsleep 60s\nwrite {id}.txt\ndone\nend\n```\n'''\n\n"
    )
}

fn status(repo: &Repo) -> serde_json::Value {
    let run = repo.runs()[0].clone();
    let out = repo.forge(&["status", &run, "--json"]);
    serde_json::from_str(&out.stdout).unwrap()
}

fn task_state<'a>(state: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
}

#[test]
fn a_task_over_its_token_budget_is_stopped_mid_attempt() {
    let repo = Repo::new();
    config(&repo);
    let file = repo.plan("tokens", &spender("big", "max_tokens = 1500"));
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(1);
    assert!(
        out.stdout.contains("stopped: over the task's budget"),
        "{}",
        out.stdout
    );
    let state = status(&repo);
    let big = task_state(&state, "big");
    assert_eq!(big["status"], "failed", "{big}");
    let reason = big["reason"].as_str().unwrap();
    assert!(reason.contains("over max_tokens = 1500"), "{reason}");
    // It was stopped at the usage reports: the file it would write after its sleep is not there.
    assert!(
        big["files_changed"].as_array().is_none_or(Vec::is_empty),
        "{big}"
    );
    let used =
        big["usage"]["tokens_in"].as_u64().unwrap() + big["usage"]["tokens_out"].as_u64().unwrap();
    assert!(used > 1500 && used < 10_000, "{big}");
    // No model, no price: the cost is unknown, and the summary says so.
    assert!(big["usage"]["cost_usd"].is_null(), "{big}");
    assert!(out.stdout.contains(" tok n/a"), "{}", out.stdout);
}

#[test]
fn a_run_over_its_cost_budget_stops_and_starts_nothing_new() {
    let repo = Repo::new();
    config(&repo);
    let file = repo.plan(
        "cost",
        &format!(
            "concurrency = 1\n\n{}{}",
            spender("first", "model = \"priced\""),
            spender("second", "model = \"priced\"\nafter = [\"first\"]")
        ),
    );
    let out = repo
        .forge(&["run", &file, "--no-apply", "--max-cost-usd", "0.005"])
        .expect(1);
    let state = status(&repo);
    let first = task_state(&state, "first");
    assert_eq!(first["status"], "failed", "{first}");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("over the run's budget"),
        "{first}"
    );
    // Priced from `[prices]`: the agent reported tokens only.
    let cost = state["usage"]["cost_usd"].as_f64().unwrap();
    assert!(cost > 0.005, "{}", state["usage"]);
    assert!(out.stdout.contains("Spent "), "{}", out.stdout);
    // The second never ran.
    let second = task_state(&state, "second");
    assert_ne!(second["status"], "succeeded", "{second}");
    assert_eq!(second["attempt"], 0, "{second}");
}

#[test]
fn the_run_budget_flag_stops_a_run_and_the_plan_key_is_checked() {
    let repo = Repo::new();
    config(&repo);
    let file = repo.plan(
        "flag",
        &format!(
            "concurrency = 1\n\n{}{}",
            spender("a", ""),
            spender("b", "")
        ),
    );
    let out = repo
        .forge(&["run", &file, "--no-apply", "--max-tokens", "1000"])
        .expect(1);
    assert!(
        out.stdout.contains("the run's budget is spent")
            || out.stdout.contains("over the run's budget"),
        "{}",
        out.stdout
    );
    let state = status(&repo);
    let started = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["attempt"].as_u64().unwrap_or(0) > 0)
        .count();
    assert_eq!(started, 1, "only one task started: {}", state["tasks"]);
    // Bad values are named with where they are.
    let bad = repo.plan("bad", &format!("max_tokens = 0\n\n{}", spender("a", "")));
    let err = repo.forge(&["check", &bad]).expect(2);
    assert!(
        err.stderr.contains("`max_tokens` must be between 1 and"),
        "{}",
        err.stderr
    );
    let err = repo.forge(&["run", &file, "--max-cost-usd", "0"]).expect(2);
    assert!(
        err.stderr
            .contains("`0` is not an amount of US dollars above zero"),
        "{}",
        err.stderr
    );
}

/// What a task spent before Forge was killed still counts after `forge resume`: the task's
/// next attempt is stopped as soon as the two attempts together are over its budget. One whole
/// attempt (four model turns, ~4,600 tokens) fits the budget of 5,000: without the restored
/// spend the second attempt would think its minute and write its file.
#[test]
fn a_task_budget_counts_what_was_spent_before_a_resume() {
    let repo = Repo::new();
    config(&repo);
    let task = "[[task]]\nid = \"b\"\nagent = \"simclaude\"\nwrites = [\"b.txt\"]\nmax_tokens = 5000\nprompt = '''\nTask b.\n\n```forge-sim\nsay one\nsay two\nsay three\nsleep 60s\nwrite b.txt\ndone\nend\n```\n'''\n";
    let file = repo.plan("resume", task);
    let mut child = repo
        .cmd(&["run", &file, "--no-apply"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until the first attempt has reported both turns (and thinks).
    let mut spent = 0;
    crate::util::wait_until(
        60,
        "the first attempt to report its usage three times",
        || {
            if repo.runs().is_empty() {
                return false;
            }
            let state = status(&repo);
            let Some(b) = state["tasks"]
                .as_array()
                .and_then(|tasks| tasks.iter().find(|t| t["id"] == "b"))
            else {
                return false;
            };
            spent = b["usage"]["tokens_in"].as_u64().unwrap_or(0)
                + b["usage"]["tokens_out"].as_u64().unwrap_or(0);
            spent >= 3300
        },
    );
    assert!(
        spent < 5000,
        "the first attempt alone is within the budget: {spent}"
    );
    // kill -9: the journal is all that is left of what it spent.
    child.kill().unwrap();
    child.wait().unwrap();
    let run = repo.runs()[0].clone();
    let out = repo.forge(&["resume", &run, "--no-apply"]).expect(1);
    let state = status(&repo);
    let b = task_state(&state, "b");
    assert_eq!(b["status"], "failed", "{b}\n{}", out.stdout);
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("over max_tokens = 5000") || reason.contains("budget is spent"),
        "{reason}"
    );
    assert!(
        b["files_changed"].as_array().is_none_or(Vec::is_empty),
        "{b}"
    );
    let total =
        b["usage"]["tokens_in"].as_u64().unwrap() + b["usage"]["tokens_out"].as_u64().unwrap();
    assert!(total > spent, "both attempts count: {total} after {spent}");
}

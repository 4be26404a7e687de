//! Before and during a run: the plan preview (`forge check`, `forge run --dry-run`, the start of
//! `forge run`), estimates from earlier runs, `-j`, progress in files, and completions that know
//! the repository.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::Value;

use crate::util::{Repo, json_lines, task};

/// A plan with a parallel group (api, ui), a pair the locks serialize (api reads what models
/// writes), and an `after` edge that also keeps overlapping writes apart (docs after api).
fn locks_plan() -> String {
    format!(
        "name = \"prev\"\nconcurrency = 3\n{}{}{}{}",
        task(
            "api",
            "writes = [\"src/api/**\"]\nreads = [\"src/models/**\"]\nestimate = \"10m\"",
            "write src/api/x\nx\nend"
        ),
        task(
            "ui",
            "writes = [\"src/ui/**\"]\nestimate = \"8m\"",
            "write src/ui/x\nx\nend"
        ),
        task(
            "models",
            "writes = [\"src/models/**\"]\nestimate = \"5m\"",
            "write src/models/x\nx\nend"
        ),
        task(
            "docs",
            "writes = [\"docs/**\", \"src/api/README.md\"]\nafter = [\"api\"]\nestimate = \"2m\"",
            "write docs/x\nx\nend"
        ),
    )
}

#[test]
fn the_preview_names_the_parallel_groups_the_serialized_pairs_and_the_estimate() {
    let repo = Repo::new();
    let file = repo.plan("prev", &locks_plan());
    let out = repo.forge(&["check", &file]).expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let want = [
        "Execution plan prev: 4 tasks, up to 3 at once",
        "  • api     sim  writes src/api/**; reads src/models/**  ~10m00s",
        "  • ui      sim  writes src/ui/**  ~8m00s",
        "  • models  sim  writes src/models/**  ~5m00s",
        "  • docs    sim  writes docs/**, src/api/README.md; after api  ~2m00s",
        "Resource locks:",
        "  ✓ api, ui can run together",
        "  ✓ ui, models can run together",
        "  → docs runs after api (`after`; api writes src/api/** and docs writes src/api/README.md both cover src/api/README.md)",
        "  → api and models run one at a time (locks: api reads src/models/** and models writes src/models/** both cover src/models/a)",
        "Critical path: api → docs (12m00s)",
        // api 0–10 and ui 0–8; models waits for api's read lock (10–15), docs for api (10–12).
        "Estimated time: 15m00s (vs 25m00s sequential)",
        "",
        "✓ The plan is valid. Nothing was started: `forge run prev.toml` runs it.",
    ];
    assert_eq!(lines, want, "{}", out.stdout);

    // The same preview as data.
    let json = repo.forge(&["check", &file, "--json"]).expect(0);
    let preview: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(preview["estimate_ms"], 15 * 60_000);
    assert_eq!(preview["sequential_ms"], 25 * 60_000);
    assert_eq!(preview["critical_path"], serde_json::json!(["api", "docs"]));
    assert_eq!(preview["serialized"][1]["reason"], "locks");
    assert_eq!(preview["tasks"][0]["estimate_from"], "plan");

    // -j changes the simulation: one at a time is the sequential sum.
    let one = repo.forge(&["check", &file, "-j", "1"]).expect(0);
    assert!(
        one.stdout
            .contains("Estimated time: 25m00s (vs 25m00s sequential)"),
        "{}",
        one.stdout
    );
    assert!(one.stdout.contains("up to 1 at once"), "{}", one.stdout);
}

#[test]
fn forge_run_prints_the_preview_after_its_first_line_and_publishes_it_as_an_event() {
    let repo = Repo::new();
    let file = repo.plan("prev", &locks_plan());
    let out = repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].contains("run prev-"), "{}", out.stdout);
    assert_eq!(lines[1], "Execution plan prev: 4 tasks, up to 3 at once");
    assert!(
        out.stdout
            .contains("Estimated time: 15m00s (vs 25m00s sequential)"),
        "{}",
        out.stdout
    );

    let out = repo
        .forge(&["run", &file, "--no-apply", "--json"])
        .expect(0);
    let events = json_lines(&out.stdout);
    assert_eq!(events[0]["type"], "run_started");
    assert_eq!(events[1]["type"], "plan_preview");
    let preview = &events[1]["preview"];
    assert_eq!(preview["concurrency"], 3);
    assert_eq!(preview["tasks"].as_array().unwrap().len(), 4);
    assert_eq!(
        preview["together"],
        serde_json::json!([["api", "ui"], ["ui", "models"]])
    );
    // `forge status --json` keeps it in the run's state (what the dashboard loads).
    let run = repo.runs()[0].clone();
    let status = repo.forge(&["status", &run, "--json"]).expect(0);
    let state: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(state["preview"], *preview);
}

/// The `duration_ms` of `task`'s `task_finished` in each run's journal.
fn durations(repo: &Repo, task: &str) -> Vec<u64> {
    repo.runs()
        .iter()
        .map(|run| {
            let journal = repo.read(&format!(".forge/runs/{run}/events.jsonl"));
            json_lines(&journal)
                .into_iter()
                .find(|e| e["type"] == "task_finished" && e["task"] == task)
                .and_then(|e| e["duration_ms"].as_u64())
                .unwrap()
        })
        .collect()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        u64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

#[test]
fn estimates_come_from_the_plan_then_three_earlier_runs_else_unknown() {
    let repo = Repo::new();
    let first = format!(
        "name = \"hist\"\n{}{}",
        task(
            "build",
            "writes = [\"b/**\"]",
            "sleep 150ms\nwrite b/x\nx\nend"
        ),
        task(
            "lint",
            "writes = [\"l/**\"]",
            "sleep 50ms\nwrite l/x\nx\nend"
        ),
    );
    let file = repo.plan("hist", &first);
    // Nothing to go by yet.
    let out = repo.forge(&["check", &file]).expect(0);
    assert!(
        out.stdout
            .contains("  • build  sim  writes b/**  estimate unknown"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "Estimated time: unknown (no estimate for build and lint: add `estimate = \"10m\"` to a task, or run the plan once)"
        ),
        "{}",
        out.stdout
    );
    for _ in 0..3 {
        repo.forge(&["run", &file, "--no-apply"]).expect(0);
    }
    let build = median(durations(&repo, "build"));
    let lint = median(durations(&repo, "lint"));
    let mut all = durations(&repo, "build");
    all.extend(durations(&repo, "lint"));
    let sim = median(all);

    // A plan with the same ids, a new sim task, a task with its own estimate and one whose
    // agent never ran here.
    let second = format!(
        "name = \"hist\"\n{}{}{}{}{}",
        task("build", "writes = [\"b/**\"]", "write b/x\nx\nend"),
        task(
            "lint",
            "writes = [\"l/**\"]\nafter = [\"build\"]",
            "write l/x\nx\nend"
        ),
        task("fresh", "writes = [\"f/**\"]", "write f/x\nx\nend"),
        task(
            "planned",
            "writes = [\"p/**\"]\nestimate = \"3m\"",
            "write p/x\nx\nend"
        ),
        "[[task]]\nid = \"manual\"\nagent = \"shell\"\nwrites = [\"m/**\"]\nprompt = \"true\"\n"
    );
    let file = repo.plan("hist2", &second);
    let json = repo.forge(&["check", &file, "--json"]).expect(0);
    let preview: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let task = |id: &str| {
        preview["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(task("build")["estimate_ms"], build);
    assert_eq!(task("build")["estimate_from"], "task_history");
    assert_eq!(task("lint")["estimate_ms"], lint);
    assert_eq!(task("fresh")["estimate_ms"], sim);
    assert_eq!(task("fresh")["estimate_from"], "agent_history");
    assert_eq!(task("planned")["estimate_ms"], 180_000);
    assert_eq!(task("planned")["estimate_from"], "plan");
    assert_eq!(task("manual")["estimate_from"], "unknown");
    assert!(task("manual").get("estimate_ms").is_none());
    // One unknown task: no time is invented for the run.
    assert!(preview.get("estimate_ms").is_none(), "{preview}");
    assert!(preview.get("sequential_ms").is_none(), "{preview}");
    let out = repo.forge(&["check", &file]).expect(0);
    assert!(
        out.stdout.contains("(median of earlier runs)")
            && out.stdout.contains("(median of earlier sim tasks)")
            && out
                .stdout
                .contains("Estimated time: unknown (no estimate for manual:"),
        "{}",
        out.stdout
    );
}

#[test]
fn dry_run_and_check_start_nothing_and_write_no_run_folder() {
    let repo = Repo::new();
    let marker = repo.path().join("started");
    let plan = format!(
        "name = \"dry\"\n[[task]]\nid = \"touch\"\nagent = \"shell\"\nwrites = [\"x/**\"]\nprompt = \"touch {}\"\n",
        marker.display()
    );
    let file = repo.plan("dry", &plan);
    for args in [
        vec!["run", file.as_str(), "--dry-run"],
        vec!["run", file.as_str(), "--dry-run", "--json"],
        vec!["check", file.as_str()],
    ] {
        let out = repo.forge(&args).expect(0);
        assert!(
            out.stdout.contains("Execution plan dry") || out.stdout.starts_with('{'),
            "{args:?}: {}",
            out.stdout
        );
        assert!(!marker.exists(), "{args:?} started the task");
        assert!(
            !repo.path().join(".forge").exists(),
            "{args:?} wrote into .forge"
        );
    }
    // An invalid plan: the plan error, exit 2, still nothing written.
    let bad = repo.plan("bad", "name = \"bad\"\n[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"x\"\nafter = [\"nope\"]\n");
    for args in [
        vec!["run", bad.as_str(), "--dry-run"],
        vec!["check", bad.as_str()],
    ] {
        let out = repo.forge(&args).expect(2);
        assert!(out.stderr.contains("nope"), "{args:?}: {}", out.stderr);
        assert!(!repo.path().join(".forge").exists());
    }
    // An agent that is not installed: refused as `forge run` would refuse it.
    repo.write(
        "forge.toml",
        "[agents.ghost]\nprogram = \"forge-test-no-such-agent\"\n",
    );
    let ghost = repo.plan(
        "ghost",
        "[[task]]\nid = \"a\"\nagent = \"ghost\"\nprompt = \"boo\"\n",
    );
    for args in [
        vec!["run", ghost.as_str(), "--dry-run"],
        vec!["check", ghost.as_str()],
    ] {
        let out = repo.forge(&args).expect(2);
        assert!(
            out.stderr.contains("forge-test-no-such-agent"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!repo.path().join(".forge").exists());
    }
    let missing = repo.forge(&["check", "missing.toml"]).expect(2);
    assert!(
        missing.stderr.contains("missing.toml"),
        "{}",
        missing.stderr
    );
    // `-j 0` is a usage error.
    repo.forge(&["check", &file, "-j", "0"]).expect(2);
}

#[test]
fn dash_j_1_runs_the_tasks_one_at_a_time() {
    let repo = Repo::new();
    let plan = format!(
        "name = \"one\"\nconcurrency = 3\n{}{}{}",
        task("a", "writes = [\"a/**\"]", "sleep 200ms\nwrite a/x\nx\nend"),
        task("b", "writes = [\"b/**\"]", "sleep 200ms\nwrite b/x\nx\nend"),
        task("c", "writes = [\"c/**\"]", "sleep 200ms\nwrite c/x\nx\nend"),
    );
    let file = repo.plan("one", &plan);
    let out = repo
        .forge(&["run", &file, "-j", "1", "--json", "--no-apply"])
        .expect(0);
    let events = json_lines(&out.stdout);
    assert_eq!(events[0]["concurrency"], 1);
    // (start, end) of each task, by seq and by timestamp.
    let mut spans: Vec<(u64, u64, String, String)> = ["a", "b", "c"]
        .iter()
        .map(|t| {
            let find = |kind: &str| {
                events
                    .iter()
                    .find(|e| e["type"] == kind && e["task"] == *t)
                    .unwrap()
            };
            let (s, f) = (find("task_started"), find("task_finished"));
            (
                s["seq"].as_u64().unwrap(),
                f["seq"].as_u64().unwrap(),
                s["ts"].as_str().unwrap().to_owned(),
                f["ts"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 > w[0].1,
            "a task started before the previous ended: {spans:?}"
        );
        // RFC 3339 in UTC with milliseconds: ordered as text.
        assert!(w[1].2 >= w[0].3, "overlapping timestamps: {spans:?}");
    }
    // Without -j the plan's concurrency holds (the same plan runs them together).
    let out = repo
        .forge(&["run", &file, "--json", "--no-apply"])
        .expect(0);
    assert_eq!(json_lines(&out.stdout)[0]["concurrency"], 3);
}

#[test]
fn the_progress_counts_files_as_tasks_finish() {
    let repo = Repo::new();
    let plan = format!(
        "name = \"files\"\n{}{}",
        task(
            "small",
            "writes = [\"s/**\"]\nfiles = 3",
            "write s/x\nx\nend"
        ),
        task("big", "writes = [\"b/**\"]\nfiles = 7", "fail 1"),
    );
    let file = repo.plan("files", &plan);
    repo.forge(&["run", &file, "--no-apply"]).expect(1);
    let status = repo.forge(&["status"]);
    assert!(
        status.stdout.contains("30% (3/10 files, 2/2 tasks)"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_split_plan_knows_its_files_and_its_bar_counts_them() {
    let repo = Repo::new();
    for i in 0..6 {
        repo.write(&format!("one/f{i}.txt"), "x\n");
    }
    for i in 0..4 {
        repo.write(&format!("two/f{i}.txt"), "x\n");
    }
    repo.commit("files");
    repo.forge(&[
        "split",
        "--files",
        "**/*.txt",
        "-n",
        "2",
        "--agent",
        "sim",
        "--prompt",
        "Look at {files}\n```forge-sim\nsay looked\n```",
    ])
    .expect(0);
    repo.commit("plan");
    let json = repo.forge(&["check", "plan.toml", "--json"]).expect(0);
    let preview: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let files: Vec<u64> = preview["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["files"].as_u64().unwrap())
        .collect();
    assert_eq!(files.len(), 2);
    assert_eq!(files.iter().sum::<u64>(), 10, "{files:?}");
    repo.forge(&["run", "plan.toml", "--no-apply"]).expect(0);
    let status = repo.forge(&["status"]);
    assert!(
        status.stdout.contains("100% (10/10 files, 2/2 tasks)"),
        "{}",
        status.stdout
    );
}

#[test]
fn completions_know_run_ids_task_ids_and_agent_names() {
    let repo = Repo::new();
    repo.write("forge.toml", "[agents.mine]\nprogram = \"true\"\n");
    let plan = format!(
        "name = \"comp\"\n{}{}",
        task("alpha", "writes = [\"a/**\"]", "write a/x\nx\nend"),
        task("beta", "writes = [\"b/**\"]", "write b/x\nx\nend"),
    );
    let file = repo.plan("comp", &plan);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let runs = repo.runs();
    assert_eq!(runs.len(), 2);

    let listed = repo.forge(&["__complete", "runs"]).expect(0);
    assert_eq!(listed.stdout.lines().collect::<Vec<_>>(), runs);
    let tasks = repo.forge(&["__complete", "tasks"]).expect(0);
    assert_eq!(tasks.stdout.lines().collect::<Vec<_>>(), ["alpha", "beta"]);
    let agents = repo.forge(&["__complete", "agents"]).expect(0);
    let agents: Vec<&str> = agents.stdout.lines().collect();
    for want in ["droid", "claude", "sim", "mine"] {
        assert!(agents.contains(&want), "{want}: {agents:?}");
    }

    // The bash script asks for them where they belong.
    let script = repo.forge(&["completions", "bash"]).expect(0).stdout;
    let script_path = repo.write("forge.bash", &script);
    let complete = |words: &[&str]| -> Vec<String> {
        let mut line = vec![env!("CARGO_BIN_EXE_forge")];
        line.extend_from_slice(words);
        let quoted: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; _forge_dynamic '{}' '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script_path.display(),
            quoted.join(" "),
            line.len() - 1,
            line[0],
            line[line.len() - 1],
            line[line.len() - 2],
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&program)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        got.sort();
        got
    };
    let mut sorted_runs = runs.clone();
    sorted_runs.sort();
    assert_eq!(complete(&["status", ""]), sorted_runs);
    assert_eq!(complete(&["apply", ""]), sorted_runs);
    assert_eq!(complete(&["resume", ""]), sorted_runs);
    assert_eq!(complete(&["logs", ""]), ["alpha", "beta"]);
    assert_eq!(complete(&["logs", "alpha", ""]), sorted_runs);
    assert_eq!(complete(&["logs", "al"]), ["alpha"]);
    let prefix = &runs[0][..runs[0].len() - 1];
    assert!(complete(&["status", prefix]).contains(&runs[0]));
    let agents = complete(&["plan", "--agent", ""]);
    assert!(agents.contains(&"mine".to_owned()), "{agents:?}");
    assert!(agents.contains(&"sim".to_owned()), "{agents:?}");
    // Everything else is still clap's: subcommands and flags.
    assert!(complete(&["sta"]).contains(&"status".to_owned()));
    assert!(complete(&["run", "--dry"]).contains(&"--dry-run".to_owned()));
}

/// fish, or `None` (with a note) when it is not installed — a failure instead with
/// `FORGE_REQUIRE_FISH=1` (CI).
#[allow(clippy::print_stderr)] // the note that the test was skipped
fn fish() -> Option<&'static str> {
    let found = Command::new("fish")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("fish");
    }
    assert!(
        std::env::var("FORGE_REQUIRE_FISH").as_deref() != Ok("1"),
        "FORGE_REQUIRE_FISH=1 but `fish` is not installed"
    );
    eprintln!("skipped: `fish` is not installed (set FORGE_REQUIRE_FISH=1 to make this a failure)");
    None
}

#[test]
fn fish_completions_know_run_ids_task_ids_and_agent_names() {
    let Some(fish) = fish() else { return };
    let repo = Repo::new();
    let plan = format!(
        "name = \"comp\"\n{}",
        task("alpha", "writes = [\"a/**\"]", "write a/x\nx\nend"),
    );
    let file = repo.plan("comp", &plan);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let mut runs = repo.runs();
    runs.sort();
    let script = repo.forge(&["completions", "fish"]).expect(0).stdout;
    let script_path = repo.write("forge.fish", &script);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_forge"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new(fish)
            .arg("--no-config")
            .arg("-c")
            .arg(format!(
                "source '{}'; complete -C '{line}'",
                script_path.display()
            ))
            .env("PATH", &path)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        got.sort();
        got.dedup();
        got
    };
    assert_eq!(complete("forge status "), runs);
    assert!(complete("forge logs ").contains(&"alpha".to_owned()));
    assert!(complete("forge plan --agent ").contains(&"sim".to_owned()));
}

#[test]
fn a_large_plan_is_previewed_in_short_at_the_start_of_a_run_and_whole_by_check() {
    let repo = Repo::new();
    let mut plan = String::from("name = \"wide\"\nconcurrency = 8\n");
    for i in 1..=15 {
        plan.push_str(&task(
            &format!("t{i:02}"),
            &format!("writes = [\"d{i}/**\"]"),
            &format!("write d{i}/x\nx\nend"),
        ));
    }
    let file = repo.plan("wide", &plan);
    let run = repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let listed = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("  • t"))
        .count();
    assert_eq!(listed, 12, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("  … and 3 more tasks (`forge check` lists them all)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "  ✓ No conflicts detected: t01, t02, t03, t04, t05, t06, t07, t08, t09, t10, t11, t12 and 3 more can run together"
        ),
        "{}",
        run.stdout
    );
    let check = repo.forge(&["check", &file]).expect(0);
    let listed = check
        .stdout
        .lines()
        .filter(|l| l.starts_with("  • t"))
        .count();
    assert_eq!(listed, 15, "{}", check.stdout);
    assert!(!check.stdout.contains("more"), "{}", check.stdout);
}

#[test]
fn a_plan_with_quadratically_many_lock_pairs_is_previewed_in_bounded_space() {
    let repo = Repo::new();
    // 30 tasks write one file each under shared/, 30 read all of shared/: 900 pairs the locks
    // keep apart; and a chain of 12 tasks.
    let mut plan = String::from("name = \"many\"\n");
    for i in 0..30 {
        let _ = write!(
            plan,
            "[[task]]\nid = \"w{i:02}\"\nagent = \"sim\"\nprompt = \"x\"\nwrites = [\"shared/f{i}.txt\"]\n"
        );
        let _ = write!(
            plan,
            "[[task]]\nid = \"r{i:02}\"\nagent = \"sim\"\nprompt = \"x\"\nreads = [\"shared/**\"]\nwrites = [\"out/r{i}/**\"]\n"
        );
    }
    for i in 0..12 {
        let after = if i == 0 {
            String::new()
        } else {
            format!("after = [\"c{:02}\"]\n", i - 1)
        };
        let _ = write!(
            plan,
            "[[task]]\nid = \"c{i:02}\"\nagent = \"sim\"\nprompt = \"x\"\nwrites = [\"chain/{i}/**\"]\n{after}"
        );
    }
    let file = repo.plan("many", &plan);
    let out = repo.forge(&["check", &file]).expect(0);
    let listed = out
        .stdout
        .lines()
        .filter(|l| l.contains("run one at a time (locks:"))
        .count();
    assert_eq!(listed, 200, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("  … and 700 more pairs the locks keep apart (not listed)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "Critical path: c00 → c01 → c02 → c03 → c04 → c05 → c06 → c07 → c08 → … → c11 (12 tasks)"
        ),
        "{}",
        out.stdout
    );
    let json = repo.forge(&["check", &file, "--json"]).expect(0);
    let preview: Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(preview["more_serialized"], 700);
    // 11 `after` edges and 200 lock pairs.
    assert_eq!(preview["serialized"].as_array().unwrap().len(), 211);
}

/// zsh, or `None` (with a note) when it is not installed — a failure instead with
/// `FORGE_REQUIRE_ZSH=1` (CI).
#[allow(clippy::print_stderr)] // the note that the test was skipped
fn zsh() -> Option<&'static str> {
    let found = Command::new("zsh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("zsh");
    }
    assert!(
        std::env::var("FORGE_REQUIRE_ZSH").as_deref() != Ok("1"),
        "FORGE_REQUIRE_ZSH=1 but `zsh` is not installed"
    );
    eprintln!("skipped: `zsh` is not installed (set FORGE_REQUIRE_ZSH=1 to make this a failure)");
    None
}

#[test]
fn zsh_completions_know_run_ids_task_ids_and_agent_names() {
    let Some(zsh) = zsh() else { return };
    let repo = Repo::new();
    repo.write("forge.toml", "[agents.mine]\nprogram = \"true\"\n");
    let plan = format!(
        "name = \"comp\"\n{}",
        task("alpha", "writes = [\"a/**\"]", "write a/x\nx\nend"),
    );
    let file = repo.plan("comp", &plan);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    repo.forge(&["run", &file, "--no-apply"]).expect(0);
    let mut runs = repo.runs();
    runs.sort();
    let script = repo.forge(&["completions", "zsh"]).expect(0).stdout;
    let script_path = repo.write("forge.zsh", &script);
    let capture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/zsh-capture.zsh");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_forge"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new(zsh)
            .arg("-f")
            .arg(&capture)
            .arg(&script_path)
            .arg(line)
            .env("PATH", &path)
            .env("ZCOMPDUMP", repo.path().join(".zcompdump"))
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        got.sort();
        got.dedup();
        got
    };
    assert_eq!(complete("forge status "), runs);
    assert_eq!(complete("forge apply "), runs);
    assert_eq!(complete("forge logs "), ["alpha"]);
    assert_eq!(complete("forge logs alpha "), runs);
    let agents = complete("forge plan --agent ");
    assert!(
        agents.contains(&"mine".to_owned()) && agents.contains(&"sim".to_owned()),
        "{agents:?}"
    );
    assert!(complete("forge sta").contains(&"status".to_owned()));
}

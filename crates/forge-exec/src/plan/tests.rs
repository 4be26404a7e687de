use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<Plan, PlanError> {
    Plan::parse(
        text,
        Path::new("plan.toml"),
        PlanFormat::Toml,
        &PlanOptions::default(),
    )
}

fn problems(text: &str) -> Vec<String> {
    parse(text).unwrap_err().short()
}

const GOOD: &str = r#"
name = "auth"
concurrency = 4
base = "worktree"
on_failure = "fail_fast"

[defaults]
agent = "droid"
timeout = "30m"
retries = 1

[pools]
claude = 2

[[task]]
id = "backend"
prompt = "Add /api/auth endpoints and JWT middleware"
writes = ["src/api/**"]
reads  = ["src/models/**"]
appends = ["CHANGELOG.md"]
estimate = "10m"

[[task]]
id = "tests"
agent = "claude"
pool = "claude"
prompt = "Unit and integration tests for auth"
writes = ["tests/**"]
appends = ["CHANGELOG.md"]
after  = ["backend"]
retry_on = [1, "timeout"]
env = { RUST_LOG = "debug" }

[merge]
"CHANGELOG.md" = "union"

[gate]
commands = ["cargo build", "cargo test"]
timeout = "10m"
"#;

#[test]
fn a_full_plan_loads() {
    let plan = parse(GOOD).unwrap();
    assert_eq!(plan.name, "auth");
    assert_eq!(plan.concurrency, 4);
    assert_eq!(plan.base, BaseMode::Worktree);
    assert_eq!(plan.on_failure, OnFailure::FailFast);
    assert_eq!(plan.tasks.len(), 2);
    let backend = &plan.tasks[0];
    assert_eq!(backend.agent, "droid");
    assert_eq!(backend.timeout, Some(Duration::from_mins(30)));
    assert_eq!(backend.retries, 1);
    assert_eq!(backend.writes[0].pattern.as_str(), "src/api/**");
    assert_eq!(backend.estimate, Some(Duration::from_mins(10)));
    let tests = &plan.tasks[1];
    assert_eq!(tests.agent, "claude");
    assert_eq!(tests.after, [TaskId::new("backend").unwrap()]);
    assert_eq!(tests.retry_on.exit_codes, [1]);
    assert!(tests.retry_on.timeout);
    assert_eq!(tests.env["RUST_LOG"], "debug");
    assert_eq!(plan.pools["claude"], 2);
    assert_eq!(plan.merge[0].strategy, MergeStrategy::Union);
    assert_eq!(plan.gate.commands, ["cargo build", "cargo test"]);
}

#[test]
fn json_plans_load_too() {
    let json = r#"{
      // comments are fine
      "name": "j",
      "defaults": {"agent": "sim"},
      "task": [
        {"id": "a", "prompt": "do a", "writes": ["a/**"]},
        {"id": "b", "prompt": "do b", "writes": ["b/**"], "after": ["a"],},
      ]
    }"#;
    let plan = Plan::parse(
        json,
        Path::new("plan.json"),
        PlanFormat::Json,
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(plan.tasks.len(), 2);
    let err = Plan::parse(
        "{\n  \"task\": [{\"id\": \"a\", \"agent\": \"sim\", \"prompt\": \"x\", \"wrtes\": []}]\n}",
        Path::new("plan.json"),
        PlanFormat::Json,
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.short(),
        ["plan.json:2:55: unknown key `wrtes` in [[task]] #1"]
    );
    assert!(err.render().contains("did you mean `writes`?"));
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let text = r#"
[defaults]
agent = "droid"

[[task]]
id = "a"
prompt = "x"
writes = ["src/**"]
timeot = "5m"

[[task]]
id = "a"
prompt = "   "
after = ["ghost"]

[[task]]
id = "b"
agent = "clade"
prompt = "y"
writes = ["/abs", "src/api/x.rs"]
timeout = "5 minutes"
"#;
    let got = problems(text);
    let want = [
        "plan.toml:9:1: unknown key `timeot` in [[task]] #1",
        "plan.toml:12:6: duplicate task id `a`",
        "plan.toml:13:10: task `a` has an empty prompt",
        "plan.toml:14:10: task `a` runs after `ghost`, which is not a task of this plan",
        "plan.toml:18:9: task `b` uses unknown agent `clade`",
        "plan.toml:20:11: invalid claim `/abs` in `writes` of task `b`: absolute paths are not allowed; write the path relative to the repository root",
        "plan.toml:20:19: tasks `a` and `b` both write `src/api/x.rs` (`src/**` and `src/api/x.rs`) and neither runs after the other",
        "plan.toml:21:11: `timeout` of task `b`: invalid duration `5 minutes`: a number needs a unit (write e.g. `500ms`, `2s`, `30m`, `1h30m`)",
    ];
    assert_eq!(got, want, "{got:#?}");
    let rendered = parse(text).unwrap_err().render();
    assert!(
        rendered.contains("help: did you mean `timeout`?"),
        "{rendered}"
    );
    assert!(
        rendered.contains("help: did you mean `claude`?"),
        "{rendered}"
    );
    assert!(rendered.contains("--> plan.toml:18:9"), "{rendered}");
    assert!(rendered.contains("first used here"), "{rendered}");
    assert!(
        rendered.contains("add `after = [\"a\"]` to task `b`"),
        "{rendered}"
    );
    assert!(
        rendered.ends_with("error: the plan plan.toml has 8 problems"),
        "{rendered}"
    );
}

#[test]
fn cycles_are_printed() {
    let text = r#"
[defaults]
agent = "sim"
[[task]]
id = "a"
prompt = "x"
after = ["c"]
[[task]]
id = "b"
prompt = "x"
after = ["a"]
[[task]]
id = "c"
prompt = "x"
after = ["b"]
[[task]]
id = "d"
prompt = "x"
after = ["d"]
"#;
    let got = problems(text);
    assert!(
        got.contains(&"plan.toml:11:10: dependency cycle: a -> b -> c -> a".to_owned()),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|p| p.ends_with("task `d` runs after itself")),
        "{got:#?}"
    );
}

#[test]
fn syntax_errors_and_wrong_types() {
    let got = problems("name = \"x\"\nconcurrency = \"four\"\n[[task]]\nid = 3\n");
    assert_eq!(
        got,
        [
            "plan.toml:2:15: `concurrency` must be an integer, not a string",
            "plan.toml:4:6: `task #1.id` must be a string, not an integer",
        ]
    );
    let got = problems("name = \n[[task]\n");
    assert!(
        got.iter()
            .all(|p| p.starts_with("plan.toml:") && p.contains("invalid TOML")),
        "{got:?}"
    );
    assert!(!got.is_empty());
    assert_eq!(
        problems("name = \"x\"\n"),
        ["plan.toml:1:1: the plan has no tasks"]
    );
}

#[test]
fn unknown_pools_and_strategies() {
    let got = problems(
        "[defaults]\nagent = \"sim\"\n[pools]\nclaude = 2\n[[task]]\nid = \"a\"\nprompt = \"x\"\npool = \"claud\"\n[merge]\n\"CHANGELOG.md\" = \"newest\"\n",
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("plan.toml:8:8: task `a` uses pool `claud`"));
    assert!(got[1].starts_with("plan.toml:10:18: unknown merge strategy `newest`"));
}

#[test]
fn prompt_files_are_read_relative_to_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.md"), "Refactor the parser").unwrap();
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        "[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt_file = \"p.md\"\n",
    )
    .unwrap();
    let plan = Plan::load(&plan_path, &PlanOptions::default()).unwrap();
    assert_eq!(plan.tasks[0].prompt, "Refactor the parser");
    std::fs::write(
        &plan_path,
        "[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt_file = \"missing.md\"\n",
    )
    .unwrap();
    let err = Plan::load(&plan_path, &PlanOptions::default()).unwrap_err();
    assert!(
        err.short()[0].contains("cannot read prompt file"),
        "{:?}",
        err.short()
    );
    let err = Plan::load(&dir.path().join("nope.toml"), &PlanOptions::default()).unwrap_err();
    assert!(err.short()[0].starts_with("cannot read plan file"));
}

fn conflicting() -> &'static str {
    r#"
[defaults]
agent = "sim"
[[task]]
id = "a"
prompt = "x"
writes = ["src/**"]
[[task]]
id = "b"
prompt = "x"
writes = ["src/b.rs"]
[[task]]
id = "c"
prompt = "x"
writes = ["src/c/**"]
[[task]]
id = "d"
prompt = "x"
writes = ["docs/**"]
"#
}

#[test]
fn serialize_conflicts_adds_minimal_edges_in_plan_order() {
    assert_eq!(problems(conflicting()).len(), 2);
    let opts = PlanOptions {
        conflicts: ConflictPolicy::Serialize,
        ..PlanOptions::default()
    };
    let plan = Plan::parse(
        conflicting(),
        Path::new("plan.toml"),
        PlanFormat::Toml,
        &opts,
    )
    .unwrap();
    let after: Vec<Vec<&str>> = plan
        .tasks
        .iter()
        .map(|t| t.after.iter().map(TaskId::as_str).collect())
        .collect();
    assert_eq!(after, [vec![], vec!["a"], vec!["a"], vec![]]);
    // Three tasks writing the same file become a chain, not a triangle.
    let mut chain = Plan {
        tasks: ["x", "y", "z"]
            .iter()
            .map(|id| {
                let mut t = Task::new(TaskId::new(*id).unwrap(), "sim", "p");
                t.writes.push(Claim::write("f").unwrap());
                t
            })
            .collect(),
        ..parse("[[task]]\nid = \"q\"\nagent = \"sim\"\nprompt = \"p\"\n").unwrap()
    };
    let added = chain.serialize_conflicts();
    let pairs: Vec<(&str, &str)> = added
        .iter()
        .map(|e| (e.task.as_str(), e.after.as_str()))
        .collect();
    assert_eq!(pairs, [("y", "x"), ("z", "y")]);
    assert!(chain.validate(&PlanOptions::default()).is_ok());
    assert!(chain.serialize_conflicts().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Random plans with injected defects: every defect is reported.

#[derive(Debug, Clone)]
struct Gen {
    n: usize,
    /// (task, dependency) edges pointing backwards: a DAG.
    deps: Vec<(usize, usize)>,
    duplicate: Option<usize>,
    dangling: Option<usize>,
    /// Add an edge from an early task to a later one that depends on it, closing a cycle.
    cycle: Option<(usize, usize)>,
}

fn plans() -> impl Strategy<Value = Gen> {
    (3..25usize).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec((1..n, 0..n), 0..n * 2),
            prop::option::of(1..n),
            prop::option::of(0..n),
            prop::option::of((0..n, 0..n)),
        )
            .prop_map(|(n, raw, duplicate, dangling, cycle)| Gen {
                n,
                deps: raw.into_iter().map(|(t, d)| (t, d % t)).collect(),
                duplicate,
                dangling,
                cycle: cycle.filter(|(a, b)| a < b),
            })
    })
}

fn render(g: &Gen) -> String {
    let mut out = String::from("[defaults]\nagent = \"sim\"\n");
    for i in 0..g.n {
        let id = if Some(i) == g.duplicate {
            "t0".to_owned()
        } else {
            format!("t{i}")
        };
        let mut after: Vec<String> = g
            .deps
            .iter()
            .filter(|(t, _)| *t == i)
            .map(|(_, d)| format!("\"t{d}\""))
            .collect();
        if Some(i) == g.dangling {
            after.push("\"ghost\"".into());
        }
        if let Some((a, b)) = g.cycle
            && a == i
        {
            // a runs after b; closes a cycle only if b (transitively) runs after a.
            after.push(format!("\"t{b}\""));
        }
        let _ = write!(
            out,
            "[[task]]\nid = \"{id}\"\nprompt = \"p\"\nwrites = [\"d{i}/**\"]\nafter = [{}]\n",
            after.join(", ")
        );
    }
    out
}

fn reaches(g: &Gen, from: usize, to: usize) -> bool {
    // Does `to` (transitively) run after `from`? Edges: (task, dep) = task after dep.
    let mut stack = vec![from];
    let mut seen = vec![false; g.n];
    while let Some(x) = stack.pop() {
        if x == to {
            return true;
        }
        for &(t, d) in &g.deps {
            if d == x && !seen[t] {
                seen[t] = true;
                stack.push(t);
            }
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn injected_defects_are_all_reported(g in plans()) {
        let text = render(&g);
        let result = parse(&text);
        let expect_cycle = g.cycle.is_some_and(|(a, b)| reaches(&g, a, b));
        let clean = g.duplicate.is_none() && g.dangling.is_none() && !expect_cycle;
        match result {
            Ok(plan) => prop_assert!(clean, "defects not reported:\n{text}\nplan: {} tasks", plan.tasks.len()),
            Err(err) => {
                let short = err.short();
                prop_assert!(!clean, "clean plan rejected: {short:?}\n{text}");
                if g.duplicate.is_some() {
                    prop_assert!(short.iter().any(|p| p.contains("duplicate task id `t0`")), "{short:?}");
                }
                if g.dangling.is_some() {
                    prop_assert!(short.iter().any(|p| p.contains("`ghost`, which is not a task")), "{short:?}");
                }
                if expect_cycle && g.duplicate.is_none() {
                    prop_assert!(short.iter().any(|p| p.contains("dependency cycle:")), "{short:?}");
                }
                for p in &short {
                    prop_assert!(p.starts_with("plan.toml:"), "problem without position: {p}");
                }
            }
        }
    }
}

#[test]
fn big_plans_are_parsed_in_pieces_without_changing_toml_meaning() {
    let text = r#"
[defaults]
agent = "sim"

[[task]]
id = "a"
prompt = """
A prompt that mentions
[[task]]
on a line of its own."""
writes = [
  "a/**",
]

[task.env]
MODE = "fast"

[[task]]
id = "b"
prompt = "b"

[gate]
commands = ["true"]
"#;
    let plan = parse(text).unwrap();
    assert_eq!(plan.tasks.len(), 2);
    assert!(plan.tasks[0].prompt.contains("[[task]]\non a line"));
    assert_eq!(plan.tasks[0].env["MODE"], "fast");
    assert!(plan.tasks[1].env.is_empty());
    assert_eq!(plan.gate.commands, ["true"]);

    // A table defined in two pieces is an error, as in TOML.
    let twice = "[gate]\ncommands = [\"a\"]\n[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"p\"\n[gate]\ncommands = [\"b\"]\n";
    let got = problems(twice);
    assert_eq!(
        got[0],
        "plan.toml:7:2: invalid TOML: `gate` is defined twice"
    );

    // Syntax errors in several pieces are all reported, at their place in the file.
    let broken = "[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \n[[task]]\nid = \"b\"\nagent = \"sim\"\nprompt = \"p\" junk\n";
    let got = problems(broken);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("plan.toml:4:") && got[1].starts_with("plan.toml:8:"),
        "{got:?}"
    );
}

#[test]
fn a_table_extended_after_a_task_is_still_the_same_table() {
    // Valid TOML: `[defaults.env]` after a `[[task]]` extends `[defaults]`, it does not define it
    // again; `[task.env]` after `[gate]` belongs to the last task.
    let text = "[defaults]\nagent = \"sim\"\n\n[[task]]\nid = \"a\"\nprompt = \"a\"\n\n[defaults.env]\nMODE = \"fast\"\n\n[[task]]\nid = \"b\"\nprompt = \"b\"\n\n[gate]\ncommands = [\"true\"]\n\n[task.env]\nB = \"1\"\n";
    let plan = parse(text).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(plan.tasks.len(), 2);
    assert_eq!(plan.tasks[0].env["MODE"], "fast");
    assert_eq!(plan.tasks[1].env["MODE"], "fast");
    assert_eq!(plan.tasks[1].env["B"], "1");
    assert!(!plan.tasks[0].env.contains_key("B"));
    assert_eq!(plan.gate.commands, ["true"]);
}

/// Lines plans are made of: headers of every kind, keys, inline and dotted tables, and a
/// multi-line string holding a header.
const PIECES: &[&str] = &[
    "name = \"x\"",
    "concurrency = 2",
    "[defaults]",
    "[defaults.env]",
    "['defaults'.env]",
    "agent = \"sim\"",
    "A = \"1\"",
    "env = { B = \"2\" }",
    "env.C = \"3\"",
    "[[task]]",
    "[[\"task\"]]",
    "id = \"t\"",
    "[task.env]",
    "[[task.extra]]",
    "[gate]",
    "commands = [\"true\",\n  \"[[task]]\"]",
    "[merge]",
    "[pools]",
    "task = [{ id = \"x\" }]",
    "[task]",
    "# [[task]]",
    "",
    "prompt = \"\"\"\n[[task]]\n[gate]\n\"\"\"",
];

/// The top level's keys in name order, the `task` array's own span left out (the parts agree
/// on every task, not on where the array as a whole is said to be).
fn normalized(node: tree::Node<'_>) -> Vec<(String, tree::Node<'_>)> {
    let tree::Kind::Table(entries) = node.kind else {
        return Vec::new();
    };
    let mut out: Vec<(String, tree::Node<'_>)> = entries
        .into_iter()
        .map(|(k, mut v)| {
            if k.name == "task" {
                v.span = 0..0;
            }
            (format!("{}@{:?}", k.name, k.span), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any document TOML accepts is read the same whole and in task sections, and any it
    /// rejects is rejected.
    #[test]
    fn split_parsing_agrees_with_toml(lines in prop::collection::vec(0..PIECES.len(), 0..14)) {
        let text = lines.iter().map(|&i| PIECES[i]).collect::<Vec<_>>().join("\n");
        let whole = tree::from_toml_whole(&text);
        let mut problems = Vec::new();
        let split = tree::from_toml(&text, &mut problems);
        prop_assert_eq!(whole.is_some(), split.is_some(), "{}\n{:?}", text, problems);
        if let (Some(whole), Some(split)) = (whole, split) {
            prop_assert!(problems.is_empty());
            prop_assert_eq!(normalized(whole), normalized(split), "{}", text);
        }
    }
}

#[test]
fn a_zero_timeout_is_rejected_where_it_is_written() {
    let text = "[defaults]\nagent = \"sim\"\ntimeout = \"0s\"\n[[task]]\nid = \"a\"\nprompt = \"a\"\ntimeout = \"0ms\"\n[gate]\ncommands = [\"true\"]\ntimeout = \"0m\"\n";
    let got = problems(text);
    assert_eq!(
        got,
        [
            "plan.toml:3:11: `defaults.timeout` must be longer than zero",
            "plan.toml:7:11: `timeout` of task `a` must be longer than zero",
            "plan.toml:10:11: `gate.timeout` must be longer than zero",
        ]
    );
    let mut plan = parse("[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"a\"\n").unwrap();
    plan.tasks[0].timeout = Some(Duration::ZERO);
    let err = plan.validate(&PlanOptions::default()).unwrap_err();
    assert!(err.short()[0].contains("zero timeout"), "{:?}", err.short());
}

#[test]
fn a_json_plan_nested_too_deep_is_an_error_not_a_crash() {
    let text = format!(
        "{{\"task\": [{{\"id\": \"a\", \"env\": {}{}}}]}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let err = Plan::parse(
        &text,
        Path::new("plan.json"),
        PlanFormat::Json,
        &PlanOptions::default(),
    )
    .unwrap_err();
    let short = err.short();
    assert_eq!(
        short,
        ["plan.json:1:155: the JSON plan nests arrays and objects more than 128 deep"]
    );
    // Brackets in strings and comments do not count.
    let fine = format!(
        "// {}\n{{\"name\": \"{}\", \"task\": [{{\"id\": \"a\", \"agent\": \"sim\", \"prompt\": \"p\"}}]}}",
        "[".repeat(500),
        "{".repeat(500)
    );
    Plan::parse(
        &fine,
        Path::new("plan.json"),
        PlanFormat::Json,
        &PlanOptions::default(),
    )
    .unwrap();
}

#[test]
fn a_plan_that_is_not_utf8_is_located_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(
        &path,
        b"[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"na\xc3\xafve \xff\"\n",
    )
    .unwrap();
    let err = Plan::load(&path, &PlanOptions::default()).unwrap_err();
    let short = err.short();
    assert_eq!(short.len(), 1, "{short:?}");
    assert!(
        short[0].ends_with(
            "plan.toml:4:17: the plan is not valid UTF-8: byte 0xff is not part of a character"
        ),
        "{short:?}"
    );
    assert!(err.render().contains("save the plan file as UTF-8"));
}

#[test]
fn budgets_load_from_every_level_and_round_trip() {
    let text = r#"
max_cost_usd = 5
max_tokens = 2000000

[defaults]
agent = "shell"
max_tokens = 100000

[[task]]
id = "a"
prompt = "true"

[[task]]
id = "b"
prompt = "true"
max_cost_usd = 0.75
max_tokens = 50000
"#;
    let plan = parse(text).unwrap();
    assert_eq!(plan.budget.max_cost_usd, Some(5.0));
    assert_eq!(plan.budget.max_tokens, Some(2_000_000));
    assert_eq!(plan.tasks[0].budget.max_tokens, Some(100_000));
    assert_eq!(plan.tasks[0].budget.max_cost_usd, None);
    assert_eq!(plan.tasks[1].budget.max_cost_usd, Some(0.75));
    assert_eq!(plan.tasks[1].budget.max_tokens, Some(50_000));
    // The run's plan copy (what resume reads) keeps them.
    let again = parse(&plan.to_toml()).unwrap();
    assert_eq!(again.tasks, plan.tasks);
    assert_eq!(again.budget, plan.budget);
    let got = problems(
        "max_cost_usd = -1\n[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"x\"\nmax_tokens = \"lots\"\n",
    );
    assert!(
        got.iter()
            .any(|p| p.contains("`max_cost_usd` must be above zero, not -1")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| p.contains("`max_tokens` of task `a` must be an integer")),
        "{got:?}"
    );
}

#[test]
fn limits_and_isolation_load_and_round_trip() {
    let text = r#"
[isolation]
require = true
shared_tmp = true

[defaults]
agent = "shell"
memory = "2G"
cpus = 1.5

[[task]]
id = "a"
prompt = "true"

[[task]]
id = "b"
prompt = "true"
memory = "512M"
cpus = 2
"#;
    let plan = parse(text).unwrap();
    assert!(plan.isolation.require);
    assert!(plan.isolation.shared_tmp);
    assert_eq!(plan.tasks[0].memory, Some(2 << 30));
    assert_eq!(plan.tasks[0].cpus, Some(1.5));
    assert_eq!(plan.tasks[1].memory, Some(512 << 20));
    assert_eq!(plan.tasks[1].cpus, Some(2.0));
    let again = parse(&plan.to_toml()).unwrap();
    assert_eq!(again.tasks, plan.tasks);
    assert_eq!(again.isolation, plan.isolation);
    // JSON plans take the same keys.
    let json = r#"{"isolation": {"require": false}, "task": [{"id": "a", "agent": "shell", "prompt": "x", "memory": 1073741824, "cpus": 0.5}]}"#;
    let plan = Plan::parse(
        json,
        Path::new("plan.json"),
        PlanFormat::Json,
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(plan.tasks[0].memory, Some(1 << 30));
    assert_eq!(plan.tasks[0].cpus, Some(0.5));
}

#[test]
fn bad_limits_are_reported_with_their_position() {
    let text = r#"
[isolation]
require = "yes"
strict = true

[[task]]
id = "a"
agent = "shell"
prompt = "true"
memory = "2 gigs"
cpus = 0

[[task]]
id = "b"
agent = "shell"
prompt = "true"
memory = "100K"
cpus = "two"
"#;
    let rendered = parse(text).unwrap_err().render();
    for expected in [
        "`isolation.require`",
        "unknown key `strict`",
        "`memory` of task `a`",
        "unknown unit `gigs`",
        "must be between 0.01 and 4096, not 0",
        "below the smallest memory limit, 1M",
        "a number of CPUs such as 1.5",
        "--> plan.toml:10:10",
    ] {
        assert!(rendered.contains(expected), "{expected}: {rendered}");
    }
}

#[test]
fn resources_load_round_trip_and_bad_ones_are_reported() {
    let text = r#"
[[task]]
id = "a"
agent = "shell"
prompt = "true"
resources = { CPU = 2, agent = 1, GPU = 0.5 }
"#;
    let plan = parse(text).unwrap();
    let want: BTreeMap<String, f64> = [("CPU", 2.0), ("GPU", 0.5), ("agent", 1.0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(plan.tasks[0].resources, want);
    assert_eq!(parse(&plan.to_toml()).unwrap().tasks, plan.tasks);

    let bad = r#"
[[task]]
id = "a"
agent = "shell"
prompt = "true"
resources = { CPU = 0, agent = "one" }
"#;
    let rendered = parse(bad).unwrap_err().render();
    for expected in [
        "resource `CPU` of `resources` of task `a` must have an amount above zero",
        "resource `agent` of `resources` of task `a` must be an amount such as 1 or 0.5",
        "--> plan.toml:6:21",
    ] {
        assert!(rendered.contains(expected), "{expected}: {rendered}");
    }
}

#[test]
fn checks_and_fix_rounds_load_default_and_round_trip() {
    let text = r#"
[defaults]
agent = "shell"
check = ["cargo check"]

[[task]]
id = "a"
prompt = "true"

[[task]]
id = "b"
prompt = "true"
check = ["make lint", "make test"]
check_rounds = 3

[gate]
commands = ["make"]
fix_rounds = 2
"#;
    let plan = parse(text).unwrap();
    assert_eq!(plan.tasks[0].check, ["cargo check"]);
    assert_eq!(plan.tasks[0].check_rounds, 1);
    assert_eq!(plan.tasks[1].check, ["make lint", "make test"]);
    assert_eq!(plan.tasks[1].check_rounds, 3);
    assert_eq!(plan.gate.fix_rounds, 2);
    // The run's plan copy (what resume reads) keeps them.
    let again = parse(&plan.to_toml()).unwrap();
    assert_eq!(again.tasks, plan.tasks);
    assert_eq!(again.gate, plan.gate);
    // Defaults: no checks, one check round, one fix round.
    let defaulted = parse("[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"x\"\n").unwrap();
    assert!(defaulted.tasks[0].check.is_empty());
    assert_eq!(defaulted.tasks[0].check_rounds, 1);
    assert_eq!(defaulted.gate.fix_rounds, 1);
    let zero =
        parse("[gate]\nfix_rounds = 0\n[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"x\"\n")
            .unwrap();
    assert_eq!(parse(&zero.to_toml()).unwrap().gate.fix_rounds, 0);
    // Bad values name the key.
    let err =
        parse("[gate]\nfix_rounds = -1\n[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"x\"\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("fix_rounds"), "{err}");
    // One command may be written as a string, as other lists can.
    let one = parse("[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"x\"\ncheck = \"make\"\n")
        .unwrap();
    assert_eq!(one.tasks[0].check, ["make"]);
    let err = parse("[[task]]\nid = \"a\"\nagent = \"shell\"\nprompt = \"x\"\ncheck = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("check"), "{err}");
}

#[test]
fn candidates_expand_into_a_group_that_round_trips_and_no_task_runs_after() {
    let text = r#"
[[task]]
id = "impl"
agent = "sim"
prompt = "Do it"
writes = ["src/**"]
candidates = 3

[[task]]
id = "docs"
agent = "sim"
prompt = "Write docs"
writes = ["docs/**"]
"#;
    let plan = parse(text).unwrap();
    let ids: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["impl-1", "impl-2", "impl-3", "docs"]);
    assert!(
        plan.tasks[..3].iter().all(
            |t| t.candidate_of.as_ref().map(TaskId::as_str) == Some("impl") && t.candidates == 1
        )
    );
    // Their overlapping writes are no conflict: they hold them shared with each other.
    // The copy written to the run store reads back as the same group.
    let again = parse(&plan.to_toml()).unwrap();
    assert_eq!(
        again
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.candidate_of.clone()))
            .collect::<Vec<_>>(),
        plan.tasks
            .iter()
            .map(|t| (t.id.as_str(), t.candidate_of.clone()))
            .collect::<Vec<_>>()
    );

    let after = format!("{text}after = [\"impl-2\"]\n");
    let found = problems(&after);
    assert!(
        found
            .iter()
            .any(|p| p.contains("task `docs` runs after `impl-2`, which is run as candidates")),
        "{found:?}"
    );
    let found = problems(&text.replace("candidates = 3", "candidates = 0"));
    assert!(found.iter().any(|p| p.contains("candidates")), "{found:?}");
    // Another task writing the group's files still conflicts with it.
    let found = problems(&text.replace("docs/**", "src/**"));
    assert!(found.iter().any(|p| p.contains("both write")), "{found:?}");
}

#[test]
fn merge_driver_timeout_is_a_setting_unless_its_value_is_a_strategy() {
    let plan = parse(
        "[merge]\ndriver_timeout = \"30s\"\n\"Cargo.lock\" = \"driver:./merge.sh %O %A %B\"\n\
         [[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"x\"\n",
    )
    .unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(plan.merge_driver_timeout, Some(Duration::from_secs(30)));
    let patterns: Vec<&str> = plan.merge.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(patterns, ["Cargo.lock"]);
    // The plan's copy in the run folder keeps it.
    let again = parse(&plan.to_toml()).unwrap();
    assert_eq!(again.merge_driver_timeout, Some(Duration::from_secs(30)));

    // Without the key: forge-merge's default.
    let without = parse("[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"x\"\n").unwrap();
    assert_eq!(without.merge_driver_timeout, None);
    assert!(!without.to_toml().contains("driver_timeout"));

    // A file of that name with a strategy is a rule.
    let file = parse("[merge]\ndriver_timeout = \"union\"\n[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"x\"\n")
        .unwrap();
    assert_eq!(file.merge_driver_timeout, None);
    assert_eq!(file.merge[0].pattern.as_str(), "driver_timeout");

    // Zero and nonsense are errors that name the key.
    for bad in ["\"0s\"", "\"soon\"", "12"] {
        let text = format!(
            "[merge]\ndriver_timeout = {bad}\n[[task]]\nid = \"a\"\nagent = \"sim\"\nprompt = \"x\"\n"
        );
        let found = problems(&text);
        assert!(
            found.iter().any(|p| p.contains("merge.driver_timeout")),
            "{bad}: {found:?}"
        );
    }
}

//! `forge run --task "<prompt>"`: one task without a plan file. The plan is written in memory
//! (one `[[task]]` with the prompt, the agent and the write claims given) and runs like any
//! other: its copy in the run store is what `forge resume`, `forge diff` and `forge apply` read.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::RunArgs;
use crate::config::Context;
use crate::error::{CliError, CliResult};
use crate::plan_file::{toml_array, toml_string};
use crate::run::{Start, execute};
use crate::term::Style;

/// The id of the ad-hoc task.
pub(crate) const TASK_ID: &str = "task";

/// The plan text for `prompt` (run as `candidates` candidates when more than one).
fn plan_text(prompt: &str, agent: &str, writes: &[String], candidates: u32) -> String {
    let mut text = format!(
        "name = \"task\"\n\n[[task]]\nid = \"{TASK_ID}\"\nagent = {}\nprompt = {}\nwrites = {}\n",
        toml_string(agent),
        toml_string(prompt),
        toml_array(writes)
    );
    if candidates > 1 {
        let _ = writeln!(text, "candidates = {candidates}");
    }
    text
}

/// `forge run --task "<prompt>" [--agent NAME] [--writes GLOB]…`.
pub(crate) async fn run(ctx: &Context, args: &RunArgs, prompt: &str, style: Style) -> CliResult {
    if prompt.trim().is_empty() {
        return Err(CliError::usage("--task needs a prompt: what the agent should do")
            .hint("e.g. forge run --task \"Fix the failing test in tests/api.rs\" --writes 'tests/**'"));
    }
    let agent = args
        .agent
        .clone()
        .or_else(|| ctx.config.agent.clone())
        .unwrap_or_else(|| "droid".to_owned());
    // Without --writes the task may change any file (it runs alone, so nothing waits for it).
    let writes = if args.writes.is_empty() {
        vec!["**".to_owned()]
    } else {
        args.writes.clone()
    };
    let candidates = args.candidates.unwrap_or(1);
    if candidates > 1 && (args.apply.yes || args.apply.branch) {
        return Err(CliError::usage(format!(
            "-n {candidates} runs {candidates} candidates for you to compare and choose from: \
             there is no one result to apply with --yes or --branch"
        ))
        .hint("leave out --yes/--branch; after the run, `forge apply <run> --tasks task-K` applies the one you choose"));
    }
    let text = plan_text(prompt, &agent, &writes, candidates);
    let mut plan = crate::plan_file::validate_text(ctx, &text, Path::new("--task"))?;
    if let Some(jobs) = args.jobs {
        plan.concurrency = usize::try_from(jobs).unwrap_or(usize::MAX);
    }
    crate::budget::apply_flags(&mut plan, &args.budget);
    let profiles = crate::agents::profiles(ctx)?;
    execute(
        ctx,
        Start::New(Box::new(plan)),
        profiles,
        &args.apply,
        &args.output,
        style,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_and_globs_are_quoted() {
        let text = plan_text("say \"hi\"\n'''", "sim", &["src/**".to_owned()], 1);
        let value: toml::Table = toml::from_str(&text).unwrap();
        let task = &value["task"].as_array().unwrap()[0];
        assert_eq!(task["prompt"].as_str(), Some("say \"hi\"\n'''"));
        assert_eq!(
            task["writes"].as_array().unwrap()[0].as_str(),
            Some("src/**")
        );
        assert_eq!(task["agent"].as_str(), Some("sim"));
    }
}

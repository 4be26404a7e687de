//! Shell completion: `forge completions <shell>` prints clap's script for the commands and
//! flags, plus (bash, zsh and fish) a layer that asks `forge __complete <kind>` for what only the
//! repository knows: run ids (`status`, `logs`, `apply`, `resume`, `abort`), task ids (`logs`)
//! and agent names (`--agent`, `--task-agent`).

use std::collections::BTreeSet;

use clap::CommandFactory as _;
use clap_complete::Shell;
use forge_events::RunState;

use crate::cli::{Cli, CompleteKind};
use crate::config::Context;
use crate::error::Exit;

/// How many of the newest runs task ids are taken from.
const TASK_RUNS: usize = 20;

/// `forge completions <shell>`.
pub(crate) fn script(shell: Shell) -> Exit {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "forge", &mut buf);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    match shell {
        Shell::Bash => text.push_str(BASH),
        Shell::Fish => text.push_str(FISH),
        Shell::Zsh => text = zsh(&text),
        _ => {}
    }
    out!("{text}");
    Exit::Success
}

/// `forge __complete <kind>`: the candidates, one per line. Outside a repository (or with a
/// damaged run store) there are fewer or none: completion never prints errors into a prompt.
pub(crate) fn candidates(ctx: Option<&Context>, kind: CompleteKind) -> Exit {
    let items: Vec<String> = match kind {
        CompleteKind::Runs => ctx.map(runs).unwrap_or_default(),
        CompleteKind::Tasks => ctx.map(tasks).unwrap_or_default(),
        CompleteKind::Agents => match ctx {
            Some(ctx) => crate::agents::configured_agent_names(ctx).unwrap_or_else(|_| builtin()),
            None => builtin(),
        },
    };
    let mut text = String::new();
    for item in items {
        text.push_str(&item);
        text.push('\n');
    }
    out!("{text}");
    Exit::Success
}

fn builtin() -> Vec<String> {
    forge_exec::plan::BUILTIN_AGENTS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Run ids, newest first.
fn runs(ctx: &Context) -> Vec<String> {
    forge_events::list_runs(&ctx.runs_dir())
        .map(|runs| runs.into_iter().map(|r| r.id.to_string()).collect())
        .unwrap_or_default()
}

/// Task ids of the newest runs, each once, sorted.
fn tasks(ctx: &Context) -> Vec<String> {
    let Ok(runs) = forge_events::list_runs(&ctx.runs_dir()) else {
        return Vec::new();
    };
    let mut ids = BTreeSet::new();
    for run in runs.iter().take(TASK_RUNS) {
        if let Ok(state) = RunState::from_journal(&run.journal) {
            ids.extend(state.tasks.iter().map(|t| t.id.to_string()));
        }
    }
    ids.into_iter().collect()
}

/// Zsh: clap's `_arguments` specs for runs, tasks and agents call the helpers of [`ZSH`]
/// instead of `_default`; the helpers are defined before the script's last lines call
/// `_forge` (or `compdef`).
fn zsh(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + ZSH.len());
    for line in script.lines() {
        let spec = line.trim_start();
        let helper = if spec.starts_with("':run -- ") || spec.starts_with("'::run -- ") {
            Some("_forge_runs")
        } else if spec.starts_with("':task -- ") {
            Some("_forge_tasks")
        } else if spec.contains("]:AGENT:_default'") {
            Some("_forge_agents")
        } else {
            None
        };
        match helper.and_then(|h| {
            line.rsplit_once(":_default'")
                .map(|(head, tail)| (h, head, tail))
        }) {
            Some((helper, head, tail)) => {
                out.push_str(head);
                out.push(':');
                out.push_str(helper);
                out.push('\'');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    match out.rfind("if [ \"$funcstack[1]\" = \"_forge\" ]") {
        Some(at) => out.insert_str(at, ZSH),
        None => out.push_str(ZSH),
    }
    out
}

/// Zsh helpers: candidates from `forge __complete`.
const ZSH: &str = r#"# Run ids, task ids and agent names come from the repository at hand (`forge __complete`).
_forge_candidates() {
    local -a items repo
    if [[ ${(t)opt_args} == association* && -n ${opt_args[--repo]} ]]; then
        repo=(--repo ${opt_args[--repo]})
    fi
    # `words` is the subcommand's here; `service` is the command completed (`forge`).
    items=(${(f)"$(command ${service:-forge} $repo __complete $1 2>/dev/null)"})
    _describe -t $1 $2 items
}
_forge_runs() { _forge_candidates runs run }
_forge_tasks() { _forge_candidates tasks task }
_forge_agents() { _forge_candidates agents agent }

"#;

/// Bash: runs before clap's `_forge` and answers where the repository knows the candidates.
const BASH: &str = r#"
# Run ids, task ids and agent names come from the repository at hand (`forge __complete`).
_forge_dynamic() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local sub="" i kind="" word
    local -a pos=() repo=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --repo) repo=(--repo "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --color|--bind|--token|--agent|--task-agent|--attempt|-o|--output|--files|-n|--workers|--prompt|--by|--name|--dir|-j|--jobs|--serve) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="$word"; else pos+=("$word"); fi ;;
        esac
    done
    case "$prev" in
        --agent|--task-agent) kind=agents ;;
    esac
    if [[ -z "$kind" && "$cur" != -* ]]; then
        case "$sub" in
            status|apply|resume|abort) [[ ${#pos[@]} -eq 0 ]] && kind=runs ;;
            logs|retry) if [[ ${#pos[@]} -eq 0 ]]; then kind=tasks; elif [[ ${#pos[@]} -eq 1 ]]; then kind=runs; fi ;;
        esac
    fi
    if [[ -n "$kind" ]]; then
        local words
        words="$("${COMP_WORDS[0]}" "${repo[@]}" __complete "$kind" 2>/dev/null)"
        COMPREPLY=( $(compgen -W "$words" -- "$cur") )
        return 0
    fi
    _forge "$@"
}
complete -F _forge_dynamic -o bashdefault -o default forge
"#;

/// Fish: candidates added to clap's.
const FISH: &str = r#"
# Run ids, task ids and agent names come from the repository at hand (`forge __complete`).
complete -c forge -n "__fish_seen_subcommand_from status apply resume abort" -f -a "(forge __complete runs 2>/dev/null)"
complete -c forge -n "__fish_seen_subcommand_from logs" -f -a "(forge __complete tasks 2>/dev/null) (forge __complete runs 2>/dev/null)"
complete -c forge -n "__fish_seen_subcommand_from plan split" -l agent -x -a "(forge __complete agents 2>/dev/null)"
complete -c forge -n "__fish_seen_subcommand_from plan" -l task-agent -x -a "(forge __complete agents 2>/dev/null)"
"#;

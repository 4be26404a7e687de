//! `forge split`: partition matching files into N tasks along directory boundaries, with the
//! algorithm of [`forge_exec::plan::split`]:
//!
//! The matching files form a directory tree weighted by file count (or bytes). Work starts as one
//! unit, the whole tree; while some unit weighs more than a fair share (total / N), or there
//! are fewer units than workers, the heaviest such unit is replaced by its parts: one unit per
//! subdirectory and one for the files directly in it. Only as a last resort (a single directory
//! holding more than a fair share of files directly) is a directory's own file list cut in two.
//! The units are then dealt out largest first to the least-loaded worker (LPT scheduling, within
//! 4/3 of the best possible maximum for the units). Each worker's task writes exactly its units:
//! `dir/**` for a subtree, `dir/*` for a directory's own files, the files themselves for a cut
//! list — so no two tasks' write claims overlap and the plan needs no ordering.

use std::fmt::Write as _;
use std::path::Path;

use forge_exec::plan::split::{FileEntry, Unit, Worker, partition};
use forge_locks::Pattern;

use crate::cli::{Balance, SplitArgs};
use crate::config::Context;
use crate::error::{CliError, CliResult, Exit};
use crate::plan_file::{self, toml_string};
use crate::term::Style;

/// The matching files under `repo`: git-ignored files, `.git/` and `.forge/` are left out.
pub(crate) fn matching_files(repo: &Path, globs: &[String]) -> CliResult<Vec<FileEntry>> {
    let patterns = globs
        .iter()
        .map(|g| {
            Pattern::new(g).map_err(|e| {
                CliError::usage(format!("--files '{g}': {e}"))
                    .hint("write a gitignore-style glob relative to the repository root, e.g. 'src/**/*.rs'")
            })
        })
        .collect::<CliResult<Vec<_>>>()?;
    let mut out = Vec::new();
    let walk = ignore::WalkBuilder::new(repo)
        .hidden(false)
        .require_git(false)
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some(".git" | ".forge")))
        .build();
    for entry in walk {
        let entry = entry.map_err(|e| {
            CliError::failed(format!("cannot list the files of {}: {e}", repo.display()))
        })?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(repo) else {
            continue;
        };
        let Some(rel) = rel.to_str().map(|r| r.replace('\\', "/")) else {
            continue;
        };
        if patterns.iter().any(|p| p.matches(&rel)) {
            let bytes = entry.metadata().map_or(0, |m| m.len());
            out.push(FileEntry { path: rel, bytes });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The prompt of a worker: `{files}` becomes its files (space-separated), `{dir}` its
/// directories (comma-separated).
pub(crate) fn fill_template(template: &str, worker: &Worker) -> String {
    let files: Vec<&str> = worker.files.iter().map(|f| f.path.as_str()).collect();
    template
        .replace("{files}", &files.join(" "))
        .replace("{dir}", &worker.dirs().join(", "))
}

/// The plan text of a split.
pub(crate) fn plan_text(
    name: &str,
    agent: &str,
    workers: &[Worker],
    template: &str,
    command_line: &str,
) -> String {
    let mut out = String::new();
    // One comment line, whatever the prompt holds (a line break would end the comment).
    let _ = writeln!(
        out,
        "# Written by `{}`.",
        command_line.replace('\r', "\\r").replace('\n', "\\n")
    );
    let _ = writeln!(
        out,
        "# Each task writes only its own directories, so all of them can run at once."
    );
    let _ = writeln!(out, "name = {}", toml_string(name));
    let _ = writeln!(out, "concurrency = {}", workers.len().max(1));
    let _ = writeln!(out, "\n[defaults]\nagent = {}", toml_string(agent));
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(out, "\n[[task]]\nid = \"worker-{}\"", i + 1);
        let _ = writeln!(out, "prompt = {}", toml_string(&fill_template(template, w)));
        let _ = writeln!(out, "writes = {}", plan_file::toml_array(&w.claims()));
        // Progress counts the files done as tasks finish.
        let _ = writeln!(out, "files = {}", w.files.len());
    }
    out
}

fn describe(w: &Worker, by: Balance) -> String {
    let parts: Vec<String> = w
        .units
        .iter()
        .map(|u| match u {
            Unit::Files(files) => format!(
                "{}/ (part: {})",
                u.dir(),
                plural(files.len() as u64, "file")
            ),
            other => other.claims().join(", "),
        })
        .collect();
    let shown = parts.join(", ");
    let size = match by {
        Balance::Files => plural(w.files.len() as u64, "file"),
        Balance::Bytes => format!(
            "{}, {}",
            plural(w.files.len() as u64, "file"),
            human_bytes(w.weight)
        ),
    };
    // One part of a directory: its count is the worker's, said once.
    if let [unit @ Unit::Files(_)] = w.units.as_slice() {
        return format!("{}/ (part, {size})", unit.dir());
    }
    format!("{shown} ({size})")
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `1.2 MB`, `340 B`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // shown with one decimal
    let mut v = n as f64 / 1000.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `forge split`.
pub(crate) fn run(ctx: &Context, args: &SplitArgs, style: Style) -> CliResult {
    let output = ctx_path(args.output.as_path());
    if output.exists() && !args.force {
        return Err(
            CliError::usage(format!("{} already exists", output.display()))
                .hint("choose another file with -o, or pass --force to overwrite it"),
        );
    }
    let files = matching_files(&ctx.repo, &args.files)?;
    if files.is_empty() {
        return Err(CliError::usage(format!(
            "no file under {} matches {}",
            ctx.repo.display(),
            args.files.join(", ")
        ))
        .hint("globs are relative to the repository root and `*` stays within a directory: try '**/*.rs'"));
    }
    let workers = partition(files, args.workers as usize, args.by.into());
    let agent = args
        .agent
        .clone()
        .or_else(|| ctx.config.agent.clone())
        .unwrap_or_else(|| "droid".to_owned());
    let name = args.name.clone().unwrap_or_else(|| "split".to_owned());
    let command_line = format!(
        "forge split --files {} --workers {} --prompt {}",
        args.files
            .iter()
            .map(|f| shell_quote(f))
            .collect::<Vec<_>>()
            .join(" --files "),
        args.workers,
        shell_quote(&args.prompt)
    );
    let text = plan_text(&name, &agent, &workers, &args.prompt, &command_line);
    // The plan must load as written: same validation as `forge run`.
    plan_file::validate_text(ctx, &text, &output)?;
    plan_file::write_atomic(&output, &text)?;
    for (i, w) in workers.iter().enumerate() {
        outln!(
            "{} {}",
            style.bold(&format!("Worker {}:", i + 1)),
            describe(w, args.by)
        );
    }
    if workers.len() < args.workers as usize {
        outln!(
            "{}",
            style.dim(&format!(
                "Only {} separable units matched, so the plan has {} tasks instead of {}.",
                workers.len(),
                workers.len(),
                args.workers
            ))
        );
    }
    outln!(
        "Wrote {} ({} tasks, agent {agent}). Run it with: forge run {}",
        output.display(),
        workers.len(),
        shell_quote(&args.output.display().to_string())
    );
    Ok(Exit::Success)
}

fn ctx_path(p: &Path) -> std::path::PathBuf {
    std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p))
}

/// `text` quoted for a POSIX shell when it needs quoting.
pub(crate) fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<FileEntry> {
        paths
            .iter()
            .map(|p| FileEntry {
                path: (*p).to_owned(),
                bytes: 10,
            })
            .collect()
    }

    #[test]
    fn templates_get_files_and_dirs() {
        let w = partition(
            files(&["src/a.rs", "src/b.rs"]),
            1,
            forge_exec::plan::split::Balance::Files,
        );
        assert_eq!(
            fill_template("Lint {files} in {dir}", &w[0]),
            "Lint src/a.rs src/b.rs in src"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("src/**"), "'src/**'");
        assert_eq!(shell_quote("plain"), "plain");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
    }
}

//! `forge init`: slash commands, droids and forge.toml, idempotent, never clobbering edits.

use crate::util::Repo;

#[test]
fn init_installs_everything_once_and_keeps_user_edits() {
    let repo = Repo::new();
    let out = repo.forge(&["init"]).expect(0);
    let files = [
        "forge.toml",
        ".factory/commands/forge-parallel.md",
        ".factory/commands/forge-status.md",
        ".factory/commands/forge-plan.md",
        ".claude/commands/forge-parallel.md",
        ".claude/commands/forge-status.md",
        ".claude/commands/forge-plan.md",
        ".factory/droids/df-orchestrator.md",
        ".factory/droids/df-backend.md",
        ".factory/droids/df-frontend.md",
        ".factory/droids/df-tester.md",
        ".factory/droids/df-doc.md",
        ".mcp.json",
        ".factory/mcp.json",
    ];
    for f in files {
        assert!(repo.path().join(f).is_file(), "{f}");
        assert!(out.stdout.contains(f), "{f}: {}", out.stdout);
    }
    assert_eq!(
        out.stdout.matches("created").count(),
        files.len() + 1,
        "{}",
        out.stdout
    );
    let cmd = repo.read(".factory/commands/forge-parallel.md");
    assert!(cmd.starts_with("---\ndescription: "), "{cmd}");
    assert!(
        cmd.contains("argument-hint: ") && cmd.contains("$ARGUMENTS"),
        "{cmd}"
    );
    let claude = repo.read(".claude/commands/forge-status.md");
    assert!(
        claude.contains("allowed-tools: Bash(forge:*), Read"),
        "{claude}"
    );
    let droid = repo.read(".factory/droids/df-backend.md");
    assert!(droid.starts_with("---\nname: df-backend\n"), "{droid}");
    // Both hosts start `forge mcp`.
    for config in [".mcp.json", ".factory/mcp.json"] {
        let doc: serde_json::Value = serde_json::from_str(&repo.read(config)).unwrap();
        assert_eq!(
            doc["mcpServers"]["forge"],
            serde_json::json!({"type": "stdio", "command": "forge", "args": ["mcp"]}),
            "{config}"
        );
    }
    // The commented forge.toml is valid configuration for every command.
    repo.forge(&["runs"]).expect(0);

    let again = repo.forge(&["init"]).expect(0);
    assert_eq!(
        again.stdout.matches("unchanged").count(),
        files.len() + 1,
        "{}",
        again.stdout
    );

    repo.write(".claude/commands/forge-plan.md", "my own version\n");
    let kept = repo.forge(&["init"]).expect(0);
    assert!(
        kept.stdout.contains("kept: you changed it"),
        "{}",
        kept.stdout
    );
    assert_eq!(
        repo.read(".claude/commands/forge-plan.md"),
        "my own version\n"
    );
    let forced = repo.forge(&["init", "--force"]).expect(0);
    assert!(forced.stdout.contains("overwritten"), "{}", forced.stdout);
    assert!(
        repo.read(".claude/commands/forge-plan.md")
            .contains("$ARGUMENTS")
    );
}

#[test]
fn init_flags_pick_the_tools() {
    let repo = Repo::new();
    repo.forge(&["init", "--claude"]).expect(0);
    assert!(
        repo.path()
            .join(".claude/commands/forge-parallel.md")
            .is_file()
    );
    assert!(!repo.path().join(".factory").exists());
    assert!(repo.path().join(".mcp.json").is_file());
    repo.forge(&["init", "--droid"]).expect(0);
    assert!(repo.path().join(".factory/mcp.json").is_file());
    assert!(
        repo.path()
            .join(".factory/droids/df-orchestrator.md")
            .is_file()
    );
}

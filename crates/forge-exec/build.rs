//! Builds `init/main.rs`, the program a contained attempt's namespace runs as its PID 1 (see
//! `src/process/leader.rs`), with the same `rustc` for the same target, without the standard
//! library or a C library. Where it cannot be built (a target it has no system calls for, a
//! linker that refuses the flags), the crate is built without it and a contained attempt's
//! init is a copy of Forge instead; cargo shows why.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=init/main.rs");
    println!("cargo::rustc-check-cfg=cfg(forge_init)");
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || !matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64")
    {
        return;
    }
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let program = out_dir.join("forge-init");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition",
        "2024",
        "--crate-type",
        "bin",
        "--crate-name",
        "forge_init",
    ])
    .args(["--target", &var("TARGET")])
    .args([
        "-C",
        "panic=abort",
        "-C",
        "opt-level=s",
        "-C",
        "strip=symbols",
    ])
    .args(["-C", "relocation-model=static", "-C", "debuginfo=0"])
    .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
    .args(["-C", "link-arg=-static"]);
    // The linker cargo resolved for the target (from `.cargo/config.toml` or
    // `CARGO_TARGET_<TRIPLE>_LINKER`), if one was set.
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        var("TARGET").to_uppercase().replace('-', "_")
    );
    println!("cargo::rerun-if-env-changed={linker_var}");
    if let Some(linker) = env::var_os("RUSTC_LINKER").or_else(|| env::var_os(&linker_var)) {
        let mut arg = std::ffi::OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }
    cmd.arg("-o").arg(&program).arg("init/main.rs");
    match cmd.output() {
        Ok(out) if out.status.success() => {
            println!("cargo::rustc-cfg=forge_init");
            println!("cargo::rustc-env=FORGE_INIT_PROGRAM={}", program.display());
        }
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            let first = why.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            println!(
                "cargo::warning=forge-init could not be built ({first}); contained attempts' init is a copy of Forge instead"
            );
        }
        Err(e) => println!(
            "cargo::warning=forge-init could not be built (rustc: {e}); contained attempts' init is a copy of Forge instead"
        ),
    }
}

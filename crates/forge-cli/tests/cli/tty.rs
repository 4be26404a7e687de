//! The live table on a real terminal: `forge run` under a pseudo-terminal, its output fed to a
//! terminal emulator (vt100), and the screen checked as a person would see it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use crate::util::{Repo, task};

const ROWS: u16 = 60;
const COLS: u16 = 120;

/// A program running on a pseudo-terminal, with what it drew.
struct Pty {
    master: File,
    child: Child,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(mut cmd: Command) -> Self {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(OsStr::from_bytes(name.as_bytes()))
            .unwrap();
        tcsetwinsize(
            &master,
            Winsize {
                ws_row: ROWS,
                ws_col: COLS,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .env("TERM", "xterm-256color");
        let child = cmd.spawn().unwrap();
        drop(cmd); // the parent's copies of the terminal's slave side
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            ROWS.try_into().unwrap(),
            COLS.try_into().unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let (s, r) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once the program and its children closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            master,
            child,
            screen,
            raw,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, secs: u64, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.contents();
            if what(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; the screen shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn type_line(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
        self.master.write_all(b"\r").unwrap();
    }
}

#[test]
fn the_live_table_is_redrawn_in_place_then_asks_before_applying() {
    let repo = Repo::new();
    let file = repo.plan(
        "tty",
        &format!(
            "{}{}{}",
            task(
                "schema",
                "writes = [\"db/**\"]",
                "say Designing the schema\nsleep 600ms\nwrite db/schema.sql\ncreate table users (name text);\nend\nsleep 400ms"
            ),
            task(
                "api",
                "reads = [\"db/**\"]\nwrites = [\"api/**\"]",
                "say Edit api/users.rs\nwrite api/users.rs\nfn users() {}\nend\nsleep 300ms"
            ),
            task(
                "ui",
                "writes = [\"ui/**\"]\nretries = 1",
                "say Edit ui/list.js\nsleep 300ms\nwrite ui/list.js\nlist();\nend\nfail-on-attempt 1 2"
            )
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.current_dir(repo.path())
        .args(["run", &file])
        .env("PAGER", "cat")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS");
    let mut pty = Pty::spawn(cmd);

    // While it runs: the table, with a task waiting for another's locks or running.
    let live = pty.wait_for(20, |s| s.contains("Designing the schema"));
    assert!(live.contains("· running ·"), "{live}");
    assert!(
        live.contains("schema") && live.contains("api") && live.contains("ui"),
        "{live}"
    );
    assert!(live.contains("% (") && live.contains(" tasks)"), "{live}");

    // At the end: the final table once, the summary, the question.
    let end = pty.wait_for(30, |s| {
        s.contains("Apply? 1) Yes  2) Review changes  3) Keep for later")
    });
    let run = end
        .lines()
        .find_map(|l| l.strip_prefix("forge "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(
        end.matches(&format!("forge {run} ·")).count(),
        1,
        "redrawn in place:\n{end}"
    );
    assert!(end.contains(&format!("forge {run} · succeeded")), "{end}");
    for row in ["✓  schema", "✓  api", "✓  ui"] {
        assert!(end.contains(row), "{row}:\n{end}");
    }
    assert!(
        end.contains("2/2"),
        "the retried task shows its attempts:\n{end}"
    );
    assert!(
        end.contains("████████████████████ 100% (3/3 tasks)"),
        "{end}"
    );
    assert!(end.contains("✓ No merge conflicts"), "{end}");
    assert!(end.contains("✓ 3 tasks, 3 files changed"), "{end}");
    let raw = String::from_utf8_lossy(&pty.raw.lock().unwrap()).into_owned();
    assert!(
        raw.contains("\x1b[?25l") && raw.contains("\x1b[?25h"),
        "cursor hidden, then shown"
    );
    assert!(raw.matches("\x1b[2K").count() > 20, "the table was redrawn");
    assert!(raw.contains("\x1b[32m✓"), "colours on a terminal");
    assert!(
        raw.contains("waiting for locks held by") || raw.contains("⏳"),
        "a lock wait was shown"
    );

    // The bell rang when the run ended and when it asked.
    assert!(raw.contains('\x07'), "the terminal bell");
    // Review offers the whole diff or one task's; the task's diff shows in $PAGER, then the
    // question comes again.
    pty.type_line("2");
    let choices = pty.wait_for(10, |s| s.contains("Review: 0) everything"));
    let offered = choices
        .lines()
        .find(|l| l.contains("Review: 0) everything"))
        .unwrap()
        .to_owned();
    let schema = offered
        .split("  ")
        .find_map(|part| part.strip_suffix(") schema"))
        .unwrap_or_else(|| panic!("schema is offered: {offered}"))
        .trim()
        .to_owned();
    pty.type_line(&schema);
    let review = pty.wait_for(10, |s| s.matches("Apply? 1) Yes").count() == 2);
    assert!(
        review.contains("+create table users (name text);"),
        "{review}"
    );
    assert!(
        !review.contains("+fn users() {}"),
        "only the chosen task's diff:\n{review}"
    );
    assert!(!repo.path().join("db/schema.sql").exists());
    pty.type_line("1");
    let done = pty.wait_for(20, |s| s.contains("Applied to the working tree"));
    assert!(done.contains("3 files written"), "{done}");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        repo.read("db/schema.sql"),
        "create table users (name text);\n"
    );
    assert_eq!(repo.read("ui/list.js"), "list();\n");
}

#[test]
fn the_table_has_the_preview_above_it_and_an_eta_while_the_run_goes() {
    let repo = Repo::new();
    let file = repo.plan(
        "eta",
        &format!(
            "name = \"eta\"\n{}{}",
            task(
                "first",
                "writes = [\"a/**\"]\nestimate = \"10m\"",
                "say Working slowly\nsleep 1500ms\nwrite a/x\nx\nend"
            ),
            task(
                "second",
                "writes = [\"b/**\"]\nafter = [\"first\"]\nestimate = \"10m\"",
                "write b/x\nx\nend"
            )
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.current_dir(repo.path())
        .args(["run", &file, "--no-apply"])
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS");
    let pty = Pty::spawn(cmd);
    let live = pty.wait_for(20, |s| s.contains("Working slowly"));
    assert!(
        live.contains("Execution plan eta: 2 tasks, up to 4 at once"),
        "{live}"
    );
    assert!(
        live.contains("Estimated time: 20m00s (vs 20m00s sequential)"),
        "{live}"
    );
    // The progress line: tasks, then what is left of the estimates.
    let bar = live
        .lines()
        .find(|l| l.contains("% (") && l.contains(" tasks)"))
        .unwrap_or_else(|| panic!("no progress line:\n{live}"));
    assert!(bar.contains("ETA "), "{live}");
    // Finished: no ETA any more.
    let end = pty.wait_for(30, |s| s.contains("The result is kept"));
    assert!(end.contains("100% (2/2 tasks)"), "{end}");
    assert!(!end.contains("ETA "), "{end}");
}

/// The live table exits with the documented codes, as line and JSON mode do: 1 when a task
/// failed, 3 when the apply left a path where the user's edit clashes with the run's.
#[test]
fn the_table_exits_with_the_documented_codes() {
    let run_on_pty = |repo: &Repo, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
        cmd.current_dir(repo.path())
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("COLUMNS");
        let mut pty = Pty::spawn(cmd);
        let status = pty.child.wait().unwrap();
        (status.code(), pty)
    };

    let repo = Repo::new();
    let file = repo.plan(
        "failing",
        &task("broken", "retries = 0", "say Trying\nfail 7"),
    );
    let (code, pty) = run_on_pty(&repo, &["run", &file, "--no-apply"]);
    let screen = pty.wait_for(10, |s| s.contains("1 of 1 task"));
    assert_eq!(code, Some(1), "{screen}");

    let repo = Repo::new();
    repo.write("notes.txt", "start\n");
    let file = repo.plan(
        "mine",
        &task(
            "a",
            "writes = [\"notes.txt\"]",
            "write notes.txt\nfrom the run\nend",
        ),
    );
    repo.write("notes.txt", "from the user\n");
    let (code, pty) = run_on_pty(&repo, &["run", &file, "--yes"]);
    let screen = pty.wait_for(10, |s| s.contains("Applied only in part"));
    assert_eq!(code, Some(3), "{screen}");
    assert_eq!(repo.read("notes.txt"), "from the user\n");
}

#[test]
fn after_failures_the_prompt_offers_the_succeeded_tasks() {
    let repo = Repo::new();
    // The notifier hears that the run ended, then that it waits for an answer.
    let out_dir = tempfile::tempdir().unwrap();
    let heard = out_dir.path().join("heard.txt");
    repo.write(
        "forge.toml",
        &format!(
            "notify = 'echo \"$FORGE_NOTIFY_EVENT $FORGE_RUN_STATUS\" >> {}'\n",
            heard.display()
        ),
    );
    repo.commit("forge.toml");
    let file = repo.plan(
        "some-fail",
        &format!(
            "{}{}{}",
            task("one", "writes = [\"one/**\"]", "write one/x\n1\nend"),
            task("two", "writes = [\"two/**\"]", "write two/x\n2\nend"),
            task("bad", "writes = [\"bad/**\"]", "fail 3")
        ),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.current_dir(repo.path())
        .args(["run", &file])
        .env("PAGER", "cat")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS");
    let mut pty = Pty::spawn(cmd);
    pty.wait_for(30, |s| {
        s.contains("Apply the 2 succeeded tasks? 1) Yes  2) Review changes  3) Keep for later")
    });
    assert!(!repo.path().join("one/x").exists());
    assert_eq!(
        std::fs::read_to_string(&heard).unwrap(),
        "finished failed\nwaiting \n"
    );
    pty.type_line("1");
    let done = pty.wait_for(20, |s| s.contains("Applied to the working tree"));
    assert!(done.contains("2 files written"), "{done}");
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the run's own code: a task failed");
    assert_eq!(repo.read("one/x"), "1\n");
    assert_eq!(repo.read("two/x"), "2\n");
    assert!(!repo.path().join("bad").exists());
}

#[test]
fn after_candidates_the_prompt_offers_the_choice_of_one() {
    let repo = Repo::new();
    let prompt = "Write out.txt.\n\n```forge-sim\nrun echo \"by $FORGE_TASK_ID\" > out.txt\n```\n";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.current_dir(repo.path())
        .args(["run", "--task", prompt, "--agent", "sim", "-n", "2"])
        .env("PAGER", "cat")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS");
    let mut pty = Pty::spawn(cmd);
    pty.wait_for(30, |s| {
        s.contains("Apply which? 1) task-1  2) task-2  r) Review changes  k) Keep for later")
    });
    assert!(!repo.path().join("out.txt").exists());
    pty.type_line("2");
    pty.wait_for(20, |s| s.contains("Applied to the working tree"));
    assert_eq!(pty.child.wait().unwrap().code(), Some(0));
    assert_eq!(repo.read("out.txt"), "by task-2\n");
}

//! Runs the scripted model server until interrupted, printing its URL and then every request
//! it gets (a development aid: point an agent CLI at the URL and see what it sends).
//!
//! `model-server [TOOL [INPUT_JSON]]`: a prompt containing `PROBE` gets a call of `TOOL` with
//! `INPUT_JSON` (default: `Write` of `{cwd}/a.txt`), then `All done.`. `model-server fail401`:
//! every request fails with HTTP 401 (any status after `fail`).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a program that prints

use forge_testkit::{ModelServer, Script, Turn};
use serde_json::json;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let tool = args.get(1).cloned().unwrap_or_else(|| "Write".into());
    let input = match args.get(2) {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| format!("INPUT_JSON `{text}` is not JSON: {e}"))?,
        None => json!({"file_path": "{cwd}/a.txt", "content": "hello\n"}),
    };
    let script = if let Some(status) = tool.strip_prefix("fail") {
        let status = status
            .parse()
            .map_err(|e| format!("`fail{status}`: an HTTP status must follow `fail`: {e}"))?;
        Script::new().always(
            "",
            Turn::fail(status, "invalid x-api-key (scripted refusal)"),
        )
    } else {
        Script::new().when(
            "PROBE",
            vec![Turn::tool(tool, input), Turn::text("All done.")],
        )
    };
    let server = ModelServer::start(script).map_err(|e| format!("cannot start the server: {e}"))?;
    println!("{}", server.url());
    let mut seen = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let requests = server.requests();
        for r in &requests[seen..] {
            eprintln!(
                "=== {} {} {:?} status={} answered={} tools={:?}\nheaders={:?}\ncwd={:?}\nUSER: {}\nBODY: {}",
                r.method,
                r.path,
                r.api,
                r.status,
                r.answered,
                r.tools,
                r.headers,
                r.cwd(),
                r.user_text.chars().take(600).collect::<String>(),
                r.body
            );
        }
        seen = requests.len();
    }
}

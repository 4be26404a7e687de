//! Runs the scripted model server until interrupted, logging each request (a development aid:
//! point an agent CLI at the printed URL and see what it sends).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use forge_testkit::{ModelServer, Script, Turn};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tool = args.get(1).cloned().unwrap_or_else(|| "Write".into());
    let input: serde_json::Value = args.get(2).map_or_else(
        || json!({"file_path": "{cwd}/a.txt", "content": "hello\n"}),
        |s| serde_json::from_str(s).expect("input JSON"),
    );
    // `fail<status>`: every request fails with that status.
    let script = if let Some(status) = tool.strip_prefix("fail") {
        let status = status.parse().expect("an HTTP status after `fail`");
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
    let server = ModelServer::start(script).expect("start");
    println!("{}", server.url());
    let mut seen = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let reqs = server.requests();
        for r in &reqs[seen..] {
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
                r.body.to_string().chars().take(200000).collect::<String>()
            );
        }
        seen = reqs.len();
    }
}

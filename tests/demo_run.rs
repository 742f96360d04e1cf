//! `presence-sync demo` tried as a new user would: it prints where the board
//! is and how to sign in, its simulated contact center registers agents and
//! posts contacts to the example queues, offers are accepted and show in the
//! queues, and Ctrl-C stops it cleanly with the state kept.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills the demo if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn field(lines: &[String], label: &str) -> Option<String> {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|s| s.trim().to_string())
}

/// Lines until one satisfies `done`, or panics after `within`.
fn read_until(
    rx: &mpsc::Receiver<String>,
    lines: &mut Vec<String>,
    within: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + within;
    while !lines.iter().any(|l| done(l)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("no {what} within {within:?}; the demo printed:\n{lines:#?}"),
        }
    }
}

#[tokio::test]
async fn the_demo_shows_the_board_routes_contacts_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_presence-sync"))
        .args(["demo", "--users", "20", "--state-dir"])
        .arg(&state)
        .env_remove("PRESENCE_SYNC_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start presence-sync demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    read_until(
        &rx,
        &mut lines,
        Duration::from_secs(60),
        "start-up banner",
        |l| l.contains("Ctrl-C stops"),
    );
    let board = field(&lines, "status board:").expect("the board's URL is printed");
    assert!(board.starts_with("http://127.0.0.1:"), "{board}");
    let token_file = lines
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("sign in to the board with the API token in ")
        })
        .expect("how to sign in is printed");
    let token = std::fs::read_to_string(token_file.trim()).expect("the token file exists");
    let api = board.trim_end_matches('/').to_string();

    // The simulated contact center posts contacts and its agents take them.
    read_until(
        &rx,
        &mut lines,
        Duration::from_secs(90),
        "accepted contact",
        |l| l.contains("routing: accepted contact"),
    );
    let http = reqwest::Client::new();
    let queues: Value = http
        .get(format!("{api}/v1/queues"))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("queues request")
        .json()
        .await
        .expect("queues JSON");
    let names: Vec<&str> = queues["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["sales", "support"], "{queues}");
    let agents: Value = http
        .get(format!("{api}/v1/agents"))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("agents request")
        .json()
        .await
        .expect("agents JSON");
    let agents = agents["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 20);
    assert!(
        agents.iter().any(|a| !a["routing"]["contacts"]
            .as_array()
            .expect("contacts")
            .is_empty()),
        "an agent holds the accepted contact: {agents:?}"
    );

    // Ctrl-C: a clean stop that keeps the state for `presence-sync run`.
    let child = &mut running.0;
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        lines.push(line);
    }
    assert!(status.success(), "{status:?}\n{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stopped; state kept in")),
        "{lines:#?}"
    );
    assert!(state.join("presence-sync.toml").exists());
}

//! The daemon binary as a child process, for tests that signal or kill it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::daemon_kit::PATIENCE;

pub struct Running {
    pub child: Child,
    pub base: String,
}

pub fn spawn_daemon(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_presence-sync"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the daemon binary starts")
}

/// The daemon's address, from the log line it writes once it listens.
pub async fn wait_listening(log: &Path, from: usize, child: &mut Child) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text[from.min(text.len())..]
            .lines()
            .find(|l| l.contains("presence-sync started"))
            && let Some(addr) = line.split("api_addr=").nth(1)
        {
            let addr = addr.split_whitespace().next().unwrap_or("");
            return format!("http://{addr}");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited with {status}:\n{text}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon did not start:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn start(config: &Path, log: &Path) -> Running {
    let from = std::fs::read_to_string(log).map(|t| t.len()).unwrap_or(0);
    let mut child = spawn_daemon(config, log);
    let base = wait_listening(log, from, &mut child).await;
    Running { child, base }
}

/// Sends a signal to the child.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// Waits for the child to exit, at most PATIENCE.
pub async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

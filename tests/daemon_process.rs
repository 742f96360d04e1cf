//! `presence-sync run` as a process: SIGHUP reloads the mappings, SIGTERM
//! stops it cleanly with what it acknowledged on disk, and a store written
//! by a newer version is refused with its own exit code.

mod common;

use std::time::Duration;

use common::daemon_kit::{PATIENCE, sim_options, write_config};
use common::process_kit::{signal, start, wait_exit};
use presence_sync::sim;
use serde_json::json;

async fn put(base: &str, path: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .put(format!("{base}{path}"))
        .bearer_auth("test-token-0123456789")
        .json(&body)
        .send()
        .await
        .expect("PUT")
        .status()
        .as_u16()
}

/// Registers agent `a1` on `user` and reports it at Lunch, both acknowledged.
async fn agent_at_lunch(base: &str, user: &str) {
    assert_eq!(
        put(base, "/v1/agents/a1", json!({"teams_user": user})).await,
        200
    );
    assert_eq!(
        put(base, "/v1/agents/a1/status", json!({"status": "Lunch"})).await,
        200
    );
}

/// Starts the daemon on `config`, checks `a1` is still at Lunch, stops it.
async fn a1_still_at_lunch_after_start(config: &std::path::Path, log: &std::path::Path) {
    let mut daemon = start(config, log).await;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/agents/a1", daemon.base))
        .bearer_auth("test-token-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["cc"]["status"], "Lunch");
    signal(&daemon.child, libc::SIGTERM);
    assert!(wait_exit(&mut daemon.child).await.success());
}

async fn wait_log(log: &std::path::Path, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let all = std::fs::read_to_string(log).unwrap_or_default();
        if all.contains(text) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{text}` in:\n{all}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_sigterm_stops_cleanly_and_keeps_state() {
    let sim = sim::spawn(sim_options(2)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let log = dir.path().join("daemon.log");
    let (user, _) = sim.users()[0].clone();

    let mut daemon = start(&config, &log).await;
    agent_at_lunch(&daemon.base, &user).await;

    // A broken mapping and SIGHUP: refused with its position, old one stays.
    let mapping = dir.path().join("mapping.toml");
    let good = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        good.replace("debounce = \"2s\"", "debounce = \"soon\""),
    )
    .unwrap();
    signal(&daemon.child, libc::SIGHUP);
    let text = wait_log(&log, "reload refused").await;
    assert!(text.contains("mapping.toml:"), "{text}");
    std::fs::write(&mapping, &good).unwrap();
    signal(&daemon.child, libc::SIGHUP);
    // The SIGHUP path's own line (the file watcher logs only the second).
    wait_log(&log, "reload: mappings read again").await;

    // SIGTERM: a clean stop, exit 0.
    signal(&daemon.child, libc::SIGTERM);
    let status = wait_exit(&mut daemon.child).await;
    assert!(status.success(), "exit {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("presence-sync stopped"), "{text}");

    // What was acknowledged is there after a restart.
    a1_still_at_lunch_after_start(&config, &log).await;
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_config_and_refused_store_have_their_own_exit_codes() {
    let sim = sim::spawn(sim_options(1)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"later\"");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_presence-sync"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("presence-sync.toml:"));

    // A state dir that is not a store: refused, exit 74, nothing touched.
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("db"), b"not a sled file at all").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_presence-sync"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(state.join("db")).unwrap(),
        b"not a sled file at all"
    );
    sim.shutdown().await.unwrap();
}

/// `export` then `import` into a new directory gives a store the daemon runs
/// on with the same agents and event sequence; a second export is identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_round_trip_a_daemon_store() {
    let sim = sim::spawn(sim_options(2)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let log = dir.path().join("daemon.log");
    let (user, _) = sim.users()[0].clone();
    let mut daemon = start(&config, &log).await;
    agent_at_lunch(&daemon.base, &user).await;
    signal(&daemon.child, libc::SIGTERM);
    assert!(wait_exit(&mut daemon.child).await.success());

    let bin = env!("CARGO_BIN_EXE_presence-sync");
    let state = dir.path().join("state");
    let first = std::process::Command::new(bin)
        .args(["export", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8(first.stdout.clone()).unwrap();
    assert!(
        text.lines().count() > 3 && text.contains("\"a1\""),
        "{text}"
    );

    // Into a fresh directory; importing into a store that exists is refused.
    let restored = dir.path().join("restored");
    let import = |target: &std::path::Path| {
        let mut child = std::process::Command::new(bin)
            .args(["import", "--state-dir"])
            .arg(target)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // An import that refuses the target exits without reading its input:
        // a broken pipe then is expected, and the exit code says why.
        let written = child.stdin.take().unwrap().write_all(&first.stdout);
        let out = child.wait_with_output().unwrap();
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
            assert!(
                !out.status.success(),
                "the import read nothing yet succeeded"
            );
        }
        out
    };
    let out = import(&restored);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(import(&restored).status.code(), Some(74));
    let second = std::process::Command::new(bin)
        .args(["export", "--state-dir"])
        .arg(&restored)
        .output()
        .unwrap();
    assert_eq!(first.stdout, second.stdout);

    // The daemon runs on the restored store with the agent as it was.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::rename(&restored, &state).unwrap();
    a1_still_at_lunch_after_start(&config, &log).await;
    sim.shutdown().await.unwrap();
}

/// The binary allocates through jemalloc with its options compiled in, and
/// reads `_RJEM_MALLOC_CONF` after them: an option it does not know is
/// reported by jemalloc itself, and a valid one is taken without a word.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[test]
fn the_binary_allocates_through_jemalloc_and_reads_its_options_from_the_environment() {
    let bin = env!("CARGO_BIN_EXE_presence-sync");
    let run = |conf: &str| {
        std::process::Command::new(bin)
            .arg("--version")
            .env("_RJEM_MALLOC_CONF", conf)
            .output()
            .expect("run presence-sync --version")
    };
    let bad = run("narenas:not-a-number");
    assert!(bad.status.success(), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("<jemalloc>: Invalid conf value: narenas:not-a-number"),
        "jemalloc did not read the option: {stderr}"
    );
    let good = run("narenas:1,dirty_decay_ms:0");
    assert!(good.status.success(), "{good:?}");
    assert_eq!(String::from_utf8_lossy(&good.stderr), "");
}

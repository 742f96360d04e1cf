//! `presence-sync sim` as a developer runs it: it prints where it listens
//! and what it accepts, serves, and stops cleanly on Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn field<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` in {lines:?}"))
}

/// The simulator's answer to a client-credentials token request.
async fn client_credentials(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> Value {
    http.post(format!("{base}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON")
}

/// Starts `presence-sync` with `args` and reads its banner, up to the
/// line that says how to stop it.
fn start_sim(args: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presence-sync"))
        .args(args)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start presence-sync sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        let done = line.starts_with("Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

#[tokio::test]
async fn sim_prints_its_credentials_serves_and_stops_on_ctrl_c() {
    let (mut child, lines) = start_sim(&[
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--users",
        "3",
        "--seed",
        "5",
    ]);
    let base = field(&lines, "base URL (login and Graph host):").to_string();
    let tenant = field(&lines, "tenant id:").to_string();
    let client_id = field(&lines, "client id:").to_string();
    let secret = field(&lines, "client secret:").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(
        field(&lines, "granted roles:"),
        "GroupMember.Read.All, Presence.Read.All, Presence.ReadWrite.All, User.Read.All"
    );

    let http = reqwest::Client::new();
    let token = client_credentials(&http, &base, &tenant, &client_id, &secret).await;
    let users: Value = http
        .get(format!("{base}/v1.0/users"))
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("users request")
        .json()
        .await
        .expect("users JSON");
    assert_eq!(users["value"].as_array().map(Vec::len), Some(3));
    drop(http);

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "exit on Ctrl-C: {status:?}"
    );
}

/// `--grant` sets the app's roles: a presence read without
/// Presence.Read.All is Graph's 403.
#[tokio::test]
async fn sim_grant_sets_the_apps_roles() {
    let (mut child, lines) = start_sim(&[
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--users",
        "2",
        "--grant",
        "User.Read.All",
    ]);
    assert_eq!(field(&lines, "granted roles:"), "User.Read.All");
    let base = field(&lines, "base URL (login and Graph host):").to_string();
    let tenant = field(&lines, "tenant id:").to_string();
    let client_id = field(&lines, "client id:").to_string();
    let secret = field(&lines, "client secret:").to_string();
    let http = reqwest::Client::new();
    let token = client_credentials(&http, &base, &tenant, &client_id, &secret).await;
    let token = token["access_token"].as_str().expect("token").to_string();
    let users: Value = http
        .get(format!("{base}/v1.0/users"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("users")
        .json()
        .await
        .expect("users JSON");
    let id = users["value"][0]["id"]
        .as_str()
        .expect("a user")
        .to_string();
    let presence = http
        .get(format!("{base}/v1.0/users/{id}/presence"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("presence");
    assert_eq!(presence.status().as_u16(), 403);
    let _ = child.kill();
    let _ = child.wait();
}

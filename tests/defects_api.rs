//! What a new user and a hostile tester found in the API and the command
//! line, each through the real daemon against the simulator (or the built
//! binary): event cursors from another store, ids clients cannot address,
//! error bodies, `PUT` replacing an agent, loose limits on text, and the
//! CLI's output and exit codes.

mod common;

use std::process::Command;

use common::daemon_kit::{DaemonKit, write_config};
use presence_sync::events::kind;
use presence_sync::sim;
use serde_json::{Value, json};

/// Appended after `[sync]`: one queue for the contact tests.
const ROUTING: &str = r#"echo_window = "10s"

[routing.queues.sales]
strategy = "longest-idle"
offer_timeout = "30s"
"#;

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Sends one raw HTTP/1.1 request (so nothing rewrites its path) and reads
/// the answer: its status and JSON body.
async fn raw(kit: &DaemonKit, method: &str, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = kit.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        kit.token,
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        common::daemon_kit::PATIENCE,
        socket.read_to_end(&mut answer),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The error's (status, code, field).
fn error(status: u16, body: &Value) -> (u16, String, Option<String>) {
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["field"].as_str().map(str::to_string),
    )
}

fn bad(field: &str, code: &str) -> (u16, String, Option<String>) {
    (400, code.to_string(), Some(field.to_string()))
}

// Item 5: event cursors.

/// A WebSocket handshake by hand, so the refusal's status and body can be
/// read like any other answer.
async fn events_handshake(kit: &DaemonKit, since: &str) -> (u16, Value) {
    json_of(
        kit.http
            .get(format!("{}/v1/events?since={since}", kit.base))
            .bearer_auth(&kit.token)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_the_end_of_the_log_is_refused_and_a_valid_one_still_streams() {
    let kit = DaemonKit::start(2).await;
    kit.link("a1", 0).await;
    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);
    // Where the log ends now: the last event of a replay from the start.
    let mut all = kit.events(0).await;
    let seen = all
        .until(|e| e.kind == kind::AGENT_UPDATED)
        .await
        .into_iter()
        .map(|e| e.seq)
        .collect::<Vec<_>>();
    assert!(!seen.is_empty());
    drop(all);
    let (probe_status, _) = events_handshake(&kit, "0").await;
    assert_eq!(probe_status, 101, "a cursor of 0 is always valid");

    // A cursor from another (or a wiped) store: refused before the
    // upgrade, saying where this log ends.
    let (status, body) = events_handshake(&kit, "99999999999").await;
    assert_eq!(
        error(status, &body),
        (422, "cursor_ahead".into(), Some("since".into())),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("99999999999"), "{message}");
    let newest: u64 = message
        .split("the newest event is seq ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the message names the newest seq: {message}"));
    assert!(newest >= *seen.last().unwrap_or(&0), "{message}");
    let (status, _) = events_handshake(&kit, &(newest + 1).to_string()).await;
    assert_eq!(status, 422, "one past the newest is ahead too");

    // The newest seq itself is a valid cursor: live events arrive.
    let mut live = kit.events(newest).await;
    assert_eq!(kit.status("a1", "Available").await.status(), 200);
    let got = live
        .until(|e| e.kind == kind::AGENT_ROUTABLE_CHANGED && e.data["routable"] == true)
        .await
        .into_iter()
        .map(|e| e.seq)
        .collect::<Vec<_>>();
    assert!(
        got.iter().all(|seq| *seq > newest),
        "{got:?} after {newest}"
    );
    // And a cursor inside the log replays from there.
    let mut replay = kit.events(newest - 1).await;
    let first = replay.next().await.expect("the newest event again");
    assert_eq!(first.seq, newest);
    kit.stop().await;
}

// Item 8: ids.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_clients_cannot_address_are_refused_with_the_field() {
    let kit = DaemonKit::start_with(2, ROUTING).await;
    let agent = r#"{"teams_user":"nobody@contoso.example","auto_link":true}"#;
    for path in [
        "/v1/agents/.",
        "/v1/agents/..",
        "/v1/agents/%2E",
        "/v1/agents/%2e%2E",
        "/v1/agents/.hidden",
        "/v1/agents/a%2Fb",
        "/v1/agents/a%3Fb",
        "/v1/agents/a%23b",
    ] {
        let (status, body) = raw(&kit, "PUT", path, agent).await;
        assert_eq!(
            error(status, &body),
            bad("agent_id", "invalid_agent_id"),
            "{path}: {body}"
        );
    }
    for id in ["a/b", "x?y", "x#y", ".", "..", "é"] {
        let (status, body) = json_of(
            kit.post("/v1/contacts", json!({"queue": "sales", "contact_id": id}))
                .await,
        )
        .await;
        assert_eq!(
            error(status, &body),
            bad("contact_id", "invalid_contact_id"),
            "{id}: {body}"
        );
    }
    for path in [
        "/v1/contacts/a%2Fb",
        "/v1/contacts/%2E%2E",
        "/v1/contacts/x%23y/accept",
    ] {
        let method = if path.ends_with("accept") {
            "POST"
        } else {
            "GET"
        };
        let (status, body) = raw(&kit, method, path, "").await;
        assert_eq!(
            error(status, &body),
            bad("contact_id", "invalid_contact_id"),
            "{path}: {body}"
        );
    }
    // An agent id in a body is held to the same rule: 400, not a 409 for
    // "offered to another agent".
    let (status, _) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    for action in ["accept", "decline", "complete"] {
        let (status, body) = json_of(
            kit.post(
                &format!("/v1/contacts/c1/{action}"),
                json!({"agent_id": "a/b"}),
            )
            .await,
        )
        .await;
        assert_eq!(
            error(status, &body),
            bad("agent_id", "invalid_agent_id"),
            "{action}: {body}"
        );
    }
    // Ids in the alphabet still work.
    let (status, body) = json_of(
        kit.put(
            "/v1/agents/cc:agent_7@site-2.x",
            json!({"teams_user": "nobody@contoso.example", "auto_link": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    kit.stop().await;
}

// Item 9: the error shape.

/// What is wrong with an error body, if anything.
fn error_problem(body: &Value) -> Option<String> {
    let Some(message) = body["error"]["message"].as_str() else {
        return Some("no error.message".into());
    };
    if body["error"]["code"].as_str().is_none_or(str::is_empty) {
        return Some("no error.code".into());
    }
    // The input a message quotes is between backticks.
    let plain: String = message.split('`').step_by(2).collect::<Vec<_>>().join(" ");
    for phrase in [
        "expected struct",
        "with 2 elements",
        "invalid type: map",
        "invalid type:",
        "invalid value:",
        "Failed to",
    ] {
        if plain.contains(phrase) {
            return Some(format!("leaks {phrase:?}"));
        }
    }
    for word in plain.split(|c: char| !c.is_ascii_alphanumeric()) {
        if [
            "u8", "u32", "u64", "usize", "i64", "struct", "String", "Option",
        ]
        .contains(&word)
        {
            return Some(format!("leaks {word:?}"));
        }
    }
    if let Some(field) = body["error"]["field"].as_str()
        && field
            .split('.')
            .skip(1)
            .any(|part| part.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Some(format!("field {field}: indexes go in brackets"));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_bad_input_in_one_shape_written_for_people() {
    let kit = DaemonKit::start_with(2, ROUTING).await;
    kit.link("a1", 0).await;
    let agent = "/v1/agents/a1";
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":5}"#,
            Some("teams_user"),
        ),
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":"u","skills":{"fr":300}}"#,
            Some("skills.fr"),
        ),
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":"u","capacity":-1}"#,
            Some("capacity"),
        ),
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":"u","groups":{"a":1}}"#,
            Some("groups"),
        ),
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":"u","queues":[{"queue":"sales","position":"first"}]}"#,
            Some("queues[0].position"),
        ),
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":"user1@contoso.example","queues":[{"queue":"sales"},{"queue":"nope"}]}"#,
            Some("queues[1].queue"),
        ),
        ("PUT", agent.into(), r#"["teams_user"]"#, None),
        (
            "PUT",
            agent.into(),
            r#"{"teams_user":"u","colour":"red"}"#,
            Some("colour"),
        ),
        ("PUT", format!("{agent}/status"), r#""Available""#, None),
        (
            "PUT",
            format!("{agent}/status"),
            r#"["Available","2024-01-01T00:00:00Z"]"#,
            None,
        ),
        (
            "PUT",
            format!("{agent}/status"),
            r#"{"status":{"a":1}}"#,
            Some("status"),
        ),
        (
            "PUT",
            format!("{agent}/status"),
            r#"{"status":"Lunch","at":"yesterday"}"#,
            Some("at"),
        ),
        (
            "POST",
            "/v1/contacts".into(),
            r#"{"queue":"sales","priority":256}"#,
            Some("priority"),
        ),
        (
            "POST",
            "/v1/contacts".into(),
            r#"{"queue":"sales","skills":[1]}"#,
            Some("skills"),
        ),
        (
            "POST",
            "/v1/contacts".into(),
            r#"{"queue":7}"#,
            Some("queue"),
        ),
        (
            "POST",
            "/v1/contacts/c9/accept".into(),
            r#"{"agent_id":5}"#,
            Some("agent_id"),
        ),
        ("POST", "/v1/contacts/c9/accept".into(), r#"[1,2]"#, None),
        ("GET", "/v1/events?since=-1".into(), "", Some("since")),
        ("GET", "/v1/nowhere".into(), "", None),
        ("DELETE", "/v1/agents".into(), "", None),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = raw(&kit, method, &path, body).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path} {body}: {status} {answer}"
        );
        if let Some(problem) = error_problem(&answer) {
            panic!("{method} {path} {body}: {status} {answer}: {problem}");
        }
        assert_eq!(
            answer["error"]["field"].as_str(),
            field,
            "{method} {path} {body}: {answer}"
        );
    }
    // The two messages the tester quoted, now in words.
    let (_, answer) = raw(
        &kit,
        "PUT",
        "/v1/agents/a1",
        r#"{"teams_user":"u","skills":{"fr":300}}"#,
    )
    .await;
    assert_eq!(
        answer["error"]["message"],
        "`skills.fr` must be a skill level: a whole number from 0 to 100, not 300"
    );
    let (_, answer) = raw(&kit, "PUT", "/v1/agents/a1/status", r#"["Lunch", null]"#).await;
    assert_eq!(
        answer["error"]["message"],
        "the body must be a JSON object with `status`, not an array"
    );
    // A path longer than the server reads: 414 in the same shape.
    let (status, answer) = raw(
        &kit,
        "GET",
        &format!("/v1/agents/{}", "a".repeat(100_000)),
        "",
    )
    .await;
    assert_eq!(error(status, &answer).0, 414, "{answer}");
    assert_eq!(answer["error"]["code"], "uri_too_long");
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_queue_strategy_on_reload_is_located_at_its_key() {
    let mut kit = DaemonKit::start_with(1, ROUTING).await;
    let text = std::fs::read_to_string(&kit.config_path).unwrap();
    let broken = text.replace("strategy = \"longest-idle\"", "strategy = \"fastest\"");
    assert_ne!(text, broken);
    std::fs::write(&kit.config_path, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.starts_with("strategy = \"fastest\""))
        .map(|i| i + 1)
        .unwrap();
    let daemon = kit.daemon.take().unwrap();
    let errors = daemon
        .reload()
        .await
        .expect_err("a bad strategy is refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (line, 1), "{errors:?}");
    assert!(
        errors[0].message.contains("unknown strategy `fastest`"),
        "{errors:?}"
    );
    kit.daemon = Some(daemon);
    kit.stop().await;
}

// Item 10: PUT replaces.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_the_agents_settings_and_keeps_its_runtime_state() {
    let kit = DaemonKit::start_with(2, ROUTING).await;
    kit.link("a1", 0).await;
    let (user_id, upn) = kit.user(0);
    let from_directory = kit.agent("a1").await["display_name"].clone();
    assert!(from_directory.is_string(), "the directory names the user");
    let full = json!({
        "teams_user": upn,
        "display_name": "Agent One",
        "groups": ["tier2"],
        "skills": {"english": 80},
        "phone": "+1 555 0100",
        "queues": [{"queue": "sales", "position": 1}],
        "capacity": 2,
    });
    let (status, body) = json_of(kit.put("/v1/agents/a1", full).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["display_name"], "Agent One");
    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);

    // Only the Teams user: every setting goes back to its default.
    let (status, body) = json_of(kit.put("/v1/agents/a1", json!({"teams_user": upn})).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["display_name"], from_directory, "{body}");
    assert_eq!(body["groups"], json!([]), "{body}");
    assert_eq!(body["skills"], json!({}), "{body}");
    assert_eq!(body["routing"]["queues"], json!([]), "{body}");
    assert_eq!(body["routing"]["capacity"], 1, "{body}");
    assert_ne!(body["phone"], "+1 555 0100", "{body}");
    // The runtime state is not a setting: the link and the CC status stay.
    assert_eq!(body["linked"], true, "{body}");
    assert_eq!(
        body["teams_user_id"],
        user_id.to_ascii_lowercase(),
        "{body}"
    );
    assert_eq!(body["cc"]["status"], "Lunch", "{body}");

    // null clears a value given before.
    let (status, _) = json_of(
        kit.put(
            "/v1/agents/a1",
            json!({"teams_user": upn, "display_name": "X"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = json_of(
        kit.put(
            "/v1/agents/a1",
            json!({"teams_user": upn, "display_name": null}),
        )
        .await,
    )
    .await;
    assert_eq!(body["display_name"], from_directory, "{body}");

    // Unlinked, nothing in the directory to fall back on: omitted is null.
    let pending =
        json!({"teams_user": "later@contoso.example", "auto_link": true, "display_name": "Later"});
    assert_eq!(kit.put("/v1/agents/a2", pending).await.status(), 200);
    let (_, body) = json_of(
        kit.put(
            "/v1/agents/a2",
            json!({"teams_user": "later@contoso.example", "auto_link": true}),
        )
        .await,
    )
    .await;
    assert_eq!(body["display_name"], Value::Null, "{body}");
    assert_eq!(body["linked"], false, "{body}");
    kit.stop().await;
}

// Item 13: limits on text.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_text_with_hidden_characters_or_no_end_are_refused() {
    let kit = DaemonKit::start(1).await;
    let with = |extra: Value| {
        let mut body = json!({"teams_user": "nobody@contoso.example", "auto_link": true});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let long = "n".repeat(65);
    let cases = [
        (json!({"display_name": "a\u{0}b"}), "display_name"),
        (
            json!({"display_name": "evil\u{202E}txt.exe"}),
            "display_name",
        ),
        (json!({"display_name": "zero\u{200B}width"}), "display_name"),
        (json!({"display_name": "x".repeat(257)}), "display_name"),
        (json!({"display_name": "  "}), "display_name"),
        (json!({"groups": ["ok", long]}), "groups[1]"),
        (json!({"groups": [""]}), "groups[0]"),
        (json!({"groups": ["line\nbreak"]}), "groups[0]"),
        (
            json!({"skills": {long.clone(): 5}}),
            &format!("skills.{long}"),
        ),
        (json!({"skills": {"fr\u{202E}": 5}}), "skills.fr\u{202E}"),
        (json!({"phone": "+1\u{0}555"}), "phone"),
    ];
    for (extra, field) in &cases {
        let (status, body) = json_of(kit.put("/v1/agents/a1", with(extra.clone())).await).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(
            body["error"]["field"].as_str(),
            Some(*field),
            "{extra}: {body}"
        );
    }
    let (status, body) = json_of(
        kit.put(
            "/v1/agents/a1",
            with(json!({
                "display_name": "Zoë O'Brien — ventes (日本)",
                "groups": ["g".repeat(64)],
                "skills": {"français": 40},
            })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kit.agents_count().await, 1);
    kit.stop().await;
}

trait Count {
    async fn agents_count(&self) -> usize;
}

impl Count for DaemonKit {
    async fn agents_count(&self) -> usize {
        let (_, body) = json_of(self.get("/v1/agents").await).await;
        body["agents"].as_array().map_or(0, Vec::len)
    }
}

// Item 12: the command line.

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presence-sync"));
    command.env_clear();
    command
}

#[test]
fn export_ends_with_a_summary_line_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(presence_sync::store::SledStore::open(&state).unwrap());
    let out = bin()
        .args(["export", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("BackupStats") && !stderr.contains('{'),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "presence-sync export: exported 0 agents, 0 owed Teams writes, 0 contacts, 0 events"
        ),
        "{stderr}"
    );
}

#[test]
fn import_of_a_malformed_backup_exits_with_the_bad_input_code() {
    let dir = tempfile::tempdir().unwrap();
    for (input, code) in [
        ("this is not an export\n", 65),
        ("", 65),
        ("{\"kind\":\"presence-sync-export\"}\n", 65),
    ] {
        let target = dir.path().join(format!("t{}", input.len()));
        let mut child = bin()
            .args(["import", "--state-dir"])
            .arg(&target)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{input:?}: {stderr}");
        assert!(stderr.contains("line"), "{stderr}");
    }
    // The store-refused code stays for a target that is not empty.
    let occupied = dir.path().join("occupied");
    std::fs::create_dir_all(&occupied).unwrap();
    std::fs::write(occupied.join("something"), "x").unwrap();
    let out = bin()
        .args(["import", "--state-dir"])
        .arg(&occupied)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(74));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_missing_secret_before_creating_the_state_directory() {
    let sim = sim::spawn(common::daemon_kit::sim_options(1))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let state = dir.path().join("state");
    for missing in ["api-token", "graph-secret"] {
        write_config(dir.path(), &sim, "echo_window = \"10s\"");
        std::fs::remove_file(dir.path().join(missing)).unwrap();
        let out = bin()
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{missing}: {stderr}");
        assert!(
            !state.exists(),
            "{missing}: the state directory was created"
        );
    }
    sim.shutdown().await.unwrap();
}

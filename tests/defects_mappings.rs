//! Mapping defects found by a new user and a hostile tester (issue 11),
//! through the real daemon against the embedded Graph simulator, and
//! through `presence-sync check` as an admin runs it.
//!
//! - A reload (the SIGHUP path) that removes a status an agent holds keeps
//!   the status, says so, and shows the profile's `default_teams` in Teams;
//!   putting the line back maps it again. The same for a group moved to a
//!   profile without the status.
//! - A queue's `on_contact_status` / `after_contact_status` that a profile
//!   serving the queue lacks is refused by `check` and by a reload, located.

mod common;

use std::path::Path;
use std::process::Command;

use common::daemon_kit::{DaemonKit, EventStream, until};
use presence_sync::events::{Event, kind};
use serde_json::{Value, json};

const ON_CONTACT_LINE: &str = "\"On contact\" = { teams = \"Busy/InACall\" }\n";

async fn reload(kit: &DaemonKit) {
    kit.daemon
        .as_ref()
        .expect("running")
        .reload()
        .await
        .unwrap_or_else(|e| panic!("reload refused: {e:?}"));
}

/// The next event of `type` for `agent` (or for no agent), skipping others.
async fn next_of(events: &mut EventStream, kind: &str, agent: Option<&str>) -> Event {
    events
        .until(|e| e.kind == kind && e.agent_id.as_deref() == agent)
        .await
        .pop()
        .expect("the event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_held_status_keeps_it_and_putting_it_back_maps_it_again() {
    let mut kit = DaemonKit::start(2).await;
    let (user, _) = kit.user(0);
    kit.link("a1", 0).await;
    assert_eq!(kit.status("a1", "On contact").await.status(), 200);
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    let since = kit.agent("a1").await["cc"]["since"].clone();
    let mut events = kit.events(0).await;

    // The admin deletes the line; `check` passes; SIGHUP.
    let mapping = kit.dir.path().join("mapping.toml");
    let original = std::fs::read_to_string(&mapping).unwrap();
    assert!(original.contains(ON_CONTACT_LINE));
    std::fs::write(&mapping, original.replace(ON_CONTACT_LINE, "")).unwrap();
    reload(&kit).await;

    // Said per agent, and in the reload's result.
    let said = next_of(&mut events, kind::CC_STATUS_NOT_IN_PROFILE, Some("a1")).await;
    assert_eq!(said.data["status"], "On contact");
    assert_eq!(said.data["profile"], "default");
    assert_eq!(said.data["teams_target"]["action"], "clear");
    let reloaded = next_of(&mut events, kind::MAPPINGS_RELOADED, None).await;
    assert_eq!(
        reloaded.data["statuses_not_in_profile"],
        json!([{"agent_id": "a1", "status": "On contact", "profile": "default"}]),
        "{reloaded:?}"
    );

    // The status is kept, shown as unknown to the profile, not routable,
    // and Teams gets the profile's default_teams (clear): our Busy session goes.
    let agent = kit.agent("a1").await;
    assert_eq!(agent["cc"]["status"], "On contact", "{agent}");
    assert_eq!(agent["cc"]["in_profile"], false, "{agent}");
    assert_eq!(agent["cc"]["since"], since, "{agent}");
    assert_eq!(agent["cc"]["set_by"], "agent", "{agent}");
    assert_eq!(agent["routable"], false);
    assert!(
        agent["not_routable_because"]
            .to_string()
            .contains("CC status `On contact` is not in profile `default`"),
        "{agent}"
    );
    assert_eq!(agent["teams"]["target"]["action"], "clear", "{agent}");
    until(|| async {
        let a = kit.agent("a1").await;
        a["teams"]["written"].is_null() || a["teams"]["written"]["target"]["action"] == "clear"
    })
    .await;
    until(|| async { kit.teams(&user).await != "Busy/InACall" }).await;
    assert!(
        kit.agent("a1").await["sync"]["last_decision"]
            .as_str()
            .is_some_and(|d| d.contains("not in profile `default`")),
        "{}",
        kit.agent("a1").await
    );

    // Kept across a restart too (the stream is closed first: it holds the store).
    drop(events);
    kit.restart().await;
    let agent = kit.agent("a1").await;
    assert_eq!(agent["cc"]["status"], "On contact", "{agent}");
    assert_eq!(agent["cc"]["in_profile"], false, "{agent}");
    let mut events = kit.events(0).await;

    // Putting the line back maps the agent's status again.
    std::fs::write(&mapping, &original).unwrap();
    reload(&kit).await;
    let back = next_of(&mut events, kind::CC_STATUS_BACK_IN_PROFILE, Some("a1")).await;
    assert_eq!(back.data["status"], "On contact");
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    let agent = kit.agent("a1").await;
    assert_eq!(agent["cc"]["status"], "On contact", "{agent}");
    assert_eq!(agent["cc"]["in_profile"], true, "{agent}");
    assert_eq!(agent["cc"]["since"], since, "{agent}");
    assert_eq!(agent["teams"]["target"]["presence"]["activity"], "InACall");

    // And it is an ordinary status again: the next one maps as usual.
    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);
    until(|| async { kit.teams(&user).await == "Away/Away" }).await;
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_moved_to_a_profile_without_the_held_status_keeps_it_until_moved_back() {
    let kit = DaemonKit::start(2).await;
    let (user, upn) = kit.user(0);
    // A second profile without `On contact`, for the group `night`.
    let other = kit.dir.path().join("other.toml");
    std::fs::write(
        &other,
        common::daemon_kit::MAPPING.replace(ON_CONTACT_LINE, ""),
    )
    .unwrap();
    let config = std::fs::read_to_string(&kit.config_path).unwrap();
    let with_other = |groups: &str| {
        format!(
            "{config}\n[mappings.profiles.other]\nfile = \"{}\"\ngroups = {groups}\n",
            other.display()
        )
    };
    std::fs::write(&kit.config_path, with_other("[\"night\"]")).unwrap();
    reload(&kit).await;

    kit.link("a1", 0).await;
    let r = kit
        .put(
            "/v1/agents/a1",
            json!({"teams_user": upn, "groups": ["day"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(kit.status("a1", "On contact").await.status(), 200);
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    assert_eq!(kit.agent("a1").await["profile"], "default");
    let mut events = kit.events(0).await;

    // The admin moves the group `day` to the profile without the status.
    std::fs::write(&kit.config_path, with_other("[\"night\", \"day\"]")).unwrap();
    reload(&kit).await;
    let said = next_of(&mut events, kind::CC_STATUS_NOT_IN_PROFILE, Some("a1")).await;
    assert_eq!(said.data["status"], "On contact");
    assert_eq!(said.data["profile"], "other");
    let agent = kit.agent("a1").await;
    assert_eq!(agent["profile"], "other", "{agent}");
    assert_eq!(agent["cc"]["status"], "On contact", "{agent}");
    assert_eq!(agent["cc"]["in_profile"], false, "{agent}");
    until(|| async { kit.teams(&user).await != "Busy/InACall" }).await;

    // Moved back: mapped again.
    std::fs::write(&kit.config_path, with_other("[\"night\"]")).unwrap();
    reload(&kit).await;
    next_of(&mut events, kind::CC_STATUS_BACK_IN_PROFILE, Some("a1")).await;
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    let agent = kit.agent("a1").await;
    assert_eq!(agent["profile"], "default");
    assert_eq!(agent["cc"]["in_profile"], true);
    kit.stop().await;
}

/// Appended after `[sync]`: a queue that puts its agents in statuses.
const QUEUE: &str = r#"echo_window = "10s"

[routing.queues.sales]
strategy = "longest-idle"
on_contact_status = "On contact"
after_contact_status = "Available"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_queue_status_the_profile_lacks_is_refused_and_the_queue_keeps_its_statuses()
 {
    let kit = DaemonKit::start_with(2, QUEUE).await;
    let config = std::fs::read_to_string(&kit.config_path).unwrap();
    let typo = config.replace(
        "on_contact_status = \"On contact\"",
        "on_contact_status = \"On contatc\"",
    );
    assert_ne!(typo, config);
    std::fs::write(&kit.config_path, &typo).unwrap();
    let line = typo
        .lines()
        .position(|l| l.starts_with("on_contact_status"))
        .unwrap()
        + 1;
    let Err(errors) = kit.daemon.as_ref().unwrap().reload().await else {
        panic!("a reload with a queue status no profile has must be refused");
    };
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with(&format!(
            "{}:{line}:1: `on_contact_status` = \"On contatc\": profile `default` has no such status (did you mean `On contact`?)",
            kit.config_path.display()
        )),
        "{text:?}"
    );
    let metrics = kit.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("presence_sync_mapping_reloads_total{outcome=\"error\"} 1"),
        "{metrics}"
    );

    // The queue in force still puts an agent that accepts in `On contact`.
    let (user, upn) = kit.user(0);
    kit.link("a1", 0).await;
    let r = kit
        .put(
            "/v1/agents/a1",
            json!({"teams_user": upn, "queues": [{"queue": "sales"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(kit.status("a1", "Available").await.status(), 200);
    until(|| async { kit.agent("a1").await["routing"]["eligible"] == json!(true) }).await;
    let contact: Value = kit
        .post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c1"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(contact["agent"], "a1", "{contact}");
    let r = kit.post("/v1/contacts/c1/accept", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(kit.agent("a1").await["cc"]["status"], "On contact");
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    kit.stop().await;
}

fn check(config: &Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_presence-sync"))
        .env_clear()
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .expect("run presence-sync");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_a_queue_status_a_serving_profile_lacks_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    std::fs::write(dir.path().join("client-secret"), "dummy\n").unwrap();
    std::fs::write(dir.path().join("api-token"), "dummy\n").unwrap();
    let config = dir.path().join("presence-sync.toml");
    let write = |sales_status: &str, support_groups: &str| {
        std::fs::write(
            &config,
            format!(
                r#"[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "client-secret"

[api]
token_file = "api-token"

[store]
state_dir = "state"

[mappings.profiles.default]
file = "{default}"

[mappings.profiles.genesys]
file = "{genesys}"
groups = ["tier2"]

[routing.queues.sales]
strategy = "longest-idle"
groups = ["sales-team"]
on_contact_status = "{sales_status}"

[routing.queues.support]
strategy = "top-down"
groups = {support_groups}
after_contact_status = "After contact work"
"#,
                default = root.join("default.toml").display(),
                genesys = root.join("genesys.toml").display(),
            ),
        )
        .unwrap();
    };

    // A typo, and a status the group's profile (genesys) does not have.
    write("On contatc", "[\"tier2\"]");
    let (ok, out, err) = check(&config);
    assert!(!ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let path = config.display();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("{path}:22:1: `on_contact_status` = \"On contatc\": profile `default` has no such status (did you mean `On contact`?); agents in queue `sales`'s group `sales-team` use that profile")),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{path}:27:1: `after_contact_status` = \"After contact work\": profile `genesys` has no such status; agents in queue `support`'s group `tier2` use that profile")),
        "{out}"
    );
    assert!(err.contains("failed: 2 errors"), "{err}");

    // Fixed: the right spelling, and support served by the default profile.
    write("On contact", "[\"support-team\"]");
    let (ok, out, err) = check(&config);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_agents_holding_a_status_the_edited_file_removes() {
    let mut kit = DaemonKit::start(2).await;
    let (user, _) = kit.user(0);
    kit.link("a1", 0).await;
    assert_eq!(kit.status("a1", "On contact").await.status(), 200);
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    let mapping = kit.dir.path().join("mapping.toml");
    let original = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(&mapping, original.replace(ON_CONTACT_LINE, "")).unwrap();

    // While the daemon runs, the store is its own: check says it did not look.
    let config = kit.config_path.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("is in use (the daemon runs): agents' CC statuses not checked"),
        "{err}"
    );

    // Stopped (an edit before a restart): the agent holding it is named.
    let daemon = kit.daemon.take().unwrap();
    assert_eq!(
        daemon.shutdown().await,
        presence_sync::daemon::Exit::Stopped
    );
    let config = kit.config_path.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    assert!(ok, "a warning, not an error: {out}{err}");
    assert!(
        out.contains("warning: agent `a1` holds CC status `On contact`, which profile `default`"),
        "{out}"
    );
    // Put back: nothing to say.
    std::fs::write(&mapping, &original).unwrap();
    let config = kit.config_path.clone();
    let (ok, out, _) = tokio::task::spawn_blocking(move || check(&config))
        .await
        .unwrap();
    // (The test mapping's Lunch = Away/Away is warned about on its own.)
    assert!(ok && !out.contains("holds CC status"), "{out}");
    kit.stop().await;
}

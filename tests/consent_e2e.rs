//! Permissions and admin consent end to end: the real daemon against the
//! simulator whose app lacks Presence.ReadWrite.All, then is granted it;
//! and each way Entra refuses a token, with its operator message.

mod common;

use std::time::Duration;

use common::daemon_kit::{DaemonKit, options, sim_options, until};
use common::graph_kit::{config, control};
use presence_sync::config::Secret;
use presence_sync::graph::{Credential, GraphClient};
use presence_sync::sim::{self, SimOptions};
use serde_json::{Value, json};

const READ_ONLY: [&str; 2] = ["Presence.Read.All", "User.Read.All"];

async fn readyz(kit: &DaemonKit) -> Value {
    kit.http
        .get(format!("{}/readyz", kit.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("readyz JSON")
}

fn missing(report: &Value) -> Vec<String> {
    report["permissions"]["missing"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|p| p["permission"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Without Presence.ReadWrite.All: `/readyz` names it and what it stops,
/// `/v1/health` has the consent URL, a metric counts it, Teams → CC works,
/// CC → Teams writes are held with the reason in the agent view and Graph
/// sees no 403s; granted, the next token has the role and the newest value
/// is written, once, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_consent_and_the_newest_lands_when_it_is_granted() {
    let kit = DaemonKit::start_sim(
        SimOptions {
            roles: READ_ONLY.iter().map(|r| r.to_string()).collect(),
            ..sim_options(3)
        },
        "echo_window = \"10s\"",
        presence_sync::daemon::DaemonOptions {
            permission_recheck: Duration::from_millis(300),
            ..options()
        },
    )
    .await;
    until(|| async { missing(&readyz(&kit).await) == ["Presence.ReadWrite.All"] }).await;
    let ready = readyz(&kit).await;
    let lacking = &ready["permissions"]["missing"][0];
    assert_eq!(lacking["stops"], json!(["cc_to_teams"]));
    assert_eq!(
        ready["permissions"]["granted"],
        json!(["Presence.Read.All", "User.Read.All"])
    );
    let check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "permissions")
        .cloned()
        .expect("a permissions check");
    assert_eq!(check["ok"], true, "degraded, not down: {check}");
    assert!(
        check["detail"].as_str().unwrap().contains("held"),
        "{check}"
    );
    let health: Value = kit.get("/v1/health").await.json().await.unwrap();
    let consent = format!(
        "{}/{}/adminconsent?client_id={}",
        kit.sim.base_url, kit.sim.tenant_id, kit.sim.client_id
    );
    assert_eq!(health["permissions"]["consent_url"], json!(consent));
    // The open probe has it too while it is the fix.
    assert_eq!(
        ready["permissions"]["consent_url"],
        json!(consent),
        "{ready}"
    );
    assert!(
        health["permissions"]["missing"][0]["fix"]
            .as_str()
            .unwrap()
            .contains(&consent)
    );
    assert_eq!(
        kit.metric(
            "presence_sync_graph_permission_missing",
            &[("permission", "Presence.ReadWrite.All")]
        )
        .await,
        1.0
    );

    // Teams → CC keeps working.
    let (reader, _) = kit.user(0);
    kit.link("a1", 0).await;
    kit.status("a1", "Available").await;
    kit.user_shows(&reader, "Busy", "InAMeeting").await;
    until(|| async { kit.agent("a1").await["cc"]["requested"]["status"] == "Meeting" }).await;

    // CC → Teams is held, the newest value kept.
    let (writer, _) = kit.user(1);
    kit.link("a2", 1).await;
    kit.status("a2", "On contact").await;
    until(|| async {
        kit.agent("a2").await["sync"]["writes_held"]
            .as_str()
            .is_some_and(|why| why.contains("Presence.ReadWrite.All"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    kit.status("a2", "Lunch").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(kit.teams(&writer).await, "Busy/InACall");
    assert_eq!(kit.sim.answered("setPresence", 403), 0, "no 403 storm");
    assert_eq!(kit.sim.answered("setPresence", 200), 0);

    // Consent is granted: the next token carries the role.
    kit.sim.set_roles(&[
        "Presence.Read.All",
        "Presence.ReadWrite.All",
        "User.Read.All",
    ]);
    until(|| async { kit.teams(&writer).await == "Away/Away" }).await;
    assert_eq!(
        kit.sim.answered("setPresence", 200),
        1,
        "only the newest value"
    );
    until(|| async { missing(&readyz(&kit).await).is_empty() }).await;
    let ready = readyz(&kit).await;
    assert!(
        ready["permissions"].get("consent_url").is_none(),
        "nothing missing, no tenant in the probe: {ready}"
    );
    assert_eq!(kit.agent("a2").await["sync"]["writes_held"], Value::Null);
    assert_eq!(
        kit.metric(
            "presence_sync_graph_permission_missing",
            &[("permission", "Presence.ReadWrite.All")]
        )
        .await,
        0.0
    );
    assert_eq!(kit.sim.answered("setPresence", 403), 0);
    kit.stop().await;
}

/// Each way Entra refuses a token reaches the operator as its class, with
/// the fix in the message.
#[tokio::test]
async fn each_entra_refusal_names_its_fix() {
    let sim = sim::spawn(SimOptions {
        users: 1,
        budget: None,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let good = config(&sim);
    let secret = |s: &str| Credential::Secret(Secret::new(s.to_string()));
    let refusal = |mut cfg: presence_sync::config::GraphConfig, credential: Credential| async move {
        cfg.request_timeout = Duration::from_secs(5);
        let client = GraphClient::new(&cfg, credential).expect("client");
        match client.list_users().await {
            Err(presence_sync::graph::GraphError::Auth(e)) => (e.kind(), e.to_string()),
            other => panic!("not refused by Entra: {other:?}"),
        }
    };
    let (kind, text) = refusal(good.clone(), secret("wrong")).await;
    assert_eq!(kind, "invalid_secret");
    assert!(text.contains("secret's value"), "{text}");
    let mut other_app = good.clone();
    other_app.client_id = "00000000-0000-4000-8000-000000000000".into();
    let (kind, text) = refusal(other_app, secret(&sim.client_secret)).await;
    assert_eq!(kind, "unknown_app");
    assert!(text.contains("graph.client_id"), "{text}");
    let mut other_tenant = good.clone();
    other_tenant.tenant_id = "fabrikam.test".into();
    let (kind, text) = refusal(other_tenant, secret(&sim.client_secret)).await;
    assert_eq!(kind, "tenant_not_found");
    assert!(text.contains("graph.tenant_id"), "{text}");
    let mut other_scope = good.clone();
    other_scope.graph_base = "https://graph.example".into();
    let (kind, _) = refusal(other_scope, secret(&sim.client_secret)).await;
    assert_eq!(kind, "invalid_scope");
    control(&sim, "/faults", json!({"secret_expired": true})).await;
    let (kind, text) = refusal(good.clone(), secret(&sim.client_secret)).await;
    assert_eq!(kind, "expired_secret");
    assert!(text.contains("new secret"), "{text}");
    sim.shutdown().await.expect("simulator stops");
}

/// A certificate credential that expires within 30 days: a warning in
/// `/readyz` (still ready) and its end date as a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_its_end_is_a_warning_and_a_metric() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
    let ca = presence_sync::sim::tls::TestCa::new("app CA").unwrap();
    let end = chrono::Utc::now() + chrono::Duration::days(10);
    let certificate = ca.issue_client("presence-sync app", end).unwrap();
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut kit = DaemonKit::start_sim(
        SimOptions {
            certificate: Some((
                certificate.certificate_der.clone(),
                key.public_key().as_ref().to_vec(),
            )),
            ..sim_options(1)
        },
        "echo_window = \"10s\"",
        options(),
    )
    .await;
    let dir = kit.dir.path().to_path_buf();
    std::fs::write(dir.join("app.pem"), certificate.certificate_pem()).unwrap();
    let pkcs8 = key.as_der().unwrap();
    std::fs::write(
        dir.join("app.key"),
        presence_sync::sim::tls::pem("PRIVATE KEY", pkcs8.as_ref()),
    )
    .unwrap();
    let config = std::fs::read_to_string(&kit.config_path).unwrap().replace(
        &format!("client_secret_file = \"{}/graph-secret\"", dir.display()),
        "client_certificate_file = \"app.pem\"\nclient_key_file = \"app.key\"",
    );
    assert!(config.contains("client_certificate_file"));
    std::fs::write(&kit.config_path, config).unwrap();
    kit.restart().await;
    until(|| async {
        let ready = readyz(&kit).await;
        ready["ready"] == true
            && ready["checks"].as_array().unwrap().iter().any(|c| {
                c["name"] == "certificate"
                    && c["ok"] == true
                    && c["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("warning") && d.contains("expires"))
            })
    })
    .await;
    let metric = kit
        .metric(
            "presence_sync_graph_certificate_expiry_timestamp_seconds",
            &[],
        )
        .await;
    assert_eq!(metric, end.timestamp() as f64);
    kit.stop().await;
}

/// A config that only reads needs no write permission; a reload that makes
/// a profile write asks for it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_starts_writing_needs_the_write_permission() {
    let kit = DaemonKit::start_custom(
        SimOptions {
            roles: READ_ONLY.iter().map(|r| r.to_string()).collect(),
            ..sim_options(1)
        },
        |dir, _| {
            let read_only = common::daemon_kit::MAPPING
                .replace("direction = \"both\"", "direction = \"teams_to_cc\"");
            std::fs::write(dir.join("mapping.toml"), read_only).unwrap();
            String::new()
        },
        "echo_window = \"10s\"",
        options(),
    )
    .await;
    until(|| async {
        let ready = readyz(&kit).await;
        ready["permissions"]["needed"] == json!(["Presence.Read.All", "User.Read.All"])
            && missing(&ready).is_empty()
    })
    .await;
    std::fs::write(
        kit.dir.path().join("mapping.toml"),
        common::daemon_kit::MAPPING,
    )
    .unwrap();
    kit.daemon
        .as_ref()
        .unwrap()
        .reload()
        .await
        .expect("reloaded");
    until(|| async { missing(&readyz(&kit).await) == ["Presence.ReadWrite.All"] }).await;
    kit.stop().await;
}

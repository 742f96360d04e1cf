//! `presence-sync permissions` and `check --online` as an admin runs them,
//! against the simulator: granted, missing, refused, unreachable.

mod common;

use std::path::{Path, PathBuf};

use common::daemon_kit::{sim_options, write_config};
use presence_sync::sim::{self, SimOptions};

async fn presence_sync(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_presence-sync"))
            .args(&args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("joined")
}

fn args(words: &[&str], config: &Path) -> Vec<String> {
    let mut all: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    all.push("--config".into());
    all.push(config.display().to_string());
    all
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_only_mapping(dir: &Path) {
    let mapping =
        common::daemon_kit::MAPPING.replace("direction = \"both\"", "direction = \"teams_to_cc\"");
    std::fs::write(dir.join("mapping.toml"), mapping).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_lists_what_the_config_needs_and_the_consent_url() {
    let sim = sim::spawn(sim_options(1)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let out = presence_sync(args(&["permissions"], &config)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    for permission in [
        "Presence.Read.All",
        "Presence.ReadWrite.All",
        "User.Read.All",
    ] {
        assert!(shown.contains(permission), "{permission}: {shown}");
    }
    let consent = format!(
        "{}/{}/adminconsent?client_id={}",
        sim.base_url, sim.tenant_id, sim.client_id
    );
    assert!(shown.contains(&consent), "{shown}");

    // A config that only reads needs no write permission, and says so.
    read_only_mapping(dir.path());
    let out = presence_sync(args(&["permissions"], &config)).await;
    let shown = text(&out);
    assert!(!shown.contains("\n  Presence.ReadWrite.All"), "{shown}");
    assert!(shown.contains("No write permission"), "{shown}");

    // A broken config: the configuration exit code.
    std::fs::write(dir.path().join("mapping.toml"), "direction = 3\n").unwrap();
    let out = presence_sync(args(&["permissions"], &config)).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_says_granted_or_missing_per_permission() {
    let sim = sim::spawn(SimOptions {
        roles: vec!["Presence.Read.All".into(), "User.Read.All".into()],
        ..sim_options(2)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let online = args(&["check", "--online"], &config);

    let out = presence_sync(online.clone()).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(shown.contains("granted: Presence.Read.All"), "{shown}");
    assert!(shown.contains("granted: User.Read.All"), "{shown}");
    assert!(shown.contains("missing: Presence.ReadWrite.All"), "{shown}");
    assert!(shown.contains("adminconsent?client_id="), "{shown}");

    sim.set_roles(&["Presence.ReadWrite.All", "User.Read.All"]);
    let out = presence_sync(online.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Without User.Read.All: Graph's 403 says so.
    sim.set_roles(&["Presence.ReadWrite.All"]);
    let out = presence_sync(online.clone()).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(shown.contains("missing: User.Read.All"), "{shown}");
    assert!(shown.contains("Authorization_RequestDenied"), "{shown}");

    // Credentials refused.
    std::fs::write(dir.path().join("graph-secret"), "wrong").unwrap();
    let out = presence_sync(online.clone()).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(shown.contains("secret's value"), "{shown}");

    // Entra unreachable.
    write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let unreachable = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sim.base_url, "http://127.0.0.1:9");
    std::fs::write(&config, unreachable).unwrap();
    let out = presence_sync(online).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    sim.shutdown().await.unwrap();
}

/// A directory scope by groups needs GroupMember.Read.All: `permissions`
/// lists it (and only then), `check --online` reads one member to see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_by_groups_needs_group_member_read_all() {
    let sim = sim::spawn(sim_options(2)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let shown = text(&presence_sync(args(&["permissions"], &config)).await);
    assert!(!shown.contains("GroupMember.Read.All"), "{shown}");

    let group = "2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4";
    let member = sim.user_ids()[0].clone();
    let created = reqwest::Client::new()
        .post(format!("{}/_sim/groups", sim.base_url))
        .json(&serde_json::json!({"id": group, "members": [member]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let scoped =
        format!("echo_window = \"10s\"\n\n[directory]\nscope = {{ groups = [\"{group}\"] }}");
    let config = write_config(dir.path(), &sim, &scoped);
    let out = presence_sync(args(&["permissions"], &config)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("\n  GroupMember.Read.All"), "{shown}");
    assert!(shown.contains("scope by group membership"), "{shown}");

    let online = args(&["check", "--online"], &config);
    let out = presence_sync(online.clone()).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("granted: GroupMember.Read.All"), "{shown}");

    sim.set_roles(&["Presence.ReadWrite.All", "User.Read.All"]);
    let out = presence_sync(online).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(shown.contains("missing: GroupMember.Read.All"), "{shown}");
    assert!(shown.contains("Authorization_RequestDenied"), "{shown}");
    sim.shutdown().await.unwrap();
}

/// `check` reads the CA file as the daemon will, and says when the client
/// certificate is near its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_ca_file_and_the_certificates_end_date() {
    let sim = sim::spawn(sim_options(1)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate\n").unwrap();
    let config = common::daemon_kit::write_config_with(
        dir.path(),
        &sim,
        "echo_window = \"10s\"",
        "ca_file = \"bad.pem\"",
    );
    let out = presence_sync(args(&["check"], &config)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(78), "{shown}");
    assert!(
        shown.contains("bad.pem") && shown.contains("no PEM certificate"),
        "{shown}"
    );

    let ca = presence_sync::sim::tls::TestCa::new("CA").unwrap();
    std::fs::write(
        dir.path().join("ca.pem"),
        ca.certificate().certificate_pem(),
    )
    .unwrap();
    let app = ca
        .issue_client("app", chrono::Utc::now() + chrono::Duration::days(5))
        .unwrap();
    std::fs::write(dir.path().join("app.pem"), app.certificate_pem()).unwrap();
    std::fs::write(dir.path().join("app.key"), app.key_pem()).unwrap();
    let text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("ca_file = \"bad.pem\"", "ca_file = \"ca.pem\"")
        .replace(
            &format!(
                "client_secret_file = \"{}/graph-secret\"",
                dir.path().display()
            ),
            "client_certificate_file = \"app.pem\"\nclient_key_file = \"app.key\"",
        );
    std::fs::write(&config, text_config).unwrap();
    let out = presence_sync(args(&["check"], &config)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("warning: the Graph client certificate expires"),
        "{shown}"
    );
    sim.shutdown().await.unwrap();
}

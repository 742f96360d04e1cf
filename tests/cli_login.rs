//! `presence-sync login` as an admin runs it, against a scripted Entra on
//! loopback: the device code shown, the token stored for the daemon, a
//! wrong account or a declined sign-in refused with their exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

const UPN: &str = "svc-presence@contoso.example";
const CLIENT_ID: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";

/// How the scripted Entra ends the sign-in.
#[derive(Clone, Copy)]
enum Outcome {
    SignedInAs(&'static str),
    Declined,
}

/// Serves the device-code and token endpoints on 127.0.0.1:0; the first
/// poll is pending, the second ends as `outcome` says.
async fn entra(outcome: Outcome) -> (String, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let polls = counter.clone();
        async move {
            let path = request.uri().path().to_owned();
            let reply = |status: u16, body: serde_json::Value| -> Response {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(body),
                )
                    .into_response()
            };
            if path == "/contoso.example/oauth2/v2.0/devicecode" {
                return reply(
                    200,
                    json!({"device_code": "device-1", "user_code": "WXYZ-1234",
                        "verification_uri": "https://microsoft.com/devicelogin",
                        "expires_in": 900, "interval": 0,
                        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code WXYZ-1234 to authenticate."}),
                );
            }
            if path != "/contoso.example/oauth2/v2.0/token" {
                return reply(404, json!({"error": "not_found"}));
            }
            if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                return reply(
                    400,
                    json!({"error": "authorization_pending", "error_codes": [70016]}),
                );
            }
            match outcome {
                Outcome::Declined => reply(
                    400,
                    json!({"error": "authorization_declined", "error_codes": [70000]}),
                ),
                Outcome::SignedInAs(upn) => {
                    let id_token = format!(
                        "{}.{}.",
                        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
                        URL_SAFE_NO_PAD
                            .encode(json!({"preferred_username": upn, "oid": "oid-9"}).to_string())
                    );
                    reply(
                        200,
                        json!({"token_type": "Bearer", "expires_in": 3599,
                            "scope": "Presence.Read.All offline_access",
                            "access_token": "access-1", "refresh_token": "refresh-secret-1",
                            "id_token": id_token}),
                    )
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, polls)
}

fn write_config(dir: &Path, base: &str, enabled: bool) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[graph]
tenant_id = "contoso.example"
client_id = "{CLIENT_ID}"
client_secret_file = "graph-secret"
login_base = "{base}"
graph_base = "{base}"

[api]
token_file = "api-token"

[store]
state_dir = "state"

[mappings.profiles.default]
file = "{mapping}"

[subscriptions]
enabled = {enabled}
accounts = ["{UPN}", "other@contoso.example"]
notification_url = "https://presence.contoso.example/notifications"
lifecycle_url = "https://presence.contoso.example/lifecycle"
"#,
            mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/default.toml"),
        ),
    )
    .unwrap();
    let state = dir.join("state");
    if !state.exists() {
        // The daemon's first start creates the store; login comes after.
        let store = presence_sync::store::SledStore::open(&state).unwrap();
        presence_sync::store::Store::mark_clean_shutdown(&store).unwrap();
    }
    config
}

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

fn login(config: &Path, account: &str) -> Vec<String> {
    vec![
        "login".into(),
        "--config".into(),
        config.display().to_string(),
        "--account".into(),
        account.into(),
    ]
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn token_files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir.join("state/accounts")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_shows_the_code_and_stores_the_token_for_the_daemon() {
    let (base, polls) = entra(Outcome::SignedInAs("SVC-Presence@contoso.example")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base, true);
    let out = presence_sync(login(&config, UPN)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("https://microsoft.com/devicelogin and enter the code WXYZ-1234"),
        "{shown}"
    );
    assert!(shown.contains(&format!("Signed in as {UPN}")), "{shown}");
    // The other account is still to be signed in, and the command says how.
    assert!(
        shown.contains(&format!(
            "presence-sync login --config {} --account other@contoso.example",
            config.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains("refresh-secret-1"), "{shown}");
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    let files = token_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    // The daemon still opens its store beside the tokens.
    let store = presence_sync::store::SledStore::open(&dir.path().join("state")).unwrap();
    presence_sync::store::Store::mark_clean_shutdown(&store).unwrap();
    drop(store);
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let vault = presence_sync::accounts::Vault::new(&dir.path().join("state"));
    let stored = vault.load(UPN).unwrap().unwrap();
    assert_eq!(stored.refresh_token.expose(), "refresh-secret-1");
    assert_eq!(stored.oid.as_deref(), Some("oid-9"));
    assert_eq!(stored.upn, UPN);

    // `permissions` now lists the delegated permissions and the logins.
    let out = presence_sync(vec![
        "permissions".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("Presence.Read.All (delegated)"), "{shown}");
    assert!(shown.contains("offline_access (delegated)"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_signing_in_is_refused_and_nothing_is_stored() {
    let (base, _) = entra(Outcome::SignedInAs("someone-else@contoso.example")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base, true);
    let out = presence_sync(login(&config, UPN)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(
        shown.contains(&format!(
            "signed in as someone-else@contoso.example, not {UPN}"
        )),
        "{shown}"
    );
    assert!(token_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_sign_in_is_refused_and_permissions_stay_application_only() {
    let (base, _) = entra(Outcome::Declined).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base, false);
    let out = presence_sync(login(&config, UPN)).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(shown.contains("declined"), "{shown}");
    assert!(token_files(dir.path()).is_empty());
    // Subscriptions off: no delegated permission is asked for.
    let out = presence_sync(vec![
        "permissions".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains("(delegated)"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_not_configured_or_entra_unreachable_have_their_exit_codes() {
    let (base, polls) = entra(Outcome::SignedInAs(UPN)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &base, true);
    let out = presence_sync(login(&config, "stranger@contoso.example")).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(78), "{shown}");
    assert!(
        shown.contains("stranger@contoso.example is not one of the service accounts"),
        "{shown}"
    );
    assert_eq!(polls.load(Ordering::SeqCst), 0);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = write_config(dir.path(), &gone, true);
    let out = presence_sync(login(&config, UPN)).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
}

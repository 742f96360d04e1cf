//! The service accounts against a scripted Entra on loopback: the vault on
//! disk, the device-code flow, refresh and rotation, every refusal's
//! classification.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::config::Secret;
use crate::graph::TokioClock;
use crate::graph::testing::{Peer, Reply, Seen};

const UPN: &str = "svc-presence@contoso.example";
const TENANT: &str = "contoso.example";
const CLIENT_ID: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";

fn stored(token: &str) -> StoredAccount {
    let now = Utc::now();
    StoredAccount {
        upn: UPN.into(),
        oid: Some("oid-1".into()),
        refresh_token: Secret::new(token),
        signed_in_at: now,
        refreshed_at: now,
    }
}

fn form(seen: &Seen) -> Vec<(String, String)> {
    url_form(&seen.body)
}

fn url_form(body: &[u8]) -> Vec<(String, String)> {
    let url =
        reqwest::Url::parse(&format!("http://form/?{}", String::from_utf8_lossy(body))).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field(seen: &Seen, name: &str) -> Option<String> {
    form(seen)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn id_token(upn: &str) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({"preferred_username": upn, "oid": "oid-1"}).to_string())
    )
}

fn entra_error(error: &str, code: u64) -> Reply {
    Reply::new(
        400,
        json!({"error": error, "error_description": format!("AADSTS{code}: something.\r\nTrace ID: t"),
            "error_codes": [code], "trace_id": "trace-1", "correlation_id": "corr-1"})
        .to_string(),
    )
}

/// A token answer with the `n`-th refresh token.
fn tokens(n: usize) -> Reply {
    Reply::ok(
        json!({"token_type": "Bearer", "scope": "Presence.Read.All offline_access",
            "expires_in": 3599, "access_token": format!("access-{n}"),
            "refresh_token": format!("refresh-{n}"), "id_token": id_token(UPN)})
        .to_string(),
    )
}

fn entra(peer: &Peer) -> Arc<EntraClient> {
    Arc::new(EntraClient::new(
        reqwest::Client::new(),
        AccountEndpoints::new(&peer.base, TENANT, CLIENT_ID, "https://graph.microsoft.com"),
        None,
        Duration::from_secs(5),
    ))
}

fn account(peer: &Peer, vault: &Vault) -> AccountTokens {
    AccountTokens::new(
        UPN,
        login_command(std::path::Path::new("/etc/presence-sync/config.toml"), UPN),
        entra(peer),
        vault.clone(),
        TokioClock::shared(),
    )
}

fn refreshes(peer: &Peer) -> Vec<Seen> {
    peer.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| field(s, "grant_type").as_deref() == Some("refresh_token"))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- vault

#[test]
fn the_vault_round_trips_in_a_private_file_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    assert_eq!(vault.load(UPN).unwrap(), None);
    let first = stored("refresh-1");
    vault.store(&first).unwrap();
    assert_eq!(vault.load(UPN).unwrap(), Some(first.clone()));
    // Read back without case: UPNs are case-insensitive.
    assert_eq!(vault.load(&UPN.to_uppercase()).unwrap(), Some(first));
    let path = vault.path_for(UPN);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(vault.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // A second store replaces the file; no temporary file is left.
    let second = stored("refresh-2");
    vault.store(&second).unwrap();
    assert_eq!(
        vault.load(UPN).unwrap().unwrap().refresh_token.expose(),
        "refresh-2"
    );
    let names: Vec<String> = std::fs::read_dir(vault.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![vault::file_name(UPN)]);
    assert!(vault.remove(UPN).unwrap());
    assert!(!vault.remove(UPN).unwrap());
}

#[test]
fn the_refresh_token_never_shows_in_debug_output() {
    let account = stored("refresh-very-secret");
    let shown = format!("{account:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(shown.contains(UPN));
}

#[test]
fn a_file_of_another_account_or_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.store(&stored("r")).unwrap();
    let other = "other@contoso.example";
    std::fs::copy(vault.path_for(UPN), vault.path_for(other)).unwrap();
    assert!(matches!(
        vault.load(other),
        Err(VaultError::WrongAccount { .. })
    ));
    std::fs::write(vault.path_for(UPN), "not json").unwrap();
    assert!(matches!(
        vault.load(UPN),
        Err(VaultError::Unreadable { .. })
    ));
}

proptest! {
    #[test]
    fn file_names_stay_in_the_directory(upn in "\\PC{0,100}") {
        let name = vault::file_name(&upn);
        prop_assert!(!name.contains('/') && !name.contains('\0'));
        prop_assert!(!name.starts_with('.'));
        prop_assert!(name.len() <= 64 * 4 + 22);
        prop_assert_eq!(name.clone(), vault::file_name(&upn.to_lowercase()));
    }

    #[test]
    fn different_upns_get_different_files(a in "[a-z_.]{1,20}@x\\.com", b in "[a-z_.]{1,20}@x\\.com") {
        prop_assume!(a != b);
        prop_assert_ne!(vault::file_name(&a), vault::file_name(&b));
    }
}

// ---------------------------------------------------------------- device code

fn device_code_answer(base: &str) -> Reply {
    Reply::ok(
        json!({"device_code": "device-1", "user_code": "ABCD-EFGH",
            "verification_uri": format!("{base}/devicelogin"), "expires_in": 900, "interval": 0,
            "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."})
        .to_string(),
    )
}

fn fast() -> PollTiming {
    PollTiming {
        slow_down: Duration::from_millis(5),
        min_interval: Duration::ZERO,
        max_transient: 3,
    }
}

/// Polls answered from `script` in turn, then success.
async fn device_peer(script: Vec<Reply>) -> Peer {
    let script = Arc::new(script);
    let base = Arc::new(std::sync::Mutex::new(String::new()));
    let b = base.clone();
    let peer = Peer::start(move |seen, earlier| {
        if seen.path.ends_with("/devicecode") {
            return device_code_answer(&b.lock().unwrap());
        }
        let polls = earlier
            .iter()
            .filter(|s| s.path.ends_with("/token"))
            .count();
        script.get(polls).cloned().unwrap_or_else(|| tokens(1))
    })
    .await;
    *base.lock().unwrap() = peer.base.clone();
    peer
}

#[tokio::test]
async fn the_device_code_flow_polls_until_the_user_signs_in() {
    let peer = device_peer(vec![
        entra_error("authorization_pending", 70016),
        entra_error("slow_down", 70016),
        entra_error("authorization_pending", 70016),
    ])
    .await;
    let entra = entra(&peer);
    let code = device_code::request_code(&entra).await.unwrap();
    assert_eq!(code.user_code, "ABCD-EFGH");
    assert!(code.message.contains("ABCD-EFGH"));
    let signed_in = device_code::wait_for_sign_in(&entra, &code, fast())
        .await
        .unwrap();
    assert_eq!(signed_in.upn.as_deref(), Some(UPN));
    assert_eq!(signed_in.oid.as_deref(), Some("oid-1"));
    assert_eq!(signed_in.refresh_token.expose(), "refresh-1");
    let seen = peer.seen.lock().unwrap().clone();
    let request = &seen[0];
    assert_eq!(request.path, format!("/{TENANT}/oauth2/v2.0/devicecode"));
    assert_eq!(field(request, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        field(request, "scope").as_deref(),
        Some("https://graph.microsoft.com/Presence.Read.All offline_access")
    );
    let polls: Vec<&Seen> = seen.iter().filter(|s| s.path.ends_with("/token")).collect();
    assert_eq!(polls.len(), 4);
    for poll in polls {
        assert_eq!(
            field(poll, "grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:device_code")
        );
        assert_eq!(field(poll, "device_code").as_deref(), Some("device-1"));
        assert_eq!(field(poll, "client_id").as_deref(), Some(CLIENT_ID));
    }
}

#[tokio::test]
async fn a_declined_or_expired_sign_in_ends_the_flow() {
    for (reply, declined) in [
        (entra_error("authorization_declined", 70000), true),
        (entra_error("expired_token", 70020), false),
    ] {
        let peer = device_peer(vec![entra_error("authorization_pending", 70016), reply]).await;
        let entra = entra(&peer);
        let code = device_code::request_code(&entra).await.unwrap();
        let error = device_code::wait_for_sign_in(&entra, &code, fast())
            .await
            .err()
            .unwrap();
        if declined {
            assert!(matches!(error, LoginError::Declined), "{error}");
        } else {
            assert!(matches!(error, LoginError::Expired), "{error}");
        }
    }
}

#[tokio::test]
async fn a_sign_in_without_a_refresh_token_is_refused() {
    let peer = device_peer(vec![Reply::ok(
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "a",
            "id_token": id_token(UPN)})
        .to_string(),
    )])
    .await;
    let entra = entra(&peer);
    let code = device_code::request_code(&entra).await.unwrap();
    let error = device_code::wait_for_sign_in(&entra, &code, fast())
        .await
        .err()
        .unwrap();
    assert!(matches!(error, LoginError::NoRefreshToken), "{error}");
}

// ---------------------------------------------------------------- refresh

/// Answers every refresh with the next refresh token.
async fn rotating_peer() -> Peer {
    Peer::start(|_, earlier| tokens(earlier.len() + 1)).await
}

#[tokio::test]
async fn each_refresh_stores_the_newest_refresh_token() {
    let peer = rotating_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.store(&stored("refresh-0")).unwrap();
    let tokens = account(&peer, &vault);
    assert!(tokens.status().is_ok());
    let first = tokens.token().await.unwrap();
    assert_eq!(first.expose(), "access-1");
    assert_eq!(
        vault.load(UPN).unwrap().unwrap().refresh_token.expose(),
        "refresh-1"
    );
    // Cached: no second request.
    assert_eq!(tokens.token().await.unwrap().expose(), "access-1");
    assert_eq!(refreshes(&peer).len(), 1);
    // Graph refused it: the next refresh uses the rotated refresh token.
    tokens.invalidate(&first);
    assert_eq!(tokens.token().await.unwrap().expose(), "access-2");
    tokens.refresh().await.unwrap();
    let sent: Vec<String> = refreshes(&peer)
        .iter()
        .map(|s| field(s, "refresh_token").unwrap())
        .collect();
    assert_eq!(sent, vec!["refresh-0", "refresh-1", "refresh-2"]);
    let scope = field(&refreshes(&peer)[0], "scope").unwrap();
    assert_eq!(
        scope,
        "https://graph.microsoft.com/Presence.Read.All offline_access"
    );
    assert_eq!(
        vault.load(UPN).unwrap().unwrap().refresh_token.expose(),
        "refresh-3"
    );
    let status = tokens.status();
    assert!(status.is_ok());
    assert!(status.token_expires_at.is_some_and(|at| at > Utc::now()));
    assert!(!tokens.keep_alive_due(Utc::now()));
    assert!(tokens.keep_alive_due(Utc::now() + chrono::TimeDelta::hours(13)));
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let peer =
        Peer::start(|_, earlier| tokens(earlier.len() + 1).delay(Duration::from_millis(50))).await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.store(&stored("refresh-0")).unwrap();
    let tokens = Arc::new(account(&peer, &vault));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await.unwrap().expose().to_owned() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "access-1");
    }
    assert_eq!(refreshes(&peer).len(), 1);
}

#[tokio::test]
async fn an_account_never_signed_in_says_how_to_sign_it_in() {
    let peer = rotating_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = account(&peer, &Vault::new(dir.path()));
    let AccountState::Failed(error) = tokens.status().state else {
        panic!("expected a failed status");
    };
    assert_eq!(error.kind(), "not_signed_in");
    let error = tokens.token().await.err().unwrap();
    assert_eq!(error.kind(), "not_signed_in");
    assert!(error.to_string().contains(&format!(
        "presence-sync login --config /etc/presence-sync/config.toml --account {UPN}"
    )));
    assert!(peer.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn every_refusal_is_classified_with_the_fix() {
    let cases = [
        ("invalid_grant", 50173, "revoked"),
        ("invalid_grant", 700082, "inactive"),
        ("interaction_required", 50076, "mfa_required"),
        ("interaction_required", 53003, "conditional_access"),
        ("invalid_grant", 65001, "consent_missing"),
        ("invalid_grant", 9002313, "rejected"),
    ];
    for (error, code, kind) in cases {
        let peer = Peer::start(move |_, _| entra_error(error, code)).await;
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path());
        vault.store(&stored("refresh-0")).unwrap();
        let tokens = account(&peer, &vault);
        let mut watch = tokens.watch();
        let failed = tokens.token().await.err().unwrap();
        assert_eq!(failed.kind(), kind, "AADSTS{code}");
        let text = failed.to_string();
        assert!(text.contains(UPN), "{text}");
        assert!(
            text.contains(&format!(
                "`presence-sync login --config /etc/presence-sync/config.toml --account {UPN}`"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("AADSTS{code}")), "{text}");
        assert!(failed.summary().contains(&format!("AADSTS{code}")));
        assert!(!failed.summary().contains("trace-1"));
        assert!(watch.has_changed().unwrap());
        assert_eq!(
            watch.borrow_and_update().state,
            AccountState::Failed(failed.clone())
        );
        // Not asked again until the token file changes.
        assert!(tokens.token().await.is_err());
        assert_eq!(refreshes(&peer).len(), 1, "AADSTS{code}");
    }
}

#[tokio::test]
async fn a_new_sign_in_recovers_a_revoked_account() {
    let revoked = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = revoked.clone();
    let peer = Peer::start(move |seen, _| {
        if r.load(std::sync::atomic::Ordering::SeqCst)
            || field(seen, "refresh_token").as_deref() == Some("refresh-0")
        {
            entra_error("invalid_grant", 50173)
        } else {
            tokens(7)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.store(&stored("refresh-0")).unwrap();
    let tokens = account(&peer, &vault);
    let mut watch = tokens.watch();
    assert_eq!(tokens.token().await.err().unwrap().kind(), "revoked");
    watch.borrow_and_update();
    // `presence-sync login` writes a new token.
    revoked.store(false, std::sync::atomic::Ordering::SeqCst);
    vault.store(&stored("refresh-new")).unwrap();
    assert_eq!(tokens.token().await.unwrap().expose(), "access-7");
    assert!(watch.has_changed().unwrap());
    assert!(watch.borrow_and_update().is_ok());
    assert_eq!(
        vault.load(UPN).unwrap().unwrap().refresh_token.expose(),
        "refresh-7"
    );
}

#[tokio::test]
async fn entra_unreachable_is_retried_later_not_an_admin_matter() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.store(&stored("refresh-0")).unwrap();
    let entra = Arc::new(EntraClient::new(
        reqwest::Client::new(),
        AccountEndpoints::new(&base, TENANT, CLIENT_ID, "https://graph.microsoft.com"),
        None,
        Duration::from_secs(5),
    ));
    let tokens = AccountTokens::new(
        UPN,
        "login".into(),
        entra,
        vault.clone(),
        TokioClock::shared(),
    );
    let error = tokens.token().await.err().unwrap();
    assert_eq!(error.kind(), "unreachable");
    assert!(!error.needs_admin());
    assert!(matches!(tokens.status().state, AccountState::Failed(_)));
    // The stored token is kept.
    assert_eq!(
        vault.load(UPN).unwrap().unwrap().refresh_token.expose(),
        "refresh-0"
    );
}

#[tokio::test]
async fn a_confidential_app_adds_its_secret_when_entra_asks() {
    let peer = Peer::start(|seen, _| {
        if field(seen, "client_secret").as_deref() == Some("app-secret") {
            tokens(1)
        } else {
            entra_error("invalid_client", 7000218)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault.store(&stored("refresh-0")).unwrap();
    let entra = Arc::new(EntraClient::new(
        reqwest::Client::new(),
        AccountEndpoints::new(&peer.base, TENANT, CLIENT_ID, "https://graph.microsoft.com"),
        Some(Arc::new(crate::graph::Credential::Secret(Secret::new(
            "app-secret",
        )))),
        Duration::from_secs(5),
    ));
    let tokens = AccountTokens::new(UPN, "login".into(), entra, vault, TokioClock::shared());
    assert_eq!(tokens.token().await.unwrap().expose(), "access-1");
    assert_eq!(peer.seen.lock().unwrap().len(), 2);
}

proptest! {
    #[test]
    fn reading_id_tokens_never_panics(text in "\\PC{0,200}") {
        let _ = entra::id_claims(&text);
    }
}

// ---------------------------------------------------------------- config

fn config_with_accounts(state_dir: &std::path::Path, base: &str) -> crate::config::Config {
    let text = format!(
        r#"
[graph]
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret_file = "secret"
login_base = "{base}"
graph_base = "{base}"

[store]
state_dir = "{}"

[mappings.profiles.default]
file = "default.toml"

[subscriptions]
enabled = true
accounts = ["{UPN}", "second@contoso.example"]
notification_url = "https://presence.contoso.example/n"
lifecycle_url = "https://presence.contoso.example/l"
"#,
        state_dir.display()
    );
    crate::config::Config::parse(
        std::path::Path::new("/etc/presence-sync/config.toml"),
        &text,
        &crate::config::Environment::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn check_and_the_daemon_see_each_configured_account() {
    let peer = rotating_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_accounts(dir.path(), &peer.base);
    let (notes, warnings) = login::check_accounts(&config);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains(&format!(
        "service account {UPN} is not signed in: run `presence-sync login --config /etc/presence-sync/config.toml --account {UPN}`"
    )));
    assert!(notes[0].starts_with("subscriptions: on, 2 service account(s)"));
    Vault::new(dir.path()).store(&stored("refresh-0")).unwrap();
    let (notes, warnings) = login::check_accounts(&config);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with(&format!("service account {UPN}: signed in")))
    );

    let accounts = accounts_for(&config, TokioClock::shared(), super::token::FAILED_RETRY).unwrap();
    assert_eq!(accounts.len(), 2);
    assert!(accounts[0].status().is_ok());
    assert!(!accounts[1].status().is_ok());
    assert_eq!(accounts[0].token().await.unwrap().expose(), "access-1");
    let error = accounts[1].token().await.err().unwrap();
    assert!(
        error
            .to_string()
            .contains("--account second@contoso.example")
    );
}

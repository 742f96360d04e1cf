//! The simulator's delegated sign-in, presence subscriptions and change
//! notifications over HTTP, as the daemon meets them: a device code
//! approved by a user, subscriptions with every rule Graph enforces, and a
//! receiver on loopback that gets the handshake and the notifications.

mod common;

use std::time::Duration;

use common::sim_kit::{Kit, options};
use presence_sync::sim::SimOptions;
use presence_sync::sim::delegated::{AccountAction, AccountFault};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCOPE: &str = "https://graph.microsoft.com/Presence.Read.All offline_access";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Options with one service account, `svc-presence@contoso.test`.
async fn start(options: SimOptions) -> (Kit, String) {
    let kit = Kit::start(options).await;
    let response = kit
        .http
        .post(kit.url("/_sim/users"))
        .json(&json!({"userPrincipalName": "svc-presence@contoso.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    (kit, "svc-presence@contoso.test".to_string())
}

async fn device_code(kit: &Kit) -> Value {
    let response = kit
        .http
        .post(kit.sim.devicecode_url())
        .form(&[("client_id", kit.sim.client_id.as_str()), ("scope", SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn poll(kit: &Kit, device_code: &str) -> (StatusCode, Value) {
    let response = kit
        .token_request(
            &kit.sim.tenant_id,
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", &kit.sim.client_id),
                ("device_code", device_code),
            ],
        )
        .await;
    (response.status(), response.json().await.unwrap())
}

async fn refresh(kit: &Kit, token: &str) -> (StatusCode, Value) {
    let response = kit
        .token_request(
            &kit.sim.tenant_id,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &kit.sim.client_id),
                ("refresh_token", token),
                ("scope", SCOPE),
            ],
        )
        .await;
    (response.status(), response.json().await.unwrap())
}

fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Signs `upn` in through the device-code flow; returns the token body.
async fn sign_in(kit: &Kit, upn: &str) -> Value {
    let code = device_code(kit).await;
    kit.sim
        .approve_device_code(code["user_code"].as_str().unwrap(), upn)
        .unwrap();
    let (status, body) = poll(kit, code["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn the_device_code_flow_signs_a_service_account_in() {
    let (kit, upn) = start(options()).await;
    let code = device_code(&kit).await;
    assert_eq!(code["interval"], 5);
    assert_eq!(code["expires_in"], 900);
    let user_code = code["user_code"].as_str().unwrap();
    assert!(code["message"].as_str().unwrap().contains(user_code));
    let device = code["device_code"].as_str().unwrap();

    let (status, body) = poll(&kit, device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending");
    assert_eq!(body["error_codes"], json!([70016]));
    // The manual clock has not moved: polling again is too fast.
    assert_eq!(poll(&kit, device).await.1["error"], "slow_down");

    let refused = kit
        .http
        .post(kit.url("/_sim/devicecode/approve"))
        .json(&json!({"user_code": user_code, "upn": "nobody@contoso.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let approved = kit
        .http
        .post(kit.url("/_sim/devicecode/approve"))
        .json(&json!({"user_code": user_code, "upn": upn}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);

    let (status, body) = poll(&kit, device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["scope"]
            .as_str()
            .unwrap()
            .contains("Presence.Read.All")
    );
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["preferred_username"], upn);
    let access = claims(body["access_token"].as_str().unwrap());
    assert_eq!(access["upn"], upn);
    assert_eq!(access["oid"], id["oid"]);
    assert_eq!(access["scp"], "Presence.Read.All offline_access");
    assert!(access.get("roles").is_none());
    // A redeemed code cannot be redeemed again.
    assert_eq!(poll(&kit, device).await.1["error"], "invalid_grant");

    // Each refresh brings a new refresh token; the older stays valid.
    let first = body["refresh_token"].as_str().unwrap().to_string();
    let (status, again) = refresh(&kit, &first).await;
    assert_eq!(status, StatusCode::OK);
    let second = again["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(refresh(&kit, &first).await.0, StatusCode::OK);
    kit.stop().await;
}

#[tokio::test]
async fn a_declined_or_expired_code_is_told_apart() {
    let (kit, _) = start(options()).await;
    let code = device_code(&kit).await;
    let response = kit
        .http
        .post(kit.url("/_sim/devicecode/decline"))
        .json(&json!({"user_code": code["user_code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, body) = poll(&kit, code["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_declined");

    let code = device_code(&kit).await;
    kit.sim.advance(Duration::from_secs(901));
    let (_, body) = poll(&kit, code["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "expired_token");
    kit.stop().await;
}

#[tokio::test]
async fn auto_approve_signs_in_as_the_service_account() {
    let (kit, upn) = start(SimOptions {
        auto_approve: true,
        ..options()
    })
    .await;
    let code = device_code(&kit).await;
    let device = code["device_code"].as_str().unwrap();
    assert_eq!(poll(&kit, device).await.1["error"], "authorization_pending");
    kit.sim.advance(Duration::from_secs(6));
    let (status, body) = poll(&kit, device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims(body["id_token"].as_str().unwrap())["preferred_username"],
        upn
    );
    kit.stop().await;
}

#[tokio::test]
async fn account_faults_refuse_refreshes_with_their_aadsts_codes() {
    let (kit, upn) = start(options()).await;
    let tokens = sign_in(&kit, &upn).await;
    let token = tokens["refresh_token"].as_str().unwrap();
    let code_of = |body: &Value| (body["error"].clone(), body["error_codes"][0].clone());

    let response = kit
        .http
        .post(kit.url(&format!("/_sim/accounts/{upn}/mfa")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = refresh(&kit, token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        code_of(&body),
        (json!("interaction_required"), json!(50076))
    );

    kit.sim
        .account(&upn, AccountAction::Fault(AccountFault::ConditionalAccess))
        .unwrap();
    assert_eq!(
        code_of(&refresh(&kit, token).await.1),
        (json!("interaction_required"), json!(53003))
    );
    kit.sim.account(&upn, AccountAction::Restore).unwrap();
    assert_eq!(refresh(&kit, token).await.0, StatusCode::OK);

    kit.sim.account(&upn, AccountAction::Revoke).unwrap();
    assert_eq!(
        code_of(&refresh(&kit, token).await.1),
        (json!("invalid_grant"), json!(50173))
    );
    // A new sign-in works again; its token idles out after 90 days.
    let tokens = sign_in(&kit, &upn).await;
    kit.sim.advance(Duration::from_secs(90 * 24 * 3600));
    assert_eq!(
        code_of(
            &refresh(&kit, tokens["refresh_token"].as_str().unwrap())
                .await
                .1
        ),
        (json!("invalid_grant"), json!(700082))
    );
    assert!(
        kit.sim
            .account("nobody@contoso.test", AccountAction::Revoke)
            .is_none()
    );
    kit.stop().await;
}

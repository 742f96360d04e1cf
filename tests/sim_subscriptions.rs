//! The simulator's delegated sign-in, presence subscriptions and change
//! notifications over HTTP, as the daemon meets them: a device code
//! approved by a user, subscriptions with every rule Graph enforces, and a
//! receiver on loopback that gets the handshake and the notifications.

mod common;

use std::time::Duration;

use common::certificate;
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

// ---- Subscriptions and notifications ------------------------------------

mod receiver {
    //! A subscriber's endpoints on loopback: `/n` for changes, `/l` for
    //! lifecycle events, `/bad` that fails handshakes. Handshakes echo the
    //! token; every other POST's JSON is passed on.

    use std::collections::HashMap;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use serde_json::Value;
    use tokio::sync::mpsc;

    pub struct Receiver {
        pub base: String,
        pub changes: mpsc::UnboundedReceiver<Value>,
        pub lifecycle: mpsc::UnboundedReceiver<Value>,
        pub handshakes: mpsc::UnboundedReceiver<String>,
    }

    #[derive(Clone)]
    struct Sinks {
        changes: mpsc::UnboundedSender<Value>,
        lifecycle: mpsc::UnboundedSender<Value>,
        handshakes: mpsc::UnboundedSender<String>,
    }

    fn answer(
        sinks: &Sinks,
        sink: &mpsc::UnboundedSender<Value>,
        query: HashMap<String, String>,
        body: Bytes,
    ) -> axum::response::Response {
        if let Some(token) = query.get("validationToken") {
            let _ = sinks.handshakes.send(token.clone());
            return (
                StatusCode::OK,
                [("content-type", "text/plain")],
                token.clone(),
            )
                .into_response();
        }
        let _ = sink.send(serde_json::from_slice(&body).unwrap());
        StatusCode::ACCEPTED.into_response()
    }

    pub async fn start() -> Receiver {
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (lifecycle, lifecycle_rx) = mpsc::unbounded_channel();
        let (handshakes, handshakes_rx) = mpsc::unbounded_channel();
        let sinks = Sinks {
            changes,
            lifecycle,
            handshakes,
        };
        let app = Router::new()
            .route(
                "/n",
                post(
                    |State(s): State<Sinks>,
                     Query(q): Query<HashMap<String, String>>,
                     body: Bytes| async move { answer(&s, &s.changes, q, body) },
                ),
            )
            .route(
                "/l",
                post(
                    |State(s): State<Sinks>,
                     Query(q): Query<HashMap<String, String>>,
                     body: Bytes| async move { answer(&s, &s.lifecycle, q, body) },
                ),
            )
            .route("/bad", post(|| async { (StatusCode::OK, "not the token") }))
            .with_state(sinks);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            base,
            changes: changes_rx,
            lifecycle: lifecycle_rx,
            handshakes: handshakes_rx,
        }
    }
}

const WAIT: Duration = Duration::from_secs(20);

async fn next<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a delivery arrives")
        .expect("the receiver runs")
}

fn fast() -> SimOptions {
    SimOptions {
        notification_delay: Duration::from_millis(20),
        ..options()
    }
}

fn expiry(kit: &Kit, minutes: u64) -> String {
    (kit.sim.clock().now() + Duration::from_secs(minutes * 60))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn resource(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!(
        "/communications/presences?$filter=id in ({})",
        list.join(",")
    )
}

async fn subscribe(kit: &Kit, token: &str, body: &Value) -> (StatusCode, Value) {
    let response = kit
        .http
        .post(kit.url("/v1.0/subscriptions"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn set_client(kit: &Kit, id: &str, availability: &str, activity: &str) {
    let response = kit
        .http
        .post(kit.url(&format!("/_sim/users/{id}/presence")))
        .json(&json!({"availability": availability, "activity": activity}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn basic(kit: &Kit, rx: &receiver::Receiver, ids: &[String]) -> Value {
    json!({
        "changeType": "updated",
        "notificationUrl": format!("{}/n", rx.base),
        "lifecycleNotificationUrl": format!("{}/l", rx.base),
        "resource": resource(ids),
        "expirationDateTime": expiry(kit, 55),
        "clientState": "the-client-state",
    })
}

/// A kit with a signed-in service account; returns its access token.
async fn signed_in(options: SimOptions) -> (Kit, String, String) {
    let (kit, upn) = start(options).await;
    let tokens = sign_in(&kit, &upn).await;
    let token = tokens["access_token"].as_str().unwrap().to_string();
    (kit, upn, token)
}

#[tokio::test]
async fn every_subscription_rule_refuses_with_graphs_answer() {
    let (kit, _, token) = signed_in(fast()).await;
    let rx = receiver::start().await;
    let ids = kit.sim.user_ids();
    let good = basic(&kit, &rx, &ids[..2]);
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    // An app-only token may not subscribe to presence.
    let (status, body) = subscribe(&kit, &kit.token, &good).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let many: Vec<String> = (0..651).map(|i| format!("id-{i}")).collect();
    let cases = [
        (
            with("resource", json!(resource(&many))),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("resource", json!(resource(&["nobody".to_string()]))),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("expirationDateTime", json!(expiry(&kit, 61 + 1))),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("expirationDateTime", json!(expiry(&kit, 0))),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("includeResourceData", json!(true)),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("changeType", json!("created")),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("notificationUrl", json!(format!("{}/bad", rx.base))),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in cases {
        let (status, answer) = subscribe(&kit, &token, &body).await;
        assert_eq!(status, want, "{body} → {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (_, failed) = subscribe(
        &kit,
        &token,
        &with("notificationUrl", json!(format!("{}/bad", rx.base))),
    )
    .await;
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Subscription validation request failed")
    );

    let (status, created) = subscribe(&kit, &token, &good).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // One presence subscription per user per app.
    assert_eq!(subscribe(&kit, &token, &good).await.0, StatusCode::CONFLICT);

    let id = created["id"].as_str().unwrap();
    let missing = kit
        .http
        .delete(kit.url("/v1.0/subscriptions/no-such-id"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let renewed = kit
        .http
        .patch(kit.url(&format!("/v1.0/subscriptions/{id}")))
        .bearer_auth(&token)
        .json(&json!({"expirationDateTime": expiry(&kit, 90)}))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), StatusCode::BAD_REQUEST);
    let renewed = kit
        .http
        .patch(kit.url(&format!("/v1.0/subscriptions/{id}")))
        .bearer_auth(&token)
        .json(&json!({"expirationDateTime": expiry(&kit, 60)}))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), StatusCode::OK);
    let reauthorized = kit
        .http
        .post(kit.url(&format!("/v1.0/subscriptions/{id}/reauthorize")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(reauthorized.status().is_success());
    let deleted = kit
        .http
        .delete(kit.url(&format!("/v1.0/subscriptions/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(kit.sim.subscriptions().is_empty());
    kit.stop().await;
}

#[tokio::test]
async fn a_presence_change_reaches_the_receiver_after_the_handshakes() {
    let (kit, _, token) = signed_in(fast()).await;
    let mut rx = receiver::start().await;
    let ids = kit.sim.user_ids();
    let (status, created) = subscribe(&kit, &token, &basic(&kit, &rx, &ids[..3])).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["creatorId"].as_str().unwrap().len(), 36);
    if let Some(text) = presence_sync::shared_fixtures::shared_text(
        "graph/examples/subscription-post-subscriptions__create_subscription_from_subscriptions__response.json",
    ) {
        let example: Value = serde_json::from_str(&text).unwrap();
        for key in example.as_object().unwrap().keys() {
            assert!(created.get(key).is_some(), "the subscription has {key}");
        }
    }
    // Both URLs were validated, with a token that needed URL decoding.
    for _ in 0..2 {
        assert!(next(&mut rx.handshakes).await.starts_with("Validation: "));
    }
    let listed = kit
        .http
        .get(kit.url("/v1.0/subscriptions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["value"][0]["id"], created["id"]);

    set_client(&kit, &ids[1], "Busy", "InACall").await;
    let batch = next(&mut rx.changes).await;
    let item = &batch["value"][0];
    assert_eq!(item["subscriptionId"], created["id"]);
    assert_eq!(item["clientState"], "the-client-state");
    assert_eq!(item["tenantId"], kit.sim.tenant_id.as_str());
    assert_eq!(
        item["resource"],
        format!("communications/presences/{}", ids[1])
    );
    assert_eq!(item["resourceData"]["id"], ids[1].as_str());
    assert!(item.get("encryptedContent").is_none());
    assert!(batch.get("validationTokens").is_none());
    if let Some(text) = presence_sync::shared_fixtures::shared_text(
        "graph/examples/changenotifications-for-presence__basic-notification__normalized.json",
    ) {
        let example: Value = serde_json::from_str(&text).unwrap();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(item), keys(&example["value"][0]));
        assert_eq!(
            keys(&item["resourceData"]),
            keys(&example["value"][0]["resourceData"])
        );
    }
    let stats: Value = kit
        .http
        .get(kit.url("/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["notifications"]["handshakes"], 2);
    assert_eq!(stats["subscriptions"]["live"], 1);

    // A fade (a change with no write) is noticed too, on the manual clock.
    kit.sim.advance(Duration::from_secs(6 * 60));
    set_client(&kit, &ids[0], "Available", "Available").await;
    let batch = next(&mut rx.changes).await;
    assert_eq!(batch["value"][0]["resourceData"]["id"], ids[0].as_str());
    kit.stop().await;
}

#[tokio::test]
async fn a_rich_notification_decrypts_and_its_token_verifies_against_the_jwks() {
    use aws_lc_rs::cipher::{
        AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey,
    };
    use aws_lc_rs::iv::FixedLength;
    use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    let (kit, _, token) = signed_in(fast()).await;
    let mut rx = receiver::start().await;
    let (key, certificate) = certificate::make();
    let ids = kit.sim.user_ids();
    let mut body = basic(&kit, &rx, &ids[..1]);
    body["includeResourceData"] = json!(true);
    body["encryptionCertificate"] = json!(STANDARD.encode(&certificate));
    body["encryptionCertificateId"] = json!("receiver-cert-1");
    let (status, created) = subscribe(&kit, &token, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    set_client(&kit, &ids[0], "DoNotDisturb", "Presenting").await;
    let batch = next(&mut rx.changes).await;
    let content = &batch["value"][0]["encryptedContent"];
    assert_eq!(content["encryptionCertificateId"], "receiver-cert-1");
    let sha1 =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &certificate);
    let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(content["encryptionCertificateThumbprint"], hex.as_str());

    // The key: RSA-OAEP with SHA-1 under the certificate's key.
    let wrapped = STANDARD
        .decode(content["dataKey"].as_str().unwrap())
        .unwrap();
    let oaep = OaepPrivateDecryptingKey::new(key).unwrap();
    let mut out = vec![0u8; oaep.min_output_size()];
    let symmetric = oaep
        .decrypt(&OAEP_SHA1_MGF1SHA1, &wrapped, &mut out, None)
        .unwrap()
        .to_vec();
    assert_eq!(symmetric.len(), 32);
    // The signature: HMAC-SHA256 of the encrypted bytes.
    let data = STANDARD.decode(content["data"].as_str().unwrap()).unwrap();
    let signature = STANDARD
        .decode(content["dataSignature"].as_str().unwrap())
        .unwrap();
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &symmetric);
    aws_lc_rs::hmac::verify(&hmac_key, &data, &signature).unwrap();
    // The data: AES-256-CBC, IV the key's first 16 bytes.
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&symmetric[..16]);
    let cipher =
        PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &symmetric).unwrap())
            .unwrap();
    let mut buffer = data.clone();
    let plain = cipher
        .decrypt(&mut buffer, DecryptionContext::Iv128(FixedLength::from(iv)))
        .unwrap();
    let presence: Value = serde_json::from_slice(plain).unwrap();
    assert_eq!(presence["id"], ids[0].as_str());
    assert_eq!(presence["availability"], "DoNotDisturb");
    assert_eq!(presence["activity"], "Presenting");
    assert_eq!(presence["@odata.type"], "#microsoft.graph.presence");
    if let Some(text) = presence_sync::shared_fixtures::shared_text(
        "graph/examples/changenotifications-for-presence__decrypted-resource-data.json",
    ) {
        let example: Value = serde_json::from_str(&text).unwrap();
        for key in example.as_object().unwrap().keys() {
            assert!(presence.get(key).is_some(), "decrypted data has {key}");
        }
    }

    // The validation token: RS256 by the JWKS key its header names.
    let jwt = batch["validationTokens"][0].as_str().unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims = claims(jwt);
    assert_eq!(claims["aud"], kit.sim.client_id.as_str());
    assert_eq!(claims["appid"], "0bf30f3b-4a52-48df-9a82-234910c4a086");
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", kit.sim.tenant_id)
    );
    let jwks: Value = kit
        .http
        .get(kit.sim.jwks_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_tenant: Value = kit
        .http
        .get(kit.url(&format!("/{}/discovery/v2.0/keys", kit.sim.tenant_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_tenant, jwks);
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's key is published");
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("the signature verifies");
    kit.stop().await;
}

#[tokio::test]
async fn lifecycle_events_on_demand_and_when_the_account_is_revoked() {
    use presence_sync::sim::notify::LifecycleEvent;
    let (kit, upn, token) = signed_in(fast()).await;
    let mut rx = receiver::start().await;
    let ids = kit.sim.user_ids();
    let (_, created) = subscribe(&kit, &token, &basic(&kit, &rx, &ids[..1])).await;
    let id = created["id"].as_str().unwrap();
    let response = kit
        .http
        .post(kit.url(&format!("/_sim/subscriptions/{id}/lifecycle")))
        .json(&json!({"event": "reauthorizationRequired"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = next(&mut rx.lifecycle).await;
    assert_eq!(
        event["value"][0]["lifecycleEvent"],
        "reauthorizationRequired"
    );
    assert_eq!(event["value"][0]["subscriptionId"], id);
    assert_eq!(event["value"][0]["clientState"], "the-client-state");
    assert_eq!(
        kit.sim.trigger_lifecycle(id, LifecycleEvent::Missed),
        Some(true)
    );
    assert_eq!(
        next(&mut rx.lifecycle).await["value"][0]["lifecycleEvent"],
        "missed"
    );

    let removed = kit
        .http
        .post(kit.url(&format!("/_sim/accounts/{upn}/revoke")))
        .send()
        .await
        .unwrap();
    let removed: Value = removed.json().await.unwrap();
    assert_eq!(removed["subscriptions_removed"], 1);
    let event = next(&mut rx.lifecycle).await;
    assert_eq!(event["value"][0]["lifecycleEvent"], "subscriptionRemoved");
    assert!(kit.sim.subscriptions().is_empty());
    kit.stop().await;
}

#[tokio::test]
async fn dropped_and_duplicated_notifications_follow_the_faults() {
    use presence_sync::sim::notify::NotificationFaults;
    let (kit, _, token) = signed_in(fast()).await;
    let mut rx = receiver::start().await;
    let ids = kit.sim.user_ids();
    let (status, _) = subscribe(&kit, &token, &basic(&kit, &rx, &ids[..2])).await;
    assert_eq!(status, StatusCode::CREATED);

    let response = kit
        .http
        .post(kit.url("/_sim/notifications"))
        .json(&json!({"drop_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    set_client(&kit, &ids[0], "Busy", "InACall").await;
    while kit.sim.notification_stats().dropped == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kit.sim.set_notification_faults(NotificationFaults {
        duplicate_rate: 1.0,
        ..NotificationFaults::with_delay(Duration::from_millis(20))
    });
    set_client(&kit, &ids[1], "Away", "Away").await;
    // The dropped change never comes; the duplicated one comes twice.
    let mut items = Vec::new();
    while items.len() < 2 {
        let batch = next(&mut rx.changes).await;
        items.extend(batch["value"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|i| i["resourceData"]["id"] == ids[1].as_str())
    );
    let stats = kit.sim.notification_stats();
    assert_eq!((stats.dropped, stats.duplicated), (1, 1));
    let refused = kit
        .http
        .post(kit.url("/_sim/notifications"))
        .json(&json!({"drop": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    kit.stop().await;
}

#[tokio::test]
async fn an_expired_subscription_is_gone_and_may_be_made_again() {
    let (kit, _, token) = signed_in(fast()).await;
    let rx = receiver::start().await;
    let ids = kit.sim.user_ids();
    let body = basic(&kit, &rx, &ids[..1]);
    assert_eq!(subscribe(&kit, &token, &body).await.0, StatusCode::CREATED);
    kit.sim.advance(Duration::from_secs(56 * 60));
    assert!(kit.sim.subscriptions().is_empty());
    let listed: Value = kit
        .http
        .get(kit.url("/v1.0/subscriptions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["value"], json!([]));
    // The one-per-user rule no longer sees it.
    let body = basic(&kit, &rx, &ids[..1]);
    let (status, created) = subscribe(&kit, &token, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    kit.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_and_a_slow_reply_counted() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::extract::{Query, State};
    use axum::response::IntoResponse;

    // Handshakes pass; the first delivery fails, the second is slow.
    let posts = Arc::new(AtomicU32::new(0));
    let app =
        axum::Router::new()
            .route(
                "/n",
                axum::routing::post(
                    |State(posts): State<Arc<AtomicU32>>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        if let Some(token) = q.get("validationToken") {
                            return (StatusCode::OK, token.clone()).into_response();
                        }
                        if posts.fetch_add(1, Ordering::SeqCst) == 0 {
                            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                        }
                        tokio::time::sleep(Duration::from_millis(3100)).await;
                        StatusCode::ACCEPTED.into_response()
                    },
                ),
            )
            .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (kit, _, token) = signed_in(fast()).await;
    let ids = kit.sim.user_ids();
    let body = json!({
        "changeType": "updated",
        "notificationUrl": format!("{base}/n"),
        "resource": resource(&ids[..1]),
        "expirationDateTime": expiry(&kit, 30),
        "clientState": "s",
    });
    let (status, created) = subscribe(&kit, &token, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    set_client(&kit, &ids[0], "Busy", "InACall").await;
    tokio::time::timeout(WAIT, async {
        while kit.sim.notification_stats().delivered == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("delivered on a retry");
    let stats = kit.sim.notification_stats();
    assert_eq!(posts.load(Ordering::SeqCst), 2);
    assert_eq!((stats.retries, stats.slow, stats.failed), (1, 1, 0));
    kit.stop().await;
}

#[tokio::test]
async fn the_write_quota_refuses_the_thousand_and_first_write_in_twenty_seconds() {
    use futures_util::StreamExt;
    let (kit, _, token) = signed_in(fast()).await;
    let rx = receiver::start().await;
    let ids = kit.sim.user_ids();
    let (status, created) = subscribe(&kit, &token, &basic(&kit, &rx, &ids[..1])).await;
    assert_eq!(status, StatusCode::CREATED);
    let url = kit.url(&format!(
        "/v1.0/subscriptions/{}",
        created["id"].as_str().unwrap()
    ));
    let body = json!({"expirationDateTime": expiry(&kit, 50)});
    // The create was the first write; 999 renewals fill the quota.
    let statuses: Vec<StatusCode> = futures_util::stream::iter(0..999)
        .map(|_| kit.http.patch(&url).bearer_auth(&token).json(&body).send())
        .buffer_unordered(16)
        .map(|r| r.unwrap().status())
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let over = kit
        .http
        .patch(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::FORBIDDEN);
    kit.sim.advance(Duration::from_secs(20));
    let body = json!({"expirationDateTime": expiry(&kit, 50)});
    let again = kit
        .http
        .patch(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    kit.stop().await;
}

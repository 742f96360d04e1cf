//! Subscription calls against a scripted Graph and Entra on loopback.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::accounts::{AccountEndpoints, AccountTokens, EntraClient, StoredAccount, Vault};
use crate::graph::TokioClock;
use crate::graph::model::tests::example;
use crate::graph::testing::{self, Peer, Reply, Seen};

const UPN: &str = "svc-presence@contoso.example";

fn ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("00000000-0000-0000-0000-{i:012}"))
        .collect()
}

fn request(n: usize) -> SubscriptionRequest {
    SubscriptionRequest::new(
        ids(n),
        Url::parse("https://presence.contoso.com/notifications").unwrap(),
        Some(Url::parse("https://presence.contoso.com/lifecycle").unwrap()),
        Secret::new("client-state-secret"),
        Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap(),
    )
    .unwrap()
}

fn subscription_json(id: &str, resource: &str) -> serde_json::Value {
    json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
        "id": id, "resource": resource, "applicationId": testing::CLIENT_ID,
        "changeType": "updated", "clientState": "client-state-secret",
        "notificationUrl": "https://presence.contoso.com/notifications",
        "lifecycleNotificationUrl": "https://presence.contoso.com/lifecycle",
        "expirationDateTime": "2026-12-05T10:00:00Z", "creatorId": "oid-1"})
}

fn is_account_token(seen: &Seen) -> bool {
    seen.is_token() && String::from_utf8_lossy(&seen.body).contains("grant_type=refresh_token")
}

/// Entra on the same peer: refreshes get `access-N`, the app gets `token-N`.
fn entra_or(seen: &Seen, earlier: &[Seen], graph: impl FnOnce() -> Reply) -> Reply {
    if is_account_token(seen) {
        let n = earlier.iter().filter(|s| is_account_token(s)).count() + 1;
        return Reply::ok(
            json!({"token_type": "Bearer", "expires_in": 3599,
                "access_token": format!("access-{n}"), "refresh_token": format!("refresh-{n}")})
            .to_string(),
        );
    }
    if seen.is_token() {
        return Reply::token(1);
    }
    graph()
}

struct Kit {
    peer: Peer,
    client: GraphClient,
    tokens: Arc<AccountTokens>,
    _dir: tempfile::TempDir,
}

async fn kit(handler: impl Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static) -> Kit {
    let peer = Peer::start(handler).await;
    let client = testing::client(&peer, TokioClock::shared(), testing::throttle());
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(dir.path());
    vault
        .store(&StoredAccount {
            upn: UPN.into(),
            oid: None,
            refresh_token: Secret::new("refresh-0"),
            signed_in_at: Utc::now(),
            refreshed_at: Utc::now(),
        })
        .unwrap();
    let entra = Arc::new(EntraClient::new(
        reqwest::Client::new(),
        AccountEndpoints::new(
            &peer.base,
            "contoso.example",
            testing::CLIENT_ID,
            &peer.base,
        ),
        None,
        Duration::from_secs(5),
    ));
    let tokens = Arc::new(AccountTokens::new(
        UPN,
        "login".into(),
        entra,
        vault,
        TokioClock::shared(),
    ));
    Kit {
        peer,
        client,
        tokens,
        _dir: dir,
    }
}

#[test]
fn the_request_has_the_documented_shape() {
    let body: serde_json::Value = serde_json::from_slice(&request(2).body()).unwrap();
    assert_eq!(
        body,
        json!({"changeType": "updated",
            "notificationUrl": "https://presence.contoso.com/notifications",
            "lifecycleNotificationUrl": "https://presence.contoso.com/lifecycle",
            "resource": "/communications/presences?$filter=id in ('00000000-0000-0000-0000-000000000000','00000000-0000-0000-0000-000000000001')",
            "expirationDateTime": "2026-12-05T10:00:00.000Z",
            "clientState": "client-state-secret"})
    );
    let rich = request(1).with_encryption(EncryptionCertificate {
        certificate: "MIIB".into(),
        id: "cert-1".into(),
    });
    let body: serde_json::Value = serde_json::from_slice(&rich.body()).unwrap();
    let Some(text) =
        example("changenotifications-for-presence__multiple-user-subscription__request.json")
    else {
        return;
    };
    let documented: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&body), keys(&documented));
    assert_eq!(body["changeType"], documented["changeType"]);
    assert_eq!(body["includeResourceData"], json!(true));
    assert!(
        documented["resource"]
            .as_str()
            .unwrap()
            .starts_with("/communications/presences?$filter=id in (")
    );
}

#[test]
fn requests_hold_one_to_650_plain_user_ids() {
    assert!(
        SubscriptionRequest::new(
            ids(650),
            Url::parse("https://x.example/n").unwrap(),
            None,
            Secret::new("s"),
            Utc::now()
        )
        .is_ok()
    );
    let make = |ids: Vec<String>| {
        SubscriptionRequest::new(
            ids,
            Url::parse("https://x.example/n").unwrap(),
            None,
            Secret::new("s"),
            Utc::now(),
        )
        .err()
    };
    assert_eq!(make(Vec::new()), Some(RequestError::NoUsers));
    assert_eq!(make(ids(651)), Some(RequestError::TooManyUsers(651)));
    assert_eq!(
        make(vec!["a') or ('b".into()]),
        Some(RequestError::BadUserId("a') or ('b".into()))
    );
}

#[test]
fn documented_subscription_answers_parse() {
    let Some(text) = example(
        "subscription-post-subscriptions__create_subscription_from_subscriptions__response.json",
    ) else {
        return;
    };
    let subscription: Subscription = serde_json::from_str(&text).unwrap();
    assert_eq!(subscription.id, "7f105c7d-2dc5-4530-97cd-4e7ae6534c07");
    assert_eq!(
        subscription.creator_id.as_deref(),
        Some("8ee44408-0679-472c-bc2a-692812af3437")
    );
    assert_eq!(subscription.user_ids(), None);
    let presence: Subscription = serde_json::from_value(subscription_json(
        "s-1",
        "/communications/presences?$filter=id in ('a-1', 'b-2')",
    ))
    .unwrap();
    assert_eq!(
        presence.user_ids(),
        Some(vec!["a-1".to_string(), "b-2".to_string()])
    );
}

#[tokio::test]
async fn create_goes_with_the_accounts_token_through_the_throttle() {
    let kit = kit(|seen, earlier| {
        entra_or(seen, earlier, || {
            let graph_calls = earlier.iter().filter(|s| !s.is_token()).count();
            if graph_calls == 0 {
                // Throttled once: the request path waits and sends again.
                Reply::graph_error(429, "TooManyRequests", "r-429").header("retry-after", "0")
            } else {
                let body = seen.json();
                Reply::new(
                    201,
                    subscription_json("sub-1", body["resource"].as_str().unwrap()).to_string(),
                )
            }
        })
    })
    .await;
    let made = kit
        .client
        .create_subscription(kit.tokens.as_ref(), &request(3))
        .await
        .unwrap();
    assert_eq!(made.id, "sub-1");
    assert_eq!(made.user_ids(), Some(ids(3)));
    let graph = kit.peer.graph_requests();
    assert_eq!(graph.len(), 2);
    for call in &graph {
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, "/v1.0/subscriptions");
        assert_eq!(call.header("authorization"), Some("Bearer access-1"));
        assert!(call.header("client-request-id").is_some());
    }
    assert_ne!(
        graph[0].header("client-request-id"),
        graph[1].header("client-request-id")
    );
    // The app's own token was never asked for.
    assert_eq!(kit.peer.token_requests(), 1);
}

#[tokio::test]
async fn renew_reauthorize_delete_and_list() {
    let kit = kit(|seen, earlier| {
        entra_or(seen, earlier, || match (seen.method.as_str(), seen.path.as_str()) {
            ("PATCH", "/v1.0/subscriptions/sub-1") => Reply::ok(
                subscription_json("sub-1", "/communications/presences?$filter=id in ('a')")
                    .to_string(),
            ),
            ("POST", "/v1.0/subscriptions/sub-1/reauthorize") => Reply::new(204, ""),
            ("DELETE", "/v1.0/subscriptions/sub-1") => Reply::new(204, ""),
            ("DELETE", _) => Reply::graph_error(404, "ResourceNotFound", "r-404"),
            ("GET", "/v1.0/subscriptions") if seen.query.is_empty() => Reply::ok(
                json!({"value": [subscription_json("sub-1", "/communications/presences?$filter=id in ('a')")],
                    "@odata.nextLink": format!("{}/v1.0/subscriptions?$skiptoken=2", seen.header("host").map(|h| format!("http://{h}")).unwrap())})
                .to_string(),
            ),
            ("GET", "/v1.0/subscriptions") => Reply::ok(
                json!({"value": [subscription_json("sub-2", "/communications/presences?$filter=id in ('b')")]})
                    .to_string(),
            ),
            _ => Reply::graph_error(409, "Conflict", "r-409"),
        })
    })
    .await;
    let tokens = kit.tokens.as_ref();
    let at = Utc.with_ymd_and_hms(2026, 12, 5, 11, 0, 0).unwrap();
    let renewed = kit
        .client
        .renew_subscription(tokens, "sub-1", at)
        .await
        .unwrap();
    assert_eq!(renewed.id, "sub-1");
    kit.client
        .reauthorize_subscription(tokens, "sub-1")
        .await
        .unwrap();
    assert!(
        kit.client
            .delete_subscription(tokens, "sub-1")
            .await
            .unwrap()
    );
    assert!(
        !kit.client
            .delete_subscription(tokens, "gone")
            .await
            .unwrap()
    );
    let listed = kit.client.list_subscriptions(tokens).await.unwrap();
    let listed: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(listed, vec!["sub-1", "sub-2"]);
    let graph = kit.peer.graph_requests();
    assert_eq!(
        graph[0].json(),
        json!({"expirationDateTime": "2026-12-05T11:00:00.000Z"})
    );
    // Graph's refusal is a GraphError with its code and ids.
    let conflict = kit
        .client
        .create_subscription(tokens, &request(1))
        .await
        .err()
        .unwrap();
    assert_eq!(conflict.status(), Some(409));
    assert_eq!(conflict.code(), Some("Conflict"));
    assert_eq!(conflict.request_id(), Some("r-409"));
}

#[tokio::test]
async fn an_account_without_a_token_fails_the_call_before_graph() {
    let kit = kit(|seen, earlier| {
        if is_account_token(seen) {
            return Reply::new(
                400,
                json!({"error": "invalid_grant", "error_codes": [50173]}).to_string(),
            );
        }
        entra_or(seen, earlier, || Reply::new(201, "{}"))
    })
    .await;
    let error = kit
        .client
        .create_subscription(kit.tokens.as_ref(), &request(1))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&error, GraphError::Account(e) if e.kind() == "revoked"),
        "{error}"
    );
    assert!(!error.is_outage(), "one account, not Graph");
    assert!(kit.peer.graph_requests().is_empty());
}

proptest! {
    #[test]
    fn resources_read_back(list in proptest::collection::vec("[0-9a-f-]{1,36}", 1..20)) {
        prop_assert_eq!(parse_presence_resource(&presence_resource(&list)), Some(list));
    }

    #[test]
    fn reading_resources_never_panics(text in "\\PC{0,120}") {
        let _ = parse_presence_resource(&text);
    }
}

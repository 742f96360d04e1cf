//! The receiver on 127.0.0.1:0 with a memory store (and once a sled store),
//! Graph played by the tests: the handshake, the door's refusals, the
//! inbox, and the worker's checks end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::server::check_batch;
use super::*;
use crate::notifications::testing::{
    CLIENT_ID, Signer, TENANT_ID, shared_decryption, shared_signer,
};
use crate::notifications::{LifecycleEvent, NotificationOutcome};
use crate::stop::{Stop, StopHandle};
use crate::store::{InboxKind, MemoryStore, SledStore, Store};

const SECRET: &str = "the-client-state";

/// A key-set endpoint serving `signer`'s keys, counting fetches.
async fn jwks_server(signer: &'static Signer) -> (String, Arc<AtomicUsize>, StopHandle) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/common/discovery/v2.0/keys",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { signer.jwks_json() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/common/discovery/v2.0/keys",
        listener.local_addr().unwrap()
    );
    let (handle, stop) = Stop::new();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.stopped())
            .await
            .unwrap();
    });
    (url, hits, handle)
}

fn settings(jwks_url: String) -> ReceiverSettings {
    ReceiverSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        notification_path: "/graph/notifications".into(),
        lifecycle_path: "/graph/lifecycle".into(),
        client_state: crate::config::Secret::new(SECRET),
        max_body: 64 * 1024,
        decryption: None,
        client_id: CLIENT_ID.into(),
        tenant_id: TENANT_ID.into(),
        jwks_url,
    }
}

struct Harness {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    outcomes: mpsc::Receiver<NotificationOutcome>,
    counters: Arc<Counters>,
    jwks_hits: Arc<AtomicUsize>,
    _stops: Vec<StopHandle>,
}

impl Harness {
    /// The receiver and, with `worker`, its inbox worker, over `store`,
    /// for rich subscriptions (a decryption key configured).
    async fn start(store: Arc<dyn Store>, worker: bool) -> Harness {
        Harness::start_with(store, worker, true).await
    }

    /// [`Harness::start`], rich or basic.
    async fn start_with(store: Arc<dyn Store>, worker: bool, rich: bool) -> Harness {
        let (jwks_url, jwks_hits, jwks_stop) = jwks_server(shared_signer()).await;
        let mut settings = settings(jwks_url.clone());
        if rich {
            settings.decryption = Some(Arc::clone(&shared_decryption().0));
        }
        let wake = Arc::new(Notify::new());
        let counters = Arc::new(Counters::default());
        let app = router(
            &settings,
            Arc::clone(&store),
            Arc::clone(&wake),
            Arc::clone(&counters),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (server_stop, stop) = Stop::new();
        tokio::spawn(serve(listener, app, stop));
        let (tx, outcomes) = mpsc::channel(64);
        let (worker_stop, stop) = Stop::new();
        if worker {
            let keys = KeySet::new(
                jwks_url,
                crate::http::client(Duration::from_secs(5)).unwrap(),
            )
            .with_min_refetch(Duration::ZERO);
            let worker = InboxWorker::new(
                &settings,
                Arc::clone(&store),
                keys,
                wake,
                Arc::clone(&counters),
                tx,
            );
            tokio::spawn(worker.run(stop));
        }
        Harness {
            base: format!("http://{addr}"),
            http: crate::http::client(Duration::from_secs(10)).unwrap(),
            store,
            outcomes,
            counters,
            jwks_hits,
            _stops: vec![server_stop, worker_stop, jwks_stop],
        }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn notify(&self, body: &Value) -> u16 {
        self.post("/graph/notifications", body.to_string()).await.0
    }

    /// Waits until the worker has processed `n` batches in all.
    async fn processed(&self, n: u64) {
        for _ in 0..1000 {
            if self.counters.snapshot().batches >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the worker processed {:?}, not {n} batches",
            self.counters.snapshot()
        );
    }

    async fn next(&mut self) -> NotificationOutcome {
        tokio::time::timeout(Duration::from_secs(10), self.outcomes.recv())
            .await
            .expect("an outcome")
            .expect("the worker runs")
    }

    fn nothing_more(&mut self) {
        assert!(self.outcomes.try_recv().is_err(), "no further outcome");
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.counters
            .snapshot()
            .rejected
            .get(reason)
            .copied()
            .unwrap_or(0)
    }
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    v["error"]["code"].as_str().unwrap().to_owned()
}

fn basic(user: &str, client_state: &str) -> Value {
    json!({"subscriptionId": "sub1", "clientState": client_state, "changeType": "updated",
        "tenantId": TENANT_ID, "resource": format!("communications/presences/{user}"),
        "resourceData": {"@odata.id": format!("users/{user}/presence"), "@odata.type": "#microsoft.graph.presence", "id": user}})
}

fn rich(user: &str, seq: &str) -> Value {
    let presence = json!({"@odata.type": "#microsoft.graph.presence", "@odata.id": format!("users/{user}/presence"),
        "id": user, "availability": "Busy", "activity": "InACall", "sequenceNumber": seq});
    let content = shared_decryption()
        .1
        .encrypt(presence.to_string().as_bytes());
    let mut item = basic(user, SECRET);
    item["encryptedContent"] = json!({"data": content.data, "dataSignature": content.data_signature,
        "dataKey": content.data_key, "encryptionCertificateId": content.encryption_certificate_id,
        "encryptionCertificateThumbprint": content.encryption_certificate_thumbprint});
    item
}

fn token_with(edit: impl FnOnce(&mut Value)) -> String {
    let signer = shared_signer();
    let mut claims = signer.claims(Utc::now());
    edit(&mut claims);
    signer.token(&claims)
}

fn rich_batch(items: Vec<Value>, token: String) -> Value {
    json!({"value": items, "validationTokens": [token]})
}

#[tokio::test]
async fn the_handshake_echoes_the_decoded_token_on_both_paths() {
    let h = Harness::start(Arc::new(MemoryStore::new()), false).await;
    for path in ["/graph/notifications", "/graph/lifecycle"] {
        let response = h
            .http
            .post(format!(
                "{}{path}?validationToken=Validation%3A%20Testing+client%2Bapp",
                h.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/plain"), "{kind}");
        assert_eq!(
            response.text().await.unwrap(),
            "Validation: Testing client+app"
        );
    }
    assert!(
        h.store.inbox(0, 10).unwrap().is_empty(),
        "a handshake keeps nothing"
    );
}

#[tokio::test]
async fn the_door_refuses_what_is_not_ours_and_keeps_nothing() {
    let h = Harness::start(Arc::new(MemoryStore::new()), false).await;
    let batch = json!({"value": [basic("u1", SECRET), basic("u2", "guessed")]});
    let (status, body) = h.post("/graph/notifications", batch.to_string()).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "client_state_mismatch")
    );
    assert!(body.contains("notification 1"), "{body}");

    let (status, body) = h.post("/graph/notifications", "{\"value\": [").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "malformed_notification")
    );
    let (status, body) = h
        .post(
            "/graph/lifecycle",
            json!({"value": [basic("u1", SECRET)]}).to_string(),
        )
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "malformed_notification")
    );
    assert!(body.contains("lifecycleEvent"), "{body}");

    let (status, body) = h
        .post("/graph/notifications", vec![b' '; 64 * 1024 + 1])
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "payload_too_large")
    );

    let (status, body) = h.post("/elsewhere", "{}").await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let response = h
        .http
        .get(format!("{}/graph/notifications", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        error_code(&response.text().await.unwrap()),
        "method_not_allowed"
    );

    assert!(h.store.inbox(0, 10).unwrap().is_empty());
    let rejected = h.counters.snapshot().rejected;
    assert_eq!(rejected.get("batch_client_state"), Some(&1));
    assert_eq!(rejected.get("batch_malformed"), Some(&2));
    assert_eq!(rejected.get("batch_too_large"), Some(&1));
}

#[tokio::test]
async fn a_basic_batch_is_stored_then_asks_to_read_its_users() {
    let mut h = Harness::start_with(Arc::new(MemoryStore::new()), true, false).await;
    let batch = json!({"value": [basic("u2", SECRET), basic("u1", SECRET)]});
    assert_eq!(h.notify(&batch).await, 202);
    assert_eq!(
        h.next().await,
        NotificationOutcome::ReadNow(vec!["u1".into(), "u2".into()])
    );
    h.processed(1).await;
    // The acknowledgement follows the count: wait for it.
    for _ in 0..1000 {
        if h.store.inbox(0, 10).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        h.store.inbox(0, 10).unwrap().is_empty(),
        "processed batches are acknowledged"
    );
    let counted = h.counters.snapshot();
    assert_eq!((counted.received, counted.applied), (2, 2));
}

#[tokio::test]
async fn lifecycle_notifications_reach_the_daemon() {
    let mut h = Harness::start(Arc::new(MemoryStore::new()), true).await;
    let batch = json!({"value": [{"subscriptionId": "sub9", "clientState": SECRET,
        "subscriptionExpirationDateTime": "2026-12-05T05:00:00Z", "tenantId": TENANT_ID,
        "lifecycleEvent": "reauthorizationRequired"}]});
    let (status, _) = h.post("/graph/lifecycle", batch.to_string()).await;
    assert_eq!(status, 202);
    assert_eq!(
        h.next().await,
        NotificationOutcome::Lifecycle {
            subscription_id: "sub9".into(),
            event: LifecycleEvent::ReauthorizationRequired
        }
    );
}

#[tokio::test]
async fn a_replayed_rich_batch_is_applied_once_and_an_older_one_not_at_all() {
    let mut h = Harness::start(Arc::new(MemoryStore::new()), true).await;
    let newer = rich_batch(vec![rich("u1", "C0002")], token_with(|_| {}));
    assert_eq!(h.notify(&newer).await, 202);
    assert_eq!(
        h.notify(&newer).await,
        202,
        "a replay is accepted at the door"
    );
    let older = rich_batch(vec![rich("u1", "C0001")], token_with(|_| {}));
    assert_eq!(h.notify(&older).await, 202);
    let NotificationOutcome::Presence(p) = h.next().await else {
        panic!("a presence")
    };
    assert_eq!(
        (p.id.as_str(), p.sequence_number.as_deref()),
        ("u1", Some("C0002"))
    );
    h.processed(3).await;
    h.nothing_more();
    assert_eq!(h.counters.snapshot().duplicates, 2);
    assert_eq!(
        h.jwks_hits.load(Ordering::SeqCst),
        1,
        "the key set is fetched once and cached"
    );
}

#[tokio::test]
async fn tampered_content_is_dropped_and_counted() {
    let mut h = Harness::start(Arc::new(MemoryStore::new()), true).await;
    let mut data = rich("u1", "C1");
    let text = data["encryptedContent"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if text.starts_with('A') { "B" } else { "A" };
    data["encryptedContent"]["data"] = format!("{flipped}{}", &text[1..]).into();
    let mut signature = rich("u2", "C1");
    let text = signature["encryptedContent"]["dataSignature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if text.starts_with('A') { "B" } else { "A" };
    signature["encryptedContent"]["dataSignature"] = format!("{flipped}{}", &text[1..]).into();
    assert_eq!(
        h.notify(&rich_batch(vec![data, signature], token_with(|_| {})))
            .await,
        202
    );
    h.processed(1).await;
    h.nothing_more();
    assert_eq!(h.rejected("bad_signature"), 2);
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_drop_the_batch() {
    let mut h = Harness::start(Arc::new(MemoryStore::new()), true).await;
    let forger = Signer::new(&shared_signer().kid);
    let forged = forger.token(&forger.claims(Utc::now()));
    let expired = token_with(|c| c["exp"] = (Utc::now().timestamp() - 3600).into());
    let elsewhere = token_with(|c| c["aud"] = "another-app".into());
    for token in [forged, expired, elsewhere] {
        assert_eq!(
            h.notify(&rich_batch(vec![rich("u1", "C1")], token)).await,
            202
        );
    }
    h.processed(3).await;
    h.nothing_more();
    assert_eq!(
        [
            h.rejected("token_signature"),
            h.rejected("token_expired"),
            h.rejected("token_audience")
        ],
        [1, 1, 1]
    );
    // The same notification with a good token is then applied.
    assert_eq!(
        h.notify(&rich_batch(vec![rich("u1", "C1")], token_with(|_| {})))
            .await,
        202
    );
    assert!(matches!(h.next().await, NotificationOutcome::Presence(_)));
}

#[tokio::test]
async fn an_unknown_key_fetches_the_key_set_again() {
    let mut h = Harness::start(Arc::new(MemoryStore::new()), true).await;
    assert_eq!(
        h.notify(&rich_batch(vec![rich("u1", "C1")], token_with(|_| {})))
            .await,
        202
    );
    assert!(matches!(h.next().await, NotificationOutcome::Presence(_)));
    let stranger = Signer::new("rolled-key");
    let token = stranger.token(&stranger.claims(Utc::now()));
    assert_eq!(
        h.notify(&rich_batch(vec![rich("u1", "C2")], token)).await,
        202
    );
    h.processed(2).await;
    assert_eq!(h.rejected("token_unknown_key"), 1);
    assert_eq!(
        h.jwks_hits.load(Ordering::SeqCst),
        2,
        "fetched first, then again for the unknown key"
    );
}

#[tokio::test]
async fn unknown_keys_fetch_the_key_set_at_most_once_per_interval() {
    let (url, hits, _stop) = jwks_server(shared_signer()).await;
    let client = crate::http::client(Duration::from_secs(5)).unwrap();
    let mut keys = KeySet::new(url.clone(), client.clone());
    let made_up = ["made-up".to_owned()];
    for _ in 0..3 {
        assert!(!keys.keys_for(&made_up).await.contains("made-up"));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch, then the interval holds"
    );
    assert!(
        keys.keys_for(&[shared_signer().kid.clone()])
            .await
            .contains(&shared_signer().kid)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "a known key needs no fetch");
    // An unreachable login host keeps what was cached.
    let mut unreachable =
        KeySet::new("http://127.0.0.1:9/keys", client).with_min_refetch(Duration::ZERO);
    assert!(unreachable.keys_for(&made_up).await.is_empty());
    assert_eq!(unreachable.fetches(), 1);
}

/// What was answered 202 is on disk: the process may die right after.
#[tokio::test]
async fn a_batch_answered_202_is_in_the_store_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let body = json!({"value": [basic("u1", SECRET)]}).to_string();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let h = Harness::start(store, false).await;
        assert_eq!(h.post("/graph/notifications", body.clone()).await.0, 202);
        // No worker, no clean shutdown: everything is dropped as it is.
    }
    let store = loop {
        match SledStore::open(dir.path()) {
            Err(crate::store::StoreError::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other.unwrap(),
        }
    };
    let kept = store.inbox(0, 10).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].kind, kept[0].body.as_slice()),
        (InboxKind::Changes, body.as_bytes())
    );
}

#[test]
fn paths_that_cannot_be_served_are_refused_at_setup() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let wake = Arc::new(Notify::new());
    let counters = Arc::new(Counters::default());
    for (n, l) in [
        ("graph", "/l"),
        ("/n/{id}", "/l"),
        ("/n", "/n"),
        ("/n?x=1", "/l"),
    ] {
        let mut s = settings(String::new());
        s.notification_path = n.into();
        s.lifecycle_path = l.into();
        assert!(
            router(
                &s,
                Arc::clone(&store),
                Arc::clone(&wake),
                Arc::clone(&counters)
            )
            .is_err(),
            "{n} {l}"
        );
    }
}

proptest::proptest! {
    /// Whatever a caller posts, the door takes it or answers a 4xx in the
    /// error shape; it never panics.
    #[test]
    fn any_body_is_taken_or_refused_with_a_4xx(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        lifecycle in proptest::prelude::any::<bool>(),
    ) {
        let kind = if lifecycle { InboxKind::Lifecycle } else { InboxKind::Changes };
        if let Err(e) = check_batch(kind, &body, &crate::config::Secret::new(SECRET)) {
            proptest::prop_assert!((400..500).contains(&e.status), "{e}");
            proptest::prop_assert!(!e.message.is_empty());
        }
    }

    /// Near-valid bodies too: items with and without our clientState.
    #[test]
    fn batches_are_taken_only_when_every_client_state_is_ours(states in proptest::collection::vec(proptest::prelude::any::<bool>(), 1..6)) {
        let items: Vec<Value> = states.iter().enumerate()
            .map(|(i, ours)| basic(&format!("u{i}"), if *ours { SECRET } else { "other" }))
            .collect();
        let body = json!({"value": items}).to_string();
        let taken = check_batch(InboxKind::Changes, body.as_bytes(), &crate::config::Secret::new(SECRET)).is_ok();
        proptest::prop_assert_eq!(taken, states.iter().all(|s| *s));
    }
}

/// Sends `request` as raw bytes and returns the status and body.
async fn raw(base: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_and_an_unreadable_request_get_the_error_shape() {
    let h = Harness::start(Arc::new(MemoryStore::new()), false).await;
    // No length announced: the limit holds while the body is read.
    let chunk = "x".repeat(16 * 1024);
    let mut request = b"POST /graph/notifications HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..5 {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(&h.base, &request).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");

    let (status, body) = raw(&h.base, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(status, 400, "{body}");
    error_code(&body);
    assert!(h.store.inbox(0, 10).unwrap().is_empty());
}

#[tokio::test]
async fn tokens_are_judged_at_the_batchs_arrival_not_when_it_is_processed() {
    let store = Arc::new(MemoryStore::new());
    let arrived = Utc::now() - chrono::Duration::hours(3);
    let signer = shared_signer();
    // Valid when the batch arrived, expired long before it is processed.
    let then = signer.token(&signer.claims(arrived));
    let kept = rich_batch(vec![rich("u1", "C1")], then.clone());
    store
        .append_inbox(InboxKind::Changes, arrived, kept.to_string().as_bytes())
        .unwrap();
    // Already expired when it arrived.
    let stale = rich_batch(vec![rich("u2", "C1")], then);
    store
        .append_inbox(InboxKind::Changes, Utc::now(), stale.to_string().as_bytes())
        .unwrap();
    let mut h = Harness::start(store, true).await;
    let NotificationOutcome::Presence(p) = h.next().await else {
        panic!("a presence")
    };
    assert_eq!(p.id, "u1");
    h.processed(2).await;
    h.nothing_more();
    assert_eq!(h.rejected("token_expired"), 1);
    let delay = h.counters.snapshot().delay_seconds_max;
    assert!(
        delay >= 3.0 * 3600.0 - 60.0,
        "the delay counts from arrival: {delay}"
    );
}

#[tokio::test]
async fn a_client_trickling_its_body_is_answered_408_and_nothing_is_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start(Arc::new(MemoryStore::new()), false).await;
    let addr = h.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A length announced, a few bytes sent, then nothing more.
    stream
        .write_all(b"POST /graph/notifications HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"value\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        super::server::REQUEST_TIMEOUT * 3,
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_eq!(error_code(body), "request_timeout");
    assert!(h.store.inbox(0, 10).unwrap().is_empty());
    assert_eq!(h.rejected("batch_timeout"), 1);
}

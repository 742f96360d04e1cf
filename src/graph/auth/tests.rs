use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair};

use super::*;
use crate::graph::clock::testing::InstantClock;
use crate::graph::testing::{Peer, Reply, client, throttle};

fn rejection(codes: &[u64], error: &str) -> TokenErrorBody {
    TokenErrorBody {
        error: error.into(),
        error_description: Some(format!(
            "AADSTS{}: something.\r\nTrace ID: t\r\nCorrelation ID: c",
            codes.first().copied().unwrap_or_default()
        )),
        error_codes: codes.to_vec(),
        trace_id: Some("t".into()),
        correlation_id: Some("c".into()),
        ..TokenErrorBody::default()
    }
}

#[test]
fn entra_refusals_are_classified_by_aadsts_code() {
    let kind =
        |codes: &[u64], error: &str| AuthError::classify(401, rejection(codes, error)).kind();
    assert_eq!(kind(&[7000222], "invalid_client"), "expired_secret");
    assert_eq!(kind(&[7000215], "invalid_client"), "invalid_secret");
    assert_eq!(kind(&[700016], "unauthorized_client"), "unknown_app");
    assert_eq!(kind(&[70011], "invalid_scope"), "invalid_scope");
    assert_eq!(kind(&[], "invalid_scope"), "invalid_scope");
    assert_eq!(kind(&[65001], "invalid_grant"), "consent_missing");
    assert_eq!(kind(&[700027], "invalid_client"), "invalid_certificate");
    assert_eq!(kind(&[90002], "invalid_request"), "tenant_not_found");
    assert_eq!(kind(&[900023], "invalid_request"), "tenant_not_found");
    assert_eq!(kind(&[700024], "invalid_client"), "assertion_expired");
    assert_eq!(kind(&[7000112], "unauthorized_client"), "app_disabled");
    assert_eq!(kind(&[50000], "server_error"), "rejected");
    let error = AuthError::classify(401, rejection(&[7000222], "invalid_client"));
    let text = error.to_string();
    assert!(
        text.contains("expired") && text.contains("trace id t"),
        "{text}"
    );
    assert!(
        !text.contains("Correlation ID: c\r"),
        "only the first line: {text}"
    );
}

/// Each class's operator message names the fix, in the full text and in
/// the summary `/readyz` shows.
#[test]
fn each_refusal_names_its_fix() {
    let cases: [(u64, &str, &str); 9] = [
        (7000222, "invalid_client", "new secret"),
        (7000215, "invalid_client", "secret's value"),
        (700027, "invalid_client", "upload"),
        (700024, "invalid_client", "clock"),
        (700016, "unauthorized_client", "graph.client_id"),
        (7000112, "unauthorized_client", "enable"),
        (90002, "invalid_request", "graph.tenant_id"),
        (65001, "invalid_grant", "admin consent"),
        (70011, "invalid_scope", "graph_base"),
    ];
    for (code, error, fix) in cases {
        let refused = AuthError::classify(400, rejection(&[code], error));
        assert!(refused.to_string().contains(fix), "{code}: {refused}");
        let summary = refused.summary();
        assert!(summary.contains(&format!("AADSTS{code}")), "{summary}");
        assert!(!summary.contains("trace id"), "{summary}");
    }
}

#[test]
fn the_documented_error_example_is_an_invalid_scope() {
    let Some(text) = crate::graph::model::tests::example(
        "entra-v2-oauth2-client-creds-grant-flow__error-response.json",
    ) else {
        return;
    };
    let body: TokenErrorBody = serde_json::from_str(&text).unwrap();
    let error = AuthError::classify(400, body);
    assert_eq!(error.kind(), "invalid_scope");
    match error {
        AuthError::InvalidScope(r) => {
            assert_eq!(
                r.trace_id.as_deref(),
                Some("255d1aef-8c98-452f-ac51-23d051240864")
            );
            assert_eq!(r.codes, [70011]);
        }
        other => panic!("{other:?}"),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn test_key() -> (RsaKeyPair, String) {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let pem = pem("PRIVATE KEY", pkcs8.as_ref());
    (key, pem)
}

#[test]
fn the_client_assertion_is_a_signed_rs256_jwt() {
    let (key, key_pem) = test_key();
    // Only the DER's digest matters to us; any bytes stand in for a certificate.
    let cert_der = b"not really a certificate, but DER to hash".to_vec();
    let cert_pem = pem("CERTIFICATE", &cert_der);
    let credential = CertificateCredential::from_pem(&cert_pem, &Secret::new(key_pem)).unwrap();
    let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let url = "https://login.microsoftonline.com/contoso/oauth2/v2.0/token";
    let jwt = credential.assertion(url, "my-client", now).unwrap();

    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let s256 = digest::digest(&digest::SHA256, &cert_der);
    assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(s256.as_ref()));
    assert_eq!(claims["aud"], url);
    assert_eq!(claims["iss"], "my-client");
    assert_eq!(claims["sub"], "my-client");
    assert_eq!(claims["nbf"], now.timestamp());
    assert_eq!(claims["exp"], now.timestamp() + 600);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 36);

    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let public = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        key.public_key().as_ref(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public.verify(signed.as_bytes(), &signature).unwrap();
    assert!(public.verify(b"tampered", &signature).is_err());

    let again = credential.assertion(url, "my-client", now).unwrap();
    assert_ne!(jwt, again, "a fresh jti each time");
}

#[test]
fn unusable_keys_and_certificates_are_credential_errors() {
    let (_, key_pem) = test_key();
    let cert = pem("CERTIFICATE", b"x");
    let cases = [
        ("no pem here", key_pem.clone()),
        (cert.as_str(), "nothing".to_owned()),
        (cert.as_str(), pem("PRIVATE KEY", b"not a key")),
        (
            cert.as_str(),
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----".into(),
        ),
    ];
    for (cert, key) in cases {
        let error = CertificateCredential::from_pem(cert, &Secret::new(key))
            .err()
            .unwrap();
        assert_eq!(error.kind(), "credential");
    }
}

#[test]
fn the_refresh_margin_leaves_room_before_expiry() {
    assert_eq!(
        refresh_margin(Duration::from_secs(3599)),
        Duration::from_secs(300)
    );
    assert_eq!(
        refresh_margin(Duration::from_secs(60)),
        Duration::from_secs(15)
    );
    assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let peer = Peer::start(|req, seen| {
        assert!(req.is_token());
        Reply::token(seen.len()).delay(Duration::from_millis(100))
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let tokens = client.throttle().tokens().clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await.unwrap().expose().to_owned() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "token-0");
    }
    assert_eq!(peer.token_requests(), 1);
    let form = String::from_utf8(peer.seen.lock().unwrap()[0].body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("client_secret=s3cret"), "{form}");
    assert!(form.contains("scope=http%3A%2F%2F127.0.0.1"), "{form}");
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let peer = Peer::start(|_, seen| Reply::token(seen.len())).await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let tokens = client.throttle().tokens();
    assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    clock.advance(Duration::from_secs(3599 - 301));
    assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    clock.advance(Duration::from_secs(2));
    assert_eq!(tokens.token().await.unwrap().expose(), "token-1");
    assert_eq!(peer.token_requests(), 2);
}

#[tokio::test]
async fn a_refused_secret_is_reported_to_every_waiting_caller_once() {
    let peer = Peer::start(|_, _| {
        Reply::new(
            401,
            serde_json::json!({"error": "invalid_client", "error_codes": [7000222],
                "error_description": "AADSTS7000222: The provided client secret keys are expired."})
            .to_string(),
        )
        .delay(Duration::from_millis(100))
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let tokens = client.throttle().tokens().clone();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await.unwrap_err() })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), AuthError::ExpiredSecret(_)));
    }
    assert_eq!(peer.token_requests(), 1, "not retried, and shared");
    // A later caller within the hold-off gets the same refusal from memory.
    assert!(matches!(
        tokens.token().await.unwrap_err(),
        AuthError::ExpiredSecret(_)
    ));
    assert_eq!(peer.token_requests(), 1);
    // After it, Entra is asked again (the admin may have fixed it).
    clock.advance(REFUSAL_HOLD_OFF);
    let _ = tokens.token().await;
    assert_eq!(peer.token_requests(), 2);
}

#[tokio::test]
async fn a_graph_call_carries_the_auth_error() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::new(
                400,
                r#"{"error":"unauthorized_client","error_codes":[700016]}"#,
            )
        } else {
            Reply::ok("{}")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.get_presence("u1").await.unwrap_err();
    assert!(
        matches!(
            error,
            crate::graph::GraphError::Auth(AuthError::UnknownApp(_))
        ),
        "{error}"
    );
    assert!(peer.graph_requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_entra_is_retried_then_reported() {
    let peer = Peer::start(|_, _| Reply::new(503, "")).await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let error = client.throttle().tokens().token().await.unwrap_err();
    assert_eq!(error.kind(), "unreachable");
    assert_eq!(peer.token_requests(), 4);
    assert_eq!(clock.sleeps().len(), 3);
}

#[tokio::test]
async fn a_certificate_client_sends_an_assertion_not_a_secret() {
    let peer = Peer::start(|_, _| Reply::token(0)).await;
    let (_, key_pem) = test_key();
    let credential =
        CertificateCredential::from_pem(&pem("CERTIFICATE", b"cert"), &Secret::new(key_pem))
            .unwrap();
    let client = crate::graph::GraphClient::builder(
        &crate::graph::testing::config(&peer.base),
        Credential::Certificate(credential),
    )
    .clock(InstantClock::new())
    .build()
    .unwrap();
    client.throttle().tokens().token().await.unwrap();
    let form = String::from_utf8(peer.seen.lock().unwrap()[0].body.clone()).unwrap();
    assert!(
        form.contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        ),
        "{form}"
    );
    assert!(form.contains("client_assertion=ey"), "{form}");
    assert!(!form.contains("client_secret"), "{form}");
}

// A failed early refresh (Entra down) keeps the still-valid token.
#[tokio::test]
async fn a_failed_early_refresh_keeps_the_still_valid_token() {
    // First token answer succeeds; from then on Entra is down (503).
    let peer = Peer::start(|_, seen| {
        if seen.is_empty() {
            Reply::token(0)
        } else {
            Reply::new(503, "")
        }
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let tokens = client.throttle().tokens();
    assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    // Past the refresh point (3599 - 300 s) but ~4 min before expiry.
    clock.advance(Duration::from_secs(3599 - 299));
    let got = tokens.token().await;
    // FACTS.md: expires_in 3599; the token is valid for ~4 more minutes, so
    // a failed *early* refresh must not stop every Graph call.
    assert_eq!(
        got.map(|t| t.expose().to_owned()).map_err(|e| e.kind()),
        Ok("token-0".to_owned())
    );
}

#[tokio::test]
async fn a_failing_refresh_is_retried_with_backoff_until_the_token_expires() {
    let peer = Peer::start(|_, seen| {
        if seen.is_empty() {
            Reply::token(0)
        } else {
            Reply::new(503, "")
        }
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let tokens = client.throttle().tokens();
    tokens.token().await.unwrap();
    clock.advance(Duration::from_secs(3599 - 299));
    // One attempt, no retries inside the call: the caller is not stalled.
    assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    assert_eq!(peer.token_requests(), 2);
    assert!(clock.sleeps().is_empty(), "{:?}", clock.sleeps());
    // Within the backoff: the token, without asking.
    for _ in 0..10 {
        assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    }
    assert_eq!(peer.token_requests(), 2);
    // After it: one more attempt.
    clock.advance(REFRESH_RETRY);
    assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    assert_eq!(peer.token_requests(), 3);
    // Once it has really expired: no token, Entra's failure.
    clock.advance(Duration::from_secs(300));
    let error = tokens.token().await.unwrap_err();
    assert_eq!(error.kind(), "unreachable");
}

#[tokio::test]
async fn callers_do_not_wait_for_a_refresh_while_the_token_is_valid() {
    // The refresh answer takes 300 ms of real time.
    let peer = Peer::start(|_, seen| {
        if seen.is_empty() {
            Reply::token(0)
        } else {
            Reply::token(seen.len()).delay(Duration::from_millis(300))
        }
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let tokens = client.throttle().tokens().clone();
    tokens.token().await.unwrap();
    clock.advance(Duration::from_secs(3599 - 299));
    let refresher = {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.token().await.unwrap().expose().to_owned() })
    };
    // Let the refresher take the flight.
    while peer.token_requests() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    for _ in 0..8 {
        assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
    }
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(refresher.await.unwrap(), "token-1");
    assert_eq!(tokens.token().await.unwrap().expose(), "token-1");
    assert_eq!(peer.token_requests(), 2, "one refresh, not one per caller");
}

// A permanent refusal is remembered: Graph calls do not each ask Entra.
#[tokio::test]
async fn an_expired_secret_does_not_hammer_entra() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::new(401, r#"{"error":"invalid_client","error_codes":[7000222]}"#)
        } else {
            Reply::ok("{}")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    for _ in 0..20 {
        let _ = client.get_presence("u1").await;
    }
    // 20 Graph calls within the same instant => at most 2 token requests.
    assert!(
        peer.token_requests() <= 2,
        "{} token requests",
        peer.token_requests()
    );
}

#[tokio::test]
async fn the_refusal_hold_off_doubles_up_to_ten_minutes_and_resets_on_success() {
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer = {
        let fixed = fixed.clone();
        Peer::start(move |_, _| {
            if fixed.load(Ordering::SeqCst) {
                Reply::token(0)
            } else {
                Reply::new(
                    400,
                    r#"{"error":"unauthorized_client","error_codes":[700016]}"#,
                )
            }
        })
        .await
    };
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let tokens = client.throttle().tokens();
    let mut asked = Vec::new();
    // Try every 10 s for an hour: Entra is asked at 0, 30, 90, 210, 450,
    // 930 (hold-offs 30, 60, 120, 240, 480, then 600) and 1530, 2130, 2730, 3330 s.
    for step in 0..360u64 {
        let before = peer.token_requests();
        let error = tokens.token().await.unwrap_err();
        assert_eq!(error.kind(), "unknown_app");
        if peer.token_requests() > before {
            asked.push(step * 10);
        }
        clock.advance(Duration::from_secs(10));
    }
    assert_eq!(asked, [0, 30, 90, 210, 450, 930, 1530, 2130, 2730, 3330]);
    fixed.store(true, Ordering::SeqCst);
    clock.advance(REFUSAL_HOLD_OFF_MAX);
    assert_eq!(tokens.token().await.unwrap().expose(), "token-0");
}

/// The end date is read from a real certificate (one the test CA made),
/// before and after 2050 (UTCTime and GeneralizedTime); anything else
/// reads as none, never a panic.
#[test]
fn a_certificates_end_date_is_read_from_its_der() {
    use chrono::TimeZone;
    let ca = crate::sim::tls::TestCa::new("CA").unwrap();
    for end in [
        Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap(),
        Utc.with_ymd_and_hms(2061, 1, 2, 3, 4, 5).unwrap(),
    ] {
        let issued = ca.issue_client("app.contoso.test", end).unwrap();
        assert_eq!(certificate_not_after(&issued.certificate_der), Some(end));
    }
    assert_eq!(certificate_not_after(b"not a certificate"), None);
    assert_eq!(certificate_not_after(&[]), None);
    assert_eq!(
        certificate_not_after(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]),
        None
    );
}

proptest::proptest! {
    #[test]
    fn reading_an_end_date_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = certificate_not_after(&bytes);
    }

    #[test]
    fn a_damaged_certificate_never_panics(cut in 0usize..400, flip in 0usize..400) {
        let ca = crate::sim::tls::TestCa::new("CA").unwrap();
        let mut der = ca.certificate().certificate_der.clone();
        if let Some(byte) = der.get_mut(flip) {
            *byte ^= 0xA5;
        }
        der.truncate(cut.min(der.len()));
        let _ = certificate_not_after(&der);
    }
}

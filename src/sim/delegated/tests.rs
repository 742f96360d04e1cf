use proptest::prelude::*;

use super::*;

const APP: &str = "client-guid";
const HOST: &str = "http://127.0.0.1:1";

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + secs)
}

fn scopes() -> Vec<String> {
    parse_scopes(
        "https://graph.microsoft.com/Presence.Read.All offline_access",
        HOST,
    )
    .unwrap()
}

fn started(d: &mut Delegated) -> DeviceCodeIssued {
    d.start(APP, scopes(), "dc-1".into(), "UC1".into(), t(0))
}

fn code(result: Result<SignedIn, EntraError>) -> (&'static str, u32) {
    let e = result.unwrap_err();
    (e.error, e.code)
}

#[test]
fn scopes_may_name_graph_or_the_simulator_host() {
    assert_eq!(scopes(), ["Presence.Read.All", "offline_access"]);
    assert_eq!(
        parse_scopes(&format!("{HOST}/Presence.Read.All openid"), HOST).unwrap(),
        ["Presence.Read.All", "openid"]
    );
    assert_eq!(
        parse_scopes("offline_access", HOST).unwrap_err().code,
        70011
    );
    assert_eq!(
        parse_scopes("https://graph.microsoft.com/Mail.Read", HOST)
            .unwrap_err()
            .code,
        65001
    );
    assert_eq!(
        parse_scopes("https://elsewhere/x/Presence.Read.All", HOST)
            .unwrap_err()
            .code,
        70011
    );
}

#[test]
fn a_code_is_pending_until_approved_then_redeemed_once() {
    let mut d = Delegated::new(false);
    let issued = started(&mut d);
    assert_eq!((issued.expires_in, issued.interval), (900, 5));
    assert_eq!(
        code(d.poll(APP, "dc-1", &[], t(0))),
        ("authorization_pending", 70016)
    );
    d.approve("UC1", "svc-a@contoso.test", "oid-a", t(6))
        .unwrap();
    let signed = d.poll(APP, "dc-1", &[], t(6)).unwrap();
    assert_eq!(signed.user.upn, "svc-a@contoso.test");
    assert_eq!(signed.user.scopes, ["Presence.Read.All", "offline_access"]);
    assert!(signed.offline);
    assert_eq!(code(d.poll(APP, "dc-1", &[], t(12))).1, 70000);
    assert_eq!(
        d.approve("UC1", "x", "y", t(12)),
        Err(ApprovalError::AlreadyDecided("UC1".into()))
    );
}

#[test]
fn polling_too_fast_is_slowed_down_by_five_seconds() {
    let mut d = Delegated::new(false);
    started(&mut d);
    assert_eq!(
        code(d.poll(APP, "dc-1", &[], t(0))).0,
        "authorization_pending"
    );
    assert_eq!(code(d.poll(APP, "dc-1", &[], t(3))).0, "slow_down");
    // The interval is now 10 s from the last poll.
    assert_eq!(code(d.poll(APP, "dc-1", &[], t(8))).0, "slow_down");
    assert_eq!(
        code(d.poll(APP, "dc-1", &[], t(30))).0,
        "authorization_pending"
    );
}

#[test]
fn declined_expired_and_unknown_codes_each_have_their_error() {
    let mut d = Delegated::new(false);
    started(&mut d);
    d.decline("UC1", t(1)).unwrap();
    assert_eq!(
        code(d.poll(APP, "dc-1", &[], t(10))),
        ("authorization_declined", 70000)
    );
    let mut d = Delegated::new(false);
    started(&mut d);
    assert_eq!(
        code(d.poll(APP, "dc-1", &[], t(900))),
        ("expired_token", 70019)
    );
    assert_eq!(
        d.approve("UC1", "u", "o", t(900)),
        Err(ApprovalError::Expired("UC1".into()))
    );
    assert_eq!(
        code(d.poll(APP, "nope", &[], t(1))),
        ("invalid_grant", 70000)
    );
    assert_eq!(
        d.approve("NOPE", "u", "o", t(1)),
        Err(ApprovalError::UnknownCode("NOPE".into()))
    );
}

#[test]
fn auto_approve_signs_in_each_service_account_in_turn() {
    let mut d = Delegated::new(true);
    let accounts = vec![
        ("svc-a@contoso.test".to_string(), "oid-a".to_string()),
        ("svc-b@contoso.test".to_string(), "oid-b".to_string()),
    ];
    d.start(APP, scopes(), "dc-1".into(), "UC1".into(), t(0));
    d.start(APP, scopes(), "dc-2".into(), "UC2".into(), t(0));
    assert_eq!(
        code(d.poll(APP, "dc-1", &accounts, t(1))).0,
        "authorization_pending"
    );
    assert_eq!(
        d.poll(APP, "dc-1", &accounts, t(10)).unwrap().user.oid,
        "oid-a"
    );
    assert_eq!(
        d.poll(APP, "dc-2", &accounts, t(10)).unwrap().user.oid,
        "oid-b"
    );
    // Without service accounts the code stays pending.
    d.start(APP, scopes(), "dc-3".into(), "UC3".into(), t(0));
    assert_eq!(
        code(d.poll(APP, "dc-3", &[], t(10))).0,
        "authorization_pending"
    );
}

fn signed_in_once(d: &mut Delegated) -> SignedIn {
    started(d);
    d.approve("UC1", "svc-a@contoso.test", "oid-a", t(0))
        .unwrap();
    let signed = d.poll(APP, "dc-1", &[], t(0)).unwrap();
    d.keep_refresh_token(APP, "rt-1".into(), &signed, t(0));
    signed
}

#[test]
fn every_refresh_token_stays_valid_until_revoked() {
    let mut d = Delegated::new(false);
    let signed = signed_in_once(&mut d);
    let again = d.refresh(APP, "rt-1", t(60)).unwrap();
    assert_eq!(again, signed);
    d.keep_refresh_token(APP, "rt-2".into(), &again, t(60));
    assert!(d.refresh(APP, "rt-1", t(120)).is_ok(), "the older one too");
    assert_eq!(d.revoke("SVC-A@contoso.test"), 2);
    for token in ["rt-1", "rt-2"] {
        assert_eq!(
            code(d.refresh(APP, token, t(180))),
            ("invalid_grant", 50173)
        );
    }
    assert_eq!(code(d.refresh(APP, "rt-x", t(180))).1, 9002313);
}

#[test]
fn faults_refuse_refreshes_until_restored() {
    let mut d = Delegated::new(false);
    signed_in_once(&mut d);
    d.set_fault("svc-a@contoso.test", AccountFault::Mfa);
    assert_eq!(
        code(d.refresh(APP, "rt-1", t(1))),
        ("interaction_required", 50076)
    );
    d.set_fault("svc-a@contoso.test", AccountFault::ConditionalAccess);
    assert_eq!(
        code(d.refresh(APP, "rt-1", t(1))),
        ("interaction_required", 53003)
    );
    d.restore("svc-a@contoso.test");
    assert!(d.refresh(APP, "rt-1", t(1)).is_ok());
}

#[test]
fn a_refresh_token_idle_for_90_days_expires() {
    let mut d = Delegated::new(false);
    signed_in_once(&mut d);
    let day = 24 * 3600;
    assert!(d.refresh(APP, "rt-1", t(89 * day)).is_ok());
    assert_eq!(
        code(d.refresh(APP, "rt-1", t(90 * day))),
        ("invalid_grant", 700082)
    );
    assert_eq!(code(d.refresh("other-app", "rt-1", t(1))).1, 70000);
}

proptest! {
    #[test]
    fn any_scope_text_is_read_or_refused_without_panic(text in ".{0,80}") {
        if let Ok(scopes) = parse_scopes(&text, HOST) {
            prop_assert!(!scopes.is_empty());
        }
    }
}

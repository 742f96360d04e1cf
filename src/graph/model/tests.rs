use proptest::prelude::*;

use super::*;
use crate::presence::{Activity, Availability};

/// A documented payload from `../shared/graph/examples/`, or `None` when
/// `../shared` is absent (and the test says it was skipped).
pub(crate) fn example(name: &str) -> Option<String> {
    crate::shared_fixtures::shared_text(&format!("graph/examples/{name}"))
}

#[test]
fn documented_presence_reads_parse_as_entity_or_collection() {
    let cases = [
        (
            "presence-get__example1-get-your-presence__response.json",
            vec![(
                "fa8bf3dc-eca7-46b7-bad1-db199b62afc3",
                "Available/Available",
            )],
        ),
        (
            "presence-get__example2-get-user-presence__response.json",
            vec![(
                "66825e03-7ef5-42da-9069-724602c31f6b",
                "DoNotDisturb/Presenting",
            )],
        ),
        (
            "presence-get__example3-get-user-presences__response.json",
            vec![("dc74d9bb-6afe-433d-8eaa-e39d80d3a647", "Away/BeRightBack")],
        ),
        (
            "cloudcommunications-getpresencesbyuserid__get-presence-multiple-users__response.json",
            vec![
                ("fa8bf3dc-eca7-46b7-bad1-db199b62afc3", "Busy/InAMeeting"),
                ("66825e03-7ef5-42da-9069-724602c31f6b", "Away/Away"),
            ],
        ),
        (
            "resource-presence__json-representation__template.json",
            vec![("string", "string/string")],
        ),
    ];
    for (file, expected) in cases {
        let Some(text) = example(file) else { return };
        let list = PresenceList::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let got: Vec<(String, String)> = list
            .presences
            .iter()
            .map(|p| (p.id.clone(), p.presence.to_string()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        assert_eq!(got, expected, "{file}");
        assert_eq!(list.skipped, 0);
    }
}

#[test]
fn documented_presence_with_status_message_and_out_of_office() {
    let Some(text) = example(
        "presence-setstatusmessage__example3-setstatusmessage-another-user-get-presence__response.json",
    ) else {
        return;
    };
    let list = PresenceList::parse(text.as_bytes()).unwrap();
    let p = &list.presences[0];
    assert_eq!(
        p.out_of_office.as_ref().unwrap().is_out_of_office,
        Some(false)
    );
    let message = p.status_message.as_ref().unwrap().message.as_ref().unwrap();
    assert_eq!(message.content.as_deref(), Some("Hey I am available now"));
}

#[test]
fn documented_token_and_error_bodies_parse() {
    if let Some(text) = example("auth-v2-service__token-response.json") {
        let token: TokenResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(token.expires_in, 3599);
        assert_eq!(format!("{:?}", token.access_token), "<redacted>");
    }
    if let Some(text) = example("errors__example-error-response.json") {
        let body: GraphErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(body.error.code.as_deref(), Some("invalidRange"));
        assert_eq!(
            body.error.inner_error.unwrap().request_id.as_deref(),
            Some("request-id")
        );
    }
    if let Some(text) = example("throttling__sample-429-response__body.json") {
        let body: GraphErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(body.error.code.as_deref(), Some("TooManyRequests"));
        assert_eq!(
            body.error.inner_error.unwrap().request_id.as_deref(),
            Some("94fb3b52-452a-4535-a601-69e0a90e3aa2")
        );
    }
}

#[test]
fn documented_delta_pages_parse() {
    for (file, users) in [
        ("user-delta__example1-user_delta__response.json", 1),
        // The docs' $select examples leave out the id: such items cannot be
        // tracked, so they are counted, not kept.
        ("user-delta__example2-user_delta_select__response.json", 0),
        ("user-delta__example3-user_delta_minimal__response.json", 0),
    ] {
        let Some(text) = example(file) else { return };
        let page = UserPage::parse(text.as_bytes()).unwrap();
        assert_eq!(page.users.len(), users, "{file}");
        assert_eq!(page.skipped, 1 - users, "{file}");
        assert!(page.next_link.as_deref().unwrap().contains("$skiptoken="));
        assert_eq!(page.delta_link, None);
    }
    let Some(text) = example("user-delta__example1-user_delta__response.json") else {
        return;
    };
    let user = &UserPage::parse(text.as_bytes()).unwrap().users[0];
    assert_eq!(user.id, "id-value");
    assert_eq!(user.user_principal_name(), Some("userPrincipalName-value"));
    assert_eq!(user.business_phones(), ["businessPhones-value"]);
    assert_eq!(user.has_teams(), None, "no plans in the payload: unknown");
}

#[test]
fn presence_values_are_case_insensitive_and_unknown_ones_kept() {
    let list = PresenceList::parse(
        br#"{"value":[
            {"id":"a","availability":"busy","activity":"inACall","sequenceNumber":"C1"},
            {"id":"b","availability":"Focusing","activity":"DeepWork"},
            {"id":"c"},
            {"availability":"Busy"},
            {"id":"d","availability":7}
        ]}"#,
    )
    .unwrap();
    assert_eq!(list.skipped, 2);
    let [a, b, c] = &list.presences[..] else {
        panic!("{list:?}")
    };
    assert_eq!(
        a.presence,
        Presence::new(Availability::Busy, Activity::InACall)
    );
    assert_eq!(a.sequence_number.as_deref(), Some("C1"));
    assert_eq!(b.presence.to_string(), "Focusing/DeepWork");
    assert_eq!(c.presence.to_string(), "PresenceUnknown/PresenceUnknown");
}

#[test]
fn both_spellings_of_inner_error_are_read() {
    for key in ["innerError", "innererror"] {
        let text = format!(
            r#"{{"error":{{"code":"x","message":"m","{key}":{{"request-id":"r","date":"d"}}}}}}"#
        );
        let body: GraphErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(
            body.error.inner_error.unwrap().request_id.as_deref(),
            Some("r"),
            "{key}"
        );
    }
}

#[test]
fn token_lifetimes_may_be_strings() {
    let token: TokenResponse =
        serde_json::from_str(r#"{"token_type":"Bearer","expires_in":"3599","access_token":"t"}"#)
            .unwrap();
    assert_eq!(token.expires_in, 3599);
}

#[test]
fn teams_and_teams_phone_come_from_enabled_plans() {
    let user: User = serde_json::from_value(serde_json::json!({
        "id": "u",
        "assignedPlans": [
            {"capabilityStatus": "Enabled", "service": "TeamspaceAPI", "servicePlanId": "4fa4026d-ce74-4962-a151-8e96d57ea8e4"},
            {"capabilityStatus": "Deleted", "service": "MicrosoftCommunicationsOnline", "servicePlanId": TEAMS_PHONE_PLAN_ID},
        ]
    }))
    .unwrap();
    assert_eq!(user.has_teams(), Some(true));
    assert_eq!(user.has_teams_phone(), Some(false));
    let phone: User = serde_json::from_value(serde_json::json!({
        "id": "u",
        "assignedPlans": [{"capabilityStatus": "Enabled", "servicePlanId": "4828C8EC-DC2E-4779-B502-87AC9CE28AB7"}]
    }))
    .unwrap();
    assert_eq!(phone.has_teams(), Some(false));
    assert_eq!(phone.has_teams_phone(), Some(true));
    let none: User =
        serde_json::from_value(serde_json::json!({"id": "u", "assignedPlans": null})).unwrap();
    assert_eq!(none.has_teams(), Some(false));
}

#[test]
fn a_delta_item_changes_only_what_it_carries() {
    let mut known: User = serde_json::from_value(serde_json::json!({
        "id": "u", "displayName": "Ada", "mail": "ada@contoso.example",
        "mobilePhone": "+1 555 0100", "businessPhones": ["+1 555 0101"]
    }))
    .unwrap();
    let delta: User = serde_json::from_value(serde_json::json!({
        "id": "u", "displayName": "Ada L.", "mobilePhone": null
    }))
    .unwrap();
    known.merge(delta);
    assert_eq!(known.display_name(), Some("Ada L."));
    assert_eq!(known.mail(), Some("ada@contoso.example"));
    assert_eq!(known.mobile_phone(), None, "null clears");
    assert_eq!(known.business_phones(), ["+1 555 0101"]);
    let removed: User = serde_json::from_value(serde_json::json!({
        "id": "u", "@removed": {"reason": "changed"}
    }))
    .unwrap();
    assert_eq!(removed.removed.unwrap().reason.as_deref(), Some("changed"));
}

#[test]
fn request_bodies_have_graphs_field_names() {
    let body = serde_json::to_value(SetPresenceRequest {
        session_id: "s".into(),
        availability: "Busy".into(),
        activity: "InACall".into(),
        expiration_duration: "PT1H".into(),
    })
    .unwrap();
    assert_eq!(
        body,
        serde_json::json!({"sessionId":"s","availability":"Busy","activity":"InACall","expirationDuration":"PT1H"})
    );
    if let Some(text) = example("presence-setpresence__set-presence__request.json") {
        let documented: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&body), keys(&documented));
    }
    let preferred = serde_json::to_value(SetPreferredRequest {
        availability: "DoNotDisturb".into(),
        activity: "DoNotDisturb".into(),
        expiration_duration: None,
    })
    .unwrap();
    assert!(preferred.get("expirationDuration").is_none());
}

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        // Shapes close to Graph's, with random holes and types.
        (any::<bool>(), "[a-zA-Z]{0,12}", any::<i64>(), "[@a-z.]{0,16}").prop_map(|(many, word, n, key)| {
            let item = serde_json::json!({"id": word, "availability": n, "activity": word, key.clone(): [n],
                "assignedPlans": [{"capabilityStatus": word}], "@removed": n, "businessPhones": word});
            let v = if many { serde_json::json!({"value": [item, n], key: word}) } else { item };
            v.to_string().into_bytes()
        }),
    ]
}

proptest! {
    #[test]
    fn reading_anything_never_panics(bytes in jsonish()) {
        let _ = PresenceList::parse(&bytes);
        let _ = UserPage::parse(&bytes);
        let _ = serde_json::from_slice::<GraphErrorBody>(&bytes);
        let _ = serde_json::from_slice::<TokenErrorBody>(&bytes);
        let _ = serde_json::from_slice::<TokenResponse>(&bytes);
        if let Ok(page) = UserPage::parse(&bytes) {
            for u in page.users {
                let _ = (u.has_teams(), u.has_teams_phone(), u.business_phones().len());
            }
        }
    }
}

use proptest::prelude::*;

use super::*;

const APP: &str = "app-guid";

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + secs)
}

fn caller(oid: Option<&str>) -> Caller {
    Caller {
        application_id: APP.into(),
        user_oid: oid.map(str::to_string),
    }
}

fn new(resource: &str) -> NewSubscription {
    NewSubscription {
        change_type: "updated".into(),
        notification_url: "https://example.test/n".into(),
        lifecycle_url: Some("https://example.test/l".into()),
        resource: resource.into(),
        expires_at: Some(t(3000)),
        client_state: Some("secret".into()),
        ..NewSubscription::default()
    }
}

fn check(
    subs: &mut Subscriptions,
    who: &Caller,
    request: NewSubscription,
) -> Result<Checked, SubscriptionError> {
    subs.check_new(
        who,
        request,
        format!("sub-{}", subs.all(t(0)).count()),
        |id| id.starts_with('u'),
        |_| Ok(()),
        t(0),
    )
}

#[test]
fn resources_read_one_id_or_a_filter_list() {
    assert_eq!(
        parse_resource("/communications/presences?$filter=id in ('u1', 'u2','u1')").unwrap(),
        ["u1", "u2"]
    );
    assert_eq!(
        parse_resource("communications/presences/u9").unwrap(),
        ["u9"]
    );
    for bad in [
        "/users/u1/presence",
        "/communications/presences",
        "/communications/presences?$filter=id eq 'u1'",
        "/communications/presences?$filter=id in ('u1',)",
        "/communications/presences?$filter=id in (u1)",
    ] {
        assert!(parse_resource(bad).is_err(), "{bad}");
    }
}

#[test]
fn every_create_rule_refuses_with_its_error() {
    let mut subs = Subscriptions::default();
    let me = caller(Some("oid-1"));
    let one = "/communications/presences/u1";
    assert_eq!(
        check(&mut subs, &caller(None), new(one)),
        Err(SubscriptionError::AppOnly)
    );
    let many: Vec<String> = (0..651).map(|i| format!("'u{i}'")).collect();
    let too_many = format!(
        "/communications/presences?$filter=id in ({})",
        many.join(",")
    );
    assert!(matches!(
        check(&mut subs, &me, new(&too_many)),
        Err(SubscriptionError::BadRequest(text)) if text.contains("651")
    ));
    assert_eq!(
        check(&mut subs, &me, new("/communications/presences/x1")),
        Err(SubscriptionError::UnknownUsers(vec!["x1".into()]))
    );
    for expiry in [None, Some(t(0)), Some(t(3600 + 61))] {
        let request = NewSubscription {
            expires_at: expiry,
            ..new(one)
        };
        assert!(matches!(
            check(&mut subs, &me, request),
            Err(SubscriptionError::BadRequest(_))
        ));
    }
    let rich = NewSubscription {
        include_resource_data: true,
        ..new(one)
    };
    assert!(matches!(
        check(&mut subs, &me, rich),
        Err(SubscriptionError::BadRequest(text)) if text.contains("encryptionCertificate")
    ));
    let checked = check(&mut subs, &me, new(one)).unwrap();
    subs.insert(checked, t(0)).unwrap();
    assert!(matches!(
        check(&mut subs, &me, new(one)),
        Err(SubscriptionError::Conflict(_))
    ));
    // Another signed-in user of the same app may have their own.
    assert!(check(&mut subs, &caller(Some("oid-2")), new(one)).is_ok());
}

#[test]
fn the_write_quota_is_per_app_per_twenty_seconds() {
    let mut subs = Subscriptions::default();
    for _ in 0..WRITE_QUOTA {
        subs.admit_write(APP, t(0)).unwrap();
    }
    assert_eq!(subs.admit_write(APP, t(19)), Err(SubscriptionError::Quota));
    assert!(subs.admit_write("other", t(19)).is_ok());
    assert!(subs.admit_write(APP, t(20)).is_ok());
}

#[test]
fn expired_subscriptions_are_gone_and_renewal_moves_the_expiry() {
    let mut subs = Subscriptions::default();
    let me = caller(Some("oid-1"));
    let checked = check(&mut subs, &me, new("/communications/presences/u1")).unwrap();
    let id = subs.insert(checked, t(0)).unwrap().id;
    assert_eq!(subs.list(&me, t(10)).len(), 1);
    assert!(subs.get(&caller(Some("oid-2")), &id, t(10)).is_err());
    let renewed = subs.renew(&me, &id, Some(t(3000 + 1800)), t(1800)).unwrap();
    assert_eq!(renewed.expires_at, t(4800));
    assert_eq!(subs.list(&me, t(4799)).len(), 1);
    assert!(subs.list(&me, t(4800)).is_empty());
    assert_eq!(
        subs.get(&me, &id, t(4800)),
        Err(SubscriptionError::NotFound(id.clone()))
    );
    // The user may subscribe again once the old one is gone.
    assert!(check(&mut subs, &me, new("/communications/presences/u1")).is_ok());
}

#[test]
fn a_revoked_creator_loses_every_subscription() {
    let mut subs = Subscriptions::default();
    let me = caller(Some("oid-1"));
    let checked = check(&mut subs, &me, new("/communications/presences/u1")).unwrap();
    subs.insert(checked, t(0)).unwrap();
    assert_eq!(subs.remove_by_creator("OID-1").len(), 1);
    assert!(subs.list(&me, t(1)).is_empty());
}

proptest! {
    #[test]
    fn any_resource_text_is_read_or_refused_without_panic(text in ".{0,120}") {
        if let Ok(ids) = parse_resource(&text) {
            prop_assert!(!ids.is_empty());
            prop_assert!(ids.iter().all(|id| !id.is_empty() && !id.contains('\'')));
        }
    }

    #[test]
    fn a_written_filter_reads_back(ids in proptest::collection::vec("[a-f0-9-]{1,36}", 1..20)) {
        let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
        let resource = format!("/communications/presences?$filter=id in ({})", list.join(", "));
        let mut unique: Vec<String> = Vec::new();
        for id in ids {
            if !unique.iter().any(|u| u.eq_ignore_ascii_case(&id)) {
                unique.push(id);
            }
        }
        prop_assert_eq!(parse_resource(&resource).unwrap(), unique);
    }
}

//! One sample of every event type with the `data` it must serialize to:
//! renaming a payload field, or changing its shape, fails here. Each sample
//! also conforms to its type's schema in the OpenAPI document.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::wire::{PresenceOut, SetBy, TargetOut};

use super::*;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
}

fn presence(availability: &str, activity: &str) -> PresenceOut {
    PresenceOut {
        availability: availability.into(),
        activity: activity.into(),
    }
}

fn cc() -> Vec<(EventData, Value)> {
    vec![
        (
            EventData::CcStatusRequested(StatusRequest::Sync(SyncRequest {
                status: "Meeting".into(),
                kind: SyncRequestKind::Rule,
                reason: Some("Teams shows Busy/InAMeeting".into()),
                teams_presence: Some(presence("Busy", "InAMeeting")),
            })),
            json!({"status": "Meeting", "kind": "rule", "reason": "Teams shows Busy/InAMeeting",
                "teams_presence": {"availability": "Busy", "activity": "InAMeeting"}}),
        ),
        (
            EventData::CcStatusRequested(StatusRequest::Sync(SyncRequest {
                status: "Available".into(),
                kind: SyncRequestKind::Restore,
                reason: None,
                teams_presence: None,
            })),
            json!({"status": "Available", "kind": "restore", "reason": null, "teams_presence": null}),
        ),
        (
            EventData::CcStatusRequested(StatusRequest::Routing(RoutingRequest {
                status: "OnContact".into(),
                kind: RoutingRequestKind::Routing,
                reason: "routing: contact `c1`".into(),
                contact: "c1".into(),
            })),
            json!({"status": "OnContact", "kind": "routing", "reason": "routing: contact `c1`",
                "contact": "c1"}),
        ),
        (
            EventData::CcStatusReported(StatusReported {
                status: "Lunch".into(),
                previous_status: Some("Available".into()),
                set_by: SetBy::Agent,
                at: at(0),
            }),
            json!({"status": "Lunch", "previous_status": "Available", "set_by": "agent",
                "at": "2023-11-14T22:13:20Z"}),
        ),
        (
            EventData::CcStatusNotInProfile(NotInProfile {
                status: "Training".into(),
                profile: Some("sales".into()),
                teams_target: TargetOut {
                    action: "set".into(),
                    presence: Some(presence("Away", "Away")),
                },
            }),
            json!({"status": "Training", "profile": "sales", "teams_target":
                {"action": "set", "presence": {"availability": "Away", "activity": "Away"}}}),
        ),
        (
            EventData::CcStatusBackInProfile(BackInProfile {
                status: "Training".into(),
                profile: None,
            }),
            json!({"status": "Training", "profile": null}),
        ),
    ]
}

fn teams() -> Vec<(EventData, Value)> {
    vec![
        (
            EventData::TeamsPresenceChanged(PresenceChanged {
                presence: presence("Available", "Available"),
            }),
            json!({"presence": {"availability": "Available", "activity": "Available"}}),
        ),
        (
            EventData::TeamsWritten(PresenceWritten {
                action: WriteAction::Set,
                presence: Some(presence("Busy", "InACall")),
            }),
            json!({"action": "set", "presence": {"availability": "Busy", "activity": "InACall"}}),
        ),
        (
            EventData::TeamsWritten(PresenceWritten {
                action: WriteAction::Clear,
                presence: None,
            }),
            json!({"action": "clear", "presence": null}),
        ),
    ]
}

fn agent() -> Vec<(EventData, Value)> {
    vec![
        (
            EventData::AgentRoutableChanged(RoutableChanged {
                routable: false,
                not_routable_because: vec!["not linked to a Teams user".into()],
            }),
            json!({"routable": false, "not_routable_because": ["not linked to a Teams user"]}),
        ),
        (
            EventData::AgentUpdated(AgentUpdated { created: true }),
            json!({"created": true}),
        ),
        (
            EventData::AgentLinked(AgentLinked {
                teams_user_id: "u-1".into(),
            }),
            json!({"teams_user_id": "u-1"}),
        ),
        (
            EventData::AgentLinkConflict(LinkConflict {
                teams_user: "ann@contoso.example".into(),
                teams_user_id: "u-1".into(),
                held_by: "a0".into(),
            }),
            json!({"teams_user": "ann@contoso.example", "teams_user_id": "u-1", "held_by": "a0"}),
        ),
        (EventData::AgentDeleted(NoData), Value::Null),
    ]
}

fn sync() -> Vec<(EventData, Value)> {
    let mismatch = || TeamsMismatch {
        expected: presence("Busy", "InACall"),
        shown: Some(presence("Available", "Available")),
    };
    let mismatch_json = json!({"expected": {"availability": "Busy", "activity": "InACall"},
        "shown": {"availability": "Available", "activity": "Available"}});
    vec![
        (
            EventData::SyncLoopSuspended(LoopSuspended {
                flows: vec![SyncFlow::CcToTeams, SyncFlow::TeamsToCc],
                until: at(300),
                changes: 12,
            }),
            json!({"flows": ["cc_to_teams", "teams_to_cc"], "until": "2023-11-14T22:18:20Z",
                "changes": 12}),
        ),
        (EventData::SyncLoopResumed(NoData), Value::Null),
        (
            EventData::SyncTeamsOverrideDetected(mismatch()),
            mismatch_json.clone(),
        ),
        (
            EventData::SyncTeamsOverrideDetected(TeamsMismatch {
                shown: None,
                ..mismatch()
            }),
            json!({"expected": {"availability": "Busy", "activity": "InACall"}, "shown": null}),
        ),
        (EventData::SyncTeamsOverrideCleared(NoData), Value::Null),
        (EventData::SyncTeamsOutranked(mismatch()), mismatch_json),
        (
            EventData::SyncWriteFailed(WriteFailed {
                message: "Graph answered 403".into(),
            }),
            json!({"message": "Graph answered 403"}),
        ),
    ]
}

fn mappings() -> Vec<(EventData, Value)> {
    vec![(
        EventData::MappingsReloaded(MappingsReloaded {
            profiles: vec!["default".into(), "sales".into()],
            statuses_not_in_profile: vec![HeldStatus {
                agent_id: "a1".into(),
                status: Some("Training".into()),
                profile: "sales".into(),
            }],
        }),
        json!({"profiles": ["default", "sales"], "statuses_not_in_profile":
            [{"agent_id": "a1", "status": "Training", "profile": "sales"}]}),
    )]
}

fn routing() -> Vec<(EventData, Value)> {
    let in_queue = || ContactInQueue {
        contact: "c1".into(),
        queue: "support".into(),
    };
    let in_queue_json = json!({"contact": "c1", "queue": "support"});
    vec![
        (
            EventData::RoutingQueued(Queued {
                contact: "c1".into(),
                queue: "support".into(),
                priority: 5,
                data: json!({"caller": "+331"}),
            }),
            json!({"contact": "c1", "queue": "support", "priority": 5, "data": {"caller": "+331"}}),
        ),
        (
            EventData::RoutingOffered(Offered {
                contact: "c1".into(),
                queue: "support".into(),
                expires: at(20),
                data: Value::Null,
                teams_user_id: Some("u-1".into()),
                teams_upn: Some("ann@contoso.example".into()),
                phone: None,
            }),
            json!({"contact": "c1", "queue": "support", "expires": "2023-11-14T22:13:40Z",
                "data": null, "teams_user_id": "u-1", "teams_upn": "ann@contoso.example",
                "phone": null}),
        ),
        (
            EventData::RoutingAccepted(in_queue()),
            in_queue_json.clone(),
        ),
        (
            EventData::RoutingDeclined(in_queue()),
            in_queue_json.clone(),
        ),
        (EventData::RoutingRona(in_queue()), in_queue_json),
        (
            EventData::RoutingOfferWithdrawn(OfferWithdrawn {
                contact: "c1".into(),
                queue: "support".into(),
                reason: crate::routing::WithdrawReason::CcStatusNotRoutable.into(),
            }),
            json!({"contact": "c1", "queue": "support", "reason": "cc_status_not_routable"}),
        ),
        (
            EventData::RoutingCompleted(Completed {
                contact: "c1".into(),
                queue: "support".into(),
                wrap_up_until: at(60),
            }),
            json!({"contact": "c1", "queue": "support", "wrap_up_until": "2023-11-14T22:14:20Z"}),
        ),
        (
            EventData::RoutingAbandoned(Abandoned {
                contact: "c1".into(),
                queue: "support".into(),
                reason: "caller".into(),
            }),
            json!({"contact": "c1", "queue": "support", "reason": "caller"}),
        ),
        (
            EventData::RoutingOverflow(Overflow::ToQueue(OverflowToQueue {
                contact: "c1".into(),
                from_queue: "support".into(),
                waited_seconds: 90.5,
                data: json!({}),
                to_queue: "backup".into(),
            })),
            json!({"contact": "c1", "from_queue": "support", "waited_seconds": 90.5, "data": {},
                "to_queue": "backup"}),
        ),
        (
            EventData::RoutingOverflow(Overflow::ToTeamsUsers(OverflowToTeamsUsers {
                contact: "c1".into(),
                from_queue: "support".into(),
                waited_seconds: 120.0,
                data: Value::Null,
                teams_users: vec![DialTarget {
                    teams_user: "bob@contoso.example".into(),
                    teams_user_id: Some("u-2".into()),
                    upn: Some("bob@contoso.example".into()),
                    display_name: Some("Bob".into()),
                    phone: Some("+33100".into()),
                }],
                number: Some("+33100".into()),
            })),
            json!({"contact": "c1", "from_queue": "support", "waited_seconds": 120.0, "data": null,
                "teams_users": [{"teams_user": "bob@contoso.example", "teams_user_id": "u-2",
                    "upn": "bob@contoso.example", "display_name": "Bob", "phone": "+33100"}],
                "number": "+33100"}),
        ),
        (
            EventData::RoutingAgentPaused(AgentPaused { misses: 3 }),
            json!({"misses": 3}),
        ),
        (EventData::RoutingAgentResumed(NoData), Value::Null),
    ]
}

fn assert_golden(samples: Vec<(EventData, Value)>) {
    for (sample, golden) in samples {
        assert_eq!(sample.to_data(), golden, "{}", sample.kind());
    }
}

#[test]
fn cc_events_serialize_to_their_golden_data() {
    assert_golden(cc());
}

#[test]
fn teams_events_serialize_to_their_golden_data() {
    assert_golden(teams());
}

#[test]
fn agent_events_serialize_to_their_golden_data() {
    assert_golden(agent());
}

#[test]
fn sync_events_serialize_to_their_golden_data() {
    assert_golden(sync());
}

#[test]
fn mappings_events_serialize_to_their_golden_data() {
    assert_golden(mappings());
}

#[test]
fn routing_events_serialize_to_their_golden_data() {
    assert_golden(routing());
}

fn all() -> Vec<(EventData, Value)> {
    [cc(), teams(), agent(), sync(), mappings(), routing()].concat()
}

#[test]
fn every_type_has_a_golden_sample() {
    let mut covered: Vec<&str> = all().iter().map(|(e, _)| e.kind()).collect();
    covered.sort_unstable();
    covered.dedup();
    let mut want = kind::ALL.to_vec();
    want.sort_unstable();
    assert_eq!(covered, want);
}

#[test]
fn new_event_takes_the_type_and_data_from_the_variant() {
    let e = NewEvent::new(
        at(0),
        Some("a1".into()),
        EventData::AgentUpdated(AgentUpdated { created: false }),
    );
    assert_eq!(e.kind, kind::AGENT_UPDATED);
    assert_eq!(e.data, json!({"created": false}));
    assert_eq!(e.agent_id.as_deref(), Some("a1"));
}

/// Checks `value` against `schema` (the event schemas hold no `$ref`).
fn problems(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    crate::api::tests::schema::check(&Value::Null, schema, value, at, out);
}

#[test]
fn every_golden_sample_conforms_to_its_schema() {
    let schemas: std::collections::BTreeMap<&str, Value> =
        EventData::schemas().into_iter().collect();
    for (sample, golden) in all() {
        let mut found = Vec::new();
        problems(&schemas[sample.kind()], &golden, sample.kind(), &mut found);
        assert!(found.is_empty(), "{found:#?}");
    }
}

#[test]
fn a_schema_refuses_a_renamed_field() {
    let schemas: std::collections::BTreeMap<&str, Value> =
        EventData::schemas().into_iter().collect();
    let mut found = Vec::new();
    problems(
        &schemas[kind::AGENT_LINKED],
        &json!({"teams_user": "u-1"}),
        "data",
        &mut found,
    );
    assert_eq!(found.len(), 2, "{found:?}");
}

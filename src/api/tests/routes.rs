//! The route table, the router and the OpenAPI document agree.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::super::model::*;
use super::super::openapi::document;
use super::super::routes::{Auth, open_paths, served_routes};
use super::super::{ApiSettings, ROUTES, Shutdown};
use super::schema::{check, resolve};
use super::{Fake, TOKEN, time};
use crate::config::Secret;
use crate::events::{Event, NewEvent, kind};

fn listed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|route| (route.verb.as_str().to_string(), route.path.to_string()))
        .collect()
}

#[test]
fn routes_has_no_duplicates() {
    assert_eq!(listed().len(), ROUTES.len());
    let handlers: BTreeSet<String> = ROUTES
        .iter()
        .map(|route| format!("{:?}", route.handler))
        .collect();
    assert_eq!(handlers.len(), ROUTES.len(), "a handler on two routes");
    let ids: BTreeSet<&str> = ROUTES.iter().map(|route| route.doc.id).collect();
    assert_eq!(ids.len(), ROUTES.len(), "an operationId on two routes");
}

/// Probes, the scraper and the API description are open; every other route
/// needs the token, and one path has one auth decision whatever the method.
#[test]
fn only_probes_metrics_and_the_document_are_open() {
    let open: BTreeSet<&str> = open_paths().collect();
    assert_eq!(
        open,
        BTreeSet::from(["/healthz", "/readyz", "/metrics", "/v1/openapi.json"])
    );
    for route in ROUTES {
        assert_eq!(
            route.auth == Auth::Open,
            open.contains(route.path),
            "{} {}",
            route.verb.as_str(),
            route.path
        );
    }
}

#[test]
fn the_router_registers_exactly_routes() {
    let served = served_routes(
        Fake::new(4),
        ApiSettings {
            token: Secret::new(TOKEN),
            viewer_token: None,
            max_body_bytes: 1024,
            shutdown: Shutdown::new(),
            gate: None,
        },
    );
    let served_set: BTreeSet<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(served_set.len(), served.len(), "a route registered twice");
    assert_eq!(served_set, listed());
}

#[test]
fn openapi_describes_exactly_routes() {
    let document = document();
    let mut described = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let route = (method.to_ascii_uppercase(), path.clone());
            assert!(
                operation["operationId"].is_string(),
                "{route:?} has no operation"
            );
            assert!(operation["responses"].is_object(), "{route:?}");
            let open = open_paths().any(|open| open == path);
            assert_eq!(
                operation.get("security") == Some(&json!([])),
                open,
                "{route:?}: security says open = {}",
                !open
            );
            if path.contains("{agent_id}") {
                assert_eq!(
                    operation["parameters"][0]["$ref"], "#/components/parameters/AgentId",
                    "{route:?}"
                );
            }
            described.insert(route);
        }
    }
    assert_eq!(described, listed());
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
}

#[test]
fn openapi_refs_resolve() {
    let document = document();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(refs.len() > 20);
    for reference in refs {
        assert!(resolve(&document, &reference).is_some(), "{reference}");
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn openapi_event_types_are_every_kind() {
    let document = document();
    let types: Vec<&str> = document["components"]["schemas"]["Event"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(types, kind::ALL);
}

/// Every property the schema declares appears in `value` (a sample with every
/// optional part filled), so the schema has nothing the model lacks.
fn declared_properties_present(
    document: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    missing: &mut Vec<String>,
) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(document, reference).unwrap_or(&Value::Null),
        None => schema,
    };
    if let Some(Value::Array(options)) = schema.get("anyOf") {
        if !value.is_null() {
            for option in options
                .iter()
                .filter(|o| o.get("type") != Some(&json!("null")))
            {
                declared_properties_present(document, option, value, at, missing);
            }
        }
        return;
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (key, property) in properties {
            match object.get(key) {
                Some(item) => declared_properties_present(
                    document,
                    property,
                    item,
                    &format!("{at}.{key}"),
                    missing,
                ),
                None => missing.push(format!("{at}.{key}")),
            }
        }
    }
    if let (Some(item_schema), Some(items)) = (schema.get("items"), value.as_array()) {
        for item in items {
            declared_properties_present(document, item_schema, item, &format!("{at}[]"), missing);
        }
    }
}

fn full_agent() -> AgentOut {
    let at = time();
    let presence = PresenceOut {
        availability: "Busy".into(),
        activity: "InACall".into(),
    };
    let target = TargetOut {
        action: "set".into(),
        presence: Some(presence.clone()),
    };
    AgentOut {
        id: "a1".into(),
        teams_user: "a@contoso.example".into(),
        teams_user_id: Some("0000-guid".into()),
        upn: Some("a@contoso.example".into()),
        display_name: Some("Ann".into()),
        groups: vec!["sales".into()],
        skills: BTreeMap::from([("fr".to_string(), 80)]),
        phone: Some("+331234".into()),
        profile: "sales".into(),
        linked: true,
        link_conflict: Some(LinkConflictOut {
            teams_user_id: "8b081ef6-4792-4def-b2c9-c363a1bf41d5".into(),
            held_by: "a2".into(),
        }),
        cc: CcOut {
            status: Some("Busy".into()),
            in_profile: true,
            set_by: Some(SetBy::Agent),
            since: Some(at),
            routable: false,
            pending_until: Some(at),
            requested: Some(RequestedOut {
                status: "Lunch".into(),
                kind: "restore".into(),
                at,
            }),
        },
        teams: TeamsOut {
            presence: Some(presence),
            set_by: Some(SetBy::Daemon),
            since: Some(at),
            blocking: true,
            pending_until: Some(at),
            target: Some(target.clone()),
            written: Some(WrittenOut { target, at }),
        },
        routable: false,
        not_routable_because: vec!["in a call".into()],
        sync: SyncOut {
            debouncing_until: Some(at),
            suspended: Some(SuspendedOut {
                flows: vec!["cc_to_teams".into(), "teams_to_cc".into()],
                until: at,
            }),
            teams_override_since: Some(at),
            teams_outranked_since: None,
            write_in_flight: true,
            last_error: Some(ErrorAt {
                message: "429".into(),
                at,
            }),
            restore: Some(RestoreOut {
                rule: "meeting".into(),
                status: "Available".into(),
            }),
            last_decision: Some("held by debounce".into()),
            writes_held: Some("the app lacks Presence.ReadWrite.All".into()),
        },
        routing: crate::api::model::RoutingOut {
            eligible: false,
            not_eligible_because: vec!["in wrap-up".into()],
            capacity: 1,
            queues: vec![crate::api::model::QueueFitOut {
                queue: "sales".into(),
                position: Some(1),
                skills_match: false,
                missing_skills: vec![crate::api::model::MissingSkill {
                    skill: "fr".into(),
                    needed: 90,
                    has: 80,
                }],
            }],
            offered: Some("c1".into()),
            contacts: vec!["c0".into()],
            idle_since: at,
            wrap_up_until: Some(at),
            backoff_until: Some(at),
            paused_since: Some(at),
            misses: 2,
            contacts_today: 7,
            busy_today_seconds: 12.5,
        },
    }
}

fn empty_agent() -> AgentOut {
    let mut agent = full_agent();
    agent.teams_user_id = None;
    agent.upn = None;
    agent.display_name = None;
    agent.phone = None;
    agent.groups.clear();
    agent.skills.clear();
    agent.cc = CcOut {
        status: None,
        in_profile: true,
        set_by: None,
        since: None,
        routable: false,
        pending_until: None,
        requested: None,
    };
    agent.teams = TeamsOut {
        presence: None,
        set_by: None,
        since: None,
        blocking: false,
        pending_until: None,
        target: Some(TargetOut {
            action: "clear".into(),
            presence: None,
        }),
        written: None,
    };
    agent.sync = SyncOut {
        debouncing_until: None,
        suspended: None,
        teams_override_since: None,
        teams_outranked_since: None,
        write_in_flight: false,
        last_error: None,
        restore: None,
        last_decision: None,
        writes_held: None,
    };
    agent
}

#[test]
fn openapi_schemas_match_the_models() {
    let document = document();
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let full_upsert = AgentUpsert {
        teams_user: "a@contoso.example".into(),
        auto_link: true,
        display_name: Some("Ann".into()),
        groups: Some(vec!["sales".into()]),
        skills: Some(BTreeMap::from([("fr".to_string(), 80)])),
        phone: Some("+331234".into()),
        profile: Some("sales".into()),
        queues: Some(vec![crate::routing::Membership {
            queue: "sales".into(),
            position: Some(2),
        }]),
        capacity: Some(2),
    };
    let event = |kind: &str, agent_id: Option<&str>| {
        Event::committed(
            "s",
            9,
            NewEvent {
                kind: kind.into(),
                time: time(),
                agent_id: agent_id.map(str::to_string),
                data: json!({"x": 1}),
            },
        )
    };
    let mut samples: Vec<(&str, Value, bool)> = vec![
        (
            "AgentOut",
            serde_json::to_value(full_agent()).unwrap(),
            true,
        ),
        (
            "AgentOut",
            serde_json::to_value(empty_agent()).unwrap(),
            false,
        ),
        (
            "AgentList",
            serde_json::to_value(AgentList {
                agents: vec![full_agent()],
                page: Some(PageOut {
                    next_cursor: Some("a1".into()),
                    total: 7,
                }),
            })
            .unwrap(),
            true,
        ),
        (
            "AgentList",
            serde_json::to_value(AgentList {
                agents: vec![empty_agent()],
                page: None,
            })
            .unwrap(),
            false,
        ),
        (
            "AgentUpsert",
            serde_json::to_value(&full_upsert).unwrap(),
            true,
        ),
        ("AgentUpsert", json!({"teams_user": "u"}), false),
        (
            "StatusReport",
            serde_json::to_value(StatusReport {
                status: "Busy".into(),
                at: Some(time()),
            })
            .unwrap(),
            true,
        ),
        (
            "Readiness",
            serde_json::to_value(Readiness {
                ready: false,
                checks: vec![Check {
                    name: "store".into(),
                    ok: false,
                    detail: "locked".into(),
                }],
                tasks: vec![TaskOut {
                    name: "poller".into(),
                    state: "failed".into(),
                    detail: "token".into(),
                }],
                poll: Some(crate::api::model::PollOut {
                    round_seconds: 0.55,
                    users: 10_000,
                    reads_per_second: 29.0,
                    oldest_read_seconds: Some(0.8),
                    rate_limit: 48.4,
                }),
                directory_poll: Some(crate::api::model::PollOut {
                    round_seconds: 30.0,
                    users: 2_000,
                    reads_per_second: 0.1,
                    oldest_read_seconds: Some(12.5),
                    rate_limit: 48.4,
                }),
                permissions: Some(crate::api::model::PermissionsOut {
                    needed: vec!["Presence.Read.All".into(), "Presence.ReadWrite.All".into()],
                    granted: Some(vec!["Presence.Read.All".into()]),
                    missing: vec![crate::api::model::MissingPermissionOut {
                        permission: "Presence.ReadWrite.All".into(),
                        stops: vec!["cc_to_teams".into()],
                        fix: "grant admin consent".into(),
                    }],
                    consent_url: Some("https://login.example/t/adminconsent?client_id=c".into()),
                }),
                subscriptions: Some(subscriptions_sample()),
                cluster: Some(cluster_sample()),
            })
            .unwrap(),
            true,
        ),
        (
            "HealthReport",
            serde_json::to_value(crate::api::model::Health {
                ready: false,
                checks: vec![],
                tasks: vec![TaskOut {
                    name: "presence-poller".into(),
                    state: "degraded".into(),
                    detail: "Graph answered 503".into(),
                }],
                graph: crate::api::model::GraphAppOut {
                    tenant_id: "t".into(),
                    client_id: "c".into(),
                    auth: "certificate".into(),
                    login_base: "https://login.example".into(),
                    graph_base: "https://graph.example".into(),
                },
                poll: Some(crate::api::model::PollOut {
                    round_seconds: 2.65,
                    users: 50_000,
                    reads_per_second: 29.0,
                    oldest_read_seconds: Some(3.1),
                    rate_limit: 24.2,
                }),
                directory_poll: Some(crate::api::model::PollOut {
                    round_seconds: 30.0,
                    users: 40_000,
                    reads_per_second: 2.1,
                    oldest_read_seconds: Some(29.5),
                    rate_limit: 24.2,
                }),
                stats: Some(HealthStats {
                    graph_budget_per_30s: 1500,
                    graph_budget_in_use: 812,
                    graph_throttled_total: 3,
                    graph_failed_total: 1,
                    token_expires_in_seconds: Some(3100.0),
                    token_error: Some("cannot get a token from Entra".into()),
                    loop_suspensions_total: 2,
                    teams_overrides_total: 4,
                    outbox_depth: 9,
                }),
                permissions: Some(crate::api::model::PermissionsOut {
                    needed: vec!["User.Read.All".into()],
                    granted: None,
                    missing: vec![],
                    consent_url: Some("https://login.example/t/adminconsent?client_id=c".into()),
                }),
                subscriptions: Some(subscriptions_sample()),
                cluster: Some(cluster_sample()),
            })
            .unwrap(),
            true,
        ),
        (
            "DirectoryList",
            serde_json::to_value(crate::api::model::DirectoryList {
                users: vec![
                    crate::api::model::DirectoryUserOut {
                        id: "8b081ef6-4792-4def-b2c9-c363a1bf41d5".into(),
                        upn: "ann@contoso.example".into(),
                        display_name: "Ann Lee".into(),
                        mail: Some("ann@contoso.example".into()),
                        department: Some("Sales".into()),
                        job_title: None,
                        business_phones: vec!["+1 425 555 0100".into()],
                        mobile_phone: None,
                        direct_dial: Some("+14255550100".into()),
                        presence: Some(crate::api::model::PresenceOut {
                            availability: "Busy".into(),
                            activity: "InACall".into(),
                        }),
                        presence_since: Some(time()),
                        agent: Some("a1".into()),
                    },
                    crate::api::model::DirectoryUserOut {
                        id: "x".into(),
                        upn: "bo@contoso.example".into(),
                        display_name: "bo@contoso.example".into(),
                        mail: None,
                        department: None,
                        job_title: Some("Lead".into()),
                        business_phones: vec![],
                        mobile_phone: Some("0199".into()),
                        direct_dial: None,
                        presence: None,
                        presence_since: None,
                        agent: None,
                    },
                ],
                next_cursor: Some("ZDEKYQpi".into()),
                total: 7,
            })
            .unwrap(),
            true,
        ),
        (
            "BoardUpdate",
            serde_json::to_value(BoardUpdate {
                agents: vec![full_agent()],
                removed: vec!["gone".into()],
                resync: true,
                queues: Some(Vec::new()),
                health: Some(crate::api::model::Health {
                    ready: true,
                    checks: vec![],
                    tasks: vec![],
                    graph: crate::api::model::GraphAppOut {
                        tenant_id: "t".into(),
                        client_id: "c".into(),
                        auth: "client_secret".into(),
                        login_base: "https://login.example".into(),
                        graph_base: "https://graph.example".into(),
                    },
                    poll: None,
                    directory_poll: None,
                    stats: None,
                    permissions: None,
                    subscriptions: None,
                    cluster: None,
                }),
            })
            .unwrap(),
            false,
        ),
        ("BoardUpdate", json!({}), false),
        (
            "QueueList",
            serde_json::to_value(QueueList {
                queues: vec![QueueOut {
                    name: "sales".into(),
                    strategy: "longest-idle".into(),
                    priority: 5,
                    skills: BTreeMap::from([("fr".to_string(), 50)]),
                    offer_timeout_seconds: 30.0,
                    wrap_up_seconds: 5.0,
                    max_no_answer: 3,
                    miss_backoff_seconds: 10.0,
                    max_wait_seconds: Some(60.0),
                    overflow: Some(json!({"queue": "night"})),
                    waiting: 2,
                    longest_wait_seconds: Some(12.5),
                    agents: 4,
                    eligible_agents: 1,
                    offered: 1,
                    last_offered: Some("a1".into()),
                    totals: crate::routing::QueueTotals::default(),
                    completed_today: 7,
                }],
            })
            .unwrap(),
            true,
        ),
        (
            "ErrorBody",
            serde_json::to_value(
                crate::api::ApiError::bad_request("unknown_field", "no")
                    .with_field("x")
                    .body(),
            )
            .unwrap(),
            true,
        ),
        (
            "ErrorBody",
            serde_json::to_value(crate::api::ApiError::bad_request("c", "m").body()).unwrap(),
            false,
        ),
        ("Health", json!({"status": "ok"}), true),
        (
            "StreamGap",
            json!({"type": "stream.gap", "data": {"requested_since": 3, "first_available": 11}}),
            true,
        ),
        (
            "Event",
            serde_json::to_value(event(kind::CC_STATUS_REQUESTED, Some("a1"))).unwrap(),
            true,
        ),
    ];
    for kind in kind::ALL {
        samples.push((
            "Event",
            serde_json::to_value(event(kind, None)).unwrap(),
            false,
        ));
    }
    for (name, value, complete) in samples {
        let mut problems = Vec::new();
        check(&document, &schema(name), &value, name, &mut problems);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        if complete {
            let mut missing = Vec::new();
            declared_properties_present(&document, &schema(name), &value, name, &mut missing);
            assert!(
                missing.is_empty(),
                "{name}: the schema declares {missing:?}"
            );
        }
    }
}

#[test]
fn the_schema_check_can_fail() {
    let document = document();
    let mut agent = serde_json::to_value(full_agent()).unwrap();
    agent["cc"]["colour"] = json!("red");
    agent["teams"]["blocking"] = json!("yes");
    agent.as_object_mut().unwrap().remove("linked");
    let mut problems = Vec::new();
    check(
        &document,
        &json!({"$ref": "#/components/schemas/AgentOut"}),
        &agent,
        "AgentOut",
        &mut problems,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

/// A subscriptions section with every field set, for the schema checks.
fn cluster_sample() -> crate::api::model::ClusterOut {
    crate::api::model::ClusterOut {
        role: "standby".into(),
        node_id: "cc-sync-2".into(),
        tenant: "contoso".into(),
        lease_holder: Some(crate::api::model::LeaseHolderOut {
            node_id: "cc-sync-1".into(),
            api_url: "https://cc-sync-1.contoso.internal:8080".into(),
            since: time(),
        }),
        position: 812,
        log_last: Some(815),
        lag_records: 3,
        lag_seconds: 0.2,
        nats: crate::api::model::NatsOut {
            connected: true,
            server: Some("nats://10.0.0.11:4222".into()),
            error: Some("no answer from NATS within 5s".into()),
        },
        nodes: vec![crate::api::model::NodeOut {
            node_id: "cc-sync-1".into(),
            role: "active".into(),
            position: 815,
            api_url: "https://cc-sync-1.contoso.internal:8080".into(),
            at: time(),
        }],
        takeovers: 1,
        step_downs: 1,
        last_step_down: Some("another node took the lease".into()),
    }
}

fn subscriptions_sample() -> crate::api::model::SubscriptionsOut {
    crate::api::model::SubscriptionsOut {
        users_subscribed: 1_300,
        users_polled: 20,
        accounts_needed: 1,
        reconcile: Some(crate::api::model::PollOut {
            round_seconds: 60.0,
            users: 1_300,
            reads_per_second: 0.03,
            oldest_read_seconds: Some(41.0),
            rate_limit: 48.4,
        }),
        graph_reads_saved_per_minute: 300.0,
        notifications: crate::api::model::NotificationsOut {
            received_total: 120,
            applied_total: 117,
            duplicates_total: 2,
            rejected_total: 1,
            lifecycle_total: 0,
            last_delay_seconds: Some(1.2),
        },
        accounts: vec![crate::api::model::ServiceAccountOut {
            account: "svc-1@contoso.com".into(),
            state: "failed".into(),
            error: Some("the refresh token was revoked".into()),
            fix: Some("presence-sync login --config /etc/presence-sync/presence-sync.toml --account svc-1@contoso.com".into()),
            subscription: crate::api::model::SubscriptionOut {
                state: "account_failed".into(),
                watching: 0,
                assigned: 0,
                expires_at: Some(chrono::DateTime::UNIX_EPOCH),
                renew_at: Some(chrono::DateTime::UNIX_EPOCH),
                retry_at: Some(chrono::DateTime::UNIX_EPOCH),
                last_error: Some("Graph answered 401".into()),
            },
        }],
    }
}

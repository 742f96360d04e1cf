//! The client's presence and directory calls against a scripted peer.

use std::time::Duration;

use super::clock::testing::InstantClock;
use super::presence::iso8601_duration;
use super::testing::{CLIENT_ID, Peer, Reply, client, throttle};
use super::*;
use crate::presence::Presence;
use crate::sync::TeamsWrite;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i:04}")).collect()
}

fn presences_for(body: &serde_json::Value) -> String {
    let value: Vec<_> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| serde_json::json!({"id": id, "availability": "Available", "activity": "Available"}))
        .collect();
    serde_json::json!({ "value": value }).to_string()
}

#[tokio::test]
async fn presences_are_read_in_batches_of_at_most_650() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1.0/communications/getPresencesByUserId");
        Reply::ok(presences_for(&req.json()))
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let mut wanted = ids(1_400);
    wanted.push("user-0000".into()); // duplicates are asked for once
    let read = client.get_presences(&wanted).await.unwrap();
    assert_eq!(read.presences.len(), 1_400);
    let sizes: Vec<usize> = peer
        .graph_requests()
        .iter()
        .map(|r| r.json()["ids"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [650, 650, 100]);
}

#[tokio::test]
async fn a_400_on_a_batch_splits_it_down_to_the_refused_id() {
    // The peer refuses batches over 100 ids, and any batch holding "bad".
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        let body = req.json();
        let ids = body["ids"].as_array().unwrap();
        if ids.len() > 100 || ids.iter().any(|i| i == "bad") {
            Reply::graph_error(400, "BadRequest", "rid-400")
        } else {
            Reply::ok(presences_for(&body))
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let mut wanted = ids(300);
    wanted.insert(123, "bad".into());
    let read = client.get_presences(&wanted).await.unwrap();
    assert_eq!(read.presences.len(), 300);
    assert_eq!(read.refused.len(), 1);
    assert_eq!(read.refused[0].0, "bad");
    assert_eq!(read.refused[0].1.request_id(), Some("rid-400"));
    let mut got: Vec<&str> = read.presences.iter().map(|p| p.id.as_str()).collect();
    got.sort();
    let mut expected: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|i| *i != "bad")
        .collect();
    expected.sort();
    assert_eq!(got, expected, "every other id read exactly once");
    assert!(read.calls < 40, "{} calls", read.calls);
}

#[tokio::test]
async fn a_failure_that_is_not_about_the_ids_fails_the_read() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::graph_error(403, "Forbidden", "rid-403")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.get_presences(&ids(10)).await.unwrap_err();
    assert_eq!(error.status(), Some(403));
}

// A systematic bare 400 does not multiply one batch into 2n - 1 calls.
#[tokio::test]
async fn a_systematic_400_does_not_explode_a_batch() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::graph_error(400, "BadRequest", "rid-400")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let ids: Vec<String> = (0..650)
        .map(|i| format!("{i:08}-0000-0000-0000-000000000000"))
        .collect();
    let read = client.get_presences(&ids).await.unwrap();
    assert!(
        read.calls < 100,
        "{} calls for one 650-id batch",
        read.calls
    );
    // Every id is reported refused, with Graph's error, each once.
    assert!(read.presences.is_empty());
    let mut refused: Vec<&str> = read.refused.iter().map(|(id, _)| id.as_str()).collect();
    refused.sort();
    assert_eq!(refused, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        read.refused
            .iter()
            .all(|(_, e)| e.request_id() == Some("rid-400"))
    );
    assert_eq!(read.calls, peer.graph_requests().len());
}

#[tokio::test]
async fn a_systematic_400_in_one_batch_is_not_probed_again_in_the_next() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::graph_error(400, "BadRequest", "rid-400")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let read = client.get_presences(&ids(1_400)).await.unwrap();
    assert_eq!(read.refused.len(), 1_400);
    // About 13 calls to find the first batch's 400 systematic, then one
    // call for each of the two others.
    let later: Vec<usize> = peer
        .graph_requests()
        .iter()
        .map(|r| r.json()["ids"].as_array().unwrap().clone())
        .filter(|ids| ids[0].as_str().unwrap() >= "user-0650")
        .map(|ids| ids.len())
        .collect();
    assert_eq!(later, [650, 100]);
    assert!(read.calls <= 15, "{} calls", read.calls);
}

/// A peer that refuses (400) any batch holding one of `bad`.
async fn refusing(bad: &'static [&'static str]) -> Peer {
    Peer::start(move |req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        let body = req.json();
        let ids = body["ids"].as_array().unwrap();
        if ids.iter().any(|i| bad.iter().any(|b| i == b)) {
            Reply::graph_error(400, "BadRequest", "rid-400")
        } else {
            Reply::ok(presences_for(&body))
        }
    })
    .await
}

#[tokio::test]
async fn a_single_bad_id_among_650_is_isolated_and_the_rest_read() {
    for at in [0, 1, 324, 325, 649] {
        let peer = refusing(&["bad"]).await;
        let client = client(&peer, InstantClock::new(), throttle());
        let mut wanted = ids(649);
        wanted.insert(at, "bad".into());
        let read = client.get_presences(&wanted).await.unwrap();
        assert_eq!(read.presences.len(), 649, "bad at {at}");
        let refused: Vec<&str> = read.refused.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(refused, ["bad"], "bad at {at}");
        // About 2·log2(650) ≈ 19 calls.
        assert!(read.calls <= 21, "bad at {at}: {} calls", read.calls);
    }
}

#[tokio::test]
async fn two_bad_ids_side_by_side_are_not_taken_for_a_systematic_400() {
    let peer = refusing(&["bad-1", "bad-2"]).await;
    let client = client(&peer, InstantClock::new(), throttle());
    let mut wanted = ids(648);
    wanted.insert(0, "bad-2".into());
    wanted.insert(0, "bad-1".into());
    let read = client.get_presences(&wanted).await.unwrap();
    assert_eq!(read.presences.len(), 648);
    let refused: Vec<&str> = read.refused.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(refused, ["bad-1", "bad-2"]);
}

// A failure after some batches were read keeps what was read.
#[tokio::test]
async fn a_later_failure_keeps_what_was_read_and_reports_the_rest() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        let body = req.json();
        if body["ids"][0] == "user-0650" {
            Reply::graph_error(503, "serviceNotAvailable", "rid-503")
        } else {
            Reply::ok(presences_for(&body))
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let wanted = ids(1_400);
    let read = client.get_presences(&wanted).await.unwrap();
    assert_eq!(read.presences.len(), 650);
    let unread = read.unread.expect("the ids not read");
    assert_eq!(unread.error.status(), Some(503));
    assert_eq!(unread.error.request_id(), Some("rid-503"));
    assert_eq!(unread.ids, wanted[650..]);
    // The read stopped there: the third batch was not asked for.
    assert!(
        peer.graph_requests()
            .iter()
            .all(|r| r.json()["ids"][0] != "user-1300")
    );
}

#[tokio::test]
async fn writes_send_graphs_bodies_with_our_session() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::ok("")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let busy = Presence::parse_pair("Busy/InACall").unwrap();
    let dnd = Presence::parse_pair("DoNotDisturb/DoNotDisturb").unwrap();
    client
        .execute(
            "u 1",
            &TeamsWrite::SetSession {
                presence: busy.clone(),
                expiry: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    client
        .execute("u1", &TeamsWrite::ClearSession)
        .await
        .unwrap();
    client
        .execute("u1", &TeamsWrite::SetPreferred { presence: dnd })
        .await
        .unwrap();
    client
        .execute("u1", &TeamsWrite::ClearPreferred)
        .await
        .unwrap();
    // Graph refuses expiries outside PT5M..PT4H: they are kept inside.
    client
        .set_presence("u1", &busy, Duration::from_secs(60))
        .await
        .unwrap();
    let r = peer.graph_requests();
    assert_eq!(r[0].path, "/v1.0/users/u%201/presence/setPresence");
    assert_eq!(
        r[0].json(),
        serde_json::json!({"sessionId": CLIENT_ID, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"})
    );
    assert_eq!(r[1].path, "/v1.0/users/u1/presence/clearPresence");
    assert_eq!(r[1].json(), serde_json::json!({"sessionId": CLIENT_ID}));
    assert_eq!(
        r[2].path,
        "/v1.0/users/u1/presence/setUserPreferredPresence"
    );
    assert_eq!(
        r[2].json(),
        serde_json::json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb"})
    );
    assert_eq!(
        r[3].path,
        "/v1.0/users/u1/presence/clearUserPreferredPresence"
    );
    assert_eq!(r[3].json(), serde_json::json!({}));
    assert_eq!(r[4].json()["expirationDuration"], "PT5M");
}

#[tokio::test]
async fn clearing_a_session_that_is_not_there_is_fine() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::graph_error(404, "NotFound", "rid-404")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    client.clear_presence("u1").await.unwrap();
    let error = client.clear_preferred("u1").await.unwrap_err();
    assert_eq!(
        error.status(),
        Some(404),
        "only clearPresence treats 404 as done"
    );
}

#[test]
fn expiries_are_iso_8601_durations() {
    assert_eq!(iso8601_duration(Duration::from_secs(3600)), "PT1H");
    assert_eq!(iso8601_duration(Duration::from_secs(300)), "PT5M");
    assert_eq!(iso8601_duration(Duration::from_secs(5400)), "PT1H30M");
    assert_eq!(iso8601_duration(Duration::from_secs(3661)), "PT1H1M1S");
    assert_eq!(iso8601_duration(Duration::from_millis(1500)), "PT2S");
    assert_eq!(iso8601_duration(Duration::ZERO), "PT0S");
}

fn user(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "userPrincipalName": format!("{id}@contoso.example"),
        "assignedPlans": [{"capabilityStatus": "Enabled", "service": "TeamspaceAPI"}]})
}

#[tokio::test]
async fn users_are_listed_page_by_page() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        let base = format!("http://{}", req.header("host").unwrap());
        if req.query.contains("page=2") {
            Reply::ok(serde_json::json!({"value": [user("c")]}).to_string())
        } else {
            assert!(
                req.query.contains("%24top=999") || req.query.contains("$top=999"),
                "{}",
                req.query
            );
            assert!(req.query.contains("assignedPlans"), "{}", req.query);
            Reply::ok(
                serde_json::json!({"value": [user("a"), user("b"), {"no": "id"}],
                    "@odata.nextLink": format!("{base}/v1.0/users?page=2")})
                .to_string(),
            )
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let users = client.list_users().await.unwrap();
    let names: Vec<_> = users
        .iter()
        .map(|u| u.user_principal_name().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "a@contoso.example",
            "b@contoso.example",
            "c@contoso.example"
        ]
    );
    assert!(users.iter().all(|u| u.has_teams() == Some(true)));
}

#[tokio::test]
async fn a_paging_link_to_another_host_is_refused() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        Reply::ok(
            serde_json::json!({"value": [], "@odata.nextLink": "https://elsewhere.example/v1.0/users?x"})
                .to_string(),
        )
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.list_users().await.unwrap_err();
    assert!(matches!(error, GraphError::Url { .. }), "{error}");
}

#[tokio::test]
async fn delta_follows_pages_to_the_delta_link_and_reports_removals() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        let base = format!("http://{}/v1.0/users/delta", req.header("host").unwrap());
        if req.query.contains("deltatoken=expired") {
            return Reply::graph_error(410, "syncStateNotFound", "rid-410");
        }
        if req.query.contains("deltatoken=old") {
            return Reply::ok(
                serde_json::json!({"value": [
                    {"id": "a", "displayName": "Renamed"},
                    {"id": "b", "@removed": {"reason": "deleted"}}],
                    "@odata.deltaLink": format!("{base}?$deltatoken=new")})
                .to_string(),
            );
        }
        if req.query.contains("skiptoken=2") {
            return Reply::ok(
                serde_json::json!({"value": [user("b")], "@odata.deltaLink": format!("{base}?$deltatoken=old")})
                    .to_string(),
            );
        }
        Reply::ok(
            serde_json::json!({"value": [user("a")], "@odata.nextLink": format!("{base}?$skiptoken=2")})
                .to_string(),
        )
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let DeltaOutcome::Changes(first) = client.users_delta(None).await.unwrap() else {
        panic!("no changes")
    };
    assert_eq!(first.changed.len(), 2);
    assert!(first.delta_link.ends_with("deltatoken=old"));
    let DeltaOutcome::Changes(next) = client.users_delta(Some(&first.delta_link)).await.unwrap()
    else {
        panic!("no changes")
    };
    assert_eq!(next.changed.len(), 1);
    assert_eq!(next.changed[0].display_name(), Some("Renamed"));
    assert_eq!(
        next.changed[0].user_principal_name(),
        None,
        "not in the item: unchanged"
    );
    assert_eq!(next.removed, ["b"]);
    assert!(next.delta_link.ends_with("deltatoken=new"));
    let expired = first.delta_link.replace("old", "expired");
    let outcome = client.users_delta(Some(&expired)).await.unwrap();
    assert!(
        matches!(outcome, DeltaOutcome::ResyncRequired { .. }),
        "{outcome:?}"
    );
}

// A delta link stored under another Graph base (the simulator on a new
// port, a changed graph_base) means starting over, not an error.
#[tokio::test]
async fn a_stored_delta_link_for_another_base_requires_a_resync() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::ok(r#"{"value": [], "@odata.deltaLink": "x"}"#)
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let port: u16 = peer.base.rsplit(':').next().unwrap().parse().unwrap();
    let other_port = format!(
        "http://127.0.0.1:{}/v1.0/users/delta?$deltatoken=old",
        port.wrapping_add(1).max(1)
    );
    for stored in [
        other_port.as_str(),
        "https://graph.microsoft.us/v1.0/users/delta?$deltatoken=old",
        "not a link at all",
    ] {
        let outcome = client.users_delta(Some(stored)).await.unwrap();
        assert!(
            matches!(&outcome, DeltaOutcome::ResyncRequired { reason } if reason.contains(stored)),
            "{stored}: {outcome:?}"
        );
    }
    // Same host, but graph_base now has a path the link is not under.
    let mut config = testing::config(&peer.base);
    config.graph_base = format!("{}/graph", peer.base);
    let moved = GraphClient::builder(&config, Credential::Secret(crate::config::Secret::new("s")))
        .clock(InstantClock::new())
        .build()
        .unwrap();
    let stored = format!("{}/v1.0/users/delta?$deltatoken=old", peer.base);
    let outcome = moved.users_delta(Some(&stored)).await.unwrap();
    assert!(
        matches!(outcome, DeltaOutcome::ResyncRequired { .. }),
        "{outcome:?}"
    );
    assert!(peer.graph_requests().is_empty(), "no call, no token sent");
}

#[test]
fn bad_base_urls_are_refused_at_construction() {
    for base in ["not a url", "ftp://graph.example", "mailto:x@y"] {
        let mut config = testing::config("http://127.0.0.1:1");
        config.graph_base = base.into();
        let error = GraphClient::new(&config, Credential::Secret(crate::config::Secret::new("s")))
            .err()
            .unwrap();
        assert!(matches!(error, GraphError::Url { .. }), "{base}: {error}");
    }
}

/// Graph's 403 bodies as it sends them for a call the app's roles do not
/// allow: the directory's `Authorization_RequestDenied` with its sentence,
/// the presence service's `Forbidden` with an empty message. Each is read
/// as a missing permission, with the fix in the open summary, and is not
/// an outage of Graph.
#[tokio::test]
async fn graph_403_bodies_are_missing_permissions() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        let (code, message) =
            if req.path.starts_with("/v1.0/users") && !req.path.contains("presence") {
                (
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )
            } else {
                ("Forbidden", "")
            };
        Reply::new(
            403,
            serde_json::json!({"error": {"code": code, "message": message,
                "innerError": {"date": "2024-01-01T00:00:00", "request-id": "rid-403",
                    "client-request-id": "crid"}}})
            .to_string(),
        )
        .header("request-id", "rid-403")
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let users = client.list_users().await.unwrap_err();
    assert_eq!(users.status(), Some(403));
    assert_eq!(users.code(), Some("Authorization_RequestDenied"));
    assert!(!users.is_outage());
    assert!(
        users.summary().contains("lacks the permission"),
        "{}",
        users.summary()
    );
    assert!(matches!(
        super::permissions::classify_refusal(403, users.code()),
        Some(super::permissions::Refusal::PermissionMissing { .. })
    ));
    let write = client
        .set_presence(
            "user-1",
            &crate::presence::Presence::from_graph("Busy", "InACall"),
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap_err();
    assert_eq!(write.code(), Some("Forbidden"));
    assert!(
        write.summary().contains("admin consent"),
        "{}",
        write.summary()
    );
}

//! The engine across a restart: what a snapshot carries and what is sent again.

use std::time::Duration;

use super::harness::*;
use crate::sync::agent::Owner;
use crate::sync::{Decision, WriteOutcome};

/// SPEC §5.9 *crash*: acknowledged CC status, the daemon dies before Teams
/// was written → the write is made after the restart, once.
#[test]
fn crash_before_the_write_sends_it_once_after_restart() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.cc("On contact");
    h.secs(5);
    h.restart();
    let mark = h.mark();
    h.secs(9);
    assert!(h.writes_since(mark).is_empty(), "debounce carries on");
    h.secs(2);
    assert_eq!(h.writes_since(mark), vec![set_session("Busy/InACall")]);
    h.secs(600);
    assert_eq!(h.writes_since(mark).len(), 1, "sent once");
}

#[test]
fn a_write_lost_in_flight_is_sent_again_once() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(16);
    assert_eq!(h.pending_writes.len(), 1);
    h.restart();
    assert_eq!(h.pending_writes.len(), 1, "the write owed went out at once");
    assert_eq!(h.pending_writes[0].1, set_session("Busy/InACall"));
    h.finish_write(0, WriteOutcome::Done);
    let mark = h.mark();
    h.secs(30);
    assert!(h.writes_since(mark).is_empty());
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert!(view.teams_written.is_some());
}

#[test]
fn a_confirmed_write_is_not_repeated_after_restart() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(16);
    h.teams("Busy/InACall");
    let mark = h.mark();
    h.restart();
    h.secs(30);
    assert!(h.writes_since(mark).is_empty());
}

#[test]
fn meeting_restore_point_survives_a_restart() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    h.cc("Meeting");
    h.secs(60);
    h.restart();
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert_eq!(view.cc_set_by, Some(Owner::Daemon));
    assert!(view.restore.is_some());
    let mark = h.mark();
    h.teams("Available/Available");
    h.secs(15);
    assert_eq!(h.requests_since(mark), vec!["Available"]);
    assert!(h.writes_since(mark).is_empty(), "Meeting is still our echo");
}

#[test]
fn a_keepalive_lost_in_flight_is_sent_again_at_once() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(16);
    h.teams("Busy/InACall");
    h.auto_ack = false;
    // Run to the first keep-alive and lose it in the crash.
    let mark = h.mark();
    for _ in 0..3600 {
        if !h.writes_since(mark).is_empty() {
            break;
        }
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(h.writes_since(mark).len(), 1);
    h.restart();
    assert_eq!(h.pending_writes.len(), 1);
    assert_eq!(h.pending_writes[0].1, set_session("Busy/InACall"));
}

#[test]
fn loop_suspension_survives_a_restart() {
    let mut h = Harness::new(contact_center());
    // A second writer answers every write with something else: trips the guard.
    for i in 0..20 {
        h.cc(if i % 2 == 0 { "On contact" } else { "Lunch" });
        h.secs(16);
        if h.engine.view(h.agent, h.now).unwrap().suspended.is_some() {
            break;
        }
    }
    let before = h.engine.view(h.agent, h.now).unwrap().suspended;
    assert!(before.is_some());
    h.restart();
    let after = h.engine.view(h.agent, h.now).unwrap().suspended;
    assert_eq!(before, after);
}

/// A snapshot restores under an edited mapping: a status the mapping no
/// longer has is kept by name (never dropped, never guessed), shown as not
/// in the profile, and Teams gets the profile's `default_teams`.
#[test]
fn restore_under_a_mapping_without_the_status_keeps_it_as_unknown() {
    let mut h = Harness::new(contact_center());
    h.cc("Lunch");
    h.secs(16);
    let snapshot = h.engine.snapshot(h.agent).unwrap();
    let mut profile = contact_center();
    profile.statuses.retain(|s| s.name != "Lunch");
    profile.cc_to_teams.remove(2);
    let mut engine = crate::sync::Engine::new(
        crate::sync::Settings::default(),
        vec![std::sync::Arc::new(profile)],
    )
    .unwrap();
    let mut out = Vec::new();
    let key = engine
        .restore_agent(h.now, crate::sync::ProfileId(0), &snapshot, &mut out)
        .unwrap();
    let view = engine.view(key, h.now).unwrap();
    assert_eq!(view.cc_status.as_deref(), Some("Lunch"));
    assert!(!view.cc_status_in_profile);
    assert!(!view.cc_routable);
    assert_eq!(view.teams_target, Some(crate::mapping::TeamsTarget::Clear));
    assert!(
        out.iter().any(|d| matches!(
            d,
            Decision::Event { event: crate::sync::SyncEvent::StatusNotInProfile { status, .. }, .. } if status == "Lunch"
        )),
        "{out:?}"
    );
    assert!(
        out.iter().any(|d| matches!(
            d,
            Decision::WriteTeams {
                write: crate::sync::TeamsWrite::ClearSession,
                ..
            }
        )),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|d| matches!(d, Decision::RequestCc { .. })),
        "{out:?}"
    );
    // Its next snapshot still carries it.
    assert_eq!(
        engine
            .snapshot(key)
            .unwrap()
            .cc
            .map(|c| c.status)
            .as_deref(),
        Some("Lunch")
    );
}

#[test]
fn snapshot_json_round_trips_and_refuses_unknown_fields() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    let snapshot = h.engine.snapshot(h.agent).unwrap();
    let text = serde_json::to_string(&snapshot).unwrap();
    let back: crate::sync::AgentSnapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(back, snapshot);
    assert!(serde_json::from_str::<crate::sync::AgentSnapshot>(r#"{"bogus":1}"#).is_err());
}

/// A write of a value no longer wanted was on its way at the crash: it may
/// have landed, so what is wanted is written again.
#[test]
fn a_superseded_write_lost_in_flight_is_corrected_after_restart() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(16);
    h.teams("Busy/InACall");
    h.auto_ack = false;
    h.cc("Lunch");
    h.secs(16);
    assert_eq!(h.pending_writes.len(), 1, "Away on its way");
    // Back to On contact before the Away write was answered: coalesced.
    h.cc("On contact");
    h.secs(16);
    h.restart();
    assert_eq!(
        h.pending_writes
            .iter()
            .map(|(_, w)| w.clone())
            .collect::<Vec<_>>(),
        vec![set_session("Busy/InACall")]
    );
}

/// An echo deadline that passed while the daemon was down is not an
/// override: the write gets a fresh window.
#[test]
fn an_echo_deadline_that_passed_while_down_is_not_an_override() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(16);
    let snapshot = h.engine.snapshot(h.agent).unwrap();
    assert!(snapshot.echo_deadline.is_some());
    h.now = h.now + Duration::from_secs(3600);
    let mark = h.mark();
    h.restart();
    assert!(
        !h.events_since(mark)
            .iter()
            .any(|e| matches!(e, crate::sync::SyncEvent::TeamsOverrideDetected { .. })),
        "{:?}",
        h.events_since(mark)
    );
    h.teams("Busy/InACall");
    h.secs(600);
    assert!(
        h.engine
            .view(h.agent, h.now)
            .unwrap()
            .teams_override_since
            .is_none()
    );
}

//! Regressions found in review: each test is a scenario that once went wrong.
use std::sync::Arc;
use std::time::Duration;

use super::harness::{Harness, contact_center, id, pattern, presence, set_session};
use crate::mapping::{Rule, Side, TeamsTarget};
use crate::sync::{Decision, Settings, SyncEvent, TeamsWrite, WriteOutcome};

/// A keep-alive the adapter gives up on is tried again, so the session
/// does not lapse.
#[test]
fn a_failed_keepalive_is_retried() {
    let settings = Settings {
        write_answer_timeout: Duration::from_secs(3600),
        ..Settings::default()
    };
    let mut h = Harness::with_settings(contact_center(), settings);
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    h.finish_write(0, WriteOutcome::Done);
    h.secs(50 * 60); // the keep-alive (≈40-45 min) goes out
    assert_eq!(h.pending_writes.len(), 1);
    h.finish_write(
        0,
        WriteOutcome::Failed {
            message: "503".into(),
        },
    );
    h.secs(3 * 3600);
    assert!(
        !h.pending_writes.is_empty(),
        "session of 1 h left to expire: no retry, no further keep-alive"
    );
}

/// Keep-alives of an Available session (every few minutes) must not push
/// the override deadline forward: a manual override is still detected.
#[test]
fn override_of_an_available_session_is_detected() {
    let mut profile = contact_center();
    let available = id(&profile, "Available");
    profile.cc_to_teams[usize::from(available.0)] =
        TeamsTarget::Set(presence("Available/Available"));
    let mut h = Harness::new(profile);
    h.teams("DoNotDisturb/DoNotDisturb"); // user's own preferred presence
    h.secs(60);
    h.cc("Available");
    h.secs(3600);
    assert!(
        h.events_since(0)
            .iter()
            .any(|e| matches!(e, SyncEvent::TeamsOverrideDetected { .. })),
        "never reported: {:?}",
        h.events_since(0)
    );
}

/// The debounce is that of the rule that would fire for the agent's
/// status, not of the first rule whose presence matches.
#[test]
fn the_window_of_the_rule_that_fires_applies() {
    let mut profile = contact_center();
    let (avail, lunch, brk) = (
        id(&profile, "Available"),
        id(&profile, "Lunch"),
        id(&profile, "Break"),
    );
    let meeting = id(&profile, "Meeting");
    profile.rules = vec![
        Rule {
            name: "fast".into(),
            when: vec![pattern("DoNotDisturb/Presenting")],
            set: meeting,
            replaces: Some(vec![avail]),
            restore: false,
            debounce: Some(Duration::ZERO),
        },
        Rule {
            name: "slow".into(),
            when: vec![pattern("DoNotDisturb/Presenting")],
            set: brk,
            replaces: Some(vec![lunch]),
            restore: false,
            debounce: Some(Duration::from_secs(120)),
        },
    ];
    let mut h = Harness::new(profile);
    h.cc("Lunch");
    h.secs(60);
    h.teams("DoNotDisturb/Presenting");
    h.secs(10); // held 10 s of rule `slow`'s 120 s
    h.teams("Available/Available");
    h.secs(600);
    assert!(
        h.requests_since(0).is_empty(),
        "requested {:?}",
        h.requests_since(0)
    );
}

/// A mapping reload keeps what was handled: an old Teams presence does not
/// fire its rule again over a status the agent picked by hand.
#[test]
fn reloading_the_same_mapping_leaves_a_hand_picked_status_alone() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    h.cc("Meeting"); // echo
    h.secs(60);
    h.cc("Available"); // the agent wants calls during the meeting
    h.secs(60);
    let mark = h.mark();
    let mut out = Vec::new();
    h.engine
        .replace_profiles(h.now, vec![Arc::new(contact_center())], &mut out)
        .unwrap();
    let requests: Vec<_> = out
        .iter()
        .filter(|d| matches!(d, Decision::RequestCc { .. }))
        .collect();
    assert!(
        requests.is_empty() && h.requests_since(mark).is_empty(),
        "{requests:?}"
    );
}

/// A mapping reload does not carry the daemon's own CC status (set by a
/// rule) to Teams, which would latch Teams busy after the meeting.
#[test]
fn reloading_does_not_push_the_cc_echo_to_teams() {
    let mut profile = contact_center();
    let meeting = id(&profile, "Meeting");
    profile.cc_to_teams[usize::from(meeting.0)] =
        TeamsTarget::Set(presence("Busy/InAConferenceCall"));
    let mut h = Harness::new(profile.clone());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    h.cc("Meeting"); // echo
    h.secs(60);
    let mark = h.mark();
    let mut out = Vec::new();
    h.engine
        .replace_profiles(h.now, vec![Arc::new(profile)], &mut out)
        .unwrap();
    for d in out {
        if let Decision::WriteTeams { id, .. } = &d {
            let mut more = Vec::new();
            h.engine
                .write_done(h.now, h.agent, *id, WriteOutcome::Done, &mut more)
                .unwrap();
            assert!(more.is_empty());
        }
        h.log.push((h.now, d));
    }
    h.teams("Available/Available"); // meeting over
    h.secs(15);
    h.cc("Available"); // echo of the restore
    h.secs(3 * 3600);
    assert!(
        h.writes_since(mark).is_empty(),
        "{:?}",
        h.writes_since(mark)
    );
}

/// A CC change that lost a conflict and was put back by restore shows in
/// Teams as mapped: it is the agent's own status again.
#[test]
fn a_restored_status_that_never_reached_teams_is_shown_there() {
    let mut profile = contact_center();
    profile.prefer = Side::Teams;
    let lunch = id(&profile, "Lunch");
    profile.rules[0].replaces.as_mut().unwrap().push(lunch);
    let mut h = Harness::new(profile);
    h.cc("Available");
    h.secs(60);
    let mark = h.mark();
    h.cc("Lunch");
    h.secs(5);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    assert_eq!(h.requests_since(mark), vec!["Meeting"]);
    h.cc("Meeting");
    h.secs(600);
    h.teams("Available/Available");
    h.secs(15);
    assert_eq!(h.requests_since(mark), vec!["Meeting", "Lunch"]);
    h.cc("Lunch");
    h.secs(600);
    assert_eq!(
        h.writes_since(mark),
        vec![set_session("Away/Away")],
        "Lunch was lost for Teams"
    );
}

/// A status the agent sets after a request the CC never applied goes to
/// Teams after its debounce, not after the request lapses.
#[test]
fn a_call_is_not_held_back_by_an_unanswered_request() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15); // Meeting requested; the CC does not apply it
    let mark = h.mark();
    h.secs(1);
    h.cc("On contact");
    h.secs(30);
    assert_eq!(h.writes_since(mark), vec![set_session("Busy/InACall")]);
}

/// Our own echo in Teams is not a Teams change that can win a conflict and
/// hold the CC side back.
#[test]
fn our_echo_does_not_hold_the_cc_side() {
    let mut profile = contact_center();
    profile.prefer = Side::Teams;
    let avail = id(&profile, "Available");
    let brk = id(&profile, "Break");
    profile.rules.push(Rule {
        name: "busy".into(),
        when: vec![pattern("Busy/*")],
        set: brk,
        replaces: Some(vec![avail]),
        restore: false,
        debounce: Some(Duration::from_secs(300)),
    });
    let mut h = Harness::new(profile);
    h.cc("On contact");
    h.secs(15);
    h.secs(5);
    h.teams("Busy/InACall"); // our echo
    h.secs(5);
    let mark = h.mark();
    h.cc("Lunch");
    h.secs(20);
    assert_eq!(h.writes_since(mark), vec![set_session("Away/Away")]);
}

/// Teams lags: our previous write showing up after we moved on is still
/// our echo and fires no rule.
#[test]
fn a_late_echo_after_a_clear_is_still_our_echo() {
    let mut profile = contact_center();
    let avail = id(&profile, "Available");
    let brk = id(&profile, "Break");
    profile.rules.push(Rule {
        name: "busy".into(),
        when: vec![pattern("Busy/*")],
        set: brk,
        replaces: Some(vec![avail]),
        restore: false,
        debounce: None,
    });
    let mut h = Harness::new(profile);
    h.cc("On contact");
    h.secs(15); // Busy/InACall written
    h.secs(15);
    h.cc("Available");
    h.secs(15); // ClearSession written
    h.teams("Busy/InACall"); // Teams now catches up with the first write
    h.secs(60);
    assert!(h.requests_since(0).is_empty(), "{:?}", h.requests_since(0));
}

/// Removing an agent whose first write is still in flight hands that
/// presence back too.
#[test]
fn removing_an_agent_with_a_write_in_flight_hands_presence_back() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    let mut out = Vec::new();
    h.engine.remove_agent(h.now, h.agent, &mut out).unwrap();
    assert!(
        out.iter().any(|d| matches!(
            d,
            Decision::WriteTeams {
                write: TeamsWrite::ClearSession,
                ..
            }
        )),
        "{out:?}"
    );
}

/// An answer the adapter loses must not block the agent's writes for good.
#[test]
fn an_unanswered_write_is_given_up_and_the_newest_target_still_goes_out() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    assert_eq!(h.pending_writes.len(), 1);
    h.pending_writes.clear(); // the answer never comes
    h.cc("Lunch");
    h.secs(15);
    assert!(
        h.pending_writes.is_empty(),
        "still waiting for the lost answer"
    );
    let mark = h.mark();
    h.secs(120);
    assert!(
        h.events_since(mark)
            .iter()
            .any(|e| matches!(e, SyncEvent::WriteFailed { .. }))
    );
    h.secs(60);
    assert_eq!(
        h.pending_writes.last().map(|(_, w)| w.clone()),
        Some(set_session("Away/Away"))
    );
}

/// A CC reporting late (`at` in the past) has already held its status for
/// part of the debounce.
#[test]
fn a_status_reported_with_an_earlier_time_counts_its_debounce_from_then() {
    let mut h = Harness::new(contact_center());
    let on_contact = id(h.profile(), "On contact");
    let mut out = Vec::new();
    let at = crate::time::Timestamp::from_micros(h.now.as_micros() - 10_000_000);
    h.engine
        .report_cc_since(h.now, h.agent, on_contact, at, &mut out)
        .unwrap();
    assert!(out.is_empty());
    h.secs(4);
    assert!(h.writes_since(0).is_empty());
    h.secs(1);
    assert_eq!(h.writes_since(0), vec![set_session("Busy/InACall")]);
}

/// A reload whose profile no longer has the status an agent holds keeps
/// the status (by name, not routable), says so once, and hands Teams the
/// profile's `default_teams`; no rule acts on it; the profile having it
/// again maps it as before, and a status the profile knows replaces it.
#[test]
fn a_reload_without_the_held_status_keeps_it_until_the_profile_has_it_again() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(16);
    assert_eq!(h.writes_since(0).last(), Some(&set_session("Busy/InACall")));
    let mut without = contact_center();
    without.statuses[1].name = "On call".into();
    let reload = |h: &mut Harness, profile| {
        let mark = h.mark();
        let mut out = Vec::new();
        h.engine
            .replace_profiles(h.now, vec![Arc::new(profile)], &mut out)
            .unwrap();
        for d in out {
            if let Decision::WriteTeams { id, .. } = &d {
                let mut more = Vec::new();
                h.engine
                    .write_done(h.now, h.agent, *id, WriteOutcome::Done, &mut more)
                    .unwrap();
            }
            h.log.push((h.now, d));
        }
        mark
    };

    let mark = reload(&mut h, without.clone());
    assert_eq!(
        h.events_since(mark),
        [SyncEvent::StatusNotInProfile {
            status: "On contact".into(),
            teams: TeamsTarget::Clear
        }]
    );
    assert_eq!(h.writes_since(mark), [TeamsWrite::ClearSession]);
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert_eq!(view.cc_status.as_deref(), Some("On contact"));
    assert!(!view.cc_status_in_profile && !view.cc_routable);
    // A meeting does not pull the agent: no rule replaces a status the
    // profile does not know. Reloading the same set says nothing new.
    let mark = h.mark();
    h.teams("Busy/InAMeeting");
    h.secs(60);
    assert!(h.requests_since(mark).is_empty());
    let mark = reload(&mut h, without.clone());
    assert!(
        h.events_since(mark).is_empty(),
        "{:?}",
        h.events_since(mark)
    );

    // The line is back: mapped again, Teams busy again.
    let mark = reload(&mut h, contact_center());
    assert_eq!(
        h.events_since(mark),
        [SyncEvent::StatusBackInProfile {
            status: "On contact".into()
        }]
    );
    assert_eq!(h.writes_since(mark), [set_session("Busy/InACall")]);
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert!(view.cc_status_in_profile);
    assert_eq!(view.cc_status.as_deref(), Some("On contact"));

    // Unknown again, then the CC reports a status the profile knows.
    reload(&mut h, without);
    h.cc("Lunch");
    h.secs(16);
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert_eq!(view.cc_status.as_deref(), Some("Lunch"));
    assert!(view.cc_status_in_profile);
    assert_eq!(h.writes_since(0).last(), Some(&set_session("Away/Away")));
}

//! The scenarios of SPEC §5.9 that live in the engine, plus one test per rule.

use std::time::Duration;

use crate::mapping::{Side, TeamsTarget};
use crate::sync::agent::Owner;
use crate::sync::{
    Decision, EngineError, Flow, Reason, Settings, SyncEvent, TeamsWrite, WriteOutcome,
};

use super::harness::{Harness, contact_center, id, presence, set_session};

#[test]
fn call_cc_connected_shows_in_a_call_one_debounce_later_and_not_before() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(14);
    assert!(
        h.writes_since(0).is_empty(),
        "nothing may be written before the debounce"
    );
    h.secs(1);
    assert_eq!(h.writes_since(0), vec![set_session("Busy/InACall")]);
    // Available maps to `clear`: our session is released.
    let mark = h.mark();
    h.cc("Available");
    h.secs(15);
    assert_eq!(h.writes_since(mark), vec![TeamsWrite::ClearSession]);
}

#[test]
fn blip_a_short_lunch_never_reaches_teams() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    let mark = h.mark();
    h.cc("Lunch");
    h.secs(10);
    h.cc("Available");
    h.secs(3600);
    assert!(h.writes_since(mark).is_empty());
    assert_eq!(h.engine.stats().debounced, 1);
}

#[test]
fn meeting_latch_sets_meeting_does_not_echo_it_and_restores_available() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    assert_eq!(h.requests_since(0), vec!["Meeting"]);
    // The CC answers with Meeting: our echo, never pushed to Teams.
    let mark = h.mark();
    h.cc("Meeting");
    h.secs(60);
    assert!(h.writes_since(mark).is_empty());
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert_eq!(view.cc_set_by, Some(Owner::Daemon));
    // The meeting ends: Available comes back.
    h.teams("Available/Available");
    h.secs(15);
    assert_eq!(h.requests_since(mark), vec!["Available"]);
    assert!(h.writes_since(mark).is_empty());
}

#[test]
fn hands_off_a_status_chosen_during_the_meeting_stays() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    h.cc("Meeting");
    h.secs(60);
    h.cc("Lunch");
    h.secs(20);
    let mark = h.mark();
    h.teams("Available/Available");
    h.secs(600);
    assert!(
        h.requests_since(mark).is_empty(),
        "Lunch was picked by hand"
    );
    assert_eq!(
        h.engine.view(h.agent, h.now).unwrap().cc_status.as_deref(),
        Some("Lunch")
    );
}

#[test]
fn manual_override_is_reported_once_and_not_fought() {
    let settings = Settings {
        echo_window: Duration::from_secs(60),
        ..Settings::default()
    };
    let mut h = Harness::with_settings(contact_center(), settings);
    h.teams("DoNotDisturb/DoNotDisturb"); // the user's own preferred presence
    h.secs(60);
    h.cc("On contact");
    h.secs(15);
    assert_eq!(h.writes_since(0), vec![set_session("Busy/InACall")]);
    let mark = h.mark();
    h.secs(59);
    assert!(h.events_since(mark).is_empty());
    h.secs(1);
    let events = h.events_since(mark);
    assert!(matches!(
        events.as_slice(),
        [SyncEvent::TeamsOverrideDetected { .. }]
    ));
    assert!(
        h.engine
            .view(h.agent, h.now)
            .unwrap()
            .teams_override_since
            .is_some()
    );
    h.secs(20 * 60);
    assert!(
        h.writes_since(mark)
            .iter()
            .all(|w| *w == set_session("Busy/InACall")),
        "only keep-alives of the same session, no fight"
    );
    // The user clears the preference: Teams shows our session, no new CC change needed.
    let mark = h.mark();
    h.teams("Busy/InACall");
    assert_eq!(h.events_since(mark), vec![SyncEvent::TeamsOverrideCleared]);
    assert!(
        h.engine
            .view(h.agent, h.now)
            .unwrap()
            .teams_override_since
            .is_none()
    );
}

/// An app's Away session cannot show over the user's own Available one
/// (Graph: DoNotDisturb > Busy > Available > Away among sessions). That is
/// not a manual override: nothing stops, and the write shows once the
/// user's own presence drops below it.
#[test]
fn a_write_outranked_by_the_users_own_session_is_not_an_override() {
    let settings = Settings {
        echo_window: Duration::from_secs(60),
        ..Settings::default()
    };
    let mut h = Harness::with_settings(contact_center(), settings);
    h.teams("Available/Available"); // the user's own client, active
    h.secs(60);
    h.cc("Lunch");
    h.secs(15);
    assert_eq!(h.writes_since(0), vec![set_session("Away/Away")]);
    let mark = h.mark();
    h.secs(60);
    let events = h.events_since(mark);
    assert!(
        matches!(events.as_slice(), [SyncEvent::TeamsOutranked { .. }]),
        "{events:?}"
    );
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert!(view.teams_override_since.is_none(), "not an override");
    assert!(view.teams_outranked_since.is_some());
    assert_eq!(h.engine.stats().overrides_detected, 0);
    assert_eq!(h.engine.stats().outranked_detected, 1);
    // The user's Teams goes idle: ours shows, the outranking is over.
    h.teams("Away/Away");
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert!(view.teams_outranked_since.is_none());
}

/// Presenting and a meeting are sessions of the user's own that rank at or
/// above our Busy; Available ranks below it and a hand-picked
/// DoNotDisturb/DoNotDisturb comes from no session: both are overrides.
#[test]
fn presenting_outranks_a_busy_write_but_a_hand_picked_presence_overrides_it() {
    for (shown, outranked) in [
        ("DoNotDisturb/Presenting", true),
        ("Busy/InAMeeting", true),
        ("Available/Available", false),
        ("DoNotDisturb/DoNotDisturb", false),
    ] {
        let settings = Settings {
            echo_window: Duration::from_secs(60),
            ..Settings::default()
        };
        let mut h = Harness::with_settings(contact_center(), settings);
        h.teams(shown);
        h.secs(60);
        h.cc("On contact");
        h.secs(15);
        assert_eq!(h.writes_since(0), vec![set_session("Busy/InACall")]);
        let mark = h.mark();
        h.secs(60);
        let events = h.events_since(mark);
        let got_outranked = matches!(events.as_slice(), [SyncEvent::TeamsOutranked { .. }]);
        let got_override = matches!(events.as_slice(), [SyncEvent::TeamsOverrideDetected { .. }]);
        assert_eq!(
            (got_outranked, got_override),
            (outranked, !outranked),
            "{shown} over Busy/InACall: {events:?}"
        );
    }
}

#[test]
fn two_writers_trip_the_loop_guard_which_resumes_after_the_cooldown() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    // Another application keeps flipping Teams between a meeting and available.
    let mut suspended_at = None;
    for round in 0..10 {
        h.teams("Busy/InAMeeting");
        h.secs(16);
        if h.requests_since(0).last().map(String::as_str) == Some("Meeting") {
            h.cc("Meeting");
        }
        h.teams("Available/Available");
        h.secs(16);
        if h.requests_since(0).last().map(String::as_str) == Some("Available") {
            h.cc("Available");
        }
        if suspended_at.is_none()
            && h.events_since(0)
                .iter()
                .any(|e| matches!(e, SyncEvent::LoopSuspended { .. }))
        {
            suspended_at = Some(round);
        }
    }
    let suspended = h
        .events_since(0)
        .into_iter()
        .find_map(|e| match e {
            SyncEvent::LoopSuspended { flows, changes, .. } => Some((flows, changes)),
            _ => None,
        })
        .expect("the loop guard trips");
    assert_eq!(suspended, (vec![Flow::TeamsToCc], 6));
    assert_eq!(
        h.requests_since(0).len(),
        6,
        "nothing propagated past the threshold"
    );
    assert!(h.engine.view(h.agent, h.now).unwrap().suspended.is_some());
    let mark = h.mark();
    h.secs(15 * 60);
    assert!(h.events_since(mark).contains(&SyncEvent::LoopResumed));
    assert!(h.engine.view(h.agent, h.now).unwrap().suspended.is_none());
}

#[test]
fn keep_alive_holds_a_session_for_three_hours_without_a_gap() {
    let mut profile = contact_center();
    // Available shown as our own Available session: the strictest case, as
    // Graph fades such a session after five minutes.
    let available = id(&profile, "Available");
    profile.cc_to_teams[usize::from(available.0)] =
        TeamsTarget::Set(presence("Available/Available"));
    let mut h = Harness::new(profile);
    h.cc("Available");
    h.secs(15);
    h.secs(3 * 3600);
    let times = h.write_times();
    assert!(times.len() > 40);
    for pair in times.windows(2) {
        assert!(
            pair[1].since(pair[0]) < Duration::from_secs(5 * 60),
            "the session would fade"
        );
    }
    assert!(h.now.since(*times.last().unwrap()) < Duration::from_secs(5 * 60));
    assert_eq!(
        h.engine.stats().loop_suspensions,
        0,
        "keep-alives are not changes"
    );
}

#[test]
fn keep_alive_of_a_busy_session_comes_before_its_expiry() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(15);
    h.secs(3 * 3600);
    let times = h.write_times();
    assert!(times.len() >= 4);
    for pair in times.windows(2) {
        assert!(pair[1].since(pair[0]) < Duration::from_secs(3600));
    }
}

#[test]
fn conflict_preferred_cc_goes_first_and_teams_is_reevaluated_after() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(60);
    let mark = h.mark();
    h.cc("On contact");
    h.secs(5);
    h.teams("Busy/InAMeeting");
    h.secs(30);
    assert_eq!(h.writes_since(mark), vec![set_session("Busy/InACall")]);
    // The meeting rule only replaces Available: the agent on a contact is left alone.
    assert!(h.requests_since(mark).is_empty());
}

#[test]
fn conflict_preferred_teams_wins_and_the_cc_change_is_not_lost() {
    let mut profile = contact_center();
    profile.prefer = Side::Teams;
    let lunch = id(&profile, "Lunch");
    profile.rules[0].replaces.as_mut().unwrap().push(lunch);
    let settings = Settings {
        echo_window: Duration::from_secs(60),
        ..Settings::default()
    };
    let mut h = Harness::with_settings(profile, settings);
    h.cc("Available");
    h.secs(60);
    let mark = h.mark();
    h.cc("Lunch");
    h.secs(5);
    h.teams("Busy/InAMeeting");
    h.secs(12);
    assert!(
        h.writes_since(mark).is_empty(),
        "CC waits for the preferred side"
    );
    assert!(h.requests_since(mark).is_empty());
    h.secs(3);
    assert_eq!(h.requests_since(mark), vec!["Meeting"]);
    assert!(h.writes_since(mark).is_empty());
    // The CC never confirms: once the request lapses, Lunch is carried over after all.
    h.secs(61);
    assert_eq!(h.writes_since(mark), vec![set_session("Away/Away")]);
}

#[test]
fn coalescing_sends_only_the_newest_value_after_a_slow_write() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    assert_eq!(h.pending_writes.len(), 1);
    h.cc("Lunch");
    h.secs(15);
    h.cc("Break");
    h.secs(15);
    h.cc("On contact");
    h.secs(15);
    h.cc("Lunch");
    h.secs(15);
    assert_eq!(h.pending_writes.len(), 1, "one write in flight per agent");
    h.finish_write(0, WriteOutcome::Done);
    assert_eq!(h.pending_writes.len(), 1);
    assert_eq!(h.pending_writes[0].1, set_session("Away/Away"));
    h.finish_write(0, WriteOutcome::Done);
    assert!(h.pending_writes.is_empty());
}

#[test]
fn a_failed_write_is_reported_and_retried() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    let mark = h.mark();
    h.finish_write(
        0,
        WriteOutcome::Failed {
            message: "Graph 503".into(),
        },
    );
    assert_eq!(
        h.events_since(mark),
        vec![SyncEvent::WriteFailed {
            message: "Graph 503".into()
        }]
    );
    assert_eq!(
        h.engine
            .view(h.agent, h.now)
            .unwrap()
            .last_error
            .map(|e| e.0),
        Some("Graph 503".to_string())
    );
    h.secs(59);
    assert!(h.pending_writes.is_empty());
    h.secs(1);
    assert_eq!(h.pending_writes.len(), 1);
    assert_eq!(h.pending_writes[0].1, set_session("Busy/InACall"));
}

#[test]
fn a_late_answer_to_a_superseded_write_is_ignored() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    let (id, _) = h.pending_writes[0].clone();
    h.finish_write(0, WriteOutcome::Done);
    let mut out = Vec::new();
    h.engine
        .write_done(h.now, h.agent, id, WriteOutcome::Done, &mut out)
        .unwrap();
    assert!(out.is_empty());
}

#[test]
fn unknown_status_is_refused_with_the_nearest_name() {
    let mut h = Harness::new(contact_center());
    let mut out = Vec::new();
    let err = h
        .engine
        .report_cc_named(h.now, h.agent, "Lnch", &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "status `Lnch` is not in profile `test` (did you mean `Lunch`?)"
    );
    let unknown = h
        .engine
        .report_cc_named(h.now, crate::sync::AgentKey(99), "Lunch", &mut out)
        .unwrap_err();
    assert_eq!(unknown, EngineError::UnknownAgent);
    assert!(out.is_empty());
}

#[test]
fn removing_an_agent_hands_presence_back() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(15);
    let mut out = Vec::new();
    h.engine.remove_agent(h.now, h.agent, &mut out).unwrap();
    assert!(matches!(
        out.as_slice(),
        [Decision::WriteTeams {
            write: TeamsWrite::ClearSession,
            ..
        }]
    ));
    assert_eq!(h.engine.agent_count(), 0);
}

#[test]
fn a_mapping_reload_writes_only_what_changed() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(15);
    let mark = h.mark();
    let mut same = contact_center();
    let mut out = Vec::new();
    h.engine
        .replace_profiles(h.now, vec![std::sync::Arc::new(same.clone())], &mut out)
        .unwrap();
    assert!(
        out.iter()
            .all(|d| !matches!(d, Decision::WriteTeams { .. }))
    );
    let on_contact = id(&same, "On contact");
    same.cc_to_teams[usize::from(on_contact.0)] =
        TeamsTarget::Set(presence("Busy/InAConferenceCall"));
    let mut out = Vec::new();
    h.engine
        .replace_profiles(h.now, vec![std::sync::Arc::new(same)], &mut out)
        .unwrap();
    let writes: Vec<_> = out
        .iter()
        .filter_map(|d| match d {
            Decision::WriteTeams { write, .. } => Some(write.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(writes, vec![set_session("Busy/InAConferenceCall")]);
    assert!(h.writes_since(mark).is_empty());
}

#[test]
fn direction_off_propagates_nothing() {
    let mut profile = contact_center();
    profile.direction = crate::mapping::Direction::Off;
    let mut h = Harness::new(profile);
    h.cc("On contact");
    h.teams("Busy/InAMeeting");
    h.secs(3600);
    assert!(h.writes_since(0).is_empty());
    assert!(h.requests_since(0).is_empty());
}

#[test]
fn every_decision_is_explained() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(15);
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert_eq!(
        view.last_decision.as_deref(),
        Some("cc_to_teams: CC status `On contact` held 15s → Teams as profile `test` maps it")
    );
    h.cc("Available");
    h.secs(15);
    h.teams("Busy/InAMeeting");
    h.secs(15);
    let why = h
        .log
        .iter()
        .rev()
        .find_map(|(_, d)| match d {
            Decision::RequestCc { why, .. } => Some(why.clone()),
            _ => None,
        })
        .unwrap();
    assert!(matches!(why.reason, Reason::RuleFired { rule: 0, .. }));
    assert_eq!(
        why.describe(h.profile()),
        "teams_to_cc: Teams Busy/InAMeeting held 15s → rule `meeting` replaced CC status `Available`"
    );
}

#[test]
fn view_shows_debouncing_and_routability() {
    let mut h = Harness::new(contact_center());
    h.cc("Available");
    h.secs(20);
    h.teams("Busy/InAMeeting");
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert!(view.cc_routable);
    assert!(view.teams_blocking);
    assert_eq!(view.debouncing_until, Some(h.now + Duration::from_secs(15)));
}

/// Without the permission to write presence, writes are held: nothing is
/// sent, retried or kept alive, and the view says why; released, only the
/// newest target goes out, at once.
#[test]
fn held_writes_wait_and_only_the_newest_goes_out_when_released() {
    let mut h = Harness::new(contact_center());
    h.cc("On contact");
    h.secs(15);
    assert_eq!(h.writes_since(0), vec![set_session("Busy/InACall")]);
    h.teams("Busy/InACall");
    let mark = h.mark();
    let mut out = Vec::new();
    h.engine.set_writes_held(
        h.now,
        Some("the app lacks Presence.ReadWrite.All".into()),
        &mut out,
    );
    assert!(out.is_empty());
    h.cc("Available");
    h.secs(30);
    h.cc("Lunch");
    h.secs(30);
    h.cc("On contact");
    h.secs(30);
    h.cc("Lunch");
    // Hours pass: no keep-alive, no retry, no write.
    h.secs(3 * 3600);
    assert!(
        h.writes_since(mark).is_empty(),
        "{:?}",
        h.writes_since(mark)
    );
    let view = h.engine.view(h.agent, h.now).unwrap();
    assert_eq!(
        view.writes_held.as_deref(),
        Some("the app lacks Presence.ReadWrite.All")
    );
    assert!(
        h.events_since(mark).is_empty(),
        "{:?}",
        h.events_since(mark)
    );
    let mut out = Vec::new();
    h.engine.set_writes_held(h.now, None, &mut out);
    h.absorb_for_test(out);
    let lunch = TeamsTarget::clone(&h.profile().cc_to_teams[id(h.profile(), "Lunch").0 as usize]);
    let expected = match lunch {
        TeamsTarget::Set(p) => set_session(&p.to_string()),
        TeamsTarget::Clear => TeamsWrite::ClearSession,
    };
    assert_eq!(h.writes_since(mark), vec![expected]);
    assert_eq!(h.engine.view(h.agent, h.now).unwrap().writes_held, None);
}

/// A write refused while the permission was missing is made at once when
/// it is granted, not after the retry pause.
#[test]
fn a_refused_write_goes_out_at_once_when_writes_are_released() {
    let mut h = Harness::new(contact_center());
    h.auto_ack = false;
    h.cc("On contact");
    h.secs(15);
    assert_eq!(h.pending_writes.len(), 1);
    h.finish_write(
        0,
        WriteOutcome::Failed {
            message: "403 Forbidden".into(),
        },
    );
    let mut out = Vec::new();
    h.engine
        .set_writes_held(h.now, Some("no permission".into()), &mut out);
    h.secs(600);
    assert!(h.pending_writes.is_empty());
    let mark = h.mark();
    let mut out = Vec::new();
    h.engine.set_writes_held(h.now, None, &mut out);
    h.absorb_for_test(out);
    assert_eq!(h.writes_since(mark), vec![set_session("Busy/InACall")]);
}

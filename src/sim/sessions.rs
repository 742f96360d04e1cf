//! One user's presence as Teams aggregates it: sessions plus a user-preferred
//! presence. Pure: every question takes the time.
//!
//! Documented rules (Graph presence docs, `../shared/graph/FACTS.md`):
//! - the user-preferred presence wins over every session, but only while at
//!   least one session exists; with no session the user is Offline/Offline;
//! - among sessions DoNotDisturb > Busy > Available > Away;
//! - an app session lives until its expiry and then disappears;
//! - an `Available` app session not refreshed for 5 minutes shows
//!   Available/AvailableInactive, after 5 more Away/Away.
//!
//! Decided here, because the documents are silent:
//! - the full ranking (`Availability::session_rank`, shared with the mapping
//!   validator) is DoNotDisturb > Busy > BusyIdle > Available >
//!   AvailableIdle > BeRightBack > Away > Offline > anything else. BeRightBack
//!   sits above Away because it is a deliberate, short absence, a fresher
//!   signal than an idle client; Offline and unknown values sit last so a
//!   session that says nothing useful never hides one that does;
//! - sessions of equal rank: the most recently set one wins (ties broken by
//!   session id, so the answer never depends on map order);
//! - no session at all is Offline/Offline, not PresenceUnknown: Graph answers
//!   PresenceUnknown for users it cannot resolve, while a signed-out Teams user
//!   shows Offline, which is what the daemon must handle;
//! - the user's own client session (what they do in the Teams app) never
//!   fades or expires here: the scripted mode or a test changes it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::presence::{Activity, Availability, Presence};
use crate::time::Timestamp;

/// An `Available` app session shows AvailableInactive after this long
/// without a refresh...
pub const FADE_TO_INACTIVE: Duration = Duration::from_secs(5 * 60);
/// ...and Away after this long.
pub const FADE_TO_AWAY: Duration = Duration::from_secs(10 * 60);

/// The session id of the user's own Teams client (not a GUID, so no app id
/// can collide with it).
pub const CLIENT_SESSION: &str = "teams-client";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSession {
    pub presence: Presence,
    /// When it was last set (a refresh restarts the fade).
    pub set_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSession {
    pub presence: Presence,
    pub set_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preferred {
    pub presence: Presence,
    /// `None`: until cleared (a manual choice without a reset time).
    pub expires_at: Option<Timestamp>,
}

/// Everything that makes up one user's presence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPresence {
    pub client: Option<ClientSession>,
    pub apps: BTreeMap<String, AppSession>,
    pub preferred: Option<Preferred>,
}

impl UserPresence {
    /// Drops what has expired by `now`. Returns true when anything went.
    pub fn prune(&mut self, now: Timestamp) -> bool {
        let before = self.apps.len();
        self.apps.retain(|_, s| now < s.expires_at);
        let mut changed = self.apps.len() != before;
        if self
            .preferred
            .as_ref()
            .is_some_and(|p| p.expires_at.is_some_and(|at| now >= at))
        {
            self.preferred = None;
            changed = true;
        }
        changed
    }

    pub fn has_session(&self, now: Timestamp) -> bool {
        self.client.is_some() || self.apps.values().any(|s| now < s.expires_at)
    }

    /// What Graph shows for this user at `now`.
    pub fn aggregate(&self, now: Timestamp) -> Presence {
        if !self.has_session(now) {
            return offline();
        }
        if let Some(preferred) = &self.preferred
            && preferred.expires_at.is_none_or(|at| now < at)
        {
            return preferred.presence.clone();
        }
        let client = self
            .client
            .iter()
            .map(|c| (c.presence.clone(), c.set_at, CLIENT_SESSION));
        let apps = self
            .apps
            .iter()
            .filter(|(_, s)| now < s.expires_at)
            .map(|(id, s)| (faded(s, now), s.set_at, id.as_str()));
        client
            .chain(apps)
            .max_by(|a, b| {
                a.0.availability
                    .session_rank()
                    .cmp(&b.0.availability.session_rank())
                    .then(a.1.cmp(&b.1))
                    .then(b.2.cmp(a.2))
            })
            .map(|(presence, _, _)| presence)
            .unwrap_or_else(offline)
    }

    /// The next instant after `now` at which `aggregate` may change without
    /// any write (a fade step or an expiry), if any.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let mut candidates = Vec::new();
        for s in self.apps.values() {
            candidates.push(s.expires_at);
            if s.presence.availability == Availability::Available {
                candidates.push(s.set_at + FADE_TO_INACTIVE);
                candidates.push(s.set_at + FADE_TO_AWAY);
            }
        }
        if let Some(at) = self.preferred.as_ref().and_then(|p| p.expires_at) {
            candidates.push(at);
        }
        candidates.into_iter().filter(|at| *at > now).min()
    }
}

pub fn offline() -> Presence {
    Presence::new(Availability::Offline, Activity::Offline)
}

/// An app session as it shows at `now`, after fading.
fn faded(session: &AppSession, now: Timestamp) -> Presence {
    if session.presence.availability != Availability::Available {
        return session.presence.clone();
    }
    let idle = now.since(session.set_at);
    if idle >= FADE_TO_AWAY {
        Presence::new(Availability::Away, Activity::Away)
    } else if idle >= FADE_TO_INACTIVE {
        Presence::new(Availability::Available, Activity::AvailableInactive)
    } else {
        session.presence.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Presence {
        let (a, b) = text.split_once('/').unwrap();
        Presence::from_graph(a, b)
    }

    fn t(mins: u64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + mins * 60)
    }

    fn client(presence: &str, set: u64) -> Option<ClientSession> {
        Some(ClientSession {
            presence: p(presence),
            set_at: t(set),
        })
    }

    fn app(presence: &str, set: u64, lifetime_mins: u64) -> AppSession {
        AppSession {
            presence: p(presence),
            set_at: t(set),
            expires_at: t(set + lifetime_mins),
        }
    }

    #[test]
    fn no_session_is_offline_even_with_a_preference() {
        let mut user = UserPresence::default();
        assert_eq!(user.aggregate(t(0)), p("Offline/Offline"));
        user.preferred = Some(Preferred {
            presence: p("DoNotDisturb/DoNotDisturb"),
            expires_at: None,
        });
        assert_eq!(user.aggregate(t(0)), p("Offline/Offline"));
        user.apps.insert("app".into(), app("Busy/InACall", 0, 60));
        assert_eq!(user.aggregate(t(1)), p("DoNotDisturb/DoNotDisturb"));
    }

    #[test]
    fn preferred_beats_every_session_until_it_expires() {
        let mut user = UserPresence::default();
        user.apps
            .insert("app".into(), app("DoNotDisturb/Presenting", 0, 240));
        user.preferred = Some(Preferred {
            presence: p("Away/Away"),
            expires_at: Some(t(30)),
        });
        assert_eq!(user.aggregate(t(29)), p("Away/Away"));
        assert_eq!(user.aggregate(t(30)), p("DoNotDisturb/Presenting"));
        assert!(user.prune(t(30)));
        assert!(user.preferred.is_none());
    }

    #[test]
    fn sessions_rank_dnd_busy_available_away() {
        let mut user = UserPresence {
            client: client("Away/Away", 0),
            ..UserPresence::default()
        };
        assert_eq!(user.aggregate(t(0)), p("Away/Away"));
        user.apps
            .insert("a".into(), app("Available/Available", 0, 60));
        assert_eq!(user.aggregate(t(1)), p("Available/Available"));
        user.apps.insert("b".into(), app("Busy/InACall", 0, 60));
        assert_eq!(user.aggregate(t(1)), p("Busy/InACall"));
        user.apps
            .insert("c".into(), app("DoNotDisturb/Presenting", 0, 60));
        assert_eq!(user.aggregate(t(1)), p("DoNotDisturb/Presenting"));
    }

    #[test]
    fn be_right_back_ranks_between_available_and_away_and_offline_last() {
        let mut user = UserPresence {
            client: client("BeRightBack/BeRightBack", 0),
            ..UserPresence::default()
        };
        user.apps.insert("a".into(), app("Away/Away", 0, 60));
        assert_eq!(user.aggregate(t(0)), p("BeRightBack/BeRightBack"));
        user.client = client("Offline/OffWork", 0);
        assert_eq!(user.aggregate(t(0)), p("Away/Away"));
    }

    #[test]
    fn equal_rank_goes_to_the_latest_session() {
        let mut user = UserPresence::default();
        user.apps.insert("a".into(), app("Busy/InACall", 0, 60));
        user.apps
            .insert("b".into(), app("Busy/InAConferenceCall", 2, 60));
        assert_eq!(user.aggregate(t(3)), p("Busy/InAConferenceCall"));
        user.apps.insert("a".into(), app("Busy/InACall", 4, 60));
        assert_eq!(user.aggregate(t(5)), p("Busy/InACall"));
    }

    #[test]
    fn available_fades_to_inactive_then_away_and_a_refresh_resets_it() {
        let mut user = UserPresence::default();
        user.apps
            .insert("a".into(), app("Available/Available", 0, 60));
        assert_eq!(user.aggregate(t(4)), p("Available/Available"));
        assert_eq!(user.aggregate(t(5)), p("Available/AvailableInactive"));
        assert_eq!(user.aggregate(t(9)), p("Available/AvailableInactive"));
        assert_eq!(user.aggregate(t(10)), p("Away/Away"));
        assert_eq!(user.next_change(t(0)), Some(t(5)));
        assert_eq!(user.next_change(t(5)), Some(t(10)));
        assert_eq!(user.next_change(t(10)), Some(t(60)));
        user.apps
            .insert("a".into(), app("Available/Available", 11, 60));
        assert_eq!(user.aggregate(t(12)), p("Available/Available"));
    }

    #[test]
    fn a_faded_session_loses_to_a_live_available_one() {
        let mut user = UserPresence::default();
        user.apps
            .insert("a".into(), app("Available/Available", 0, 60));
        user.client = client("Available/Available", 0);
        assert_eq!(user.aggregate(t(11)), p("Available/Available"));
    }

    #[test]
    fn busy_sessions_do_not_fade_and_expired_sessions_disappear() {
        let mut user = UserPresence::default();
        user.apps.insert("a".into(), app("Busy/InACall", 0, 30));
        assert_eq!(user.aggregate(t(29)), p("Busy/InACall"));
        assert_eq!(user.aggregate(t(30)), p("Offline/Offline"));
        assert!(user.prune(t(30)));
        assert!(user.apps.is_empty());
        assert!(!user.prune(t(31)));
    }

    #[test]
    fn with_no_session_left_the_preference_is_kept_but_hidden() {
        let mut user = UserPresence::default();
        user.apps.insert("a".into(), app("Busy/InACall", 0, 5));
        user.preferred = Some(Preferred {
            presence: p("Busy/Busy"),
            expires_at: None,
        });
        assert_eq!(user.aggregate(t(1)), p("Busy/Busy"));
        assert_eq!(user.aggregate(t(6)), p("Offline/Offline"));
        user.apps.insert("a".into(), app("Away/Away", 7, 5));
        assert_eq!(user.aggregate(t(8)), p("Busy/Busy"));
    }
}

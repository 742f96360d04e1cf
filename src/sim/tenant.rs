//! The fake tenant: its directory and every user's presence, with Graph's
//! rules for writing presence. Pure: no I/O, no clock of its own — every
//! operation takes the current time.

use std::time::Duration;

use super::directory::{Directory, DirectoryError, NewUser, User};
use super::sessions::{AppSession, ClientSession, Preferred, UserPresence};
use crate::presence::{Availability, Presence};
use crate::time::Timestamp;

/// setPresence's `expirationDuration` bounds and default (Graph docs).
pub const SESSION_MIN: Duration = Duration::from_secs(5 * 60);
pub const SESSION_MAX: Duration = Duration::from_secs(4 * 3600);
pub const SESSION_DEFAULT: Duration = SESSION_MIN;

/// setUserPreferredPresence's default expiry: a day for DoNotDisturb and
/// Busy, a week for the rest (Graph docs).
pub const PREFERRED_SHORT_DEFAULT: Duration = Duration::from_secs(24 * 3600);
pub const PREFERRED_LONG_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a write was refused for; the server turns these into Graph errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("user {0} was not found")]
    UnknownUser(String),
    #[error("availability/activity {0} is not allowed here; allowed: {1}")]
    InvalidPair(String, String),
    #[error("expirationDuration must be between PT5M and PT4H")]
    InvalidDuration,
    #[error("presence session {0} does not exist")]
    SessionNotFound(String),
}

/// A user's presence as Graph returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceView {
    pub id: String,
    pub presence: Presence,
    /// Increases whenever what this user shows changes; zero-padded so it
    /// sorts lexicographically, as Graph's version stamps do.
    pub sequence_number: String,
}

#[derive(Clone, Debug, Default)]
struct PresenceSlot {
    state: UserPresence,
    /// What was last observed, to detect changes (writes, fades, expiry).
    shown: Option<Presence>,
    sequence: u64,
}

#[derive(Clone, Debug)]
pub struct Tenant {
    directory: Directory,
    groups: crate::sim::groups::Groups,
    presences: Vec<PresenceSlot>,
    /// Tenant-wide counter behind every user's sequenceNumber.
    sequence: u64,
}

impl Tenant {
    pub fn new(directory: Directory) -> Self {
        let presences = vec![PresenceSlot::default(); directory.len()];
        Tenant {
            directory,
            groups: crate::sim::groups::Groups::default(),
            presences,
            sequence: 0,
        }
    }

    /// The tenant-wide change counter: it moves whenever any user's shown
    /// presence changes (as observed so far).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn groups(&self) -> &crate::sim::groups::Groups {
        &self.groups
    }

    pub fn groups_mut(&mut self) -> &mut crate::sim::groups::Groups {
        &mut self.groups
    }

    /// Adds a user (shown in the next delta round); returns its index.
    pub fn add_user(&mut self, new: NewUser, now: Timestamp) -> Result<usize, DirectoryError> {
        let index = self.directory.add(new, now)?;
        self.presences
            .resize_with(self.directory.len(), PresenceSlot::default);
        self.observe(index, now);
        Ok(index)
    }

    pub fn user_at(&self, index: usize) -> Option<&User> {
        self.directory.by_index(index)
    }

    pub fn user_count(&self) -> usize {
        self.directory.len()
    }

    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.directory.index_of(key)
    }

    /// The presence Graph shows for user `key` (id or UPN) at `now`.
    pub fn presence(&mut self, key: &str, now: Timestamp) -> Option<PresenceView> {
        let index = self.directory.index_of(key)?;
        self.presence_at(index, now)
    }

    pub fn presence_at(&mut self, index: usize, now: Timestamp) -> Option<PresenceView> {
        self.observe(index, now);
        let user = self.directory.by_index(index)?;
        let slot = self.presences.get(index)?;
        Some(PresenceView {
            id: user.id.clone(),
            presence: slot.shown.clone().unwrap_or_else(super::sessions::offline),
            sequence_number: format!("{:020}", slot.sequence),
        })
    }

    /// Raw session state, for tests and stats.
    pub fn sessions(&self, key: &str) -> Option<&UserPresence> {
        let index = self.directory.index_of(key)?;
        self.presences.get(index).map(|s| &s.state)
    }

    /// `setPresence`: creates or refreshes the app session `session_id`.
    pub fn set_presence(
        &mut self,
        key: &str,
        session_id: &str,
        presence: Presence,
        expiration: Option<Duration>,
        now: Timestamp,
    ) -> Result<(), TenantError> {
        if !presence.is_settable_session() {
            return Err(TenantError::InvalidPair(
                presence.to_string(),
                pairs(crate::presence::SET_PRESENCE_PAIRS),
            ));
        }
        let expiration = expiration.unwrap_or(SESSION_DEFAULT);
        if !(SESSION_MIN..=SESSION_MAX).contains(&expiration) {
            return Err(TenantError::InvalidDuration);
        }
        self.write(key, now, |state| {
            state.apps.insert(
                session_id.to_string(),
                AppSession {
                    presence,
                    set_at: now,
                    expires_at: now + expiration,
                },
            );
            Ok(())
        })
    }

    /// `clearPresence`: removes the app session; an unknown (or already
    /// expired) session is `SessionNotFound` (Graph: 404).
    pub fn clear_presence(
        &mut self,
        key: &str,
        session_id: &str,
        now: Timestamp,
    ) -> Result<(), TenantError> {
        self.write(key, now, |state| match state.apps.remove(session_id) {
            Some(_) => Ok(()),
            None => Err(TenantError::SessionNotFound(session_id.to_string())),
        })
    }

    /// `setUserPreferredPresence` (and a manual choice in the Teams client,
    /// where `expiration` may be `None`: until cleared).
    pub fn set_preferred(
        &mut self,
        key: &str,
        presence: Presence,
        expiration: Option<Duration>,
        now: Timestamp,
    ) -> Result<(), TenantError> {
        if !presence.is_settable_preferred() {
            return Err(TenantError::InvalidPair(
                presence.to_string(),
                pairs(crate::presence::PREFERRED_PRESENCE_PAIRS),
            ));
        }
        self.write(key, now, |state| {
            state.preferred = Some(Preferred {
                presence,
                expires_at: expiration.map(|d| now + d),
            });
            Ok(())
        })
    }

    /// The default expiry Graph applies when `setUserPreferredPresence` has
    /// no `expirationDuration`.
    pub fn default_preferred_expiry(presence: &Presence) -> Duration {
        match presence.availability {
            Availability::DoNotDisturb | Availability::Busy => PREFERRED_SHORT_DEFAULT,
            _ => PREFERRED_LONG_DEFAULT,
        }
    }

    /// `clearUserPreferredPresence`: succeeds whether or not one was set.
    pub fn clear_preferred(&mut self, key: &str, now: Timestamp) -> Result<(), TenantError> {
        self.write(key, now, |state| {
            state.preferred = None;
            Ok(())
        })
    }

    /// What the user does in their own Teams client; `None` or an Offline
    /// availability signs the client out.
    pub fn set_client(
        &mut self,
        key: &str,
        presence: Option<Presence>,
        now: Timestamp,
    ) -> Result<(), TenantError> {
        let presence = presence.filter(|p| p.availability != Availability::Offline);
        self.write(key, now, |state| {
            state.client = presence.map(|presence| ClientSession {
                presence,
                set_at: now,
            });
            Ok(())
        })
    }

    pub fn set_client_at(&mut self, index: usize, presence: Option<Presence>, now: Timestamp) {
        let presence = presence.filter(|p| p.availability != Availability::Offline);
        if let Some(slot) = self.presences.get_mut(index) {
            slot.state.client = presence.map(|presence| ClientSession {
                presence,
                set_at: now,
            });
            self.observe(index, now);
        }
    }

    pub fn client_at(&self, index: usize) -> Option<&Presence> {
        self.presences
            .get(index)
            .and_then(|s| s.state.client.as_ref())
            .map(|c| &c.presence)
    }

    fn write(
        &mut self,
        key: &str,
        now: Timestamp,
        change: impl FnOnce(&mut UserPresence) -> Result<(), TenantError>,
    ) -> Result<(), TenantError> {
        let index = self
            .directory
            .index_of(key)
            .ok_or_else(|| TenantError::UnknownUser(key.to_string()))?;
        let slot = self
            .presences
            .get_mut(index)
            .ok_or_else(|| TenantError::UnknownUser(key.to_string()))?;
        // Expired sessions are gone before the write looks at them, so
        // clearing an expired session is a 404 like clearing a missing one.
        slot.state.prune(now);
        let result = change(&mut slot.state);
        self.observe(index, now);
        result
    }

    /// Brings the user's shown presence and sequence number up to `now`.
    fn observe(&mut self, index: usize, now: Timestamp) {
        let Some(slot) = self.presences.get_mut(index) else {
            return;
        };
        slot.state.prune(now);
        let shown = slot.state.aggregate(now);
        if slot.shown.as_ref() != Some(&shown) {
            self.sequence += 1;
            slot.sequence = self.sequence;
            slot.shown = Some(shown);
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> String {
    list.iter()
        .map(|(a, b)| format!("{a}/{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";

    fn p(text: &str) -> Presence {
        let (a, b) = text.split_once('/').unwrap();
        Presence::from_graph(a, b)
    }

    fn t(mins: u64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + mins * 60)
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    fn tenant() -> (Tenant, String) {
        let mut directory = Directory::new("contoso.test", 1, 1);
        directory.add(NewUser::default(), t(0)).unwrap();
        let id = directory.by_index(0).unwrap().id.clone();
        (Tenant::new(directory), id)
    }

    fn shown(tenant: &mut Tenant, id: &str, at: Timestamp) -> Presence {
        tenant.presence(id, at).unwrap().presence
    }

    #[test]
    fn a_new_user_is_offline() {
        let (mut tenant, id) = tenant();
        assert_eq!(shown(&mut tenant, &id, t(0)), p("Offline/Offline"));
    }

    #[test]
    fn set_presence_validates_pairs_and_durations() {
        let (mut tenant, id) = tenant();
        let err = tenant
            .set_presence(&id, APP, p("Busy/InAMeeting"), None, t(0))
            .unwrap_err();
        assert!(matches!(err, TenantError::InvalidPair(..)));
        assert!(err.to_string().contains("Busy/InACall"));
        for bad in [mins(4), mins(241)] {
            assert_eq!(
                tenant.set_presence(&id, APP, p("Busy/InACall"), Some(bad), t(0)),
                Err(TenantError::InvalidDuration)
            );
        }
        for good in [
            "Available/Available",
            "Busy/InACall",
            "Busy/InAConferenceCall",
            "Away/Away",
            "DoNotDisturb/Presenting",
        ] {
            tenant
                .set_presence(&id, APP, p(good), Some(mins(60)), t(0))
                .unwrap();
            assert_eq!(shown(&mut tenant, &id, t(0)), p(good));
        }
        assert_eq!(
            tenant.set_presence("nobody", APP, p("Away/Away"), None, t(0)),
            Err(TenantError::UnknownUser("nobody".into()))
        );
    }

    #[test]
    fn the_default_session_lasts_five_minutes() {
        let (mut tenant, id) = tenant();
        tenant
            .set_presence(&id, APP, p("Busy/InACall"), None, t(0))
            .unwrap();
        assert_eq!(shown(&mut tenant, &id, t(4)), p("Busy/InACall"));
        assert_eq!(shown(&mut tenant, &id, t(5)), p("Offline/Offline"));
    }

    #[test]
    fn clear_presence_of_a_missing_or_expired_session_is_not_found() {
        let (mut tenant, id) = tenant();
        assert_eq!(
            tenant.clear_presence(&id, APP, t(0)),
            Err(TenantError::SessionNotFound(APP.into()))
        );
        tenant
            .set_presence(&id, APP, p("Away/Away"), Some(mins(5)), t(0))
            .unwrap();
        assert_eq!(tenant.clear_presence(&id, APP, t(1)), Ok(()));
        assert_eq!(shown(&mut tenant, &id, t(1)), p("Offline/Offline"));
        tenant
            .set_presence(&id, APP, p("Away/Away"), Some(mins(5)), t(2))
            .unwrap();
        assert!(tenant.clear_presence(&id, APP, t(7)).is_err());
    }

    #[test]
    fn preferred_needs_a_session_and_overrides_it() {
        let (mut tenant, id) = tenant();
        tenant
            .set_preferred(&id, p("DoNotDisturb/DoNotDisturb"), Some(mins(60)), t(0))
            .unwrap();
        assert_eq!(shown(&mut tenant, &id, t(0)), p("Offline/Offline"));
        tenant
            .set_client(&id, Some(p("Available/Available")), t(1))
            .unwrap();
        tenant
            .set_presence(&id, APP, p("Busy/InACall"), Some(mins(60)), t(1))
            .unwrap();
        assert_eq!(
            shown(&mut tenant, &id, t(1)),
            p("DoNotDisturb/DoNotDisturb")
        );
        tenant.clear_preferred(&id, t(2)).unwrap();
        assert_eq!(shown(&mut tenant, &id, t(2)), p("Busy/InACall"));
        assert!(matches!(
            tenant.set_preferred(&id, p("Busy/InACall"), None, t(2)),
            Err(TenantError::InvalidPair(..))
        ));
    }

    #[test]
    fn preferred_defaults_follow_the_docs() {
        assert_eq!(
            Tenant::default_preferred_expiry(&p("DoNotDisturb/DoNotDisturb")),
            PREFERRED_SHORT_DEFAULT
        );
        assert_eq!(
            Tenant::default_preferred_expiry(&p("Busy/Busy")),
            PREFERRED_SHORT_DEFAULT
        );
        assert_eq!(
            Tenant::default_preferred_expiry(&p("Away/Away")),
            PREFERRED_LONG_DEFAULT
        );
    }

    #[test]
    fn sequence_numbers_grow_on_every_change_including_fades() {
        let (mut tenant, id) = tenant();
        let s0 = tenant.presence(&id, t(0)).unwrap().sequence_number;
        tenant
            .set_presence(&id, APP, p("Available/Available"), Some(mins(60)), t(0))
            .unwrap();
        let s1 = tenant.presence(&id, t(0)).unwrap().sequence_number;
        assert!(s1 > s0);
        assert_eq!(
            tenant.presence(&id, t(1)).unwrap().sequence_number,
            s1,
            "no change, same stamp"
        );
        let faded = tenant.presence(&id, t(5)).unwrap();
        assert_eq!(faded.presence, p("Available/AvailableInactive"));
        assert!(faded.sequence_number > s1);
        let away = tenant.presence(&id, t(10)).unwrap();
        assert_eq!(away.presence, p("Away/Away"));
        assert!(away.sequence_number > faded.sequence_number);
    }

    #[test]
    fn the_client_signing_out_leaves_app_sessions() {
        let (mut tenant, id) = tenant();
        tenant
            .set_client(&id, Some(p("Busy/InAMeeting")), t(0))
            .unwrap();
        assert_eq!(shown(&mut tenant, &id, t(0)), p("Busy/InAMeeting"));
        tenant
            .set_presence(&id, APP, p("Away/Away"), Some(mins(60)), t(0))
            .unwrap();
        tenant
            .set_client(&id, Some(p("Offline/Offline")), t(1))
            .unwrap();
        assert_eq!(shown(&mut tenant, &id, t(1)), p("Away/Away"));
    }
}

//! What each event type carries in `data`: one [`EventData`] variant a type,
//! each with a payload type whose serialization is the wire shape. The
//! [`event_types!`] list below generates the enum, the type names
//! ([`kind`]) and the schemas ([`EventData::schemas`]) together.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::wire::{PresenceOut, SetBy, TargetOut};

use super::schema::{self, DataSchema};

/// A payload struct: every field is always present in `data` (`None` as
/// `null`), and its schema lists the fields with their doc comments.
macro_rules! payload {
    (
        $(#[doc = $doc:literal])*
        $name:ident {
            $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
        }

        impl DataSchema for $name {
            fn schema() -> Value {
                schema::object(&[
                    $( (stringify!($field), <$ty as DataSchema>::schema(), concat!("", $($fdoc, "\n"),*)), )*
                ])
            }
        }
    };
}

/// A payload that has one of several shapes, told apart by their fields.
macro_rules! one_of {
    (
        $(#[doc = $doc:literal])*
        $name:ident { $( $(#[doc = $vdoc:literal])* $variant:ident($ty:ty) ),* $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum $name {
            $( $(#[doc = $vdoc])* $variant($ty), )*
        }

        impl DataSchema for $name {
            fn schema() -> Value {
                serde_json::json!({"oneOf": [
                    $( schema::described(<$ty as DataSchema>::schema(), concat!("", $($vdoc, "\n"),*)), )*
                ]})
            }
        }
    };
}

/// A string that takes one of a fixed set of values.
macro_rules! string_enum {
    (
        $(#[doc = $doc:literal])*
        $name:ident { $( $(#[doc = $vdoc:literal])* $variant:ident = $value:literal ),* $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
        pub enum $name {
            $( $(#[doc = $vdoc])* #[serde(rename = $value)] $variant, )*
        }

        impl DataSchema for $name {
            fn schema() -> Value {
                schema::one_of_strings(&[$($value),*])
            }
        }
    };
}

/// The event types: each line names the type's constant in [`kind`], its
/// `type` on the wire, its [`EventData`] variant and the variant's payload.
macro_rules! event_types {
    (
        $( $(#[doc = $doc:literal])* $konst:ident = $name:literal => $variant:ident($payload:ty), )*
    ) => {
        /// The event types, as they appear in `type`.
        pub mod kind {
            $( $(#[doc = $doc])* pub const $konst: &str = $name; )*

            /// Every type the daemon emits, in the order of
            /// [`EventData`](super::EventData)'s variants (the OpenAPI
            /// description lists them; tests hold them to the README).
            pub const ALL: &[&str] = &[$($konst),*];
        }

        /// What happened to whom: an event's type and its `data`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EventData {
            $( $(#[doc = $doc])* $variant($payload), )*
        }

        impl EventData {
            /// The event's `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => kind::$konst, )*
                }
            }

            /// The event's `data`, as it goes on the wire.
            pub fn to_data(&self) -> Value {
                // Payloads are structs, strings and numbers: they always
                // serialize.
                match self {
                    $( Self::$variant(payload) => serde_json::to_value(payload).unwrap_or_default(), )*
                }
            }

            /// Each type with the JSON schema of its `data`, in the order of
            /// [`kind::ALL`].
            pub fn schemas() -> Vec<(&'static str, Value)> {
                vec![
                    $( (
                        kind::$konst,
                        schema::described(
                            <$payload as DataSchema>::schema(),
                            concat!("", $($doc, "\n"),*),
                        ),
                    ), )*
                ]
            }

            /// Each variant's name with its type, for the test that finds
            /// every variant's call site in the daemon.
            #[cfg(test)]
            pub(super) const VARIANTS: &[(&str, &str)] = &[
                $( (stringify!($variant), kind::$konst), )*
            ];
        }
    };
}

event_types! {
    /// The daemon asks the CC to set an agent's status (Teams → CC, or
    /// routing for a contact).
    CC_STATUS_REQUESTED = "cc.status_requested" => CcStatusRequested(StatusRequest),
    /// The CC reported a status for an agent.
    CC_STATUS_REPORTED = "cc.status_reported" => CcStatusReported(StatusReported),
    /// Teams shows another presence for the agent's user.
    TEAMS_PRESENCE_CHANGED = "teams.presence_changed" => TeamsPresenceChanged(PresenceChanged),
    /// A Teams write carrying a change succeeded.
    TEAMS_WRITTEN = "teams.presence_written" => TeamsWritten(PresenceWritten),
    /// The agent became routable, or stopped being.
    AGENT_ROUTABLE_CHANGED = "agent.routable_changed" => AgentRoutableChanged(RoutableChanged),
    /// The agent was created or changed by the CC.
    AGENT_UPDATED = "agent.updated" => AgentUpdated(AgentUpdated),
    /// The agent is linked to its Teams user.
    AGENT_LINKED = "agent.linked" => AgentLinked(AgentLinked),
    /// An agent's Teams user is linked to another agent: it stays unlinked.
    AGENT_LINK_CONFLICT = "agent.link_conflict" => AgentLinkConflict(LinkConflict),
    /// The agent was deleted.
    AGENT_DELETED = "agent.deleted" => AgentDeleted(NoData),
    /// The loop guard suspended the agent's sync.
    SYNC_LOOP_SUSPENDED = "sync.loop_suspended" => SyncLoopSuspended(LoopSuspended),
    /// The loop guard resumed the agent's sync.
    SYNC_LOOP_RESUMED = "sync.loop_resumed" => SyncLoopResumed(NoData),
    /// Teams shows something other than what the daemon set: the user
    /// overrode it.
    SYNC_TEAMS_OVERRIDE_DETECTED = "sync.teams_override_detected" => SyncTeamsOverrideDetected(TeamsMismatch),
    /// The user's override is over.
    SYNC_TEAMS_OVERRIDE_CLEARED = "sync.teams_override_cleared" => SyncTeamsOverrideCleared(NoData),
    /// Teams shows the user's own session, which Graph ranks above the
    /// daemon's write (not an override).
    SYNC_TEAMS_OUTRANKED = "sync.teams_outranked" => SyncTeamsOutranked(TeamsMismatch),
    /// A Teams write failed for good.
    SYNC_WRITE_FAILED = "sync.write_failed" => SyncWriteFailed(WriteFailed),
    /// The mapping profiles were reloaded.
    MAPPINGS_RELOADED = "mappings.reloaded" => MappingsReloaded(MappingsReloaded),
    /// An agent holds a CC status its profile does not know (a reload
    /// removed it, or the agent moved to a profile without it): kept, not
    /// routable, Teams shows the profile's `default_teams`.
    CC_STATUS_NOT_IN_PROFILE = "cc.status_not_in_profile" => CcStatusNotInProfile(NotInProfile),
    /// That status is in the agent's profile again: mapped as usual.
    CC_STATUS_BACK_IN_PROFILE = "cc.status_back_in_profile" => CcStatusBackInProfile(BackInProfile),
    /// A contact waits in a queue.
    ROUTING_QUEUED = "routing.queued" => RoutingQueued(Queued),
    /// A contact is offered to the agent.
    ROUTING_OFFERED = "routing.offered" => RoutingOffered(Offered),
    /// The agent accepted the contact.
    ROUTING_ACCEPTED = "routing.accepted" => RoutingAccepted(ContactInQueue),
    /// The agent declined the contact.
    ROUTING_DECLINED = "routing.declined" => RoutingDeclined(ContactInQueue),
    /// The agent did not answer the offer in time (redirection on no answer).
    ROUTING_RONA = "routing.rona" => RoutingRona(ContactInQueue),
    /// The offer was taken back: the agent stopped being eligible before
    /// answering.
    ROUTING_OFFER_WITHDRAWN = "routing.offer_withdrawn" => RoutingOfferWithdrawn(OfferWithdrawn),
    /// The agent finished the contact.
    ROUTING_COMPLETED = "routing.completed" => RoutingCompleted(Completed),
    /// The contact ended before an agent finished it.
    ROUTING_ABANDONED = "routing.abandoned" => RoutingAbandoned(Abandoned),
    /// The contact waited too long and overflowed to another queue or to
    /// Teams users.
    ROUTING_OVERFLOW = "routing.overflow" => RoutingOverflow(Overflow),
    /// Routing paused the agent after missed offers.
    ROUTING_AGENT_PAUSED = "routing.agent_paused" => RoutingAgentPaused(AgentPaused),
    /// Routing resumed the agent.
    ROUTING_AGENT_RESUMED = "routing.agent_resumed" => RoutingAgentResumed(NoData),
}

/// No data: `data` is `null`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NoData;

impl DataSchema for NoData {
    fn schema() -> Value {
        serde_json::json!({"type": "null"})
    }
}

one_of! {
    /// Why the daemon asks the CC for a status.
    StatusRequest {
        /// A Teams → CC rule, or putting back what a rule replaced.
        Sync(SyncRequest),
        /// Routing, for a contact.
        Routing(RoutingRequest),
    }
}

string_enum! {
    /// What asked for a status from the sync engine.
    SyncRequestKind {
        /// A Teams → CC rule fired.
        Rule = "rule",
        /// Putting back the status a rule replaced.
        Restore = "restore",
    }
}

string_enum! {
    /// Routing asked for a status.
    RoutingRequestKind {
        Routing = "routing",
    }
}

payload! {
    /// A status the sync engine asks for.
    SyncRequest {
        status: String,
        kind: SyncRequestKind,
        /// Why, for people; null when the agent has no profile.
        reason: Option<String>,
        /// The Teams presence that led to it, when one did.
        teams_presence: Option<PresenceOut>,
    }
}

payload! {
    /// A status routing asks for (`on_contact_status`, `after_contact_status`).
    RoutingRequest {
        status: String,
        kind: RoutingRequestKind,
        /// Why, for people.
        reason: String,
        /// The contact the status is for.
        contact: String,
    }
}

payload! {
    StatusReported {
        status: String,
        /// The status before, if there was one.
        previous_status: Option<String>,
        set_by: SetBy,
        /// When the status changed in the CC.
        at: DateTime<Utc>,
    }
}

payload! {
    PresenceChanged {
        presence: PresenceOut,
    }
}

string_enum! {
    /// What a Teams write did.
    WriteAction {
        /// Set a presence.
        Set = "set",
        /// Cleared the daemon's presence: Teams shows the user's own.
        Clear = "clear",
    }
}

payload! {
    PresenceWritten {
        action: WriteAction,
        /// The presence set; null for `clear`.
        presence: Option<PresenceOut>,
    }
}

payload! {
    RoutableChanged {
        routable: bool,
        /// Why not, for people; empty when routable.
        not_routable_because: Vec<String>,
    }
}

payload! {
    AgentUpdated {
        /// The agent is new.
        created: bool,
    }
}

payload! {
    AgentLinked {
        teams_user_id: String,
    }
}

payload! {
    LinkConflict {
        /// The Teams user the agent names (UPN, mail or object id).
        teams_user: String,
        teams_user_id: String,
        /// The agent linked to that Teams user.
        held_by: String,
    }
}

string_enum! {
    /// The direction a change travels.
    SyncFlow {
        CcToTeams = "cc_to_teams",
        TeamsToCc = "teams_to_cc",
    }
}

impl From<crate::sync::Flow> for SyncFlow {
    fn from(flow: crate::sync::Flow) -> Self {
        match flow {
            crate::sync::Flow::CcToTeams => SyncFlow::CcToTeams,
            crate::sync::Flow::TeamsToCc => SyncFlow::TeamsToCc,
        }
    }
}

payload! {
    LoopSuspended {
        /// The directions suspended.
        flows: Vec<SyncFlow>,
        until: DateTime<Utc>,
        /// The changes seen in the guard's window.
        changes: u32,
    }
}

payload! {
    /// What the daemon wants Teams to show, and what it shows.
    TeamsMismatch {
        expected: PresenceOut,
        shown: Option<PresenceOut>,
    }
}

payload! {
    WriteFailed {
        message: String,
    }
}

payload! {
    /// An agent holding a CC status its profile does not have.
    HeldStatus {
        agent_id: String,
        status: Option<String>,
        profile: String,
    }
}

payload! {
    MappingsReloaded {
        /// The profiles now in force.
        profiles: Vec<String>,
        statuses_not_in_profile: Vec<HeldStatus>,
    }
}

payload! {
    NotInProfile {
        status: String,
        profile: Option<String>,
        /// What Teams shows meanwhile: the profile's `default_teams`.
        teams_target: TargetOut,
    }
}

payload! {
    BackInProfile {
        status: String,
        profile: Option<String>,
    }
}

payload! {
    Queued {
        contact: String,
        queue: String,
        priority: u8,
        /// The contact's data, as the CC gave it.
        data: Value,
    }
}

payload! {
    Offered {
        contact: String,
        queue: String,
        /// When the offer runs out (RONA).
        expires: DateTime<Utc>,
        /// The contact's data, as the CC gave it.
        data: Value,
        teams_user_id: Option<String>,
        teams_upn: Option<String>,
        phone: Option<String>,
    }
}

payload! {
    ContactInQueue {
        contact: String,
        queue: String,
    }
}

string_enum! {
    /// Why an offer was taken back.
    WithdrawnBecause {
        /// The agent was deleted.
        AgentRemoved = "agent_removed",
        /// The agent lost its link to a Teams user.
        Unlinked = "unlinked",
        /// The agent's CC status is not routable in its profile.
        CcStatusNotRoutable = "cc_status_not_routable",
        /// Teams shows a presence the agent's profile blocks routing for.
        TeamsPresenceBlocking = "teams_presence_blocking",
    }
}

impl From<crate::routing::WithdrawReason> for WithdrawnBecause {
    fn from(reason: crate::routing::WithdrawReason) -> Self {
        use crate::routing::WithdrawReason as R;
        match reason {
            R::AgentRemoved => WithdrawnBecause::AgentRemoved,
            R::Unlinked => WithdrawnBecause::Unlinked,
            R::CcStatusNotRoutable => WithdrawnBecause::CcStatusNotRoutable,
            R::TeamsPresenceBlocking => WithdrawnBecause::TeamsPresenceBlocking,
        }
    }
}

payload! {
    OfferWithdrawn {
        contact: String,
        queue: String,
        reason: WithdrawnBecause,
    }
}

payload! {
    Completed {
        contact: String,
        queue: String,
        /// The agent's wrap-up ends then.
        wrap_up_until: DateTime<Utc>,
    }
}

payload! {
    Abandoned {
        contact: String,
        queue: String,
        /// `caller` (the API) or `queue_removed` (a reload dropped its queue).
        reason: String,
    }
}

one_of! {
    /// Where an overflowing contact goes.
    Overflow {
        /// To another queue.
        ToQueue(OverflowToQueue),
        /// To Teams users, by phone, outside the router.
        ToTeamsUsers(OverflowToTeamsUsers),
    }
}

payload! {
    OverflowToQueue {
        contact: String,
        from_queue: String,
        waited_seconds: f64,
        /// The contact's data, as the CC gave it.
        data: Value,
        to_queue: String,
    }
}

payload! {
    OverflowToTeamsUsers {
        contact: String,
        from_queue: String,
        waited_seconds: f64,
        /// The contact's data, as the CC gave it.
        data: Value,
        /// The Teams users the overflow names, with what the directory knows.
        teams_users: Vec<DialTarget>,
        /// The number to dial: the first direct-dial number found.
        number: Option<String>,
    }
}

payload! {
    /// A Teams user an overflow may call.
    DialTarget {
        /// As the queue's overflow names it.
        teams_user: String,
        teams_user_id: Option<String>,
        upn: Option<String>,
        display_name: Option<String>,
        phone: Option<String>,
    }
}

payload! {
    AgentPaused {
        /// Offers missed in a row.
        misses: u32,
    }
}

//! Wire shapes the event stream and the contact-center API share: the API's
//! models re-export them, so the events need nothing from `api/`.

use serde::{Deserialize, Serialize};

/// Who set a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetBy {
    /// The agent (or their own client, or the CC on its own).
    Agent,
    /// presence-sync.
    Daemon,
    /// presence-sync's routing, for a contact (`on_contact_status`,
    /// `after_contact_status`).
    Routing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceOut {
    pub availability: String,
    pub activity: String,
}

/// What the daemon wants Teams to show, or `clear` (the user's own presence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetOut {
    /// `set` or `clear`.
    pub action: String,
    pub presence: Option<PresenceOut>,
}

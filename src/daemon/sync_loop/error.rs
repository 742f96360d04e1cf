//! Why the loop refuses a command ([`LoopError`]). The API maps each one
//! to its HTTP status and error code at its edge (`daemon/service.rs`);
//! the loop itself knows nothing of HTTP.

use thiserror::Error;

use crate::routing::RoutingError;
use crate::sync::EngineError;
use crate::time::Timestamp;

use super::routing::MAX_CAPACITY;

#[derive(Debug, PartialEq, Eq, Error)]
pub enum LoopError {
    #[error("no agent `{0}`")]
    UnknownAgent(String),
    #[error("no queue `{0}`")]
    UnknownQueue(String),
    #[error("no contact `{0}`")]
    UnknownContact(String),
    #[error("no profile `{profile}`{}", hint(.suggestion))]
    UnknownProfile {
        profile: String,
        suggestion: Option<String>,
    },
    #[error("status `{status}` is not in profile `{profile}`{}", hint(.suggestion))]
    UnknownStatus {
        status: String,
        profile: String,
        suggestion: Option<String>,
    },
    /// A status report older than the status the agent holds.
    #[error(
        "a newer status was reported for {}; this one is from {}",
        .since.to_utc().to_rfc3339(),
        .at.to_utc().to_rfc3339()
    )]
    StaleStatus { since: Timestamp, at: Timestamp },
    #[error("Teams user `{teams_user}` is already linked to agent `{holder}`")]
    TeamsUserTaken { teams_user: String, holder: String },
    #[error(
        "no Teams user `{0}` in the directory; send its object id, or `auto_link: true` to link it when it appears"
    )]
    UnknownTeamsUser(String),
    #[error("skill `{name}` level {level}: a skill needs a name and a level 0–100")]
    InvalidSkill { name: String, level: u8 },
    #[error("capacity is 1–{MAX_CAPACITY} contacts at once")]
    InvalidCapacity(u8),
    /// `index`: the membership's place in the agent's queue list.
    #[error("no queue `{queue}`{}", hint(.suggestion))]
    UnknownMembership {
        index: usize,
        queue: String,
        suggestion: Option<String>,
    },
    #[error("queue `{queue}` is listed twice")]
    DuplicateMembership { index: usize, queue: String },
    /// The engine refused; `field`: the input it was about.
    #[error("{source}")]
    Engine {
        field: &'static str,
        source: EngineError,
    },
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The store failed: nothing of the step is durable.
    #[error("{0}")]
    StoreFailed(String),
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_deref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// The candidate `input` is most likely a typo of.
pub(super) fn suggestion<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    crate::diagnostics::nearest(input, candidates).map(str::to_string)
}

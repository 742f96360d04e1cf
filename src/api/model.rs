//! The JSON bodies of the contact-center API (SPEC §3.1). Requests refuse
//! unknown fields, so a typo is a 4xx that names it rather than a silently
//! ignored setting.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `PUT /v1/agents/{agent_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUpsert {
    /// A Teams object id (GUID) or a UPN / e-mail found in the directory.
    pub teams_user: String,
    /// When `teams_user` is a UPN or e-mail the directory does not show yet,
    /// accept the agent and link it once the directory has a user with that
    /// UPN or mail (instead of answering 422).
    #[serde(default)]
    pub auto_link: bool,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Skill name → level (0–100).
    #[serde(default)]
    pub skills: Option<BTreeMap<String, u8>>,
    #[serde(default)]
    pub phone: Option<String>,
    /// A mapping profile by name; by default the agent's groups decide.
    #[serde(default)]
    pub profile: Option<String>,
}

/// `PUT /v1/agents/{agent_id}/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub status: String,
    /// When the status changed in the CC; the debounce counts from then.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// Who set a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetBy {
    /// The agent (or their own client, or the CC on its own).
    Agent,
    /// presence-sync.
    Daemon,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceOut {
    pub availability: String,
    pub activity: String,
}

/// A status the daemon asked the CC for and has not seen back yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestedOut {
    pub status: String,
    /// `rule` (a Teams → CC rule) or `restore` (putting back what a rule replaced).
    pub kind: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CcOut {
    pub status: Option<String>,
    pub set_by: Option<SetBy>,
    pub since: Option<DateTime<Utc>>,
    /// The profile marks the status routable.
    pub routable: bool,
    /// A change waiting for its debounce, due then.
    pub pending_until: Option<DateTime<Utc>>,
    pub requested: Option<RequestedOut>,
}

/// What the daemon wants Teams to show, or `clear` (the user's own presence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetOut {
    /// `set` or `clear`.
    pub action: String,
    pub presence: Option<PresenceOut>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenOut {
    pub target: TargetOut,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamsOut {
    pub presence: Option<PresenceOut>,
    pub set_by: Option<SetBy>,
    pub since: Option<DateTime<Utc>>,
    /// The profile blocks routing while Teams shows this presence.
    pub blocking: bool,
    pub pending_until: Option<DateTime<Utc>>,
    pub target: Option<TargetOut>,
    pub written: Option<WrittenOut>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuspendedOut {
    /// `cc_to_teams` and/or `teams_to_cc`.
    pub flows: Vec<String>,
    pub until: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorAt {
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreOut {
    pub rule: String,
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncOut {
    pub debouncing_until: Option<DateTime<Utc>>,
    pub suspended: Option<SuspendedOut>,
    pub teams_override_since: Option<DateTime<Utc>>,
    pub write_in_flight: bool,
    pub last_error: Option<ErrorAt>,
    /// What will be put back when a rule's Teams condition ends.
    pub restore: Option<RestoreOut>,
    /// The last decision, in words.
    pub last_decision: Option<String>,
}

/// `GET /v1/agents/{agent_id}`: the combined view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentOut {
    pub id: String,
    pub teams_user: String,
    pub teams_user_id: Option<String>,
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    pub skills: BTreeMap<String, u8>,
    pub phone: Option<String>,
    /// The profile in force.
    pub profile: String,
    pub linked: bool,
    pub cc: CcOut,
    pub teams: TeamsOut,
    pub routable: bool,
    /// Why the agent is not routable (empty when it is).
    pub not_routable_because: Vec<String>,
    pub sync: SyncOut,
}

/// `GET /v1/agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentOut>,
}

/// One readiness check for `/readyz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// A background task's state for `/readyz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOut {
    pub name: String,
    /// `starting`, `running`, `stopping`, `stopped` or `failed`.
    pub state: String,
    pub detail: String,
}

/// `/readyz`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
    pub tasks: Vec<TaskOut>,
}

/// The error body of every 4xx and 5xx.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

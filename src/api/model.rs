//! The JSON bodies of the contact-center API (SPEC §3.1). Requests refuse
//! unknown fields, so a typo is a 4xx that names it rather than a silently
//! ignored setting.

pub use crate::events::wire::{PresenceOut, SetBy, TargetOut};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::routing::{Membership, QueueTotals};

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
    /// Routing queues the agent serves, in its order of preference, each
    /// with an optional position in the queue's agent order.
    #[serde(default)]
    pub queues: Option<Vec<Membership>>,
    /// Contacts the agent can be on at once (1–20; default 1).
    #[serde(default)]
    pub capacity: Option<u8>,
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
    /// False when `status` is not a status of the agent's profile (a
    /// mapping reload removed it, or the agent moved to a profile without
    /// it): it is kept, is not routable, and Teams shows the profile's
    /// `default_teams` until the CC reports a status the profile knows.
    pub in_profile: bool,
    pub set_by: Option<SetBy>,
    pub since: Option<DateTime<Utc>>,
    /// The profile marks the status routable.
    pub routable: bool,
    /// A change waiting for its debounce, due then.
    pub pending_until: Option<DateTime<Utc>>,
    pub requested: Option<RequestedOut>,
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
    /// A session of the user's own outranks our write in Teams (not an
    /// override: ours shows once theirs drops below it).
    pub teams_outranked_since: Option<DateTime<Utc>>,
    pub write_in_flight: bool,
    pub last_error: Option<ErrorAt>,
    /// What will be put back when a rule's Teams condition ends.
    pub restore: Option<RestoreOut>,
    /// The last decision, in words.
    pub last_decision: Option<String>,
    /// Why writes to Teams are held (the app lacks Presence.ReadWrite.All):
    /// the agent's newest target goes out when consent is granted.
    #[serde(default)]
    pub writes_held: Option<String>,
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
    /// Why an agent waiting for its Teams user is not linked: the user is
    /// linked to another agent. `null` otherwise.
    #[serde(default)]
    pub link_conflict: Option<LinkConflictOut>,
    pub cc: CcOut,
    pub teams: TeamsOut,
    pub routable: bool,
    /// Why the agent is not routable (empty when it is).
    pub not_routable_because: Vec<String>,
    pub sync: SyncOut,
    pub routing: RoutingOut,
}

/// The Teams user an agent waits for is linked to another agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkConflictOut {
    pub teams_user_id: String,
    /// The agent that holds the Teams user.
    pub held_by: String,
}

/// A skill an agent lacks for a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissingSkill {
    pub skill: String,
    pub needed: u8,
    pub has: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueFitOut {
    pub queue: String,
    pub position: Option<u32>,
    /// Its skills are enough for the queue.
    pub skills_match: bool,
    pub missing_skills: Vec<MissingSkill>,
}

/// The routing side of the agent view (SPEC §6.2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingOut {
    /// Would be offered a contact now by at least one of its queues.
    pub eligible: bool,
    /// Why not, every reason (presence and routing).
    pub not_eligible_because: Vec<String>,
    pub capacity: u8,
    pub queues: Vec<QueueFitOut>,
    /// The contact offered to it and not answered yet.
    pub offered: Option<String>,
    /// Contacts it accepted and has not completed.
    pub contacts: Vec<String>,
    pub idle_since: DateTime<Utc>,
    pub wrap_up_until: Option<DateTime<Utc>>,
    pub backoff_until: Option<DateTime<Utc>>,
    pub paused_since: Option<DateTime<Utc>>,
    /// Offers missed in a row.
    pub misses: u32,
    pub contacts_today: u32,
    pub busy_today_seconds: f64,
}

/// `POST /v1/contacts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    pub queue: String,
    /// The CC's own id; made up (`ct-<n>`) when absent.
    #[serde(default)]
    pub contact_id: Option<String>,
    /// Skills needed on top of the queue's: name → minimum level (0–100).
    #[serde(default)]
    pub skills: Option<BTreeMap<String, u8>>,
    /// 0–255, higher first; default: the queue's.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Anything the CC wants back in events (caller id, …).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// `POST /v1/contacts/{id}/accept|decline|complete|abandon` (body optional).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactActionIn {
    /// When given, must be the agent the contact is offered to.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// What can be done to a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactAction {
    Accept,
    Decline,
    Complete,
    Abandon,
}

/// A contact as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactOut {
    pub id: String,
    pub queue: String,
    /// `waiting`, `offered`, `accepted`, `completed`, `abandoned` or `overflowed`.
    pub state: String,
    pub priority: u8,
    pub skills: BTreeMap<String, u8>,
    pub data: serde_json::Value,
    pub arrived: DateTime<Utc>,
    /// When it entered its current queue.
    pub queued_at: DateTime<Utc>,
    /// 1-based, among the contacts waiting in its queue.
    pub place_in_queue: Option<usize>,
    pub agent: Option<String>,
    pub offer_expires: Option<DateTime<Utc>>,
    pub offers: u32,
    pub overflowed_from: Vec<String>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// `GET /v1/queues/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueOut {
    pub name: String,
    pub strategy: String,
    pub priority: u8,
    pub skills: BTreeMap<String, u8>,
    pub offer_timeout_seconds: f64,
    pub wrap_up_seconds: f64,
    pub max_no_answer: u32,
    pub miss_backoff_seconds: f64,
    pub max_wait_seconds: Option<f64>,
    /// `{"queue": name}` or `{"teams_users": [...]}`.
    pub overflow: Option<serde_json::Value>,
    pub waiting: usize,
    pub longest_wait_seconds: Option<f64>,
    /// Agents serving the queue.
    pub agents: usize,
    /// Of those, free to be offered one of its contacts now.
    pub eligible_agents: usize,
    pub offered: usize,
    pub last_offered: Option<String>,
    /// Since the queue was first configured.
    pub totals: QueueTotals,
    /// Contacts completed today (UTC).
    #[serde(default)]
    pub completed_today: u64,
}

/// `GET /v1/queues`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueOut>,
}

/// `GET /v1/agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentOut>,
    /// Where the page ends, when a page was asked for.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageOut>,
}

/// A page's end: the cursor of the next one and how many match in all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageOut {
    /// `null` on the last page.
    pub next_cursor: Option<String>,
    pub total: usize,
}

/// `GET /v1/agents?limit=&cursor=&search=`: a page of agents in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentQuery {
    /// Agents after this id.
    pub cursor: Option<String>,
    pub limit: usize,
    /// Lower-case text the id, display name or UPN must contain.
    pub search: Option<String>,
}

/// What `GET /v1/board/stream` sends in one `update` event: only what
/// changed since the one before.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoardUpdate {
    /// Agents that changed, as they are now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentOut>,
    /// Agents that are gone (deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Too much changed to list: read `GET /v1/agents` again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
    /// Every queue, when any changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueueOut>>,
    /// The health report, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
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
    /// `starting`, `running`, `degraded`, `stopped` or `failed`.
    pub state: String,
    pub detail: String,
}

/// `/readyz`: open to probes, so its details never name the tenant, the
/// app or a user (see [`Health`] for the full story), with one exception:
/// while a Graph permission is missing, the admin-consent URL that fixes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
    pub tasks: Vec<TaskOut>,
    /// The presence poller's round and read freshness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollOut>,
    /// The directory's slower tier: the users in scope who are not agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_poll: Option<PollOut>,
    /// The Graph permissions needed, granted and missing (the consent URL
    /// only while one is missing: it names the tenant and the app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionsOut>,
    /// Presence subscriptions, when enabled: a failed service account is
    /// named here with the command that fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<SubscriptionsOut>,
    /// In a cluster (`[cluster]`): this node's role, the lease holder,
    /// replication lag and the NATS connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterOut>,
}

/// The Graph application permissions: what the config needs, what the
/// newest access token grants (its `roles`), what is missing and what
/// that stops. Absent until the first token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermissionsOut {
    /// e.g. `Presence.Read.All`, `Presence.ReadWrite.All`, `User.Read.All`.
    pub needed: Vec<String>,
    /// The token's roles; `null` when the token cannot be read.
    pub granted: Option<Vec<String>>,
    pub missing: Vec<MissingPermissionOut>,
    /// The tenant's admin-consent URL: always in `/v1/health`, in `/readyz`
    /// while a permission is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_url: Option<String>,
}

/// A needed permission the app lacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissingPermissionOut {
    pub permission: String,
    /// The features it stops: `teams_to_cc`, `routing_gates`,
    /// `presence_view`, `cc_to_teams`, `directory`, `auto_linking`,
    /// `direct_dial_numbers`.
    pub stops: Vec<String>,
    /// What to do, in words.
    pub fix: String,
}

/// The presence poller's schedule, for `/readyz` and `/v1/health`: no
/// tenant, app or user in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollOut {
    /// Seconds per round: every linked agent is read once a round. The
    /// round follows the Graph budget that writes leave.
    pub round_seconds: f64,
    /// Linked agents polled.
    pub users: usize,
    /// Graph requests per second the round uses.
    pub reads_per_second: f64,
    /// Seconds since the least recently read agent was read; absent with
    /// no agents to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_read_seconds: Option<f64>,
    /// Graph requests per second the budget allows now, all callers
    /// together (lowered after a 429, then recovering).
    pub rate_limit: f64,
}

/// `GET /v1/health` (authenticated): readiness with every detail in full
/// (what Graph and Entra said, with their ids) and the Graph app in use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ready: bool,
    pub checks: Vec<Check>,
    pub tasks: Vec<TaskOut>,
    pub graph: GraphAppOut,
    /// The presence poller's round and read freshness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollOut>,
    /// The Graph permissions, with the admin-consent URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionsOut>,
    /// The directory's slower tier: the users in scope who are not agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_poll: Option<PollOut>,
    /// Graph's budget, 429s and token, the loop guard and the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<HealthStats>,
    /// Presence subscriptions through service accounts, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<SubscriptionsOut>,
    /// In a cluster (`[cluster]`): this node's role, the lease holder,
    /// replication lag and the NATS connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterOut>,
}

/// Presence subscriptions: who is covered, each service account and its
/// subscription, the notifications received and the reads they saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionsOut {
    /// Users (agents and others in scope) whose changes notifications bring.
    pub users_subscribed: usize,
    /// Users read by polling alone, at the normal freshness.
    pub users_polled: usize,
    /// More service accounts needed to cover every user (650 each).
    pub accounts_needed: usize,
    /// Subscribed users' reconciliation reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<PollOut>,
    /// Presence reads per minute the subscriptions save.
    pub graph_reads_saved_per_minute: f64,
    pub notifications: NotificationsOut,
    pub accounts: Vec<ServiceAccountOut>,
}

/// Change notifications received.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationsOut {
    pub received_total: u64,
    /// Presences passed on (rich) or reads asked for (basic).
    pub applied_total: u64,
    pub duplicates_total: u64,
    /// Refused or dropped: wrong clientState, bad signature or token, ...
    pub rejected_total: u64,
    /// Lifecycle notifications acted on.
    pub lifecycle_total: u64,
    /// Seconds from a change in Teams (as Graph stamps it, or as the
    /// receiver got it) to its processing, for the latest notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delay_seconds: Option<f64>,
}

/// A service account and its subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccountOut {
    pub account: String,
    /// `ok`, `failed` (its token stopped working) or `not_signed_in`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The command that fixes a failed account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub subscription: SubscriptionOut,
}

/// One account's subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionOut {
    /// `active`, `creating`, `renewing`, `reauthorizing`, `deleting`,
    /// `retrying`, `idle` or `account_failed`.
    pub state: String,
    /// Users it watches now.
    pub watching: usize,
    /// Users it should watch.
    pub assigned: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The numbers the status board's health view shows (the same as in
/// `/metrics`, as JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthStats {
    /// Graph requests the budget allows per 30 s.
    pub graph_budget_per_30s: u32,
    /// Graph requests sent in the last 30 s.
    pub graph_budget_in_use: u64,
    /// Graph answers with 429 since the start.
    pub graph_throttled_total: u64,
    /// Graph requests that failed otherwise (4xx, 5xx, transport).
    pub graph_failed_total: u64,
    /// Seconds the Graph access token held now stays valid; `null`: none held.
    pub token_expires_in_seconds: Option<f64>,
    /// The last failure to get a token, when the last attempt failed.
    pub token_error: Option<String>,
    /// Agents the loop guard suspended since the start.
    pub loop_suspensions_total: u64,
    /// Teams manual overrides seen since the start.
    pub teams_overrides_total: u64,
    /// Teams writes waiting in the outbox.
    pub outbox_depth: u64,
}

/// The Graph app the daemon signs in as.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphAppOut {
    pub tenant_id: String,
    pub client_id: String,
    /// `client_secret` or `certificate`.
    pub auth: String,
    pub login_base: String,
    pub graph_base: String,
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

/// A Teams user of the directory (`GET /v1/directory`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryUserOut {
    /// The Entra object id.
    pub id: String,
    pub upn: String,
    /// The display name; the UPN until the directory was read (after a
    /// restart from the stored directory).
    pub display_name: String,
    pub mail: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    pub business_phones: Vec<String>,
    pub mobile_phone: Option<String>,
    /// The number to dial the user directly, `+` and digits (for a `tel:`
    /// link): a business phone with Teams Phone, else a mobile phone.
    pub direct_dial: Option<String>,
    /// The Teams presence last read; `null` before the first read.
    pub presence: Option<PresenceOut>,
    /// When the presence was seen to change to what it is; `null` while
    /// it has not changed since it was first read.
    pub presence_since: Option<DateTime<Utc>>,
    /// The agent linked to the user.
    pub agent: Option<String>,
}

/// A page of the directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryList {
    pub users: Vec<DirectoryUserOut>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
    /// Users matching the filters, on every page.
    pub total: usize,
}

/// A node of an active/standby pair (`[cluster]`, docs/cluster.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterOut {
    /// `active`, `standby`, or `starting` (connecting to NATS, restoring).
    pub role: String,
    pub node_id: String,
    pub tenant: String,
    /// Who holds the lease (the active node); `null` while nobody does.
    pub lease_holder: Option<LeaseHolderOut>,
    /// The last commit-log record this node's store holds.
    pub position: u64,
    /// The log's last record, as this node last saw it.
    pub log_last: Option<u64>,
    /// Records the log holds that this node has not applied.
    pub lag_records: u64,
    /// Seconds since this node last held every record of the log; `0` when
    /// it does now.
    pub lag_seconds: f64,
    pub nats: NatsOut,
    /// Every node's last report (role, position), this one included.
    pub nodes: Vec<NodeOut>,
    /// Times this node took over as active, and stepped down, since it started.
    pub takeovers: u64,
    pub step_downs: u64,
    /// Why this node last stepped down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step_down: Option<String>,
}

/// The lease holder as the lease names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseHolderOut {
    pub node_id: String,
    pub api_url: String,
    pub since: DateTime<Utc>,
}

/// The connection to NATS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NatsOut {
    pub connected: bool,
    /// The server this node is connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The last failure talking to NATS, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A node as it last reported itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeOut {
    pub node_id: String,
    pub role: String,
    pub position: u64,
    pub api_url: String,
    pub at: DateTime<Utc>,
}

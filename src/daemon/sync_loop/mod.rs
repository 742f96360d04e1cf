//! The sync loop: the one task that owns the engine, the agents and the
//! directory. It takes commands (API calls, presences read, write results,
//! directory changes, mapping reloads), feeds them to the engine, and commits
//! everything one step changed to the store as one batch before anyone
//! hears about it: API replies, events on the stream, writes to Graph.
//! Committing per step rather than per call is what makes a durable
//! acknowledgement cheap under load (group commit).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::api::ApiError;
use crate::api::model::{
    AgentOut, AgentUpsert, ContactAction, ContactActionIn, ContactIn, ContactOut, QueueOut, SetBy,
    StatusReport,
};
use crate::config::RoutingConfig;
use crate::events::{Event, NewEvent, kind};
use crate::graph::PresenceUpdate;
use crate::mapping::Profile;
use crate::metrics::{DaemonMetrics, Direction, TeamsWriteKind};
use crate::routing::{ContactRecord, Router};
use crate::stop::Stop;
use crate::store::{AgentRecord, Batch, CcReport, Loaded, MetaKey, OutboxEntry, Store};
use crate::sync::{
    AgentKey, AgentSnapshot, Decision, Engine, EngineError, ProfileId, Reason, Settings, SyncEvent,
    TeamsWrite, WriteId, WriteOutcome,
};
use crate::time::Timestamp;

use super::directory::{self, DirectoryIndex, DirectoryUpdate};
use super::mappings::MappingSet;
use super::tasks::{TaskState, TaskStatus};
use super::view::{self, presence_out};
use super::writer::{WriteJob, WriteResult};

mod routing;

/// Why a Teams write went out: to renew our session, or to carry a change
/// (which the propagation metrics time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WritePurpose {
    KeepAlive,
    Change,
}

/// What the API and the other tasks ask of the loop.
pub enum Command {
    PutAgent {
        id: String,
        body: AgentUpsert,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    DeleteAgent {
        id: String,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    ReportStatus {
        id: String,
        body: StatusReport,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    Agent {
        id: String,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    Agents {
        reply: oneshot::Sender<Vec<AgentOut>>,
    },
    ResumeAgent {
        id: String,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    Queues {
        reply: oneshot::Sender<Vec<QueueOut>>,
    },
    Queue {
        name: String,
        reply: oneshot::Sender<Result<QueueOut, ApiError>>,
    },
    AddContact {
        body: ContactIn,
        reply: oneshot::Sender<Result<ContactOut, ApiError>>,
    },
    Contact {
        id: String,
        reply: oneshot::Sender<Result<ContactOut, ApiError>>,
    },
    ContactAction {
        id: String,
        action: ContactAction,
        body: ContactActionIn,
        reply: oneshot::Sender<Result<ContactOut, ApiError>>,
    },
    Directory(DirectoryUpdate),
    /// New mappings, and new queues when the whole config was read again.
    Reload(MappingSet, Option<RoutingConfig>),
    /// Answered once the loop has gone round: the watchdog's liveness check.
    Ping(oneshot::Sender<()>),
}

/// What the loop shows about itself, refreshed every step.
#[derive(Clone, Debug, Default)]
pub struct LoopStatus {
    pub agents: usize,
    pub linked: usize,
    pub outbox: usize,
    pub directory_users: usize,
    pub directory_loaded: bool,
    pub profiles: Vec<String>,
    pub stats: crate::sync::Stats,
    pub commits: u64,
    pub events: u64,
}

/// Where the loop's output goes.
pub struct Outputs {
    pub events: broadcast::Sender<Event>,
    pub writes: mpsc::UnboundedSender<WriteJob>,
    pub poll_users: watch::Sender<Arc<Vec<String>>>,
    pub status: watch::Sender<LoopStatus>,
    pub metrics: DaemonMetrics,
}

/// Inputs the loop selects on.
pub struct Inputs {
    pub commands: mpsc::Receiver<Command>,
    pub presences: mpsc::Receiver<PresenceUpdate>,
    pub write_results: mpsc::Receiver<WriteResult>,
}

struct AgentEntry {
    record: AgentRecord,
    key: Option<AgentKey>,
    routable: Option<bool>,
    /// Waiting for a Teams user another agent holds: the user's id and
    /// that agent. Worked out again at every directory update.
    conflict: Option<(String, String)>,
}

/// A reply held until the step's batch is durable.
enum Reply {
    Agent(oneshot::Sender<Result<AgentOut, ApiError>>, String),
    Contact(oneshot::Sender<Result<ContactOut, ApiError>>, String),
    Deleted(oneshot::Sender<Result<(), ApiError>>),
    Ping(oneshot::Sender<()>),
}

/// What one step changed, to commit as one batch.
#[derive(Default)]
struct Step {
    dirty: BTreeSet<String>,
    deleted: BTreeSet<String>,
    outbox: Vec<(String, Option<OutboxEntry>)>,
    contacts: Vec<(String, Option<ContactRecord>)>,
    events: Vec<NewEvent>,
    meta: Vec<(MetaKey, Option<String>)>,
    jobs: Vec<WriteJob>,
    replies: Vec<Reply>,
    poll_changed: bool,
}

/// Commands taken in one step at most: bounds the latency of the first.
const MAX_COMMANDS_PER_STEP: usize = 512;

pub struct SyncLoop<S: Store> {
    engine: Engine,
    router: Router,
    routing: RoutingConfig,
    mappings: MappingSet,
    agents: BTreeMap<String, AgentEntry>,
    by_key: HashMap<AgentKey, String>,
    by_user: HashMap<String, String>,
    directory: DirectoryIndex,
    /// Writes on their way: whether each renews a session or carries a
    /// change, and when the change it carries was first reported.
    writes_out: HashMap<WriteId, (WritePurpose, Option<Timestamp>)>,
    outbox_agents: BTreeSet<String>,
    store: Arc<S>,
    out: Outputs,
    step: Step,
    status: LoopStatus,
}

fn engine_error(e: EngineError, field: &str) -> ApiError {
    match e {
        EngineError::UnknownStatus { .. } => {
            ApiError::unprocessable(field, "unknown_status", e.to_string())
        }
        EngineError::UnknownProfile => {
            ApiError::unprocessable("profile", "unknown_profile", e.to_string())
        }
        EngineError::UnknownAgent => ApiError::new(404, "not_found", e.to_string()),
        EngineError::NoProfiles | EngineError::TooManyProfiles | EngineError::Full => {
            ApiError::new(503, "unavailable", e.to_string())
        }
    }
}

fn status_error(profile: &Profile, status: &str) -> ApiError {
    ApiError::unprocessable(
        "status",
        "unknown_status",
        format!(
            "status `{status}` is not in profile `{}`{}",
            profile.name,
            crate::diagnostics::did_you_mean(
                status,
                profile.statuses.iter().map(|s| s.name.as_str())
            )
        ),
    )
}

fn write_json(id: WriteId, write: &TeamsWrite) -> serde_json::Value {
    let (action, presence, expiry) = match write {
        TeamsWrite::SetSession { presence, expiry } => {
            ("set_session", Some(presence), Some(expiry.as_secs()))
        }
        TeamsWrite::ClearSession => ("clear_session", None, None),
        TeamsWrite::SetPreferred { presence } => ("set_preferred", Some(presence), None),
        TeamsWrite::ClearPreferred => ("clear_preferred", None, None),
    };
    serde_json::json!({
        "write_id": id.0,
        "action": action,
        "presence": presence.map(presence_out),
        "expiry_seconds": expiry,
    })
}

impl<S: Store> SyncLoop<S> {
    /// Rebuilds the loop from what the store holds. Writes owed before the
    /// restart are decided again here and go out after the first commit.
    pub fn restore(
        settings: Settings,
        mappings: MappingSet,
        routing: RoutingConfig,
        loaded: Loaded,
        store: Arc<S>,
        out: Outputs,
    ) -> Result<Self, EngineError> {
        let engine = Engine::new(settings, mappings.profiles.clone())?;
        let router_globals = store.meta(&MetaKey::Routing).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the stored routing state");
            None
        });
        let contacts = loaded.contacts;
        let queue_memories = loaded.routing_queues;
        let mut me = SyncLoop {
            engine,
            router: Router::new(Vec::new(), 0),
            routing: routing.clone(),
            mappings,
            agents: BTreeMap::new(),
            by_key: HashMap::new(),
            by_user: HashMap::new(),
            directory: DirectoryIndex::default(),
            writes_out: HashMap::new(),
            outbox_agents: loaded.outbox.iter().map(|o| o.agent_id.clone()).collect(),
            store,
            out,
            step: Step::default(),
            status: LoopStatus::default(),
        };
        let now = Timestamp::now();
        for record in loaded.agents {
            let id = record.id.clone();
            let snapshot = record
                .sync
                .as_ref()
                .and_then(|s| match serde_json::from_value::<AgentSnapshot>(s.clone()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(agent = %id, error = %e, "stored sync state unreadable; starting the agent afresh");
                        None
                    }
                });
            me.agents.insert(
                id.clone(),
                AgentEntry {
                    record,
                    key: None,
                    routable: None,
                    conflict: None,
                },
            );
            if me
                .agents
                .get(&id)
                .is_some_and(|e| e.record.teams_user_id.is_some())
            {
                me.attach(now, &id, snapshot.as_ref());
            }
        }
        // The router, with each agent's gate as its restored view shows it.
        let agents: Vec<_> = me
            .agents
            .iter()
            .map(|(id, e)| {
                let gate = me
                    .view(id, now)
                    .map(|v| routing::gate_of(&v))
                    .unwrap_or_default();
                (
                    id.clone(),
                    routing::spec_of(&e.record),
                    e.record.routing.clone(),
                    gate,
                )
            })
            .collect();
        me.router = routing::restore_router(
            now,
            &routing,
            router_globals,
            queue_memories,
            agents,
            contacts,
        );
        me.route_tick(now);
        // Outbox entries the engine no longer owes are done with.
        let owed: BTreeSet<String> = me.step.jobs.iter().map(|j| j.agent_id.clone()).collect();
        let stale: Vec<String> = me.outbox_agents.difference(&owed).cloned().collect();
        for agent in stale {
            me.outbox_agents.remove(&agent);
            me.step.outbox.push((agent, None));
        }
        if !owed.is_empty() {
            tracing::info!(
                writes = owed.len(),
                "sending Teams writes owed from before the restart"
            );
        }
        me.step.poll_changed = true;
        me.publish_status();
        Ok(me)
    }

    /// Commits what restoring decided (called once before serving).
    pub async fn commit_initial(&mut self) -> Result<(), String> {
        self.commit().await
    }

    /// Runs until stopped. An `Err` means the store failed: the daemon must
    /// exit and start again from what is durable.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        status: TaskStatus,
        stop: Stop,
    ) -> Result<(), String> {
        status.set(TaskState::Running);
        loop {
            let wake = match (self.engine.next_wakeup(), self.router.next_wakeup()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(at) => {
                        let now = Timestamp::now();
                        tokio::time::sleep(at.since(now)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let stopping = tokio::select! {
                () = stop.stopped() => true,
                Some(cmd) = inputs.commands.recv() => { self.command(cmd); false }
                Some(update) = inputs.presences.recv() => { self.presence(update); false }
                Some(result) = inputs.write_results.recv() => { self.write_result(result); false }
                () = sleep => false,
            };
            // Take whatever else is waiting, up to a bound, into this step.
            for _ in 0..MAX_COMMANDS_PER_STEP {
                if let Ok(cmd) = inputs.commands.try_recv() {
                    self.command(cmd);
                } else if let Ok(update) = inputs.presences.try_recv() {
                    self.presence(update);
                } else if let Ok(result) = inputs.write_results.try_recv() {
                    self.write_result(result);
                } else {
                    break;
                }
            }
            let mut decisions = Vec::new();
            let now = Timestamp::now();
            self.engine.tick(now, &mut decisions);
            self.absorb(decisions);
            self.route_tick(now);
            if let Err(e) = self.commit().await {
                status.set(TaskState::Failed(e.clone()));
                return Err(e);
            }
            if stopping {
                // Answer what is still queued so no caller hangs, then stop.
                inputs.commands.close();
                while let Ok(cmd) = inputs.commands.try_recv() {
                    self.command(cmd);
                }
                self.commit().await?;
                return Ok(());
            }
        }
    }

    fn publish_status(&mut self) {
        self.status.agents = self.agents.len();
        self.status.linked = self.by_key.len();
        self.status.outbox = self.outbox_agents.len();
        self.status.directory_users = self.directory.len();
        self.status.directory_loaded = self.directory.loaded();
        self.status.profiles = self.mappings.profile_names();
        self.status.stats = self.engine.stats().clone();
        let m = &self.out.metrics;
        let s = &self.status.stats;
        super::metrics::mirror(&m.debounced, s.debounced);
        super::metrics::mirror(&m.echo_suppressed, s.echoes_suppressed);
        super::metrics::mirror(&m.loop_suspensions, s.loop_suspensions);
        super::metrics::mirror(&m.teams_overrides, s.overrides_detected);
        super::metrics::mirror(&m.teams_outranked, s.outranked_detected);
        super::metrics::mirror(&m.cc_requests, s.cc_requests);
        m.outbox_depth.set(self.status.outbox as f64);
        m.routing_waiting.set(self.router.waiting() as f64);
        m.agents_linked(true).set(self.status.linked as f64);
        m.agents_linked(false)
            .set(self.status.agents.saturating_sub(self.status.linked) as f64);
        self.out.status.send_replace(self.status.clone());
    }

    /// Makes the step durable, then lets the world know.
    async fn commit(&mut self) -> Result<(), String> {
        self.routable_changes(Timestamp::now());
        self.routing_changes();
        let step = std::mem::take(&mut self.step);
        let mut batch = Batch {
            outbox: step.outbox,
            events: step.events,
            meta: step.meta,
            agents: Vec::new(),
            contacts: step.contacts,
        };
        for id in &step.deleted {
            batch.agents.push((id.clone(), None));
        }
        for id in &step.dirty {
            let Some(entry) = self.agents.get_mut(id) else {
                continue;
            };
            entry.record.sync = entry
                .key
                .and_then(|k| self.engine.snapshot(k).ok())
                .and_then(|s| serde_json::to_value(s).ok());
            batch.agents.push((id.clone(), Some(entry.record.clone())));
        }
        let committed = if batch.is_empty() {
            Vec::new()
        } else {
            let store = Arc::clone(&self.store);
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || store.commit(batch)).await;
            self.out
                .metrics
                .store_commit_seconds
                .observe_duration(started.elapsed());
            match result {
                Ok(Ok(events)) => {
                    self.out
                        .metrics
                        .events_committed
                        .inc_by(events.len() as u64);
                    events
                }
                Ok(Err(e)) => {
                    let message = format!("the store failed: {e}");
                    self.fail_replies(step.replies, &message);
                    return Err(message);
                }
                Err(e) => {
                    let message = format!("the store commit did not finish: {e}");
                    self.fail_replies(step.replies, &message);
                    return Err(message);
                }
            }
        };
        self.status.commits += 1;
        self.status.events += committed.len() as u64;
        for event in committed {
            // Nobody listening is fine: the log has it.
            let _ = self.out.events.send(event);
        }
        for job in step.jobs {
            let _ = self.out.writes.send(job);
        }
        if step.poll_changed {
            let users: Vec<String> = self
                .agents
                .values()
                .filter(|e| e.key.is_some())
                .filter_map(|e| e.record.teams_user_id.clone())
                .collect();
            self.out.poll_users.send_replace(Arc::new(users));
        }
        let now = Timestamp::now();
        for reply in step.replies {
            match reply {
                Reply::Agent(tx, id) => {
                    let _ = tx.send(self.view(&id, now));
                }
                Reply::Contact(tx, id) => {
                    let _ = tx.send(self.contact_view(&id));
                }
                Reply::Deleted(tx) => {
                    let _ = tx.send(Ok(()));
                }
                Reply::Ping(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        self.publish_status();
        Ok(())
    }

    fn fail_replies(&self, replies: Vec<Reply>, message: &str) {
        for reply in replies {
            match reply {
                Reply::Agent(tx, _) => {
                    let _ = tx.send(Err(ApiError::unavailable(message)));
                }
                Reply::Contact(tx, _) => {
                    let _ = tx.send(Err(ApiError::unavailable(message)));
                }
                Reply::Deleted(tx) => {
                    let _ = tx.send(Err(ApiError::unavailable(message)));
                }
                Reply::Ping(_) => {}
            }
        }
    }

    fn profile_for(&self, record: &AgentRecord) -> (ProfileId, Arc<Profile>) {
        let name = self
            .mappings
            .profile_for(record.profile.as_deref(), &record.groups);
        let id = self.engine.profile_id(name).unwrap_or(ProfileId(0));
        let profile = self
            .engine
            .profiles()
            .get(usize::from(id.0))
            .or_else(|| self.engine.profiles().first())
            .cloned();
        // The engine always has at least one profile.
        (id, profile.unwrap_or_else(|| Arc::new(empty_profile())))
    }

    fn view(&self, id: &str, now: Timestamp) -> Result<AgentOut, ApiError> {
        let entry = self
            .agents
            .get(id)
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let mut out = match entry.key {
            Some(key) => {
                let v = self
                    .engine
                    .view(key, now)
                    .map_err(|e| engine_error(e, ""))?;
                view::linked(&entry.record, &v)
            }
            None => {
                let (_, profile) = self.profile_for(&entry.record);
                view::unlinked(&entry.record, &profile, entry.conflict.as_ref())
            }
        };
        out.routing = self.routing_view(id, now, &out);
        Ok(out)
    }

    fn command(&mut self, cmd: Command) {
        let now = Timestamp::now();
        match cmd {
            Command::PutAgent { id, body, reply } => match self.put_agent(now, &id, body) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::DeleteAgent { id, reply } => match self.delete_agent(now, &id) {
                Ok(()) => self.step.replies.push(Reply::Deleted(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::ReportStatus { id, body, reply } => match self.report(now, &id, body) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Agent { id, reply } => {
                let _ = reply.send(self.view(&id, now));
            }
            Command::Agents { reply } => {
                let all = self
                    .agents
                    .keys()
                    .filter_map(|id| self.view(id, now).ok())
                    .collect();
                let _ = reply.send(all);
            }
            Command::ResumeAgent { id, reply } => match self.resume(now, &id) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Queues { reply } => {
                let _ = reply.send(self.queue_views(now));
            }
            Command::Queue { name, reply } => {
                let _ = reply.send(self.queue_view(&name, now));
            }
            Command::AddContact { body, reply } => match self.add_contact(now, body) {
                Ok(id) => self.step.replies.push(Reply::Contact(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Contact { id, reply } => {
                let _ = reply.send(self.contact_view(&id));
            }
            Command::ContactAction {
                id,
                action,
                body,
                reply,
            } => match self.contact_action(now, &id, action, body) {
                Ok(()) => self.step.replies.push(Reply::Contact(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Directory(update) => self.directory_update(now, update),
            Command::Reload(set, routing) => {
                self.reload(now, set);
                if let Some(routing) = routing {
                    self.reload_queues(now, routing);
                }
            }
            Command::Ping(tx) => self.step.replies.push(Reply::Ping(tx)),
        }
    }

    fn put_agent(&mut self, now: Timestamp, id: &str, body: AgentUpsert) -> Result<(), ApiError> {
        let teams_user = body.teams_user.trim().to_string();
        if teams_user.is_empty() || teams_user.len() > 320 {
            return Err(ApiError::unprocessable(
                "teams_user",
                "invalid_teams_user",
                "teams_user must be a Teams object id or a UPN (1–320 characters)",
            ));
        }
        if let Some(profile) = &body.profile
            && !self.mappings.has_profile(profile)
        {
            return Err(ApiError::unprocessable(
                "profile",
                "unknown_profile",
                format!(
                    "no profile `{profile}`{}",
                    crate::diagnostics::did_you_mean(
                        profile,
                        self.mappings.profiles.iter().map(|p| p.name.as_str())
                    )
                ),
            ));
        }
        routing::check_agent_routing(&self.router, body.queues.as_ref(), body.capacity)?;
        if let Some(skills) = &body.skills
            && let Some((name, level)) = skills.iter().find(|(n, l)| n.is_empty() || **l > 100)
        {
            return Err(ApiError::unprocessable(
                &format!("skills.{name}"),
                "invalid_skill",
                format!("skill `{name}` level {level}: a skill needs a name and a level 0–100"),
            ));
        }
        // Where the Teams user is: a given object id, a UPN the directory
        // knows, or (when asked, or before the directory is read) later.
        let resolved: Option<String> = if directory::is_object_id(&teams_user) {
            Some(teams_user.to_ascii_lowercase())
        } else if let Some(user) = self.directory.find(&teams_user) {
            Some(user.id.to_ascii_lowercase())
        } else if let Some(linked) = self.agents.get(id).and_then(|e| {
            // The same UPN again while the directory is not read yet (just
            // after a restart): keep the link the agent has.
            let same = e.record.teams_user.eq_ignore_ascii_case(&teams_user)
                || e.record
                    .upn
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(&teams_user));
            e.key.and(e.record.teams_user_id.clone()).filter(|_| same)
        }) {
            Some(linked)
        } else if body.auto_link || !self.directory.loaded() {
            None
        } else {
            return Err(ApiError::unprocessable(
                "teams_user",
                "unknown_teams_user",
                format!(
                    "no Teams user `{teams_user}` in the directory; send its object id, or `auto_link: true` to link it when it appears"
                ),
            ));
        };
        if let Some(user_id) = &resolved
            && let Some(other) = self.by_user.get(user_id)
            && other != id
        {
            return Err(ApiError::new(
                409,
                "teams_user_taken",
                format!("Teams user `{teams_user}` is already linked to agent `{other}`"),
            )
            .with_field("teams_user"));
        }

        let existing = self.agents.get(id).map(|e| e.record.clone());
        let mut record = existing.clone().unwrap_or_else(|| AgentRecord {
            id: id.to_string(),
            teams_user: teams_user.clone(),
            teams_user_id: None,
            upn: None,
            display_name: None,
            groups: Vec::new(),
            skills: BTreeMap::new(),
            phone: None,
            profile: None,
            cc_status: None,
            sync: None,
            queues: Vec::new(),
            capacity: None,
            routing: None,
            updated_at: Utc::now(),
        });
        // A PUT replaces the agent's settings (HTTP semantics): whatever the
        // body leaves out, or sends as null, goes back to its default; the
        // display name and phone default to the directory's. The agent's
        // runtime state (CC status, link, sync and routing state) is not a
        // setting and stays.
        let directory_user = resolved.as_deref().and_then(|u| self.directory.get(u));
        record.teams_user = teams_user;
        record.display_name = body
            .display_name
            .or_else(|| directory_user.and_then(|u| u.display_name().map(str::to_string)));
        record.phone = body
            .phone
            .or_else(|| directory_user.and_then(directory::phone_of));
        record.groups = body.groups.unwrap_or_default();
        record.skills = body.skills.unwrap_or_default();
        record.profile = body.profile;
        record.queues = body.queues.unwrap_or_default();
        record.capacity = body.capacity;
        record.updated_at = Utc::now();
        let mut routed = Vec::new();
        self.router
            .upsert_agent(now, id, routing::spec_of(&record), &mut routed);

        let was_linked_to = existing.as_ref().and_then(|r| r.teams_user_id.clone());
        let entry = self.agents.entry(id.to_string()).or_insert(AgentEntry {
            record: record.clone(),
            key: None,
            routable: None,
            conflict: None,
        });
        let had_key = entry.key;
        entry.record = record;
        // Worked out again below or at the next directory update.
        entry.conflict = None;
        self.step.dirty.insert(id.to_string());
        self.event(
            now,
            kind::AGENT_UPDATED,
            Some(id),
            serde_json::json!({
                "created": existing.is_none(),
            }),
        );
        self.absorb_routing(now, routed);

        if was_linked_to != resolved || had_key.is_none() {
            if had_key.is_some() {
                self.detach(now, id);
            }
            if let Some(user_id) = resolved {
                self.link(now, id, &user_id);
            }
            if had_key.is_some() {
                // The user it let go may be what another agent waits for.
                self.link_waiting(now);
            }
        } else if let Some(key) = had_key {
            // Same Teams user: the profile may have changed with the groups.
            let (pid, _) = self.profile_for(&self.agents[id].record);
            let mut out = Vec::new();
            self.engine
                .set_agent_profile(now, key, pid, &mut out)
                .map_err(|e| engine_error(e, "profile"))?;
            self.absorb(out);
        }
        Ok(())
    }

    /// Links an agent to a Teams user and starts syncing it.
    fn link(&mut self, now: Timestamp, id: &str, user_id: &str) {
        let user = self.directory.get(user_id).cloned();
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        entry.record.teams_user_id = Some(user_id.to_string());
        entry.conflict = None;
        if let Some(user) = &user {
            entry.record.upn = user.user_principal_name().map(str::to_string);
            if entry.record.display_name.is_none() {
                entry.record.display_name = user.display_name().map(str::to_string);
            }
            if entry.record.phone.is_none() {
                entry.record.phone = directory::phone_of(user);
            }
        }
        entry.record.sync = None;
        self.attach(now, id, None);
        self.event(
            now,
            kind::AGENT_LINKED,
            Some(id),
            serde_json::json!({
                "teams_user_id": user_id,
            }),
        );
    }

    /// Puts a linked agent into the engine, from its snapshot when there is one.
    fn attach(&mut self, now: Timestamp, id: &str, snapshot: Option<&AgentSnapshot>) {
        let Some(entry) = self.agents.get(id) else {
            return;
        };
        let (pid, _) = self.profile_for(&entry.record);
        let user_id = entry.record.teams_user_id.clone().unwrap_or_default();
        let cc = entry.record.cc_status.clone();
        let mut out = Vec::new();
        let key = match snapshot {
            Some(s) => self.engine.restore_agent(now, pid, s, &mut out),
            None => self.engine.add_agent(pid),
        };
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(agent = %id, error = %e, "cannot add the agent to the sync engine");
                return;
            }
        };
        self.by_key.insert(key, id.to_string());
        self.by_user.insert(user_id, id.to_string());
        if let Some(entry) = self.agents.get_mut(id) {
            entry.key = Some(key);
        }
        if snapshot.is_none()
            && let Some(cc) = cc
        {
            let _ = self.engine.restore_cc_named(
                now,
                key,
                &cc.status,
                Timestamp::from_utc(cc.at),
                &mut out,
            );
        }
        self.step.dirty.insert(id.to_string());
        self.step.poll_changed = true;
        self.absorb(out);
    }

    /// Takes an agent out of the engine (unlinked or deleted); presence the
    /// daemon set is handed back.
    fn detach(&mut self, now: Timestamp, id: &str) {
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        let Some(key) = entry.key.take() else {
            return;
        };
        // Keep the CC status for when the agent is linked again.
        if let Ok(v) = self.engine.view(key, now)
            && let (Some(status), Some(since)) = (v.cc_status, v.cc_since)
        {
            entry.record.cc_status = Some(CcReport {
                status,
                at: Timestamp::to_utc(since),
            });
        }
        let user_id = entry.record.teams_user_id.take();
        entry.record.sync = None;
        let mut out = Vec::new();
        let _ = self.engine.remove_agent(now, key, &mut out);
        // The hand-back write goes out with the agent's old user id.
        for d in out {
            if let Decision::WriteTeams { id: wid, write, .. } = d
                && let Some(user) = &user_id
            {
                self.step.jobs.push(WriteJob {
                    key,
                    agent_id: id.to_string(),
                    user_id: user.clone(),
                    id: wid,
                    write,
                });
            }
        }
        self.by_key.remove(&key);
        if let Some(user) = user_id {
            self.by_user.remove(&user);
        }
        if self.outbox_agents.remove(id) {
            self.step.outbox.push((id.to_string(), None));
        }
        self.step.dirty.insert(id.to_string());
        self.step.poll_changed = true;
    }

    fn delete_agent(&mut self, now: Timestamp, id: &str) -> Result<(), ApiError> {
        if !self.agents.contains_key(id) {
            return Err(ApiError::not_found("agent", id));
        }
        self.detach(now, id);
        let mut out = Vec::new();
        self.router.remove_agent(now, id, &mut out);
        // Gone before its decisions are absorbed: no status is set for it.
        self.agents.remove(id);
        self.absorb_routing(now, out);
        self.step.dirty.remove(id);
        self.step.deleted.insert(id.to_string());
        self.event(now, kind::AGENT_DELETED, Some(id), serde_json::Value::Null);
        // Its Teams user may be what another agent waits for.
        self.link_waiting(now);
        Ok(())
    }

    fn report(&mut self, now: Timestamp, id: &str, body: StatusReport) -> Result<(), ApiError> {
        self.report_status(now, id, body, true)
    }

    /// A CC status for an agent. `from_cc`: the CC reported it (a new one
    /// lifts a routing pause); else routing set it on the agent's behalf.
    fn report_status(
        &mut self,
        now: Timestamp,
        id: &str,
        body: StatusReport,
        from_cc: bool,
    ) -> Result<(), ApiError> {
        let entry = self
            .agents
            .get(id)
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let at = body.at.map(Timestamp::from_utc).unwrap_or(now).min(now);
        let (_, profile) = self.profile_for(&entry.record);
        let status_id = profile
            .status_id(&body.status)
            .ok_or_else(|| status_error(&profile, &body.status))?;
        let current = match entry.key {
            Some(key) => self
                .engine
                .view(key, now)
                .ok()
                .and_then(|v| Some((v.cc_status?, v.cc_since?))),
            None => entry
                .record
                .cc_status
                .as_ref()
                .map(|c| (c.status.clone(), Timestamp::from_utc(c.at))),
        };
        // Only a report that says when it happened can be out of order; the
        // same status again is a harmless retry.
        if let Some((status, since)) = current.clone()
            && body.at.is_some()
            && status != body.status
            && at < since
        {
            return Err(ApiError::new(
                409,
                "stale_status",
                format!(
                    "a newer status was reported for {}; this one is from {}",
                    Timestamp::to_utc(since).to_rfc3339(),
                    Timestamp::to_utc(at).to_rfc3339()
                ),
            )
            .with_field("at"));
        }
        // A new status from the CC means the agent is at its desk again:
        // a routing pause after missed offers ends.
        if from_cc && current.as_ref().is_none_or(|(s, _)| *s != body.status) {
            let mut out = Vec::new();
            let _ = self.router.resume_agent(now, id, &mut out);
            self.absorb_routing(now, out);
        }
        let previous = current.map(|(status, _)| status);
        let mut out = Vec::new();
        let (set_by, since) = match self.agents.get(id).and_then(|e| e.key) {
            Some(key) => {
                if from_cc {
                    self.engine
                        .report_cc_since(now, key, status_id, at, &mut out)
                } else {
                    self.engine.report_cc_routed(now, key, status_id, &mut out)
                }
                .map_err(|e| engine_error(e, "status"))?;
                let v = self.engine.view(key, now).ok();
                (
                    v.as_ref()
                        .and_then(|v| v.cc_set_by)
                        .map_or(SetBy::Agent, view::set_by),
                    v.and_then(|v| v.cc_since).unwrap_or(at),
                )
            }
            None => {
                if let Some(entry) = self.agents.get_mut(id) {
                    entry.record.cc_status = Some(CcReport {
                        status: body.status.clone(),
                        at: Timestamp::to_utc(at),
                    });
                }
                (
                    if from_cc {
                        SetBy::Agent
                    } else {
                        SetBy::Routing
                    },
                    at,
                )
            }
        };
        // The same status again is a retry and changes nothing.
        if previous.as_deref() != Some(body.status.as_str()) {
            self.event(
                now,
                kind::CC_STATUS_REPORTED,
                Some(id),
                serde_json::json!({
                    "status": body.status,
                    "previous_status": previous,
                    "set_by": set_by,
                    "at": Timestamp::to_utc(since),
                }),
            );
        }
        // What the status leads to (a Teams write, ...) comes after it.
        self.absorb(out);
        self.step.dirty.insert(id.to_string());
        Ok(())
    }

    fn presence(&mut self, update: PresenceUpdate) {
        let now = Timestamp::now();
        let Some(id) = self.by_user.get(&update.user_id.to_ascii_lowercase()) else {
            return;
        };
        let Some(key) = self.agents.get(id).and_then(|e| e.key) else {
            return;
        };
        let mut out = Vec::new();
        if self
            .engine
            .observe_teams(now, key, update.presence, &mut out)
            .is_ok()
        {
            self.absorb(out);
        }
    }

    fn write_result(&mut self, result: WriteResult) {
        let now = Timestamp::now();
        let job = result.job;
        let (purpose, reported) = self
            .writes_out
            .remove(&job.id)
            .unwrap_or((WritePurpose::Change, None));
        if self.by_key.get(&job.key) != Some(&job.agent_id) {
            // The agent was unlinked or deleted meanwhile.
            return;
        }
        let done = result.outcome == WriteOutcome::Done;
        let kind = match (&job.write, purpose) {
            (_, WritePurpose::KeepAlive) => TeamsWriteKind::Keepalive,
            (
                TeamsWrite::SetSession { .. } | TeamsWrite::SetPreferred { .. },
                WritePurpose::Change,
            ) => TeamsWriteKind::Set,
            _ => TeamsWriteKind::Clear,
        };
        self.out
            .metrics
            .teams_write(kind, if done { "ok" } else { "failed" })
            .inc();
        let mut out = Vec::new();
        match self
            .engine
            .write_done(now, job.key, job.id, result.outcome, &mut out)
        {
            Ok(true) => {}
            // Superseded or given up on (or the agent's slot now holds
            // another link): none of its bookkeeping applies.
            Ok(false) | Err(_) => return,
        }
        if done {
            if purpose == WritePurpose::Change {
                let presence = job.write.presence().map(presence_out);
                self.event(now, kind::TEAMS_WRITTEN, Some(&job.agent_id), serde_json::json!({
                    "action": match job.write {
                        TeamsWrite::SetSession { .. } | TeamsWrite::SetPreferred { .. } => "set",
                        TeamsWrite::ClearSession | TeamsWrite::ClearPreferred => "clear",
                    },
                    "presence": presence,
                }));
                if let Some(reported) = reported {
                    self.out
                        .metrics
                        .propagation(Direction::CcToTeams)
                        .observe_duration(now.since(reported));
                }
            }
            if self.outbox_agents.remove(&job.agent_id) {
                self.step.outbox.push((job.agent_id.clone(), None));
            }
        }
        self.step.dirty.insert(job.agent_id);
        self.absorb(out);
    }

    fn directory_update(&mut self, now: Timestamp, update: DirectoryUpdate) {
        let link = match &update {
            DirectoryUpdate::Replace { delta_link, .. } => delta_link.clone(),
            DirectoryUpdate::Changes { delta_link, .. } => Some(delta_link.clone()),
        };
        let full = matches!(update, DirectoryUpdate::Replace { .. });
        let (changed, mut removed) = self.directory.apply(update);
        if full {
            // After a full read, a linked user the directory does not have
            // is gone, whether or not this process ever saw it.
            removed.extend(
                self.by_user
                    .keys()
                    .filter(|user| self.directory.get(user).is_none())
                    .cloned(),
            );
        }
        // Linked agents whose user changed: keep UPN and phone current.
        for user_id in changed {
            let Some(id) = self.by_user.get(&user_id).cloned() else {
                continue;
            };
            let Some(user) = self.directory.get(&user_id) else {
                continue;
            };
            let upn = user.user_principal_name().map(str::to_string);
            let phone = directory::phone_of(user);
            if let Some(entry) = self.agents.get_mut(&id)
                && (entry.record.upn != upn || (entry.record.phone.is_none() && phone.is_some()))
            {
                entry.record.upn = upn;
                if entry.record.phone.is_none() {
                    entry.record.phone = phone;
                }
                self.step.dirty.insert(id);
            }
        }
        if let Some(link) = link {
            self.step.meta.push((MetaKey::DeltaLink, Some(link)));
        }
        for user in removed {
            if let Some(id) = self.by_user.get(&user).cloned() {
                tracing::info!(agent = %id, user = %user, "Teams user left the directory; agent unlinked");
                self.detach(now, &id);
            }
        }
        self.link_waiting(now);
    }

    /// Agents waiting for their Teams user: links those the directory has
    /// and nobody holds; says why of those another agent holds.
    fn link_waiting(&mut self, now: Timestamp) {
        let waiting: Vec<(String, String)> = self
            .agents
            .values()
            .filter(|e| e.key.is_none())
            .filter_map(|e| {
                let user = self.directory.find(&e.record.teams_user)?;
                Some((e.record.id.clone(), user.id.to_ascii_lowercase()))
            })
            .collect();
        for (id, user_id) in waiting {
            // Two agents may wait for the same user: the first one takes it,
            // the others are told who has it.
            match self.by_user.get(&user_id).cloned() {
                None => self.link(now, &id, &user_id),
                Some(holder) => self.link_conflict(now, &id, &user_id, &holder),
            }
        }
    }

    /// Records that `id` waits for a Teams user `holder` has; an event and
    /// a log line the first time, as a `PUT` naming that user gets a 409.
    fn link_conflict(&mut self, now: Timestamp, id: &str, user_id: &str, holder: &str) {
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        let conflict = (user_id.to_string(), holder.to_string());
        if entry.conflict.as_ref() == Some(&conflict) {
            return;
        }
        entry.conflict = Some(conflict);
        let teams_user = entry.record.teams_user.clone();
        tracing::warn!(
            agent = %id, teams_user = %teams_user, held_by = %holder,
            "the agent's Teams user is already linked to another agent; it stays unlinked"
        );
        self.event(
            now,
            kind::AGENT_LINK_CONFLICT,
            Some(id),
            serde_json::json!({
                "teams_user": teams_user,
                "teams_user_id": user_id,
                "held_by": holder,
            }),
        );
    }

    fn reload(&mut self, now: Timestamp, set: MappingSet) {
        // Each linked agent goes to the profile the new set gives it (its
        // groups may point at another one now) in one step, so what it
        // holds is judged against the profile it ends up on.
        let mut assign = HashMap::new();
        for entry in self.agents.values() {
            let Some(key) = entry.key else {
                continue;
            };
            let name = set.profile_for(entry.record.profile.as_deref(), &entry.record.groups);
            if let Some(i) = set.profiles.iter().position(|p| p.name == name)
                && let Ok(i) = u16::try_from(i)
            {
                assign.insert(key, ProfileId(i));
            }
        }
        let mut out = Vec::new();
        if let Err(e) =
            self.engine
                .replace_profiles_assigning(now, set.profiles.clone(), &assign, &mut out)
        {
            tracing::error!(error = %e, "mapping reload refused");
            return;
        }
        self.mappings = set;
        self.absorb(out);
        let linked: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, e)| e.key.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        self.step.dirty.extend(linked);
        // Agents holding a status their profile does not have: said in the
        // reload's result, besides each agent's own event.
        let not_in_profile: Vec<serde_json::Value> = self
            .agents
            .keys()
            .filter_map(|id| {
                let v = self.view(id, now).ok()?;
                (!v.cc.in_profile).then(|| {
                    serde_json::json!({
                        "agent_id": id,
                        "status": v.cc.status,
                        "profile": v.profile,
                    })
                })
            })
            .collect();
        let profiles = self.mappings.profile_names();
        self.out.metrics.mapping_reloads.with(["ok"]).inc();
        if not_in_profile.is_empty() {
            tracing::info!(?profiles, "mappings reloaded");
        } else {
            tracing::warn!(
                ?profiles,
                agents = not_in_profile.len(),
                "mappings reloaded; agents hold CC statuses their profile does not have (kept, not routable, Teams shows the profile's default_teams): {}",
                serde_json::Value::Array(not_in_profile.clone())
            );
        }
        self.event(
            now,
            kind::MAPPINGS_RELOADED,
            None,
            serde_json::json!({
                "profiles": profiles,
                "statuses_not_in_profile": not_in_profile,
            }),
        );
    }

    fn event(&mut self, _now: Timestamp, kind: &str, agent: Option<&str>, data: serde_json::Value) {
        debug_assert!(
            kind::ALL.contains(&kind),
            "event type `{kind}` is not in the documented list"
        );
        self.step.events.push(NewEvent {
            kind: kind.to_string(),
            time: Utc::now(),
            agent_id: agent.map(str::to_string),
            data,
        });
    }

    /// Turns the engine's decisions into writes, events and dirty agents.
    fn absorb(&mut self, decisions: Vec<Decision>) {
        let now = Timestamp::now();
        let mut touched = BTreeSet::new();
        for d in decisions {
            match d {
                Decision::WriteTeams {
                    agent,
                    id,
                    write,
                    why,
                } => {
                    let Some(agent_id) = self.by_key.get(&agent).cloned() else {
                        continue;
                    };
                    let Some(user_id) = self
                        .agents
                        .get(&agent_id)
                        .and_then(|e| e.record.teams_user_id.clone())
                    else {
                        continue;
                    };
                    let reported = match why.reason {
                        Reason::CcStatusHeld { since, .. } => Some(since),
                        _ => None,
                    };
                    let purpose = if why.reason == Reason::KeepAlive {
                        WritePurpose::KeepAlive
                    } else {
                        WritePurpose::Change
                    };
                    self.writes_out.insert(id, (purpose, reported));
                    self.step.outbox.push((
                        agent_id.clone(),
                        Some(OutboxEntry {
                            agent_id: agent_id.clone(),
                            write: write_json(id, &write),
                            decided_at: Timestamp::to_utc(now),
                        }),
                    ));
                    self.outbox_agents.insert(agent_id.clone());
                    self.step.jobs.push(WriteJob {
                        key: agent,
                        agent_id: agent_id.clone(),
                        user_id,
                        id,
                        write,
                    });
                    touched.insert(agent_id);
                }
                Decision::RequestCc { agent, status, why } => {
                    let Some(agent_id) = self.by_key.get(&agent).cloned() else {
                        continue;
                    };
                    let profile = self.profile_of(agent);
                    let status_name = profile
                        .as_ref()
                        .map_or_else(String::new, |p| p.status_name(status).to_string());
                    let kind_text = match why.reason {
                        Reason::Restored { .. } => "restore",
                        _ => "rule",
                    };
                    let reason = profile.as_ref().map(|p| why.describe(p));
                    let (presence, since) = match &why.reason {
                        Reason::RuleFired {
                            presence, since, ..
                        } => (Some(presence_out(presence)), Some(*since)),
                        Reason::Restored {
                            presence, since, ..
                        } => (presence.as_ref().map(presence_out), Some(*since)),
                        _ => (None, None),
                    };
                    if let Some(since) = since {
                        self.out
                            .metrics
                            .propagation(Direction::TeamsToCc)
                            .observe_duration(now.since(since));
                    }
                    self.event(
                        now,
                        kind::CC_STATUS_REQUESTED,
                        Some(&agent_id),
                        serde_json::json!({
                            "status": status_name,
                            "kind": kind_text,
                            "reason": reason,
                            "teams_presence": presence,
                        }),
                    );
                    touched.insert(agent_id);
                }
                Decision::Event { agent, event } => {
                    let Some(agent_id) = self.by_key.get(&agent).cloned() else {
                        continue;
                    };
                    let (kind, data) = match event {
                        SyncEvent::TeamsPresenceChanged { presence } => (
                            kind::TEAMS_PRESENCE_CHANGED,
                            serde_json::json!({ "presence": presence_out(&presence) }),
                        ),
                        SyncEvent::LoopSuspended {
                            flows,
                            until,
                            changes,
                        } => {
                            tracing::warn!(agent = %agent_id, changes, until = %Timestamp::to_utc(until), "loop guard suspended sync");
                            (
                                kind::SYNC_LOOP_SUSPENDED,
                                serde_json::json!({
                                    "flows": flows.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                                    "until": Timestamp::to_utc(until),
                                    "changes": changes,
                                }),
                            )
                        }
                        SyncEvent::LoopResumed => {
                            tracing::info!(agent = %agent_id, "loop guard resumed sync");
                            (kind::SYNC_LOOP_RESUMED, serde_json::Value::Null)
                        }
                        SyncEvent::TeamsOverrideDetected { expected, shown } => (
                            kind::SYNC_TEAMS_OVERRIDE_DETECTED,
                            serde_json::json!({
                                "expected": presence_out(&expected),
                                "shown": shown.as_ref().map(presence_out),
                            }),
                        ),
                        SyncEvent::TeamsOverrideCleared => {
                            (kind::SYNC_TEAMS_OVERRIDE_CLEARED, serde_json::Value::Null)
                        }
                        SyncEvent::TeamsOutranked { expected, shown } => {
                            tracing::info!(
                                agent = %agent_id,
                                expected = %expected,
                                shown = ?shown.as_ref().map(ToString::to_string),
                                "Teams shows the user's own session, which Graph ranks above the daemon's write (not an override)"
                            );
                            (
                                kind::SYNC_TEAMS_OUTRANKED,
                                serde_json::json!({
                                    "expected": presence_out(&expected),
                                    "shown": shown.as_ref().map(presence_out),
                                }),
                            )
                        }
                        SyncEvent::WriteFailed { message } => (
                            kind::SYNC_WRITE_FAILED,
                            serde_json::json!({ "message": message }),
                        ),
                        SyncEvent::StatusNotInProfile { status, teams } => {
                            let profile = self.profile_of(agent).map(|p| p.name.clone());
                            tracing::warn!(
                                agent = %agent_id, status, profile = profile.as_deref().unwrap_or(""),
                                "the agent's CC status is not in its profile: kept, not routable, Teams shows the profile's default_teams until the CC reports a status the profile has"
                            );
                            (
                                kind::CC_STATUS_NOT_IN_PROFILE,
                                serde_json::json!({
                                    "status": status,
                                    "profile": profile,
                                    "teams_target": serde_json::to_value(view::target_out(&teams)).unwrap_or_default(),
                                }),
                            )
                        }
                        SyncEvent::StatusBackInProfile { status } => {
                            let profile = self.profile_of(agent).map(|p| p.name.clone());
                            tracing::info!(
                                agent = %agent_id, status, profile = profile.as_deref().unwrap_or(""),
                                "the agent's CC status is in its profile again"
                            );
                            (
                                kind::CC_STATUS_BACK_IN_PROFILE,
                                serde_json::json!({ "status": status, "profile": profile }),
                            )
                        }
                    };
                    self.event(now, kind, Some(&agent_id), data);
                    touched.insert(agent_id);
                }
            }
        }
        for id in touched {
            self.step.dirty.insert(id);
        }
    }

    fn profile_of(&self, key: AgentKey) -> Option<Arc<Profile>> {
        let id = self.by_key.get(&key)?;
        Some(self.profile_for(&self.agents.get(id)?.record).1)
    }

    /// Emits `agent.routable_changed` for dirty agents whose routability moved.
    fn routable_changes(&mut self, now: Timestamp) {
        let dirty: Vec<String> = self.step.dirty.iter().cloned().collect();
        for id in dirty {
            let Ok(v) = self.view(&id, now) else {
                continue;
            };
            self.gate(now, &id, &v);
            let Some(entry) = self.agents.get_mut(&id) else {
                continue;
            };
            if entry.routable != Some(v.routable) {
                let first = entry.routable.is_none();
                entry.routable = Some(v.routable);
                if !first || v.routable {
                    self.event(
                        now,
                        kind::AGENT_ROUTABLE_CHANGED,
                        Some(&id),
                        serde_json::json!({
                            "routable": v.routable,
                            "not_routable_because": v.not_routable_because,
                        }),
                    );
                }
            }
        }
    }
}

fn empty_profile() -> Profile {
    Profile {
        name: String::new(),
        direction: crate::mapping::Direction::Off,
        debounce: Duration::ZERO,
        prefer: crate::mapping::Side::Cc,
        write_mode: crate::mapping::WriteMode::Session,
        statuses: Vec::new(),
        cc_to_teams: Vec::new(),
        default_teams: crate::mapping::TeamsTarget::Clear,
        rules: Vec::new(),
        blocking: Vec::new(),
    }
}

//! The daemon as the HTTP API sees it: every call becomes a command to the
//! sync loop, or a read of the store, the tasks' states and the metrics.
//! This is the loop's edge: HTTP bodies are checked and turned into the
//! loop's domain inputs here, and the loop's refusals ([`LoopError`]) into
//! HTTP statuses and error codes; the views are built in `view.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::api::model::{
    AgentOut, AgentQuery, AgentUpsert, Check, ContactAction, ContactActionIn, ContactIn,
    ContactOut, DirectoryList, DirectoryUserOut, GraphAppOut, Health, MissingPermissionOut,
    NotificationsOut, PageOut, PermissionsOut, PollOut, PresenceOut, QueueOut, Readiness,
    ServiceAccountOut, StatusReport, SubscriptionOut, SubscriptionsOut, TaskOut,
};
use crate::api::{ApiError, Service};
use crate::directory::{DirectoryQuery, DirectoryUser};
use crate::events::Event;
use crate::routing::{NewContact, RoutingError};
use crate::store::Store;
use crate::sync::EngineError;
use crate::time::Timestamp;

use super::metrics::Metrics;
use super::permissions::PermissionState;
use super::subscriptions::setup::SubscriptionsHandle;
use super::sync_loop::{
    AgentFilter, AgentSettings, CcStatusReport, Command, ContactMove, LoopError, LoopStatus,
};
use super::tasks::{TaskBoard, TaskName, TaskState};
use super::view;
use crate::accounts::AccountState;

/// The longest `teams_user` (an object id, a UPN or a mail address).
const TEAMS_USER_MAX_CHARS: usize = 320;

/// The settings a `PUT` body gives; a `teams_user` that cannot name a
/// Teams user is refused here.
fn agent_settings(body: AgentUpsert) -> Result<AgentSettings, ApiError> {
    let teams_user = body.teams_user.trim().to_string();
    if teams_user.is_empty() || teams_user.len() > TEAMS_USER_MAX_CHARS {
        return Err(ApiError::unprocessable(
            "teams_user",
            "invalid_teams_user",
            "teams_user must be a Teams object id or a UPN (1–320 characters)",
        ));
    }
    Ok(AgentSettings {
        teams_user,
        auto_link: body.auto_link,
        display_name: body.display_name,
        groups: body.groups.unwrap_or_default(),
        skills: body.skills.unwrap_or_default(),
        phone: body.phone,
        profile: body.profile,
        queues: body.queues.unwrap_or_default(),
        capacity: body.capacity,
    })
}

fn status_report(body: StatusReport) -> CcStatusReport {
    CcStatusReport {
        status: body.status,
        at: body.at.map(Timestamp::from_utc),
    }
}

fn new_contact(body: ContactIn) -> NewContact {
    NewContact {
        id: body.contact_id,
        queue: body.queue,
        skills: body.skills.unwrap_or_default(),
        priority: body.priority,
        data: body.data.unwrap_or(serde_json::Value::Null),
    }
}

fn contact_move(action: ContactAction, body: ContactActionIn) -> ContactMove {
    let agent = body.agent_id;
    match action {
        ContactAction::Accept => ContactMove::Accept { agent },
        ContactAction::Decline => ContactMove::Decline { agent },
        ContactAction::Complete => ContactMove::Complete { agent },
        ContactAction::Abandon => ContactMove::Abandon,
    }
}

impl From<LoopError> for ApiError {
    fn from(e: LoopError) -> Self {
        let message = e.to_string();
        match e {
            LoopError::UnknownAgent(id) => ApiError::not_found("agent", &id),
            LoopError::UnknownQueue(name) => ApiError::not_found("queue", &name),
            LoopError::UnknownContact(id) => ApiError::not_found("contact", &id),
            LoopError::UnknownProfile { .. } => {
                ApiError::unprocessable("profile", "unknown_profile", message)
            }
            LoopError::UnknownStatus { .. } => {
                ApiError::unprocessable("status", "unknown_status", message)
            }
            LoopError::StaleStatus { .. } => {
                ApiError::new(409, "stale_status", message).with_field("at")
            }
            LoopError::TeamsUserTaken { .. } => {
                ApiError::new(409, "teams_user_taken", message).with_field("teams_user")
            }
            LoopError::UnknownTeamsUser(_) => {
                ApiError::unprocessable("teams_user", "unknown_teams_user", message)
            }
            LoopError::InvalidSkill { name, .. } => {
                ApiError::unprocessable(&format!("skills.{name}"), "invalid_skill", message)
            }
            LoopError::InvalidCapacity(_) => {
                ApiError::unprocessable("capacity", "invalid_capacity", message)
            }
            LoopError::UnknownMembership { index, .. } => {
                ApiError::unprocessable(&format!("queues[{index}].queue"), "unknown_queue", message)
            }
            LoopError::DuplicateMembership { index, .. } => ApiError::unprocessable(
                &format!("queues[{index}].queue"),
                "duplicate_queue",
                message,
            ),
            LoopError::Engine { field, source } => match source {
                EngineError::UnknownStatus { .. } => {
                    ApiError::unprocessable(field, "unknown_status", message)
                }
                EngineError::UnknownProfile => {
                    ApiError::unprocessable("profile", "unknown_profile", message)
                }
                EngineError::UnknownAgent => ApiError::new(404, "not_found", message),
                EngineError::NoProfiles | EngineError::TooManyProfiles | EngineError::Full => {
                    ApiError::unavailable(message)
                }
            },
            LoopError::Routing(e) => match &e {
                RoutingError::UnknownQueue(_) => {
                    ApiError::unprocessable("queue", "unknown_queue", message)
                }
                RoutingError::UnknownContact(id) => ApiError::not_found("contact", id),
                RoutingError::UnknownAgent(id) => ApiError::not_found("agent", id),
                RoutingError::ContactExists(_) => {
                    ApiError::new(409, "contact_exists", message).with_field("contact_id")
                }
                RoutingError::WrongState { .. } => ApiError::new(409, "wrong_state", message),
                RoutingError::WrongAgent { .. } => {
                    ApiError::new(409, "wrong_agent", message).with_field("agent_id")
                }
                RoutingError::Invalid { field, .. } => {
                    ApiError::unprocessable(field, "invalid", message)
                }
            },
            LoopError::StoreFailed(_) => ApiError::unavailable(message),
        }
    }
}

/// A directory user as the API shows it.
fn directory_user_out(user: &DirectoryUser) -> DirectoryUserOut {
    let record = &user.record;
    let text = |t: Option<&str>| t.map(str::to_string);
    let upn = record.user_principal_name().unwrap_or_default().to_string();
    DirectoryUserOut {
        id: record.id.to_string(),
        display_name: record
            .display_name()
            .map_or_else(|| upn.clone(), str::to_string),
        upn,
        mail: text(record.mail()),
        department: text(record.department()),
        job_title: text(record.job_title()),
        business_phones: record.business_phones().map(str::to_string).collect(),
        mobile_phone: text(record.mobile_phone()),
        direct_dial: user.direct_dial.clone(),
        presence: user.presence.as_ref().map(|p| PresenceOut {
            availability: p.availability.to_string(),
            activity: p.activity.to_string(),
        }),
        presence_since: user.presence_since,
        agent: user.agent.clone(),
    }
}

/// How long an API call waits for the sync loop before answering 503.
const LOOP_DEADLINE: Duration = Duration::from_secs(30);

pub struct DaemonService<S: Store> {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) store: Arc<S>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) status: watch::Receiver<LoopStatus>,
    pub(super) board: TaskBoard,
    pub(super) metrics: Arc<Metrics>,
    /// The directory view `GET /v1/directory` searches.
    pub(super) directory: Arc<crate::directory::DirectoryView>,
    /// The Graph app, for the authenticated health view only.
    pub(super) graph: GraphAppOut,
    /// Granted against needed, after each new token.
    pub(super) permissions: watch::Receiver<Option<PermissionState>>,
    /// The proxy Graph is reached through (`host:port`), if any.
    pub(super) proxy: Option<String>,
    /// The certificate credential's end date.
    pub(super) certificate_not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Presence subscriptions, when enabled.
    pub(super) subscriptions: Option<SubscriptionsHandle>,
    /// In a cluster: this node's role, the lease and the lag.
    pub(super) cluster: Option<Arc<super::cluster::status::ClusterStatus>>,
}

impl<S: Store> DaemonService<S> {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        let stopping = || ApiError::unavailable("the daemon is stopping");
        tokio::time::timeout(LOOP_DEADLINE, async {
            self.commands.send(make(tx)).await.map_err(|_| stopping())?;
            rx.await.map_err(|_| stopping())
        })
        .await
        .map_err(|_| ApiError::unavailable("the sync loop did not answer in time"))?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ApiError::unavailable(format!("store read did not finish: {e}")))?
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }
}

/// The tasks that call Graph: Graph is usable when each of them says its
/// last calls went through.
/// The directory's slower tier is not one: it reads every half minute, so
/// it would hold readiness down that long after Graph is back, and what it
/// meets the agent poller meets first; its own state shows among the tasks.
const GRAPH_TASKS: [TaskName; 3] = [
    TaskName::Directory,
    TaskName::PresencePoller,
    TaskName::PresenceWriter,
];

impl<S: Store> DaemonService<S> {
    /// The presence poller's round and freshness, and the budget's rate.
    fn poll(&self) -> PollOut {
        let status = self.metrics.poll().status();
        PollOut {
            round_seconds: status.round.as_secs_f64(),
            users: status.users,
            reads_per_second: status.read_rate,
            oldest_read_seconds: status.oldest_read_age.map(|a| a.as_secs_f64()),
            rate_limit: self.metrics.rate_limit(),
        }
    }

    /// Presence subscriptions: coverage, accounts (a failed one with the
    /// command that fixes it), each subscription, notifications, reads
    /// saved. The open `/readyz` (`full` false) says why an account failed
    /// in short, without Entra's trace ids; `/v1/health` in full.
    fn subscriptions(&self, full: bool) -> Option<SubscriptionsOut> {
        let handle = self.subscriptions.as_ref()?;
        let status = handle.status.borrow().clone();
        let reconcile = handle.reconcile.status();
        let agent_round = self.metrics.poll().status().round;
        let seen = handle.counters.snapshot();
        let accounts = handle
            .accounts
            .iter()
            .map(|account| {
                let state = account.status();
                let slot = status
                    .report
                    .slots
                    .iter()
                    .find(|s| &*s.account == account.upn());
                let (label, error, fix) = match &state.state {
                    AccountState::Ok => ("ok", None, None),
                    AccountState::Failed(e) => (
                        if e.kind() == "not_signed_in" {
                            "not_signed_in"
                        } else {
                            "failed"
                        },
                        Some(if full { e.to_string() } else { e.summary() }),
                        Some(e.failure().login.clone()),
                    ),
                };
                ServiceAccountOut {
                    account: account.upn().to_string(),
                    state: label.to_string(),
                    error,
                    fix,
                    subscription: SubscriptionOut {
                        state: slot.map_or("idle", |s| s.state.label()).to_string(),
                        watching: slot.map_or(0, |s| s.watching),
                        assigned: slot.map_or(0, |s| s.assigned),
                        expires_at: slot.and_then(|s| s.expires_at).map(|t| t.to_utc()),
                        renew_at: slot.and_then(|s| s.renew_at).map(|t| t.to_utc()),
                        retry_at: slot.and_then(|s| s.retry_at).map(|t| t.to_utc()),
                        last_error: slot.and_then(|s| s.last_error.clone()),
                    },
                }
            })
            .collect();
        Some(SubscriptionsOut {
            users_subscribed: status.subscribed,
            users_polled: status.polled,
            accounts_needed: status.report.accounts_needed,
            reconcile: Some(PollOut {
                round_seconds: reconcile.round.as_secs_f64(),
                users: reconcile.users,
                reads_per_second: reconcile.read_rate,
                oldest_read_seconds: reconcile.oldest_read_age.map(|a| a.as_secs_f64()),
                rate_limit: self.metrics.rate_limit(),
            }),
            graph_reads_saved_per_minute: self
                .metrics
                .subscriptions()
                .map_or(0.0, |m| m.reads_saved(status.subscribed, agent_round)),
            notifications: NotificationsOut {
                received_total: seen.received,
                applied_total: seen.applied,
                duplicates_total: seen.duplicates,
                rejected_total: seen.rejected.values().sum(),
                lifecycle_total: status.lifecycle,
                last_delay_seconds: (seen.batches > 0).then_some(seen.delay_seconds_max),
            },
            accounts,
        })
    }

    /// The directory tier's round and freshness.
    fn directory_poll(&self) -> Option<PollOut> {
        let (report, _) = self.metrics.directory()?;
        let status = report.status();
        Some(PollOut {
            round_seconds: status.round.as_secs_f64(),
            users: status.users,
            reads_per_second: status.read_rate,
            oldest_read_seconds: status.oldest_read_age.map(|a| a.as_secs_f64()),
            rate_limit: self.metrics.rate_limit(),
        })
    }

    /// The permissions needed, granted and missing; with the admin-consent
    /// URL in `full` (the authenticated view), and in the open `/readyz`
    /// only while a permission is missing: it names the tenant and the
    /// app, which the probe otherwise keeps out, but then it is the fix.
    fn permissions(&self, full: bool) -> Option<PermissionsOut> {
        let state = self.permissions.borrow().clone()?;
        let report = state.report;
        let with_url = full || !report.missing.is_empty();
        Some(PermissionsOut {
            needed: report.needed.iter().map(|p| p.to_string()).collect(),
            granted: report.granted.map(|roles| roles.into_iter().collect()),
            missing: report
                .missing
                .iter()
                .map(|m| MissingPermissionOut {
                    permission: m.permission.to_string(),
                    stops: m.stops.iter().map(|f| f.to_string()).collect(),
                    fix: format!(
                        "add the application permission {} to the app registration and grant admin consent ({})",
                        m.permission,
                        state.consent_url.as_str()
                    ),
                })
                .collect(),
            consent_url: with_url.then_some(state.consent_url),
        })
    }

    /// The checks and the tasks' states; `full`: every detail as it is
    /// (the authenticated view), else only what the open `/readyz` may say.
    fn checks(&self, full: bool) -> (bool, Vec<Check>, Vec<TaskOut>) {
        let status = self.status.borrow().clone();
        let tasks = self.board.snapshot();
        let state_of = |name: TaskName| {
            tasks
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.clone())
        };
        let why = |s: &TaskState| {
            if full {
                s.detail().to_string()
            } else {
                s.summary().to_string()
            }
        };
        let mut checks = Vec::new();
        let store_ok = !matches!(
            state_of(TaskName::SyncLoop),
            Some(TaskState::Failed(_)) | None
        );
        checks.push(Check {
            name: "store".into(),
            ok: store_ok,
            detail: match state_of(TaskName::SyncLoop) {
                Some(TaskState::Failed(e)) => e,
                _ => format!("open; {} commits", status.commits),
            },
        });
        checks.push(Check {
            name: "mappings".into(),
            ok: !status.profiles.is_empty(),
            detail: format!("profiles: {}", status.profiles.join(", ")),
        });
        // Each Graph task reports on its own last calls.
        let failing: Vec<String> = GRAPH_TASKS
            .iter()
            .filter_map(|&name| match state_of(name) {
                Some(s @ (TaskState::Degraded(_) | TaskState::Failed(_))) => {
                    Some(format!("{name}: {}", why(&s)))
                }
                Some(TaskState::Stopped) => Some(format!("{name}: stopped")),
                _ => None,
            })
            .collect();
        let directory = state_of(TaskName::Directory);
        let (graph_ok, graph_detail) = if !failing.is_empty() {
            let through = match (&self.proxy, full) {
                (Some(proxy), true) => {
                    format!("; Graph and Entra are reached through the proxy {proxy}")
                }
                (Some(_), false) => {
                    "; Graph and Entra are reached through the configured proxy".to_string()
                }
                (None, _) => String::new(),
            };
            (
                false,
                format!("not usable: {}{through}", failing.join("; ")),
            )
        } else if matches!(directory, Some(TaskState::Running)) && status.directory_loaded {
            (
                true,
                format!(
                    "reachable and authorised; {} users in the directory",
                    status.directory_users
                ),
            )
        } else if status.directory_loaded {
            // A restart: the stored directory serves until the full read,
            // which runs behind; a failure of it shows above.
            (
                true,
                format!(
                    "the stored directory of {} users is in use; the full read runs behind",
                    status.directory_users
                ),
            )
        } else {
            (
                false,
                "not reached yet (the directory has not been read)".to_string(),
            )
        };
        checks.push(Check {
            name: "graph".into(),
            ok: graph_ok,
            detail: graph_detail,
        });
        if let Some(not_after) = self.certificate_not_after {
            let (ok, detail) = super::permissions::certificate_check(not_after, chrono::Utc::now());
            checks.push(Check {
                name: "certificate".into(),
                ok,
                detail,
            });
        }
        // A missing write permission degrades (writes are held, the rest
        // works); a missing read permission leaves the daemon blind.
        if let Some(state) = self.permissions.borrow().as_ref() {
            let report = &state.report;
            let blind = report.missing.iter().any(|m| {
                m.permission != crate::graph::permissions::Permission::PresenceReadWriteAll
            });
            checks.push(Check {
                name: "permissions".into(),
                ok: !blind,
                detail: if report.missing.is_empty() {
                    report.describe()
                } else if blind {
                    format!("not usable: {}", report.describe())
                } else {
                    format!("degraded: {}; Teams writes are held", report.describe())
                },
            });
        }
        if let Some(cluster) = &self.cluster {
            let out = cluster.out();
            let active = out.role == "active";
            checks.push(Check {
                name: "cluster".into(),
                ok: active && out.nats.connected,
                detail: match (&out.nats.error, active) {
                    (_, false) => format!("{}: this node is not active", out.role),
                    (Some(error), true) => {
                        format!("active at log position {}; NATS: {error}", out.position)
                    }
                    (None, true) => format!(
                        "active at log position {}; NATS connected{}",
                        out.position,
                        out.nats
                            .server
                            .as_deref()
                            .map(|s| format!(" to {s}"))
                            .unwrap_or_default()
                    ),
                },
            });
        }
        let tasks_ok = tasks
            .iter()
            .all(|(_, s)| !matches!(s, TaskState::Failed(_) | TaskState::Stopped));
        let tasks: Vec<TaskOut> = tasks
            .into_iter()
            .map(|(name, state)| TaskOut {
                name: name.to_string(),
                state: state.label().to_string(),
                detail: why(&state),
            })
            .collect();
        (checks.iter().all(|c| c.ok) && tasks_ok, checks, tasks)
    }
}

impl<S: Store> Service for DaemonService<S> {
    async fn put_agent(&self, id: String, body: AgentUpsert) -> Result<AgentOut, ApiError> {
        let settings = agent_settings(body)?;
        let state = self
            .ask(|reply| Command::PutAgent {
                id,
                settings,
                reply,
            })
            .await??;
        Ok(view::agent_out(&state))
    }

    async fn delete_agent(&self, id: String) -> Result<(), ApiError> {
        Ok(self
            .ask(|reply| Command::DeleteAgent { id, reply })
            .await??)
    }

    async fn put_status(&self, id: String, body: StatusReport) -> Result<AgentOut, ApiError> {
        let report = status_report(body);
        let state = self
            .ask(|reply| Command::ReportStatus { id, report, reply })
            .await??;
        Ok(view::agent_out(&state))
    }

    async fn agents_page(&self, query: AgentQuery) -> Result<(Vec<AgentOut>, PageOut), ApiError> {
        let filter = AgentFilter {
            after: query.cursor,
            limit: query.limit,
            search: query.search,
        };
        let page = self
            .ask(|reply| Command::AgentsPage { filter, reply })
            .await?;
        Ok((
            page.agents.iter().map(view::agent_out).collect(),
            PageOut {
                next_cursor: page.next,
                total: page.total,
            },
        ))
    }

    async fn agents_by_id(&self, ids: Vec<String>) -> Result<Vec<AgentOut>, ApiError> {
        let found = self.ask(|reply| Command::AgentsById { ids, reply }).await?;
        Ok(found.iter().map(view::agent_out).collect())
    }

    async fn agent(&self, id: String) -> Result<AgentOut, ApiError> {
        let state = self.ask(|reply| Command::Agent { id, reply }).await??;
        Ok(view::agent_out(&state))
    }

    async fn resume_agent(&self, id: String) -> Result<AgentOut, ApiError> {
        let state = self
            .ask(|reply| Command::ResumeAgent { id, reply })
            .await??;
        Ok(view::agent_out(&state))
    }

    async fn queues(&self) -> Result<Vec<QueueOut>, ApiError> {
        let all = self.ask(|reply| Command::Queues { reply }).await?;
        Ok(all.into_iter().map(view::queue_out).collect())
    }

    async fn queue(&self, name: String) -> Result<QueueOut, ApiError> {
        let queue = self.ask(|reply| Command::Queue { name, reply }).await??;
        Ok(view::queue_out(queue))
    }

    async fn add_contact(&self, body: ContactIn) -> Result<ContactOut, ApiError> {
        let contact = new_contact(body);
        let state = self
            .ask(|reply| Command::AddContact { contact, reply })
            .await??;
        Ok(view::contact_out(&state))
    }

    async fn contact(&self, id: String) -> Result<ContactOut, ApiError> {
        let state = self.ask(|reply| Command::Contact { id, reply }).await??;
        Ok(view::contact_out(&state))
    }

    async fn contact_action(
        &self,
        id: String,
        action: ContactAction,
        body: ContactActionIn,
    ) -> Result<ContactOut, ApiError> {
        let action = contact_move(action, body);
        let state = self
            .ask(|reply| Command::ContactMove { id, action, reply })
            .await??;
        Ok(view::contact_out(&state))
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, ApiError> {
        self.blocking(move |s| s.events_after(after, limit)).await
    }

    async fn first_seq(&self) -> Result<Option<u64>, ApiError> {
        self.blocking(|s| s.first_seq()).await
    }

    async fn last_seq(&self) -> Result<u64, ApiError> {
        self.blocking(|s| s.last_seq()).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn directory(&self, query: DirectoryQuery) -> Result<DirectoryList, ApiError> {
        // A scan of up to tens of thousands of users: off the async threads.
        let view = Arc::clone(&self.directory);
        let page = tokio::task::spawn_blocking(move || view.query(&query))
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("the directory search did not finish: {e}"))
            })?;
        Ok(DirectoryList {
            users: page.users.iter().map(directory_user_out).collect(),
            next_cursor: page.next.map(|key| key.cursor()),
            total: page.total,
        })
    }

    async fn directory_user(&self, id: String) -> Result<DirectoryUserOut, ApiError> {
        self.directory
            .get(&id)
            .map(|user| directory_user_out(&user))
            .ok_or_else(|| ApiError::not_found("Teams user in the directory", &id))
    }

    async fn readiness(&self) -> Readiness {
        let (ready, checks, tasks) = self.checks(false);
        Readiness {
            ready,
            checks,
            tasks,
            poll: Some(self.poll()),
            directory_poll: self.directory_poll(),
            permissions: self.permissions(false),
            subscriptions: self.subscriptions(false),
            cluster: self.cluster.as_ref().map(|c| c.out()),
        }
    }

    async fn health(&self) -> Health {
        let (ready, checks, tasks) = self.checks(true);
        Health {
            ready,
            checks,
            tasks,
            graph: self.graph.clone(),
            poll: Some(self.poll()),
            directory_poll: self.directory_poll(),
            stats: Some(self.metrics.health_stats()),
            permissions: self.permissions(true),
            subscriptions: self.subscriptions(true),
            cluster: self.cluster.as_ref().map(|c| c.out()),
        }
    }

    async fn metrics(&self) -> String {
        let mut text = self.metrics.render();
        if let Some(cluster) = &self.cluster {
            text.push_str(&cluster.render_metrics());
        }
        text
    }
}

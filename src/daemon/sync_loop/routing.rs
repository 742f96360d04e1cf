//! The routing core inside the sync loop: API commands for queues and
//! contacts, the gate each agent's presence gives the router, the router's
//! decisions as `routing.*` events, the CC statuses a contact brings
//! (`on_contact_status`, `after_contact_status`), and what to persist.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::ApiError;
use crate::api::model::{
    AgentOut, ContactAction, ContactActionIn, ContactIn, ContactOut, MissingSkill, QueueFitOut,
    QueueOut, RoutingOut, StatusReport,
};
use crate::config::RoutingConfig;
use crate::events::{
    Abandoned, AgentPaused, Completed, ContactInQueue, DialTarget, EventData, NoData,
    OfferWithdrawn, Offered, Overflow, OverflowToQueue, OverflowToTeamsUsers, Queued,
    RoutingRequest, RoutingRequestKind, StatusRequest,
};
use crate::routing::{
    AgentRouting, AgentSpec, ContactRecord, Gate, NewContact, OverflowTarget, Phase, QueueView,
    Router, RoutingDecision, RoutingError,
};
use crate::store::{AgentRecord, MetaKey, Store};
use crate::time::Timestamp;

use super::super::directory;
use super::SyncLoop;

/// Most contacts an agent can be on at once.
pub const MAX_CAPACITY: u8 = 20;

pub(super) fn spec_of(record: &AgentRecord) -> AgentSpec {
    AgentSpec {
        skills: record.skills.clone(),
        capacity: record.capacity.unwrap_or(1).max(1),
        queues: record.queues.clone(),
        groups: record.groups.clone(),
    }
}

pub(super) fn gate_of(view: &AgentOut) -> Gate {
    Gate {
        linked: view.linked,
        cc_routable: view.cc.routable && view.cc.status.is_some(),
        teams_blocking: view.teams.blocking,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn later(t: Timestamp, now: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    (t > now).then(|| t.to_utc())
}

pub(super) fn routing_error(e: RoutingError) -> ApiError {
    match &e {
        RoutingError::UnknownQueue(q) => {
            ApiError::unprocessable("queue", "unknown_queue", format!("no queue `{q}`"))
        }
        RoutingError::UnknownContact(id) => ApiError::not_found("contact", id),
        RoutingError::UnknownAgent(id) => ApiError::not_found("agent", id),
        RoutingError::ContactExists(_) => {
            ApiError::new(409, "contact_exists", e.to_string()).with_field("contact_id")
        }
        RoutingError::WrongState { .. } => ApiError::new(409, "wrong_state", e.to_string()),
        RoutingError::WrongAgent { .. } => {
            ApiError::new(409, "wrong_agent", e.to_string()).with_field("agent_id")
        }
        RoutingError::Invalid { field, .. } => {
            ApiError::unprocessable(field, "invalid", e.to_string())
        }
    }
}

pub(super) fn contact_out(c: &ContactRecord, place: Option<usize>) -> ContactOut {
    let (agent, expires, ended) = match &c.phase {
        Phase::Waiting => (None, None, None),
        Phase::Offered { agent, expires, .. } => {
            (Some(agent.clone()), Some(expires.to_utc()), None)
        }
        Phase::Accepted { agent, .. } => (Some(agent.clone()), None, None),
        Phase::Ended { agent, at, .. } => (agent.clone(), None, Some(at.to_utc())),
    };
    ContactOut {
        id: c.id.clone(),
        queue: c.queue.clone(),
        state: c.phase.name().to_string(),
        priority: c.priority,
        skills: c.skills.clone(),
        data: c.data.clone(),
        arrived: c.arrived.to_utc(),
        queued_at: c.queued_at.to_utc(),
        place_in_queue: place,
        agent,
        offer_expires: expires,
        offers: c.offers,
        overflowed_from: c.overflowed_from.clone(),
        ended_at: ended,
    }
}

pub(super) fn queue_out(v: QueueView) -> QueueOut {
    let s = &v.settings;
    QueueOut {
        name: s.name.clone(),
        strategy: s.strategy.as_str().to_string(),
        priority: s.priority,
        skills: s.skills.clone(),
        offer_timeout_seconds: secs(s.offer_timeout),
        wrap_up_seconds: secs(s.wrap_up),
        max_no_answer: s.max_no_answer,
        miss_backoff_seconds: secs(s.miss_backoff),
        max_wait_seconds: s.max_wait.map(secs),
        overflow: s.overflow.as_ref().map(|o| match o {
            OverflowTarget::Queue(q) => serde_json::json!({ "queue": q }),
            OverflowTarget::TeamsUsers(u) => serde_json::json!({ "teams_users": u }),
        }),
        waiting: v.waiting,
        longest_wait_seconds: v.longest_wait.map(secs),
        agents: v.agents,
        eligible_agents: v.eligible_agents,
        offered: v.offered_now,
        last_offered: v.last_offered.map(|(_, id)| id),
        totals: v.totals,
    }
}

/// Builds the router from what the store held, with each agent's gate as
/// the sync side shows it after the restart.
pub(super) fn restore_router(
    now: Timestamp,
    config: &RoutingConfig,
    globals: Option<String>,
    queue_memories: Vec<(String, String)>,
    agents: Vec<(String, AgentSpec, Option<serde_json::Value>, Gate)>,
    contacts: Vec<ContactRecord>,
) -> Router {
    let mut globals = globals
        .and_then(|text| match serde_json::from_str(&text) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "stored routing state unreadable; counters start afresh");
                None
            }
        })
        .unwrap_or_else(|| crate::routing::Globals {
            next_serial: 1,
            rng: seed(),
            ..Default::default()
        });
    for (queue, text) in queue_memories {
        match serde_json::from_str(&text) {
            Ok(memory) => {
                globals.queues.insert(queue, memory);
            }
            Err(e) => {
                tracing::warn!(queue, error = %e, "stored queue totals unreadable; they start afresh");
            }
        }
    }
    let agents = agents
        .into_iter()
        .map(|(id, spec, state, gate)| {
            let state: AgentRouting = state
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or(AgentRouting {
                    idle_since: now,
                    ..AgentRouting::default()
                });
            (id, spec, state, gate)
        })
        .collect();
    Router::restore(now, config.queues.clone(), globals, agents, contacts)
}

/// A seed for the random strategy that differs between installations.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl<S: Store> SyncLoop<S> {
    pub(super) fn routing_view(&self, id: &str, now: Timestamp, out: &AgentOut) -> RoutingOut {
        let Some(v) = self.router.agent_view(id, now) else {
            return RoutingOut::default();
        };
        let mut because: Vec<String> = out.not_routable_because.clone();
        because.extend(
            v.blockers
                .iter()
                .filter(|b| !b.is_presence())
                .map(ToString::to_string),
        );
        let queues: Vec<QueueFitOut> = v
            .queues
            .iter()
            .map(|f| QueueFitOut {
                queue: f.queue.clone(),
                position: f.position,
                skills_match: f.missing.is_empty(),
                missing_skills: f
                    .missing
                    .iter()
                    .map(|(skill, needed, has)| MissingSkill {
                        skill: skill.clone(),
                        needed: *needed,
                        has: *has,
                    })
                    .collect(),
            })
            .collect();
        if !queues.is_empty() && queues.iter().all(|q| !q.skills_match) {
            because.push("its skills match none of its queues".to_string());
        }
        RoutingOut {
            eligible: v.eligible,
            not_eligible_because: because,
            capacity: v.capacity,
            queues,
            offered: v.offered,
            contacts: v.contacts,
            idle_since: v.state.idle_since.to_utc(),
            wrap_up_until: later(v.state.wrap_until, now),
            backoff_until: later(v.state.backoff_until, now),
            paused_since: v.state.paused_since.map(Timestamp::to_utc),
            misses: v.state.misses,
            contacts_today: v.contacts_today,
            busy_today_seconds: secs(v.busy_today),
        }
    }

    pub(super) fn contact_view(&self, id: &str) -> Result<ContactOut, ApiError> {
        let c = self
            .router
            .contact(id)
            .ok_or_else(|| ApiError::not_found("contact", id))?;
        Ok(contact_out(c, self.router.place_in_queue(id)))
    }

    pub(super) fn queue_view(&self, name: &str, now: Timestamp) -> Result<QueueOut, ApiError> {
        self.router
            .queue_view(name, now)
            .map(queue_out)
            .ok_or_else(|| ApiError::not_found("queue", name))
    }

    pub(super) fn queue_views(&self, now: Timestamp) -> Vec<QueueOut> {
        self.router
            .queue_names()
            .filter_map(|q| self.router.queue_view(q, now))
            .map(queue_out)
            .collect()
    }

    pub(super) fn add_contact(
        &mut self,
        now: Timestamp,
        body: ContactIn,
    ) -> Result<String, ApiError> {
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        let result = self.router.add_contact(
            now,
            NewContact {
                id: body.contact_id,
                queue: body.queue,
                skills: body.skills.unwrap_or_default(),
                priority: body.priority,
                data: body.data.unwrap_or(serde_json::Value::Null),
            },
            &mut out,
        );
        self.out
            .metrics
            .routing_decision_seconds
            .observe_duration(started.elapsed());
        // Timers that came due are decided even when the contact is refused.
        self.absorb_routing(now, out);
        result.map_err(routing_error)
    }

    pub(super) fn contact_action(
        &mut self,
        now: Timestamp,
        id: &str,
        action: ContactAction,
        body: ContactActionIn,
    ) -> Result<(), ApiError> {
        let mut out = Vec::new();
        let agent = body.agent_id.as_deref();
        let result = match action {
            ContactAction::Accept => self.router.accept(now, id, agent, &mut out),
            ContactAction::Decline => self.router.decline(now, id, agent, &mut out),
            ContactAction::Complete => self.router.complete(now, id, agent, &mut out),
            ContactAction::Abandon => self.router.abandon(now, id, &mut out),
        };
        // Timers that came due are decided even when the action is refused.
        self.absorb_routing(now, out);
        result.map_err(routing_error)
    }

    pub(super) fn resume(&mut self, now: Timestamp, id: &str) -> Result<(), ApiError> {
        if !self.agents.contains_key(id) {
            return Err(ApiError::not_found("agent", id));
        }
        let mut out = Vec::new();
        let result = self.router.resume_agent(now, id, &mut out);
        self.absorb_routing(now, out);
        result.map(|_| ()).map_err(routing_error)
    }

    pub(super) fn route_tick(&mut self, now: Timestamp) {
        let mut out = Vec::new();
        self.router.tick(now, &mut out);
        self.absorb_routing(now, out);
    }

    pub(super) fn reload_queues(&mut self, now: Timestamp, config: RoutingConfig) {
        let mut out = Vec::new();
        self.router
            .replace_queues(now, config.queues.clone(), &mut out);
        self.routing = config;
        self.absorb_routing(now, out);
    }

    /// The agent's presence as the router's gate; called for every agent
    /// whose state changed this step.
    pub(super) fn gate(&mut self, now: Timestamp, id: &str, view: &AgentOut) {
        let mut out = Vec::new();
        self.router.set_gate(now, id, gate_of(view), &mut out);
        self.absorb_routing(now, out);
    }

    /// Moves what the router changed into this step's batch.
    pub(super) fn routing_changes(&mut self) {
        let changes = self.router.take_changes();
        for (id, state) in changes.agents {
            if let Some(entry) = self.agents.get_mut(&id) {
                entry.record.routing = serde_json::to_value(state).ok();
                self.step.dirty.insert(id);
            }
        }
        self.step.contacts.extend(changes.contacts);
        if let Some(globals) = changes.globals
            && let Ok(text) = serde_json::to_string(&globals)
        {
            self.step.meta.push((MetaKey::Routing, Some(text)));
        }
        for (queue, memory) in changes.queues {
            if let Ok(text) = serde_json::to_string(&memory) {
                self.step
                    .meta
                    .push((MetaKey::RoutingQueue(queue), Some(text)));
            }
        }
    }

    fn contact_data(&self, contact: &str) -> serde_json::Value {
        self.router
            .contact(contact)
            .map_or(serde_json::Value::Null, |c| c.data.clone())
    }

    /// Puts the agent in a CC status because of routing, as the CC would
    /// report it, and asks the CC to show it too.
    fn routing_status(&mut self, now: Timestamp, agent: &str, status: &str, contact: &str) {
        let body = StatusReport {
            status: status.to_string(),
            at: None,
        };
        match self.report_status(now, agent, body, false) {
            Ok(()) => self.event(
                now,
                Some(agent),
                EventData::CcStatusRequested(StatusRequest::Routing(RoutingRequest {
                    status: status.to_string(),
                    kind: RoutingRequestKind::Routing,
                    reason: format!("routing: contact `{contact}`"),
                    contact: contact.to_string(),
                })),
            ),
            Err(e) => tracing::warn!(
                agent, status, error = %e.message,
                "routing status not in the agent's profile; left as it is"
            ),
        }
    }

    /// Turns the router's decisions into events and CC statuses.
    pub(super) fn absorb_routing(&mut self, now: Timestamp, decisions: Vec<RoutingDecision>) {
        for d in decisions {
            match d {
                RoutingDecision::Queued {
                    contact,
                    queue,
                    priority,
                } => {
                    let data = self.contact_data(&contact);
                    self.event(
                        now,
                        None,
                        EventData::RoutingQueued(Queued {
                            contact,
                            queue,
                            priority,
                            data,
                        }),
                    );
                }
                RoutingDecision::Offered {
                    contact,
                    queue,
                    agent,
                    expires,
                } => {
                    let record = self.agents.get(&agent).map(|e| &e.record);
                    let data = EventData::RoutingOffered(Offered {
                        teams_user_id: record.and_then(|r| r.teams_user_id.clone()),
                        teams_upn: record.and_then(|r| r.upn.clone()),
                        phone: record.and_then(|r| r.phone.clone()),
                        data: self.contact_data(&contact),
                        contact,
                        queue,
                        expires: expires.to_utc(),
                    });
                    self.out.metrics.routing_offers.inc();
                    self.event(now, Some(&agent), data);
                }
                RoutingDecision::Accepted {
                    contact,
                    queue,
                    agent,
                } => {
                    self.event(
                        now,
                        Some(&agent),
                        EventData::RoutingAccepted(ContactInQueue {
                            contact: contact.clone(),
                            queue: queue.clone(),
                        }),
                    );
                    let status = self
                        .routing
                        .statuses
                        .get(&queue)
                        .and_then(|s| s.on_contact.as_ref().map(|s| s.name.clone()));
                    if let Some(status) = status {
                        self.routing_status(now, &agent, &status, &contact);
                    }
                }
                RoutingDecision::Declined {
                    contact,
                    queue,
                    agent,
                } => self.event(
                    now,
                    Some(&agent),
                    EventData::RoutingDeclined(ContactInQueue { contact, queue }),
                ),
                RoutingDecision::Withdrawn {
                    contact,
                    queue,
                    agent,
                    reason,
                } => {
                    tracing::info!(
                        agent,
                        contact,
                        reason = reason.as_str(),
                        "offer withdrawn: the agent stopped being eligible before answering"
                    );
                    self.event(
                        now,
                        Some(&agent),
                        EventData::RoutingOfferWithdrawn(OfferWithdrawn {
                            contact,
                            queue,
                            reason: reason.into(),
                        }),
                    );
                }
                RoutingDecision::Rona {
                    contact,
                    queue,
                    agent,
                } => self.event(
                    now,
                    Some(&agent),
                    EventData::RoutingRona(ContactInQueue { contact, queue }),
                ),
                RoutingDecision::Completed {
                    contact,
                    queue,
                    agent,
                    wrap_up_until,
                } => {
                    self.event(
                        now,
                        Some(&agent),
                        EventData::RoutingCompleted(Completed {
                            contact: contact.clone(),
                            queue: queue.clone(),
                            wrap_up_until: wrap_up_until.to_utc(),
                        }),
                    );
                    let status = self
                        .routing
                        .statuses
                        .get(&queue)
                        .and_then(|s| s.after_contact.as_ref().map(|s| s.name.clone()));
                    if let Some(status) = status
                        && self.agents.contains_key(&agent)
                    {
                        self.routing_status(now, &agent, &status, &contact);
                    }
                }
                RoutingDecision::Abandoned {
                    contact,
                    queue,
                    agent,
                    reason,
                } => self.event(
                    now,
                    agent.as_deref(),
                    EventData::RoutingAbandoned(Abandoned {
                        contact,
                        queue,
                        reason: reason.to_string(),
                    }),
                ),
                RoutingDecision::Overflowed {
                    contact,
                    from,
                    to,
                    waited,
                } => {
                    let data = self.contact_data(&contact);
                    let overflow = match to {
                        OverflowTarget::Queue(to_queue) => Overflow::ToQueue(OverflowToQueue {
                            contact,
                            from_queue: from,
                            waited_seconds: secs(waited),
                            data,
                            to_queue,
                        }),
                        OverflowTarget::TeamsUsers(users) => {
                            let (teams_users, number) = self.direct_dial(&users);
                            if number.is_none() {
                                tracing::warn!(
                                    contact,
                                    ?users,
                                    "overflow to Teams users: none has a direct-dial number in the directory"
                                );
                            }
                            Overflow::ToTeamsUsers(OverflowToTeamsUsers {
                                contact,
                                from_queue: from,
                                waited_seconds: secs(waited),
                                data,
                                teams_users,
                                number,
                            })
                        }
                    };
                    self.event(now, None, EventData::RoutingOverflow(overflow));
                }
                RoutingDecision::AgentPaused { agent, misses } => {
                    tracing::info!(
                        agent,
                        misses,
                        "routing paused the agent after missed offers"
                    );
                    self.event(
                        now,
                        Some(&agent),
                        EventData::RoutingAgentPaused(AgentPaused { misses }),
                    );
                }
                RoutingDecision::AgentResumed { agent } => {
                    self.event(now, Some(&agent), EventData::RoutingAgentResumed(NoData))
                }
            }
        }
    }

    /// The Teams users an overflow may call, with their direct-dial numbers
    /// from the directory, and the number to dial: the first one found.
    fn direct_dial(&self, users: &[String]) -> (Vec<DialTarget>, Option<String>) {
        let mut listed = Vec::new();
        let mut number = None;
        for wanted in users {
            let user = if directory::is_object_id(wanted) {
                self.directory.get(&wanted.to_ascii_lowercase())
            } else {
                self.directory.find(wanted)
            };
            let phone = user.and_then(directory::phone_of);
            if number.is_none() {
                number.clone_from(&phone);
            }
            listed.push(DialTarget {
                teams_user: wanted.clone(),
                teams_user_id: user.map(|u| u.id.clone()),
                upn: user.and_then(|u| u.user_principal_name().map(str::to_string)),
                display_name: user.and_then(|u| u.display_name().map(str::to_string)),
                phone,
            });
        }
        (listed, number)
    }
}

/// Checks the routing fields of an agent upsert.
pub(super) fn check_agent_routing(
    router: &Router,
    queues: Option<&Vec<crate::routing::Membership>>,
    capacity: Option<u8>,
) -> Result<(), ApiError> {
    if let Some(capacity) = capacity
        && !(1..=MAX_CAPACITY).contains(&capacity)
    {
        return Err(ApiError::unprocessable(
            "capacity",
            "invalid_capacity",
            format!("capacity is 1–{MAX_CAPACITY} contacts at once"),
        ));
    }
    if let Some(queues) = queues {
        let known: Vec<&str> = router.queue_names().collect();
        let mut seen = BTreeMap::new();
        for (i, m) in queues.iter().enumerate() {
            if !known.contains(&m.queue.as_str()) {
                return Err(ApiError::unprocessable(
                    &format!("queues[{i}].queue"),
                    "unknown_queue",
                    format!(
                        "no queue `{}`{}",
                        m.queue,
                        crate::diagnostics::did_you_mean(&m.queue, known.iter().copied())
                    ),
                ));
            }
            if seen.insert(m.queue.clone(), i).is_some() {
                return Err(ApiError::unprocessable(
                    &format!("queues[{i}].queue"),
                    "duplicate_queue",
                    format!("queue `{}` is listed twice", m.queue),
                ));
            }
        }
    }
    Ok(())
}

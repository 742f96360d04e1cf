//! The routing core inside the sync loop: API commands for queues and
//! contacts, the gate each agent's presence gives the router, the router's
//! decisions as `routing.*` events, the CC statuses a contact brings
//! (`on_contact_status`, `after_contact_status`), and what to persist.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::RoutingConfig;
use crate::events::{
    Abandoned, AgentPaused, Completed, ContactInQueue, DialTarget, EventData, NoData,
    OfferWithdrawn, Offered, Overflow, OverflowToQueue, OverflowToTeamsUsers, Queued,
    RoutingRequest, RoutingRequestKind, StatusRequest,
};
use crate::routing::{
    AgentRouting, AgentSpec, ContactRecord, Gate, Membership, NewContact, OverflowTarget,
    QueueView, Router, RoutingDecision,
};
use crate::store::{MetaKey, Store};
use crate::time::Timestamp;

use super::super::directory;
use super::SyncLoop;
use super::agents::{AgentEntry, AgentState, ContactState};
use super::command::ContactMove;
use super::error::{LoopError, suggestion};
use super::handlers::StatusSource;

/// Most contacts an agent can be on at once.
pub const MAX_CAPACITY: u8 = 20;

pub(super) fn spec_of(entry: &AgentEntry) -> AgentSpec {
    AgentSpec {
        skills: entry.skills().clone(),
        capacity: entry.capacity().unwrap_or(1).max(1),
        queues: entry.queues().to_vec(),
        groups: entry.groups().to_vec(),
    }
}

/// The router's gate as the agent's sync state gives it: the engine's
/// view when linked.
pub(super) fn gate_of(state: &AgentState) -> Gate {
    let (_, cc_routable) = state.cc_in_profile_and_routable();
    Gate {
        linked: state.linked(),
        cc_routable: cc_routable && state.cc_status().is_some(),
        teams_blocking: state.teams_blocking(),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Builds the router from what the store held, with each agent's gate as
/// the sync side shows it after the restart.
pub(super) fn restore_router(
    now: Timestamp,
    config: &RoutingConfig,
    globals: Option<String>,
    queue_memories: Vec<(String, String)>,
    agents: Vec<(String, AgentSpec, Option<AgentRouting>, Gate)>,
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
            let state: AgentRouting = state.unwrap_or(AgentRouting {
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
    pub(super) fn contact_state(&self, id: &str) -> Result<ContactState, LoopError> {
        let record = self
            .router
            .contact(id)
            .ok_or_else(|| LoopError::UnknownContact(id.to_string()))?;
        Ok(ContactState {
            record: record.clone(),
            place_in_queue: self.router.place_in_queue(id),
        })
    }

    pub(super) fn queue_state(&self, name: &str, now: Timestamp) -> Result<QueueView, LoopError> {
        self.router
            .queue_view(name, now)
            .ok_or_else(|| LoopError::UnknownQueue(name.to_string()))
    }

    pub(super) fn queue_states(&self, now: Timestamp) -> Vec<QueueView> {
        self.router
            .queue_names()
            .filter_map(|q| self.router.queue_view(q, now))
            .collect()
    }

    pub(super) fn add_contact(
        &mut self,
        now: Timestamp,
        contact: NewContact,
    ) -> Result<String, LoopError> {
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        let result = self.router.add_contact(now, contact, &mut out);
        self.out
            .metrics
            .routing_decision_seconds
            .observe_duration(started.elapsed());
        // Timers that came due are decided even when the contact is refused.
        self.absorb_routing(now, out);
        Ok(result?)
    }

    pub(super) fn contact_move(
        &mut self,
        now: Timestamp,
        id: &str,
        action: ContactMove,
    ) -> Result<(), LoopError> {
        let mut out = Vec::new();
        let result = match &action {
            ContactMove::Accept { agent } => {
                self.router.accept(now, id, agent.as_deref(), &mut out)
            }
            ContactMove::Decline { agent } => {
                self.router.decline(now, id, agent.as_deref(), &mut out)
            }
            ContactMove::Complete { agent } => {
                self.router.complete(now, id, agent.as_deref(), &mut out)
            }
            ContactMove::Abandon => self.router.abandon(now, id, &mut out),
        };
        // Timers that came due are decided even when the action is refused.
        self.absorb_routing(now, out);
        Ok(result?)
    }

    pub(super) fn resume(&mut self, now: Timestamp, id: &str) -> Result<(), LoopError> {
        if !self.agents.contains_key(id) {
            return Err(LoopError::UnknownAgent(id.to_string()));
        }
        let mut out = Vec::new();
        let result = self.router.resume_agent(now, id, &mut out);
        self.absorb_routing(now, out);
        result?;
        Ok(())
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
    pub(super) fn gate(&mut self, now: Timestamp, id: &str, state: &AgentState) {
        let mut out = Vec::new();
        self.router.set_gate(now, id, gate_of(state), &mut out);
        self.absorb_routing(now, out);
    }

    /// Moves what the router changed into this step's batch.
    pub(super) fn routing_changes(&mut self) {
        let changes = self.router.take_changes();
        // The state itself is the router's; the commit reads it there.
        for (id, _) in changes.agents {
            if let Some(entry) = self.agents.get_mut(id.as_str()) {
                entry.routing_stored = true;
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

    /// Puts the agent in a CC status because of routing (its own input to
    /// the engine, set by routing) and asks the CC to show it too.
    fn routing_status(&mut self, now: Timestamp, agent: &str, status: &str, contact: &str) {
        match self.set_cc_status(now, agent, status, None, StatusSource::Routing) {
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
                agent, status, error = %e,
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
                    let entry = self.agents.get(agent.as_str());
                    let data = EventData::RoutingOffered(Offered {
                        teams_user_id: entry.and_then(|e| e.teams_user_id().map(str::to_string)),
                        teams_upn: entry.and_then(|e| e.upn().map(str::to_string)),
                        phone: entry.and_then(|e| e.phone().map(str::to_string)),
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
                        && self.agents.contains_key(agent.as_str())
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
                self.directory.record(wanted)
            } else {
                self.directory.find(wanted)
            };
            let user = user.as_deref();
            let phone = user.and_then(directory::phone_of);
            if number.is_none() {
                number.clone_from(&phone);
            }
            listed.push(DialTarget {
                teams_user: wanted.clone(),
                teams_user_id: user.map(|u| u.id.to_string()),
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
    queues: &[Membership],
    capacity: Option<u8>,
) -> Result<(), LoopError> {
    if let Some(capacity) = capacity
        && !(1..=MAX_CAPACITY).contains(&capacity)
    {
        return Err(LoopError::InvalidCapacity(capacity));
    }
    let known: Vec<&str> = router.queue_names().collect();
    let mut seen = BTreeMap::new();
    for (index, m) in queues.iter().enumerate() {
        if !known.contains(&m.queue.as_str()) {
            return Err(LoopError::UnknownMembership {
                index,
                queue: m.queue.clone(),
                suggestion: suggestion(&m.queue, known.iter().copied()),
            });
        }
        if seen.insert(m.queue.clone(), index).is_some() {
            return Err(LoopError::DuplicateMembership {
                index,
                queue: m.queue.clone(),
            });
        }
    }
    Ok(())
}

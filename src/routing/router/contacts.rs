//! The contacts: queued, accepted, declined, completed, abandoned; an offer
//! missed (declined or unanswered) or withdrawn; ended contacts kept for a
//! while so a late call gets "already completed".

use super::*;

/// The longest contact id accepted.
pub const MAX_CONTACT_ID: usize = 200;
/// The most skills a contact may ask for (each is checked per candidate).
pub const MAX_CONTACT_SKILLS: usize = 32;

/// How an offer was missed: both count against the agent (back-off,
/// pause), each in its own total and decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Miss {
    /// The agent declined it.
    Declined,
    /// The offer timed out (RONA).
    NoAnswer,
}

/// Checks a skill map from outside: names non-empty, levels 0–100.
pub fn check_skills(skills: &BTreeMap<String, u8>) -> Result<(), RoutingError> {
    match skills
        .iter()
        .find(|(name, level)| name.trim().is_empty() || **level > 100)
    {
        Some((name, level)) => Err(invalid(
            "skills",
            format!("skill `{name}` level {level}: a skill needs a name and a level 0–100"),
        )),
        None => Ok(()),
    }
}

impl Router {
    /// Queues a contact; it is offered at once when an agent is free.
    /// Returns its id (given, or made up).
    pub fn add_contact(
        &mut self,
        now: Timestamp,
        new: NewContact,
        out: &mut Vec<RoutingDecision>,
    ) -> Result<String, RoutingError> {
        let q = self
            .queue_index
            .get(&new.queue)
            .copied()
            .ok_or_else(|| RoutingError::UnknownQueue(new.queue.clone()))?;
        check_skills(&new.skills)?;
        if new.skills.len() > MAX_CONTACT_SKILLS {
            return Err(invalid(
                "skills",
                format!("a contact asks for at most {MAX_CONTACT_SKILLS} skills"),
            ));
        }
        if let Some(id) = &new.id {
            if id.trim().is_empty() || id.len() > MAX_CONTACT_ID || id.chars().any(char::is_control)
            {
                return Err(invalid(
                    "contact_id",
                    format!("a contact id is 1–{MAX_CONTACT_ID} characters, no control characters"),
                ));
            }
            if self.contact_index.contains_key(id) {
                return Err(RoutingError::ContactExists(id.clone()));
            }
        }
        self.advance(now, out);
        let mut serial = self.next_serial;
        let id = match new.id {
            Some(id) => id,
            None => loop {
                // A CC may have used an id of this shape itself: skip it.
                let id = format!("ct-{serial}");
                if !self.contact_index.contains_key(&id) {
                    break id;
                }
                serial += 1;
            },
        };
        self.next_serial = serial + 1;
        self.globals_dirty = true;
        let settings = &self.queues[q].settings;
        let priority = new.priority.unwrap_or(settings.priority);
        let contact = ContactRecord {
            id: id.clone(),
            serial,
            queue: settings.name.clone(),
            skills: new.skills,
            priority,
            data: new.data,
            arrived: now,
            queued_at: now,
            overflowed_from: Vec::new(),
            offers: 0,
            phase: Phase::Waiting,
        };
        if let Some(wait) = settings.max_wait {
            self.timers.insert((now + wait, Timer::Overflow(serial)));
        }
        out.push(RoutingDecision::Queued {
            contact: id.clone(),
            queue: contact.queue.clone(),
            priority,
        });
        self.queues[q].waiting.insert((Reverse(priority), serial));
        self.queues[q].memory.totals.queued += 1;
        self.dirty_queues.insert(q);
        self.contact_index.insert(id.clone(), serial);
        self.contacts.insert(serial, contact);
        self.dirty_contacts.insert(serial);
        self.pending_contacts.push(serial);
        self.dispatch(now, out);
        Ok(id)
    }

    pub(super) fn offered(
        &self,
        id: &str,
        action: &'static str,
    ) -> Result<(u64, String, Timestamp), RoutingError> {
        let serial = self
            .contact_index
            .get(id)
            .copied()
            .ok_or_else(|| RoutingError::UnknownContact(id.to_string()))?;
        let c = self
            .contacts
            .get(&serial)
            .ok_or_else(|| RoutingError::UnknownContact(id.to_string()))?;
        match &c.phase {
            Phase::Offered { agent, expires, .. } => Ok((serial, agent.clone(), *expires)),
            other => Err(RoutingError::WrongState {
                contact: id.to_string(),
                state: other.name(),
                action,
            }),
        }
    }

    pub(super) fn check_agent(
        contact: &str,
        offered_to: &str,
        agent: Option<&str>,
    ) -> Result<(), RoutingError> {
        match agent {
            Some(agent) if agent != offered_to => Err(RoutingError::WrongAgent {
                contact: contact.to_string(),
                offered_to: offered_to.to_string(),
                agent: agent.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The agent takes the contact offered to it. `agent`, when given, must
    /// be the one it was offered to.
    pub fn accept(
        &mut self,
        now: Timestamp,
        id: &str,
        agent: Option<&str>,
        out: &mut Vec<RoutingDecision>,
    ) -> Result<(), RoutingError> {
        self.advance(now, out);
        let (serial, offered_to, _) = self.offered(id, "accepted")?;
        Self::check_agent(id, &offered_to, agent)?;
        let Some(slot) = self.agent_index.get(offered_to.as_str()).copied() else {
            // Only a store from before its agent was deleted holds this;
            // the offer times out and the contact goes back to its queue.
            return Err(RoutingError::WrongState {
                contact: id.to_string(),
                state: "offered to an agent no longer in routing",
                action: "accepted",
            });
        };
        let day = day_of(now);
        if let Some(a) = self.agents[slot].as_mut() {
            a.set_offer(None);
            a.push_active(serial);
            a.state.misses = 0;
            a.state.roll_to(day);
            a.state.contacts_today += 1;
        }
        let Some(c) = self.contacts.get_mut(&serial) else {
            return Err(RoutingError::UnknownContact(id.to_string()));
        };
        c.phase = Phase::Accepted {
            agent: offered_to.clone(),
            at: now,
        };
        let queue = c.queue.clone();
        out.push(RoutingDecision::Accepted {
            contact: id.to_string(),
            queue: queue.clone(),
            agent: offered_to,
        });
        self.count(&queue, |t| t.accepted += 1);
        self.dirty_contacts.insert(serial);
        self.dirty_agents.insert(slot);
        self.refresh(slot, now);
        self.dispatch(now, out);
        Ok(())
    }

    /// The agent turns the offer down: the contact goes back to its place
    /// in the queue and the agent backs off.
    pub fn decline(
        &mut self,
        now: Timestamp,
        id: &str,
        agent: Option<&str>,
        out: &mut Vec<RoutingDecision>,
    ) -> Result<(), RoutingError> {
        self.advance(now, out);
        let (serial, offered_to, _) = self.offered(id, "declined")?;
        Self::check_agent(id, &offered_to, agent)?;
        self.miss(now, serial, Miss::Declined, out);
        self.dispatch(now, out);
        Ok(())
    }

    /// The contact is over; the agent goes into wrap-up.
    pub fn complete(
        &mut self,
        now: Timestamp,
        id: &str,
        by: Option<&str>,
        out: &mut Vec<RoutingDecision>,
    ) -> Result<(), RoutingError> {
        self.advance(now, out);
        let serial = self.serial_of(id)?;
        let Some(c) = self.contacts.get(&serial) else {
            return Err(RoutingError::UnknownContact(id.to_string()));
        };
        let Phase::Accepted { agent, at } = &c.phase else {
            return Err(RoutingError::WrongState {
                contact: id.to_string(),
                state: c.phase.name(),
                action: "completed",
            });
        };
        Self::check_agent(id, agent, by)?;
        let (agent, accepted_at, queue) = (agent.clone(), *at, c.queue.clone());
        let wrap = self
            .queue_index
            .get(&queue)
            .map_or(Duration::ZERO, |q| self.queues[*q].settings.wrap_up);
        let wrap_until = now + wrap;
        if let Some(slot) = self.agent_index.get(agent.as_str()).copied()
            && let Some(a) = self.agents[slot].as_mut()
        {
            a.remove_active(serial);
            a.state.add_busy(day_of(now), now.since(accepted_at) + wrap);
            a.state.wrap_until = a.state.wrap_until.max(wrap_until);
            a.state.idle_since = a.state.wrap_until;
            if wrap > Duration::ZERO {
                self.timers.insert((wrap_until, Timer::Agent(slot)));
            }
            self.dirty_agents.insert(slot);
            self.refresh(slot, now);
        }
        if let Some(c) = self.contacts.get_mut(&serial) {
            c.phase = Phase::Ended {
                how: Ending::Completed,
                at: now,
                agent: Some(agent.clone()),
            };
        }
        out.push(RoutingDecision::Completed {
            contact: id.to_string(),
            queue: queue.clone(),
            agent,
            wrap_up_until: wrap_until,
        });
        self.count_completed(&queue, now);
        self.end(serial);
        self.dispatch(now, out);
        Ok(())
    }

    /// The caller hung up before an agent took the contact.
    pub fn abandon(
        &mut self,
        now: Timestamp,
        id: &str,
        out: &mut Vec<RoutingDecision>,
    ) -> Result<(), RoutingError> {
        self.advance(now, out);
        let serial = self.serial_of(id)?;
        let state = self
            .contacts
            .get(&serial)
            .map_or("unknown", |c| c.phase.name());
        if !matches!(state, "waiting" | "offered") {
            return Err(RoutingError::WrongState {
                contact: id.to_string(),
                state,
                action: "abandoned (complete a contact an agent accepted)",
            });
        }
        self.abandon_serial(now, serial, "caller", out);
        self.dispatch(now, out);
        Ok(())
    }

    pub(super) fn serial_of(&self, id: &str) -> Result<u64, RoutingError> {
        self.contact_index
            .get(id)
            .copied()
            .ok_or_else(|| RoutingError::UnknownContact(id.to_string()))
    }

    pub(super) fn end(&mut self, serial: u64) {
        self.dirty_contacts.insert(serial);
        self.ended.push_back(serial);
    }

    /// Takes an offer back from `agent` (whose `offer` the caller cleared):
    /// the contact goes back to its place by arrival, with its maximum wait
    /// still running, and nothing counts against the agent.
    pub(super) fn withdraw(
        &mut self,
        serial: u64,
        agent: &str,
        reason: WithdrawReason,
        out: &mut Vec<RoutingDecision>,
    ) {
        let Some(c) = self.contacts.get_mut(&serial) else {
            return;
        };
        if !matches!(c.phase, Phase::Offered { .. }) {
            return;
        }
        c.phase = Phase::Waiting;
        let key = (Reverse(c.priority), serial);
        out.push(RoutingDecision::Withdrawn {
            contact: c.id.clone(),
            queue: c.queue.clone(),
            agent: agent.to_string(),
            reason,
        });
        if let Some(q) = self.queue_index.get(&c.queue).copied() {
            self.queues[q].waiting.insert(key);
        }
        self.dirty_contacts.insert(serial);
        self.pending_contacts.push(serial);
        self.arm_overflow(serial);
    }

    /// A declined or unanswered offer.
    pub(super) fn miss(
        &mut self,
        now: Timestamp,
        serial: u64,
        miss: Miss,
        out: &mut Vec<RoutingDecision>,
    ) {
        let Some(c) = self.contacts.get_mut(&serial) else {
            return;
        };
        let Phase::Offered { agent, .. } = &c.phase else {
            return;
        };
        let agent = agent.clone();
        c.phase = Phase::Waiting;
        let (contact, queue, key) = (c.id.clone(), c.queue.clone(), (Reverse(c.priority), serial));
        self.dirty_contacts.insert(serial);
        let q = self.queue_index.get(&queue).copied();
        let (backoff, max_misses) = q.map_or((Duration::ZERO, 0), |q| {
            let s = &self.queues[q].settings;
            (s.miss_backoff, s.max_no_answer)
        });
        if let Some(q) = q {
            self.queues[q].waiting.insert(key);
            if let Some(wait) = self.queues[q].settings.max_wait {
                let deadline = self.contacts.get(&serial).map(|c| c.queued_at + wait);
                if let Some(at) = deadline.filter(|at| *at > now) {
                    self.timers.insert((at, Timer::Overflow(serial)));
                }
            }
        }
        let mut paused = None;
        if let Some(slot) = self.agent_index.get(agent.as_str()).copied()
            && let Some(a) = self.agents[slot].as_mut()
        {
            a.set_offer(None);
            // A queue a reload removed has no rules to count a miss by.
            if q.is_some() {
                a.state.misses += 1;
                a.state.backoff_until = a.state.backoff_until.max(now + backoff);
                if backoff > Duration::ZERO {
                    self.timers.insert((now + backoff, Timer::Agent(slot)));
                }
                if max_misses > 0 && a.state.misses >= max_misses && a.state.paused_since.is_none()
                {
                    a.state.paused_since = Some(now);
                    paused = Some(a.state.misses);
                }
            }
            self.dirty_agents.insert(slot);
            self.refresh(slot, now);
        }
        out.push(match miss {
            Miss::NoAnswer => RoutingDecision::Rona {
                contact,
                queue: queue.clone(),
                agent: agent.clone(),
            },
            Miss::Declined => RoutingDecision::Declined {
                contact,
                queue: queue.clone(),
                agent: agent.clone(),
            },
        });
        if let Some(misses) = paused {
            out.push(RoutingDecision::AgentPaused { agent, misses });
        }
        self.count(&queue, |t| match miss {
            Miss::NoAnswer => t.rona += 1,
            Miss::Declined => t.declined += 1,
        });
        self.pending_contacts.push(serial);
    }

    pub(super) fn abandon_serial(
        &mut self,
        now: Timestamp,
        serial: u64,
        reason: &'static str,
        out: &mut Vec<RoutingDecision>,
    ) {
        let Some(c) = self.contacts.get_mut(&serial) else {
            return;
        };
        let offered_to = match &c.phase {
            Phase::Offered { agent, .. } => Some(agent.clone()),
            Phase::Waiting => None,
            _ => return,
        };
        c.phase = Phase::Ended {
            how: Ending::Abandoned,
            at: now,
            agent: offered_to.clone(),
        };
        let (contact, queue, key) = (c.id.clone(), c.queue.clone(), (Reverse(c.priority), serial));
        if let Some(q) = self.queue_index.get(&queue).copied() {
            self.queues[q].waiting.remove(&key);
        }
        if let Some(agent) = &offered_to
            && let Some(slot) = self.agent_index.get(agent.as_str()).copied()
        {
            if let Some(a) = self.agents[slot].as_mut() {
                a.set_offer(None);
            }
            self.refresh(slot, now);
        }
        out.push(RoutingDecision::Abandoned {
            contact,
            queue: queue.clone(),
            agent: offered_to,
            reason,
        });
        self.count(&queue, |t| t.abandoned += 1);
        self.end(serial);
    }
}

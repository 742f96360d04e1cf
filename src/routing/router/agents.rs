//! The agents in routing: added, changed, removed, their presence gate,
//! resuming one paused after missed offers, and whether each is free.

use super::*;

pub(super) struct Agent {
    pub(super) id: Arc<str>,
    pub(super) spec: AgentSpec,
    pub(super) gate: Gate,
    pub(super) state: AgentRouting,
    pub(super) offer: Option<u64>,
    pub(super) active: Vec<u64>,
    /// Queue indices in the agent's order, with the position in each.
    pub(super) queues: Vec<(usize, Option<u32>)>,
    /// Per entry of `queues`: its skills meet the queue's.
    pub(super) fits: Vec<bool>,
    /// Per entry of `queues`: the agent's index in that queue's members,
    /// kept by `reindex` so `refresh` updates the member's copy directly.
    pub(super) at: Vec<usize>,
}

impl Router {
    /// Adds an agent or changes its skills, capacity or queues.
    pub fn upsert_agent(
        &mut self,
        now: Timestamp,
        id: &str,
        spec: AgentSpec,
        out: &mut Vec<RoutingDecision>,
    ) {
        self.advance(now, out);
        let slot = match self.agent_index.get(id).copied() {
            Some(slot) => {
                if let Some(a) = self.agents[slot].as_mut() {
                    a.spec = spec;
                }
                slot
            }
            None => self.new_slot(
                id,
                spec,
                AgentRouting {
                    idle_since: now,
                    day: day_of(now),
                    ..AgentRouting::default()
                },
            ),
        };
        self.place_member(slot);
        self.dirty_agents.insert(slot);
        self.refresh(slot, now);
        self.pending_agents.push(slot);
        self.dispatch(now, out);
    }

    /// Removes an agent: a contact offered to it goes back to its queue, and
    /// contacts it was on are completed.
    pub fn remove_agent(&mut self, now: Timestamp, id: &str, out: &mut Vec<RoutingDecision>) {
        self.advance(now, out);
        let Some(slot) = self.agent_index.remove(id) else {
            return;
        };
        let Some(agent) = self.agents[slot].take() else {
            return;
        };
        for (q, _) in &agent.queues {
            if let Some(queue) = self.queues.get_mut(*q) {
                queue.members.retain(|m| m.slot != slot);
            }
            self.reindex(*q);
        }
        self.hot[slot] = Hot::default();
        self.free_slots.push(slot);
        self.dirty_agents.remove(&slot);
        if let Some(serial) = agent.offer {
            self.withdraw(serial, &agent.id, WithdrawReason::AgentRemoved, out);
        }
        let mut active = agent.active;
        active.sort_unstable();
        for serial in active {
            if let Some(c) = self.contacts.get_mut(&serial) {
                c.phase = Phase::Ended {
                    how: Ending::Completed,
                    at: now,
                    agent: Some(agent.id.to_string()),
                };
                out.push(RoutingDecision::Completed {
                    contact: c.id.clone(),
                    queue: c.queue.clone(),
                    agent: agent.id.to_string(),
                    wrap_up_until: now,
                });
                let q = c.queue.clone();
                self.count_completed(&q, now);
                self.end(serial);
            }
        }
        self.dispatch(now, out);
    }

    /// What the sync side says about the agent's presence.
    pub fn set_gate(
        &mut self,
        now: Timestamp,
        id: &str,
        gate: Gate,
        out: &mut Vec<RoutingDecision>,
    ) {
        self.advance(now, out);
        let Some(slot) = self.agent_index.get(id).copied() else {
            return;
        };
        let Some(a) = self.agents[slot].as_mut() else {
            return;
        };
        if a.gate == gate {
            return;
        }
        if gate.is_open() && !a.gate.is_open() {
            a.state.idle_since = now.max(a.state.wrap_until);
            self.dirty_agents.insert(slot);
        }
        a.gate = gate;
        // An agent that stops being routable while an offer rings does not
        // get to miss it: the offer goes to the next agent.
        let withdrawn = WithdrawReason::of_gate(gate).and_then(|why| Some((a.offer.take()?, why)));
        if let Some((serial, why)) = withdrawn {
            self.withdraw(serial, id, why, out);
        }
        self.refresh(slot, now);
        self.dispatch(now, out);
    }

    /// Lifts a pause after missed offers; also clears the miss count.
    pub fn resume_agent(
        &mut self,
        now: Timestamp,
        id: &str,
        out: &mut Vec<RoutingDecision>,
    ) -> Result<bool, RoutingError> {
        self.advance(now, out);
        let slot = self
            .agent_index
            .get(id)
            .copied()
            .ok_or_else(|| RoutingError::UnknownAgent(id.to_string()))?;
        let Some(a) = self.agents[slot].as_mut() else {
            return Err(RoutingError::UnknownAgent(id.to_string()));
        };
        let was_paused = a.state.paused_since.take().is_some();
        if was_paused || a.state.misses > 0 {
            a.state.misses = 0;
            self.dirty_agents.insert(slot);
        }
        if was_paused {
            out.push(RoutingDecision::AgentResumed {
                agent: id.to_string(),
            });
        }
        self.refresh(slot, now);
        self.dispatch(now, out);
        Ok(was_paused)
    }

    pub(super) fn new_slot(&mut self, id: &str, spec: AgentSpec, state: AgentRouting) -> usize {
        // One copy of the id, shared by the slot and the index.
        let shared: Arc<str> = Arc::from(id);
        let agent = Agent {
            id: Arc::clone(&shared),
            spec,
            gate: Gate::default(),
            state,
            offer: None,
            active: Vec::new(),
            queues: Vec::new(),
            fits: Vec::new(),
            at: Vec::new(),
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.agents[slot] = Some(agent);
                slot
            }
            None => {
                // Grown by an eighth, not doubled: a slot is hundreds of
                // bytes, and doubling leaves up to half of them unused.
                if self.agents.len() == self.agents.capacity() {
                    let more = (self.agents.len() / 8).max(64);
                    self.agents.reserve_exact(more);
                    self.hot.reserve_exact(more);
                }
                self.agents.push(Some(agent));
                self.hot.push(Hot::default());
                self.agents.len() - 1
            }
        };
        self.agent_index.insert(shared, slot);
        slot
    }

    /// Recomputes whether the agent is free; one that just became free is
    /// up for dispatch.
    pub(super) fn refresh(&mut self, slot: usize, now: Timestamp) {
        let Some(a) = self.agents[slot].as_ref() else {
            return;
        };
        let free = a.gate.is_open()
            && a.state.paused_since.is_none()
            && a.offer.is_none()
            && a.active.len() < usize::from(a.spec.capacity.max(1))
            && a.state.wrap_until <= now
            && a.state.backoff_until <= now
            && !a.queues.is_empty();
        let hot = Hot {
            free,
            idle_since: a.state.idle_since,
            day: a.state.day,
            contacts_today: a.state.contacts_today,
            busy_today: a.state.busy_today,
        };
        let was = self.hot[slot];
        if hot == was {
            return;
        }
        self.hot[slot] = hot;
        for ((q, _), at) in a.queues.iter().zip(&a.at) {
            let member = self
                .queues
                .get_mut(*q)
                .and_then(|queue| queue.members.get_mut(*at))
                .filter(|m| m.slot == slot);
            if let Some(m) = member {
                m.hot = hot;
                let key = member_key(&self.queues[*q], *at);
                if let Some(k) = self.queues[*q].keys.get_mut(*at) {
                    *k = key;
                }
            }
        }
        if free && !was.free {
            self.pending_agents.push(slot);
        }
    }
}

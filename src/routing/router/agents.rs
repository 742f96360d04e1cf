//! The agents in routing: added, changed, removed, their presence gate,
//! resuming one paused after missed offers, and whether each is free.

use super::*;

pub(super) struct Agent {
    pub(super) id: Arc<str>,
    pub(super) spec: Spec,
    /// Contacts the agent can be on at once (its spec's); kept beside the
    /// gate rather than in `spec`, where it would take a word of its own.
    pub(super) capacity: u8,
    pub(super) gate: Gate,
    pub(super) state: AgentRouting,
    /// The queues it serves and the contacts it holds; `None` while it has
    /// neither: a pointer in the entry rather than the room of the lists.
    work: Option<Box<Work>>,
}

/// What the CC configured for an agent ([`AgentSpec`]) but its capacity,
/// the lists held in exactly their length: they change only when the agent
/// is configured again.
pub(super) struct Spec {
    pub(super) skills: BTreeMap<String, u8>,
    pub(super) queues: Box<[Membership]>,
    pub(super) groups: Box<[String]>,
}

/// One queue an agent serves, in the agent's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Serving {
    pub(super) queue: usize,
    /// The agent's place in the queue's agent order, as configured.
    pub(super) position: Option<u32>,
    /// The agent's skills meet the queue's.
    pub(super) fits: bool,
    /// The agent's index in that queue's members, kept by `reindex` so
    /// `refresh` updates the member's copy directly.
    pub(super) at: usize,
}

/// The parts of an agent that are empty while it serves no queue and is on
/// no contact.
#[derive(Default)]
struct Work {
    offer: Option<u64>,
    active: Vec<u64>,
    /// In the agent's order.
    serves: Box<[Serving]>,
}

impl Agent {
    pub(super) fn new(id: Arc<str>, spec: AgentSpec, state: AgentRouting) -> Self {
        let mut agent = Agent {
            id,
            spec: Spec {
                skills: BTreeMap::new(),
                queues: Box::default(),
                groups: Box::default(),
            },
            capacity: 0,
            gate: Gate::default(),
            state,
            work: None,
        };
        agent.set_spec(spec);
        agent
    }

    pub(super) fn set_spec(&mut self, spec: AgentSpec) {
        self.spec = Spec {
            skills: spec.skills,
            queues: spec.queues.into_boxed_slice(),
            groups: spec.groups.into_boxed_slice(),
        };
        self.capacity = spec.capacity;
    }

    /// The contact offered to the agent and not yet answered.
    pub(super) fn offer(&self) -> Option<u64> {
        self.work.as_ref().and_then(|w| w.offer)
    }

    pub(super) fn set_offer(&mut self, offer: Option<u64>) {
        match offer {
            Some(serial) => self.work_mut().offer = Some(serial),
            None => {
                self.take_offer();
            }
        }
    }

    pub(super) fn take_offer(&mut self) -> Option<u64> {
        let offer = self.work.as_mut().and_then(|w| w.offer.take());
        self.drop_empty_work();
        offer
    }

    /// The contacts the agent is on, in the order it took them.
    pub(super) fn active(&self) -> &[u64] {
        self.work.as_ref().map_or(&[], |w| &w.active)
    }

    pub(super) fn push_active(&mut self, serial: u64) {
        self.work_mut().active.push(serial);
    }

    pub(super) fn remove_active(&mut self, serial: u64) {
        if let Some(w) = self.work.as_mut() {
            w.active.retain(|s| *s != serial);
        }
        self.drop_empty_work();
    }

    /// The queues the agent serves, in its order.
    pub(super) fn serves(&self) -> &[Serving] {
        self.work.as_ref().map_or(&[], |w| &w.serves)
    }

    pub(super) fn serves_mut(&mut self) -> &mut [Serving] {
        self.work.as_mut().map_or(&mut [], |w| &mut w.serves)
    }

    pub(super) fn set_serves(&mut self, serves: Vec<Serving>) {
        if serves.is_empty() {
            if let Some(w) = self.work.as_mut() {
                w.serves = Box::default();
            }
            self.drop_empty_work();
        } else {
            self.work_mut().serves = serves.into_boxed_slice();
        }
    }

    fn work_mut(&mut self) -> &mut Work {
        self.work.get_or_insert_with(Box::default)
    }

    fn drop_empty_work(&mut self) {
        if self
            .work
            .as_ref()
            .is_some_and(|w| w.offer.is_none() && w.active.is_empty() && w.serves.is_empty())
        {
            self.work = None;
        }
    }
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
                    a.set_spec(spec);
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
        for serving in agent.serves() {
            if let Some(queue) = self.queues.get_mut(serving.queue) {
                queue.members.retain(|m| m.slot != slot);
            }
            self.reindex(serving.queue);
        }
        self.hot[slot] = Hot::default();
        self.free_slots.push(slot);
        self.dirty_agents.remove(&slot);
        if let Some(serial) = agent.offer() {
            self.withdraw(serial, &agent.id, WithdrawReason::AgentRemoved, out);
        }
        let mut active = agent.active().to_vec();
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
        let withdrawn = WithdrawReason::of_gate(gate).and_then(|why| Some((a.take_offer()?, why)));
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
        let agent = Agent::new(Arc::clone(&shared), spec, state);
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
            && a.offer().is_none()
            && a.active().len() < usize::from(a.capacity.max(1))
            && a.state.wrap_until <= now
            && a.state.backoff_until <= now
            && !a.serves().is_empty();
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
        for &Serving { queue: q, at, .. } in a.serves() {
            let member = self
                .queues
                .get_mut(q)
                .and_then(|queue| queue.members.get_mut(at))
                .filter(|m| m.slot == slot);
            if let Some(m) = member {
                m.hot = hot;
                let key = member_key(&self.queues[q], at);
                if let Some(k) = self.queues[q].keys.get_mut(at) {
                    *k = key;
                }
            }
        }
        if free && !was.free {
            self.pending_agents.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router keeps an `Option<Agent>` slot per agent: its inline size is
    /// most of an agent's memory when it serves no queue and is on no contact.
    #[test]
    fn an_agent_slot_stays_within_its_budget() {
        assert!(
            std::mem::size_of::<Option<Agent>>() <= 152,
            "{}",
            std::mem::size_of::<Option<Agent>>()
        );
    }

    #[test]
    fn an_agent_without_queues_or_contacts_holds_no_lists() {
        let mut a = Agent::new(
            Arc::from("a1"),
            AgentSpec::default(),
            AgentRouting::default(),
        );
        assert!(a.work.is_none());
        a.set_offer(Some(7));
        a.push_active(3);
        assert_eq!((a.offer(), a.active()), (Some(7), &[3][..]));
        a.set_offer(None);
        assert!(a.work.is_some());
        a.remove_active(3);
        assert!(a.work.is_none());
        let serving = Serving {
            queue: 2,
            position: Some(1),
            fits: true,
            at: usize::MAX,
        };
        a.set_serves(vec![serving]);
        a.serves_mut()[0].at = 4;
        assert_eq!(a.serves(), &[Serving { at: 4, ..serving }][..]);
        assert_eq!(a.take_offer(), None);
        a.set_serves(Vec::new());
        assert!(a.work.is_none());
    }
}

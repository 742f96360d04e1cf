//! What the router persists (changes taken after every step) and how it
//! is rebuilt from them after a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

use super::*;

/// Counters per queue since it was first configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTotals {
    pub queued: u64,
    pub offered: u64,
    pub accepted: u64,
    pub declined: u64,
    pub rona: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub overflowed: u64,
}

/// What a queue remembers across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMemory {
    /// Round-robin: the agent offered last, by (position, id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offered: Option<(u32, String)>,
    #[serde(default)]
    pub totals: QueueTotals,
    /// Contacts completed on one UTC day, the latest one counted.
    #[serde(default, skip_serializing_if = "DayCount::is_empty")]
    pub completed_on: DayCount,
}

/// A count kept for one UTC day (days since the epoch); a new day starts
/// it again from zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub day: u64,
    pub count: u64,
}

impl DayCount {
    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Counts one on `day`.
    pub fn add(&mut self, day: u64) {
        if self.day != day {
            *self = DayCount { day, count: 0 };
        }
        self.count += 1;
    }

    /// The count on `day` (0 for a day not counted).
    pub fn on(&self, day: u64) -> u64 {
        if self.day == day { self.count } else { 0 }
    }
}

/// Router-wide state that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Globals {
    pub next_serial: u64,
    pub rng: u64,
    /// Each queue's memory; persisted one queue at a time (see [`Changes`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queues: BTreeMap<String, QueueMemory>,
}

/// What changed since the last [`Router::take_changes`], to persist.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Upserts (`Some`) and deletions (`None`) by contact id.
    pub contacts: Vec<(String, Option<ContactRecord>)>,
    pub agents: Vec<(String, AgentRouting)>,
    /// The serial counter and generator (`queues` left empty).
    pub globals: Option<Globals>,
    /// Queues whose memory changed.
    pub queues: Vec<(String, QueueMemory)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.agents.is_empty()
            && self.globals.is_none()
            && self.queues.is_empty()
    }
}

impl Router {
    /// Rebuilds a router from what was persisted, with each agent's gate as
    /// the sync side shows it now (a gate open before and after a restart
    /// is not a new idle period). Offers that expired while the router was down are
    /// handled by the first call that passes a time after them.
    pub fn restore(
        now: Timestamp,
        queues: Vec<QueueSettings>,
        globals: Globals,
        agents: Vec<(String, AgentSpec, AgentRouting, Gate)>,
        contacts: Vec<ContactRecord>,
    ) -> Self {
        let mut router = Router::new(Vec::new(), globals.rng);
        router.next_serial = globals.next_serial.max(1);
        router.install_queues(queues, &globals.queues);
        router.agents.reserve_exact(agents.len());
        router.hot.reserve_exact(agents.len());
        let mut slots = Vec::new();
        for (id, spec, state, gate) in agents {
            let wakes = [state.wrap_until, state.backoff_until];
            let slot = router.new_slot(&id, spec, state);
            if let Some(a) = router.agents[slot].as_mut() {
                a.gate = gate;
            }
            router.place_member_only(slot);
            slots.push(slot);
            for at in wakes.into_iter().filter(|t| *t > now) {
                router.timers.insert((at, Timer::Agent(slot)));
            }
        }
        for q in 0..router.queues.len() {
            router.reindex(q);
        }
        for slot in slots {
            router.refresh(slot, now);
        }
        let mut contacts = contacts;
        contacts.sort_by_key(|c| c.serial);
        for contact in contacts {
            router.next_serial = router.next_serial.max(contact.serial + 1);
            router.load_contact(now, contact);
        }
        router.pending_agents.clear();
        router
    }

    fn load_contact(&mut self, now: Timestamp, contact: ContactRecord) {
        let serial = contact.serial;
        let queue = self.queue_index.get(&contact.queue).copied();
        match &contact.phase {
            Phase::Waiting => match queue {
                Some(q) => {
                    self.queues[q]
                        .waiting
                        .insert((Reverse(contact.priority), serial));
                    if let Some(wait) = self.queues[q].settings.max_wait {
                        self.timers
                            .insert((contact.queued_at + wait, Timer::Overflow(serial)));
                    }
                    self.pending_contacts.push(serial);
                }
                // Its queue is gone from the config: placed (and abandoned)
                // by the next dispatch.
                None => self.pending_contacts.push(serial),
            },
            Phase::Offered { agent, expires, .. } => {
                self.timers.insert((*expires, Timer::Offer(serial)));
                // Its maximum wait still counts if the offer comes back.
                if let Some(wait) = queue.and_then(|q| self.queues[q].settings.max_wait) {
                    self.timers
                        .insert((contact.queued_at + wait, Timer::Overflow(serial)));
                }
                match self.agent_index.get(agent.as_str()).copied() {
                    Some(slot) => {
                        if let Some(a) = self.agents[slot].as_mut() {
                            a.set_offer(Some(serial));
                        }
                        self.refresh(slot, now);
                    }
                    None => self.pending_contacts.push(serial),
                }
            }
            Phase::Accepted { agent, .. } => {
                if let Some(slot) = self.agent_index.get(agent.as_str()).copied() {
                    if let Some(a) = self.agents[slot].as_mut() {
                        a.push_active(serial);
                    }
                    self.refresh(slot, now);
                }
            }
            Phase::Ended { .. } => self.ended.push_back(serial),
        }
        self.contact_index.insert(contact.id.clone(), serial);
        self.contacts.insert(serial, contact);
    }

    /// One agent's state as it would be persisted now.
    pub fn agent_state(&self, id: &str) -> Option<&AgentRouting> {
        let slot = *self.agent_index.get(id)?;
        Some(&self.agents.get(slot)?.as_ref()?.state)
    }

    /// Everything to persist that changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for id in self.removed_contacts.drain(..) {
            changes.contacts.push((id, None));
        }
        for serial in std::mem::take(&mut self.dirty_contacts) {
            if let Some(c) = self.contacts.get(&serial) {
                changes.contacts.push((c.id.clone(), Some(c.clone())));
            }
        }
        for slot in std::mem::take(&mut self.dirty_agents) {
            if let Some(a) = self.agents.get(slot).and_then(Option::as_ref) {
                changes.agents.push((a.id.to_string(), a.state.clone()));
            }
        }
        if std::mem::take(&mut self.globals_dirty) {
            changes.globals = Some(Globals {
                next_serial: self.next_serial,
                rng: self.rng,
                queues: BTreeMap::new(),
            });
        }
        for q in std::mem::take(&mut self.dirty_queues) {
            if let Some(queue) = self.queues.get(q) {
                changes
                    .queues
                    .push((queue.settings.name.clone(), queue.memory.clone()));
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_count_starts_again_on_a_new_day() {
        let mut count = DayCount::default();
        count.add(20_000);
        count.add(20_000);
        assert_eq!((count.on(20_000), count.on(20_001)), (2, 0));
        count.add(20_001);
        assert_eq!((count.on(20_000), count.on(20_001)), (0, 1));
        // The memory of a queue from before the count existed reads as zero.
        let old: QueueMemory = serde_json::from_str(r#"{"totals":{"queued":1,"offered":1,"accepted":1,"declined":0,"rona":0,"completed":1,"abandoned":0,"overflowed":0}}"#).unwrap();
        assert_eq!(old.completed_on.on(20_001), 0);
        assert_eq!(old.totals.completed, 1);
    }
}

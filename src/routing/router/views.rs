//! What the router shows: an agent's eligibility and why not, a queue's
//! waiting contacts, agents and totals, a contact and its place in queue.

use std::cmp::Reverse;
use std::time::Duration;

use crate::time::Timestamp;

use super::*;

/// One queue an agent serves, and whether its skills are enough there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueFit {
    pub queue: String,
    pub position: Option<u32>,
    /// Skills the agent lacks for the queue: (skill, needed, has).
    pub missing: Vec<(String, u8, u8)>,
}

/// The routing side of the agent view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRoutingView {
    /// Free to be offered a contact now (in at least one queue).
    pub eligible: bool,
    pub blockers: Vec<Blocker>,
    pub queues: Vec<QueueFit>,
    pub gate: Gate,
    pub capacity: u8,
    pub offered: Option<String>,
    pub contacts: Vec<String>,
    pub state: AgentRouting,
    pub contacts_today: u32,
    pub busy_today: Duration,
}

/// `GET /v1/queues/{name}`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueView {
    pub settings: QueueSettings,
    pub waiting: usize,
    pub longest_wait: Option<Duration>,
    pub agents: usize,
    pub eligible_agents: usize,
    pub offered_now: usize,
    /// Round-robin memory: the agent offered last and its position then
    /// (`u32::MAX`: none).
    pub last_offered: Option<(u32, String)>,
    pub totals: QueueTotals,
    /// Contacts completed today (UTC).
    pub completed_today: u64,
}

impl Router {
    pub fn contact(&self, id: &str) -> Option<&ContactRecord> {
        self.contacts.get(self.contact_index.get(id)?)
    }

    /// 1-based place among the contacts waiting in its queue.
    pub fn place_in_queue(&self, id: &str) -> Option<usize> {
        let c = self.contact(id)?;
        if c.phase != Phase::Waiting {
            return None;
        }
        let q = &self.queues[*self.queue_index.get(&c.queue)?];
        let key = (Reverse(c.priority), c.serial);
        Some(q.waiting.range(..key).count() + 1)
    }

    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queues.iter().map(|q| q.settings.name.as_str())
    }

    pub fn queue_view(&self, name: &str, now: Timestamp) -> Option<QueueView> {
        let q = &self.queues[*self.queue_index.get(name)?];
        let longest = q
            .waiting
            .iter()
            .filter_map(|(_, s)| self.contacts.get(s))
            .map(|c| c.queued_at)
            .min()
            .map(|t| now.since(t));
        // Offers are held by agents: look at the queue's members, not at
        // every contact kept.
        let offered_now = q
            .members
            .iter()
            .filter_map(|m| self.agents[m.slot].as_ref()?.offer())
            .filter_map(|serial| self.contacts.get(&serial))
            .filter(|c| c.queue == name)
            .count();
        Some(QueueView {
            settings: q.settings.clone(),
            waiting: q.waiting.len(),
            longest_wait: longest,
            agents: q.members.len(),
            eligible_agents: q
                .members
                .iter()
                .filter(|m| m.skills_ok && self.hot[m.slot].free)
                .count(),
            offered_now,
            last_offered: q.memory.last_offered.clone(),
            totals: q.memory.totals.clone(),
            completed_today: q.memory.completed_on.on(day_of(now)),
        })
    }

    pub fn agent_view(&self, id: &str, now: Timestamp) -> Option<AgentRoutingView> {
        let slot = *self.agent_index.get(id)?;
        let a = self.agents[slot].as_ref()?;
        let mut blockers = Vec::new();
        if !a.gate.linked {
            blockers.push(Blocker::NotLinked);
        }
        if !a.gate.cc_routable {
            blockers.push(Blocker::CcNotRoutable);
        }
        if a.gate.teams_blocking {
            blockers.push(Blocker::TeamsBlocking);
        }
        if let Some(since) = a.state.paused_since {
            blockers.push(Blocker::Paused {
                misses: a.state.misses,
                since,
            });
        }
        if let Some(contact) = a.offer().and_then(|s| self.contacts.get(&s)) {
            blockers.push(Blocker::Offered {
                contact: contact.id.clone(),
            });
        }
        if a.active().len() >= usize::from(a.capacity) {
            blockers.push(Blocker::AtCapacity {
                active: a.active().len(),
                capacity: a.capacity,
            });
        }
        if a.state.wrap_until > now {
            blockers.push(Blocker::WrapUp {
                until: a.state.wrap_until,
            });
        }
        if a.state.backoff_until > now {
            blockers.push(Blocker::BackingOff {
                until: a.state.backoff_until,
            });
        }
        if a.serves().is_empty() {
            blockers.push(Blocker::NoQueues);
        }
        let queues: Vec<QueueFit> = a
            .serves()
            .iter()
            .map(|serving| {
                let s = &self.queues[serving.queue].settings;
                QueueFit {
                    queue: s.name.clone(),
                    position: serving.position,
                    missing: s
                        .skills
                        .iter()
                        .filter_map(|(skill, min)| {
                            let has = a.spec.skills.get(skill).copied().unwrap_or(0);
                            (has < *min).then(|| (skill.clone(), *min, has))
                        })
                        .collect(),
                }
            })
            .collect();
        let day = day_of(now);
        Some(AgentRoutingView {
            eligible: blockers.is_empty() && queues.iter().any(|f| f.missing.is_empty()),
            blockers,
            queues,
            gate: a.gate,
            capacity: a.capacity,
            offered: a
                .offer()
                .and_then(|s| self.contacts.get(&s))
                .map(|c| c.id.clone()),
            contacts: a
                .active()
                .iter()
                .filter_map(|s| self.contacts.get(s))
                .map(|c| c.id.clone())
                .collect(),
            contacts_today: a.state.contacts_on(day),
            busy_today: Duration::from_micros(a.state.busy_on(day)),
            state: a.state.clone(),
        })
    }

    /// The generator state (for tests that replay the random strategy).
    #[doc(hidden)]
    pub fn rng_state(&self) -> u64 {
        self.rng
    }

    /// Waiting contacts across all queues.
    pub fn waiting(&self) -> usize {
        self.queues.iter().map(|q| q.waiting.len()).sum()
    }
}

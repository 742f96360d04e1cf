//! The router: queues, agents and contacts, driven by inputs and the time the
//! caller passes, answering with [`RoutingDecision`]s. No clock, no I/O.
//!
//! Every input first runs the timers that are due (offer timeouts, the end of
//! wrap-up and back-off, maximum waits), then applies itself, then
//! dispatches: each contact that needs an agent is offered to the one its
//! queue's strategy picks among the free ones, and each agent that freed up
//! takes the best contact waiting in the queues it serves. After an input no
//! free agent is left beside a waiting contact it could take.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use thiserror::Error;

use crate::time::Timestamp;

use super::agent::{AgentRouting, AgentSpec, Blocker, Gate, day_of};
use super::contact::{ContactRecord, Ending, NewContact, Phase};
use super::queue::{OverflowTarget, QueueSettings};
use super::strategy::{self, Candidate, Memory};

mod dispatch;
mod persist;
mod views;

pub use persist::{Changes, Globals, QueueMemory, QueueTotals};
pub use views::{AgentRoutingView, QueueFit, QueueView};

/// Ended contacts kept (so a late `complete` gets "already completed", not
/// "unknown"), at most this many...
const MAX_ENDED: usize = 10_000;
/// ...and for at most this long.
const ENDED_KEPT: Duration = Duration::from_secs(24 * 3600);
/// The longest contact id accepted.
pub const MAX_CONTACT_ID: usize = 200;
/// The most skills a contact may ask for (each is checked per candidate).
pub const MAX_CONTACT_SKILLS: usize = 32;

/// What the router decided; the daemon turns these into events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutingDecision {
    Queued {
        contact: String,
        queue: String,
        priority: u8,
    },
    Offered {
        contact: String,
        queue: String,
        agent: String,
        expires: Timestamp,
    },
    Accepted {
        contact: String,
        queue: String,
        agent: String,
    },
    Declined {
        contact: String,
        queue: String,
        agent: String,
    },
    /// The agent it was offered to stopped being eligible before it
    /// answered (deleted, unlinked, a status or presence that keeps it out
    /// of routing): the contact is back in its place in the queue, no miss
    /// is counted, and the CC should stop ringing that agent.
    Withdrawn {
        contact: String,
        queue: String,
        agent: String,
        reason: WithdrawReason,
    },
    /// Ring-on-no-answer: the offer timed out.
    Rona {
        contact: String,
        queue: String,
        agent: String,
    },
    Completed {
        contact: String,
        queue: String,
        agent: String,
        wrap_up_until: Timestamp,
    },
    Abandoned {
        contact: String,
        queue: String,
        /// The agent it was offered to, if any.
        agent: Option<String>,
        /// `caller` (the API) or `queue_removed` (a reload dropped its queue).
        reason: &'static str,
    },
    Overflowed {
        contact: String,
        from: String,
        to: OverflowTarget,
        waited: Duration,
    },
    AgentPaused {
        agent: String,
        misses: u32,
    },
    AgentResumed {
        agent: String,
    },
}

/// Why an offer was taken back before the agent answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithdrawReason {
    /// The agent was deleted.
    AgentRemoved,
    /// The agent lost its link to a Teams user.
    Unlinked,
    /// The agent's CC status is not routable in its profile (Lunch, ...).
    CcStatusNotRoutable,
    /// Teams shows a presence the agent's profile blocks routing for.
    TeamsPresenceBlocking,
}

impl WithdrawReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawReason::AgentRemoved => "agent_removed",
            WithdrawReason::Unlinked => "unlinked",
            WithdrawReason::CcStatusNotRoutable => "cc_status_not_routable",
            WithdrawReason::TeamsPresenceBlocking => "teams_presence_blocking",
        }
    }

    /// What a closed gate says first; `None` for an open one.
    fn of_gate(gate: Gate) -> Option<Self> {
        if !gate.linked {
            Some(WithdrawReason::Unlinked)
        } else if !gate.cc_routable {
            Some(WithdrawReason::CcStatusNotRoutable)
        } else if gate.teams_blocking {
            Some(WithdrawReason::TeamsPresenceBlocking)
        } else {
            None
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("no queue `{0}`")]
    UnknownQueue(String),
    #[error("no contact `{0}`")]
    UnknownContact(String),
    #[error("no agent `{0}` in routing")]
    UnknownAgent(String),
    #[error("contact `{0}` already exists")]
    ContactExists(String),
    #[error("contact `{contact}` is {state}: it cannot be {action}")]
    WrongState {
        contact: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("contact `{contact}` is offered to agent `{offered_to}`, not `{agent}`")]
    WrongAgent {
        contact: String,
        offered_to: String,
        agent: String,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// How a free agent ranks a waiting contact: priority, the queue's place in
/// the agent's order, arrival. Lowest first.
type Rank = (Reverse<u8>, usize, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// An offer's timeout (RONA).
    Offer(u64),
    /// A waiting contact's maximum wait.
    Overflow(u64),
    /// An agent's wrap-up or back-off ends.
    Agent(usize),
}

#[derive(Clone, Copy, Debug)]
struct Member {
    slot: usize,
    position: u32,
    skills_ok: bool,
    level: u32,
    /// A copy of the agent's [`Hot`], kept in step by `refresh`, so a
    /// strategy's scan over a queue reads one contiguous array.
    hot: Hot,
}

struct Queue {
    settings: QueueSettings,
    /// In agent order: position, then id.
    members: Vec<Member>,
    /// (priority, serial): highest priority first, then arrival.
    waiting: BTreeSet<(Reverse<u8>, u64)>,
    memory: QueueMemory,
    /// Per member, its strategy key (see [`strategy::sort_key`]; 0 for the
    /// strategies without one) as of the UTC day `keys_day`, `u128::MAX`
    /// when it cannot be offered the queue's contacts; `keys_day` is `u64::MAX` while the keys are to be
    /// rebuilt (after the member list changed).
    keys: Vec<u128>,
    keys_day: u64,
}

/// What the dispatch loop reads for every candidate, kept apart from the
/// rest of the agent so a scan over a queue's members stays in cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Hot {
    free: bool,
    idle_since: Timestamp,
    day: u64,
    contacts_today: u32,
    busy_today: u64,
}

struct Agent {
    id: String,
    spec: AgentSpec,
    gate: Gate,
    state: AgentRouting,
    offer: Option<u64>,
    active: Vec<u64>,
    /// Queue indices in the agent's order, with the position in each.
    queues: Vec<(usize, Option<u32>)>,
    /// Per entry of `queues`: its skills meet the queue's.
    fits: Vec<bool>,
    /// Per entry of `queues`: the agent's index in that queue's members,
    /// kept by `reindex` so `refresh` updates the member's copy directly.
    at: Vec<usize>,
}

/// How an offer was missed: both count against the agent (back-off,
/// pause), each in its own total and decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    /// The agent declined it.
    Declined,
    /// The offer timed out (RONA).
    NoAnswer,
}

pub struct Router {
    queues: Vec<Queue>,
    queue_index: HashMap<String, usize>,
    agents: Vec<Option<Agent>>,
    hot: Vec<Hot>,
    free_slots: Vec<usize>,
    agent_index: HashMap<String, usize>,
    contacts: HashMap<u64, ContactRecord>,
    contact_index: HashMap<String, u64>,
    ended: VecDeque<u64>,
    next_serial: u64,
    rng: u64,
    timers: BTreeSet<(Timestamp, Timer)>,
    pending_contacts: Vec<u64>,
    pending_agents: Vec<usize>,
    dirty_contacts: BTreeSet<u64>,
    removed_contacts: Vec<String>,
    dirty_agents: BTreeSet<usize>,
    globals_dirty: bool,
    dirty_queues: BTreeSet<usize>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> RoutingError {
    RoutingError::Invalid {
        field,
        message: message.into(),
    }
}

/// The key of member `at` of `queue` for its strategy on `queue.keys_day`.
fn member_key(queue: &Queue, at: usize) -> u128 {
    let Some(m) = queue.members.get(at) else {
        return u128::MAX;
    };
    if !m.hot.free || !m.skills_ok {
        return u128::MAX;
    }
    let today = m.hot.day == queue.keys_day;
    let candidate = Candidate {
        slot: m.slot,
        position: m.position,
        idle_since: m.hot.idle_since,
        contacts_today: if today { m.hot.contacts_today } else { 0 },
        busy_today: if today { m.hot.busy_today } else { 0 },
        level: m.level,
    };
    // Strategies without a key only need to know who is a candidate.
    strategy::sort_key(queue.settings.strategy, &candidate).unwrap_or(0)
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

/// What `need` asks of `skills`: whether every level is met, and the summed
/// levels in the skills asked for.
fn fit(skills: &BTreeMap<String, u8>, need: &BTreeMap<String, u8>) -> (bool, u32) {
    let mut ok = true;
    let mut level = 0;
    for (skill, min) in need {
        let has = skills.get(skill).copied().unwrap_or(0);
        ok &= has >= *min;
        level += u32::from(has);
    }
    (ok, level)
}

/// The queue's skills and the contact's together, the higher minimum winning.
fn merged(queue: &BTreeMap<String, u8>, contact: &BTreeMap<String, u8>) -> BTreeMap<String, u8> {
    let mut need = queue.clone();
    for (skill, min) in contact {
        let entry = need.entry(skill.clone()).or_insert(0);
        *entry = (*entry).max(*min);
    }
    need
}

impl Router {
    /// A router with these queues and no agents or contacts. `seed` starts
    /// the generator the random strategy draws from.
    pub fn new(queues: Vec<QueueSettings>, seed: u64) -> Self {
        let mut router = Router {
            queues: Vec::new(),
            queue_index: HashMap::new(),
            agents: Vec::new(),
            hot: Vec::new(),
            free_slots: Vec::new(),
            agent_index: HashMap::new(),
            contacts: HashMap::new(),
            contact_index: HashMap::new(),
            ended: VecDeque::new(),
            next_serial: 1,
            rng: seed,
            timers: BTreeSet::new(),
            pending_contacts: Vec::new(),
            pending_agents: Vec::new(),
            dirty_contacts: BTreeSet::new(),
            removed_contacts: Vec::new(),
            dirty_agents: BTreeSet::new(),
            globals_dirty: false,
            dirty_queues: BTreeSet::new(),
        };
        router.install_queues(queues, &BTreeMap::new());
        router
    }

    fn install_queues(
        &mut self,
        settings: Vec<QueueSettings>,
        memory: &BTreeMap<String, QueueMemory>,
    ) {
        let mut old: HashMap<String, QueueMemory> = self
            .queues
            .drain(..)
            .map(|q| (q.settings.name.clone(), q.memory))
            .collect();
        self.queue_index.clear();
        // Queue indices change: memberships are placed again by the caller.
        for a in self.agents.iter_mut().flatten() {
            a.queues.clear();
            a.fits.clear();
            a.at.clear();
        }
        for (i, s) in settings.into_iter().enumerate() {
            let memory = old
                .remove(&s.name)
                .or_else(|| memory.get(&s.name).cloned())
                .unwrap_or_default();
            self.queue_index.insert(s.name.clone(), i);
            self.queues.push(Queue {
                settings: s,
                members: Vec::new(),
                waiting: BTreeSet::new(),
                memory,
                keys: Vec::new(),
                keys_day: u64::MAX,
            });
        }
        self.globals_dirty = true;
        self.dirty_queues = (0..self.queues.len()).collect();
    }

    // ---- inputs ----

    /// Runs what is due at `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        self.advance(now, out);
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Replaces the queues (a config reload). Waiting contacts keep their
    /// place in queues that remain; those in a queue that is gone are
    /// abandoned.
    pub fn replace_queues(
        &mut self,
        now: Timestamp,
        queues: Vec<QueueSettings>,
        out: &mut Vec<RoutingDecision>,
    ) {
        self.advance(now, out);
        self.install_queues(queues, &BTreeMap::new());
        let mut waiting: Vec<u64> = self
            .contacts
            .values()
            .filter(|c| c.phase == Phase::Waiting)
            .map(|c| c.serial)
            .collect();
        waiting.sort_unstable();
        // An offer that comes back must still overflow in time.
        let offered: Vec<u64> = self
            .contacts
            .values()
            .filter(|c| matches!(c.phase, Phase::Offered { .. }))
            .map(|c| c.serial)
            .collect();
        self.timers
            .retain(|(_, t)| !matches!(t, Timer::Overflow(_)));
        for serial in waiting {
            let Some(c) = self.contacts.get(&serial) else {
                continue;
            };
            match self.queue_index.get(&c.queue).copied() {
                Some(q) => {
                    let key = (Reverse(c.priority), serial);
                    let deadline = self.queues[q].settings.max_wait.map(|w| c.queued_at + w);
                    self.queues[q].waiting.insert(key);
                    if let Some(at) = deadline {
                        self.timers.insert((at, Timer::Overflow(serial)));
                    }
                }
                None => self.abandon_serial(now, serial, "queue_removed", out),
            }
        }
        for serial in offered {
            self.arm_overflow(serial);
        }
        let mut slots: Vec<usize> = self.agent_index.values().copied().collect();
        slots.sort_unstable();
        for slot in &slots {
            self.place_member_only(*slot);
        }
        for q in 0..self.queues.len() {
            self.reindex(q);
        }
        for slot in slots {
            self.refresh(slot, now);
            self.pending_agents.push(slot);
        }
        self.dispatch(now, out);
    }

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
                    agent: Some(agent.id.clone()),
                };
                out.push(RoutingDecision::Completed {
                    contact: c.id.clone(),
                    queue: c.queue.clone(),
                    agent: agent.id.clone(),
                    wrap_up_until: now,
                });
                let q = c.queue.clone();
                self.count(&q, |t| t.completed += 1);
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

    fn offered(
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

    fn check_agent(
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
        let Some(slot) = self.agent_index.get(&offered_to).copied() else {
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
            a.offer = None;
            a.active.push(serial);
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
        if let Some(slot) = self.agent_index.get(&agent).copied()
            && let Some(a) = self.agents[slot].as_mut()
        {
            a.active.retain(|s| *s != serial);
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
        self.count(&queue, |t| t.completed += 1);
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

    fn serial_of(&self, id: &str) -> Result<u64, RoutingError> {
        self.contact_index
            .get(id)
            .copied()
            .ok_or_else(|| RoutingError::UnknownContact(id.to_string()))
    }

    // ---- internals ----

    fn new_slot(&mut self, id: &str, spec: AgentSpec, state: AgentRouting) -> usize {
        let agent = Agent {
            id: id.to_string(),
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
                self.agents.push(Some(agent));
                self.hot.push(Hot::default());
                self.agents.len() - 1
            }
        };
        self.agent_index.insert(id.to_string(), slot);
        slot
    }

    /// Puts the agent in the member lists of the queues it serves (its own
    /// list, then queues that take one of its groups), in agent order.
    fn place_member(&mut self, slot: usize) {
        let touched = self.place_member_only(slot);
        for q in touched {
            self.reindex(q);
        }
    }

    /// [`place_member`](Self::place_member) without telling the members of
    /// the queues it touched (returned) where they now are: for placing many
    /// agents, then reindexing each queue once.
    fn place_member_only(&mut self, slot: usize) -> BTreeSet<usize> {
        let Some(a) = self.agents[slot].as_ref() else {
            return BTreeSet::new();
        };
        let left: Vec<usize> = a.queues.iter().map(|(q, _)| *q).collect();
        for q in &left {
            if let Some(queue) = self.queues.get_mut(*q) {
                queue.members.retain(|m| m.slot != slot);
            }
        }
        let mut serves: Vec<(usize, Option<u32>)> = Vec::new();
        for m in &a.spec.queues {
            if let Some(q) = self.queue_index.get(&m.queue).copied()
                && !serves.iter().any(|(s, _)| *s == q)
            {
                serves.push((q, m.position));
            }
        }
        for (q, queue) in self.queues.iter().enumerate() {
            if !serves.iter().any(|(s, _)| *s == q)
                && queue
                    .settings
                    .groups
                    .iter()
                    .any(|g| a.spec.groups.contains(g))
            {
                serves.push((q, None));
            }
        }
        let mut fits = Vec::with_capacity(serves.len());
        for (q, position) in &serves {
            let (skills_ok, level) = fit(&a.spec.skills, &self.queues[*q].settings.skills);
            fits.push(skills_ok);
            let member = Member {
                slot,
                position: position.unwrap_or(u32::MAX),
                skills_ok,
                level,
                hot: self.hot[slot],
            };
            let agents = &self.agents;
            let id_of = |s: usize| agents[s].as_ref().map_or("", |a| a.id.as_str());
            let members = &mut self.queues[*q].members;
            let at = members.partition_point(|m| {
                (m.position, id_of(m.slot)) < (member.position, a.id.as_str())
            });
            members.insert(at, member);
        }
        let touched: BTreeSet<usize> = left
            .into_iter()
            .chain(serves.iter().map(|(q, _)| *q))
            .collect();
        if let Some(a) = self.agents[slot].as_mut() {
            a.at = vec![usize::MAX; serves.len()];
            a.queues = serves;
            a.fits = fits;
        }
        touched
    }

    /// Tells every member of queue `q` where it now is in the member list.
    fn reindex(&mut self, q: usize) {
        let Some(queue) = self.queues.get_mut(q) else {
            return;
        };
        queue.keys_day = u64::MAX;
        let queue = &self.queues[q];
        for (i, m) in queue.members.iter().enumerate() {
            if let Some(a) = self.agents.get_mut(m.slot).and_then(Option::as_mut)
                && let Some(k) = a.queues.iter().position(|(aq, _)| *aq == q)
                && let Some(at) = a.at.get_mut(k)
            {
                *at = i;
            }
        }
    }

    /// Recomputes whether the agent is free; one that just became free is
    /// up for dispatch.
    fn refresh(&mut self, slot: usize, now: Timestamp) {
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

    /// Arms a contact's maximum-wait timer in its current queue (one in the
    /// past fires at once and overflows it on the next dispatch).
    fn arm_overflow(&mut self, serial: u64) {
        let Some(c) = self.contacts.get(&serial) else {
            return;
        };
        let wait = self
            .queue_index
            .get(&c.queue)
            .and_then(|q| self.queues[*q].settings.max_wait);
        if let Some(wait) = wait {
            self.timers
                .insert((c.queued_at + wait, Timer::Overflow(serial)));
        }
    }

    fn count(&mut self, queue: &str, f: impl FnOnce(&mut QueueTotals)) {
        if let Some(q) = self.queue_index.get(queue).copied() {
            f(&mut self.queues[q].memory.totals);
            self.dirty_queues.insert(q);
        }
    }

    /// Brings the router up to `now` before an input: due timers, then the
    /// dispatch they call for, so the input meets a settled router.
    fn advance(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        self.run_timers(now, out);
        self.dispatch(now, out);
    }

    fn run_timers(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Offer(serial) => {
                    // A timer left from an earlier offer of the same contact
                    // is stale: only the current offer's own timer counts.
                    let due = self.contacts.get(&serial).is_some_and(
                        |c| matches!(c.phase, Phase::Offered { expires, .. } if expires == at),
                    );
                    if due {
                        self.miss(now, serial, Miss::NoAnswer, out);
                    }
                }
                Timer::Overflow(serial) => self.pending_contacts.push(serial),
                Timer::Agent(slot) => self.refresh(slot, now),
            }
        }
        while let Some(&serial) = self.ended.front() {
            let old = self.contacts.get(&serial).is_none_or(|c| match c.phase {
                Phase::Ended { at, .. } => at + ENDED_KEPT <= now,
                _ => true,
            });
            if !old && self.ended.len() <= MAX_ENDED {
                break;
            }
            self.ended.pop_front();
            if let Some(c) = self.contacts.remove(&serial) {
                self.contact_index.remove(&c.id);
                self.dirty_contacts.remove(&serial);
                self.removed_contacts.push(c.id);
            }
        }
    }

    fn end(&mut self, serial: u64) {
        self.dirty_contacts.insert(serial);
        self.ended.push_back(serial);
    }

    /// Takes an offer back from `agent` (whose `offer` the caller cleared):
    /// the contact goes back to its place by arrival, with its maximum wait
    /// still running, and nothing counts against the agent.
    fn withdraw(
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
    fn miss(&mut self, now: Timestamp, serial: u64, miss: Miss, out: &mut Vec<RoutingDecision>) {
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
        if let Some(slot) = self.agent_index.get(&agent).copied()
            && let Some(a) = self.agents[slot].as_mut()
        {
            a.offer = None;
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

    fn abandon_serial(
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
            && let Some(slot) = self.agent_index.get(agent).copied()
        {
            if let Some(a) = self.agents[slot].as_mut() {
                a.offer = None;
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

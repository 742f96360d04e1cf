//! The router: queues, agents and contacts, driven by inputs and the time the
//! caller passes, answering with [`RoutingDecision`]s. No clock, no I/O.
//!
//! Every input first runs the timers that are due (offer timeouts, the end of
//! wrap-up and back-off, maximum waits), then applies itself, then
//! dispatches: each contact that needs an agent is offered to the one its
//! queue's strategy picks among the free ones, and each agent that freed up
//! takes the best contact waiting in the queues it serves. After an input no
//! free agent is left beside a waiting contact it could take.
//!
//! | concept | file |
//! |---|---|
//! | what it answers: decisions, withdraw reasons, errors | `decision.rs` |
//! | the queues it indexes: members, waiting contacts, keys, skills fit | `index.rs` |
//! | agents: added, removed, gate, resume, whether free | `agents.rs` |
//! | contacts: queued, accepted, declined, completed, abandoned, missed | `contacts.rs` |
//! | timers: offer timeouts, maximum waits, wrap-up and back-off ends | `timers.rs` |
//! | who takes which contact after each input, overflow | `dispatch.rs` |
//! | what it shows (eligibility and why not, queues) | `views.rs` |
//! | what it persists and how it is restored | `persist.rs` |

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::time::Timestamp;

use super::agent::{AgentRouting, AgentSpec, Blocker, Gate, Membership, day_of};
use super::contact::{ContactRecord, Ending, NewContact, Phase};
use super::queue::{OverflowTarget, QueueSettings};
use super::strategy::{self, Candidate, Memory};

mod agents;
mod contacts;
mod decision;
mod dispatch;
mod index;
mod persist;
mod timers;
mod views;

use agents::{Agent, Serving};
use contacts::Miss;
use decision::invalid;
use index::{Hot, Queue, fit, member_key, merged};
use timers::Timer;

pub use contacts::{MAX_CONTACT_ID, MAX_CONTACT_SKILLS, check_skills};
pub use decision::{RoutingDecision, RoutingError, WithdrawReason};
pub use persist::{Changes, Globals, QueueMemory, QueueTotals};
pub use views::{AgentRoutingView, QueueFit, QueueView};

/// Queues, agents and contacts, with the timers and the changes not yet
/// taken for the store; see the table above for where each part lives.
pub struct Router {
    queues: Vec<Queue>,
    queue_index: HashMap<String, usize>,
    agents: Vec<Option<Agent>>,
    hot: Vec<Hot>,
    free_slots: Vec<usize>,
    agent_index: HashMap<Arc<str>, usize>,
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
}

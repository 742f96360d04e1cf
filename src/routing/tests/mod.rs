//! Tests of the routing core: scenarios one rule at a time, then property
//! tests over random event sequences against an independent model.

mod flows;
mod properties;
mod reference;
mod strategies;

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::time::Timestamp;

/// A router on a fake clock, collecting decisions.
pub(super) struct Bench {
    pub r: Router,
    pub now: Timestamp,
    pub out: Vec<RoutingDecision>,
}

pub(super) fn queue(name: &str, strategy: Strategy) -> QueueSettings {
    QueueSettings {
        offer_timeout: Duration::from_secs(20),
        wrap_up: Duration::from_secs(10),
        miss_backoff: Duration::from_secs(5),
        max_no_answer: 3,
        ..QueueSettings::new(name, strategy)
    }
}

pub(super) fn spec(queues: &[&str]) -> AgentSpec {
    AgentSpec {
        skills: BTreeMap::new(),
        capacity: 1,
        queues: queues
            .iter()
            .map(|q| Membership {
                queue: (*q).to_string(),
                position: None,
            })
            .collect(),
        groups: Vec::new(),
    }
}

pub(super) fn contact(id: &str, queue: &str) -> NewContact {
    NewContact {
        id: Some(id.to_string()),
        queue: queue.to_string(),
        skills: BTreeMap::new(),
        priority: None,
        data: serde_json::Value::Null,
    }
}

impl Bench {
    pub fn new(queues: Vec<QueueSettings>) -> Self {
        Bench {
            r: Router::new(queues, 7),
            now: Timestamp::from_secs(1_800_000_000),
            out: Vec::new(),
        }
    }

    pub fn later(&mut self, secs: u64) {
        self.now = self.now + Duration::from_secs(secs);
        self.r.tick(self.now, &mut self.out);
    }

    /// An agent with an open gate.
    pub fn agent(&mut self, id: &str, spec: AgentSpec) {
        self.r.upsert_agent(self.now, id, spec, &mut self.out);
        self.r.set_gate(self.now, id, Gate::OPEN, &mut self.out);
    }

    pub fn gate(&mut self, id: &str, gate: Gate) {
        self.r.set_gate(self.now, id, gate, &mut self.out);
    }

    pub fn add(&mut self, c: NewContact) -> String {
        match self.r.add_contact(self.now, c, &mut self.out) {
            Ok(id) => id,
            Err(e) => panic!("add_contact: {e}"),
        }
    }

    pub fn accept(&mut self, id: &str) {
        if let Err(e) = self.r.accept(self.now, id, None, &mut self.out) {
            panic!("accept {id}: {e}");
        }
    }

    pub fn complete(&mut self, id: &str) {
        if let Err(e) = self.r.complete(self.now, id, None, &mut self.out) {
            panic!("complete {id}: {e}");
        }
    }

    /// Offers made since the last call, as (contact, agent).
    pub fn offers(&mut self) -> Vec<(String, String)> {
        let offers = self
            .out
            .iter()
            .filter_map(|d| match d {
                RoutingDecision::Offered { contact, agent, .. } => {
                    Some((contact.clone(), agent.clone()))
                }
                _ => None,
            })
            .collect();
        self.out.clear();
        offers
    }

    pub fn offered_to(&self, contact: &str) -> Option<String> {
        match &self.r.contact(contact)?.phase {
            Phase::Offered { agent, .. } => Some(agent.clone()),
            _ => None,
        }
    }
}

pub(super) fn pair(contact: &str, agent: &str) -> (String, String) {
    (contact.to_string(), agent.to_string())
}

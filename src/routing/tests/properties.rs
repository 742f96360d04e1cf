//! Property tests over random worlds and random event sequences, checked
//! against an independent model kept from the router's own decisions:
//! - no agent is ever offered two contacts at once;
//! - no agent is offered a contact while ineligible (gate, pause, wrap-up,
//!   back-off, capacity, membership, skills);
//! - no agent holds an offer while its gate is closed: closing it withdraws
//!   the offer, with the gate's reason, and counts no miss;
//! - within a queue, priority and skill set, contacts are offered in arrival order;
//! - every contact is eventually offered, overflowed or abandoned once an agent can take it;
//! - every immediate choice matches the reference implementation of its strategy;
//! - a router restored from what it persisted decides exactly as the original.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy;

use super::reference::{self, RefAgent};
use super::*;

const QUEUES: usize = 3;
const AGENTS: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    Add {
        queue: usize,
        priority: Option<u8>,
        skill: Option<(usize, u8)>,
    },
    Accept {
        pick: usize,
        wrong_agent: bool,
    },
    Decline {
        pick: usize,
    },
    Complete {
        pick: usize,
    },
    Abandon {
        pick: usize,
    },
    Advance {
        secs: u64,
    },
    Gate {
        agent: usize,
        gate: Gate,
    },
    Resume {
        agent: usize,
    },
    Respec {
        agent: usize,
        spec: AgentSpec,
    },
    Remove {
        agent: usize,
    },
}

fn skill_name(i: usize) -> String {
    format!("s{i}")
}

fn queue_name(i: usize) -> String {
    format!("q{i}")
}

fn strategy() -> impl Strategy<Value = super::super::Strategy> {
    prop::sample::select(super::super::Strategy::ALL.to_vec())
}

fn queue_settings(i: usize) -> impl Strategy<Value = QueueSettings> {
    (
        strategy(),
        prop::option::of(0u8..60),
        0u8..3,
        5u64..30,
        0u64..20,
        0u32..4,
        0u64..10,
        prop::option::of((20u64..120, prop::option::of(0usize..QUEUES))),
        any::<bool>(),
    )
        .prop_map(
            move |(strategy, skill, priority, offer, wrap, misses, backoff, wait, group)| {
                let mut q = QueueSettings::new(&queue_name(i), strategy);
                if let Some(level) = skill {
                    q.skills.insert(skill_name(0), level);
                }
                q.priority = priority;
                q.offer_timeout = Duration::from_secs(offer);
                q.wrap_up = Duration::from_secs(wrap);
                q.max_no_answer = misses;
                q.miss_backoff = Duration::from_secs(backoff);
                if let Some((wait, target)) = wait {
                    q.max_wait = Some(Duration::from_secs(wait));
                    q.overflow = Some(match target {
                        Some(t) if t != i => OverflowTarget::Queue(queue_name(t)),
                        _ => OverflowTarget::TeamsUsers(vec!["boss@contoso.com".into()]),
                    });
                }
                if group {
                    q.groups = vec!["g0".into()];
                }
                q
            },
        )
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    (
        prop::collection::vec((0usize..QUEUES, prop::option::of(0u32..4)), 0..4),
        0u8..=100,
        0u8..=100,
        1u8..3,
        any::<bool>(),
    )
        .prop_map(|(queues, s0, s1, capacity, group)| AgentSpec {
            skills: BTreeMap::from([(skill_name(0), s0), (skill_name(1), s1)]),
            capacity,
            queues: queues
                .into_iter()
                .map(|(q, position)| Membership {
                    queue: queue_name(q),
                    position,
                })
                .collect(),
            groups: if group { vec!["g0".into()] } else { Vec::new() },
        })
}

fn gate() -> impl Strategy<Value = Gate> {
    prop_oneof![
        3 => Just(Gate::OPEN),
        1 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(linked, cc_routable, teams_blocking)| Gate { linked, cc_routable, teams_blocking }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..QUEUES, prop::option::of(0u8..3), prop::option::weighted(0.3, (0usize..2, 0u8..80)))
            .prop_map(|(queue, priority, skill)| Op::Add { queue, priority, skill }),
        4 => (any::<usize>(), prop::bool::weighted(0.1)).prop_map(|(pick, wrong_agent)| Op::Accept { pick, wrong_agent }),
        1 => any::<usize>().prop_map(|pick| Op::Decline { pick }),
        3 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Abandon { pick }),
        4 => (0u64..40).prop_map(|secs| Op::Advance { secs }),
        2 => (0usize..AGENTS, gate()).prop_map(|(agent, gate)| Op::Gate { agent, gate }),
        1 => (0usize..AGENTS).prop_map(|agent| Op::Resume { agent }),
        1 => (0usize..AGENTS, agent_spec()).prop_map(|(agent, spec)| Op::Respec { agent, spec }),
        1 => (0usize..AGENTS).prop_map(|agent| Op::Remove { agent }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum CState {
    Waiting,
    Offered(String),
    Accepted(String),
    Ended,
}

#[derive(Clone, Debug)]
struct MContact {
    arrival: usize,
    queue: String,
    priority: u8,
    skills: BTreeMap<String, u8>,
    state: CState,
    ever_offered: bool,
    overflowed: bool,
}

#[derive(Clone, Debug, Default)]
struct MAgent {
    present: bool,
    spec: AgentSpec,
    gate: Gate,
    paused: bool,
    wrap_until: Timestamp,
    backoff_until: Timestamp,
    offer: Option<String>,
    active: BTreeSet<String>,
}

/// The model, kept from decisions, that the router is checked against.
struct World {
    queues: Vec<QueueSettings>,
    agents: BTreeMap<String, MAgent>,
    contacts: BTreeMap<String, MContact>,
    arrivals: usize,
    b: Bench,
    /// Every decision so far.
    log: Vec<RoutingDecision>,
}

impl World {
    fn new(queues: Vec<QueueSettings>, specs: Vec<AgentSpec>) -> Self {
        let mut w = World {
            queues: queues.clone(),
            agents: BTreeMap::new(),
            contacts: BTreeMap::new(),
            arrivals: 0,
            b: Bench::new(queues),
            log: Vec::new(),
        };
        for (i, spec) in specs.into_iter().enumerate() {
            w.upsert(&format!("a{i}"), spec);
            w.set_gate(&format!("a{i}"), Gate::OPEN);
        }
        w
    }

    /// The same model around another router.
    fn fork(&self, r: Router) -> World {
        World {
            queues: self.queues.clone(),
            agents: self.agents.clone(),
            contacts: self.contacts.clone(),
            arrivals: self.arrivals,
            b: Bench {
                r,
                now: self.b.now,
                out: Vec::new(),
            },
            log: Vec::new(),
        }
    }

    fn queue(&self, name: &str) -> &QueueSettings {
        self.queues
            .iter()
            .find(|q| q.name == name)
            .expect("the model only uses configured queues")
    }

    fn upsert(&mut self, id: &str, spec: AgentSpec) {
        let a = self.agents.entry(id.to_string()).or_default();
        if !a.present {
            *a = MAgent {
                present: true,
                ..MAgent::default()
            };
        }
        a.spec = spec.clone();
        self.b.r.upsert_agent(self.b.now, id, spec, &mut self.b.out);
        self.absorb();
    }

    fn set_gate(&mut self, id: &str, gate: Gate) {
        if let Some(a) = self.agents.get_mut(id).filter(|a| a.present) {
            a.gate = gate;
        }
        self.b.r.set_gate(self.b.now, id, gate, &mut self.b.out);
        self.absorb();
    }

    fn picks(&self, f: impl Fn(&CState) -> bool) -> Vec<String> {
        self.contacts
            .iter()
            .filter(|(_, c)| f(&c.state))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn ref_agents(&self) -> Vec<RefAgent> {
        self.agents
            .iter()
            .filter(|(_, a)| a.present)
            .filter_map(|(id, a)| {
                Some(RefAgent {
                    id: id.clone(),
                    spec: a.spec.clone(),
                    view: self.b.r.agent_view(id, self.b.now)?,
                })
            })
            .collect()
    }

    fn apply(&mut self, op: Op) {
        let now = self.b.now;
        match op {
            Op::Add {
                queue,
                priority,
                skill,
            } => {
                let q = self.queues[queue].clone();
                let skills: BTreeMap<String, u8> =
                    skill.map(|(s, l)| (skill_name(s), l)).into_iter().collect();
                let expected = reference::choose(
                    &q,
                    &skills,
                    &self.ref_agents(),
                    self.b
                        .r
                        .queue_view(&q.name, now)
                        .and_then(|v| v.last_offered)
                        .as_ref()
                        .map(|(p, id)| (*p, id.as_str())),
                    self.b.r.rng_state(),
                    now,
                );
                let id = format!("c{:04}", self.arrivals);
                self.contacts.insert(
                    id.clone(),
                    MContact {
                        arrival: self.arrivals,
                        queue: q.name.clone(),
                        priority: priority.unwrap_or(q.priority),
                        skills: skills.clone(),
                        state: CState::Waiting,
                        ever_offered: false,
                        overflowed: false,
                    },
                );
                self.arrivals += 1;
                let new = NewContact {
                    id: Some(id.clone()),
                    queue: q.name.clone(),
                    skills,
                    priority,
                    data: serde_json::Value::Null,
                };
                self.b
                    .r
                    .add_contact(now, new, &mut self.b.out)
                    .expect("a valid contact");
                let offered = self.b.out.iter().find_map(|d| match d {
                    RoutingDecision::Offered { contact, agent, .. } if *contact == id => {
                        Some(agent.clone())
                    }
                    _ => None,
                });
                assert_eq!(
                    offered, expected,
                    "{} picked differently from the reference for {id}",
                    q.strategy
                );
            }
            Op::Accept { pick, wrong_agent } => {
                let offered = self.picks(|s| matches!(s, CState::Offered(_)));
                if offered.is_empty() {
                    return;
                }
                let id = &offered[pick % offered.len()];
                let CState::Offered(agent) = self.contacts[id].state.clone() else {
                    unreachable!()
                };
                if wrong_agent {
                    let r = self.b.r.accept(now, id, Some("nobody"), &mut self.b.out);
                    assert!(matches!(r, Err(RoutingError::WrongAgent { .. })), "{r:?}");
                } else {
                    self.b
                        .r
                        .accept(now, id, Some(&agent), &mut self.b.out)
                        .expect("accept");
                }
            }
            Op::Decline { pick } => {
                let offered = self.picks(|s| matches!(s, CState::Offered(_)));
                if let Some(id) = offered.get(pick % offered.len().max(1)) {
                    self.b
                        .r
                        .decline(now, id, None, &mut self.b.out)
                        .expect("decline");
                }
            }
            Op::Complete { pick } => {
                let accepted = self.picks(|s| matches!(s, CState::Accepted(_)));
                if let Some(id) = accepted.get(pick % accepted.len().max(1)) {
                    self.b
                        .r
                        .complete(now, id, None, &mut self.b.out)
                        .expect("complete");
                }
            }
            Op::Abandon { pick } => {
                let open = self.picks(|s| matches!(s, CState::Waiting | CState::Offered(_)));
                if let Some(id) = open.get(pick % open.len().max(1)) {
                    self.b.r.abandon(now, id, &mut self.b.out).expect("abandon");
                }
            }
            Op::Advance { secs } => self.b.later(secs),
            Op::Gate { agent, gate } => {
                let id = format!("a{agent}");
                let held = self
                    .agents
                    .get(&id)
                    .filter(|a| a.present)
                    .and_then(|a| a.offer.clone());
                let misses = self.b.r.agent_view(&id, now).map(|v| v.state.misses);
                self.set_gate(&id, gate);
                if let Some(contact) = held.filter(|_| !gate.is_open()) {
                    let expected = if !gate.linked {
                        WithdrawReason::Unlinked
                    } else if !gate.cc_routable {
                        WithdrawReason::CcStatusNotRoutable
                    } else {
                        WithdrawReason::TeamsPresenceBlocking
                    };
                    let withdrawn = self.log.iter().rev().any(|d| {
                        matches!(d, RoutingDecision::Withdrawn { contact: c, agent: a, reason, .. }
                            if *c == contact && *a == id && *reason == expected)
                    });
                    assert!(
                        withdrawn,
                        "{id} kept {contact} with gate {gate:?}: {:#?}",
                        self.log
                    );
                    assert_eq!(
                        self.b.r.agent_view(&id, now).map(|v| v.state.misses),
                        misses,
                        "a withdrawal is no miss"
                    );
                }
            }
            Op::Resume { agent } => {
                let id = format!("a{agent}");
                let r = self.b.r.resume_agent(now, &id, &mut self.b.out);
                match self.agents.get_mut(&id).filter(|a| a.present) {
                    Some(a) => {
                        assert_eq!(r, Ok(a.paused));
                        a.paused = false;
                    }
                    None => assert!(r.is_err()),
                }
            }
            Op::Respec { agent, spec } => {
                let id = format!("a{agent}");
                self.upsert(&id, spec);
            }
            Op::Remove { agent } => {
                let id = format!("a{agent}");
                // Its offer comes back as a withdrawal.
                if let Some(a) = self.agents.get_mut(&id) {
                    a.present = false;
                }
                self.b.r.remove_agent(now, &id, &mut self.b.out);
            }
        }
        self.absorb();
    }

    /// Takes the router's decisions into the model, checking each offer.
    fn absorb(&mut self) {
        let now = self.b.now;
        let decisions = std::mem::take(&mut self.b.out);
        self.log.extend(decisions.iter().cloned());
        for d in decisions {
            match d {
                RoutingDecision::Queued { .. } => {}
                RoutingDecision::Offered {
                    contact,
                    queue,
                    agent,
                    ..
                } => self.check_offer(&contact, &queue, &agent),
                RoutingDecision::Accepted { contact, agent, .. } => {
                    let a = self.agents.get_mut(&agent).expect("agent");
                    assert_eq!(a.offer.as_deref(), Some(contact.as_str()));
                    a.offer = None;
                    a.active.insert(contact.clone());
                    self.contacts.get_mut(&contact).expect("contact").state =
                        CState::Accepted(agent);
                }
                RoutingDecision::Declined {
                    contact,
                    queue,
                    agent,
                }
                | RoutingDecision::Rona {
                    contact,
                    queue,
                    agent,
                } => {
                    let backoff = self.queue(&queue).miss_backoff;
                    let a = self.agents.get_mut(&agent).expect("agent");
                    assert_eq!(a.offer.as_deref(), Some(contact.as_str()));
                    a.offer = None;
                    a.backoff_until = a.backoff_until.max(now + backoff);
                    self.contacts.get_mut(&contact).expect("contact").state = CState::Waiting;
                }
                RoutingDecision::Completed {
                    contact,
                    agent,
                    wrap_up_until,
                    ..
                } => {
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.active.remove(&contact);
                        a.wrap_until = a.wrap_until.max(wrap_up_until);
                    }
                    self.contacts.get_mut(&contact).expect("contact").state = CState::Ended;
                }
                RoutingDecision::Abandoned { contact, agent, .. } => {
                    if let Some(agent) = agent {
                        self.agents.get_mut(&agent).expect("agent").offer = None;
                    }
                    self.contacts.get_mut(&contact).expect("contact").state = CState::Ended;
                }
                RoutingDecision::Overflowed { contact, to, .. } => {
                    let c = self.contacts.get_mut(&contact).expect("contact");
                    assert_eq!(c.state, CState::Waiting, "only waiting contacts overflow");
                    c.overflowed = true;
                    match to {
                        OverflowTarget::Queue(q) => c.queue = q,
                        OverflowTarget::TeamsUsers(_) => c.state = CState::Ended,
                    }
                }
                RoutingDecision::AgentPaused { agent, .. } => {
                    self.agents.get_mut(&agent).expect("agent").paused = true;
                }
                RoutingDecision::AgentResumed { .. } => {}
                RoutingDecision::Withdrawn {
                    contact,
                    agent,
                    reason,
                    ..
                } => {
                    let a = self.agents.get_mut(&agent).expect("agent");
                    assert_eq!(a.offer.as_deref(), Some(contact.as_str()));
                    if reason == WithdrawReason::AgentRemoved {
                        assert!(!a.present, "{agent} is still there");
                    } else {
                        assert!(!a.gate.is_open(), "{agent} withdrawn with an open gate");
                    }
                    a.offer = None;
                    let c = self.contacts.get_mut(&contact).expect("contact");
                    assert_eq!(c.state, CState::Offered(agent.clone()));
                    c.state = CState::Waiting;
                }
            }
        }
        for (id, a) in &self.agents {
            assert!(
                !a.present || a.offer.is_none() || a.gate.is_open(),
                "{id} holds {:?} with a closed gate {:?}",
                a.offer,
                a.gate
            );
        }
    }

    fn check_offer(&mut self, contact: &str, queue: &str, agent: &str) {
        let now = self.b.now;
        let q = self.queue(queue).clone();
        let c = self.contacts[contact].clone();
        let a = self
            .agents
            .get(agent)
            .expect("offered to an agent the model knows");
        assert!(a.present, "{agent} was removed");
        assert_eq!(
            a.offer, None,
            "{agent} offered {contact} while holding an offer"
        );
        assert!(
            a.active.len() < usize::from(a.spec.capacity),
            "{agent} at capacity"
        );
        assert!(
            a.gate.is_open(),
            "{agent} offered with a closed gate {:?}",
            a.gate
        );
        assert!(!a.paused, "{agent} offered while paused");
        assert!(a.wrap_until <= now, "{agent} offered in wrap-up");
        assert!(a.backoff_until <= now, "{agent} offered while backing off");
        assert!(
            reference::serves(&a.spec, &q).is_some(),
            "{agent} does not serve {queue}"
        );
        let need = reference::requirement(&q, &c.skills);
        assert!(
            reference::has_skills(&a.spec, &need),
            "{agent} lacks skills for {contact}"
        );
        assert_eq!(
            c.state,
            CState::Waiting,
            "{contact} offered while {:?}",
            c.state
        );
        assert_eq!(c.queue, queue);
        // Arrival order within queue, priority and skills.
        for (other_id, other) in &self.contacts {
            if other.state == CState::Waiting
                && other.queue == c.queue
                && other.priority == c.priority
                && other.skills == c.skills
                && other.arrival < c.arrival
            {
                panic!(
                    "{contact} offered before {other_id}, which arrived earlier; decisions so far: {:#?}",
                    self.log
                );
            }
        }
        self.agents.get_mut(agent).expect("agent").offer = Some(contact.to_string());
        let c = self.contacts.get_mut(contact).expect("contact");
        c.state = CState::Offered(agent.to_string());
        c.ever_offered = true;
    }

    /// Lets every contact through: an agent with every skill in every queue,
    /// everyone resumed, every offer accepted and completed.
    fn drain(&mut self) {
        let all = AgentSpec {
            skills: (0..2).map(|s| (skill_name(s), 100)).collect(),
            capacity: 1,
            queues: (0..QUEUES)
                .map(|q| Membership {
                    queue: queue_name(q),
                    position: None,
                })
                .collect(),
            groups: Vec::new(),
        };
        self.upsert("omni", all);
        self.set_gate("omni", Gate::OPEN);
        for _ in 0..2000 {
            let now = self.b.now;
            for id in self.agents.keys().cloned().collect::<Vec<_>>() {
                let _ = self.b.r.resume_agent(now, &id, &mut self.b.out);
                if let Some(a) = self.agents.get_mut(&id) {
                    a.paused = false;
                }
            }
            self.absorb();
            for id in self.picks(|s| matches!(s, CState::Offered(_))) {
                self.apply(Op::Accept {
                    pick: 0,
                    wrong_agent: false,
                });
                let _ = id;
            }
            for id in self.picks(|s| matches!(s, CState::Accepted(_))) {
                self.b
                    .r
                    .complete(self.b.now, &id, None, &mut self.b.out)
                    .expect("complete");
                self.absorb();
            }
            if self.picks(|s| *s != CState::Ended).is_empty() {
                return;
            }
            self.apply(Op::Advance { secs: 30 });
        }
        let left = self.picks(|s| *s != CState::Ended);
        panic!("contacts never offered: {left:?}");
    }
}

fn world() -> impl Strategy<Value = (Vec<QueueSettings>, Vec<AgentSpec>)> {
    (
        (queue_settings(0), queue_settings(1), queue_settings(2)),
        prop::collection::vec(agent_spec(), AGENTS),
    )
        .prop_map(|((a, b, c), specs)| (vec![a, b, c], specs))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn offers_respect_eligibility_order_and_strategies(
        (queues, specs) in world(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut w = World::new(queues, specs);
        for op in ops {
            w.apply(op);
        }
        w.drain();
        for (id, c) in &w.contacts {
            prop_assert!(
                c.ever_offered || c.overflowed || matches!(c.state, CState::Ended),
                "{} was never offered: {:?}", id, c
            );
        }
    }

    #[test]
    fn a_restored_router_decides_exactly_as_the_original(
        (queues, specs) in world(),
        before in prop::collection::vec(op(), 1..50),
        after in prop::collection::vec(op(), 1..50),
    ) {
        let mut w = World::new(queues.clone(), specs);
        for op in before {
            w.apply(op);
        }
        let mut saved_contacts = BTreeMap::new();
        let mut saved_agents = BTreeMap::new();
        let changes = w.b.r.take_changes();
        for (id, c) in changes.contacts {
            match c {
                Some(c) => { saved_contacts.insert(id, c); }
                None => { saved_contacts.remove(&id); }
            }
        }
        saved_agents.extend(changes.agents);
        let mut globals = changes.globals.unwrap_or_default();
        globals.queues.extend(changes.queues);
        let present: Vec<(String, AgentSpec, AgentRouting, Gate)> = w
            .agents
            .iter()
            .filter(|(_, a)| a.present)
            .map(|(id, a)| {
                let state = saved_agents.get(id).cloned().unwrap_or_default();
                (id.clone(), a.spec.clone(), state, a.gate)
            })
            .collect();
        let twin = Router::restore(
            w.b.now,
            queues,
            globals,
            present,
            saved_contacts.into_values().collect(),
        );
        let mut restored = w.fork(twin);
        w.log.clear();
        for op in after {
            w.apply(op.clone());
            restored.apply(op);
            prop_assert_eq!(&w.log, &restored.log);
        }
    }
}

//! A straightforward reference for "which agent gets this contact", written
//! from the strategy descriptions and the public views only: filter the free
//! agents with the skills, put them in agent order, apply the rule.

use std::collections::BTreeMap;

use super::super::strategy::next_random;
use super::*;

/// An agent as the reference sees it: its spec and what its view shows.
pub(crate) struct RefAgent {
    pub id: String,
    pub spec: AgentSpec,
    pub view: AgentRoutingView,
}

/// Whether the view says the agent could take an offer right now, worked
/// out from its fields (not from the router's own `eligible`).
pub(crate) fn free(view: &AgentRoutingView, now: Timestamp) -> bool {
    view.gate.linked
        && view.gate.cc_routable
        && !view.gate.teams_blocking
        && view.state.paused_since.is_none()
        && view.offered.is_none()
        && view.contacts.len() < usize::from(view.capacity)
        && view.state.wrap_until <= now
        && view.state.backoff_until <= now
}

pub(crate) fn serves(spec: &AgentSpec, queue: &QueueSettings) -> Option<Option<u32>> {
    if let Some(m) = spec.queues.iter().find(|m| m.queue == queue.name) {
        return Some(m.position);
    }
    queue
        .groups
        .iter()
        .any(|g| spec.groups.contains(g))
        .then_some(None)
}

pub(crate) fn requirement(
    queue: &QueueSettings,
    contact: &BTreeMap<String, u8>,
) -> BTreeMap<String, u8> {
    let mut need = queue.skills.clone();
    for (skill, min) in contact {
        let e = need.entry(skill.clone()).or_insert(0);
        if *min > *e {
            *e = *min;
        }
    }
    need
}

pub(crate) fn has_skills(spec: &AgentSpec, need: &BTreeMap<String, u8>) -> bool {
    need.iter()
        .all(|(s, min)| spec.skills.get(s).copied().unwrap_or(0) >= *min)
}

/// The agent the reference picks for a contact with `skills` in `queue`.
pub(crate) fn choose(
    queue: &QueueSettings,
    skills: &BTreeMap<String, u8>,
    agents: &[RefAgent],
    last_offered: Option<(u32, &str)>,
    rng: u64,
    now: Timestamp,
) -> Option<String> {
    let need = requirement(queue, skills);
    let mut free_agents: Vec<(u32, &RefAgent)> = agents
        .iter()
        .filter_map(|a| {
            let position = serves(&a.spec, queue)?;
            (free(&a.view, now) && has_skills(&a.spec, &need))
                .then(|| (position.unwrap_or(u32::MAX), a))
        })
        .collect();
    free_agents.sort_by(|x, y| (x.0, &x.1.id).cmp(&(y.0, &y.1.id)));
    if free_agents.is_empty() {
        return None;
    }
    let level = |a: &RefAgent| -> u32 {
        need.keys()
            .map(|s| u32::from(a.spec.skills.get(s).copied().unwrap_or(0)))
            .sum()
    };
    let idle = |a: &RefAgent| a.view.state.idle_since;
    let ordered: Vec<&RefAgent> = free_agents.iter().map(|(_, a)| *a).collect();
    let chosen: &RefAgent = match queue.strategy {
        Strategy::TopDown => ordered[0],
        Strategy::LongestIdle => {
            let mut best = ordered[0];
            for a in &ordered[1..] {
                if idle(a) < idle(best) {
                    best = a;
                }
            }
            best
        }
        Strategy::FewestContacts => {
            let mut best = ordered[0];
            for a in &ordered[1..] {
                let key = (a.view.contacts_today, idle(a));
                if key < (best.view.contacts_today, idle(best)) {
                    best = a;
                }
            }
            best
        }
        Strategy::LeastOccupied => {
            let mut best = ordered[0];
            for a in &ordered[1..] {
                if (a.view.busy_today, idle(a)) < (best.view.busy_today, idle(best)) {
                    best = a;
                }
            }
            best
        }
        Strategy::SkillsBest => {
            let mut best = ordered[0];
            for a in &ordered[1..] {
                if level(a) > level(best) || (level(a) == level(best) && idle(a) < idle(best)) {
                    best = a;
                }
            }
            best
        }
        Strategy::RoundRobin => {
            // After the agent offered last, at the place it had then (it
            // may have left the queue since).
            match last_offered {
                None => ordered[0],
                Some(last) => free_agents
                    .iter()
                    .find(|(p, a)| (*p, a.id.as_str()) > last)
                    .map_or(ordered[0], |(_, a)| *a),
            }
        }
        Strategy::Random => {
            let mut state = rng;
            let n = ordered.len() as u64;
            ordered[usize::try_from(next_random(&mut state) % n).unwrap_or(0)]
        }
    };
    Some(chosen.id.clone())
}

//! The strategies: given the agents free to take a contact, in agent order,
//! which one gets it. Pure functions over a slice, so each strategy can be
//! checked against a reference implementation on its own.

use std::cmp::Reverse;

use crate::time::Timestamp;

use super::queue::Strategy;

/// A free agent as a strategy sees it. Candidates come in agent order:
/// position in the queue, then agent id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The router's slot for the agent.
    pub slot: usize,
    pub position: u32,
    /// Idle since it last became routable or finished wrap-up.
    pub idle_since: Timestamp,
    /// Contacts accepted today.
    pub contacts_today: u32,
    /// Microseconds on contacts today, talk and wrap-up.
    pub busy_today: u64,
    /// Summed proficiency in the skills the contact needs.
    pub level: u32,
}

/// What a strategy remembers between choices.
pub struct Memory<'a> {
    /// Round-robin: the candidate offered last, by (position, agent id).
    pub last: Option<(u32, &'a str)>,
    /// Random: the router's generator state, advanced when used.
    pub rng: &'a mut u64,
}

/// The chosen candidate's index in `candidates`. `id_of` gives a slot's
/// agent id (round-robin compares against the last one offered).
pub fn pick<'a>(
    strategy: Strategy,
    candidates: &[Candidate],
    memory: Memory<'_>,
    id_of: impl Fn(usize) -> &'a str,
) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let index = |(i, _): (usize, &Candidate)| i;
    let each = candidates.iter().enumerate();
    match strategy {
        Strategy::LongestIdle => each.min_by_key(|(i, c)| (c.idle_since, *i)).map(index),
        Strategy::FewestContacts => each
            .min_by_key(|(i, c)| (c.contacts_today, c.idle_since, *i))
            .map(index),
        Strategy::LeastOccupied => each
            .min_by_key(|(i, c)| (c.busy_today, c.idle_since, *i))
            .map(index),
        Strategy::SkillsBest => each
            .min_by_key(|(i, c)| (Reverse(c.level), c.idle_since, *i))
            .map(index),
        Strategy::TopDown => Some(0),
        Strategy::RoundRobin => {
            let after = memory.last.and_then(|(position, id)| {
                candidates
                    .iter()
                    .position(|c| (c.position, id_of(c.slot)) > (position, id))
            });
            Some(after.unwrap_or(0))
        }
        Strategy::Random => {
            let n = candidates.len() as u64;
            Some(usize::try_from(next_random(memory.rng) % n).unwrap_or(0))
        }
    }
}

/// splitmix64: small, fast, and its whole state is one number the router
/// persists, so a restart continues the same sequence.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

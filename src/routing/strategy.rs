//! The strategies: given the agents free to take a contact, in agent order,
//! which one gets it. Pure functions over a slice, so each strategy can be
//! checked against a reference implementation on its own.

use std::cmp::Reverse;

use crate::time::Timestamp;

use super::queue::Strategy;

/// A free agent as a strategy sees it. Candidates come in agent order:
/// position in the queue, then agent id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// The candidate the strategy picks, in one pass over `candidates` (two for
/// random: it counts first). `id_of` gives a slot's agent id (round-robin
/// compares against the last one offered when positions tie).
pub fn pick<'a, I>(
    strategy: Strategy,
    candidates: I,
    memory: Memory<'_>,
    id_of: impl Fn(usize) -> &'a str,
) -> Option<Candidate>
where
    I: Iterator<Item = Candidate> + Clone,
{
    // Strict `<` keeps the earliest in agent order among equal keys.
    fn best_by<K: Ord>(
        candidates: impl Iterator<Item = Candidate>,
        key: impl Fn(&Candidate) -> K,
    ) -> Option<Candidate> {
        let mut best: Option<(K, Candidate)> = None;
        for c in candidates {
            let k = key(&c);
            if best.as_ref().is_none_or(|(b, _)| k < *b) {
                best = Some((k, c));
            }
        }
        best.map(|(_, c)| c)
    }
    match strategy {
        Strategy::LongestIdle => best_by(candidates, |c| c.idle_since),
        Strategy::FewestContacts => best_by(candidates, |c| (c.contacts_today, c.idle_since)),
        Strategy::LeastOccupied => best_by(candidates, |c| (c.busy_today, c.idle_since)),
        Strategy::SkillsBest => best_by(candidates, |c| (Reverse(c.level), c.idle_since)),
        Strategy::TopDown => candidates.into_iter().next(),
        Strategy::RoundRobin => {
            let Some((position, id)) = memory.last else {
                return candidates.into_iter().next();
            };
            // The first after the last one offered, else wrap to the first.
            let mut first = None;
            for c in candidates {
                if c.position > position || (c.position == position && id_of(c.slot) > id) {
                    return Some(c);
                }
                first.get_or_insert(c);
            }
            first
        }
        Strategy::Random => {
            let n = candidates.clone().count() as u64;
            if n == 0 {
                return None;
            }
            let k = usize::try_from(next_random(memory.rng) % n).unwrap_or(0);
            candidates.into_iter().nth(k)
        }
    }
}

/// For the strategies that pick the candidate with the smallest key (ties:
/// agent order), that key as one number, so a queue can keep every
/// member's key in one array and pick with a plain minimum. `None` for
/// top-down, round-robin and random, which pick by position instead.
pub fn sort_key(strategy: Strategy, c: &Candidate) -> Option<u128> {
    let idle = u128::from(c.idle_since.as_micros());
    match strategy {
        Strategy::LongestIdle => Some(idle),
        Strategy::FewestContacts => Some(u128::from(c.contacts_today) << 64 | idle),
        Strategy::LeastOccupied => Some(u128::from(c.busy_today) << 64 | idle),
        Strategy::SkillsBest => Some(u128::from(u32::MAX - c.level) << 64 | idle),
        Strategy::TopDown | Strategy::RoundRobin | Strategy::Random => None,
    }
}

/// splitmix64: small, fast, and its whole state is one number the router
/// persists, so a restart continues the same sequence.
pub fn next_random(state: &mut u64) -> u64 {
    crate::splitmix::next(state)
}

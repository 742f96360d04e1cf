//! Scripted mode: users drift through a working day's Teams states —
//! meetings, calls, presenting, away, be-right-back, signed out and back.
//!
//! Pure and reproducible: time advances in fixed one-second ticks from the
//! start, and each tick draws from the seeded PRNG, so the tenant's state at
//! a given simulated time depends only on the seed and the rate, never on
//! how often (or how late) the server's timer fires.

use std::time::Duration;

use super::rng::Rng;
use super::tenant::Tenant;
use crate::presence::Presence;
use crate::time::Timestamp;

pub const TICK: Duration = Duration::from_secs(1);

/// The default drift: each user changes state about 6 times an hour.
pub const DEFAULT_RATE_PER_USER_PER_HOUR: f64 = 6.0;

/// At most one change per user per second: a higher rate would only burn
/// CPU (and an absurd one would stall the tenant's lock).
pub const MAX_RATE_PER_USER_PER_HOUR: f64 = 3600.0;

/// Catch-up is capped so a clock that jumps days ahead costs a bounded
/// amount of work; the skipped time simply has no scripted changes.
const MAX_TICKS_PER_RUN: u64 = 24 * 3600;

#[derive(Clone, Debug)]
pub struct Script {
    rng: Rng,
    /// Changes per user per hour.
    rate: f64,
    next_tick: Timestamp,
}

/// Weighted next states from a client state; `None` is signed out.
fn transitions(from: Option<&Presence>) -> &'static [(&'static str, u32)] {
    let key = from.map(|p| (p.availability.as_str(), p.activity.as_str()));
    match key {
        None => &[("Available/Available", 1)],
        Some(("Available", "Available")) => &[
            ("Busy/InAMeeting", 30),
            ("Busy/InACall", 25),
            ("Away/Away", 15),
            ("BeRightBack/BeRightBack", 10),
            ("DoNotDisturb/Presenting", 5),
            ("Busy/Busy", 5),
            ("Offline/Offline", 10),
        ],
        Some(("Busy", "InAMeeting")) => &[
            ("Available/Available", 70),
            ("DoNotDisturb/Presenting", 15),
            ("Busy/InACall", 15),
        ],
        Some(("Busy", "InACall")) => &[("Available/Available", 90), ("Busy/InAMeeting", 10)],
        Some(("Away", "Away")) => &[("Available/Available", 70), ("Offline/Offline", 30)],
        Some(("BeRightBack", "BeRightBack")) => &[("Available/Available", 90), ("Away/Away", 10)],
        Some(("DoNotDisturb", "Presenting")) => {
            &[("Busy/InAMeeting", 50), ("Available/Available", 50)]
        }
        _ => &[("Available/Available", 1)],
    }
}

/// How a scripted tenant starts the day.
const START: &[(&str, u32)] = &[
    ("Available/Available", 60),
    ("Busy/InAMeeting", 10),
    ("Busy/InACall", 10),
    ("Away/Away", 5),
    ("Offline/Offline", 15),
];

fn choose(rng: &mut Rng, options: &[(&str, u32)]) -> Option<Presence> {
    let total: u32 = options.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(u64::from(total));
    for (text, weight) in options {
        if roll < u64::from(*weight) {
            let (a, b) = text.split_once('/')?;
            return Some(Presence::from_graph(a, b));
        }
        roll -= u64::from(*weight);
    }
    None
}

impl Script {
    pub fn new(seed: u64, rate_per_user_per_hour: f64, start: Timestamp) -> Self {
        let rate = if rate_per_user_per_hour.is_finite() {
            rate_per_user_per_hour.clamp(0.0, MAX_RATE_PER_USER_PER_HOUR)
        } else {
            DEFAULT_RATE_PER_USER_PER_HOUR
        };
        Script {
            rng: Rng::new(seed ^ 0x5C21_97ED),
            rate,
            next_tick: start,
        }
    }

    /// Signs users in (or not) with a plausible spread of states.
    pub fn start_day(&mut self, tenant: &mut Tenant, now: Timestamp) {
        for index in 0..tenant.user_count() {
            let state = choose(&mut self.rng, START);
            tenant.set_client_at(index, state, now);
        }
    }

    /// Plays every whole tick up to `now`.
    pub fn run_until(&mut self, tenant: &mut Tenant, now: Timestamp) {
        let users = tenant.user_count() as u64;
        let mut ticks = 0;
        while self.next_tick <= now && ticks < MAX_TICKS_PER_RUN {
            let at = self.next_tick;
            // Mean-exact change count without a Poisson sampler: the whole
            // part always, the fraction by chance.
            let expected = users as f64 * self.rate / 3600.0;
            let mut changes = expected.floor() as u64;
            if self.rng.chance(expected.fract()) {
                changes += 1;
            }
            for _ in 0..changes {
                let index = usize::try_from(self.rng.below(users)).unwrap_or(0);
                let next = choose(&mut self.rng, transitions(tenant.client_at(index)));
                tenant.set_client_at(index, next, at);
            }
            self.next_tick = at + TICK;
            ticks += 1;
        }
        if self.next_tick <= now {
            self.next_tick = now + TICK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::directory::{Directory, NewUser};

    fn tenant(n: usize) -> Tenant {
        let mut directory = Directory::new("contoso.test", 9, 9);
        for _ in 0..n {
            directory.add(NewUser::default(), Timestamp::ZERO).unwrap();
        }
        Tenant::new(directory)
    }

    fn states(tenant: &mut Tenant, at: Timestamp) -> Vec<Presence> {
        (0..tenant.user_count())
            .map(|i| tenant.presence_at(i, at).unwrap().presence)
            .collect()
    }

    #[test]
    fn same_seed_same_day_however_often_it_runs() {
        let start = Timestamp::from_secs(1_700_000_000);
        let end = start + Duration::from_secs(1800);
        let mut a = tenant(40);
        let mut script_a = Script::new(5, 30.0, start);
        script_a.start_day(&mut a, start);
        script_a.run_until(&mut a, end);

        let mut b = tenant(40);
        let mut script_b = Script::new(5, 30.0, start);
        script_b.start_day(&mut b, start);
        let mut at = start;
        while at < end {
            at = at + Duration::from_millis(700);
            script_b.run_until(&mut b, at.min(end));
        }
        assert_eq!(states(&mut a, end), states(&mut b, end));

        let mut c = tenant(40);
        let mut script_c = Script::new(6, 30.0, start);
        script_c.start_day(&mut c, start);
        script_c.run_until(&mut c, end);
        assert_ne!(states(&mut a, end), states(&mut c, end));
    }

    #[test]
    fn users_drift_through_realistic_states() {
        let start = Timestamp::from_secs(1_700_000_000);
        let mut t = tenant(50);
        let mut script = Script::new(1, 60.0, start);
        script.start_day(&mut t, start);
        let mut seen = std::collections::BTreeSet::new();
        for minute in 1..=60 {
            let at = start + Duration::from_secs(minute * 60);
            script.run_until(&mut t, at);
            for p in states(&mut t, at) {
                seen.insert(p.to_string());
            }
        }
        for expected in [
            "Available/Available",
            "Busy/InAMeeting",
            "Busy/InACall",
            "Away/Away",
            "Offline/Offline",
        ] {
            assert!(seen.contains(expected), "{expected} never seen in {seen:?}");
        }
    }

    #[test]
    fn rate_zero_changes_nothing() {
        let start = Timestamp::from_secs(1_700_000_000);
        let mut t = tenant(10);
        let mut script = Script::new(1, 0.0, start);
        script.start_day(&mut t, start);
        let before = states(&mut t, start);
        let end = start + Duration::from_secs(3600);
        script.run_until(&mut t, end);
        assert_eq!(before, states(&mut t, end));
    }
}

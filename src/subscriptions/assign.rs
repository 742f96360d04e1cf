//! Who each service account watches.
//!
//! The rules, in order:
//! 1. **Agents first.** When the healthy accounts cannot hold everyone,
//!    agents are chosen before the other users in scope; a newly linked
//!    agent takes the place of a user who is not one.
//! 2. **Stay put.** A chosen user already watched by a healthy account
//!    stays with it: moving a user means re-creating two subscriptions.
//! 3. **Fill the least loaded.** Every other chosen user goes to the
//!    healthy account watching the fewest, so a fresh assignment differs by
//!    at most one user between accounts.
//!
//! A failed account watches nobody; its users are placed on the others as
//! far as they have room. Pure: no I/O and no clock.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::{AccountId, MAX_USERS_PER_SUBSCRIPTION, UserId};

/// The users to cover, in the order they are chosen when room runs short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Linked agents, first chosen.
    pub agents: Vec<UserId>,
    /// Other users in the directory's scope.
    pub others: Vec<UserId>,
}

impl Wanted {
    /// Distinct users wanted.
    pub fn len(&self) -> usize {
        self.in_order().count()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.others.is_empty()
    }

    /// Every wanted user once, agents first.
    pub fn in_order(&self) -> impl Iterator<Item = &UserId> {
        let mut seen: HashSet<&UserId> = HashSet::new();
        self.agents
            .iter()
            .chain(self.others.iter())
            .filter(move |u| seen.insert(*u))
    }
}

/// Who each healthy account should watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    pub by_account: BTreeMap<AccountId, BTreeSet<UserId>>,
    /// Users wanted but left to polling alone for lack of room.
    pub uncovered: usize,
    /// More accounts needed so that every wanted user is covered.
    pub accounts_needed: usize,
}

/// Places `wanted` on the `healthy` accounts, `capacity` users each (at
/// most 650), keeping `previous` placements where they still hold.
pub fn assign(
    wanted: &Wanted,
    healthy: &[AccountId],
    previous: &BTreeMap<AccountId, BTreeSet<UserId>>,
    capacity: usize,
) -> Assignment {
    let capacity = capacity.clamp(1, MAX_USERS_PER_SUBSCRIPTION);
    let accounts: BTreeSet<&AccountId> = healthy.iter().collect();
    let room = accounts.len().saturating_mul(capacity);
    let total = wanted.len();
    let chosen = choose(wanted, &accounts, previous, room);
    let chosen_set: HashSet<&UserId> = chosen.iter().copied().collect();

    let mut by_account: BTreeMap<AccountId, BTreeSet<UserId>> = accounts
        .iter()
        .map(|a| ((*a).clone(), BTreeSet::new()))
        .collect();
    let mut placed: HashSet<&UserId> = HashSet::new();
    for (account, members) in &mut by_account {
        let Some(before) = previous.get(account) else {
            continue;
        };
        for user in before {
            if members.len() >= capacity {
                break;
            }
            if let Some(u) = chosen_set.get(user)
                && placed.insert(u)
            {
                members.insert(user.clone());
            }
        }
    }

    // Least loaded first; ties by account, so the result is deterministic.
    let mut load: BTreeSet<(usize, AccountId)> = by_account
        .iter()
        .map(|(a, m)| (m.len(), a.clone()))
        .collect();
    for user in chosen {
        if placed.contains(user) {
            continue;
        }
        let Some((count, account)) = load.pop_first() else {
            break;
        };
        if count >= capacity {
            break;
        }
        if let Some(members) = by_account.get_mut(&account) {
            members.insert(user.clone());
        }
        placed.insert(user);
        load.insert((count + 1, account));
    }

    let covered = placed.len();
    Assignment {
        by_account,
        uncovered: total - covered,
        accounts_needed: total.div_ceil(capacity).saturating_sub(accounts.len()),
    }
}

/// The users to cover when `room` may be short: agents before others, and
/// within each, those a healthy account already watches before newcomers
/// (covering one agent by dropping another gains nothing and costs two
/// re-creations), then in the order given.
fn choose<'a>(
    wanted: &'a Wanted,
    healthy: &BTreeSet<&AccountId>,
    previous: &BTreeMap<AccountId, BTreeSet<UserId>>,
    room: usize,
) -> Vec<&'a UserId> {
    let watched: HashSet<&UserId> = previous
        .iter()
        .filter(|(a, _)| healthy.contains(a))
        .flat_map(|(_, m)| m.iter())
        .collect();
    let mut seen: HashSet<&UserId> = HashSet::new();
    let mut chosen = Vec::with_capacity(room.min(wanted.agents.len() + wanted.others.len()));
    for tier in [&wanted.agents, &wanted.others] {
        let fresh: Vec<&UserId> = tier.iter().filter(|u| !seen.contains(u)).collect();
        let (kept, new): (Vec<&UserId>, Vec<&UserId>) =
            fresh.into_iter().partition(|u| watched.contains(u));
        for user in kept.into_iter().chain(new) {
            if chosen.len() >= room {
                return chosen;
            }
            if seen.insert(user) {
                chosen.push(user);
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(prefix: &str, n: usize) -> Vec<UserId> {
        (0..n)
            .map(|i| UserId::from(format!("{prefix}{i:05}")))
            .collect()
    }

    fn accounts(n: usize) -> Vec<AccountId> {
        (0..n)
            .map(|i| AccountId::from(format!("svc-{i}@contoso.com")))
            .collect()
    }

    #[test]
    fn a_fresh_assignment_is_balanced_to_one_user() {
        let wanted = Wanted {
            agents: ids("a", 1_001),
            others: vec![],
        };
        let out = assign(&wanted, &accounts(3), &BTreeMap::new(), 650);
        let sizes: Vec<usize> = out.by_account.values().map(BTreeSet::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 1_001);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        assert_eq!(out.uncovered, 0);
        assert_eq!(out.accounts_needed, 0);
    }

    #[test]
    fn agents_are_chosen_before_other_users_when_room_runs_short() {
        let agents = ids("a", 700);
        let wanted = Wanted {
            agents: agents.clone(),
            others: ids("o", 700),
        };
        let out = assign(&wanted, &accounts(2), &BTreeMap::new(), 650);
        let all: BTreeSet<UserId> = out.by_account.values().flatten().cloned().collect();
        assert!(agents.iter().all(|a| all.contains(a)));
        assert_eq!(all.len(), 1_300);
        assert_eq!(out.uncovered, 100);
        assert_eq!(out.accounts_needed, 1, "1,400 users need 3 accounts of 650");
    }

    #[test]
    fn a_new_agent_displaces_a_user_who_is_not_one() {
        let before = assign(
            &Wanted {
                agents: ids("a", 2),
                others: ids("o", 2),
            },
            &accounts(1),
            &BTreeMap::new(),
            4,
        );
        let mut agents = ids("a", 2);
        agents.push(UserId::from("new-agent"));
        let after = assign(
            &Wanted {
                agents,
                others: ids("o", 2),
            },
            &accounts(1),
            &before.by_account,
            4,
        );
        let members = after.by_account.values().next().unwrap();
        assert!(members.contains("new-agent"));
        assert!(!members.contains("o00001"), "the last other user gives way");
        assert_eq!(after.uncovered, 1);
    }

    #[test]
    fn a_failed_account_users_move_to_the_others_with_room() {
        let wanted = Wanted {
            agents: ids("a", 900),
            others: vec![],
        };
        let all = accounts(3);
        let before = assign(&wanted, &all, &BTreeMap::new(), 650);
        let after = assign(&wanted, &all[1..], &before.by_account, 650);
        assert_eq!(after.by_account.len(), 2);
        let total: usize = after.by_account.values().map(BTreeSet::len).sum();
        assert_eq!(total, 900);
        for (account, members) in &after.by_account {
            assert!(
                before.by_account[account].is_subset(members),
                "{account} keeps its users"
            );
        }
    }

    proptest! {
        #[test]
        fn every_rule_holds(
            agents in 0usize..400,
            others in 0usize..400,
            n_accounts in 0usize..5,
            capacity in 1usize..200,
            drop_account in any::<bool>(),
            extra_agents in 0usize..50,
        ) {
            let all = accounts(n_accounts);
            let wanted = Wanted { agents: ids("a", agents), others: ids("o", others) };
            let first = assign(&wanted, &all, &BTreeMap::new(), capacity);
            let healthy: Vec<AccountId> = if drop_account && !all.is_empty() {
                all[1..].to_vec()
            } else {
                all.clone()
            };
            let wanted2 = Wanted { agents: ids("a", agents + extra_agents), others: ids("o", others) };
            let second = assign(&wanted2, &healthy, &first.by_account, capacity);
            for out in [&first, &second] {
                let mut seen = HashSet::new();
                for members in out.by_account.values() {
                    prop_assert!(members.len() <= capacity);
                    for m in members {
                        prop_assert!(seen.insert(m.clone()), "{m} placed twice");
                    }
                }
            }
            // Agents first: an uncovered agent means no other user is covered.
            let covered: HashSet<UserId> = second.by_account.values().flatten().cloned().collect();
            let agent_missing = wanted2.agents.iter().any(|a| !covered.contains(a));
            if agent_missing {
                prop_assert!(wanted2.others.iter().all(|o| !covered.contains(o)));
            }
            // Stay put: whoever is still chosen and whose account is healthy stays.
            for (account, members) in &second.by_account {
                if let Some(before) = first.by_account.get(account) {
                    let wanted_now: HashSet<&UserId> = wanted2.in_order().collect();
                    let lost = before.iter().filter(|u| wanted_now.contains(u) && !members.contains(*u));
                    // Only users crowded out by agents may leave.
                    for u in lost {
                        prop_assert!(!u.starts_with('a'), "{u} moved");
                    }
                }
            }
            prop_assert_eq!(second.uncovered, wanted2.len() - covered.len());
            // Same input, same answer.
            prop_assert_eq!(&assign(&wanted2, &healthy, &first.by_account, capacity), &second);
        }
    }
}

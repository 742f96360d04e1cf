//! Dispatch: after every input, free agents take the best waiting contacts
//! and waiting contacts are offered to the agent their queue's strategy
//! picks, or overflow once they have waited too long.

use std::cmp::Reverse;

use crate::routing::Strategy;
use crate::time::Timestamp;

use super::*;

/// How a free agent ranks a waiting contact: priority, the queue's place in
/// the agent's order, arrival. Lowest first.
type Rank = (Reverse<u8>, usize, u64);

impl Router {
    /// Offers and overflows until nothing is left to do. Agents that freed
    /// up go first: they take the oldest contacts they can, so a contact
    /// arriving (or overflowing in) now cannot overtake one already waiting.
    pub(super) fn dispatch(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        loop {
            if !self.pending_agents.is_empty() {
                let mut agents = std::mem::take(&mut self.pending_agents);
                agents.sort_unstable();
                agents.dedup();
                // Longest idle first, so a contact that several agents could
                // take at once is not decided by slot numbers.
                let id_of = |s: usize| self.agents[s].as_ref().map_or("", |a| &*a.id);
                agents.sort_by(|x, y| {
                    (self.hot[*x].idle_since, id_of(*x)).cmp(&(self.hot[*y].idle_since, id_of(*y)))
                });
                for slot in agents {
                    self.serve(now, slot, out);
                }
                continue;
            }
            if !self.pending_contacts.is_empty() {
                let mut contacts = std::mem::take(&mut self.pending_contacts);
                contacts.sort_unstable();
                contacts.dedup();
                for (i, serial) in contacts.iter().enumerate() {
                    if self.place(now, *serial, out) {
                        // It overflowed into another queue: place it again
                        // in arrival order with the ones not placed yet.
                        self.pending_contacts.extend_from_slice(&contacts[i + 1..]);
                        break;
                    }
                }
                continue;
            }
            break;
        }
    }

    /// A waiting contact: overflow it if it waited too long, else offer it
    /// to the agent its queue's strategy picks, if one is free. True when it
    /// overflowed into another queue (and waits to be placed there).
    fn place(&mut self, now: Timestamp, serial: u64, out: &mut Vec<RoutingDecision>) -> bool {
        let Some(c) = self.contacts.get(&serial) else {
            return false;
        };
        if c.phase != Phase::Waiting {
            return false;
        }
        let Some(q) = self.queue_index.get(&c.queue).copied() else {
            self.abandon_serial(now, serial, "queue_removed", out);
            return false;
        };
        if let Some(wait) = self.queues[q].settings.max_wait
            && c.queued_at + wait <= now
            && self.overflow(now, serial, q, out)
        {
            return self
                .contacts
                .get(&serial)
                .is_some_and(|c| c.phase == Phase::Waiting);
        }
        if let Some(slot) = self.choose_agent(now, serial, q) {
            self.offer(now, serial, q, slot, out);
        }
        false
    }

    /// Moves a contact on after its maximum wait. False when it has nowhere
    /// to go (it keeps waiting).
    fn overflow(
        &mut self,
        now: Timestamp,
        serial: u64,
        q: usize,
        out: &mut Vec<RoutingDecision>,
    ) -> bool {
        let Some(target) = self.queues[q].settings.overflow.clone() else {
            return false;
        };
        let Some(c) = self.contacts.get_mut(&serial) else {
            return false;
        };
        let from = c.queue.clone();
        let key = (Reverse(c.priority), serial);
        let waited = now.since(c.queued_at);
        match &target {
            OverflowTarget::Queue(name) => {
                let Some(t) = self.queue_index.get(name).copied() else {
                    return false;
                };
                if t == q || c.overflowed_from.contains(name) {
                    return false;
                }
                c.overflowed_from.push(from.clone());
                c.queue = name.clone();
                c.queued_at = now;
                self.queues[q].waiting.remove(&key);
                self.queues[t].waiting.insert(key);
                if let Some(wait) = self.queues[t].settings.max_wait {
                    self.timers.insert((now + wait, Timer::Overflow(serial)));
                }
                self.pending_contacts.push(serial);
                self.dirty_contacts.insert(serial);
            }
            OverflowTarget::TeamsUsers(_) => {
                c.phase = Phase::Ended {
                    how: Ending::Overflowed,
                    at: now,
                    agent: None,
                };
                self.queues[q].waiting.remove(&key);
                self.end(serial);
            }
        }
        let contact = self
            .contacts
            .get(&serial)
            .map(|c| c.id.clone())
            .unwrap_or_default();
        out.push(RoutingDecision::Overflowed {
            contact,
            from: from.clone(),
            to: target,
            waited,
        });
        self.count(&from, |t| t.overflowed += 1);
        true
    }

    /// The free agent the queue's strategy picks for a contact.
    fn choose_agent(&mut self, now: Timestamp, serial: u64, q: usize) -> Option<usize> {
        let day = day_of(now);
        let plain = self.contacts.get(&serial)?.skills.is_empty();
        let strategy = self.queues[q].settings.strategy;
        let keyed = strategy::sort_key(strategy, &Candidate::default()).is_some();
        if plain && keyed {
            return self.choose_by_key(q, day);
        }
        if plain && strategy == Strategy::Random {
            return self.choose_at_random(q, day);
        }
        let c = self.contacts.get(&serial)?;
        let queue = &self.queues[q];
        let need = (!c.skills.is_empty()).then(|| merged(&queue.settings.skills, &c.skills));
        let agents = &self.agents;
        let candidates = queue.members.iter().filter_map(|m| {
            let h = &m.hot;
            if !h.free {
                return None;
            }
            let level = match &need {
                None if m.skills_ok => m.level,
                None => return None,
                Some(need) => {
                    let (ok, level) = fit(&agents[m.slot].as_ref()?.spec.skills, need);
                    if !ok {
                        return None;
                    }
                    level
                }
            };
            let today = h.day == day;
            Some(Candidate {
                slot: m.slot,
                position: m.position,
                idle_since: h.idle_since,
                contacts_today: if today { h.contacts_today } else { 0 },
                busy_today: if today { h.busy_today } else { 0 },
                level,
            })
        });
        let last = queue
            .memory
            .last_offered
            .as_ref()
            .map(|(p, id)| (*p, id.as_str()));
        let rng_before = self.rng;
        let picked = strategy::pick(
            queue.settings.strategy,
            candidates,
            Memory {
                last,
                rng: &mut self.rng,
            },
            |s| agents[s].as_ref().map_or("", |a| &*a.id),
        )
        .map(|c| c.slot);
        if self.rng != rng_before {
            self.globals_dirty = true;
        }
        picked
    }

    /// A contact that asks only for the queue's skills, under a strategy
    /// with a key: the member with the smallest key, the first on ties.
    fn choose_by_key(&mut self, q: usize, day: u64) -> Option<usize> {
        self.fresh_keys(q, day);
        let queue = &self.queues[q];
        let mut best: Option<(u128, usize)> = None;
        for (at, key) in queue.keys.iter().enumerate() {
            if *key != u128::MAX && best.is_none_or(|(b, _)| *key < b) {
                best = Some((*key, at));
            }
        }
        best.and_then(|(_, at)| queue.members.get(at))
            .map(|m| m.slot)
    }

    /// The random strategy over the keys array: the k-th candidate in agent
    /// order, drawing exactly as [`strategy::pick`] does.
    fn choose_at_random(&mut self, q: usize, day: u64) -> Option<usize> {
        self.fresh_keys(q, day);
        let queue = &self.queues[q];
        let n = queue.keys.iter().filter(|k| **k != u128::MAX).count() as u64;
        if n == 0 {
            return None;
        }
        let k = usize::try_from(strategy::next_random(&mut self.rng) % n).unwrap_or(0);
        self.globals_dirty = true;
        let at = queue
            .keys
            .iter()
            .enumerate()
            .filter(|(_, key)| **key != u128::MAX)
            .nth(k)
            .map(|(at, _)| at)?;
        queue.members.get(at).map(|m| m.slot)
    }

    /// Rebuilds queue `q`'s keys if the member list or the day changed.
    fn fresh_keys(&mut self, q: usize, day: u64) {
        let queue = &mut self.queues[q];
        if queue.keys_day != day || queue.keys.len() != queue.members.len() {
            queue.keys_day = day;
            let keys = (0..queue.members.len())
                .map(|at| member_key(queue, at))
                .collect();
            queue.keys = keys;
        }
    }

    fn offer(
        &mut self,
        now: Timestamp,
        serial: u64,
        q: usize,
        slot: usize,
        out: &mut Vec<RoutingDecision>,
    ) {
        let Some(a) = self.agents[slot].as_mut() else {
            return;
        };
        let Some(c) = self.contacts.get_mut(&serial) else {
            return;
        };
        let queue = &mut self.queues[q];
        let expires = now + queue.settings.offer_timeout;
        c.phase = Phase::Offered {
            agent: a.id.to_string(),
            at: now,
            expires,
        };
        c.offers += 1;
        queue.waiting.remove(&(Reverse(c.priority), serial));
        let position = a
            .serves()
            .iter()
            .find(|s| s.queue == q)
            .and_then(|s| s.position)
            .unwrap_or(u32::MAX);
        queue.memory.last_offered = Some((position, a.id.to_string()));
        queue.memory.totals.offered += 1;
        a.set_offer(Some(serial));
        self.timers.insert((expires, Timer::Offer(serial)));
        out.push(RoutingDecision::Offered {
            contact: c.id.clone(),
            queue: queue.settings.name.clone(),
            agent: a.id.to_string(),
            expires,
        });
        self.dirty_contacts.insert(serial);
        self.dirty_queues.insert(q);
        self.refresh(slot, now);
    }

    /// An agent that freed up: the best contact it could take goes to the
    /// agent its queue's strategy picks (this one, unless another free agent
    /// ranks higher there).
    fn serve(&mut self, now: Timestamp, slot: usize, out: &mut Vec<RoutingDecision>) {
        loop {
            if !self.hot[slot].free {
                return;
            }
            let Some((serial, q)) = self.best_contact_for(slot) else {
                return;
            };
            let Some(chosen) = self.choose_agent(now, serial, q) else {
                return;
            };
            self.offer(now, serial, q, chosen, out);
            if chosen == slot {
                return;
            }
        }
    }

    /// The contact a free agent would take: the highest priority waiting in
    /// any queue it serves, then the agent's queue order, then arrival.
    fn best_contact_for(&self, slot: usize) -> Option<(u64, usize)> {
        let a = self.agents[slot].as_ref()?;
        let mut best: Option<(Rank, usize)> = None;
        for (order, serving) in a.serves().iter().enumerate() {
            let q = serving.queue;
            let queue = &self.queues[q];
            if !serving.fits {
                // Every contact here needs at least the queue's skills.
                continue;
            }
            for (priority, serial) in &queue.waiting {
                if let Some(((best_priority, _, _), _)) = best
                    && *priority > best_priority
                {
                    // Lower priority than the best so far: so is the rest.
                    break;
                }
                let Some(c) = self.contacts.get(serial) else {
                    continue;
                };
                let ok = if c.skills.is_empty() {
                    true
                } else {
                    fit(&a.spec.skills, &merged(&queue.settings.skills, &c.skills)).0
                };
                if ok {
                    let key = (*priority, order, *serial);
                    if best.as_ref().is_none_or(|(b, _)| key < *b) {
                        best = Some((key, q));
                    }
                    break;
                }
            }
        }
        best.map(|((_, _, serial), q)| (serial, q))
    }
}

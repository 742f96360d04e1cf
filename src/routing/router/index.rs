//! The queues as the router indexes them: each queue's members in agent
//! order (each with a copy of its agent's hot fields, so a strategy's scan
//! reads one array), its waiting contacts and strategy keys; how queues are
//! installed and replaced, how an agent is placed in the queues it serves,
//! and how skills fit a queue or a contact.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub(super) slot: usize,
    pub(super) position: u32,
    pub(super) skills_ok: bool,
    pub(super) level: u32,
    /// A copy of the agent's [`Hot`], kept in step by `refresh`, so a
    /// strategy's scan over a queue reads one contiguous array.
    pub(super) hot: Hot,
}

pub(super) struct Queue {
    pub(super) settings: QueueSettings,
    /// In agent order: position, then id.
    pub(super) members: Vec<Member>,
    /// (priority, serial): highest priority first, then arrival.
    pub(super) waiting: BTreeSet<(Reverse<u8>, u64)>,
    pub(super) memory: QueueMemory,
    /// Per member, its strategy key (see [`strategy::sort_key`]; 0 for the
    /// strategies without one) as of the UTC day `keys_day`, `u128::MAX`
    /// when it cannot be offered the queue's contacts; `keys_day` is `u64::MAX` while the keys are to be
    /// rebuilt (after the member list changed).
    pub(super) keys: Vec<u128>,
    pub(super) keys_day: u64,
}

/// What the dispatch loop reads for every candidate, kept apart from the
/// rest of the agent so a scan over a queue's members stays in cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Hot {
    pub(super) free: bool,
    pub(super) idle_since: Timestamp,
    pub(super) day: u64,
    pub(super) contacts_today: u32,
    pub(super) busy_today: u64,
}

/// The key of member `at` of `queue` for its strategy on `queue.keys_day`.
pub(super) fn member_key(queue: &Queue, at: usize) -> u128 {
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

/// What `need` asks of `skills`: whether every level is met, and the summed
/// levels in the skills asked for.
pub(super) fn fit(skills: &BTreeMap<String, u8>, need: &BTreeMap<String, u8>) -> (bool, u32) {
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
pub(super) fn merged(
    queue: &BTreeMap<String, u8>,
    contact: &BTreeMap<String, u8>,
) -> BTreeMap<String, u8> {
    let mut need = queue.clone();
    for (skill, min) in contact {
        let entry = need.entry(skill.clone()).or_insert(0);
        *entry = (*entry).max(*min);
    }
    need
}

impl Router {
    pub(super) fn install_queues(
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
            a.set_serves(Vec::new());
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

    /// Puts the agent in the member lists of the queues it serves (its own
    /// list, then queues that take one of its groups), in agent order.
    pub(super) fn place_member(&mut self, slot: usize) {
        let touched = self.place_member_only(slot);
        for q in touched {
            self.reindex(q);
        }
    }

    /// [`place_member`](Self::place_member) without telling the members of
    /// the queues it touched (returned) where they now are: for placing many
    /// agents, then reindexing each queue once.
    pub(super) fn place_member_only(&mut self, slot: usize) -> BTreeSet<usize> {
        let Some(a) = self.agents[slot].as_ref() else {
            return BTreeSet::new();
        };
        let left: Vec<usize> = a.serves().iter().map(|s| s.queue).collect();
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
        let mut serving = Vec::with_capacity(serves.len());
        for (q, position) in &serves {
            let (skills_ok, level) = fit(&a.spec.skills, &self.queues[*q].settings.skills);
            serving.push(Serving {
                queue: *q,
                position: *position,
                fits: skills_ok,
                at: usize::MAX,
            });
            let member = Member {
                slot,
                position: position.unwrap_or(u32::MAX),
                skills_ok,
                level,
                hot: self.hot[slot],
            };
            let agents = &self.agents;
            let id_of = |s: usize| agents[s].as_ref().map_or("", |a| &*a.id);
            let members = &mut self.queues[*q].members;
            let at = members
                .partition_point(|m| (m.position, id_of(m.slot)) < (member.position, &*a.id));
            members.insert(at, member);
        }
        let touched: BTreeSet<usize> = left
            .into_iter()
            .chain(serves.iter().map(|(q, _)| *q))
            .collect();
        if let Some(a) = self.agents[slot].as_mut() {
            a.set_serves(serving);
        }
        touched
    }

    /// Tells every member of queue `q` where it now is in the member list.
    pub(super) fn reindex(&mut self, q: usize) {
        let Some(queue) = self.queues.get_mut(q) else {
            return;
        };
        queue.keys_day = u64::MAX;
        let queue = &self.queues[q];
        for (i, m) in queue.members.iter().enumerate() {
            if let Some(a) = self.agents.get_mut(m.slot).and_then(Option::as_mut)
                && let Some(serving) = a.serves_mut().iter_mut().find(|s| s.queue == q)
            {
                serving.at = i;
            }
        }
    }

    /// A contact of `queue` completed at `now`: the total and the day's count.
    pub(super) fn count_completed(&mut self, queue: &str, now: Timestamp) {
        if let Some(q) = self.queue_index.get(queue).copied() {
            let memory = &mut self.queues[q].memory;
            memory.totals.completed += 1;
            memory.completed_on.add(day_of(now));
            self.dirty_queues.insert(q);
        }
    }

    pub(super) fn count(&mut self, queue: &str, f: impl FnOnce(&mut QueueTotals)) {
        if let Some(q) = self.queue_index.get(queue).copied() {
            f(&mut self.queues[q].memory.totals);
            self.dirty_queues.insert(q);
        }
    }
}

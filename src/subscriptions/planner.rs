//! Every account's subscription as a state, and the actions due at a time.
//!
//! Each configured service account has one slot: at most one presence
//! subscription (Microsoft allows one per user per app). The planner keeps
//! for each slot the users it should watch ([`assign`](super::assign)), the
//! subscription Graph holds for it, the call in flight, and the retry time
//! after a failure. [`Planner::due`] returns the calls to make now; the
//! worker makes them and hands each result back to [`Planner::apply`].
//!
//! The rules:
//! - **Create** when a healthy account has users to watch and no
//!   subscription, after the retry time of a failure (backing off).
//! - **Renew** at [`renew_at`](super::renew_at), to a fresh lifetime.
//! - **Re-create** (delete, then create) when the users to watch changed:
//!   at once when users were added and the subscription is older than the
//!   settle time (so a burst of new agents costs one re-creation, not one
//!   each), and at renewal when users were only removed.
//! - **Reauthorize** after `reauthorizationRequired`; re-create after
//!   `subscriptionRemoved` or a 404; a `missed` returns the users to read.
//! - **A failed account** watches nobody from that moment: its users are
//!   uncovered at once (and polled), and placed on the other accounts.
//!
//! A user is covered while its account is healthy and the subscription is
//! active, unexpired and not being deleted. Pure: the time is an argument.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use super::assign::{Assignment, Wanted, assign};
use super::renewal::renew_at;
use super::{AccountId, MAX_USERS_PER_SUBSCRIPTION, UserId};
use crate::notifications::LifecycleEvent as Lifecycle;
use crate::time::Timestamp;

/// The planner's knobs, from `[subscriptions]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannerSettings {
    /// Users per subscription, at most 650.
    pub capacity: usize,
    /// The expiry asked for at creation and renewal, at most 60 minutes.
    pub lifetime: Duration,
    /// Renewals start this long before expiry.
    pub renew_before: Duration,
    /// A subscription younger than this is not re-created for new users.
    pub settle: Duration,
    /// The first retry after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        PlannerSettings {
            capacity: MAX_USERS_PER_SUBSCRIPTION,
            lifetime: Duration::from_secs(55 * 60),
            renew_before: Duration::from_secs(10 * 60),
            settle: Duration::from_secs(60),
            retry_min: Duration::from_secs(15),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// A Graph call for one account's subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create {
        account: AccountId,
        members: Vec<UserId>,
        expires_at: Timestamp,
    },
    Renew {
        account: AccountId,
        id: String,
        expires_at: Timestamp,
    },
    Reauthorize {
        account: AccountId,
        id: String,
    },
    Delete {
        account: AccountId,
        id: String,
    },
}

impl Action {
    pub fn account(&self) -> &AccountId {
        match self {
            Action::Create { account, .. }
            | Action::Renew { account, .. }
            | Action::Reauthorize { account, .. }
            | Action::Delete { account, .. } => account,
        }
    }

    fn op(&self) -> Op {
        match self {
            Action::Create { .. } => Op::Create,
            Action::Renew { .. } => Op::Renew,
            Action::Reauthorize { .. } => Op::Reauthorize,
            Action::Delete { .. } => Op::Delete,
        }
    }
}

/// Which call a slot is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Renew,
    Reauthorize,
    Delete,
}

/// Why a call failed, as far as the planner cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Graph no longer has the subscription (404): create a new one.
    Gone,
    /// Anything else: retry after a back-off. The text is for the board.
    Other(String),
}

/// What became of an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created {
        account: AccountId,
        id: String,
        members: Vec<UserId>,
        expires_at: Timestamp,
    },
    Renewed {
        account: AccountId,
        expires_at: Timestamp,
    },
    Reauthorized {
        account: AccountId,
    },
    Deleted {
        account: AccountId,
    },
    Failed {
        account: AccountId,
        failure: Failure,
    },
}

impl Outcome {
    fn account(&self) -> &AccountId {
        match self {
            Outcome::Created { account, .. }
            | Outcome::Renewed { account, .. }
            | Outcome::Reauthorized { account }
            | Outcome::Deleted { account }
            | Outcome::Failed { account, .. } => account,
        }
    }
}

#[derive(Clone, Debug)]
struct Active {
    id: String,
    members: BTreeSet<UserId>,
    /// When it was created (re-created, adopted): the settle time runs
    /// from here.
    created: Timestamp,
    expires_at: Timestamp,
    renew_at: Timestamp,
}

#[derive(Clone, Debug)]
struct Slot {
    healthy: bool,
    desired: BTreeSet<UserId>,
    active: Option<Active>,
    busy: Option<Op>,
    retry_at: Option<Timestamp>,
    failures: u32,
    reauthorize: bool,
    /// Reauthorizing failed: replace the subscription.
    recreate: bool,
    last_error: Option<String>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            healthy: true,
            desired: BTreeSet::new(),
            active: None,
            busy: None,
            retry_at: None,
            failures: 0,
            reauthorize: false,
            recreate: false,
            last_error: None,
        }
    }

    fn covers(&self, now: Timestamp) -> Option<&Active> {
        self.active
            .as_ref()
            .filter(|a| self.healthy && now < a.expires_at && self.busy != Some(Op::Delete))
    }

    fn waiting(&self, now: Timestamp) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }
}

/// A slot's state in one word, for `/readyz`, metrics and the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// The account's token does not work: its users are polled.
    AccountFailed,
    /// Nothing to watch.
    Idle,
    Creating,
    Active,
    Renewing,
    Reauthorizing,
    Deleting,
    /// The last call failed; the next try is at `retry_at`.
    Retrying,
}

impl SlotState {
    pub fn label(self) -> &'static str {
        match self {
            SlotState::AccountFailed => "account_failed",
            SlotState::Idle => "idle",
            SlotState::Creating => "creating",
            SlotState::Active => "active",
            SlotState::Renewing => "renewing",
            SlotState::Reauthorizing => "reauthorizing",
            SlotState::Deleting => "deleting",
            SlotState::Retrying => "retrying",
        }
    }

    pub const ALL: [SlotState; 8] = [
        SlotState::AccountFailed,
        SlotState::Idle,
        SlotState::Creating,
        SlotState::Active,
        SlotState::Renewing,
        SlotState::Reauthorizing,
        SlotState::Deleting,
        SlotState::Retrying,
    ];
}

/// One account's subscription as reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotReport {
    pub account: AccountId,
    pub state: SlotState,
    pub subscription_id: Option<String>,
    /// Users the subscription watches now.
    pub watching: usize,
    /// Users it should watch.
    pub assigned: usize,
    pub expires_at: Option<Timestamp>,
    pub renew_at: Option<Timestamp>,
    pub retry_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Every slot, and the coverage they give.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionsReport {
    pub slots: Vec<SlotReport>,
    /// Users wanted (agents and others in scope).
    pub wanted: usize,
    /// Wanted users covered by an active subscription.
    pub covered: usize,
    /// More service accounts needed to cover every wanted user.
    pub accounts_needed: usize,
}

/// Every account's subscription.
#[derive(Clone, Debug)]
pub struct Planner {
    settings: PlannerSettings,
    slots: BTreeMap<AccountId, Slot>,
    wanted: Wanted,
    assignment: Assignment,
}

impl Planner {
    pub fn new(settings: PlannerSettings) -> Self {
        Planner {
            settings,
            slots: BTreeMap::new(),
            wanted: Wanted::default(),
            assignment: Assignment::default(),
        }
    }

    pub fn settings(&self) -> &PlannerSettings {
        &self.settings
    }

    /// The configured accounts. A slot for an account no longer configured
    /// is forgotten: its subscription lapses at its expiry, and its users
    /// are uncovered at once.
    pub fn set_accounts(&mut self, accounts: &[AccountId]) {
        let keep: BTreeSet<&AccountId> = accounts.iter().collect();
        self.slots.retain(|a, _| keep.contains(a));
        for account in accounts {
            self.slots.entry(account.clone()).or_insert_with(Slot::new);
        }
        self.reassign();
    }

    /// Whether `account`'s token works. A failed account watches nobody
    /// from now on; a recovered one gets users again.
    pub fn set_health(&mut self, account: &str, healthy: bool) {
        let Some(slot) = self.slots.get_mut(account) else {
            return;
        };
        if slot.healthy == healthy {
            return;
        }
        slot.healthy = healthy;
        if !healthy {
            // Without a token it can be neither renewed nor deleted; Graph
            // lets it lapse. A new one is made once the account is back.
            slot.active = None;
            slot.reauthorize = false;
            slot.recreate = false;
            slot.retry_at = None;
            slot.failures = 0;
        }
        self.reassign();
    }

    /// The users to cover, agents first.
    pub fn set_wanted(&mut self, wanted: Wanted) {
        self.wanted = wanted;
        self.reassign();
    }

    /// A subscription found at start (listed from Graph) for `account`,
    /// kept instead of created anew.
    pub fn adopt(
        &mut self,
        account: &str,
        id: String,
        members: Vec<UserId>,
        expires_at: Timestamp,
        now: Timestamp,
    ) {
        let settings = self.settings.clone();
        if let Some(slot) = self.slots.get_mut(account) {
            slot.active = Some(active(&settings, id, members, now, expires_at));
        }
        self.reassign();
    }

    fn reassign(&mut self) {
        let healthy: Vec<AccountId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.healthy)
            .map(|(a, _)| a.clone())
            .collect();
        // Stay-put is measured against what each subscription watches now
        // (or, while none does, against what was asked for).
        let previous: BTreeMap<AccountId, BTreeSet<UserId>> = self
            .slots
            .iter()
            .map(|(a, s)| {
                let now = s.active.as_ref().map_or(&s.desired, |x| &x.members);
                (a.clone(), now.clone())
            })
            .collect();
        self.assignment = assign(&self.wanted, &healthy, &previous, self.settings.capacity);
        for (account, slot) in &mut self.slots {
            slot.desired = self
                .assignment
                .by_account
                .get(account)
                .cloned()
                .unwrap_or_default();
        }
    }

    /// The calls due at `now`; each slot is marked busy until its outcome
    /// is [`applied`](Planner::apply).
    pub fn due(&mut self, now: Timestamp) -> Vec<Action> {
        let settings = &self.settings;
        let mut actions = Vec::new();
        for (account, slot) in &mut self.slots {
            if slot.busy.is_some() || !slot.healthy {
                continue;
            }
            if slot.active.as_ref().is_some_and(|a| now >= a.expires_at) {
                // Lapsed: Graph has dropped it.
                slot.active = None;
                slot.reauthorize = false;
            }
            if slot.waiting(now) {
                continue;
            }
            let action = match &slot.active {
                None if slot.desired.is_empty() => None,
                None => Some(Action::Create {
                    account: account.clone(),
                    members: slot.desired.iter().cloned().collect(),
                    expires_at: now + settings.lifetime,
                }),
                Some(a) => {
                    let added = !slot.desired.is_subset(&a.members);
                    let settled = now >= a.created + settings.settle;
                    let renewal = now >= a.renew_at;
                    if slot.desired.is_empty()
                        || slot.recreate
                        || (added && settled)
                        || (renewal && slot.desired != a.members)
                    {
                        Some(Action::Delete {
                            account: account.clone(),
                            id: a.id.clone(),
                        })
                    } else if slot.reauthorize {
                        Some(Action::Reauthorize {
                            account: account.clone(),
                            id: a.id.clone(),
                        })
                    } else if renewal {
                        Some(Action::Renew {
                            account: account.clone(),
                            id: a.id.clone(),
                            expires_at: now + settings.lifetime,
                        })
                    } else {
                        None
                    }
                }
            };
            if let Some(action) = action {
                slot.busy = Some(action.op());
                actions.push(action);
            }
        }
        actions
    }

    /// What became of a call returned by [`due`](Planner::due).
    pub fn apply(&mut self, outcome: Outcome, now: Timestamp) {
        let settings = self.settings.clone();
        let Some(slot) = self.slots.get_mut(outcome.account()) else {
            return;
        };
        let op = slot.busy.take();
        match outcome {
            Outcome::Created {
                id,
                members,
                expires_at,
                ..
            } => {
                slot.active = Some(active(&settings, id, members, now, expires_at));
                slot.reauthorize = false;
                slot.recreate = false;
                succeeded(slot);
            }
            Outcome::Renewed { expires_at, .. } => {
                if let Some(a) = &mut slot.active {
                    a.expires_at = expires_at;
                    a.renew_at = renew_at(&a.id, now, expires_at, settings.renew_before);
                }
                succeeded(slot);
            }
            Outcome::Reauthorized { .. } => {
                slot.reauthorize = false;
                succeeded(slot);
            }
            Outcome::Deleted { .. } => {
                slot.active = None;
                slot.reauthorize = false;
                slot.recreate = false;
                succeeded(slot);
            }
            Outcome::Failed {
                failure: Failure::Gone,
                ..
            } if op != Some(Op::Create) => {
                slot.active = None;
                slot.reauthorize = false;
                slot.recreate = false;
                slot.last_error = Some("the subscription no longer exists in Graph".into());
            }
            Outcome::Failed { failure, .. } => {
                // Anything else, and a 404 to a create (a wrong path or an
                // unknown user, not a subscription gone): back off.
                let message = match failure {
                    Failure::Other(message) => message,
                    Failure::Gone => "Graph answered 404 to the create".to_string(),
                };
                if op == Some(Op::Reauthorize) {
                    // Reauthorizing failed: a new subscription is the way out.
                    slot.reauthorize = false;
                    slot.recreate = true;
                }
                slot.failures = slot.failures.saturating_add(1);
                let shift = slot.failures.saturating_sub(1).min(16);
                let wait = settings
                    .retry_min
                    .saturating_mul(1 << shift)
                    .min(settings.retry_max);
                slot.retry_at = Some(now + wait);
                slot.last_error = Some(message);
            }
        }
    }

    /// A lifecycle notification for subscription `id`. Returns the users
    /// to read at once (for `missed`, and after `subscriptionRemoved` since
    /// changes may have gone unnotified), or `None` for a subscription the
    /// planner does not hold. An event this build does not know changes
    /// nothing.
    pub fn lifecycle(&mut self, id: &str, event: Lifecycle) -> Option<Vec<UserId>> {
        let slot = self
            .slots
            .values_mut()
            .find(|s| s.active.as_ref().is_some_and(|a| a.id == id))?;
        match event {
            Lifecycle::ReauthorizationRequired => {
                slot.reauthorize = true;
                Some(Vec::new())
            }
            Lifecycle::SubscriptionRemoved => {
                let members = slot
                    .active
                    .take()
                    .map(|a| a.members.into_iter().collect())
                    .unwrap_or_default();
                slot.reauthorize = false;
                slot.retry_at = None;
                Some(members)
            }
            Lifecycle::Other(_) => Some(Vec::new()),
            Lifecycle::Missed => Some(
                slot.active
                    .as_ref()
                    .map(|a| a.members.iter().cloned().collect())
                    .unwrap_or_default(),
            ),
        }
    }

    /// The account whose active subscription has `id`.
    pub fn account_of(&self, id: &str) -> Option<&AccountId> {
        self.slots
            .iter()
            .find(|(_, s)| s.active.as_ref().is_some_and(|a| a.id == id))
            .map(|(a, _)| a)
    }

    /// Users covered at `now`: watched by an active, unexpired subscription
    /// of a healthy account.
    pub fn covered(&self, now: Timestamp) -> HashSet<UserId> {
        self.slots
            .values()
            .filter_map(|s| s.covers(now))
            .flat_map(|a| a.members.iter().cloned())
            .collect()
    }

    /// When `due` may next return something, if ever without new input.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let settle = self.settings.settle;
        self.slots
            .values()
            .filter(|s| s.healthy && s.busy.is_none())
            .filter_map(|s| {
                let mut times = Vec::with_capacity(4);
                times.extend(s.retry_at);
                if let Some(a) = &s.active {
                    times.push(a.renew_at);
                    times.push(a.expires_at);
                    if !s.desired.is_subset(&a.members) {
                        times.push(a.created + settle);
                    }
                }
                times.into_iter().min()
            })
            .min()
    }

    pub fn report(&self, now: Timestamp) -> SubscriptionsReport {
        let slots = self
            .slots
            .iter()
            .map(|(account, s)| {
                let state = match (s.healthy, s.busy, &s.active) {
                    (false, _, _) => SlotState::AccountFailed,
                    (_, Some(Op::Create), _) => SlotState::Creating,
                    (_, Some(Op::Renew), _) => SlotState::Renewing,
                    (_, Some(Op::Reauthorize), _) => SlotState::Reauthorizing,
                    (_, Some(Op::Delete), _) => SlotState::Deleting,
                    _ if s.waiting(now) => SlotState::Retrying,
                    (_, None, Some(a)) if now < a.expires_at => SlotState::Active,
                    _ => SlotState::Idle,
                };
                SlotReport {
                    account: account.clone(),
                    state,
                    subscription_id: s.active.as_ref().map(|a| a.id.clone()),
                    watching: s.active.as_ref().map_or(0, |a| a.members.len()),
                    assigned: s.desired.len(),
                    expires_at: s.active.as_ref().map(|a| a.expires_at),
                    renew_at: s.active.as_ref().map(|a| a.renew_at),
                    retry_at: s.retry_at.filter(|at| now < *at),
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
        let wanted: HashSet<&UserId> = self.wanted.in_order().collect();
        let covered = self
            .covered(now)
            .iter()
            .filter(|u| wanted.contains(u))
            .count();
        SubscriptionsReport {
            slots,
            wanted: wanted.len(),
            covered,
            accounts_needed: self.assignment.accounts_needed,
        }
    }
}

fn active(
    settings: &PlannerSettings,
    id: String,
    members: Vec<UserId>,
    now: Timestamp,
    expires_at: Timestamp,
) -> Active {
    let renew_at = renew_at(&id, now, expires_at, settings.renew_before);
    Active {
        id,
        members: members.into_iter().collect(),
        created: now,
        expires_at,
        renew_at,
    }
}

fn succeeded(slot: &mut Slot) {
    slot.failures = 0;
    slot.retry_at = None;
    slot.last_error = None;
}

#[cfg(test)]
mod tests;

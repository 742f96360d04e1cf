//! The subscription worker: runs the [planner](crate::subscriptions) on
//! the clock, makes the calls it asks for (at most one per account at a
//! time, each with a timeout), feeds their outcomes back, and keeps the
//! pollers' lists in step with who is covered ([`Coverage`]).
//!
//! At start it lists every account's subscriptions and keeps the one of
//! ours it finds (a restart within the hour re-creates nothing); anything
//! else of ours is deleted, since Graph allows one presence subscription
//! per account and app. A create refused as a conflict does the same and
//! tries once more.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::calls::{CallFailure, Listed, SubscriptionCalls};
use super::coverage::{Coverage, Routed, Tier};
use crate::daemon::tasks::{TaskState, TaskStatus};
use crate::graph::SharedClock;
use crate::graph::poller::{PollChanges, PollUsersSender};
use crate::notifications::LifecycleEvent as Lifecycle;
use crate::stop::Stop;
use crate::subscriptions::{
    AccountId, Action, Failure, Outcome, Planner, PlannerSettings, SubscriptionsReport, UserId,
};
use crate::time::Timestamp;

/// Every Graph call of the worker gives up after this long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// New users are gathered this long before the planner places them, so a
/// burst of registrations is placed once.
pub const WANTED_SETTLE: Duration = Duration::from_secs(1);

/// The pollers the worker keeps in step.
#[derive(Clone, Debug)]
pub struct PollerLists {
    pub agent: PollUsersSender,
    pub directory: PollUsersSender,
    pub reconcile: PollUsersSender,
}

/// What the worker publishes for `/readyz`, metrics and the board.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionsStatus {
    pub report: SubscriptionsReport,
    /// Users of either tier covered by a subscription.
    pub subscribed: usize,
    /// Users of either tier read by polling alone.
    pub polled: usize,
    /// Calls made, by `(call, outcome)`.
    pub calls: BTreeMap<(&'static str, &'static str), u64>,
    /// Lifecycle notifications received.
    pub lifecycle: u64,
}

/// Everything the worker is given.
pub struct SubscriptionWorker {
    pub calls: Arc<dyn SubscriptionCalls>,
    pub settings: PlannerSettings,
    pub accounts: Vec<AccountId>,
    /// Whether each account's token works; changes take effect at once.
    pub health: watch::Receiver<BTreeMap<AccountId, bool>>,
    /// Agents linked and unlinked, from the sync loop.
    pub agents: PollChanges,
    /// Other users in scope, from the directory view.
    pub directory: PollChanges,
    pub pollers: PollerLists,
    /// Lifecycle notifications: subscription id and event.
    pub lifecycle: mpsc::Receiver<(String, Lifecycle)>,
    /// Users to read at once (a `missed` or removed subscription's).
    pub read_now: mpsc::UnboundedSender<Vec<UserId>>,
    pub status: watch::Sender<SubscriptionsStatus>,
    pub clock: SharedClock,
}

type Done = (Action, Result<Answer, CallFailure>);

enum Answer {
    Created(String, Timestamp),
    Renewed(Timestamp),
    Done,
}

impl SubscriptionWorker {
    fn now(&self) -> Timestamp {
        Timestamp::from_utc(self.clock.wall())
    }

    pub async fn run(mut self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        let mut planner = Planner::new(self.settings.clone());
        planner.set_accounts(&self.accounts);
        let health = self.health.borrow_and_update().clone();
        for (account, ok) in &health {
            planner.set_health(account, *ok);
        }
        let mut calls_made: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        let mut lifecycle_seen: u64 = 0;
        // What Graph still holds from before a restart is listed while the
        // pollers are already fed: nothing waits for Graph at start.
        let listing = list_all(Arc::clone(&self.calls), self.accounts.clone(), health);
        tokio::pin!(listing);
        let mut adopted = false;
        let mut strays: JoinSet<bool> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Action> = HashMap::new();

        let mut coverage = Coverage::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut wanted_since: Option<Timestamp> = None;
        // Nothing is planned before the users are first known: an adopted
        // subscription must not be deleted for watching nobody yet.
        let mut known = false;
        let mut agents_open = true;
        let mut directory_open = true;
        loop {
            let now = self.now();
            if let Some(since) = wanted_since
                && now >= since + WANTED_SETTLE
            {
                planner.set_wanted(coverage.wanted());
                wanted_since = None;
                known = true;
            }
            for action in if known && adopted {
                planner.due(now)
            } else {
                Vec::new()
            } {
                let calls = Arc::clone(&self.calls);
                let handle = tasks.spawn(call(calls, action.clone()));
                running.insert(handle.id(), action);
            }
            let mut routed = Routed::default();
            coverage.set_covered(planner.covered(now), &mut routed);
            self.send(routed);
            self.status.send_replace(SubscriptionsStatus {
                report: planner.report(now),
                subscribed: coverage.subscribed(),
                polled: coverage.polled(),
                calls: calls_made.clone(),
                lifecycle: lifecycle_seen,
            });

            // Woken by the planner, by the settle time of new users, and at
            // least every 30 s so an expiry shows even when nothing happens.
            let mut wake = now + Duration::from_secs(30);
            if let Some(at) = planner.next_wakeup() {
                wake = wake.min(at);
            }
            if let Some(since) = wanted_since {
                wake = wake.min(since + WANTED_SETTLE);
            }
            let sleep = self
                .clock
                .sleep_until(self.clock.now() + wake.since(now).max(Duration::from_millis(1)));
            let mut routed = Routed::default();
            tokio::select! {
                () = stop.stopped() => break,
                changes = self.agents.recv(), if agents_open => match changes {
                    Some(changes) => {
                        let mut changed = coverage.apply(Tier::Agent, changes, &mut routed);
                        while let Ok(more) = self.agents.try_recv() {
                            changed |= coverage.apply(Tier::Agent, more, &mut routed);
                        }
                        if changed {
                            wanted_since.get_or_insert(now);
                        }
                    }
                    None => agents_open = false,
                },
                changes = self.directory.recv(), if directory_open => match changes {
                    Some(changes) => {
                        let mut changed = coverage.apply(Tier::Directory, changes, &mut routed);
                        while let Ok(more) = self.directory.try_recv() {
                            changed |= coverage.apply(Tier::Directory, more, &mut routed);
                        }
                        if changed {
                            wanted_since.get_or_insert(now);
                        }
                    }
                    None => directory_open = false,
                },
                listed = &mut listing, if !adopted => {
                    adopted = true;
                    self.adopt(&mut planner, listed, &mut strays, &mut calls_made);
                },
                Some(deleted) = strays.join_next() => {
                    let ok = deleted.unwrap_or(false);
                    *calls_made
                        .entry(("delete", if ok { "ok" } else { "failed" }))
                        .or_default() += 1;
                },
                Some(done) = tasks.join_next_with_id() => {
                    let now = self.now();
                    match done {
                        Ok((id, (action, result))) => {
                            running.remove(&id);
                            let label = (call_name(&action), outcome_name(&result));
                            *calls_made.entry(label).or_default() += 1;
                            if let Err(e) = &result {
                                tracing::warn!(account = %action.account(), call = label.0, error = %e, "a presence subscription call failed");
                            }
                            planner.apply(outcome(action, result), now);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a presence subscription call panicked");
                            // Its slot must not wait for an answer forever.
                            if let Some(action) = running.remove(&e.id()) {
                                planner.apply(
                                    Outcome::Failed {
                                        account: action.account().clone(),
                                        failure: Failure::Other(format!("the call stopped: {e}")),
                                    },
                                    now,
                                );
                            }
                        }
                    }
                },
                Some((id, event)) = self.lifecycle.recv() => {
                    lifecycle_seen += 1;
                    match planner.lifecycle(&id, event.clone()) {
                        Some(users) if !users.is_empty() => {
                            tracing::info!(subscription = %id, ?event, users = users.len(), "reading the subscription's users at once");
                            let _ = self.read_now.send(users);
                        }
                        Some(_) => tracing::info!(subscription = %id, ?event, "lifecycle notification"),
                        None => tracing::info!(subscription = %id, ?event, "lifecycle notification for a subscription not ours (any more): ignored"),
                    }
                },
                Ok(()) = self.health.changed() => {
                    let health = self.health.borrow_and_update().clone();
                    for (account, ok) in &health {
                        planner.set_health(account, *ok);
                    }
                },
                () = sleep => {},
            }
            self.send(routed);
        }
        tasks.abort_all();
        strays.abort_all();
        Ok(())
    }

    fn send(&self, routed: Routed) {
        self.pollers.agent.send(routed.agent);
        self.pollers.directory.send(routed.directory);
        self.pollers.reconcile.send(routed.reconcile);
    }

    /// Keeps each account's subscription of ours that Graph still holds
    /// (made for our certificate, not about to expire); deletes any other
    /// of ours, in the background.
    fn adopt(
        &self,
        planner: &mut Planner,
        listed: Vec<(AccountId, Result<Vec<Listed>, String>)>,
        strays: &mut JoinSet<bool>,
        calls_made: &mut BTreeMap<(&'static str, &'static str), u64>,
    ) {
        let now = self.now();
        for (account, listed) in listed {
            let listed = match listed {
                Ok(listed) => {
                    *calls_made.entry(("list", "ok")).or_default() += 1;
                    listed
                }
                Err(e) => {
                    tracing::warn!(%account, error = %e, "could not list the account's subscriptions; creating anew");
                    *calls_made.entry(("list", "failed")).or_default() += 1;
                    continue;
                }
            };
            let mut kept = false;
            for sub in listed {
                if sub.notification_url != self.calls.notification_url() || sub.members.is_empty() {
                    continue;
                }
                // One made for another certificate (rotated, or rich
                // turned on or off) is replaced, not kept.
                let same_kind = sub.certificate_id.as_deref() == self.calls.certificate_id();
                if !kept && same_kind && sub.expires_at > now + Duration::from_secs(60) {
                    tracing::info!(%account, subscription = %sub.id, users = sub.members.len(), "kept the account's subscription from before");
                    planner.adopt(&account, sub.id, sub.members, sub.expires_at, now);
                    kept = true;
                } else {
                    let calls = Arc::clone(&self.calls);
                    let account = account.clone();
                    strays.spawn(async move {
                        let deleted =
                            tokio::time::timeout(CALL_TIMEOUT, calls.delete(account, sub.id)).await;
                        matches!(deleted, Ok(Ok(()) | Err(CallFailure::Gone)))
                    });
                }
            }
        }
    }
}

/// Lists every account's subscriptions at once, each call with a timeout;
/// a failed account is not asked.
async fn list_all(
    calls: Arc<dyn SubscriptionCalls>,
    accounts: Vec<AccountId>,
    health: BTreeMap<AccountId, bool>,
) -> Vec<(AccountId, Result<Vec<Listed>, String>)> {
    let mut lists = JoinSet::new();
    for account in accounts {
        if health.get(&account) == Some(&false) {
            continue;
        }
        let calls = Arc::clone(&calls);
        lists.spawn(async move {
            let listed = match tokio::time::timeout(CALL_TIMEOUT, calls.list(account.clone())).await
            {
                Ok(Ok(listed)) => Ok(listed),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "Graph did not answer within {}s",
                    CALL_TIMEOUT.as_secs()
                )),
            };
            (account, listed)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = lists.join_next().await {
        if let Ok(one) = done {
            all.push(one);
        }
    }
    all
}

async fn call(calls: Arc<dyn SubscriptionCalls>, action: Action) -> Done {
    let result = tokio::time::timeout(CALL_TIMEOUT, answer(&*calls, &action))
        .await
        .unwrap_or_else(|_| {
            Err(CallFailure::Other(format!(
                "Graph did not answer within {}s",
                CALL_TIMEOUT.as_secs()
            )))
        });
    (action, result)
}

async fn answer(calls: &dyn SubscriptionCalls, action: &Action) -> Result<Answer, CallFailure> {
    match action {
        Action::Create {
            account,
            members,
            expires_at,
        } => {
            match calls
                .create(account.clone(), members.clone(), *expires_at)
                .await
            {
                Err(CallFailure::Conflict) => {
                    // One of ours from before blocks it (Graph allows one per
                    // account and app): delete ours and try once more.
                    for old in calls.list(account.clone()).await? {
                        if old.notification_url == calls.notification_url() {
                            match calls.delete(account.clone(), old.id).await {
                                Ok(()) | Err(CallFailure::Gone) => {}
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    calls
                        .create(account.clone(), members.clone(), *expires_at)
                        .await
                        .map(|(id, at)| Answer::Created(id, at))
                }
                other => other.map(|(id, at)| Answer::Created(id, at)),
            }
        }
        Action::Renew {
            account,
            id,
            expires_at,
        } => calls
            .renew(account.clone(), id.clone(), *expires_at)
            .await
            .map(Answer::Renewed),
        Action::Reauthorize { account, id } => calls
            .reauthorize(account.clone(), id.clone())
            .await
            .map(|()| Answer::Done),
        Action::Delete { account, id } => match calls.delete(account.clone(), id.clone()).await {
            Ok(()) | Err(CallFailure::Gone) => Ok(Answer::Done),
            Err(e) => Err(e),
        },
    }
}

fn outcome(action: Action, result: Result<Answer, CallFailure>) -> Outcome {
    let account = action.account().clone();
    match (action, result) {
        (Action::Create { members, .. }, Ok(Answer::Created(id, expires_at))) => Outcome::Created {
            account,
            id,
            members,
            expires_at,
        },
        (_, Ok(Answer::Renewed(expires_at))) => Outcome::Renewed {
            account,
            expires_at,
        },
        (Action::Reauthorize { .. }, Ok(_)) => Outcome::Reauthorized { account },
        (Action::Delete { .. }, Ok(_)) => Outcome::Deleted { account },
        (_, Ok(_)) => Outcome::Failed {
            account,
            failure: Failure::Other("an unexpected answer".into()),
        },
        (_, Err(CallFailure::Gone)) => Outcome::Failed {
            account,
            failure: Failure::Gone,
        },
        (_, Err(e)) => Outcome::Failed {
            account,
            failure: Failure::Other(e.to_string()),
        },
    }
}

fn call_name(action: &Action) -> &'static str {
    match action {
        Action::Create { .. } => "create",
        Action::Renew { .. } => "renew",
        Action::Reauthorize { .. } => "reauthorize",
        Action::Delete { .. } => "delete",
    }
}

fn outcome_name(result: &Result<Answer, CallFailure>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CallFailure::Gone) => "gone",
        Err(CallFailure::Conflict) => "conflict",
        Err(CallFailure::Other(_)) => "failed",
    }
}

#[cfg(test)]
mod tests;

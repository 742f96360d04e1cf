//! The subscriptions' metrics: users per channel, every subscription's
//! state, the service accounts, the calls made, and the Graph reads that
//! notifications saved.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::inflow::ReadNowStats;
use super::worker::SubscriptionsStatus;
use crate::accounts::{AccountState, AccountTokens};
use crate::graph::{MAX_IDS_PER_CALL, PollReport};
use crate::metrics::{CounterVec, Gauge, GaugeVec, MetricsError, Registry};
use crate::receiver::Counters;

/// Every `reason` of `presence_sync_service_account_failure`; the ones not
/// in force are kept at 0 so a recovered account shows no stale failure.
const FAILURE_REASONS: &[&str] = &[
    "revoked",
    "inactive",
    "mfa_required",
    "conditional_access",
    "consent_missing",
    "not_signed_in",
    "rejected",
    "unreachable",
    "vault",
];
use crate::subscriptions::SlotState;

use crate::daemon::metrics::mirror;

/// Registered only when `[subscriptions] enabled`.
#[derive(Debug)]
pub struct SubscriptionMetrics {
    status: watch::Receiver<SubscriptionsStatus>,
    reconcile: Arc<PollReport>,
    read_now: Arc<ReadNowStats>,
    users: GaugeVec<1>,
    states: GaugeVec<1>,
    accounts_needed: Gauge,
    calls: CounterVec<2>,
    reconcile_round: Gauge,
    read_now_calls: CounterVec<0>,
    reads_saved: Gauge,
    started: std::time::Instant,
    counters: Arc<Counters>,
    notifications: CounterVec<1>,
    rejected: CounterVec<1>,
    batches: CounterVec<0>,
    delay: GaugeVec<1>,
    accounts: Vec<Arc<AccountTokens>>,
    account_up: GaugeVec<1>,
    account_failure: GaugeVec<2>,
}

impl SubscriptionMetrics {
    pub fn register(
        registry: &Registry,
        status: watch::Receiver<SubscriptionsStatus>,
        reconcile: Arc<PollReport>,
        read_now: Arc<ReadNowStats>,
        counters: Arc<Counters>,
        accounts: Vec<Arc<AccountTokens>>,
    ) -> Result<Self, MetricsError> {
        Ok(SubscriptionMetrics {
            counters,
            accounts,
            account_up: registry.gauge_vec(
                "presence_sync_service_account_up",
                "1 while a service account's token works, 0 once it stopped (its users are polled); `presence-sync login` fixes it",
                ["account"],
            )?,
            account_failure: registry.gauge_vec(
                "presence_sync_service_account_failure",
                "1 for why a service account's token stopped working: revoked, inactive, mfa_required, conditional_access, consent_missing, not_signed_in, rejected, unreachable, vault",
                ["account", "reason"],
            )?,
            notifications: registry.counter_vec(
                "presence_sync_notifications_total",
                "Change notifications processed: received, applied (a presence passed on or a read asked for) and dropped as duplicates or older than what was applied",
                ["outcome"],
            )?,
            rejected: registry.counter_vec(
                "presence_sync_notifications_rejected_total",
                "Change notifications (or, batch_*, whole batches at the door) refused, by reason: nothing of them was applied",
                ["reason"],
            )?,
            batches: registry.counter_vec(
                "presence_sync_notification_batches_total",
                "Notification batches processed from the inbox",
                [],
            )?,
            delay: registry.gauge_vec(
                "presence_sync_notification_processing_delay_seconds",
                "From a batch's arrival at the receiver to its processing: mean and largest since the start",
                ["stat"],
            )?,
            status,
            reconcile,
            read_now,
            users: registry.gauge_vec(
                "presence_sync_users_by_channel",
                "Users (agents and others in scope) by how their presence is learnt: subscribed (notifications, plus reconciliation reads) or polled",
                ["channel"],
            )?,
            states: registry.gauge_vec(
                "presence_sync_subscriptions",
                "Service accounts' presence subscriptions by state",
                ["state"],
            )?,
            accounts_needed: registry.gauge(
                "presence_sync_subscription_accounts_needed",
                "More service accounts needed to cover every wanted user (650 each)",
            )?,
            calls: registry.counter_vec(
                "presence_sync_subscription_calls_total",
                "Graph subscription calls by call and outcome",
                ["call", "outcome"],
            )?,
            reconcile_round: registry.gauge(
                "presence_sync_reconcile_poll_round_seconds",
                "The reconciliation poller's round: every subscribed user is read once per round",
            )?,
            read_now_calls: registry.counter_vec(
                "presence_sync_notification_reads_total",
                "Graph reads made because a notification without data (or a missed one) named users",
                [],
            )?,
            reads_saved: registry.gauge(
                "presence_sync_graph_reads_saved_per_minute",
                "Presence reads per minute subscriptions save: what polling the subscribed users at the agent round would cost, less reconciliation and the reads notifications ask for",
            )?,
            started: std::time::Instant::now(),
        })
    }

    /// Brings every series up to date; `agent_round` is the agent poller's
    /// round now.
    pub fn render(&self, agent_round: std::time::Duration) {
        let status = self.status.borrow().clone();
        self.users
            .with(["subscribed"])
            .set(status.subscribed as f64);
        self.users.with(["polled"]).set(status.polled as f64);
        for state in SlotState::ALL {
            let n = status
                .report
                .slots
                .iter()
                .filter(|s| s.state == state)
                .count();
            self.states.with([state.label()]).set(n as f64);
        }
        self.accounts_needed
            .set(status.report.accounts_needed as f64);
        for ((call, outcome), n) in &status.calls {
            mirror(&self.calls.with([call, outcome]), *n);
        }
        for account in &self.accounts {
            let failed = match &account.status().state {
                AccountState::Ok => None,
                AccountState::Failed(e) => Some(e.kind()),
            };
            self.account_up
                .with([account.upn()])
                .set(if failed.is_none() { 1.0 } else { 0.0 });
            for reason in FAILURE_REASONS {
                let now = if failed == Some(*reason) { 1.0 } else { 0.0 };
                self.account_failure.with([account.upn(), reason]).set(now);
            }
        }
        let seen = self.counters.snapshot();
        mirror(&self.notifications.with(["received"]), seen.received);
        mirror(&self.notifications.with(["applied"]), seen.applied);
        mirror(&self.notifications.with(["duplicate"]), seen.duplicates);
        for (reason, n) in &seen.rejected {
            mirror(&self.rejected.with([reason]), *n);
        }
        mirror(&self.batches.with([]), seen.batches);
        if seen.batches > 0 {
            self.delay
                .with(["mean"])
                .set(seen.delay_seconds_sum / seen.batches as f64);
        }
        self.delay.with(["max"]).set(seen.delay_seconds_max);
        self.reconcile_round
            .set(self.reconcile.status().round.as_secs_f64());
        let read_now = self.read_now.calls.load(Ordering::Relaxed);
        mirror(&self.read_now_calls.with([]), read_now);
        self.reads_saved
            .set(self.reads_saved(status.subscribed, agent_round));
    }

    /// Reads per minute saved now, `subscribed` users and the agent
    /// poller's `agent_round` given.
    pub fn reads_saved(&self, subscribed: usize, agent_round: std::time::Duration) -> f64 {
        let read_now = self.read_now.calls.load(Ordering::Relaxed);
        reads_saved_per_minute(
            subscribed,
            agent_round,
            self.reconcile.status().round,
            read_now as f64 * 60.0 / self.started.elapsed().as_secs_f64().max(60.0),
        )
    }
}

/// Calls per minute polling `users` at `agent_round` would take, less
/// reconciling them at `reconcile_round` and `read_now_per_minute`.
pub fn reads_saved_per_minute(
    users: usize,
    agent_round: std::time::Duration,
    reconcile_round: std::time::Duration,
    read_now_per_minute: f64,
) -> f64 {
    let calls = users.div_ceil(MAX_IDS_PER_CALL) as f64;
    let per_minute = |round: std::time::Duration| {
        let secs = round.as_secs_f64();
        if secs > 0.0 { calls * 60.0 / secs } else { 0.0 }
    };
    (per_minute(agent_round) - per_minute(reconcile_round) - read_now_per_minute).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_saving_is_the_difference_of_two_rounds() {
        // 10,000 users: 16 calls; every 0.55 s is 1,745/min, every 60 s is 16.
        let saved = reads_saved_per_minute(
            10_000,
            Duration::from_millis(550),
            Duration::from_secs(60),
            0.0,
        );
        assert!((saved - (16.0 * 60.0 / 0.55 - 16.0)).abs() < 1e-6);
        assert_eq!(
            reads_saved_per_minute(0, Duration::from_secs(1), Duration::from_secs(60), 0.0),
            0.0
        );
    }
}

//! The subscriptions mode: service accounts added to the simulator
//! (`svc-presence-N@domain`, one per 650 agents), each signed in with
//! `presence-sync login` before the daemon starts, the simulator's
//! notification delay, and what the tool reads of them: the daemon's
//! `/readyz` `subscriptions` section and the simulator's notification
//! counts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::drive::Http;
use crate::processes::Proc;

/// Users Graph takes in one presence subscription.
pub const USERS_PER_SUBSCRIPTION: usize = 650;

/// The service accounts `agents` need: `svc-presence-1@domain`, ...
pub fn account_names(agents: usize, domain: &str) -> Vec<String> {
    let count = agents.div_ceil(USERS_PER_SUBSCRIPTION).max(1);
    (1..=count)
        .map(|i| format!("svc-presence-{i}@{domain}"))
        .collect()
}

/// Adds the accounts as users of the simulator (`POST /_sim/users`), in
/// order: auto-approve signs in the first `svc-` user not signed in yet,
/// so logging them in in the same order matches each code to its account.
pub async fn add_accounts(http: &Http, accounts: &[String]) -> anyhow::Result<()> {
    for upn in accounts {
        let response = http
            .client
            .post(format!("{}/_sim/users", http.sim))
            .json(&json!({
                "userPrincipalName": upn,
                "displayName": "Presence sync service account",
            }))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("POST /_sim/users {upn}: {status}: {text}");
        }
    }
    Ok(())
}

/// Sets the simulator's notification delay (and jitter) through
/// `POST /_sim/notifications`.
pub async fn set_delay(http: &Http, delay: Duration, jitter: Duration) -> anyhow::Result<()> {
    let response = http
        .client
        .post(format!("{}/_sim/notifications", http.sim))
        .json(&json!({
            "delay_ms": delay.as_millis() as u64,
            "jitter_ms": jitter.as_millis() as u64,
        }))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("POST /_sim/notifications: {status}: {text}");
    }
    Ok(())
}

/// The daemon's `/readyz` `subscriptions` section, as it is (any status:
/// a failed account makes `/readyz` 503 and is named there).
pub async fn readyz_section(http: &Http, base: &str) -> anyhow::Result<Value> {
    let response = http.client.get(format!("{base}/readyz")).send().await?;
    let body: Value = response.json().await.context("/readyz is not JSON")?;
    Ok(body.get("subscriptions").cloned().unwrap_or(Value::Null))
}

/// Waits until the subscriptions watch at least `want` users; the time
/// that took and the section as last read. Gives up (without failing:
/// a daemon that does not get there is a result) after `within`.
pub async fn wait_covered(
    http: &Http,
    base: &str,
    want: usize,
    within: Duration,
    daemon: &mut Proc,
) -> anyhow::Result<(Option<f64>, Value)> {
    let started = Instant::now();
    loop {
        let section = readyz_section(http, base).await.unwrap_or(Value::Null);
        let subscribed = section
            .get("users_subscribed")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if subscribed as usize >= want {
            return Ok((Some(started.elapsed().as_secs_f64()), section));
        }
        daemon.check_alive()?;
        if started.elapsed() > within {
            return Ok((None, section));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The simulator's notification counters.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct NotificationCounts {
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub retries: u64,
    pub subscriptions_live: u64,
    pub subscriptions_created: u64,
}

impl NotificationCounts {
    pub fn from_stats(stats: &Value) -> NotificationCounts {
        let n = |section: &str, key: &str| {
            stats
                .get(section)
                .and_then(|s| s.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        NotificationCounts {
            delivered: n("notifications", "delivered"),
            failed: n("notifications", "failed"),
            dropped: n("notifications", "dropped"),
            retries: n("notifications", "retries"),
            subscriptions_live: n("subscriptions", "live"),
            subscriptions_created: n("subscriptions", "created"),
        }
    }

    /// Counts over a window; the subscriptions as they are at its end.
    pub fn since(self, before: NotificationCounts) -> NotificationCounts {
        NotificationCounts {
            delivered: self.delivered.saturating_sub(before.delivered),
            failed: self.failed.saturating_sub(before.failed),
            dropped: self.dropped.saturating_sub(before.dropped),
            retries: self.retries.saturating_sub(before.retries),
            ..self
        }
    }
}

/// What the subscriptions mode found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SubscriptionsReport {
    pub accounts: Vec<String>,
    /// Each `presence-sync login`, in seconds.
    pub login_s: Vec<f64>,
    /// The simulator's notification delay and jitter, in ms (`None`: its
    /// default).
    pub notification_delay_ms: Option<u64>,
    pub notification_jitter_ms: Option<u64>,
    /// From the agents' registration to the subscriptions watching every
    /// agent; `None` when that did not happen within the tool's patience.
    pub covered_after_s: Option<f64>,
    /// `/readyz` `subscriptions` when coverage was reached (or given up).
    pub readyz_at_coverage: Value,
    /// `/readyz` `subscriptions` at the end of the drive.
    pub readyz_after_drive: Value,
    /// Counted by the simulator while the changes ran.
    pub during_drive: NotificationCounts,
}

impl SubscriptionsReport {
    fn count(&self, key: &str) -> Option<u64> {
        self.readyz_after_drive.get(key).and_then(Value::as_u64)
    }

    /// Users subscribed and polled, from `/readyz` after the drive.
    pub fn subscribed_polled(&self) -> (Option<u64>, Option<u64>) {
        (self.count("users_subscribed"), self.count("users_polled"))
    }
}

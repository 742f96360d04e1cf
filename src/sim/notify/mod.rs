//! Change notifications for presence subscriptions: what changed, when it
//! is due, and its delivery to the subscriber.
//!
//! Changes are found from the tenant's sequence numbers, not from timers
//! per user: every [`TICK`] one task brings each watched user's presence up
//! to the simulator's clock (which plays scripted drift and fades) and
//! compares their sequence number with the last one notified for each
//! subscription. When neither the tenant's counter nor the clock moved
//! since the last look, nothing is read. The tick is the simulator's own
//! pacing (a quarter second), well under Graph's delivery delay.
//!
//! A change is due after the configured delay (default 1 s; Graph: under
//! 10 s on average, at most a minute) plus jitter, in real time — the
//! delay is the network's, not the tenant's, so a manual clock does not
//! hold it. Changes due together for one URL go out in one POST. Faults
//! (`POST /_sim/notifications`) drop, duplicate, delay and reorder them.
//!
//! - [`rich`]: `encryptedContent`; [`jwks`]: the signing key behind
//!   `validationTokens`; [`delivery`]: the posts, with timeouts and retries.

pub mod delivery;
pub mod jwks;
pub mod rich;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::rng::Rng;
use super::subscriptions::Subscription;
use crate::time::Timestamp;

/// How often changes are looked for and due batches sent.
pub const TICK: Duration = Duration::from_millis(250);
/// The delay before a change is delivered, by default.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// Delivery faults (`POST /_sim/notifications`).
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationFaults {
    /// Fraction of notifications never sent.
    pub drop_rate: f64,
    /// Fraction of notifications sent twice.
    pub duplicate_rate: f64,
    /// Delay before a change is sent.
    pub delay: Duration,
    /// Up to this much more, drawn per notification.
    pub jitter: Duration,
    /// Notifications of a batch go out in reverse order.
    pub reorder: bool,
}

impl NotificationFaults {
    pub fn with_delay(delay: Duration) -> Self {
        NotificationFaults {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            delay,
            jitter: Duration::ZERO,
            reorder: false,
        }
    }
}

/// Counts as `/_sim/stats` reports them under `notifications`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationStats {
    /// Subscriptions created (handshakes passed).
    pub subscriptions_created: u64,
    /// Change notifications a receiver accepted (2xx).
    pub delivered: u64,
    /// Dropped by the `drop_rate` fault.
    pub dropped: u64,
    /// Sent twice by the `duplicate_rate` fault.
    pub duplicated: u64,
    /// Notifications whose batch failed every attempt.
    pub failed: u64,
    /// POSTs (deliveries and handshakes) whose reply took over 2,900 ms.
    pub slow: u64,
    /// Validation handshakes made, and how many failed.
    pub handshakes: u64,
    pub handshakes_failed: u64,
    /// Lifecycle notifications a receiver accepted.
    pub lifecycle_delivered: u64,
    /// POST attempts after a first failed one.
    pub retries: u64,
}

/// Which URL a batch goes to, and what kind it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Change,
    Lifecycle,
}

#[derive(Clone, Debug)]
struct Pending {
    due: Instant,
    url: String,
    kind: Kind,
    item: Value,
    /// For rich notifications: the app the validation token is for.
    rich_for: Option<String>,
}

/// The engine's state, behind one lock in the adapter.
#[derive(Debug)]
pub struct Notifier {
    pub faults: NotificationFaults,
    pub stats: NotificationStats,
    rng: Rng,
    /// Per subscription: user id → the sequence number last notified.
    seen: HashMap<String, HashMap<String, u64>>,
    pending: Vec<Pending>,
    /// The tenant's counter and the clock at the last look.
    last_look: Option<(u64, Timestamp)>,
}

/// One user's presence as the engine reads it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub id: String,
    pub availability: String,
    pub activity: String,
    pub sequence: u64,
}

/// A batch ready to post.
#[derive(Clone, Debug)]
pub struct Batch {
    pub url: String,
    pub lifecycle: bool,
    pub items: Vec<Value>,
    /// Apps whose validation tokens the batch carries (rich ones).
    pub rich_for: Vec<String>,
}

impl Notifier {
    pub fn new(seed: u64, delay: Duration) -> Self {
        Notifier {
            faults: NotificationFaults::with_delay(delay),
            stats: NotificationStats::default(),
            rng: Rng::new(seed),
            seen: HashMap::new(),
            pending: Vec::new(),
            last_look: None,
        }
    }

    /// Whether a look is needed: the tenant's counter or the clock moved,
    /// or a subscription has no baseline yet.
    pub fn needs_look(
        &self,
        subscriptions: &[Subscription],
        sequence: u64,
        now: Timestamp,
    ) -> bool {
        self.last_look != Some((sequence, now))
            || subscriptions.iter().any(|s| !self.seen.contains_key(&s.id))
    }

    /// Records what a new subscription starts from: nothing before it is
    /// notified.
    pub fn baseline(&mut self, subscription: &Subscription, observed: &[Observed]) {
        let seen = self.seen.entry(subscription.id.clone()).or_default();
        for o in observed {
            seen.entry(o.id.clone()).or_insert(o.sequence);
        }
    }

    /// Compares what `subscription`'s users show now with what was last
    /// notified, and queues a notification for each change.
    pub fn look(
        &mut self,
        subscription: &Subscription,
        tenant_id: &str,
        observed: &[Observed],
        at: Instant,
    ) {
        let fresh = !self.seen.contains_key(&subscription.id);
        let mut changed = Vec::new();
        {
            let seen = self.seen.entry(subscription.id.clone()).or_default();
            for o in observed {
                match seen.get(&o.id) {
                    Some(last) if *last >= o.sequence => {}
                    Some(_) if !fresh => {
                        seen.insert(o.id.clone(), o.sequence);
                        changed.push(o.clone());
                    }
                    _ => {
                        seen.insert(o.id.clone(), o.sequence);
                    }
                }
            }
        }
        for o in changed {
            let item = change_item(subscription, tenant_id, &o);
            self.queue(subscription, item, o, at);
        }
    }

    fn queue(&mut self, subscription: &Subscription, item: Value, observed: Observed, at: Instant) {
        if self.faults.drop_rate > 0.0 && self.rng.chance(self.faults.drop_rate) {
            self.stats.dropped += 1;
            return;
        }
        let copies =
            if self.faults.duplicate_rate > 0.0 && self.rng.chance(self.faults.duplicate_rate) {
                self.stats.duplicated += 1;
                2
            } else {
                1
            };
        let mut item = item;
        if let Some(encryption) = &subscription.encryption {
            let content = json!({
                "@odata.type": "#microsoft.graph.presence",
                "@odata.id": format!("users/{}/presence", observed.id),
                "id": observed.id,
                "availability": observed.availability,
                "activity": observed.activity,
                "sequenceNumber": format!("{:020}", observed.sequence),
            });
            match rich::encrypt(
                &encryption.certificate_der,
                &encryption.certificate_id,
                &content,
            ) {
                Ok(encrypted) => item["encryptedContent"] = encrypted,
                Err(error) => {
                    tracing::warn!(subscription = %subscription.id, "cannot encrypt a rich notification: {error}");
                    self.stats.failed += 1;
                    return;
                }
            }
        }
        for _ in 0..copies {
            let due = at + self.delay();
            self.pending.push(Pending {
                due,
                url: subscription.notification_url.clone(),
                kind: Kind::Change,
                item: item.clone(),
                rich_for: subscription
                    .encryption
                    .as_ref()
                    .map(|_| subscription.application_id.clone()),
            });
        }
    }

    fn delay(&mut self) -> Duration {
        let jitter = self.faults.jitter.as_micros();
        let extra = if jitter == 0 {
            0
        } else {
            self.rng.next_u64() % u64::try_from(jitter).unwrap_or(u64::MAX)
        };
        self.faults.delay + Duration::from_micros(extra)
    }

    /// Queues a lifecycle notification; `false` when the subscription has
    /// no lifecycle URL.
    pub fn lifecycle(
        &mut self,
        subscription: &Subscription,
        tenant_id: &str,
        event: LifecycleEvent,
        at: Instant,
    ) -> bool {
        let Some(url) = &subscription.lifecycle_url else {
            return false;
        };
        let item = json!({
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": graph_datetime(subscription.expires_at),
            "tenantId": tenant_id,
            "clientState": subscription.client_state,
            "lifecycleEvent": event.as_str(),
        });
        let due = at + self.faults.delay;
        self.pending.push(Pending {
            due,
            url: url.clone(),
            kind: Kind::Lifecycle,
            item,
            rich_for: None,
        });
        true
    }

    /// Forgets subscriptions no longer alive (`alive` lists the live ids)
    /// and their queued change notifications.
    pub fn retain(&mut self, alive: &[String]) {
        self.seen.retain(|id, _| alive.contains(id));
        self.pending.retain(|p| {
            p.kind == Kind::Lifecycle
                || p.item["subscriptionId"]
                    .as_str()
                    .is_some_and(|id| alive.iter().any(|a| a == id))
        });
    }

    /// Notes the look made at `(sequence, now)`.
    pub fn looked(&mut self, sequence: u64, now: Timestamp) {
        self.last_look = Some((sequence, now));
    }

    /// Takes the batches due by `at`: one per URL and kind.
    pub fn due(&mut self, at: Instant) -> Vec<Batch> {
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            self.pending.drain(..).partition(|p| p.due <= at);
        self.pending = later;
        let mut batches: BTreeMap<(String, Kind), Batch> = BTreeMap::new();
        let mut due = due;
        due.sort_by_key(|p| p.due);
        for p in due {
            let batch = batches
                .entry((p.url.clone(), p.kind.clone()))
                .or_insert_with(|| Batch {
                    url: p.url.clone(),
                    lifecycle: p.kind == Kind::Lifecycle,
                    items: Vec::new(),
                    rich_for: Vec::new(),
                });
            batch.items.push(p.item);
            if let Some(app) = p.rich_for
                && !batch.rich_for.contains(&app)
            {
                batch.rich_for.push(app);
            }
        }
        let reorder = self.faults.reorder;
        batches
            .into_values()
            .map(|mut b| {
                if reorder {
                    b.items.reverse();
                }
                b
            })
            .collect()
    }

    /// Counts a batch's delivery.
    pub fn delivered(&mut self, batch: &Batch, outcome: delivery::Delivered) {
        let n = u64::try_from(batch.items.len()).unwrap_or(u64::MAX);
        self.stats.slow += u64::from(outcome.slow);
        self.stats.retries += u64::from(outcome.attempts.saturating_sub(1));
        match (outcome.ok, batch.lifecycle) {
            (true, false) => self.stats.delivered += n,
            (true, true) => self.stats.lifecycle_delivered += n,
            (false, _) => self.stats.failed += n,
        }
    }
}

/// A lifecycle event Graph may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    ReauthorizationRequired,
    SubscriptionRemoved,
    Missed,
}

impl LifecycleEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleEvent::ReauthorizationRequired => "reauthorizationRequired",
            LifecycleEvent::SubscriptionRemoved => "subscriptionRemoved",
            LifecycleEvent::Missed => "missed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            LifecycleEvent::ReauthorizationRequired,
            LifecycleEvent::SubscriptionRemoved,
            LifecycleEvent::Missed,
        ]
        .into_iter()
        .find(|e| e.as_str() == text)
    }
}

/// Graph's date-time with seven fractional digits:
/// `2023-09-14T10:00:00.0000000Z`.
pub fn graph_datetime(at: Timestamp) -> String {
    let micros = at.as_micros() % 1_000_000;
    format!(
        "{}.{:07}Z",
        at.to_utc().format("%Y-%m-%dT%H:%M:%S"),
        micros * 10
    )
}

/// A basic change notification (no resource data).
fn change_item(subscription: &Subscription, tenant_id: &str, o: &Observed) -> Value {
    json!({
        "subscriptionId": subscription.id,
        "clientState": subscription.client_state,
        "changeType": "updated",
        "tenantId": tenant_id,
        "resource": format!("communications/presences/{}", o.id),
        "subscriptionExpirationDateTime": graph_datetime(subscription.expires_at),
        "resourceData": {
            "@odata.id": format!("users/{}/presence", o.id),
            "@odata.type": "#microsoft.graph.presence",
            "id": o.id,
        },
        "organizationId": tenant_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(id: &str, url: &str) -> Subscription {
        Subscription {
            id: id.into(),
            resource: "/communications/presences/u1".into(),
            user_ids: vec!["u1".into(), "u2".into()],
            change_type: "updated".into(),
            notification_url: url.into(),
            lifecycle_url: Some(format!("{url}/lifecycle")),
            client_state: Some("state".into()),
            expires_at: Timestamp::from_secs(1_800_003_600),
            creator_id: "oid".into(),
            application_id: "app".into(),
            encryption: None,
        }
    }

    fn seen(id: &str, sequence: u64) -> Observed {
        Observed {
            id: id.into(),
            availability: "Busy".into(),
            activity: "InACall".into(),
            sequence,
        }
    }

    #[test]
    fn only_changes_after_the_baseline_are_notified_in_one_batch_per_url() {
        let mut n = Notifier::new(1, Duration::ZERO);
        let a = subscription("a", "http://one");
        let b = subscription("b", "http://one");
        let at = Instant::now();
        n.baseline(&a, &[seen("u1", 5), seen("u2", 7)]);
        n.baseline(&b, &[seen("u1", 5), seen("u2", 7)]);
        n.look(&a, "t", &[seen("u1", 5), seen("u2", 7)], at);
        assert!(n.due(at).is_empty(), "nothing changed");
        n.look(&a, "t", &[seen("u1", 9), seen("u2", 8)], at);
        n.look(&b, "t", &[seen("u1", 9), seen("u2", 7)], at);
        let batches = n.due(at);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].items.len(), 3);
        assert!(!batches[0].lifecycle);
        n.look(&a, "t", &[seen("u1", 9), seen("u2", 8)], at);
        assert!(n.due(at).is_empty(), "notified once");
    }

    #[test]
    fn a_delay_holds_changes_and_reorder_reverses_a_batch() {
        let mut n = Notifier::new(1, Duration::from_secs(1));
        n.faults.reorder = true;
        let a = subscription("a", "http://one");
        let at = Instant::now();
        n.baseline(&a, &[seen("u1", 1), seen("u2", 1)]);
        n.look(&a, "t", &[seen("u1", 2), seen("u2", 3)], at);
        assert!(n.due(at).is_empty());
        let batch = n.due(at + Duration::from_secs(1)).remove(0);
        let order: Vec<&str> = batch
            .items
            .iter()
            .map(|i| i["resourceData"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["u2", "u1"]);
    }

    #[test]
    fn lifecycle_events_go_to_the_lifecycle_url_and_outlive_their_subscription() {
        let mut n = Notifier::new(1, Duration::ZERO);
        let a = subscription("a", "http://one");
        let at = Instant::now();
        assert!(n.lifecycle(&a, "t", LifecycleEvent::SubscriptionRemoved, at));
        n.retain(&[]);
        let batch = n.due(at).remove(0);
        assert!(batch.lifecycle);
        assert_eq!(batch.url, "http://one/lifecycle");
        assert_eq!(batch.items[0]["lifecycleEvent"], "subscriptionRemoved");
        let mut none = subscription("b", "http://two");
        none.lifecycle_url = None;
        assert!(!n.lifecycle(&none, "t", LifecycleEvent::Missed, at));
    }

    #[test]
    fn graph_dates_have_seven_fraction_digits() {
        assert_eq!(
            graph_datetime(Timestamp::from_micros(1_694_685_600_123_456)),
            "2023-09-14T10:00:00.1234560Z"
        );
    }
}

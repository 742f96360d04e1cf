//! The adapter of change notifications: the task that looks for changes
//! and posts due batches every [`TICK`], the JWKS routes, and the control
//! routes `POST /_sim/notifications` (faults), `GET /_sim/subscriptions`
//! (every live one) and `POST /_sim/subscriptions/{id}/lifecycle`.
#![allow(clippy::result_large_err)] // a ready response, once, at the edge

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::errors::{bad_request, graph_error};
use super::presence::parse_object;
use super::subscriptions::subscription_json;
use super::{RequestCtx, Shared, lock};
use crate::sim::notify::{Batch, LifecycleEvent, Observed, TICK, delivery};
use crate::sim::subscriptions::Subscription;
use crate::time::Timestamp;

/// Runs until `stop`: looks for changes and sends what is due.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                shared.look_for_changes();
                for batch in shared.due_batches() {
                    let shared = shared.clone();
                    tokio::spawn(async move { shared.send(batch).await });
                }
            }
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

impl Shared {
    /// What `subscription`'s users show at `now` (fades played).
    fn observe(&self, user_ids: &[String], now: Timestamp) -> Vec<Observed> {
        let mut tenant = self.tenant(now);
        user_ids
            .iter()
            .filter_map(|id| tenant.presence(id, now))
            .map(|view| Observed {
                id: view.id,
                availability: view.presence.availability.as_str().to_string(),
                activity: view.presence.activity.as_str().to_string(),
                sequence: view.sequence_number.parse().unwrap_or(0),
            })
            .collect()
    }

    /// Records a new subscription's starting point.
    pub(crate) fn baseline(&self, subscription: &Subscription, now: Timestamp) {
        let observed = self.observe(&subscription.user_ids, now);
        lock(&self.notifier).baseline(subscription, &observed);
    }

    /// One look: every live subscription's users against what was last
    /// notified. Skipped when neither the tenant nor the clock moved.
    pub(crate) fn look_for_changes(&self) {
        let now = self.clock.now();
        let live: Vec<Subscription> = {
            let mut subscriptions = lock(&self.subscriptions);
            subscriptions.remove_expired(now);
            subscriptions.all(now).cloned().collect()
        };
        let ids: Vec<String> = live.iter().map(|s| s.id.clone()).collect();
        lock(&self.notifier).retain(&ids);
        if live.is_empty() {
            return;
        }
        // Played up to `now` first, so the counter includes fades.
        let sequence = {
            let mut tenant = self.tenant(now);
            for s in &live {
                for id in &s.user_ids {
                    let _ = tenant.presence(id, now);
                }
            }
            tenant.sequence()
        };
        if !lock(&self.notifier).needs_look(&live, sequence, now) {
            return;
        }
        let at = Instant::now();
        for subscription in &live {
            let observed = self.observe(&subscription.user_ids, now);
            lock(&self.notifier).look(subscription, &self.tenant_id, &observed, at);
        }
        lock(&self.notifier).looked(sequence, now);
    }

    fn due_batches(&self) -> Vec<Batch> {
        lock(&self.notifier).due(Instant::now())
    }

    /// Posts one batch (with validation tokens when rich) and counts it.
    async fn send(&self, batch: Batch) {
        let mut body = json!({ "value": batch.items });
        if !batch.rich_for.is_empty() {
            match self.signing_key() {
                Ok(key) => {
                    let now = self.clock.now();
                    let tokens: Vec<String> = batch
                        .rich_for
                        .iter()
                        .filter_map(|app| key.validation_token(app, &self.tenant_id, now).ok())
                        .collect();
                    body["validationTokens"] = json!(tokens);
                }
                Err(error) => tracing::warn!("rich notifications go out unsigned: {error}"),
            }
        }
        let outcome = delivery::deliver(&self.http, &batch.url, &body).await;
        lock(&self.notifier).delivered(&batch, outcome);
    }

    /// Queues `event` for subscription `id`; `None` when no live one,
    /// `Some(false)` when it has no lifecycle URL.
    pub(crate) fn trigger_lifecycle(&self, id: &str, event: LifecycleEvent) -> Option<bool> {
        let now = self.clock.now();
        let subscription = lock(&self.subscriptions).by_id(id, now).cloned()?;
        Some(lock(&self.notifier).lifecycle(&subscription, &self.tenant_id, event, Instant::now()))
    }

    /// Removes the subscriptions `oid` created (their account was revoked),
    /// each with a `subscriptionRemoved` lifecycle notification.
    pub(crate) fn remove_subscriptions_of(&self, oid: &str) -> usize {
        let removed = lock(&self.subscriptions).remove_by_creator(oid);
        let mut notifier = lock(&self.notifier);
        for subscription in &removed {
            notifier.lifecycle(
                subscription,
                &self.tenant_id,
                LifecycleEvent::SubscriptionRemoved,
                Instant::now(),
            );
        }
        removed.len()
    }
}

/// `GET /common/discovery/v2.0/keys` and `/{tenant}/discovery/v2.0/keys`.
pub(crate) async fn keys(State(shared): State<Arc<Shared>>) -> Response {
    match shared.signing_key() {
        Ok(key) => Json(key.jwks()).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `POST /_sim/notifications {drop_rate?, duplicate_rate?, delay_ms?,
/// jitter_ms?, reorder?}`: each optional, unknown fields refused.
pub(crate) async fn faults(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    const FIELDS: &[&str] = &[
        "drop_rate",
        "duplicate_rate",
        "delay_ms",
        "jitter_ms",
        "reorder",
    ];
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return bad_request(
            &ctx,
            &format!("unknown field '{unknown}'; known: {}", FIELDS.join(", ")),
        );
    }
    let rate = |name: &str| -> Result<Option<f64>, Response> {
        match body.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(r) if (0.0..=1.0).contains(&r) => Ok(Some(r)),
                _ => Err(bad_request(
                    &ctx,
                    &format!("{name} must be a number from 0 to 1."),
                )),
            },
        }
    };
    let millis = |name: &str| -> Result<Option<Duration>, Response> {
        match body.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(ms) if ms <= 600_000 => Ok(Some(Duration::from_millis(ms))),
                _ => Err(bad_request(
                    &ctx,
                    &format!("{name} must be a whole number of milliseconds up to 600000."),
                )),
            },
        }
    };
    let parsed = (|| {
        Ok::<_, Response>((
            rate("drop_rate")?,
            rate("duplicate_rate")?,
            millis("delay_ms")?,
            millis("jitter_ms")?,
            match body.get("reorder") {
                None => None,
                Some(v) => Some(
                    v.as_bool()
                        .ok_or_else(|| bad_request(&ctx, "reorder must be true or false."))?,
                ),
            },
        ))
    })();
    let (drop, duplicate, delay, jitter, reorder) = match parsed {
        Ok(p) => p,
        Err(response) => return response,
    };
    let mut notifier = lock(&shared.notifier);
    let faults = &mut notifier.faults;
    if let Some(v) = drop {
        faults.drop_rate = v;
    }
    if let Some(v) = duplicate {
        faults.duplicate_rate = v;
    }
    if let Some(v) = delay {
        faults.delay = v;
    }
    if let Some(v) = jitter {
        faults.jitter = v;
    }
    if let Some(v) = reorder {
        faults.reorder = v;
    }
    Json(faults_json(faults)).into_response()
}

fn faults_json(faults: &crate::sim::notify::NotificationFaults) -> Value {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "drop_rate": faults.drop_rate,
        "duplicate_rate": faults.duplicate_rate,
        "delay_ms": ms(faults.delay),
        "jitter_ms": ms(faults.jitter),
        "reorder": faults.reorder,
    })
}

/// `GET /_sim/subscriptions`: every live subscription, whoever made it.
pub(crate) async fn list_all(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.clock.now();
    let graph = shared.graph_base();
    let mut subscriptions = lock(&shared.subscriptions);
    subscriptions.remove_expired(now);
    let value: Vec<Value> = subscriptions
        .all(now)
        .map(|s| subscription_json(s, &graph))
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// `POST /_sim/subscriptions/{id}/lifecycle {"event"}`: sends a lifecycle
/// notification now (after the delivery delay).
pub(crate) async fn lifecycle(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(event) = body
        .get("event")
        .and_then(Value::as_str)
        .and_then(LifecycleEvent::parse)
    else {
        return bad_request(
            &ctx,
            "event must be one of reauthorizationRequired, subscriptionRemoved, missed.",
        );
    };
    match shared.trigger_lifecycle(&id, event) {
        Some(true) => {
            Json(json!({"subscriptionId": id, "lifecycleEvent": event.as_str()})).into_response()
        }
        Some(false) => bad_request(&ctx, "this subscription has no lifecycleNotificationUrl."),
        None => graph_error(
            &ctx,
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("no live subscription '{id}'"),
        ),
    }
}

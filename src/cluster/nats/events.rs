//! Events for many consumers: each event on `presence-sync.<tenant>.events.<type>`
//! with `Nats-Msg-Id` = its id, so that JetStream stores an event published
//! twice (by a new active re-publishing what its predecessor may have sent)
//! once, within the stream's duplicate window (10 minutes).

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::PublishAckFuture;

use super::connect::Inner;
use super::error::ClusterError;
use crate::events::Event;

/// Publishes events to the tenant's events stream. Cheap to clone.
#[derive(Clone)]
pub struct EventsPublisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsPublisher")
            .field("stream", &self.inner.names.events_stream())
            .finish()
    }
}

impl EventsPublisher {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        EventsPublisher { inner }
    }

    /// Publishes `events` in order and returns once JetStream acknowledged
    /// every one (a duplicate's acknowledgement counts). On an error some
    /// may be stored: publishing them all again is safe.
    pub async fn publish(&self, events: &[Event]) -> Result<(), ClusterError> {
        let inner = &self.inner;
        let what = format!(
            "publishing {} event(s) to the stream {}",
            events.len(),
            inner.names.events_stream()
        );
        let work = async {
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
            for event in events {
                let subject = inner.names.event_subject(&event.kind)?;
                let payload = serde_json::to_vec(event)
                    .map_err(|e| ClusterError::Invalid(format!("event {}: {e}", event.id)))?;
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, event.id.as_str());
                let ack = inner
                    .js
                    .publish_with_headers(subject, headers, payload.into())
                    .await
                    .map_err(|e| ClusterError::request(what.clone(), e))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await
                    .map_err(|e| ClusterError::request(what.clone(), e))?;
            }
            Ok(())
        };
        // Each ack is bounded by the request timeout; the whole by one
        // timeout per hundred events more.
        let per_hundred = u32::try_from(events.len() / 100).unwrap_or(u32::MAX);
        let bound = inner
            .timeout
            .saturating_add(inner.timeout.saturating_mul(per_hundred));
        match tokio::time::timeout(bound, work).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Timeout {
                what,
                timeout: bound,
            }),
        }
    }
}

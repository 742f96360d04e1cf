//! The worker behind the receiver: drains the store's inbox in order, runs
//! each batch through [`crate::notifications`]' checks, sends the outcomes
//! on, then acknowledges the batch. A batch is acknowledged only after its
//! outcomes were handed over, so a crash in between repeats them (which
//! changes nothing: a presence applied twice is the same presence, a read
//! twice is a read). Duplicates Graph sends are caught by [`Dedupe`].
//!
//! Counters for the metrics: notifications received and applied, dropped
//! by reason (refused batches at the door too), duplicates, and the delay
//! from a batch's arrival to its processing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc};

use super::ReceiverSettings;
use super::keys::KeySet;
use crate::config::Secret;
use crate::notifications::{
    Checks, Decryption, Dedupe, NotificationOutcome, Processed, TokenExpectations, key_id,
    parse_changes, parse_lifecycle, process_changes, process_lifecycle,
};
use crate::stop::Stop;
use crate::store::{InboxItem, InboxKind, Store, StoreError};

/// Batches read from the inbox at a time.
const BATCH: usize = 32;
/// Notifications remembered for duplicates, and users for sequence numbers.
const DEDUPE_WINDOW: usize = 10_000;
/// How long to wait before trying a failing store again.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// A look at the inbox even without a wake-up, in case one was missed.
const IDLE_LOOK: Duration = Duration::from_secs(30);

/// The receiver's counters, shared by the listener and the worker.
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    applied: AtomicU64,
    duplicates: AtomicU64,
    delay_millis_sum: AtomicU64,
    delay_millis_max: AtomicU64,
    batches: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CountersSnapshot {
    /// Notifications in processed batches.
    pub received: u64,
    /// Notifications that led to an outcome.
    pub applied: u64,
    /// Notifications dropped as repeats or older than what was applied.
    pub duplicates: u64,
    /// Notifications (and, `batch_*`, whole batches at the door) dropped, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Batches processed, and the sum and largest of their delays from
    /// arrival to processing, in seconds.
    pub batches: u64,
    pub delay_seconds_sum: f64,
    pub delay_seconds_max: f64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            received: self.received.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected().clone(),
            batches: self.batches.load(Ordering::Relaxed),
            delay_seconds_sum: self.delay_millis_sum.load(Ordering::Relaxed) as f64 / 1000.0,
            delay_seconds_max: self.delay_millis_max.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    fn rejected(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.rejected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch refused at the door.
    pub(crate) fn refused(&self, reason: &'static str) {
        *self.rejected().entry(reason).or_default() += 1;
    }

    fn count(&self, processed: &Processed, delay: Duration) {
        self.received
            .fetch_add(processed.received as u64, Ordering::Relaxed);
        self.applied
            .fetch_add(processed.applied as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(processed.duplicates as u64, Ordering::Relaxed);
        let mut rejected = self.rejected();
        for r in &processed.rejected {
            *rejected.entry(r.reason()).or_default() += 1;
        }
        drop(rejected);
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.delay_millis_sum.fetch_add(millis, Ordering::Relaxed);
        self.delay_millis_max.fetch_max(millis, Ordering::Relaxed);
    }
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("the notification inbox cannot be read or acknowledged: {0}")]
    Store(#[from] StoreError),
    #[error("nothing takes notification outcomes any more")]
    Closed,
}

/// Drains the inbox into outcomes.
pub struct InboxWorker {
    store: Arc<dyn Store>,
    client_state: Secret,
    decryption: Option<Arc<Decryption>>,
    expected: TokenExpectations,
    keys: KeySet,
    dedupe: Dedupe,
    outcomes: mpsc::Sender<NotificationOutcome>,
    counters: Arc<Counters>,
    wake: Arc<Notify>,
}

impl InboxWorker {
    /// A worker over `store`'s inbox; `wake` and `counters` are the ones
    /// given to [`router`](super::router).
    pub fn new(
        settings: &ReceiverSettings,
        store: Arc<dyn Store>,
        keys: KeySet,
        wake: Arc<Notify>,
        counters: Arc<Counters>,
        outcomes: mpsc::Sender<NotificationOutcome>,
    ) -> Self {
        InboxWorker {
            store,
            client_state: settings.client_state.clone(),
            decryption: settings.decryption.clone(),
            expected: settings.expectations(),
            keys,
            dedupe: Dedupe::new(DEDUPE_WINDOW),
            outcomes,
            counters,
            wake,
        }
    }

    /// Drains the inbox until `stop`, waking when the listener stored a batch.
    pub async fn run(mut self, stop: Stop) {
        while !stop.is_stopped() {
            match stop.unless_stopped(self.drain()).await {
                None => break,
                Some(Ok(0)) => {
                    let wake = Arc::clone(&self.wake);
                    let _ = stop
                        .unless_stopped(tokio::time::timeout(IDLE_LOOK, wake.notified()))
                        .await;
                }
                Some(Ok(_)) => {}
                Some(Err(DrainError::Closed)) => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the notification inbox is failing; trying again shortly");
                    if !stop.sleep(STORE_RETRY).await {
                        break;
                    }
                }
            }
        }
    }

    /// Processes the batches the inbox holds now, in order; how many.
    pub async fn drain(&mut self) -> Result<usize, DrainError> {
        let mut done = 0;
        loop {
            let store = Arc::clone(&self.store);
            let items = tokio::task::spawn_blocking(move || store.inbox(0, BATCH))
                .await
                .map_err(|_| StoreError::Io("the store task stopped".into()))??;
            if items.is_empty() {
                return Ok(done);
            }
            for item in items {
                let seq = item.seq;
                for outcome in self.process(item).await {
                    self.outcomes
                        .send(outcome)
                        .await
                        .map_err(|_| DrainError::Closed)?;
                }
                let store = Arc::clone(&self.store);
                tokio::task::spawn_blocking(move || store.ack_inbox(seq))
                    .await
                    .map_err(|_| StoreError::Io("the store task stopped".into()))??;
                done += 1;
            }
        }
    }

    async fn process(&mut self, item: InboxItem) -> Vec<NotificationOutcome> {
        let now = Utc::now();
        let delay = (now - item.received_at).to_std().unwrap_or_default();
        let processed = match item.kind {
            InboxKind::Changes => match parse_changes(&item.body) {
                Ok(batch) => {
                    let kids: Vec<String> = batch
                        .validation_tokens
                        .iter()
                        .filter_map(|t| key_id(t).ok())
                        .collect();
                    let keys = if kids.is_empty() {
                        Arc::default()
                    } else {
                        self.keys.keys_for(&kids).await
                    };
                    let checks = Checks {
                        client_state: &self.client_state,
                        decryption: self.decryption.as_deref(),
                        keys: &keys,
                        expected: &self.expected,
                    };
                    // Tokens are judged at the batch's arrival, which the
                    // door recorded: a batch kept over a restart is not
                    // dropped because its tokens expired while it waited.
                    process_changes(&batch, checks, &mut self.dedupe, item.received_at)
                }
                Err(e) => malformed(e.into()),
            },
            InboxKind::Lifecycle => match parse_lifecycle(&item.body) {
                Ok(batch) => process_lifecycle(&batch, &self.client_state),
                Err(e) => malformed(e.into()),
            },
        };
        for rejection in &processed.rejected {
            tracing::warn!(
                seq = item.seq,
                reason = rejection.reason(),
                "a Graph notification was dropped: {rejection}"
            );
        }
        self.counters.count(&processed, delay);
        processed.outcomes
    }
}

/// A stored batch that no longer reads (the receiver checked it before
/// storing, so only another build's change of the rules gets here).
fn malformed(rejection: crate::notifications::Rejection) -> Processed {
    Processed {
        received: 1,
        rejected: vec![rejection],
        ..Processed::default()
    }
}

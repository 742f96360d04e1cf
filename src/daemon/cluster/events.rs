//! The active node's events for many consumers: every committed event,
//! in order, to its NATS subject with its id for de-duplication. The cursor
//! is kept in the store like the webhook's (so in the commit log): a new
//! active resumes where the old one got to, and what both publish around a
//! takeover carries the same ids, which JetStream drops the second time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::term::EventSink;
use crate::daemon::tasks::{Problem, TaskName, TaskState, TaskStatus, Worker};
use crate::events::Event;
use crate::stop::Stop;
use crate::store::{Batch, MetaKey, Store, StoreError};

/// The consumer name of the cursor in the store's meta records.
pub const CURSOR: &str = "nats-events";

/// Events published at once.
const BATCH: usize = 512;
/// The cursor is stored at most this often while events keep coming (each
/// store is one commit-log record); at once when the publisher catches up.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Waits after a failed publish: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);
/// Looked again without a wake-up (events the broadcast dropped).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// See the module documentation.
pub struct EventsWorker<S> {
    pub store: Arc<S>,
    pub sink: Arc<dyn EventSink>,
    /// The daemon's feed of committed events, as a wake-up.
    pub wake: broadcast::Receiver<Event>,
}

impl<S: Store> Worker for EventsWorker<S> {
    fn name(&self) -> TaskName {
        TaskName::NatsEvents
    }

    async fn work(mut self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        let key = MetaKey::Cursor(CURSOR.into());
        let mut cursor = {
            let store = Arc::clone(&self.store);
            let key = key.clone();
            blocking(move || store.meta(&key)).await?
        }
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
        let mut saved = cursor;
        let mut saved_at = Instant::now();
        let mut retry = RETRY_FIRST;
        status.set(TaskState::Running);
        while !stop.is_stopped() {
            let events = {
                let store = Arc::clone(&self.store);
                blocking(move || store.events_after(cursor, BATCH)).await?
            };
            if let Some(last) = events.last() {
                match self.sink.publish(&events).await {
                    Ok(()) => {
                        cursor = last.seq;
                        retry = RETRY_FIRST;
                        status.clear_degraded();
                    }
                    Err(e) => {
                        status.set(TaskState::Degraded(Problem::plain(format!(
                            "cannot publish events to NATS (retrying): {e}"
                        ))));
                        if !stop.sleep(retry).await {
                            break;
                        }
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }
            let caught_up = events.len() < BATCH;
            if cursor != saved && (caught_up || saved_at.elapsed() >= SAVE_EVERY) {
                save(&self.store, &key, cursor).await?;
                saved = cursor;
                saved_at = Instant::now();
            }
            if caught_up {
                tokio::select! {
                    () = stop.stopped() => break,
                    woke = self.wake.recv() => {
                        if matches!(woke, Err(broadcast::error::RecvError::Closed)) {
                            // The loop is gone; look now and then until stopped.
                            if !stop.sleep(IDLE_LOOK).await {
                                break;
                            }
                        }
                    }
                    () = tokio::time::sleep(IDLE_LOOK) => {}
                }
            }
        }
        if cursor != saved {
            // Best effort: what is not saved is published again, with the
            // same ids, by whoever is active next.
            let _ = save(&self.store, &key, cursor).await;
        }
        Ok(())
    }
}

async fn save<S: Store>(store: &Arc<S>, key: &MetaKey, cursor: u64) -> Result<(), String> {
    let store = Arc::clone(store);
    let key = key.clone();
    blocking(move || {
        store.commit(Batch {
            meta: vec![(key, Some(cursor.to_string()))],
            ..Batch::default()
        })
    })
    .await
    .map(|_| ())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("store call did not finish: {e}"))?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::daemon::cluster::term::BoxFuture;
    use crate::daemon::tasks::Workers;
    use crate::events::NewEvent;
    use crate::store::MemoryStore;

    /// Publishes what it is given, failing the first `fail` calls.
    #[derive(Default)]
    struct Sink {
        seen: Mutex<Vec<String>>,
        fail: Mutex<usize>,
    }

    impl EventSink for Sink {
        fn publish<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                let mut fail = self.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err("no answer from NATS".into());
                }
                self.seen
                    .lock()
                    .unwrap()
                    .extend(events.iter().map(|e| e.id.clone()));
                Ok(())
            })
        }
    }

    fn commit_events(store: &MemoryStore, n: usize) {
        let events = (0..n)
            .map(|_| NewEvent {
                kind: "cc.status_reported".into(),
                time: chrono::Utc::now(),
                agent_id: Some("a1".into()),
                data: serde_json::json!({}),
            })
            .collect();
        store
            .commit(Batch {
                events,
                ..Batch::default()
            })
            .unwrap();
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn every_event_is_published_in_order_and_the_cursor_resumes_after_a_restart() {
        let store = Arc::new(MemoryStore::new());
        commit_events(&store, 700);
        let sink = Arc::new(Sink {
            fail: Mutex::new(2),
            ..Sink::default()
        });
        let (wake_tx, _) = broadcast::channel(16);
        let mut workers = Workers::new();
        workers.spawn(EventsWorker {
            store: Arc::clone(&store),
            sink: sink.clone(),
            wake: wake_tx.subscribe(),
        });
        until("700 published", || sink.seen.lock().unwrap().len() == 700).await;
        commit_events(&store, 5);
        let _ = wake_tx.send(store.events_after(700, 1).unwrap().remove(0));
        until("705 published", || sink.seen.lock().unwrap().len() == 705).await;
        let ids = sink.seen.lock().unwrap().clone();
        let expected: Vec<String> = store
            .events_after(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, expected, "in order, none twice, none missing");
        assert!(workers.shutdown(Duration::from_secs(5)).await.is_empty());
        assert_eq!(
            store
                .meta(&MetaKey::Cursor(CURSOR.into()))
                .unwrap()
                .as_deref(),
            Some("705")
        );

        // A new term resumes from the stored cursor.
        commit_events(&store, 3);
        let again = Arc::new(Sink::default());
        let mut workers = Workers::new();
        workers.spawn(EventsWorker {
            store: Arc::clone(&store),
            sink: again.clone(),
            wake: wake_tx.subscribe(),
        });
        until("the 3 new ones", || again.seen.lock().unwrap().len() == 3).await;
        assert!(workers.shutdown(Duration::from_secs(5)).await.is_empty());
        assert_eq!(
            again.seen.lock().unwrap()[0],
            format!("{}-706", store.store_id())
        );
    }
}

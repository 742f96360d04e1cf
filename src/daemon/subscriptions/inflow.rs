//! Presence that notifications bring, on its way to the sync loop.
//!
//! A rich notification carries the presence itself; a basic one (and a
//! `missed` lifecycle event) only names users, who are then read at once
//! ([`ReadNow`]). Either way the presence goes through the same
//! [`SequenceGate`] as the pollers' reads, so whichever source is older
//! loses, then to the directory view and the sync loop as a poll would.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::graph::model::GraphPresence;
use crate::graph::poller::{PresenceObserver, PresenceSource, SequenceGate};
use crate::graph::{MAX_IDS_PER_CALL, PresenceUpdate};
use crate::stop::Stop;
use crate::subscriptions::UserId;

/// Where notified presence goes.
#[derive(Clone)]
pub struct Inflow {
    pub gate: Arc<SequenceGate>,
    pub observer: Option<Arc<dyn PresenceObserver>>,
    pub presences: mpsc::Sender<PresenceUpdate>,
}

impl Inflow {
    /// Passes `p` on unless a newer presence of the user already went
    /// through; false when the sync loop is gone.
    pub async fn offer(&self, p: GraphPresence) -> bool {
        if !self.gate.pass(&p.id, p.sequence_number.as_deref()) {
            return true;
        }
        if let Some(observer) = &self.observer {
            observer.observed(&p.id, &p.presence);
        }
        let update = PresenceUpdate {
            user_id: p.id.clone(),
            presence: p.presence.clone(),
            sequence_number: p.sequence_number.clone(),
            graph: p,
        };
        self.presences.send(update).await.is_ok()
    }
}

/// Reads asked for by notifications without data.
#[derive(Debug, Default)]
pub struct ReadNowStats {
    /// Graph calls made.
    pub calls: AtomicU64,
    /// Users read.
    pub users: AtomicU64,
    pub failures: AtomicU64,
}

/// Reads the users notifications name, soon after they are named: requests
/// arriving within `gather` of each other share calls of up to 650 ids.
pub struct ReadNow<S> {
    pub source: S,
    pub inflow: Inflow,
    pub requests: mpsc::UnboundedReceiver<Vec<UserId>>,
    pub gather: Duration,
    pub timeout: Duration,
    pub stats: Arc<ReadNowStats>,
}

impl<S: PresenceSource> ReadNow<S> {
    pub async fn run(mut self, stop: Stop) {
        loop {
            let first = match stop.unless_stopped(self.requests.recv()).await {
                Some(Some(users)) => users,
                Some(None) | None => return,
            };
            if stop
                .unless_stopped(tokio::time::sleep(self.gather))
                .await
                .is_none()
            {
                return;
            }
            let mut seen: HashSet<UserId> = HashSet::new();
            let mut ids: Vec<String> = Vec::new();
            let mut take = |users: Vec<UserId>| {
                for u in users {
                    if seen.insert(u.clone()) {
                        ids.push(u.to_string());
                    }
                }
            };
            take(first);
            while let Ok(more) = self.requests.try_recv() {
                take(more);
            }
            for chunk in ids.chunks(MAX_IDS_PER_CALL) {
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                let read = stop
                    .unless_stopped(tokio::time::timeout(self.timeout, self.source.read(chunk)))
                    .await;
                let read = match read {
                    None => return,
                    Some(Ok(Ok(read))) => read,
                    Some(Ok(Err(error))) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(users = chunk.len(), %error, "reading notified users failed: the pollers will read them");
                        continue;
                    }
                    Some(Err(_)) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            users = chunk.len(),
                            "reading notified users timed out: the pollers will read them"
                        );
                        continue;
                    }
                };
                self.stats
                    .users
                    .fetch_add(read.presences.len() as u64, Ordering::Relaxed);
                for p in read.presences {
                    if !self.inflow.offer(p).await {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;

    use super::*;
    use crate::graph::{GraphError, PresenceRead};
    use crate::presence::Presence;

    struct Fake {
        calls: Mutex<Vec<usize>>,
        seq: &'static str,
    }

    impl PresenceSource for Arc<Fake> {
        fn read<'a>(
            &'a self,
            ids: &'a [String],
        ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
            self.calls.lock().unwrap().push(ids.len());
            let presences = ids
                .iter()
                .map(|id| presence(id, "Busy", Some(self.seq)))
                .collect();
            Box::pin(async move {
                Ok(PresenceRead {
                    presences,
                    refused: vec![],
                    skipped: 0,
                    calls: 1,
                    unread: None,
                })
            })
        }
    }

    fn presence(id: &str, availability: &str, seq: Option<&str>) -> GraphPresence {
        GraphPresence {
            id: id.into(),
            presence: Presence::from_graph(availability, availability),
            status_message: None,
            out_of_office: None,
            sequence_number: seq.map(str::to_owned),
            work_location: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_close_together_share_calls_and_older_reads_lose() {
        let fake = Arc::new(Fake {
            calls: Mutex::new(vec![]),
            seq: "0005",
        });
        let (tx, mut rx) = mpsc::channel(4096);
        let gate = SequenceGate::new();
        // A rich notification already brought a newer version of u-1.
        assert!(gate.pass("u-0001", Some("0009")));
        let inflow = Inflow {
            gate,
            observer: None,
            presences: tx,
        };
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (handle, stop) = crate::stop::Stop::new();
        let task = tokio::spawn(
            ReadNow {
                source: Arc::clone(&fake),
                inflow,
                requests,
                gather: Duration::from_millis(100),
                timeout: Duration::from_secs(5),
                stats: Arc::default(),
            }
            .run(stop),
        );
        let ids = |r: std::ops::Range<usize>| -> Vec<UserId> {
            r.map(|i| UserId::from(format!("u-{i:04}"))).collect()
        };
        req_tx.send(ids(0..600)).unwrap();
        req_tx.send(ids(300..900)).unwrap();
        let mut got = Vec::new();
        while got.len() < 899 {
            got.push(rx.recv().await.unwrap().user_id);
        }
        assert!(!got.contains(&"u-0001".to_string()), "the older read lost");
        assert_eq!(*fake.calls.lock().unwrap(), vec![650, 250]);
        handle.stop();
        task.await.unwrap();
    }
}

//! One step of the loop: its inputs ([`Input`]) decided at one time, what
//! it changed ([`Step`]), the replies held
//! until it is durable ([`Reply`]), its commit to the store as one batch,
//! and what goes out once it is committed (events, writes, replies, the
//! Teams users linked and unlinked for the poller, the loop's status).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::events::NewEvent;
use crate::graph::PresenceUpdate;
use crate::routing::ContactRecord;
use crate::store::{Batch, MetaKey, OutboxEntry, Store};
use crate::time::Timestamp;

use super::super::writer::{WriteJob, WriteResult};
use super::agents::{AgentState, ContactState};
use super::error::LoopError;
use super::{Command, SyncLoop};

/// What a step takes in: a command, a presence read from Graph, or the
/// result of a Teams write.
pub(super) enum Input {
    Command(Command),
    Presence(PresenceUpdate),
    WriteResult(WriteResult),
}

/// A reply held until the step's batch is durable.
pub(super) enum Reply {
    Agent(oneshot::Sender<Result<AgentState, LoopError>>, String),
    Contact(oneshot::Sender<Result<ContactState, LoopError>>, String),
    Deleted(oneshot::Sender<Result<(), LoopError>>),
    Ping(oneshot::Sender<()>),
}

/// What one step changed, to commit as one batch.
#[derive(Default)]
pub(super) struct Step {
    pub(super) dirty: BTreeSet<String>,
    pub(super) deleted: BTreeSet<String>,
    pub(super) outbox: Vec<(String, Option<OutboxEntry>)>,
    pub(super) contacts: Vec<(String, Option<ContactRecord>)>,
    pub(super) events: Vec<NewEvent>,
    pub(super) meta: Vec<(MetaKey, Option<String>)>,
    pub(super) jobs: Vec<WriteJob>,
    pub(super) replies: Vec<Reply>,
    pub(super) poll_changed: bool,
}

impl<S: Store> SyncLoop<S> {
    /// One step at `now`, the time read when it started: takes its inputs,
    /// lets the engine and the router tick, and commits. An `Err` means the
    /// store failed; the step's replies have been failed and nothing went out.
    pub(super) async fn step(&mut self, now: Timestamp, inputs: Vec<Input>) -> Result<(), String> {
        for input in inputs {
            self.input(now, input);
        }
        let mut decisions = Vec::new();
        self.engine.tick(now, &mut decisions);
        self.absorb(now, decisions);
        self.route_tick(now);
        self.commit(now).await
    }

    pub(super) fn input(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Command(cmd) => self.command(now, cmd),
            Input::Presence(update) => self.presence(now, update),
            Input::WriteResult(result) => self.write_result(now, result),
        }
    }

    /// Refreshes what the loop shows about itself: counts and counters
    /// only, nothing that walks the agents.
    pub(super) fn publish_status(&mut self) {
        self.status.agents = self.agents.len();
        self.status.linked = self.by_key.len();
        self.status.outbox = self.outbox_agents.len();
        self.status.directory_users = self.directory.known_users();
        self.status.directory_loaded = self.directory.loaded();
        // The names change with a reload only: not rebuilt every step.
        let names = self.mappings.profiles.iter().map(|p| p.name.as_str());
        if !self.status.profiles.iter().map(String::as_str).eq(names) {
            self.status.profiles = self.mappings.profile_names();
        }
        self.status.stats = self.engine.stats().clone();
        let m = &self.out.metrics;
        let s = &self.status.stats;
        super::super::metrics::mirror(&m.debounced, s.debounced);
        super::super::metrics::mirror(&m.echo_suppressed, s.echoes_suppressed);
        super::super::metrics::mirror(&m.loop_suspensions, s.loop_suspensions);
        super::super::metrics::mirror(&m.teams_overrides, s.overrides_detected);
        super::super::metrics::mirror(&m.teams_outranked, s.outranked_detected);
        super::super::metrics::mirror(&m.cc_requests, s.cc_requests);
        m.outbox_depth.set(self.status.outbox as f64);
        m.routing_waiting.set(self.router.waiting() as f64);
        m.agents_linked(true).set(self.status.linked as f64);
        m.agents_linked(false)
            .set(self.status.agents.saturating_sub(self.status.linked) as f64);
        self.out.status.send_replace(self.status.clone());
    }

    /// Makes the step durable, then lets the world know.
    pub(super) async fn commit(&mut self, now: Timestamp) -> Result<(), String> {
        self.routable_changes(now);
        self.routing_changes();
        let mut step = std::mem::take(&mut self.step);
        // The routing state only when it differs from what is stored.
        step.meta.retain(|(key, value)| match (key, value) {
            (MetaKey::Routing | MetaKey::RoutingQueue(_), Some(text)) => {
                if self.routing_meta.get(key) == Some(text) {
                    false
                } else {
                    self.routing_meta.insert(key.clone(), text.clone());
                    true
                }
            }
            (MetaKey::Routing | MetaKey::RoutingQueue(_), None) => {
                self.routing_meta.remove(key);
                true
            }
            _ => true,
        });
        let mut batch = Batch {
            outbox: step.outbox,
            events: step.events,
            meta: step.meta,
            agents: Vec::new(),
            contacts: step.contacts,
        };
        for id in &step.deleted {
            batch.agents.push((id.clone(), None));
        }
        for id in &step.dirty {
            let Some(entry) = self.agents.get(id.as_str()) else {
                continue;
            };
            // The engine's and the router's state, built now and held only
            // until the batch is written.
            let mut record = entry.to_record();
            record.sync = entry
                .key
                .and_then(|k| self.engine.snapshot(k).ok())
                .map(Box::new);
            record.routing = if entry.routing_stored {
                self.router.agent_state(id).cloned().map(Box::new)
            } else {
                None
            };
            batch.agents.push((id.clone(), Some(record)));
        }
        let committed = if batch.is_empty() {
            Vec::new()
        } else {
            let store = Arc::clone(&self.store);
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || store.commit(batch)).await;
            self.out
                .metrics
                .store_commit_seconds
                .observe_duration(started.elapsed());
            match result {
                Ok(Ok(events)) => {
                    self.out
                        .metrics
                        .events_committed
                        .inc_by(events.len() as u64);
                    events
                }
                Ok(Err(e)) => {
                    let message = format!("the store failed: {e}");
                    self.fail_replies(step.replies, &message);
                    return Err(message);
                }
                Err(e) => {
                    let message = format!("the store commit did not finish: {e}");
                    self.fail_replies(step.replies, &message);
                    return Err(message);
                }
            }
        };
        self.status.commits += 1;
        self.status.events += committed.len() as u64;
        for event in committed {
            // Nobody listening is fine: the log has it.
            let _ = self.out.events.send(event);
        }
        for job in step.jobs {
            let _ = self.out.writes.send(job);
        }
        if step.poll_changed {
            // What linking changed, not the whole list: O(changes).
            self.out.poll_users.send(self.by_user.take_changes());
        }
        let links = self.by_user.take_links();
        // Who is an agent, for the directory's listing and its tiers.
        self.out.directory_view.set_links(links);
        for reply in step.replies {
            match reply {
                Reply::Agent(tx, id) => {
                    let _ = tx.send(self.state(&id, now));
                }
                Reply::Contact(tx, id) => {
                    let _ = tx.send(self.contact_state(&id));
                }
                Reply::Deleted(tx) => {
                    let _ = tx.send(Ok(()));
                }
                Reply::Ping(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        self.publish_status();
        Ok(())
    }

    pub(super) fn fail_replies(&self, replies: Vec<Reply>, message: &str) {
        let failed = || LoopError::StoreFailed(message.to_string());
        for reply in replies {
            match reply {
                Reply::Agent(tx, _) => {
                    let _ = tx.send(Err(failed()));
                }
                Reply::Contact(tx, _) => {
                    let _ = tx.send(Err(failed()));
                }
                Reply::Deleted(tx) => {
                    let _ = tx.send(Err(failed()));
                }
                Reply::Ping(_) => {}
            }
        }
    }
}

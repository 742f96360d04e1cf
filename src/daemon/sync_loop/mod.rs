//! The sync loop: the one task that owns the engine and the agents; it
//! looks Teams users up in the shared directory view. It takes commands
//! (API calls, presences read, write results, directory changes, mapping
//! reloads), feeds them to the engine, and commits everything one step
//! changed to the store as one batch before anyone hears about it: API
//! replies, events on the stream, writes to Graph.
//! Committing per step rather than per call is what makes a durable
//! acknowledgement cheap under load (group commit).
//!
//! | concept | file |
//! |---|---|
//! | the command protocol: commands and their domain inputs, outputs, status; dispatch | `command.rs` |
//! | why the loop refuses a command: [`LoopError`] | `error.rs` |
//! | the clock, read once when a step starts | `clock.rs` |
//! | the run: select, take a step's worth of inputs | `run.rs` |
//! | a step: its inputs, tick, commit as one batch, the replies held until then | `step.rs` |
//! | the agents held: entry, profile, state as replies carry it, routability events | `agents.rs` |
//! | linking agents to Teams users: attach, detach, waiting, conflicts | `linking.rs` |
//! | the Teams users linked, and the changes the poller is sent | `linked_users.rs` |
//! | the agent commands' handlers: `PUT`, `DELETE`, status reports | `handlers.rs` |
//! | what the adapters feed in: presences, write results, directory, reloads | `adapters.rs` |
//! | the engine's decisions as events, outbox entries and write jobs | `translate.rs` |
//! | the routing side: queues, contacts, gates, `routing.*` events | `routing.rs` |
//! | the steps driven on a memory store and a fake clock | `tests.rs` |

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::config::RoutingConfig;
use crate::directory::DirectoryView;
use crate::routing::Router;
use crate::store::{Loaded, MetaKey, Store};
use crate::sync::{AgentSnapshot, Engine, EngineError, Settings, WriteId};
use crate::time::Timestamp;

use super::mappings::MappingSet;
use super::view;

mod adapters;
mod agents;
mod clock;
mod command;
mod error;
mod handlers;
mod linked_users;
mod linking;
mod routing;
mod run;
mod step;
#[cfg(test)]
mod tests;
mod translate;

pub use self::agents::{AgentState, AgentSync, ContactState};
pub use self::clock::{Clock, SystemClock};
pub use self::command::{
    AgentFilter, AgentPage, AgentSettings, CcStatusReport, Command, ContactMove, Inputs,
    LoopStatus, Outputs,
};
pub use self::error::LoopError;

use self::agents::AgentEntry;
use self::step::Step;
use self::translate::WritePurpose;

pub struct SyncLoop<S: Store> {
    engine: Engine,
    router: Router,
    routing: RoutingConfig,
    mappings: MappingSet,
    /// Keyed by the entry's own id (shared, not copied).
    agents: BTreeMap<Arc<str>, Box<AgentEntry>>,
    by_key: linked_users::KeyedAgents,
    by_user: linked_users::LinkedUsers,
    /// The agents not linked, by the name they wait for.
    waiting: linking::Waiting,
    /// The shared directory view, where users are looked up (the loop
    /// keeps no index of its own).
    directory: Arc<DirectoryView>,
    /// Writes on their way: whether each renews a session or carries a
    /// change, and when the change it carries was first reported.
    writes_out: HashMap<WriteId, (WritePurpose, Option<Timestamp>)>,
    outbox_agents: BTreeSet<String>,
    /// The routing state as last stored (router-wide and per queue), so a
    /// commit writes it only when it changed: a start reinstalls the
    /// queues and would otherwise rewrite it every time.
    routing_meta: BTreeMap<MetaKey, String>,
    store: Arc<S>,
    out: Outputs,
    step: Step,
    status: LoopStatus,
    clock: Arc<dyn Clock>,
}

impl<S: Store> SyncLoop<S> {
    /// Rebuilds the loop from what the store holds. Writes owed before the
    /// restart are decided again here and go out after the first commit.
    pub fn restore(
        settings: Settings,
        mappings: MappingSet,
        routing: RoutingConfig,
        loaded: Loaded,
        store: Arc<S>,
        out: Outputs,
    ) -> Result<Self, EngineError> {
        Self::restore_with_clock(
            settings,
            mappings,
            routing,
            loaded,
            store,
            out,
            Arc::new(SystemClock),
        )
    }

    /// [`SyncLoop::restore`] with the clock the loop reads (a test's).
    pub fn restore_with_clock(
        settings: Settings,
        mappings: MappingSet,
        routing: RoutingConfig,
        loaded: Loaded,
        store: Arc<S>,
        out: Outputs,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EngineError> {
        let engine = Engine::new(settings, mappings.profiles.clone())?;
        let router_globals = store.meta(&MetaKey::Routing).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the stored routing state");
            None
        });
        let contacts = loaded.contacts;
        let queue_memories = loaded.routing_queues;
        let mut routing_meta = BTreeMap::new();
        if let Some(text) = &router_globals {
            routing_meta.insert(MetaKey::Routing, text.clone());
        }
        for (queue, text) in &queue_memories {
            routing_meta.insert(MetaKey::RoutingQueue(queue.clone()), text.clone());
        }
        let mut me = SyncLoop {
            engine,
            router: Router::new(Vec::new(), 0),
            routing: routing.clone(),
            mappings,
            agents: BTreeMap::new(),
            by_key: linked_users::KeyedAgents::default(),
            by_user: linked_users::LinkedUsers::default(),
            waiting: linking::Waiting::default(),
            directory: Arc::clone(&out.directory_view),
            writes_out: HashMap::new(),
            outbox_agents: loaded.outbox.iter().map(|o| o.agent_id.clone()).collect(),
            routing_meta,
            store,
            out,
            step: Step::default(),
            status: LoopStatus::default(),
            clock,
        };
        let now = me.clock.now();
        // The engine and the router take each agent's state; the entries
        // keep the settings only. Each record is taken apart as it comes,
        // so no second copy of every agent is held at once.
        let mut routing_states = HashMap::new();
        me.engine.reserve(loaded.agents.len());
        for mut record in loaded.agents {
            let snapshot: Option<Box<AgentSnapshot>> = record.sync.take();
            let routing_state = record.routing.take();
            let linked = record.teams_user_id.is_some();
            let mut entry = AgentEntry::new(record);
            let id = Arc::clone(entry.id());
            if let Some(state) = routing_state {
                routing_states.insert(id.to_string(), *state);
                entry.routing_stored = true;
            }
            me.agents.insert(Arc::clone(&id), entry);
            if linked {
                // Restored from its snapshot, an agent is written again only
                // when restoring decided something for it (a write owed, an
                // event): what else restoring derives (a debounce that has
                // ended, a fresh echo window) is derived again from the same
                // record at the next start, so writing it would only grow
                // the store. One whose state did not read starts afresh and
                // is written.
                me.attach(now, &id, snapshot.as_deref());
            } else if let Some(entry) = me.agents.get(&id) {
                me.waiting.insert(&id, entry.teams_user());
            }
        }
        // The router, with each agent's gate as its restored view shows it;
        // and each agent's routability as it stands, taken as known: a
        // restart does not make an agent routable, so no
        // `agent.routable_changed` is repeated for it.
        let mut routable = Vec::with_capacity(me.agents.len());
        let agents: Vec<_> = me
            .agents
            .iter()
            .map(|(id, e)| {
                let state = me.state(id, now).ok();
                if let Some(state) = &state {
                    routable.push((
                        Arc::clone(id),
                        view::not_routable_because_of(state).is_empty(),
                    ));
                }
                let gate = state.map(|s| routing::gate_of(&s)).unwrap_or_default();
                (
                    id.to_string(),
                    routing::spec_of(e),
                    routing_states.remove(&**id),
                    gate,
                )
            })
            .collect();
        for (id, routable) in routable {
            if let Some(entry) = me.agents.get_mut(&id) {
                entry.routable = Some(routable);
            }
        }
        drop(routing_states);
        me.router = routing::restore_router(
            now,
            &routing,
            router_globals,
            queue_memories,
            agents,
            contacts,
        );
        me.route_tick(now);
        // Outbox entries the engine no longer owes are done with.
        let owed: BTreeSet<String> = me.step.jobs.iter().map(|j| j.agent_id.clone()).collect();
        let stale: Vec<String> = me.outbox_agents.difference(&owed).cloned().collect();
        for agent in stale {
            me.outbox_agents.remove(&agent);
            me.step.outbox.push((agent, None));
        }
        if !owed.is_empty() {
            tracing::info!(
                writes = owed.len(),
                "sending Teams writes owed from before the restart"
            );
        }
        me.step.poll_changed = true;
        me.publish_status();
        Ok(me)
    }

    /// Commits what restoring decided (called once before serving).
    pub async fn commit_initial(&mut self) -> Result<(), String> {
        let now = self.clock.now();
        self.commit(now).await
    }
}

//! The sync loop: the one task that owns the engine, the agents and the
//! directory. It takes commands (API calls, presences read, write results,
//! directory changes, mapping reloads), feeds them to the engine, and commits
//! everything one step changed to the store as one batch before anyone
//! hears about it: API replies, events on the stream, writes to Graph.
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
use crate::routing::Router;
use crate::store::{Loaded, MetaKey, Store};
use crate::sync::{AgentKey, AgentSnapshot, Engine, EngineError, Settings, WriteId};
use crate::time::Timestamp;

use super::directory::DirectoryIndex;
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
    agents: BTreeMap<String, AgentEntry>,
    by_key: HashMap<AgentKey, String>,
    by_user: linked_users::LinkedUsers,
    directory: DirectoryIndex,
    /// Writes on their way: whether each renews a session or carries a
    /// change, and when the change it carries was first reported.
    writes_out: HashMap<WriteId, (WritePurpose, Option<Timestamp>)>,
    outbox_agents: BTreeSet<String>,
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
        let mut me = SyncLoop {
            engine,
            router: Router::new(Vec::new(), 0),
            routing: routing.clone(),
            mappings,
            agents: BTreeMap::new(),
            by_key: HashMap::new(),
            by_user: linked_users::LinkedUsers::default(),
            directory: DirectoryIndex::default(),
            writes_out: HashMap::new(),
            outbox_agents: loaded.outbox.iter().map(|o| o.agent_id.clone()).collect(),
            store,
            out,
            step: Step::default(),
            status: LoopStatus::default(),
            clock,
        };
        let now = me.clock.now();
        // The engine and the router take each agent's state; the entries
        // keep the settings only.
        let mut routing_states = HashMap::new();
        // The stored sync states, until the agents restored exactly as
        // stored are known (below); then dropped.
        let mut stored_sync = HashMap::new();
        for mut record in loaded.agents {
            let id = record.id.clone();
            let snapshot: Option<Box<AgentSnapshot>> = record.sync.take();
            let routing_stored = match record.routing.take() {
                Some(state) => {
                    routing_states.insert(id.clone(), *state);
                    true
                }
                None => false,
            };
            let linked = record.teams_user_id.is_some();
            me.agents.insert(
                id.clone(),
                AgentEntry {
                    routing_stored,
                    ..AgentEntry::new(record)
                },
            );
            if linked {
                me.attach(now, &id, snapshot.as_deref());
            }
            if let Some(snapshot) = snapshot {
                stored_sync.insert(id, snapshot);
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
                    routable.push((id.clone(), view::not_routable_because_of(state).is_empty()));
                }
                let gate = state.map(|s| routing::gate_of(&s)).unwrap_or_default();
                (
                    id.clone(),
                    routing::spec_of(&e.record),
                    routing_states.remove(id),
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
        // Attaching marks every agent changed; those the engine restored
        // exactly as stored are not written again (a start would otherwise
        // rewrite every agent and grow the store by its size each time).
        let unchanged: Vec<String> = me
            .step
            .dirty
            .iter()
            .filter(|id| me.restored_as_stored(id, &stored_sync))
            .cloned()
            .collect();
        drop(stored_sync);
        for id in &unchanged {
            me.step.dirty.remove(id);
        }
        me.step.poll_changed = true;
        me.publish_status();
        Ok(me)
    }

    /// True when the engine's state for agent `id` is what its stored
    /// record already holds (`stored`), as the commit would write it.
    fn restored_as_stored(&self, id: &str, stored: &HashMap<String, Box<AgentSnapshot>>) -> bool {
        let Some(key) = self.agents.get(id).and_then(|e| e.key) else {
            return false;
        };
        match (self.engine.snapshot(key).ok(), stored.get(id)) {
            (Some(now), Some(before)) => now == **before,
            _ => false,
        }
    }

    /// Commits what restoring decided (called once before serving), then
    /// gives back the memory loading the store took: every record was read,
    /// decoded and taken apart, and what is left is far smaller.
    pub async fn commit_initial(&mut self) -> Result<(), String> {
        let now = self.clock.now();
        let committed = self.commit(now).await;
        give_back_free_memory();
        committed
    }
}

/// Returns the allocator's free pages to the system: glibc keeps what a
/// burst of small allocations freed (the store's load and check) in its
/// arenas instead.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no
    // pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

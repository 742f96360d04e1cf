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
    AgentSettings, CcStatusReport, Command, ContactMove, Inputs, LoopStatus, Outputs,
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
        for record in loaded.agents {
            let id = record.id.clone();
            let snapshot = record
                .sync
                .as_ref()
                .and_then(|s| match serde_json::from_value::<AgentSnapshot>(s.clone()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(agent = %id, error = %e, "stored sync state unreadable; starting the agent afresh");
                        None
                    }
                });
            me.agents.insert(
                id.clone(),
                AgentEntry {
                    record,
                    key: None,
                    routable: None,
                    conflict: None,
                },
            );
            if me
                .agents
                .get(&id)
                .is_some_and(|e| e.record.teams_user_id.is_some())
            {
                me.attach(now, &id, snapshot.as_ref());
            }
        }
        // The router, with each agent's gate as its restored view shows it.
        let agents: Vec<_> = me
            .agents
            .iter()
            .map(|(id, e)| {
                let gate = me
                    .state(id, now)
                    .map(|s| routing::gate_of(&s))
                    .unwrap_or_default();
                (
                    id.clone(),
                    routing::spec_of(&e.record),
                    e.record.routing.clone(),
                    gate,
                )
            })
            .collect();
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

//! The loop's command protocol: what the API and the other tasks ask of it
//! ([`Command`]), the inputs it selects on, where its output goes, the
//! status it shows, and the dispatch of each command to its handler.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::api::ApiError;
use crate::api::model::{
    AgentOut, AgentUpsert, ContactAction, ContactActionIn, ContactIn, ContactOut, QueueOut,
    StatusReport,
};
use crate::config::RoutingConfig;
use crate::events::Event;
use crate::graph::PresenceUpdate;
use crate::metrics::DaemonMetrics;
use crate::store::Store;
use crate::time::Timestamp;

use super::super::directory::DirectoryUpdate;
use super::super::mappings::MappingSet;
use super::super::writer::{WriteJob, WriteResult};
use super::SyncLoop;
use super::step::Reply;

/// What the API and the other tasks ask of the loop.
pub enum Command {
    PutAgent {
        id: String,
        body: AgentUpsert,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    DeleteAgent {
        id: String,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    ReportStatus {
        id: String,
        body: StatusReport,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    Agent {
        id: String,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    Agents {
        reply: oneshot::Sender<Vec<AgentOut>>,
    },
    ResumeAgent {
        id: String,
        reply: oneshot::Sender<Result<AgentOut, ApiError>>,
    },
    Queues {
        reply: oneshot::Sender<Vec<QueueOut>>,
    },
    Queue {
        name: String,
        reply: oneshot::Sender<Result<QueueOut, ApiError>>,
    },
    AddContact {
        body: ContactIn,
        reply: oneshot::Sender<Result<ContactOut, ApiError>>,
    },
    Contact {
        id: String,
        reply: oneshot::Sender<Result<ContactOut, ApiError>>,
    },
    ContactAction {
        id: String,
        action: ContactAction,
        body: ContactActionIn,
        reply: oneshot::Sender<Result<ContactOut, ApiError>>,
    },
    Directory(DirectoryUpdate),
    /// New mappings, and new queues when the whole config was read again.
    Reload(MappingSet, Option<RoutingConfig>),
    /// Answered once the loop has gone round: the watchdog's liveness check.
    Ping(oneshot::Sender<()>),
}

/// What the loop shows about itself, refreshed every step.
#[derive(Clone, Debug, Default)]
pub struct LoopStatus {
    pub agents: usize,
    pub linked: usize,
    pub outbox: usize,
    pub directory_users: usize,
    pub directory_loaded: bool,
    pub profiles: Vec<String>,
    pub stats: crate::sync::Stats,
    pub commits: u64,
    pub events: u64,
}

/// Where the loop's output goes.
pub struct Outputs {
    pub events: broadcast::Sender<Event>,
    pub writes: mpsc::UnboundedSender<WriteJob>,
    pub poll_users: watch::Sender<Arc<Vec<String>>>,
    pub status: watch::Sender<LoopStatus>,
    pub metrics: DaemonMetrics,
}

/// Inputs the loop selects on.
pub struct Inputs {
    pub commands: mpsc::Receiver<Command>,
    pub presences: mpsc::Receiver<PresenceUpdate>,
    pub write_results: mpsc::Receiver<WriteResult>,
}

impl<S: Store> SyncLoop<S> {
    pub(super) fn command(&mut self, now: Timestamp, cmd: Command) {
        match cmd {
            Command::PutAgent { id, body, reply } => match self.put_agent(now, &id, body) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::DeleteAgent { id, reply } => match self.delete_agent(now, &id) {
                Ok(()) => self.step.replies.push(Reply::Deleted(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::ReportStatus { id, body, reply } => match self.report(now, &id, body) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Agent { id, reply } => {
                let _ = reply.send(self.view(&id, now));
            }
            Command::Agents { reply } => {
                let all = self
                    .agents
                    .keys()
                    .filter_map(|id| self.view(id, now).ok())
                    .collect();
                let _ = reply.send(all);
            }
            Command::ResumeAgent { id, reply } => match self.resume(now, &id) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Queues { reply } => {
                let _ = reply.send(self.queue_views(now));
            }
            Command::Queue { name, reply } => {
                let _ = reply.send(self.queue_view(&name, now));
            }
            Command::AddContact { body, reply } => match self.add_contact(now, body) {
                Ok(id) => self.step.replies.push(Reply::Contact(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Contact { id, reply } => {
                let _ = reply.send(self.contact_view(&id));
            }
            Command::ContactAction {
                id,
                action,
                body,
                reply,
            } => match self.contact_action(now, &id, action, body) {
                Ok(()) => self.step.replies.push(Reply::Contact(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Directory(update) => self.directory_update(now, update),
            Command::Reload(set, routing) => {
                self.reload(now, set);
                if let Some(routing) = routing {
                    self.reload_queues(now, routing);
                }
            }
            Command::Ping(tx) => self.step.replies.push(Reply::Ping(tx)),
        }
    }
}

//! The loop's command protocol: what the API and the other tasks ask of it
//! ([`Command`]) in the domain's terms (settings, status reports, new
//! contacts; HTTP bodies are checked and turned into these at the API's
//! edge, `daemon/service.rs`), the inputs it selects on, where its output goes, the
//! status it shows, and the dispatch of each command to its handler.

use std::collections::BTreeMap;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::RoutingConfig;
use crate::events::Event;
use crate::graph::PresenceUpdate;
use crate::graph::poller::PollUsersSender;
use crate::metrics::DaemonMetrics;
use crate::routing::{Membership, NewContact, QueueView};
use crate::store::Store;
use crate::time::Timestamp;

use super::super::directory::DirectoryUpdate;
use super::super::mappings::MappingSet;
use super::super::writer::{WriteJob, WriteResult};
use super::SyncLoop;
use super::agents::{AgentState, ContactState};
use super::error::LoopError;
use super::step::Reply;

/// An agent's settings, all of them: what is left out is the default.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSettings {
    /// A Teams object id, or a UPN or mail the directory knows (trimmed,
    /// not empty).
    pub teams_user: String,
    /// A UPN the directory does not know yet is linked when it appears.
    pub auto_link: bool,
    /// `None`: the directory's.
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    pub skills: BTreeMap<String, u8>,
    /// `None`: the directory's.
    pub phone: Option<String>,
    /// `None`: the agent's groups decide.
    pub profile: Option<String>,
    pub queues: Vec<Membership>,
    pub capacity: Option<u8>,
}

/// A CC status the contact center reports for an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CcStatusReport {
    pub status: String,
    /// When it changed in the CC; `None`: now.
    pub at: Option<Timestamp>,
}

/// What is done to a contact; `agent`, when given, must be the agent the
/// contact is offered to (or is with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactMove {
    Accept { agent: Option<String> },
    Decline { agent: Option<String> },
    Complete { agent: Option<String> },
    Abandon,
}

/// What the API and the other tasks ask of the loop.
pub enum Command {
    PutAgent {
        id: String,
        settings: AgentSettings,
        reply: oneshot::Sender<Result<AgentState, LoopError>>,
    },
    DeleteAgent {
        id: String,
        reply: oneshot::Sender<Result<(), LoopError>>,
    },
    ReportStatus {
        id: String,
        report: CcStatusReport,
        reply: oneshot::Sender<Result<AgentState, LoopError>>,
    },
    Agent {
        id: String,
        reply: oneshot::Sender<Result<AgentState, LoopError>>,
    },
    /// A page of agents in id order (the status board at 50,000 agents).
    AgentsPage {
        filter: AgentFilter,
        reply: oneshot::Sender<AgentPage>,
    },
    /// The agents of these ids that exist (the board's changed agents).
    AgentsById {
        ids: Vec<String>,
        reply: oneshot::Sender<Vec<AgentState>>,
    },
    ResumeAgent {
        id: String,
        reply: oneshot::Sender<Result<AgentState, LoopError>>,
    },
    Queues {
        reply: oneshot::Sender<Vec<QueueView>>,
    },
    Queue {
        name: String,
        reply: oneshot::Sender<Result<QueueView, LoopError>>,
    },
    AddContact {
        contact: NewContact,
        reply: oneshot::Sender<Result<ContactState, LoopError>>,
    },
    Contact {
        id: String,
        reply: oneshot::Sender<Result<ContactState, LoopError>>,
    },
    ContactMove {
        id: String,
        action: ContactMove,
        reply: oneshot::Sender<Result<ContactState, LoopError>>,
    },
    Directory(DirectoryUpdate),
    /// New mappings, and new queues when the whole config was read again.
    Reload(MappingSet, Option<RoutingConfig>),
    /// Answered once the loop has gone round: the watchdog's liveness check.
    Ping(oneshot::Sender<()>),
    /// Holds every Teams write, saying why (the app lacks the permission
    /// to write presence), or releases them (`None`): the newest target
    /// of each agent goes out then.
    HoldWrites(Option<String>),
}

/// Which agents a page holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Agents with an id after this one.
    pub after: Option<String>,
    pub limit: usize,
    /// Only agents whose id, display name or UPN contains this,
    /// ignoring case.
    pub search: Option<String>,
}

/// A page of agents.
#[derive(Debug, Default)]
pub struct AgentPage {
    pub agents: Vec<AgentState>,
    /// The id to pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
    /// Agents that match the filter, on every page.
    pub total: usize,
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
    /// The Teams users linked and unlinked, a step's changes at a time.
    pub poll_users: PollUsersSender,
    pub status: watch::Sender<LoopStatus>,
    pub metrics: DaemonMetrics,
    /// The shared directory view: where the loop looks users up, and what
    /// it tells of each committed step's links and unlinks.
    pub directory_view: std::sync::Arc<crate::directory::DirectoryView>,
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
            Command::PutAgent {
                id,
                settings,
                reply,
            } => match self.put_agent(now, &id, settings) {
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
            Command::ReportStatus { id, report, reply } => match self.report(now, &id, report) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Agent { id, reply } => {
                let _ = reply.send(self.state(&id, now));
            }
            Command::AgentsPage { filter, reply } => {
                let _ = reply.send(self.agents_page(&filter, now));
            }
            Command::AgentsById { ids, reply } => {
                let found = ids
                    .iter()
                    .filter_map(|id| self.state(id, now).ok())
                    .collect();
                let _ = reply.send(found);
            }
            Command::ResumeAgent { id, reply } => match self.resume(now, &id) {
                Ok(()) => self.step.replies.push(Reply::Agent(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Queues { reply } => {
                let _ = reply.send(self.queue_states(now));
            }
            Command::Queue { name, reply } => {
                let _ = reply.send(self.queue_state(&name, now));
            }
            Command::AddContact { contact, reply } => match self.add_contact(now, contact) {
                Ok(id) => self.step.replies.push(Reply::Contact(reply, id)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Contact { id, reply } => {
                let _ = reply.send(self.contact_state(&id));
            }
            Command::ContactMove { id, action, reply } => match self.contact_move(now, &id, action)
            {
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
            Command::HoldWrites(why) => self.hold_writes(now, why),
        }
    }
}

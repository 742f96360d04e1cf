//! What the HTTP layer needs from the daemon. The routes depend on this trait
//! only, so they are tested against a small in-memory service and the daemon
//! is tested without HTTP.

use std::future::Future;

use tokio::sync::broadcast;

use crate::events::Event;

use super::error::ApiError;
use super::model::{
    AgentOut, AgentQuery, AgentUpsert, ContactAction, ContactActionIn, ContactIn, ContactOut,
    DirectoryList, DirectoryUserOut, Health, PageOut, QueueOut, Readiness, StatusReport,
};
use crate::directory::DirectoryQuery;

pub trait Service: Send + Sync + 'static {
    /// Creates or updates an agent; durable when it returns `Ok`.
    fn put_agent(
        &self,
        id: String,
        body: AgentUpsert,
    ) -> impl Future<Output = Result<AgentOut, ApiError>> + Send;

    fn delete_agent(&self, id: String) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Records a CC status; durable when it returns `Ok`. An unknown status
    /// is a 422 naming the `status` field.
    fn put_status(
        &self,
        id: String,
        body: StatusReport,
    ) -> impl Future<Output = Result<AgentOut, ApiError>> + Send;

    /// A page of agents in id order: at most `query.limit` after
    /// `query.cursor`, of those matching `query.search`; with the cursor of
    /// the next page and the count of every match.
    fn agents_page(
        &self,
        query: AgentQuery,
    ) -> impl Future<Output = Result<(Vec<AgentOut>, PageOut), ApiError>> + Send;

    /// The agents of these ids that exist, for the status board's stream.
    fn agents_by_id(
        &self,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<AgentOut>, ApiError>> + Send;

    fn agent(&self, id: String) -> impl Future<Output = Result<AgentOut, ApiError>> + Send;

    /// Lifts a routing pause after missed offers.
    fn resume_agent(&self, id: String) -> impl Future<Output = Result<AgentOut, ApiError>> + Send;

    fn queues(&self) -> impl Future<Output = Result<Vec<QueueOut>, ApiError>> + Send;

    fn queue(&self, name: String) -> impl Future<Output = Result<QueueOut, ApiError>> + Send;

    /// Queues a contact (offered at once if an agent is free); durable
    /// when it returns `Ok`.
    fn add_contact(
        &self,
        body: ContactIn,
    ) -> impl Future<Output = Result<ContactOut, ApiError>> + Send;

    fn contact(&self, id: String) -> impl Future<Output = Result<ContactOut, ApiError>> + Send;

    /// Accept, decline, complete or abandon; durable when it returns `Ok`.
    fn contact_action(
        &self,
        id: String,
        action: ContactAction,
        body: ContactActionIn,
    ) -> impl Future<Output = Result<ContactOut, ApiError>> + Send;

    /// Committed events with `seq > after`, oldest first, at most `limit`.
    fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, ApiError>> + Send;

    /// The oldest event still kept; a consumer asking for older ones has a
    /// gap it must be told about.
    fn first_seq(&self) -> impl Future<Output = Result<Option<u64>, ApiError>> + Send;

    /// The sequence number of the newest event ever committed (0: none),
    /// pruned or not. A `since` beyond it cannot come from this store.
    fn last_seq(&self) -> impl Future<Output = Result<u64, ApiError>> + Send;

    /// Live events as they are committed, in sequence order.
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// A page of the Teams directory matching `query`.
    fn directory(
        &self,
        query: DirectoryQuery,
    ) -> impl Future<Output = Result<DirectoryList, ApiError>> + Send;

    /// One user of the directory by object id; 404 when it lists none.
    fn directory_user(
        &self,
        id: String,
    ) -> impl Future<Output = Result<DirectoryUserOut, ApiError>> + Send;

    /// Readiness for the open `/readyz`: no tenant, app or user detail.
    fn readiness(&self) -> impl Future<Output = Readiness> + Send;

    /// Readiness in full, with the Graph app, for `GET /v1/health`.
    fn health(&self) -> impl Future<Output = Health> + Send;

    /// Prometheus text exposition of the daemon's metrics.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}

//! What each node reports of itself (role, log position, address), in the
//! tenant's nodes bucket under its node id, for the status board's lag.

use std::sync::Arc;

use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::connect::Inner;
use super::error::{ClusterError, bounded};
use crate::cluster::Position;

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Active,
    Standby,
}

/// One node's report (JSON in the bucket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub role: Role,
    /// The last log position its store has.
    pub position: Position,
    pub api_url: String,
    /// When it reported.
    pub at: DateTime<Utc>,
}

/// The nodes bucket. Cheap to clone.
#[derive(Clone)]
pub struct NodeReports {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeReports")
            .field("bucket", &self.inner.names.nodes_bucket())
            .finish()
    }
}

impl NodeReports {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        NodeReports { inner }
    }

    async fn store(&self) -> Result<&kv::Store, ClusterError> {
        let inner = &self.inner;
        inner
            .kv(&inner.nodes_store, inner.names.nodes_bucket())
            .await
    }

    /// Stores `report` under its node id (replacing the previous one).
    pub async fn put(&self, report: &NodeReport) -> Result<(), ClusterError> {
        let store = self.store().await?;
        let value = serde_json::to_vec(report)
            .map_err(|e| ClusterError::Invalid(format!("the node report: {e}")))?;
        let what = format!(
            "reporting node {} in {}",
            report.node_id,
            self.inner.names.nodes_bucket()
        );
        bounded(
            &what,
            self.inner.timeout,
            store.put(report.node_id.as_str(), value.into()),
        )
        .await
        .map(|_| ())
    }

    /// Every node's last report, by node id.
    pub async fn all(&self) -> Result<Vec<NodeReport>, ClusterError> {
        let store = self.store().await?;
        let what = format!(
            "reading the node reports in {}",
            self.inner.names.nodes_bucket()
        );
        let read = async {
            let keys: Vec<String> = store
                .keys()
                .await
                .map_err(|e| e.to_string())?
                .try_collect()
                .await
                .map_err(|e| e.to_string())?;
            let mut reports = Vec::with_capacity(keys.len());
            for key in keys {
                match store.entry(key).await.map_err(|e| e.to_string())? {
                    Some(entry) if entry.operation == Operation::Put => {
                        reports.push(entry.value);
                    }
                    _ => {}
                }
            }
            Ok::<_, String>(reports)
        };
        let values = bounded(&what, self.inner.timeout, read).await?;
        let mut reports = values
            .iter()
            .map(|v| serde_json::from_slice(v).map_err(|e| ClusterError::decode(&what, e)))
            .collect::<Result<Vec<NodeReport>, _>>()?;
        reports.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(reports)
    }
}

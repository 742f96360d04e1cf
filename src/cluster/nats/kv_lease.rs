//! The leadership lease: the key `leader` of the tenant's lease bucket,
//! whose `max_age` is the lease TTL. Whoever creates the key holds the
//! lease; the holder renews it by compare-and-set on the key's revision;
//! a holder that stops renewing loses the key to the bucket's `max_age`
//! and another node can create it. See [`crate::cluster::lease`] for the
//! timing rules.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connect::Inner;
use super::error::{ClusterError, LeaseError, bounded};
use super::names::LEASE_KEY;
use crate::cluster::lease::LeaseTiming;

/// Who holds the lease, as stored in the key (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    pub node_id: String,
    /// The holder's API, as the other nodes reach it.
    pub api_url: String,
    /// When it took the lease (kept across renewals).
    pub since: DateTime<Utc>,
}

/// A lease this node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The key's revision this node wrote last: the next renewal's
    /// compare-and-set.
    pub revision: u64,
    pub holder: LeaseHolder,
    /// Until when this node may act as the active one: the send instant of
    /// the request that acquired or renewed it, plus the TTL, less the
    /// margin ([`LeaseTiming::valid_until`]).
    pub valid_until: Instant,
}

/// The lease bucket. Cheap to clone.
#[derive(Clone)]
pub struct KvLease {
    inner: Arc<Inner>,
    timing: LeaseTiming,
}

impl std::fmt::Debug for KvLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvLease")
            .field("bucket", &self.inner.names.lease_bucket())
            .field("timing", &self.timing)
            .finish()
    }
}

impl KvLease {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let timing = LeaseTiming::new(inner.lease_ttl);
        KvLease { inner, timing }
    }

    /// The timing rules of this lease (its TTL and margin).
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    async fn store(&self) -> Result<&kv::Store, ClusterError> {
        let inner = &self.inner;
        inner
            .kv(&inner.lease_store, inner.names.lease_bucket())
            .await
    }

    /// Takes the lease for `me` if nobody holds it; `None` when another
    /// node (or this one, from before a restart) does.
    pub async fn acquire(&self, me: &LeaseHolder) -> Result<Option<Lease>, ClusterError> {
        let store = self.store().await?;
        let value = encode(me)?;
        let what = format!("taking the lease in {}", self.inner.names.lease_bucket());
        let sent = Instant::now();
        match tokio::time::timeout(self.inner.timeout, store.create(LEASE_KEY, value.into())).await
        {
            Ok(Ok(revision)) => Ok(Some(Lease {
                revision,
                holder: me.clone(),
                valid_until: self.timing.valid_until(sent),
            })),
            Ok(Err(error)) if error.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Ok(Err(error)) => Err(ClusterError::request(what, error)),
            Err(_) => Err(ClusterError::Timeout {
                what,
                timeout: self.inner.timeout,
            }),
        }
    }

    /// Renews `lease` by compare-and-set on its revision. `Lost` when the
    /// key moved on (taken by another node, or expired): this node must
    /// stop acting as the active one at once. `Unavailable` when NATS did
    /// not confirm: retry while the lease is valid.
    pub async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let store = self
            .store()
            .await
            .map_err(|e| LeaseError::Unavailable(e.to_string()))?;
        let value = encode(&lease.holder).map_err(|e| LeaseError::Unavailable(e.to_string()))?;
        let sent = Instant::now();
        match tokio::time::timeout(
            self.inner.timeout,
            store.update(LEASE_KEY, value.into(), lease.revision),
        )
        .await
        {
            Ok(Ok(revision)) => Ok(Lease {
                revision,
                holder: lease.holder.clone(),
                valid_until: self.timing.valid_until(sent),
            }),
            Ok(Err(error)) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(format!(
                    "the lease key is no longer at revision {} (another node took it, or it expired)",
                    lease.revision
                )))
            }
            Ok(Err(error)) => Err(LeaseError::Unavailable(error.to_string())),
            Err(_) => Err(LeaseError::Unavailable(format!(
                "no answer within {}ms",
                self.inner.timeout.as_millis()
            ))),
        }
    }

    /// Who holds the lease now (`None`: nobody; a node may take it).
    pub async fn holder(&self) -> Result<Option<LeaseHolder>, ClusterError> {
        let store = self.store().await?;
        let what = format!("reading the lease in {}", self.inner.names.lease_bucket());
        let entry = bounded(&what, self.inner.timeout, store.entry(LEASE_KEY)).await?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                serde_json::from_slice(&entry.value)
                    .map(Some)
                    .map_err(|e| ClusterError::decode(what, e))
            }
            _ => Ok(None),
        }
    }

    /// Gives the lease up (a clean stop), so that a standby takes over at
    /// once instead of after the TTL. Deletes the key only if it is still
    /// at `lease`'s revision: a lease already lost is left to its new
    /// holder, and that is not an error.
    pub async fn release(&self, lease: &Lease) -> Result<(), ClusterError> {
        let store = self.store().await?;
        let what = format!("releasing the lease in {}", self.inner.names.lease_bucket());
        match tokio::time::timeout(
            self.inner.timeout,
            store.delete_expect_revision(LEASE_KEY, Some(lease.revision)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if error.kind() == UpdateErrorKind::WrongLastRevision => Ok(()),
            Ok(Err(error)) => Err(ClusterError::request(what, error)),
            Err(_) => Err(ClusterError::Timeout {
                what,
                timeout: self.inner.timeout,
            }),
        }
    }
}

fn encode(holder: &LeaseHolder) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(holder).map_err(|e| ClusterError::Invalid(format!("the lease holder: {e}")))
}

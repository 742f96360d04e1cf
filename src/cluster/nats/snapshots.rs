//! Snapshots in the tenant's object store: one object, `latest`, replaced
//! by each new snapshot; its description holds the [`SnapshotMeta`] (JSON).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectMetadata};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::connect::Inner;
use super::error::{ClusterError, bounded};
use super::names::SNAPSHOT_OBJECT;
use crate::cluster::SnapshotMeta;

/// Time allowed per MiB of snapshot, on top of the request timeout.
const PER_MIB: Duration = Duration::from_millis(500);
/// The object store's own chunk size (async-nats's default), used unless
/// the server takes less a message.
const CHUNK: usize = 128 * 1024;
/// Room for a chunk message's headers within the server's `max_payload`.
const CHUNK_HEADERS: usize = 4096;

/// The snapshot store. Cheap to clone.
#[derive(Clone)]
pub struct Snapshots {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("bucket", &self.inner.names.snapshot_bucket())
            .finish()
    }
}

impl Snapshots {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Snapshots { inner }
    }

    async fn store(&self) -> Result<&object_store::ObjectStore, ClusterError> {
        let inner = &self.inner;
        inner
            .snapshot_store
            .get_or_try_init(|| async {
                let bucket = inner.names.snapshot_bucket();
                bounded(
                    &format!("opening the object store {bucket}"),
                    inner.timeout,
                    inner.js.get_object_store(bucket.clone()),
                )
                .await
            })
            .await
    }

    fn bound(&self, bytes: u64) -> Duration {
        let mib = u32::try_from(bytes / (1024 * 1024) + 1).unwrap_or(u32::MAX);
        self.inner
            .timeout
            .saturating_add(PER_MIB.saturating_mul(mib))
    }

    /// Stores what `body` reads (`meta.bytes` bytes) as the latest
    /// snapshot, described by `meta`; the previous one is dropped once this
    /// one is complete.
    pub async fn put(
        &self,
        meta: &SnapshotMeta,
        mut body: impl AsyncRead + Unpin,
    ) -> Result<(), ClusterError> {
        let store = self.store().await?;
        let description = serde_json::to_string(meta)
            .map_err(|e| ClusterError::Invalid(format!("the snapshot's description: {e}")))?;
        // Chunks the server takes, even where its `max_payload` is set
        // below the object store's default chunk.
        let max_payload = self.inner.client.server_info().max_payload;
        let chunk = match max_payload {
            // Not known (yet): the default.
            0 => CHUNK,
            max => CHUNK.min(max.saturating_sub(CHUNK_HEADERS).max(1024)),
        };
        let object = ObjectMetadata {
            name: SNAPSHOT_OBJECT.to_owned(),
            description: Some(description),
            chunk_size: Some(chunk),
            ..Default::default()
        };
        let what = format!(
            "storing a snapshot of {} bytes in {}",
            meta.bytes,
            self.inner.names.snapshot_bucket()
        );
        let bound = self.bound(meta.bytes);
        bounded(&what, bound, store.put(object, &mut body))
            .await
            .map(|_| ())
    }

    /// The latest snapshot and what it is of; `None` when none was put.
    pub async fn latest(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, ClusterError> {
        let store = self.store().await?;
        let bucket = self.inner.names.snapshot_bucket();
        let what = format!("reading the latest snapshot in {bucket}");
        let info = match tokio::time::timeout(self.inner.timeout, store.info(SNAPSHOT_OBJECT)).await
        {
            Ok(Ok(info)) if info.deleted => return Ok(None),
            Ok(Ok(info)) => info,
            Ok(Err(error)) if error.kind() == object_store::InfoErrorKind::NotFound => {
                return Ok(None);
            }
            Ok(Err(error)) => return Err(ClusterError::request(what, error)),
            Err(_) => {
                return Err(ClusterError::Timeout {
                    what,
                    timeout: self.inner.timeout,
                });
            }
        };
        let meta: SnapshotMeta = info
            .description
            .as_deref()
            .ok_or_else(|| ClusterError::decode(&what, "the snapshot has no description"))
            .and_then(|d| serde_json::from_str(d).map_err(|e| ClusterError::decode(&what, e)))?;
        let bound = self.bound(info.size as u64);
        let read = async {
            let mut object = store
                .get(SNAPSHOT_OBJECT)
                .await
                .map_err(|e| e.to_string())?;
            let mut bytes = Vec::with_capacity(info.size);
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(bytes)
        };
        let bytes = bounded(&what, bound, read).await?;
        Ok(Some((meta, bytes)))
    }
}

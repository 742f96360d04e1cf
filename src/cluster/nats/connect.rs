//! One NATS connection per node, and the streams and buckets it needs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use async_nats::{Client, ConnectOptions};
use tokio::sync::OnceCell;

use super::error::{ClusterError, bounded};
use super::events::EventsPublisher;
use super::kv_lease::KvLease;
use super::log::{self, JetStreamLog};
use super::names::Names;
use super::nodes::NodeReports;
use super::snapshots::Snapshots;
use crate::config::{ClusterConfig, NatsAuth};

/// Events older than this are dropped from the events stream.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A re-published event (same id) within this window is stored once.
const EVENTS_DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The bounds of the interval between pings (the request timeout within them).
const PING_INTERVAL_MIN: Duration = Duration::from_secs(1);
const PING_INTERVAL_MAX: Duration = Duration::from_secs(10);
/// The longest wait between two reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// A connection to the NATS cluster, with the tenant's names. Cheap to
/// clone: the clones share one client.
#[derive(Clone)]
pub struct Nats {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub client: Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub node_id: String,
    pub replicas: usize,
    pub lease_ttl: Duration,
    pub history: Duration,
    pub timeout: Duration,
    pub log: JetStreamLog,
    pub lease_store: OnceCell<kv::Store>,
    pub nodes_store: OnceCell<kv::Store>,
    pub snapshot_store: OnceCell<object_store::ObjectStore>,
}

impl Inner {
    /// The KV bucket `bucket`, opened once and kept in `cell`.
    pub async fn kv<'a>(
        &'a self,
        cell: &'a OnceCell<kv::Store>,
        bucket: String,
    ) -> Result<&'a kv::Store, ClusterError> {
        cell.get_or_try_init(|| async {
            bounded(
                &format!("opening the KV bucket {bucket}"),
                self.timeout,
                self.js.get_key_value(bucket.clone()),
            )
            .await
        })
        .await
    }
}

/// The connection as `/readyz` and the board show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsStatus {
    pub connected: bool,
    /// The server this node is (or was last) connected to: its name and
    /// the address it announces.
    pub server: Option<String>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("tenant", &self.inner.names.tenant())
            .field("status", &self.status())
            .finish()
    }
}

impl Nats {
    /// Connects to the first server of `config.nats_urls` that answers,
    /// reading the credentials. The connection then reconnects on its own
    /// (to any server of the cluster) for as long as it lives; requests
    /// made while it is down fail after the request timeout.
    pub async fn connect(config: &ClusterConfig) -> Result<Nats, ClusterError> {
        let names = Names::new(&config.tenant)?;
        let urls = config.nats_urls.join(", ");
        if config.nats_urls.is_empty() {
            return Err(ClusterError::Connect {
                urls,
                reason: "no server URL is configured".into(),
            });
        }
        let timeout = config.request_timeout;
        let mut options = ConnectOptions::new()
            .name(format!("presence-sync {}", config.node_id))
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            // A server that hangs with its socket open (paused, partitioned)
            // is left after three unanswered pings: about three times this.
            .ping_interval(timeout.clamp(PING_INTERVAL_MIN, PING_INTERVAL_MAX))
            .reconnect_delay_callback(|attempts| {
                // 0, 100 ms, 200 ms, ... up to 2 s: a JetStream failover
                // takes seconds, so reconnect soon but without spinning.
                let step = Duration::from_millis(100)
                    .saturating_mul(u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX));
                step.min(RECONNECT_DELAY_MAX)
            });
        match &config.auth {
            NatsAuth::None => {}
            NatsAuth::Token(source) => {
                let token = source
                    .read()
                    .map_err(|e| ClusterError::Credentials(e.to_string()))?;
                options = options.token(token.expose().to_owned());
            }
            NatsAuth::UserPassword { user, password } => {
                let password = password
                    .read()
                    .map_err(|e| ClusterError::Credentials(e.to_string()))?;
                options = options.user_and_password(user.clone(), password.expose().to_owned());
            }
        }
        let addresses = config
            .nats_urls
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>()
                    .map_err(|e| ClusterError::Connect {
                        urls: url.clone(),
                        reason: format!("not a NATS server address: {e}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The connector tries each server once, each bounded by the
        // connection timeout; the whole is bounded too.
        let attempt_bound = timeout
            .saturating_mul(u32::try_from(addresses.len()).unwrap_or(u32::MAX))
            .saturating_add(timeout);
        let client = match tokio::time::timeout(attempt_bound, options.connect(addresses)).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(ClusterError::Connect {
                    urls,
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                return Err(ClusterError::Connect {
                    urls,
                    reason: format!("no answer within {}ms", attempt_bound.as_millis()),
                });
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let log =
            log::JetStreamLog::start(js.clone(), names.clone(), config.node_id.clone(), timeout);
        Ok(Nats {
            inner: Arc::new(Inner {
                client,
                js,
                names,
                node_id: config.node_id.clone(),
                replicas: config.replicas,
                lease_ttl: config.lease_ttl,
                history: config.history,
                timeout,
                log,
                lease_store: OnceCell::new(),
                nodes_store: OnceCell::new(),
                snapshot_store: OnceCell::new(),
            }),
        })
    }

    /// Creates the log and events streams, the lease and nodes buckets and
    /// the snapshot store, or brings existing ones to the configured
    /// settings (replicas, ages). Idempotent. A stream whose settings
    /// JetStream cannot change (its storage, its subjects owned by another
    /// stream) is explained in the error.
    pub async fn provision(&self) -> Result<(), ClusterError> {
        let inner = &self.inner;
        let names = &inner.names;
        let log = stream::Config {
            name: names.log_stream(),
            description: Some("presence-sync: the commit log".into()),
            subjects: vec![names.log_subject()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: inner.history,
            num_replicas: inner.replicas,
            discard: stream::DiscardPolicy::Old,
            // Retried appends carry an id of their own (see `log`).
            duplicate_window: Duration::from_secs(2 * 60).min(inner.history),
            ..Default::default()
        };
        self.stream(log).await?;
        let events = stream::Config {
            name: names.events_stream(),
            description: Some("presence-sync: events, a subject per type".into()),
            subjects: vec![names.events_subjects()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: EVENTS_MAX_AGE,
            num_replicas: inner.replicas,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: EVENTS_DUPLICATE_WINDOW,
            ..Default::default()
        };
        self.stream(events).await?;
        self.bucket(kv::Config {
            bucket: names.lease_bucket(),
            description: "presence-sync: the active node's lease".into(),
            history: 1,
            max_age: inner.lease_ttl,
            storage: stream::StorageType::File,
            num_replicas: inner.replicas,
            ..Default::default()
        })
        .await?;
        self.bucket(kv::Config {
            bucket: names.nodes_bucket(),
            description: "presence-sync: each node's role and position".into(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: inner.replicas,
            ..Default::default()
        })
        .await?;
        self.object_store().await
    }

    async fn stream(&self, config: stream::Config) -> Result<(), ClusterError> {
        let what = format!("creating or updating the stream {}", config.name);
        let name = config.name.clone();
        match tokio::time::timeout(
            self.inner.timeout,
            self.inner.js.create_or_update_stream(config),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(ClusterError::Provision {
                what,
                reason: format!(
                    "{error}; if the stream {name} exists with settings JetStream cannot change \
                     (storage, or subjects another stream owns), delete it or rename the tenant"
                ),
            }),
            Err(_) => Err(ClusterError::Timeout {
                what,
                timeout: self.inner.timeout,
            }),
        }
    }

    /// A KV bucket is a stream `KV_<bucket>` on `$KV.<bucket>.>`; it is
    /// made here as async-nats would, but without its account query, whose
    /// answer from a 2.9 server async-nats 0.52 cannot read.
    async fn bucket(&self, config: kv::Config) -> Result<(), ClusterError> {
        let stream = stream::Config {
            name: format!("KV_{}", config.bucket),
            description: Some(config.description),
            subjects: vec![format!("$KV.{}.>", config.bucket)],
            max_messages_per_subject: config.history.max(1),
            max_bytes: -1,
            max_age: config.max_age,
            max_message_size: -1,
            storage: config.storage,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            num_replicas: config.num_replicas.max(1),
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        self.stream(stream).await
    }

    /// The object store's stream is created by its own call; when it
    /// exists, its replicas are brought to the configured number.
    async fn object_store(&self) -> Result<(), ClusterError> {
        let inner = &self.inner;
        let bucket = inner.names.snapshot_bucket();
        let stream_name = format!("OBJ_{bucket}");
        let what = format!("creating the object store {bucket}");
        let existing = tokio::time::timeout(inner.timeout, inner.js.get_stream(&stream_name)).await;
        match existing {
            Ok(Ok(mut stream)) => {
                let info = bounded(&what, inner.timeout, stream.info()).await?;
                if info.config.num_replicas != inner.replicas {
                    let mut config = info.config.clone();
                    config.num_replicas = inner.replicas;
                    bounded(&what, inner.timeout, inner.js.update_stream(config)).await?;
                }
                Ok(())
            }
            Ok(Err(error))
                if matches!(
                    error.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(e)
                        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                let config = object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("presence-sync: the latest snapshot".into()),
                    storage: stream::StorageType::File,
                    num_replicas: inner.replicas,
                    ..Default::default()
                };
                bounded(&what, inner.timeout, inner.js.create_object_store(config))
                    .await
                    .map(|_| ())
            }
            Ok(Err(error)) => Err(ClusterError::request(what, error)),
            Err(_) => Err(ClusterError::Timeout {
                what,
                timeout: inner.timeout,
            }),
        }
    }

    /// Whether the connection is up, and to which server.
    pub fn status(&self) -> NatsStatus {
        let connected = matches!(
            self.inner.client.connection_state(),
            async_nats::connection::State::Connected
        );
        let info = self.inner.client.server_info();
        let server = (!info.server_id.is_empty()).then(|| {
            let name = if info.server_name.is_empty() {
                &info.server_id
            } else {
                &info.server_name
            };
            format!("{name} ({}:{})", info.host, info.port)
        });
        NatsStatus { connected, server }
    }

    /// The largest message the connected server takes (its `max_payload`,
    /// 1 MiB unless configured): a log record, event or snapshot chunk
    /// must fit, headers included.
    pub fn max_payload(&self) -> usize {
        self.inner.client.server_info().max_payload
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The tenant's names in NATS.
    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// The commit log (a clone shares the connection).
    pub fn log(&self) -> JetStreamLog {
        self.inner.log.clone()
    }

    /// The leadership lease.
    pub fn lease(&self) -> KvLease {
        KvLease::new(self.inner.clone())
    }

    /// The events' publisher.
    pub fn events(&self) -> EventsPublisher {
        EventsPublisher::new(self.inner.clone())
    }

    /// The snapshots' store.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots::new(self.inner.clone())
    }

    /// The nodes' reports.
    pub fn nodes(&self) -> NodeReports {
        NodeReports::new(self.inner.clone())
    }

    /// The underlying client, for what this module does not cover (tests,
    /// the daemon's own subscriptions).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The JetStream context, bounded by the request timeout.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }
}

//! `[cluster]`: an active/standby pair (or more nodes) sharing the store
//! through NATS JetStream. Without the section the daemon is one process
//! on its own sled store.

use std::time::Duration;

use reqwest::Url;

use super::SecretSource;

/// `[cluster]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// The NATS servers to connect to (`nats://host:port`, or
    /// `tls://host:port`); at least one. The client also learns the
    /// cluster's other servers from the one it reaches.
    pub nats_urls: Vec<String>,
    /// The name every stream and bucket of this deployment carries
    /// (`PS_<tenant>_LOG`, ...): letters, digits, `_` and `-`. Defaults to
    /// the Graph tenant id (a domain's dots become `_`).
    pub tenant: String,
    /// This node's name in the cluster: letters, digits, `_` and `-`;
    /// defaults to the host name. No two nodes may share one.
    pub node_id: String,
    /// This node's API as the other nodes and the contact center reach it
    /// (shown by standbys as the active's address); defaults to
    /// `http://<api.listen>`.
    pub advertise_url: Url,
    pub auth: NatsAuth,
    /// JetStream's replication factor for the streams and buckets, 1 to 5
    /// (at most the number of NATS servers).
    pub replicas: usize,
    /// The leadership lease's time to live: a standby takes over at most
    /// about this long after the active stopped renewing.
    pub lease_ttl: Duration,
    /// How long the log stream keeps records; a standby further behind
    /// starts from a snapshot.
    pub history: Duration,
    /// How often the active puts a snapshot of its store in NATS; less
    /// than half the history.
    pub snapshot_interval: Duration,
    /// Every NATS request (connect, publish ack, API call) gives up after this.
    pub request_timeout: Duration,
}

/// How the daemon proves itself to NATS.
#[derive(Clone, Debug, PartialEq)]
pub enum NatsAuth {
    None,
    /// A server token (`authorization { token: ... }`).
    Token(SecretSource),
    /// A user of the server's `authorization { users = [...] }`.
    UserPassword {
        user: String,
        password: SecretSource,
    },
}

impl ClusterConfig {
    /// The secrets to read at start.
    pub fn secrets(&self) -> Vec<&SecretSource> {
        match &self.auth {
            NatsAuth::None => Vec::new(),
            NatsAuth::Token(token) => vec![token],
            NatsAuth::UserPassword { password, .. } => vec![password],
        }
    }

    /// A config with the documented defaults for everything but the
    /// servers, names and address (tests, tools); one replica.
    pub fn new(nats_urls: Vec<String>, tenant: &str, node_id: &str, advertise_url: Url) -> Self {
        ClusterConfig {
            nats_urls,
            tenant: tenant.to_owned(),
            node_id: node_id.to_owned(),
            advertise_url,
            auth: NatsAuth::None,
            replicas: 1,
            lease_ttl: Duration::from_secs(5),
            history: Duration::from_secs(24 * 3600),
            snapshot_interval: Duration::from_secs(10 * 60),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `name` may be a tenant or node name: 1 to 64 of `A-Za-z0-9_-`.
pub fn is_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

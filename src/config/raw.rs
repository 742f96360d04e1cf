//! The config file's shape as serde sees it. Every key is optional here:
//! required keys, defaults and value checks live in validation, so that one
//! run reports every missing or bad value instead of the first one.

use std::collections::BTreeMap;
use std::fmt;

use figment::value::Value;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

/// Keys that would put a secret in the file. They are accepted by serde only
/// to be rejected with a message saying where secrets go instead.
pub(super) const INLINE_SECRET_KEYS: &[&str] = &[
    "client_secret",
    "client_key",
    "token",
    "viewer_token",
    "secret",
    "client_state",
    "password",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGraph {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_certificate_file: Option<String>,
    pub client_key_file: Option<String>,
    pub login_base: Option<String>,
    pub graph_base: Option<String>,
    pub requests_per_30s: Option<i64>,
    pub request_timeout: Option<Text>,
    pub session_expiry: Option<Text>,
    pub read_share_max: Option<Text>,
    pub read_freshness_floor: Option<Text>,
    pub poll_round_min: Option<Text>,
    pub proxy: Option<String>,
    pub ca_file: Option<String>,
    pub client_secret: Option<IgnoredAny>,
    pub client_key: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub listen: Option<String>,
    pub token_file: Option<String>,
    pub viewer_token_file: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub token: Option<IgnoredAny>,
    pub viewer_token: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub state_dir: Option<String>,
    pub event_retention: Option<Text>,
    pub event_keep_at_least: Option<i64>,
    pub cache_mb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub echo_window: Option<Text>,
    pub loop_max_changes: Option<i64>,
    pub loop_window: Option<Text>,
    pub loop_cooldown: Option<Text>,
    pub reconcile_interval: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub url: Option<String>,
    pub secret_file: Option<String>,
    pub timeout: Option<Text>,
    pub max_retry_delay: Option<Text>,
    pub batch_size: Option<i64>,
    pub secret: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMappings {
    pub default_profile: Option<String>,
    /// Each profile is deserialized on its own, so that a mistake in one
    /// does not hide mistakes in the others.
    pub profiles: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub file: Option<String>,
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    /// Each queue is deserialized on its own, like profiles.
    pub queues: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub strategy: Option<String>,
    pub skills: Option<BTreeMap<String, i64>>,
    pub priority: Option<i64>,
    pub offer_timeout: Option<Text>,
    pub wrap_up: Option<Text>,
    pub max_no_answer: Option<i64>,
    pub miss_backoff: Option<Text>,
    pub max_wait: Option<Text>,
    pub overflow_queue: Option<String>,
    pub overflow_teams_users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub on_contact_status: Option<String>,
    pub after_contact_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    /// `"all"`, `"agents"` or `{ departments = [...] }`: checked in
    /// validation, so each wrong shape gets its own message.
    pub scope: Option<Value>,
    pub freshness: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubscriptions {
    pub enabled: Option<bool>,
    pub accounts: Option<Vec<String>>,
    pub notification_url: Option<String>,
    pub lifecycle_url: Option<String>,
    pub listen: Option<String>,
    pub client_state_file: Option<String>,
    pub encryption_certificate_file: Option<String>,
    pub encryption_key_file: Option<String>,
    pub reconcile_interval: Option<Text>,
    pub lifetime: Option<Text>,
    pub renew_before: Option<Text>,
    pub max_users_per_subscription: Option<i64>,
    pub max_body: Option<Text>,
    pub client_state: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub nats_url: Option<String>,
    pub nats_urls: Option<Vec<String>>,
    pub tenant: Option<String>,
    pub node_id: Option<String>,
    pub advertise_url: Option<String>,
    pub auth: Option<String>,
    pub token_file: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub replicas: Option<i64>,
    pub lease_ttl: Option<Text>,
    pub history: Option<Text>,
    pub snapshot_interval: Option<Text>,
    pub request_timeout: Option<Text>,
    pub token: Option<IgnoredAny>,
    pub password: Option<IgnoredAny>,
}

/// A string that also accepts a bare number, so that `echo_window = 300` (or
/// `PRESENCE_SYNC_SYNC__ECHO_WINDOW=300`, which arrives as a number) gets the
/// duration parser's "needs a unit" message rather than a type error.
#[derive(Debug)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
}

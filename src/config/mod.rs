//! The daemon's config: one TOML file, overridable by `PRESENCE_SYNC_*`
//! environment variables, secrets kept out of it.
//!
//! Loading goes through three steps so that every error can be located:
//! the file is parsed with `toml` first (syntax errors and key positions),
//! then merged with the environment by figment into the serde shapes of
//! [`raw`], then validated into the types below. Each problem becomes a
//! [`Diagnostic`] at the key (`path:line:column`) or the variable
//! (`env NAME`) it came from.

mod cluster;
mod env;
mod origin;
mod raw;
pub mod secret;
mod source_map;
mod subscriptions;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use figment::value::Dict;
use serde::Deserialize;
use thiserror::Error;

use crate::diagnostics::{Diagnostic, did_you_mean};

pub use cluster::{ClusterConfig, NatsAuth, is_cluster_name};
pub use env::{Environment, PREFIX as ENV_PREFIX};
pub use origin::Origin;
pub use secret::{Secret, SecretError, SecretLocation, SecretSource};
pub use subscriptions::{EncryptionFiles, SubscriptionsConfig};

use origin::Locator;
use source_map::SourceMap;

/// The sections of the file, in the order the docs present them.
const SECTIONS: &[&str] = &[
    "graph",
    "api",
    "store",
    "sync",
    "webhook",
    "log",
    "mappings",
    "routing",
    "directory",
    "subscriptions",
    "cluster",
];

/// A loaded, validated config. Holds where secrets are, never their values.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was loaded from; relative paths in it were resolved
    /// against its directory.
    pub file: PathBuf,
    pub graph: GraphConfig,
    /// `[graph]`'s keys for how the presence budget is shared out.
    pub budget: BudgetConfig,
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub sync: SyncConfig,
    /// `None` when the file has no `[webhook]` section: no webhook sink.
    pub webhook: Option<WebhookConfig>,
    pub log: LogConfig,
    pub mappings: MappingsConfig,
    /// `[routing]`: the queues (none: routing answers 404 for every queue).
    pub routing: RoutingConfig,
    /// `[directory]`: who the directory lists and reads beyond the agents.
    pub directory: DirectoryConfig,
    /// `[subscriptions]`: presence change notifications through delegated
    /// service accounts (off unless `enabled`).
    pub subscriptions: SubscriptionsConfig,
    /// `[cluster]`: an active/standby pair on NATS JetStream; `None`
    /// without the section (one process on its own store).
    pub cluster: Option<ClusterConfig>,
}

/// `[directory]`: the Teams directory beyond the agents (`GET /v1/directory`).
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryConfig {
    pub scope: DirectoryScope,
    /// Every user in scope who is not an agent is read at least this often
    /// while the budget allows (agents keep their own, faster target).
    pub freshness: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            scope: DirectoryScope::All,
            freshness: Duration::from_secs(30),
        }
    }
}

/// Which Teams users the directory lists and reads, besides the agents
/// (always listed, read at the agent freshness).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryScope {
    /// Every Teams-enabled user of the tenant.
    All,
    /// The agents only: no presence read beyond theirs.
    Agents,
    /// The users of these departments (compared folded: case and accents
    /// aside), as the directory's `department` property names them.
    Departments(Vec<String>),
    /// The users who are members of these Entra groups, directly or
    /// through nested groups (object ids, lower case): read with
    /// GroupMember.Read.All at each directory refresh.
    Groups(Vec<String>),
}

impl DirectoryScope {
    /// The groups whose members the scope names (none unless `Groups`).
    pub fn groups(&self) -> &[String] {
        match self {
            DirectoryScope::Groups(ids) => ids,
            _ => &[],
        }
    }
}

/// `[routing]`: the routing core's queues (SPEC §6). Reloaded with SIGHUP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingConfig {
    pub queues: Vec<crate::routing::QueueSettings>,
    /// Per queue: the CC status an agent is put in when it accepts one of
    /// the queue's contacts, and when it completes it.
    pub statuses: BTreeMap<String, QueueStatuses>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStatuses {
    pub on_contact: Option<QueueStatus>,
    pub after_contact: Option<QueueStatus>,
}

/// A CC status a queue puts its agents in, and where the config sets it:
/// it can only be checked against the mapping profiles once they are read.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStatus {
    pub name: String,
    pub origin: Origin,
}

/// `[graph]`: the Microsoft Graph app and how hard we may use it.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphConfig {
    /// Entra tenant: a GUID or a domain.
    pub tenant_id: String,
    /// The app's client id; also the `sessionId` of our `setPresence` calls.
    pub client_id: String,
    pub auth: GraphAuth,
    /// Token endpoint host, without a trailing slash.
    pub login_base: String,
    /// Graph host, without a trailing slash.
    pub graph_base: String,
    /// Presence request budget per 30 seconds.
    pub requests_per_30s: u32,
    pub request_timeout: Duration,
    /// `expirationDuration` of our presence sessions.
    pub session_expiry: Duration,
    /// How Graph and Entra are reached: a proxy, extra CA certificates.
    pub outbound: Outbound,
}

/// The way out to Graph and Entra (`[graph]` `proxy`, `ca_file`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outbound {
    /// An HTTP proxy for every Graph and Entra request (`http://host:port`,
    /// HTTPS through `CONNECT`). Without it, `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` from the environment apply; with it,
    /// `NO_PROXY` still does.
    pub proxy: Option<String>,
    /// PEM certificates trusted besides the system's (a TLS-inspecting
    /// proxy's CA).
    pub ca_file: Option<PathBuf>,
}

/// How the presence budget is shared between writes and the agent reads
/// (`[graph]` `read_share_max`, `read_freshness_floor`, `poll_round_min`).
/// Writes always go first; the poller's round follows what they leave.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    /// The largest share of the budget the agent reads may take (0 < x ≤ 1).
    pub read_share_max: f64,
    /// Every agent is read at least this often while the budget allows,
    /// even when writes are busy.
    pub read_freshness_floor: Duration,
    /// The shortest poll round: no agent is read more often than this.
    pub poll_round_min: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            read_share_max: 0.6,
            read_freshness_floor: Duration::from_secs(5),
            poll_round_min: Duration::from_millis(500),
        }
    }
}

/// How the daemon proves it is the Graph app.
#[derive(Clone, Debug, PartialEq)]
pub enum GraphAuth {
    ClientSecret(SecretSource),
    Certificate {
        /// PEM certificate; public, read as is.
        certificate_file: PathBuf,
        /// PEM private key.
        key: SecretSource,
    },
}

/// `[api]`: the HTTP API the contact center talks to.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The bearer token clients must send.
    pub token: SecretSource,
    /// A second, read-only credential (`viewer_token_file`): it reads the
    /// status board and the GET routes, and writes nothing.
    pub viewer_token: Option<SecretSource>,
    pub max_body_bytes: usize,
}

impl ApiConfig {
    /// Reads the API token and the viewer token (when one is configured);
    /// a viewer token equal to the API token is refused, since it would
    /// write as the API token does.
    pub fn read_tokens(&self) -> Result<(Secret, Option<Secret>), SecretError> {
        let token = self.token.read()?;
        let viewer = match &self.viewer_token {
            Some(source) => {
                let viewer = source.read()?;
                if viewer == token {
                    return Err(SecretError::SameAs {
                        purpose: source.purpose,
                        other: self.token.purpose,
                    });
                }
                Some(viewer)
            }
            None => None,
        };
        Ok((token, viewer))
    }
}

/// `[store]`: durable state.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    pub state_dir: PathBuf,
    /// Events older than this are pruned from the event log...
    pub event_retention: Duration,
    /// ...except the newest this many, which are always kept.
    pub event_keep_at_least: usize,
    /// The storage engine's page cache, in MiB: what it keeps of the store
    /// in memory beyond the daemon's own state.
    pub cache_mb: u64,
}

/// `[sync]`: the engine's timing (SPEC §5).
#[derive(Clone, Debug, PartialEq)]
pub struct SyncConfig {
    pub echo_window: Duration,
    pub loop_max_changes: u32,
    pub loop_window: Duration,
    pub loop_cooldown: Duration,
    pub reconcile_interval: Duration,
}

/// `[webhook]`: the outbound webhook sink, for contact-center software that
/// cannot hold a WebSocket (SPEC §3.2).
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Where events are POSTed: an http or https URL.
    pub url: String,
    /// The HMAC-SHA256 key that signs every delivery.
    pub secret: SecretSource,
    /// Per delivery attempt, connect to last byte.
    pub timeout: Duration,
    /// The longest wait between two attempts at a failing delivery.
    pub max_retry_delay: Duration,
    /// Events per POST, 1 to 1000.
    pub batch_size: usize,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level (`info`) or per-target directives (`info,presence_sync=debug`).
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[mappings]`: which mapping profile applies to which agent group.
#[derive(Clone, Debug, PartialEq)]
pub struct MappingsConfig {
    /// Applies to agents in no listed group; always a key of `profiles`.
    pub default_profile: String,
    pub profiles: BTreeMap<String, ProfileConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProfileConfig {
    pub file: PathBuf,
    /// Agent groups on this profile; no group is in two profiles.
    pub groups: Vec<String>,
}

impl MappingsConfig {
    /// The profile for an agent group.
    pub fn profile_for_group(&self, group: &str) -> &str {
        self.profiles
            .iter()
            .find(|(_, p)| p.groups.iter().any(|g| g == group))
            .map_or(self.default_profile.as_str(), |(name, _)| name.as_str())
    }
}

impl Config {
    /// The sync engine's settings from `[sync]` and `[graph]`.
    pub fn engine_settings(&self) -> crate::sync::Settings {
        crate::sync::Settings {
            echo_window: self.sync.echo_window,
            loop_limits: crate::sync::loop_guard::LoopLimits {
                max_changes: self.sync.loop_max_changes,
                window: self.sync.loop_window,
                cooldown: self.sync.loop_cooldown,
            },
            session_expiry: self.graph.session_expiry,
            ..crate::sync::Settings::default()
        }
    }

    /// Every secret the config refers to, to read at start (or in `check`).
    pub fn secrets(&self) -> Vec<&SecretSource> {
        let mut secrets = Vec::new();
        match &self.graph.auth {
            GraphAuth::ClientSecret(source) => secrets.push(source),
            GraphAuth::Certificate { key, .. } => secrets.push(key),
        }
        secrets.push(&self.api.token);
        if let Some(viewer) = &self.api.viewer_token {
            secrets.push(viewer);
        }
        if let Some(webhook) = &self.webhook {
            secrets.push(&webhook.secret);
        }
        secrets.extend(self.subscriptions.secrets());
        if let Some(cluster) = &self.cluster {
            secrets.extend(cluster.secrets());
        }
        secrets
    }
}

/// Why a config could not be loaded: every problem found, each located.
#[derive(Debug, Error)]
#[error("{}", render(.diagnostics))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
    /// The mapping profiles the config names and where their files are, as
    /// far as they could be made out; lets `check` validate those files too
    /// when the rest of the config is wrong.
    pub profile_files: Vec<(String, PathBuf)>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Loads `path` with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &Environment::from_process())
    }

    /// Loads `path` with the given environment.
    pub fn load_with(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text, env),
            Err(error) => Err(ConfigError {
                diagnostics: vec![Diagnostic::whole_file(
                    path,
                    format!("cannot read the config: {error}"),
                )],
                profile_files: Vec::new(),
            }),
        }
    }

    /// Parses config text; `path` names it in diagnostics and is the base of
    /// relative paths.
    pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Config, ConfigError> {
        if let Err(error) = toml::from_str::<toml::Table>(text) {
            let message = error.message().trim_end().to_owned();
            let diagnostic = match error.span() {
                Some(span) => Diagnostic::at(path, text, span.start, message),
                None => Diagnostic::whole_file(path, message),
            };
            return Err(ConfigError {
                diagnostics: vec![diagnostic],
                profile_files: Vec::new(),
            });
        }
        let map = SourceMap::parse(text);
        let (overrides, mut diagnostics) = env::overrides(env, SECTIONS);
        let locator = Locator {
            file: path,
            source: text,
            map: &map,
            overrides: &overrides,
        };
        let figment = overrides
            .iter()
            .fold(Figment::from(Toml::string(text)), |f, o| f.merge(o.clone()));
        let top: Dict = match figment.extract() {
            Ok(top) => top,
            Err(error) => {
                diagnostics.extend(figment_errors(error, &[], &locator));
                Dict::new()
            }
        };
        for key in top.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                let hint = match did_you_mean(key, SECTIONS.iter().copied()) {
                    hint if hint.is_empty() => format!(
                        ": the sections are {}",
                        SECTIONS
                            .iter()
                            .map(|s| format!("[{s}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    hint => hint,
                };
                diagnostics.push(locator.error(&[key], format!("unknown section `{key}`{hint}")));
            }
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut ctx = validate::Ctx {
            locator,
            diagnostics,
            base,
            env,
        };
        let sections = validate::Sections {
            graph: section(&top, "graph", &mut ctx),
            api: section(&top, "api", &mut ctx),
            store: section(&top, "store", &mut ctx),
            sync: section(&top, "sync", &mut ctx),
            // Optional: only a section that is there turns the sink on.
            webhook: top
                .contains_key("webhook")
                .then(|| section(&top, "webhook", &mut ctx)),
            log: section(&top, "log", &mut ctx),
            mappings: section(&top, "mappings", &mut ctx),
            routing: section(&top, "routing", &mut ctx),
            directory: section(&top, "directory", &mut ctx),
            subscriptions: section(&top, "subscriptions", &mut ctx),
            // Optional: only a section that is there makes a cluster node.
            cluster: top
                .contains_key("cluster")
                .then(|| section(&top, "cluster", &mut ctx)),
        };
        let (config, profile_files) = validate::build(path, sections, &mut ctx);
        match config {
            Some(config) if ctx.diagnostics.is_empty() => Ok(config),
            _ => {
                let mut diagnostics = ctx.diagnostics;
                // File order, then the environment: the order an admin fixes them in.
                diagnostics.sort_by_key(|d| (d.line == 0, d.path.clone(), d.line, d.column));
                Err(ConfigError {
                    diagnostics,
                    profile_files,
                })
            }
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Deserializes one section (absent: all defaults). `None` when it has
/// unknown keys or wrong types, which are reported.
fn section<T: for<'de> Deserialize<'de> + Default>(
    top: &Dict,
    name: &str,
    ctx: &mut validate::Ctx<'_>,
) -> Option<T> {
    let Some(value) = top.get(name) else {
        return Some(T::default());
    };
    match T::deserialize(value) {
        Ok(section) => Some(section),
        Err(error) => {
            let errors = figment_errors(error, &[name], &ctx.locator);
            ctx.diagnostics.extend(errors);
            None
        }
    }
}

/// Rewrites figment's errors in an admin's terms, located.
fn figment_errors(error: figment::Error, prefix: &[&str], locator: &Locator) -> Vec<Diagnostic> {
    use figment::error::Kind;
    error
        .into_iter()
        .map(|e| {
            let mut path: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            path.extend(e.path.iter().cloned());
            let key = path.join(".");
            let message = match &e.kind {
                Kind::UnknownField(name, expected) => {
                    let table = path[..path.len().saturating_sub(1)].join(".");
                    let candidates = expected
                        .iter()
                        .copied()
                        .filter(|k| !raw::INLINE_SECRET_KEYS.contains(k));
                    format!(
                        "unknown key `{name}` in [{table}]{}",
                        did_you_mean(name, candidates)
                    )
                }
                Kind::MissingField(name) => {
                    path.push(name.to_string());
                    format!("missing key `{}`", path.join("."))
                }
                Kind::InvalidType(actual, expected) => {
                    format!("`{key}` must be {}, not {actual}", plain_type(expected))
                }
                other => format!("`{key}`: {other}"),
            };
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            locator.error(&path, message)
        })
        .collect()
}

/// serde's names for expected types, as an admin would say them.
fn plain_type(expected: &str) -> &str {
    if expected.starts_with("struct ") || expected == "a map" {
        "a table"
    } else if expected == "a sequence" {
        "an array"
    } else if expected.starts_with('i') || expected.starts_with('u') {
        "an integer"
    } else {
        expected
    }
}

#[cfg(test)]
mod tests;

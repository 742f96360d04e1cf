//! From the serde shapes to a [`Config`]: defaults, required keys, value
//! checks. Every problem is recorded and checking goes on, so that one run
//! of `check` lists them all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::diagnostics::{Diagnostic, did_you_mean};
use crate::duration::{format_duration, parse_duration};

use super::origin::Locator;
use super::raw::{
    RawApi, RawDirectory, RawGraph, RawLog, RawMappings, RawProfile, RawQueue, RawRouting,
    RawStore, RawSync, RawWebhook, Text,
};
use super::secret::{CREDENTIALS_DIRECTORY, SecretLocation, SecretSource};
use super::{
    ApiConfig, BudgetConfig, Config, DirectoryConfig, DirectoryScope, Environment, GraphAuth,
    GraphConfig, LogConfig, LogFormat, MappingsConfig, Outbound, ProfileConfig, QueueStatus,
    QueueStatuses, RoutingConfig, StoreConfig, SyncConfig, WebhookConfig,
};
use crate::routing::{OverflowTarget, QueueSettings, Strategy};

mod cluster;
mod subscriptions;

pub(super) const DEFAULT_LOGIN_BASE: &str = "https://login.microsoftonline.com";
pub(super) const DEFAULT_GRAPH_BASE: &str = "https://graph.microsoft.com";
/// Microsoft's documented presence budget (FACTS: 1,500 per 30 s per app per tenant).
const DEFAULT_REQUESTS_PER_30S: i64 = 1500;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(3600);
/// Graph's `expirationDuration` range for setPresence: PT5M..PT4H.
const SESSION_EXPIRY_RANGE: (Duration, Duration) = (
    crate::graph::presence::SESSION_EXPIRY_MIN,
    crate::graph::presence::SESSION_EXPIRY_MAX,
);
/// A round under 50 ms would be a busy loop; over an hour, no poller.
const POLL_ROUND_MIN_RANGE: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(3600));
const READ_FRESHNESS_FLOOR_RANGE: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(24 * 3600));
const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
const DEFAULT_MAX_BODY_BYTES: i64 = 64 * 1024;
const DEFAULT_ECHO_WINDOW: Duration = Duration::from_secs(5 * 60);
const DEFAULT_LOOP_MAX_CHANGES: i64 = 6;
const DEFAULT_LOOP_WINDOW: Duration = Duration::from_secs(5 * 60);
const DEFAULT_LOOP_COOLDOWN: Duration = Duration::from_secs(15 * 60);
const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10 * 60);
const DEFAULT_PROFILE: &str = "default";
const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Consumers resuming with `since=SEQ` after a short outage must find their
/// events; an hour covers a restart or a network blip.
const EVENT_RETENTION_RANGE: (Duration, Duration) = (Duration::from_secs(3600), Duration::MAX);
const DEFAULT_EVENT_KEEP_AT_LEAST: i64 = 10_000;
/// sled's page cache: the daemon reads the store once at start, then
/// writes. 64 MiB was about 1.3 KB an agent at 50,000 agents (the store
/// outgrows it); 8 MiB keeps the pages recent writes touch (see
/// BENCHMARKS.md for the rates measured with each).
const DEFAULT_STORE_CACHE_MB: i64 = 8;
const MAX_STORE_CACHE_MB: i64 = 1024 * 1024;
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_WEBHOOK_MAX_RETRY_DELAY: Duration = Duration::from_secs(5 * 60);
/// The first retry waits 1 s; a shorter ceiling would hammer a failing receiver.
const WEBHOOK_MAX_RETRY_DELAY_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::MAX);
const DEFAULT_WEBHOOK_BATCH_SIZE: i64 = 100;
const MAX_WEBHOOK_BATCH_SIZE: i64 = 1000;

const GRAPH_SECRET_CREDENTIAL: &str = "graph-client-secret";
const API_TOKEN_CREDENTIAL: &str = "api-token";
const WEBHOOK_SECRET_CREDENTIAL: &str = "webhook-secret";
const STATE_DIRECTORY: &str = "STATE_DIRECTORY";
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// The deserialized sections; `None` for one whose shape was wrong (already
/// reported).
pub(super) struct Sections {
    pub graph: Option<RawGraph>,
    pub api: Option<RawApi>,
    pub store: Option<RawStore>,
    pub sync: Option<RawSync>,
    /// `None`: no `[webhook]` section; `Some(None)`: one of the wrong shape.
    pub webhook: Option<Option<RawWebhook>>,
    pub log: Option<RawLog>,
    pub mappings: Option<RawMappings>,
    pub routing: Option<RawRouting>,
    pub directory: Option<RawDirectory>,
    pub subscriptions: Option<super::raw::RawSubscriptions>,
    /// `None`: no `[cluster]` section; `Some(None)`: one of the wrong shape.
    pub cluster: Option<Option<super::raw::RawCluster>>,
}

pub(super) struct Ctx<'a> {
    pub locator: Locator<'a>,
    pub diagnostics: Vec<Diagnostic>,
    /// The config file's directory, base of relative paths.
    pub base: PathBuf,
    pub env: &'a Environment,
}

/// Validates every section; the config only when all of them are valid,
/// and the profile files it names either way.
pub(super) fn build(
    file: &Path,
    sections: Sections,
    ctx: &mut Ctx<'_>,
) -> (Option<Config>, Vec<(String, PathBuf)>) {
    let (graph, budget) = match sections.graph {
        Some(mut raw) => {
            let keys = (
                raw.read_share_max.take(),
                raw.read_freshness_floor.take(),
                raw.poll_round_min.take(),
            );
            let graph = graph(raw, ctx);
            (graph, budget(keys, ctx))
        }
        None => (None, None),
    };
    let api = sections.api.and_then(|raw| api(raw, ctx));
    let store = sections.store.and_then(|raw| store(raw, ctx));
    let sync = sections.sync.and_then(|raw| sync(raw, ctx));
    let webhook = match sections.webhook {
        None => Some(None),
        Some(None) => None,
        Some(Some(raw)) => webhook(raw, ctx).map(Some),
    };
    let log = sections.log.and_then(|raw| log(raw, ctx));
    let (mappings, profile_files) = match sections.mappings {
        Some(raw) => mappings(raw, ctx),
        None => (None, Vec::new()),
    };
    let routing = sections.routing.and_then(|raw| routing(raw, ctx));
    let directory = sections.directory.and_then(|raw| directory(raw, ctx));
    let subscriptions = sections
        .subscriptions
        .and_then(|raw| subscriptions::subscriptions(raw, ctx));
    if let (Some(api), Some(subscriptions)) = (&api, &subscriptions)
        && subscriptions.enabled
        && api.listen == subscriptions.listen
    {
        ctx.error(
            &["subscriptions", "listen"],
            format!(
                "`subscriptions.listen` = \"{}\" is also `api.listen`: the notification receiver needs a socket of its own, e.g. \"127.0.0.1:8790\"",
                subscriptions.listen
            ),
        );
    }
    let cluster = match sections.cluster {
        None => Some(None),
        Some(None) => None,
        Some(Some(raw)) => cluster::cluster(
            raw,
            graph.as_ref().map(|g| g.tenant_id.as_str()),
            api.as_ref().map(|a| a.listen),
            ctx,
        )
        .map(Some),
    };
    let config = match (
        graph.zip(budget),
        api,
        store,
        sync,
        webhook,
        log,
        mappings,
        routing,
        directory,
        subscriptions,
        cluster,
    ) {
        (
            Some((graph, budget)),
            Some(api),
            Some(store),
            Some(sync),
            Some(webhook),
            Some(log),
            Some(mappings),
            Some(routing),
            Some(directory),
            Some(subscriptions),
            Some(cluster),
        ) => Some(Config {
            file: file.to_path_buf(),
            graph,
            budget,
            api,
            store,
            sync,
            webhook,
            log,
            mappings,
            routing,
            directory,
            subscriptions,
            cluster,
        }),
        _ => None,
    };
    (config, profile_files)
}

impl Ctx<'_> {
    fn error(&mut self, key: &[&str], message: impl Into<String>) {
        let diagnostic = self.locator.error(key, message);
        self.diagnostics.push(diagnostic);
    }

    fn required(&mut self, key: &[&str], value: Option<String>, hint: &str) -> Option<String> {
        match value {
            Some(v) if !v.trim().is_empty() => Some(v),
            Some(_) => {
                self.error(key, format!("`{}` is empty: {hint}", key.join(".")));
                None
            }
            None => {
                self.error(key, format!("missing key `{}`: {hint}", key.join(".")));
                None
            }
        }
    }

    /// A relative path resolved against the config's directory.
    fn path(&mut self, key: &[&str], text: &str) -> Option<PathBuf> {
        if text.trim().is_empty() {
            self.error(
                key,
                format!("`{}` is empty: give a file path", key.join(".")),
            );
            return None;
        }
        Some(self.base.join(text))
    }

    fn duration(
        &mut self,
        key: &[&str],
        value: Option<Text>,
        default: Duration,
        range: (Duration, Duration),
    ) -> Option<Duration> {
        let Some(Text(text)) = value else {
            return Some(default);
        };
        let name = key.join(".");
        let duration = match parse_duration(&text) {
            Ok(d) => d,
            Err(why) => {
                self.error(key, format!("`{name}`: {why}"));
                return None;
            }
        };
        let (min, max) = range;
        if duration < min || duration > max {
            let allowed = if max == Duration::MAX {
                format!("at least {}", format_duration(min))
            } else {
                format!("from {} to {}", format_duration(min), format_duration(max))
            };
            self.error(
                key,
                format!("`{name}` = \"{text}\" is out of range: it must be {allowed}"),
            );
            return None;
        }
        Some(duration)
    }

    fn integer(
        &mut self,
        key: &[&str],
        value: Option<i64>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let value = value.unwrap_or(default);
        if value < min || value > max {
            let allowed = if max == i64::from(u32::MAX) {
                format!("at least {min}")
            } else {
                format!("from {min} to {max}")
            };
            self.error(
                key,
                format!(
                    "`{}` = {value} is out of range: it must be {allowed}",
                    key.join(".")
                ),
            );
            return None;
        }
        Some(value)
    }

    fn inline_secret(&mut self, key: &[&str], present: bool, instead: &str) {
        if present {
            self.error(
                key,
                format!(
                    "`{}`: secrets are never read from the config or its environment: {instead}",
                    key.join(".")
                ),
            );
        }
    }

    /// A secret from `[section] <name>_file`, or else from the systemd
    /// credential `credential`.
    fn secret_source(
        &mut self,
        key: [&str; 2],
        file: Option<String>,
        purpose: &'static str,
        credential: &'static str,
    ) -> Option<SecretSource> {
        match file {
            Some(file) => self.path(&key, &file).map(|path| SecretSource {
                purpose,
                location: SecretLocation::File(path),
                origin: self.locator.origin(&key),
            }),
            None => Some(SecretSource {
                purpose,
                location: self.credential(credential),
                origin: self.locator.origin(&key[..1]),
            }),
        }
    }

    fn credential(&self, name: &'static str) -> SecretLocation {
        SecretLocation::Credential {
            name,
            directory: self
                .env
                .get(CREDENTIALS_DIRECTORY)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }
    }
}

const ANY: (Duration, Duration) = (Duration::from_millis(1), Duration::MAX);

fn graph(raw: RawGraph, ctx: &mut Ctx<'_>) -> Option<GraphConfig> {
    ctx.inline_secret(
        &["graph", "client_secret"],
        raw.client_secret.is_some(),
        "put the client secret in a file only the service can read and set `client_secret_file`, \
         or leave it unset and give the systemd credential `graph-client-secret` (LoadCredential=)",
    );
    ctx.inline_secret(
        &["graph", "client_key"],
        raw.client_key.is_some(),
        "put the PEM private key in a file only the service can read and set `client_key_file`",
    );
    let tenant_id = ctx
        .required(
            &["graph", "tenant_id"],
            raw.tenant_id,
            "the Entra tenant's id (a GUID) or domain (e.g. contoso.onmicrosoft.com)",
        )
        .and_then(|t| {
            let t = t.trim().to_owned();
            if is_guid(&t) || is_domain(&t) {
                Some(t)
            } else {
                ctx.error(
                    &["graph", "tenant_id"],
                    format!("`graph.tenant_id` = \"{t}\" is neither a GUID nor a domain name"),
                );
                None
            }
        });
    let client_id = ctx
        .required(
            &["graph", "client_id"],
            raw.client_id,
            "the app registration's application (client) id, a GUID",
        )
        .and_then(|c| {
            let c = c.trim().to_owned();
            if is_guid(&c) {
                Some(c)
            } else {
                ctx.error(
                    &["graph", "client_id"],
                    format!("`graph.client_id` = \"{c}\" is not a GUID (the app's application id, e.g. 00000000-0000-0000-0000-000000000000)"),
                );
                None
            }
        });
    let auth = graph_auth(
        raw.client_secret_file,
        raw.client_certificate_file,
        raw.client_key_file,
        ctx,
    );
    let login_base = base_url(
        ctx,
        &["graph", "login_base"],
        raw.login_base,
        DEFAULT_LOGIN_BASE,
    );
    let graph_base = base_url(
        ctx,
        &["graph", "graph_base"],
        raw.graph_base,
        DEFAULT_GRAPH_BASE,
    );
    let requests_per_30s = ctx.integer(
        &["graph", "requests_per_30s"],
        raw.requests_per_30s,
        DEFAULT_REQUESTS_PER_30S,
        1,
        i64::from(u32::MAX),
    );
    let request_timeout = ctx.duration(
        &["graph", "request_timeout"],
        raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
        ANY,
    );
    let session_expiry = ctx.duration(
        &["graph", "session_expiry"],
        raw.session_expiry,
        DEFAULT_SESSION_EXPIRY,
        SESSION_EXPIRY_RANGE,
    );
    let proxy = raw.proxy.and_then(|text| match check_proxy_url(&text) {
        Ok(url) => Some(Some(url)),
        Err(why) => {
            ctx.error(
                &["graph", "proxy"],
                format!("`graph.proxy` = \"{text}\": {why}"),
            );
            None
        }
    });
    let ca_file = match raw.ca_file {
        None => Some(None),
        Some(text) => ctx.path(&["graph", "ca_file"], &text).map(Some),
    };
    Some(GraphConfig {
        outbound: Outbound {
            proxy: proxy.unwrap_or(None),
            ca_file: ca_file?,
        },
        tenant_id: tenant_id?,
        client_id: client_id?,
        auth: auth?,
        login_base: login_base?,
        graph_base: graph_base?,
        requests_per_30s: u32::try_from(requests_per_30s?).ok()?,
        request_timeout: request_timeout?,
        session_expiry: session_expiry?,
    })
}

/// The directory tier's freshness: not shorter than the agents' own
/// shortest round, and at most a day.
const DIRECTORY_FRESHNESS_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));
/// The most departments, or groups, a scope may name.
const MAX_SCOPE_DEPARTMENTS: usize = 1000;

/// `[directory]`: `scope` and `freshness`.
fn directory(raw: RawDirectory, ctx: &mut Ctx<'_>) -> Option<DirectoryConfig> {
    let defaults = DirectoryConfig::default();
    let freshness = ctx.duration(
        &["directory", "freshness"],
        raw.freshness,
        defaults.freshness,
        DIRECTORY_FRESHNESS_RANGE,
    );
    let scope = match raw.scope {
        None => Some(defaults.scope),
        Some(value) => directory_scope(&value, ctx),
    };
    Some(DirectoryConfig {
        scope: scope?,
        freshness: freshness?,
    })
}

fn directory_scope(value: &figment::value::Value, ctx: &mut Ctx<'_>) -> Option<DirectoryScope> {
    use figment::value::Value;
    const SHAPE: &str = "give \"all\" (every Teams user), \"agents\" (the agents only), { departments = [\"Sales\", ...] } or { groups = [\"<group object id>\", ...] }";
    let key = ["directory", "scope"];
    match value {
        Value::String(_, text) => match text.trim().to_ascii_lowercase().as_str() {
            "all" => Some(DirectoryScope::All),
            "agents" => Some(DirectoryScope::Agents),
            _ => {
                let hint = did_you_mean(text, ["all", "agents"]);
                ctx.error(
                    &key,
                    format!("`directory.scope` = \"{text}\" is not a scope{hint}: {SHAPE}"),
                );
                None
            }
        },
        Value::Dict(_, dict) => {
            let mut chosen: Option<(&str, &Value)> = None;
            for (name, item) in dict {
                if name != "departments" && name != "groups" {
                    ctx.error(
                        &["directory", "scope", name.as_str()],
                        format!("`directory.scope` has no key `{name}`: {SHAPE}"),
                    );
                    return None;
                }
                if chosen.is_some() {
                    ctx.error(
                        &["directory", "scope", name.as_str()],
                        "`directory.scope` names departments and groups: give one of them \
                         (a scope is either { departments = [...] } or { groups = [...] })",
                    );
                    return None;
                }
                chosen = Some((name.as_str(), item));
            }
            match chosen {
                Some(("groups", items)) => scope_groups(items, ctx),
                Some((_, items)) => scope_departments(items, ctx),
                None => {
                    ctx.error(
                        &key,
                        format!("`directory.scope` is an empty table: {SHAPE}"),
                    );
                    None
                }
            }
        }
        _ => {
            ctx.error(
                &key,
                format!("`directory.scope` has the wrong type: {SHAPE}"),
            );
            None
        }
    }
}

fn scope_departments(value: &figment::value::Value, ctx: &mut Ctx<'_>) -> Option<DirectoryScope> {
    use figment::value::Value;
    let dkey = ["directory", "scope", "departments"];
    let Value::Array(_, items) = value else {
        ctx.error(
            &dkey,
            "`directory.scope.departments` must be a list of department names, e.g. [\"Sales\", \"Support\"]",
        );
        return None;
    };
    if items.is_empty() || items.len() > MAX_SCOPE_DEPARTMENTS {
        ctx.error(
            &dkey,
            format!(
                "`directory.scope.departments` must name from 1 to {MAX_SCOPE_DEPARTMENTS} departments, not {}",
                items.len()
            ),
        );
        return None;
    }
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(_, name) if !name.trim().is_empty() => {
                names.push(name.trim().to_string());
            }
            _ => {
                ctx.error(
                    &dkey,
                    format!(
                        "`directory.scope.departments[{i}]` must be a department's name (text, not blank)"
                    ),
                );
                return None;
            }
        }
    }
    Some(DirectoryScope::Departments(names))
}

/// `{ groups = [...] }`: Entra group object ids, each once.
fn scope_groups(value: &figment::value::Value, ctx: &mut Ctx<'_>) -> Option<DirectoryScope> {
    use figment::value::Value;
    let gkey = ["directory", "scope", "groups"];
    let Value::Array(_, items) = value else {
        ctx.error(
            &gkey,
            "`directory.scope.groups` must be a list of group object ids, e.g. [\"2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4\"]",
        );
        return None;
    };
    if items.is_empty() || items.len() > MAX_SCOPE_DEPARTMENTS {
        ctx.error(
            &gkey,
            format!(
                "`directory.scope.groups` must name from 1 to {MAX_SCOPE_DEPARTMENTS} groups, not {}",
                items.len()
            ),
        );
        return None;
    }
    let mut ids: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let index = i.to_string();
        let at = ["directory", "scope", "groups", index.as_str()];
        let Value::String(_, text) = item else {
            ctx.error(
                &at,
                format!("`directory.scope.groups[{i}]` must be a group's object id (text)"),
            );
            return None;
        };
        let id = text.trim().to_ascii_lowercase();
        if !is_guid(&id) {
            ctx.error(
                &at,
                format!(
                    "`directory.scope.groups[{i}]` = \"{text}\" is not a group object id: give the group's Object ID \
                     as Entra shows it (a GUID such as 2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4), not its name or mail"
                ),
            );
            return None;
        }
        if ids.contains(&id) {
            ctx.error(
                &at,
                format!("`directory.scope.groups[{i}]` = \"{text}\" is listed twice"),
            );
            return None;
        }
        ids.push(id);
    }
    Some(DirectoryScope::Groups(ids))
}

/// `[graph]`'s budget keys: `read_share_max`, `read_freshness_floor` and
/// `poll_round_min`, in that order.
fn budget(
    (share, floor, round_min): (Option<Text>, Option<Text>, Option<Text>),
    ctx: &mut Ctx<'_>,
) -> Option<BudgetConfig> {
    let defaults = BudgetConfig::default();
    let share = match share {
        None => Some(defaults.read_share_max),
        Some(Text(text)) => match text.trim().parse::<f64>() {
            Ok(share) if share > 0.0 && share <= 1.0 => Some(share),
            Ok(_) => {
                ctx.error(
                    &["graph", "read_share_max"],
                    format!(
                        "`graph.read_share_max` = {text} is out of range: it must be more than 0 and at most 1 (a share of the budget, e.g. 0.6)"
                    ),
                );
                None
            }
            Err(_) => {
                ctx.error(
                    &["graph", "read_share_max"],
                    format!(
                        "`graph.read_share_max` = {text:?} is not a number: give a share of the budget, e.g. 0.6"
                    ),
                );
                None
            }
        },
    };
    let round_min = ctx.duration(
        &["graph", "poll_round_min"],
        round_min,
        defaults.poll_round_min,
        POLL_ROUND_MIN_RANGE,
    );
    let floor = ctx.duration(
        &["graph", "read_freshness_floor"],
        floor,
        defaults.read_freshness_floor,
        READ_FRESHNESS_FLOOR_RANGE,
    );
    if let (Some(round_min), Some(floor)) = (round_min, floor)
        && floor < round_min
    {
        ctx.error(
            &["graph", "read_freshness_floor"],
            format!(
                "`graph.read_freshness_floor` = {} is shorter than `graph.poll_round_min` = {}: agents cannot be read more often than the shortest round",
                format_duration(floor),
                format_duration(round_min)
            ),
        );
        return None;
    }
    Some(BudgetConfig {
        read_share_max: share?,
        read_freshness_floor: floor?,
        poll_round_min: round_min?,
    })
}

fn graph_auth(
    secret_file: Option<String>,
    certificate_file: Option<String>,
    key_file: Option<String>,
    ctx: &mut Ctx<'_>,
) -> Option<GraphAuth> {
    const SECRET: &str = "the Graph client secret";
    const KEY: &str = "the Graph client certificate's private key";
    match (secret_file, certificate_file, key_file) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            ctx.error(
                &["graph", "client_secret_file"],
                "give either `client_secret_file` or `client_certificate_file` + `client_key_file`, not both",
            );
            None
        }
        (Some(file), None, None) => {
            let key = ["graph", "client_secret_file"];
            let path = ctx.path(&key, &file)?;
            Some(GraphAuth::ClientSecret(SecretSource {
                purpose: SECRET,
                location: SecretLocation::File(path),
                origin: ctx.locator.origin(&key),
            }))
        }
        (None, Some(certificate), Some(private_key)) => {
            let certificate_file = ctx.path(&["graph", "client_certificate_file"], &certificate);
            let key = ["graph", "client_key_file"];
            let key_file = ctx.path(&key, &private_key);
            Some(GraphAuth::Certificate {
                certificate_file: certificate_file?,
                key: SecretSource {
                    purpose: KEY,
                    location: SecretLocation::File(key_file?),
                    origin: ctx.locator.origin(&key),
                },
            })
        }
        (None, Some(_), None) => {
            ctx.error(
                &["graph", "client_certificate_file"],
                "`client_certificate_file` needs `client_key_file` (the PEM private key) too",
            );
            None
        }
        (None, None, Some(_)) => {
            ctx.error(
                &["graph", "client_key_file"],
                "`client_key_file` needs `client_certificate_file` (the PEM certificate) too",
            );
            None
        }
        (None, None, None) => Some(GraphAuth::ClientSecret(SecretSource {
            purpose: SECRET,
            location: ctx.credential(GRAPH_SECRET_CREDENTIAL),
            origin: ctx.locator.origin(&["graph"]),
        })),
    }
}

fn api(raw: RawApi, ctx: &mut Ctx<'_>) -> Option<ApiConfig> {
    ctx.inline_secret(
        &["api", "token"],
        raw.token.is_some(),
        "put the API token in a file only the service can read and set `token_file`, \
         or leave it unset and give the systemd credential `api-token` (LoadCredential=)",
    );
    ctx.inline_secret(
        &["api", "viewer_token"],
        raw.viewer_token.is_some(),
        "put the status board's read-only token in a file only the service can read and set \
         `viewer_token_file`",
    );
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = match listen_text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            ctx.error(
                &["api", "listen"],
                format!("`api.listen` = \"{listen_text}\" is not an IP address and port, e.g. \"127.0.0.1:8787\" or \"[::1]:8787\""),
            );
            None
        }
    };
    let token = ctx.secret_source(
        ["api", "token_file"],
        raw.token_file,
        "the API token",
        API_TOKEN_CREDENTIAL,
    );
    let viewer_token = match raw.viewer_token_file {
        Some(file) => {
            let key = ["api", "viewer_token_file"];
            ctx.path(&key, &file).map(|path| {
                Some(SecretSource {
                    purpose: "the viewer token",
                    location: SecretLocation::File(path),
                    origin: ctx.locator.origin(&key),
                })
            })
        }
        None => Some(None),
    };
    let max_body_bytes = ctx.integer(
        &["api", "max_body_bytes"],
        raw.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES,
        1,
        i64::from(u32::MAX),
    );
    Some(ApiConfig {
        listen: listen?,
        token: token?,
        viewer_token: viewer_token?,
        max_body_bytes: usize::try_from(max_body_bytes?).ok()?,
    })
}

fn store(raw: RawStore, ctx: &mut Ctx<'_>) -> Option<StoreConfig> {
    let state_dir = state_dir(raw.state_dir, ctx);
    let event_retention = ctx.duration(
        &["store", "event_retention"],
        raw.event_retention,
        DEFAULT_EVENT_RETENTION,
        EVENT_RETENTION_RANGE,
    );
    let event_keep_at_least = ctx.integer(
        &["store", "event_keep_at_least"],
        raw.event_keep_at_least,
        DEFAULT_EVENT_KEEP_AT_LEAST,
        0,
        i64::from(u32::MAX),
    );
    let cache_mb = ctx.integer(
        &["store", "cache_mb"],
        raw.cache_mb,
        DEFAULT_STORE_CACHE_MB,
        1,
        MAX_STORE_CACHE_MB,
    );
    Some(StoreConfig {
        state_dir: state_dir?,
        event_retention: event_retention?,
        event_keep_at_least: usize::try_from(event_keep_at_least?).ok()?,
        cache_mb: u64::try_from(cache_mb?).ok()?,
    })
}

fn state_dir(value: Option<String>, ctx: &mut Ctx<'_>) -> Option<PathBuf> {
    let key = ["store", "state_dir"];
    if let Some(dir) = value {
        return ctx.path(&key, &dir);
    }
    // systemd joins several StateDirectory= entries with `:`; ours is the first.
    let from_systemd = ctx
        .env
        .get(STATE_DIRECTORY)
        .and_then(|dirs| dirs.to_str())
        .and_then(|dirs| dirs.split(':').next())
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    match from_systemd {
        Some(state_dir) => Some(state_dir),
        None => {
            ctx.error(
                &key,
                "missing key `store.state_dir`: give the state directory, or run under systemd with StateDirectory= (which sets $STATE_DIRECTORY)",
            );
            None
        }
    }
}

fn sync(raw: RawSync, ctx: &mut Ctx<'_>) -> Option<SyncConfig> {
    let echo_window = ctx.duration(
        &["sync", "echo_window"],
        raw.echo_window,
        DEFAULT_ECHO_WINDOW,
        ANY,
    );
    // One change and its undo are normal; a loop needs at least two.
    let loop_max_changes = ctx.integer(
        &["sync", "loop_max_changes"],
        raw.loop_max_changes,
        DEFAULT_LOOP_MAX_CHANGES,
        2,
        i64::from(u32::MAX),
    );
    let loop_window = ctx.duration(
        &["sync", "loop_window"],
        raw.loop_window,
        DEFAULT_LOOP_WINDOW,
        ANY,
    );
    let loop_cooldown = ctx.duration(
        &["sync", "loop_cooldown"],
        raw.loop_cooldown,
        DEFAULT_LOOP_COOLDOWN,
        ANY,
    );
    let reconcile_interval = ctx.duration(
        &["sync", "reconcile_interval"],
        raw.reconcile_interval,
        DEFAULT_RECONCILE_INTERVAL,
        ANY,
    );
    Some(SyncConfig {
        echo_window: echo_window?,
        loop_max_changes: u32::try_from(loop_max_changes?).ok()?,
        loop_window: loop_window?,
        loop_cooldown: loop_cooldown?,
        reconcile_interval: reconcile_interval?,
    })
}

fn webhook(raw: RawWebhook, ctx: &mut Ctx<'_>) -> Option<WebhookConfig> {
    ctx.inline_secret(
        &["webhook", "secret"],
        raw.secret.is_some(),
        "put the signing secret in a file only the service can read and set `secret_file`, \
         or leave it unset and give the systemd credential `webhook-secret` (LoadCredential=)",
    );
    let url_key = ["webhook", "url"];
    let url = ctx
        .required(
            &url_key,
            raw.url,
            "the receiver's URL, e.g. \"https://cc.example.com/presence-sync/events\"",
        )
        .and_then(|text| match check_webhook_url(&text) {
            Ok(url) => Some(url),
            Err(why) => {
                let shown = without_password(&text);
                ctx.error(&url_key, format!("`webhook.url` = \"{shown}\": {why}"));
                None
            }
        });
    let secret = ctx.secret_source(
        ["webhook", "secret_file"],
        raw.secret_file,
        "the webhook signing secret",
        WEBHOOK_SECRET_CREDENTIAL,
    );
    let timeout = ctx.duration(
        &["webhook", "timeout"],
        raw.timeout,
        DEFAULT_WEBHOOK_TIMEOUT,
        ANY,
    );
    let max_retry_delay = ctx.duration(
        &["webhook", "max_retry_delay"],
        raw.max_retry_delay,
        DEFAULT_WEBHOOK_MAX_RETRY_DELAY,
        WEBHOOK_MAX_RETRY_DELAY_RANGE,
    );
    let batch_size = ctx.integer(
        &["webhook", "batch_size"],
        raw.batch_size,
        DEFAULT_WEBHOOK_BATCH_SIZE,
        1,
        MAX_WEBHOOK_BATCH_SIZE,
    );
    Some(WebhookConfig {
        url: url?,
        secret: secret?,
        timeout: timeout?,
        max_retry_delay: max_retry_delay?,
        batch_size: usize::try_from(batch_size?).ok()?,
    })
}

/// An absolute http(s) URL to POST to, as the admin wrote it (trimmed).
fn check_webhook_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = reqwest::Url::parse(text)
        .map_err(|_| "not a URL: write e.g. \"https://cc.example.com/presence-sync/events\"")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be https (or http), not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    // A password in the URL would be a secret in the config; the receiver
    // knows deliveries are ours by their signature instead.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds a user name or password: keep credentials out of the config; \
             receivers check each delivery's signature (made with `secret_file`)"
                .into(),
        );
    }
    Ok(text.to_owned())
}

/// The URL as written, its password (if any) masked for printing.
fn without_password(text: &str) -> String {
    match reqwest::Url::parse(text.trim()) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

fn log(raw: RawLog, ctx: &mut Ctx<'_>) -> Option<LogConfig> {
    let format = match raw.format.as_deref().map(str::trim) {
        None | Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            ctx.error(
                &["log", "format"],
                format!(
                    "`log.format` = \"{other}\" is not a log format: use \"text\" or \"json\"{}",
                    did_you_mean(other, ["text", "json"])
                ),
            );
            None
        }
    };
    let level = raw.level.unwrap_or_else(|| "info".to_owned());
    let level = match check_level(&level) {
        Ok(()) => Some(level.trim().to_owned()),
        Err(why) => {
            ctx.error(
                &["log", "level"],
                format!("`log.level` = \"{level}\": {why}"),
            );
            None
        }
    };
    Some(LogConfig {
        format: format?,
        level: level?,
    })
}

/// A level, or comma-separated `target=level` directives around one.
fn check_level(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("empty: use one of {}", LOG_LEVELS.join(", ")));
    }
    for directive in text.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if let Some(target) = target
            && (target.is_empty()
                || !target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        {
            return Err(format!(
                "`{target}` is not a module path (e.g. presence_sync::sync)"
            ));
        }
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{level}` is not a level: use one of {}{}",
                LOG_LEVELS.join(", "),
                did_you_mean(level, LOG_LEVELS.iter().copied())
            ));
        }
    }
    Ok(())
}

fn mappings(
    raw: RawMappings,
    ctx: &mut Ctx<'_>,
) -> (Option<MappingsConfig>, Vec<(String, PathBuf)>) {
    let mut profiles = BTreeMap::new();
    let mut files = Vec::new();
    let mut ok = true;
    // group -> the profile that claimed it first
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let raw_profiles = raw.profiles.unwrap_or_default();
    let names: Vec<String> = raw_profiles.keys().cloned().collect();
    for (name, value) in raw_profiles {
        let table = ["mappings", "profiles", name.as_str()];
        let (name_ok, raw) = named_table::<RawProfile>(ctx, &table, "profile", None, &value);
        ok &= name_ok;
        let Some(raw) = raw else {
            ok = false;
            continue;
        };
        let file_key = ["mappings", "profiles", name.as_str(), "file"];
        let file = ctx
            .required(
                &file_key,
                raw.file,
                "the profile's mapping file, e.g. \"mappings/default.toml\"",
            )
            .and_then(|f| ctx.path(&file_key, &f));
        let groups = raw.groups.unwrap_or_default();
        for (i, group) in groups.iter().enumerate() {
            let index = i.to_string();
            let key = [
                "mappings",
                "profiles",
                name.as_str(),
                "groups",
                index.as_str(),
            ];
            if group.trim().is_empty() {
                ctx.error(&key, "an empty group name");
                ok = false;
            } else if let Some(first) = claimed.get(group) {
                let message = if *first == name {
                    format!("group `{group}` is listed twice")
                } else {
                    format!(
                        "group `{group}` is already in profile `{first}`: a group belongs to one profile only"
                    )
                };
                ctx.error(&key, message);
                ok = false;
            } else {
                claimed.insert(group.clone(), name.clone());
            }
        }
        match file {
            Some(file) => {
                files.push((name.clone(), file.clone()));
                profiles.insert(name, ProfileConfig { file, groups });
            }
            None => ok = false,
        }
    }
    let default_profile = raw
        .default_profile
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
    if names.is_empty() {
        ctx.error(
            &["mappings", "profiles"],
            "no mapping profiles: add e.g. [mappings.profiles.default] with file = \"mappings/default.toml\"",
        );
        ok = false;
    } else if !names.contains(&default_profile) {
        ctx.error(
            &["mappings", "default_profile"],
            format!(
                "default profile `{default_profile}` is not in [mappings.profiles]{}",
                did_you_mean(&default_profile, names.iter().map(String::as_str))
            ),
        );
        ok = false;
    }
    let config = ok.then_some(MappingsConfig {
        default_profile,
        profiles,
    });
    (config, files)
}

const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_WRAP_UP: Duration = Duration::from_secs(10);
const DEFAULT_MAX_NO_ANSWER: i64 = 3;
const DEFAULT_MISS_BACKOFF: Duration = Duration::from_secs(10);
const ZERO_UP: (Duration, Duration) = (Duration::ZERO, Duration::MAX);
const SECOND_UP: (Duration, Duration) = (Duration::from_secs(1), Duration::MAX);

/// A table named by the admin (`[mappings.profiles.NAME]`,
/// `[routing.queues.NAME]`): whether its name is valid, and its body,
/// deserialized on its own so one bad table does not hide the others'
/// mistakes. Names are lowercase because environment overrides reach them
/// through lowercased variable names.
fn named_table<T: for<'de> Deserialize<'de>>(
    ctx: &mut Ctx<'_>,
    table: &[&str; 3],
    what: &str,
    max_len: Option<usize>,
    value: &figment::value::Value,
) -> (bool, Option<T>) {
    let name = table[2];
    let valid = !name.is_empty()
        && max_len.is_none_or(|max| name.len() <= max)
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        let length = max_len.map_or_else(String::new, |max| format!("1–{max} "));
        ctx.error(
            table,
            format!("{what} name `{name}`: use {length}lowercase letters, digits, `-` and `_`"),
        );
    }
    match T::deserialize(value) {
        Ok(raw) => (valid, Some(raw)),
        Err(error) => {
            let errors = super::figment_errors(error, table, &ctx.locator);
            ctx.diagnostics.extend(errors);
            (valid, None)
        }
    }
}

fn routing(raw: RawRouting, ctx: &mut Ctx<'_>) -> Option<RoutingConfig> {
    let mut ok = true;
    let mut config = RoutingConfig::default();
    let raw_queues = raw.queues.unwrap_or_default();
    let names: Vec<String> = raw_queues.keys().cloned().collect();
    for (name, value) in raw_queues {
        let table = ["routing", "queues", name.as_str()];
        let (name_ok, raw) = named_table::<RawQueue>(ctx, &table, "queue", Some(64), &value);
        ok &= name_ok;
        let Some(raw) = raw else {
            ok = false;
            continue;
        };
        match queue(&name, raw, &names, ctx) {
            Some((settings, statuses)) => {
                config.statuses.insert(name.clone(), statuses);
                config.queues.push(settings);
            }
            None => ok = false,
        }
    }
    ok.then_some(config)
}

fn queue(
    name: &str,
    raw: RawQueue,
    names: &[String],
    ctx: &mut Ctx<'_>,
) -> Option<(QueueSettings, QueueStatuses)> {
    let key = |k: &'static str| ["routing", "queues", name, k];
    let all = Strategy::ALL.map(Strategy::as_str).join(", ");
    let strategy = match ctx.required(
        &key("strategy"),
        raw.strategy,
        &format!("how the queue picks an agent: one of {all}"),
    ) {
        Some(text) => match Strategy::parse(text.trim()) {
            Some(s) => Some(s),
            None => {
                ctx.error(
                    &key("strategy"),
                    format!(
                        "unknown strategy `{text}`{}",
                        match did_you_mean(&text, Strategy::ALL.map(Strategy::as_str)) {
                            hint if hint.is_empty() => format!(": use one of {all}"),
                            hint => hint,
                        }
                    ),
                );
                None
            }
        },
        None => None,
    };
    let mut ok = strategy.is_some();
    let mut skills = BTreeMap::new();
    for (skill, level) in raw.skills.unwrap_or_default() {
        match u8::try_from(level).ok().filter(|l| *l <= 100) {
            Some(level) if !skill.trim().is_empty() => {
                skills.insert(skill, level);
            }
            _ => {
                ctx.error(
                    &["routing", "queues", name, "skills", skill.as_str()],
                    format!("skill `{skill}` = {level}: a minimum level is 0–100"),
                );
                ok = false;
            }
        }
    }
    let priority = ctx.integer(&key("priority"), raw.priority, 0, 0, 255);
    let offer_timeout = ctx.duration(
        &key("offer_timeout"),
        raw.offer_timeout,
        DEFAULT_OFFER_TIMEOUT,
        SECOND_UP,
    );
    let wrap_up = ctx.duration(&key("wrap_up"), raw.wrap_up, DEFAULT_WRAP_UP, ZERO_UP);
    let max_no_answer = ctx.integer(
        &key("max_no_answer"),
        raw.max_no_answer,
        DEFAULT_MAX_NO_ANSWER,
        0,
        1000,
    );
    let miss_backoff = ctx.duration(
        &key("miss_backoff"),
        raw.miss_backoff,
        DEFAULT_MISS_BACKOFF,
        ZERO_UP,
    );
    let max_wait = match raw.max_wait {
        Some(text) => ctx
            .duration(&key("max_wait"), Some(text), Duration::ZERO, SECOND_UP)
            .map(Some),
        None => Some(None),
    };
    let overflow = match (raw.overflow_queue, raw.overflow_teams_users) {
        (Some(_), Some(_)) => {
            ctx.error(
                &key("overflow_queue"),
                "a queue overflows to another queue or to Teams users, not both",
            );
            None
        }
        (Some(target), None) => {
            if target == name {
                ctx.error(
                    &key("overflow_queue"),
                    format!("queue `{name}` cannot overflow to itself"),
                );
                None
            } else if !names.contains(&target) {
                ctx.error(
                    &key("overflow_queue"),
                    format!(
                        "no queue `{target}` in [routing.queues]{}",
                        did_you_mean(&target, names.iter().map(String::as_str))
                    ),
                );
                None
            } else {
                Some(Some(OverflowTarget::Queue(target)))
            }
        }
        (None, Some(users)) => {
            if users.is_empty() || users.iter().any(|u| u.trim().is_empty()) {
                ctx.error(
                    &key("overflow_teams_users"),
                    "list the Teams users (UPN or object id) to call, none empty",
                );
                None
            } else {
                Some(Some(OverflowTarget::TeamsUsers(users)))
            }
        }
        (None, None) => Some(None),
    };
    if let (Some(wait), Some(target)) = (&max_wait, &overflow)
        && wait.is_some() != target.is_some()
    {
        ctx.error(
            &key("max_wait"),
            "`max_wait` and an overflow target (`overflow_queue` or `overflow_teams_users`) go together",
        );
        ok = false;
    }
    let groups = raw.groups.unwrap_or_default();
    if groups.iter().any(|g| g.trim().is_empty()) {
        ctx.error(&key("groups"), "an empty group name");
        ok = false;
    }
    let status = |ctx: &Ctx<'_>, k: &'static str, value: Option<String>| {
        value
            .filter(|s| !s.trim().is_empty())
            .map(|name| QueueStatus {
                name,
                origin: ctx.locator.origin(&key(k)),
            })
    };
    let statuses = QueueStatuses {
        on_contact: status(ctx, "on_contact_status", raw.on_contact_status),
        after_contact: status(ctx, "after_contact_status", raw.after_contact_status),
    };
    match (
        strategy,
        priority,
        offer_timeout,
        wrap_up,
        max_no_answer,
        miss_backoff,
        max_wait,
        overflow,
    ) {
        (
            Some(strategy),
            Some(priority),
            Some(offer_timeout),
            Some(wrap_up),
            Some(max_no_answer),
            Some(miss_backoff),
            Some(max_wait),
            Some(overflow),
        ) if ok => Some((
            QueueSettings {
                name: name.to_string(),
                strategy,
                skills,
                priority: u8::try_from(priority).unwrap_or(u8::MAX),
                offer_timeout,
                wrap_up,
                max_no_answer: u32::try_from(max_no_answer).unwrap_or(u32::MAX),
                miss_backoff,
                max_wait,
                overflow,
                groups,
            },
            statuses,
        )),
        _ => None,
    }
}

fn base_url(
    ctx: &mut Ctx<'_>,
    key: &[&str],
    value: Option<String>,
    default: &str,
) -> Option<String> {
    let text = value.unwrap_or_else(|| default.to_owned());
    match check_base_url(&text) {
        Ok(url) => Some(url),
        Err(why) => {
            ctx.error(key, format!("`{}` = \"{text}\": {why}", key.join(".")));
            None
        }
    }
}

/// A proxy URL: `http://host:port` (or `https://`), credentials allowed.
fn check_proxy_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL: write e.g. \"http://proxy.example.com:3128\"".into());
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "the proxy's scheme must be http or https, not `{scheme}`"
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Err("no host: write e.g. \"http://proxy.example.com:3128\"".into());
    }
    Ok(url.to_owned())
}

fn check_base_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL: write e.g. \"https://graph.microsoft.com\"".into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() || url.chars().any(char::is_whitespace) || rest.contains(['?', '#']) {
        return Err("not a base URL: write e.g. \"https://graph.microsoft.com\"".into());
    }
    match scheme {
        "https" => Ok(url.to_owned()),
        // Tokens travel over this connection: plain http only to a local simulator.
        "http" if matches!(host, "localhost" | "::1") || host.starts_with("127.") => {
            Ok(url.to_owned())
        }
        "http" => Err("plain http is only allowed to localhost (a simulator): use https".into()),
        _ => Err("the scheme must be https".into()),
    }
}

fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    text.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_guids_or_domains() {
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4"));
        assert!(is_domain("contoso.onmicrosoft.com"));
        assert!(!is_domain("contoso"));
        assert!(!is_domain("-x.com"));
    }

    #[test]
    fn base_urls_need_https_except_on_localhost() {
        assert_eq!(
            check_base_url("https://graph.microsoft.us/").as_deref(),
            Ok("https://graph.microsoft.us")
        );
        assert!(check_base_url("http://127.0.0.1:9000").is_ok());
        assert!(check_base_url("http://[::1]:9000/sim").is_ok());
        assert!(check_base_url("http://graph.microsoft.com").is_err());
        assert!(check_base_url("graph.microsoft.com").is_err());
        assert!(check_base_url("https://").is_err());
    }

    #[test]
    fn webhook_urls_are_http_or_https_without_credentials() {
        assert_eq!(
            check_webhook_url(" https://cc.example.com/hook?tenant=a ").as_deref(),
            Ok("https://cc.example.com/hook?tenant=a")
        );
        assert!(check_webhook_url("http://10.0.0.5:8080/events").is_ok());
        assert!(check_webhook_url("ftp://cc.example.com/").is_err());
        assert!(check_webhook_url("cc.example.com/hook").is_err());
        assert!(check_webhook_url("https://user:pw@cc.example.com/").is_err());
        assert!(check_webhook_url("https://user@cc.example.com/").is_err());
        assert!(check_webhook_url("").is_err());
        assert_eq!(
            without_password("https://cc:hunter2@cc.example.com/x"),
            "https://cc:***@cc.example.com/x"
        );
    }

    #[test]
    fn log_levels_take_directives() {
        assert!(check_level("info").is_ok());
        assert!(check_level("warn,presence_sync::sync=debug").is_ok());
        assert_eq!(
            check_level("inf"),
            Err("`inf` is not a level: use one of trace, debug, info, warn, error, off (did you mean `info`?)".into())
        );
        assert!(check_level("=debug").is_err());
    }
}

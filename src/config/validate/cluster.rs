//! `[cluster]`: the NATS servers and credentials, the names, the stream
//! and lease settings.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;

use super::super::cluster::{ClusterConfig, NatsAuth, is_cluster_name};
use super::super::raw::RawCluster;
use super::Ctx;
use crate::duration::format_duration;

const TOKEN_CREDENTIAL: &str = "nats-token";
const PASSWORD_CREDENTIAL: &str = "nats-password";
const DEFAULT_REPLICAS: i64 = 3;
/// JetStream's largest replication factor.
const MAX_REPLICAS: i64 = 5;
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Under a second the lease would be renewed more often than NATS answers
/// under load; over a minute a failover would take too long to be one.
const LEASE_TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
const DEFAULT_HISTORY: Duration = Duration::from_secs(24 * 3600);
const HISTORY_RANGE: (Duration, Duration) = (Duration::from_secs(60), Duration::MAX);
const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(10 * 60);
const SNAPSHOT_INTERVAL_RANGE: (Duration, Duration) = (Duration::from_secs(10), Duration::MAX);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));

/// `graph_tenant`: the validated `graph.tenant_id`, the tenant's default;
/// `api_listen`: the validated `api.listen`, the advertised URL's default.
pub(in crate::config) fn cluster(
    raw: RawCluster,
    graph_tenant: Option<&str>,
    api_listen: Option<SocketAddr>,
    ctx: &mut Ctx<'_>,
) -> Option<ClusterConfig> {
    ctx.inline_secret(
        &["cluster", "token"],
        raw.token.is_some(),
        "put the NATS token in a file only the service can read and set `token_file`, \
         or set auth = \"token\" and give the systemd credential `nats-token` (LoadCredential=)",
    );
    ctx.inline_secret(
        &["cluster", "password"],
        raw.password.is_some(),
        "put the NATS password in a file only the service can read and set `password_file`, \
         or leave it unset and give the systemd credential `nats-password` (LoadCredential=)",
    );
    let nats_urls = nats_urls(raw.nats_url, raw.nats_urls, ctx);
    let tenant = tenant(raw.tenant, graph_tenant, ctx);
    let node_id = node_id(raw.node_id, ctx);
    let advertise_url = advertise_url(raw.advertise_url, api_listen, ctx);
    let auth = auth(raw.auth, raw.token_file, raw.user, raw.password_file, ctx);
    let replicas = ctx.integer(
        &["cluster", "replicas"],
        raw.replicas,
        DEFAULT_REPLICAS,
        1,
        MAX_REPLICAS,
    );
    let lease_ttl = ctx.duration(
        &["cluster", "lease_ttl"],
        raw.lease_ttl,
        DEFAULT_LEASE_TTL,
        LEASE_TTL_RANGE,
    );
    let history = ctx.duration(
        &["cluster", "history"],
        raw.history,
        DEFAULT_HISTORY,
        HISTORY_RANGE,
    );
    let interval_key = ["cluster", "snapshot_interval"];
    let interval_text = raw.snapshot_interval.as_ref().map(|t| t.0.clone());
    let snapshot_interval = ctx.duration(
        &interval_key,
        raw.snapshot_interval,
        DEFAULT_SNAPSHOT_INTERVAL,
        SNAPSHOT_INTERVAL_RANGE,
    );
    let snapshot_interval = match (history, snapshot_interval) {
        (Some(history), Some(interval)) if interval >= history / 2 => {
            let shown = interval_text.unwrap_or_else(|| format_duration(interval));
            ctx.error(
                &interval_key,
                format!(
                    "`cluster.snapshot_interval` = \"{shown}\" is not less than half of \
                     `cluster.history` ({}): a standby that falls behind must find a snapshot \
                     newer than the oldest record kept; snapshot more often or keep more history",
                    format_duration(history)
                ),
            );
            None
        }
        (_, interval) => interval,
    };
    let request_timeout = ctx.duration(
        &["cluster", "request_timeout"],
        raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
        REQUEST_TIMEOUT_RANGE,
    );
    Some(ClusterConfig {
        nats_urls: nats_urls?,
        tenant: tenant?,
        node_id: node_id?,
        advertise_url: advertise_url?,
        auth: auth?,
        replicas: usize::try_from(replicas?).ok()?,
        lease_ttl: lease_ttl?,
        history: history?,
        snapshot_interval: snapshot_interval?,
        request_timeout: request_timeout?,
    })
}

fn nats_urls(
    one: Option<String>,
    many: Option<Vec<String>>,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<String>> {
    let (key, list) = match (one, many) {
        (Some(_), Some(_)) => {
            ctx.error(
                &["cluster", "nats_url"],
                "`cluster.nats_url` and `cluster.nats_urls` are both set: give the servers in \
                 `nats_urls` only",
            );
            return None;
        }
        (Some(url), None) => (["cluster", "nats_url"], vec![url]),
        (None, Some(urls)) => (["cluster", "nats_urls"], urls),
        (None, None) => {
            ctx.error(
                &["cluster"],
                "missing key `cluster.nats_urls`: the cluster needs its NATS servers, e.g. \
                 nats_urls = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\", \"nats://10.0.0.3:4222\"]",
            );
            return None;
        }
    };
    let name = key.join(".");
    if list.is_empty() {
        ctx.error(
            &key,
            format!(
                "`{name}` is empty: give at least one NATS server, e.g. \"nats://10.0.0.1:4222\""
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut urls = Vec::new();
    for url in list {
        let url = url.trim().to_owned();
        match check_nats_url(&url) {
            Ok(()) => urls.push(url),
            Err(why) => {
                let shown = without_credentials(&url);
                ctx.error(&key, format!("`{name}`: \"{shown}\" {why}"));
                ok = false;
            }
        }
    }
    ok.then_some(urls)
}

/// A NATS server address: `nats://host:port` (or `tls://`, `ws://`,
/// `wss://`), without credentials.
pub(crate) fn check_nats_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text)
        .map_err(|_| "is not a NATS server URL: write e.g. \"nats://10.0.0.1:4222\"".to_owned())?;
    if !matches!(url.scheme(), "nats" | "tls" | "ws" | "wss") {
        return Err(format!(
            "has the scheme `{}`: NATS servers are reached with nats://, tls://, ws:// or wss://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "holds a user name or password: secrets are never read from the config; set \
             `cluster.user` and `cluster.password_file` (or `token_file`) instead"
                .into(),
        );
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("has a path, query or fragment: give only the host and port".into());
    }
    text.parse::<async_nats::ServerAddr>()
        .map_err(|e| format!("is not a NATS server address: {e}"))?;
    Ok(())
}

/// The URL as it may be shown: any user name or password left out.
fn without_credentials(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // Both succeed for a URL with a host, which one with credentials has.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// A name given in the config (tenant, node id): trimmed, and refused
/// with `what` unless it is a cluster name.
fn given_name(value: String, key: [&str; 2], what: &str, ctx: &mut Ctx<'_>) -> Option<String> {
    let name = value.trim().to_owned();
    if is_cluster_name(&name) {
        return Some(name);
    }
    ctx.error(
        &key,
        format!(
            "`cluster.{}` = \"{name}\" {what}: use 1 to 64 letters, digits, `_` or `-`",
            key[1]
        ),
    );
    None
}

fn tenant(value: Option<String>, graph_tenant: Option<&str>, ctx: &mut Ctx<'_>) -> Option<String> {
    match value {
        Some(tenant) => given_name(
            tenant,
            ["cluster", "tenant"],
            "cannot name NATS streams",
            ctx,
        ),
        // The Graph tenant was checked (a GUID or a domain): its dots become `_`.
        None => graph_tenant.map(|t| as_cluster_name(t, '_')),
    }
}

fn node_id(value: Option<String>, ctx: &mut Ctx<'_>) -> Option<String> {
    let key = ["cluster", "node_id"];
    match value {
        Some(id) => given_name(id, key, "is not a node name", ctx),
        None => match host_name().map(|h| node_name(&h)) {
            Some(id) if is_cluster_name(&id) => Some(id),
            _ => {
                ctx.error(
                    &key,
                    "missing key `cluster.node_id`: the host name cannot be read, so name this \
                     node, e.g. node_id = \"presence-1\"",
                );
                None
            }
        },
    }
}

/// A host name as a node name: other characters become `-`, at most 64.
fn node_name(host: &str) -> String {
    as_cluster_name(host.trim(), '-')
}

/// `text` as a cluster name: letters, digits, `_` and `-` kept, every
/// other character becomes `instead`; at most 64.
fn as_cluster_name(text: &str, instead: char) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                instead
            }
        })
        .take(64)
        .collect()
}

/// The machine's host name (gethostname(2)).
fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return None;
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    std::str::from_utf8(&buffer[..end]).ok().map(str::to_owned)
}

fn advertise_url(
    value: Option<String>,
    api_listen: Option<SocketAddr>,
    ctx: &mut Ctx<'_>,
) -> Option<Url> {
    let key = ["cluster", "advertise_url"];
    let Some(text) = value else {
        let listen = api_listen?;
        if listen.ip().is_unspecified() {
            ctx.error(
                &key,
                format!(
                    "missing key `cluster.advertise_url`: `api.listen` = \"{listen}\" is every \
                     address, so the other nodes cannot be told this node's API from it; give \
                     it, e.g. advertise_url = \"http://10.0.0.1:{}\"",
                    listen.port()
                ),
            );
            return None;
        }
        return Url::parse(&format!("http://{listen}/")).ok();
    };
    let text = text.trim();
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(_) => {
            ctx.error(
                &key,
                format!(
                    "`cluster.advertise_url` = \"{text}\" is not a URL: write e.g. \"http://10.0.0.1:8787\""
                ),
            );
            return None;
        }
    };
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("the scheme must be http or https")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("the URL has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("the URL holds a user name or password")
    } else {
        None
    };
    match problem {
        Some(why) => {
            ctx.error(&key, format!("`cluster.advertise_url` = \"{text}\": {why}"));
            None
        }
        None => Some(url),
    }
}

fn auth(
    mode: Option<String>,
    token_file: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
    ctx: &mut Ctx<'_>,
) -> Option<NatsAuth> {
    let auth_key = ["cluster", "auth"];
    let mode = match mode.as_deref().map(str::trim) {
        Some(mode @ ("none" | "token" | "user_password")) => mode.to_owned(),
        Some(other) => {
            ctx.error(
                &auth_key,
                format!(
                    "`cluster.auth` = \"{other}\" is not a NATS authentication: use \"none\", \
                     \"token\" or \"user_password\""
                ),
            );
            return None;
        }
        None if user.is_some() => "user_password".to_owned(),
        None if token_file.is_some() => "token".to_owned(),
        None => "none".to_owned(),
    };
    match mode.as_str() {
        "none" => {
            for (key, set) in [
                ("token_file", token_file.is_some()),
                ("user", user.is_some()),
                ("password_file", password_file.is_some()),
            ] {
                if set {
                    ctx.error(
                        &["cluster", key],
                        format!(
                            "`cluster.{key}` is set but `cluster.auth` = \"none\": remove one of them"
                        ),
                    );
                }
            }
            (token_file.is_none() && user.is_none() && password_file.is_none())
                .then_some(NatsAuth::None)
        }
        "token" => {
            let mut ok = true;
            for (key, set) in [
                ("user", user.is_some()),
                ("password_file", password_file.is_some()),
            ] {
                if set {
                    ctx.error(
                        &["cluster", key],
                        format!(
                            "`cluster.{key}` goes with a user and password, not with a token: \
                             set either `token_file` or `user` and `password_file`"
                        ),
                    );
                    ok = false;
                }
            }
            let token = ctx.secret_source(
                ["cluster", "token_file"],
                token_file,
                "the NATS token",
                TOKEN_CREDENTIAL,
            );
            if ok { token.map(NatsAuth::Token) } else { None }
        }
        _ => {
            if token_file.is_some() {
                ctx.error(
                    &["cluster", "token_file"],
                    "`cluster.token_file` goes with a token, not with a user and password: set \
                     either `token_file` or `user` and `password_file`",
                );
                return None;
            }
            let user = ctx.required(
                &["cluster", "user"],
                user,
                "the NATS user this node connects as",
            );
            let password = ctx.secret_source(
                ["cluster", "password_file"],
                password_file,
                "the NATS password",
                PASSWORD_CREDENTIAL,
            );
            Some(NatsAuth::UserPassword {
                user: user?.trim().to_owned(),
                password: password?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_are_nats_schemes_without_credentials() {
        for good in [
            "nats://10.0.0.1:4222",
            "nats://nats.example.com:4222",
            "tls://nats.example.com:4222",
            "nats://[::1]:4222",
        ] {
            assert_eq!(check_nats_url(good), Ok(()), "{good}");
        }
        for bad in [
            "10.0.0.1:4222",
            "http://10.0.0.1:4222",
            "nats://u:p@10.0.0.1:4222",
            "nats://tok@10.0.0.1:4222",
            "nats://10.0.0.1:4222/x",
            "nats://",
        ] {
            assert!(check_nats_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_become_node_names() {
        assert_eq!(
            node_name("presence-1.contoso.local"),
            "presence-1-contoso-local"
        );
        assert!(is_cluster_name(&node_name(&"h".repeat(300))));
    }
}

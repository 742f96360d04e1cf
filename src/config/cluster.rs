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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Environment, SecretLocation};

    const BASE: &str = r#"
[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"

[store]
state_dir = "/var/lib/presence-sync"

[mappings.profiles.default]
file = "../mappings/default.toml"
"#;

    const NODES: &str = r#"nats_urls = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]"#;

    fn load(cluster: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let text = format!("{BASE}\n[cluster]\n{cluster}\n");
        let env: Environment = vars.iter().copied().collect();
        Config::parse(Path::new("/etc/presence-sync/config.toml"), &text, &env).map_err(|e| {
            e.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn without_the_section_there_is_no_cluster() {
        let env = Environment::default();
        let config =
            Config::parse(Path::new("/etc/presence-sync/config.toml"), BASE, &env).unwrap();
        assert_eq!(config.cluster, None);
    }

    #[test]
    fn a_cluster_gets_the_documented_defaults() {
        let config = load(&format!("{NODES}\nnode_id = \"presence-1\""), &[]).unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(
            cluster.nats_urls,
            vec!["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
        );
        assert_eq!(cluster.tenant, "contoso_onmicrosoft_com");
        assert_eq!(cluster.node_id, "presence-1");
        assert_eq!(cluster.advertise_url.as_str(), "http://127.0.0.1:8787/");
        assert_eq!(cluster.auth, NatsAuth::None);
        assert_eq!(cluster.replicas, 3);
        assert_eq!(cluster.lease_ttl, Duration::from_secs(5));
        assert_eq!(cluster.history, Duration::from_secs(24 * 3600));
        assert_eq!(cluster.snapshot_interval, Duration::from_secs(600));
        assert_eq!(cluster.request_timeout, Duration::from_secs(5));
        assert!(cluster.secrets().is_empty());
    }

    #[test]
    fn the_node_id_defaults_to_the_host_name() {
        let config = load(NODES, &[]).unwrap();
        let node_id = config.cluster.unwrap().node_id;
        assert!(is_cluster_name(&node_id), "{node_id}");
    }

    #[test]
    fn every_key_is_read() {
        let config = load(
            "nats_url = \"tls://nats.contoso.com:4222\"\ntenant = \"contoso-prod\"\n\
             node_id = \"b\"\nadvertise_url = \"https://presence-b.contoso.com\"\n\
             token_file = \"secrets/nats-token\"\nreplicas = 5\nlease_ttl = \"3s\"\n\
             history = \"2h\"\nsnapshot_interval = \"30m\"\nrequest_timeout = \"1500ms\"",
            &[],
        )
        .unwrap();
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.nats_urls, vec!["tls://nats.contoso.com:4222"]);
        assert_eq!(cluster.tenant, "contoso-prod");
        assert_eq!(
            cluster.advertise_url.as_str(),
            "https://presence-b.contoso.com/"
        );
        match &cluster.auth {
            NatsAuth::Token(source) => assert_eq!(
                source.location,
                SecretLocation::File("/etc/presence-sync/secrets/nats-token".into())
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(cluster.replicas, 5);
        assert_eq!(cluster.lease_ttl, Duration::from_secs(3));
        assert_eq!(cluster.history, Duration::from_secs(7200));
        assert_eq!(cluster.snapshot_interval, Duration::from_secs(1800));
        assert_eq!(cluster.request_timeout, Duration::from_millis(1500));
        assert_eq!(cluster.secrets().len(), 1);
        assert!(
            config
                .secrets()
                .iter()
                .any(|s| s.purpose == "the NATS token")
        );
    }

    #[test]
    fn credentials_default_to_systemd_credentials() {
        let vars = [(
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/presence-sync.service",
        )];
        let user = load(
            &format!("{NODES}\nnode_id = \"a\"\nuser = \"presence\""),
            &vars,
        )
        .unwrap();
        match user.cluster.unwrap().auth {
            NatsAuth::UserPassword { user, password } => {
                assert_eq!(user, "presence");
                assert_eq!(
                    password.location,
                    SecretLocation::Credential {
                        name: "nats-password",
                        directory: Some("/run/credentials/presence-sync.service".into())
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        let token = load(
            &format!("{NODES}\nnode_id = \"a\"\nauth = \"token\""),
            &vars,
        )
        .unwrap();
        match token.cluster.unwrap().auth {
            NatsAuth::Token(source) => assert_eq!(
                source.location,
                SecretLocation::Credential {
                    name: "nats-token",
                    directory: Some("/run/credentials/presence-sync.service".into())
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_environment_names_the_node() {
        let config = load(NODES, &[("PRESENCE_SYNC_CLUSTER__NODE_ID", "presence-2")]).unwrap();
        assert_eq!(config.cluster.unwrap().node_id, "presence-2");
    }

    #[test]
    fn bad_values_are_reported_on_their_keys() {
        let cases: &[(&str, &str)] = &[
            ("", "missing key `cluster.nats_urls`"),
            (
                &format!("{NODES}\nnats_url = \"nats://10.0.0.3:4222\""),
                "`cluster.nats_url` and `cluster.nats_urls` are both set",
            ),
            ("nats_urls = []", "`cluster.nats_urls` is empty"),
            (
                r#"nats_urls = ["http://10.0.0.1:4222"]"#,
                "`cluster.nats_urls`: \"http://10.0.0.1:4222\" has the scheme `http`",
            ),
            (
                r#"nats_urls = ["nats://presence:hunter2@10.0.0.1:4222"]"#,
                "holds a user name or password",
            ),
            (
                &format!("{NODES}\ntenant = \"contoso.com\""),
                "`cluster.tenant` = \"contoso.com\" cannot name NATS streams",
            ),
            (
                &format!("{NODES}\nnode_id = \"node 1\""),
                "`cluster.node_id` = \"node 1\" is not a node name",
            ),
            (
                &format!("{NODES}\nadvertise_url = \"ftp://b\""),
                "`cluster.advertise_url` = \"ftp://b\": the scheme must be http or https",
            ),
            (
                &format!("{NODES}\nreplicas = 7"),
                "`cluster.replicas` = 7 is out of range: it must be from 1 to 5",
            ),
            (
                &format!("{NODES}\nlease_ttl = \"500ms\""),
                "`cluster.lease_ttl` = \"500ms\" is out of range: it must be from 1s to 1m",
            ),
            (
                &format!("{NODES}\nhistory = \"1h\"\nsnapshot_interval = \"30m\""),
                "`cluster.snapshot_interval` = \"30m\" is not less than half of `cluster.history` (1h)",
            ),
            (
                &format!("{NODES}\nrequest_timeout = \"2m\""),
                "`cluster.request_timeout` = \"2m\" is out of range",
            ),
            (
                &format!("{NODES}\nauth = \"kerberos\""),
                "`cluster.auth` = \"kerberos\" is not a NATS authentication",
            ),
            (
                &format!("{NODES}\nauth = \"user_password\""),
                "missing key `cluster.user`",
            ),
            (
                &format!("{NODES}\ntoken_file = \"t\"\nuser = \"u\""),
                "`cluster.token_file` goes with a token",
            ),
            (
                &format!("{NODES}\nauth = \"none\"\nuser = \"u\""),
                "`cluster.user` is set but `cluster.auth` = \"none\"",
            ),
            (
                &format!("{NODES}\ntoken = \"hunter2\""),
                "`cluster.token`: secrets are never read from the config",
            ),
            (
                &format!("{NODES}\npassword = \"hunter2\""),
                "`cluster.password`: secrets are never read from the config",
            ),
            (
                &format!("{NODES}\nlease_tll = \"5s\""),
                "unknown key `lease_tll` in [cluster] (did you mean `lease_ttl`?)",
            ),
        ];
        for (section, expected) in cases {
            let section = if section.contains("node_id") {
                section.to_string()
            } else {
                format!("{section}\nnode_id = \"a\"")
            };
            let all = load(&section, &[]).unwrap_err();
            assert!(all.contains(expected), "{section}: {all}");
            assert!(
                all.starts_with("/etc/presence-sync/config.toml:"),
                "{section}: located: {all}"
            );
            assert!(!all.contains("hunter2"), "{all}");
        }
    }

    #[test]
    fn an_api_on_every_address_needs_an_advertised_url() {
        let text = format!(
            "{BASE}\n[api]\nlisten = \"0.0.0.0:8787\"\n[cluster]\n{NODES}\nnode_id = \"a\"\n"
        );
        let env = Environment::default();
        let error = Config::parse(Path::new("/etc/presence-sync/config.toml"), &text, &env)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("missing key `cluster.advertise_url`: `api.listen` = \"0.0.0.0:8787\""),
            "{error}"
        );
    }
}

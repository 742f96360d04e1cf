use std::path::Path;

use proptest::prelude::*;

use super::*;

const GUID: &str = "11111111-2222-3333-4444-555555555555";

fn minimal() -> String {
    format!(
        r#"
[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "{GUID}"

[store]
state_dir = "/var/lib/presence-sync"

[mappings.profiles.default]
file = "../mappings/default.toml"
"#
    )
}

fn env(vars: &[(&str, &str)]) -> Environment {
    vars.iter().copied().collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    Config::parse(
        Path::new("/etc/presence-sync/config.toml"),
        text,
        &env(vars),
    )
    .map_err(|e| e.diagnostics.iter().map(ToString::to_string).collect())
}

fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load(text, vars) {
        Ok(config) => panic!("expected errors, loaded {config:?}"),
        Err(errors) => errors,
    }
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let config = load(&minimal(), &[]).unwrap();
    let graph = &config.graph;
    assert_eq!(graph.tenant_id, "contoso.onmicrosoft.com");
    assert_eq!(graph.client_id, GUID);
    assert_eq!(graph.login_base, "https://login.microsoftonline.com");
    assert_eq!(graph.graph_base, "https://graph.microsoft.com");
    assert_eq!(graph.requests_per_30s, 1500);
    assert_eq!(graph.request_timeout, Duration::from_secs(10));
    assert_eq!(graph.session_expiry, Duration::from_secs(3600));
    assert_eq!(
        graph.auth,
        GraphAuth::ClientSecret(SecretSource {
            purpose: "the Graph client secret",
            location: SecretLocation::Credential {
                name: "graph-client-secret",
                directory: None
            },
            origin: config.graph_origin_for_tests(),
        })
    );
    assert_eq!(config.api.listen, "127.0.0.1:8787".parse().unwrap());
    assert_eq!(config.api.max_body_bytes, 65536);
    assert_eq!(
        config.api.token.location,
        SecretLocation::Credential {
            name: "api-token",
            directory: None
        }
    );
    assert_eq!(
        config.sync,
        SyncConfig {
            echo_window: Duration::from_secs(300),
            loop_max_changes: 6,
            loop_window: Duration::from_secs(300),
            loop_cooldown: Duration::from_secs(900),
            reconcile_interval: Duration::from_secs(600),
        }
    );
    assert_eq!(
        config.store.event_retention,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(config.store.event_keep_at_least, 10_000);
    assert_eq!(config.webhook, None);
    assert_eq!(config.secrets().len(), 2);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.mappings.default_profile, "default");
    assert_eq!(config.mappings.profile_for_group("anyone"), "default");
}

impl Config {
    fn graph_origin_for_tests(&self) -> Origin {
        match &self.graph.auth {
            GraphAuth::ClientSecret(source) => source.origin.clone(),
            GraphAuth::Certificate { key, .. } => key.origin.clone(),
        }
    }
}

#[test]
fn environment_variables_override_the_file() {
    let config = load(
        &minimal(),
        &[
            ("PRESENCE_SYNC_SYNC__ECHO_WINDOW", "2m"),
            ("PRESENCE_SYNC_GRAPH__REQUESTS_PER_30S", "10000"),
            ("PRESENCE_SYNC_LOG__FORMAT", "json"),
            (
                "PRESENCE_SYNC_MAPPINGS__PROFILES__GENESYS__FILE",
                "genesys.toml",
            ),
            (
                "PRESENCE_SYNC_MAPPINGS__PROFILES__GENESYS__GROUPS",
                "[tier2, tier3]",
            ),
            ("PRESENCE_SYNC_REQUIRE_SHARED", "1"),
        ],
    )
    .unwrap();
    assert_eq!(config.sync.echo_window, Duration::from_secs(120));
    assert_eq!(config.graph.requests_per_30s, 10000);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.mappings.profile_for_group("tier3"), "genesys");
    assert_eq!(
        config.mappings.profiles["genesys"].file,
        Path::new("/etc/presence-sync/genesys.toml")
    );
}

#[test]
fn errors_caused_by_the_environment_name_the_variable() {
    assert_eq!(
        errors(
            &minimal(),
            &[
                ("PRESENCE_SYNC_SYNC__ECHO_WINDOW", "soon"),
                ("PRESENCE_SYNC_API__LISTN", "0.0.0.0:80"),
            ]
        ),
        [
            "env PRESENCE_SYNC_API__LISTN: unknown key `listn` in [api] (did you mean `listen`?)",
            "env PRESENCE_SYNC_SYNC__ECHO_WINDOW: `sync.echo_window`: `soon` is not a duration: write a number and a unit (ms, s, m, h, d), e.g. \"15s\" or \"1h30m\"",
        ]
    );
}

#[test]
fn unknown_keys_and_sections_suggest_the_nearest_name() {
    let text = minimal() + "\n[sync]\necho_windw = \"1m\"\n\n[logs]\n";
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:13:1: unknown key `echo_windw` in [sync] (did you mean `echo_window`?)",
            "/etc/presence-sync/config.toml:15:2: unknown section `logs` (did you mean `log`?)",
        ]
    );
}

#[test]
fn inline_secrets_are_rejected_with_where_they_go_instead() {
    let text = minimal().replace(
        "[store]",
        "client_secret = \"hunter2\"\n\n[api]\ntoken = \"hunter3\"\n\n[store]",
    );
    let errors = errors(&text, &[("PRESENCE_SYNC_GRAPH__CLIENT_KEY", "pem")]);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with(
        "/etc/presence-sync/config.toml:6:1: `graph.client_secret`: secrets are never read"
    ));
    assert!(
        errors[0].contains("`client_secret_file`") && errors[0].contains("`graph-client-secret`")
    );
    assert!(errors[1].starts_with("/etc/presence-sync/config.toml:9:1: `api.token`:"));
    assert!(errors[1].contains("`token_file`") && errors[1].contains("`api-token`"));
    assert!(errors[2].starts_with("env PRESENCE_SYNC_GRAPH__CLIENT_KEY: `graph.client_key`:"));
    for error in &errors {
        assert!(!error.contains("hunter"), "{error}");
    }
}

#[test]
fn secret_values_never_reach_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client-secret"), "s3cret-value\n").unwrap();
    std::fs::write(dir.path().join("api-token"), "t0ken-value").unwrap();
    let text = minimal().replace(
        "[store]",
        "client_secret_file = \"client-secret\"\n\n[store]",
    );
    let path = dir.path().join("config.toml");
    let environment = env(&[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
    let config = Config::parse(&path, &text, &environment).unwrap();
    let secrets: Vec<Secret> = config.secrets().iter().map(|s| s.read().unwrap()).collect();
    assert_eq!(secrets[0].expose(), "s3cret-value");
    assert_eq!(secrets[1].expose(), "t0ken-value");
    let printed = format!("{config:?} {config:#?} {secrets:?} {environment:?}");
    assert!(
        !printed.contains("s3cret") && !printed.contains("t0ken"),
        "{printed}"
    );
}

#[test]
fn credentials_come_from_the_credentials_directory() {
    let config = load(
        &minimal(),
        &[("CREDENTIALS_DIRECTORY", "/run/credentials/ps.service")],
    )
    .unwrap();
    assert_eq!(
        config.api.token.location,
        SecretLocation::Credential {
            name: "api-token",
            directory: Some(PathBuf::from("/run/credentials/ps.service"))
        }
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = minimal().replace(
        "[store]",
        "client_certificate_file = \"certs/app.pem\"\nclient_key_file = \"/etc/keys/app.key\"\n\n[api]\ntoken_file = \"api-token\"\n\n[store]",
    )
    .replace("\"/var/lib/presence-sync\"", "\"state\"");
    let config = load(&text, &[]).unwrap();
    assert_eq!(
        config.mappings.profiles["default"].file,
        Path::new("/etc/presence-sync/../mappings/default.toml")
    );
    assert_eq!(
        config.store.state_dir,
        Path::new("/etc/presence-sync/state")
    );
    assert_eq!(
        config.api.token.location,
        SecretLocation::File(PathBuf::from("/etc/presence-sync/api-token"))
    );
    let GraphAuth::Certificate {
        certificate_file,
        key,
    } = &config.graph.auth
    else {
        panic!("expected certificate auth: {:?}", config.graph.auth);
    };
    assert_eq!(
        certificate_file,
        Path::new("/etc/presence-sync/certs/app.pem")
    );
    assert_eq!(
        key.location,
        SecretLocation::File(PathBuf::from("/etc/keys/app.key"))
    );
}

#[test]
fn the_state_directory_defaults_to_systemds() {
    let text = minimal().replace("state_dir = \"/var/lib/presence-sync\"", "");
    let config = load(&text, &[("STATE_DIRECTORY", "/var/lib/ps:/var/lib/other")]).unwrap();
    assert_eq!(config.store.state_dir, Path::new("/var/lib/ps"));
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:6:2: missing key `store.state_dir`: give the state directory, or run under systemd with StateDirectory= (which sets $STATE_DIRECTORY)"
        ]
    );
}

#[test]
fn semantic_errors_are_all_reported_on_their_keys() {
    let text = format!(
        r#"
[graph]
tenant_id = "not a tenant"
client_id = "{GUID}"
requests_per_30s = 0
session_expiry = "4m"

[api]
listen = "localhost:8787"

[store]
state_dir = "/var/lib/presence-sync"

[sync]
loop_max_changes = 1

[mappings]
default_profile = "defualt"

[mappings.profiles.default]
file = "default.toml"
groups = ["tier1", "tier2"]

[mappings.profiles.genesys]
file = "genesys.toml"
groups = ["tier2"]
"#
    );
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:3:1: `graph.tenant_id` = \"not a tenant\" is neither a GUID nor a domain name",
            "/etc/presence-sync/config.toml:5:1: `graph.requests_per_30s` = 0 is out of range: it must be at least 1",
            "/etc/presence-sync/config.toml:6:1: `graph.session_expiry` = \"4m\" is out of range: it must be from 5m to 4h",
            "/etc/presence-sync/config.toml:9:1: `api.listen` = \"localhost:8787\" is not an IP address and port, e.g. \"127.0.0.1:8787\" or \"[::1]:8787\"",
            "/etc/presence-sync/config.toml:15:1: `sync.loop_max_changes` = 1 is out of range: it must be at least 2",
            "/etc/presence-sync/config.toml:18:1: default profile `defualt` is not in [mappings.profiles] (did you mean `default`?)",
            "/etc/presence-sync/config.toml:26:11: group `tier2` is already in profile `default`: a group belongs to one profile only",
        ]
    );
}

#[test]
fn graph_auth_takes_a_secret_or_a_certificate_pair() {
    let with = |keys: &str| {
        errors(
            &minimal().replace("[store]", &format!("{keys}\n[store]")),
            &[],
        )
    };
    assert_eq!(
        with("client_secret_file = \"s\"\nclient_key_file = \"k\""),
        [
            "/etc/presence-sync/config.toml:6:1: give either `client_secret_file` or `client_certificate_file` + `client_key_file`, not both"
        ]
    );
    assert_eq!(
        with("client_certificate_file = \"c\""),
        [
            "/etc/presence-sync/config.toml:6:1: `client_certificate_file` needs `client_key_file` (the PEM private key) too"
        ]
    );
}

#[test]
fn syntax_errors_are_located() {
    let errors = errors("[graph]\ntenant_id = \"x\"\nclient_id = \n", &[]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("/etc/presence-sync/config.toml:3:"),
        "{errors:?}"
    );
}

#[test]
fn wrong_types_are_named_in_admin_terms() {
    let text = minimal() + "\n[api]\nmax_body_bytes = \"big\"\n";
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:13:1: `api.max_body_bytes` must be an integer, not string \"big\""
        ]
    );
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let error =
        Config::load_with(Path::new("/nonexistent/presence-sync.toml"), &env(&[])).unwrap_err();
    assert_eq!(error.diagnostics.len(), 1);
    assert!(
        error.diagnostics[0]
            .to_string()
            .starts_with("/nonexistent/presence-sync.toml: cannot read the config:")
    );
}

/// Config-shaped text from the real keys, so generated cases get past the
/// TOML parser into figment and validation.
fn config_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "tenant_id",
        "client_id",
        "client_secret",
        "client_secret_file",
        "listen",
        "token",
        "state_dir",
        "echo_window",
        "loop_max_changes",
        "format",
        "level",
        "default_profile",
        "file",
        "groups",
        "requests_per_30s",
        "session_expiry",
        "event_retention",
        "url",
        "secret",
        "batch_size",
        "x",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9:./ -]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("[\"a\", \"a\"]".to_owned()),
        Just("{ file = 1 }".to_owned()),
        Just("1979-05-27".to_owned()),
        Just("true".to_owned()),
    ];
    let header = prop::sample::select(vec![
        "[graph]",
        "[api]",
        "[store]",
        "[sync]",
        "[log]",
        "[webhook]",
        "[mappings]",
        "[mappings.profiles.default]",
        "[mappings.profiles.Bad]",
        "[[mappings]]",
        "[other]",
    ]);
    let line = prop_oneof![
        header.prop_map(str::to_owned),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = load(&text, &[]);
    }

    #[test]
    fn never_panics_on_config_like_text(
        text in config_like(),
        var in prop::sample::select(vec![
            "PRESENCE_SYNC_SYNC__ECHO_WINDOW", "PRESENCE_SYNC_GRAPH", "PRESENCE_SYNC_MAPPINGS__PROFILES",
            "PRESENCE_SYNC_MAPPINGS__PROFILES__DEFAULT__GROUPS", "PRESENCE_SYNC_API__LISTEN",
        ]),
        value in "[a-z0-9\\[\\]{},=\" ]{0,16}",
    ) {
        let _ = load(&text, &[(var, &value)]);
    }
}

#[test]
fn the_engine_gets_the_sync_and_session_settings() {
    let text = minimal()
        + "\n[sync]\necho_window = \"2m\"\nloop_max_changes = 4\nloop_cooldown = \"20m\"\n";
    let config = load(&text, &[("PRESENCE_SYNC_GRAPH__SESSION_EXPIRY", "30m")]).unwrap();
    let settings = config.engine_settings();
    assert_eq!(settings.echo_window, Duration::from_secs(120));
    assert_eq!(settings.loop_limits.max_changes, 4);
    assert_eq!(settings.loop_limits.window, Duration::from_secs(300));
    assert_eq!(settings.loop_limits.cooldown, Duration::from_secs(1200));
    assert_eq!(settings.session_expiry, Duration::from_secs(1800));
}

#[test]
fn event_retention_takes_days_and_has_a_floor() {
    let text = minimal().replace(
        "[store]",
        "[store]\nevent_retention = \"30d\"\nevent_keep_at_least = 0",
    );
    let config = load(&text, &[]).unwrap();
    assert_eq!(
        config.store.event_retention,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(config.store.event_keep_at_least, 0);
    let text = minimal().replace(
        "[store]",
        "[store]\nevent_retention = \"30m\"\nevent_keep_at_least = -5",
    );
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:7:1: `store.event_retention` = \"30m\" is out of range: it must be at least 1h",
            "/etc/presence-sync/config.toml:8:1: `store.event_keep_at_least` = -5 is out of range: it must be at least 0",
        ]
    );
}

#[test]
fn the_store_cache_is_8_mib_unless_set_and_at_least_1() {
    assert_eq!(load(&minimal(), &[]).unwrap().store.cache_mb, 8);
    let text = minimal().replace("[store]", "[store]\ncache_mb = 16");
    assert_eq!(load(&text, &[]).unwrap().store.cache_mb, 16);
    let text = minimal().replace("[store]", "[store]\ncache_mb = 0");
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:7:1: `store.cache_mb` = 0 is out of range: it must be from 1 to 1048576"
        ]
    );
}

#[test]
fn a_webhook_section_with_a_url_gets_the_documented_defaults() {
    let text = minimal() + "\n[webhook]\nurl = \"https://cc.example.com/events\"\n";
    let config = load(
        &text,
        &[("CREDENTIALS_DIRECTORY", "/run/credentials/ps.service")],
    )
    .unwrap();
    let webhook = config.webhook.clone().expect("a webhook config");
    assert_eq!(webhook.url, "https://cc.example.com/events");
    assert_eq!(webhook.timeout, Duration::from_secs(10));
    assert_eq!(webhook.max_retry_delay, Duration::from_secs(300));
    assert_eq!(webhook.batch_size, 100);
    assert_eq!(webhook.secret.purpose, "the webhook signing secret");
    assert_eq!(
        webhook.secret.location,
        SecretLocation::Credential {
            name: "webhook-secret",
            directory: Some(PathBuf::from("/run/credentials/ps.service"))
        }
    );
    // `check` reads every secret the config names: the webhook's too.
    assert_eq!(config.secrets().last(), Some(&&webhook.secret));
}

#[test]
fn webhook_keys_are_read_and_the_secret_file_resolved() {
    let text = minimal()
        + "\n[webhook]\nurl = \"http://10.0.0.5:8080/hook\"\nsecret_file = \"webhook.key\"\n\
           timeout = \"3s\"\nmax_retry_delay = \"1m\"\nbatch_size = 1000\n";
    let webhook = load(&text, &[]).unwrap().webhook.unwrap();
    assert_eq!(
        webhook.secret.location,
        SecretLocation::File(PathBuf::from("/etc/presence-sync/webhook.key"))
    );
    assert_eq!(webhook.timeout, Duration::from_secs(3));
    assert_eq!(webhook.max_retry_delay, Duration::from_secs(60));
    assert_eq!(webhook.batch_size, 1000);
}

#[test]
fn the_environment_can_turn_the_webhook_on() {
    let config = load(
        &minimal(),
        &[
            (
                "PRESENCE_SYNC_WEBHOOK__URL",
                "https://cc.example.com/events",
            ),
            ("PRESENCE_SYNC_WEBHOOK__BATCH_SIZE", "5"),
        ],
    )
    .unwrap();
    let webhook = config.webhook.unwrap();
    assert_eq!(webhook.url, "https://cc.example.com/events");
    assert_eq!(webhook.batch_size, 5);
    assert_eq!(
        errors(&minimal(), &[("PRESENCE_SYNC_WEBHOOK__TIMEOUT", "5s")]),
        [
            "env PRESENCE_SYNC_WEBHOOK__TIMEOUT: missing key `webhook.url`: the receiver's URL, e.g. \"https://cc.example.com/presence-sync/events\""
        ]
    );
}

#[test]
fn bad_webhook_values_are_reported_on_their_keys() {
    let text = minimal()
        + "\n[webhook]\nurl = \"ftp://cc.example.com/\"\ntimeout = \"10\"\nmax_retry_delay = \"500ms\"\n\
           batch_size = 0\nbatch_sise = 10\n";
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:17:1: unknown key `batch_sise` in [webhook] (did you mean `batch_size`?)",
        ]
    );
    let text = text.replace("batch_sise = 10\n", "");
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:13:1: `webhook.url` = \"ftp://cc.example.com/\": the scheme must be https (or http), not `ftp`",
            "/etc/presence-sync/config.toml:14:1: `webhook.timeout`: `10` is not a duration: write a number and a unit (ms, s, m, h, d), e.g. \"15s\" or \"1h30m\"",
            "/etc/presence-sync/config.toml:15:1: `webhook.max_retry_delay` = \"500ms\" is out of range: it must be at least 1s",
            "/etc/presence-sync/config.toml:16:1: `webhook.batch_size` = 0 is out of range: it must be from 1 to 1000",
        ]
    );
    let text = minimal() + "\n[webhook]\nbatch_size = 1001\n";
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:12:2: missing key `webhook.url`: the receiver's URL, e.g. \"https://cc.example.com/presence-sync/events\"",
            "/etc/presence-sync/config.toml:13:1: `webhook.batch_size` = 1001 is out of range: it must be from 1 to 1000",
        ]
    );
}

#[test]
fn the_webhook_secret_is_refused_inline() {
    let text =
        minimal() + "\n[webhook]\nurl = \"https://cc.example.com/events\"\nsecret = \"hunter2\"\n";
    let from_env = errors(&text, &[("PRESENCE_SYNC_WEBHOOK__SECRET", "hunter3")]);
    assert_eq!(from_env.len(), 1, "{from_env:#?}");
    // The variable replaced the file's value, so it is the one to blame.
    assert!(
        from_env[0].starts_with(
            "env PRESENCE_SYNC_WEBHOOK__SECRET: `webhook.secret`: secrets are never read"
        ),
        "{from_env:#?}"
    );
    assert!(from_env[0].contains("`secret_file`") && from_env[0].contains("`webhook-secret`"));
    let errors = errors(&text, &[]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with(
        "/etc/presence-sync/config.toml:14:1: `webhook.secret`: secrets are never read"
    ));
    assert!(!errors[0].contains("hunter"));
}

#[test]
fn a_webhook_url_with_credentials_is_refused() {
    let text = minimal() + "\n[webhook]\nurl = \"https://cc:hunter2@cc.example.com/events\"\n";
    let errors = errors(&text, &[]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "/etc/presence-sync/config.toml:13:1: `webhook.url` = \"https://cc:***@cc.example.com/events\": "
        ) && errors[0].contains("user name or password")
            && !errors[0].contains("hunter2"),
        "{errors:?}"
    );
}

#[test]
fn routing_queues_get_defaults_and_their_settings() {
    let text = format!(
        r#"{}
[routing.queues.sales]
strategy = "skills-best"
skills = {{ english = 60 }}
priority = 3
offer_timeout = "15s"
wrap_up = "0s"
max_no_answer = 0
max_wait = "2m"
overflow_queue = "backup"
groups = ["sales-team"]
on_contact_status = "On contact"

[routing.queues.backup]
strategy = "round-robin"
max_wait = "5m"
overflow_teams_users = ["duty.manager@contoso.com"]
"#,
        minimal()
    );
    let config = load(&text, &[]).unwrap();
    let queues = &config.routing.queues;
    assert_eq!(queues.len(), 2);
    let backup = queues.iter().find(|q| q.name == "backup").unwrap();
    assert_eq!(backup.strategy, crate::routing::Strategy::RoundRobin);
    assert_eq!(backup.offer_timeout, Duration::from_secs(20));
    assert_eq!(backup.wrap_up, Duration::from_secs(10));
    assert_eq!(backup.max_no_answer, 3);
    assert_eq!(
        backup.overflow,
        Some(crate::routing::OverflowTarget::TeamsUsers(vec![
            "duty.manager@contoso.com".into()
        ]))
    );
    let sales = queues.iter().find(|q| q.name == "sales").unwrap();
    assert_eq!(sales.skills.get("english"), Some(&60));
    assert_eq!(sales.priority, 3);
    assert_eq!(sales.wrap_up, Duration::ZERO);
    assert_eq!(sales.max_wait, Some(Duration::from_secs(120)));
    assert_eq!(
        sales.overflow,
        Some(crate::routing::OverflowTarget::Queue("backup".into()))
    );
    assert_eq!(
        config.routing.statuses["sales"]
            .on_contact
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("On contact")
    );
    assert!(load(&minimal(), &[]).unwrap().routing.queues.is_empty());
}

#[test]
fn bad_routing_queues_are_reported_where_they_are() {
    let text = format!(
        r#"{}
[routing.queues.sales]
strategy = "longest_idle"
skills = {{ english = 120 }}
max_wait = "1m"

[routing.queues.Night]
strategy = "random"
overflow_queue = "nowhere"
max_wait = "1m"

[routing.queues.loop]
strategy = "top-down"
overflow_queue = "loop"
max_wait = "1m"
colour = "red"
"#,
        minimal()
    );
    let all = errors(&text, &[]).join("\n");
    for expected in [
        "unknown strategy `longest_idle` (did you mean `longest-idle`?)",
        "skill `english` = 120: a minimum level is 0–100",
        "`max_wait` and an overflow target",
        "queue name `Night`",
        "no queue `nowhere` in [routing.queues]",
        "unknown key `colour` in [routing.queues.loop]",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(all.contains("config.toml:"), "located: {all}");
}

/// A config naming the shipped profiles by absolute path, with `queues`
/// appended; `genesys` serves the group `tier2`.
fn with_shipped_profiles(queues: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    format!(
        r#"
[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "{GUID}"

[store]
state_dir = "/var/lib/presence-sync"

[mappings.profiles.default]
file = "{}"

[mappings.profiles.genesys]
file = "{}"
groups = ["tier2"]
{queues}"#,
        root.join("default.toml").display(),
        root.join("genesys.toml").display()
    )
}

fn queue_status_errors(text: &str) -> Vec<String> {
    let config = load(text, &[]).unwrap();
    match crate::daemon::mappings::load_for(&config) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_queue_status_no_profile_of_its_agents_has_is_refused_where_it_is_written() {
    // A typo: the default profile (group `sales-team` is in no profile) has
    // `On contact`, not `On contatc`.
    let text = with_shipped_profiles(
        r#"
[routing.queues.sales]
strategy = "longest-idle"
groups = ["sales-team"]
on_contact_status = "On contatc"
after_contact_status = "Available"
"#,
    );
    assert_eq!(
        queue_status_errors(&text),
        ["/etc/presence-sync/config.toml:19:1: `on_contact_status` = \"On contatc\": profile `default` has no such status (did you mean `On contact`?); agents in queue `sales`'s group `sales-team` use that profile, and such an agent would keep its status when it accepts a contact. Statuses are the keys of [statuses] in ".to_string()
            + env!("CARGO_MANIFEST_DIR") + "/mappings/default.toml, exact case"]
    );
}

#[test]
fn a_queue_status_is_checked_against_every_profile_that_may_serve_the_queue() {
    // Served by `tier2` (genesys): it has no `After contact work`.
    let grouped = with_shipped_profiles(
        r#"
[routing.queues.support]
strategy = "top-down"
groups = ["tier2"]
after_contact_status = "After contact work"
"#,
    );
    let found = queue_status_errors(&grouped);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("/etc/presence-sync/config.toml:19:1: `after_contact_status` = \"After contact work\": profile `genesys` has no such status; agents in queue `support`'s group `tier2` use that profile, and such an agent would keep its status when it completes a contact."),
        "{found:?}"
    );
    // No groups: any agent may join through the API, so every profile must
    // have it; `On contact` is only in the default profile.
    let open = with_shipped_profiles(
        r#"
[routing.queues.sales]
strategy = "longest-idle"
on_contact_status = "On contact"
"#,
    );
    let found = queue_status_errors(&open);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("profile `genesys` has no such status; queue `sales` has no `groups`, so agents of any profile may serve it"),
        "{found:?}"
    );
    // What every serving profile has passes: `Busy` is in genesys, `Available` in both.
    let fine = with_shipped_profiles(
        r#"
[routing.queues.support]
strategy = "top-down"
groups = ["tier2"]
on_contact_status = "Busy"

[routing.queues.any]
strategy = "random"
after_contact_status = "Available"
"#,
    );
    assert_eq!(queue_status_errors(&fine), Vec::<String>::new());
}

#[test]
fn a_queue_status_set_from_the_environment_is_reported_at_its_variable() {
    let text = with_shipped_profiles(
        r#"
[routing.queues.sales]
strategy = "longest-idle"
groups = ["sales-team"]
"#,
    );
    let config = load(
        &text,
        &[(
            "PRESENCE_SYNC_ROUTING__QUEUES__SALES__ON_CONTACT_STATUS",
            "Lnch",
        )],
    )
    .unwrap();
    let Err(found) = crate::daemon::mappings::load_for(&config) else {
        panic!("a typo from the environment should be refused");
    };
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .to_string()
            .starts_with("env PRESENCE_SYNC_ROUTING__QUEUES__SALES__ON_CONTACT_STATUS: `on_contact_status` = \"Lnch\": profile `default` has no such status (did you mean `Lunch`?)"),
        "{}",
        found[0]
    );
}

#[test]
fn the_budget_keys_have_defaults_and_take_values() {
    let config = load(&minimal(), &[]).unwrap();
    assert_eq!(config.budget, BudgetConfig::default());
    assert_eq!(config.budget.read_share_max, 0.6);
    assert_eq!(config.budget.read_freshness_floor, Duration::from_secs(5));
    assert_eq!(config.budget.poll_round_min, Duration::from_millis(500));
    let text = minimal().replace(
        "[store]",
        "read_share_max = 0.8\nread_freshness_floor = \"10s\"\npoll_round_min = \"1s\"\n\n[store]",
    );
    let config = load(&text, &[]).unwrap();
    assert_eq!(
        config.budget,
        BudgetConfig {
            read_share_max: 0.8,
            read_freshness_floor: Duration::from_secs(10),
            poll_round_min: Duration::from_secs(1),
        }
    );
    // A whole share, and from the environment.
    let config = load(
        &minimal().replace("[store]", "read_share_max = 1\n\n[store]"),
        &[("PRESENCE_SYNC_GRAPH__POLL_ROUND_MIN", "250ms")],
    )
    .unwrap();
    assert_eq!(config.budget.read_share_max, 1.0);
    assert_eq!(config.budget.poll_round_min, Duration::from_millis(250));
}

#[test]
fn bad_budget_keys_are_reported_on_their_lines() {
    let text = minimal().replace(
        "[store]",
        "read_share_max = 1.5\npoll_round_min = \"10ms\"\n\n[store]",
    );
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:6:1: `graph.read_share_max` = 1.5 is out of range: it must be more than 0 and at most 1 (a share of the budget, e.g. 0.6)",
            "/etc/presence-sync/config.toml:7:1: `graph.poll_round_min` = \"10ms\" is out of range: it must be from 50ms to 1h",
        ]
    );
    let text = minimal().replace(
        "[store]",
        "read_share_max = \"most\"\npoll_round_min = \"2s\"\nread_freshness_floor = \"1s\"\n\n[store]",
    );
    assert_eq!(
        errors(&text, &[]),
        [
            "/etc/presence-sync/config.toml:6:1: `graph.read_share_max` = \"most\" is not a number: give a share of the budget, e.g. 0.6",
            "/etc/presence-sync/config.toml:8:1: `graph.read_freshness_floor` = 1s is shorter than `graph.poll_round_min` = 2s: agents cannot be read more often than the shortest round",
        ]
    );
}

#[test]
fn the_directory_scope_and_freshness_have_defaults_and_three_shapes() {
    let config = load(&minimal(), &[]).unwrap();
    assert_eq!(config.directory, DirectoryConfig::default());
    assert_eq!(config.directory.scope, DirectoryScope::All);
    assert_eq!(config.directory.freshness, Duration::from_secs(30));
    let with = |section: &str| load(&format!("{}\n[directory]\n{section}\n", minimal()), &[]);
    assert_eq!(
        with("scope = \"agents\"\nfreshness = \"2m\"")
            .unwrap()
            .directory,
        DirectoryConfig {
            scope: DirectoryScope::Agents,
            freshness: Duration::from_secs(120),
        }
    );
    assert_eq!(
        with("scope = { departments = [\"Sales\", \" Support \"] }")
            .unwrap()
            .directory
            .scope,
        DirectoryScope::Departments(vec!["Sales".into(), "Support".into()])
    );
    let groups = with(
        "scope = { groups = [\"2F1C8A4E-7B0D-4C1E-9A57-3D6F0B8E21C4\", \" 8b081ef6-4792-4def-b2c9-c363a1bf41d5 \"] }",
    )
    .unwrap()
    .directory
    .scope;
    assert_eq!(
        groups,
        DirectoryScope::Groups(vec![
            "2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4".into(),
            "8b081ef6-4792-4def-b2c9-c363a1bf41d5".into()
        ])
    );
    assert_eq!(groups.groups().len(), 2);
    assert!(DirectoryScope::All.groups().is_empty());
    let config = load(&minimal(), &[("PRESENCE_SYNC_DIRECTORY__FRESHNESS", "45s")]).unwrap();
    assert_eq!(config.directory.freshness, Duration::from_secs(45));
}

#[test]
fn a_bad_directory_section_is_located() {
    let bad = |section: &str| errors(&format!("{}\n[directory]\n{section}\n", minimal()), &[]);
    let first = |section: &str| bad(section).remove(0);
    assert!(
        first("scope = \"everyone\"").contains("`directory.scope` = \"everyone\" is not a scope"),
        "{:?}",
        bad("scope = \"everyone\"")
    );
    assert!(first("scope = \"agent\"").contains("did you mean `agents`?"));
    assert!(first("scope = 3").contains("`directory.scope` has the wrong type"));
    assert!(first("scope = { departments = [] }").contains("from 1 to 1000 departments"));
    assert!(first("scope = { departments = [\"\"] }").contains("departments[0]"));
    assert!(first("scope = { departments = \"Sales\" }").contains("must be a list"));
    assert!(first("scope = { teams = [\"x\"] }").contains("has no key `teams`"));
    let g = "2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4";
    assert!(first("scope = { groups = [] }").contains("from 1 to 1000 groups, not 0"));
    let many = format!(
        "scope = {{ groups = [{}] }}",
        vec![format!("\"{g}\""); 1001].join(",")
    );
    assert!(first(&many).contains("from 1 to 1000 groups, not 1001"));
    assert!(
        first(&format!("scope = {{ groups = \"{g}\" }}"))
            .contains("must be a list of group object ids")
    );
    let named = first(&format!("scope = {{ groups = [\"{g}\", \"Sales team\"] }}"));
    assert!(
        named.contains("`directory.scope.groups[1]` = \"Sales team\" is not a group object id"),
        "{named}"
    );
    // Located at the entry itself: its line and column.
    let line = format!("{}\n[directory]\n", minimal()).lines().count() + 1;
    assert!(
        named.starts_with(&format!("/etc/presence-sync/config.toml:{line}:61:")),
        "{named}"
    );
    assert!(
        first(&format!("scope = {{ groups = [\"{g}\", 7] }}"))
            .contains("groups[1]` must be a group's object id")
    );
    assert!(first(&format!("scope = {{ groups = [\"{}\"] }}", &g[..35])).contains("groups[0]"));
    assert!(
        first(&format!(
            "scope = {{ groups = [\"{g}\", \"{}\"] }}",
            g.to_uppercase()
        ))
        .contains("listed twice")
    );
    assert!(
        first(&format!(
            "scope = {{ departments = [\"Sales\"], groups = [\"{g}\"] }}"
        ))
        .contains("give one of them")
    );
    assert!(first("freshness = \"100ms\"").contains("`directory.freshness`"));
    assert!(first("colour = 1").contains("colour"));
    let located = first("scope = \"everyone\"");
    assert!(
        located.starts_with("/etc/presence-sync/config.toml:"),
        "{located}"
    );
}

#[test]
fn the_viewer_token_is_its_own_credential() {
    let config = load(&minimal(), &[]).unwrap();
    assert_eq!(config.api.viewer_token, None);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api-token"), "api-t0ken\n").unwrap();
    std::fs::write(dir.path().join("viewer-token"), "v1ewer-t0ken\n").unwrap();
    let text = minimal().replace(
        "[store]",
        "[api]\ntoken_file = \"api-token\"\nviewer_token_file = \"viewer-token\"\n\n[store]",
    );
    let path = dir.path().join("config.toml");
    let config = Config::parse(&path, &text, &env(&[])).unwrap();
    assert_eq!(
        config.api.viewer_token.as_ref().map(|s| &s.location),
        Some(&SecretLocation::File(dir.path().join("viewer-token")))
    );
    let (api, viewer) = config.api.read_tokens().unwrap();
    assert_eq!(
        (api.expose(), viewer.as_ref().map(Secret::expose)),
        ("api-t0ken", Some("v1ewer-t0ken"))
    );
    assert!(
        config.secrets().len() == 3,
        "the viewer token is checked too"
    );

    // The same value as the API token would write: refused, naming both.
    std::fs::write(dir.path().join("viewer-token"), "api-t0ken").unwrap();
    let error = config.api.read_tokens().unwrap_err();
    assert!(matches!(error, SecretError::SameAs { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("the viewer token") && message.contains("the API token"),
        "{message}"
    );

    let inline = minimal().replace("[store]", "[api]\nviewer_token = \"x\"\n\n[store]");
    let found = errors(&inline, &[]);
    assert!(
        found
            .iter()
            .any(|e| e.contains("`api.viewer_token`") && e.contains("viewer_token_file")),
        "{found:?}"
    );
    let empty = minimal().replace("[store]", "[api]\nviewer_token_file = \" \"\n\n[store]");
    let found = errors(&empty, &[]);
    assert!(
        found.iter().any(|e| e.contains("api.viewer_token_file")),
        "{found:?}"
    );
}

#[test]
fn graph_proxy_and_ca_file_are_read_and_checked() {
    let with = |keys: &str| minimal().replace("[store]", &format!("{keys}\n[store]"));
    let config = load(
        &with("proxy = \"http://user:pw@proxy.corp:3128/\"\nca_file = \"certs/inspect.pem\""),
        &[],
    )
    .unwrap();
    assert_eq!(
        config.graph.outbound.proxy.as_deref(),
        Some("http://user:pw@proxy.corp:3128")
    );
    assert_eq!(
        config.graph.outbound.ca_file.as_deref(),
        Some(Path::new("/etc/presence-sync/certs/inspect.pem"))
    );
    let defaults = load(&minimal(), &[]).unwrap();
    assert_eq!(defaults.graph.outbound, crate::config::Outbound::default());
    let refused = errors(&with("proxy = \"socks5://proxy.corp:1080\""), &[]);
    assert!(refused[0].contains("must be http or https"), "{refused:?}");
    let refused = errors(&with("proxy = \"proxy.corp:3128\""), &[]);
    assert!(refused[0].contains("not a URL"), "{refused:?}");
    let from_env = load(
        &minimal(),
        &[("PRESENCE_SYNC_GRAPH__PROXY", "http://10.0.0.1:8080")],
    )
    .unwrap();
    assert_eq!(
        from_env.graph.outbound.proxy.as_deref(),
        Some("http://10.0.0.1:8080")
    );
}

fn with_subscriptions(section: &str) -> String {
    format!("{}\n[subscriptions]\n{section}\n", minimal())
}

const ENABLED: &str = r#"
enabled = true
accounts = ["svc-presence-1@contoso.onmicrosoft.com"]
notification_url = "https://presence.contoso.com/notifications"
lifecycle_url = "https://presence.contoso.com/lifecycle"
"#;

#[test]
fn subscriptions_are_off_by_default_with_the_documented_defaults() {
    let config = load(&minimal(), &[]).unwrap();
    let s = &config.subscriptions;
    assert!(!s.enabled);
    assert!(s.accounts.is_empty());
    assert_eq!(s.notification_url, None);
    assert_eq!(s.listen, "127.0.0.1:8790".parse().unwrap());
    assert_eq!(s.reconcile_interval, Duration::from_secs(60));
    assert_eq!(s.lifetime, Duration::from_secs(55 * 60));
    assert_eq!(s.renew_before, Duration::from_secs(10 * 60));
    assert_eq!(s.max_users_per_subscription, 650);
    assert_eq!(s.max_body, 1024 * 1024);
    assert_eq!(s.encryption, None);
    // Disabled: its secrets are not asked for.
    assert!(s.secrets().is_empty());
}

#[test]
fn enabled_subscriptions_read_their_keys() {
    let text = with_subscriptions(&format!(
        "{ENABLED}\nlisten = \"127.0.0.1:9000\"\nclient_state_file = \"secrets/client-state\"\n\
         encryption_certificate_file = \"enc.pem\"\nencryption_key_file = \"enc.key\"\n\
         lifetime = \"60m\"\nrenew_before = \"5m\"\nmax_users_per_subscription = 100\nmax_body = \"512KiB\"\n"
    ));
    let config = load(&text, &[]).unwrap();
    let s = &config.subscriptions;
    assert!(s.enabled);
    assert!(s.has_account("SVC-presence-1@contoso.onmicrosoft.com"));
    assert_eq!(
        s.notification_url.as_ref().map(|u| u.as_str()),
        Some("https://presence.contoso.com/notifications")
    );
    assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(
        s.client_state.location,
        SecretLocation::File("/etc/presence-sync/secrets/client-state".into())
    );
    let encryption = s.encryption.as_ref().unwrap();
    assert_eq!(
        encryption.certificate_file,
        Path::new("/etc/presence-sync/enc.pem")
    );
    assert_eq!(s.lifetime, Duration::from_secs(3600));
    assert_eq!(s.max_users_per_subscription, 100);
    assert_eq!(s.max_body, 512 * 1024);
    assert_eq!(s.secrets().len(), 2);
    assert_eq!(config.secrets().len(), 4);
}

#[test]
fn the_client_state_defaults_to_a_systemd_credential() {
    let config = load(
        &with_subscriptions(ENABLED),
        &[(
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/presence-sync.service",
        )],
    )
    .unwrap();
    assert_eq!(
        config.subscriptions.client_state.location,
        SecretLocation::Credential {
            name: "subscription-client-state",
            directory: Some("/run/credentials/presence-sync.service".into())
        }
    );
}

#[test]
fn enabled_subscriptions_need_accounts_and_urls() {
    let errors = errors(&with_subscriptions("enabled = true"), &[]);
    let all = errors.join("\n");
    assert!(all.contains("`subscriptions.accounts` is empty"), "{all}");
    assert!(
        all.contains("missing key `subscriptions.notification_url`"),
        "{all}"
    );
    assert!(
        all.contains("missing key `subscriptions.lifecycle_url`"),
        "{all}"
    );
}

#[test]
fn bad_subscription_values_are_reported_on_their_keys() {
    let cases: &[(&str, &str)] = &[
        (
            r#"notification_url = "http://presence.contoso.com/n""#,
            "`subscriptions.notification_url` = \"http://presence.contoso.com/n\": Graph delivers notifications to https URLs only",
        ),
        (
            r#"lifecycle_url = "https://u:p@presence.contoso.com/l""#,
            "`subscriptions.lifecycle_url`",
        ),
        (
            r#"lifetime = "61m""#,
            "`subscriptions.lifetime` = \"61m\" is out of range: it must be from 5m to 1h",
        ),
        (
            r#"renew_before = "55m""#,
            "`subscriptions.renew_before` = \"55m\" is not shorter than `subscriptions.lifetime` (55m)",
        ),
        (
            "max_users_per_subscription = 651",
            "`subscriptions.max_users_per_subscription` = 651 is out of range: it must be from 1 to 650",
        ),
        (
            "max_users_per_subscription = 0",
            "`subscriptions.max_users_per_subscription` = 0 is out of range",
        ),
        (
            r#"listen = "8790""#,
            "`subscriptions.listen` = \"8790\" is not an IP address and port",
        ),
        (r#"listen = "127.0.0.1:8787""#, "is also `api.listen`"),
        (
            r#"max_body = "lots""#,
            "`subscriptions.max_body`: \"lots\" is not a size",
        ),
        (
            r#"max_body = "10""#,
            "`subscriptions.max_body` = \"10\" is out of range",
        ),
        (
            r#"encryption_certificate_file = "enc.pem""#,
            "`subscriptions.encryption_certificate_file` needs `subscriptions.encryption_key_file`",
        ),
        (
            r#"client_state = "hunter2""#,
            "`subscriptions.client_state`: secrets are never read from the config",
        ),
        (
            r#"lifetimee = "50m""#,
            "unknown key `lifetimee` in [subscriptions] (did you mean `lifetime`?)",
        ),
    ];
    for (line, expected) in cases {
        // Later keys override: the case's line replaces the good one.
        let mut section = ENABLED.to_string();
        if let Some((key, _)) = line.split_once(" = ") {
            section = section
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .collect::<Vec<_>>()
                .join("\n");
        }
        let text = with_subscriptions(&format!("{section}\n{line}"));
        let all = errors(&text, &[]).join("\n");
        assert!(all.contains(expected), "{line}: {all}");
        assert!(
            all.starts_with("/etc/presence-sync/config.toml:"),
            "{line}: located: {all}"
        );
    }
    let bad_accounts = with_subscriptions(&ENABLED.replace(
        r#"accounts = ["svc-presence-1@contoso.onmicrosoft.com"]"#,
        r#"accounts = ["svc", "a@contoso.com", "A@contoso.com"]"#,
    ));
    let all = errors(&bad_accounts, &[]).join("\n");
    assert!(
        all.contains("\"svc\" is not a user principal name"),
        "{all}"
    );
    assert!(all.contains("\"A@contoso.com\" is listed twice"), "{all}");
}

#[test]
fn the_environment_can_turn_subscriptions_on() {
    let text = with_subscriptions(&ENABLED.replace("enabled = true", ""));
    let config = load(&text, &[("PRESENCE_SYNC_SUBSCRIPTIONS__ENABLED", "true")]).unwrap();
    assert!(config.subscriptions.enabled);
}

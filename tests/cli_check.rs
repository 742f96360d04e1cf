//! `presence-sync check` as an admin runs it: the built binary, a config in
//! a temporary directory, a clean environment.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GUID: &str = "11111111-2222-3333-4444-555555555555";
const SHIPPED_PROFILES: [&str; 3] = ["default", "amazon-connect", "genesys"];

fn presence_sync(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presence-sync"));
    // A clean environment: no PRESENCE_SYNC_* from the caller (CI exports
    // one), no credentials directory unless a test gives one.
    command.env_clear().args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run presence-sync")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The repository's shipped mapping profiles, or `None` (with a message)
/// while they are not in this tree.
fn shipped_profiles() -> Option<Vec<(&'static str, PathBuf)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profiles: Vec<_> = SHIPPED_PROFILES
        .iter()
        .map(|name| (*name, root.join("mappings").join(format!("{name}.toml"))))
        .collect();
    if let Some((_, missing)) = profiles.iter().find(|(_, path)| !path.exists()) {
        eprintln!(
            "skipped: {} is not in this tree yet (the shipped mapping profiles come with the mapping loader)",
            missing.display()
        );
        return None;
    }
    Some(profiles)
}

/// A config in `dir` whose secrets are files beside it.
fn write_config(dir: &Path, profiles: &[(&str, PathBuf)]) -> PathBuf {
    fs::write(dir.join("client-secret"), "dummy-client-secret\n").unwrap();
    fs::write(dir.join("api-token"), "dummy-api-token\n").unwrap();
    let mut text = format!(
        r#"[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "{GUID}"
client_secret_file = "client-secret"

[api]
token_file = "api-token"

[store]
state_dir = "state"

[mappings]
default_profile = "default"
"#
    );
    for (name, file) in profiles {
        text.push_str(&format!(
            "\n[mappings.profiles.{name}]\nfile = {:?}\n",
            file.display().to_string()
        ));
    }
    let path = dir.join("presence-sync.toml");
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_valid_config_with_the_shipped_profiles_passes() {
    let Some(profiles) = shipped_profiles() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &profiles);
    let output = presence_sync(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "ok: config and 3 profiles valid\n");
    assert!(output.status.success());
}

#[test]
fn the_example_config_passes_with_systemd_credentials() {
    if shipped_profiles().is_none() {
        return;
    }
    let credentials = tempfile::tempdir().unwrap();
    fs::write(credentials.path().join("graph-client-secret"), "dummy\n").unwrap();
    fs::write(credentials.path().join("api-token"), "dummy\n").unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/presence-sync.toml");
    let output = presence_sync(
        &["check", "--config", example.to_str().unwrap()],
        &[("CREDENTIALS_DIRECTORY", credentials.path())],
    );
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "ok: config and 3 profiles valid\n");
    assert!(output.status.success());
}

/// Where the unit's config expects the shipped profiles once installed.
const INSTALLED_DEFAULT_PROFILE: &str = "/usr/share/presence-sync/mappings/default.toml";

#[test]
fn the_systemd_config_passes_with_credentials_and_installed_mappings() {
    let Some(profiles) = shipped_profiles() else {
        return;
    };
    let credentials = tempfile::tempdir().unwrap();
    fs::write(credentials.path().join("graph-client-secret"), "dummy\n").unwrap();
    fs::write(credentials.path().join("api-token"), "dummy\n").unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/presence-sync.toml");
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("file = \"{INSTALLED_DEFAULT_PROFILE}\"")),
        "the unit's config reads the installed profiles"
    );
    let (_, default_profile) = profiles
        .iter()
        .find(|(name, _)| *name == "default")
        .unwrap();
    // The profiles are installed under /usr/share on a real host; here the
    // environment override (the mechanism an admin has too) points at the
    // repository's copy, and nothing else in the file changes.
    let output = presence_sync(
        &["check", "--config", config.to_str().unwrap()],
        &[
            ("CREDENTIALS_DIRECTORY", credentials.path()),
            (
                "PRESENCE_SYNC_MAPPINGS__PROFILES__DEFAULT__FILE",
                default_profile,
            ),
        ],
    );
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "ok: config and 1 profile valid\n");
    assert!(output.status.success());

    // Without the override the installed path is what gets read.
    if !Path::new(INSTALLED_DEFAULT_PROFILE).exists() {
        let output = presence_sync(
            &["check", "--config", config.to_str().unwrap()],
            &[("CREDENTIALS_DIRECTORY", credentials.path())],
        );
        assert_eq!(output.status.code(), Some(78));
        assert!(
            stdout(&output).starts_with(INSTALLED_DEFAULT_PROFILE),
            "{}",
            stdout(&output)
        );
    }
}

#[test]
fn a_broken_config_prints_located_errors_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("presence-sync.toml");
    fs::write(
        &config,
        format!(
            "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"{GUID}\"\nclient_secret = \"x\"\n\n\
             [sync]\necho_window = \"soon\"\n\n[store]\nstate_dir = \"/tmp\"\n\n\
             [mappings]\ndefault_profile = \"defualt\"\n[mappings.profiles.default]\nfile = \"default.toml\"\n"
        ),
    )
    .unwrap();
    let output = presence_sync(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(78));
    let stdout = stdout(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    let prefix = format!("{}:", config.display());
    assert!(
        lines[0].starts_with(&format!(
            "{prefix}4:1: `graph.client_secret`: secrets are never read"
        )),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{prefix}7:1: `sync.echo_window`: `soon` is not a duration"
        )),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        format!(
            "{prefix}13:1: default profile `defualt` is not in [mappings.profiles] (did you mean `default`?)"
        )
    );
    // The mapping file is checked too, even though the config is broken.
    assert!(
        lines[3..]
            .iter()
            .any(|l| l.starts_with(&dir.path().join("default.toml").display().to_string())),
        "{stdout}"
    );
    assert!(stderr(&output).ends_with(&format!(
        "failed: {} errors in the config and its mapping files\n",
        lines.len()
    )));
}

#[test]
fn an_unreadable_secret_file_is_an_error_on_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("default", dir.path().join("default.toml"))]);
    fs::remove_file(dir.path().join("client-secret")).unwrap();
    let output = presence_sync(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(78));
    let expected = format!(
        "{}:4:1: cannot read the Graph client secret from `{}`:",
        config.display(),
        dir.path().join("client-secret").display()
    );
    assert!(
        stdout(&output).lines().any(|l| l.starts_with(&expected)),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("dummy-api-token"));
}

#[test]
fn a_missing_credential_names_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = tempfile::tempdir().unwrap();
    let config = dir.path().join("presence-sync.toml");
    fs::write(
        &config,
        format!("[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"{GUID}\"\n\n[store]\nstate_dir = \"/tmp\"\n\n[mappings.profiles.default]\nfile = \"default.toml\"\n"),
    )
    .unwrap();
    let output = presence_sync(
        &["check", "--config", config.to_str().unwrap()],
        &[("CREDENTIALS_DIRECTORY", credentials.path())],
    );
    assert_eq!(output.status.code(), Some(78));
    let stdout = stdout(&output);
    assert!(
        stdout.contains(&format!("{}:1:2: the Graph client secret: the systemd credential `graph-client-secret` is not in", config.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("the API token: the systemd credential `api-token` is not in"),
        "{stdout}"
    );
}

#[test]
fn environment_overrides_are_reported_by_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("default", dir.path().join("default.toml"))]);
    let output = presence_sync(
        &["check", "--config", config.to_str().unwrap()],
        &[("PRESENCE_SYNC_SYNC__LOOP_MAX_CHANGES", Path::new("1"))],
    );
    assert_eq!(output.status.code(), Some(78));
    assert!(
        stdout(&output).starts_with(
            "env PRESENCE_SYNC_SYNC__LOOP_MAX_CHANGES: `sync.loop_max_changes` = 1 is out of range: it must be at least 2\n"
        ),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_missing_config_file_exits_1() {
    let output = presence_sync(
        &["check", "--config", "/nonexistent/presence-sync.toml"],
        &[],
    );
    assert_eq!(output.status.code(), Some(78));
    assert!(
        stdout(&output).starts_with("/nonexistent/presence-sync.toml: cannot read the config:")
    );
}

#[test]
fn version_and_usage() {
    let output = presence_sync(&["--version"], &[]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("presence-sync {}\n", env!("CARGO_PKG_VERSION"))
    );
    let output = presence_sync(&["check"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--config <FILE>"));
}

/// A session target the user's own Teams always outranks loads, but
/// `check` says so at its line and the summary counts it.
#[test]
fn a_session_away_target_is_a_located_warning_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("away.toml");
    fs::write(
        &mapping,
        "[statuses]\nAvailable = { routable = true, teams = \"clear\" }\n\
         Lunch = { teams = \"Away/Away\" }\n",
    )
    .unwrap();
    let config = write_config(dir.path(), &[("default", mapping.clone())]);
    let output = presence_sync(&["check", "--config", config.to_str().unwrap()], &[]);
    let out = stdout(&output);
    assert!(
        out.starts_with(&format!(
            "{}:3:1: warning: `Lunch` shows `Away/Away` in Teams",
            mapping.display()
        )),
        "{out}"
    );
    assert!(out.contains("user's own Available session"), "{out}");
    assert_eq!(
        stderr(&output),
        "ok: config and 1 profile valid, 1 warning\n"
    );
    assert!(output.status.success());
}

/// A store in `dir` with two events and a cursor, closed again (not
/// cleanly: no daemon stopped it).
fn small_store(dir: &Path) -> presence_sync::store::SledStore {
    use presence_sync::events::NewEvent;
    use presence_sync::store::{Batch, MetaKey, SledStore, Store};
    let store = SledStore::open(dir).unwrap();
    let event = NewEvent {
        kind: "agent.updated".to_owned(),
        time: chrono::Utc::now(),
        agent_id: None,
        data: serde_json::Value::Null,
    };
    store
        .commit(Batch {
            events: vec![event.clone(), event],
            meta: vec![(MetaKey::Cursor("webhook".to_owned()), Some("1".to_owned()))],
            ..Batch::default()
        })
        .unwrap();
    store
}

/// `check --store`, retried while a store dropped a moment ago in this
/// process is still locked (sled lets go from background threads).
fn check_store(dir: &Path) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let output = presence_sync(&["check", "--store", &dir.display().to_string()], &[]);
        if !stderr(&output).contains("in use") || std::time::Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn check_store_reads_every_record_and_says_what_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(small_store(&state));
    let output = check_store(&state);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("passed its check"), "{text}");
    assert!(
        text.contains("0 agents") && text.contains("2 events (seqs 1 to 2)"),
        "{text}"
    );
    assert!(text.contains("not closed cleanly"), "{text}");
}

#[test]
fn check_store_refuses_politely_while_the_store_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let output = presence_sync(
        &["check", "--store", &dir.path().display().to_string()],
        &[],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(74), "{text}");
    assert!(
        text.contains("is in use") && text.contains("Stop the daemon first"),
        "{text}"
    );
    drop(store);
}

#[test]
fn check_store_refuses_what_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let output = presence_sync(
        &["check", "--store", &dir.path().display().to_string()],
        &[],
    );
    assert_eq!(output.status.code(), Some(74));
    assert!(
        stderr(&output).contains("holds no store"),
        "{}",
        stderr(&output)
    );
    fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let output = presence_sync(
        &["check", "--store", &dir.path().display().to_string()],
        &[],
    );
    assert_eq!(output.status.code(), Some(74));
    assert!(
        stderr(&output).contains("holds no presence-sync store"),
        "{}",
        stderr(&output)
    );
    // Neither --config nor --store: a bad command line.
    assert_eq!(presence_sync(&["check"], &[]).status.code(), Some(2));
}

#[test]
fn check_store_on_a_demo_state_directory_names_the_store_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("presence-sync.toml"), "# a demo's config").unwrap();
    drop(small_store(&dir.path().join("store")));
    let output = check_store(dir.path());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(74), "{text}");
    let inner = dir.path().join("store").display().to_string();
    assert!(
        text.contains(&format!("presence-sync check --store {inner}")),
        "{text}"
    );
    assert!(!text.contains("failed its check"), "{text}");
}

/// A viewer token equal to the API token would write as the API token
/// does: `check` refuses it on the key that names it, and says it of no
/// other token.
#[test]
fn a_viewer_token_equal_to_the_api_token_is_refused() {
    let Some(profiles) = shipped_profiles() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &profiles);
    let text = fs::read_to_string(&config).unwrap().replace(
        "token_file = \"api-token\"\n",
        "token_file = \"api-token\"\nviewer_token_file = \"viewer-token\"\n",
    );
    fs::write(&config, text).unwrap();
    fs::write(dir.path().join("viewer-token"), "dummy-viewer-token\n").unwrap();
    let output = presence_sync(&["check", "--config", config.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stdout(&output));

    fs::write(dir.path().join("viewer-token"), "dummy-api-token\n").unwrap();
    let output = presence_sync(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(78), "a configuration error");
    let out = stdout(&output);
    let expected = format!(
        "{}:8:1: the viewer token is the same as the API token",
        config.display()
    );
    assert!(out.lines().any(|l| l.starts_with(&expected)), "{out}");
    assert!(!out.contains("dummy-api-token"), "{out}");
}

//! `presence-sync demo`: the simulator in scripted mode, the daemon, and a
//! simulated contact center, all on loopback, with a live summary. Its state
//! directory holds a config, the credentials and a store that `run` could
//! use again.

pub mod contact_center;
pub mod contacts;
pub mod summary;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Environment};
use crate::daemon::{Daemon, DaemonError, DaemonOptions, Exit};
use crate::sim::{self, SimOptions};
use crate::stop::Stop;

use self::contact_center::ApiClient;

/// The shipped default mapping, written into the demo's state directory so
/// the demo runs from any working directory.
const DEFAULT_MAPPING: &str = include_str!("../../mappings/default.toml");

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub users: usize,
    pub state_dir: PathBuf,
    pub seed: u64,
    /// Stop by itself after this long (tests); `None` runs until Ctrl-C.
    pub run_for: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo state directory {dir}: {error}")]
    Files { dir: PathBuf, error: std::io::Error },
    #[error("the generated config is invalid: {0}")]
    Config(String),
    #[error("simulator: {0}")]
    Sim(#[from] sim::SimError),
    #[error("daemon: {0}")]
    Daemon(#[from] DaemonError),
    #[error("simulated contact center: {0}")]
    Cc(#[from] contact_center::CcError),
    #[error("the daemon stopped with failures: {0}")]
    Stopped(String),
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf, DemoError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|error| DemoError::Files {
        dir: dir.to_path_buf(),
        error,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(path)
}

/// The example queues the simulated contact center posts contacts to: the
/// shipped default mapping has both statuses they set.
const DEMO_QUEUES: &str = "# The example queues: the simulated contact center posts contacts to them.\n\
     [routing.queues.sales]\n\
     strategy = \"longest-idle\"\n\
     offer_timeout = \"20s\"\n\
     wrap_up = \"10s\"\n\
     max_wait = \"2m\"\n\
     overflow_queue = \"support\"\n\
     on_contact_status = \"On contact\"\n\
     after_contact_status = \"After contact work\"\n\n\
     [routing.queues.support]\n\
     strategy = \"skills-best\"\n\
     priority = 1\n\
     offer_timeout = \"20s\"\n\
     wrap_up = \"10s\"\n\
     on_contact_status = \"On contact\"\n\
     after_contact_status = \"After contact work\"\n";

/// Writes the demo's config, credentials and mapping; returns the config path.
pub fn prepare(
    state_dir: &Path,
    sim_url: &str,
    tenant_id: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<PathBuf, DemoError> {
    let files = |error| DemoError::Files {
        dir: state_dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(state_dir.join("mappings")).map_err(files)?;
    let dir = std::fs::canonicalize(state_dir).map_err(files)?;
    write_file(&dir, "graph-client-secret", client_secret)?;
    // The API token stays the same across runs, so a CC tool pointed at the
    // demo keeps working.
    let token_path = dir.join("api-token");
    if !token_path.exists() {
        let mut bytes = [0u8; 24];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| DemoError::Config("no randomness".into()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_file(&dir, "api-token", &token)?;
    }
    let mapping = dir.join("mappings").join("default.toml");
    if !mapping.exists() {
        write_file(&dir.join("mappings"), "default.toml", DEFAULT_MAPPING)?;
    }
    let quote = |p: &Path| toml_edit::Value::from(p.display().to_string()).to_string();
    let config = format!(
        "# Written by `presence-sync demo`: the daemon against the embedded simulator.\n\
         [graph]\n\
         tenant_id = \"{tenant_id}\"\n\
         client_id = \"{client_id}\"\n\
         client_secret_file = {}\n\
         login_base = \"{sim_url}\"\n\
         graph_base = \"{sim_url}\"\n\n\
         [api]\n\
         listen = \"127.0.0.1:0\"\n\
         token_file = {}\n\n\
         [store]\n\
         state_dir = {}\n\n\
         [mappings]\n\
         default_profile = \"default\"\n\n\
         [mappings.profiles.default]\n\
         file = {}\n\n\
         {DEMO_QUEUES}",
        quote(&dir.join("graph-client-secret")),
        quote(&token_path),
        quote(&dir.join("store")),
        quote(&mapping),
    );
    write_file(&dir, "presence-sync.toml", &config)
}

/// Runs the demo until Ctrl-C (or `run_for`).
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let sim = sim::spawn(SimOptions {
        users: options.users,
        seed: options.seed,
        scripted: true,
        // Busier than a real day, so Teams → CC shows within a minute.
        script_rate: 60.0,
        ..SimOptions::default()
    })
    .await?;
    let config_path = prepare(
        &options.state_dir,
        &sim.base_url,
        &sim.tenant_id,
        &sim.client_id,
        &sim.client_secret,
    )?;
    let config = Config::load_with(&config_path, &Environment::default())
        .map_err(|e| DemoError::Config(e.to_string()))?;
    let token = config
        .api
        .token
        .read()
        .map_err(|e| DemoError::Config(e.to_string()))?;
    let daemon = Daemon::start(
        config,
        DaemonOptions {
            directory_interval: Duration::from_secs(10),
            ..DaemonOptions::default()
        },
    )
    .await?;
    let base = format!("http://{}", daemon.api_addr);
    println!("presence-sync demo");
    println!("  simulator (Microsoft Graph): {}", sim.base_url);
    println!("  daemon API:                  {base}");
    println!("  status board:                {base}/");
    println!(
        "  sign in to the board with the API token in {}",
        options.state_dir.join("api-token").display()
    );
    println!(
        "  state directory:             {}",
        options.state_dir.display()
    );
    println!(
        "  config for `presence-sync run`: {}",
        config_path.display()
    );
    println!(
        "  {} agents, shipped default mapping (15 s debounce), contacts to the example queues `sales` and `support`. Ctrl-C stops.",
        options.users
    );
    println!();

    let api = ApiClient::new(base, token.expose().to_string())?;
    let (stop_tx, stop_rx) = Stop::new();
    let mut summary = summary::Summary::default();
    let busy = contact_center::Busy::default();
    let cc = tokio::spawn(contact_center::run(
        api.clone(),
        sim.users(),
        options.seed,
        busy.clone(),
        stop_rx.clone(),
    ));
    let (routing_tx, routing_rx) = tokio::sync::mpsc::unbounded_channel();
    let callers = tokio::spawn(contacts::run(
        api.clone(),
        options.seed,
        contacts::contact_interval(options.users),
        busy,
        routing_rx,
        stop_rx.clone(),
    ));
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(contact_center::answer_requests(
        api.clone(),
        move |event| {
            if event.kind.starts_with("routing.") {
                let _ = routing_tx.send(event.clone());
            }
            if let Some(line) = summary::describe(event) {
                let _ = lines_tx.send(line);
            }
        },
        stop_rx.clone(),
    ));
    let deadline = options.run_for.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    // One wait for Ctrl-C for the whole run, so none is lost between loops.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break,
            Some(line) = lines_rx.recv() => println!("{line}"),
            _ = tick.tick() => {
                if let Ok(text) = api.get_text("/metrics").await {
                    summary.update(&text);
                    println!("{}", summary.line());
                }
            }
        }
    }
    stop_tx.stop();
    let cc_result = cc.await;
    let callers_result = callers.await;
    let _ = follower.await;
    let exit = daemon.shutdown().await;
    sim.shutdown().await?;
    if let Ok(Err(e)) = cc_result {
        return Err(e.into());
    }
    if let Ok(Err(e)) = callers_result {
        return Err(e.into());
    }
    match exit {
        Exit::Stopped => {
            println!("stopped; state kept in {}", options.state_dir.display());
            Ok(())
        }
        Exit::Failed(e) => Err(DemoError::Stopped(e)),
    }
}

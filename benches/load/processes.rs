//! The simulator and the daemon as separate processes of the built binary,
//! their files in a temporary state directory, and what the tool reads from
//! the outside: RSS from `/proc`, the store's size on disk, the time until
//! `/healthz` and `/readyz` answer 200.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use crate::proc_kit::{Proc, SimInfo, free_port, start_sim};

/// The last lines of a child's log, for error messages.
fn log_tail(path: &Path) -> String {
    crate::proc_kit::log_tail(path, 15)
}

/// `presence-sync login --config FILE --account UPN`, its output appended
/// to `login.log` in `dir`; waits up to `within` for it to
/// succeed and answers how long it took.
pub fn login(
    bin: &Path,
    config: &Path,
    dir: &Path,
    account: &str,
    within: Duration,
) -> anyhow::Result<Duration> {
    let log = dir.join("login.log");
    let started = Instant::now();
    let mut command = Command::new(bin);
    command
        .arg("login")
        .arg("--config")
        .arg(config)
        .args(["--account", account]);
    let mut proc = Proc::spawn("login", command, &log)?;
    while started.elapsed() < within {
        if let Some(status) = proc.exited()? {
            if !status.success() {
                bail!(
                    "`presence-sync login --account {account}` failed ({status}); its log: {}\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "`presence-sync login --account {account}` did not finish within {within:?}; its log:\n{}",
        log_tail(&log)
    )
}

/// `presence-sync run --config FILE`, stdout and stderr appended to
/// `daemon.log` in the state directory (across restarts).
pub fn start_daemon(bin: &Path, files: &DaemonFiles) -> anyhow::Result<Proc> {
    let mut command = Command::new(bin);
    command.arg("run").arg("--config").arg(&files.config);
    Proc::spawn("daemon", command, &files.dir.join("daemon.log"))
}

/// The daemon's config, credentials and mapping, as `presence-sync demo`
/// writes them, with a fixed loopback port (so restarts keep it).
pub struct DaemonFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub store: PathBuf,
    pub base: String,
    pub token: String,
}

/// The shipped default mapping; `debounce` replaces its `debounce` line.
const DEFAULT_MAPPING: &str = include_str!("../../mappings/default.toml");

/// The debounce a mapping file sets (the shipped default when it sets none).
pub fn mapping_debounce(text: &str) -> anyhow::Result<Duration> {
    let table: toml::Table = toml::from_str(text).context("the mapping is not TOML")?;
    let text = table
        .get("debounce")
        .and_then(toml::Value::as_str)
        .unwrap_or("15s");
    presence_sync::duration::parse_duration(text).map_err(anyhow::Error::msg)
}

/// The mapping the load runs with: the shipped default, with another
/// debounce if asked.
pub fn mapping_text(debounce: Option<Duration>) -> anyhow::Result<String> {
    let Some(debounce) = debounce else {
        return Ok(DEFAULT_MAPPING.to_string());
    };
    let wanted = format!("debounce = \"{}ms\"", debounce.as_millis());
    let mut replaced = false;
    let lines: Vec<String> = DEFAULT_MAPPING
        .lines()
        .map(|line| {
            if !replaced && line.trim_start().starts_with("debounce") {
                replaced = true;
                wanted.clone()
            } else {
                line.to_string()
            }
        })
        .collect();
    if !replaced {
        bail!("the shipped default mapping has no `debounce` line to replace");
    }
    Ok(lines.join("\n") + "\n")
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// The `[subscriptions]` section for these service accounts: the receiver
/// on `port`, Graph's URLs on loopback http, a fresh clientState secret.
fn subscriptions_section(dir: &Path, accounts: &[String], port: u16) -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("client-state");
    write_private(&path, &secret)?;
    let list: Vec<String> = accounts
        .iter()
        .map(|a| toml_edit::Value::from(a.as_str()).to_string())
        .collect();
    Ok(format!(
        "\n[subscriptions]\n\
         enabled = true\n\
         accounts = [{}]\n\
         notification_url = \"http://127.0.0.1:{port}/graph/notifications\"\n\
         lifecycle_url = \"http://127.0.0.1:{port}/graph/lifecycle\"\n\
         listen = \"127.0.0.1:{port}\"\n\
         client_state_file = {}\n",
        list.join(", "),
        toml_edit::Value::from(path.display().to_string())
    ))
}

/// The daemon's files; with `accounts`, `[subscriptions]` is on with them.
pub fn write_daemon_files(
    dir: &Path,
    sim: &SimInfo,
    mapping: &str,
    accounts: &[String],
) -> anyhow::Result<DaemonFiles> {
    let dir = std::fs::canonicalize(dir)?;
    std::fs::create_dir_all(dir.join("mappings"))?;
    let port = free_port()?;
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&dir.join("api-token"), &token)?;
    write_private(&dir.join("graph-client-secret"), &sim.client_secret)?;
    let mapping_path = dir.join("mappings").join("default.toml");
    write_private(&mapping_path, mapping)?;
    let store = dir.join("store");
    let quote = |p: &Path| toml_edit::Value::from(p.display().to_string()).to_string();
    let config = format!(
        "# Written by the load tool (benches/load): the daemon against `presence-sync sim`.\n\
         [graph]\n\
         tenant_id = \"{}\"\n\
         client_id = \"{}\"\n\
         client_secret_file = {}\n\
         login_base = \"{}\"\n\
         graph_base = \"{}\"\n\n\
         [api]\n\
         listen = \"127.0.0.1:{port}\"\n\
         token_file = {}\n\n\
         [store]\n\
         state_dir = {}\n\n\
         [log]\n\
         level = \"warn\"\n\n\
         [mappings]\n\
         default_profile = \"default\"\n\n\
         [mappings.profiles.default]\n\
         file = {}\n",
        sim.tenant_id,
        sim.client_id,
        quote(&dir.join("graph-client-secret")),
        sim.base_url,
        sim.base_url,
        quote(&dir.join("api-token")),
        quote(&store),
        quote(&mapping_path),
    );
    let receiver_port = if accounts.is_empty() {
        None
    } else {
        Some(free_port()?)
    };
    let config = match receiver_port {
        Some(port) => config + &subscriptions_section(&dir, accounts, port)?,
        None => config,
    };
    let config_path = dir.join("presence-sync.toml");
    write_private(&config_path, &config)?;
    Ok(DaemonFiles {
        dir,
        config: config_path,
        store,
        base: format!("http://127.0.0.1:{port}"),
        token,
    })
}

/// Polls `url` every 20 ms until it answers 200; the time that took, or an
/// error after `within` (or as soon as the process has exited).
pub async fn wait_ok(
    http: &reqwest::Client,
    url: &str,
    from: Instant,
    within: Duration,
    proc: &mut Proc,
) -> anyhow::Result<Duration> {
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(2), http.get(url).send())
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|r| r.status().is_success());
        if ok {
            return Ok(from.elapsed());
        }
        proc.check_alive()?;
        if from.elapsed() > within {
            bail!(
                "{url} did not answer 200 within {within:?}; the daemon's log:\n{}",
                log_tail(proc.log())
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident set size of a process in bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of all files under `path` (apparent size), bounded in depth.
pub fn dir_size(path: &Path) -> u64 {
    fn walk(path: &Path, depth: u32) -> u64 {
        if depth > 16 {
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path(), depth + 1),
                Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    walk(path, 0)
}

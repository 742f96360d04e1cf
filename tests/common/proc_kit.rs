//! Child processes of the built binary (or of `nats-server`) for the
//! process-level tests and the benchmarks: a handle that kills its process
//! when dropped, free loopback ports, log tails, and `presence-sync sim`
//! started as a process with the credentials it prints.
//!
//! Included by path from `benches/load` and `benches/cluster` too, so it
//! needs nothing beyond what those have: std, libc, anyhow, reqwest and
//! serde_json.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process killed (SIGCONT first, in case it is stopped) when
/// dropped, on error or panic too, so no simulator or daemon is left
/// behind.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `command`, its stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Proc::adopt(name, child, log))
    }

    /// Takes charge of a process started otherwise, its output in `log`.
    pub fn adopt(name: &str, child: Child, log: &Path) -> Proc {
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status once the process has exited (it is reaped then).
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("the {} is not running", self.name);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Fails if the process has already exited (it crashed or refused to
    /// start), naming its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!(
                "the {} exited ({status}); its log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Sends `signal` to the process, if it runs.
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            bail!("the {} is not running", self.name);
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, not yet reaped (we hold its
        // `Child`), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!("kill({pid}, {signal}) failed for the {}", self.name);
        }
        Ok(())
    }

    /// SIGKILL and reap: the process is gone when this returns.
    pub fn kill(&mut self) {
        let _ = self.signal(libc::SIGCONT);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for the exit (SIGKILL after that).
    /// Returns how long the process took to stop.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Err(e) = self.signal(libc::SIGTERM) {
            self.kill();
            return Err(e);
        }
        let Some(mut child) = self.child.take() else {
            bail!("the {} is not running", self.name);
        };
        while started.elapsed() < within {
            if child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "the {} did not stop within {within:?} of SIGTERM; killed",
            self.name
        )
    }

    /// SIGSTOP, returning once the kernel shows the process stopped.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        let pid = self.pid().context("not running")?;
        if !wait_stopped(pid) {
            bail!("the {} did not stop within 2 s of SIGSTOP", self.name);
        }
        Ok(())
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (at most 2 s) until the kernel shows process `pid` stopped: kill(2)
/// returns before a SIGSTOP has taken effect.
pub fn wait_stopped(pid: u32) -> bool {
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        // "pid (comm) S ...": the state follows the command's ')'.
        if text
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The last `lines` lines of a log, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port free on loopback now (the OS picks it; it is released at once and
/// handed to the child, which binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// What `presence-sync sim` prints about itself.
#[derive(Clone, Debug, Default)]
pub struct SimInfo {
    pub base_url: String,
    pub tenant_id: String,
    /// UPNs end in it.
    pub tenant_domain: String,
    pub client_id: String,
    pub client_secret: String,
}

impl SimInfo {
    /// A Graph token for the simulator's app (client credentials).
    pub async fn token(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let body: serde_json::Value = http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.base_url, self.tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await?
            .json()
            .await?;
        Ok(body["access_token"]
            .as_str()
            .context("the simulator issued no token")?
            .to_owned())
    }

    /// The first `want` users, as (object id, UPN) in listing order,
    /// through Graph (`GET /v1.0/users`, 999 a page): the simulator is a
    /// separate process, so this is how its ids are learned. One Graph call
    /// per 999 users.
    pub async fn users(
        &self,
        http: &reqwest::Client,
        want: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let token = self.token(http).await?;
        let mut users = Vec::with_capacity(want);
        let mut next = Some(format!(
            "{}/v1.0/users?$top=999&$select=id,userPrincipalName",
            self.base_url
        ));
        for _ in 0..want / 999 + 2 {
            if users.len() >= want {
                break;
            }
            let Some(url) = next.take() else { break };
            let page: serde_json::Value = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for user in page["value"].as_array().into_iter().flatten() {
                if let (Some(id), Some(upn)) =
                    (user["id"].as_str(), user["userPrincipalName"].as_str())
                {
                    users.push((id.to_owned(), upn.to_owned()));
                }
            }
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
        if users.len() < want {
            bail!("the simulator lists {} users, not {want}", users.len());
        }
        users.truncate(want);
        Ok(users)
    }
}

/// `presence-sync sim --listen 127.0.0.1:PORT --users N --budget B` (and
/// `--auto-approve` for service accounts' sign-ins), its stderr in
/// `dir/sim.log`; waits (at most 60 s) for it to print its URL and
/// credentials.
pub fn start_sim(
    bin: &Path,
    dir: &Path,
    users: usize,
    budget: u32,
    auto_approve: bool,
) -> anyhow::Result<(Proc, SimInfo)> {
    let port = free_port()?;
    let log = dir.join("sim.log");
    let stderr = std::fs::File::create(&log)?;
    let mut command = Command::new(bin);
    command
        .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--users",
            &users.to_string(),
            "--budget",
            &budget.to_string(),
        ]);
    if auto_approve {
        command.arg("--auto-approve");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {} sim", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut proc = Proc::adopt("simulator", child, &log);
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    // Reads the simulator's stdout to its end (the child's lifetime), so the
    // pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut info = SimInfo::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while info.client_secret.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("the simulator printed no credentials within 60 s");
        }
        let Ok(line) = lines_rx.recv_timeout(left.min(Duration::from_millis(500))) else {
            proc.check_alive()?;
            continue;
        };
        let value = |key: &str| {
            line.trim()
                .strip_prefix(key)
                .map(|rest| rest.trim().to_string())
        };
        if let Some(v) = value("base URL (login and Graph host):") {
            info.base_url = v;
        } else if let Some(v) = value("tenant id:") {
            info.tenant_id = v;
        } else if let Some(v) = value("tenant domain:") {
            info.tenant_domain = v;
        } else if let Some(v) = value("client id:") {
            info.client_id = v;
        } else if let Some(v) = value("client secret:") {
            info.client_secret = v;
        }
    }
    if info.base_url.is_empty() || info.tenant_id.is_empty() || info.client_id.is_empty() {
        bail!("the simulator's banner lacked its URL, tenant or client id: {info:?}");
    }
    Ok((proc, info))
}

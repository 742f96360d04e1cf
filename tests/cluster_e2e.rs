//! The active/standby pair end to end (issue 17, docs/cluster.md): real
//! `nats-server` processes (a 3-node JetStream cluster on loopback),
//! `presence-sync sim` and `presence-sync run` nodes with `[cluster]`, as
//! processes. Without `nats-server` every test says why and passes, unless
//! `PRESENCE_SYNC_REQUIRE_NATS=1`.
//!
//! - failover: SIGKILL of the active in a burst of status reports and
//!   contacts; the standby takes over within the lease TTL plus a few
//!   seconds with every acknowledged write, sends the Teams writes owed,
//!   and a durable JetStream consumer of the events sees no gap;
//! - split brain: the active paused past its lease makes no Graph write and
//!   no API answer once resumed, and says it stepped down;
//! - a NATS server killed under load: nothing acknowledged is lost and the
//!   pair keeps answering;
//! - an empty node catches up from the snapshot and the log (whose first
//!   records have expired) and, made active, has the same agents;
//! - NATS servers that take 16 KiB a message: steps and the directory's
//!   full read come in several records, snapshots in small chunks, and
//!   the standby that takes over, then a node started from the snapshot,
//!   have every agent.
//!
//! `CLUSTER_E2E_BIN=/path/to/presence-sync` runs them against another
//! build of the binary.
//!
//! The scenarios run one at a time (a lock): each starts seven processes,
//! and a 2 s lease on a starved machine would fail over by itself.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::cluster_kit::{
    self as kit, Answer, CYCLE, ClusterSettings, Node, Sim, TENANT, call, call_pair, put_status,
    teams_for,
};
use common::nats::{NatsCluster, ServerAuth};
use futures_util::StreamExt;
use presence_sync::events::Event;
use reqwest::Method;
use serde_json::{Value, json};

/// How long anything may take on a loaded machine before a test gives up.
const PATIENCE: Duration = Duration::from_secs(60);
/// The debounce of the mapping: Teams writes wait this long.
const DEBOUNCE: &str = "1s";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary cargo built, or `CLUSTER_E2E_BIN` (another build to prove).
fn bin() -> std::path::PathBuf {
    std::env::var_os("CLUSTER_E2E_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_presence-sync").into(), Into::into)
}

/// The processes of one scenario; dropped (killed) in reverse order.
struct Pair {
    nodes: Vec<Node>,
    sim: Sim,
    nats: NatsCluster,
    settings: ClusterSettings,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Pair {
    /// NATS, the simulator with `users` users, and nodes `a` (started first:
    /// it becomes active) and `b` (a standby that has caught up).
    async fn start(
        test: &str,
        users: usize,
        tune: impl FnOnce(&mut ClusterSettings),
    ) -> anyhow::Result<Option<Pair>> {
        Pair::start_with(test, users, "", tune).await
    }

    /// [`Pair::start`] with `nats_config` added to each NATS server's config.
    async fn start_with(
        test: &str,
        users: usize,
        nats_config: &str,
        tune: impl FnOnce(&mut ClusterSettings),
    ) -> anyhow::Result<Option<Pair>> {
        let Some(nats) = NatsCluster::start_ready_with(
            test,
            3,
            ServerAuth::None,
            Duration::from_secs(60),
            nats_config,
        )
        .await
        else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("ps-cluster-e2e-")
            .tempdir()?;
        let sim = Sim::start(&bin(), dir.path(), users).await?;
        let mut settings = ClusterSettings::new(nats.urls());
        tune(&mut settings);
        let mut pair = Pair {
            nodes: Vec::new(),
            sim,
            nats,
            settings,
            http: kit::http()?,
            dir,
        };
        pair.add_node("node-a").await?;
        pair.nodes[0].wait_active(&pair.http, PATIENCE).await?;
        pair.add_node("node-b").await?;
        pair.nodes[1]
            .wait_caught_up_standby(&pair.http, PATIENCE)
            .await?;
        Ok(Some(pair))
    }

    /// Writes and starts one more node; returns its index.
    async fn add_node(&mut self, id: &str) -> anyhow::Result<usize> {
        let mut node = Node::write(
            &bin(),
            self.dir.path(),
            id,
            &self.sim,
            Some(&self.settings),
            DEBOUNCE,
        )?;
        node.start(PATIENCE).await?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    /// The index of the running node whose `/readyz` says active.
    async fn active(&self) -> Option<usize> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.proc.is_some() && node.role(&self.http).await.as_deref() == Some("active") {
                return Some(i);
            }
        }
        None
    }

    /// The lease TTL plus a few seconds: how long a takeover may take.
    fn takeover_bound(&self) -> Duration {
        self.settings.lease_ttl + Duration::from_secs(8)
    }

    /// Registers agent `ag-N` on user N for each user, on node `on`, and
    /// waits until each is linked to its Teams user.
    async fn register_agents(&self, on: usize, count: usize) -> anyhow::Result<Vec<String>> {
        let base = &self.nodes[on].base;
        let mut ids = Vec::new();
        for (n, (_, upn)) in self.sim.users.iter().take(count).enumerate() {
            let id = format!("ag-{n}");
            let answer = call(
                &self.http,
                Method::PUT,
                base,
                &format!("/v1/agents/{id}"),
                Some(&json!({"teams_user": upn, "auto_link": true})),
            )
            .await;
            ensure!(answer.is_ok(), "registering {id}: {answer:?}");
            ids.push(id);
        }
        let start = Instant::now();
        for id in &ids {
            loop {
                if let Answer::Ok(agent) = call(
                    &self.http,
                    Method::GET,
                    base,
                    &format!("/v1/agents/{id}"),
                    None,
                )
                .await
                    && agent["linked"] == true
                {
                    break;
                }
                ensure!(start.elapsed() < PATIENCE, "{id} was not linked in time");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(ids)
    }

    /// `GET /v1/agents/{id}` on node `on`.
    async fn agent(&self, on: usize, id: &str) -> anyhow::Result<Value> {
        match call(
            &self.http,
            Method::GET,
            &self.nodes[on].base,
            &format!("/v1/agents/{id}"),
            None,
        )
        .await
        {
            Answer::Ok(agent) => Ok(agent),
            other => bail!("GET /v1/agents/{id} on {}: {other:?}", self.nodes[on].id),
        }
    }

    /// Every agent on node `on`: id → (CC status, Teams user, linked).
    async fn agents(&self, on: usize) -> anyhow::Result<BTreeMap<String, Value>> {
        let Answer::Ok(body) = call(
            &self.http,
            Method::GET,
            &self.nodes[on].base,
            "/v1/agents",
            None,
        )
        .await
        else {
            bail!("GET /v1/agents on {} failed", self.nodes[on].id);
        };
        let mut agents = BTreeMap::new();
        for agent in body["agents"].as_array().into_iter().flatten() {
            let id = agent["id"].as_str().context("an agent without id")?;
            agents.insert(
                id.to_owned(),
                json!({
                    "status": agent["cc"]["status"],
                    "teams_user": agent["teams_user"],
                    "teams_user_id": agent["teams_user_id"],
                    "linked": agent["linked"],
                }),
            );
        }
        Ok(agents)
    }

    /// Waits until Teams shows, for each agent's user, what its CC status
    /// on node `on` asks for.
    async fn teams_follows(&self, on: usize, agents: &[String]) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let mut wrong = Vec::new();
            for id in agents {
                let agent = self.agent(on, id).await?;
                let status = agent["cc"]["status"].as_str().unwrap_or("").to_owned();
                let n: usize = id.trim_start_matches("ag-").parse()?;
                let shown = self.sim.presence(&self.sim.users[n].0).await?;
                if shown != teams_for(&status) {
                    wrong.push(format!("{id}: CC {status}, Teams {shown}"));
                }
            }
            if wrong.is_empty() {
                return Ok(());
            }
            if start.elapsed() > PATIENCE {
                bail!(
                    "Teams does not show what the CC statuses ask: {wrong:?}\n{}",
                    self.nodes[on].log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// A durable JetStream consumer of the events

/// Every event a durable pull consumer of `presence-sync.<T>.events.>`
/// received, in order, redeliveries included.
struct Consumer {
    seen: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Consumer {
    async fn start(urls: &[String], name: &str) -> anyhow::Result<Consumer> {
        let addrs = urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .request_timeout(Some(Duration::from_secs(5)))
                .connect(addrs),
        )
        .await
        .context("connecting to NATS timed out")??;
        let js = async_nats::jetstream::new(client);
        let stream_name = format!("PS_{TENANT}_EVENTS");
        let start = Instant::now();
        let stream = loop {
            match tokio::time::timeout(Duration::from_secs(5), js.get_stream(&stream_name)).await {
                Ok(Ok(stream)) => break stream,
                _ if start.elapsed() < PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => bail!("no stream {stream_name}: {other:?}"),
            }
        };
        let consumer = tokio::time::timeout(
            Duration::from_secs(10),
            stream.get_or_create_consumer(
                name,
                async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    filter_subject: format!("presence-sync.{TENANT}.events.>"),
                    ack_wait: Duration::from_secs(5),
                    ..Default::default()
                },
            ),
        )
        .await
        .context("creating the consumer timed out")??;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            // Reconnects the pull after any error (a NATS node killed):
            // the durable consumer keeps its place on the servers.
            loop {
                let Ok(mut messages) = consumer.messages().await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                while let Some(message) = messages.next().await {
                    let Ok(message) = message else { break };
                    if let Ok(event) = serde_json::from_slice::<Event>(&message.payload) {
                        let header_id = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Nats-Msg-Id"))
                            .map(|v| v.to_string());
                        if header_id.as_deref() != Some(event.id.as_str()) {
                            // Recorded as an event with a mismatched id:
                            // the check fails on it.
                            let mut wrong = event.clone();
                            wrong.id = format!("header {header_id:?} != {}", event.id);
                            into.lock().unwrap().push(wrong);
                        } else {
                            into.lock().unwrap().push(event);
                        }
                    }
                    let _ = message.ack().await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Consumer { seen, task })
    }

    fn events(&self) -> Vec<Event> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until, for each agent, the statuses acknowledged appear in
    /// order among its `cc.status_reported` events; then checks that the
    /// event seqs have no gap and that a seq seen twice has the same id.
    async fn check(&self, acked: &HashMap<String, Vec<String>>) -> anyhow::Result<usize> {
        let start = Instant::now();
        loop {
            let events = self.events();
            let missing = missing_statuses(&events, acked);
            if missing.is_empty() {
                check_no_gap(&events)?;
                return Ok(events.len());
            }
            if start.elapsed() > PATIENCE {
                check_no_gap(&events)?;
                bail!(
                    "the events consumer never saw these acknowledged statuses: {missing:?} \
                     ({} events seen)",
                    events.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Distinct seqs from the first seen to the last, each once with one id.
fn check_no_gap(events: &[Event]) -> anyhow::Result<()> {
    let mut by_seq: BTreeMap<u64, &str> = BTreeMap::new();
    for event in events {
        if let Some(id) = by_seq.insert(event.seq, &event.id) {
            ensure!(
                id == event.id,
                "seq {} came with two ids: {id} and {}",
                event.seq,
                event.id
            );
        }
    }
    let seqs: Vec<u64> = by_seq.keys().copied().collect();
    for pair in seqs.windows(2) {
        ensure!(
            pair[1] == pair[0] + 1,
            "the events consumer saw a gap: seq {} then {}",
            pair[0],
            pair[1]
        );
    }
    Ok(())
}

/// For each agent, the acknowledged statuses not found, in order, among
/// its `cc.status_reported` events (by seq, each seq once).
fn missing_statuses(
    events: &[Event],
    acked: &HashMap<String, Vec<String>>,
) -> Vec<(String, String)> {
    let mut by_seq: BTreeMap<u64, &Event> = BTreeMap::new();
    for event in events {
        by_seq.entry(event.seq).or_insert(event);
    }
    let mut reported: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in by_seq.values() {
        if event.kind == "cc.status_reported"
            && let (Some(agent), Some(status)) =
                (event.agent_id.as_deref(), event.data["status"].as_str())
        {
            reported.entry(agent).or_default().push(status);
        }
    }
    let mut missing = Vec::new();
    for (agent, statuses) in acked {
        let got = reported.get(agent.as_str()).cloned().unwrap_or_default();
        let mut at = 0;
        for status in statuses {
            match got[at..].iter().position(|s| s == status) {
                Some(i) => at += i + 1,
                None => {
                    missing.push((agent.clone(), status.clone()));
                    break;
                }
            }
        }
    }
    missing
}

// ---------------------------------------------------------------------------
// Driving status reports

/// What one driver of one agent did.
#[derive(Debug, Default)]
struct Track {
    /// Statuses acknowledged (2xx), in order.
    acked: Vec<String>,
    /// Statuses sent after the last acknowledged one whose outcome is
    /// unknown: the store may hold any of them.
    unknown_after: Vec<String>,
    /// Contacts acknowledged (201).
    contacts: Vec<String>,
    /// When each acknowledgement came.
    acked_at: Vec<Instant>,
    /// Answers that were neither an acknowledgement nor a refusal a
    /// takeover explains.
    errors: Vec<String>,
}

impl Track {
    fn ack(&mut self, status: &str) {
        self.acked.push(status.to_owned());
        self.unknown_after.clear();
        self.acked_at.push(Instant::now());
    }

    /// The statuses the store may end with.
    fn allowed(&self) -> Vec<String> {
        let mut allowed = self.unknown_after.clone();
        allowed.extend(self.acked.last().cloned());
        allowed
    }
}

/// Checks that the agent's status on node `on` is one the tracks allow,
/// and that every acknowledged contact is there.
async fn check_acknowledged(
    pair: &Pair,
    on: usize,
    tracks: &BTreeMap<String, Track>,
) -> anyhow::Result<()> {
    for (id, track) in tracks {
        let agent = pair.agent(on, id).await?;
        let status = agent["cc"]["status"].as_str().unwrap_or("").to_owned();
        let allowed = track.allowed();
        ensure!(
            allowed.is_empty() || allowed.contains(&status),
            "{id} is {status} on {}, but the last acknowledged status was {:?} \
             (and unacknowledged after it: {:?})",
            pair.nodes[on].id,
            track.acked.last(),
            track.unknown_after
        );
        for contact in &track.contacts {
            let answer = call(
                &pair.http,
                Method::GET,
                &pair.nodes[on].base,
                &format!("/v1/contacts/{contact}"),
                None,
            )
            .await;
            let Answer::Ok(body) = answer else {
                bail!("acknowledged contact {contact} is not on the new active: {answer:?}");
            };
            ensure!(body["queue"] == "inbound", "{contact}: {body}");
        }
    }
    Ok(())
}

fn acked_map(tracks: &BTreeMap<String, Track>) -> HashMap<String, Vec<String>> {
    tracks
        .iter()
        .map(|(id, t)| (id.clone(), t.acked.clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// Scenarios

/// Runs one scenario at a time, at most `limit` (then every process it
/// started is killed as its handles drop).
async fn bounded(
    limit: Duration,
    scenario: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    match tokio::time::timeout(limit, scenario).await {
        Ok(result) => result,
        Err(_) => bail!("the scenario took longer than {limit:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_every_acknowledged_write_and_sends_what_teams_is_owed() -> anyhow::Result<()>
{
    bounded(Duration::from_secs(300), failover()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_active_resumed_after_its_lease_makes_no_write_and_no_answer() -> anyhow::Result<()>
{
    bounded(Duration::from_secs(300), split_brain()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_under_load_loses_nothing_acknowledged() -> anyhow::Result<()> {
    bounded(Duration::from_secs(300), nats_server_killed()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_catches_up_from_the_snapshot_and_the_log_and_can_take_over()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(420), empty_standby()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_larger_than_the_log_takes_come_in_parts_and_the_standby_has_them_all()
-> anyhow::Result<()> {
    bounded(Duration::from_secs(300), small_messages()).await
}

async fn failover() -> anyhow::Result<()> {
    let Some(mut pair) = Pair::start("failover", 8, |_| {}).await? else {
        return Ok(());
    };
    let consumer = Consumer::start(&pair.nats.urls(), "e2e-failover").await?;
    let agents = pair.register_agents(0, 8).await?;

    // The standby redirects to the active, with its advertised URL.
    match put_status(&pair.http, &pair.nodes[1].base, &agents[0], "Available").await {
        Answer::Redirect(location) => ensure!(
            location == format!("{}/v1/agents/{}/status", pair.nodes[0].base, agents[0]),
            "{location}"
        ),
        other => bail!("the standby answered a status report with {other:?}"),
    }

    // A burst: one driver per agent, status reports and now and then a
    // contact, all to the active; SIGKILL of the active in the middle.
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drivers = Vec::new();
    for (n, id) in agents.iter().enumerate() {
        let http = pair.http.clone();
        let base = pair.nodes[0].base.clone();
        let id = id.clone();
        let killed = Arc::clone(&killed);
        drivers.push(tokio::spawn(async move {
            let mut track = Track::default();
            for i in 0.. {
                let status = CYCLE[(i + n) % CYCLE.len()];
                let answer = put_status(&http, &base, &id, status).await;
                match answer {
                    Answer::Ok(_) => track.ack(status),
                    other => {
                        track.unknown_after.push(status.to_owned());
                        if !killed.load(std::sync::atomic::Ordering::SeqCst) {
                            track.errors.push(format!("{status}: {other:?}"));
                        }
                        break;
                    }
                }
                if i % 4 == 3 {
                    let contact = format!("c-{id}-{i}");
                    let answer = call(
                        &http,
                        Method::POST,
                        &base,
                        "/v1/contacts",
                        Some(&json!({"queue": "inbound", "contact_id": contact})),
                    )
                    .await;
                    match answer {
                        Answer::Ok(_) => track.contacts.push(contact),
                        other => {
                            if !killed.load(std::sync::atomic::Ordering::SeqCst) {
                                track.errors.push(format!("{contact}: {other:?}"));
                            }
                            break;
                        }
                    }
                }
            }
            (id, track)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    pair.nodes[0].kill();
    let killed_at = Instant::now();
    let mut tracks = BTreeMap::new();
    for driver in drivers {
        let (id, track) = tokio::time::timeout(PATIENCE, driver).await??;
        tracks.insert(id, track);
    }
    for (id, track) in &tracks {
        ensure!(track.errors.is_empty(), "{id}: {:?}", track.errors);
    }
    let acked: usize = tracks.values().map(|t| t.acked.len()).sum();
    let contacts: usize = tracks.values().map(|t| t.contacts.len()).sum();
    ensure!(acked >= agents.len(), "the burst acknowledged only {acked}");

    // The standby takes over within the lease TTL and a few seconds.
    pair.nodes[1]
        .wait_active(&pair.http, pair.takeover_bound())
        .await?;
    let took = killed_at.elapsed();
    eprintln!(
        "failover: {acked} statuses and {contacts} contacts acknowledged; takeover in {:.2} s",
        took.as_secs_f64()
    );

    check_acknowledged(&pair, 1, &tracks).await?;
    pair.teams_follows(1, &agents).await?;
    let seen = consumer.check(&acked_map(&tracks)).await?;
    eprintln!("failover: the consumer saw {seen} events, no gap");
    Ok(())
}

async fn split_brain() -> anyhow::Result<()> {
    let Some(pair) = Pair::start("split brain", 4, |_| {}).await? else {
        return Ok(());
    };
    let agents = pair.register_agents(0, 4).await?;
    for id in &agents {
        ensure!(
            put_status(&pair.http, &pair.nodes[0].base, id, "Available")
                .await
                .is_ok()
        );
    }
    pair.teams_follows(0, &agents).await?;

    // Lunch is acknowledged, then the active stops before its debounce
    // lets it write to Teams: those writes are owed.
    for id in &agents {
        let answer = put_status(&pair.http, &pair.nodes[0].base, id, "Lunch").await;
        ensure!(answer.is_ok(), "{answer:?}");
    }
    pair.nodes[0].proc()?.pause()?;
    let paused_at = Instant::now();
    // The scenario needs writes still owed by the paused node: users Teams
    // does not show at Lunch yet.
    let mut owed = 0;
    for (n, _) in agents.iter().enumerate() {
        if pair.sim.presence(&pair.sim.users[n].0).await? != teams_for("Lunch") {
            owed += 1;
        }
    }
    ensure!(
        owed > 0,
        "the active wrote every Lunch to Teams before it was paused"
    );

    // The standby takes over and sends them.
    pair.nodes[1]
        .wait_active(&pair.http, pair.takeover_bound())
        .await?;
    eprintln!(
        "split brain: takeover {:.2} s after SIGSTOP",
        paused_at.elapsed().as_secs_f64()
    );
    pair.teams_follows(1, &agents).await?;
    // Then a status the old active never saw.
    for id in &agents {
        let answer = put_status(&pair.http, &pair.nodes[1].base, id, "On contact").await;
        ensure!(answer.is_ok(), "{answer:?}");
    }
    pair.teams_follows(1, &agents).await?;
    let writes = pair
        .sim
        .writes_settled(Duration::from_secs(2), PATIENCE)
        .await?;

    // The old active wakes up with Lunch writes still pending.
    pair.nodes[0].proc()?.resume()?;
    let first = put_status(&pair.http, &pair.nodes[0].base, &agents[0], "Available").await;
    match &first {
        // Refused by its gate, or no listener while it turns into a standby.
        Answer::Refused(503, _) | Answer::Unreachable(_) => {}
        Answer::Redirect(location) => ensure!(
            location.starts_with(&pair.nodes[1].base),
            "redirected to {location}"
        ),
        other => bail!("the deposed active answered {other:?}"),
    }
    let cluster = pair.nodes[0]
        .wait_cluster(&pair.http, "stepped down", PATIENCE, |c| {
            c["role"] != "active"
                && c["step_downs"].as_u64().unwrap_or(0) >= 1
                && c["last_step_down"].as_str().is_some_and(|s| !s.is_empty())
        })
        .await?;
    eprintln!(
        "split brain: the old active says {}",
        cluster["last_step_down"]
    );

    // Long enough for its debounce and lease to have fired twice over.
    tokio::time::sleep(2 * pair.settings.lease_ttl + Duration::from_secs(3)).await;
    let after = pair.sim.presence_writes().await?;
    ensure!(
        after == writes,
        "Graph writes went from {writes} to {after} after the old active resumed"
    );
    for (n, _) in agents.iter().enumerate() {
        let shown = pair.sim.presence(&pair.sim.users[n].0).await?;
        ensure!(shown == teams_for("On contact"), "user {n} shows {shown}");
    }
    // It still answers no API request, and the successor is still active.
    let again = put_status(&pair.http, &pair.nodes[0].base, &agents[0], "Available").await;
    ensure!(
        !again.is_ok(),
        "the deposed active acknowledged a status: {again:?}"
    );
    ensure!(pair.nodes[1].role(&pair.http).await.as_deref() == Some("active"));
    Ok(())
}

async fn nats_server_killed() -> anyhow::Result<()> {
    let Some(mut pair) = Pair::start("nats node killed", 6, |_| {}).await? else {
        return Ok(());
    };
    let consumer = Consumer::start(&pair.nats.urls(), "e2e-nats-kill").await?;
    let agents = pair.register_agents(0, 6).await?;
    let bases = pair.bases();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drivers = Vec::new();
    for (n, id) in agents.iter().enumerate() {
        let http = pair.http.clone();
        let bases = bases.clone();
        let id = id.clone();
        let stop = Arc::clone(&stop);
        drivers.push(tokio::spawn(async move {
            let mut track = Track::default();
            let mut current = 0;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let status = CYCLE[(i + n) % CYCLE.len()];
                i += 1;
                let answer = call_pair(
                    &http,
                    &bases,
                    &mut current,
                    Method::PUT,
                    &format!("/v1/agents/{id}/status"),
                    Some(&json!({"status": status})),
                    PATIENCE,
                )
                .await;
                match answer {
                    Answer::Ok(_) => track.ack(status),
                    other => {
                        track.unknown_after.push(status.to_owned());
                        track.errors.push(format!("{status}: {other:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (id, track)
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stream = format!("PS_{TENANT}_LOG");
    let leader = pair
        .nats
        .stream_leader(&stream)
        .await
        .and_then(|name| pair.nats.index_of(&name))
        .unwrap_or(0);
    eprintln!(
        "nats node killed: killing {} (the leader of {stream})",
        pair.nats.name(leader)
    );
    pair.nats.kill(leader);
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tracks = BTreeMap::new();
    for driver in drivers {
        let (id, track) = tokio::time::timeout(2 * PATIENCE, driver).await??;
        tracks.insert(id, track);
    }
    for (id, track) in &tracks {
        ensure!(track.errors.is_empty(), "{id}: {:?}", track.errors);
    }
    let mut times: Vec<Instant> = tracks
        .values()
        .flat_map(|t| t.acked_at.iter().copied())
        .collect();
    times.sort();
    let after_kill = times.iter().filter(|t| **t > killed_at).count();
    let stall = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "nats node killed: {} acknowledged, {after_kill} after the kill, longest stall {:.2} s",
        times.len(),
        stall.as_secs_f64()
    );
    ensure!(after_kill > 0, "nothing was acknowledged after the kill");
    // JetStream elects a new stream leader within a few seconds; a step
    // down on a publish not acknowledged adds at most a takeover.
    let bound = pair.takeover_bound() + Duration::from_secs(10);
    ensure!(
        stall < bound,
        "the pair stalled {stall:?} (bound {bound:?})"
    );

    let active = pair.active().await.context("no node is active")?;
    check_acknowledged(&pair, active, &tracks).await?;
    consumer.check(&acked_map(&tracks)).await?;
    pair.teams_follows(active, &agents).await?;
    Ok(())
}

async fn empty_standby() -> anyhow::Result<()> {
    // The shortest history the config takes, so that the log's first
    // records expire during the test and the log alone cannot rebuild
    // the store.
    let Some(mut pair) = Pair::start("empty standby", 4, |s| s.history = "1m").await? else {
        return Ok(());
    };
    let agents = pair.register_agents(0, 4).await?;
    let js = jetstream(&pair.nats).await?;

    // A trickle of status reports while the first records age out.
    let start = Instant::now();
    let mut i = 0;
    let mut current = 0;
    let bases = pair.bases();
    let (first, last, snapshot) = loop {
        let id = &agents[i % agents.len()];
        let status = CYCLE[(i / agents.len()) % CYCLE.len()];
        i += 1;
        let answer = call_pair(
            &pair.http,
            &bases,
            &mut current,
            Method::PUT,
            &format!("/v1/agents/{id}/status"),
            Some(&json!({"status": status})),
            PATIENCE,
        )
        .await;
        ensure!(answer.is_ok(), "{id} {status}: {answer:?}");
        let (first, last) = log_bounds(&js).await?;
        let snapshot = snapshot_position(&js).await?;
        if first > 1 && snapshot.is_some_and(|p| p + 1 >= first && p < last) {
            break (first, last, snapshot);
        }
        ensure!(
            start.elapsed() < Duration::from_secs(150),
            "the log kept its first record (first {first}, last {last}, snapshot at {snapshot:?})"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    eprintln!(
        "empty standby: the log holds {first}..={last}, the snapshot is at {snapshot:?} \
         after {:.0} s",
        start.elapsed().as_secs_f64()
    );
    let active = pair.active().await.context("no active node")?;
    let before = pair.agents(active).await?;
    ensure!(before.len() == agents.len(), "{before:?}");

    // A third node with an empty state directory.
    let c = pair.add_node("node-c").await?;
    let caught_up = pair.nodes[c]
        .wait_caught_up_standby(&pair.http, PATIENCE)
        .await?;
    let (_, last_now) = log_bounds(&js).await?;
    ensure!(
        caught_up["position"].as_u64().unwrap_or(0) >= last,
        "node-c stopped at {} (log last {last_now}): {caught_up}",
        caught_up["position"]
    );

    // The others die; it takes over with the same agents.
    for node in 0..c {
        pair.nodes[node].kill();
    }
    let killed_at = Instant::now();
    pair.nodes[c]
        .wait_active(&pair.http, pair.takeover_bound())
        .await?;
    eprintln!(
        "empty standby: node-c active {:.2} s after the others died",
        killed_at.elapsed().as_secs_f64()
    );
    let after = pair.agents(c).await?;
    ensure!(
        after == before,
        "the agents differ:\nbefore {before:#?}\nafter {after:#?}"
    );
    Ok(())
}

async fn small_messages() -> anyhow::Result<()> {
    // 16 KiB a message: a commit log record takes at most 12 KiB, less
    // than the directory's full read of 150 users or a step of a few
    // agents registered at once.
    const USERS: usize = 150;
    const AGENTS: usize = 120;
    let Some(mut pair) =
        Pair::start_with("small messages", USERS, "max_payload: 16384\n", |_| {}).await?
    else {
        return Ok(());
    };
    let active = pair.active().await.context("no active node")?;
    let base = pair.nodes[active].base.clone();
    // Every registration at once, so that steps take many.
    let registrations = pair
        .sim
        .users
        .iter()
        .take(AGENTS)
        .enumerate()
        .map(|(n, (_, upn))| {
            let (http, base) = (pair.http.clone(), base.clone());
            let body = json!({"teams_user": upn, "auto_link": true, "skills": {"support": 3, "billing": 2}});
            async move {
                let id = format!("ag-{n}");
                let path = format!("/v1/agents/{id}");
                (id, call(&http, Method::PUT, &base, &path, Some(&body)).await)
            }
        });
    for (id, answer) in futures_util::future::join_all(registrations).await {
        ensure!(answer.is_ok(), "registering {id}: {answer:?}");
    }
    let before = pair.agents(active).await?;
    ensure!(before.len() == AGENTS, "{} agents", before.len());

    // The log holds steps in parts and a directory read in stages.
    let js = jetstream(&pair.nats).await?;
    let (first, last) = log_bounds(&js).await?;
    let stream = js.get_stream(format!("PS_{TENANT}_LOG")).await?;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for seq in first..=last {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.get_raw_message(seq))
            .await
            .context("reading the log timed out")??;
        let record: Value = serde_json::from_slice(&message.payload)?;
        *kinds
            .entry(record["type"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    eprintln!("small messages: the log holds {kinds:?}");
    for kind in ["step_part", "directory_stage", "staged_directory"] {
        ensure!(kinds.contains_key(kind), "no {kind} record: {kinds:?}");
    }

    // A snapshot of it all, in chunks the servers take, and a third node
    // started from it.
    let waiting = Instant::now();
    while snapshot_position(&js).await?.is_none_or(|p| p < last) {
        ensure!(
            waiting.elapsed() < PATIENCE,
            "no snapshot at or after position {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let c = pair.add_node("node-c").await?;
    pair.nodes[c]
        .wait_caught_up_standby(&pair.http, PATIENCE)
        .await?;

    // The standby applied the log: it takes over with the same agents;
    // then the node started from the snapshot does.
    let standby = 1 - active;
    pair.nodes[standby]
        .wait_caught_up_standby(&pair.http, PATIENCE)
        .await?;
    for (dies, takes_over) in [(active, standby), (standby, c)] {
        pair.nodes[dies].kill();
        pair.nodes[takes_over]
            .wait_active(&pair.http, pair.takeover_bound())
            .await?;
        let after = pair.agents(takes_over).await?;
        ensure!(
            after == before,
            "the agents on {} differ:\nbefore {before:#?}\nafter {after:#?}",
            pair.nodes[takes_over].id
        );
    }
    Ok(())
}

/// A JetStream client of the pair's NATS servers, to look at what the
/// nodes keep there.
async fn jetstream(nats: &NatsCluster) -> anyhow::Result<async_nats::jetstream::Context> {
    let addrs = nats
        .urls()
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(addrs))
        .await
        .context("connecting to NATS timed out")??;
    Ok(async_nats::jetstream::new(client))
}

/// The log stream's (first, last) sequence.
async fn log_bounds(js: &async_nats::jetstream::Context) -> anyhow::Result<(u64, u64)> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        js.get_stream(format!("PS_{TENANT}_LOG")),
    )
    .await
    .context("timed out")??;
    let info = tokio::time::timeout(Duration::from_secs(5), stream.info())
        .await
        .context("timed out")??;
    Ok((info.state.first_sequence, info.state.last_sequence))
}

/// The position of the latest snapshot in the object store, if any.
async fn snapshot_position(js: &async_nats::jetstream::Context) -> anyhow::Result<Option<u64>> {
    let Ok(Ok(store)) = tokio::time::timeout(
        Duration::from_secs(5),
        js.get_object_store(format!("PS_{TENANT}_SNAP")),
    )
    .await
    else {
        return Ok(None);
    };
    let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(5), store.info("latest")).await
    else {
        return Ok(None);
    };
    let meta: Value = serde_json::from_str(info.description.as_deref().unwrap_or("null"))?;
    Ok(meta["position"].as_u64())
}

#[test]
fn the_gap_and_order_checks_find_what_they_must() {
    let event = |seq: u64, id: &str, agent: &str, status: &str| Event {
        seq,
        id: id.to_owned(),
        kind: "cc.status_reported".into(),
        time: chrono::Utc::now(),
        agent_id: Some(agent.to_owned()),
        data: json!({"status": status}),
    };
    let events = vec![
        event(1, "s-1", "a", "Lunch"),
        event(2, "s-2", "a", "Available"),
        event(2, "s-2", "a", "Available"),
        event(3, "s-3", "b", "Lunch"),
    ];
    assert!(check_no_gap(&events).is_ok());
    let mut gap = events.clone();
    gap.remove(3);
    gap.push(event(4, "s-4", "b", "Lunch"));
    assert!(check_no_gap(&gap).is_err());
    let mut twice = events.clone();
    twice.push(event(3, "other-3", "b", "Lunch"));
    assert!(check_no_gap(&twice).is_err());

    let acked: HashMap<String, Vec<String>> = [
        (
            "a".to_owned(),
            vec!["Lunch".to_owned(), "Available".to_owned()],
        ),
        ("b".to_owned(), vec!["Lunch".to_owned()]),
    ]
    .into();
    assert!(missing_statuses(&events, &acked).is_empty());
    let out_of_order: HashMap<String, Vec<String>> = [(
        "a".to_owned(),
        vec!["Available".to_owned(), "Lunch".to_owned()],
    )]
    .into();
    assert_eq!(
        missing_statuses(&events, &out_of_order),
        vec![("a".to_owned(), "Lunch".to_owned())]
    );
}

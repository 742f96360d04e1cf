//! The store survives being killed mid-write: every batch a commit
//! acknowledged is there after a SIGKILL, whole, and nothing else is.
//!
//! The test binary runs itself as the writer (`crash_writer`, active only
//! when `PRESENCE_SYNC_CRASH_WRITER_DIR` is set), which commits batches in a
//! tight loop and prints `acked <batch> <last seq>` after each commit
//! returns. The parent kills it with SIGKILL after a random number of acks,
//! reopens the store and checks it, then starts the next round on the same
//! directory. Every fifth round kills the writer at its first line of
//! output, while it is still opening (and recovering) the store.
//!
//! The check closes the store cleanly (the clean-shutdown marker), so each
//! writer opens it with the cheap checks only; a writer killed after it
//! committed leaves no marker, and the reopen must run the deep check.
//!
//! `PRESENCE_SYNC_CRASH_ROUNDS` sets the number of rounds (20 by default,
//! what CI runs); the longer run is
//! `PRESENCE_SYNC_CRASH_ROUNDS=100 cargo test --test store_crash`.
//! `PRESENCE_SYNC_CRASH_SEED` picks another sequence of kill points.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use chrono::DateTime;
use presence_sync::events::{NewEvent, kind};
use presence_sync::routing::AgentRouting;
use presence_sync::store::{
    AgentRecord, Batch, DirectoryBatch, MetaKey, OpenCheck, OutboxEntry, OutboxWrite, SledStore,
    Store, StoredUser, WriteAction,
};
use presence_sync::sync::AgentSnapshot;
use presence_sync::time::Timestamp;

const WRITER_DIR: &str = "PRESENCE_SYNC_CRASH_WRITER_DIR";
const ROUNDS: &str = "PRESENCE_SYNC_CRASH_ROUNDS";
const SEED: &str = "PRESENCE_SYNC_CRASH_SEED";
const WRITER_TEST: &str = "crash_writer";
const DIRECTORY_WRITER_DIR: &str = "PRESENCE_SYNC_CRASH_DIRECTORY_WRITER_DIR";
const DIRECTORY_WRITER_FROM: &str = "PRESENCE_SYNC_CRASH_DIRECTORY_WRITER_FROM";
const DIRECTORY_WRITER_TEST: &str = "crash_directory_writer";
const STAGED_WRITER_DIR: &str = "PRESENCE_SYNC_CRASH_STAGED_WRITER_DIR";
const STAGED_WRITER_TEST: &str = "crash_staged_directory_writer";
/// Rounds of the directory's crash test (each a few large replaces).
const DIRECTORY_ROUNDS: usize = 6;
const DEFAULT_ROUNDS: usize = 20;
const DEFAULT_SEED: u64 = 0x5eed_c0ff_ee15_600d;

/// The agents the batches cycle through; each batch updates three of them.
const AGENTS: u64 = 7;
/// The writer's own progress, committed with every batch.
const PROGRESS: &str = "crash-test";
/// How long a writer may stay silent before the test gives up on it.
const SILENCE_LIMIT: Duration = Duration::from_secs(120);
/// A writer whose parent vanished stops by itself after this many batches.
const WRITER_CAP: u64 = 1_000_000;

fn agent_id(index: u64) -> String {
    format!("agent-{index}")
}

/// The agents batch `n` writes.
fn agents_of(n: u64) -> [u64; 3] {
    [n % AGENTS, (n + 1) % AGENTS, (n + 2) % AGENTS]
}

/// The agent whose outbox entry batch `n` writes.
fn outbox_of(n: u64) -> u64 {
    n % AGENTS
}

fn events_of(n: u64) -> u64 {
    1 + n % 3
}

/// The sequence number of the last event of batch `n`.
fn seq_after(n: u64) -> u64 {
    (1..=n).map(events_of).sum()
}

/// Batch `n` as an engine snapshot carries it (its keep-alive time).
fn snapshot(n: u64) -> AgentSnapshot {
    AgentSnapshot {
        keepalive_at: Some(Timestamp::from_micros(n)),
        ..AgentSnapshot::default()
    }
}

fn counter(snapshot: Option<&AgentSnapshot>) -> Option<u64> {
    Some(snapshot?.keepalive_at?.as_micros())
}

fn writer_batch(n: u64) -> Batch {
    let time = DateTime::from_timestamp(1_700_000_000 + n as i64, 0).unwrap_or_default();
    let agents = agents_of(n)
        .iter()
        .map(|&index| {
            let id = agent_id(index);
            let record = AgentRecord {
                id: id.clone(),
                teams_user: format!("{id}@contoso.example"),
                teams_user_id: None,
                upn: None,
                display_name: None,
                groups: Vec::new(),
                skills: BTreeMap::new(),
                phone: None,
                profile: None,
                cc_status: None,
                sync: Some(Box::new(snapshot(n))),
                queues: Vec::new(),
                capacity: None,
                routing: Some(Box::new(AgentRouting {
                    busy_today: n,
                    ..AgentRouting::default()
                })),
                updated_at: time,
            };
            (id, Some(record))
        })
        .collect();
    let outbox_agent = agent_id(outbox_of(n));
    Batch {
        agents,
        contacts: Vec::new(),
        outbox: vec![(
            outbox_agent.clone(),
            Some(OutboxEntry {
                agent_id: outbox_agent,
                write: OutboxWrite {
                    write_id: n,
                    action: WriteAction::ClearSession,
                    presence: None,
                    expiry_seconds: None,
                },
                decided_at: time,
            }),
        )],
        events: (0..events_of(n))
            .map(|index| NewEvent {
                kind: kind::AGENT_UPDATED.to_owned(),
                time,
                agent_id: None,
                data: serde_json::json!({ "batch": n, "index": index }),
            })
            .collect(),
        meta: vec![(MetaKey::Cursor(PROGRESS.to_owned()), Some(n.to_string()))],
    }
}

/// The writer: a no-op unless the parent test started it.
#[test]
fn crash_writer() {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return;
    };
    let store = SledStore::open(Path::new(&dir)).expect("the writer opens the store");
    let done = durable_batch(&store);
    let mut stdout = std::io::stdout();
    for n in done + 1..=done + WRITER_CAP {
        let events = store.commit(writer_batch(n)).expect("commit");
        let last_seq = events.last().map_or(0, |e| e.seq);
        // A failed write means the parent is gone: stop.
        if writeln!(stdout, "acked {n} {last_seq}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}

fn durable_batch(store: &SledStore) -> u64 {
    store
        .meta(&MetaKey::Cursor(PROGRESS.to_owned()))
        .expect("meta")
        .map_or(0, |n| n.parse().expect("a batch number"))
}

/// SplitMix64: the kill points, reproducible from the seed.
struct KillPoints(u64);

impl KillPoints {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Acks to wait for before the kill: 50 to 500.
    fn acks(&mut self) -> u64 {
        50 + self.next() % 451
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// The last ack the parent saw: batch number and its last event's seq.
#[derive(Clone, Copy, Debug, Default)]
struct Ack {
    batch: u64,
    seq: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    // libtest may print the test's name on the same line as the first ack.
    let (_, rest) = line.split_once("acked ")?;
    let (batch, seq) = rest.trim().split_once(' ')?;
    Some(Ack {
        batch: batch.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    if std::env::var_os(WRITER_DIR).is_some() {
        return;
    }
    let rounds: usize = env_number(ROUNDS, DEFAULT_ROUNDS);
    let seed: u64 = env_number(SEED, DEFAULT_SEED);
    let mut kill_points = KillPoints(seed);
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("store");
    // The writer's open leaves a scratch copy behind when killed during its
    // check; keep those in the test's own directory.
    let scratch = state.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let exe = std::env::current_exe().unwrap();

    let mut acked = Ack::default();
    // The last batch known to be on disk: acknowledged, or found at a check.
    let mut known = 0;
    let mut store_id = None;
    for round in 1..=rounds {
        let kill_after = if round % 5 == 0 {
            0
        } else {
            kill_points.acks()
        };
        let mut child = Command::new(&exe)
            .args(["--exact", WRITER_TEST, "--nocapture", "--test-threads=1"])
            .env(WRITER_DIR, &dir)
            .env("TMPDIR", &scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });

        let mut acks = 0;
        let mut killed = false;
        loop {
            match lines.recv_timeout(SILENCE_LIMIT) {
                Ok(line) => {
                    let line = line.unwrap();
                    if let Some(ack) = parse_ack(&line) {
                        assert_eq!(ack.batch, known + 1, "round {round}: acks skip");
                        known = ack.batch;
                        acked = ack;
                        acks += 1;
                    }
                    if !killed && acks >= kill_after {
                        child.kill().unwrap();
                        killed = true;
                    }
                }
                // The pipe closed: the writer is gone, and every ack it
                // printed has been read.
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("round {round}: the writer printed nothing for {SILENCE_LIMIT:?}");
                }
            }
        }
        let status = child.wait().unwrap();
        let stderr = stderr.join().unwrap();
        assert!(
            killed,
            "round {round}: the writer stopped by itself ({status}):\n{stderr}"
        );

        let (id, durable) = check_after_crash(&dir, acked, known, round, acks > 0);
        known = durable;
        let first_id = store_id.get_or_insert_with(|| id.clone());
        assert_eq!(&id, first_id, "round {round}: the store id changed");
        eprintln!(
            "round {round}: killed after {acks} acks (batch {}, seq {}); store checked",
            acked.batch, acked.seq
        );
    }
}

/// Reopens the store after a kill and checks it holds exactly the batches
/// up to the last one known (`known`: acknowledged, or found at the last
/// check) or the one after it, each one whole. Returns the store id and the
/// last batch on disk.
fn check_after_crash(
    dir: &Path,
    acked: Ack,
    known: u64,
    round: usize,
    writer_committed: bool,
) -> (String, u64) {
    let store = SledStore::open(dir)
        .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL: {e}"));
    // A writer that committed had taken the marker away: the kill leads to
    // the deep check. (One killed while opening may not have reached it.)
    if writer_committed {
        assert_eq!(
            store.opened(),
            OpenCheck::Deep,
            "round {round}: a store killed mid-write must be checked key by key"
        );
    }
    let durable = durable_batch(&store);
    // The writer prints an ack after each commit and commits the next batch
    // only after printing: at most one batch can be on disk unacknowledged.
    assert!(
        durable == known || durable == known + 1,
        "round {round}: batch {durable} is the last on disk, but {known} was acknowledged or seen"
    );

    let loaded = store.load().unwrap();
    assert_eq!(
        loaded.last_seq,
        seq_after(durable),
        "round {round}: last seq"
    );
    assert!(
        loaded.last_seq >= acked.seq,
        "round {round}: acked seq lost"
    );

    let agents: BTreeMap<&str, Option<u64>> = loaded
        .agents
        .iter()
        .map(|a| (a.id.as_str(), counter(a.sync.as_deref())))
        .collect();
    let outbox: BTreeMap<&str, Option<u64>> = loaded
        .outbox
        .iter()
        .map(|o| (o.agent_id.as_str(), Some(o.write.write_id)))
        .collect();
    for index in 0..AGENTS {
        let id = agent_id(index);
        let last_write = (1..=durable).rev().find(|&n| agents_of(n).contains(&index));
        assert_eq!(
            agents.get(id.as_str()).copied().flatten(),
            last_write,
            "round {round}: {id}'s record"
        );
        let last_outbox = (1..=durable).rev().find(|&n| outbox_of(n) == index);
        assert_eq!(
            outbox.get(id.as_str()).copied().flatten(),
            last_outbox,
            "round {round}: {id}'s outbox entry"
        );
    }

    let events = store.events_after(0, usize::MAX).unwrap();
    let expected: Vec<(u64, u64)> = (1..=durable)
        .flat_map(|n| (0..events_of(n)).map(move |index| (n, index)))
        .collect();
    assert_eq!(events.len(), expected.len(), "round {round}: event count");
    for ((seq, event), (n, index)) in (1..).zip(&events).zip(expected) {
        assert_eq!(event.seq, seq, "round {round}: seqs must be contiguous");
        assert_eq!(event.id, format!("{}-{seq}", store.store_id()));
        assert_eq!(
            event.data,
            serde_json::json!({ "batch": n, "index": index }),
            "round {round}: event {seq}"
        );
    }
    assert_eq!(store.first_seq().unwrap(), events.first().map(|e| e.seq));
    // Closed cleanly: the next writer opens it with the cheap checks.
    store.mark_clean_shutdown().unwrap();
    (store.store_id().to_owned(), durable)
}

/// The users of directory generation `g`: about 4,000 to 5,000 (more than
/// the sled engine writes in one part), a third of them new against `g - 1`
/// and a third of `g - 1`'s gone, each naming its generation.
fn directory_users(g: u64) -> Vec<StoredUser> {
    let from = g * 1_500;
    let count = 4_000 + (g % 3) * 500;
    (from..from + count)
        .map(|i| StoredUser {
            id: format!("user-{i:08}"),
            upn: Some(format!("user{i}@generation-{g}.example")),
            mail: None,
            business_phones: vec![],
            mobile_phone: None,
            teams: Some(true),
            teams_phone: None,
        })
        .collect()
}

/// Whether this process is one of the writers the tests start.
fn is_a_writer() -> bool {
    [WRITER_DIR, DIRECTORY_WRITER_DIR, STAGED_WRITER_DIR]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

fn directory_link(g: u64) -> String {
    format!("https://graph.example/delta/generation-{g}")
}

/// The directory writer: a no-op unless the parent test started it.
/// Replaces the whole directory with generation after generation.
#[test]
fn crash_directory_writer() {
    let Some(dir) = std::env::var_os(DIRECTORY_WRITER_DIR) else {
        return;
    };
    let from: u64 = env_number(DIRECTORY_WRITER_FROM, 1);
    let store = SledStore::open(Path::new(&dir)).expect("the writer opens the store");
    let mut stdout = std::io::stdout();
    for g in from..from + 1_000 {
        store
            .commit_directory(DirectoryBatch {
                replace: true,
                upserts: directory_users(g),
                removes: vec![],
                delta_link: Some(directory_link(g)),
            })
            .expect("commit_directory");
        if writeln!(stdout, "dir-acked {g}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
    }
}

/// This test binary started again as the writer `test`, with `env`, its
/// temp files in `state`'s `tmp` and its stdout piped.
fn start_writer(test: &str, env: &[(&str, &std::ffi::OsStr)], state: &Path) -> std::process::Child {
    let scratch = state.join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .env("TMPDIR", &scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for one to three replaces of `writer` acknowledged (lines
/// `<ack>N`, N following `acked`), then kills it at a random moment of the
/// next (a replace takes tenths of a second here). Returns the last replace
/// acknowledged, counting acks printed before the kill landed.
fn kill_after_a_few_replaces(
    mut writer: std::process::Child,
    ack: &str,
    mut acked: u64,
    kill_points: &mut KillPoints,
    round: usize,
) -> u64 {
    let stdout = writer.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let wait_for = 1 + kill_points.next() % 3;
    let mut acks = 0;
    while acks < wait_for {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("round {round}: the writer stopped"))
            .unwrap();
        if let Some((_, g)) = line.split_once(ack) {
            let g: u64 = g.trim().parse().unwrap();
            assert_eq!(g, acked + 1, "round {round}: acks skip");
            acked = g;
            acks += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(kill_points.next() % 400));
    writer.kill().unwrap();
    for line in lines.map_while(Result::ok) {
        if let Some((_, g)) = line.split_once(ack) {
            acked = g.trim().parse().unwrap();
        }
    }
    writer.wait().unwrap();
    acked
}

/// A large directory replace is written in parts; killed at any point, the
/// store shows either a whole generation (the last acknowledged or the one
/// after it) or, killed between the parts, no directory at all: never a
/// mix of two, and never one older than acknowledged.
#[test]
fn a_directory_replace_killed_between_its_parts_shows_whole_or_not_at_all() {
    if is_a_writer() {
        return;
    }
    let seed: u64 = env_number(SEED, DEFAULT_SEED);
    let mut kill_points = KillPoints(seed ^ 0xd1ec_7041);
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("store");
    // The last generation acknowledged, and the last one seen whole.
    let mut acked = 0u64;
    let mut seen_none = 0;
    for round in 1..=DIRECTORY_ROUNDS {
        let from = (acked + 1).to_string();
        let writer = start_writer(
            DIRECTORY_WRITER_TEST,
            &[
                (DIRECTORY_WRITER_DIR, dir.as_os_str()),
                (DIRECTORY_WRITER_FROM, from.as_ref()),
            ],
            state.path(),
        );
        acked = kill_after_a_few_replaces(writer, "dir-acked ", acked, &mut kill_points, round);

        let store = SledStore::open(&dir)
            .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL: {e}"));
        match store.directory().unwrap() {
            None => seen_none += 1,
            Some(directory) => {
                let link = directory.delta_link.clone().unwrap_or_default();
                let g = if link == directory_link(acked) {
                    acked
                } else if link == directory_link(acked + 1) {
                    acked + 1
                } else {
                    panic!("round {round}: acknowledged {acked}, stored link {link:?}")
                };
                assert_eq!(
                    directory.users,
                    directory_users(g),
                    "round {round}: generation {g} is not stored whole"
                );
                acked = g;
            }
        }
        store.mark_clean_shutdown().unwrap();
        eprintln!("round {round}: generation {acked} acknowledged; stored whole or not at all");
    }
    eprintln!("{seen_none} of {DIRECTORY_ROUNDS} kills landed between a replace's parts");
}

/// Stage records a staged replace takes before the record that ends it: a
/// cluster's replace of one generation is positions `(g - 1) * 4 + 1` to
/// `g * 4`, the last one ending it.
const STAGES: u64 = 3;
const RECORDS_PER_REPLACE: u64 = STAGES + 1;

/// Applies the cluster commit log record at `position` of the staged
/// replaces, as a standby does: stages of generation `g`'s users, then the
/// record that ends the replace, with its link. Returns the generation the
/// record ended, if it was the last of its replace.
fn apply_staged_record(store: &SledStore, position: u64) -> Option<u64> {
    let g = (position - 1) / RECORDS_PER_REPLACE + 1;
    let record = (position - 1) % RECORDS_PER_REPLACE;
    let users = directory_users(g);
    if record < STAGES {
        let size = users.len().div_ceil(STAGES as usize);
        let stage = users.chunks(size).nth(record as usize).unwrap_or_default();
        store
            .commit_directory_stage_at(record == 0, stage, position)
            .expect("commit_directory_stage_at");
        None
    } else {
        store
            .commit_staged_directory_at(
                DirectoryBatch {
                    replace: true,
                    upserts: vec![],
                    removes: vec![],
                    delta_link: Some(directory_link(g)),
                },
                position,
            )
            .expect("commit_staged_directory_at");
        Some(g)
    }
}

/// The staged replaces' writer: a no-op unless the parent test started it.
/// Applies record after record from the store's position on.
#[test]
fn crash_staged_directory_writer() {
    let Some(dir) = std::env::var_os(STAGED_WRITER_DIR) else {
        return;
    };
    let store = SledStore::open(Path::new(&dir)).expect("the writer opens the store");
    let from = store.log_position().expect("log_position") + 1;
    let mut stdout = std::io::stdout();
    for position in from..from + 4_000 {
        if let Some(g) = apply_staged_record(&store, position)
            && writeln!(stdout, "staged-acked {g}")
                .and_then(|()| stdout.flush())
                .is_err()
        {
            return;
        }
    }
}

/// A cluster's large replace comes as stage records and one record that
/// ends it, which the store writes in parts. Killed at any point, the store
/// is at a position with the directory of the last replace it ended whole,
/// or, killed inside the record that ends one, no directory at all; the
/// records from the position on, applied again as a standby does, end with
/// the next generation whole.
#[test]
fn a_staged_replace_killed_between_its_parts_is_applied_again_whole() {
    if is_a_writer() {
        return;
    }
    let seed: u64 = env_number(SEED, DEFAULT_SEED);
    let mut kill_points = KillPoints(seed ^ 0x57a9_ed00);
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("store");
    let mut acked = 0u64;
    let mut cut_short = 0;
    for round in 1..=DIRECTORY_ROUNDS {
        let writer = start_writer(
            STAGED_WRITER_TEST,
            &[(STAGED_WRITER_DIR, dir.as_os_str())],
            state.path(),
        );
        acked = kill_after_a_few_replaces(writer, "staged-acked ", acked, &mut kill_points, round);

        let store = SledStore::open(&dir)
            .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL: {e}"));
        let position = store.log_position().unwrap();
        let ended = position / RECORDS_PER_REPLACE;
        assert!(
            ended >= acked,
            "round {round}: replace {acked} was acknowledged, the store is at position {position}"
        );
        match store.directory().unwrap() {
            Some(directory) => {
                assert_eq!(
                    directory.delta_link.as_deref(),
                    Some(directory_link(ended).as_str()),
                    "round {round}: position {position}"
                );
                assert_eq!(
                    directory.users,
                    directory_users(ended),
                    "round {round}: generation {ended} is not stored whole"
                );
            }
            None => {
                assert_eq!(
                    position % RECORDS_PER_REPLACE,
                    STAGES,
                    "round {round}: no directory at position {position}, which is not inside the record that ends a replace"
                );
                cut_short += 1;
            }
        }
        // A replace ended but killed before its acknowledgement counts.
        acked = ended;
        // As a standby: the records from the position on, to the end of
        // the replace under way.
        if !position.is_multiple_of(RECORDS_PER_REPLACE) {
            let end = (ended + 1) * RECORDS_PER_REPLACE;
            for next in position + 1..=end {
                if let Some(g) = apply_staged_record(&store, next) {
                    let directory = store.directory().unwrap().unwrap();
                    assert_eq!(directory.users, directory_users(g), "round {round}");
                    assert_eq!(directory.delta_link, Some(directory_link(g)));
                    acked = g;
                }
            }
        }
        store.mark_clean_shutdown().unwrap();
        eprintln!("round {round}: replace {acked} applied whole");
    }
    eprintln!(
        "{cut_short} of {DIRECTORY_ROUNDS} kills landed inside the record that ends a replace"
    );
}

//! The NATS adapter (`presence_sync::cluster::nats`) against real
//! `nats-server` processes on loopback: one node, and a 3-node JetStream
//! cluster with R=3. Skipped (said why) without `nats-server`, unless
//! `PRESENCE_SYNC_REQUIRE_NATS=1`.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use presence_sync::cluster::nats::{
    ClusterError, Lease, LeaseError, LeaseHolder, Nats, NodeReport, Role,
};
use presence_sync::cluster::{CommitLog, LogError, SnapshotMeta};
use presence_sync::config::{ClusterConfig, NatsAuth, SecretLocation, SecretSource};
use presence_sync::events::Event;
use reqwest::Url;

use common::nats::{NatsCluster, ServerAuth};

const READY: Duration = Duration::from_secs(30);

fn config(urls: Vec<String>, node: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(
        urls,
        "contoso",
        node,
        Url::parse(&format!("http://{node}.example:8787/")).unwrap(),
    );
    config.request_timeout = Duration::from_secs(2);
    config
}

async fn single(test: &str) -> Option<(NatsCluster, Nats)> {
    single_as(test, "node-a", |_| {}).await
}

/// One node and `node` on it, its config as `tune` makes it, provisioned.
async fn single_as(
    test: &str,
    node: &str,
    tune: impl FnOnce(&mut ClusterConfig),
) -> Option<(NatsCluster, Nats)> {
    let server = NatsCluster::start_ready(test, 1, ServerAuth::None, READY).await?;
    let mut config = config(server.urls(), node);
    tune(&mut config);
    let nats = provisioned(&config).await;
    Some((server, nats))
}

/// Connected with `config`, its streams and buckets provisioned.
async fn provisioned(config: &ClusterConfig) -> Nats {
    let nats = Nats::connect(config).await.unwrap();
    nats.provision().await.unwrap();
    nats
}

/// [`provisioned`], tried again for 30 s: right after a cluster's meta
/// leader is elected, stream creation can still be refused for a moment.
async fn provisioned_in_time(config: &ClusterConfig) -> Nats {
    let started = Instant::now();
    loop {
        match Nats::connect(config).await {
            Ok(nats) => match nats.provision().await {
                Ok(()) => return nats,
                Err(error) => eprintln!("provision: {error}"),
            },
            Err(error) => eprintln!("connect: {error}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not provisioned"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `max_age` JetStream has now for the stream `name`.
async fn max_age(js: &async_nats::jetstream::Context, name: &str) -> Duration {
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().config.max_age
}

/// What JetStream says now of the log's stream.
async fn log_info(nats: &Nats) -> async_nats::jetstream::stream::Info {
    let mut stream = nats
        .jetstream()
        .get_stream(nats.names().log_stream())
        .await
        .unwrap();
    stream.info().await.unwrap().clone()
}

/// Waits until `done` says so; fails, saying `what`, after `within`.
async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three routed nodes, ready; `None` when `nats-server` is missing.
async fn three(test: &str) -> Option<NatsCluster> {
    NatsCluster::start_ready(test, 3, ServerAuth::None, Duration::from_secs(60)).await
}

fn holder(node: &str) -> LeaseHolder {
    LeaseHolder {
        node_id: node.into(),
        api_url: format!("http://{node}.example:8787/"),
        since: Utc::now(),
    }
}

/// `node` takes the lease if it is free (`None`: another node holds it).
async fn acquire(nats: &Nats, node: &str) -> Option<Lease> {
    nats.lease().acquire(&holder(node)).await.unwrap()
}

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> SecretSource {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    SecretSource {
        purpose: "the NATS credential",
        location: SecretLocation::File(path),
        origin: presence_sync::config::Origin::whole_file(dir.join("config.toml").as_path()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_with_a_token_or_a_user_and_says_which_url_failed() {
    let auth = ServerAuth::Token("s3cret-token".into());
    let Some(server) = NatsCluster::start_ready("token", 1, auth, READY).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    let mut good = config(server.urls(), "a");
    good.auth = NatsAuth::Token(secret_file(dir.path(), "token", "s3cret-token\n"));
    let nats = Nats::connect(&good).await.unwrap();
    assert!(nats.status().connected);
    assert!(nats.status().server.unwrap().contains("n1"));

    let mut bad = config(server.urls(), "a");
    bad.auth = NatsAuth::Token(secret_file(dir.path(), "wrong", "wrong-token"));
    let error = Nats::connect(&bad).await.unwrap_err();
    assert!(matches!(error, ClusterError::Connect { .. }), "{error}");
    assert!(!error.to_string().contains("wrong-token"), "{error}");

    let mut unread = config(server.urls(), "a");
    unread.auth = NatsAuth::Token(SecretSource {
        purpose: "the NATS token",
        location: SecretLocation::File(dir.path().join("absent")),
        origin: presence_sync::config::Origin::whole_file(dir.path().join("config.toml").as_path()),
    });
    assert!(matches!(
        Nats::connect(&unread).await.unwrap_err(),
        ClusterError::Credentials(_)
    ));

    // Nothing listens on a port just freed: the error names the URL.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("nats://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let started = Instant::now();
    let error = Nats::connect(&config(vec![dead.clone()], "a"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&dead), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Several URLs: a dead one first, the live one after.
    let mut several = config(vec![dead, server.url(0)], "a");
    several.auth = NatsAuth::Token(secret_file(dir.path(), "token2", "s3cret-token"));
    assert!(Nats::connect(&several).await.unwrap().status().connected);

    let auth = ServerAuth::User {
        user: "presence".into(),
        password: "pa55word".into(),
    };
    let Some(server) = NatsCluster::start_ready("user", 1, auth, READY).await else {
        return;
    };
    let mut user = config(server.urls(), "a");
    user.auth = NatsAuth::UserPassword {
        user: "presence".into(),
        password: secret_file(dir.path(), "password", "pa55word"),
    };
    let _nats = provisioned(&user).await;
    user.auth = NatsAuth::UserPassword {
        user: "presence".into(),
        password: secret_file(dir.path(), "password2", "nope"),
    };
    assert!(Nats::connect(&user).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_follows_the_connection() {
    let Some((mut server, nats)) = single("status").await else {
        return;
    };
    assert!(nats.status().connected);
    server.kill(0);
    let after_kill = Duration::from_secs(10);
    wait_until("still connected after the kill", after_kill, || {
        !nats.status().connected
    })
    .await;
    // Requests fail within the timeout while it is down.
    let started = Instant::now();
    assert!(nats.log().bounds().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(4));
    server.restart(0);
    server.wait_ready(READY).await;
    let after_restart = Duration::from_secs(15);
    wait_until("did not reconnect", after_restart, || {
        nats.status().connected
    })
    .await;
    // The store survived the restart: the stream is still there.
    assert_eq!(nats.log().bounds().await.unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_and_brings_settings_in_line() {
    let Some((server, nats)) = single("provision").await else {
        return;
    };
    nats.provision().await.unwrap();
    let js = nats.jetstream();
    let names = nats.names().clone();
    for stream in [
        names.log_stream(),
        names.events_stream(),
        format!("KV_{}", names.lease_bucket()),
        format!("KV_{}", names.nodes_bucket()),
        format!("OBJ_{}", names.snapshot_bucket()),
    ] {
        js.get_stream(&stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
    }
    let info = log_info(&nats).await;
    assert_eq!(
        info.config.subjects,
        vec!["presence-sync.contoso.log".to_string()]
    );
    assert_eq!(info.config.max_age, Duration::from_secs(24 * 3600));
    let lease = format!("KV_{}", names.lease_bucket());
    assert_eq!(max_age(js, &lease).await, Duration::from_secs(5));

    // Another node's config with a shorter history and lease: updated.
    let mut other = config(server.urls(), "node-b");
    other.history = Duration::from_secs(3600);
    other.lease_ttl = Duration::from_secs(3);
    let _b = provisioned(&other).await;
    let log_stream = names.log_stream();
    assert_eq!(max_age(js, &log_stream).await, Duration::from_secs(3600));
    assert_eq!(max_age(js, &lease).await, Duration::from_secs(3));

    // A stream JetStream cannot change (memory storage): explained.
    js.delete_stream(names.events_stream()).await.unwrap();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: names.events_stream(),
        subjects: vec![names.events_subjects()],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let error = nats.provision().await.unwrap_err();
    assert!(matches!(error, ClusterError::Provision { .. }), "{error}");
    assert!(
        error.to_string().contains(&names.events_stream()),
        "{error}"
    );

    // More replicas than servers: refused, with JetStream's reason.
    let mut r3 = config(server.urls(), "node-c");
    r3.tenant = "fabrikam".into();
    r3.replicas = 3;
    let error = Nats::connect(&r3)
        .await
        .unwrap()
        .provision()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("PS_fabrikam_LOG"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_fenced_by_the_expected_last_position() {
    let Some((server, nats)) = single("append").await else {
        return;
    };
    let log = nats.log();
    assert_eq!(log.bounds().await.unwrap(), (0, 0));
    assert_eq!(log.append_async(b"one".to_vec(), 0).await, Ok(1));
    assert_eq!(log.append_async(b"two".to_vec(), 1).await, Ok(2));
    // Another node that believes the log is at 1.
    let b = Nats::connect(&config(server.urls(), "node-b"))
        .await
        .unwrap();
    assert_eq!(
        b.log().append_async(b"stale".to_vec(), 1).await,
        Err(LogError::Fenced {
            expected: 1,
            found: Some(2)
        })
    );
    assert_eq!(
        b.log().append_async(b"empty?".to_vec(), 0).await,
        Err(LogError::Fenced {
            expected: 0,
            found: Some(2)
        })
    );
    // The same append again (a retry after a lost ack) is answered with
    // its first position, not fenced; another record at that place is.
    assert_eq!(log.append_async(b"two".to_vec(), 1).await, Ok(2));
    assert!(matches!(
        log.append_async(b"two'".to_vec(), 1).await,
        Err(LogError::Fenced { .. })
    ));
    assert_eq!(log.append_async(b"three".to_vec(), 2).await, Ok(3));
    // A record over the server's max_payload is refused at once.
    assert_eq!(nats.max_payload(), 1024 * 1024);
    let started = Instant::now();
    let too_big = log.append_async(vec![b'x'; nats.max_payload()], 3).await;
    assert!(
        matches!(&too_big, Err(LogError::Unavailable(why)) if why.contains("max payload")),
        "{too_big:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(log.bounds().await.unwrap(), (1, 3));
    let read = log.read(1, 10, Duration::from_millis(500)).await.unwrap();
    assert_eq!(
        read,
        vec![
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (3, b"three".to_vec())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_append_is_unavailable_within_the_timeout() {
    let Some((server, nats)) = single("unavailable").await else {
        return;
    };
    let log = nats.log();
    assert_eq!(log.append_async(b"one".to_vec(), 0).await, Ok(1));
    server.pause(0);
    let started = Instant::now();
    let result = log.append_async(b"two".to_vec(), 1).await;
    assert!(
        matches!(result, Err(LogError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Blocking too, from a blocking thread.
    let blocking = log.clone();
    let result = tokio::task::spawn_blocking(move || blocking.append(b"two", 1))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(LogError::Unavailable(_))),
        "{result:?}"
    );
    server.resume(0);
    // The record sent while the server hung may have landed: the retry
    // of the same record at the same place tells.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match log.append_async(b"two".to_vec(), 1).await {
            Ok(position) => {
                assert_eq!(position, 2);
                break;
            }
            Err(LogError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_append_works_from_any_thread() {
    let Some((_server, nats)) = single("blocking").await else {
        return;
    };
    let log = nats.log();
    let from_blocking = log.clone();
    let position = tokio::task::spawn_blocking(move || from_blocking.append(b"1", 0))
        .await
        .unwrap();
    assert_eq!(position, Ok(1));
    let from_thread = log.clone();
    let position = std::thread::spawn(move || from_thread.append(b"2", 1))
        .join()
        .unwrap();
    assert_eq!(position, Ok(2));
    // On an async worker thread it blocks that thread, but the other
    // worker runs the append: no panic, and an answer.
    assert_eq!(log.append(b"3", 2), Ok(3));
    // Many at once from blocking threads, each at its own place: exactly
    // one wins each place.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let log = log.clone();
        tasks.push(tokio::task::spawn_blocking(move || log.append(&[i], 3)));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(4) => won += 1,
            Err(LogError::Fenced { expected: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
}

#[test]
fn the_blocking_append_does_not_panic_on_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some((server, nats)) = runtime.block_on(single("current_thread")) else {
        return;
    };
    // Called inside the runtime's only thread: the connection cannot run
    // while it waits, so it gives up (Unavailable) instead of panicking
    // or hanging.
    let result = runtime.block_on(async {
        let log = nats.log();
        log.append(b"x", 0)
    });
    assert!(
        matches!(result, Err(LogError::Unavailable(_))),
        "{result:?}"
    );
    // From another thread while the runtime runs, it works.
    let log = nats.log();
    let worker = std::thread::spawn(move || log.append(b"y", 0));
    let result = runtime.block_on(async {
        loop {
            if worker.is_finished() {
                break worker.join().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // The first append may have landed after all (its task ran once the
    // thread was free): then "y" is fenced at 0, else it is at 1.
    match result {
        Ok(1) | Err(LogError::Fenced { expected: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
    // With the runtime gone, the blocking append answers Unavailable.
    let log = nats.log();
    drop(runtime);
    assert!(matches!(log.append(b"z", 1), Err(LogError::Unavailable(_))));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_from_where_they_stopped_and_wait_for_new_records() {
    let Some((_server, nats)) = single("read").await else {
        return;
    };
    let log = nats.log();
    for i in 0..10u64 {
        assert_eq!(
            log.append_async(format!("r{}", i + 1).into_bytes(), i)
                .await,
            Ok(i + 1)
        );
    }
    let first = log.read(5, 3, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        first.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert_eq!(first[0].1, b"r5");
    let rest = log.read(8, 100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        rest.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    // From the start again, 0 meaning 1.
    let all = log.read(0, 100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(all.len(), 10);
    // Nothing new: an empty answer after the wait.
    let started = Instant::now();
    assert!(
        log.read(11, 10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A record appended while a read waits is returned to it.
    let reader = log.clone();
    let waiting = tokio::spawn(async move { reader.read(11, 10, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writer = nats.log();
    assert_eq!(writer.append_async(b"r11".to_vec(), 10).await, Ok(11));
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got, vec![(11, b"r11".to_vec())]);
    assert_eq!(
        log.read(1, 0, Duration::from_millis(10)).await.unwrap(),
        vec![]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aged_out_history_reads_from_the_first_kept_and_appends_go_on() {
    let short = |c: &mut ClusterConfig| c.history = Duration::from_secs(1);
    let Some((_server, nats)) = single_as("history", "a", short).await else {
        return;
    };
    let log = nats.log();
    for i in 0..3 {
        assert_eq!(log.append_async(b"old".to_vec(), i).await, Ok(i + 1));
    }
    // Every record ages out; the stream keeps its last sequence.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bounds = log.bounds().await.unwrap();
        if bounds == (4, 3) {
            break;
        }
        assert!(Instant::now() < deadline, "{bounds:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Why the log fences with Nats-Expected-Last-Sequence: the subject's
    // own last sequence is gone with its records, so the same fence by
    // subject would refuse the active here.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "3");
    let by_subject = async {
        nats.jetstream()
            .publish_with_headers(nats.names().log_subject(), headers, "x".into())
            .await?
            .await
    }
    .await;
    assert!(by_subject.is_err(), "{by_subject:?}");
    // The active appends after its last position as usual.
    assert_eq!(log.append_async(b"new".to_vec(), 3).await, Ok(4));
    assert_eq!(log.append_async(b"newer".to_vec(), 4).await, Ok(5));
    // A reader from 1 gets the first kept record: its position tells the gap.
    let read = log.read(1, 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(read.first().map(|(p, _)| *p), Some(4), "{read:?}");
    assert_eq!(read.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_taken_renewed_lost_and_released() {
    let short = |c: &mut ClusterConfig| c.lease_ttl = Duration::from_secs(2);
    let Some((server, a)) = single_as("lease", "a", short).await else {
        return;
    };
    let mut cb = config(server.urls(), "b");
    cb.lease_ttl = Duration::from_secs(2);
    let b = Nats::connect(&cb).await.unwrap();

    assert_eq!(a.lease().holder().await.unwrap(), None);
    let sent = Instant::now();
    let lease = acquire(&a, "a").await.expect("free");
    assert!(lease.valid_until > sent);
    assert!(lease.valid_until <= sent + Duration::from_secs(2));
    assert_eq!(a.lease().holder().await.unwrap().unwrap().node_id, "a");
    assert_eq!(acquire(&b, "b").await, None);

    // Renewals keep it past the TTL.
    let mut lease = lease;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let renewed = a.lease().renew(&lease).await.unwrap();
        assert!(renewed.revision > lease.revision);
        assert!(renewed.valid_until > lease.valid_until);
        lease = renewed;
        assert_eq!(acquire(&b, "b").await, None);
    }

    // The holder stops renewing: the key expires, b takes over.
    let stopped = Instant::now();
    let taken = loop {
        if let Some(taken) = acquire(&b, "b").await {
            break taken;
        }
        assert!(stopped.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let takeover = stopped.elapsed();
    eprintln!("takeover after the last renewal: {takeover:?} (ttl 2s)");
    assert!(takeover >= Duration::from_millis(1400), "{takeover:?}");
    assert!(takeover <= Duration::from_secs(4), "{takeover:?}");
    // a's lease was over before b could take it.
    assert!(lease.valid_until < Instant::now());
    assert!(matches!(
        a.lease().renew(&lease).await,
        Err(LeaseError::Lost(_))
    ));
    assert_eq!(b.lease().holder().await.unwrap().unwrap().node_id, "b");

    // a's release of its lost lease leaves b's alone.
    a.lease().release(&lease).await.unwrap();
    assert_eq!(b.lease().holder().await.unwrap().unwrap().node_id, "b");
    // b's release frees it at once.
    b.lease().release(&taken).await.unwrap();
    assert_eq!(a.lease().holder().await.unwrap(), None);
    let again = acquire(&a, "a").await.expect("free after release");
    assert!(matches!(
        b.lease().renew(&taken).await,
        Err(LeaseError::Lost(_))
    ));
    a.lease().renew(&again).await.unwrap();
}

fn event(store: &str, seq: u64, kind: &str) -> Event {
    Event {
        seq,
        id: format!("{store}-{seq}"),
        kind: kind.into(),
        time: Utc::now(),
        agent_id: Some("agent-1".into()),
        data: serde_json::json!({"n": seq}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_durable_consumer_once_each() {
    let Some((_server, nats)) = single("events").await else {
        return;
    };
    let events: Vec<Event> = (1..=20)
        .map(|seq| {
            let kind = if seq % 2 == 0 {
                "cc.status_requested"
            } else {
                "presence.changed"
            };
            event("store1", seq, kind)
        })
        .collect();
    nats.events().publish(&events[..15]).await.unwrap();
    // A new active publishes again what its predecessor may have sent.
    nats.events().publish(&events).await.unwrap();
    nats.events().publish(&[]).await.unwrap();
    let stream = nats
        .jetstream()
        .get_stream(nats.names().events_stream())
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("board".into()),
            filter_subject: "presence-sync.contoso.events.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let event: Event = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("presence-sync.contoso.events.{}", event.kind)
        );
        assert_eq!(
            message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string()),
            Some(event.id.clone())
        );
        seen.push(event.id);
        message.ack().await.unwrap();
    }
    let expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(seen, expected);
    // A type that cannot be a subject is refused, not sent.
    let error = nats
        .events()
        .publish(&[event("store1", 21, "bad type")])
        .await
        .unwrap_err();
    assert!(matches!(error, ClusterError::Invalid(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_round_trip_with_their_description() {
    let Some((_server, nats)) = single("snapshots").await else {
        return;
    };
    assert_eq!(nats.snapshots().latest().await.unwrap(), None);
    let bytes: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let meta = SnapshotMeta {
        store_id: "store1".into(),
        position: 42,
        taken_at: Utc::now(),
        bytes: bytes.len() as u64,
    };
    nats.snapshots().put(&meta, &bytes[..]).await.unwrap();
    let (got_meta, got) = nats.snapshots().latest().await.unwrap().unwrap();
    assert_eq!(got_meta, meta);
    assert!(got == bytes, "the payload differs");
    // A newer one replaces it.
    let newer = SnapshotMeta {
        position: 50,
        bytes: 5,
        ..meta
    };
    nats.snapshots().put(&newer, &b"small"[..]).await.unwrap();
    assert_eq!(
        nats.snapshots().latest().await.unwrap(),
        Some((newer, b"small".to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_report_themselves() {
    let Some((_server, nats)) = single("nodes").await else {
        return;
    };
    assert_eq!(nats.nodes().all().await.unwrap(), vec![]);
    let report = |node: &str, role, position| NodeReport {
        node_id: node.into(),
        role,
        position,
        api_url: format!("http://{node}.example:8787/"),
        at: Utc::now(),
    };
    let b = report("node-b", Role::Standby, 7);
    nats.nodes().put(&b).await.unwrap();
    nats.nodes()
        .put(&report("node-a", Role::Active, 9))
        .await
        .unwrap();
    let a = report("node-a", Role::Active, 10);
    nats.nodes().put(&a).await.unwrap();
    assert_eq!(nats.nodes().all().await.unwrap(), vec![a, b]);
}

/// Appends in a loop, retrying the same record at the same place on
/// Unavailable; returns each position with how long its append took.
async fn append_until(
    log: presence_sync::cluster::nats::JetStreamLog,
    mut last: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Vec<(u64, Duration)> {
    let mut done = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let record = format!("record after {last}").into_bytes();
        let started = Instant::now();
        let position = loop {
            match log.append_async(record.clone(), last).await {
                Ok(position) => break position,
                Err(LogError::Unavailable(_)) => {
                    assert!(started.elapsed() < Duration::from_secs(30), "stalled");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(other) => panic!("{other}"),
            }
        };
        assert_eq!(position, last + 1);
        done.push((position, started.elapsed()));
        progress.store(position, std::sync::atomic::Ordering::SeqCst);
        last = position;
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_survives_a_killed_node_during_appends() {
    let Some(mut cluster) = NatsCluster::three("three", ServerAuth::None) else {
        return;
    };
    let ready = cluster.wait_ready(Duration::from_secs(60)).await;
    eprintln!("3-node cluster ready (meta leader known to all) after {ready:?}");
    let mut cfg = config(cluster.urls(), "a");
    cfg.replicas = 3;
    cfg.lease_ttl = Duration::from_secs(2);
    let started = Instant::now();
    let nats = provisioned_in_time(&cfg).await;
    eprintln!("provisioned after {:?} more", started.elapsed());
    let info = log_info(&nats).await;
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("a stream leader");
    let victim = cluster
        .index_of(&leader)
        .expect("the leader is one of ours");

    // The lease works on R=3 too.
    let lease = acquire(&nats, "a").await.expect("free");
    nats.lease().renew(&lease).await.unwrap();

    let log = nats.log();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let appender = tokio::spawn(append_until(log.clone(), 0, stop.clone(), progress.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_kill = progress.load(std::sync::atomic::Ordering::SeqCst);
    let killed_at = Instant::now();
    cluster.kill(victim);
    eprintln!("killed {leader}, the log stream's leader, at position {at_kill}");
    // Appends resume: 100 more than at the kill, within 30 s.
    let resumed = loop {
        if progress.load(std::sync::atomic::Ordering::SeqCst) > at_kill + 100 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "appends stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let done = appender.await.unwrap();
    let (worst_position, worst) = done.iter().max_by_key(|(_, d)| *d).copied().unwrap();
    eprintln!(
        "{} appends; the slowest ({worst_position}) took {worst:?}; 100 more appends {resumed:?} after the kill",
        done.len(),
    );
    assert!(worst < Duration::from_secs(20), "{worst:?}");

    // Every record once, in order, no gap.
    let last = done.last().unwrap().0;
    let mut read = Vec::new();
    let mut from = 1;
    let reading = Instant::now();
    let mut failures = 0;
    while from <= last {
        // With a stream peer down, starting a consumer can time out on
        // 2.9 (placed on the dead peer): the reader retries.
        let batch = match log.read(from, 1000, Duration::from_secs(5)).await {
            Ok(batch) => batch,
            Err(error) => {
                failures += 1;
                eprintln!("read from {from}: {error}");
                assert!(reading.elapsed() < Duration::from_secs(60), "{error}");
                continue;
            }
        };
        assert!(!batch.is_empty(), "nothing from {from}");
        from = batch.last().unwrap().0 + 1;
        read.extend(batch);
    }
    eprintln!(
        "read back in {:?} ({failures} failed reads)",
        reading.elapsed()
    );
    let positions: Vec<u64> = read.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=last).collect::<Vec<_>>());
    for (position, record) in &read {
        assert_eq!(
            record,
            &format!("record after {}", position - 1).into_bytes()
        );
    }

    // Fencing and retried appends on R=3, with a node down.
    let b = Nats::connect(&config(cluster.urls(), "b")).await.unwrap();
    assert!(matches!(
        b.log().append_async(b"stale".to_vec(), last - 1).await,
        Err(LogError::Fenced { found: Some(found), .. }) if found == last
    ));
    let record = format!("record after {}", last - 1).into_bytes();
    assert_eq!(log.append_async(record, last - 1).await, Ok(last));

    // The lease taken before the kill has expired since. Taken again and
    // then no longer renewed, b takes it about the TTL (2 s) after a's
    // last renewal.
    // Just after the kill the lease bucket may still be electing its
    // leader: an unanswered renewal is tried again until NATS answers.
    let mut renewed = nats.lease().renew(&lease).await;
    for _ in 0..40 {
        if !matches!(renewed, Err(LeaseError::Unavailable(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        renewed = nats.lease().renew(&lease).await;
    }
    assert!(matches!(renewed, Err(LeaseError::Lost(_))));
    let fresh = acquire(&nats, "a").await.expect("expired");
    let renewed = nats.lease().renew(&fresh).await.unwrap();
    let stopped = Instant::now();
    let taken = loop {
        match b.lease().acquire(&holder("b")).await {
            Ok(Some(taken)) => break taken,
            Ok(None) => {}
            Err(error) => eprintln!("acquire: {error}"),
        }
        assert!(stopped.elapsed() < Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "R=3 lease taken over {:?} after the last renewal (ttl 2s)",
        stopped.elapsed()
    );
    assert!(matches!(
        nats.lease().renew(&renewed).await,
        Err(LeaseError::Lost(_))
    ));
    b.lease().renew(&taken).await.unwrap();

    // The killed node comes back and catches up.
    cluster.restart(victim);
    let back = cluster.wait_ready(Duration::from_secs(60)).await;
    eprintln!("{leader} back in the cluster after {back:?}");
    // ... and its replica of the log is current again.
    let caught_up = Instant::now();
    loop {
        let info = log_info(&nats).await;
        let replicas = info.cluster.map(|c| c.replicas).unwrap_or_default();
        if replicas.len() == 2
            && replicas
                .iter()
                .all(|r| r.current && r.lag.unwrap_or(0) == 0 && !r.offline)
        {
            break;
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(30),
            "{replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{leader}'s replica current after {:?}", caught_up.elapsed());
    // Appends go on at the next position.
    assert_eq!(
        log.append_async(b"after".to_vec(), last).await,
        Ok(last + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_answers_again_after_its_bucket_leader_dies() {
    let Some(mut cluster) = three("lease_leader").await else {
        return;
    };
    let mut cfg = config(cluster.urls(), "a");
    cfg.replicas = 3;
    let a = provisioned_in_time(&cfg).await;
    let b = Nats::connect(&config(cluster.urls(), "b")).await.unwrap();
    let timing = a.lease().timing();
    let mut lease = acquire(&a, "a").await.expect("free");
    let bucket = format!("KV_{}", a.names().lease_bucket());
    let mut stream = a.jetstream().get_stream(&bucket).await.unwrap();
    let leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .unwrap();
    cluster.kill(cluster.index_of(&leader).unwrap());
    let killed = Instant::now();
    // a renews as the daemon would: every ttl/3, retrying on Unavailable.
    let outcome = loop {
        match a.lease().renew(&lease).await {
            Ok(renewed) => {
                let late = !timing.is_valid(lease.valid_until, Instant::now());
                lease = renewed;
                if killed.elapsed() > Duration::from_secs(1) {
                    break Ok(late);
                }
            }
            Err(LeaseError::Lost(why)) => break Err(why),
            Err(LeaseError::Unavailable(why)) => eprintln!("renew: {why}"),
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no answer");
        tokio::time::sleep(timing.acquire_interval() / 4).await;
    };
    eprintln!(
        "killed {leader} (the lease bucket's leader): renewal answered {:?} after: {outcome:?} \
         (Ok(true): renewed after valid_until)",
        killed.elapsed()
    );
    match outcome {
        // Still a's: nobody else can take it.
        Ok(_) => assert_eq!(acquire(&b, "b").await, None),
        // Expired while the bucket had no leader: free for whoever comes.
        Err(_) => {
            let taken = acquire(&b, "b").await;
            let now = a.lease().holder().await.unwrap();
            assert!(taken.is_some() || now.is_some_and(|h| h.node_id == "b"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_left_for_another_one() {
    let Some(cluster) = three("hung").await else {
        return;
    };
    // Only n1's URL: the others are learnt from it.
    let mut cfg = config(vec![cluster.url(0)], "a");
    cfg.replicas = 3;
    let nats = provisioned_in_time(&cfg).await;
    assert!(nats.status().server.unwrap().starts_with("n1 "));
    let log = nats.log();
    assert_eq!(log.append_async(b"before".to_vec(), 0).await, Ok(1));
    cluster.pause(0);
    let paused = Instant::now();
    let position = loop {
        match log.append_async(b"after".to_vec(), 1).await {
            Ok(position) => break position,
            Err(LogError::Unavailable(_)) => {}
            Err(other) => panic!("{other}"),
        }
        assert!(
            paused.elapsed() < Duration::from_secs(30),
            "stuck on the hung server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "appending again {:?} after n1 hung, through {:?}",
        paused.elapsed(),
        nats.status().server
    );
    assert_eq!(position, 2);
    assert!(!nats.status().server.unwrap().starts_with("n1 "));
    cluster.resume(0);
}

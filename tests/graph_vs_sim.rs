//! The Graph client against the embedded Graph simulator: every test starts
//! its own simulator on a free loopback port and its own client, and stops
//! both. Time is the simulator's manual clock (see `common::graph_kit`), so
//! token lifetimes, backoffs and 30 s budgets take no real time; nothing
//! here asserts how long anything took.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::graph_kit::{
    BY_IDS, CLEAR_PRESENCE, DELTA, GET_PRESENCE, LIST_USERS, SET_PRESENCE, SimTime, TOKEN, client,
    config, control, count, faults, set_own_presence, until,
};
use presence_sync::config::Secret;
use presence_sync::graph::poller::poll_users;
use presence_sync::graph::{
    AuthError, Credential, DeltaOutcome, GraphClient, GraphError, PollPlan, PollTarget, Poller,
    RetryPolicy, ThrottleConfig, TokioClock,
};
use presence_sync::presence::{Activity, Availability, Presence};
use presence_sync::sim::{self, SimClock, SimHandle, SimOptions};
use presence_sync::stop::Stop;
use presence_sync::sync::TeamsWrite;
use serde_json::json;
use tokio::sync::mpsc;

const HOUR: Duration = Duration::from_secs(3600);

/// A guard against a hang, never a performance check: every wait below
/// normally ends in milliseconds.
const HANG: Duration = Duration::from_secs(60);

async fn start(users: usize, budget: Option<u32>) -> SimHandle {
    start_with(SimOptions {
        users,
        budget,
        clock: SimClock::manual_from_now(),
        ..SimOptions::default()
    })
    .await
}

async fn start_with(options: SimOptions) -> SimHandle {
    sim::spawn(options).await.expect("simulator starts")
}

async fn stop(sim: SimHandle) {
    sim.shutdown().await.expect("simulator stops cleanly");
}

/// Default knobs, but retries that give up soon (on a jumping clock the
/// backoff waits take no real time anyway).
fn knobs() -> ThrottleConfig {
    ThrottleConfig {
        retry: RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        },
        ..ThrottleConfig::default()
    }
}

/// A client on a jumping clock with [`knobs`].
fn jumping_client(sim: &SimHandle) -> GraphClient {
    client(sim, SimTime::jumping(sim).shared(), knobs())
}

fn p(availability: Availability, activity: Activity) -> Presence {
    Presence::new(availability, activity)
}

fn busy_in_a_call() -> Presence {
    p(Availability::Busy, Activity::InACall)
}

async fn shown(client: &GraphClient, user: &str) -> Presence {
    client.get_presence(user).await.expect("presence").presence
}

// ---------------------------------------------------------------- token

#[tokio::test]
async fn the_first_call_fetches_a_token_and_later_calls_reuse_it() {
    let sim = start(5, None).await;
    let client = jumping_client(&sim);
    let user = &sim.user_ids()[0];
    assert_eq!(count(&sim, TOKEN, None), 0, "nothing before the first call");
    for _ in 0..3 {
        shown(&client, user).await;
    }
    assert_eq!(count(&sim, TOKEN, Some(200)), 1);
    assert_eq!(count(&sim, TOKEN, None), 1);
    assert_eq!(count(&sim, GET_PRESENCE, Some(200)), 3);
    stop(sim).await;
}

#[tokio::test]
async fn the_token_is_refreshed_before_the_simulator_would_refuse_it() {
    let sim = start_with(SimOptions {
        users: 5,
        budget: None,
        token_lifetime: Duration::from_secs(600),
        clock: SimClock::manual_from_now(),
        ..SimOptions::default()
    })
    .await;
    let client = jumping_client(&sim);
    let user = sim.user_ids()[0].clone();
    shown(&client, &user).await;
    // 600 s tokens are renewed a quarter early, at 450 s; at 500 s the old
    // one is still valid for the simulator, so no 401 is ever seen.
    for round in 1..=4u64 {
        sim.advance(Duration::from_secs(500));
        shown(&client, &user).await;
        assert_eq!(count(&sim, TOKEN, Some(200)), 1 + round);
    }
    assert_eq!(count(&sim, GET_PRESENCE, Some(401)), 0);
    assert_eq!(count(&sim, GET_PRESENCE, Some(200)), 5);
    stop(sim).await;
}

#[tokio::test]
async fn a_token_the_simulator_expired_is_refreshed_once_on_401() {
    let sim = start_with(SimOptions {
        users: 5,
        budget: None,
        token_lifetime: Duration::from_secs(600),
        clock: SimClock::manual_from_now(),
        ..SimOptions::default()
    })
    .await;
    // The client on its own (real) clock: it believes its token is fresh
    // while the simulator's clock has passed the token's expiry.
    let client = client(&sim, TokioClock::shared(), knobs());
    let user = sim.user_ids()[0].clone();
    shown(&client, &user).await;
    sim.advance(Duration::from_secs(601));
    shown(&client, &user).await;
    assert_eq!(count(&sim, GET_PRESENCE, Some(401)), 1);
    assert_eq!(count(&sim, GET_PRESENCE, Some(200)), 2);
    assert_eq!(count(&sim, TOKEN, Some(200)), 2);
    stop(sim).await;
}

#[tokio::test]
async fn expired_tokens_mid_run_cost_one_refresh_shared_by_concurrent_calls() {
    let sim = start(40, None).await;
    let client = jumping_client(&sim);
    let users = sim.user_ids();
    for user in &users[..3] {
        shown(&client, user).await;
    }
    faults(&sim, json!({ "expire_tokens": true })).await;
    let calls: Vec<_> = users
        .iter()
        .map(|user| {
            let client = client.clone();
            let user = user.clone();
            tokio::spawn(async move { client.get_presence(&user).await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("the call succeeds");
    }
    // Every call that met the dead token retried once with the one new token.
    assert_eq!(count(&sim, TOKEN, Some(200)), 2);
    assert_eq!(count(&sim, GET_PRESENCE, Some(200)), 3 + users.len() as u64);
    let refused = count(&sim, GET_PRESENCE, Some(401));
    assert!(
        (1..=users.len() as u64).contains(&refused),
        "{refused} 401s"
    );
    // And the run goes on.
    shown(&client, &users[0]).await;
    assert_eq!(count(&sim, TOKEN, Some(200)), 2);
    stop(sim).await;
}

#[tokio::test]
async fn a_wrong_secret_is_classified_and_not_retried() {
    let sim = start(5, None).await;
    let client = GraphClient::builder(
        &config(&sim),
        Credential::Secret(Secret::new("not-the-secret")),
    )
    .clock(SimTime::jumping(&sim).shared())
    .throttle(knobs())
    .build()
    .unwrap();
    let error = client.get_presence(&sim.user_ids()[0]).await.unwrap_err();
    match &error {
        GraphError::Auth(AuthError::InvalidSecret(rejection)) => {
            assert_eq!(rejection.status, 401);
            assert_eq!(rejection.error, "invalid_client");
            assert!(rejection.codes.contains(&7000215), "{:?}", rejection.codes);
        }
        other => panic!("expected an invalid secret, got {other:?}"),
    }
    assert_eq!(count(&sim, TOKEN, Some(401)), 1, "a refusal is final");
    assert_eq!(
        count(&sim, GET_PRESENCE, None),
        0,
        "no Graph call without a token"
    );

    // An expired secret is told apart (AADSTS7000222).
    faults(&sim, json!({ "secret_expired": true })).await;
    let good = jumping_client(&sim);
    match good.get_presence(&sim.user_ids()[0]).await {
        Err(GraphError::Auth(AuthError::ExpiredSecret(rejection))) => {
            assert!(rejection.codes.contains(&7000222), "{:?}", rejection.codes);
        }
        other => panic!("expected an expired secret, got {other:?}"),
    }
    stop(sim).await;
}

// ---------------------------------------------------------------- batching

#[tokio::test]
async fn fourteen_hundred_users_are_read_in_three_calls() {
    let sim = start(1_400, None).await;
    let client = jumping_client(&sim);
    let ids = sim.user_ids();
    let read = client.get_presences(&ids).await.expect("read");
    assert_eq!(read.calls, 3);
    assert_eq!(count(&sim, BY_IDS, Some(200)), 3);
    assert_eq!(count(&sim, BY_IDS, None), 3);
    assert!(read.refused.is_empty());
    assert_eq!(read.skipped, 0);
    let got: HashSet<&str> = read.presences.iter().map(|p| p.id.as_str()).collect();
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got, want);
    assert_eq!(read.presences.len(), ids.len());
    stop(sim).await;
}

#[tokio::test]
async fn a_refused_id_splits_the_batch_and_only_it_is_reported() {
    let sim = start(20, None).await;
    let client = jumping_client(&sim);
    set_own_presence(&sim, &sim.user_ids()[7], "Busy", "InAMeeting").await;
    let mut ids = sim.user_ids();
    // Malformed: the simulator refuses the whole batch with 400.
    ids.insert(11, "not-a-user-id".to_string());
    // Unknown but well formed: left out of the answer, not an error.
    let unknown = "0b7a7b2a-0000-4000-8000-000000000000".to_string();
    ids.push(unknown.clone());
    let read = client.get_presences(&ids).await.expect("read");
    assert_eq!(read.refused.len(), 1);
    let (bad, error) = &read.refused[0];
    assert_eq!(bad, "not-a-user-id");
    assert_eq!(error.status(), Some(400));
    let got: HashSet<&str> = read.presences.iter().map(|p| p.id.as_str()).collect();
    let known = sim.user_ids();
    assert_eq!(got.len(), 20);
    assert!(known.iter().all(|id| got.contains(id.as_str())));
    assert!(!got.contains(unknown.as_str()));
    let in_meeting = read
        .presences
        .iter()
        .find(|p| p.id == sim.user_ids()[7])
        .unwrap();
    assert_eq!(
        in_meeting.presence,
        p(Availability::Busy, Activity::InAMeeting)
    );
    // 22 ids: halves down to the bad one, every 400 answered by the simulator.
    assert_eq!(read.calls as u64, count(&sim, BY_IDS, None));
    assert!(count(&sim, BY_IDS, Some(400)) >= 2);
    stop(sim).await;
}

// ---------------------------------------------------------------- presence

#[tokio::test]
async fn presence_reads_and_writes_follow_graphs_rules() {
    let sim = start(3, None).await;
    let client = jumping_client(&sim);
    let user = sim.user_ids()[0].clone();
    let available = p(Availability::Available, Activity::Available);

    // Signed out: no session at all.
    assert_eq!(
        shown(&client, &user).await,
        p(Availability::Offline, Activity::Offline)
    );
    // The user's own Teams client.
    set_own_presence(&sim, &user, "Available", "Available").await;
    assert_eq!(shown(&client, &user).await, available);

    // Our session: Busy outranks the user's Available.
    client
        .set_presence(&user, &busy_in_a_call(), HOUR)
        .await
        .unwrap();
    assert_eq!(shown(&client, &user).await, busy_in_a_call());
    let read = client
        .get_presences(std::slice::from_ref(&user))
        .await
        .unwrap();
    assert_eq!(read.presences[0].presence, busy_in_a_call());

    // Clearing our session shows the user's own presence again.
    client.clear_presence(&user).await.unwrap();
    assert_eq!(shown(&client, &user).await, available);
    // A second clear: Graph answers 404 (no such session), which is success.
    client.clear_presence(&user).await.unwrap();
    assert_eq!(count(&sim, CLEAR_PRESENCE, Some(200)), 1);
    assert_eq!(count(&sim, CLEAR_PRESENCE, Some(404)), 1);

    // A preferred presence hides every session while one exists.
    client
        .set_presence(&user, &busy_in_a_call(), HOUR)
        .await
        .unwrap();
    let dnd = p(Availability::DoNotDisturb, Activity::DoNotDisturb);
    client.set_preferred(&user, &dnd, None).await.unwrap();
    assert_eq!(shown(&client, &user).await, dnd);
    let away = p(Availability::Away, Activity::Away);
    client
        .set_preferred(&user, &away, Some(HOUR))
        .await
        .unwrap();
    assert_eq!(
        shown(&client, &user).await,
        away,
        "the preferred Away hides our Busy session"
    );
    client.clear_preferred(&user).await.unwrap();
    assert_eq!(shown(&client, &user).await, busy_in_a_call());

    // A pair setPresence does not take is Graph's 400, not retried.
    let meeting = p(Availability::Busy, Activity::InAMeeting);
    let error = client
        .set_presence(&user, &meeting, HOUR)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert_eq!(count(&sim, SET_PRESENCE, Some(400)), 1);
    stop(sim).await;
}

#[tokio::test]
async fn every_engine_write_is_carried_out() {
    let sim = start(3, None).await;
    let client = jumping_client(&sim);
    let user = sim.user_ids()[1].clone();
    set_own_presence(&sim, &user, "Away", "Away").await;
    let presenting = p(Availability::DoNotDisturb, Activity::Presenting);
    let steps = [
        (
            TeamsWrite::SetSession {
                presence: busy_in_a_call(),
                expiry: HOUR,
            },
            busy_in_a_call(),
        ),
        (
            TeamsWrite::SetSession {
                presence: presenting.clone(),
                expiry: Duration::from_secs(600),
            },
            presenting,
        ),
        (
            TeamsWrite::SetPreferred {
                presence: p(Availability::BeRightBack, Activity::BeRightBack),
            },
            p(Availability::BeRightBack, Activity::BeRightBack),
        ),
        (
            TeamsWrite::ClearPreferred,
            p(Availability::DoNotDisturb, Activity::Presenting),
        ),
        (
            TeamsWrite::ClearSession,
            p(Availability::Away, Activity::Away),
        ),
        // Nothing of ours left to clear: 404, success.
        (
            TeamsWrite::ClearSession,
            p(Availability::Away, Activity::Away),
        ),
    ];
    for (write, expected) in steps {
        client
            .execute(&user, &write)
            .await
            .unwrap_or_else(|e| panic!("{write:?}: {e}"));
        assert_eq!(shown(&client, &user).await, expected, "after {write:?}");
    }
    // The session expires as Graph says: a 10-minute Presenting session is
    // gone after 10 minutes.
    client
        .execute(
            &user,
            &TeamsWrite::SetSession {
                presence: p(Availability::DoNotDisturb, Activity::Presenting),
                expiry: Duration::from_secs(600),
            },
        )
        .await
        .unwrap();
    sim.advance(Duration::from_secs(601));
    assert_eq!(
        shown(&client, &user).await,
        p(Availability::Away, Activity::Away)
    );
    stop(sim).await;
}

// ---------------------------------------------------------------- 429s

/// Every user gets a Busy/InACall session, all at once; returns when each
/// write has succeeded.
async fn write_all(client: &GraphClient, users: &[String]) {
    let writes: Vec<_> = users
        .iter()
        .map(|user| {
            let client = client.clone();
            let user = user.clone();
            tokio::spawn(async move {
                client
                    .set_presence(&user, &busy_in_a_call(), HOUR)
                    .await
                    .map_err(|e| format!("{user}: {e}"))
            })
        })
        .collect();
    for write in writes {
        write.await.expect("task").expect("the write lands");
    }
}

async fn assert_all_busy(client: &GraphClient, users: &[String]) {
    let read = client.get_presences(users).await.expect("read back");
    let shown: BTreeMap<&str, &Presence> = read
        .presences
        .iter()
        .map(|p| (p.id.as_str(), &p.presence))
        .collect();
    for user in users {
        assert_eq!(shown.get(user.as_str()), Some(&&busy_in_a_call()), "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_pauses_every_caller_and_every_write_lands() {
    const SIM_BUDGET: u32 = 20;
    let sim = start(60, Some(SIM_BUDGET)).await;
    // 30 simulated seconds per real second.
    let (time, flow) = SimTime::flowing(&sim, 30.0);
    // The client believes it may send twice what the simulator allows.
    let client = client(
        &sim,
        time.shared(),
        ThrottleConfig {
            requests: 2 * SIM_BUDGET,
            ..ThrottleConfig::default()
        },
    );
    let users = sim.user_ids();
    write_all(&client, &users).await;
    let stats = sim.stats();
    let admitted = count(&sim, SET_PRESENCE, Some(200));
    assert_eq!(admitted, users.len() as u64, "each write admitted once");
    // 60 writes at 20 per 30 s need three windows. A client that retried
    // each call on its own after its 429 would collect one per waiting call
    // per retry; this one pauses every caller until Retry-After, so only
    // what leaves as a pause ends, before the window has fully emptied, can
    // still meet a 429 (at most one burst, 20, per window; 2 to 20 seen).
    eprintln!(
        "429 storm: {} writes, {} answered 429, {} requests in all",
        users.len(),
        stats.throttled,
        stats.total
    );
    assert!(stats.throttled >= 1, "the simulator did throttle");
    assert!(
        stats.throttled <= users.len() as u64 / 2,
        "{} 429s for {} writes",
        stats.throttled,
        users.len()
    );
    assert_eq!(count(&sim, SET_PRESENCE, Some(429)), stats.throttled);
    assert_all_busy(&client, &users).await;
    flow.stop().await;
    stop(sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_within_the_simulators_budget_is_never_throttled() {
    const BUDGET: u32 = 20;
    let sim = start(50, Some(BUDGET)).await;
    let (time, flow) = SimTime::flowing(&sim, 30.0);
    // The client paces when it sends; Graph (and the simulator) count when
    // requests arrive. Requests that leave together arrive spread out, so a
    // client spending the server's exact budget can meet a window edge with
    // one request too many. A little headroom is what "within" means.
    let client = client(
        &sim,
        time.shared(),
        ThrottleConfig {
            requests: BUDGET - 2,
            ..ThrottleConfig::default()
        },
    );
    let users = sim.user_ids();
    write_all(&client, &users).await;
    assert_all_busy(&client, &users).await;
    assert_eq!(sim.stats().throttled, 0);
    assert_eq!(count(&sim, SET_PRESENCE, Some(200)), users.len() as u64);
    flow.stop().await;
    stop(sim).await;
}

// ---------------------------------------------------------------- 5xx

#[tokio::test]
async fn five_hundreds_are_retried_a_bounded_number_of_times() {
    let sim = start(10, None).await;
    let attempts = 10;
    let client = client(
        &sim,
        SimTime::jumping(&sim).shared(),
        ThrottleConfig {
            retry: RetryPolicy {
                max_attempts: attempts,
                ..RetryPolicy::default()
            },
            ..ThrottleConfig::default()
        },
    );
    let users = sim.user_ids();
    shown(&client, &users[0]).await;

    // Half of the calls fail: every call still succeeds, through retries.
    faults(&sim, json!({ "error_rate": 0.5 })).await;
    for user in &users {
        client
            .set_presence(user, &busy_in_a_call(), HOUR)
            .await
            .expect("retried to success");
    }
    let read = client.get_presences(&users).await.expect("read");
    assert!(
        read.presences
            .iter()
            .all(|p| p.presence == busy_in_a_call())
    );
    let stats = sim.stats();
    assert!(stats.faults_injected > 0);
    let sets = count(&sim, SET_PRESENCE, None);
    assert_eq!(count(&sim, SET_PRESENCE, Some(200)), users.len() as u64);
    assert!(sets <= users.len() as u64 * u64::from(attempts));

    // Every call fails: a clear error after exactly the allowed attempts.
    faults(&sim, json!({ "error_rate": 1.0 })).await;
    let before = count(&sim, GET_PRESENCE, None);
    let error = client.get_presence(&users[0]).await.unwrap_err();
    assert!(
        matches!(error.status(), Some(500 | 503)),
        "a 5xx error, got {error}"
    );
    assert!(error.request_id().is_some(), "Graph's request-id is kept");
    assert_eq!(
        count(&sim, GET_PRESENCE, None) - before,
        u64::from(attempts)
    );

    faults(&sim, json!({ "error_rate": 0.0 })).await;
    shown(&client, &users[0]).await;
    stop(sim).await;
}

#[tokio::test]
async fn a_graph_slower_than_the_timeout_times_out_then_recovers() {
    let sim = start(3, None).await;
    let timeout = Duration::from_millis(200);
    let attempts = 2;
    let client = client(
        &sim,
        SimTime::jumping(&sim).shared(),
        ThrottleConfig {
            request_timeout: timeout,
            retry: RetryPolicy {
                max_attempts: attempts,
                ..RetryPolicy::default()
            },
            ..ThrottleConfig::default()
        },
    );
    let user = sim.user_ids()[0].clone();
    shown(&client, &user).await;
    faults(&sim, json!({ "latency_ms": 1_000 })).await;
    match client.get_presence(&user).await {
        Err(GraphError::Timeout {
            timeout: t,
            attempts: a,
            ..
        }) => {
            assert_eq!(t, timeout);
            assert_eq!(a, attempts);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    faults(&sim, json!({ "latency_ms": 0 })).await;
    assert_eq!(
        shown(&client, &user).await,
        p(Availability::Offline, Activity::Offline)
    );
    stop(sim).await;
}

// ---------------------------------------------------------------- directory

#[tokio::test]
async fn the_directory_pages_and_the_delta_link_brings_new_users() {
    let sim = start(2_100, None).await;
    let client = jumping_client(&sim);
    let users = client.list_users().await.expect("users");
    assert_eq!(users.len(), 2_100);
    assert_eq!(count(&sim, LIST_USERS, Some(200)), 3, "pages of 999");
    let ids: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids.len(), 2_100);
    assert!(users.iter().all(|u| u.user_principal_name().is_some()));

    let DeltaOutcome::Changes(first) = client.users_delta(None).await.expect("delta") else {
        panic!("a first delta round cannot need a resync");
    };
    assert_eq!(first.changed.len(), 2_100);
    assert!(first.removed.is_empty());
    assert!(count(&sim, DELTA, Some(200)) > 1, "more than one page");

    // Nothing changed: an empty round and a new link.
    let DeltaOutcome::Changes(quiet) = client.users_delta(Some(&first.delta_link)).await.unwrap()
    else {
        panic!("a fresh link is valid");
    };
    assert!(quiet.changed.is_empty() && quiet.removed.is_empty());

    let added = control(
        &sim,
        "/users",
        json!({ "displayName": "Ada New", "userPrincipalName": "ada.new@contoso.test" }),
    )
    .await;
    let DeltaOutcome::Changes(next) = client.users_delta(Some(&quiet.delta_link)).await.unwrap()
    else {
        panic!("a fresh link is valid");
    };
    assert_eq!(next.changed.len(), 1);
    assert_eq!(next.changed[0].id, added["id"].as_str().unwrap());
    assert_eq!(
        next.changed[0].user_principal_name(),
        Some("ada.new@contoso.test")
    );

    // A link the simulator never issued, and one older than 7 days.
    let forged = format!("{}/users/delta?$deltatoken=forged", sim.graph_url());
    assert!(matches!(
        client.users_delta(Some(&forged)).await.unwrap(),
        DeltaOutcome::ResyncRequired { .. }
    ));
    sim.advance(Duration::from_secs(8 * 24 * 3600));
    assert!(matches!(
        client.users_delta(Some(&next.delta_link)).await.unwrap(),
        DeltaOutcome::ResyncRequired { .. }
    ));
    assert!(count(&sim, DELTA, Some(410)) >= 2);
    stop(sim).await;
}

// ---------------------------------------------------------------- the poller

#[tokio::test]
async fn the_poller_yields_exactly_what_changed() {
    let sim = start(1_400, None).await;
    let time = SimTime::jumping(&sim);
    let client = client(&sim, time.shared(), knobs());
    let ids = Arc::new(sim.user_ids());
    let target = PollTarget::default();
    let rate = client.throttle().config().sustained_rate();
    let plan = PollPlan::new(ids.len(), rate, &target);
    assert_eq!(plan.batches.len(), 3);

    let (_users_tx, users_rx) = poll_users(ids.iter().cloned());
    let (stop_tx, stop_rx) = Stop::new();
    let (updates_tx, mut updates) = mpsc::channel(4_096);
    let poller = Poller::new(client.clone(), time.shared(), rate, target, users_rx);
    let task = tokio::spawn(poller.run(updates_tx, stop_rx));

    tokio::time::timeout(HANG, async {
        // The first round: everyone, once.
        let mut first = HashSet::new();
        while first.len() < ids.len() {
            let update = updates.recv().await.expect("an update");
            assert!(first.insert(update.user_id.clone()), "{update:?} twice");
            assert_eq!(update.presence, p(Availability::Offline, Activity::Offline));
        }

        // One user changes in their own Teams client, in the last batch.
        let changed = ids[1_300].clone();
        set_own_presence(&sim, &changed, "Busy", "InAMeeting").await;
        let update = updates.recv().await.expect("the change");
        assert_eq!(update.user_id, changed);
        assert_eq!(update.presence, p(Availability::Busy, Activity::InAMeeting));
        // Two more full rounds: the poller is sequential, so once the
        // simulator has answered six more calls, everything from the
        // earlier ones has been passed on.
        let seen = count(&sim, BY_IDS, Some(200));
        until(|| count(&sim, BY_IDS, Some(200)) >= seen + 6).await;
        assert!(
            updates.try_recv().is_err(),
            "nothing for users that did not change"
        );

        // Our own write shows up as a change too, once.
        client
            .set_presence(&ids[5], &busy_in_a_call(), HOUR)
            .await
            .unwrap();
        let update = updates.recv().await.expect("the write");
        assert_eq!(
            (update.user_id.as_str(), &update.presence),
            (ids[5].as_str(), &busy_in_a_call())
        );
        let seen = count(&sim, BY_IDS, Some(200));
        until(|| count(&sim, BY_IDS, Some(200)) >= seen + 6).await;
        assert!(updates.try_recv().is_err());
    })
    .await
    .expect("the poller keeps up");

    stop_tx.stop();
    task.await.expect("the poller stops");
    stop(sim).await;
}

// ------------------------------------------------------------------ groups

const GROUP_MEMBERS: &str = "GET /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user";

#[tokio::test]
async fn a_groups_users_page_and_an_unknown_group_or_a_missing_role_is_graphs_answer() {
    let sim = start(1_100, None).await;
    let ids = sim.user_ids();
    // 1,050 members: two pages of at most 999; ids or UPNs name them.
    let mut members: Vec<String> = ids[..1_049].to_vec();
    let (_, upn) = sim.users()[1_060].clone();
    members.push(upn);
    let group = control(
        &sim,
        "/groups",
        json!({"displayName": "Sales", "members": members}),
    )
    .await;
    let group_id = group["id"].as_str().expect("a group id").to_string();
    let client = jumping_client(&sim);
    let read = client
        .list_group_user_ids(&group_id)
        .await
        .expect("members");
    assert_eq!(read.len(), 1_050);
    let read: HashSet<String> = read.into_iter().collect();
    let mut expected: HashSet<String> = ids[..1_049].iter().map(|i| i.to_lowercase()).collect();
    expected.insert(ids[1_060].to_lowercase());
    assert_eq!(read, expected);
    assert_eq!(count(&sim, GROUP_MEMBERS, Some(200)), 2, "two pages of 999");

    // A membership change is read at the next call.
    control(
        &sim,
        "/groups",
        json!({"id": group_id, "members": [ids[5].clone(), ids[6].clone()]}),
    )
    .await;
    let read = client
        .list_group_user_ids(&group_id)
        .await
        .expect("members");
    assert_eq!(read, vec![ids[5].to_lowercase(), ids[6].to_lowercase()]);

    // An unknown group: Graph's 404 body, not retried.
    let unknown = "2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4";
    let error = client.list_group_user_ids(unknown).await.unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert_eq!(error.code(), Some("Request_ResourceNotFound"));
    assert!(error.to_string().contains(unknown), "{error}");

    // Without GroupMember.Read.All (or a broader role): Graph's 403.
    sim.set_roles(&["Presence.Read.All", "User.Read.All"]);
    let without = jumping_client(&sim);
    let error = without.list_group_user_ids(&group_id).await.unwrap_err();
    assert_eq!(error.status(), Some(403), "{error}");
    assert_eq!(error.code(), Some("Authorization_RequestDenied"));
    sim.set_roles(&["Group.Read.All", "User.Read.All"]);
    let broader = jumping_client(&sim);
    assert_eq!(
        broader
            .list_group_user_ids(&group_id)
            .await
            .expect("members")
            .len(),
        2
    );
    stop(sim).await;
}

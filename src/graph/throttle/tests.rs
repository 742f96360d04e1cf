use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::graph::clock::testing::InstantClock;
use crate::graph::clock::{Clock, TokioClock};
use crate::graph::testing::{Peer, Reply, client, throttle};

// ------------------------------------------------------------ pure parts

#[test]
fn request_ids_are_fresh_v4_uuids() {
    let a = new_request_id();
    let b = new_request_id();
    assert_ne!(a, b);
    for id in [&a, &b] {
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "version 4: {id}");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
    }
}

#[test]
fn the_burst_comes_out_of_the_sustained_rate() {
    let c = ThrottleConfig::default();
    // 50 at once, then the 1,451st a period later: 1,500 in a window.
    assert_eq!(c.split(), (1_451, 50));
    assert!((c.sustained_rate() - 1_451.0 / 30.0).abs() < 1e-9);
    let tiny = ThrottleConfig {
        requests: 1,
        burst: 10,
        ..ThrottleConfig::default()
    };
    assert_eq!(tiny.split(), (1, 1));
}

#[test]
fn backoff_grows_with_jitter_and_stays_bounded() {
    let policy = RetryPolicy::default();
    let mut b = policy.backoff();
    let waits: Vec<Duration> = (0..12).map(|_| b.next_backoff().unwrap()).collect();
    assert!(waits[0] >= Duration::from_millis(250) && waits[0] <= Duration::from_millis(750));
    assert!(waits.iter().all(|w| *w <= Duration::from_secs(45)));
    assert!(waits[6] > waits[0]);
}

// ------------------------------------------------------------ the budget

/// Grant times of `callers` tasks taking `each` permits, on paused time.
async fn grants(config: &ThrottleConfig, callers: usize, each: usize) -> Vec<Duration> {
    let clock = TokioClock::shared();
    let budget = Arc::new(Budget::new(config, clock.clone()));
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (budget, clock, times) = (budget.clone(), clock.clone(), times.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    budget.acquire(CallClass::AgentRead).await;
                    times.lock().unwrap().push(clock.now());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = times.lock().unwrap().clone();
    times.sort();
    times
}

/// The most grants inside any window of `window` (`times` sorted).
pub(super) fn busiest_window(times: &[Duration], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(start_paused = true)]
async fn no_window_ever_holds_more_than_the_budget() {
    let config = ThrottleConfig {
        requests: 100,
        window: Duration::from_secs(30),
        burst: 10,
        ..ThrottleConfig::default()
    };
    let times = grants(&config, 8, 50).await;
    assert_eq!(times.len(), 400);
    assert!(busiest_window(&times, config.window) <= 100);
    // Nor needlessly slow: the burst, then 390 at the sustained 90 per 30 s.
    assert!(
        *times.last().unwrap() <= Duration::from_secs(131),
        "{:?}",
        times.last()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn budget_holds_for_any_knobs(requests in 2u32..300, burst in 1u32..100, callers in 1usize..6) {
        let config = ThrottleConfig {
            requests,
            window: Duration::from_secs(30),
            burst,
            ..ThrottleConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let total = (requests as usize * 2).min(400);
        let times = rt.block_on(grants(&config, callers, total.div_ceil(callers)));
        prop_assert!(busiest_window(&times, config.window) <= requests as usize);
    }
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_every_caller() {
    let clock = TokioClock::shared();
    let budget = Arc::new(Budget::new(&ThrottleConfig::default(), clock.clone()));
    budget.acquire(CallClass::AgentRead).await;
    budget.pause_until(clock.now() + Duration::from_millis(2128));
    // A shorter pause never shortens a running one.
    budget.pause_until(clock.now() + Duration::from_secs(1));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (budget, clock) = (budget.clone(), clock.clone());
            tokio::spawn(async move {
                budget.acquire(CallClass::AgentRead).await;
                clock.now()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap() >= Duration::from_millis(2128));
    }
    assert_eq!(budget.paused_until(), None);
}

// requests_per_30s = 1 allows 1 request per 30 s, and every small budget
// exactly its own count: neither one more nor one less.
#[tokio::test(start_paused = true)]
async fn a_small_budget_allows_exactly_its_requests_per_window() {
    for requests in 1..=7 {
        let config = ThrottleConfig {
            requests,
            burst: 50,
            ..ThrottleConfig::default()
        };
        let times = grants(&config, 2, 8).await;
        assert_eq!(
            busiest_window(&times, config.window),
            requests as usize,
            "{requests} per window: {times:?}"
        );
    }
}

// ------------------------------------------------------------ the request path

fn get(client: &crate::graph::GraphClient) -> GraphRequest {
    GraphRequest {
        method: Method::GET,
        url: client.url(&["me"]),
        body: None,
        what: "test",
        class: CallClass::AgentRead,
    }
}

#[tokio::test]
async fn a_429_with_decimal_retry_after_pauses_then_succeeds() {
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(0);
        }
        match seen.iter().filter(|s| !s.is_token()).count() {
            0 => {
                Reply::graph_error(429, "TooManyRequests", "rid-429").header("Retry-After", "2.128")
            }
            _ => Reply::ok("{}"),
        }
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let answer = client.throttle().send(&get(&client)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(clock.sleeps(), vec![Duration::from_millis(2128)]);
    let requests = peer.graph_requests();
    assert_eq!(requests.len(), 2);
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.header("client-request-id").unwrap().to_owned())
        .collect();
    assert_ne!(ids[0], ids[1], "a fresh client-request-id on every attempt");
    assert_eq!(requests[1].header("authorization"), Some("Bearer token-0"));
}

#[tokio::test]
async fn a_429_slows_the_other_callers_too() {
    // The first Graph request is throttled; every request after it must
    // arrive after the pause (the peer reads the shared virtual clock).
    let clock = InstantClock::new();
    let at = clock.clone();
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = arrivals.clone();
    let peer = Peer::start(move |req, seen| {
        if req.is_token() {
            return Reply::token(0);
        }
        log.lock().unwrap().push(at.now());
        if seen.iter().filter(|s| !s.is_token()).count() == 0 {
            Reply::new(429, "{}").header("Retry-After", "3")
        } else {
            Reply::ok("{}")
        }
    })
    .await;
    let client = client(&peer, clock.clone(), throttle());
    client.throttle().send(&get(&client)).await.unwrap();
    let others: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .throttle()
                    .send(&get(&client))
                    .await
                    .map(|r| r.status)
            })
        })
        .collect();
    for o in others {
        assert_eq!(o.await.unwrap().unwrap(), 200);
    }
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 6);
    assert!(
        arrivals[1..].iter().all(|t| *t >= Duration::from_secs(3)),
        "{arrivals:?}"
    );
}

#[tokio::test]
async fn a_503_burst_is_retried_with_backoff() {
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(0);
        }
        match seen.iter().filter(|s| !s.is_token()).count() {
            0..=2 => Reply::graph_error(503, "serviceNotAvailable", "rid-503"),
            _ => Reply::ok("{\"ok\":true}"),
        }
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let answer = client.throttle().send(&get(&client)).await.unwrap();
    assert_eq!(answer.body, b"{\"ok\":true}");
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 3);
    assert!(sleeps[0] >= Duration::from_millis(50) && sleeps[0] <= Duration::from_millis(150));
    assert!(sleeps[2] > sleeps[0], "exponential: {sleeps:?}");
}

#[tokio::test]
async fn endless_5xx_gives_up_after_the_bounded_attempts() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::graph_error(502, "badGateway", "rid-502")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert_eq!(error.status(), Some(502));
    assert_eq!(error.code(), Some("badGateway"));
    assert_eq!(error.request_id(), Some("rid-502"));
    assert!(error.to_string().contains("rid-502"), "{error}");
    assert_eq!(peer.graph_requests().len(), 4);
}

#[tokio::test]
async fn endless_429s_give_up_after_the_bounded_waits() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::graph_error(429, "TooManyRequests", "rid").header("Retry-After", "1")
        }
    })
    .await;
    let clock = InstantClock::new();
    let client = client(&peer, clock.clone(), throttle());
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert_eq!(peer.graph_requests().len(), 4, "1 + max_throttled_retries");
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(1); 3]);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_once() {
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(seen.iter().filter(|s| s.is_token()).count());
        }
        match req.header("authorization") {
            Some("Bearer token-0") => {
                Reply::graph_error(401, "InvalidAuthenticationToken", "rid-401")
            }
            _ => Reply::ok("{}"),
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    client.throttle().send(&get(&client)).await.unwrap();
    assert_eq!(peer.token_requests(), 2);
    let auth: Vec<_> = peer
        .graph_requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer token-0", "Bearer token-1"]);
}

#[tokio::test]
async fn a_second_401_is_an_error_not_a_loop() {
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            Reply::token(seen.len())
        } else {
            Reply::graph_error(401, "InvalidAuthenticationToken", "rid-401")
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert_eq!(peer.graph_requests().len(), 2);
    assert_eq!(peer.token_requests(), 2);
}

#[tokio::test]
async fn a_400_is_not_retried_and_keeps_graphs_details() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            // No request-id header: it comes from the body's innererror.
            Reply::new(
                400,
                r#"{"error":{"code":"BadRequest","message":"nope","innererror":{"request-id":"rid-body"}}}"#,
            )
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert_eq!(error.code(), Some("BadRequest"));
    assert_eq!(error.request_id(), Some("rid-body"));
    assert_eq!(peer.graph_requests().len(), 1);
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(0);
        }
        match seen.iter().filter(|s| !s.is_token()).count() {
            0 => Reply::ok("{}").delay(Duration::from_secs(5)),
            _ => Reply::ok("{}"),
        }
    })
    .await;
    let knobs = ThrottleConfig {
        request_timeout: Duration::from_millis(150),
        ..throttle()
    };
    let client = client(&peer, InstantClock::new(), knobs.clone());
    client.throttle().send(&get(&client)).await.unwrap();
    assert_eq!(peer.graph_requests().len(), 2);

    let always_slow = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::ok("{}").delay(Duration::from_secs(5))
        }
    })
    .await;
    let knobs = ThrottleConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            ..knobs.retry
        },
        ..knobs
    };
    let client = crate::graph::testing::client(&always_slow, InstantClock::new(), knobs);
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert!(
        matches!(error, GraphError::Timeout { attempts: 2, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_graph_is_a_connection_error() {
    // Bind then drop: nothing listens on the port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let token_peer = Peer::start(|_, _| Reply::token(0)).await;
    let mut config = crate::graph::testing::config(&format!("http://127.0.0.1:{port}"));
    config.login_base = token_peer.base.clone();
    let client = crate::graph::GraphClient::builder(
        &config,
        crate::graph::Credential::Secret(crate::config::Secret::new("s")),
    )
    .clock(InstantClock::new())
    .throttle(throttle())
    .build()
    .unwrap();
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert!(
        matches!(error, GraphError::Connection { attempts: 4, .. }),
        "{error}"
    );
}

// 429 retries do not use up the attempts kept for 5xx.
#[tokio::test]
async fn a_503_after_some_429s_is_still_retried() {
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(0);
        }
        match seen.iter().filter(|s| !s.is_token()).count() {
            0..=2 => Reply::graph_error(429, "TooManyRequests", "rid").header("Retry-After", "0.5"),
            3 => Reply::graph_error(503, "serviceNotAvailable", "rid-503"),
            _ => Reply::ok("{}"),
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    // max_throttled_retries 3 (not exceeded), max_attempts 4 (first 5xx):
    let result = client.throttle().send(&get(&client)).await;
    assert_eq!(result.map(|r| r.status).map_err(|e| e.status()), Ok(200));
}

#[tokio::test]
async fn throttled_refreshed_and_failed_attempts_are_counted_apart() {
    // A 401, two 429s, then 5xx up to one short of max_attempts (4): every
    // budget is within its bound, so the call succeeds on the 7th attempt.
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(seen.len());
        }
        match seen.iter().filter(|s| !s.is_token()).count() {
            0 => Reply::graph_error(401, "InvalidAuthenticationToken", "rid-401"),
            1 | 3 => Reply::graph_error(429, "TooManyRequests", "rid").header("Retry-After", "1"),
            2 | 4 | 5 => Reply::graph_error(502, "badGateway", "rid-502"),
            _ => Reply::ok("{}"),
        }
    })
    .await;
    let first = client(&peer, InstantClock::new(), throttle());
    let response = first.throttle().send(&get(&first)).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(peer.graph_requests().len(), 7);
    // And a fourth 5xx still ends it, 429s or not.
    let peer = Peer::start(|req, seen| {
        if req.is_token() {
            return Reply::token(0);
        }
        match seen.iter().filter(|s| !s.is_token()).count() {
            0 | 2 => Reply::graph_error(429, "TooManyRequests", "rid").header("Retry-After", "1"),
            _ => Reply::graph_error(502, "badGateway", "rid-502"),
        }
    })
    .await;
    let client = client(&peer, InstantClock::new(), throttle());
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert_eq!(error.status(), Some(502));
    assert_eq!(peer.graph_requests().len(), 6, "2 throttled + 4 failed");
}

#[tokio::test]
async fn an_answer_over_the_body_limit_is_an_error() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            return Reply::token(0);
        }
        Reply::ok(format!("{{\"value\":\"{}\"}}", "x".repeat(4_096)))
            .header("request-id", "rid-big")
    })
    .await;
    let knobs = ThrottleConfig {
        max_body: 1_024,
        ..throttle()
    };
    let small = client(&peer, InstantClock::new(), knobs);
    let error = small.throttle().send(&get(&small)).await.unwrap_err();
    assert!(matches!(error, GraphError::Decode { .. }), "{error}");
    assert!(error.to_string().contains("1024 bytes"), "{error}");
    assert_eq!(error.request_id(), Some("rid-big"));
    assert_eq!(peer.graph_requests().len(), 1, "not retried");
    // Within the limit, the same answer is read.
    let client = client(
        &peer,
        InstantClock::new(),
        ThrottleConfig {
            max_body: 8_192,
            ..throttle()
        },
    );
    assert_eq!(
        client.throttle().send(&get(&client)).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn a_shut_gate_sends_nothing() {
    let peer = Peer::start(|req, _| {
        if req.is_token() {
            Reply::token(0)
        } else {
            Reply::ok("{}")
        }
    })
    .await;
    let gate = Arc::new(crate::cluster::gate::Gate::open());
    let client = crate::graph::GraphClient::builder(
        &crate::graph::testing::config(&peer.base),
        crate::graph::Credential::Secret(crate::config::Secret::new("s3cret")),
    )
    .clock(InstantClock::new())
    .throttle(throttle())
    .gate(Some(Arc::clone(&gate)))
    .build()
    .unwrap();
    assert_eq!(
        client.throttle().send(&get(&client)).await.unwrap().status,
        200
    );
    assert_eq!(peer.graph_requests().len(), 1);

    gate.close("another node holds the lease");
    let error = client.throttle().send(&get(&client)).await.unwrap_err();
    assert!(
        matches!(&error, GraphError::NotActive { reason } if reason.contains("another node")),
        "{error}"
    );
    assert!(!error.is_outage(), "Graph itself is fine");
    assert_eq!(peer.graph_requests().len(), 1, "nothing more reached Graph");
}

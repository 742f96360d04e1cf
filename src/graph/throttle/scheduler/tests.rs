//! The scheduler's rules on paused tokio time: writes first, no window over
//! the budget, the read round from what writes leave, a lower rate after a
//! 429 and its recovery.

use super::super::tests::busiest_window;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::graph::clock::TokioClock;
use crate::graph::poller::{PollPlan, PollTarget};

fn budget(requests: u32, burst: u32) -> (Arc<Budget>, SharedClock) {
    let clock = TokioClock::shared();
    let config = ThrottleConfig {
        requests,
        burst,
        ..ThrottleConfig::default()
    };
    (Arc::new(Budget::new(&config, clock.clone())), clock)
}

/// Lets spawned tasks run until `n` callers wait for the budget.
async fn until_waiting(budget: &Budget, n: usize) {
    for _ in 0..10_000 {
        let waiting: usize = budget.report().waiting.iter().map(|(_, n)| n).sum();
        if waiting == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never {n} waiting: {:?}", budget.report());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_write_goes_before_every_waiting_read() {
    let (budget, _clock) = budget(30, 1);
    // The budget is spent: everyone below waits for the next request.
    budget.acquire(CallClass::AgentRead).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |class: CallClass, n: usize| {
        let (budget, order) = (budget.clone(), order.clone());
        tokio::spawn(async move {
            budget.acquire(class).await;
            order.lock().unwrap().push((class, n));
        })
    };
    let mut tasks = Vec::new();
    // The slower tiers and the reads queue first, the writes after them.
    tasks.push(spawn(CallClass::Reconcile, 0));
    tasks.push(spawn(CallClass::Directory, 0));
    until_waiting(&budget, 2).await;
    for n in 0..3 {
        tasks.push(spawn(CallClass::AgentRead, n));
    }
    until_waiting(&budget, 5).await;
    for n in 0..3 {
        tasks.push(spawn(CallClass::Write, n));
    }
    until_waiting(&budget, 8).await;
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            (CallClass::Write, 0),
            (CallClass::Write, 1),
            (CallClass::Write, 2),
            (CallClass::AgentRead, 0),
            (CallClass::AgentRead, 1),
            (CallClass::AgentRead, 2),
            (CallClass::Directory, 0),
            (CallClass::Reconcile, 0),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_leaves_the_queue() {
    let (budget, clock) = budget(30, 1);
    budget.acquire(CallClass::Write).await;
    // A write that gives up while waiting must not hold the reads back.
    let gave_up = {
        let budget = budget.clone();
        tokio::spawn(async move { budget.acquire(CallClass::Write).await })
    };
    until_waiting(&budget, 1).await;
    gave_up.abort();
    let _ = gave_up.await;
    until_waiting(&budget, 0).await;
    let at = budget.acquire(CallClass::AgentRead).await;
    assert_eq!(at, Duration::from_secs(1), "{:?}", clock.now());
}

/// Callers of every class, `each` requests apiece, some of them told 429
/// now and then; the grant times.
async fn mixed(requests: u32, burst: u32, callers: usize, each: usize) -> Vec<Duration> {
    let (budget, _clock) = budget(requests, burst);
    let times = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let (budget, times) = (budget.clone(), times.clone());
            tokio::spawn(async move {
                let class = CallClass::ALL[i % CallClass::ALL.len()];
                for n in 0..each {
                    let at = budget.acquire(class).await;
                    times.lock().unwrap().push(at);
                    if (n + i) % 7 == 3 {
                        budget.throttled(at);
                    }
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

#[tokio::test(start_paused = true)]
async fn no_30s_window_holds_more_than_the_budget_with_every_class_and_429s() {
    let times = mixed(100, 10, 8, 40).await;
    assert_eq!(times.len(), 320);
    assert!(busiest_window(&times, Duration::from_secs(30)) <= 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn no_window_overshoots_for_any_knobs(
        requests in 2u32..200,
        burst in 1u32..60,
        callers in 1usize..9,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let total = (requests as usize * 2).min(300);
        let times = rt.block_on(mixed(requests, burst, callers, total.div_ceil(callers)));
        prop_assert!(busiest_window(&times, Duration::from_secs(30)) <= requests as usize);
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_halves_the_rate_once_per_round_then_it_recovers() {
    let (budget, clock) = budget(1_500, 50);
    let full = budget.configured_rate();
    assert!((budget.rate_limit() - full).abs() < 1e-9);
    let sent = budget.acquire(CallClass::AgentRead).await;
    let early = budget.acquire(CallClass::AgentRead).await;
    budget.pause_until(clock.now() + Duration::from_secs(2));
    budget.throttled(sent);
    assert!((budget.rate_limit() - full * DECREASE).abs() < 1e-9);
    // Another 429 to a request sent at the old rate: the same storm.
    budget.throttled(early);
    assert!((budget.rate_limit() - full * DECREASE).abs() < 1e-9);
    // No recovery during the pause.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!((budget.rate_limit() - full * DECREASE).abs() < 1e-9);
    // A 429 to a request sent at the lowered rate lowers it again.
    let later = budget.acquire(CallClass::AgentRead).await;
    budget.throttled(later);
    let quarter = full * DECREASE * DECREASE;
    assert!((budget.rate_limit() - quarter).abs() < 1e-9);
    // Then it grows back additively, up to the budget and never past it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = budget.rate_limit() - quarter;
    assert!((grown - full * RECOVERY_PER_SECOND).abs() < 1e-6, "{grown}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!((budget.rate_limit() - full).abs() < 1e-9);
    // Storms never take it below the floor.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let at = budget.acquire(CallClass::Write).await;
        budget.throttled(at);
    }
    assert!((budget.rate_limit() - full * MIN_RATE_SHARE).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn after_a_429_requests_leave_at_the_lower_rate() {
    let (budget, clock) = budget(300, 1);
    let period = Duration::from_millis(100);
    let first = budget.acquire(CallClass::Write).await;
    assert_eq!(budget.acquire(CallClass::Write).await - first, period);
    let sent = budget.acquire(CallClass::Write).await;
    budget.throttled(sent);
    let start = budget.acquire(CallClass::Write).await;
    let next = budget.acquire(CallClass::Write).await;
    // Half the rate: twice the period, give or take the recovery meanwhile.
    let gap = next - start;
    assert!(
        gap > period.mul_f64(1.8) && gap <= period * 2,
        "{gap:?} at {:?}",
        clock.now()
    );
}

#[tokio::test(start_paused = true)]
async fn the_read_round_follows_the_budget_writes_leave() {
    let (budget, clock) = budget(1_500, 50);
    let target = PollTarget::default();
    let plan = |users: usize| {
        PollPlan::with_spare(
            users,
            budget.rate_limit(),
            budget.spare_rate(CallClass::AgentRead),
            &target,
        )
    };
    // Idle writes: 10,000 users read every second or faster, 50,000 in
    // about 3 s (77 calls at 60 % of 48.4 calls/s).
    let idle_10k = plan(10_000).interval;
    let idle_50k = plan(50_000).interval;
    assert!(idle_10k <= Duration::from_secs(1), "{idle_10k:?}");
    assert!(idle_50k <= Duration::from_secs(3), "{idle_50k:?}");
    // Writes at 30 a second: the round gets longer.
    for _ in 0..150 {
        budget.acquire(CallClass::Write).await;
        let next = clock.now() + Duration::from_millis(33);
        clock.sleep_until(next).await;
    }
    let busy_50k = plan(50_000).interval;
    assert!(busy_50k > idle_50k, "{busy_50k:?} vs {idle_50k:?}");
    assert!(busy_50k <= target.freshness_floor);
    // Writes taking everything: the freshness floor, no slower.
    let (writes_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let writers: Vec<_> = (0..64)
        .map(|_| {
            let (budget, mut stop) = (budget.clone(), writes_tx.subscribe());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = budget.acquire(CallClass::Write) => {}
                        _ = stop.recv() => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let saturated = plan(50_000).interval;
    let floor = target.freshness_floor;
    assert!(
        saturated >= floor && saturated <= floor + Duration::from_millis(1),
        "{saturated:?}"
    );
    drop(writes_tx);
    for w in writers {
        w.await.unwrap();
    }
    // Writes quiet again: back to the idle round once they are out of
    // the measured window.
    tokio::time::sleep(RATE_WINDOW).await;
    assert_eq!(plan(50_000).interval, idle_50k);
}

#[tokio::test(start_paused = true)]
async fn the_report_shows_each_class_share() {
    let (budget, _clock) = budget(100, 10);
    for _ in 0..6 {
        budget.acquire(CallClass::Write).await;
    }
    for _ in 0..3 {
        budget.acquire(CallClass::AgentRead).await;
    }
    let report = budget.report();
    assert_eq!(report.shares[0], (CallClass::Write, 0.06));
    assert_eq!(report.shares[1], (CallClass::AgentRead, 0.03));
    assert_eq!(report.shares[2], (CallClass::Directory, 0.0));
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(budget.report().shares.iter().all(|(_, s)| *s == 0.0));
}

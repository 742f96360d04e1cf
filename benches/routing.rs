//! Routing decision latency (p50, p99) and decisions per second, per strategy,
//! at 1,000 and 10,000 agents with 50 and 500 queues.
//!
//! `cargo bench --bench routing`. Each decision is timed on its own (divan
//! and criterion report sample means, not per-decision percentiles), on one
//! thread. Set-up per run: every agent serves 5 queues picked at random
//! (so a queue has 100 to 1,000 agents), with random positions; each queue
//! needs one of 10 skills at a level 0–50 and every agent has every skill at
//! a random level; 60 % of agents are free, the rest are not routable or on
//! a contact. Two decisions are measured:
//! - **arrival**: a contact arrives in a random queue and is offered to the
//!   agent the strategy picks (`add_contact`); the contact is then abandoned
//!   (untimed) so the agent is free again;
//! - **free-up**: with contacts waiting in every queue and no agent free, an
//!   agent completes its contact and takes the best one waiting in its
//!   queues (`complete`, wrap-up 0); the new contact is accepted (untimed).
//!
//! After each decision the changes to persist are taken, as the daemon does
//! every step (untimed).
//!
//! `ROUTING_BENCH_DECISIONS` sets the decisions per case (default 20,000).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use presence_sync::routing::{
    AgentSpec, Gate, Membership, NewContact, QueueSettings, Router, RoutingDecision, Strategy,
};
use presence_sync::time::Timestamp;

const SKILLS: usize = 10;
const QUEUES_PER_AGENT: usize = 5;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        presence_sync::routing::strategy::next_random(&mut self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn queues(n: usize, strategy: Strategy, rng: &mut Rng) -> Vec<QueueSettings> {
    (0..n)
        .map(|i| {
            let mut q = QueueSettings::new(&format!("q{i}"), strategy);
            q.skills
                .insert(format!("s{}", rng.below(SKILLS)), rng.below(51) as u8);
            q.wrap_up = Duration::ZERO;
            q.offer_timeout = Duration::from_secs(3600);
            q
        })
        .collect()
}

fn spec(queues: usize, rng: &mut Rng) -> AgentSpec {
    let mut serves = Vec::new();
    while serves.len() < QUEUES_PER_AGENT.min(queues) {
        let q = format!("q{}", rng.below(queues));
        if !serves.iter().any(|m: &Membership| m.queue == q) {
            serves.push(Membership {
                queue: q,
                position: Some(rng.below(100) as u32),
            });
        }
    }
    AgentSpec {
        skills: (0..SKILLS)
            .map(|s| (format!("s{s}"), 20 + rng.below(81) as u8))
            .collect(),
        capacity: 1,
        queues: serves,
        groups: Vec::new(),
    }
}

fn contact(id: u64, queue: usize) -> NewContact {
    NewContact {
        id: Some(format!("b{id}")),
        queue: format!("q{queue}"),
        skills: BTreeMap::new(),
        priority: None,
        data: serde_json::Value::Null,
    }
}

struct World {
    r: Router,
    now: Timestamp,
    out: Vec<RoutingDecision>,
    rng: Rng,
    queues: usize,
    agents: usize,
    next: u64,
}

fn world(agents: usize, queues_n: usize, strategy: Strategy, free_share: f64) -> World {
    let mut rng = Rng(42);
    let qs = queues(queues_n, strategy, &mut rng);
    let mut r = Router::new(qs, 7);
    let mut now = Timestamp::from_secs(1_800_000_000);
    let mut out = Vec::new();
    for a in 0..agents {
        let id = format!("a{a}");
        r.upsert_agent(now, &id, spec(queues_n, &mut rng), &mut out);
        let free = (rng.below(1000) as f64) < free_share * 1000.0;
        let gate = if free {
            Gate::OPEN
        } else {
            Gate {
                cc_routable: false,
                ..Gate::OPEN
            }
        };
        r.set_gate(now, &id, gate, &mut out);
        now = now + Duration::from_millis(1);
    }
    out.clear();
    World {
        r,
        now,
        out,
        rng,
        queues: queues_n,
        agents,
        next: 0,
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    let total: Duration = samples.iter().sum();
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: samples.len() as f64 / total.as_secs_f64(),
    }
}

fn arrival(w: &mut World, n: usize) -> Stats {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        w.next += 1;
        let q = w.rng.below(w.queues);
        let c = contact(w.next, q);
        let id = format!("b{}", w.next);
        w.now = w.now + Duration::from_micros(100);
        let started = Instant::now();
        let result = w.r.add_contact(w.now, c, &mut w.out);
        samples.push(started.elapsed());
        black_box(&result);
        w.out.clear();
        let _ = w.r.abandon(w.now, &id, &mut w.out);
        w.out.clear();
        // The daemon takes what to persist after every step.
        black_box(w.r.take_changes());
    }
    stats(samples)
}

fn offered(out: &[RoutingDecision]) -> Option<String> {
    out.iter().find_map(|d| match d {
        RoutingDecision::Offered { contact, .. } => Some(contact.clone()),
        _ => None,
    })
}

fn free_up(w: &mut World, n: usize) -> Stats {
    // Every free agent gets a contact; then every queue gets waiting ones.
    let mut on: Vec<String> = Vec::new();
    for _ in 0..w.agents * 2 {
        w.next += 1;
        let q = w.rng.below(w.queues);
        let _ = w.r.add_contact(w.now, contact(w.next, q), &mut w.out);
        if let Some(c) = offered(&w.out) {
            let _ = w.r.accept(w.now, &c, None, &mut w.out);
            on.push(c);
        }
        w.out.clear();
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        if on.is_empty() {
            break;
        }
        let c = on.swap_remove(i % on.len());
        w.now = w.now + Duration::from_micros(100);
        let started = Instant::now();
        let result = w.r.complete(w.now, &c, None, &mut w.out);
        samples.push(started.elapsed());
        black_box(&result);
        if let Some(next) = offered(&w.out) {
            let _ = w.r.accept(w.now, &next, None, &mut w.out);
            on.push(next);
        }
        w.out.clear();
        // Keep contacts waiting everywhere.
        w.next += 1;
        let q = w.rng.below(w.queues);
        let _ = w.r.add_contact(w.now, contact(w.next, q), &mut w.out);
        w.out.clear();
        black_box(w.r.take_changes());
    }
    stats(samples)
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent; keep
    // that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("ROUTING_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200 } else { 20_000 });
    let sizes: &[(usize, usize)] = if quick {
        &[(1_000, 50)]
    } else {
        &[(1_000, 50), (1_000, 500), (10_000, 50), (10_000, 500)]
    };
    println!(
        "| agents | queues | strategy | arrival p50 | arrival p99 | arrival decisions/s | free-up p50 | free-up p99 | free-up decisions/s |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for &(agents, queues) in sizes {
        for strategy in Strategy::ALL {
            let mut w = world(agents, queues, strategy, 0.6);
            let a = arrival(&mut w, n);
            let f = free_up(&mut w, n);
            println!(
                "| {agents} | {queues} | {strategy} | {:.2} µs | {:.2} µs | {:.0} | {:.2} µs | {:.2} µs | {:.0} |",
                a.p50.as_secs_f64() * 1e6,
                a.p99.as_secs_f64() * 1e6,
                a.per_sec,
                f.p50.as_secs_f64() * 1e6,
                f.p99.as_secs_f64() * 1e6,
                f.per_sec,
            );
        }
    }
}

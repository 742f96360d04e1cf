//! Each strategy on a small example a reader can check by hand.

use super::*;

/// Three agents a, b, c in `sales`, idle since 30, 20 and 10 s ago
/// (a idle longest), positions c=1, a=2, b=3.
fn three(strategy: Strategy) -> Bench {
    let mut b = Bench::new(vec![queue("sales", strategy)]);
    for (id, position) in [("a", 2), ("b", 3), ("c", 1)] {
        let mut s = spec(&["sales"]);
        s.queues[0].position = Some(position);
        b.r.upsert_agent(b.now, id, s, &mut b.out);
    }
    for id in ["a", "b", "c"] {
        b.gate(id, Gate::OPEN);
        b.later(10);
    }
    b.offers();
    b
}

/// Offers `n` contacts one after another, each accepted and completed
/// before the next (with wrap-up over), and returns who got each.
fn run(b: &mut Bench, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for i in 0..n {
        let id = format!("k{i}");
        b.add(contact(&id, "sales"));
        let offers = b.offers();
        assert_eq!(offers.len(), 1, "{offers:?}");
        got.push(offers[0].1.clone());
        b.accept(&id);
        b.later(1);
        b.complete(&id);
        b.later(10);
    }
    got
}

#[test]
fn longest_idle_takes_the_agent_idle_longest() {
    let mut b = three(Strategy::LongestIdle);
    assert_eq!(run(&mut b, 4), vec!["a", "b", "c", "a"]);
}

#[test]
fn round_robin_goes_on_after_the_last_one_offered() {
    let mut b = three(Strategy::RoundRobin);
    assert_eq!(run(&mut b, 5), vec!["c", "a", "b", "c", "a"]);
}

#[test]
fn top_down_always_asks_the_first_in_agent_order() {
    let mut b = three(Strategy::TopDown);
    assert_eq!(run(&mut b, 3), vec!["c", "c", "c"]);
}

#[test]
fn fewest_contacts_evens_out_the_day() {
    let mut b = three(Strategy::FewestContacts);
    // a idle longest takes the first; then b and c (0 each, b idle longer).
    assert_eq!(run(&mut b, 4), vec!["a", "b", "c", "a"]);
    // The counters start again on a new day (UTC).
    let view = b.r.agent_view("a", b.now).unwrap();
    assert_eq!(view.contacts_today, 2);
    b.later(86_400);
    assert_eq!(b.r.agent_view("a", b.now).unwrap().contacts_today, 0);
}

#[test]
fn least_occupied_picks_the_least_time_on_contacts_today() {
    let mut b = three(Strategy::LeastOccupied);
    // A long contact for a, a short one for b.
    b.add(contact("long", "sales"));
    assert_eq!(b.offers(), vec![pair("long", "a")]);
    b.accept("long");
    b.add(contact("short", "sales"));
    assert_eq!(b.offers(), vec![pair("short", "b")]);
    b.accept("short");
    b.later(5);
    b.complete("short");
    b.later(300);
    b.complete("long");
    b.later(10);
    // c has 0 s, b 15 s (5 talk + 10 wrap-up), a 315 s; each contact in
    // `run` adds 11 s (1 talk + 10 wrap-up): c 11 s, c 22 s, then b.
    assert_eq!(run(&mut b, 3), vec!["c", "c", "b"]);
}

#[test]
fn skills_best_prefers_the_highest_proficiency_then_idle_time() {
    let mut sales = queue("sales", Strategy::SkillsBest);
    sales.skills.insert("english".into(), 10);
    let mut b = Bench::new(vec![sales]);
    for (id, level) in [("a", 50), ("b", 90), ("c", 90)] {
        let mut s = spec(&["sales"]);
        s.skills.insert("english".into(), level);
        b.agent(id, s);
        b.later(10);
    }
    b.offers();
    // b and c tie on 90; b is idle longer.
    assert_eq!(run(&mut b, 3), vec!["b", "c", "b"]);
}

#[test]
fn random_is_spread_and_follows_the_seed() {
    let draw = || {
        let mut b = three(Strategy::Random);
        run(&mut b, 30)
    };
    let first = draw();
    assert_eq!(first, draw(), "same seed, same choices");
    for agent in ["a", "b", "c"] {
        let n = first.iter().filter(|a| *a == agent).count();
        assert!(n >= 3, "{agent} got {n} of 30: {first:?}");
    }
}

#[test]
fn every_strategy_name_parses_back() {
    for s in Strategy::ALL {
        assert_eq!(Strategy::parse(s.as_str()), Some(s));
    }
    assert_eq!(Strategy::parse("longest_idle"), None);
}

#[test]
fn a_new_day_starts_every_agents_count_again() {
    let mut b = Bench::new(vec![queue("sales", Strategy::FewestContacts)]);
    b.agent("a", spec(&["sales"]));
    assert_eq!(run(&mut b, 1), vec!["a"]);
    b.later(10);
    // b comes later, so it is idle for less time than a.
    b.agent("b", spec(&["sales"]));
    b.add(contact("today", "sales"));
    assert_eq!(
        b.offers(),
        vec![pair("today", "b")],
        "a has 1 contact today"
    );
    b.r.abandon(b.now, "today", &mut b.out).unwrap();
    b.out.clear();
    b.later(86_400);
    b.add(contact("tomorrow", "sales"));
    assert_eq!(
        b.offers(),
        vec![pair("tomorrow", "a")],
        "both have 0 today, and a has been idle longer"
    );
}

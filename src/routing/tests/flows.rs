//! One rule at a time: offers, accept and complete, RONA and decline, pause,
//! priority, skills, several queues, overflow, gates, errors, restore.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

#[test]
fn a_contact_is_offered_at_once_and_the_agent_is_reserved() {
    let mut b = Bench::new(vec![queue("sales", Strategy::LongestIdle)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    assert!(matches!(&b.out[0], RoutingDecision::Queued { contact, .. } if contact == "c1"));
    assert_eq!(b.offers(), vec![pair("c1", "a1")]);
    b.add(contact("c2", "sales"));
    assert_eq!(b.offers(), vec![], "a1 holds an offer: it is reserved");
    assert_eq!(b.r.place_in_queue("c2"), Some(1));
    let view = b.r.agent_view("a1", b.now).unwrap();
    assert!(!view.eligible);
    assert_eq!(
        view.blockers,
        vec![Blocker::Offered {
            contact: "c1".into()
        }]
    );
}

#[test]
fn complete_starts_wrap_up_and_the_next_contact_waits_for_its_end() {
    let mut b = Bench::new(vec![queue("sales", Strategy::LongestIdle)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.add(contact("c2", "sales"));
    b.offers();
    b.accept("c1");
    b.later(30);
    b.complete("c1");
    assert!(b.out.iter().any(|d| matches!(d, RoutingDecision::Completed { wrap_up_until, .. } if *wrap_up_until == b.now + Duration::from_secs(10))));
    assert_eq!(b.offers(), vec![]);
    let view = b.r.agent_view("a1", b.now).unwrap();
    assert!(matches!(view.blockers[..], [Blocker::WrapUp { .. }]));
    assert_eq!(view.contacts_today, 1);
    assert_eq!(view.busy_today, Duration::from_secs(40), "talk and wrap-up");
    b.later(9);
    assert_eq!(b.offers(), vec![]);
    b.later(1);
    assert_eq!(b.offers(), vec![pair("c2", "a1")]);
}

#[test]
fn no_answer_puts_the_contact_back_and_backs_the_agent_off() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.offers();
    b.later(19);
    assert_eq!(b.offered_to("c1").as_deref(), Some("a1"));
    b.later(1);
    assert!(b.out.iter().any(|d| matches!(d, RoutingDecision::Rona { contact, agent, .. } if contact == "c1" && agent == "a1")));
    assert_eq!(b.offers(), vec![], "a1 backs off; nobody else serves");
    b.agent("a2", spec(&["sales"]));
    assert_eq!(b.offers(), vec![pair("c1", "a2")]);
    let view = b.r.agent_view("a1", b.now).unwrap();
    assert!(matches!(view.blockers[..], [Blocker::BackingOff { .. }]));
    assert_eq!(view.state.misses, 1);
}

#[test]
fn a_declined_contact_keeps_its_place_ahead_of_later_arrivals() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.add(contact("c2", "sales"));
    b.offers();
    b.r.decline(b.now, "c1", Some("a1"), &mut b.out).unwrap();
    assert_eq!(b.r.place_in_queue("c1"), Some(1));
    assert_eq!(b.r.place_in_queue("c2"), Some(2));
    b.agent("a2", spec(&["sales"]));
    assert_eq!(b.offers(), vec![pair("c1", "a2")]);
}

#[test]
fn missed_offers_in_a_row_pause_the_agent_until_resumed() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    for i in 0..3 {
        let id = format!("c{i}");
        b.add(contact(&id, "sales"));
        b.r.decline(b.now, &id, None, &mut b.out).unwrap();
        b.r.abandon(b.now, &id, &mut b.out).unwrap();
        b.later(5);
    }
    assert!(
        b.out.iter().any(
            |d| matches!(d, RoutingDecision::AgentPaused { agent, misses: 3 } if agent == "a1")
        )
    );
    b.offers();
    b.add(contact("c9", "sales"));
    assert_eq!(b.offers(), vec![]);
    let view = b.r.agent_view("a1", b.now).unwrap();
    assert!(matches!(
        view.blockers[..],
        [Blocker::Paused { misses: 3, .. }]
    ));
    assert_eq!(b.r.resume_agent(b.now, "a1", &mut b.out), Ok(true));
    assert!(
        b.out
            .iter()
            .any(|d| matches!(d, RoutingDecision::AgentResumed { .. }))
    );
    assert_eq!(b.offers(), vec![pair("c9", "a1")]);
}

#[test]
fn an_accepted_offer_resets_the_miss_count() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    for i in 0..2 {
        let id = format!("c{i}");
        b.add(contact(&id, "sales"));
        b.r.decline(b.now, &id, None, &mut b.out).unwrap();
        b.r.abandon(b.now, &id, &mut b.out).unwrap();
        b.later(5);
    }
    b.add(contact("c2", "sales"));
    b.accept("c2");
    assert_eq!(b.r.agent_view("a1", b.now).unwrap().state.misses, 0);
}

#[test]
fn higher_priority_goes_first_then_arrival() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.add(contact("low1", "sales"));
    b.add(NewContact {
        priority: Some(5),
        ..contact("high", "sales")
    });
    b.add(contact("low2", "sales"));
    b.agent("a1", spec(&["sales"]));
    assert_eq!(b.offers(), vec![pair("high", "a1")]);
    b.accept("high");
    b.complete("high");
    b.later(10);
    assert_eq!(b.offers(), vec![pair("low1", "a1")]);
}

#[test]
fn skills_decide_who_may_take_a_contact() {
    let mut sales = queue("sales", Strategy::TopDown);
    sales.skills = BTreeMap::from([("english".to_string(), 50)]);
    let mut b = Bench::new(vec![sales]);
    let mut novice = spec(&["sales"]);
    novice.skills.insert("english".into(), 30);
    let mut expert = spec(&["sales"]);
    expert.skills = BTreeMap::from([("english".into(), 90), ("french".into(), 60)]);
    b.agent("a0-novice", novice);
    b.add(contact("c1", "sales"));
    assert_eq!(b.offers(), vec![]);
    let view = b.r.agent_view("a0-novice", b.now).unwrap();
    assert_eq!(view.queues[0].missing, vec![("english".into(), 50, 30)]);
    assert!(!view.eligible);
    b.agent("a1-expert", expert);
    assert_eq!(b.offers(), vec![pair("c1", "a1-expert")]);
    // A contact's own skills come on top of the queue's.
    b.add(NewContact {
        skills: BTreeMap::from([("french".to_string(), 70)]),
        ..contact("c2", "sales")
    });
    b.accept("c1");
    b.complete("c1");
    b.later(10);
    assert_eq!(b.offers(), vec![], "french 60 < 70");
}

#[test]
fn an_agent_in_several_queues_takes_from_its_first_queue_on_equal_priority() {
    let mut b = Bench::new(vec![
        queue("sales", Strategy::TopDown),
        queue("support", Strategy::TopDown),
    ]);
    b.add(contact("sales-1", "sales"));
    b.add(contact("support-1", "support"));
    b.agent("a1", spec(&["support", "sales"]));
    assert_eq!(b.offers(), vec![pair("support-1", "a1")]);
    // But a higher priority elsewhere wins.
    b.accept("support-1");
    b.add(NewContact {
        priority: Some(9),
        ..contact("sales-vip", "sales")
    });
    b.add(contact("support-2", "support"));
    b.complete("support-1");
    b.later(10);
    assert_eq!(b.offers(), vec![pair("sales-vip", "a1")]);
}

#[test]
fn groups_make_agents_members_after_their_own_queues() {
    let mut vip = queue("vip", Strategy::TopDown);
    vip.groups = vec!["gold".into()];
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown), vip]);
    let mut s = spec(&["sales"]);
    s.groups = vec!["gold".into()];
    b.agent("a1", s);
    let view = b.r.agent_view("a1", b.now).unwrap();
    let names: Vec<&str> = view.queues.iter().map(|f| f.queue.as_str()).collect();
    assert_eq!(names, vec!["sales", "vip"]);
    b.add(contact("v1", "vip"));
    assert_eq!(b.offers(), vec![pair("v1", "a1")]);
}

#[test]
fn a_closed_gate_blocks_offers_and_opening_it_serves_the_queue() {
    let mut b = Bench::new(vec![queue("sales", Strategy::LongestIdle)]);
    b.agent("a1", spec(&["sales"]));
    b.gate(
        "a1",
        Gate {
            teams_blocking: true,
            ..Gate::OPEN
        },
    );
    b.add(contact("c1", "sales"));
    assert_eq!(b.offers(), vec![]);
    let view = b.r.agent_view("a1", b.now).unwrap();
    assert_eq!(view.blockers, vec![Blocker::TeamsBlocking]);
    b.later(60);
    b.gate("a1", Gate::OPEN);
    assert_eq!(b.offers(), vec![pair("c1", "a1")]);
    assert_eq!(
        b.r.agent_view("a1", b.now).unwrap().state.idle_since,
        b.now,
        "idle counts from when it became routable"
    );
}

#[test]
fn overflow_moves_a_contact_to_another_queue_after_its_max_wait() {
    let mut sales = queue("sales", Strategy::TopDown);
    sales.max_wait = Some(Duration::from_secs(60));
    sales.overflow = Some(OverflowTarget::Queue("backup".into()));
    let mut b = Bench::new(vec![sales, queue("backup", Strategy::TopDown)]);
    b.agent("a1", spec(&["backup"]));
    b.r.set_gate(b.now, "a1", Gate::default(), &mut b.out);
    b.add(contact("c1", "sales"));
    b.later(59);
    assert_eq!(b.r.contact("c1").unwrap().queue, "sales");
    b.later(1);
    assert!(b.out.iter().any(|d| matches!(d, RoutingDecision::Overflowed { to: OverflowTarget::Queue(q), waited, .. } if q == "backup" && *waited == Duration::from_secs(60))));
    assert_eq!(b.r.contact("c1").unwrap().queue, "backup");
    b.gate("a1", Gate::OPEN);
    assert_eq!(b.offers(), vec![pair("c1", "a1")]);
    assert_eq!(b.r.queue_view("sales", b.now).unwrap().totals.overflowed, 1);
}

#[test]
fn overflow_to_teams_users_ends_the_contact_in_the_router() {
    let mut sales = queue("sales", Strategy::TopDown);
    sales.max_wait = Some(Duration::from_secs(30));
    sales.overflow = Some(OverflowTarget::TeamsUsers(vec!["boss@contoso.com".into()]));
    let mut b = Bench::new(vec![sales]);
    b.add(contact("c1", "sales"));
    b.later(30);
    assert!(b.out.iter().any(|d| matches!(d, RoutingDecision::Overflowed { to: OverflowTarget::TeamsUsers(u), .. } if u == &["boss@contoso.com"])));
    assert_eq!(b.r.contact("c1").unwrap().phase.name(), "overflowed");
    assert_eq!(b.r.waiting(), 0);
}

#[test]
fn overflow_never_goes_round_in_a_circle() {
    let mut a = queue("a", Strategy::TopDown);
    a.max_wait = Some(Duration::from_secs(10));
    a.overflow = Some(OverflowTarget::Queue("b".into()));
    let mut bq = queue("b", Strategy::TopDown);
    bq.max_wait = Some(Duration::from_secs(10));
    bq.overflow = Some(OverflowTarget::Queue("a".into()));
    let mut b = Bench::new(vec![a, bq]);
    b.add(contact("c1", "a"));
    b.later(10);
    b.later(10);
    b.later(10);
    assert_eq!(b.r.contact("c1").unwrap().queue, "b");
    assert_eq!(b.r.contact("c1").unwrap().overflowed_from, vec!["a"]);
}

#[test]
fn an_agent_with_capacity_two_takes_a_second_contact_one_offer_at_a_time() {
    let mut b = Bench::new(vec![queue("chat", Strategy::TopDown)]);
    let mut s = spec(&["chat"]);
    s.capacity = 2;
    b.agent("a1", s);
    b.add(contact("c1", "chat"));
    b.add(contact("c2", "chat"));
    b.add(contact("c3", "chat"));
    assert_eq!(b.offers(), vec![pair("c1", "a1")]);
    b.accept("c1");
    assert_eq!(b.offers(), vec![pair("c2", "a1")]);
    b.accept("c2");
    assert_eq!(b.offers(), vec![]);
    let view = b.r.agent_view("a1", b.now).unwrap();
    assert_eq!(
        view.blockers,
        vec![Blocker::AtCapacity {
            active: 2,
            capacity: 2
        }]
    );
}

#[test]
fn wrong_inputs_are_refused_with_what_was_wrong() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    let now = b.now;
    let out = &mut b.out;
    assert_eq!(
        b.r.add_contact(now, contact("c1", "nope"), out),
        Err(RoutingError::UnknownQueue("nope".into()))
    );
    b.r.add_contact(now, contact("c1", "sales"), out).unwrap();
    b.r.add_contact(now, contact("c2", "sales"), out).unwrap();
    assert_eq!(
        b.r.add_contact(now, contact("c1", "sales"), out),
        Err(RoutingError::ContactExists("c1".into()))
    );
    assert!(matches!(
        b.r.add_contact(now, contact("", "sales"), out),
        Err(RoutingError::Invalid {
            field: "contact_id",
            ..
        })
    ));
    let bad_skill = NewContact {
        skills: BTreeMap::from([("x".to_string(), 101)]),
        ..contact("c3", "sales")
    };
    assert!(matches!(
        b.r.add_contact(now, bad_skill, out),
        Err(RoutingError::Invalid {
            field: "skills",
            ..
        })
    ));
    assert_eq!(
        b.r.accept(now, "zz", None, out),
        Err(RoutingError::UnknownContact("zz".into()))
    );
    assert_eq!(
        b.r.accept(now, "c2", None, out),
        Err(RoutingError::WrongState {
            contact: "c2".into(),
            state: "waiting",
            action: "accepted"
        })
    );
    assert_eq!(
        b.r.accept(now, "c1", Some("a2"), out),
        Err(RoutingError::WrongAgent {
            contact: "c1".into(),
            offered_to: "a1".into(),
            agent: "a2".into()
        })
    );
    assert!(matches!(
        b.r.complete(now, "c1", None, out),
        Err(RoutingError::WrongState {
            state: "offered",
            ..
        })
    ));
    b.r.accept(now, "c1", Some("a1"), out).unwrap();
    assert!(matches!(
        b.r.abandon(now, "c1", out),
        Err(RoutingError::WrongState {
            state: "accepted",
            ..
        })
    ));
    b.r.complete(now, "c1", None, out).unwrap();
    assert!(matches!(
        b.r.complete(now, "c1", None, out),
        Err(RoutingError::WrongState {
            state: "completed",
            ..
        })
    ));
    assert_eq!(
        b.r.resume_agent(now, "ghost", out),
        Err(RoutingError::UnknownAgent("ghost".into()))
    );
}

#[test]
fn contact_ids_are_made_up_when_not_given() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    let id = b.add(NewContact {
        id: None,
        ..contact("", "sales")
    });
    assert!(id.starts_with("ct-"));
    assert!(b.r.contact(&id).is_some());
}

#[test]
fn abandoning_an_offered_contact_frees_the_agent_without_a_miss() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.add(contact("c2", "sales"));
    b.offers();
    b.r.abandon(b.now, "c1", &mut b.out).unwrap();
    assert_eq!(b.offers(), vec![pair("c2", "a1")]);
    assert_eq!(b.r.agent_view("a1", b.now).unwrap().state.misses, 0);
}

#[test]
fn removing_a_queue_abandons_its_waiting_contacts() {
    let mut b = Bench::new(vec![
        queue("sales", Strategy::TopDown),
        queue("old", Strategy::TopDown),
    ]);
    b.add(contact("c1", "old"));
    b.add(contact("c2", "sales"));
    b.r.replace_queues(
        b.now,
        vec![queue("sales", Strategy::RoundRobin)],
        &mut b.out,
    );
    assert!(b.out.iter().any(|d| matches!(d, RoutingDecision::Abandoned { contact, reason: "queue_removed", .. } if contact == "c1")));
    assert_eq!(b.r.place_in_queue("c2"), Some(1));
    assert_eq!(
        b.r.queue_view("sales", b.now).unwrap().settings.strategy,
        Strategy::RoundRobin
    );
}

#[test]
fn removing_an_agent_puts_its_offer_back() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.offers();
    b.r.remove_agent(b.now, "a1", &mut b.out);
    assert_eq!(
        withdrawals(&b),
        vec![("c1".into(), "a1".into(), WithdrawReason::AgentRemoved)]
    );
    assert_eq!(b.r.place_in_queue("c1"), Some(1));
    b.agent("a2", spec(&["sales"]));
    assert_eq!(b.offers(), vec![pair("c1", "a2")]);
}

/// The withdrawals since the last `offers()`, as (contact, agent, reason).
fn withdrawals(b: &Bench) -> Vec<(String, String, WithdrawReason)> {
    b.out
        .iter()
        .filter_map(|d| match d {
            RoutingDecision::Withdrawn {
                contact,
                agent,
                reason,
                ..
            } => Some((contact.clone(), agent.clone(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_offer_is_withdrawn_without_a_miss_when_the_agent_stops_being_routable() {
    let closed = [
        (
            Gate {
                cc_routable: false,
                ..Gate::OPEN
            },
            WithdrawReason::CcStatusNotRoutable,
        ),
        (
            Gate {
                teams_blocking: true,
                ..Gate::OPEN
            },
            WithdrawReason::TeamsPresenceBlocking,
        ),
        (
            Gate {
                linked: false,
                ..Gate::OPEN
            },
            WithdrawReason::Unlinked,
        ),
    ];
    for (gate, reason) in closed {
        let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
        b.agent("a1", spec(&["sales"]));
        b.add(contact("c1", "sales"));
        assert_eq!(b.offers(), vec![pair("c1", "a1")]);
        b.later(5);
        b.gate("a1", gate);
        assert_eq!(withdrawals(&b), vec![("c1".into(), "a1".into(), reason)]);
        assert!(
            !b.out.iter().any(|d| matches!(
                d,
                RoutingDecision::Rona { .. } | RoutingDecision::Declined { .. }
            )),
            "{:?}",
            b.out
        );
        assert_eq!(b.offered_to("c1"), None, "{reason:?}");
        assert_eq!(b.r.place_in_queue("c1"), Some(1));
        // The offer's timeout passes: nothing rings, nothing counts.
        b.later(30);
        b.offers();
        let view = b.r.agent_view("a1", b.now).unwrap();
        assert_eq!(view.state.misses, 0, "{reason:?}");
        assert_eq!(view.state.paused_since, None);
        assert_eq!(view.offered, None);
        let totals = b.r.queue_view("sales", b.now).unwrap().totals;
        assert_eq!((totals.rona, totals.declined), (0, 0));
        // Back at its desk, the agent takes it again at once: no back-off.
        b.gate("a1", Gate::OPEN);
        assert_eq!(b.offers(), vec![pair("c1", "a1")]);
    }
}

#[test]
fn a_withdrawn_contact_keeps_its_place_and_goes_to_the_next_eligible_agent() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.add(contact("c2", "sales"));
    assert_eq!(b.offers(), vec![pair("c1", "a1")]);
    b.later(1);
    b.agent("a2", spec(&["sales"]));
    assert_eq!(b.offers(), vec![pair("c2", "a2")]);
    b.add(contact("c3", "sales"));
    b.gate(
        "a1",
        Gate {
            cc_routable: false,
            ..Gate::OPEN
        },
    );
    assert_eq!(b.offers(), vec![], "nobody else is free");
    assert_eq!(b.r.place_in_queue("c1"), Some(1), "ahead of c3");
    assert_eq!(b.r.place_in_queue("c3"), Some(2));
    b.r.decline(b.now, "c2", Some("a2"), &mut b.out).unwrap();
    b.later(5);
    assert_eq!(b.offers(), vec![pair("c1", "a2")], "c1 first, by arrival");
}

#[test]
fn a_gate_that_stays_open_or_an_agent_without_an_offer_withdraws_nothing() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.agent("a2", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    let offered = b.offers();
    assert_eq!(offered.len(), 1);
    let idle = if offered[0].1 == "a1" { "a2" } else { "a1" };
    b.gate(
        idle,
        Gate {
            teams_blocking: true,
            ..Gate::OPEN
        },
    );
    b.gate(&offered[0].1.clone(), Gate::OPEN);
    assert_eq!(withdrawals(&b), vec![]);
    assert_eq!(b.offered_to("c1"), Some(offered[0].1.clone()));
}

#[test]
fn a_withdrawn_contact_still_overflows_after_its_max_wait() {
    let mut sales = queue("sales", Strategy::TopDown);
    sales.max_wait = Some(Duration::from_secs(30));
    sales.overflow = Some(OverflowTarget::Queue("backup".into()));
    let mut b = Bench::new(vec![sales, queue("backup", Strategy::TopDown)]);
    b.agent("a1", spec(&["sales"]));
    b.add(contact("c1", "sales"));
    b.offers();
    b.later(10);
    b.gate(
        "a1",
        Gate {
            cc_routable: false,
            ..Gate::OPEN
        },
    );
    b.later(25);
    assert!(
        b.out
            .iter()
            .any(|d| matches!(d, RoutingDecision::Overflowed { contact, .. } if contact == "c1")),
        "{:?}",
        b.out
    );
}

/// Everything `take_changes` ever returned, folded into what a store holds.
#[derive(Default)]
struct Saved {
    contacts: BTreeMap<String, ContactRecord>,
    agents: BTreeMap<String, AgentRouting>,
    globals: Globals,
}

impl Saved {
    fn save(&mut self, r: &mut Router) {
        let changes = r.take_changes();
        for (id, c) in changes.contacts {
            match c {
                Some(c) => self.contacts.insert(id, c),
                None => self.contacts.remove(&id),
            };
        }
        self.agents.extend(changes.agents);
        if let Some(g) = changes.globals {
            self.globals.next_serial = g.next_serial;
            self.globals.rng = g.rng;
        }
        self.globals.queues.extend(changes.queues);
    }
}

#[test]
fn a_restored_router_continues_and_handles_offers_that_expired_meanwhile() {
    let queues = vec![queue("sales", Strategy::RoundRobin)];
    let mut b = Bench::new(queues.clone());
    let mut saved = Saved::default();
    for a in ["a1", "a2", "a3"] {
        b.agent(a, spec(&["sales"]));
    }
    b.add(contact("c1", "sales"));
    b.accept("c1");
    b.add(contact("c2", "sales"));
    b.add(contact("c3", "sales"));
    b.add(contact("c4", "sales"));
    let before = b.offers();
    saved.save(&mut b.r);
    // The gates are closed at restart: the sync side opens them below.
    let specs: Vec<(String, AgentSpec, AgentRouting, Gate)> = ["a1", "a2", "a3"]
        .iter()
        .map(|a| {
            (
                a.to_string(),
                spec(&["sales"]),
                saved.agents[*a].clone(),
                Gate::default(),
            )
        })
        .collect();
    let mut r = Router::restore(
        b.now,
        queues,
        saved.globals.clone(),
        specs,
        saved.contacts.values().cloned().collect(),
    );
    assert_eq!(r.contact("c1").unwrap().phase.name(), "accepted");
    assert_eq!(r.place_in_queue("c4"), Some(1));
    assert_eq!(before.len(), 3);
    // Down for a minute: the offers of c2 and c3 have expired.
    let now = b.now + Duration::from_secs(60);
    let mut out = Vec::new();
    for a in ["a1", "a2", "a3"] {
        r.set_gate(now, a, Gate::OPEN, &mut out);
    }
    r.tick(now, &mut out);
    let ronas = out
        .iter()
        .filter(|d| matches!(d, RoutingDecision::Rona { .. }))
        .count();
    assert_eq!(ronas, 2);
    let totals = r.queue_view("sales", now).unwrap().totals;
    assert_eq!((totals.offered, totals.rona, totals.accepted), (3, 2, 1));
    // Once their back-off ends, the two who missed are offered the contacts
    // waiting again, c2 and c3 ahead of c4 (their place by arrival).
    out.clear();
    r.tick(now + Duration::from_secs(5), &mut out);
    let offered: Vec<&str> = out
        .iter()
        .filter_map(|d| match d {
            RoutingDecision::Offered { contact, .. } => Some(contact.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(offered, vec!["c2", "c3"]);
}

#[test]
fn after_a_reload_the_strategies_still_see_who_is_free() {
    let mut b = Bench::new(vec![queue("sales", Strategy::TopDown)]);
    for (id, position) in [("a", 3), ("b", 1), ("c", 2)] {
        let mut s = spec(&["sales"]);
        s.queues[0].position = Some(position);
        b.agent(id, s);
    }
    b.r.replace_queues(
        b.now,
        vec![
            queue("sales", Strategy::TopDown),
            queue("new", Strategy::TopDown),
        ],
        &mut b.out,
    );
    // b is first in agent order; once it is busy, c; once c's gate closes, a.
    b.add(contact("k1", "sales"));
    assert_eq!(b.offers(), vec![pair("k1", "b")]);
    b.gate("c", Gate::default());
    b.add(contact("k2", "sales"));
    assert_eq!(b.offers(), vec![pair("k2", "a")]);
    b.gate("c", Gate::OPEN);
    b.r.abandon(b.now, "k1", &mut b.out).unwrap();
    b.out.clear();
    b.add(contact("k3", "sales"));
    assert_eq!(b.offers(), vec![pair("k3", "b")]);
}

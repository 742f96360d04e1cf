//! The planner's rules on a test clock.

use std::time::Duration;

use super::*;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(1_700_000_000 + secs)
}

fn ids(prefix: &str, n: usize) -> Vec<UserId> {
    (0..n)
        .map(|i| UserId::from(format!("{prefix}{i:05}")))
        .collect()
}

fn account(i: usize) -> AccountId {
    AccountId::from(format!("svc-{i}@contoso.com"))
}

fn planner(accounts: usize, agents: usize) -> Planner {
    let mut p = Planner::new(PlannerSettings::default());
    let list: Vec<AccountId> = (0..accounts).map(account).collect();
    p.set_accounts(&list);
    p.set_wanted(Wanted {
        agents: ids("a", agents),
        others: vec![],
    });
    p
}

/// Answers every due action as Graph would when all goes well.
fn run_ok(p: &mut Planner, now: Timestamp) -> Vec<Action> {
    let actions = p.due(now);
    for (n, action) in actions.iter().enumerate() {
        let outcome = match action {
            Action::Create {
                account,
                members,
                expires_at,
            } => Outcome::Created {
                account: account.clone(),
                id: format!("sub-{}-{n}-{}", account, now.as_micros()),
                members: members.clone(),
                expires_at: *expires_at,
            },
            Action::Renew {
                account,
                expires_at,
                ..
            } => Outcome::Renewed {
                account: account.clone(),
                expires_at: *expires_at,
            },
            Action::Reauthorize { account, .. } => Outcome::Reauthorized {
                account: account.clone(),
            },
            Action::Delete { account, .. } => Outcome::Deleted {
                account: account.clone(),
            },
        };
        p.apply(outcome, now);
    }
    actions
}

fn creates(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Create { .. }))
        .count()
}

#[test]
fn each_account_creates_one_subscription_and_everyone_is_covered() {
    let mut p = planner(3, 1_500);
    let actions = run_ok(&mut p, t(0));
    assert_eq!(creates(&actions), 3);
    assert_eq!(p.covered(t(1)).len(), 1_500);
    let report = p.report(t(1));
    assert!(report.slots.iter().all(|s| s.state == SlotState::Active));
    assert_eq!(report.accounts_needed, 0);
    assert!(run_ok(&mut p, t(1)).is_empty(), "nothing more to do");
}

#[test]
fn too_few_accounts_are_reported_with_how_many_more() {
    let mut p = planner(1, 2_000);
    run_ok(&mut p, t(0));
    let report = p.report(t(1));
    assert_eq!(report.covered, 650);
    assert_eq!(report.wanted, 2_000);
    assert_eq!(report.accounts_needed, 3, "2,000 users need 4 accounts");
}

#[test]
fn subscriptions_are_renewed_before_expiry_and_never_lapse() {
    let mut p = planner(4, 2_000);
    run_ok(&mut p, t(0));
    let mut renewals = 0;
    // Five simulated hours, a step a minute.
    for minute in 1..=300u64 {
        let now = t(minute * 60);
        let actions = run_ok(&mut p, now);
        assert_eq!(creates(&actions), 0, "minute {minute}: nothing re-created");
        renewals += actions
            .iter()
            .filter(|a| matches!(a, Action::Renew { .. }))
            .count();
        assert_eq!(p.covered(now).len(), 2_000, "minute {minute}");
    }
    // 55-minute lifetimes renewed 5 to 10 minutes early: 6 to 7 each.
    assert!((4 * 5..=4 * 7).contains(&renewals), "{renewals} renewals");
}

#[test]
fn accounts_created_together_renew_at_different_times() {
    let mut p = planner(10, 6_000);
    run_ok(&mut p, t(0));
    let report = p.report(t(1));
    let mut at: Vec<Timestamp> = report.slots.iter().filter_map(|s| s.renew_at).collect();
    at.sort();
    at.dedup();
    assert_eq!(at.len(), 10);
}

#[test]
fn a_failed_account_uncovers_its_users_at_once_and_the_others_take_them() {
    let mut p = planner(3, 900);
    run_ok(&mut p, t(0));
    assert_eq!(p.covered(t(1)).len(), 900);
    p.set_health(&account(0), false);
    let covered = p.covered(t(2)).len();
    assert!(
        covered < 900,
        "the failed account's users are polled at once"
    );
    // The others have room for everyone: after the settle time they
    // re-create with the extra users.
    let actions = run_ok(&mut p, t(2));
    assert!(actions.is_empty(), "not before the settle time");
    run_ok(&mut p, t(61));
    run_ok(&mut p, t(61));
    assert_eq!(p.covered(t(62)).len(), 900);
    let report = p.report(t(62));
    assert_eq!(report.slots[0].state, SlotState::AccountFailed);
    // Back again: it gets users when the others next change.
    p.set_health(&account(0), true);
    assert_eq!(p.covered(t(63)).len(), 900);
}

#[test]
fn new_agents_wait_for_the_settle_time_and_cost_one_re_creation() {
    let mut p = planner(1, 100);
    run_ok(&mut p, t(0));
    for n in 0..20 {
        p.set_wanted(Wanted {
            agents: ids("a", 101 + n),
            others: vec![],
        });
        assert!(run_ok(&mut p, t(1 + n as u64)).is_empty());
    }
    assert_eq!(
        p.covered(t(30)).len(),
        100,
        "new agents are polled meanwhile"
    );
    let deleted = run_ok(&mut p, t(60));
    assert!(matches!(deleted.as_slice(), [Action::Delete { .. }]));
    let created = run_ok(&mut p, t(60));
    assert!(matches!(created.as_slice(), [Action::Create { members, .. }] if members.len() == 120));
    assert_eq!(p.covered(t(61)).len(), 120);
}

#[test]
fn removed_users_are_dropped_at_the_next_renewal_not_at_once() {
    let mut p = planner(1, 100);
    run_ok(&mut p, t(0));
    p.set_wanted(Wanted {
        agents: ids("a", 90),
        others: vec![],
    });
    assert!(run_ok(&mut p, t(120)).is_empty());
    let renew_at = p.report(t(120)).slots[0].renew_at.unwrap();
    let at_renewal = run_ok(&mut p, renew_at);
    assert!(matches!(at_renewal.as_slice(), [Action::Delete { .. }]));
    let created = run_ok(&mut p, renew_at);
    assert!(matches!(created.as_slice(), [Action::Create { members, .. }] if members.len() == 90));
}

#[test]
fn lifecycle_events_reauthorize_recreate_or_name_the_users_to_read() {
    let mut p = planner(1, 10);
    run_ok(&mut p, t(0));
    let id = p.report(t(1)).slots[0].subscription_id.clone().unwrap();

    assert_eq!(
        p.lifecycle(&id, Lifecycle::ReauthorizationRequired),
        Some(vec![])
    );
    let actions = run_ok(&mut p, t(2));
    assert!(matches!(actions.as_slice(), [Action::Reauthorize { id: x, .. }] if *x == id));

    let missed = p.lifecycle(&id, Lifecycle::Missed).unwrap();
    assert_eq!(missed.len(), 10);

    let removed = p.lifecycle(&id, Lifecycle::SubscriptionRemoved).unwrap();
    assert_eq!(removed.len(), 10);
    assert!(p.covered(t(3)).is_empty(), "removed: polled at once");
    let actions = run_ok(&mut p, t(3));
    assert_eq!(creates(&actions), 1);
    assert_eq!(p.covered(t(4)).len(), 10);

    assert_eq!(p.lifecycle("someone-else", Lifecycle::Missed), None);
}

#[test]
fn a_failed_reauthorization_leads_to_a_new_subscription() {
    let mut p = planner(1, 10);
    run_ok(&mut p, t(0));
    let id = p.report(t(1)).slots[0].subscription_id.clone().unwrap();
    p.lifecycle(&id, Lifecycle::ReauthorizationRequired);
    let actions = p.due(t(2));
    assert_eq!(actions.len(), 1);
    p.apply(
        Outcome::Failed {
            account: account(0),
            failure: Failure::Other("HTTP 403".into()),
        },
        t(2),
    );
    let later = p.report(t(2)).slots[0].retry_at.unwrap();
    let actions = run_ok(&mut p, later);
    assert!(matches!(actions.as_slice(), [Action::Delete { .. }]));
    assert_eq!(creates(&run_ok(&mut p, later)), 1);
}

#[test]
fn failures_back_off_and_a_404_re_creates_at_once() {
    let mut p = planner(1, 10);
    let mut now = t(0);
    let mut waits = Vec::new();
    for _ in 0..8 {
        let actions = p.due(now);
        assert_eq!(actions.len(), 1, "one try at {now}");
        p.apply(
            Outcome::Failed {
                account: account(0),
                failure: Failure::Other("HTTP 500".into()),
            },
            now,
        );
        assert!(p.due(now).is_empty(), "no retry before the back-off");
        let next = p.report(now).slots[0].retry_at.unwrap();
        waits.push(next.since(now));
        now = next;
    }
    assert_eq!(waits[0], Duration::from_secs(15));
    assert_eq!(waits[1], Duration::from_secs(30));
    assert_eq!(*waits.last().unwrap(), Duration::from_secs(600));
    run_ok(&mut p, now);
    assert_eq!(p.covered(now).len(), 10);

    // Renewing finds it gone: create anew without waiting.
    let renew_at = p.report(now).slots[0].renew_at.unwrap();
    assert_eq!(p.due(renew_at).len(), 1);
    p.apply(
        Outcome::Failed {
            account: account(0),
            failure: Failure::Gone,
        },
        renew_at,
    );
    assert!(p.covered(renew_at).is_empty());
    assert_eq!(creates(&run_ok(&mut p, renew_at)), 1);
}

#[test]
fn a_subscription_left_to_expire_is_uncovered_and_replaced() {
    let mut p = planner(1, 10);
    run_ok(&mut p, t(0));
    let report = p.report(t(1));
    let expires = report.slots[0].expires_at.unwrap();
    // The renewal call hangs (busy) past the expiry: not covered then.
    assert_eq!(p.due(report.slots[0].renew_at.unwrap()).len(), 1);
    assert!(p.covered(expires).is_empty());
}

#[test]
fn adopted_subscriptions_are_kept_not_created_again() {
    let mut p = planner(1, 3);
    p.adopt(&account(0), "old".into(), ids("a", 3), t(600), t(0));
    assert!(run_ok(&mut p, t(1)).is_empty());
    assert_eq!(p.covered(t(1)).len(), 3);
    assert_eq!(p.account_of("old"), Some(&account(0)));
}

#[test]
fn the_next_wakeup_is_the_earliest_due_time() {
    let mut p = planner(2, 100);
    assert_eq!(p.next_wakeup(), None, "nothing active, nothing waiting");
    run_ok(&mut p, t(0));
    let report = p.report(t(0));
    let first_renewal = report.slots.iter().filter_map(|s| s.renew_at).min();
    assert_eq!(p.next_wakeup(), first_renewal);
    assert!(p.due(t(1)).is_empty());
}

#[test]
fn a_404_to_a_create_backs_off_rather_than_looping() {
    let mut p = planner(1, 10);
    assert_eq!(p.due(t(0)).len(), 1);
    p.apply(
        Outcome::Failed {
            account: account(0),
            failure: Failure::Gone,
        },
        t(0),
    );
    assert!(p.due(t(0)).is_empty(), "no second create at once");
    let report = p.report(t(0));
    assert_eq!(report.slots[0].state, SlotState::Retrying);
    assert!(
        report.slots[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("404")
    );
}

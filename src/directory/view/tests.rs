use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::graph::poller::poll_users;
use crate::presence::{Activity, Availability};

fn user(id: &str, name: &str, department: &str) -> User {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "displayName": name,
        "userPrincipalName": format!("{id}@contoso.example"),
        "mail": format!("{id}.mail@contoso.example"),
        "department": department,
        "businessPhones": [format!("+1 425 555 {:04}", id.bytes().map(u32::from).sum::<u32>())],
        "assignedPlans": [
            {"capabilityStatus": "Enabled", "service": "TeamspaceAPI"},
            {"capabilityStatus": "Enabled", "servicePlanId": "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"}
        ],
    }))
    .unwrap()
}

fn presence(a: Availability) -> Presence {
    Presence::new(a, Activity::Available)
}

fn query(raw: &str) -> DirectoryQuery {
    DirectoryQuery::parse(raw).unwrap()
}

fn ids(page: &DirectoryPage) -> Vec<String> {
    page.users.iter().map(|u| u.record.id.to_string()).collect()
}

#[test]
fn search_folds_case_and_accents_over_name_upn_mail_and_phone() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    view.replace(&[
        user("u1", "José Müller", "Sales"),
        user("u2", "Ann Lee", "Support"),
        user("u3", "Kraków Desk", "Sales"),
    ]);
    assert_eq!(ids(&view.query(&query("search=JOSE"))), ["u1"]);
    assert_eq!(ids(&view.query(&query("search=muller"))), ["u1"]);
    assert_eq!(ids(&view.query(&query("search=krakow"))), ["u3"]);
    assert_eq!(ids(&view.query(&query("search=u2%40contoso"))), ["u2"]);
    assert_eq!(ids(&view.query(&query("search=u3.MAIL"))), ["u3"]);
    // u1's number is +1 425 555 0166 (the sum of its id's bytes).
    assert_eq!(ids(&view.query(&query("search=555+0166"))), ["u1"]);
    assert_eq!(ids(&view.query(&query("search=%2B1+425"))).len(), 3);
    assert_eq!(view.query(&query("search=nobody")).total, 0);
}

#[test]
fn filters_combine_with_and() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    let mut no_phone = user("u4", "Bo Berg", "Sales");
    no_phone.business_phones = Some(Some(vec![]));
    view.replace(&[
        user("u1", "Ann", "Sales"),
        user("u2", "Bea", "Support"),
        user("u3", "Cy", "sales"),
        no_phone,
    ]);
    view.set_links(vec![("U1".into(), Some("a1".into()))]);
    view.observe_at("u1", &presence(Availability::Busy), Utc::now());
    view.observe_at("u2", &presence(Availability::Busy), Utc::now());
    view.observe_at("u3", &presence(Availability::Available), Utc::now());
    view.observe_at("u4", &presence(Availability::Busy), Utc::now());
    let page = view.query(&query("department=SALES&presence=Busy"));
    assert_eq!(ids(&page), ["u1", "u4"], "u4 sorts as `bo berg`");
    assert_eq!(page.total, 2);
    assert_eq!(
        ids(&view.query(&query("department=sales&presence=Busy&has_phone=true"))),
        ["u1"]
    );
    assert_eq!(ids(&view.query(&query("has_phone=false"))), ["u4"]);
    assert_eq!(
        ids(&view.query(&query("presence=available,busy&search=cy"))),
        ["u3"]
    );
    let one = view.get("U1").unwrap();
    assert_eq!(one.agent.as_deref(), Some("a1"));
    assert_eq!(one.direct_dial.as_deref(), Some("+14255550166"));
    assert_eq!(one.presence, Some(presence(Availability::Busy)));
    assert_eq!(one.presence_since, None, "not seen to change yet");
    let later = Utc::now();
    view.observe_at("u1", &presence(Availability::Away), later);
    assert_eq!(view.get("u1").unwrap().presence_since, Some(later));
}

#[test]
fn the_slower_tier_reads_the_listed_users_who_are_not_agents() {
    let (tx, mut tier) = poll_users(Vec::new());
    let view = DirectoryView::new(&DirectoryScope::Departments(vec!["Sales".into()]), Some(tx));
    view.replace(&[
        user("u1", "Ann", "Sales"),
        user("u2", "Bea", "Support"),
        user("u3", "Cy", "Sales"),
    ]);
    tier.refresh();
    let read: BTreeSet<&str> = tier.iter().collect();
    assert_eq!(read, BTreeSet::from(["u1", "u3"]));
    // An agent moves to the agent poller; an agent out of scope is listed.
    view.set_links(vec![
        ("u1".into(), Some("a1".into())),
        ("u2".into(), Some("a2".into())),
    ]);
    tier.refresh();
    assert_eq!(tier.iter().collect::<Vec<_>>(), ["u3"]);
    assert_eq!(view.query(&query("")).total, 3);
    // Moving out of scope leaves the tier and the listing.
    let mut moved = user("u3", "Cy", "Support");
    moved.display_name = None;
    view.change(&[moved], &[]);
    tier.refresh();
    assert!(tier.is_empty());
    assert_eq!(ids(&view.query(&query(""))), ["u1", "u2"]);
    assert_eq!(view.get("u3"), None);
    // Unlinked, u1 is read by the tier again; removed, it is gone.
    view.set_links(vec![("u1".into(), None)]);
    tier.refresh();
    assert_eq!(tier.iter().collect::<Vec<_>>(), ["u1"]);
    let (_, gone) = view.change(&[], &["U1".into()]);
    assert_eq!(gone, ["u1"]);
    tier.refresh();
    assert!(tier.is_empty());
}

#[test]
fn a_scope_by_groups_follows_the_members_read_and_keeps_them_across_reads() {
    let (tx, mut tier) = poll_users(Vec::new());
    let view = DirectoryView::new(
        &DirectoryScope::Groups(vec!["2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4".into()]),
        Some(tx),
    );
    let mut no_teams = user("u4", "Dee", "Sales");
    no_teams.assigned_plans = Some(Some(vec![]));
    view.replace(&[
        user("u1", "Ann", "Sales"),
        user("u2", "Bea", "Support"),
        user("u3", "Cy", "Sales"),
        no_teams,
    ]);
    // Before the members are read, nobody is in scope.
    tier.refresh();
    assert!(tier.is_empty());
    assert_eq!(view.query(&query("")).total, 0);
    // Members in any case; one without Teams is not listed.
    assert_eq!(view.set_members(["U1".into(), "u2".into(), "u4".into()]), 2);
    tier.refresh();
    assert_eq!(
        tier.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["u1", "u2"])
    );
    view.observe_at("u2", &presence(Availability::Busy), Utc::now());
    // An agent outside the groups is listed and read by the agent tier.
    view.set_links(vec![("u3".into(), Some("a3".into()))]);
    assert_eq!(ids(&view.query(&query(""))), ["u1", "u2", "u3"]);
    // A full read keeps the members known; a changed user stays in.
    view.replace(&[
        user("u1", "Ann", "Sales"),
        user("u2", "Bea", "Support"),
        user("u3", "Cy", "Sales"),
    ]);
    view.change(&[user("u1", "Ann B", "Sales")], &[]);
    tier.refresh();
    assert_eq!(
        tier.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["u1", "u2"])
    );
    // u2 leaves the group: out of the tier and the listing, its presence
    // dropped; u3, an agent, stays listed.
    assert_eq!(view.set_members(["u1".into()]), 1);
    tier.refresh();
    assert_eq!(tier.iter().collect::<Vec<_>>(), ["u1"]);
    assert_eq!(ids(&view.query(&query(""))), ["u1", "u3"]);
    assert_eq!(view.get("u2"), None);
    view.set_members(["u1".into(), "u2".into()]);
    assert_eq!(view.get("u2").map(|u| u.presence), Some(None));
    // Another scope ignores members.
    let all = DirectoryView::new(&DirectoryScope::All, None);
    assert_eq!(all.set_members(["u1".into()]), 0);
}

#[test]
fn the_agents_scope_lists_and_reads_only_agents() {
    let (tx, mut tier) = poll_users(Vec::new());
    let view = DirectoryView::new(&DirectoryScope::Agents, Some(tx));
    view.replace(&[user("u1", "Ann", "Sales"), user("u2", "Bea", "Sales")]);
    view.set_links(vec![("u2".into(), Some("a2".into()))]);
    tier.refresh();
    assert!(tier.is_empty());
    assert_eq!(ids(&view.query(&query(""))), ["u2"]);
}

#[test]
fn users_without_teams_are_not_listed() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    let mut no_teams = user("u2", "Bea", "Sales");
    no_teams.assigned_plans = Some(Some(vec![]));
    view.replace(&[user("u1", "Ann", "Sales"), no_teams]);
    assert_eq!(ids(&view.query(&query(""))), ["u1"]);
    assert_eq!(view.status().users, 2);
    assert_eq!(view.status().listed, 1);
}

#[test]
fn pages_follow_the_cursor_in_name_then_id_order() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    view.replace(&[
        user("b", "Ann", "S"),
        user("a", "ann", "S"),
        user("c", "Ánn", "S"),
        user("d", "Bo", "S"),
    ]);
    let first = view.query(&query("limit=2"));
    assert_eq!(ids(&first), ["a", "b"]);
    assert_eq!(first.total, 4);
    let cursor = first.next.unwrap().cursor();
    let second = view.query(&query(&format!("limit=2&cursor={cursor}")));
    assert_eq!(ids(&second), ["c", "d"]);
    assert_eq!(second.next, None, "nothing after the last page");
}

/// What happens between two pages.
#[derive(Clone, Debug)]
enum Between {
    Presence(usize, bool),
    Insert(usize),
    Remove(usize),
}

proptest! {
    /// Paging through while presences change and users come and go: every
    /// user present throughout is listed exactly once, never twice, and
    /// pages come in order.
    #[test]
    fn paging_is_stable_while_presences_change_and_users_come_and_go(
        names in proptest::collection::vec("[a-dA-DéÉ ]{0,4}", 1..40),
        limit in 1usize..7,
        between in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    (0usize..80, any::<bool>()).prop_map(|(i, b)| Between::Presence(i, b)),
                    (0usize..80).prop_map(Between::Insert),
                    (0usize..80).prop_map(Between::Remove),
                ],
                0..5,
            ),
            0..60,
        ),
        filter in any::<bool>(),
    ) {
        let view = DirectoryView::new(&DirectoryScope::All, None);
        let all: Vec<User> = (0..80)
            .map(|i| user(&format!("id{i:02}"), names.get(i % names.len()).map_or("x", String::as_str), "S"))
            .collect();
        let initial: Vec<User> = all.iter().take(names.len()).cloned().collect();
        view.replace(&initial);
        let mut present: BTreeSet<usize> = (0..names.len()).collect();
        let mut throughout = present.clone();
        let raw = if filter { format!("limit={limit}&department=s") } else { format!("limit={limit}") };
        let mut page = view.query(&query(&raw));
        let mut seen: Vec<String> = ids(&page);
        let mut rounds = between.into_iter();
        while let Some(cursor) = page.next.clone() {
            for change in rounds.next().unwrap_or_default() {
                match change {
                    Between::Presence(i, busy) => {
                        let a = if busy { Availability::Busy } else { Availability::Available };
                        view.observe_at(&format!("id{i:02}"), &presence(a), Utc::now());
                    }
                    Between::Insert(i) => {
                        view.change(&[all[i].clone()], &[]);
                        present.insert(i);
                    }
                    Between::Remove(i) => {
                        view.change(&[], &[format!("id{i:02}")]);
                        present.remove(&i);
                        throughout.remove(&i);
                    }
                }
            }
            page = view.query(&query(&format!("{raw}&cursor={}", cursor.cursor())));
            prop_assert!(page.users.len() <= limit);
            seen.extend(ids(&page));
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        prop_assert_eq!(unique.len(), seen.len(), "a user listed twice: {:?}", seen);
        for i in throughout {
            let id = format!("id{i:02}");
            prop_assert!(seen.contains(&id), "{} was skipped: {:?}", id, seen);
        }
    }
}

#[test]
fn links_never_wait_for_a_search_and_apply_before_the_next_read() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    view.replace(&[user("u1", "Ann", "Sales")]);
    let searching = view.read();
    // The sync loop's step goes on while a search holds the view.
    view.set_links(vec![("u1".into(), Some("a1".into()))]);
    drop(searching);
    assert_eq!(view.get("u1").unwrap().agent.as_deref(), Some("a1"));
    let page = view.query(&query("search=ann"));
    assert_eq!(page.users[0].agent.as_deref(), Some("a1"));
}

#[test]
fn an_agents_presence_read_before_the_directory_came_is_kept() {
    let view = DirectoryView::new(&DirectoryScope::Agents, None);
    view.set_links(vec![("U1".into(), Some("a1".into()))]);
    view.observe_at("u1", &presence(Availability::Busy), Utc::now());
    view.replace(&[user("u1", "Ann", "Sales"), user("u2", "Bea", "Sales")]);
    assert_eq!(
        view.get("u1").unwrap().presence,
        Some(presence(Availability::Busy))
    );
    // A change to the user keeps what was read; so does a new full read.
    view.change(&[user("u1", "Ann B", "Sales")], &[]);
    view.replace(&[user("u1", "Ann C", "Sales")]);
    let one = view.get("u1").unwrap();
    assert_eq!(one.presence, Some(presence(Availability::Busy)));
    assert_eq!(one.record.display_name(), Some("Ann C"));
    assert_eq!(view.get("u2"), None, "out of scope, no agent");
    // Unlinked and out of scope: no longer listed, nothing kept.
    view.set_links(vec![("u1".into(), None)]);
    assert_eq!(view.get("u1"), None);
    assert_eq!(view.status().listed, 0);
}

#[test]
fn users_are_found_by_id_upn_or_mail_in_any_case_listed_or_not() {
    let view = DirectoryView::new(&DirectoryScope::Agents, None);
    assert!(!view.loaded());
    view.replace(&[user("ID-1", "Ann", "Sales")]);
    assert!(view.loaded());
    // Not listed (the scope is the agents), yet known for linking.
    assert!(view.get("id-1").is_none());
    assert_eq!(
        view.record("id-1").map(|r| r.id.to_string()),
        Some("ID-1".into())
    );
    assert_eq!(
        view.record("Id-1").map(|r| r.id.to_string()),
        Some("ID-1".into())
    );
    assert_eq!(
        view.find("ID-1@Contoso.Example").map(|r| r.id.to_string()),
        Some("ID-1".into())
    );
    assert_eq!(
        view.find("id-1.MAIL@contoso.example")
            .map(|r| r.id.to_string()),
        Some("ID-1".into())
    );
    assert!(view.find("nobody@contoso.example").is_none());
    // A delta changes a user's UPN: the old name leads nowhere.
    let renamed: User = serde_json::from_value(serde_json::json!({
        "id": "id-1", "userPrincipalName": "ann@contoso.example",
    }))
    .unwrap();
    view.change(&[renamed, user("id-2", "Bea", "Sales")], &[]);
    assert_eq!(view.known_users(), 2);
    assert!(view.find("id-1@contoso.example").is_none());
    assert_eq!(
        view.find("ann@contoso.example").map(|r| r.id.to_string()),
        Some("ID-1".into())
    );
    // Removed: gone by id and by every name.
    view.change(&[], &["ID-1".into()]);
    assert!(view.record("id-1").is_none());
    assert!(view.find("ann@contoso.example").is_none());
    assert!(view.find("id-1.mail@contoso.example").is_none());
    assert!(view.find("id-2@contoso.example").is_some());
    assert_eq!(view.known_users(), 1);
}

#[test]
fn a_full_read_names_only_the_users_whose_stored_form_changed() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    let first = [
        user("u1", "Ann", "Sales"),
        user("u2", "Bea", "Sales"),
        user("u3", "Cy", "Sales"),
    ];
    let replaced = view.replace(&first);
    assert_eq!(replaced.records.len(), 3);
    assert_eq!(replaced.changed.len(), 3);
    assert!(replaced.removed.is_empty());
    // The same users read again: nothing to write.
    let again = view.replace(&first);
    assert_eq!(again.records.len(), 3);
    assert!(again.changed.is_empty());
    // Restored from what the store keeps (no names or departments): the
    // full read that follows finds nothing the store lacks.
    let view = DirectoryView::new(&DirectoryScope::All, None);
    let stored: Vec<DirectoryRecord> = first
        .iter()
        .map(|u| DirectoryRecord::from_stored(&DirectoryRecord::from_user(u).stored()))
        .collect();
    assert_eq!(view.restore(stored), 3);
    assert!(view.loaded());
    assert!(view.status().from_store);
    // A new phone for u2, a new name only for u3, u1 gone, u4 new.
    let mut u2 = user("u2", "Bea", "Sales");
    u2.business_phones = Some(Some(vec!["+1 425 555 0000".into()]));
    let read = [
        u2,
        user("u3", "Cyrus", "Support"),
        user("u4", "Dee", "Sales"),
    ];
    let replaced = view.replace(&read);
    let changed: Vec<String> = replaced.changed.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(changed, ["u2", "u4"]);
    assert_eq!(replaced.removed, ["u1"]);
    assert_eq!(replaced.records.len(), 3);
    assert!(view.record("u1").is_none());
    assert_eq!(
        view.record("u3")
            .and_then(|r| r.display_name().map(str::to_string)),
        Some("Cyrus".into())
    );
}

#[test]
fn a_full_read_shares_the_records_it_already_holds_the_same() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    view.replace(&[user("u1", "Ann", "Sales"), user("U2", "Bea", "Sales")]);
    let held_1 = view.record("u1").unwrap();
    let held_2 = view.record("u2").unwrap();
    // Read again page by page: the same users are the records held, a
    // changed one a new record.
    let mut u2 = user("U2", "Bea", "Support");
    u2.business_phones = Some(Some(vec!["+1 425 555 0000".into()]));
    let mut records = view.records_as_read(&[user("u1", "Ann", "Sales")]);
    records.extend(view.records_as_read(&[u2]));
    assert!(Arc::ptr_eq(&records[0], &held_1));
    assert!(!Arc::ptr_eq(&records[1], &held_2));
    assert_eq!(records[1].department(), Some("Support"));
    let replaced = view.replace_records(records);
    let changed: Vec<&str> = replaced.changed.iter().map(|r| &*r.id).collect();
    assert_eq!(changed, ["U2"]);
    assert!(Arc::ptr_eq(&view.record("u1").unwrap(), &held_1));
    assert_eq!(view.record("u2").unwrap().department(), Some("Support"));
}

#[test]
fn a_link_holds_the_views_user_id_and_the_loops_agent_id() {
    let view = DirectoryView::new(&DirectoryScope::All, None);
    view.replace(&[user("u1", "Ann", "Sales")]);
    let agent: Arc<str> = Arc::from("a1");
    let unknown: Arc<str> = Arc::from("u9");
    view.set_links(vec![
        (Arc::from("U1"), Some(Arc::clone(&agent))),
        (Arc::clone(&unknown), Some(Arc::clone(&agent))),
    ]);
    let inner = view.settled();
    let known = view.known();
    let (held, _) = known.get("u1").unwrap();
    let (id, linked) = inner.agents.get_key_value("u1").unwrap();
    assert!(Arc::ptr_eq(id, held), "the view's own id, not a copy");
    assert!(Arc::ptr_eq(linked, &agent));
    let entry = inner.entry(&known, "u1").unwrap();
    assert!(Arc::ptr_eq(entry.agent.as_ref().unwrap(), &agent));
    // A user the view does not know yet keeps the id it came with.
    let (id, _) = inner.agents.get_key_value("u9").unwrap();
    assert!(Arc::ptr_eq(id, &unknown));
}

#[test]
fn an_entry_and_a_link_stay_within_their_budget() {
    // The agent is an `Arc` shared with the view's map: no larger than the
    // box it replaces.
    assert!(
        std::mem::size_of::<Entry>() <= 104,
        "{}",
        std::mem::size_of::<Entry>()
    );
    // Two shared ids, where two strings took 48 bytes.
    assert!(
        std::mem::size_of::<Link>() <= 32,
        "{}",
        std::mem::size_of::<Link>()
    );
}

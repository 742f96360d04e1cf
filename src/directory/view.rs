//! The directory view: every Teams user the directory lists, with the
//! presence last read and the agent linked, shared by the tasks that keep
//! it and the API that searches it.
//!
//! Three writers keep it, each with what it owns: the directory task
//! (users from the full read and the delta link, [`DirectoryView::replace`]
//! and [`DirectoryView::change`]), the sync loop (links and unlinks, once a
//! step is committed, [`DirectoryView::set_links`]) and both presence tiers
//! (what is news, through [`PresenceObserver`]). The API only reads
//! ([`DirectoryView::query`], [`DirectoryView::get`]). Searches run here,
//! under a read lock, never inside the sync loop.
//!
//! The view also decides who the directory's slower presence tier reads:
//! every listed user who is not an agent (agents are read by the agent
//! poller at their own freshness). It tells that tier's poll list of each
//! change as it happens ([`PollUsersSender`]), in time proportional to the
//! change.
//!
//! Listing order is (folded display name, lower-case id); a page's cursor
//! is the last key it returned, so the next page starts after it whatever
//! changed meanwhile: a user present throughout is listed exactly once
//! across the pages (unless its name changed between them).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};

use super::fold::{digits, fold};
use super::query::{DirectoryQuery, SortKey};
use super::record::DirectoryRecord;
use crate::config::DirectoryScope;
use crate::graph::model::User;
use crate::graph::poller::{PollChange, PollUsersSender, PresenceObserver};
use crate::presence::Presence;

/// One user as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    pub record: Arc<DirectoryRecord>,
    /// The last presence read; `None` before the first read.
    pub presence: Option<Presence>,
    /// When the presence was seen to change to what it is; `None` while
    /// it has not changed since the first read (it held since before).
    pub presence_since: Option<DateTime<Utc>>,
    /// The agent linked to the user.
    pub agent: Option<String>,
    /// [`DirectoryRecord::direct_dial`].
    pub direct_dial: Option<String>,
}

/// A page of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryPage {
    pub users: Vec<DirectoryUser>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<SortKey>,
    /// Users matching the query, on every page.
    pub total: usize,
}

/// What the view holds, for `/readyz` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryStatus {
    /// Users known (listed or not).
    pub users: usize,
    /// Users the directory lists.
    pub listed: usize,
    /// Users the slower presence tier reads.
    pub tier_users: usize,
    /// A full read came in, or a stored directory was restored.
    pub loaded: bool,
    /// What is held came from the store and no full read replaced it yet.
    pub from_store: bool,
}

/// The scope, folded for comparison.
#[derive(Clone, Debug)]
enum Scope {
    All,
    Agents,
    Departments(HashSet<String>),
}

struct Entry {
    record: Arc<DirectoryRecord>,
    /// The folded sort name.
    name: Box<str>,
    /// Folded name, UPN and mail, `\u{1}` between them.
    text: Box<str>,
    /// Every phone's digits, `\u{1}` between them.
    digits: Box<str>,
    department: Option<Box<str>>,
    dial: Option<Box<str>>,
}

impl Entry {
    fn new(record: Arc<DirectoryRecord>) -> Entry {
        let name = sort_name(&record);
        let text = [
            record.display_name.as_deref(),
            record.upn.as_deref(),
            record.mail.as_deref(),
        ]
        .iter()
        .map(|t| t.map(fold).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{1}");
        let phones = record
            .business_phones
            .iter()
            .map(|p| digits(p))
            .chain(record.mobile_phone.as_deref().map(digits))
            .collect::<Vec<_>>()
            .join("\u{1}");
        Entry {
            name: name.into(),
            text: text.into(),
            digits: phones.into(),
            department: record.department.as_deref().map(|d| fold(d.trim()).into()),
            dial: record.direct_dial().map(Into::into),
            record,
        }
    }
}

/// The folded display name, else UPN, else id; whitespace collapsed.
fn sort_name(record: &DirectoryRecord) -> String {
    let shown = record
        .display_name
        .as_deref()
        .or(record.upn.as_deref())
        .unwrap_or(&record.id);
    fold(shown).split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Clone, Debug)]
struct Seen {
    presence: Presence,
    since: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    order: BTreeSet<(Box<str>, Arc<str>)>,
    /// Linked users (lower-case id) and their agent.
    agents: HashMap<Arc<str>, Box<str>>,
    presence: HashMap<Arc<str>, Seen>,
    /// Users the slower tier reads.
    tier: HashSet<Arc<str>>,
    loaded: bool,
    from_store: bool,
}

/// The shared directory view.
pub struct DirectoryView {
    inner: RwLock<Inner>,
    scope: Scope,
    tier: Option<PollUsersSender>,
}

impl std::fmt::Debug for DirectoryView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryView")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl DirectoryView {
    /// An empty view listing `scope`; `tier` is told who the slower
    /// presence tier reads (none: nobody reads them, as in tests).
    pub fn new(scope: &DirectoryScope, tier: Option<PollUsersSender>) -> DirectoryView {
        let scope = match scope {
            DirectoryScope::All => Scope::All,
            DirectoryScope::Agents => Scope::Agents,
            DirectoryScope::Departments(names) => {
                Scope::Departments(names.iter().map(|n| fold(n.trim())).collect())
            }
        };
        DirectoryView {
            inner: RwLock::new(Inner::default()),
            scope,
            tier,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the directory the store kept, before Graph answers.
    pub fn restore(&self, records: Vec<DirectoryRecord>) -> Vec<Arc<DirectoryRecord>> {
        let records: Vec<Arc<DirectoryRecord>> = records.into_iter().map(Arc::new).collect();
        self.put_all(records.clone(), true);
        records
    }

    /// Every user there is (a full read): replaces what is known. Returns
    /// the records now held and the lower-case ids of users gone.
    pub fn replace(&self, users: &[User]) -> (Vec<Arc<DirectoryRecord>>, Vec<String>) {
        let records: Vec<Arc<DirectoryRecord>> = users
            .iter()
            .filter(|u| u.removed.is_none() && !u.id.is_empty())
            .map(|u| Arc::new(DirectoryRecord::from_user(u)))
            .collect();
        let removed = self.put_all(records.clone(), false);
        (records, removed)
    }

    fn put_all(&self, records: Vec<Arc<DirectoryRecord>>, from_store: bool) -> Vec<String> {
        // The entries are built outside the lock: folding 50,000 names
        // takes a while, searches go on meanwhile.
        let entries: Vec<(Arc<str>, Entry)> = records
            .into_iter()
            .map(|r| (Arc::from(r.key().as_str()), Entry::new(r)))
            .collect();
        let mut changes = Vec::new();
        let removed = {
            let mut inner = self.write();
            let fresh: HashSet<&str> = entries.iter().map(|(id, _)| &**id).collect();
            let gone: Vec<Arc<str>> = inner
                .entries
                .keys()
                .filter(|id| !fresh.contains(&***id))
                .cloned()
                .collect();
            inner.entries.clear();
            inner.order.clear();
            for (id, entry) in entries {
                inner.order.insert((entry.name.clone(), Arc::clone(&id)));
                inner.entries.insert(id, entry);
            }
            inner.loaded = true;
            inner.from_store = from_store;
            let ids: Vec<Arc<str>> = inner.entries.keys().cloned().collect();
            for id in ids.iter().chain(&gone) {
                self.retier(&mut inner, id, &mut changes);
            }
            gone.iter().map(|id| id.to_string()).collect()
        };
        self.send(changes);
        removed
    }

    /// Changes from the delta link: `changed` merged into what is known,
    /// `removed` dropped. Returns the whole records of the users changed
    /// and the lower-case ids of those removed (every id reported).
    pub fn change(
        &self,
        changed: &[User],
        removed: &[String],
    ) -> (Vec<Arc<DirectoryRecord>>, Vec<String>) {
        let mut changes = Vec::new();
        let mut records = Vec::with_capacity(changed.len());
        let mut gone = Vec::with_capacity(removed.len());
        {
            let mut inner = self.write();
            for user in changed.iter().filter(|u| !u.id.is_empty()) {
                let id: Arc<str> = Arc::from(user.id.to_ascii_lowercase().as_str());
                let record = match inner.entries.get(&id) {
                    Some(entry) => {
                        let mut record = DirectoryRecord::clone(&entry.record);
                        record.merge(user);
                        record
                    }
                    None => DirectoryRecord::from_user(user),
                };
                let record = Arc::new(record);
                records.push(Arc::clone(&record));
                Self::put(&mut inner, Arc::clone(&id), Entry::new(record));
                self.retier(&mut inner, &id, &mut changes);
            }
            for id in removed {
                let id: Arc<str> = Arc::from(id.to_ascii_lowercase().as_str());
                if let Some(entry) = inner.entries.remove(&id) {
                    inner.order.remove(&(entry.name, Arc::clone(&id)));
                }
                self.retier(&mut inner, &id, &mut changes);
                gone.push(id.to_string());
            }
        }
        self.send(changes);
        (records, gone)
    }

    fn put(inner: &mut Inner, id: Arc<str>, entry: Entry) {
        if let Some(old) = inner.entries.get(&id) {
            let key = (old.name.clone(), Arc::clone(&id));
            inner.order.remove(&key);
        }
        inner.order.insert((entry.name.clone(), Arc::clone(&id)));
        inner.entries.insert(id, entry);
    }

    /// Links and unlinks a step committed: `(user id, Some(agent))` links,
    /// `(user id, None)` unlinks.
    pub fn set_links(&self, links: &[(String, Option<String>)]) {
        if links.is_empty() {
            return;
        }
        let mut changes = Vec::new();
        {
            let mut inner = self.write();
            for (user, agent) in links {
                let id: Arc<str> = Arc::from(user.to_ascii_lowercase().as_str());
                match agent {
                    Some(agent) => {
                        inner.agents.insert(Arc::clone(&id), agent.as_str().into());
                    }
                    None => {
                        inner.agents.remove(&id);
                    }
                }
                self.retier(&mut inner, &id, &mut changes);
            }
        }
        self.send(changes);
    }

    /// Whether the scope names the user (agents aside).
    fn in_scope(&self, entry: &Entry) -> bool {
        entry.record.teams_enabled()
            && match &self.scope {
                Scope::All => true,
                Scope::Agents => false,
                Scope::Departments(names) => entry
                    .department
                    .as_deref()
                    .is_some_and(|d| names.contains(d)),
            }
    }

    fn listed(&self, inner: &Inner, id: &str, entry: &Entry) -> bool {
        inner.agents.contains_key(id) || self.in_scope(entry)
    }

    /// Puts `id` in or out of the slower tier as it now stands, and drops a
    /// presence nobody reads any more.
    fn retier(&self, inner: &mut Inner, id: &Arc<str>, changes: &mut Vec<PollChange>) {
        let agent = inner.agents.contains_key(id);
        let want = !agent && inner.entries.get(id).is_some_and(|e| self.in_scope(e));
        let has = inner.tier.contains(id);
        if want && !has {
            inner.tier.insert(Arc::clone(id));
            changes.push(PollChange::Add(id.to_string()));
        } else if !want && has {
            inner.tier.remove(id);
            changes.push(PollChange::Remove(id.to_string()));
        }
        if !want && !agent {
            inner.presence.remove(id);
        }
    }

    fn send(&self, changes: Vec<PollChange>) {
        if let Some(tier) = &self.tier {
            tier.send(changes);
        }
    }

    /// Whether a full read came in or a stored directory was restored.
    pub fn loaded(&self) -> bool {
        self.read().loaded
    }

    pub fn status(&self) -> DirectoryStatus {
        let inner = self.read();
        DirectoryStatus {
            users: inner.entries.len(),
            listed: inner
                .entries
                .iter()
                .filter(|(id, e)| self.listed(&inner, id, e))
                .count(),
            tier_users: inner.tier.len(),
            loaded: inner.loaded,
            from_store: inner.from_store,
        }
    }

    fn user(&self, inner: &Inner, id: &str, entry: &Entry) -> DirectoryUser {
        let seen = inner.presence.get(id);
        DirectoryUser {
            record: Arc::clone(&entry.record),
            presence: seen.map(|s| s.presence.clone()),
            presence_since: seen.and_then(|s| s.since),
            agent: inner.agents.get(id).map(|a| a.to_string()),
            direct_dial: entry.dial.as_deref().map(str::to_string),
        }
    }

    /// One listed user by object id (any case).
    pub fn get(&self, id: &str) -> Option<DirectoryUser> {
        let inner = self.read();
        let id = id.to_ascii_lowercase();
        let entry = inner.entries.get(id.as_str())?;
        self.listed(&inner, &id, entry)
            .then(|| self.user(&inner, &id, entry))
    }

    /// A page of the listed users matching `query`, in listing order.
    pub fn query(&self, query: &DirectoryQuery) -> DirectoryPage {
        let inner = self.read();
        let mut users = Vec::with_capacity(query.limit.min(64));
        let mut total = 0usize;
        let mut more = false;
        let mut last: Option<SortKey> = None;
        for (name, id) in &inner.order {
            let Some(entry) = inner.entries.get(id) else {
                continue;
            };
            if !self.listed(&inner, id, entry) || !self.matches(&inner, id, entry, query) {
                continue;
            }
            total += 1;
            let after = query
                .after
                .as_ref()
                .is_none_or(|a| (&**name, &**id) > (a.name.as_str(), a.id.as_str()));
            if !after {
                continue;
            }
            if users.len() < query.limit {
                users.push(self.user(&inner, id, entry));
                last = Some(SortKey {
                    name: name.to_string(),
                    id: id.to_string(),
                });
            } else {
                more = true;
            }
        }
        DirectoryPage {
            users,
            next: if more { last } else { None },
            total,
        }
    }

    fn matches(&self, inner: &Inner, id: &str, entry: &Entry, query: &DirectoryQuery) -> bool {
        if let Some(search) = &query.search {
            let by_text = entry.text.contains(search.as_str());
            let by_phone = query
                .phone_digits
                .as_deref()
                .is_some_and(|d| entry.digits.contains(d));
            if !by_text && !by_phone {
                return false;
            }
        }
        if let Some(wanted) = &query.presence {
            let Some(seen) = inner.presence.get(id) else {
                return false;
            };
            if !wanted.contains(&seen.presence.availability) {
                return false;
            }
        }
        if let Some(department) = &query.department
            && entry.department.as_deref() != Some(department.as_str())
        {
            return false;
        }
        if let Some(has_phone) = query.has_phone
            && entry.dial.is_some() != has_phone
        {
            return false;
        }
        true
    }

    /// A presence read, at `at`.
    pub fn observe_at(&self, user_id: &str, presence: &Presence, at: DateTime<Utc>) {
        let mut inner = self.write();
        let id = user_id.to_ascii_lowercase();
        // Only users someone reads: a late answer for a user who left is dropped.
        if !inner.agents.contains_key(id.as_str()) && !inner.tier.contains(id.as_str()) {
            return;
        }
        match inner.presence.get_mut(id.as_str()) {
            Some(seen) if seen.presence == *presence => {}
            Some(seen) => {
                seen.presence = presence.clone();
                seen.since = Some(at);
            }
            None => {
                inner.presence.insert(
                    Arc::from(id.as_str()),
                    Seen {
                        presence: presence.clone(),
                        since: None,
                    },
                );
            }
        }
    }
}

impl PresenceObserver for DirectoryView {
    fn observed(&self, user_id: &str, presence: &Presence) {
        self.observe_at(user_id, presence, Utc::now());
    }
}

#[cfg(test)]
mod tests;

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
//! under a read lock, never inside the sync loop. The sync loop looks
//! users up by id, UPN or mail ([`DirectoryView::record`],
//! [`DirectoryView::find`]) in the view's one index, under a lock of its
//! own that no search holds.
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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};

use self::known::{Known, KnownUser, lower};
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

/// What a full read (or the stored directory) did to the view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Every record now held.
    pub records: Vec<Arc<DirectoryRecord>>,
    /// The records that are new, or whose stored form
    /// ([`DirectoryRecord::stored`]) differs from what was held: what a
    /// store that held the same as the view has to write.
    pub changed: Vec<Arc<DirectoryRecord>>,
    /// The lower-case ids of the users gone.
    pub removed: Vec<String>,
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
    /// By group membership: decided under the lock from
    /// [`Inner::members`], the members the directory task last read.
    Groups,
}

impl Scope {
    /// Whether the scope names a user (agents aside).
    fn names(&self, record: &DirectoryRecord, department: Option<&str>) -> bool {
        record.teams_enabled()
            && match self {
                Scope::All => true,
                Scope::Agents => false,
                Scope::Departments(names) => department.is_some_and(|d| names.contains(d)),
                Scope::Groups => false,
            }
    }
}

/// A user with everything a scan looks at, so a search touches no other
/// map: the listing's order is the map's own.
struct Entry {
    record: Arc<DirectoryRecord>,
    /// What searches and filters read, in one allocation: the folded name,
    /// UPN and mail (left out when it is the UPN) with `\u{1}` between
    /// them, then every phone's digits (`\u{1}` between them), then the
    /// folded department, then the direct-dial number.
    packed: Box<str>,
    /// Where the text, the digits and the department end in `packed`.
    ends: [u32; 3],
    has_department: bool,
    has_dial: bool,
    /// The scope names the user (fixed for the record).
    in_scope: bool,
    /// The agent linked, mirrored from [`Inner::agents`] (the same id,
    /// shared).
    agent: Option<Arc<str>>,
    presence: Option<Seen>,
}

impl Entry {
    fn new(record: Arc<DirectoryRecord>, scope: &Scope) -> Entry {
        let upn = record.user_principal_name();
        let mail = record
            .mail()
            .filter(|m| !upn.is_some_and(|u| u.eq_ignore_ascii_case(m)));
        let text = [record.display_name(), upn, mail]
            .iter()
            .map(|t| t.map(fold).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\u{1}");
        let phones = record
            .business_phones()
            .map(digits)
            .chain(record.mobile_phone().map(digits))
            .collect::<Vec<_>>()
            .join("\u{1}");
        let department = record.department().map(|d| fold(d.trim()));
        let dial = record.direct_dial();
        let mut packed = String::with_capacity(text.len() + phones.len() + 32);
        let mut ends = [0u32; 3];
        for (end, part) in ends.iter_mut().zip([
            text.as_str(),
            phones.as_str(),
            department.as_deref().unwrap_or_default(),
        ]) {
            packed.push_str(part);
            *end = u32::try_from(packed.len()).unwrap_or(u32::MAX);
        }
        packed.push_str(dial.as_deref().unwrap_or_default());
        Entry {
            in_scope: scope.names(&record, department.as_deref()),
            packed: packed.into_boxed_str(),
            ends,
            has_department: department.is_some(),
            has_dial: dial.is_some(),
            agent: None,
            presence: None,
            record,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = self.ends.get(i).map_or(self.packed.len(), |e| *e as usize);
        self.packed.get(start..end).unwrap_or_default()
    }

    fn text(&self) -> &str {
        self.part(0)
    }

    fn digits(&self) -> &str {
        self.part(1)
    }

    fn department(&self) -> Option<&str> {
        self.has_department.then(|| self.part(2))
    }

    fn dial(&self) -> Option<&str> {
        self.has_dial.then(|| self.part(3))
    }

    fn listed(&self) -> bool {
        self.agent.is_some() || self.in_scope
    }

    fn user(&self) -> DirectoryUser {
        DirectoryUser {
            record: Arc::clone(&self.record),
            presence: self.presence.as_ref().map(|s| s.presence.clone()),
            presence_since: self.presence.as_ref().and_then(|s| s.since),
            agent: self.agent.as_deref().map(str::to_string),
            direct_dial: self.dial().map(str::to_string),
        }
    }
}

/// The folded display name, else UPN, else id; whitespace collapsed.
fn sort_name(record: &DirectoryRecord) -> Arc<str> {
    let shown = record
        .display_name()
        .or(record.user_principal_name())
        .unwrap_or(&record.id);
    fold(shown)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .into()
}

#[derive(Clone, Debug)]
struct Seen {
    presence: Presence,
    since: Option<DateTime<Utc>>,
}

/// (folded name, lower-case id): the listing's order.
type Key = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Inner {
    /// Every user, in listing order; [`Known`] gives each user's key.
    entries: BTreeMap<Key, Entry>,
    /// Linked users (lower-case id) and their agent, entry or not. The
    /// ids are shared: the user's as [`Known`] holds it, the agent's as the
    /// sync loop does.
    agents: HashMap<Arc<str>, Arc<str>>,
    /// The presence of agents the directory has no entry for (yet).
    orphan_presence: HashMap<Arc<str>, Seen>,
    /// Users the slower tier reads.
    tier: HashSet<Arc<str>>,
    /// With a scope by groups, the lower-case ids of their members (none
    /// until the first read of them); `None` for any other scope.
    members: Option<HashSet<Arc<str>>>,
    from_store: bool,
}

/// The key of `id`'s entry, as `known` lists the user.
fn key(known: &Known, id: &str) -> Option<Key> {
    let (id, user) = known.get(id)?;
    Some((Arc::clone(&user.name), Arc::clone(id)))
}

impl Inner {
    fn entry(&self, known: &Known, id: &str) -> Option<&Entry> {
        self.entries.get(&key(known, id)?)
    }

    fn entry_mut(&mut self, known: &Known, id: &str) -> Option<&mut Entry> {
        self.entries.get_mut(&key(known, id)?)
    }

    /// Takes `id`'s entry out (listed under `name`); its presence stays
    /// with an agent.
    fn remove(&mut self, name: Arc<str>, id: &Arc<str>) -> Option<Entry> {
        let mut entry = self.entries.remove(&(name, Arc::clone(id)))?;
        if self.agents.contains_key(id)
            && let Some(seen) = entry.presence.take()
        {
            self.orphan_presence.insert(Arc::clone(id), seen);
        }
        Some(entry)
    }

    /// Puts `entry` in under `(name, id)`, with the agent and the presence
    /// known.
    fn insert(&mut self, name: Arc<str>, id: Arc<str>, mut entry: Entry, presence: Option<Seen>) {
        entry.agent = self.agents.get(&id).cloned();
        entry.presence = presence.or_else(|| self.orphan_presence.remove(&id));
        if let Some(members) = &self.members {
            entry.in_scope = entry.record.teams_enabled() && members.contains(&id);
        }
        self.entries.insert((name, id), entry);
    }
}

/// A link or unlink the sync loop committed: the user's id (any case) and
/// the agent linked, `None` to unlink; both as the loop holds them.
type Link = (Arc<str>, Option<Arc<str>>);

/// The view's own copy of `user`'s lower-case id when it knows the user;
/// else `user` itself when it is lower case already (as Graph writes ids),
/// a lower-case copy only when it is not: a link allocates no id of its own.
fn shared_id(known: &Known, user: Arc<str>) -> Arc<str> {
    let id = lower(&user);
    if let Some((held, _)) = known.get(&id) {
        return Arc::clone(held);
    }
    match id {
        Cow::Owned(id) => Arc::from(id),
        Cow::Borrowed(_) => user,
    }
}

/// The shared directory view.
pub struct DirectoryView {
    inner: RwLock<Inner>,
    /// The users by id and name. Lock order: `inner`, then `known`; the
    /// sync loop takes `known` alone.
    known: RwLock<Known>,
    scope: Scope,
    tier: Option<PollUsersSender>,
    /// Links the sync loop reported that are not applied yet: the loop
    /// never waits for a search to end, it leaves them here.
    pending_links: Mutex<Vec<Link>>,
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
            DirectoryScope::Groups(_) => Scope::Groups,
        };
        let inner = Inner {
            members: matches!(scope, Scope::Groups).then(HashSet::new),
            ..Inner::default()
        };
        DirectoryView {
            inner: RwLock::new(inner),
            known: RwLock::new(Known::default()),
            scope,
            tier,
            pending_links: Mutex::new(Vec::new()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn known(&self) -> RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    fn known_mut(&self) -> RwLockWriteGuard<'_, Known> {
        self.known.write().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        self.pending_links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the links waiting, under the write lock the caller holds.
    fn apply_links(&self, inner: &mut Inner, known: &Known, changes: &mut Vec<PollChange>) {
        let links = std::mem::take(&mut *self.pending());
        for (user, agent) in links {
            let id = shared_id(known, user);
            match &agent {
                Some(agent) => {
                    inner.agents.insert(Arc::clone(&id), Arc::clone(agent));
                }
                None => {
                    inner.agents.remove(&id);
                    inner.orphan_presence.remove(&id);
                }
            }
            if let Some(entry) = inner.entry_mut(known, &id) {
                entry.agent = agent;
            }
            self.retier(inner, known, &id, changes);
        }
    }

    /// A read lock with every reported link applied first.
    fn settled(&self) -> RwLockReadGuard<'_, Inner> {
        if !self.pending().is_empty() {
            let mut changes = Vec::new();
            {
                let mut inner = self.write();
                self.apply_links(&mut inner, &self.known(), &mut changes);
            }
            self.send(changes);
        }
        self.read()
    }

    /// Takes the directory the store kept, before Graph answers. Returns
    /// how many users it holds.
    pub fn restore(&self, records: Vec<DirectoryRecord>) -> usize {
        let records: Vec<Arc<DirectoryRecord>> = records.into_iter().map(Arc::new).collect();
        self.put_all(records, true).records.len()
    }

    /// Every user there is (a full read): replaces what is known.
    pub fn replace(&self, users: &[User]) -> Replaced {
        self.replace_records(self.records_as_read(users))
    }

    /// The records of users as a full read lists them (one page of it),
    /// to hand to [`DirectoryView::replace_records`] once every page is
    /// in. A user the view already holds the same is its record as held:
    /// a full read of an unchanged directory allocates no second copy of
    /// it, and Graph's shape of a page is dropped as soon as it is read.
    pub fn records_as_read(&self, users: &[User]) -> Vec<Arc<DirectoryRecord>> {
        let known = self.known();
        users
            .iter()
            .filter(|u| u.removed.is_none() && !u.id.is_empty())
            .map(|u| {
                let record = DirectoryRecord::from_user(u);
                match known.get(&lower(&record.id)) {
                    Some((_, held)) if *held.record == record => Arc::clone(&held.record),
                    _ => Arc::new(record),
                }
            })
            .collect()
    }

    /// Every user there is, as [`DirectoryView::records_as_read`] made
    /// them from a full read: replaces what is known.
    pub fn replace_records(&self, records: Vec<Arc<DirectoryRecord>>) -> Replaced {
        self.put_all(records, false)
    }

    fn put_all(&self, records: Vec<Arc<DirectoryRecord>>, from_store: bool) -> Replaced {
        // The entries and the index are built outside the locks: folding
        // 50,000 names takes a while, searches and lookups go on meanwhile.
        let entries: Vec<(Arc<str>, Arc<str>, Entry)> = records
            .iter()
            .map(|r| {
                (
                    r.key(),
                    sort_name(r),
                    Entry::new(Arc::clone(r), &self.scope),
                )
            })
            .collect();
        let mut fresh = Known::of(entries.iter().map(|(id, name, entry)| {
            let user = KnownUser {
                record: Arc::clone(&entry.record),
                name: Arc::clone(name),
            };
            (Arc::clone(id), user)
        }));
        fresh.loaded = true;
        let mut changes = Vec::new();
        let replaced = {
            let mut inner = self.write();
            self.apply_links(&mut inner, &self.known(), &mut changes);
            let old = std::mem::replace(&mut *self.known_mut(), fresh);
            let known = self.known();
            let gone: Vec<Arc<str>> = old
                .ids()
                .filter(|id| !known.contains(id))
                .cloned()
                .collect();
            let changed: Vec<Arc<DirectoryRecord>> = entries
                .iter()
                .filter(|(id, _, entry)| {
                    old.get(id)
                        .is_none_or(|(_, u)| !u.record.stores_as(&entry.record))
                })
                .map(|(_, _, entry)| Arc::clone(&entry.record))
                .collect();
            drop(old);
            // What was read of each user stays with it.
            let mut seen: HashMap<Arc<str>, Seen> = HashMap::new();
            for ((_, id), entry) in std::mem::take(&mut inner.entries) {
                if let Some(presence) = entry.presence {
                    seen.insert(id, presence);
                }
            }
            for (id, name, entry) in entries {
                let presence = seen.remove(&id);
                inner.insert(name, id, entry, presence);
            }
            // Agents gone from the directory keep theirs until unlinked.
            for (id, presence) in seen {
                if inner.agents.contains_key(&id) {
                    inner.orphan_presence.insert(id, presence);
                }
            }
            inner.from_store = from_store;
            let ids: Vec<Arc<str>> = known.ids().cloned().collect();
            for id in ids.iter().chain(&gone) {
                self.retier(&mut inner, &known, id, &mut changes);
            }
            Replaced {
                records,
                changed,
                removed: gone.iter().map(|id| id.to_string()).collect(),
            }
        };
        self.send(changes);
        replaced
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
            let mut known = self.known_mut();
            self.apply_links(&mut inner, &known, &mut changes);
            for user in changed.iter().filter(|u| !u.id.is_empty()) {
                let lower: Arc<str> = Arc::from(user.id.to_ascii_lowercase().as_str());
                let old = known
                    .remove(&lower)
                    .and_then(|k| inner.remove(k.name, &lower));
                let record = match &old {
                    Some(entry) => {
                        let mut record = DirectoryRecord::clone(&entry.record);
                        record.merge(user);
                        record
                    }
                    None => DirectoryRecord::from_user(user),
                };
                let record = Arc::new(record);
                let id = record.key();
                let name = sort_name(&record);
                records.push(Arc::clone(&record));
                let presence = old.and_then(|e| e.presence);
                let entry = Entry::new(Arc::clone(&record), &self.scope);
                known.insert(
                    Arc::clone(&id),
                    KnownUser {
                        record,
                        name: Arc::clone(&name),
                    },
                );
                inner.insert(name, Arc::clone(&id), entry, presence);
                self.retier(&mut inner, &known, &id, &mut changes);
            }
            for id in removed {
                let id: Arc<str> = Arc::from(id.to_ascii_lowercase().as_str());
                if let Some(user) = known.remove(&id) {
                    inner.remove(user.name, &id);
                }
                self.retier(&mut inner, &known, &id, &mut changes);
                gone.push(id.to_string());
            }
        }
        self.send(changes);
        (records, gone)
    }

    /// The members of the scope's groups, as just read (ids in any case):
    /// who is in scope changes to them, and the slower tier with it.
    /// Returns how many listed users the groups name. Nothing for a scope
    /// not by groups.
    pub fn set_members(&self, ids: impl IntoIterator<Item = String>) -> usize {
        if !matches!(self.scope, Scope::Groups) {
            return 0;
        }
        let members: HashSet<Arc<str>> = ids
            .into_iter()
            .map(|id| Arc::from(id.to_ascii_lowercase().as_str()))
            .collect();
        let mut changes = Vec::new();
        let in_scope = {
            let mut inner = self.write();
            let known = self.known();
            self.apply_links(&mut inner, &known, &mut changes);
            let mut moved = Vec::new();
            for ((_, id), entry) in inner.entries.iter_mut() {
                let want = entry.record.teams_enabled() && members.contains(id);
                if entry.in_scope != want {
                    entry.in_scope = want;
                    moved.push(Arc::clone(id));
                }
            }
            inner.members = Some(members);
            for id in &moved {
                self.retier(&mut inner, &known, id, &mut changes);
            }
            inner.entries.values().filter(|e| e.in_scope).count()
        };
        self.send(changes);
        in_scope
    }

    /// Links and unlinks a step committed: `(user id, Some(agent))` links,
    /// `(user id, None)` unlinks, the ids as the sync loop holds them (the
    /// view keeps the agent's, and the user's when it does not know the
    /// user yet). Never waits for a search: when one holds the view, the
    /// links are applied by whoever takes it next.
    pub fn set_links(&self, links: Vec<(Arc<str>, Option<Arc<str>>)>) {
        if links.is_empty() {
            return;
        }
        {
            let mut pending = self.pending();
            if pending.is_empty() {
                *pending = links;
            } else {
                pending.extend(links);
            }
        }
        let mut changes = Vec::new();
        if let Ok(mut inner) = self.inner.try_write() {
            self.apply_links(&mut inner, &self.known(), &mut changes);
        }
        self.send(changes);
    }

    /// Puts `id` in or out of the slower tier as it now stands, and drops a
    /// presence nobody reads any more.
    fn retier(
        &self,
        inner: &mut Inner,
        known: &Known,
        id: &Arc<str>,
        changes: &mut Vec<PollChange>,
    ) {
        let agent = inner.agents.contains_key(id);
        let want = !agent && inner.entry(known, id).is_some_and(|e| e.in_scope);
        let has = inner.tier.contains(id);
        if want && !has {
            inner.tier.insert(Arc::clone(id));
            changes.push(PollChange::Add(Arc::clone(id)));
        } else if !want && has {
            inner.tier.remove(id);
            changes.push(PollChange::Remove(Arc::clone(id)));
        }
        if !want
            && !agent
            && let Some(entry) = inner.entry_mut(known, id)
        {
            entry.presence = None;
        }
    }

    fn send(&self, changes: Vec<PollChange>) {
        if let Some(tier) = &self.tier {
            tier.send(changes);
        }
    }

    /// Whether a full read came in or a stored directory was restored.
    pub fn loaded(&self) -> bool {
        self.known().loaded
    }

    /// The record of a user the directory has, listed or not, by object id
    /// in any case: what the sync loop links agents with. Never waits for
    /// a search.
    pub fn record(&self, id: &str) -> Option<Arc<DirectoryRecord>> {
        let known = self.known();
        known.get(&lower(id)).map(|(_, u)| Arc::clone(&u.record))
    }

    /// The user whose UPN or mail is `name` (any case), listed or not.
    /// Never waits for a search.
    pub fn find(&self, name: &str) -> Option<Arc<DirectoryRecord>> {
        self.known().find(name).map(|u| Arc::clone(&u.record))
    }

    /// How many users the directory has, listed or not.
    pub fn known_users(&self) -> usize {
        self.known().len()
    }

    pub fn status(&self) -> DirectoryStatus {
        let inner = self.settled();
        DirectoryStatus {
            users: inner.entries.len(),
            listed: inner.entries.values().filter(|e| e.listed()).count(),
            tier_users: inner.tier.len(),
            loaded: self.known().loaded,
            from_store: inner.from_store,
        }
    }

    /// One listed user by object id (any case).
    pub fn get(&self, id: &str) -> Option<DirectoryUser> {
        let inner = self.settled();
        let known = self.known();
        let entry = inner.entry(&known, &lower(id))?;
        entry.listed().then(|| entry.user())
    }

    /// A page of the listed users matching `query`, in listing order.
    pub fn query(&self, query: &DirectoryQuery) -> DirectoryPage {
        let inner = self.settled();
        let mut users = Vec::with_capacity(query.limit.min(64));
        let mut total = 0usize;
        let mut more = false;
        let mut last: Option<&Key> = None;
        for (key, entry) in &inner.entries {
            if !entry.listed() || !matches(entry, query) {
                continue;
            }
            total += 1;
            let after = query
                .after
                .as_ref()
                .is_none_or(|a| (&*key.0, &*key.1) > (a.name.as_str(), a.id.as_str()));
            if !after {
                continue;
            }
            if users.len() < query.limit {
                users.push(entry.user());
                last = Some(key);
            } else {
                more = true;
            }
        }
        DirectoryPage {
            users,
            next: last.filter(|_| more).map(|(name, id)| SortKey {
                name: name.to_string(),
                id: id.to_string(),
            }),
            total,
        }
    }

    /// A presence read, at `at`.
    pub fn observe_at(&self, user_id: &str, presence: &Presence, at: DateTime<Utc>) {
        let mut changes = Vec::new();
        let mut inner = self.write();
        let mut known = self.known();
        if !self.pending().is_empty() {
            self.apply_links(&mut inner, &known, &mut changes);
            drop(known);
            drop(inner);
            self.send(changes);
            inner = self.write();
            known = self.known();
        }
        let id = user_id.to_ascii_lowercase();
        // Only users someone reads: a late answer for a user who left is dropped.
        let agent = inner.agents.contains_key(id.as_str());
        if !agent && !inner.tier.contains(id.as_str()) {
            return;
        }
        let fresh = |old: Option<Seen>| match old {
            Some(seen) if seen.presence == *presence => seen,
            Some(_) => Seen {
                presence: presence.clone(),
                since: Some(at),
            },
            None => Seen {
                presence: presence.clone(),
                since: None,
            },
        };
        match inner.entry_mut(&known, &id) {
            Some(entry) => entry.presence = Some(fresh(entry.presence.take())),
            None => {
                let id: Arc<str> = Arc::from(id.as_str());
                let old = inner.orphan_presence.remove(&id);
                inner.orphan_presence.insert(id, fresh(old));
            }
        }
    }
}

fn matches(entry: &Entry, query: &DirectoryQuery) -> bool {
    if let Some(search) = &query.search {
        let by_text = entry.text().contains(search.as_str());
        let by_phone = query
            .phone_digits
            .as_deref()
            .is_some_and(|d| entry.digits().contains(d));
        if !by_text && !by_phone {
            return false;
        }
    }
    if let Some(wanted) = &query.presence {
        let Some(seen) = &entry.presence else {
            return false;
        };
        if !wanted.contains(&seen.presence.availability) {
            return false;
        }
    }
    if let Some(department) = &query.department
        && entry.department() != Some(department.as_str())
    {
        return false;
    }
    if let Some(has_phone) = query.has_phone
        && entry.has_dial != has_phone
    {
        return false;
    }
    true
}

impl PresenceObserver for DirectoryView {
    fn observed(&self, user_id: &str, presence: &Presence) {
        self.observe_at(user_id, presence, Utc::now());
    }
}

mod known;
#[cfg(test)]
mod tests;

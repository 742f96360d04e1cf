//! The users the view knows, by id and by UPN or mail: the one index of
//! the directory's records. The view finds a user's entry through it, and
//! the sync loop looks users up in it when it links agents, so the loop
//! holds no copy of its own.
//!
//! It sits under a lock of its own, apart from the view's entries: a search
//! holds the entries for a whole scan, and the sync loop must never wait
//! for one. Only the directory task changes it (a full read, the delta
//! link), for as long as one swap or one delta's users take.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::record::DirectoryRecord;

/// One user: the record and the sort name its entry is listed under.
pub(super) struct KnownUser {
    pub(super) record: Arc<DirectoryRecord>,
    pub(super) name: Arc<str>,
}

/// Every user the directory has, listed or not.
#[derive(Default)]
pub(super) struct Known {
    /// By lower-case id (the record's own id when it is lower case).
    users: HashMap<Arc<str>, KnownUser>,
    /// Lower-case UPN and mail → the id.
    by_name: HashMap<Box<str>, Arc<str>>,
    /// A full read came in, or a stored directory was restored.
    pub(super) loaded: bool,
}

impl Known {
    /// An index of `users` (lower-case id, user), replacing nothing.
    pub(super) fn of(users: impl IntoIterator<Item = (Arc<str>, KnownUser)>) -> Known {
        let users = users.into_iter();
        let mut known = Known {
            users: HashMap::with_capacity(users.size_hint().0),
            by_name: HashMap::with_capacity(users.size_hint().0),
            loaded: false,
        };
        for (id, user) in users {
            known.insert(id, user);
        }
        known
    }

    pub(super) fn len(&self) -> usize {
        self.users.len()
    }

    /// The user with lower-case id `id`, and the id as held.
    pub(super) fn get(&self, id: &str) -> Option<(&Arc<str>, &KnownUser)> {
        self.users.get_key_value(id)
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.users.contains_key(id)
    }

    /// The user whose UPN or mail is `name`, in any case.
    pub(super) fn find(&self, name: &str) -> Option<&KnownUser> {
        let name = name.to_lowercase();
        self.by_name
            .get(name.as_str())
            .and_then(|id| self.users.get(id))
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.users.keys()
    }

    /// Puts `user` in under the lower-case `id`, in place of what was there.
    pub(super) fn insert(&mut self, id: Arc<str>, user: KnownUser) {
        self.remove(&id);
        for name in names(&user.record) {
            self.by_name.insert(name.into_boxed_str(), Arc::clone(&id));
        }
        self.users.insert(id, user);
    }

    /// Takes the user with lower-case id `id` out, with the names that
    /// still lead to it.
    pub(super) fn remove(&mut self, id: &str) -> Option<KnownUser> {
        let user = self.users.remove(id)?;
        for name in names(&user.record) {
            if self.by_name.get(name.as_str()).is_some_and(|n| &**n == id) {
                self.by_name.remove(name.as_str());
            }
        }
        Some(user)
    }
}

/// The names a user is found under: UPN and mail, lower case.
fn names(record: &DirectoryRecord) -> impl Iterator<Item = String> + '_ {
    [record.user_principal_name(), record.mail()]
        .into_iter()
        .flatten()
        .map(str::to_lowercase)
}

/// `id` in lower case, without a copy when it is already.
pub(super) fn lower(id: &str) -> std::borrow::Cow<'_, str> {
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(id.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(id)
    }
}

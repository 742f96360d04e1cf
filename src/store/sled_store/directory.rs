//! The stored directory, in its own tree (`directory`): `u/<lower-case id>`
//! → [`StoredUser`] as JSON, `link` → the delta link, `complete` once a
//! full read was stored. One sled batch a change, flushed and synced like
//! every commit, except a replace of more users than one part holds, which
//! is written in parts and shown only once its last part is in. It is a cache of Graph: a record that no longer reads is
//! skipped with a warning at load, never a reason to refuse the store.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::SledStore;
use crate::store::keys;
use crate::store::{DirectoryBatch, MetaKey, StoreError, StoredDirectory, StoredUser};

pub(super) const TREE: &str = "directory";
const USER: &[u8] = b"u/";
/// Users staged for a replace that comes in several commit log records.
const STAGED: &[u8] = b"s/";
const LINK: &[u8] = b"link";
const COMPLETE: &[u8] = b"complete";
/// Users a part of a large replace writes in one sled batch (see
/// [`SledStore::replace_directory_in_parts`]).
pub(super) const REPLACE_PART: usize = 2_000;

fn user_key(id: &str) -> Vec<u8> {
    keyed(USER, id)
}

/// A user as the tree stores it.
fn user_value(user: &StoredUser) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(user).map_err(|e| StoreError::InvalidBatch(e.to_string()))
}

fn keyed(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id.to_ascii_lowercase().as_bytes());
    key
}

/// How a directory write treats the users staged before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Staged {
    /// Leaves them alone.
    Ignore,
    /// A replace: the staged users are part of its users, and the stage is
    /// emptied.
    Include,
}

impl SledStore {
    fn directory_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(TREE).map_err(|e| self.sled_error(e))
    }

    pub(super) fn read_directory(&self) -> Result<Option<StoredDirectory>, StoreError> {
        let tree = self.directory_tree()?;
        if tree
            .get(COMPLETE)
            .map_err(|e| self.sled_error(e))?
            .is_none()
        {
            return Ok(None);
        }
        let delta_link = tree
            .get(LINK)
            .map_err(|e| self.sled_error(e))?
            .and_then(|v| String::from_utf8(v.to_vec()).ok());
        let mut users = Vec::new();
        let mut skipped = 0usize;
        for item in tree.scan_prefix(USER) {
            let (_, value) = item.map_err(|e| self.sled_error(e))?;
            match serde_json::from_slice::<StoredUser>(&value) {
                Ok(user) => users.push(user),
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "stored directory records that no longer read were skipped; the next full read brings them back"
            );
        }
        Ok(Some(StoredDirectory { users, delta_link }))
    }

    pub(super) fn write_directory(&self, batch: DirectoryBatch) -> Result<(), StoreError> {
        if batch.replace && batch.upserts.len() > REPLACE_PART {
            return self.replace_directory_in_parts(batch);
        }
        self.write_directory_at(batch, None, Staged::Ignore)
    }

    /// A replace too large for one sled batch: sled keeps every version of
    /// the tree's nodes a batch replaces until the batch ends, so one batch
    /// of 50,000 users took over 300 MB for a moment. Here the directory
    /// is first marked incomplete (no `complete`, no delta link), then the
    /// users gone and the users read are written [`REPLACE_PART`] at a
    /// time, and the last part marks it complete with its delta link. A
    /// crash in between leaves a directory the store does not show
    /// ([`SledStore::read_directory`] needs `complete`): the next start
    /// reads the directory whole before it is ready, as a first start does.
    /// Commits are held throughout, as for one batch.
    fn replace_directory_in_parts(&self, batch: DirectoryBatch) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        self.withdraw_clean_mark()?;
        let tree = self.directory_tree()?;
        // A replace without a link keeps the stored one, as one batch does.
        let link = match &batch.delta_link {
            Some(link) => Some(sled::IVec::from(link.as_bytes())),
            None => tree.get(LINK).map_err(|e| self.sled_error(e))?,
        };
        let mut incomplete = sled::Batch::default();
        incomplete.remove(COMPLETE);
        incomplete.remove(LINK);
        tree.apply_batch(incomplete)
            .map_err(|e| self.sled_error(e))?;
        let keep = batch.upserts.iter().map(|u| user_key(&u.id)).collect();
        let gone = self.users_not_named(&tree, keep)?;
        for part in gone.chunks(REPLACE_PART) {
            let mut writes = sled::Batch::default();
            for key in part {
                writes.remove(key.clone());
            }
            tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
        }
        // `batch.removes` adds nothing here: a replace removes every user it
        // does not name, and one it names is written again below.
        let mut parts = batch.upserts.chunks(REPLACE_PART).peekable();
        while let Some(part) = parts.next() {
            let mut writes = sled::Batch::default();
            for user in part {
                let value = user_value(user)?;
                writes.insert(user_key(&user.id), value);
            }
            if parts.peek().is_none() {
                writes.insert(COMPLETE, b"1".as_slice());
                if let Some(link) = &link {
                    writes.insert(LINK, link.clone());
                }
            }
            tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
        }
        self.durable()
    }

    /// Applies a directory batch, and with `position` the commit log
    /// position it brings the store to (in the main tree), as one sled
    /// transaction over both trees: both are written or neither.
    pub(super) fn write_directory_at(
        &self,
        batch: DirectoryBatch,
        position: Option<u64>,
        staged: Staged,
    ) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        if let Some(position) = position {
            self.check_next_position(position)?;
        }
        if staged == Staged::Include && !batch.replace {
            return Err(StoreError::InvalidBatch(
                "only a replace takes the staged directory users".to_owned(),
            ));
        }
        self.withdraw_clean_mark()?;
        let tree = self.directory_tree()?;
        let mut writes = sled::Batch::default();
        // The staged users, under their user keys.
        let mut staged_users = Vec::new();
        if staged == Staged::Include {
            for item in tree.scan_prefix(STAGED) {
                let (key, value) = item.map_err(|e| self.sled_error(e))?;
                let mut user_key = USER.to_vec();
                user_key.extend_from_slice(&key[STAGED.len()..]);
                staged_users.push((user_key, value));
                writes.remove(key);
            }
        }
        if batch.replace {
            let keep = batch
                .upserts
                .iter()
                .map(|u| user_key(&u.id))
                .chain(staged_users.iter().map(|(key, _)| key.clone()))
                .collect();
            for key in self.users_not_named(&tree, keep)? {
                writes.remove(key);
            }
            writes.insert(COMPLETE, b"1".as_slice());
        }
        for id in &batch.removes {
            writes.remove(user_key(id));
        }
        for (key, value) in staged_users {
            writes.insert(key, value);
        }
        for user in &batch.upserts {
            let value = user_value(user)?;
            writes.insert(user_key(&user.id), value);
        }
        if let Some(link) = &batch.delta_link {
            writes.insert(LINK, link.as_bytes());
        }
        self.apply_directory_writes(&tree, writes, position)
    }

    /// The keys of the stored users a replace naming `keep` drops.
    fn users_not_named(
        &self,
        tree: &sled::Tree,
        keep: std::collections::HashSet<Vec<u8>>,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        let mut gone = Vec::new();
        for item in tree.scan_prefix(USER).keys() {
            let key = item.map_err(|e| self.sled_error(e))?;
            if !keep.contains(key.as_ref()) {
                gone.push(key);
            }
        }
        Ok(gone)
    }

    /// Stages `users` for a replace that comes in several commit log
    /// records ([`Staged::Include`] takes them), with the log position; the
    /// first part empties what an unfinished one left staged. Staged users
    /// are not part of the directory until then.
    pub(super) fn write_directory_stage_at(
        &self,
        first: bool,
        users: &[StoredUser],
        position: u64,
    ) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        self.check_next_position(position)?;
        self.withdraw_clean_mark()?;
        let tree = self.directory_tree()?;
        let mut writes = sled::Batch::default();
        if first {
            for item in tree.scan_prefix(STAGED).keys() {
                writes.remove(item.map_err(|e| self.sled_error(e))?);
            }
        }
        for user in users {
            let value = user_value(user)?;
            writes.insert(keyed(STAGED, &user.id), value);
        }
        self.apply_directory_writes(&tree, writes, Some(position))
    }

    /// Applies `writes` to the directory's tree, with the log position in
    /// the main tree in the same transaction, and makes them durable.
    /// Called with commits held.
    fn apply_directory_writes(
        &self,
        tree: &sled::Tree,
        writes: sled::Batch,
        position: Option<u64>,
    ) -> Result<(), StoreError> {
        match position {
            None => tree.apply_batch(writes).map_err(|e| self.sled_error(e))?,
            Some(position) => {
                let mut meta = sled::Batch::default();
                meta.insert(
                    keys::meta_key(&keys::meta_name(&MetaKey::LogPosition)),
                    position.to_string().as_bytes(),
                );
                let main: &sled::Tree = &self.db;
                (main, tree)
                    .transaction(|(main, directory)| {
                        main.apply_batch(&meta)?;
                        directory.apply_batch(&writes)?;
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| match e {
                        TransactionError::Storage(e) => self.sled_error(e),
                        TransactionError::Abort(()) => {
                            StoreError::Io("the directory write was aborted".to_owned())
                        }
                    })?;
            }
        }
        self.durable()
    }

    /// The directory tree as it is, complete or not (for snapshots): whether
    /// a full read was stored, the delta link, and every user that reads.
    pub(crate) fn directory_parts(&self) -> Result<DirectoryParts, StoreError> {
        let tree = self.directory_tree()?;
        let complete = tree
            .get(COMPLETE)
            .map_err(|e| self.sled_error(e))?
            .is_some();
        let delta_link = tree
            .get(LINK)
            .map_err(|e| self.sled_error(e))?
            .and_then(|v| String::from_utf8(v.to_vec()).ok());
        let users = |prefix: &[u8]| -> Result<Vec<StoredUser>, StoreError> {
            let mut users = Vec::new();
            for item in tree.scan_prefix(prefix) {
                let (_, value) = item.map_err(|e| self.sled_error(e))?;
                if let Ok(user) = serde_json::from_slice::<StoredUser>(&value) {
                    users.push(user);
                }
            }
            Ok(users)
        };
        Ok(DirectoryParts {
            complete,
            delta_link,
            users: users(USER)?,
            staged: users(STAGED)?,
        })
    }

    /// Writes `parts` into an empty directory tree (a restored snapshot's),
    /// durably.
    pub(crate) fn restore_directory(&self, parts: &DirectoryParts) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        let tree = self.directory_tree()?;
        if !tree.is_empty() {
            return Err(StoreError::NotEmpty {
                dir: self.dir.clone(),
            });
        }
        self.withdraw_clean_mark()?;
        let mut writes = sled::Batch::default();
        if parts.complete {
            writes.insert(COMPLETE, b"1".as_slice());
        }
        if let Some(link) = &parts.delta_link {
            writes.insert(LINK, link.as_bytes());
        }
        for (prefix, users) in [(USER, &parts.users), (STAGED, &parts.staged)] {
            for user in users {
                let value = user_value(user)?;
                writes.insert(keyed(prefix, &user.id), value);
            }
        }
        tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
        self.durable()
    }
}

/// The directory tree's contents, complete or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DirectoryParts {
    /// A full read was stored ([`crate::store::Store::directory`] shows it).
    pub complete: bool,
    pub delta_link: Option<String>,
    pub users: Vec<StoredUser>,
    /// Users staged for a replace whose last part has not come yet.
    pub staged: Vec<StoredUser>,
}

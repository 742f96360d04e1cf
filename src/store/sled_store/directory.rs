//! The stored directory, in its own tree (`directory`): `u/<lower-case id>`
//! → [`StoredUser`] as JSON, `link` → the delta link, `complete` once a
//! full read was stored, `s/<lower-case id>` → a user staged for a replace
//! that comes in several cluster commit log records. One sled batch a
//! change, flushed and synced like every commit, except where one batch
//! would hold thousands of users: a replace of more users than one part
//! holds, the record that ends a staged replace, and a snapshot's restore
//! are written in parts, and shown only once their last part is in. It is
//! a cache of Graph: a record that no longer reads is skipped with a
//! warning at load, never a reason to refuse the store.

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
pub(super) const COMPLETE: &[u8] = b"complete";
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

/// A staged user's key as the user's key.
fn staged_as_user(staged: &[u8]) -> Vec<u8> {
    let mut key = USER.to_vec();
    key.extend_from_slice(staged.get(STAGED.len()..).unwrap_or_default());
    key
}

impl SledStore {
    pub(super) fn directory_tree(&self) -> Result<sled::Tree, StoreError> {
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
        self.write_directory_at(batch, None)
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
    ) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        if let Some(position) = position {
            self.check_next_position(position)?;
        }
        self.withdraw_clean_mark()?;
        let tree = self.directory_tree()?;
        let mut writes = sled::Batch::default();
        if batch.replace {
            let keep = batch.upserts.iter().map(|u| user_key(&u.id)).collect();
            for key in self.users_not_named(&tree, keep)? {
                writes.remove(key);
            }
            writes.insert(COMPLETE, b"1".as_slice());
        }
        for id in &batch.removes {
            writes.remove(user_key(id));
        }
        for user in &batch.upserts {
            let value = user_value(user)?;
            writes.insert(user_key(&user.id), value);
        }
        if let Some(link) = &batch.delta_link {
            writes.insert(LINK, link.as_bytes());
        }
        self.apply_tree_writes(&tree, writes, position)
    }

    /// The last commit log record of a replace that came in several:
    /// `batch` (a replace) with the users staged before it as part of its
    /// users, and the record's position. One sled transaction of 50,000
    /// users would hold every node version they touch until it ends (over
    /// 300 MB for a moment), so it is written in parts of `part` users,
    /// yet all or nothing for a reader and for the log:
    ///
    /// 1. the directory is marked incomplete (no `complete`), so nothing
    ///    of it shows until the replace ends;
    /// 2. the stored users the replace does not name (neither staged nor in
    ///    `batch`) are removed and the staged ones copied under their user
    ///    keys, a part at a time, the stage itself left whole;
    /// 3. one transaction writes `batch`'s users, the delta link (a replace
    ///    without one keeps the stored link), `complete` and the position;
    /// 4. the stage is emptied, a part at a time.
    ///
    /// Killed before 3, the store is still at the position before, with
    /// the stage whole: the record is applied again from the start and
    /// gives the same directory. Killed during 4, the record was applied;
    /// the staged users left are no part of the directory, and the next
    /// replace's first stage empties them. `batch.removes` adds nothing: a
    /// replace removes every user it does not name, and writes every user
    /// it names.
    pub(super) fn write_staged_replace_at(
        &self,
        batch: DirectoryBatch,
        position: u64,
        part: usize,
    ) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        self.check_next_position(position)?;
        if !batch.replace {
            return Err(StoreError::InvalidBatch(
                "only a replace takes the staged directory users".to_owned(),
            ));
        }
        let part = part.max(1);
        // The record's own users, encoded before anything is changed.
        let mut last = sled::Batch::default();
        for user in &batch.upserts {
            last.insert(user_key(&user.id), user_value(user)?);
        }
        self.withdraw_clean_mark()?;
        let tree = self.directory_tree()?;
        let mut incomplete = sled::Batch::default();
        incomplete.remove(COMPLETE);
        tree.apply_batch(incomplete)
            .map_err(|e| self.sled_error(e))?;
        let staged = self.staged_keys(&tree)?;
        let keep = batch
            .upserts
            .iter()
            .map(|u| user_key(&u.id))
            .chain(staged.iter().map(|key| staged_as_user(key)))
            .collect();
        let gone = self.users_not_named(&tree, keep)?;
        self.remove_in_parts(&tree, &gone, part)?;
        let mut writes = sled::Batch::default();
        let mut in_part = 0;
        for item in tree.scan_prefix(STAGED) {
            let (key, value) = item.map_err(|e| self.sled_error(e))?;
            writes.insert(staged_as_user(&key), value);
            in_part += 1;
            if in_part == part {
                tree.apply_batch(std::mem::take(&mut writes))
                    .map_err(|e| self.sled_error(e))?;
                in_part = 0;
            }
        }
        if in_part > 0 {
            tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
        }
        last.insert(COMPLETE, b"1".as_slice());
        if let Some(link) = &batch.delta_link {
            last.insert(LINK, link.as_bytes());
        }
        self.apply_tree_writes(&tree, last, Some(position))?;
        self.remove_in_parts(&tree, &staged, part)
    }

    /// The keys of the staged users.
    fn staged_keys(&self, tree: &sled::Tree) -> Result<Vec<sled::IVec>, StoreError> {
        tree.scan_prefix(STAGED)
            .keys()
            .map(|key| key.map_err(|e| self.sled_error(e)))
            .collect()
    }

    /// Removes `keys` from the directory's tree, `part` in a sled batch.
    /// Not durable by itself: the commit after it is.
    fn remove_in_parts(
        &self,
        tree: &sled::Tree,
        keys: &[sled::IVec],
        part: usize,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(part.max(1)) {
            let mut writes = sled::Batch::default();
            for key in chunk {
                writes.remove(key.clone());
            }
            tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
        }
        Ok(())
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
    /// records (`write_staged_replace_at` takes them), with the log position; the
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
        if first {
            // Emptying the stage may come before the record's transaction:
            // killed in between, the record is applied again and empties
            // it again.
            let left = self.staged_keys(&tree)?;
            self.remove_in_parts(&tree, &left, REPLACE_PART)?;
        }
        let mut writes = sled::Batch::default();
        for user in users {
            let value = user_value(user)?;
            writes.insert(keyed(STAGED, &user.id), value);
        }
        self.apply_tree_writes(&tree, writes, Some(position))
    }

    /// Applies `writes` to the directory's tree, with the log position in
    /// the main tree in the same transaction, and makes them durable.
    /// Called with commits held.
    pub(super) fn apply_tree_writes(
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
    /// durably, [`REPLACE_PART`] users in a sled batch, `complete` and the
    /// delta link with the last. Killed before it ends, the store holds no
    /// directory it shows (the next full read brings it), as when killed
    /// before it began.
    pub(crate) fn restore_directory(&self, parts: &DirectoryParts) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        let tree = self.directory_tree()?;
        if !tree.is_empty() {
            return Err(StoreError::NotEmpty {
                dir: self.dir.clone(),
            });
        }
        self.withdraw_clean_mark()?;
        let users = parts.users.iter().map(|user| (USER, user));
        let staged = parts.staged.iter().map(|user| (STAGED, user));
        let mut writes = sled::Batch::default();
        let mut in_part = 0;
        for (prefix, user) in users.chain(staged) {
            writes.insert(keyed(prefix, &user.id), user_value(user)?);
            in_part += 1;
            if in_part == REPLACE_PART {
                tree.apply_batch(std::mem::take(&mut writes))
                    .map_err(|e| self.sled_error(e))?;
                in_part = 0;
            }
        }
        if parts.complete {
            writes.insert(COMPLETE, b"1".as_slice());
        }
        if let Some(link) = &parts.delta_link {
            writes.insert(LINK, link.as_bytes());
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

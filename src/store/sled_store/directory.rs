//! The stored directory, in its own tree (`directory`): `u/<lower-case id>`
//! → [`StoredUser`] as JSON, `link` → the delta link, `complete` once a
//! full read was stored. One sled batch a change, flushed and synced like
//! every commit. It is a cache of Graph: a record that no longer reads is
//! skipped with a warning at load, never a reason to refuse the store.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::SledStore;
use crate::store::keys;
use crate::store::{DirectoryBatch, MetaKey, StoreError, StoredDirectory, StoredUser};

pub(super) const TREE: &str = "directory";
const USER: &[u8] = b"u/";
const LINK: &[u8] = b"link";
const COMPLETE: &[u8] = b"complete";

fn user_key(id: &str) -> Vec<u8> {
    let mut key = USER.to_vec();
    key.extend_from_slice(id.to_ascii_lowercase().as_bytes());
    key
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
        self.write_directory_at(batch, None)
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
            let keep: std::collections::HashSet<Vec<u8>> =
                batch.upserts.iter().map(|u| user_key(&u.id)).collect();
            for item in tree.scan_prefix(USER).keys() {
                let key = item.map_err(|e| self.sled_error(e))?;
                if !keep.contains(key.as_ref()) {
                    writes.remove(key);
                }
            }
            writes.insert(COMPLETE, b"1".as_slice());
        }
        for id in &batch.removes {
            writes.remove(user_key(id));
        }
        for user in &batch.upserts {
            let value =
                serde_json::to_vec(user).map_err(|e| StoreError::InvalidBatch(e.to_string()))?;
            writes.insert(user_key(&user.id), value);
        }
        if let Some(link) = &batch.delta_link {
            writes.insert(LINK, link.as_bytes());
        }
        match position {
            None => tree.apply_batch(writes).map_err(|e| self.sled_error(e))?,
            Some(position) => {
                let mut meta = sled::Batch::default();
                meta.insert(
                    keys::meta_key(&keys::meta_name(&MetaKey::LogPosition)),
                    position.to_string().as_bytes(),
                );
                let main: &sled::Tree = &self.db;
                (main, &tree)
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
        let mut users = Vec::new();
        for item in tree.scan_prefix(USER) {
            let (_, value) = item.map_err(|e| self.sled_error(e))?;
            if let Ok(user) = serde_json::from_slice::<StoredUser>(&value) {
                users.push(user);
            }
        }
        Ok(DirectoryParts {
            complete,
            delta_link,
            users,
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
        for user in &parts.users {
            let value =
                serde_json::to_vec(user).map_err(|e| StoreError::InvalidBatch(e.to_string()))?;
            writes.insert(user_key(&user.id), value);
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
}

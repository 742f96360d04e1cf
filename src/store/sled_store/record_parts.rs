//! Parts of a cluster commit log record too large for the log (a step of
//! thousands of agents), in their own tree (`record_parts`): the part's
//! log position (8 bytes, big-endian) → its bytes. Each part is stored in
//! one transaction with its position, like every record; the record is
//! committed whole with its last part's position. The tree is never
//! exported nor part of a snapshot: a snapshot is refused while the
//! store's position is a staged part's ([`SledStore::record_parts_pending`]),
//! and parts left by a record that never ended, with records after them,
//! are no part of the store's state.

use sled::IVec;

use super::SledStore;
use crate::store::StoreError;

const TREE: &str = "record_parts";

impl SledStore {
    fn parts_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(TREE).map_err(|e| self.sled_error(e))
    }

    /// Stores a part of a record with its log position, durably. The
    /// `first` part empties what a record that never ended left; any other
    /// must follow the staged parts.
    pub fn commit_record_part_at(
        &self,
        first: bool,
        part: &[u8],
        position: u64,
    ) -> Result<(), StoreError> {
        let _commits_held = self.lock();
        self.check_next_position(position)?;
        let tree = self.parts_tree()?;
        if first {
            // Before the part's transaction: killed in between, the part
            // is applied again and empties the tree again.
            tree.clear().map_err(|e| self.sled_error(e))?;
        } else {
            self.staged_follow(&tree, position)?;
        }
        self.withdraw_clean_mark()?;
        let mut writes = sled::Batch::default();
        writes.insert(&position.to_be_bytes(), part);
        self.apply_tree_writes(&tree, writes, Some(position))
    }

    /// The staged parts of a record, in order, then `last` (the part at
    /// `position`): the record's bytes. Refused unless the staged parts run
    /// without a gap up to the position before (none for a `first` part).
    pub fn record_with_staged_parts(
        &self,
        first: bool,
        last: &[u8],
        position: u64,
    ) -> Result<Vec<u8>, StoreError> {
        if first {
            return Ok(last.to_vec());
        }
        let tree = self.parts_tree()?;
        let _commits_held = self.lock();
        self.staged_follow(&tree, position)?;
        let mut whole = Vec::new();
        for item in tree.iter() {
            let (_, part) = item.map_err(|e| self.sled_error(e))?;
            whole.extend_from_slice(&part);
        }
        whole.extend_from_slice(last);
        Ok(whole)
    }

    /// Empties the staged parts, once their record is committed. Not
    /// durable by itself: parts left are emptied by the next first part.
    pub fn clear_record_parts(&self) -> Result<(), StoreError> {
        self.parts_tree()?.clear().map_err(|e| self.sled_error(e))
    }

    /// Whether the store is in the middle of a record that comes in parts:
    /// its position is that of the last part staged. A snapshot taken now
    /// would leave out the parts, and a node restored from it could not put
    /// the record together when its next part comes.
    pub fn record_parts_pending(&self) -> Result<bool, StoreError> {
        let Some((key, _)) = self.parts_tree()?.last().map_err(|e| self.sled_error(e))? else {
            return Ok(false);
        };
        Ok(part_position(&key) == Some(self.log_position()?))
    }

    /// Whether the staged parts are the positions from the first one to
    /// `position - 1`, without a gap.
    fn staged_follow(&self, tree: &sled::Tree, position: u64) -> Result<(), StoreError> {
        let mut expected = None;
        for key in tree.iter().keys() {
            let at = part_position(&key.map_err(|e| self.sled_error(e))?);
            if expected.is_some_and(|next| Some(next) != at) || at.is_none() {
                return Err(StoreError::Replication(format!(
                    "the staged parts of a commit log record have a gap before position {position}; \
                     the record cannot be put together"
                )));
            }
            expected = at.map(|at| at + 1);
        }
        if expected != Some(position) {
            return Err(StoreError::Replication(format!(
                "the part at commit log position {position} does not follow a staged first part; \
                 the record cannot be put together"
            )));
        }
        Ok(())
    }
}

fn part_position(key: &IVec) -> Option<u64> {
    Some(u64::from_be_bytes(key.as_ref().try_into().ok()?))
}

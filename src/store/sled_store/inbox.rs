//! The notification inbox, in its own tree (`inbox`): `i/<seq, 8 bytes
//! big-endian>` → one byte for the path it came to (`c` changes, `l`
//! lifecycle), the receive time in milliseconds (8 bytes big-endian, signed)
//! and the body as received; `next` → the next seq, so seqs are never
//! reused once the inbox was emptied. One sled batch an append or an ack,
//! flushed and synced like every commit. Appends take their own lock, not
//! the commit lock: the receiver must answer Graph within seconds, whatever
//! the sync loop is writing.

use chrono::{DateTime, Utc};

use super::SledStore;
use crate::store::{InboxItem, InboxKind, StoreError};

pub(super) const TREE: &str = "inbox";
const ITEM: &[u8] = b"i/";
const NEXT: &[u8] = b"next";

fn item_key(seq: u64) -> Vec<u8> {
    let mut key = ITEM.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn item_seq(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(ITEM)?;
    <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
}

fn encode(kind: InboxKind, received_at: DateTime<Utc>, body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + body.len());
    value.push(match kind {
        InboxKind::Changes => b'c',
        InboxKind::Lifecycle => b'l',
    });
    value.extend_from_slice(&received_at.timestamp_millis().to_be_bytes());
    value.extend_from_slice(body);
    value
}

fn decode(seq: u64, value: &[u8]) -> Option<InboxItem> {
    let (&kind, rest) = value.split_first()?;
    let kind = match kind {
        b'c' => InboxKind::Changes,
        b'l' => InboxKind::Lifecycle,
        _ => return None,
    };
    let millis = i64::from_be_bytes(<[u8; 8]>::try_from(rest.get(..8)?).ok()?);
    Some(InboxItem {
        seq,
        kind,
        received_at: DateTime::from_timestamp_millis(millis)?,
        body: rest.get(8..)?.to_vec(),
    })
}

impl SledStore {
    fn inbox_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(TREE).map_err(|e| self.sled_error(e))
    }

    fn inbox_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // Guards no value: a holder that panicked left nothing half-done
        // that the next append could see (a sled batch is atomic).
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn append_to_inbox(
        &self,
        kind: InboxKind,
        received_at: DateTime<Utc>,
        body: &[u8],
    ) -> Result<u64, StoreError> {
        let _appends_held = self.inbox_lock();
        self.withdraw_clean_mark()?;
        let tree = self.inbox_tree()?;
        let stored = tree.get(NEXT).map_err(|e| self.sled_error(e))?;
        let seq = match stored {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Damaged {
                    dir: self.dir.clone(),
                    problem: "the notification inbox's next number is not 8 bytes".into(),
                })?,
            None => 1,
        };
        let mut writes = sled::Batch::default();
        writes.insert(item_key(seq), encode(kind, received_at, body));
        writes.insert(NEXT, &(seq.saturating_add(1)).to_be_bytes());
        tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
        self.durable()?;
        Ok(seq)
    }

    pub(super) fn read_inbox(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let tree = self.inbox_tree()?;
        let mut items = Vec::new();
        for entry in tree.range(item_key(start)..item_key(u64::MAX)) {
            if items.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(|e| self.sled_error(e))?;
            let Some(seq) = item_seq(&key) else { continue };
            match decode(seq, &value) {
                Some(item) => items.push(item),
                // A record this build cannot read is skipped, not a reason
                // to stop taking notifications: polling reconciles.
                None => tracing::warn!(seq, "a stored notification batch does not read; skipped"),
            }
        }
        Ok(items)
    }

    pub(super) fn ack_inbox_upto(&self, upto: u64) -> Result<usize, StoreError> {
        let _appends_held = self.inbox_lock();
        self.withdraw_clean_mark()?;
        let tree = self.inbox_tree()?;
        let mut writes = sled::Batch::default();
        let mut dropped = 0;
        for key in tree.range(item_key(0)..=item_key(upto)).keys() {
            writes.remove(key.map_err(|e| self.sled_error(e))?);
            dropped += 1;
        }
        if dropped > 0 {
            tree.apply_batch(writes).map_err(|e| self.sled_error(e))?;
            self.durable()?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_reads_back_as_written_and_a_damaged_one_does_not() {
        let at = DateTime::from_timestamp_millis(1_765_000_000_123).unwrap();
        let value = encode(InboxKind::Lifecycle, at, b"{\"value\":[]}");
        let item = decode(7, &value).unwrap();
        assert_eq!(
            item,
            InboxItem {
                seq: 7,
                kind: InboxKind::Lifecycle,
                received_at: at,
                body: b"{\"value\":[]}".to_vec()
            }
        );
        assert_eq!(decode(7, b""), None);
        assert_eq!(decode(7, b"x12345678"), None);
        assert_eq!(decode(7, b"c1234"), None);
        assert_eq!(item_seq(&item_key(42)), Some(42));
    }
}

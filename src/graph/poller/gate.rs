//! One order for each user's presence across every source that reports it.
//!
//! With subscriptions on, a user's presence reaches the sync loop from the
//! agent poller, the reconciliation poller, rich notifications and reads
//! that notifications ask for. Each poller already drops reads that
//! overtook a newer one of its own; the gate drops what is older than
//! anything already passed on from any source, by Graph's `sequenceNumber`
//! (a lexicographically sortable version stamp). A presence without one
//! passes: Graph's reads carry it, and the next reconciliation read
//! corrects anything out of order within one interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The newest sequence number passed on for each user.
#[derive(Debug, Default)]
pub struct SequenceGate {
    newest: Mutex<HashMap<Arc<str>, Box<str>>>,
}

impl SequenceGate {
    pub fn new() -> Arc<Self> {
        Arc::new(SequenceGate::default())
    }

    /// True when a presence of `user` with `sequence` may be passed on: it
    /// is not older than the newest passed on. Records it when it passes.
    pub fn pass(&self, user: &str, sequence: Option<&str>) -> bool {
        let Some(sequence) = sequence else {
            return true;
        };
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        match newest.get_mut(user) {
            Some(known) if sequence < &**known => false,
            Some(known) => {
                if sequence != &**known {
                    *known = sequence.into();
                }
                true
            }
            None => {
                newest.insert(Arc::from(user), sequence.into());
                true
            }
        }
    }

    /// Forgets `user` (unlinked and out of scope).
    pub fn forget(&self, user: &str) {
        self.newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }

    /// Users remembered.
    pub fn len(&self) -> usize {
        self.newest.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_are_held_back_from_any_source() {
        let gate = SequenceGate::new();
        assert!(gate.pass("u", Some("0005")));
        assert!(!gate.pass("u", Some("0004")), "an overtaken read");
        assert!(gate.pass("u", Some("0005")), "the same version again");
        assert!(gate.pass("u", Some("0006")));
        assert!(gate.pass("u", None), "no version: passes");
        assert!(gate.pass("v", Some("0001")), "users are apart");
        gate.forget("u");
        assert!(gate.pass("u", Some("0001")));
        assert_eq!(gate.len(), 2);
    }
}

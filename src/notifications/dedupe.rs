//! Making duplicated and out-of-order notifications harmless.
//!
//! Graph delivers at least once (it retries a delivery it thinks failed)
//! and promises no order. What that costs depends on the notification:
//! - a rich one with a `sequenceNumber`: per user, the newest sequence
//!   number applied is remembered; one not newer is dropped (the same one
//!   again is a duplicate, an older one is stale). Graph's sequence numbers
//!   sort as text, as the poller compares them too;
//! - a rich one without: its identity (subscription, user, and a digest of
//!   the encrypted bytes — a fresh random key per notification makes every
//!   real notification's bytes different) is remembered in a bounded window
//!   of the most recent ones; the same identity again is a duplicate;
//! - a basic one only asks for a read of the user's presence now: a repeat
//!   costs one read and changes nothing, so it is never dropped across
//!   batches (two real changes send byte-identical basic notifications, and
//!   dropping the second would lose it). Within one batch users are read once.
//!
//! Pure: nothing here reads a clock or does I/O.

use std::collections::{HashMap, HashSet, VecDeque};

use aws_lc_rs::digest;

/// What to do with a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before: apply it.
    New,
    /// Seen before: drop it.
    Duplicate,
    /// Older than what was applied for the user: drop it.
    Stale,
}

/// A notification's identity within the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity([u8; 32]);

impl Identity {
    /// From the subscription, the user and the notification's content.
    pub fn of(subscription_id: &str, user_id: &str, content: &[u8]) -> Identity {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [subscription_id.as_bytes(), user_id.as_bytes(), content] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Identity(out)
    }
}

/// What was applied recently. Bounded: at most `window` identities and
/// `window` users' sequence numbers (the oldest user is forgotten first,
/// and then only an older notification of that user can slip through,
/// which the next poll reconciles).
#[derive(Debug)]
pub struct Dedupe {
    window: usize,
    recent: VecDeque<Identity>,
    seen: HashSet<Identity>,
    /// User → newest sequence number applied, and when it was (a counter).
    newest: HashMap<String, (String, u64)>,
    tick: u64,
}

impl Dedupe {
    /// Remembers at most `window` notifications (at least 1).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        Dedupe {
            window,
            recent: VecDeque::with_capacity(window.min(4096)),
            seen: HashSet::new(),
            newest: HashMap::new(),
            tick: 0,
        }
    }

    /// A presence of `user_id` with `sequence_number`: new only if newer
    /// than every one applied for the user. Remembers it when new.
    pub fn sequence(&mut self, user_id: &str, sequence_number: &str) -> Verdict {
        self.tick += 1;
        match self.newest.get_mut(user_id) {
            Some((applied, _)) if sequence_number == applied.as_str() => Verdict::Duplicate,
            Some((applied, _)) if sequence_number < applied.as_str() => Verdict::Stale,
            Some(entry) => {
                *entry = (sequence_number.to_owned(), self.tick);
                Verdict::New
            }
            None => {
                if self.newest.len() >= self.window {
                    self.forget_oldest_user();
                }
                self.newest
                    .insert(user_id.to_owned(), (sequence_number.to_owned(), self.tick));
                Verdict::New
            }
        }
    }

    /// A notification known by its identity only: new unless in the window.
    pub fn identity(&mut self, identity: Identity) -> Verdict {
        if !self.seen.insert(identity) {
            return Verdict::Duplicate;
        }
        self.recent.push_back(identity);
        while self.recent.len() > self.window {
            if let Some(old) = self.recent.pop_front() {
                self.seen.remove(&old);
            }
        }
        Verdict::New
    }

    fn forget_oldest_user(&mut self) {
        if let Some(user) = self
            .newest
            .iter()
            .min_by_key(|(_, (_, tick))| *tick)
            .map(|(user, _)| user.clone())
        {
            self.newest.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_sequence_number_is_new() {
        let mut d = Dedupe::new(10);
        assert_eq!(d.sequence("u1", "C05"), Verdict::New);
        assert_eq!(d.sequence("u1", "C05"), Verdict::Duplicate);
        assert_eq!(d.sequence("u1", "C04"), Verdict::Stale);
        assert_eq!(d.sequence("u2", "C01"), Verdict::New, "users are apart");
        assert_eq!(d.sequence("u1", "C06"), Verdict::New);
        assert_eq!(d.sequence("u1", "C05"), Verdict::Stale);
    }

    #[test]
    fn an_identity_is_a_duplicate_while_in_the_window() {
        let mut d = Dedupe::new(2);
        let a = Identity::of("s", "u", b"a");
        assert_ne!(a, Identity::of("s", "u", b"b"));
        assert_ne!(Identity::of("s", "ua", b""), Identity::of("s", "u", b"a"));
        assert_eq!(d.identity(a), Verdict::New);
        assert_eq!(d.identity(a), Verdict::Duplicate);
        d.identity(Identity::of("s", "u", b"b"));
        d.identity(Identity::of("s", "u", b"c"));
        assert_eq!(d.identity(a), Verdict::New, "the window forgot it");
    }

    #[test]
    fn users_beyond_the_window_forget_the_least_recent() {
        let mut d = Dedupe::new(2);
        d.sequence("u1", "5");
        d.sequence("u2", "5");
        d.sequence("u1", "6");
        d.sequence("u3", "5");
        assert_eq!(
            d.sequence("u1", "6"),
            Verdict::Duplicate,
            "u1 was used last"
        );
        assert_eq!(d.sequence("u2", "4"), Verdict::New, "u2 was forgotten");
    }

    proptest::proptest! {
        /// Whatever order and repeats they come in, the applied sequence
        /// numbers of one user strictly increase.
        #[test]
        fn applied_sequence_numbers_strictly_increase(seqs in proptest::collection::vec(0u32..50, 0..100)) {
            let mut d = Dedupe::new(8);
            let mut applied: Vec<String> = Vec::new();
            for s in seqs {
                let s = format!("{s:08}");
                if d.sequence("u", &s) == Verdict::New {
                    applied.push(s);
                }
            }
            proptest::prop_assert!(applied.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

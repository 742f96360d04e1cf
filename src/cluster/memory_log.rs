//! A [`CommitLog`] kept in memory, for tests of what runs over the log (the
//! replicated store, the daemon's node runner). It keeps JetStream's
//! promises: positions from 1, one after the other; an append lands only
//! when the log's last position is the one the caller expected, and is
//! refused as [`LogError::Fenced`] otherwise. Faults are injected on demand:
//! a refusal, or a record that lands while its acknowledgement is lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{CommitLog, LogError, Position};

/// The in-memory commit log. Thread-safe.
#[derive(Debug, Default)]
pub struct MemoryLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The records kept, oldest first (the oldest may have been forgotten).
    records: VecDeque<(Position, Vec<u8>)>,
    /// The last position ever given (0: none), kept when records are forgotten.
    last: Position,
    /// What the next appends meet, in order.
    faults: VecDeque<Fault>,
}

#[derive(Debug)]
enum Fault {
    /// The append is refused with this error; nothing lands.
    Refuse(LogError),
    /// The record lands, but the caller hears it was unavailable.
    LoseAck,
}

impl MemoryLog {
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryLog::default())
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every change to the log is one push: a panicking holder leaves it whole.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The records kept, oldest first, with their positions.
    pub fn records(&self) -> Vec<(Position, Vec<u8>)> {
        self.inner().records.iter().cloned().collect()
    }

    /// The records from `from` on, at most `max` (as a follower reads them).
    pub fn read(&self, from: Position, max: usize) -> Vec<(Position, Vec<u8>)> {
        self.inner()
            .records
            .iter()
            .filter(|(position, _)| *position >= from)
            .take(max)
            .cloned()
            .collect()
    }

    /// The first kept and the last position: `(0, 0)` when nothing was
    /// ever appended; `(last + 1, last)` when every record was forgotten.
    pub fn bounds(&self) -> (Position, Position) {
        let inner = self.inner();
        let first = match inner.records.front() {
            Some((position, _)) => *position,
            None if inner.last == 0 => 0,
            None => inner.last + 1,
        };
        (first, inner.last)
    }

    /// The last position given (0: none).
    pub fn last(&self) -> Position {
        self.inner().last
    }

    /// Appends whatever the log's last position, as a successor that took
    /// over would: the next append of the node that expected the old last
    /// position is fenced.
    pub fn append_as_other(&self, record: &[u8]) -> Position {
        let mut inner = self.inner();
        inner.push(record)
    }

    /// The next append (after any fault already queued) is refused with
    /// `error`; nothing lands.
    pub fn fail_next(&self, error: LogError) {
        self.inner().faults.push_back(Fault::Refuse(error));
    }

    /// The next append (after any fault already queued) lands in the log,
    /// but its caller hears [`LogError::Unavailable`], as when the
    /// acknowledgement was lost.
    pub fn lose_next_ack(&self) {
        self.inner().faults.push_back(Fault::LoseAck);
    }

    /// Forgets the records before `position`, as a stream with a bounded
    /// history does: a follower behind them needs a snapshot.
    pub fn forget_before(&self, position: Position) {
        let mut inner = self.inner();
        while inner
            .records
            .front()
            .is_some_and(|(first, _)| *first < position)
        {
            inner.records.pop_front();
        }
    }
}

impl Inner {
    fn push(&mut self, record: &[u8]) -> Position {
        self.last += 1;
        let position = self.last;
        self.records.push_back((position, record.to_vec()));
        position
    }
}

impl CommitLog for MemoryLog {
    fn append(&self, record: &[u8], expected_last: Position) -> Result<Position, LogError> {
        let mut inner = self.inner();
        let lose_ack = match inner.faults.pop_front() {
            Some(Fault::Refuse(error)) => return Err(error),
            Some(Fault::LoseAck) => true,
            None => false,
        };
        if inner.last != expected_last {
            return Err(LogError::Fenced {
                expected: expected_last,
                found: Some(inner.last),
            });
        }
        let position = inner.push(record);
        if lose_ack {
            return Err(LogError::Unavailable(format!(
                "no acknowledgement for the record at {position} (simulated)"
            )));
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_follow_the_expected_position_or_are_fenced() {
        let log = MemoryLog::new();
        assert_eq!(log.bounds(), (0, 0));
        assert_eq!(log.append(b"one", 0), Ok(1));
        assert_eq!(log.append(b"two", 1), Ok(2));
        assert_eq!(
            log.append(b"stale", 1),
            Err(LogError::Fenced {
                expected: 1,
                found: Some(2)
            })
        );
        assert_eq!(log.append_as_other(b"other"), 3);
        assert!(matches!(
            log.append(b"three", 2),
            Err(LogError::Fenced { .. })
        ));
        assert_eq!(
            log.records(),
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"other".to_vec())
            ]
        );
        assert_eq!(log.read(2, 1), vec![(2, b"two".to_vec())]);
    }

    #[test]
    fn faults_come_in_the_order_they_were_asked_for() {
        let log = MemoryLog::new();
        log.fail_next(LogError::Unavailable("down".into()));
        log.lose_next_ack();
        assert_eq!(
            log.append(b"a", 0),
            Err(LogError::Unavailable("down".into()))
        );
        assert_eq!(log.last(), 0, "a refused append lands nothing");
        assert!(matches!(log.append(b"b", 0), Err(LogError::Unavailable(_))));
        assert_eq!(log.records(), vec![(1, b"b".to_vec())], "a lost ack lands");
        assert_eq!(log.append(b"c", 1), Ok(2));
    }

    #[test]
    fn forgotten_records_keep_the_positions_going() {
        let log = MemoryLog::new();
        for n in 0..4 {
            log.append(&[n], u64::from(n)).unwrap();
        }
        log.forget_before(3);
        assert_eq!(log.bounds(), (3, 4));
        log.forget_before(10);
        assert_eq!(log.bounds(), (5, 4));
        assert_eq!(log.append(b"e", 4), Ok(5));
    }

    #[test]
    fn appends_from_many_threads_get_distinct_positions() {
        let log = MemoryLog::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut mine = 0;
                    while mine < 25 {
                        let last = log.last();
                        if log.append(b"x", last).is_ok() {
                            mine += 1;
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let positions: Vec<Position> = log.records().iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, (1..=100).collect::<Vec<_>>());
    }
}

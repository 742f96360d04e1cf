//! What the request path has sent, for metrics: calls by endpoint and
//! outcome, and how much of the 30-second budget the last 30 seconds used.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Graph counts its budget over 30 seconds.
const WINDOW: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct CallStats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: BTreeMap<(&'static str, &'static str), u64>,
    recent: VecDeque<Instant>,
}

/// The outcome label of one attempt.
pub fn outcome_of_status(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        429 => "throttled",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

impl CallStats {
    /// Records one attempt sent to Graph and how it ended.
    pub fn record(&self, what: &'static str, outcome: &'static str) {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.calls.entry((what, outcome)).or_default() += 1;
        inner.recent.push_back(now);
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            inner.recent.pop_front();
        }
    }

    /// Attempts by (endpoint, outcome) since start.
    pub fn calls(&self) -> Vec<((&'static str, &'static str), u64)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.calls.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Attempts sent in the last 30 seconds.
    pub fn in_window(&self) -> usize {
        let now = Instant::now();
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .recent
            .iter()
            .filter(|t| now.duration_since(**t) <= WINDOW)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_endpoint_and_outcome() {
        let stats = CallStats::default();
        stats.record("getPresencesByUserId", "ok");
        stats.record("getPresencesByUserId", "ok");
        stats.record("setPresence", outcome_of_status(429));
        assert_eq!(
            stats.calls(),
            vec![
                (("getPresencesByUserId", "ok"), 2),
                (("setPresence", "throttled"), 1)
            ]
        );
        assert_eq!(stats.in_window(), 3);
    }
}

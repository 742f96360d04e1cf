//! Stopping the API. Graceful shutdown of the HTTP server does not reach
//! event streams: once a connection is upgraded to a WebSocket it lives in its
//! own task, outside the server's drain. So the router and `serve` share one
//! [`Shutdown`]: triggering it stops the server from accepting and makes every
//! open event stream send a close frame (1001, going away), and
//! [`Shutdown::streams_closed`] lets the daemon wait for those frames to leave
//! before it exits. Its signal is a [`Stop`] like every other task's.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use crate::stop::{Stop, StopHandle};

/// The API's stop signal and its count of open event streams. Clones share
/// both. Dropping every clone counts as a trigger, so a stream never outlives
/// the daemon state that would have stopped it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: StopHandle,
    stop: Stop,
    open_streams: watch::Sender<usize>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (handle, stop) = Stop::new();
        Shutdown {
            inner: Arc::new(Inner {
                handle,
                stop,
                open_streams: watch::Sender::new(0),
            }),
        }
    }

    /// Starts stopping. Idempotent.
    pub fn trigger(&self) {
        self.inner.handle.stop();
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.stop.is_stopped()
    }

    /// The signal itself, for [`serve`](super::serve).
    pub fn stop(&self) -> Stop {
        self.inner.stop.clone()
    }

    /// Resolves once [`trigger`](Self::trigger) was called (at once if it
    /// already was, or once every clone is gone: nobody can keep the API
    /// up then).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.stop.stopped()
    }

    /// The number of event streams open now.
    pub fn open_streams(&self) -> usize {
        *self.inner.open_streams.borrow()
    }

    /// Resolves once no event stream is open. The daemon awaits it, with a
    /// deadline, after triggering, so clients see a close frame rather than a
    /// reset connection.
    pub fn streams_closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut open = self.inner.open_streams.subscribe();
        async move {
            let _ = open.wait_for(|open| *open == 0).await;
        }
    }

    /// Counts a stream as open until the guard drops.
    pub(crate) fn stream_opened(&self) -> OpenStream {
        self.inner.open_streams.send_modify(|open| *open += 1);
        OpenStream {
            shutdown: self.clone(),
        }
    }
}

/// One open event stream, counted while it lives.
pub(crate) struct OpenStream {
    shutdown: Shutdown,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.shutdown
            .inner
            .open_streams
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_reaches_waiters_started_before_and_after() {
        let shutdown = Shutdown::new();
        let early = tokio::spawn(shutdown.triggered());
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        early.await.unwrap();
        shutdown.triggered().await;
        assert!(shutdown.is_triggered());
    }

    #[tokio::test]
    async fn streams_closed_waits_for_every_guard() {
        let shutdown = Shutdown::new();
        let first = shutdown.stream_opened();
        let second = shutdown.stream_opened();
        assert_eq!(shutdown.open_streams(), 2);
        let closed = tokio::spawn(shutdown.streams_closed());
        drop(first);
        assert_eq!(shutdown.open_streams(), 1);
        // Let the waiter run: it must still be waiting for the second stream.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!closed.is_finished());
        drop(second);
        closed.await.unwrap();
        assert_eq!(shutdown.open_streams(), 0);
    }
}

//! The one stop signal every long-running task listens to: the daemon's
//! workers, the presence poller, the webhook sink, the API server and its
//! event streams, the demo's contact center.
//!
//! [`Stop::new`] gives a [`StopHandle`], which gives the signal, and a
//! [`Stop`], which any number of tasks clone and wait on. Dropping the
//! handle counts as giving the signal: a task never outlives whatever was
//! meant to stop it.

use std::future::Future;

use tokio::sync::watch;

/// The giving end of a stop signal. Not cloneable: one owner decides when
/// to stop; dropping it stops as well.
#[derive(Debug)]
pub struct StopHandle {
    tx: watch::Sender<bool>,
}

impl StopHandle {
    /// Gives the signal. Idempotent; reaches waiters started before and
    /// after.
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }

    /// Another [`Stop`] on this signal.
    pub fn subscribe(&self) -> Stop {
        Stop {
            rx: self.tx.subscribe(),
        }
    }
}

/// The waiting end of a stop signal. Clones share it.
#[derive(Clone, Debug)]
pub struct Stop {
    rx: watch::Receiver<bool>,
}

impl Stop {
    /// A new signal, not given yet.
    pub fn new() -> (StopHandle, Stop) {
        let (tx, rx) = watch::channel(false);
        (StopHandle { tx }, Stop { rx })
    }

    /// True once the signal was given (or its handle is gone).
    pub fn is_stopped(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once the signal is given, or its handle is gone (at once
    /// if that already happened). Owns what it waits on, so it can be
    /// raced in a `select!` arm or handed to a server as its shutdown.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            // An error means the handle is gone: stop as well.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    /// Runs `work` unless the signal comes first; `None` when it did (also
    /// when it had come before `work` started).
    pub async fn unless_stopped<F: Future>(&self, work: F) -> Option<F::Output> {
        if self.is_stopped() {
            return None;
        }
        tokio::select! {
            out = work => Some(out),
            () = self.stopped() => None,
        }
    }

    /// Sleeps for `delay`; false when the signal came first.
    pub async fn sleep(&self, delay: std::time::Duration) -> bool {
        tokio::select! {
            biased;
            () = self.stopped() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_signal_reaches_waiters_started_before_and_after() {
        let (handle, stop) = Stop::new();
        let early = tokio::spawn(stop.stopped());
        assert!(!stop.is_stopped());
        handle.stop();
        early.await.unwrap();
        stop.stopped().await;
        assert!(stop.is_stopped());
        assert!(handle.subscribe().is_stopped());
    }

    #[tokio::test]
    async fn a_dropped_handle_is_a_stop() {
        let (handle, stop) = Stop::new();
        let copy = stop.clone();
        drop(handle);
        assert!(stop.is_stopped());
        copy.stopped().await;
        assert_eq!(stop.unless_stopped(async { 1 }).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_once_on_stop_and_otherwise_runs_its_course() {
        let (handle, stop) = Stop::new();
        let waiter = tokio::spawn(async move {
            let slept = stop.sleep(Duration::from_secs(3600)).await;
            (slept, tokio::time::Instant::now())
        });
        let started = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        handle.stop();
        let (slept, at) = waiter.await.unwrap();
        assert!(!slept);
        assert!(at - started < Duration::from_secs(60), "{:?}", at - started);

        let (_handle, stop) = Stop::new();
        assert!(stop.sleep(Duration::from_secs(3600)).await);
        assert_eq!(stop.unless_stopped(async { 2 }).await, Some(2));

        // A dropped handle is a stop too.
        let (handle, stop) = Stop::new();
        drop(handle);
        assert!(!stop.sleep(Duration::from_secs(3600)).await);
    }
}

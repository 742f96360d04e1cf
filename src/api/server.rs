//! Serving the router on a listener until shutdown.

use std::future::Future;
use std::io;

use axum::Router;
use tokio::net::TcpListener;

/// Serves `router` until `shutdown` resolves, then stops accepting and
/// waits for requests in flight. Event streams are not requests in flight
/// (they left the server when they upgraded): they close on the
/// [`Shutdown`](super::Shutdown) the router was built with, so pass that
/// value's `triggered()` here and trigger it once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

//! Serving the router on a listener until shutdown.
//!
//! Some requests never reach the router: hyper answers a request line or
//! headers it cannot parse (a malformed request 400, a path and query over
//! 64 kB 414, headers over its buffer 431) by itself, with an empty body.
//! [`Shaped`] connections recognise those answers on their way out and send
//! them in the API's error shape instead, so every 4xx a client can get has
//! the documented body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::error::ApiError;
use super::routes::code_for;
use crate::stop::Stop;

/// Serves `router` until `stop` is given, then stops accepting and waits
/// for requests in flight. Event streams are not requests in flight (they
/// left the server when they upgraded): they close on the
/// [`Shutdown`](super::Shutdown) the router was built with, so pass that
/// value's [`stop()`](super::Shutdown::stop) here and trigger it once.
pub async fn serve(listener: TcpListener, router: Router, stop: Stop) -> io::Result<()> {
    axum::serve(ShapedListener(listener), router)
        .with_graceful_shutdown(stop.stopped())
        .await
}

/// A TCP listener whose connections are [`Shaped`].
struct ShapedListener(TcpListener);

impl axum::serve::Listener for ShapedListener {
    type Io = Shaped<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (Shaped::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that rewrites hyper's own bare error answers.
pub(crate) struct Shaped<T> {
    inner: T,
    /// A rewritten answer still being written, and how far.
    pending: Option<(Vec<u8>, usize)>,
    /// The length of the buffer the rewritten answer replaced, reported
    /// as written once it is all out.
    replaced: usize,
}

impl<T> Shaped<T> {
    pub(crate) fn new(inner: T) -> Self {
        Shaped {
            inner,
            pending: None,
            replaced: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> Shaped<T> {
    /// Writes what is pending; `Ready(Ok)` once nothing is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done >= bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Shaped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Shaped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none()
            && let Some(shaped) = shaped_answer(buf)
        {
            this.pending = Some((shaped, 0));
            this.replaced = buf.len();
        }
        if this.pending.is_some() {
            ready!(this.drain(cx))?;
            return Poll::Ready(Ok(this.replaced));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// When `buf` is exactly one bare error answer — a response head with a 4xx
/// or 5xx status, `content-length: 0`, no content type and nothing after
/// it — the same answer in the error shape. The router never sends such a
/// head (its errors all carry a JSON body), so only hyper's own answers to
/// requests it could not parse match.
fn shaped_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()?;
    let status = StatusCode::from_u16(code).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        if name == "content-type" || name == "transfer-encoding" {
            return None;
        }
        if name == "content-length" {
            empty = value.trim() == "0";
        }
    }
    if !empty {
        return None;
    }
    let message = match code {
        400 => {
            "the request is not well-formed HTTP/1.1 (its request line or a header cannot be read)"
        }
        414 => "the path and query are too long: at most 64 kB",
        431 => "the request's headers are too large",
        _ => status
            .canonical_reason()
            .unwrap_or("the request cannot be read"),
    };
    let body = serde_json::to_vec(&ApiError::new(code, code_for(status), message).body()).ok()?;
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_error_heads_are_shaped() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 22:00:00 GMT\r\n\r\n";
        let shaped = String::from_utf8(shaped_answer(head).unwrap()).unwrap();
        let (head, body) = shaped.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "uri_too_long");
    }

    #[test]
    fn answers_with_a_body_or_a_type_are_left_alone() {
        for buf in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        ] {
            assert_eq!(shaped_answer(buf), None, "{}", String::from_utf8_lossy(buf));
        }
    }
}

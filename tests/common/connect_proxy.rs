//! A small HTTP CONNECT proxy on a free loopback port, as a corporate
//! proxy is to the daemon: it opens tunnels, counts them, and when stopped
//! closes its listener and every tunnel it holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct ConnectProxy {
    pub url: String,
    tunnels: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let tunnels = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&tunnels);
        let task = tokio::spawn(async move {
            // Dropped with the accept loop: aborting it closes every tunnel.
            let mut open = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let counted = Arc::clone(&counted);
                open.spawn(async move {
                    let _ = tunnel(client, &counted).await;
                });
                while open.try_join_next().is_some() {}
            }
        });
        ConnectProxy { url, tunnels, task }
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// Stops listening and cuts every tunnel.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// One client: `CONNECT host:port HTTP/1.1`, headers, blank line; then
/// bytes both ways. Anything else is answered 405.
async fn tunnel(mut client: TcpStream, counted: &AtomicU64) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    counted.fetch_add(1, Ordering::SeqCst);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

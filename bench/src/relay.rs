//! A byte-counting TCP relay: the idle scenario puts it between a client
//! and its server and reads what an idle connection costs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What went through a [`Relay`] so far, over all its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes client to server.
    pub up_bytes: u64,
    /// Bytes server to client.
    pub down_bytes: u64,
    /// Reads on the client side that returned data: about one per client
    /// write (writes in quick succession may arrive as one).
    pub up_reads: u64,
    /// Reads on the server side that returned data.
    pub down_reads: u64,
}

impl Traffic {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            connections: self.connections - earlier.connections,
            up_bytes: self.up_bytes - earlier.up_bytes,
            down_bytes: self.down_bytes - earlier.down_bytes,
            up_reads: self.up_reads - earlier.up_reads,
            down_reads: self.down_reads - earlier.down_reads,
        }
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    up_bytes: AtomicU64,
    down_bytes: AtomicU64,
    up_reads: AtomicU64,
    down_reads: AtomicU64,
}

/// Listens on `127.0.0.1`, connects each accepted client to the target and
/// copies both ways, counting. Dropping it closes the listener and every
/// relayed connection.
pub struct Relay {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept(listener, target, counters.clone()));
        Ok(Relay {
            addr,
            counters,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts so far.
    pub fn traffic(&self) -> Traffic {
        let c = &self.counters;
        Traffic {
            connections: c.connections.load(Ordering::SeqCst),
            up_bytes: c.up_bytes.load(Ordering::SeqCst),
            down_bytes: c.down_bytes.load(Ordering::SeqCst),
            up_reads: c.up_reads.load(Ordering::SeqCst),
            down_reads: c.down_reads.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: they end with it.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, counters: Arc<Counters>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(relay(client, target, counters.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn relay(client: TcpStream, target: SocketAddr, counters: Arc<Counters>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    // Forward each write at once: the relay must not merge or delay writes.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let c = &*counters;
    tokio::join!(
        pump(client_read, server_write, &c.up_bytes, &c.up_reads),
        pump(server_read, client_write, &c.down_bytes, &c.down_reads),
    );
}

/// Copies until end of stream or an error, then shuts the writer down.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    bytes: &AtomicU64,
    reads: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        bytes.fetch_add(n as u64, Ordering::SeqCst);
        reads.fetch_add(1, Ordering::SeqCst);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::EchoServer;

    #[tokio::test]
    async fn counts_bytes_exactly() {
        let echo = EchoServer::start().await.unwrap();
        let relay = Relay::start(echo.addr()).await.unwrap();
        assert_eq!(relay.traffic(), Traffic::default());

        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        let mut sent = 0;
        for size in [1usize, 10, 1000, 40_000] {
            let data = vec![b'a'; size];
            client.write_all(&data).await.unwrap();
            let mut back = vec![0u8; size];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, data);
            sent += size as u64;
        }
        let traffic = relay.traffic();
        assert_eq!(traffic.connections, 1);
        assert_eq!(traffic.up_bytes, sent);
        assert_eq!(traffic.down_bytes, sent);
        // At least one read per write; 40,000 bytes take several 16 KiB reads.
        assert!(traffic.up_reads >= 6, "{traffic:?}");

        // A second connection adds to the same counts.
        let mut other = TcpStream::connect(relay.addr()).await.unwrap();
        other.write_all(b"0123456789").await.unwrap();
        let mut back = [0u8; 10];
        other.read_exact(&mut back).await.unwrap();
        let later = relay.traffic().since(&traffic);
        assert_eq!(
            (later.connections, later.up_bytes, later.down_bytes),
            (1, 10, 10)
        );
    }

    #[tokio::test]
    async fn dropping_the_relay_closes_its_connections() {
        let echo = EchoServer::start().await.unwrap();
        let relay = Relay::start(echo.addr()).await.unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        drop(relay);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut rest),
        )
        .await
        .expect("the relayed connection closes");
        assert!(read.is_err() || rest.is_empty());
    }
}

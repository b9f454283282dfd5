//! A TCP proxy that fault tests use to cut connections.
//!
//! Clients connect to the [`CutProxy`] instead of the server; it forwards
//! bytes both ways to the real server until the test calls
//! [`CutProxy::cut`], which resets every live connection at once (both
//! sides, `SO_LINGER` 0, so client and server see a reset, not a clean
//! close), as often as the test likes. New connections are forwarded
//! normally after a cut, so a client that reconnects (and resumes its
//! XEP-0198 session) gets through; [`CutProxy::set_refusing`] makes the
//! server look unreachable for a while.
//!
//! The proxy runs on a current-thread runtime on a thread of its own, so it
//! works under any test runtime and keeps forwarding while the test's
//! runtime is blocked.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long [`CutProxy::cut`] waits for the cut sockets to be closed.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// A loopback TCP proxy to one upstream address whose connections the
/// test can cut at any moment. Dropping it stops its thread and closes the
/// listener and every connection.
pub struct CutProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A live connection's cut switch: it gets a sender that the connection's
/// task drops once both of its sockets are closed.
type CutSwitch = oneshot::Sender<mpsc::Sender<()>>;

#[derive(Default)]
struct Shared {
    live: Mutex<HashMap<u64, CutSwitch>>,
    next_id: AtomicU64,
    accepted: AtomicUsize,
    cuts: AtomicUsize,
    refusing: AtomicBool,
}

impl Shared {
    /// The live connections' cut switches, by connection id.
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, CutSwitch>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CutProxy {
    /// Listens on a free port on 127.0.0.1 and forwards every connection to
    /// `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<CutProxy> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xbus-cut-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => tokio::select! {
                            () = accept_loop(listener, upstream, state) => {}
                            _ = stopped => {}
                        },
                        Err(error) => tracing::debug!(%error, "cut proxy: listener"),
                    }
                });
                // Dropping the runtime drops every connection task and so
                // closes their sockets.
                drop(runtime);
            })?;
        Ok(CutProxy {
            addr,
            upstream,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address clients connect to, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection that is live now, client and upstream side,
    /// and returns how many it cut. When it returns, their sockets are
    /// closed. Connections accepted later are forwarded normally.
    pub fn cut(&self) -> usize {
        let switches: Vec<CutSwitch> = self.shared.conns().drain().map(|(_, s)| s).collect();
        let (closed, all_closed) = mpsc::channel::<()>();
        let cut = switches
            .into_iter()
            .filter_map(|switch| switch.send(closed.clone()).ok())
            .count();
        drop(closed);
        // Nothing is ever sent: every task drops its sender once its sockets
        // are closed, which ends this wait with `Disconnected`.
        let _ = all_closed.recv_timeout(CUT_WAIT);
        self.shared.cuts.fetch_add(cut, Ordering::Relaxed);
        cut
    }

    /// While `true`, every new connection is accepted and reset at once,
    /// as if the server were unreachable. Live connections are not touched.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Relaxed);
    }

    /// How many connections [`cut`](Self::cut) has cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::Relaxed)
    }

    /// How many connections the proxy has accepted so far, including the
    /// ones it reset because it was [refusing](Self::set_refusing).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How many connections are being forwarded now.
    pub fn live(&self) -> usize {
        self.shared.conns().len()
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // E.g. out of file descriptors: wait instead of spinning.
                tracing::debug!(%error, "cut proxy: accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.refusing.load(Ordering::Relaxed) {
            reset(client);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (switch, cut) = oneshot::channel();
        shared.conns().insert(id, switch);
        let shared = shared.clone();
        tokio::spawn(async move {
            let closed = forward(client, upstream, cut).await;
            shared.conns().remove(&id);
            drop(closed);
        });
    }
}

/// Forwards until either side closes or the connection is cut; returns
/// the cut's sender, to be dropped once the sockets are closed.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cut: oneshot::Receiver<mpsc::Sender<()>>,
) -> Option<mpsc::Sender<()>> {
    let _ = client.set_nodelay(true);
    let mut server = tokio::select! {
        closed = &mut cut => {
            reset(client);
            return closed.ok();
        }
        server = TcpStream::connect(upstream) => match server {
            Ok(server) => server,
            Err(error) => {
                tracing::debug!(%error, %upstream, "cut proxy: connect upstream");
                reset(client);
                return None;
            }
        },
    };
    let _ = server.set_nodelay(true);
    let closed = tokio::select! {
        closed = &mut cut => closed.ok(),
        result = tokio::io::copy_bidirectional(&mut client, &mut server) => match result {
            Ok(_) => return None,
            // One side was reset: pass the reset on to the other.
            Err(error) => {
                tracing::debug!(%error, "cut proxy: connection failed");
                None
            }
        },
    };
    reset(client);
    reset(server);
    closed
}

/// Closes `socket` with a reset (`SO_LINGER` 0) instead of a FIN.
fn reset(socket: TcpStream) {
    // Deprecated only because a non-zero linger blocks on drop; zero never
    // does (`set_zero_linger` needs tokio 1.50, the workspace allows 1.40).
    #[allow(deprecated)]
    if let Err(error) = socket.set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "cut proxy: SO_LINGER");
    }
    drop(socket);
}

impl fmt::Debug for CutProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CutProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("live", &self.live())
            .field("accepted", &self.accepted())
            .field("cuts", &self.cuts())
            .finish()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::CutProxy;

    const WAIT: Duration = Duration::from_secs(5);

    /// An echo server; reports on the channel each time a connection ends.
    async fn echo() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ended, ends) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let ended = ended.clone();
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = ended.send(());
                });
            }
        });
        (addr, ends)
    }

    async fn round_trip(addr: SocketAddr, text: &[u8]) -> TcpStream {
        let mut client = timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        timeout(WAIT, client.write_all(text))
            .await
            .unwrap()
            .unwrap();
        let mut back = vec![0; text.len()];
        timeout(WAIT, client.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, text);
        client
    }

    /// The client's next read ends promptly, with a reset if `reset`, else
    /// with EOF.
    async fn assert_closed(client: &mut TcpStream, reset: bool) {
        let mut buf = [0; 16];
        match timeout(WAIT, client.read(&mut buf))
            .await
            .expect("still open")
        {
            Ok(0) if !reset => {}
            Err(error) if reset && error.kind() == ErrorKind::ConnectionReset => {}
            other => panic!(
                "expected {}, got {other:?}",
                if reset { "a reset" } else { "EOF" }
            ),
        }
    }

    /// A connection to `addr` is reset, during or right after the connect.
    async fn assert_reset_at_once(addr: SocketAddr) {
        match timeout(WAIT, TcpStream::connect(addr)).await.unwrap() {
            Ok(mut client) => assert_closed(&mut client, true).await,
            Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
        }
    }

    #[tokio::test]
    async fn forwards_cuts_and_forwards_again() {
        let (upstream, mut ends) = echo().await;
        let proxy = CutProxy::start(upstream).unwrap();
        let mut first = round_trip(proxy.addr(), b"hello").await;
        let mut second = round_trip(proxy.addr(), b"world").await;
        assert_eq!((proxy.accepted(), proxy.live()), (2, 2));

        assert_eq!(proxy.cut(), 2);
        assert_closed(&mut first, true).await;
        assert_closed(&mut second, true).await;
        for _ in 0..2 {
            timeout(WAIT, ends.recv())
                .await
                .expect("upstream still open");
        }
        assert_eq!((proxy.cuts(), proxy.live()), (2, 0));

        let _third = round_trip(proxy.addr(), b"again").await;
        assert_eq!(proxy.cut(), 1);
        assert_eq!(proxy.cut(), 0);
        assert_eq!((proxy.accepted(), proxy.cuts()), (3, 3));
    }

    #[tokio::test]
    async fn refuses_while_asked_and_closes_on_drop() {
        let (upstream, mut ends) = echo().await;
        let proxy = CutProxy::start(upstream).unwrap();
        proxy.set_refusing(true);
        assert_reset_at_once(proxy.addr()).await;
        proxy.set_refusing(false);
        let mut client = round_trip(proxy.addr(), b"open").await;
        assert_eq!((proxy.accepted(), proxy.cuts()), (2, 0));

        let addr = proxy.addr();
        drop(proxy);
        assert_closed(&mut client, false).await;
        timeout(WAIT, ends.recv())
            .await
            .expect("upstream still open");
        let again = timeout(WAIT, TcpStream::connect(addr)).await.unwrap();
        assert!(again.is_err(), "still listening");
    }

    #[tokio::test]
    async fn resets_clients_when_upstream_is_down() {
        let upstream = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = CutProxy::start(upstream).unwrap();
        assert_reset_at_once(proxy.addr()).await;
        assert_eq!((proxy.accepted(), proxy.cuts()), (1, 0));
    }
}

//! The management plane's HTTP servers: HTTPS for the network, plain HTTP
//! on loopback only, and the owner-only Unix socket for the CLI on the
//! gateway's host. One accept loop serves all three, so that every
//! connection gets the same header timeout, connection cap and graceful
//! stop, and every request carries where it came from ([`Peer`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::conn_table::{ConnSlot, ConnTable};

/// How a request reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `DATA_DIR/sgw.sock`: only the daemon's user (and root) can connect.
    LocalSocket,
    /// Plain HTTP, bound to loopback only.
    LoopbackHttp,
    Https,
}

/// The request's channel and client address (none on the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub channel: Channel,
    pub addr: Option<SocketAddr>,
}

impl Peer {
    /// The client address, or loopback for the local socket.
    pub fn ip(&self) -> std::net::IpAddr {
        self.addr.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip())
    }
}

/// The router in effect: the activation router until the gateway is
/// claimed and started, then the full one. Servers look it up per request.
#[derive(Clone)]
pub struct RouterSlot(Arc<RwLock<Router>>);

impl RouterSlot {
    pub fn new(router: Router) -> RouterSlot {
        RouterSlot(Arc::new(RwLock::new(router)))
    }

    pub fn set(&self, router: Router) {
        *self.0.write() = router;
    }

    fn current(&self) -> Router {
        self.0.read().clone()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A client must send a request's headers (and the next request's on
    /// a kept-alive connection) within this time, or it is closed: idle
    /// and slow-loris connections do not hold descriptors.
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// A connection on which nothing moves either way for this long is
    /// closed: a request body or a response that stalls halfway.
    pub idle_timeout: Duration,
    /// Connections open at once per listener; at the cap the longest-idle
    /// one is closed for a newcomer (`conn_table`).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

/// A listener of any of the three kinds.
pub enum AdminListener {
    Tcp { listener: TcpListener, tls: Option<TlsAcceptor> },
    Unix(UnixListener),
}

/// Serves `slot` on `listener` until `shutdown`; open connections finish
/// their current request.
pub async fn serve(listener: AdminListener, slot: RouterSlot, limits: HttpLimits, shutdown: CancellationToken) {
    let table = ConnTable::new(limits.max_connections);
    loop {
        let permit = tokio::select! {
            p = table.admit() => p,
            _ = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "admin API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = slot.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match stream {
                Accepted::Tcp(tcp, Some(tls)) => {
                    match tokio::time::timeout(limits.tls_handshake_timeout, tls.accept(tcp)).await {
                        Ok(Ok(s)) => serve_connection(s, peer, slot, limits, &permit, shutdown).await,
                        Ok(Err(e)) => debug!(client = ?peer.addr, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(client = ?peer.addr, "TLS handshake timed out"),
                    }
                }
                Accepted::Tcp(tcp, None) => serve_connection(tcp, peer, slot, limits, &permit, shutdown).await,
                Accepted::Unix(s) => serve_connection(s, peer, slot, limits, &permit, shutdown).await,
            }
            drop(permit);
        });
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, Option<TlsAcceptor>),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &AdminListener) -> std::io::Result<(Accepted, Peer)> {
    match listener {
        AdminListener::Tcp { listener, tls } => {
            let (s, addr) = listener.accept().await?;
            let channel = if tls.is_some() { Channel::Https } else { Channel::LoopbackHttp };
            Ok((Accepted::Tcp(s, tls.clone()), Peer { channel, addr: Some(addr) }))
        }
        AdminListener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Accepted::Unix(s), Peer { channel: Channel::LocalSocket, addr: None }))
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: Peer,
    slot: RouterSlot,
    limits: HttpLimits,
    place: &ConnSlot,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_read_timeout(Some(limits.idle_timeout));
    stream.set_write_timeout(Some(limits.idle_timeout));
    let busy_source = place.busy_source();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer);
        let busy = busy_source.busy();
        let response = slot.current().oneshot(req.map(axum::body::Body::new));
        async move {
            let r = response.await;
            drop(busy);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(Box::pin(stream)), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { debug!(client = ?peer.addr, error = %e, "admin connection ended") },
        _ = place.close.cancelled() => {
            // Evicted while idle for a newcomer: hyper closes at once
            // between requests.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

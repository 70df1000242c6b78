//! Stream transports (TCP and TLS) for the [`B2bua`](super::b2bua::B2bua):
//! listeners that accept connections, outbound connections to targets, and
//! the handles the B2BUA's engine sends on.
//!
//! # Why our own, and not rsipstack's
//!
//! The B2BUA works on raw bytes: every message passes
//! [`validate`](mod@super::validate) before anything interprets it, because
//! rsipstack's parser accepts messages that RFC 4475 says must be refused
//! (see the test in [`super`]). rsipstack's transports hand on parsed
//! messages only, so using them would put that parser in front of the
//! validation layer. What is needed of a transport here is small (framing by
//! Content-Length, one task per connection, bounds, connection reuse), so it
//! is written directly on tokio and tokio-rustls (ring provider only).
//!
//! # What a connection does
//!
//! Each connection, accepted or opened, is owned by one task. It frames the
//! byte stream with [`frame_stream`], hands every complete message (bytes and
//! the connection's handle) to the engine through one bounded channel (a
//! slow engine slows the reading, which TCP passes back to the peer), and
//! writes what the engine queues for it. A broken frame (unreadable or
//! oversized Content-Length, no end of the header part within the limit,
//! more buffered than [`StreamLimits::max_buffered_bytes`]) gets the answer
//! [`validate`] gives (a 400 with a Warning when the message can be
//! answered at all) and the connection is closed. A message that is framed
//! correctly but invalid is answered as on UDP (by the engine, which runs
//! [`validate`] on every message first) and the connection stays open, since
//! the stream is still in step. A connection with no
//! traffic for [`StreamLimits::idle_timeout`] is closed unless a call in
//! progress still uses it. A peer that does not read what is sent to it
//! (its queue of [`OUTBOX_MESSAGES`] is full) is disconnected.
//!
//! RFC 5626 keep-alives are honoured: a CRLFCRLF ping is answered with a
//! CRLF pong.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::b2bua::Admission;
use super::call::Transport;
use super::message::Reply;
use super::validate::{validate, Policy, Verdict};
use super::wire::{frame_stream, StreamFrame, MAX_MESSAGE_SIZE};

/// Messages queued for one connection before its peer counts as not reading.
pub const OUTBOX_MESSAGES: usize = 256;
/// Messages from all connections waiting for the engine.
const EVENT_QUEUE: usize = 1024;

/// Bounds on stream connections (see [`B2buaConfig::streams`](super::b2bua::B2buaConfig::streams)).
///
/// Outbound connections are not counted in `max_connections`: there is one
/// per target address in use (plus one opened again after a close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLimits {
    /// Accepted connections (TCP and TLS together) open at once; one more is
    /// closed as soon as it is accepted.
    pub max_connections: usize,
    /// Bytes buffered for a connection without a complete message; more is a
    /// broken stream (answered if possible, then closed). A message is never
    /// larger than [`MAX_MESSAGE_SIZE`] anyway.
    pub max_buffered_bytes: usize,
    /// A connection with no traffic for this long, that no call in progress
    /// uses, is closed.
    pub idle_timeout: Duration,
    /// Bound on opening a connection to a target (TCP connect and TLS
    /// handshake), and on an inbound TLS handshake.
    pub connect_timeout: Duration,
}

impl Default for StreamLimits {
    /// 1024 connections, [`MAX_MESSAGE_SIZE`] bytes each, 60 s idle, 3 s to connect.
    fn default() -> Self {
        StreamLimits {
            max_connections: 1024,
            max_buffered_bytes: MAX_MESSAGE_SIZE,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Where a stream connection goes: the pool key for connection reuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Dest {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The name the TLS server's certificate must carry (the target host).
    pub server_name: Option<String>,
}

struct ConnInner {
    id: u64,
    peer: SocketAddr,
    transport: Transport,
    outbox: mpsc::Sender<Vec<u8>>,
    closed: CancellationToken,
    /// Calls in progress that use the connection (it is not closed for idleness).
    holds: AtomicUsize,
}

/// A handle on one stream connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn(Arc<ConnInner>);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}({})", self.0.transport, self.0.id, self.0.peer)
    }
}

impl Conn {
    pub(crate) fn new(peer: SocketAddr, transport: Transport) -> (Conn, mpsc::Receiver<Vec<u8>>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (outbox, rx) = mpsc::channel(OUTBOX_MESSAGES);
        let inner = ConnInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            transport,
            outbox,
            closed: CancellationToken::new(),
            holds: AtomicUsize::new(0),
        };
        (Conn(Arc::new(inner)), rx)
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }

    pub fn is_open(&self) -> bool {
        !self.0.closed.is_cancelled()
    }

    /// Queues bytes for the peer; a full queue means the peer does not
    /// read, and the connection is closed.
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), &'static str> {
        if !self.is_open() {
            return Err("connection closed");
        }
        match self.0.outbox.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.0.closed.cancel();
                Err("peer does not read: connection closed")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err("connection closed"),
        }
    }

    /// Keeps the connection from being closed for idleness while held.
    pub fn hold(&self) -> Hold {
        self.0.holds.fetch_add(1, Ordering::Relaxed);
        Hold(self.0.clone())
    }
}

/// A call's claim on a connection (see [`Conn::hold`]).
pub(crate) struct Hold(Arc<ConnInner>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a message came from, and where an answer to it goes.
#[derive(Debug, Clone)]
pub(crate) enum Flow {
    Udp(SocketAddr),
    Stream(Conn),
}

impl Flow {
    pub fn peer(&self) -> SocketAddr {
        match self {
            Flow::Udp(a) => *a,
            Flow::Stream(c) => c.0.peer,
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Flow::Udp(_) => Transport::Udp,
            Flow::Stream(c) => c.0.transport,
        }
    }

    pub fn conn_id(&self) -> Option<u64> {
        match self {
            Flow::Udp(_) => None,
            Flow::Stream(c) => Some(c.id()),
        }
    }
}

/// One leg's way to its peer: the flow, the claim that keeps a stream open
/// while the call lasts, and where to connect again if the stream closes.
pub(crate) struct LegFlow {
    pub flow: Flow,
    _hold: Option<Hold>,
    /// For a stream leg: where a new connection goes when this one closed.
    pub dest: Option<Dest>,
}

impl LegFlow {
    pub fn new(flow: Flow, dest: Option<Dest>) -> LegFlow {
        let hold = match &flow {
            Flow::Stream(c) => Some(c.hold()),
            Flow::Udp(_) => None,
        };
        LegFlow {
            flow,
            _hold: hold,
            dest,
        }
    }

    pub fn transport(&self) -> Transport {
        self.flow.transport()
    }
}

/// What connection tasks tell the engine.
pub(crate) enum StreamEvent {
    /// A complete message (not validated yet).
    Message { bytes: Vec<u8>, flow: Flow },
    /// The connection is gone; `connected` is false when it never came up.
    Closed {
        id: u64,
        connected: bool,
        detail: String,
    },
}

/// What every connection task shares.
struct Shared {
    events: mpsc::Sender<StreamEvent>,
    limits: StreamLimits,
    policy: Policy,
    cancel: CancellationToken,
}

/// The engine's side of the stream transports: the channel connection
/// tasks report on, and the pool of outbound connections.
pub(crate) struct Streams {
    shared: Arc<Shared>,
    tls_client: Option<Arc<rustls::ClientConfig>>,
    pool: std::collections::HashMap<Dest, Conn>,
}

/// Accepted connections open now.
struct Accepted(Arc<AtomicUsize>);

impl Drop for Accepted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Streams {
    pub fn new(
        limits: StreamLimits,
        policy: Policy,
        tls_client: Option<Arc<rustls::ClientConfig>>,
        cancel: CancellationToken,
    ) -> (Streams, mpsc::Receiver<StreamEvent>) {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            events,
            limits,
            policy,
            cancel,
        });
        let streams = Streams {
            shared,
            tls_client,
            pool: std::collections::HashMap::new(),
        };
        (streams, rx)
    }

    /// Starts accepting on `listener` (TLS when `tls` is given).
    pub fn serve(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        admission: Option<Arc<dyn Admission>>,
        open: Arc<AtomicUsize>,
    ) {
        let shared = self.shared.clone();
        tokio::spawn(accept_loop(listener, tls, admission, open, shared));
    }

    /// An open connection to `dest`, reused when there is one, else a new
    /// one (its task connects; what is sent meanwhile waits in its queue).
    pub fn connection(&mut self, dest: &Dest) -> Result<Conn, String> {
        if let Some(c) = self.pool.get(dest).filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let tls = match dest.transport {
            Transport::Udp => return Err("not a stream transport".into()),
            Transport::Tcp => None,
            Transport::Tls => {
                let Some(config) = self.tls_client.clone() else {
                    return Err("TLS target but no TLS client configuration".into());
                };
                let host = dest.server_name.clone().unwrap_or_default();
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
                Some((config, name))
            }
        };
        let (conn, outbox) = Conn::new(dest.addr, dest.transport);
        self.pool.insert(dest.clone(), conn.clone());
        tokio::spawn(connect_and_run(
            dest.addr,
            tls,
            conn.clone(),
            outbox,
            self.shared.clone(),
        ));
        Ok(conn)
    }

    /// Forgets a closed connection.
    pub fn forget(&mut self, id: u64) {
        self.pool.retain(|_, c| c.id() != id);
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    admission: Option<Arc<dyn Admission>>,
    open: Arc<AtomicUsize>,
    shared: Arc<Shared>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let transport = if acceptor.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Dropping the stream closes it before anything is read.
        if admission.as_ref().is_some_and(|a| !a.admit(peer)) {
            tracing::debug!(%peer, %transport, "connection not admitted");
            continue;
        }
        if open.fetch_add(1, Ordering::Relaxed) >= shared.limits.max_connections {
            open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, %transport, "too many connections: closed");
            continue;
        }
        let guard = Accepted(open.clone());
        let _ = stream.set_nodelay(true);
        let (conn, outbox) = Conn::new(peer, transport);
        let shared = shared.clone();
        match acceptor.clone() {
            None => {
                tokio::spawn(async move {
                    let _guard = guard;
                    run(stream, conn, outbox, shared, true).await;
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _guard = guard;
                    let limit = shared.limits.connect_timeout;
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => run(tls, conn, outbox, shared, true).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// An outbound connection once it is up.
enum Connected {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect_and_run(
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    conn: Conn,
    outbox: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let limit = shared.limits.connect_timeout;
    let connecting = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Connected::Tcp(tcp)),
            Some((config, name)) => tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map(|s| Connected::Tls(Box::new(s)))
                .map_err(|e| format!("TLS with {addr}: {e}")),
        }
    };
    let result = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        r = tokio::time::timeout(limit, connecting) => {
            r.unwrap_or_else(|_| Err(format!("connect to {addr}: no connection within {limit:?}")))
        }
    };
    match result {
        Ok(Connected::Tcp(tcp)) => run(tcp, conn, outbox, shared, false).await,
        Ok(Connected::Tls(tls)) => run(*tls, conn, outbox, shared, false).await,
        Err(detail) => {
            tracing::debug!(%addr, %detail, "outbound connection failed");
            conn.0.closed.cancel();
            let event = StreamEvent::Closed {
                id: conn.id(),
                connected: false,
                detail,
            };
            let _ = shared.events.send(event).await;
        }
    }
}

/// The answer [`validate`] gives to what is left of a broken stream.
fn answer_for(bytes: &[u8], policy: &Policy) -> Option<Vec<u8>> {
    match validate(bytes, policy) {
        Verdict::Reject(r) if r.answerable() => {
            let tag = format!("{:016x}", rand::random::<u64>());
            Some(Reply::for_rejection(&r).encode(&r.echo, &tag))
        }
        _ => None,
    }
}

/// Serves one connection until it closes; tells the engine when it did.
async fn run<S>(
    mut stream: S,
    conn: Conn,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    inbound: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = conn.0.peer;
    let limits = &shared.limits;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut last_traffic = Instant::now();
    let detail = 'serve: loop {
        // Hand on every complete message already buffered.
        loop {
            match frame_stream(&buf) {
                StreamFrame::Incomplete
                    if buf.is_empty() || buf.len() < limits.max_buffered_bytes =>
                {
                    break
                }
                StreamFrame::Incomplete | StreamFrame::Broken => {
                    // The stream cannot be resynchronised: answer what can be answered, then close.
                    let end = buf.len().min(MAX_MESSAGE_SIZE);
                    if let Some(answer) = answer_for(&buf[..end], &shared.policy) {
                        let _ = write(&mut stream, &answer, limits.idle_timeout).await;
                    }
                    break 'serve "broken framing".to_owned();
                }
                StreamFrame::KeepAlive(n) => {
                    buf.drain(..n);
                    if n >= 4
                        && write(&mut stream, b"\r\n", limits.idle_timeout)
                            .await
                            .is_err()
                    {
                        break 'serve "write failed".to_owned();
                    }
                }
                StreamFrame::Complete(n) => {
                    let bytes: Vec<u8> = buf.drain(..n).collect();
                    let event = StreamEvent::Message {
                        bytes,
                        flow: Flow::Stream(conn.clone()),
                    };
                    if shared.events.send(event).await.is_err() {
                        break 'serve "shut down".to_owned();
                    }
                }
            }
        }
        let idle_at = last_traffic + limits.idle_timeout;
        tokio::select! {
            _ = shared.cancel.cancelled() => break "shut down".to_owned(),
            _ = conn.0.closed.cancelled() => break "closed by us".to_owned(),
            Some(bytes) = outbox.recv() => {
                if let Err(e) = write(&mut stream, &bytes, limits.idle_timeout).await {
                    break format!("write failed: {e}");
                }
                last_traffic = Instant::now();
            }
            read = stream.read(&mut chunk) => match read {
                Ok(0) => {
                    // The peer finished sending: a partial message left over is judged
                    // as it is (e.g. a Content-Length larger than what was sent).
                    if !buf.iter().all(u8::is_ascii_whitespace) {
                        let end = buf.len().min(MAX_MESSAGE_SIZE);
                        if let Some(answer) = answer_for(&buf[..end], &shared.policy) {
                            let _ = write(&mut stream, &answer, limits.idle_timeout).await;
                        }
                    }
                    break "closed by the peer".to_owned();
                }
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    last_traffic = Instant::now();
                }
                Err(e) => break format!("read failed: {e}"),
            },
            _ = tokio::time::sleep_until(idle_at) => {
                if conn.0.holds.load(Ordering::Relaxed) == 0 {
                    break "idle".to_owned();
                }
                last_traffic = Instant::now();
            }
        }
    };
    conn.0.closed.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    tracing::debug!(%peer, inbound, ?conn, %detail, "connection closed");
    let event = StreamEvent::Closed {
        id: conn.id(),
        connected: true,
        detail,
    };
    let _ = shared.events.send(event).await;
}

async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    let writing = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    tokio::time::timeout(limit, writing)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

impl LegFlow {
    /// Where a new request on this leg goes: the leg's connection while it
    /// is open, else a new connection to [`LegFlow::dest`] (the closed one
    /// when there is none; sending on it then fails and is logged).
    pub fn for_request(&mut self, streams: &mut Streams) -> Flow {
        if let (Flow::Stream(c), Some(dest)) = (&self.flow, &self.dest) {
            if !c.is_open() {
                match streams.connection(dest) {
                    Ok(conn) => *self = LegFlow::new(Flow::Stream(conn), Some(dest.clone())),
                    Err(e) => tracing::debug!(error = %e, "cannot connect again"),
                }
            }
        }
        self.flow.clone()
    }
}

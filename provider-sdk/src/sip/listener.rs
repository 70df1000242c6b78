//! A SIP listener on UDP and TCP that puts the validation layer in front of a
//! [`Handler`].
//!
//! Every datagram and every stream frame goes through [`validate`] first:
//! rejections are answered statelessly (400 with a Warning, 505, 416, 420,
//! 415, 406, 405/501, 483), malformed responses are dropped, and only
//! well-formed requests and responses reach the handler. Bounded buffers and
//! an idle timeout keep a stream peer from holding memory or a task forever.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use provider_sdk::sip::listener::{Listener, ListenerConfig, Responder};
//! let listener = Listener::bind(ListenerConfig::loopback(), Responder).await?;
//! println!("SIP on udp {} tcp {}", listener.udp_addr(), listener.tcp_addr());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::message::{Method, Reply, Request, Response};
use super::validate::{validate, Policy, Verdict};
use super::wire::{frame_stream, StreamFrame, MAX_MESSAGE_SIZE};

/// What the application does with validated messages.
pub trait Handler: Send + Sync + 'static {
    /// Answer a request (None: no answer, e.g. for ACK).
    fn request(&self, request: &Request<'_>, peer: SocketAddr) -> Option<Reply>;
    /// A validated response arrived (stray responses are simply dropped).
    fn response(&self, _response: &Response<'_>, _peer: SocketAddr) {}
}

/// A handler for an element that only answers OPTIONS and refuses calls:
/// OPTIONS 200 with Allow/Accept; INVITE 480; in-dialog requests 481.
#[derive(Debug, Clone, Copy, Default)]
pub struct Responder;

impl Handler for Responder {
    fn request(&self, request: &Request<'_>, _peer: SocketAddr) -> Option<Reply> {
        Some(match request.method() {
            Method::Ack => return None,
            Method::Options => Reply::new(200, "OK")
                .header("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE")
                .header("Accept", "application/sdp"),
            Method::Invite => Reply::new(480, "Temporarily Unavailable"),
            _ => Reply::new(481, "Call/Transaction Does Not Exist"),
        })
    }
}

/// Where to listen and how strictly.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub policy: Policy,
    /// A TCP connection with no complete message for this long is closed.
    pub idle_timeout: Duration,
}

impl ListenerConfig {
    /// UDP and TCP on 127.0.0.1, ports chosen by the system.
    pub fn loopback() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ListenerConfig {
            udp: any,
            tcp: any,
            policy: Policy::default(),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of what the listener did (monotonic).
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    responses: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of the listener's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Valid requests handed to the handler.
    pub requests: u64,
    /// Valid responses handed to the handler.
    pub responses: u64,
    /// Requests refused by the validation layer (answered when possible).
    pub rejected: u64,
    /// Messages dropped without an answer.
    pub dropped: u64,
}

/// A running listener; dropping it stops the sockets.
pub struct Listener {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

struct Shared<H> {
    handler: H,
    policy: Policy,
    counters: Arc<Counters>,
    idle_timeout: Duration,
}

impl<H: Handler> Shared<H> {
    /// Validates one message and returns the bytes to send back, if any.
    fn process(&self, bytes: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        let c = &self.counters;
        match validate(bytes, &self.policy) {
            Verdict::Request(req) => {
                c.requests.fetch_add(1, Ordering::Relaxed);
                let reply = self.handler.request(&req, peer)?;
                Some(reply.encode(&req.echo(), &new_tag()))
            }
            Verdict::Response(resp) => {
                c.responses.fetch_add(1, Ordering::Relaxed);
                self.handler.response(&resp, peer);
                None
            }
            Verdict::Reject(r) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, status = r.status, detail = %r.detail, "request rejected");
                r.answerable()
                    .then(|| Reply::for_rejection(&r).encode(&r.echo, &new_tag()))
            }
            Verdict::Drop(d) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, detail = %d.detail, "message dropped");
                None
            }
        }
    }
}

fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Listener {
    /// Binds both sockets and starts serving on the current tokio runtime.
    pub async fn bind<H: Handler>(config: ListenerConfig, handler: H) -> std::io::Result<Listener> {
        let udp = UdpSocket::bind(config.udp).await?;
        let tcp = TcpListener::bind(config.tcp).await?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            handler,
            policy: config.policy,
            counters: counters.clone(),
            idle_timeout: config.idle_timeout,
        });
        let cancel = CancellationToken::new();
        let listener = Listener {
            udp_addr: udp.local_addr()?,
            tcp_addr: tcp.local_addr()?,
            counters,
            cancel: cancel.clone(),
        };
        tokio::spawn(serve_udp(udp, shared.clone(), cancel.clone()));
        tokio::spawn(serve_tcp(tcp, shared, cancel));
        Ok(listener)
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            responses: c.responses.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve_udp<H: Handler>(
    socket: UdpSocket,
    shared: Arc<Shared<H>>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep serving.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let packet = &buf[..len];
        if packet.iter().all(|b| b.is_ascii_whitespace()) {
            continue; // keep-alive
        }
        // Answers go to the packet's source, never to an address named in Via.
        if let Some(answer) = shared.process(packet, peer) {
            if let Err(e) = socket.send_to(&answer, peer).await {
                tracing::debug!(%peer, error = %e, "udp send failed");
            }
        }
    }
}

async fn serve_tcp<H: Handler>(
    listener: TcpListener,
    shared: Arc<Shared<H>>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    shared.clone(),
                    cancel.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection<H: Handler>(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared<H>>,
    cancel: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Answer every complete message already buffered.
        loop {
            match frame_stream(&buf) {
                StreamFrame::Incomplete => break,
                StreamFrame::KeepAlive(n) => {
                    buf.drain(..n);
                }
                StreamFrame::Complete(n) => {
                    let answer = shared.process(&buf[..n], peer);
                    buf.drain(..n);
                    if let Some(answer) = answer {
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
                StreamFrame::Broken => {
                    // The stream cannot be resynchronised: answer what we can, then close.
                    let end = buf.len().min(MAX_MESSAGE_SIZE);
                    if let Some(answer) = shared.process(&buf[..end], peer) {
                        let _ = stream.write_all(&answer).await;
                    }
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(shared.idle_timeout, stream.read(&mut chunk)) => r,
        };
        match read {
            Ok(Ok(0)) => {
                // Peer finished sending: a partial message left over is judged as it is
                // (e.g. a Content-Length larger than what was sent gets its 400).
                if !buf.iter().all(|b| b.is_ascii_whitespace()) {
                    if let Some(answer) = shared.process(&buf, peer) {
                        let _ = stream.write_all(&answer).await;
                    }
                }
                let _ = stream.shutdown().await;
                return;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) | Err(_) => return, // reset or idle too long
        }
    }
}

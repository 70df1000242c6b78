//! A back-to-back user agent over UDP, TCP and TLS built from the pieces of this module:
//! every message passes [`validate`] first, a [`CallControl`] decides where
//! each call goes, outbound attempts are tried in order with their
//! deadlines and the [`FailoverPolicy`], SDP goes through a [`MediaAnchor`],
//! and in-dialog requests (BYE, re-INVITE, UPDATE, INFO) are relayed
//! between the legs.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use provider_sdk::sip::b2bua::{B2bua, B2buaConfig};
//! use provider_sdk::sip::SipTarget;
//! let targets = vec![SipTarget::parse("sip:gw@127.0.0.1:5070").unwrap()];
//! let b2bua = B2bua::bind(B2buaConfig::loopback(targets)).await?;
//! println!("send INVITEs to {}", b2bua.local_addr());
//! # Ok(()) }
//! ```
//!
//! Scope: no route sets (Record-Route is not honoured), and few
//! retransmission timers of its own (it answers every INVITE with 100 at
//! once, so callers stop retransmitting; loopback and LAN peers). Every
//! attempt's [`Outcome`] is kept in the [`CallRecord`], which goes to
//! [`CallControl::ended`] and to a bounded list of recent records.
//!
//! # Transports
//!
//! The UDP socket is always there; [`B2buaConfig::tcp`] and
//! [`B2buaConfig::tls`] add stream listeners (see [`super::transport`] for
//! why these are our own and how a connection is bounded). Every message,
//! whatever it came on, goes to the one engine task, where [`validate`]
//! sees it before anything else does.
//! Per RFC 3261:
//!
//! - responses go back on the connection the request came on (18.2.2); if
//!   that connection has closed meanwhile, the response is lost (no new
//!   connection is opened to the Via's sent-by); a caller whose connection
//!   closes before its call is answered has given up: the attempt in
//!   progress is cancelled as if the caller had sent CANCEL (final status
//!   487 in the record), so no callee answers a call nobody is on;
//! - requests towards the caller inside its dialog (BYE, re-INVITE, ...)
//!   go on the caller's connection while it is open, else on a new
//!   connection to the caller's Contact (when it names an IP address and a
//!   stream transport);
//! - an attempt to a [`SipTarget`] whose [`SipTarget::transport`] is TCP or
//!   TLS reuses an open connection to the same address (and, for TLS, the
//!   same server name) or opens one within
//!   [`StreamLimits::connect_timeout`]; a connection that cannot be opened,
//!   or that closes before the attempt's final answer, ends the attempt as
//!   [`Outcome::TransportError`] and the next attempt is tried. TLS
//!   attempts trust the roots of [`B2buaConfig::tls_client`] and verify the
//!   target's host (a name, or an IP address in the certificate's
//!   subjectAltName);
//! - Via carries the leg's transport (`SIP/2.0/TCP`, `SIP/2.0/TLS`) and the
//!   address of our listener for it (the UDP address when there is none:
//!   answers come back on the connection anyway), Contact carries
//!   `;transport=tcp` or `;transport=tls`;
//! - nothing is retransmitted over a stream (reliable transports do not
//!   retransmit; INVITEs over UDP still are, Timer A).
//!
//! [`B2buaConfig::admission`] also decides on stream peers: a connection
//! from a source that is not admitted is closed as soon as it is accepted,
//! before anything is read (and requests on an admitted connection are
//! asked about again, as on UDP). A provider that opens a connection of its
//! own towards us (instead of using ours) must therefore be admitted too.
//!
//! Timers per attempt ([`PlannedAttempt`]): no provisional answer within
//! `setup_timeout` means the target is not answering (next attempt); no
//! final answer within `answer_timeout` means CANCEL, and if the target was
//! ringing the callee did not pick up, so the rest of the attempt's group is
//! skipped. A stop code of the [`FailoverPolicy`] (the callee's own answer)
//! also ends the group. When no attempt is left the caller gets the
//! callee's last own answer, 480 after a ring-out, the last provider answer
//! (503 for authentication answers, which are between us and the provider),
//! or 408 when nothing answered.
//!
//! With [`super::anchor::RelayAnchor::factory`] as [`B2buaConfig::media`],
//! the media of every call runs through the relay: once a call is answered,
//! the anchor's media timeout is watched and, when it fires, both legs get a
//! BYE and the record's `hangup` is [`HangupCause::MediaTimeout`]. The
//! relay's ports are released when the call's record is written.
//!
//! While an answered call ends, header fields named in
//! [`B2buaConfig::capture_headers`] are kept from each leg's BYE or its
//! answer to ours (the B2BUA waits up to [`B2buaConfig::bye_answer_wait`]
//! for those answers), and [`CallControl::hangup_headers`] may add fields to
//! what is sent to each leg: that is how usage receipts travel.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::call::{
    FailoverPolicy, HangupCause, Leg, MediaAnchor, MediaError, Outcome, PassThrough, SipTarget,
};
pub use super::control::CallRecord;
use super::control::{
    AttemptRecord, CallControl, CallPlan, CapturedHeader, FixedTargets, Hangup, InboundCall,
    PlannedAttempt, Routing,
};
use super::message::{Method, Reply, Request, Response};
pub use super::transport::StreamLimits;
use super::transport::{Dest, Flow, LegFlow, StreamEvent, Streams};
use super::validate::{validate, Echo, Policy, Verdict};
use super::wire::MAX_MESSAGE_SIZE;
use super::Transport;

/// How long a cancelled outbound leg may take to answer (Timer B, 64 * T1).
const CANCELLED_LEG_GRACE: Duration = Duration::from_secs(32);
/// RFC 3261 T1: the first INVITE retransmission interval over UDP.
const T1: Duration = Duration::from_millis(500);
/// Longest interval between INVITE retransmissions (T2).
const T2: Duration = Duration::from_secs(4);
/// Records kept for [`B2bua::records`] (the oldest go first).
pub const RECENT_RECORDS: usize = 4096;

/// Makes a [`MediaAnchor`] per call; an error (e.g. no free relay ports)
/// refuses the call with 503.
pub type AnchorFactory = Arc<dyn Fn() -> Result<Box<dyn MediaAnchor>, MediaError> + Send + Sync>;

/// How the B2BUA runs.
#[derive(Clone)]
pub struct B2buaConfig {
    /// The UDP socket (always bound).
    pub bind: SocketAddr,
    /// A TCP listener as well (`None`: no TCP ingress; outbound TCP
    /// attempts work regardless).
    pub tcp: Option<SocketAddr>,
    /// A TLS listener as well, with the certificate it presents.
    pub tls: Option<TlsInbound>,
    /// Roots trusted for outbound TLS attempts (e.g.
    /// [`crate::pki::tls::client_config`]); `None`: TLS targets end as
    /// [`Outcome::TransportError`].
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// Bounds on TCP and TLS connections.
    pub streams: StreamLimits,
    /// Decides where each call goes.
    pub control: Arc<dyn CallControl>,
    pub failover: FailoverPolicy,
    pub media: AnchorFactory,
    /// Header fields kept from the legs' BYEs and BYE answers (case-insensitive).
    pub capture_headers: Vec<String>,
    /// How long to wait for the answers to our BYEs when headers are captured.
    pub bye_answer_wait: Duration,
    /// Decides whether a request that belongs to no call in progress (a new
    /// INVITE, an OPTIONS, a stray) is looked at; when it says no, nothing
    /// is answered. `None` admits everyone.
    pub admission: Option<Arc<dyn Admission>>,
}

/// A TLS listener: where, and the server configuration (certificate,
/// ring provider) it presents.
#[derive(Clone)]
pub struct TlsInbound {
    pub bind: SocketAddr,
    pub config: Arc<rustls::ServerConfig>,
}

/// Who may start calls: trusted peers, and how often (see
/// [`B2buaConfig::admission`]). Requests and responses inside calls in
/// progress are always admitted.
pub trait Admission: Send + Sync + 'static {
    fn admit(&self, source: SocketAddr) -> bool;
}

impl B2buaConfig {
    /// 127.0.0.1 on a free port, [`FixedTargets`] with 5 s per attempt,
    /// default stop codes, SDP passed through.
    pub fn loopback(targets: Vec<SipTarget>) -> Self {
        B2buaConfig::with_control(Arc::new(FixedTargets {
            targets,
            attempt_timeout: Duration::from_secs(5),
        }))
    }

    /// 127.0.0.1 on a free port (UDP only) with `control` deciding,
    /// default stop codes, SDP passed through, nothing captured.
    pub fn with_control(control: Arc<dyn CallControl>) -> Self {
        B2buaConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tcp: None,
            tls: None,
            tls_client: None,
            streams: StreamLimits::default(),
            control,
            failover: FailoverPolicy::default(),
            media: Arc::new(|| Ok(Box::new(PassThrough))),
            capture_headers: Vec::new(),
            bye_answer_wait: Duration::from_secs(2),
            admission: None,
        }
    }
}

/// A running B2BUA.
pub struct B2bua {
    local: SocketAddr,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    records: Arc<Mutex<VecDeque<CallRecord>>>,
    active: Arc<std::sync::atomic::AtomicUsize>,
    cancel: CancellationToken,
}

/// Receive buffer asked for the SIP UDP socket.
const SIP_SOCKET_BUFFER: usize = 4 << 20;

impl B2bua {
    /// Binds the UDP socket and the configured stream listeners and starts
    /// serving on the current tokio runtime.
    pub async fn bind(config: B2buaConfig) -> std::io::Result<B2bua> {
        let socket = UdpSocket::bind(config.bind).await?;
        // Every call's signalling shares this socket: a burst that outruns
        // the engine for a moment must queue, not be dropped (the default
        // buffer holds a few hundred messages). Best effort: the kernel
        // caps it at net.core.rmem_max.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(SIP_SOCKET_BUFFER);
        let local = socket.local_addr()?;
        let tcp = match config.tcp {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let tls = match &config.tls {
            Some(t) => Some((TcpListener::bind(t.bind).await?, t.config.clone())),
            None => None,
        };
        let addrs = Local {
            udp: local,
            tcp: tcp.as_ref().map(TcpListener::local_addr).transpose()?,
            tls: tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?,
        };
        let records = Arc::new(Mutex::new(VecDeque::new()));
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let (media_stopped, media_stopped_rx) = mpsc::unbounded_channel();
        let (routed, routed_rx) = mpsc::unbounded_channel();
        let policy = Policy::default();
        let (streams, stream_rx) = Streams::new(
            config.streams.clone(),
            policy.clone(),
            config.tls_client.clone(),
            cancel.clone(),
        );
        // One bound for TCP and TLS together.
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        if let Some(listener) = tcp {
            streams.serve(listener, None, config.admission.clone(), open.clone());
        }
        if let Some((listener, server)) = tls {
            streams.serve(listener, Some(server), config.admission.clone(), open);
        }
        let engine = Engine {
            media_stopped,
            routed,
            socket: Arc::new(socket),
            local: addrs,
            streams,
            config,
            calls: HashMap::new(),
            by_callee: HashMap::new(),
            closing: HashMap::new(),
            records: records.clone(),
            active: active.clone(),
            policy,
        };
        tokio::spawn(engine.run(cancel.clone(), media_stopped_rx, routed_rx, stream_rx));
        Ok(B2bua {
            local,
            tcp: addrs.tcp,
            tls: addrs.tls,
            records,
            active,
            cancel,
        })
    }

    /// The UDP socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The TCP listener's address, when [`B2buaConfig::tcp`] was set.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The TLS listener's address, when [`B2buaConfig::tls`] was set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
    }

    /// Records of the most recent calls that have ended (at most [`RECENT_RECORDS`]).
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().iter().cloned().collect()
    }

    /// Calls in progress (routing, ringing or answered).
    pub fn active_calls(&self) -> usize {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for B2bua {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The control is deciding; nothing sent but 100.
    Routing,
    /// Attempts running; nothing final sent to the caller yet.
    Setup,
    /// 200 sent to the caller; both legs up.
    Up,
}

/// The outbound leg (one attempt at a time).
struct Outbound {
    plan: PlannedAttempt,
    flow: LegFlow,
    from_tag: String,
    to_tag: Option<String>,
    branch: String,
    cseq: u32,
    remote_target: Option<String>,
    started_at: SystemTime,
    provisional_at: Option<SystemTime>,
    setup_deadline: Instant,
    answer_deadline: Instant,
    /// Set once CANCEL was sent or the attempt was abandoned: the leg is
    /// only kept until it answers or this grace deadline passes.
    abandoned_until: Option<Instant>,
    /// The INVITE as sent, retransmitted over UDP (RFC 3261 Timer A) until anything answers.
    invite: Vec<u8>,
    responded: bool,
    retransmit_at: Instant,
    retransmit_interval: Duration,
}

impl Outbound {
    fn call_id(&self) -> &str {
        &self.plan.call_id
    }
    fn target(&self) -> &SipTarget {
        &self.plan.target
    }
    fn record(&self, outcome: Outcome) -> AttemptRecord {
        AttemptRecord {
            target: self.plan.target.clone(),
            call_id: self.plan.call_id.clone(),
            label: self.plan.label.clone(),
            group: self.plan.group,
            outcome,
            started_at: self.started_at,
            provisional_at: self.provisional_at,
            ended_at: SystemTime::now(),
        }
    }
}

/// A request relayed from one leg and waiting for the other leg's answer.
struct Relay {
    from: Leg,
    echo: Echo,
    /// Where the request came from: its answer goes back there.
    flow: Flow,
    method: Method,
}

struct Call {
    phase: Phase,
    /// Where the caller's INVITE came from.
    caller: LegFlow,
    caller_echo: Echo,
    caller_from: String,
    caller_contact: String,
    our_tag: String,
    our_cseq: u32,
    max_forwards: u8,
    offer: Vec<u8>,
    plan: CallPlan,
    next_attempt: usize,
    /// A group whose remaining attempts are skipped.
    skip_group: Option<u32>,
    /// The caller gave up (CANCEL): no further attempts.
    caller_gone: bool,
    out: Option<Outbound>,
    media: Box<dyn MediaAnchor>,
    /// Watches the answered call's media; dropped with the call.
    media_watch: Option<AbortOnDrop>,
    /// When an answered call is ended by the plan's maximum duration.
    hangup_at: Option<Instant>,
    record: CallRecord,
    /// Relayed in-dialog transactions by the branch (callee side) or CSeq (caller side).
    relays: HashMap<String, Relay>,
}

/// A call whose BYEs have been sent, waiting for their answers (to capture
/// headers from them) until `deadline`.
struct Closing {
    call: Call,
    /// Our BYEs' branches and the leg each went to.
    waiting: Vec<(String, Leg)>,
    deadline: Instant,
}

/// (Re)starts watching an answered call's media: the previous watch is
/// dropped; none is started while the anchor reports the call on hold.
fn arm_media_watch(
    call: &mut Call,
    caller_id: &str,
    media_stopped: &mpsc::UnboundedSender<(String, Duration)>,
) {
    call.media_watch = call.media.media_timeout().map(|stopped| {
        let tx = media_stopped.clone();
        let id = caller_id.to_owned();
        let task = tokio::spawn(async move {
            let idle = stopped.await;
            let _ = tx.send((id, idle));
        });
        AbortOnDrop(task.abort_handle())
    });
}

/// Stops a background task when the owner goes away.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Engine {
    /// Caller-side Call-IDs of calls whose media stopped, with the idle time.
    media_stopped: mpsc::UnboundedSender<(String, Duration)>,
    /// Routing decisions, by the caller-side Call-ID.
    routed: mpsc::UnboundedSender<(String, Routing)>,
    socket: Arc<UdpSocket>,
    local: Local,
    streams: Streams,
    config: B2buaConfig,
    /// Keyed by the caller's Call-ID.
    calls: HashMap<String, Call>,
    /// Callee-side Call-ID → caller-side Call-ID.
    by_callee: HashMap<String, String>,
    /// Calls waiting for the answers to their BYEs, by the caller's Call-ID.
    closing: HashMap<String, Closing>,
    records: Arc<Mutex<VecDeque<CallRecord>>>,
    active: Arc<std::sync::atomic::AtomicUsize>,
    policy: Policy,
}

/// Our addresses, one per transport listened on.
#[derive(Debug, Clone, Copy)]
struct Local {
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

impl Local {
    /// The sent-by of our Via on a leg over `transport`: its listener, or
    /// the UDP address when there is none (answers come on the connection).
    fn sent_by(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp.unwrap_or(self.udp),
            Transport::Tls => self.tls.unwrap_or(self.udp),
        }
    }

    fn via(&self, transport: Transport, branch: &str) -> String {
        let by = self.sent_by(transport);
        format!("Via: SIP/2.0/{transport} {by};branch={branch};rport\r\n")
    }

    /// Our Contact on a leg over `transport`.
    fn contact(&self, transport: Transport) -> String {
        let at = self.sent_by(transport);
        match transport {
            Transport::Udp => format!("<sip:b2bua@{at}>"),
            Transport::Tcp => format!("<sip:b2bua@{at};transport=tcp>"),
            Transport::Tls => format!("<sip:b2bua@{at};transport=tls>"),
        }
    }
}

/// Where requests to the caller go when its connection has closed: its
/// Contact, over the transport it came on (only for an IP address: no name
/// lookups on the engine's task).
fn caller_dest(flow: &Flow, contact: &str) -> Option<Dest> {
    if flow.transport() == Transport::Udp {
        return None;
    }
    let target = SipTarget::parse(contact).ok()?;
    let ip: std::net::IpAddr = target.host().parse().ok()?;
    Some(Dest {
        transport: flow.transport(),
        addr: SocketAddr::new(ip, target.port()),
        server_name: Some(target.host().to_owned()),
    })
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn new_branch() -> String {
    format!("z9hG4bK{}", random_hex())
}

/// The URI inside `<...>` or before the first `;` of a name-addr value.
fn uri_of(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match (text.find('<'), text.find('>')) {
        (Some(a), Some(b)) if a < b => text[a + 1..b].to_owned(),
        _ => text.split(';').next().unwrap_or_default().trim().to_owned(),
    }
}

/// The display name before `<...>`, unquoted, if any.
fn display_of(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let lt = text.find('<')?;
    let name = text[..lt].trim();
    let name = name
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .map(|n| n.replace("\\\"", "\"").replace("\\\\", "\\"))
        .unwrap_or_else(|| name.to_owned());
    (!name.is_empty()).then_some(name)
}

/// The user part of a SIP URI (`sip:user@host` → `user`), unescaped.
fn user_of(uri: &str) -> Option<String> {
    let rest = uri.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    let user = user.split([';', ':']).next().unwrap_or_default();
    (!user.is_empty()).then(|| unescape(user))
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `tag` parameter of a To/From value.
fn tag_of(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let params = match text.rfind('>') {
        Some(gt) => &text[gt + 1..],
        None => text.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_owned())
    })
}

fn branch_of(via: &[u8]) -> Option<String> {
    String::from_utf8_lossy(via)
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("branch")
                .then(|| v.trim().to_owned())
        })
}

/// Appends application header fields, refusing any that could break the
/// message (CR, LF or other control characters, or a bad name).
fn push_headers(head: &mut String, headers: &[(String, String)]) {
    for (name, value) in headers {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b));
        let value_ok = !value.chars().any(|c| c.is_control() && c != '\t');
        if name_ok && value_ok {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        } else {
            tracing::warn!(header = %name, "header field not sent: invalid characters");
        }
    }
}

fn inbound_call(req: &Request<'_>, peer: SocketAddr) -> InboundCall {
    let request_uri = req.uri().into_owned();
    let from = req.header("From").unwrap_or_default();
    let from_uri = uri_of(from);
    InboundCall {
        call_id: req.call_id().to_owned(),
        source: peer,
        dialed: user_of(&request_uri),
        request_uri,
        from_user: user_of(&from_uri),
        from_display: display_of(from),
        from_uri,
        headers: req
            .headers()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect(),
        received_at: SystemTime::now(),
    }
}

impl Engine {
    async fn run(
        mut self,
        cancel: CancellationToken,
        mut media_stopped: mpsc::UnboundedReceiver<(String, Duration)>,
        mut routed: mpsc::UnboundedReceiver<(String, Routing)>,
        mut streams: mpsc::Receiver<StreamEvent>,
    ) {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some((call_id, idle)) = media_stopped.recv() => {
                    self.end_answered(&call_id, HangupCause::MediaTimeout { idle }).await
                }
                Some((call_id, routing)) = routed.recv() => self.on_routed(&call_id, routing).await,
                _ = tick.tick() => self.on_tick().await,
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((len, peer)) = r else { continue };
                    let packet = buf[..len].to_vec();
                    self.on_packet(&packet, &Flow::Udp(peer)).await;
                }
                Some(event) = streams.recv() => match event {
                    StreamEvent::Message { bytes, flow } => self.on_packet(&bytes, &flow).await,
                    StreamEvent::Closed { id, connected, detail } => {
                        self.on_closed(id, connected, &detail).await
                    }
                },
            }
        }
    }

    async fn send(&self, bytes: &[u8], to: &Flow) {
        match to {
            Flow::Udp(addr) => {
                if let Err(e) = self.socket.send_to(bytes, addr).await {
                    tracing::debug!(%addr, error = %e, "b2bua send failed");
                }
            }
            Flow::Stream(conn) => {
                if let Err(e) = conn.send(bytes.to_vec()) {
                    tracing::debug!(?conn, error = e, "b2bua send failed");
                }
            }
        }
    }

    async fn on_packet(&mut self, packet: &[u8], peer: &Flow) {
        match validate(packet, &self.policy) {
            Verdict::Request(req) => self.on_request(&req, peer).await,
            Verdict::Response(resp) => self.on_response(&resp, peer).await,
            Verdict::Reject(r) => {
                let admitted = self
                    .config
                    .admission
                    .as_ref()
                    .is_none_or(|a| a.admit(peer.peer()));
                if r.answerable() && admitted {
                    let answer = Reply::for_rejection(&r).encode(&r.echo, &random_hex());
                    self.send(&answer, peer).await;
                }
            }
            Verdict::Drop(d) => {
                tracing::debug!(peer = %peer.peer(), detail = %d.detail, "dropped")
            }
        }
    }

    /// A stream connection is gone: attempts waiting on it for their final
    /// answer have failed (RFC 3261 8.1.3.1: a transport error), and the
    /// next attempt is tried.
    ///
    /// A caller whose connection closes before its call was answered can no
    /// longer be given the answer: the call is abandoned as if cancelled
    /// (otherwise a callee could answer a call nobody is on).
    async fn on_closed(&mut self, id: u64, connected: bool, detail: &str) {
        self.streams.forget(id);
        let orphaned: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.phase != Phase::Up && !c.caller_gone && c.caller.flow.conn_id() == Some(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in orphaned {
            tracing::info!(
                call_id,
                detail,
                "the caller's connection closed before an answer"
            );
            self.abandon(&call_id).await;
        }
        let failed: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.phase == Phase::Setup
                    && !c.caller_gone
                    && c.out.as_ref().is_some_and(|o| {
                        o.abandoned_until.is_none() && o.flow.flow.conn_id() == Some(id)
                    })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in failed {
            let Some(call) = self.calls.get_mut(&call_id) else {
                continue;
            };
            let Some(out) = call.out.take() else {
                continue;
            };
            tracing::info!(
                callee = out.call_id(),
                connected,
                detail,
                "attempt lost its connection"
            );
            let outcome = Outcome::TransportError {
                detail: detail.to_owned(),
            };
            call.record.attempts.push(out.record(outcome));
            self.by_callee.remove(out.call_id());
            self.next_attempt(&call_id).await;
        }
    }

    async fn reply(&self, req: &Request<'_>, peer: &Flow, reply: Reply, tag: &str) {
        self.send(&reply.encode(&req.echo(), tag), peer).await;
    }

    /// Whether a request belongs to a call in progress (either leg).
    fn known_call(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
            || self.by_callee.contains_key(call_id)
            || self.closing.contains_key(call_id)
    }

    async fn on_request(&mut self, req: &Request<'_>, peer: &Flow) {
        let call_id = req.call_id().to_owned();
        if let Some(admission) = &self.config.admission {
            if !self.known_call(&call_id) && !admission.admit(peer.peer()) {
                tracing::debug!(peer = %peer.peer(), "request not admitted");
                return;
            }
        }
        let to_tag = req.header("To").and_then(tag_of);
        match req.method() {
            Method::Options => {
                self.reply(req, peer, Reply::new(200, "OK"), &random_hex())
                    .await
            }
            Method::Invite if to_tag.is_none() => {
                if let Some(call) = self.calls.get(&call_id) {
                    // A retransmission: the caller missed our 100.
                    let echo = call.caller_echo.clone();
                    self.send(&Reply::new(100, "Trying").encode(&echo, ""), peer)
                        .await;
                } else {
                    self.new_call(req, peer).await;
                }
            }
            Method::Ack => {} // ACKs end transactions we answered; nothing to relay.
            Method::Cancel => self.on_cancel(req, peer).await,
            Method::Bye => self.on_bye(req, peer).await,
            Method::Invite | Method::Update | Method::Info => self.relay_in_dialog(req, peer).await,
            _ => {
                self.reply(
                    req,
                    peer,
                    Reply::new(405, "Method Not Allowed"),
                    &random_hex(),
                )
                .await
            }
        }
    }

    async fn new_call(&mut self, req: &Request<'_>, peer: &Flow) {
        let echo = req.echo();
        self.send(&Reply::new(100, "Trying").encode(&echo, ""), peer)
            .await;
        let mut media = match (self.config.media)() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "no media for a new call");
                let reply = Reply::new(503, "Service Unavailable")
                    .header("Warning", format!("399 b2bua \"{e}\""));
                self.reply(req, peer, reply, &random_hex()).await;
                return;
            }
        };
        let offer = if req.body().is_empty() {
            Vec::new()
        } else {
            match media.offer(Leg::Caller, req.body()) {
                Ok(o) => o,
                Err(e) => {
                    let reply = Reply::new(488, "Not Acceptable Here")
                        .header("Warning", format!("399 b2bua \"{e}\""));
                    self.reply(req, peer, reply, &random_hex()).await;
                    return;
                }
            }
        };
        let inbound = inbound_call(req, peer.peer());
        let call_id = inbound.call_id.clone();
        let caller_contact = req.header("Contact").map(uri_of).unwrap_or_default();
        let call = Call {
            phase: Phase::Routing,
            caller: LegFlow::new(peer.clone(), caller_dest(peer, &caller_contact)),
            caller_from: req
                .header("From")
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            caller_contact,
            caller_echo: echo,
            our_tag: random_hex(),
            our_cseq: 0,
            max_forwards: req.max_forwards().unwrap_or(70).saturating_sub(1),
            offer,
            plan: CallPlan::default(),
            next_attempt: 0,
            skip_group: None,
            caller_gone: false,
            out: None,
            media,
            media_watch: None,
            hangup_at: None,
            record: CallRecord {
                call_id: call_id.clone(),
                received_at: inbound.received_at,
                attempts: Vec::new(),
                final_status: None,
                answered_at: None,
                ended_at: None,
                ended_by: None,
                hangup: None,
                media: None,
                captured: Vec::new(),
            },
            relays: HashMap::new(),
        };
        self.calls.insert(call_id.clone(), call);
        self.active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let decision = self.config.control.route(inbound);
        let routed = self.routed.clone();
        tokio::spawn(async move {
            let _ = routed.send((call_id, decision.await));
        });
    }

    async fn on_routed(&mut self, call_id: &str, routing: Routing) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return; // the caller gave up while we were deciding
        };
        if call.phase != Phase::Routing || call.caller_gone {
            return;
        }
        match routing {
            Routing::Reject(reply) => {
                let reply = if reply.status < 300 {
                    tracing::warn!(
                        status = reply.status,
                        "call control refused with a non-final status"
                    );
                    Reply::new(500, "Server Internal Error")
                } else {
                    reply
                };
                self.finish_setup(call_id, reply).await;
            }
            Routing::Plan(plan) => {
                call.plan = plan;
                call.phase = Phase::Setup;
                self.next_attempt(call_id).await;
            }
        }
    }

    /// Starts the next attempt, or gives the caller a final answer when none is left.
    async fn next_attempt(&mut self, call_id: &str) {
        loop {
            let Some(call) = self.calls.get_mut(call_id) else {
                return;
            };
            if call.caller_gone {
                return;
            }
            let next = call.plan.attempts.get(call.next_attempt).cloned();
            let Some(planned) = next else {
                let reply = final_answer(&call.record.attempts, &self.config.failover);
                self.finish_setup(call_id, reply).await;
                return;
            };
            call.next_attempt += 1;
            if call.skip_group == Some(planned.group) {
                continue;
            }
            let started_at = SystemTime::now();
            let flow = match planned.target.resolve().await {
                Ok(addr) => self.flow_to(&planned.target, addr),
                Err(e) => Err(e.to_string()),
            };
            let flow = match flow {
                Ok(f) => f,
                Err(detail) => {
                    tracing::debug!(target = %planned.target, %detail, "attempt not started");
                    if let Some(call) = self.calls.get_mut(call_id) {
                        call.record.attempts.push(AttemptRecord {
                            target: planned.target.clone(),
                            call_id: planned.call_id.clone(),
                            label: planned.label.clone(),
                            group: planned.group,
                            outcome: Outcome::TransportError { detail },
                            started_at,
                            provisional_at: None,
                            ended_at: SystemTime::now(),
                        });
                    }
                    continue;
                }
            };
            let Some(call) = self.calls.get_mut(call_id) else {
                return;
            };
            let now = Instant::now();
            let out = Outbound {
                setup_deadline: now + planned.setup_timeout,
                answer_deadline: now + planned.answer_timeout,
                plan: planned,
                flow,
                from_tag: random_hex(),
                to_tag: None,
                branch: new_branch(),
                cseq: 1,
                remote_target: None,
                started_at,
                provisional_at: None,
                abandoned_until: None,
                invite: Vec::new(),
                responded: false,
                retransmit_at: now + T1,
                retransmit_interval: T1,
            };
            let invite = invite_for(&self.local, call, &out);
            let mut out = out;
            out.invite = invite.clone();
            let flow = out.flow.flow.clone();
            self.by_callee
                .insert(out.call_id().to_owned(), call_id.to_owned());
            if let Some(old) = call.out.replace(out) {
                self.by_callee.remove(old.call_id());
            }
            self.send(&invite, &flow).await;
            return;
        }
    }

    /// The way to a target at `addr`: UDP, or a stream connection (reused
    /// or being opened).
    fn flow_to(&mut self, target: &SipTarget, addr: SocketAddr) -> Result<LegFlow, String> {
        if target.transport() == Transport::Udp {
            return Ok(LegFlow::new(Flow::Udp(addr), None));
        }
        let dest = Dest {
            transport: target.transport(),
            addr,
            server_name: Some(target.host().to_owned()),
        };
        let conn = self.streams.connection(&dest)?;
        Ok(LegFlow::new(Flow::Stream(conn), Some(dest)))
    }
}

/// What the caller hears when every attempt failed.
fn final_answer(attempts: &[AttemptRecord], failover: &FailoverPolicy) -> Reply {
    let callee_answer = attempts.iter().rev().find_map(|a| match &a.outcome {
        o @ Outcome::Rejected { status, reason } if failover.ends_search(o) => {
            Some((*status, reason.clone()))
        }
        _ => None,
    });
    if let Some((status, reason)) = callee_answer {
        return Reply::new(status, non_empty_reason(status, &reason));
    }
    let rang_out = attempts
        .iter()
        .any(|a| a.provisional_at.is_some() && matches!(a.outcome, Outcome::Timeout { .. }));
    if rang_out {
        return Reply::new(480, "Temporarily Unavailable")
            .header("Reason", "SIP;cause=480;text=\"no answer\"");
    }
    match attempts.last().map(|a| &a.outcome) {
        Some(Outcome::Rejected {
            status: 401 | 403 | 407,
            ..
        }) => Reply::new(503, "Service Unavailable"),
        Some(Outcome::Rejected { status, reason }) if *status >= 400 => {
            Reply::new(*status, non_empty_reason(*status, reason))
        }
        Some(Outcome::Timeout { .. }) => Reply::new(408, "Request Timeout"),
        _ => Reply::new(503, "Service Unavailable"),
    }
}

fn non_empty_reason(status: u16, reason: &str) -> String {
    if reason.trim().is_empty() {
        status_reason(status).to_owned()
    } else {
        reason.to_owned()
    }
}

fn invite_for(local: &Local, call: &Call, out: &Outbound) -> Vec<u8> {
    let from_uri = uri_of(call.caller_from.as_bytes());
    let transport = out.flow.transport();
    let mut head = format!(
            "INVITE {uri} SIP/2.0\r\n{via}Max-Forwards: {mf}\r\n\
             From: <{from_uri}>;tag={ftag}\r\nTo: <{uri}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: {contact}\r\n",
            uri = out.target().uri(),
            via = local.via(transport, &out.branch),
            contact = local.contact(transport),
            mf = call.max_forwards,
            ftag = out.from_tag,
            cid = out.call_id(),
            cseq = out.cseq,
        );
    push_headers(&mut head, &out.plan.headers);
    if !call.offer.is_empty() {
        head.push_str("Content-Type: application/sdp\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", call.offer.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&call.offer);
    bytes
}

/// A request inside the callee dialog (ACK, CANCEL reuse the INVITE's branch).
fn callee_request(
    local: &Local,
    out: &Outbound,
    method: &str,
    cseq: u32,
    branch: &str,
    headers: &[(String, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let uri = match method {
        "CANCEL" => out.target().uri().to_owned(),
        _ => out
            .remote_target
            .clone()
            .unwrap_or_else(|| out.target().uri().to_owned()),
    };
    let to_tag = match (method, &out.to_tag) {
        ("CANCEL", _) | (_, None) => String::new(),
        (_, Some(t)) => format!(";tag={t}"),
    };
    let transport = out.flow.transport();
    let mut head = format!(
            "{method} {uri} SIP/2.0\r\n{via}Max-Forwards: 70\r\n\
             From: <sip:b2bua@{udp}>;tag={ftag}\r\nTo: <{target}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n",
            via = local.via(transport, branch),
            udp = local.udp,
            ftag = out.from_tag,
            target = out.target().uri(),
            cid = out.call_id(),
        );
    if method != "ACK" && method != "CANCEL" {
        head.push_str(&format!("Contact: {}\r\n", local.contact(transport)));
    }
    push_headers(&mut head, headers);
    finish_message(head, body)
}

fn finish_message(mut head: String, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let body = body.unwrap_or(("", b""));
    if !body.1.is_empty() {
        head.push_str(&format!("Content-Type: {}\r\n", body.0));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.1.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.1);
    bytes
}

/// A request inside the caller dialog (we are the UAS of that dialog).
fn caller_request(
    local: &Local,
    call: &Call,
    method: &str,
    cseq: u32,
    branch: &str,
    headers: &[(String, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let to = &call.caller_from;
    let from = call
        .caller_echo
        .to
        .as_deref()
        .map(uri_of)
        .unwrap_or_default();
    let transport = call.caller.transport();
    let mut head = format!(
        "{method} {uri} SIP/2.0\r\n{via}Max-Forwards: 70\r\n\
             From: <{from}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n",
        via = local.via(transport, branch),
        uri = call.caller_contact,
        tag = call.our_tag,
        cid = call.record.call_id,
    );
    if method != "ACK" {
        head.push_str(&format!("Contact: {}\r\n", local.contact(transport)));
    }
    push_headers(&mut head, headers);
    finish_message(head, body)
}

impl Engine {
    fn caller_reply(call: &Call, reply: Reply, local: &Local) -> Vec<u8> {
        let reply = if reply.status > 100 {
            reply.header("Contact", local.contact(call.caller.transport()))
        } else {
            reply
        };
        reply.encode(&call.caller_echo, &call.our_tag)
    }

    /// Sends the INVITE's final non-2xx answer to the caller and forgets the call.
    async fn finish_setup(&mut self, call_id: &str, reply: Reply) {
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        call.record.final_status = Some(reply.status);
        if let Some(out) = call.out.take() {
            self.by_callee.remove(out.call_id());
        }
        let bytes = Self::caller_reply(&call, reply, &self.local);
        self.send(&bytes, &call.caller.flow).await;
        self.close(call);
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        // Cancelled or abandoned legs whose grace is over.
        let abandoned: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.caller_gone
                    && c.out
                        .as_ref()
                        .is_none_or(|o| o.abandoned_until.is_some_and(|d| d <= now))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in abandoned {
            if let Some(mut call) = self.calls.remove(&call_id) {
                if let Some(out) = call.out.take() {
                    self.by_callee.remove(out.call_id());
                }
                self.close(call);
            }
        }
        // INVITEs nobody has answered yet (not even 100) go out again.
        let mut resend = Vec::new();
        for call in self.calls.values_mut() {
            if let Some(out) = call.out.as_mut() {
                // Reliable transports do not retransmit (RFC 3261 17.1.1.2).
                let udp = matches!(out.flow.flow, Flow::Udp(_));
                if udp
                    && !out.responded
                    && out.abandoned_until.is_none()
                    && out.retransmit_at <= now
                {
                    out.retransmit_interval = (out.retransmit_interval * 2).min(T2);
                    out.retransmit_at = now + out.retransmit_interval;
                    resend.push((out.invite.clone(), out.flow.flow.clone()));
                }
            }
        }
        for (bytes, flow) in resend {
            self.send(&bytes, &flow).await;
        }
        // Attempts past a deadline.
        let expired: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.phase == Phase::Setup
                    && !c.caller_gone
                    && c.out.as_ref().is_some_and(|o| {
                        o.abandoned_until.is_none()
                            && (o.answer_deadline <= now
                                || (o.provisional_at.is_none() && o.setup_deadline <= now))
                    })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in expired {
            self.expire_attempt(&call_id).await;
        }
        // Answered calls past their maximum duration.
        let overdue: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.phase == Phase::Up && c.hangup_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in overdue {
            let limit = self
                .calls
                .get(&call_id)
                .and_then(|c| c.plan.max_duration)
                .unwrap_or_default();
            self.end_answered(&call_id, HangupCause::MaxDuration { limit })
                .await;
        }
        // Calls that waited long enough for the answers to their BYEs.
        let done: Vec<String> = self
            .closing
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in done {
            if let Some(closing) = self.closing.remove(&call_id) {
                self.close(closing.call);
            }
        }
    }

    async fn expire_attempt(&mut self, call_id: &str) {
        let local = self.local;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(out) = call.out.take() else {
            return;
        };
        let after = if out.provisional_at.is_some() {
            out.plan.answer_timeout
        } else {
            out.plan.setup_timeout.min(out.plan.answer_timeout)
        };
        call.record
            .attempts
            .push(out.record(Outcome::Timeout { after }));
        if out.provisional_at.is_some() {
            // It rang and nobody answered: other routes to the same callee won't help.
            call.skip_group = Some(out.plan.group);
            // CANCEL only after a provisional (RFC 3261 9.1); a silent target just gets abandoned.
            let cancel = callee_request(&local, &out, "CANCEL", out.cseq, &out.branch, &[], None);
            self.send(&cancel, &out.flow.flow).await;
        }
        self.by_callee.remove(out.call_id());
        self.next_attempt(call_id).await;
    }

    async fn on_cancel(&mut self, req: &Request<'_>, peer: &Flow) {
        let call_id = req.call_id().to_owned();
        let local = self.local;
        let Some(call) = self.calls.get_mut(&call_id) else {
            self.reply(
                req,
                peer,
                Reply::new(481, "Call/Transaction Does Not Exist"),
                &random_hex(),
            )
            .await;
            return;
        };
        let tag = call.our_tag.clone();
        self.reply(req, peer, Reply::new(200, "OK"), &tag).await;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.phase == Phase::Up || call.caller_gone {
            // The 200 won the race (the caller will send BYE), or a retransmission.
            return;
        }
        let reply = Self::caller_reply(call, Reply::new(487, "Request Terminated"), &local);
        let caller_flow = call.caller.flow.clone();
        self.abandon(&call_id).await;
        self.send(&reply, &caller_flow).await;
    }

    /// The caller gave up on a call not yet answered: the attempt in
    /// progress is cancelled and no further one is made.
    async fn abandon(&mut self, call_id: &str) {
        let local = self.local;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.caller_gone = true;
        call.record.final_status = Some(487);
        if let Some(out) = call.out.as_mut() {
            call.record.attempts.push(out.record(Outcome::Cancelled));
            // Keep the leg known so a 200 racing the CANCEL can be ACKed and BYEd,
            // for Timer B (64*T1), then forget it.
            out.abandoned_until = Some(Instant::now() + CANCELLED_LEG_GRACE);
            let cancel = callee_request(&local, out, "CANCEL", out.cseq, &out.branch, &[], None);
            let flow = out.flow.flow.clone();
            self.send(&cancel, &flow).await;
        }
        // A call still routing (or between attempts) has no leg to wait for:
        // the next tick forgets it.
    }

    /// The context [`CallControl::hangup_headers`] sees, for an answered call.
    fn hangup_headers(&self, call: &Call, leg: Leg) -> Vec<(String, String)> {
        let (Some(answered_at), Some(ended_at), Some(cause)) = (
            call.record.answered_at,
            call.record.ended_at,
            call.record.hangup,
        ) else {
            return Vec::new();
        };
        let Some(attempt) = call.record.answered_attempt() else {
            return Vec::new();
        };
        let hangup = Hangup {
            call_id: &call.record.call_id,
            attempt,
            answered_at,
            ended_at,
            cause,
            ended_by: call.record.ended_by,
        };
        self.config.control.hangup_headers(leg, &hangup)
    }

    fn capture(
        &self,
        call: &mut Call,
        leg: Leg,
        headers: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) {
        if self.config.capture_headers.is_empty() {
            return;
        }
        for (name, value) in headers {
            let name = String::from_utf8_lossy(&name).into_owned();
            if self
                .config
                .capture_headers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&name))
            {
                call.record.captured.push(CapturedHeader {
                    leg,
                    name,
                    value: String::from_utf8_lossy(&value).into_owned(),
                });
            }
        }
    }

    async fn on_bye(&mut self, req: &Request<'_>, peer: &Flow) {
        let call_id = req.call_id().to_owned();
        let (caller_id, from) = if self.calls.contains_key(&call_id) {
            (call_id, Leg::Caller)
        } else if let Some(id) = self.by_callee.get(&call_id) {
            (id.clone(), Leg::Callee)
        } else {
            self.reply(
                req,
                peer,
                Reply::new(481, "Call/Transaction Does Not Exist"),
                &random_hex(),
            )
            .await;
            return;
        };
        let Some(mut call) = self.calls.remove(&caller_id) else {
            return;
        };
        let tag = match from {
            Leg::Caller => call.our_tag.clone(),
            Leg::Callee => call
                .out
                .as_ref()
                .map(|o| o.from_tag.clone())
                .unwrap_or_default(),
        };
        let answered = call.phase == Phase::Up;
        if answered {
            call.record.ended_at = Some(SystemTime::now());
            call.record.ended_by = Some(from);
            call.record.hangup = Some(HangupCause::Bye);
        }
        let headers = req
            .headers()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect::<Vec<_>>();
        self.capture(&mut call, from, headers.into_iter());
        let mut ok = Reply::new(200, "OK");
        for (n, v) in self.hangup_headers(&call, from) {
            ok = ok.header(n, v);
        }
        self.reply(req, peer, ok, &tag).await;
        let other = match from {
            Leg::Caller => Leg::Callee,
            Leg::Callee => Leg::Caller,
        };
        let mut waiting = Vec::new();
        if let Some(branch) = self.send_bye(&mut call, other).await {
            waiting.push((branch, other));
        }
        self.close_after(caller_id, call, waiting);
    }

    /// Sends BYE to `leg` of a call being ended; returns its branch.
    async fn send_bye(&mut self, call: &mut Call, leg: Leg) -> Option<String> {
        let headers = self.hangup_headers(call, leg);
        let branch = new_branch();
        match leg {
            Leg::Callee => {
                let out = call.out.as_mut()?;
                out.cseq += 1;
                let flow = out.flow.for_request(&mut self.streams);
                let bye =
                    callee_request(&self.local, out, "BYE", out.cseq, &branch, &headers, None);
                self.send(&bye, &flow).await;
            }
            Leg::Caller => {
                call.our_cseq += 1;
                let flow = call.caller.for_request(&mut self.streams);
                let bye = caller_request(
                    &self.local,
                    call,
                    "BYE",
                    call.our_cseq,
                    &branch,
                    &headers,
                    None,
                );
                self.send(&bye, &flow).await;
            }
        }
        Some(branch)
    }

    /// Closes the call now, or once the answers to our BYEs came (when
    /// headers are captured from them).
    fn close_after(&mut self, caller_id: String, call: Call, waiting: Vec<(String, Leg)>) {
        if waiting.is_empty() || self.config.capture_headers.is_empty() {
            if let Some(out) = &call.out {
                self.by_callee.remove(out.call_id());
            }
            self.close(call);
            return;
        }
        let deadline = Instant::now() + self.config.bye_answer_wait;
        self.closing.insert(
            caller_id,
            Closing {
                call,
                waiting,
                deadline,
            },
        );
    }

    /// Takes the final media statistics and hands the record on; the call's
    /// relay ports are released when `call` is dropped here.
    fn close(&self, mut call: Call) {
        call.media_watch = None;
        call.record.media = call.media.report();
        if let Some(out) = &call.out {
            tracing::trace!(callee = out.call_id(), "leg closed");
        }
        self.config.control.ended(&call.record);
        let mut records = self.records.lock();
        if records.len() >= RECENT_RECORDS {
            records.pop_front();
        }
        records.push_back(call.record);
        self.active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends an answered call from our side (media timeout, maximum
    /// duration): BYE to both legs.
    async fn end_answered(&mut self, call_id: &str, cause: HangupCause) {
        if self.calls.get(call_id).map(|c| c.phase) != Some(Phase::Up) {
            return;
        }
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        tracing::info!(call_id, ?cause, "ending the call");
        call.record.ended_at = Some(SystemTime::now());
        call.record.hangup = Some(cause);
        let mut waiting = Vec::new();
        for leg in [Leg::Callee, Leg::Caller] {
            if let Some(branch) = self.send_bye(&mut call, leg).await {
                waiting.push((branch, leg));
            }
        }
        self.close_after(call_id.to_owned(), call, waiting);
    }

    /// re-INVITE, UPDATE, INFO: sent on to the other leg; its answer comes back.
    async fn relay_in_dialog(&mut self, req: &Request<'_>, peer: &Flow) {
        let call_id = req.call_id().to_owned();
        let (caller_id, from) = if self.calls.contains_key(&call_id) {
            (call_id, Leg::Caller)
        } else if let Some(id) = self.by_callee.get(&call_id) {
            (id.clone(), Leg::Callee)
        } else {
            self.reply(
                req,
                peer,
                Reply::new(481, "Call/Transaction Does Not Exist"),
                &random_hex(),
            )
            .await;
            return;
        };
        let local = self.local;
        let Some(call) = self.calls.get_mut(&caller_id) else {
            return;
        };
        let body = if req.body().is_empty() {
            Vec::new()
        } else if *req.method() == Method::Info {
            req.body().to_vec()
        } else {
            match call.media.offer(from, req.body()) {
                Ok(b) => b,
                Err(e) => {
                    let tag = call.our_tag.clone();
                    let reply = Reply::new(488, "Not Acceptable Here")
                        .header("Warning", format!("399 b2bua \"{e}\""));
                    self.reply(req, peer, reply, &tag).await;
                    return;
                }
            }
        };
        let content_type = req.content_type().unwrap_or("application/sdp").to_owned();
        let branch = new_branch();
        let method = req.method().clone();
        let relay = Relay {
            from,
            echo: req.echo(),
            flow: peer.clone(),
            method: method.clone(),
        };
        let streams = &mut self.streams;
        let cseq_and_flow = match from {
            Leg::Caller => call.out.as_mut().map(|out| {
                out.cseq += 1;
                (out.cseq, out.flow.for_request(streams))
            }),
            Leg::Callee => {
                call.our_cseq += 1;
                Some((call.our_cseq, call.caller.for_request(streams)))
            }
        };
        let Some((cseq, flow)) = cseq_and_flow else {
            return;
        };
        call.relays.insert(branch.clone(), relay);
        let body_ref = (!body.is_empty()).then_some((content_type.as_str(), body.as_slice()));
        let bytes = match from {
            Leg::Caller => match call.out.as_ref() {
                Some(out) => {
                    callee_request(&local, out, method.as_str(), cseq, &branch, &[], body_ref)
                }
                None => return,
            },
            Leg::Callee => {
                caller_request(&local, call, method.as_str(), cseq, &branch, &[], body_ref)
            }
        };
        self.send(&bytes, &flow).await;
    }

    async fn on_response(&mut self, resp: &Response<'_>, peer: &Flow) {
        let call_id = resp.call_id().to_owned();
        let branch = resp.header("Via").and_then(branch_of).unwrap_or_default();
        if *resp.cseq_method() == Method::Bye {
            self.on_bye_answer(&call_id, &branch, resp);
            return;
        }
        // An answer to a relayed in-dialog request?
        let caller_id = if self.calls.contains_key(&call_id) {
            Some(call_id.clone())
        } else {
            self.by_callee.get(&call_id).cloned()
        };
        let Some(caller_id) = caller_id else { return };
        let is_relay = self
            .calls
            .get(&caller_id)
            .is_some_and(|c| c.relays.contains_key(&branch));
        if is_relay {
            self.on_relayed_response(&caller_id, &branch, resp, peer)
                .await;
            return;
        }
        if *resp.cseq_method() == Method::Invite && self.by_callee.contains_key(&call_id) {
            self.on_attempt_response(&caller_id, resp).await;
        }
        // Answers to our CANCEL need nothing further.
    }

    /// An answer to one of our BYEs: captures its headers, and closes the
    /// call once every BYE was answered.
    fn on_bye_answer(&mut self, call_id: &str, branch: &str, resp: &Response<'_>) {
        if resp.status() < 200 {
            return;
        }
        let caller_id = if self.closing.contains_key(call_id) {
            call_id.to_owned()
        } else {
            match self
                .closing
                .iter()
                .find(|(_, c)| c.waiting.iter().any(|(b, _)| b == branch))
            {
                Some((id, _)) => id.clone(),
                None => return,
            }
        };
        let Some(mut closing) = self.closing.remove(&caller_id) else {
            return;
        };
        let Some(pos) = closing.waiting.iter().position(|(b, _)| b == branch) else {
            self.closing.insert(caller_id, closing);
            return;
        };
        let (_, leg) = closing.waiting.remove(pos);
        let headers = resp
            .headers()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect::<Vec<_>>();
        self.capture(&mut closing.call, leg, headers.into_iter());
        if closing.waiting.is_empty() {
            if let Some(out) = &closing.call.out {
                self.by_callee.remove(out.call_id());
            }
            self.close(closing.call);
        } else {
            self.closing.insert(caller_id, closing);
        }
    }

    async fn on_relayed_response(
        &mut self,
        caller_id: &str,
        branch: &str,
        resp: &Response<'_>,
        peer: &Flow,
    ) {
        let local = self.local;
        let Some(call) = self.calls.get_mut(caller_id) else {
            return;
        };
        let status = resp.status();
        if status < 200 {
            return;
        }
        let Some(relay) = call.relays.remove(branch) else {
            return;
        };
        // ACK a 2xx to a re-INVITE on the answering leg ourselves.
        if relay.method == Method::Invite && (200..300).contains(&status) {
            match relay.from {
                Leg::Caller => {
                    if let Some(out) = call.out.as_mut() {
                        let ack = ack_for(&local, out, out.cseq, &new_branch());
                        let flow = out.flow.for_request(&mut self.streams);
                        self.send(&ack, &flow).await;
                    }
                }
                Leg::Callee => {
                    let ack = caller_request(
                        &local,
                        call,
                        "ACK",
                        call.our_cseq,
                        &new_branch(),
                        &[],
                        None,
                    );
                    let flow = call.caller.for_request(&mut self.streams);
                    self.send(&ack, &flow).await;
                }
            }
        }
        let Some(call) = self.calls.get_mut(caller_id) else {
            return;
        };
        let mut reply = Reply::new(status, status_reason(status));
        if !resp.body().is_empty() {
            match call.media.answer(relay.from, resp.body()) {
                Ok(b) => {
                    reply.body = b;
                    reply.content_type = Some("application/sdp".into());
                }
                Err(e) => tracing::warn!(error = %e, "answer SDP refused by media"),
            }
            // Hold or resume: the media timeout restarts (or pauses) from here.
            if call.phase == Phase::Up {
                arm_media_watch(call, caller_id, &self.media_stopped);
            }
        }
        let tag = match relay.from {
            Leg::Caller => call.our_tag.clone(),
            Leg::Callee => call
                .out
                .as_ref()
                .map(|o| o.from_tag.clone())
                .unwrap_or_default(),
        };
        let transport = relay.flow.transport();
        let reply = reply.header("Contact", local.contact(transport));
        let bytes = reply.encode(&relay.echo, &tag);
        let _ = peer;
        self.send(&bytes, &relay.flow).await;
    }

    async fn on_attempt_response(&mut self, caller_id: &str, resp: &Response<'_>) {
        let local = self.local;
        let status = resp.status();
        let Some(call) = self.calls.get_mut(caller_id) else {
            return;
        };
        let Some(out) = call.out.as_mut() else { return };
        if resp.call_id() != out.call_id() {
            return; // an answer from an abandoned attempt
        }
        out.responded = true;
        if let Some(tag) = resp.header("To").and_then(tag_of) {
            out.to_tag = Some(tag);
        }
        if let Some(contact) = resp.header("Contact") {
            out.remote_target = Some(uri_of(contact));
        }
        if status < 200 {
            if status == 100 {
                return;
            }
            if out.provisional_at.is_none() {
                out.provisional_at = Some(SystemTime::now());
            }
            if out.abandoned_until.is_some() || call.phase != Phase::Setup {
                return;
            }
            // Relay 18x (with early media SDP through the anchor).
            let mut reply = Reply::new(status, status_reason(status));
            if !resp.body().is_empty() {
                if let Ok(b) = call.media.answer(Leg::Callee, resp.body()) {
                    reply.body = b;
                    reply.content_type = Some("application/sdp".into());
                }
            }
            let bytes = Self::caller_reply(call, reply, &local);
            let flow = call.caller.flow.clone();
            self.send(&bytes, &flow).await;
            return;
        }
        // Every final answer to our INVITE is acknowledged (non-2xx: same branch).
        let ack_branch = if (200..300).contains(&status) {
            new_branch()
        } else {
            out.branch.clone()
        };
        let ack = ack_for(&local, out, out.cseq, &ack_branch);
        let out_flow = out.flow.flow.clone();
        self.send(&ack, &out_flow).await;
        let Some(call) = self.calls.get_mut(caller_id) else {
            return;
        };
        let Some(out) = call.out.as_mut() else { return };
        if out.abandoned_until.is_some() {
            // Too late: the caller has gone. A 200 racing our CANCEL is ended by BYE.
            if (200..300).contains(&status) {
                out.cseq += 1;
                let bye = callee_request(&local, out, "BYE", out.cseq, &new_branch(), &[], None);
                self.send(&bye, &out_flow).await;
            }
            if let Some(mut call) = self.calls.remove(caller_id) {
                if let Some(out) = call.out.take() {
                    self.by_callee.remove(out.call_id());
                }
                self.close(call);
            }
            return;
        }
        if (200..300).contains(&status) {
            let attempt = out.record(Outcome::Answered);
            self.config.control.answered(caller_id, &attempt);
            call.record.attempts.push(attempt);
            call.record.final_status = Some(status);
            call.record.answered_at = Some(SystemTime::now());
            call.phase = Phase::Up;
            call.hangup_at = call.plan.max_duration.map(|d| Instant::now() + d);
            arm_media_watch(call, caller_id, &self.media_stopped);
            let mut reply = Reply::new(status, "OK");
            if !resp.body().is_empty() {
                if let Ok(b) = call.media.answer(Leg::Callee, resp.body()) {
                    reply.body = b;
                    reply.content_type = Some("application/sdp".into());
                }
            }
            let bytes = Self::caller_reply(call, reply, &local);
            let flow = call.caller.flow.clone();
            self.send(&bytes, &flow).await;
            return;
        }
        let reason = resp.reason().into_owned();
        let outcome = Outcome::Rejected { status, reason };
        let stop = self.config.failover.ends_search(&outcome);
        let attempt = out.record(outcome);
        let group = out.plan.group;
        if let Some(old) = call.out.take() {
            self.by_callee.remove(old.call_id());
        }
        call.record.attempts.push(attempt);
        if stop {
            call.skip_group = Some(group);
        }
        self.next_attempt(caller_id).await;
    }
}

fn ack_for(local: &Local, out: &Outbound, cseq: u32, branch: &str) -> Vec<u8> {
    callee_request(local, out, "ACK", cseq, branch, &[], None)
}

fn status_reason(status: u16) -> &'static str {
    match status {
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        s if s < 200 => "Session Progress",
        s if s < 300 => "OK",
        _ => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_read() {
        assert_eq!(uri_of(b"\"A\" <sip:a@b;lr>;tag=1"), "sip:a@b;lr");
        assert_eq!(uri_of(b"sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(tag_of(b"<sip:a@b;tag=x>;tag=1").as_deref(), Some("1"));
        assert_eq!(tag_of(b"sip:a@b;tag=2").as_deref(), Some("2"));
        assert_eq!(tag_of(b"<sip:a@b>"), None);
        assert_eq!(
            branch_of(b"SIP/2.0/UDP h;branch=z9hG4bKx;rport").as_deref(),
            Some("z9hG4bKx")
        );
    }

    #[test]
    fn via_and_contact_name_the_legs_transport() {
        let local = Local {
            udp: "127.0.0.1:5060".parse().unwrap(),
            tcp: Some("127.0.0.1:5062".parse().unwrap()),
            tls: None,
        };
        assert_eq!(
            local.via(Transport::Udp, "z9hG4bK1"),
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport\r\n"
        );
        assert_eq!(
            local.via(Transport::Tcp, "z9hG4bK1"),
            "Via: SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bK1;rport\r\n"
        );
        assert_eq!(local.contact(Transport::Udp), "<sip:b2bua@127.0.0.1:5060>");
        assert_eq!(
            local.contact(Transport::Tcp),
            "<sip:b2bua@127.0.0.1:5062;transport=tcp>"
        );
        // No TLS listener: the UDP address, but the transport still says TLS.
        assert_eq!(
            local.contact(Transport::Tls),
            "<sip:b2bua@127.0.0.1:5060;transport=tls>"
        );
    }

    #[test]
    fn caller_contact_is_where_to_reconnect_only_for_streams_and_addresses() {
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let udp = Flow::Udp(peer);
        assert!(caller_dest(&udp, "sip:a@127.0.0.1:5080;transport=tcp").is_none());
        let (conn, _outbox) = super::super::transport::Conn::new(peer, Transport::Tls);
        let tls = Flow::Stream(conn);
        let dest = caller_dest(&tls, "sip:a@127.0.0.1:5080;transport=tls").unwrap();
        assert_eq!(
            (dest.transport, dest.addr),
            (Transport::Tls, "127.0.0.1:5080".parse().unwrap())
        );
        assert_eq!(dest.server_name.as_deref(), Some("127.0.0.1"));
        assert!(caller_dest(&tls, "sip:a@phone.example;transport=tls").is_none());
    }
}

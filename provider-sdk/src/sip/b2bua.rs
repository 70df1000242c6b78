//! A back-to-back user agent over UDP built from the pieces of this module:
//! every message passes [`validate`] first, outbound attempts are tried in
//! order with a per-attempt deadline and the [`FailoverPolicy`], SDP goes
//! through a [`MediaAnchor`], and in-dialog requests (BYE, re-INVITE, UPDATE,
//! INFO) are relayed between the legs.
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
//! Scope: UDP only, no route sets (Record-Route is not honoured), and no
//! retransmission timers of its own (it answers every INVITE with 100 at
//! once, so callers stop retransmitting; loopback and LAN peers). Every
//! attempt's [`Outcome`] is kept in [`CallRecord`]s.
//!
//! With [`super::anchor::RelayAnchor::factory`] as [`B2buaConfig::media`],
//! the media of every call runs through the relay: once a call is answered,
//! the anchor's media timeout is watched and, when it fires, both legs get a
//! BYE and the record's `hangup` is [`HangupCause::MediaTimeout`]. The
//! relay's ports are released when the call's record is written (BYE,
//! media timeout, failure, or the cancelled leg's final answer).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::call::{
    FailoverPolicy, HangupCause, Leg, MediaAnchor, MediaError, MediaReport, Outcome, PassThrough,
    SipTarget,
};
use super::message::{Method, Reply, Request, Response};
use super::validate::{validate, Echo, Policy, Verdict};
use super::wire::MAX_MESSAGE_SIZE;

/// How long a cancelled outbound leg may take to answer (Timer B, 64 * T1).
const CANCELLED_LEG_GRACE: Duration = Duration::from_secs(32);

/// Makes a [`MediaAnchor`] per call; an error (e.g. no free relay ports)
/// refuses the call with 503.
pub type AnchorFactory = Arc<dyn Fn() -> Result<Box<dyn MediaAnchor>, MediaError> + Send + Sync>;

/// How the B2BUA runs.
#[derive(Clone)]
pub struct B2buaConfig {
    pub bind: SocketAddr,
    /// Targets tried in order for every inbound call.
    pub targets: Vec<SipTarget>,
    /// An attempt with no final answer by then is cancelled and the next target tried.
    pub attempt_timeout: Duration,
    pub failover: FailoverPolicy,
    pub media: AnchorFactory,
}

impl B2buaConfig {
    /// 127.0.0.1 on a free port, 5 s per attempt, default stop codes, SDP passed through.
    pub fn loopback(targets: Vec<SipTarget>) -> Self {
        B2buaConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            targets,
            attempt_timeout: Duration::from_secs(5),
            failover: FailoverPolicy::default(),
            media: Arc::new(|| Ok(Box::new(PassThrough))),
        }
    }
}

/// What happened to one inbound call (kept after it ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    /// One entry per outbound attempt, in order: target and outcome.
    pub attempts: Vec<(SipTarget, Outcome)>,
    /// The final status sent to the caller for the INVITE.
    pub final_status: Option<u16>,
    /// Which leg hung up first, if the call was answered and ended by BYE.
    pub ended_by: Option<Leg>,
    /// Why the answered call ended (`None` if it was never answered).
    pub hangup: Option<HangupCause>,
    /// Per-leg RTP statistics when the media was anchored.
    pub media: Option<MediaReport>,
}

/// A running B2BUA.
pub struct B2bua {
    local: SocketAddr,
    records: Arc<Mutex<Vec<CallRecord>>>,
    cancel: CancellationToken,
}

impl B2bua {
    pub async fn bind(config: B2buaConfig) -> std::io::Result<B2bua> {
        let socket = UdpSocket::bind(config.bind).await?;
        let local = socket.local_addr()?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let (media_stopped, media_stopped_rx) = mpsc::unbounded_channel();
        let engine = Engine {
            media_stopped,
            socket,
            local,
            config,
            calls: HashMap::new(),
            by_callee: HashMap::new(),
            records: records.clone(),
            policy: Policy::default(),
        };
        tokio::spawn(engine.run(cancel.clone(), media_stopped_rx));
        Ok(B2bua {
            local,
            records,
            cancel,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Records of calls that have ended.
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().clone()
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
    /// Attempts running; nothing final sent to the caller yet.
    Setup,
    /// 200 sent to the caller; both legs up.
    Up,
}

/// The outbound leg (one attempt at a time).
struct Outbound {
    target: SipTarget,
    addr: SocketAddr,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    branch: String,
    cseq: u32,
    remote_target: Option<String>,
    deadline: Instant,
    provisional: bool,
    cancelled: bool,
}

/// A request relayed from one leg and waiting for the other leg's answer.
struct Relay {
    from: Leg,
    echo: Echo,
    addr: SocketAddr,
    method: Method,
}

struct Call {
    phase: Phase,
    caller_addr: SocketAddr,
    caller_echo: Echo,
    caller_from: String,
    caller_contact: String,
    our_tag: String,
    our_cseq: u32,
    max_forwards: u8,
    offer: Vec<u8>,
    next_target: usize,
    out: Option<Outbound>,
    media: Box<dyn MediaAnchor>,
    /// Watches the answered call's media; dropped with the call.
    media_watch: Option<AbortOnDrop>,
    record: CallRecord,
    /// Relayed in-dialog transactions by the branch (callee side) or CSeq (caller side).
    relays: HashMap<String, Relay>,
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
    socket: UdpSocket,
    local: SocketAddr,
    config: B2buaConfig,
    /// Keyed by the caller's Call-ID.
    calls: HashMap<String, Call>,
    /// Callee-side Call-ID → caller-side Call-ID.
    by_callee: HashMap<String, String>,
    records: Arc<Mutex<Vec<CallRecord>>>,
    policy: Policy,
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The URI inside `<...>` or before the first `;` of a name-addr value.
fn uri_of(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match (text.find('<'), text.find('>')) {
        (Some(a), Some(b)) if a < b => text[a + 1..b].to_owned(),
        _ => text.split(';').next().unwrap_or_default().trim().to_owned(),
    }
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

impl Engine {
    async fn run(
        mut self,
        cancel: CancellationToken,
        mut media_stopped: mpsc::UnboundedReceiver<(String, Duration)>,
    ) {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some((call_id, idle)) = media_stopped.recv() => self.on_media_timeout(&call_id, idle).await,
                _ = tick.tick() => self.expire_attempts().await,
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((len, peer)) = r else { continue };
                    let packet = buf[..len].to_vec();
                    self.on_packet(&packet, peer).await;
                }
            }
        }
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, to).await {
            tracing::debug!(%to, error = %e, "b2bua send failed");
        }
    }

    async fn on_packet(&mut self, packet: &[u8], peer: SocketAddr) {
        match validate(packet, &self.policy) {
            Verdict::Request(req) => self.on_request(&req, peer).await,
            Verdict::Response(resp) => self.on_response(&resp, peer).await,
            Verdict::Reject(r) => {
                if r.answerable() {
                    let answer = Reply::for_rejection(&r).encode(&r.echo, &random_hex());
                    self.send(&answer, peer).await;
                }
            }
            Verdict::Drop(d) => tracing::debug!(%peer, detail = %d.detail, "dropped"),
        }
    }

    async fn reply(&self, req: &Request<'_>, peer: SocketAddr, reply: Reply, tag: &str) {
        self.send(&reply.encode(&req.echo(), tag), peer).await;
    }

    async fn on_request(&mut self, req: &Request<'_>, peer: SocketAddr) {
        let call_id = req.call_id().to_owned();
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

    async fn new_call(&mut self, req: &Request<'_>, peer: SocketAddr) {
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
        let call_id = req.call_id().to_owned();
        let call = Call {
            phase: Phase::Setup,
            caller_addr: peer,
            caller_from: req
                .header("From")
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            caller_contact: req.header("Contact").map(uri_of).unwrap_or_default(),
            caller_echo: echo,
            our_tag: random_hex(),
            our_cseq: 0,
            max_forwards: req.max_forwards().unwrap_or(70).saturating_sub(1),
            offer,
            next_target: 0,
            out: None,
            media,
            media_watch: None,
            record: CallRecord {
                call_id: call_id.clone(),
                attempts: Vec::new(),
                final_status: None,
                ended_by: None,
                hangup: None,
                media: None,
            },
            relays: HashMap::new(),
        };
        self.calls.insert(call_id.clone(), call);
        self.next_attempt(&call_id).await;
    }

    /// Starts the next attempt, or gives the caller a final answer when none is left.
    async fn next_attempt(&mut self, call_id: &str) {
        loop {
            let Some(call) = self.calls.get_mut(call_id) else {
                return;
            };
            let Some(target) = self.config.targets.get(call.next_target).cloned() else {
                let last = call.record.attempts.last().map(|(_, o)| o.clone());
                let reply = match last {
                    Some(Outcome::Rejected { status, reason }) if status >= 400 => {
                        Reply::new(status, reason)
                    }
                    Some(Outcome::Timeout { .. }) => Reply::new(408, "Request Timeout"),
                    _ => Reply::new(503, "Service Unavailable"),
                };
                self.finish_setup(call_id, reply).await;
                return;
            };
            call.next_target += 1;
            let addr = match target.resolve().await {
                Ok(a) => a,
                Err(e) => {
                    if let Some(call) = self.calls.get_mut(call_id) {
                        call.record.attempts.push((
                            target,
                            Outcome::TransportError {
                                detail: e.to_string(),
                            },
                        ));
                    }
                    continue;
                }
            };
            let Some(call) = self.calls.get_mut(call_id) else {
                return;
            };
            let out = Outbound {
                target: target.clone(),
                addr,
                call_id: format!("{}@b2bua", random_hex()),
                from_tag: random_hex(),
                to_tag: None,
                branch: format!("z9hG4bK{}", random_hex()),
                cseq: 1,
                remote_target: None,
                deadline: Instant::now() + self.config.attempt_timeout,
                provisional: false,
                cancelled: false,
            };
            let invite = invite_for(self.local, call, &out);
            self.by_callee
                .insert(out.call_id.clone(), call_id.to_owned());
            if let Some(old) = call.out.replace(out) {
                self.by_callee.remove(&old.call_id);
            }
            self.send(&invite, addr).await;
            return;
        }
    }
}

fn invite_for(local: SocketAddr, call: &Call, out: &Outbound) -> Vec<u8> {
    let from_uri = uri_of(call.caller_from.as_bytes());
    let mut head = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: {mf}\r\n\
             From: <{from_uri}>;tag={ftag}\r\nTo: <{uri}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:b2bua@{local}>\r\n",
            uri = out.target.uri(),
            branch = out.branch,
            mf = call.max_forwards,
            ftag = out.from_tag,
            cid = out.call_id,
            cseq = out.cseq,
        );
    if !call.offer.is_empty() {
        head.push_str("Content-Type: application/sdp\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", call.offer.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&call.offer);
    bytes
}

impl Engine {
    /// A request inside the callee dialog (ACK, CANCEL reuse the INVITE's branch).
    fn callee_request(
        &self,
        out: &Outbound,
        method: &str,
        cseq: u32,
        branch: &str,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let uri = match method {
            "CANCEL" => out.target.uri().to_owned(),
            _ => out
                .remote_target
                .clone()
                .unwrap_or_else(|| out.target.uri().to_owned()),
        };
        let to_tag = match (method, &out.to_tag) {
            ("CANCEL", _) | (_, None) => String::new(),
            (_, Some(t)) => format!(";tag={t}"),
        };
        let mut head = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:b2bua@{local}>;tag={ftag}\r\nTo: <{target}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:b2bua@{local}>\r\n",
            local = self.local,
            ftag = out.from_tag,
            target = out.target.uri(),
            cid = out.call_id,
        );
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
        &self,
        call: &Call,
        method: &str,
        cseq: u32,
        branch: &str,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let to = &call.caller_from;
        let from = call
            .caller_echo
            .to
            .as_deref()
            .map(uri_of)
            .unwrap_or_default();
        let mut head = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <{from}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:b2bua@{local}>\r\n",
            uri = call.caller_contact,
            local = self.local,
            tag = call.our_tag,
            cid = call.record.call_id,
        );
        let body = body.unwrap_or(("", b""));
        if !body.1.is_empty() {
            head.push_str(&format!("Content-Type: {}\r\n", body.0));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.1.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.1);
        bytes
    }

    fn caller_reply(call: &Call, reply: Reply, local: SocketAddr) -> Vec<u8> {
        let reply = if reply.status > 100 {
            reply.header("Contact", format!("<sip:b2bua@{local}>"))
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
            self.by_callee.remove(&out.call_id);
        }
        let bytes = Self::caller_reply(&call, reply, self.local);
        self.send(&bytes, call.caller_addr).await;
        self.close(call);
    }

    async fn expire_attempts(&mut self) {
        let now = Instant::now();
        let abandoned: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.out
                    .as_ref()
                    .is_some_and(|o| o.cancelled && o.deadline <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in abandoned {
            if let Some(mut call) = self.calls.remove(&call_id) {
                if let Some(out) = call.out.take() {
                    self.by_callee.remove(&out.call_id);
                }
                self.close(call);
            }
        }
        let expired: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.phase == Phase::Setup
                    && c.out
                        .as_ref()
                        .is_some_and(|o| o.deadline <= now && !o.cancelled)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in expired {
            let Some(call) = self.calls.get_mut(&call_id) else {
                continue;
            };
            let Some(mut out) = call.out.take() else {
                continue;
            };
            out.cancelled = true;
            call.record.attempts.push((
                out.target.clone(),
                Outcome::Timeout {
                    after: self.config.attempt_timeout,
                },
            ));
            // CANCEL only after a provisional (RFC 3261 9.1); a silent target just gets abandoned.
            if out.provisional {
                let cancel = self.callee_request(&out, "CANCEL", out.cseq, &out.branch, None);
                self.send(&cancel, out.addr).await;
            }
            self.by_callee.remove(&out.call_id);
            self.next_attempt(&call_id).await;
        }
    }

    async fn on_cancel(&mut self, req: &Request<'_>, peer: SocketAddr) {
        let call_id = req.call_id().to_owned();
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
        let up = call.phase == Phase::Up;
        self.reply(req, peer, Reply::new(200, "OK"), &tag).await;
        if up {
            // The 200 won the race: CANCEL has no effect; the caller will send BYE.
            return;
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if let Some(out) = call.out.take() {
            call.record
                .attempts
                .push((out.target.clone(), Outcome::Cancelled));
            let cancel = self.callee_request(&out, "CANCEL", out.cseq, &out.branch, None);
            self.by_callee.insert(out.call_id.clone(), call_id.clone());
            // Keep the leg known so a 200 racing the CANCEL can be ACKed and BYEd.
            let addr = out.addr;
            if let Some(call) = self.calls.get_mut(&call_id) {
                // Give the cancelled leg Timer B (64*T1) to answer, then forget it.
                call.out = Some(Outbound {
                    cancelled: true,
                    deadline: Instant::now() + CANCELLED_LEG_GRACE,
                    ..out
                });
            }
            self.send(&cancel, addr).await;
        }
        self.finish_setup_keep_leg(&call_id, Reply::new(487, "Request Terminated"))
            .await;
    }

    /// Like [`Self::finish_setup`] but keeps the callee leg mapping until it answers.
    async fn finish_setup_keep_leg(&mut self, call_id: &str, reply: Reply) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.record.final_status = Some(reply.status);
        let bytes = Self::caller_reply(call, reply, self.local);
        let addr = call.caller_addr;
        // The call stays until the cancelled leg answers (487 or a racing 200).
        call.next_target = usize::MAX;
        self.send(&bytes, addr).await;
    }

    async fn on_bye(&mut self, req: &Request<'_>, peer: SocketAddr) {
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
        self.reply(req, peer, Reply::new(200, "OK"), &tag).await;
        call.record.ended_by = Some(from);
        call.record.hangup = Some(HangupCause::Bye);
        match (from, call.out.take()) {
            (Leg::Caller, Some(mut out)) => {
                out.cseq += 1;
                let bye = self.callee_request(
                    &out,
                    "BYE",
                    out.cseq,
                    &format!("z9hG4bK{}", random_hex()),
                    None,
                );
                self.send(&bye, out.addr).await;
                self.by_callee.remove(&out.call_id);
            }
            (Leg::Callee, out) => {
                call.our_cseq += 1;
                let bye = self.caller_request(
                    &call,
                    "BYE",
                    call.our_cseq,
                    &format!("z9hG4bK{}", random_hex()),
                    None,
                );
                self.send(&bye, call.caller_addr).await;
                if let Some(out) = out {
                    self.by_callee.remove(&out.call_id);
                }
            }
            (Leg::Caller, None) => {}
        }
        self.close(call);
    }

    /// re-INVITE, UPDATE, INFO: sent on to the other leg; its answer comes back.
    /// Takes the final media statistics and keeps the record; the call's
    /// relay ports are released when `call` is dropped here.
    fn close(&self, mut call: Call) {
        call.media_watch = None;
        call.record.media = call.media.report();
        self.records.lock().push(call.record);
    }

    /// No RTP for the media timeout on an answered call: BYE to both legs.
    async fn on_media_timeout(&mut self, call_id: &str, idle: Duration) {
        if self.calls.get(call_id).map(|c| c.phase) != Some(Phase::Up) {
            return;
        }
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        tracing::info!(call_id, ?idle, "media timeout: ending the call");
        call.record.hangup = Some(HangupCause::MediaTimeout { idle });
        if let Some(mut out) = call.out.take() {
            out.cseq += 1;
            let bye = bye_for(self.local, &out);
            self.send(&bye, out.addr).await;
            self.by_callee.remove(&out.call_id);
        }
        call.our_cseq += 1;
        let bye = self.caller_request(
            &call,
            "BYE",
            call.our_cseq,
            &format!("z9hG4bK{}", random_hex()),
            None,
        );
        self.send(&bye, call.caller_addr).await;
        self.close(call);
    }

    async fn relay_in_dialog(&mut self, req: &Request<'_>, peer: SocketAddr) {
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
        let branch = format!("z9hG4bK{}", random_hex());
        let method = req.method().clone();
        let relay = Relay {
            from,
            echo: req.echo(),
            addr: peer,
            method: method.clone(),
        };
        let bytes_and_addr = match from {
            Leg::Caller => call.out.as_mut().map(|out| {
                out.cseq += 1;
                (out.cseq, out.addr)
            }),
            Leg::Callee => {
                call.our_cseq += 1;
                Some((call.our_cseq, call.caller_addr))
            }
        };
        let Some((cseq, addr)) = bytes_and_addr else {
            return;
        };
        call.relays.insert(branch.clone(), relay);
        let Some(call) = self.calls.get(&caller_id) else {
            return;
        };
        let body_ref = (!body.is_empty()).then_some((content_type.as_str(), body.as_slice()));
        let bytes = match from {
            Leg::Caller => match call.out.as_ref() {
                Some(out) => self.callee_request(out, method.as_str(), cseq, &branch, body_ref),
                None => return,
            },
            Leg::Callee => self.caller_request(call, method.as_str(), cseq, &branch, body_ref),
        };
        let _ = local;
        self.send(&bytes, addr).await;
    }

    async fn on_response(&mut self, resp: &Response<'_>, peer: SocketAddr) {
        let call_id = resp.call_id().to_owned();
        let branch = resp.header("Via").and_then(branch_of).unwrap_or_default();
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
            self.on_attempt_response(&caller_id, resp, peer).await;
        }
        // Answers to our BYE and CANCEL need nothing further.
    }

    async fn on_relayed_response(
        &mut self,
        caller_id: &str,
        branch: &str,
        resp: &Response<'_>,
        peer: SocketAddr,
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
            let ack = match relay.from {
                Leg::Caller => call.out.as_ref().map(|out| {
                    let cseq = out.cseq;
                    (self_ack(local, out, cseq), out.addr)
                }),
                Leg::Callee => None,
            };
            if let Some((ack, addr)) = ack {
                let _ = self.socket.send_to(&ack, addr).await;
            } else if relay.from == Leg::Callee {
                let cseq = call.our_cseq;
                let ack = caller_ack(local, call, cseq);
                let _ = self.socket.send_to(&ack, call.caller_addr).await;
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
        let reply = reply.header("Contact", format!("<sip:b2bua@{local}>"));
        let bytes = reply.encode(&relay.echo, &tag);
        let _ = peer;
        self.send(&bytes, relay.addr).await;
    }

    async fn on_attempt_response(
        &mut self,
        caller_id: &str,
        resp: &Response<'_>,
        peer: SocketAddr,
    ) {
        let local = self.local;
        let status = resp.status();
        let Some(call) = self.calls.get_mut(caller_id) else {
            return;
        };
        let Some(out) = call.out.as_mut() else { return };
        if resp.call_id() != out.call_id {
            return; // an answer from an abandoned attempt
        }
        if let Some(tag) = resp.header("To").and_then(tag_of) {
            out.to_tag = Some(tag);
        }
        if let Some(contact) = resp.header("Contact") {
            out.remote_target = Some(uri_of(contact));
        }
        let _ = peer;
        if status < 200 {
            if status == 100 {
                return;
            }
            out.provisional = true;
            if out.cancelled || call.phase != Phase::Setup {
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
            let bytes = Self::caller_reply(call, reply, local);
            let addr = call.caller_addr;
            self.send(&bytes, addr).await;
            return;
        }
        // Every final answer to our INVITE is acknowledged (non-2xx: same branch).
        let ack_branch = if (200..300).contains(&status) {
            format!("z9hG4bK{}", random_hex())
        } else {
            out.branch.clone()
        };
        let ack = {
            let out = &*out;
            ack_for(local, out, out.cseq, &ack_branch)
        };
        let out_addr = out.addr;
        self.send(&ack, out_addr).await;
        let Some(call) = self.calls.get_mut(caller_id) else {
            return;
        };
        let Some(out) = call.out.as_mut() else { return };
        if out.cancelled {
            // Too late: the caller has gone. A 200 racing our CANCEL is ended by BYE.
            if (200..300).contains(&status) {
                out.cseq += 1;
                let out_ref = &*out;
                let bye = bye_for(local, out_ref);
                self.send(&bye, out_addr).await;
            }
            if let Some(mut call) = self.calls.remove(caller_id) {
                if let Some(out) = call.out.take() {
                    self.by_callee.remove(&out.call_id);
                }
                self.close(call);
            }
            return;
        }
        if (200..300).contains(&status) {
            call.record
                .attempts
                .push((out.target.clone(), Outcome::Answered));
            call.record.final_status = Some(status);
            call.phase = Phase::Up;
            arm_media_watch(call, caller_id, &self.media_stopped);
            let mut reply = Reply::new(status, "OK");
            if !resp.body().is_empty() {
                if let Ok(b) = call.media.answer(Leg::Callee, resp.body()) {
                    reply.body = b;
                    reply.content_type = Some("application/sdp".into());
                }
            }
            let bytes = Self::caller_reply(call, reply, local);
            let addr = call.caller_addr;
            self.send(&bytes, addr).await;
            return;
        }
        let reason = resp.reason().into_owned();
        let outcome = Outcome::Rejected { status, reason };
        let stop = self.config.failover.ends_search(&outcome);
        let target = out.target.clone();
        call.record.attempts.push((target, outcome));
        if stop {
            self.finish_setup(caller_id, Reply::new(status, status_reason(status)))
                .await;
        } else {
            self.next_attempt(caller_id).await;
        }
    }
}

fn ack_for(local: SocketAddr, out: &Outbound, cseq: u32, branch: &str) -> Vec<u8> {
    let uri = out
        .remote_target
        .clone()
        .unwrap_or_else(|| out.target.uri().to_owned());
    let to_tag = out
        .to_tag
        .as_ref()
        .map(|t| format!(";tag={t}"))
        .unwrap_or_default();
    format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:b2bua@{local}>;tag={ftag}\r\nTo: <{target}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} ACK\r\n\
         Content-Length: 0\r\n\r\n",
        ftag = out.from_tag,
        target = out.target.uri(),
        cid = out.call_id,
    )
    .into_bytes()
}

fn self_ack(local: SocketAddr, out: &Outbound, cseq: u32) -> Vec<u8> {
    ack_for(local, out, cseq, &format!("z9hG4bK{}", random_hex()))
}

fn caller_ack(local: SocketAddr, call: &Call, cseq: u32) -> Vec<u8> {
    let from = call
        .caller_echo
        .to
        .as_deref()
        .map(uri_of)
        .unwrap_or_default();
    format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
         From: <{from}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        uri = call.caller_contact,
        b = random_hex(),
        tag = call.our_tag,
        to = call.caller_from,
        cid = call.record.call_id,
    )
    .into_bytes()
}

fn bye_for(local: SocketAddr, out: &Outbound) -> Vec<u8> {
    let uri = out
        .remote_target
        .clone()
        .unwrap_or_else(|| out.target.uri().to_owned());
    let to_tag = out
        .to_tag
        .as_ref()
        .map(|t| format!(";tag={t}"))
        .unwrap_or_default();
    format!(
        "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:b2bua@{local}>;tag={ftag}\r\nTo: <{target}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} BYE\r\n\
         Content-Length: 0\r\n\r\n",
        b = random_hex(),
        ftag = out.from_tag,
        target = out.target.uri(),
        cid = out.call_id,
        cseq = out.cseq,
    )
    .into_bytes()
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
}

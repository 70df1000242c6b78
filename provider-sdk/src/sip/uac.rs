//! A user agent client that places one call over UDP: the dialer's SIP side.
//!
//! [`Uac::place`] tries [`PlannedAttempt`]s in order (the same plan type
//! the B2BUA uses: per-attempt Call-ID, extra headers such as a ticket,
//! setup and answer timeouts, groups) with the [`FailoverPolicy`], and
//! returns an [`AnsweredCall`] for the first 2xx. The INVITE is
//! retransmitted (RFC 3261 Timer A) until something answers, every final
//! answer is acknowledged, and a late 2xx from an abandoned attempt is
//! ended with BYE. [`AnsweredCall::run`] then keeps the dialog until the
//! far end hangs up or the given duration passes, answering OPTIONS and
//! session refreshes, and hangs up with the header fields the caller
//! supplies (e.g. a signed usage receipt), retransmitting BYE until it is
//! answered.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use provider_sdk::sip::control::PlannedAttempt;
//! use provider_sdk::sip::uac::Uac;
//! use provider_sdk::sip::SipTarget;
//! let uac = Uac::bind("127.0.0.1:0".parse()?).await?;
//! let target = SipTarget::parse("sip:+441632960001@127.0.0.1:5070")?;
//! let attempts = vec![PlannedAttempt::new(target, Duration::from_secs(5))];
//! let sdp = b"v=0\r\n...".to_vec();
//! match uac.place("sip:+4930123456@127.0.0.1", attempts, sdp).await {
//!     Ok(call) => {
//!         let ended = call.run(Duration::from_secs(10), |_ended_at| Vec::new()).await;
//!         println!("call ended: {:?}", ended.ended_by);
//!     }
//!     Err(failed) => println!("no attempt answered: {:?}", failed.attempts),
//! }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;

use super::call::{FailoverPolicy, Leg, Outcome};
use super::control::{AttemptRecord, CapturedHeader, PlannedAttempt};
use super::message::{Method, Reply, Request, Response};
use super::validate::{validate, Policy, Verdict};
use super::wire::MAX_MESSAGE_SIZE;

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// How long a BYE is retransmitted before giving up (Timer F, 64 * T1).
const BYE_GIVE_UP: Duration = Duration::from_secs(32);

/// One call's user agent on its own UDP socket.
pub struct Uac {
    socket: UdpSocket,
    local: SocketAddr,
    policy: Policy,
    /// Which answers end the search.
    pub failover: FailoverPolicy,
}

/// Every attempt failed (or the plan was empty).
#[derive(Debug, Clone)]
pub struct CallFailed {
    pub attempts: Vec<AttemptRecord>,
    /// The last final status received, if any.
    pub last_status: Option<u16>,
}

/// An answered call: the dialog with the attempt that answered.
pub struct AnsweredCall {
    uac: Uac,
    dialog: Box<Dialog>,
    /// Every attempt in order; the last one is the answered one.
    pub attempts: Vec<AttemptRecord>,
    /// The answer's SDP.
    pub answer_sdp: Vec<u8>,
    /// When the 2xx arrived.
    pub answered_at: SystemTime,
    /// Our SDP offer (sent again on session refreshes).
    offer: Vec<u8>,
}

/// How an answered call ended.
#[derive(Debug, Clone)]
pub struct EndedCall {
    pub answered_at: SystemTime,
    pub ended_at: SystemTime,
    /// [`Leg::Callee`] when the far end sent BYE, [`Leg::Caller`] when we did.
    pub ended_by: Leg,
    /// Header fields of the far end's BYE, or of its answer to ours.
    pub captured: Vec<CapturedHeader>,
    /// Our BYE was never answered.
    pub bye_unanswered: bool,
}

struct Dialog {
    call_id: String,
    remote_uri: String,
    from_uri: String,
    from_tag: String,
    to_uri: String,
    to_tag: Option<String>,
    cseq: u32,
    addr: SocketAddr,
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn branch() -> String {
    format!("z9hG4bK{}", random_hex())
}

fn uri_of(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match (text.find('<'), text.find('>')) {
        (Some(a), Some(b)) if a < b => text[a + 1..b].to_owned(),
        _ => text.split(';').next().unwrap_or_default().trim().to_owned(),
    }
}

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

fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        && !value.chars().any(|c| c.is_control() && c != '\t')
}

impl Dialog {
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        local: SocketAddr,
        method: &str,
        uri: &str,
        cseq: u32,
        branch: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<u8> {
        let to_tag = match (&self.to_tag, method) {
            (_, "CANCEL") | (None, _) => String::new(),
            (Some(t), _) => format!(";tag={t}"),
        };
        let mut head = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <{from}>;tag={ftag}\r\nTo: <{to}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n",
            from = self.from_uri,
            ftag = self.from_tag,
            to = self.to_uri,
            cid = self.call_id,
        );
        if method == "INVITE" {
            head.push_str(&format!("Contact: <sip:dialer@{local}>\r\n"));
        }
        for (n, v) in headers {
            if header_ok(n, v) {
                head.push_str(&format!("{n}: {v}\r\n"));
            } else {
                tracing::warn!(header = %n, "header field not sent: invalid characters");
            }
        }
        if !body.is_empty() {
            head.push_str("Content-Type: application/sdp\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// What a receive gave.
enum Recv {
    Packet(usize, SocketAddr),
    Timeout,
    /// The peer's port is closed (ICMP port unreachable).
    Refused(String),
}

/// What one attempt came to.
enum AttemptEnd {
    Answered {
        dialog: Box<Dialog>,
        sdp: Vec<u8>,
        record: AttemptRecord,
    },
    Failed(AttemptRecord, Option<u16>),
}

impl Uac {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Uac> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(Uac {
            socket,
            local,
            policy: Policy::default(),
            failover: FailoverPolicy::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, to).await {
            tracing::debug!(%to, error = %e, "uac send failed");
        }
    }

    /// Receives the next datagram until `deadline`.
    async fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> Recv {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.socket.recv_from(buf)).await {
            Ok(Ok((len, peer))) => Recv::Packet(len, peer),
            Ok(Err(e)) => {
                // ICMP port unreachable for what we sent last surfaces here.
                tracing::debug!(error = %e, "uac receive failed");
                Recv::Refused(e.to_string())
            }
            Err(_) => Recv::Timeout,
        }
    }

    /// Tries the attempts in order; `from_uri` is our identity (From).
    pub async fn place(
        self,
        from_uri: &str,
        attempts: Vec<PlannedAttempt>,
        offer: Vec<u8>,
    ) -> Result<AnsweredCall, CallFailed> {
        let mut records = Vec::new();
        let mut last_status = None;
        let mut skip_group = None;
        for planned in attempts {
            if skip_group == Some(planned.group) {
                continue;
            }
            match self.attempt(from_uri, &planned, &offer).await {
                AttemptEnd::Answered {
                    dialog,
                    sdp,
                    record,
                } => {
                    records.push(record);
                    return Ok(AnsweredCall {
                        uac: self,
                        dialog,
                        attempts: records,
                        answer_sdp: sdp,
                        answered_at: SystemTime::now(),
                        offer,
                    });
                }
                AttemptEnd::Failed(record, status) => {
                    last_status = status.or(last_status);
                    let rang_out = record.provisional_at.is_some()
                        && matches!(record.outcome, Outcome::Timeout { .. });
                    if rang_out || self.failover.ends_search(&record.outcome) {
                        skip_group = Some(planned.group);
                    }
                    records.push(record);
                }
            }
        }
        Err(CallFailed {
            attempts: records,
            last_status,
        })
    }

    async fn attempt(&self, from_uri: &str, planned: &PlannedAttempt, offer: &[u8]) -> AttemptEnd {
        let started_at = SystemTime::now();
        let record = |outcome: Outcome, provisional_at: Option<SystemTime>| AttemptRecord {
            target: planned.target.clone(),
            call_id: planned.call_id.clone(),
            label: planned.label.clone(),
            group: planned.group,
            outcome,
            started_at,
            provisional_at,
            ended_at: SystemTime::now(),
        };
        let addr = match planned.target.resolve().await {
            Ok(a) => a,
            Err(e) => {
                return AttemptEnd::Failed(
                    record(
                        Outcome::TransportError {
                            detail: e.to_string(),
                        },
                        None,
                    ),
                    None,
                )
            }
        };
        let mut dialog = Dialog {
            call_id: planned.call_id.clone(),
            remote_uri: planned.target.uri().to_owned(),
            from_uri: from_uri.to_owned(),
            from_tag: random_hex(),
            to_uri: planned.target.uri().to_owned(),
            to_tag: None,
            cseq: 1,
            addr,
        };
        let invite_branch = branch();
        let invite = dialog.request(
            self.local,
            "INVITE",
            planned.target.uri(),
            1,
            &invite_branch,
            &planned.headers,
            offer,
        );
        let start = Instant::now();
        let setup_deadline = start + planned.setup_timeout;
        let answer_deadline = start + planned.answer_timeout;
        let mut answered_something = false;
        let mut provisional_at = None;
        let mut retransmit_at = start + T1;
        let mut interval = T1;
        self.send(&invite, addr).await;
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        loop {
            let now = Instant::now();
            if now >= answer_deadline || (provisional_at.is_none() && now >= setup_deadline) {
                let after = if provisional_at.is_some() {
                    planned.answer_timeout
                } else {
                    planned.setup_timeout.min(planned.answer_timeout)
                };
                if provisional_at.is_some() {
                    let cancel = dialog.request(
                        self.local,
                        "CANCEL",
                        planned.target.uri(),
                        1,
                        &invite_branch,
                        &[],
                        b"",
                    );
                    self.send(&cancel, addr).await;
                    self.drain_cancelled(&mut dialog, &invite_branch).await;
                }
                return AttemptEnd::Failed(
                    record(Outcome::Timeout { after }, provisional_at),
                    None,
                );
            }
            let mut wake = answer_deadline;
            if provisional_at.is_none() {
                wake = wake.min(setup_deadline);
            }
            if !answered_something {
                wake = wake.min(retransmit_at);
            }
            let (len, peer) = match self.recv_until(&mut buf, wake).await {
                Recv::Packet(len, peer) => (len, peer),
                Recv::Timeout => {
                    if !answered_something && Instant::now() >= retransmit_at {
                        self.send(&invite, addr).await;
                        interval = (interval * 2).min(Duration::from_secs(4));
                        retransmit_at = Instant::now() + interval;
                    }
                    continue;
                }
                Recv::Refused(detail) if !answered_something => {
                    return AttemptEnd::Failed(
                        record(Outcome::TransportError { detail }, None),
                        None,
                    );
                }
                Recv::Refused(_) => continue,
            };
            let packet = buf[..len].to_vec();
            match validate(&packet, &self.policy) {
                Verdict::Response(resp) if resp.call_id() == dialog.call_id => {
                    if *resp.cseq_method() != Method::Invite {
                        continue;
                    }
                    answered_something = true;
                    let status = resp.status();
                    if let Some(tag) = resp.header("To").and_then(tag_of) {
                        dialog.to_tag = Some(tag);
                    }
                    if let Some(contact) = resp.header("Contact") {
                        dialog.remote_uri = uri_of(contact);
                    }
                    if status < 200 {
                        if status > 100 && provisional_at.is_none() {
                            provisional_at = Some(SystemTime::now());
                        }
                        continue;
                    }
                    if (200..300).contains(&status) {
                        let ack = dialog.request(
                            self.local,
                            "ACK",
                            &dialog.remote_uri,
                            1,
                            &branch(),
                            &[],
                            b"",
                        );
                        self.send(&ack, addr).await;
                        let sdp = resp.body().to_vec();
                        return AttemptEnd::Answered {
                            dialog: Box::new(dialog),
                            sdp,
                            record: record(Outcome::Answered, provisional_at),
                        };
                    }
                    let ack = dialog.request(
                        self.local,
                        "ACK",
                        planned.target.uri(),
                        1,
                        &invite_branch,
                        &[],
                        b"",
                    );
                    self.send(&ack, addr).await;
                    let outcome = Outcome::Rejected {
                        status,
                        reason: resp.reason().into_owned(),
                    };
                    return AttemptEnd::Failed(record(outcome, provisional_at), Some(status));
                }
                Verdict::Request(req) => self.answer_stray(&req, peer).await,
                Verdict::Reject(r) if r.answerable() => {
                    let answer = Reply::for_rejection(&r).encode(&r.echo, &random_hex());
                    self.send(&answer, peer).await;
                }
                _ => {}
            }
        }
    }

    /// After CANCEL: waits a little for the 487 (ACKed) or a racing 200 (ACKed and BYEd).
    async fn drain_cancelled(&self, dialog: &mut Dialog, invite_branch: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        loop {
            let len = match self.recv_until(&mut buf, deadline).await {
                Recv::Packet(len, _) => len,
                Recv::Timeout => return,
                Recv::Refused(_) => continue,
            };
            let packet = buf[..len].to_vec();
            let Verdict::Response(resp) = validate(&packet, &self.policy) else {
                continue;
            };
            if resp.call_id() != dialog.call_id
                || *resp.cseq_method() != Method::Invite
                || resp.status() < 200
            {
                continue;
            }
            if let Some(tag) = resp.header("To").and_then(tag_of) {
                dialog.to_tag = Some(tag);
            }
            if (200..300).contains(&resp.status()) {
                if let Some(contact) = resp.header("Contact") {
                    dialog.remote_uri = uri_of(contact);
                }
                let ack = dialog.request(
                    self.local,
                    "ACK",
                    &dialog.remote_uri,
                    1,
                    &branch(),
                    &[],
                    b"",
                );
                self.send(&ack, dialog.addr).await;
                dialog.cseq += 1;
                let bye = dialog.request(
                    self.local,
                    "BYE",
                    &dialog.remote_uri,
                    dialog.cseq,
                    &branch(),
                    &[],
                    b"",
                );
                self.send(&bye, dialog.addr).await;
            } else {
                let ack = dialog.request(
                    self.local,
                    "ACK",
                    &dialog.to_uri,
                    1,
                    invite_branch,
                    &[],
                    b"",
                );
                self.send(&ack, dialog.addr).await;
            }
            return;
        }
    }

    /// A request outside our dialog: OPTIONS gets 200, the rest 481.
    async fn answer_stray(&self, req: &Request<'_>, peer: SocketAddr) {
        let reply = match req.method() {
            Method::Options => Reply::new(200, "OK"),
            Method::Ack => return,
            _ => Reply::new(481, "Call/Transaction Does Not Exist"),
        };
        self.send(&reply.encode(&req.echo(), &random_hex()), peer)
            .await;
    }
}

impl AnsweredCall {
    /// The attempt that answered.
    pub fn answered(&self) -> Option<&AttemptRecord> {
        self.attempts.last()
    }

    /// Keeps the call up until the far end sends BYE or `duration` passes,
    /// then hangs up. `hangup_headers` gets the end time and returns the
    /// header fields for our BYE or for our 200 to the far end's BYE.
    pub async fn run(
        self,
        duration: Duration,
        hangup_headers: impl FnOnce(SystemTime) -> Vec<(String, String)>,
    ) -> EndedCall {
        self.run_until(duration, std::future::pending(), hangup_headers)
            .await
    }

    /// Like [`AnsweredCall::run`], and hangs up early when `stop` completes
    /// (e.g. Ctrl-C).
    pub async fn run_until(
        self,
        duration: Duration,
        stop: impl std::future::Future<Output = ()>,
        hangup_headers: impl FnOnce(SystemTime) -> Vec<(String, String)>,
    ) -> EndedCall {
        let deadline = Instant::now() + duration;
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        tokio::pin!(stop);
        loop {
            let received = tokio::select! {
                r = self.uac.recv_until(&mut buf, deadline) => r,
                _ = &mut stop => Recv::Timeout,
            };
            let (len, peer) = match received {
                Recv::Packet(len, peer) => (len, peer),
                Recv::Timeout => return self.hang_up(hangup_headers).await,
                Recv::Refused(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let packet = buf[..len].to_vec();
            let req = match validate(&packet, &self.uac.policy) {
                Verdict::Request(req) => req,
                Verdict::Response(resp)
                    if resp.call_id() == self.dialog.call_id
                        && *resp.cseq_method() == Method::Invite
                        && (200..300).contains(&resp.status()) =>
                {
                    // Our ACK was lost: the 2xx is retransmitted; ACK again.
                    let ack = self.dialog.request(
                        self.uac.local,
                        "ACK",
                        &self.dialog.remote_uri,
                        1,
                        &branch(),
                        &[],
                        b"",
                    );
                    self.uac.send(&ack, self.dialog.addr).await;
                    continue;
                }
                _ => continue,
            };
            if req.call_id() != self.dialog.call_id {
                self.uac.answer_stray(&req, peer).await;
                continue;
            }
            let tag = self.dialog.from_tag.clone();
            match req.method() {
                Method::Bye => {
                    let ended_at = SystemTime::now();
                    let mut ok = Reply::new(200, "OK");
                    for (n, v) in hangup_headers(ended_at) {
                        ok = ok.header(n, v);
                    }
                    self.uac.send(&ok.encode(&req.echo(), &tag), peer).await;
                    let captured = req
                        .headers()
                        .map(|(n, v)| CapturedHeader {
                            leg: Leg::Callee,
                            name: String::from_utf8_lossy(n).into_owned(),
                            value: String::from_utf8_lossy(v).into_owned(),
                        })
                        .collect();
                    return EndedCall {
                        answered_at: self.answered_at,
                        ended_at,
                        ended_by: Leg::Callee,
                        captured,
                        bye_unanswered: false,
                    };
                }
                Method::Invite => {
                    // A session refresh or hold: answer with our offer unchanged.
                    let mut ok = Reply::new(200, "OK")
                        .header("Contact", format!("<sip:dialer@{}>", self.uac.local));
                    ok.body = self.offer.clone();
                    ok.content_type = Some("application/sdp".into());
                    self.uac.send(&ok.encode(&req.echo(), &tag), peer).await;
                }
                Method::Ack => {}
                Method::Options | Method::Update | Method::Info => {
                    self.uac
                        .send(&Reply::new(200, "OK").encode(&req.echo(), &tag), peer)
                        .await;
                }
                _ => {
                    self.uac
                        .send(
                            &Reply::new(405, "Method Not Allowed").encode(&req.echo(), &tag),
                            peer,
                        )
                        .await;
                }
            }
        }
    }

    async fn hang_up(
        mut self,
        hangup_headers: impl FnOnce(SystemTime) -> Vec<(String, String)>,
    ) -> EndedCall {
        let ended_at = SystemTime::now();
        let headers = hangup_headers(ended_at);
        self.dialog.cseq += 1;
        let bye_branch = branch();
        let bye = self.dialog.request(
            self.uac.local,
            "BYE",
            &self.dialog.remote_uri,
            self.dialog.cseq,
            &bye_branch,
            &headers,
            b"",
        );
        let give_up = Instant::now() + BYE_GIVE_UP;
        let mut interval = T1;
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        self.uac.send(&bye, self.dialog.addr).await;
        let mut retransmit_at = Instant::now() + interval;
        loop {
            if Instant::now() >= give_up {
                return EndedCall {
                    answered_at: self.answered_at,
                    ended_at,
                    ended_by: Leg::Caller,
                    captured: Vec::new(),
                    bye_unanswered: true,
                };
            }
            let (len, peer) = match self
                .uac
                .recv_until(&mut buf, retransmit_at.min(give_up))
                .await
            {
                Recv::Packet(len, peer) => (len, peer),
                Recv::Timeout => {
                    self.uac.send(&bye, self.dialog.addr).await;
                    interval = (interval * 2).min(Duration::from_secs(4));
                    retransmit_at = Instant::now() + interval;
                    continue;
                }
                Recv::Refused(_) => {
                    // The far end is gone: nobody will answer.
                    return EndedCall {
                        answered_at: self.answered_at,
                        ended_at,
                        ended_by: Leg::Caller,
                        captured: Vec::new(),
                        bye_unanswered: true,
                    };
                }
            };
            let packet = buf[..len].to_vec();
            match validate(&packet, &self.uac.policy) {
                Verdict::Response(resp)
                    if resp.call_id() == self.dialog.call_id
                        && *resp.cseq_method() == Method::Bye
                        && resp.status() >= 200 =>
                {
                    return EndedCall {
                        answered_at: self.answered_at,
                        ended_at,
                        ended_by: Leg::Caller,
                        captured: captured_from(&resp),
                        bye_unanswered: false,
                    };
                }
                Verdict::Request(req) if *req.method() == Method::Bye => {
                    // BYEs crossed: answer theirs, keep waiting for ours.
                    let tag = self.dialog.from_tag.clone();
                    self.uac
                        .send(&Reply::new(200, "OK").encode(&req.echo(), &tag), peer)
                        .await;
                }
                _ => {}
            }
        }
    }
}

fn captured_from(resp: &Response<'_>) -> Vec<CapturedHeader> {
    resp.headers()
        .map(|(n, v)| CapturedHeader {
            leg: Leg::Callee,
            name: String::from_utf8_lossy(n).into_owned(),
            value: String::from_utf8_lossy(v).into_owned(),
        })
        .collect()
}

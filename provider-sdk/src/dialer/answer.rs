//! A callee: a user agent server that answers every call.
//!
//! [`Answerer`] listens on one UDP address, answers each INVITE at once
//! (100, 180, then 200 with an SDP answer for the first G.711 codec
//! offered), plays a WAV file to the caller (looped, or silence without
//! one), records what it hears, and when the caller hangs up writes the
//! recording to `DIR/<n>-<number>.wav` and reports the call. It answers
//! OPTIONS, session refreshes and CANCEL, and retransmits its 200 until
//! the ACK arrives (RFC 3261 Timer G). It stands for "the phone network"
//! behind a provider gateway in demos and manual tests (`dial answer`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{summarise_media, DialError, MediaSummary};
use crate::media::endpoint::{AfterAudio, EndpointConfig, RtpEndpoint};
use crate::media::ua_sdp::SdpOffer;
use crate::media::wav;
use crate::sip::message::{Method, Reply, Request};
use crate::sip::validate::{validate, Policy, Verdict};
use crate::sip::wire::MAX_MESSAGE_SIZE;

/// RFC 3261 T1 and how long an unacknowledged 200 is retransmitted (64 * T1).
const T1: Duration = Duration::from_millis(500);
const ACK_GIVE_UP: Duration = Duration::from_secs(32);

/// How the callee behaves.
#[derive(Debug, Clone)]
pub struct AnswerConfig {
    /// UDP address for SIP.
    pub listen: SocketAddr,
    /// IPv4 address for RTP (written into the SDP answer).
    pub media_ip: Ipv4Addr,
    /// WAV file played to every caller (8 kHz mono); silence without it.
    pub play: Option<PathBuf>,
    /// Directory for the recordings; none kept without it.
    pub record_dir: Option<PathBuf>,
    /// A call without BYE is forgotten after this long.
    pub max_call: Duration,
}

/// One finished call as the callee saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnsweredCallReport {
    pub call_id: String,
    /// The user part of the Request-URI (the dialed number).
    pub number: String,
    pub from: String,
    pub duration_secs: f64,
    /// `caller` (BYE received) or `timeout` (no BYE within the limit).
    pub ended_by: &'static str,
    pub media: Option<MediaSummary>,
}

struct Call {
    to_tag: String,
    /// The last final answer to the INVITE, for retransmissions.
    answer: Vec<u8>,
    peer: SocketAddr,
    acked: bool,
    next_retransmit: Instant,
    interval: Duration,
    answered: Instant,
    number: String,
    from: String,
    endpoint: Option<RtpEndpoint>,
    codec: String,
    index: u64,
}

/// A running callee (see the [module documentation](self)).
pub struct Answerer {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    config: AnswerConfig,
    audio: Vec<i16>,
    policy: Policy,
    calls: HashMap<String, Call>,
    count: u64,
}

impl Answerer {
    /// Binds the SIP socket and reads the audio file.
    pub async fn bind(config: AnswerConfig) -> Result<Answerer, DialError> {
        let audio = match &config.play {
            Some(p) => wav::read_wav(p)?,
            None => Vec::new(),
        };
        if let Some(dir) = &config.record_dir {
            std::fs::create_dir_all(dir).map_err(|source| DialError::Io {
                what: "creating the recording directory",
                source,
            })?;
        }
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| DialError::Io {
                what: "binding the SIP socket",
                source,
            })?;
        let local = socket.local_addr().map_err(|source| DialError::Io {
            what: "reading the SIP socket's address",
            source,
        })?;
        Ok(Answerer {
            socket: Arc::new(socket),
            local,
            config,
            audio,
            policy: Policy::default(),
            calls: HashMap::new(),
            count: 0,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers calls until `stop`; `on_call` gets every finished call.
    pub async fn run(
        mut self,
        stop: CancellationToken,
        mut on_call: impl FnMut(AnsweredCallReport),
    ) -> Result<(), DialError> {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    for report in self.housekeeping().await {
                        on_call(report);
                    }
                }
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((len, peer)) = r else { continue };
                    let packet = buf[..len].to_vec();
                    if let Some(report) = self.on_packet(&packet, peer).await {
                        on_call(report);
                    }
                }
            }
        }
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            if let Some(report) = self.finish(&id, "stopped").await {
                on_call(report);
            }
        }
        Ok(())
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, to).await {
            tracing::debug!(%to, error = %e, "answer send failed");
        }
    }

    async fn on_packet(&mut self, packet: &[u8], peer: SocketAddr) -> Option<AnsweredCallReport> {
        let req = match validate(packet, &self.policy) {
            Verdict::Request(req) => req,
            Verdict::Reject(r) => {
                tracing::debug!(status = r.status, %peer, "malformed request ignored");
                return None;
            }
            _ => return None,
        };
        let call_id = req.call_id().to_owned();
        match req.method() {
            Method::Invite => {
                if let Some(call) = self.calls.get(&call_id) {
                    // A retransmission, or a session refresh in the dialog.
                    let bytes = if req.header("To").is_some_and(has_tag) {
                        self.refresh_answer(&req, call)
                    } else {
                        call.answer.clone()
                    };
                    self.send(&bytes, peer).await;
                } else {
                    self.new_call(&req, peer).await;
                }
                None
            }
            Method::Ack => {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.acked = true;
                }
                None
            }
            Method::Bye => {
                let tag = self
                    .calls
                    .get(&call_id)
                    .map_or_else(random_hex, |c| c.to_tag.clone());
                let status = if self.calls.contains_key(&call_id) {
                    Reply::new(200, "OK")
                } else {
                    Reply::new(481, "Call/Transaction Does Not Exist")
                };
                self.send(&status.encode(&req.echo(), &tag), peer).await;
                self.finish(&call_id, "caller").await
            }
            Method::Cancel => {
                // Calls are answered at once: by now the 200 has been sent.
                let reply = if self.calls.contains_key(&call_id) {
                    Reply::new(200, "OK")
                } else {
                    Reply::new(481, "Call/Transaction Does Not Exist")
                };
                self.send(&reply.encode(&req.echo(), &random_hex()), peer)
                    .await;
                None
            }
            Method::Options | Method::Update | Method::Info => {
                let tag = self
                    .calls
                    .get(&call_id)
                    .map_or_else(random_hex, |c| c.to_tag.clone());
                self.send(&Reply::new(200, "OK").encode(&req.echo(), &tag), peer)
                    .await;
                None
            }
            _ => {
                self.send(
                    &Reply::new(405, "Method Not Allowed")
                        .header("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO")
                        .encode(&req.echo(), &random_hex()),
                    peer,
                )
                .await;
                None
            }
        }
    }

    fn refresh_answer(&self, req: &Request<'_>, call: &Call) -> Vec<u8> {
        // Our earlier answer's SDP, unchanged (RFC 3264: same session).
        let mut ok =
            Reply::new(200, "OK").header("Contact", format!("<sip:answer@{}>", self.local));
        if let Some(sdp) = sdp_of(&call.answer) {
            ok.body = sdp;
            ok.content_type = Some("application/sdp".into());
        }
        ok.encode(&req.echo(), &call.to_tag)
    }

    async fn new_call(&mut self, req: &Request<'_>, peer: SocketAddr) {
        let echo = req.echo();
        let to_tag = random_hex();
        self.send(&Reply::new(100, "Trying").encode(&echo, ""), peer)
            .await;
        let number = user_of(&req.uri());
        let from = req
            .header("From")
            .map(|v| user_of(&String::from_utf8_lossy(v)))
            .unwrap_or_default();
        let rtp = match UdpSocket::bind(SocketAddr::new(IpAddr::V4(self.config.media_ip), 0)).await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot bind an RTP socket");
                let busy = Reply::new(503, "Service Unavailable").encode(&echo, &to_tag);
                self.send(&busy, peer).await;
                return;
            }
        };
        let port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        let local_rtp = SocketAddrV4::new(self.config.media_ip, port);
        // What we support, matched against the offer: its first G.711 codec.
        let ours = SdpOffer::new(local_rtp);
        let offer = match ours.parse_answer(req.body()) {
            Ok(o) => o,
            Err(e) => {
                let reply = Reply::new(488, "Not Acceptable Here")
                    .header("Warning", format!("399 dial \"{e}\""))
                    .encode(&echo, &to_tag);
                self.send(&reply, peer).await;
                return;
            }
        };
        self.send(&Reply::new(180, "Ringing").encode(&echo, &to_tag), peer)
            .await;
        let answer_sdp = SdpOffer::new(local_rtp).only(offer.codec).to_sdp();
        let after = if self.audio.is_empty() {
            AfterAudio::Silence
        } else {
            AfterAudio::Loop
        };
        let config = EndpointConfig {
            telephone_event: offer.telephone_event,
            ..EndpointConfig::new(offer.remote_rtp, offer.codec)
        }
        .after_audio(after);
        let endpoint =
            RtpEndpoint::start(rtp, config, self.audio.clone(), &CancellationToken::new());
        let mut ok =
            Reply::new(200, "OK").header("Contact", format!("<sip:answer@{}>", self.local));
        ok.body = answer_sdp.into_bytes();
        ok.content_type = Some("application/sdp".into());
        let answer = ok.encode(&echo, &to_tag);
        self.send(&answer, peer).await;
        self.count += 1;
        let now = Instant::now();
        self.calls.insert(
            req.call_id().to_owned(),
            Call {
                to_tag,
                answer,
                peer,
                acked: false,
                next_retransmit: now + T1,
                interval: T1,
                answered: now,
                number,
                from,
                endpoint: Some(endpoint),
                codec: format!("{:?}", offer.codec).to_uppercase(),
                index: self.count,
            },
        );
    }

    /// Retransmits unacknowledged 200s; forgets calls past their limit.
    async fn housekeeping(&mut self) -> Vec<AnsweredCallReport> {
        let now = Instant::now();
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        for (id, call) in self.calls.iter_mut() {
            if !call.acked && now >= call.next_retransmit {
                if now.duration_since(call.answered) < ACK_GIVE_UP {
                    resend.push((call.answer.clone(), call.peer));
                    call.interval = (call.interval * 2).min(Duration::from_secs(4));
                    call.next_retransmit = now + call.interval;
                } else {
                    expired.push(id.clone());
                }
            }
            if now.duration_since(call.answered) >= self.config.max_call {
                expired.push(id.clone());
            }
        }
        for (bytes, peer) in resend {
            self.send(&bytes, peer).await;
        }
        let mut reports = Vec::new();
        for id in expired {
            if let Some(r) = self.finish(&id, "timeout").await {
                reports.push(r);
            }
        }
        reports
    }

    async fn finish(
        &mut self,
        call_id: &str,
        ended_by: &'static str,
    ) -> Option<AnsweredCallReport> {
        let mut call = self.calls.remove(call_id)?;
        let duration_secs = call.answered.elapsed().as_secs_f64();
        let media = match call.endpoint.take() {
            Some(e) => match e.stop().await {
                Ok(report) => {
                    let path =
                        self.config.record_dir.as_ref().map(|d| {
                            d.join(format!("{}-{}.wav", call.index, file_safe(&call.number)))
                        });
                    match summarise_media(&report, call.codec.clone(), path.as_deref()) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot write the recording");
                            None
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "media endpoint failed");
                    None
                }
            },
            None => None,
        };
        Some(AnsweredCallReport {
            call_id: call_id.to_owned(),
            number: call.number,
            from: call.from,
            duration_secs,
            ended_by,
            media,
        })
    }
}

impl AnsweredCallReport {
    /// One line as a person reads it.
    pub fn render(&self) -> String {
        let media = self.media.as_ref().map_or(String::new(), |m| {
            format!(
                "; {} received {} packets (lost {}), sent {}{}",
                m.codec,
                m.packets_received,
                m.packets_lost,
                m.packets_sent,
                m.recording.as_ref().map_or(String::new(), |p| format!(
                    ", {:.1} s recorded to {p}",
                    m.recorded_secs
                ))
            )
        });
        format!(
            "answered {} from {}: {:.1} s, ended by {}{media}",
            self.number, self.from, self.duration_secs, self.ended_by
        )
    }
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The user part of a SIP URI or name-addr (`"Bob" <sip:+1555@host>` → `+1555`).
fn user_of(text: &str) -> String {
    let uri = match (text.find('<'), text.find('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text,
    };
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    match rest.split_once('@') {
        Some((user, _)) => user.split(';').next().unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

fn file_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
        .collect()
}

fn has_tag(value: &[u8]) -> bool {
    String::from_utf8_lossy(value)
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

/// The body of an encoded response (what follows the blank line).
fn sdp_of(message: &[u8]) -> Option<Vec<u8>> {
    let at = message.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body = &message[at + 4..];
    (!body.is_empty()).then(|| body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_read_from_uris_and_name_addrs() {
        assert_eq!(user_of("sip:+441632960001@127.0.0.1:5090"), "+441632960001");
        assert_eq!(user_of("\"Bob\" <sip:+1555;x=y@h>;tag=1"), "+1555");
        assert_eq!(user_of("sip:host.example"), "");
        assert_eq!(file_safe("+44 16/../x"), "+4416x");
    }

    #[test]
    fn bodies_are_found_after_the_head() {
        let msg = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nv=0";
        assert_eq!(sdp_of(msg).as_deref(), Some(&b"v=0"[..]));
        assert_eq!(sdp_of(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert!(has_tag(b"<sip:a@b>;tag=x"));
        assert!(!has_tag(b"<sip:a@b>"));
    }
}

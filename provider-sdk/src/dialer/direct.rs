//! A plain call to a SIP address, without central or a ticket: what an
//! upstream carrier does when it hands a call to a subscriber's number to
//! the home provider's forwarder (`dial --via 127.0.0.1:5060 NUMBER`).
//!
//! The call plays a WAV file once answered, records the far end, and hangs
//! up after the given time, like [`super::Dialer::dial`]; nothing is paid
//! for it (the forwarder pays the provider it chooses).

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{attempt_reports, summarise_media, AttemptReport, DialError, MediaSummary};
use crate::media::endpoint::{AfterAudio, EndpointConfig, RtpEndpoint};
use crate::media::ua_sdp::SdpOffer;
use crate::media::wav;
use crate::number::E164;
use crate::sip::call::Leg;
use crate::sip::control::{new_call_id, PlannedAttempt};
use crate::sip::uac::Uac;
use crate::sip::SipTarget;

/// One direct call.
#[derive(Debug, Clone)]
pub struct DirectRequest {
    /// The number called (the Request-URI's user).
    pub number: E164,
    /// Where the INVITE goes (host and UDP port).
    pub via: SocketAddr,
    /// The calling number (From).
    pub from: E164,
    pub play: Option<PathBuf>,
    pub record: Option<PathBuf>,
    /// How long to stay on the call once answered.
    pub duration: Duration,
    /// No answer by then: give up.
    pub answer_timeout: Duration,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct DirectReport {
    pub number: E164,
    pub target: String,
    pub attempt: Option<AttemptReport>,
    /// Seconds from the answer to the hangup, when answered.
    pub duration_secs: Option<u64>,
    pub ended_by: Option<String>,
    pub media: Option<MediaSummary>,
    pub media_error: Option<String>,
    pub failed_status: Option<u16>,
}

impl DirectReport {
    pub fn succeeded(&self) -> bool {
        self.duration_secs.is_some()
    }

    /// The report as a person reads it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        match (&self.attempt, self.duration_secs) {
            (Some(a), Some(secs)) => {
                s.push_str(&format!(
                    "call {} via {}: answered ({} ms), {secs} s, ended by {}\n",
                    self.number,
                    self.target,
                    a.took_ms,
                    self.ended_by.as_deref().unwrap_or("-")
                ));
            }
            (Some(a), None) => {
                s.push_str(&format!(
                    "call {} via {}: {}\n",
                    self.number, self.target, a.outcome
                ));
            }
            (None, _) => s.push_str(&format!("call {}: not tried\n", self.number)),
        }
        if let Some(m) = &self.media {
            s.push_str(&format!(
                "media: {} sent {} packets, received {} (lost {}, jitter {:.2} ms), {:.1} s recorded{}\n",
                m.codec,
                m.packets_sent,
                m.packets_received,
                m.packets_lost,
                m.jitter_ms,
                m.recorded_secs,
                m.recording.as_ref().map_or(String::new(), |p| format!(" to {p}"))
            ));
        }
        if let Some(e) = &self.media_error {
            s.push_str(&format!("media: unusable answer, hung up: {e}\n"));
        }
        s
    }
}

/// Places the call and reports it; `Err` only when it could not be tried.
pub async fn call(
    request: &DirectRequest,
    stop: CancellationToken,
) -> Result<DirectReport, DialError> {
    let audio = match &request.play {
        Some(p) => wav::read_wav(p)?,
        None => Vec::new(),
    };
    let target = SipTarget::parse(&format!("sip:{}@{}", request.number, request.via))
        .map_err(|e| DialError::Config(format!("--via {}: {e}", request.via)))?;
    let local_ip = match request.via.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => ip,
        _ => std::net::Ipv4Addr::UNSPECIFIED,
    };
    let rtp = UdpSocket::bind(SocketAddr::new(IpAddr::V4(local_ip), 0))
        .await
        .map_err(|source| DialError::Io {
            what: "binding the RTP socket",
            source,
        })?;
    let port = rtp
        .local_addr()
        .map_err(|source| DialError::Io {
            what: "reading the RTP socket's address",
            source,
        })?
        .port();
    let offer = SdpOffer::new(SocketAddrV4::new(local_ip, port));
    let uac = Uac::bind(SocketAddr::new(IpAddr::V4(local_ip), 0))
        .await
        .map_err(|source| DialError::Io {
            what: "binding the SIP socket",
            source,
        })?;
    let from_uri = format!("sip:{}@{}", request.from, uac.local_addr());
    let mut planned = PlannedAttempt::new(target.clone(), request.answer_timeout);
    planned.call_id = new_call_id(&local_ip.to_string());
    planned.label = "direct".into();
    let mut report = DirectReport {
        number: request.number,
        target: target.uri().to_owned(),
        attempt: None,
        duration_secs: None,
        ended_by: None,
        media: None,
        media_error: None,
        failed_status: None,
    };
    let call = match uac
        .place(&from_uri, vec![planned], offer.to_sdp().into_bytes())
        .await
    {
        Ok(call) => call,
        Err(failed) => {
            report.attempt = attempt_reports(&failed.attempts, &Default::default()).pop();
            report.failed_status = failed.last_status;
            return Ok(report);
        }
    };
    report.attempt = attempt_reports(&call.attempts, &Default::default()).pop();
    let (endpoint, codec) = match offer.parse_answer(&call.answer_sdp) {
        Ok(answer) => {
            let after = if audio.is_empty() {
                AfterAudio::Silence
            } else {
                AfterAudio::Loop
            };
            let config = EndpointConfig::from_answer(&answer).after_audio(after);
            let codec = format!("{:?}", answer.codec).to_uppercase();
            (Some(RtpEndpoint::start(rtp, config, audio, &stop)), codec)
        }
        Err(e) => {
            report.media_error = Some(e.to_string());
            (None, String::new())
        }
    };
    let duration = if endpoint.is_some() {
        request.duration
    } else {
        Duration::ZERO
    };
    let ended = call
        .run_until(duration, stop.cancelled(), |_| Vec::new())
        .await;
    if let Some(e) = endpoint {
        if let Ok(r) = e.stop().await {
            report.media = Some(summarise_media(&r, codec, request.record.as_deref())?);
        }
    }
    let secs = ended
        .ended_at
        .duration_since(ended.answered_at)
        .unwrap_or_default()
        .as_secs();
    report.duration_secs = Some(secs);
    report.ended_by = Some(
        match ended.ended_by {
            Leg::Caller => "us",
            Leg::Callee => "far end",
        }
        .into(),
    );
    Ok(report)
}

//! The B2BUA with its media anchored in the RTP relay, between real SIP
//! peers: SIPp (Debian package `sip-tester`) as caller and callee on
//! loopback. Each scenario is bounded by SIPp's `-timeout` and a timeout
//! around the process.

mod common;

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use common::*;
use provider_sdk::media::{MediaRelay, RelayConfig};
use provider_sdk::sip::anchor::RelayAnchor;
use provider_sdk::sip::b2bua::{B2bua, B2buaConfig};
use provider_sdk::sip::call::{HangupCause, Leg};
use provider_sdk::sip::control::FixedTargets;
use provider_sdk::sip::SipTarget;

const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

async fn anchored_b2bua(
    targets: Vec<SipTarget>,
    ports: RangeInclusive<u16>,
    media_timeout: Duration,
) -> B2bua {
    let mut relay_config = RelayConfig::loopback(ports);
    relay_config.media_timeout = media_timeout;
    relay_config.workers = 1;
    let relay = MediaRelay::new(relay_config).expect("start media relay");
    b2bua_on_relay(targets, relay).await
}

async fn b2bua_on_relay(targets: Vec<SipTarget>, relay: MediaRelay) -> B2bua {
    let mut config = B2buaConfig::with_control(std::sync::Arc::new(FixedTargets {
        targets,
        attempt_timeout: Duration::from_secs(10),
    }));
    config.media = RelayAnchor::factory(relay);
    B2bua::bind(config).await.expect("bind b2bua")
}

/// The `m=audio` ports of every SDP body in SIPp's message log, in order.
fn sdp_audio_ports(dir: &Path) -> Vec<u16> {
    let log: String = std::fs::read_dir(dir)
        .expect("read sipp dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| std::fs::read_to_string(e.path()).expect("read messages log"))
        .collect();
    assert!(!log.is_empty(), "no SIPp message log in {}", dir.display());
    log.lines()
        .filter_map(|l| l.trim().strip_prefix("m=audio "))
        .map(|rest| {
            rest.split(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad m= line: {rest}"))
        })
        .collect()
}

/// Checks that an endpoint only ever saw its own media port and the relay's.
fn saw_only_relay(who: &str, ports: &[u16], own: u16, other: u16, relay: &RangeInclusive<u16>) {
    assert!(
        ports.iter().any(|p| relay.contains(p)),
        "{who} never got an SDP pointing at the relay ({relay:?}): {ports:?}"
    );
    assert!(
        !ports.contains(&other),
        "{who} saw the other endpoint's media port {other} (media not anchored): {ports:?}"
    );
    assert!(
        ports.iter().all(|p| *p == own || relay.contains(p)),
        "{who} saw an SDP port that is neither its own ({own}) nor the relay's: {ports:?}"
    );
}

#[tokio::test]
async fn call_with_rtp_is_anchored_in_the_relay() {
    assert!(
        Path::new(PCAP).is_file(),
        "FAILED: {PCAP} missing; install the Debian package `sip-tester`"
    );
    let relay_ports = 41000..=41199;
    let (caller_mp, callee_mp) = (free_port(), free_port());
    let callee_mp_s = callee_mp.to_string();
    let caller_mp_s = caller_mp.to_string();
    let callee = spawn_sipp_with(
        "uas_answer.xml",
        None,
        &["-rtp_echo", "-mp", &callee_mp_s, "-trace_msg"],
    );
    settle().await;
    let b = anchored_b2bua(
        vec![callee.target()],
        relay_ports.clone(),
        Duration::from_secs(20),
    )
    .await;
    let caller = spawn_sipp_with(
        "uac_call_rtp.xml",
        Some(b.local_addr()),
        &["-mp", &caller_mp_s, "-trace_msg"],
    );
    let caller_dir = caller.succeeded().await;
    let callee_dir = callee.succeeded().await;

    let callee_saw = sdp_audio_ports(callee_dir.path());
    saw_only_relay("callee", &callee_saw, callee_mp, caller_mp, &relay_ports);
    let caller_saw = sdp_audio_ports(caller_dir.path());
    saw_only_relay("caller", &caller_saw, caller_mp, callee_mp, &relay_ports);

    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200), "{r:?}");
    assert_eq!(r.ended_by, Some(Leg::Caller), "{r:?}");
    assert_eq!(r.hangup, Some(HangupCause::Bye), "{r:?}");
    let media = r.media.expect("an anchored call has a media report");
    eprintln!("media report: {media:?}");
    assert!(
        media.caller.packets > 0,
        "no RTP from the caller: {media:?}"
    );
    assert!(
        media.caller.forwarded > 0,
        "caller RTP not forwarded: {media:?}"
    );
    assert!(
        media.callee.packets > 0,
        "no echoed RTP from the callee: {media:?}"
    );
    assert!(
        media.callee.forwarded > 0,
        "callee RTP not forwarded: {media:?}"
    );
    assert!(media.caller.bytes >= media.caller.packets * 12, "{media:?}");
}

#[tokio::test]
async fn call_without_rtp_is_ended_by_media_timeout() {
    let relay_ports = 41200..=41399;
    let callee = spawn_sipp_with("uas_answer.xml", None, &[]);
    settle().await;
    let media_timeout = Duration::from_secs(2);
    let b = anchored_b2bua(vec![callee.target()], relay_ports, media_timeout).await;
    // Neither side sends RTP; both wait for a BYE, which only the media timeout sends.
    let caller = spawn_sipp_with("uac_wait_bye.xml", Some(b.local_addr()), &[]);
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200), "{r:?}");
    assert_eq!(r.ended_by, None, "no leg hung up: {r:?}");
    match r.hangup {
        Some(HangupCause::MediaTimeout { idle }) => {
            assert!(idle >= media_timeout, "ended after only {idle:?}")
        }
        other => panic!("expected a media timeout, got {other:?}: {r:?}"),
    }
    let media = r.media.expect("an anchored call has a media report");
    assert_eq!(media.caller.packets + media.callee.packets, 0, "{media:?}");
}

/// True when every port of `range` can be bound on loopback (UDP), i.e. the
/// relay holds none of them.
fn ports_free(range: &RangeInclusive<u16>) -> bool {
    range
        .clone()
        .all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

#[tokio::test]
async fn cancel_during_ringing_releases_the_relay_ports() {
    // Exactly one call's worth of ports: a pair for each leg.
    let relay_ports = 41400..=41403;
    let mut relay_config = RelayConfig::loopback(relay_ports.clone());
    relay_config.workers = 1;
    let relay = MediaRelay::new(relay_config).expect("start media relay");
    assert_eq!(relay.port_pairs(), 2);

    let callee_mp = free_port();
    let callee_mp_s = callee_mp.to_string();
    let callee = spawn_sipp_with(
        "uas_ringing.xml",
        None,
        &["-mp", &callee_mp_s, "-trace_msg"],
    );
    settle().await;
    let b = b2bua_on_relay(vec![callee.target()], relay.clone()).await;
    let caller = spawn_sipp("uac_cancel.xml", Some(b.local_addr()));
    caller.succeeded().await;
    let callee_dir = callee.succeeded().await;
    let callee_saw = sdp_audio_ports(callee_dir.path());
    assert!(
        callee_saw.iter().any(|p| relay_ports.contains(p)),
        "the ringing callee was not offered relay ports: {callee_saw:?}"
    );
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(487), "{r:?}");
    assert_eq!(r.hangup, None, "never answered: {r:?}");

    // The relay lets go of the sockets on its forwarding thread: wait for
    // that, bounded.
    let mut released = false;
    for _ in 0..100 {
        if ports_free(&relay_ports) {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        released,
        "relay ports {relay_ports:?} still bound after the cancelled call ended"
    );
    // And the relay can hand them out again: the full range for a new call.
    let media = relay.allocate_call().expect("allocate after release");
    let offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n";
    media
        .rewrite_offer(provider_sdk::media::Leg::A, offer)
        .expect("both port pairs free again");
}

#[tokio::test]
async fn hold_longer_than_the_media_timeout_does_not_end_the_call() {
    let relay_ports = 41600..=41799;
    let callee = spawn_sipp("uas_hold_resume.xml", None);
    settle().await;
    // The caller stays on hold (no RTP) for 4 s, twice the media timeout.
    let b = anchored_b2bua(vec![callee.target()], relay_ports, Duration::from_secs(2)).await;
    let caller = spawn_sipp("uac_long_hold.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.hangup, Some(HangupCause::Bye), "{r:?}");
    assert_eq!(r.ended_by, Some(Leg::Caller), "{r:?}");
}

//! The OPTIONS prober against real listeners on loopback: an answering peer
//! is up with a measured round-trip time, a peer answering 405 is alive too,
//! and a silent peer times out and goes down after the configured count.

use std::net::SocketAddr;
use std::time::Duration;

use provider_sdk::sip::listener::{Handler, Listener, ListenerConfig, Responder};
use provider_sdk::sip::prober::{ProbeConfig, ProbeResult, Prober, State};
use provider_sdk::sip::{Reply, Request, SipTarget};

/// A peer that refuses OPTIONS: still proof that it is alive.
struct Refuser;
impl Handler for Refuser {
    fn request(&self, _request: &Request<'_>, _peer: SocketAddr) -> Option<Reply> {
        Some(Reply::new(405, "Method Not Allowed"))
    }
}

fn target(addr: SocketAddr) -> SipTarget {
    SipTarget::parse(&format!("sip:ping@{addr}")).expect("target")
}

fn config() -> ProbeConfig {
    ProbeConfig {
        timeout: Duration::from_millis(800),
        down_after: 2,
        up_after: 2,
    }
}

#[tokio::test]
async fn answering_and_refusing_peers_are_up_and_silent_ones_go_down() {
    let ok = Listener::bind(ListenerConfig::loopback(), Responder)
        .await
        .unwrap();
    let refusing = Listener::bind(ListenerConfig::loopback(), Refuser)
        .await
        .unwrap();
    // A bound socket that never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (ok_t, refusing_t, silent_t) = (
        target(ok.udp_addr()),
        target(refusing.udp_addr()),
        target(silent.local_addr().unwrap()),
    );
    let prober = Prober::bind("127.0.0.1:0".parse().unwrap(), config())
        .await
        .unwrap();
    let candidates = vec![ok_t.clone(), refusing_t.clone(), silent_t.clone()];

    let first = prober.probe_all(&candidates, Duration::from_secs(5)).await;
    assert!(
        matches!(first[0].1, ProbeResult::Answered { status: 200, .. }),
        "{first:?}"
    );
    assert!(
        matches!(first[1].1, ProbeResult::Answered { status: 405, .. }),
        "{first:?}"
    );
    assert_eq!(first[2].1, ProbeResult::Timeout);
    assert_eq!(prober.health(&silent_t).unwrap().state, State::Unknown);

    prober.probe_all(&candidates, Duration::from_secs(5)).await;
    let up = prober.health(&ok_t).unwrap();
    assert_eq!(up.state, State::Up);
    assert_eq!(up.answers, 2);
    assert!(up.srtt.is_some_and(|rtt| rtt > Duration::ZERO));
    assert_eq!(prober.health(&refusing_t).unwrap().state, State::Up);
    let down = prober.health(&silent_t).unwrap();
    assert_eq!((down.state, down.timeouts), (State::Down, 2));
    assert_eq!(
        ok.stats().requests,
        2,
        "each probe reaches the peer once (no needless retransmission)"
    );
}

#[tokio::test]
async fn background_probing_marks_a_stopped_peer_down() {
    let peer = Listener::bind(ListenerConfig::loopback(), Responder)
        .await
        .unwrap();
    let t = target(peer.udp_addr());
    let prober = Prober::bind("127.0.0.1:0".parse().unwrap(), config())
        .await
        .unwrap();
    prober.run_background(vec![t.clone()], Duration::from_millis(200));
    // Wait (bounded) for the background task to see the peer up.
    let mut state = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = prober.health(&t).map(|h| h.state);
        if state == Some(State::Up) {
            break;
        }
    }
    assert_eq!(state, Some(State::Up));
    peer.shutdown();
    drop(peer);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = prober.health(&t).map(|h| h.state);
        if state == Some(State::Down) {
            break;
        }
    }
    assert_eq!(state, Some(State::Down));
    prober.stop();
}

#[tokio::test]
async fn unsupported_or_unresolvable_targets_fail_cleanly() {
    let prober = Prober::bind("127.0.0.1:0".parse().unwrap(), config())
        .await
        .unwrap();
    let tcp = SipTarget::parse("sip:x@127.0.0.1:9;transport=tcp").unwrap();
    assert!(matches!(
        prober.probe(&tcp).await,
        ProbeResult::Failed { .. }
    ));
    let nowhere = SipTarget::parse("sip:x@no-such-host.invalid").unwrap();
    assert!(matches!(
        prober.probe(&nowhere).await,
        ProbeResult::Failed { .. }
    ));
    assert_eq!(prober.health(&nowhere).unwrap().failures, 1);
}

//! The B2BUA between real SIP peers: SIPp (Debian package `sip-tester`) as
//! caller and as callee(s), all on loopback. Each scenario is bounded by
//! SIPp's own `-timeout` and by a timeout around the process.

mod common;

use std::time::Duration;

use common::*;
use provider_sdk::sip::call::Leg;
use provider_sdk::sip::{Outcome, SipTarget};

#[tokio::test]
async fn basic_call_with_bye_from_caller() {
    let callee = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.ended_by, Some(Leg::Caller));
    assert!(
        matches!(outcomes(&r).as_slice(), [Outcome::Answered]),
        "{r:?}"
    );
}

#[tokio::test]
async fn bye_from_callee_is_relayed_to_caller() {
    let callee = spawn_sipp("uas_hangup.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_wait_bye.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.ended_by, Some(Leg::Callee));
}

#[tokio::test]
async fn busy_is_relayed_and_ends_the_search() {
    let busy = spawn_sipp("uas_busy.xml", None);
    settle().await;
    // A second target that must never be tried: nothing listens there.
    let unused = SipTarget::parse(&format!("sip:x@127.0.0.1:{}", free_port())).unwrap();
    let b = b2bua(vec![busy.target(), unused], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_expect_486.xml", Some(b.local_addr()));
    caller.succeeded().await;
    busy.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(486));
    assert_eq!(r.attempts.len(), 1, "a 486 must stop failover: {r:?}");
}

#[tokio::test]
async fn unavailable_first_target_fails_over_to_the_second() {
    let first = spawn_sipp("uas_unavailable.xml", None);
    let second = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(
        vec![first.target(), second.target()],
        Duration::from_secs(10),
    )
    .await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    first.succeeded().await;
    second.succeeded().await;
    let r = record(&b).await;
    assert!(
        matches!(
            outcomes(&r).as_slice(),
            [Outcome::Rejected { status: 503, .. }, Outcome::Answered]
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn silent_first_target_times_out_then_second_answers() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_target =
        SipTarget::parse(&format!("sip:x@{}", silent.local_addr().unwrap())).unwrap();
    let second = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(
        vec![silent_target, second.target()],
        Duration::from_millis(1500),
    )
    .await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    second.succeeded().await;
    let r = record(&b).await;
    assert!(
        matches!(
            outcomes(&r).as_slice(),
            [Outcome::Timeout { .. }, Outcome::Answered]
        ),
        "{r:?}"
    );
    let mut buf = [0u8; 4096];
    silent.set_nonblocking(true).unwrap();
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("the silent target received the INVITE");
    assert!(buf[..n].starts_with(b"INVITE "));
}

#[tokio::test]
async fn cancel_during_ringing_reaches_the_callee() {
    let callee = spawn_sipp("uas_ringing.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_cancel.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(487));
    assert!(
        matches!(outcomes(&r).as_slice(), [Outcome::Cancelled]),
        "{r:?}"
    );
}

#[tokio::test]
async fn reinvite_hold_and_resume_are_relayed() {
    let callee = spawn_sipp("uas_hold_resume.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_hold_resume.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.ended_by, Some(Leg::Caller));
}

#[tokio::test]
async fn early_media_183_with_sdp_is_relayed() {
    let callee = spawn_sipp("uas_early_media.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    // The caller scenario fails unless a 183 carrying an m=audio line arrives.
    let caller = spawn_sipp("uac_early_media.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.final_status, Some(200));
}

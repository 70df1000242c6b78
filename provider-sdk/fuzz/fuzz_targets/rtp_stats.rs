//! RTP classification and RFC 3550 statistics over arbitrary packet
//! sequences: never panics, and the counts stay consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provider_sdk::media::classify_for_fuzzing;
use provider_sdk::media::rtp_stats::{RtpHeaderFields, RtpStats};

fuzz_target!(|data: &[u8]| {
    let mut stats = RtpStats::default();
    stats.clock.set(101, 8000, true);
    stats.clock.set(96, 48000, false);
    let mut recorded = 0u64;
    let mut arrival = 0u64;
    // Input: a list of [len: u8][gap_ms: u8][packet bytes...].
    let mut rest = data;
    while let [len, gap, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (packet, next) = tail.split_at(n);
        rest = next;
        arrival += u64::from(*gap) * 1_000_000;
        let class = classify_for_fuzzing(packet);
        if let Some(h) = RtpHeaderFields::parse(packet) {
            if class == "rtp" {
                stats.record(&h, packet.len(), arrival);
                recorded += 1;
            }
        }
    }
    let s = stats.snapshot();
    assert_eq!(s.packets, recorded);
    assert!(s.expected <= recorded.saturating_mul(65536) + 65536);
    assert!(s.lost <= s.expected as i64);
});

//! The relay's per-packet and per-call work in isolation: RTP header parse +
//! RFC 3550 statistics (every packet), and SDP parse + rewrite (every offer
//! and answer).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use provider_sdk::media::rtp_stats::{RtpHeaderFields, RtpStats};
use provider_sdk::media::sdp_rewrite::rewrite;
use std::hint::black_box;

const BARESIP: &[u8] = b"v=0\r\no=- 1289442217 2125896931 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 10606 RTP/AVP 96 9 0 8 101\r\nb=AS:128\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=rtcp:10607 IN IP4 192.168.1.20\r\na=rtcp-mux\r\na=ptime:20\r\n";

fn packets() -> Vec<Vec<u8>> {
    (0..1000u32)
        .map(|i| {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&(i * 160).to_be_bytes());
            p.extend_from_slice(&7u32.to_be_bytes());
            p.resize(172, 0xd5);
            p
        })
        .collect()
}

fn rtp_statistics(c: &mut Criterion) {
    let packets = packets();
    let mut g = c.benchmark_group("media_rtp_stats");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("parse_and_record_1000_packets", |b| {
        b.iter_batched_ref(
            RtpStats::default,
            |stats| {
                for (i, p) in packets.iter().enumerate() {
                    if let Some(h) = RtpHeaderFields::parse(black_box(p)) {
                        stats.record(&h, p.len(), i as u64 * 20_000_000);
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn sdp(c: &mut Criterion) {
    let addr = "203.0.113.9".parse().unwrap();
    c.bench_function("media_sdp_rewrite_baresip_offer", |b| {
        b.iter(|| rewrite(black_box(BARESIP), addr, &[Some(30000)]).unwrap())
    });
}

criterion_group!(benches, rtp_statistics, sdp);
criterion_main!(benches);

//! Parse + validate throughput of typical messages (one core).
//!
//! `cargo bench -p provider-sdk --bench sip_parse_validate`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use provider_sdk::sip::{validate, Policy, Verdict};

/// An INVITE as a carrier sends it: Record-Route, P-Asserted-Identity, SDP offer.
const INVITE: &[u8] = b"INVITE sip:+4930123456@gw.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---8f2e0a3c7b1d;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3a9c.7d3e4a21.0;received=198.51.100.7\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:192.0.2.10;lr;ftag=as5f7c1d2e>\r\n\
Contact: <sip:+4915112345678@198.51.100.7:5060;transport=udp>\r\n\
To: <sip:+4930123456@gw.example.net;user=phone>\r\n\
From: \"+4915112345678\" <sip:+4915112345678@carrier.example.com;user=phone>;tag=as5f7c1d2e\r\n\
Call-ID: 3c26700357ad-8w1lsh2lk1f8@198.51.100.7\r\n\
CSeq: 102 INVITE\r\n\
P-Asserted-Identity: <sip:+4915112345678@carrier.example.com;user=phone>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
User-Agent: CarrierSBC 4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 273\r\n\
\r\n\
v=0\r\n\
o=- 1732531200 1732531200 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 17232 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n";

const OPTIONS: &[u8] = b"OPTIONS sip:gw.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-opt-1;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:gw.example.net>\r\n\
From: <sip:ping@192.0.2.10>;tag=p1\r\n\
Call-ID: ping-1@192.0.2.10\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    assert!(
        matches!(validate(INVITE, &policy), Verdict::Request(_)),
        "bench INVITE must be valid"
    );
    assert!(matches!(validate(OPTIONS, &policy), Verdict::Request(_)));
    let mut group = c.benchmark_group("sip_parse_validate");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in [("invite_with_sdp", INVITE), ("options", OPTIONS)] {
        group.bench_with_input(BenchmarkId::from_parameter(name), msg, |b, msg| {
            b.iter(|| {
                matches!(
                    validate(std::hint::black_box(msg), &policy),
                    Verdict::Request(_)
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! End-to-end relay tests over loopback: two endpoints with real UDP sockets
//! exchange RTP and RTCP through the relay.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use provider_sdk::media::sdp_rewrite::SdpMedia;
use provider_sdk::media::{CallMedia, Leg, MediaError, MediaRelay, RelayConfig};

/// Each test gets its own port range so tests can run in parallel.
fn relay(ports: RangeInclusive<u16>) -> MediaRelay {
    let mut config = RelayConfig::loopback(ports);
    config.media_timeout = Duration::from_millis(300);
    MediaRelay::new(config).expect("relay starts")
}

struct Endpoint {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Endpoint {
    fn new(ip: &str) -> Endpoint {
        let bind = |ip: &str| {
            let s = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        };
        Endpoint {
            rtp: bind(ip),
            rtcp: bind(ip),
        }
    }

    fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }

    /// An SDP saying "send my RTP to `port`, RTCP to my RTCP socket".
    fn sdp(&self, port: u16, extra: &str) -> Vec<u8> {
        let ip = self.rtp.local_addr().unwrap().ip();
        let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let rtcp = self.rtcp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:{rtcp}\r\n{extra}"
        )
        .into_bytes()
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0u8; 20]);
    p
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s
        .recv_from(&mut buf)
        .expect("packet arrives through the relay");
    (buf[..n].to_vec(), from)
}

/// Where the rewritten SDP tells the receiving endpoint to send.
fn target(sdp: &[u8]) -> (SocketAddr, Option<SocketAddr>) {
    let m = SdpMedia::parse(sdp).unwrap();
    (m.streams[0].rtp.unwrap(), m.streams[0].rtcp)
}

/// Sets up A -> relay -> B with A's SDP naming `a_advertised_port` (which
/// may differ from where A really sends from, as behind a NAT).
fn connect(
    call: &CallMedia,
    a: &Endpoint,
    b: &Endpoint,
    a_advertised_port: u16,
    extra: &str,
) -> (SocketAddr, SocketAddr) {
    let offer = call
        .rewrite_offer(Leg::A, &a.sdp(a_advertised_port, extra))
        .unwrap();
    let (to_relay_from_b, _) = target(&offer);
    let answer = call
        .rewrite_answer(Leg::B, &b.sdp(b.rtp_port(), extra))
        .unwrap();
    let (to_relay_from_a, _) = target(&answer);
    (to_relay_from_a, to_relay_from_b)
}

#[test]
fn relays_both_ways_with_latching_rtcp_dtmf_and_statistics() {
    let relay = relay(41000..=41099);
    let call = relay.allocate_call().unwrap();
    let (a, b) = (Endpoint::new("127.0.0.1"), Endpoint::new("127.0.0.1"));
    // A is "behind a NAT": its SDP names a port nobody listens on.
    let nat_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (relay_a, relay_b) = connect(&call, &a, &b, nat_port, "");

    // A -> B: 100 packets with sequence numbers 1..=100, five of them lost.
    // All are sent back to back with timestamps 160 apart, so every packet's
    // transit differs from the previous one's by ~160 units: jitter ~160.
    let lost = [10u16, 20, 30, 40, 50];
    let mut sent = Vec::new();
    for seq in 1..=100u16 {
        if lost.contains(&seq) {
            continue;
        }
        let p = rtp(0, seq, u32::from(seq) * 160, 0xA, &[0xd5; 160]);
        a.rtp.send_to(&p, relay_a).unwrap();
        sent.push(p);
    }
    for p in &sent {
        let (got, from) = recv(&b.rtp);
        assert_eq!(&got, p, "RTP passes byte for byte");
        assert_eq!(
            from, relay_b,
            "B receives from the relay port it was told about"
        );
    }

    // B -> A goes to where A's packets really came from (latching), not to the SDP port.
    let back = rtp(0, 7, 1120, 0xB, &[0x55; 160]);
    b.rtp.send_to(&back, relay_b).unwrap();
    assert_eq!(recv(&a.rtp).0, back);

    // RFC 4733 events pass untouched (payload: event 5, end bit, volume 10, duration 800).
    for (i, payload) in [[5u8, 0x0a, 0x01, 0x40], [5, 0x8a, 0x03, 0x20]]
        .iter()
        .enumerate()
    {
        let ev = rtp(101, 101 + i as u16, 16000, 0xA, payload);
        a.rtp.send_to(&ev, relay_a).unwrap();
        assert_eq!(recv(&b.rtp).0, ev, "DTMF event untouched");
    }

    // RTCP on port + 1, both ways.
    let rtcp_a = SocketAddr::new(relay_a.ip(), relay_a.port() + 1);
    let rtcp_b = SocketAddr::new(relay_b.ip(), relay_b.port() + 1);
    a.rtcp.send_to(&rtcp_sr(0xA), rtcp_a).unwrap();
    let (got, from) = recv(&b.rtcp);
    assert_eq!((got, from), (rtcp_sr(0xA), rtcp_b));
    b.rtcp.send_to(&rtcp_sr(0xB), rtcp_b).unwrap();
    assert_eq!(recv(&a.rtcp).0, rtcp_sr(0xB));

    // A STUN-like datagram is forwarded untouched; a truncated RTP header is dropped;
    // a stranger's packet to A's port is dropped.
    let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    a.rtp.send_to(&stun, relay_a).unwrap();
    assert_eq!(recv(&b.rtp).0, stun);
    a.rtp.send_to(&[0x80, 0x00, 0x01], relay_a).unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .send_to(&rtp(0, 500, 0, 0xE, &[0; 160]), relay_a)
        .unwrap();
    // A marker packet proves the earlier ones were processed.
    let marker = rtp(0, 103, 16480, 0xA, &[1; 160]);
    a.rtp.send_to(&marker, relay_a).unwrap();
    assert_eq!(
        recv(&b.rtp).0,
        marker,
        "the malformed and foreign packets were not forwarded"
    );

    // The forwarded counter is updated just after the send returns, so it
    // may trail the receiver by a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while call.stats(Leg::A).streams[0].counters.forwarded < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = call.stats(Leg::A);
    let s = &stats.streams[0];
    assert_eq!(s.latched, Some(a.rtp.local_addr().unwrap()));
    assert_eq!(s.rtp.packets, 95 + 2 + 1);
    assert_eq!(s.rtp.bytes, 96 * 172 + 2 * 16);
    // Probation takes the first packet; seq 2..=103 expected, 5 lost.
    assert_eq!((s.rtp.expected, s.rtp.lost), (102, 5));
    // ~160 units; a scheduling pause on the shared machine can pull single
    // differences towards 0, so only the order of magnitude is checked.
    assert!(
        (100..=200).contains(&s.rtp.jitter_units),
        "jitter {:?}",
        s.rtp
    );
    assert_eq!(s.counters.rtcp, 1);
    assert_eq!(s.counters.non_rtp, 1);
    assert_eq!(s.counters.malformed, 1);
    assert_eq!(s.counters.foreign_source, 1);
    assert_eq!(s.counters.forwarded, 95 + 2 + 1 + 1 + 1);
    while call.stats(Leg::B).streams[0].counters.forwarded < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sb = &call.stats(Leg::B).streams[0];
    assert_eq!(
        (sb.rtp.packets, sb.counters.rtcp, sb.counters.forwarded),
        (1, 1, 2)
    );
    assert!(s.last_packet.is_some_and(|t| t <= Instant::now()));
}

#[test]
fn rtcp_mux_goes_over_the_rtp_ports() {
    let relay = relay(41100..=41199);
    let call = relay.allocate_call().unwrap();
    let (a, b) = (Endpoint::new("127.0.0.1"), Endpoint::new("127.0.0.1"));
    let (relay_a, relay_b) = connect(&call, &a, &b, a.rtp_port(), "a=rtcp-mux\r\n");
    a.rtp.send_to(&rtp(0, 1, 0, 1, &[0; 160]), relay_a).unwrap();
    recv(&b.rtp);
    a.rtp.send_to(&rtcp_sr(1), relay_a).unwrap();
    let (got, from) = recv(&b.rtp);
    assert_eq!(
        (got, from),
        (rtcp_sr(1), relay_b),
        "muxed RTCP reaches B's RTP port"
    );
    b.rtp.send_to(&rtcp_sr(2), relay_b).unwrap();
    assert_eq!(recv(&a.rtp).0, rtcp_sr(2));
    assert_eq!(call.stats(Leg::A).streams[0].counters.rtcp, 1);
    assert_eq!(
        call.stats(Leg::A).streams[0].rtp.packets,
        1,
        "RTCP is not counted as RTP"
    );
}

#[test]
fn second_media_line_gets_its_own_ports() {
    let relay = relay(41200..=41299);
    let call = relay.allocate_call().unwrap();
    let (a, b) = (Endpoint::new("127.0.0.1"), Endpoint::new("127.0.0.1"));
    let (av, bv) = (Endpoint::new("127.0.0.1"), Endpoint::new("127.0.0.1"));
    let two = |audio: &Endpoint, video: &Endpoint| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\nm=video {} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
            audio.rtp_port(),
            video.rtp_port()
        )
        .into_bytes()
    };
    let offer = call.rewrite_offer(Leg::A, &two(&a, &av)).unwrap();
    let answer = call.rewrite_answer(Leg::B, &two(&b, &bv)).unwrap();
    let (o, ans) = (
        SdpMedia::parse(&offer).unwrap(),
        SdpMedia::parse(&answer).unwrap(),
    );
    let relay_a_video = ans.streams[1].rtp.unwrap();
    assert_ne!(ans.streams[0].rtp, ans.streams[1].rtp);
    assert_eq!(call.local_addr(Leg::B, 1), o.streams[1].rtp);
    let frame = rtp(96, 1, 0, 9, &[7; 900]);
    av.rtp.send_to(&frame, relay_a_video).unwrap();
    assert_eq!(recv(&bv.rtp).0, frame);
    assert_eq!(call.stats(Leg::A).streams.len(), 2);
    assert_eq!(call.stats(Leg::A).streams[1].rtp.packets, 1);

    let three = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\nm=audio 3 RTP/AVP 0\r\nm=audio 5 RTP/AVP 0\r\n";
    assert!(matches!(
        call.rewrite_answer(Leg::B, three),
        Err(MediaError::AnswerHasMoreStreams {
            offered: 2,
            answered: 3
        })
    ));
}

#[test]
fn media_timeout_fires_when_rtp_stops() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let relay = relay(41300..=41399);
    let call = relay.allocate_call().unwrap();
    let (a, b) = (Endpoint::new("127.0.0.1"), Endpoint::new("127.0.0.1"));
    let (relay_a, _) = connect(&call, &a, &b, a.rtp_port(), "");
    a.rtp.send_to(&rtp(0, 1, 0, 1, &[0; 160]), relay_a).unwrap();
    recv(&b.rtp);
    let started = Instant::now();
    // The outer bound only keeps a broken relay from hanging the suite.
    let fired =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), call.timeout()).await });
    let fired = fired.expect("media timeout is reported");
    assert!(fired.idle >= Duration::from_millis(300), "{fired:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn exhausted_port_range_is_a_clear_error_and_ports_come_back() {
    // Two pairs: one call (one pair per leg) takes them all.
    let relay = relay(41400..=41403);
    assert_eq!(relay.port_pairs(), 2);
    let call = relay.allocate_call().unwrap();
    let err = relay.allocate_call().unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::PortsExhausted {
                first: 41400,
                last: 41403
            }
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("no free RTP port pair in range 41400-41403"));
    drop(call);
    // Release happens on the forwarding thread; wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match relay.allocate_call() {
            Ok(_) => break,
            Err(MediaError::PortsExhausted { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("ports were not released: {e}"),
        }
    }
}

#[test]
fn bad_configuration_and_bad_sdp_are_errors() {
    assert!(matches!(
        MediaRelay::new(RelayConfig::loopback(5000..=5000)),
        Err(MediaError::Config(_))
    ));
    assert!(matches!(
        MediaRelay::new(RelayConfig::loopback(0..=10)),
        Err(MediaError::Config(_))
    ));
    let mut mixed = RelayConfig::loopback(41500..=41509);
    mixed.advertise = "::1".parse().unwrap();
    assert!(matches!(MediaRelay::new(mixed), Err(MediaError::Config(_))));
    let relay = relay(41510..=41519);
    let call = relay.allocate_call().unwrap();
    assert!(matches!(
        call.rewrite_offer(Leg::A, b"not sdp"),
        Err(MediaError::Sdp(_))
    ));
}

#[test]
fn relays_over_ipv6() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: relays_over_ipv6: no IPv6 loopback on this machine");
        return;
    }
    let mut config = RelayConfig::loopback(41600..=41699);
    config.bind = "::1".parse().unwrap();
    config.advertise = config.bind;
    let relay = MediaRelay::new(config).unwrap();
    let call = relay.allocate_call().unwrap();
    let (a, b) = (Endpoint::new("::1"), Endpoint::new("::1"));
    let (relay_a, relay_b) = connect(&call, &a, &b, a.rtp_port(), "");
    assert!(relay_a.is_ipv6() && relay_b.is_ipv6());
    let p = rtp(0, 1, 0, 1, &[0; 160]);
    a.rtp.send_to(&p, relay_a).unwrap();
    assert_eq!(recv(&b.rtp), (p.clone(), relay_b));
    b.rtp.send_to(&p, relay_b).unwrap();
    assert_eq!(recv(&a.rtp).0, p);
}

//! SDP rewriting: only connection addresses and media ports change; every
//! other byte of real-world offers stays as it was.

use std::net::{IpAddr, SocketAddr};

use provider_sdk::media::sdp_rewrite::{rewrite, SdpMedia};
use provider_sdk::media::SdpError;

/// SIPp's default uac offer (its `[media_ip]`/`[media_port]` substituted).
const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A baresip offer: rtcp-mux, a=rtcp, telephone-event, ptime, several codecs.
const BARESIP: &str = "v=0\r\no=- 1289442217 2125896931 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 10606 RTP/AVP 96 9 0 8 101\r\nb=AS:128\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\na=rtcp:10607 IN IP4 192.168.1.20\r\na=rtcp-mux\r\na=ssrc:3416318393 cname:6e7f5ee0-6d83-4f6b-a6b3-9e67d5a1d1c1\r\na=ptime:20\r\n";

/// A Linphone-like offer with audio and video, media-level c= lines,
/// a bare a=rtcp port and LF-only line endings.
const LINPHONE: &str = "v=0\no=alice 2890 2891 IN IP4 10.0.0.5\ns=Talk\nc=IN IP4 10.0.0.5\nt=0 0\na=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\nm=audio 7078 RTP/AVP 96 97 0 8 101\nc=IN IP4 10.0.0.6\na=rtpmap:96 opus/48000/2\na=rtpmap:97 speex/16000\na=rtpmap:101 telephone-event/8000\na=rtcp:7079\na=rtcp-fb:* trr-int 1000\nm=video 9078 RTP/AVP 103\na=rtpmap:103 VP8/90000\na=rtcp-fb:103 nack pli\n";

/// IPv6 with a disabled second stream (port 0).
const IPV6: &str = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\nm=video 0 RTP/AVP 31\r\n";

/// Hold, old style: connection address 0.0.0.0.
const HOLD: &str = "v=0\r\no=- 5 6 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (name, input, advertised address, ports per m= line, expected output)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Vec<Option<u16>>,
    String,
);

#[test]
fn rewrite_changes_only_addresses_and_ports() {
    // (name, input, advertised address, ports, expected output)
    let cases: [Case; 5] = [
        (
            "sipp",
            SIPP,
            "203.0.113.9",
            vec![Some(30000)],
            SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 203.0.113.9")
                .replace("6000", "30000"),
        ),
        (
            "baresip",
            BARESIP,
            "203.0.113.9",
            vec![Some(30002)],
            BARESIP
                .replace("c=IN IP4 192.168.1.20", "c=IN IP4 203.0.113.9")
                .replace("m=audio 10606", "m=audio 30002")
                .replace(
                    "a=rtcp:10607 IN IP4 192.168.1.20",
                    "a=rtcp:30003 IN IP4 203.0.113.9",
                ),
        ),
        (
            "linphone",
            LINPHONE,
            "198.51.100.1",
            vec![Some(40000), Some(40002)],
            LINPHONE
                .replace("c=IN IP4 10.0.0.5", "c=IN IP4 198.51.100.1")
                .replace("c=IN IP4 10.0.0.6", "c=IN IP4 198.51.100.1")
                .replace("m=audio 7078", "m=audio 40000")
                .replace("a=rtcp:7079", "a=rtcp:40001")
                .replace("m=video 9078", "m=video 40002"),
        ),
        (
            "ipv6 with disabled stream",
            IPV6,
            "2001:db8::ff",
            vec![Some(50000), None],
            IPV6.replace("c=IN IP6 2001:db8::1", "c=IN IP6 2001:db8::ff")
                .replace("5004", "50000"),
        ),
        (
            "hold keeps 0.0.0.0",
            HOLD,
            "203.0.113.9",
            vec![Some(30010)],
            HOLD.replace("4000", "30010"),
        ),
    ];
    for (name, input, addr, ports, expected) in cases {
        let out =
            rewrite(input.as_bytes(), ip(addr), &ports).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{name}");
    }
}

#[test]
fn unusual_spacing_is_rewritten_in_place() {
    // Found by fuzzing: the parser accepts runs of spaces between fields.
    let input = "v=0\no=a 1 2 IN IP4 10.0.0.5\ns=-\nc=IN  IP4   10.0.0.5\nt=0 0\nm=audio  978 RTP/AVP 0\na=rtcp: 979  IN IP4  10.0.0.5\n";
    let out = rewrite(input.as_bytes(), ip("192.0.2.1"), &[Some(30000)]).unwrap();
    let expected = "v=0\no=a 1 2 IN IP4 10.0.0.5\ns=-\nc=IN  IP4 192.0.2.1\nt=0 0\nm=audio  30000 RTP/AVP 0\na=rtcp: 30001  IN IP4 192.0.2.1\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    let m = SdpMedia::parse(expected.as_bytes()).unwrap();
    assert_eq!(m.streams[0].rtp, Some("192.0.2.1:30000".parse().unwrap()));
    // Found by fuzzing: a lone CR before a line's type letter.
    let cr = IPV6.replace("s=-\r\nc=", "s=-\n\rc=");
    let out = rewrite(cr.as_bytes(), ip("203.0.113.7"), &[Some(30000), None]).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("\rc=IN IP4 203.0.113.7\r\n"));
    // Also found by fuzzing: a port written with a sign.
    let signed = IPV6.replace("m=audio 5004", "m=audio +004");
    let out = rewrite(signed.as_bytes(), ip("::1"), &[Some(30000), None]).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("\r\nm=audio 30000 RTP/AVP 8\r\n"));
}

#[test]
fn ipv4_offer_rewritten_to_ipv6_relay_changes_address_type() {
    let out = rewrite(SIPP.as_bytes(), ip("::1"), &[Some(30000)]).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\r\nc=IN IP6 ::1\r\n"), "{out}");
    // The origin line is an identifier, not a media address: untouched.
    assert!(
        out.contains("o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"),
        "{out}"
    );
}

#[test]
fn parse_extracts_destinations_mux_and_clock_rates() {
    let m = SdpMedia::parse(BARESIP.as_bytes()).unwrap();
    assert_eq!(m.streams.len(), 1);
    let s = &m.streams[0];
    assert_eq!(
        s.rtp,
        Some("192.168.1.20:10606".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        s.rtcp,
        Some("192.168.1.20:10607".parse::<SocketAddr>().unwrap())
    );
    assert!(s.rtcp_mux);
    assert!(s.clock_rates.contains(&(96, 48000)));
    assert!(s.clock_rates.contains(&(0, 8000)));
    assert_eq!(s.telephone_events, vec![101]);

    let m = SdpMedia::parse(LINPHONE.as_bytes()).unwrap();
    assert_eq!(
        m.streams[0].rtp,
        Some("10.0.0.6:7078".parse().unwrap()),
        "media-level c= wins"
    );
    assert_eq!(m.streams[0].rtcp, Some("10.0.0.6:7079".parse().unwrap()));
    assert_eq!(m.streams[1].rtp, Some("10.0.0.5:9078".parse().unwrap()));
    assert_eq!(
        m.streams[1].rtcp,
        Some("10.0.0.5:9079".parse().unwrap()),
        "default RTCP is port + 1"
    );
    assert!(!m.streams[1].rtcp_mux);
    assert!(m.streams[1].clock_rates.contains(&(103, 90000)));

    let m = SdpMedia::parse(IPV6.as_bytes()).unwrap();
    assert_eq!(
        m.streams[0].rtp,
        Some("[2001:db8::1]:5004".parse().unwrap())
    );
    assert_eq!(m.streams[1].rtp, None, "port 0 is disabled");

    let m = SdpMedia::parse(HOLD.as_bytes()).unwrap();
    assert_eq!(m.streams[0].rtp, None, "0.0.0.0 means no destination");
}

#[test]
fn bad_sdp_gets_a_clear_error() {
    let cases: [(&str, &str); 6] = [
        ("", "invalid SDP"),
        ("hello", "invalid SDP"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 not-an-ip\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", "not an IP address"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n", "invalid SDP"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:abc\r\n", "not a valid UDP port"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=ATM NSAP 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", "invalid SDP"),
    ];
    for (input, needle) in cases {
        let err = rewrite(input.as_bytes(), ip("127.0.0.1"), &[Some(30000)]).unwrap_err();
        assert!(err.to_string().contains(needle), "{input:?}: {err}");
    }
    let err = rewrite(SIPP.as_bytes(), ip("127.0.0.1"), &[Some(1), Some(2)]).unwrap_err();
    assert_eq!(
        err,
        SdpError::PortCount {
            expected: 1,
            given: 2
        }
    );
}

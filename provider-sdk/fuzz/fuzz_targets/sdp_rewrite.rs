//! SDP parse + surgical rewrite: never panics, and what it produces is SDP
//! with the same media sections, rewritten to the relay's address and ports.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use provider_sdk::media::sdp_rewrite::{rewrite, SdpMedia};
use provider_sdk::media::SdpError;

fuzz_target!(|data: &[u8]| {
    let Ok(media) = SdpMedia::parse(data) else { return };
    let ports: Vec<Option<u16>> = (0..media.streams.len())
        .map(|i| (media.streams[i].port != 0).then_some(30000 + 2 * i as u16))
        .collect();
    for addr in [IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
        let out = match rewrite(data, addr, &ports) {
            Ok(out) => out,
            // Refusing is safe (the call fails); anything else is a bug.
            Err(SdpError::Unrewritable) => return,
            Err(e) => panic!("a body that parses could not be rewritten: {e}"),
        };
        let again = SdpMedia::parse(&out).expect("the rewritten body parses");
        assert_eq!(again.streams.len(), media.streams.len());
        for (i, s) in again.streams.iter().enumerate() {
            assert_eq!(s.port, ports[i].unwrap_or(0), "m= port rewritten");
            if let Some(rtp) = s.rtp {
                assert_eq!(rtp.ip(), addr, "connection address rewritten");
            }
        }
        // Rewriting is stable: doing it again changes nothing.
        assert_eq!(rewrite(&out, addr, &ports).expect("rewrite again"), out);
        // Only c=, m= and a=rtcp: lines may differ.
        let lines = |b: &[u8]| b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect::<Vec<_>>();
        let (before, after) = (lines(data), lines(&out));
        assert_eq!(before.len(), after.len(), "line count unchanged");
        for (x, y) in before.iter().zip(&after) {
            if x != y {
                assert!(
                    [&b"c="[..], b"m=", b"a=rtcp:"].iter().any(|p| x.trim_ascii_start().starts_with(p)),
                    "unexpected change in line {:?}",
                    String::from_utf8_lossy(x)
                );
            }
        }
    }
});

//! Audio for a user agent: G.711 against the reference algorithms, WAV files
//! on disk, SDP offer/answer, and two RTP endpoints talking over loopback.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use provider_sdk::media::endpoint::MAX_TIMESTAMP_JUMP;
use provider_sdk::media::g711::SAMPLES_PER_PACKET;
use provider_sdk::media::{
    encode_wav, read_wav, read_wav_bytes, write_wav, AfterAudio, AnswerError, Codec,
    EndpointConfig, EndpointReport, RtpEndpoint, SdpOffer, WavError,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- G.711

/// µ-law compression of ITU-T G.191 (`ulaw_compress`): one's complement for
/// negative inputs, bias 33 on the 14-bit magnitude.
fn g191_ulaw(x: i16) -> u8 {
    let mut absno: i32 = if x < 0 {
        (i32::from(!x) >> 2) + 33
    } else {
        (i32::from(x) >> 2) + 33
    };
    absno = absno.min(0x1fff);
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high = 8 - segno;
    let low = 0xf - ((absno >> segno) & 0xf);
    let mut out = (high << 4) | low;
    if x >= 0 {
        out |= 0x80;
    }
    out as u8
}

/// `linear2alaw` of the Sun reference implementation (identical to G.191's A-law).
fn sun_alaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut v = i32::from(pcm) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = SEG_END.iter().position(|end| v <= *end).unwrap_or(8) as i32;
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    let quant = if seg < 2 {
        (v >> 1) & 0xf
    } else {
        (v >> seg) & 0xf
    };
    (((seg << 4) | quant) ^ mask) as u8
}

/// `linear2ulaw` of the Sun reference implementation. It negates the
/// shifted value instead of taking the one's complement, so for some
/// negative inputs it lands one quantisation step away from G.191.
fn sun_ulaw(pcm: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
    let mut v = i32::from(pcm) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    v = v.min(8159) + (0x84 >> 2);
    let seg = SEG_END.iter().position(|end| v <= *end).unwrap_or(8) as i32;
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    (((seg << 4) | ((v >> (seg + 1)) & 0xf)) ^ mask) as u8
}

/// `ulaw2linear` and `alaw2linear` of the Sun reference implementation.
fn sun_ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let mut t = (i32::from(u & 0x0f) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

fn sun_alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    match (a & 0x70) >> 4 {
        0 => t += 8,
        1 => t += 0x108,
        seg => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

#[test]
fn g711_encoders_match_the_reference_for_every_input() {
    let mut sun_ulaw_differs = 0;
    for x in i16::MIN..=i16::MAX {
        assert_eq!(Codec::Pcma.encode_sample(x), sun_alaw(x), "A-law of {x}");
        assert_eq!(Codec::Pcmu.encode_sample(x), g191_ulaw(x), "µ-law of {x}");
        let sun = sun_ulaw(x);
        if sun != Codec::Pcmu.encode_sample(x) {
            // Only negative inputs, and only by one step.
            assert!(x < 0, "µ-law of {x}");
            let step = i32::from(Codec::Pcmu.decode_sample(sun))
                - i32::from(Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(x)));
            assert!(step.abs() <= 1024, "µ-law of {x}: {step}");
            sun_ulaw_differs += 1;
        }
    }
    // The two reference codes really differ (the comparison is not vacuous).
    assert!(sun_ulaw_differs > 0);
}

#[test]
fn g711_decoders_match_the_reference_for_every_code() {
    for code in 0..=255u8 {
        assert_eq!(
            Codec::Pcmu.decode_sample(code),
            sun_ulaw_decode(code),
            "µ-law {code:#04x}"
        );
        assert_eq!(
            Codec::Pcma.decode_sample(code),
            sun_alaw_decode(code),
            "A-law {code:#04x}"
        );
    }
}

#[test]
fn g711_known_values() {
    // (linear, µ-law, A-law) from the reference implementations' tables.
    let cases: [(i16, u8, u8); 8] = [
        (0, 0xff, 0xd5),
        (-1, 0x7f, 0x55),
        (8, 0xfe, 0xd5),
        (1000, 0xce, 0xfa),
        (-1000, 0x4e, 0x7a),
        (32767, 0x80, 0xaa),
        (-32768, 0x00, 0x2a),
        (4096, 0xaf, 0x85),
    ];
    for (linear, ulaw, alaw) in cases {
        assert_eq!(Codec::Pcmu.encode_sample(linear), ulaw, "µ-law of {linear}");
        assert_eq!(Codec::Pcma.encode_sample(linear), alaw, "A-law of {linear}");
    }
    assert_eq!(Codec::Pcmu.decode_sample(0x00), -32124);
    assert_eq!(Codec::Pcmu.decode_sample(0x80), 32124);
    assert_eq!(Codec::Pcma.decode_sample(0xd5), 8);
    assert_eq!(Codec::Pcma.decode_sample(0xaa), 32256);
    assert_eq!(Codec::Pcmu.silence(), 0xff);
    assert_eq!(Codec::Pcma.silence(), 0xd5);
}

#[test]
fn g711_segment_boundaries() {
    // The segment (chord) number of a code, 0 for the smallest magnitudes.
    let ulaw_seg = |x: i16| (!Codec::Pcmu.encode_sample(x) >> 4) & 7;
    let alaw_seg = |x: i16| ((Codec::Pcma.encode_sample(x) ^ 0x55) >> 4) & 7;
    // µ-law: biased 14-bit magnitude reaches 64, 128, ... 8192 at these inputs.
    let ulaw_starts = [124, 380, 892, 1916, 3964, 8060, 16252];
    // A-law: 13-bit magnitude reaches 32, 64, ... 2048 at these inputs.
    let alaw_starts = [256, 512, 1024, 2048, 4096, 8192, 16384];
    for (i, start) in ulaw_starts.into_iter().enumerate() {
        assert_eq!(ulaw_seg(start - 1), i as u8, "µ-law below {start}");
        assert_eq!(ulaw_seg(start), i as u8 + 1, "µ-law at {start}");
    }
    for (i, start) in alaw_starts.into_iter().enumerate() {
        assert_eq!(alaw_seg(start - 1), i as u8, "A-law below {start}");
        assert_eq!(alaw_seg(start), i as u8 + 1, "A-law at {start}");
    }
    // Segments only grow with the magnitude.
    let mut last = (0, 0);
    for x in 0..=i16::MAX {
        let now = (ulaw_seg(x), alaw_seg(x));
        assert!(now.0 >= last.0 && now.1 >= last.1, "at {x}");
        last = now;
    }
    assert_eq!(last, (7, 7));
}

#[test]
fn g711_round_trips() {
    for codec in Codec::ALL {
        for code in 0..=255u8 {
            let linear = codec.decode_sample(code);
            let again = codec.encode_sample(linear);
            // µ-law has two zeros (0x7f "negative zero" and 0xff); every other code is exact.
            if !(codec == Codec::Pcmu && code == 0x7f) {
                assert_eq!(again, code, "{codec} {code:#04x}");
            }
            assert_eq!(codec.decode_sample(again), linear);
        }
        for x in i16::MIN..=i16::MAX {
            let back = i32::from(codec.decode_sample(codec.encode_sample(x)));
            let err = (back - i32::from(x)).abs();
            // Half a quantisation step: at most 1/32 of the magnitude plus the
            // smallest step, and near full scale the codes' range ends at 32124/32256.
            let bound = i32::from(x).abs() / 32 + 16;
            assert!(
                err <= bound || i32::from(x).abs() > 32000,
                "{codec} {x} -> {back}"
            );
        }
    }
    let pcm: Vec<i16> = (0..800)
        .map(|i| ((i * 97) % 20000 - 10000) as i16)
        .collect();
    for codec in Codec::ALL {
        let encoded = codec.encode(&pcm);
        assert_eq!(encoded.len(), pcm.len());
        let decoded = codec.decode(&encoded);
        assert_eq!(codec.encode(&decoded), encoded);
    }
    assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
    assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
    assert_eq!(Codec::from_payload_type(18), None);
}

// ---------------------------------------------------------------- WAV

/// A WAV file assembled by hand: `fmt ` body, optional chunks before `data`.
fn wav_file(fmt: &[u8], before_data: &[(&[u8; 4], &[u8])], data: &[u8]) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    let mut chunk = |id: &[u8; 4], bytes: &[u8]| {
        body.extend_from_slice(id);
        body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        body.extend_from_slice(bytes);
        if bytes.len() % 2 == 1 {
            body.push(0);
        }
    };
    chunk(b"fmt ", fmt);
    for (id, bytes) in before_data {
        chunk(id, bytes);
    }
    chunk(b"data", data);
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    file.extend_from_slice(&body);
    file
}

fn fmt_chunk(code: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = channels * bits.div_ceil(8);
    let mut f = Vec::new();
    f.extend_from_slice(&code.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

fn tone(freq: f64, samples: usize, amplitude: f64) -> Vec<i16> {
    (0..samples)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

fn hound_file(dir: &tempfile::TempDir, name: &str, spec: hound::WavSpec) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..800 * u32::from(spec.channels) {
        match spec.sample_format {
            hound::SampleFormat::Float => w.write_sample(i as f32 / 1000.0).unwrap(),
            hound::SampleFormat::Int => w.write_sample(i as i32 % 100).unwrap(),
        }
    }
    w.finalize().unwrap();
    path
}

#[test]
fn wav_write_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let samples = tone(1000.0, 8000, 12000.0);
    write_wav(&path, &samples).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 16000);
    assert_eq!(read_wav(&path).unwrap(), samples);
    // hound reads what was written as 8 kHz mono 16-bit.
    let spec = hound::WavReader::open(&path).unwrap().spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    // In memory too, and an empty recording is a valid file.
    assert_eq!(
        read_wav_bytes(&encode_wav(&samples).unwrap()).unwrap(),
        samples
    );
    assert_eq!(
        read_wav_bytes(&encode_wav(&[]).unwrap()).unwrap(),
        Vec::<i16>::new()
    );
}

#[test]
fn wav_g711_files_are_decoded() {
    let samples = tone(440.0, 1600, 9000.0);
    for (code, codec) in [(6u16, Codec::Pcma), (7, Codec::Pcmu)] {
        let encoded = codec.encode(&samples);
        let file = wav_file(
            &fmt_chunk(code, 1, 8000, 8),
            &[(b"fact", &1600u32.to_le_bytes())],
            &encoded,
        );
        assert_eq!(
            read_wav_bytes(&file).unwrap(),
            codec.decode(&encoded),
            "{codec}"
        );
    }
}

#[test]
fn wav_extensible_and_padded_chunks_are_read() {
    let samples: Vec<i16> = vec![1, -2, 300, -32768, 32767];
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    // WAVE_FORMAT_EXTENSIBLE with the PCM sub-format GUID.
    let mut ext = fmt_chunk(0xfffe, 1, 8000, 16);
    ext.extend_from_slice(&22u16.to_le_bytes());
    ext.extend_from_slice(&16u16.to_le_bytes());
    ext.extend_from_slice(&4u32.to_le_bytes());
    ext.extend_from_slice(&[
        1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
    ]);
    assert_eq!(
        read_wav_bytes(&wav_file(&ext, &[], &data)).unwrap(),
        samples
    );
    // An odd-sized chunk before the audio is followed by a pad byte.
    let file = wav_file(&fmt_chunk(1, 1, 8000, 16), &[(b"LIST", b"abc")], &data);
    assert_eq!(read_wav_bytes(&file).unwrap(), samples);
}

fn unsupported(result: Result<Vec<i16>, WavError>) -> String {
    match result {
        Err(e @ WavError::Unsupported { .. }) => {
            let text = e.to_string();
            assert!(text.contains("expected 8000 Hz mono 16-bit PCM"), "{text}");
            assert!(
                text.contains("sox in.wav -r 8000 -c 1 -b 16 out.wav"),
                "{text}"
            );
            text
        }
        other => panic!("expected an unsupported-format error, got {other:?}"),
    }
}

#[test]
fn wav_other_formats_are_refused_with_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |channels, sample_rate, bits_per_sample, sample_format| hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample,
        sample_format,
    };
    let int = hound::SampleFormat::Int;
    let cases = [
        ("stereo.wav", spec(2, 8000, 16, int), "stereo (2 channels)"),
        ("cd.wav", spec(1, 44100, 16, int), "44100 Hz"),
        ("wide.wav", spec(1, 8000, 24, int), "24-bit PCM"),
        ("byte.wav", spec(1, 8000, 8, int), "8-bit PCM"),
        (
            "float.wav",
            spec(1, 8000, 32, hound::SampleFormat::Float),
            "32-bit IEEE float",
        ),
        (
            "surround.wav",
            spec(6, 48000, 16, int),
            "48000 Hz, 6 channels",
        ),
    ];
    for (name, spec, expected) in cases {
        let path = hound_file(&dir, name, spec);
        let text = unsupported(read_wav(&path));
        assert!(text.contains(expected), "{name}: {text}");
    }
    // G.711 files must be 8 kHz mono 8-bit too.
    let text = unsupported(read_wav_bytes(&wav_file(
        &fmt_chunk(7, 2, 8000, 8),
        &[],
        &[0; 4],
    )));
    assert!(text.contains("stereo (2 channels), 8-bit µ-law"), "{text}");
    let text = unsupported(read_wav_bytes(&wav_file(
        &fmt_chunk(0x55, 1, 8000, 0),
        &[],
        &[0; 4],
    )));
    assert!(text.contains("MP3"), "{text}");
}

#[test]
fn wav_broken_files_get_typed_errors() {
    let good = encode_wav(&tone(1000.0, 400, 5000.0)).unwrap();

    // Truncated audio: the data chunk says 800 bytes.
    match read_wav_bytes(&good[..good.len() - 100]) {
        Err(WavError::Truncated {
            chunk,
            declared,
            present,
        }) => assert_eq!((chunk.as_str(), declared, present), ("data", 800, 700)),
        other => panic!("{other:?}"),
    }
    // Cut inside the fmt chunk.
    assert!(matches!(
        read_wav_bytes(&good[..30]),
        Err(WavError::Truncated { ref chunk, .. }) if chunk == "fmt "
    ));
    // Cut right after the header: no chunks at all.
    assert!(
        matches!(read_wav_bytes(&good[..12]), Err(WavError::Malformed(m)) if m.contains("no fmt chunk"))
    );
    // No data chunk.
    assert!(
        matches!(read_wav_bytes(&good[..36]), Err(WavError::Malformed(m)) if m.contains("no data chunk"))
    );

    // Not a WAV file at all.
    for garbage in [
        &b""[..],
        b"RIFF",
        b"hello, this is not audio",
        b"RIFF\0\0\0\0AVI LIST",
    ] {
        assert!(
            matches!(read_wav_bytes(garbage), Err(WavError::NotWav)),
            "{garbage:?}"
        );
    }
    let e = read_wav_bytes(b"ID3\x03 an mp3 file").unwrap_err();
    assert_eq!(e.to_string(), "not a WAV file: no RIFF/WAVE header");

    // Structure errors.
    let data_first = {
        let mut f = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec();
        f.extend_from_slice(b"fmt \x10\0\0\0");
        f.extend_from_slice(&fmt_chunk(1, 1, 8000, 16));
        f
    };
    assert!(
        matches!(read_wav_bytes(&data_first), Err(WavError::Malformed(m)) if m.contains("before the fmt chunk"))
    );
    let short_fmt = wav_file(&fmt_chunk(1, 1, 8000, 16)[..14], &[], &[0; 2]);
    assert!(
        matches!(read_wav_bytes(&short_fmt), Err(WavError::Malformed(m)) if m.contains("fmt chunk is 14 bytes"))
    );
    let odd = wav_file(&fmt_chunk(1, 1, 8000, 16), &[], &[0; 3]);
    assert!(
        matches!(read_wav_bytes(&odd), Err(WavError::Malformed(m)) if m.contains("not a whole number"))
    );
    let zero_channels = wav_file(&fmt_chunk(1, 0, 8000, 16), &[], &[0; 2]);
    assert!(
        matches!(read_wav_bytes(&zero_channels), Err(WavError::Malformed(m)) if m.contains("0 channels"))
    );
    let mut bad_align = fmt_chunk(1, 1, 8000, 16);
    bad_align[12] = 4;
    assert!(matches!(
        read_wav_bytes(&wav_file(&bad_align, &[], &[0; 4])),
        Err(WavError::Malformed(m)) if m.contains("block alignment 4")
    ));

    // Files that cannot be opened.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    let e = read_wav(&missing).unwrap_err();
    assert!(matches!(e, WavError::Io { .. }));
    assert!(e.to_string().contains("missing.wav"), "{e}");
    assert!(matches!(
        write_wav(&dir.path().join("no/such/dir.wav"), &[0; 10]),
        Err(WavError::Io { .. })
    ));
}

// ---------------------------------------------------------------- SDP

fn offer() -> SdpOffer {
    SdpOffer::new(SocketAddrV4::new([192, 0, 2, 10].into(), 40000))
}

#[test]
fn offer_parses_back_with_the_sdp_crate() {
    let o = offer();
    let text = o.to_sdp();
    assert!(text.ends_with("\r\n") && !text.contains("\n\n"));
    let parsed =
        sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(text.as_bytes())).unwrap();
    assert_eq!(parsed.origin.session_id, o.session_id());
    assert_eq!(parsed.origin.unicast_address, "192.0.2.10");
    let c = parsed.connection_information.as_ref().unwrap();
    assert_eq!(
        (c.network_type.as_str(), c.address_type.as_str()),
        ("IN", "IP4")
    );
    assert_eq!(c.address.as_ref().unwrap().address, "192.0.2.10");
    assert_eq!(parsed.media_descriptions.len(), 1);
    let m = &parsed.media_descriptions[0];
    assert_eq!(m.media_name.media, "audio");
    assert_eq!(m.media_name.port.value, 40000);
    assert_eq!(m.media_name.protos, ["RTP", "AVP"]);
    assert_eq!(m.media_name.formats, ["0", "8", "101"]);
    let attr = |k: &str| -> Vec<String> {
        m.attributes
            .iter()
            .filter(|a| a.key == k)
            .map(|a| a.value.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(
        attr("rtpmap"),
        ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
    );
    assert_eq!(attr("fmtp"), ["101 0-15"]);
    assert_eq!(attr("ptime"), ["20"]);
    assert_eq!(attr("sendrecv"), [""]);
    // The sdp crate agrees on the codecs.
    let pcma = parsed.get_codec_for_payload_type(8).unwrap();
    assert_eq!((pcma.name.as_str(), pcma.clock_rate), ("PCMA", 8000));

    // Session ids are random.
    assert_ne!(offer().session_id(), offer().session_id());
    // Preference and single-codec offers.
    let pcma_first = offer().preferring(Codec::Pcma);
    assert_eq!(pcma_first.codecs(), [Codec::Pcma, Codec::Pcmu]);
    assert!(pcma_first
        .to_sdp()
        .contains("m=audio 40000 RTP/AVP 8 0 101\r\n"));
    let only = offer().only(Codec::Pcma);
    assert!(only.to_sdp().contains("m=audio 40000 RTP/AVP 8 101\r\n"));
    assert!(!only.to_sdp().contains("PCMU"));
}

fn answer(media: &str) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
    )
}

#[test]
fn good_answers() {
    let o = offer();
    let a = o
        .parse_answer(answer("m=audio 50000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        a.remote_rtp,
        "198.51.100.7:50000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(a.codec, Codec::Pcma);
    assert_eq!(a.telephone_event, Some(101));
    assert!(!a.rtcp_mux);

    // The answerer's order wins; a media-level c= overrides the session's;
    // rtcp-mux and a different telephone-event payload type are reported.
    let a = o
        .parse_answer(answer("m=audio 50002 RTP/AVP 8 0 96\r\nc=IN IP4 203.0.113.9\r\na=rtpmap:96 telephone-event/8000\r\na=rtcp-mux\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        a.remote_rtp,
        "203.0.113.9:50002".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        (a.codec, a.telephone_event, a.rtcp_mux),
        (Codec::Pcma, Some(96), true)
    );

    // Static payload types need no rtpmap; unknown formats first are skipped; IPv6 works.
    let a = o
        .parse_answer(b"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 0\r\n")
        .unwrap();
    assert_eq!(
        a.remote_rtp,
        "[2001:db8::1]:4000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!((a.codec, a.telephone_event), (Codec::Pcmu, None));
}

#[test]
fn bad_answers() {
    let o = offer();
    let parse = |body: String| o.parse_answer(body.as_bytes());
    assert!(matches!(
        o.parse_answer(b"not sdp at all"),
        Err(AnswerError::Unparsable(_))
    ));
    assert!(matches!(
        o.parse_answer(b""),
        Err(AnswerError::Unparsable(_))
    ));
    assert_eq!(parse(answer("")), Err(AnswerError::NoAudio));
    assert_eq!(
        parse(answer("m=video 5000 RTP/AVP 96\r\n")),
        Err(AnswerError::NoAudio)
    );
    assert_eq!(
        parse(answer("m=audio 0 RTP/AVP 0\r\n")),
        Err(AnswerError::AudioRejected)
    );

    let e = parse(answer(
        "m=audio 5000 RTP/AVP 18 97\r\na=rtpmap:97 opus/48000/2\r\n",
    ))
    .unwrap_err();
    assert!(matches!(e, AnswerError::NoCommonCodec { .. }));
    assert_eq!(
        e.to_string(),
        "SDP answer accepts none of the offered codecs (offered PCMU PCMA; answered 18 G729/8000, 97 opus/48000)"
    );
    // Accepting a codec that was not offered is no agreement.
    let pcmu_only = offer().only(Codec::Pcmu);
    assert!(matches!(
        pcmu_only.parse_answer(answer("m=audio 5000 RTP/AVP 8\r\n").as_bytes()),
        Err(AnswerError::NoCommonCodec { .. })
    ));
    // A static payload type mapped to something else is not that codec.
    assert!(matches!(
        parse(answer("m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 G722/8000\r\n")),
        Err(AnswerError::NoCommonCodec { .. })
    ));

    let no_c = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    assert_eq!(o.parse_answer(no_c.as_bytes()), Err(AnswerError::NoAddress));
    let hold = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    assert!(
        matches!(o.parse_answer(hold.as_bytes()), Err(AnswerError::Address(m)) if m.contains("hold"))
    );
    let name = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    assert!(
        matches!(o.parse_answer(name.as_bytes()), Err(AnswerError::Address(m)) if m.contains("not an IP address"))
    );
}

// ---------------------------------------------------------------- RTP endpoints

/// Power of `freq` in `samples` (Goertzel).
fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = f64::from(*x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

/// Asserts that `freq` dominates the recording, by Goertzel power against
/// other telephone-band frequencies and by zero-crossing rate.
fn assert_dominant(recording: &[i16], freq: f64) {
    let power = goertzel(recording, freq);
    for other in [250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0, 3000.0] {
        if other != freq {
            assert!(
                power > 100.0 * goertzel(recording, other),
                "{freq} Hz vs {other} Hz"
            );
        }
    }
    let crossings = recording
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count() as f64;
    let per_second = crossings * 8000.0 / recording.len() as f64;
    assert!(
        (per_second - 2.0 * freq).abs() < 0.05 * 2.0 * freq,
        "{per_second} crossings/s for {freq} Hz"
    );
}

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn finish(endpoint: RtpEndpoint) -> EndpointReport {
    tokio::time::timeout(Duration::from_secs(10), endpoint.stop())
        .await
        .expect("endpoint stops")
        .expect("endpoint ran without error")
}

async fn call_with_tones(codec: Codec) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    write_wav(&wav, &tone(1000.0, 8000, 10000.0)).unwrap();
    let audio_a = read_wav(&wav).unwrap();
    let audio_b = tone(500.0, 8000, 10000.0);

    let (sock_a, sock_b) = (socket().await, socket().await);
    let (addr_a, addr_b) = (sock_a.local_addr().unwrap(), sock_b.local_addr().unwrap());
    // A offers; B answers with the codec under test, as a peer would.
    let SocketAddr::V4(a4) = addr_a else {
        unreachable!()
    };
    let offer = SdpOffer::new(a4);
    let pt = codec.payload_type();
    let answer_body = format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {pt} 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        addr_b.port()
    );
    let answer = offer.parse_answer(answer_body.as_bytes()).unwrap();
    assert_eq!((answer.remote_rtp, answer.codec), (addr_b, codec));

    let hangup = CancellationToken::new();
    let a = RtpEndpoint::start(
        sock_a,
        EndpointConfig::from_answer(&answer),
        audio_a,
        &hangup,
    );
    let b = RtpEndpoint::start(sock_b, EndpointConfig::new(addr_a, codec), audio_b, &hangup);
    for e in [&a, &b] {
        tokio::time::timeout(Duration::from_secs(20), e.playback_finished())
            .await
            .expect("playback ends");
    }
    // Let the last packets arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.latched(), Some(addr_b));
    assert_eq!(b.latched(), Some(addr_a));
    let (ra, rb) = (finish(a).await, finish(b).await);

    for (report, freq) in [(&rb, 1000.0), (&ra, 500.0)] {
        assert_eq!(
            report.sent.packets, 50,
            "{codec}: 8000 samples are 50 packets"
        );
        assert_eq!(report.sent.payload_bytes, 50 * 160);
        let got = report.recording.len();
        assert!(
            (7200..=8800).contains(&got),
            "{codec}: recorded {got} samples"
        );
        assert_dominant(&report.recording, freq);
        let r = &report.received;
        assert!(r.audio_packets >= 45, "{codec}: {r:?}");
        assert_eq!(r.rtp.packets, r.audio_packets);
        assert!(r.rtp.lost <= 5, "{r:?}");
        assert_eq!(
            (
                r.malformed_packets,
                r.foreign_source_packets,
                r.other_payload_packets
            ),
            (0, 0, 0)
        );
    }
    // G.711 is lossless enough that the recorded tone is the sent one re-quantised.
    let sent = tone(1000.0, 8000, 10000.0);
    let len = rb.recording.len().min(sent.len());
    let err: f64 = rb.recording[..len]
        .iter()
        .zip(&sent[..len])
        .map(|(r, s)| (f64::from(*r) - f64::from(*s)).powi(2))
        .sum::<f64>()
        / len as f64;
    assert!(err.sqrt() < 400.0, "{codec}: rms error {}", err.sqrt());
}

#[tokio::test]
async fn loopback_call_pcmu() {
    call_with_tones(Codec::Pcmu).await;
}

#[tokio::test]
async fn loopback_call_pcma() {
    call_with_tones(Codec::Pcma).await;
}

#[tokio::test]
async fn player_packets_follow_rfc3550() {
    let peer = socket().await;
    let sock = socket().await;
    let me = sock.local_addr().unwrap();
    let samples: Vec<i16> = (0..1000).map(|i| (i * 31 % 4000) as i16 - 2000).collect();
    let cancel = CancellationToken::new();
    let e = RtpEndpoint::start(
        sock,
        EndpointConfig::new(peer.local_addr().unwrap(), Codec::Pcma),
        samples.clone(),
        &cancel,
    );
    let mut packets = Vec::new();
    let mut buf = [0u8; 1500];
    // 1000 samples are 7 packets, the last padded with silence.
    while packets.len() < 7 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("packet arrives")
            .unwrap();
        assert_eq!(from, me);
        packets.push(buf[..n].to_vec());
    }
    tokio::time::timeout(Duration::from_secs(5), e.playback_finished())
        .await
        .unwrap();
    let report = finish(e).await;
    assert_eq!(report.sent.packets, 7);
    // Nothing after the last one.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), peer.recv_from(&mut buf))
            .await
            .is_err()
    );

    let mut payload = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.len(), 12 + SAMPLES_PER_PACKET);
        assert_eq!(p[0], 0x80, "version 2, no padding/extension/CSRC");
        assert_eq!(p[1] & 0x80 != 0, i == 0, "marker only on the first packet");
        assert_eq!(p[1] & 0x7f, 8);
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        let first = &packets[0];
        assert_eq!(
            seq,
            u16::from_be_bytes([first[2], first[3]]).wrapping_add(i as u16)
        );
        assert_eq!(
            ts,
            u32::from_be_bytes([first[4], first[5], first[6], first[7]])
                .wrapping_add(160 * i as u32)
        );
        assert_eq!(ssrc, report.sent.ssrc);
        payload.extend_from_slice(&p[12..]);
    }
    let mut expected = Codec::Pcma.encode(&samples);
    expected.resize(7 * 160, Codec::Pcma.silence());
    assert_eq!(payload, expected);
}

/// An RTP packet with a constant payload of `value` encoded in PCMU.
fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn audio(value: i16) -> Vec<u8> {
    vec![Codec::Pcmu.encode_sample(value); 160]
}

#[tokio::test]
async fn recorder_places_by_timestamp_and_counts_the_rest() {
    let sock = socket().await;
    let target = sock.local_addr().unwrap();
    let peer = socket().await;
    let stranger = socket().await;
    let cancel = CancellationToken::new();
    // The SDP address is wrong on purpose: the endpoint must latch onto `peer`.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let e = RtpEndpoint::start(
        sock,
        EndpointConfig::new(nowhere, Codec::Pcmu).after_audio(AfterAudio::Silence),
        Vec::new(),
        &cancel,
    );
    let ssrc = 0x1234_5678;
    let v = |i: i16| i * 1000;
    let jump = 1000u32.wrapping_add(1 << 30);
    let mut rtcp = vec![0x80, 200, 0, 6];
    rtcp.extend_from_slice(&[0; 24]);
    let sequence: Vec<Vec<u8>> = vec![
        rtp(0, 1, 1000, ssrc, &audio(v(1))),
        rtp(0, 2, 1160, ssrc, &audio(v(2))),
        rtp(0, 2, 1160, ssrc, &audio(v(2))),         // duplicate
        rtp(0, 4, 1480, ssrc, &audio(v(4))),         // one packet lost before
        rtp(0, 3, 1320, ssrc, &audio(v(3))),         // too late: its place is silence now
        rtp(101, 5, 1480, ssrc, &[1, 0x80, 0, 160]), // DTMF event
        rtp(13, 6, 1640, ssrc, &[40]),               // comfort noise
        rtp(18, 7, 1640, ssrc, &[0; 20]),            // G.729: not negotiated
        rtcp,                                        // rtcp-mux
        b"STUN-ish junk".to_vec(),                   // not RTP
        rtp(0, 8, jump, ssrc, &audio(v(5))),         // bogus timestamp jump
        rtp(0, 9, jump.wrapping_add(160), ssrc, &audio(v(6))),
    ];
    for p in &sequence {
        peer.send_to(p, target).await.unwrap();
    }
    stranger
        .send_to(&rtp(0, 100, 5000, 99, &audio(7)), target)
        .await
        .unwrap();
    // The endpoint answers the latched peer, not the SDP address.
    let mut buf = [0u8; 1500];
    let (_, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("media comes back to the peer")
        .unwrap();
    assert_eq!(from, target);
    assert_eq!(e.remote(), peer.local_addr().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = finish(e).await;
    let r = report.received;
    assert_eq!(r.latched, Some(peer.local_addr().unwrap()));
    assert_eq!(r.audio_packets, 5);
    assert_eq!(r.late_packets, 2);
    assert_eq!(r.telephone_event_packets, 1);
    assert_eq!(r.comfort_noise_packets, 1);
    assert_eq!(r.other_payload_packets, 1);
    assert_eq!(r.rtcp_packets, 1);
    assert_eq!(r.malformed_packets, 1);
    assert_eq!(r.foreign_source_packets, 1);
    assert_eq!(r.timestamp_jumps, 1);
    assert_eq!(r.samples_dropped, 0);
    // Ten RTP packets from the peer fed the RFC 3550 statistics: the
    // duplicate makes up for the reordered one, nothing is lost.
    assert_eq!((r.rtp.packets, r.rtp.ssrc), (10, Some(ssrc)));
    assert!(r.rtp.lost <= 0, "{:?}", r.rtp);

    let rec = &report.recording;
    let decoded = |i: i16| Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(v(i)));
    assert!(rec[0..160].iter().all(|s| *s == decoded(1)));
    assert!(rec[160..320].iter().all(|s| *s == decoded(2)));
    assert!(
        rec[320..480].iter().all(|s| *s == 0),
        "the lost packet is silence"
    );
    assert!(rec[480..640].iter().all(|s| *s == decoded(4)));
    // After the jump: the silence that really passed (little here), then the last two packets.
    let tail = rec.len() - 320;
    assert!(
        (640..640 + 8000).contains(&tail),
        "recording of {} samples",
        rec.len()
    );
    assert!(rec[640..tail].iter().all(|s| *s == 0));
    assert!(rec[tail..tail + 160].iter().all(|s| *s == decoded(5)));
    assert!(rec[tail + 160..].iter().all(|s| *s == decoded(6)));
}

#[tokio::test]
async fn recording_is_bounded() {
    let sock = socket().await;
    let target = sock.local_addr().unwrap();
    let peer = socket().await;
    let cancel = CancellationToken::new();
    let mut config = EndpointConfig::new(peer.local_addr().unwrap(), Codec::Pcma);
    config.max_recording = Duration::from_secs(1);
    let e = RtpEndpoint::start(sock, config, Vec::new(), &cancel);
    let payload = vec![Codec::Pcma.encode_sample(3000); 160];
    // In range of belief (under MAX_TIMESTAMP_JUMP) but past the 1 s limit.
    let believable = (MAX_TIMESTAMP_JUMP.as_secs() as u32 - 1) * 8000;
    let mut ts = 0u32;
    for (seq, step) in [
        (1u16, 0u32),
        (2, 160),
        (3, believable),
        (4, 160),
        (5, 1 << 31),
        (6, 0x7000_0000),
    ] {
        ts = ts.wrapping_add(step);
        peer.send_to(&rtp(8, seq, ts, 1, &payload), target)
            .await
            .unwrap();
    }
    // Many packets in sequence fill the rest of the second, and then some.
    for seq in 7..=70u16 {
        ts = ts.wrapping_add(160);
        peer.send_to(&rtp(8, seq, ts, 1, &payload), target)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = finish(e).await;
    let r = report.received;
    assert!(
        report.recording.len() <= 8000,
        "{} samples",
        report.recording.len()
    );
    assert!(r.samples_dropped >= 320, "{r:?}");
    assert_eq!(r.timestamp_jumps, 2);
    assert_eq!(r.audio_packets + r.late_packets, 70);
}

#[tokio::test]
async fn cancellation_token_stops_the_endpoint() {
    let sock = socket().await;
    let peer = socket().await;
    let call = CancellationToken::new();
    let e = RtpEndpoint::start(
        sock,
        EndpointConfig::new(peer.local_addr().unwrap(), Codec::Pcmu).after_audio(AfterAudio::Loop),
        tone(1000.0, 400, 8000.0),
        &call,
    );
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("looping keeps sending")
            .unwrap();
    }
    call.cancel();
    tokio::time::timeout(Duration::from_secs(5), e.playback_finished())
        .await
        .expect("cancellation ends playback");
    let report = finish(e).await;
    assert!(report.sent.packets >= 5);
    // Stopped means silent: nothing more arrives once the queue is drained.
    while tokio::time::timeout(Duration::from_millis(100), peer.recv_from(&mut buf))
        .await
        .is_ok()
    {}
    assert!(
        tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf))
            .await
            .is_err()
    );
}

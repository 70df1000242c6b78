//! G.711 companding: µ-law (PCMU, RTP payload type 0) and A-law (PCMA,
//! payload type 8) to and from 16-bit linear PCM at 8 kHz.
//!
//! The per-sample arithmetic comes from the `audio-codec-algorithms` crate,
//! whose encoder is checked against the ITU-T G.191 reference tools for every
//! one of the 65536 inputs and whose decoder is the G.191 table; this module
//! adds the RTP view (payload types, SDP names, silence) and slice helpers.
//! Encoding keeps the 14 (µ-law) or 13 (A-law) most significant bits, as the
//! ITU reference code does.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// RTP clock rate and sample rate of G.711 (RFC 3551).
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms packet (the `ptime` this module's users send).
pub const SAMPLES_PER_PACKET: usize = 160;

/// The payload type offered for RFC 4733 `telephone-event/8000`.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The static payload type of RFC 3389 comfort noise.
pub const COMFORT_NOISE_PT: u8 = 13;

/// A G.711 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law (North America, Japan): PCMU, payload type 0.
    Pcmu,
    /// A-law (everywhere else): PCMA, payload type 8.
    Pcma,
}

impl Codec {
    /// Both variants, µ-law first (the order of a default offer).
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// The static RTP payload type (RFC 3551 table 4).
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of a static payload type, if it is 0 or 8.
    pub const fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoding name of `a=rtpmap` (`PCMU` or `PCMA`).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encodes one linear sample.
    pub fn encode_sample(self, linear: i16) -> u8 {
        match self {
            Codec::Pcmu => encode_ulaw(linear),
            Codec::Pcma => encode_alaw(linear),
        }
    }

    /// Decodes one G.711 byte.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => decode_ulaw(code),
            Codec::Pcma => decode_alaw(code),
        }
    }

    /// Appends the encoding of `pcm` to `out` (one byte per sample).
    pub fn encode_into(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|s| self.encode_sample(*s)));
    }

    /// Appends the decoding of `payload` to `out` (one sample per byte).
    pub fn decode_into(self, payload: &[u8], out: &mut Vec<i16>) {
        out.extend(payload.iter().map(|c| self.decode_sample(*c)));
    }

    /// Encodes a slice of linear samples.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(pcm.len());
        self.encode_into(pcm, &mut out);
        out
    }

    /// Decodes a slice of G.711 bytes.
    pub fn decode(self, payload: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(payload.len());
        self.decode_into(payload, &mut out);
        out
    }

    /// The code of linear zero (`0xFF` in µ-law, `0xD5` in A-law).
    pub fn silence(self) -> u8 {
        self.encode_sample(0)
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.encoding_name())
    }
}

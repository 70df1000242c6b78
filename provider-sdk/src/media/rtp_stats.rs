//! Receive statistics of one RTP stream, as RFC 3550 appendix A defines them.
//!
//! [`RtpStats::record`] is fed every RTP packet received from one endpoint
//! (header already parsed) with its arrival time; [`RtpStats::snapshot`]
//! returns packets, bytes, expected/lost (A.1 sequence tracking with
//! wrap-around, probation and re-sync; A.3 loss) and interarrival jitter (A.8).
//! Everything is integer arithmetic; the jitter estimator is kept scaled by 16
//! exactly like the RFC's reference code so no precision is lost.

use std::time::Duration;

/// RFC 3550 A.1 constants.
const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u32 = 3000;
const MAX_MISORDER: u32 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// The RTP header fields the statistics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeaderFields {
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeaderFields {
    /// Parses the fixed RTP header with the `rtp` crate. `None` when the
    /// packet is not a well-formed RTP packet (truncated header, CSRC list or
    /// extension, or a version other than 2).
    pub fn parse(packet: &[u8]) -> Option<RtpHeaderFields> {
        use webrtc_util::Unmarshal;
        let first = *packet.first()?;
        let fixed = 12 + 4 * usize::from(first & 0x0f);
        if packet.len() < fixed {
            return None;
        }
        if first & 0x10 != 0 {
            // The extension block must fit in the packet.
            let ext = packet.get(fixed..fixed + 4)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            if packet.len() < fixed + 4 + 4 * words {
                return None;
            }
        }
        // The crate parses only the fixed header and CSRCs here: its parser of
        // RFC 8285 extension elements trusts element lengths and panics on
        // crafted input (found by fuzzing), and statistics need no extensions.
        let mut head = [0u8; 12 + 4 * 15];
        head[..fixed].copy_from_slice(&packet[..fixed]);
        head[0] &= !0x10;
        let mut buf = &head[..fixed];
        let header = rtp::header::Header::unmarshal(&mut buf).ok()?;
        (header.version == 2).then_some(RtpHeaderFields {
            payload_type: header.payload_type,
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
        })
    }
}

/// Sequence-number state of RFC 3550 A.1 (`source` in the RFC).
#[derive(Debug, Clone, Default)]
struct SequenceState {
    max_seq: u16,
    /// Count of sequence number cycles, shifted (multiples of 65536).
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u64,
}

impl SequenceState {
    fn new(seq: u16) -> SequenceState {
        let mut s = SequenceState::default();
        s.init(seq);
        s.max_seq = seq.wrapping_sub(1);
        s.probation = MIN_SEQUENTIAL;
        s
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    /// Returns whether the packet is valid (counted) per A.1.
    fn update(&mut self, seq: u16) -> bool {
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        if self.probation > 0 {
            // The source is valid only once MIN_SEQUENTIAL packets arrived in sequence.
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            // In order, with permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
            // A very large jump: two sequential packets mean the sender restarted.
            if u32::from(seq) == self.bad_seq {
                self.init(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet, counted as received.
        self.received += 1;
        true
    }

    fn extended_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }
}

/// Clock rate per payload type (0 = unknown) and which payload types are
/// RFC 4733 events (their timestamps stay fixed during an event, so they are
/// left out of the jitter estimate).
#[derive(Debug, Clone)]
pub struct PayloadClock {
    rates: [u32; 128],
    events: u128,
}

impl Default for PayloadClock {
    fn default() -> Self {
        let mut c = PayloadClock {
            rates: [0; 128],
            events: 0,
        };
        // Static G.711/G.722/G.729 and friends: 8000 Hz RTP clock (RFC 3551).
        for pt in [0u8, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18] {
            c.rates[usize::from(pt)] = 8000;
        }
        c
    }
}

impl PayloadClock {
    /// Sets the clock rate of a payload type (ignored for pt >= 128).
    pub fn set(&mut self, pt: u8, rate: u32, telephone_event: bool) {
        if let Some(slot) = self.rates.get_mut(usize::from(pt)) {
            *slot = rate;
            let bit = 1u128 << pt;
            if telephone_event {
                self.events |= bit;
            } else {
                self.events &= !bit;
            }
        }
    }

    fn rate(&self, pt: u8) -> u32 {
        self.rates.get(usize::from(pt)).copied().unwrap_or(0)
    }

    fn is_event(&self, pt: u8) -> bool {
        pt < 128 && self.events & (1u128 << pt) != 0
    }
}

/// Running receive statistics of one stream.
#[derive(Debug, Clone, Default)]
pub struct RtpStats {
    packets: u64,
    bytes: u64,
    ssrc: Option<u32>,
    ssrc_changes: u64,
    seq: Option<SequenceState>,
    /// Lost packets of previous SSRCs (the count restarts with each source).
    lost_before: i64,
    expected_before: u64,
    /// Jitter estimate × 16, in timestamp units (A.8).
    jitter16: u64,
    jitter_rate: u32,
    last_transit: Option<u32>,
    last_arrival_ns: Option<u64>,
    pub clock: PayloadClock,
}

/// A copy of the statistics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpStatsSnapshot {
    /// RTP packets received (every valid RTP header, including probation).
    pub packets: u64,
    /// UDP payload bytes of those packets.
    pub bytes: u64,
    /// Packets expected from the sequence numbers (A.3), over all SSRCs seen.
    pub expected: u64,
    /// Cumulative packets lost (A.3); negative when duplicates arrived.
    pub lost: i64,
    /// Interarrival jitter in timestamp units (A.8).
    pub jitter_units: u32,
    /// The same jitter as a duration (using the payload's clock rate).
    pub jitter: Duration,
    /// The current SSRC.
    pub ssrc: Option<u32>,
    /// How often the SSRC changed.
    pub ssrc_changes: u64,
    /// Arrival time of the last packet, nanoseconds on the owner's clock.
    pub last_arrival_ns: Option<u64>,
}

impl RtpStats {
    /// Accounts one received RTP packet of `len` bytes that arrived at
    /// `arrival_ns` (nanoseconds on any monotonic clock).
    pub fn record(&mut self, h: &RtpHeaderFields, len: usize, arrival_ns: u64) {
        self.packets += 1;
        self.bytes += len as u64;
        self.last_arrival_ns = Some(arrival_ns);
        if self.ssrc != Some(h.ssrc) {
            if self.ssrc.is_some() {
                self.ssrc_changes += 1;
                let (lost, expected) = self.current_loss();
                self.lost_before += lost;
                self.expected_before += expected;
            }
            self.ssrc = Some(h.ssrc);
            self.seq = Some(SequenceState::new(h.sequence_number));
            self.last_transit = None;
        }
        let valid = match &mut self.seq {
            Some(s) => s.update(h.sequence_number),
            None => false,
        };
        if !valid {
            return;
        }
        let rate = self.clock.rate(h.payload_type);
        if rate == 0 || self.clock.is_event(h.payload_type) {
            return;
        }
        if rate != self.jitter_rate {
            // A codec switch changes the timestamp unit: restart the estimate.
            self.jitter_rate = rate;
            self.last_transit = None;
            self.jitter16 = 0;
        }
        // Arrival in RTP timestamp units; only differences matter, so the
        // truncation to 32 bits wraps consistently with the RTP timestamp.
        let arrival_units = (u128::from(arrival_ns) * u128::from(rate) / 1_000_000_000) as u32;
        let transit = arrival_units.wrapping_sub(h.timestamp);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            // J += (|D| - J) / 16, with J kept ×16 (A.8).
            self.jitter16 = (self.jitter16 + d).saturating_sub((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    fn current_loss(&self) -> (i64, u64) {
        match &self.seq {
            Some(s) if s.probation == 0 => {
                let expected = s.expected();
                (expected as i64 - s.received as i64, expected)
            }
            _ => (0, 0),
        }
    }

    /// The statistics so far.
    pub fn snapshot(&self) -> RtpStatsSnapshot {
        let (lost, expected) = self.current_loss();
        let jitter_units = u32::try_from(self.jitter16 >> 4).unwrap_or(u32::MAX);
        let jitter = if self.jitter_rate > 0 {
            Duration::from_nanos(
                u64::from(jitter_units) * 1_000_000_000 / u64::from(self.jitter_rate),
            )
        } else {
            Duration::ZERO
        };
        RtpStatsSnapshot {
            packets: self.packets,
            bytes: self.bytes,
            expected: self.expected_before + expected,
            lost: self.lost_before + lost,
            jitter_units,
            jitter,
            ssrc: self.ssrc,
            ssrc_changes: self.ssrc_changes,
            last_arrival_ns: self.last_arrival_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: u16, ts: u32) -> RtpHeaderFields {
        RtpHeaderFields {
            payload_type: 0,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 7,
        }
    }

    /// Feeds packets with the given sequence numbers, 20 ms apart on both clocks.
    fn feed(seqs: &[u16]) -> RtpStatsSnapshot {
        let mut s = RtpStats::default();
        for (i, seq) in seqs.iter().enumerate() {
            let t = u32::from(*seq).wrapping_mul(160);
            s.record(&h(*seq, t), 172, i as u64 * 20_000_000);
        }
        s.snapshot()
    }

    #[test]
    fn no_loss_in_order() {
        let s = feed(&[10, 11, 12, 13, 14]);
        assert_eq!((s.packets, s.expected, s.lost), (5, 4, 0));
    }

    #[test]
    fn gap_counts_as_loss() {
        let s = feed(&[10, 11, 12, 15, 16]);
        assert_eq!((s.expected, s.lost), (6, 2));
    }

    #[test]
    fn wrap_around_is_not_loss() {
        let s = feed(&[65533, 65534, 65535, 0, 1, 2]);
        assert_eq!((s.expected, s.lost), (5, 0));
    }

    #[test]
    fn late_packet_reduces_loss() {
        let s = feed(&[1, 2, 3, 5, 6, 4, 7]);
        assert_eq!((s.expected, s.lost), (6, 0));
    }

    #[test]
    fn duplicates_give_negative_loss() {
        let s = feed(&[1, 2, 3, 3, 4]);
        assert_eq!(s.lost, -1);
    }

    #[test]
    fn restart_after_big_jump_resyncs() {
        let s = feed(&[1, 2, 3, 40000, 40001, 40002]);
        // 40000 is held as a suspected restart; 40001 confirms it and restarts counting.
        assert_eq!((s.expected, s.lost), (2, 0));
    }

    #[test]
    fn jitter_zero_for_perfect_timing_and_grows_with_variation() {
        assert_eq!(feed(&[1, 2, 3, 4, 5, 6]).jitter_units, 0);
        let mut s = RtpStats::default();
        // Alternate 10 ms early / on time: |D| = 80 units on every packet after the first.
        for i in 0..200u32 {
            let arrival = u64::from(i) * 20_000_000 + if i % 2 == 1 { 10_000_000 } else { 0 };
            s.record(&h(i as u16, i * 160), 172, arrival);
        }
        let snap = s.snapshot();
        // J converges to |D| = 80 units = 10 ms at 8 kHz.
        assert!((78..=80).contains(&snap.jitter_units), "{snap:?}");
        assert!(
            snap.jitter >= Duration::from_micros(9_750) && snap.jitter <= Duration::from_millis(10)
        );
    }

    #[test]
    fn telephone_events_do_not_disturb_jitter() {
        let mut s = RtpStats::default();
        s.clock.set(101, 8000, true);
        for i in 0..50u32 {
            let pt = if (20..30).contains(&i) { 101 } else { 0 };
            // Events keep one timestamp for their whole duration.
            let ts = if pt == 101 { 20 * 160 } else { i * 160 };
            let hdr = RtpHeaderFields {
                payload_type: pt,
                sequence_number: i as u16,
                timestamp: ts,
                ssrc: 7,
            };
            s.record(&hdr, 172, u64::from(i) * 20_000_000);
        }
        assert_eq!(s.snapshot().jitter_units, 0);
        assert_eq!(s.snapshot().lost, 0);
    }

    #[test]
    fn parse_rejects_non_rtp() {
        assert!(RtpHeaderFields::parse(&[0x80, 0, 0, 1]).is_none());
        assert!(RtpHeaderFields::parse(&[0x00; 12]).is_none());
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = 8;
        p[3] = 5;
        assert_eq!(
            RtpHeaderFields::parse(&p).map(|h| (h.payload_type, h.sequence_number)),
            Some((8, 5))
        );
        // Claims 15 CSRCs but has none.
        p[0] = 0x8f;
        assert!(RtpHeaderFields::parse(&p).is_none());
        // A one-byte-header extension (RFC 8285) whose element claims more
        // bytes than the block holds: malformed elements are not our concern,
        // the fixed header still parses and nothing panics.
        let mut x = vec![
            0x90, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x1f, 0, 0, 0,
        ];
        assert_eq!(
            RtpHeaderFields::parse(&x).map(|h| h.sequence_number),
            Some(9)
        );
        // An extension block longer than the packet is malformed.
        x[15] = 9;
        assert!(RtpHeaderFields::parse(&x).is_none());
    }
}

//! WAV reading of arbitrary bytes: never panics, never returns more samples
//! than the input could hold, and whatever it accepts survives a write and
//! a read back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provider_sdk::media::{encode_wav, read_wav_bytes};

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = read_wav_bytes(data) {
        // At least one byte per sample (8-bit G.711), after a 44-byte header at the least.
        assert!(samples.len() + 44 <= data.len());
        let written = encode_wav(&samples).expect("accepted audio can be written");
        assert_eq!(read_wav_bytes(&written).expect("written file reads back"), samples);
    }
});

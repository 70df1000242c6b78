#![no_main]
//! Any string as a phone number or prefix: never panics; an accepted number
//! is 1..=15 digits without a leading zero and normalises to itself.

use libfuzzer_sys::fuzz_target;
use provider_sdk::number::{Prefix, E164};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = E164::parse(s) {
        let d = n.digits();
        assert!((1..=15).contains(&d.len()));
        assert!(d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'));
        assert_eq!(E164::parse(&n.to_string()), Ok(n));
        let p = Prefix::of_number(&n, d.len()).expect("whole number is a prefix");
        assert!(p.matches(&n));
    }
    if let Ok(p) = Prefix::parse(s) {
        assert_eq!(Prefix::parse(p.digits()), Ok(p));
    }
});

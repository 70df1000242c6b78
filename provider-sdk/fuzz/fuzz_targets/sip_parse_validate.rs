//! Any bytes through the validation layer, as a datagram and as a stream:
//! nothing may panic, accepted requests must encode an answer, and stream
//! framing must never claim more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provider_sdk::sip::message::Reply;
use provider_sdk::sip::wire::{frame_stream, StreamFrame};
use provider_sdk::sip::{validate, Policy, Verdict};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    match validate(data, &policy) {
        Verdict::Request(req) => {
            let _ = req.header("Via");
            let answer = Reply::new(200, "OK").encode(&req.echo(), "t");
            assert!(answer.starts_with(b"SIP/2.0 200 OK\r\n"));
        }
        Verdict::Reject(r) => {
            let _ = Reply::for_rejection(&r).encode(&r.echo, "t");
        }
        Verdict::Response(_) | Verdict::Drop(_) => {}
    }
    match frame_stream(data) {
        StreamFrame::Complete(n) | StreamFrame::KeepAlive(n) => assert!(n <= data.len()),
        StreamFrame::Incomplete | StreamFrame::Broken => {}
    }
});

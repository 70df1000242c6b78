//! The user agent's audio work in isolation: G.711 encoding and decoding
//! (every 20 ms packet sent or recorded) and reading a WAV file (once per call).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use provider_sdk::media::{encode_wav, read_wav_bytes, Codec};
use std::hint::black_box;

/// One minute of a 1 kHz tone at 8 kHz.
fn minute() -> Vec<i16> {
    (0..8000 * 60)
        .map(|n| (10000.0 * (2.0 * std::f64::consts::PI * n as f64 / 8.0).sin()) as i16)
        .collect()
}

fn g711(c: &mut Criterion) {
    let pcm = minute();
    let mut g = c.benchmark_group("media_g711");
    g.throughput(Throughput::Elements(pcm.len() as u64));
    for codec in Codec::ALL {
        let encoded = codec.encode(&pcm);
        g.bench_function(format!("encode_one_minute_{codec}"), |b| {
            b.iter(|| codec.encode(black_box(&pcm)))
        });
        g.bench_function(format!("decode_one_minute_{codec}"), |b| {
            b.iter(|| codec.decode(black_box(&encoded)))
        });
    }
    g.finish();
}

fn wav(c: &mut Criterion) {
    let file = encode_wav(&minute()).expect("one minute fits in a WAV file");
    let mut g = c.benchmark_group("media_wav");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("read_one_minute_pcm16", |b| {
        b.iter(|| read_wav_bytes(black_box(&file)))
    });
    g.finish();
}

criterion_group!(benches, g711, wav);
criterion_main!(benches);

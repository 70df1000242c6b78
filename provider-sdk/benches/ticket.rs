//! Ticket signing and verification per second on one core.
//!
//! - `ticket/sign`: a payer signs one ticket (JSON + base64 + Ed25519).
//! - `ticket/verify`: a provider's full check of one fresh ticket (decode,
//!   certificate lookup with the verified-certificate cache warm, signature,
//!   claims, rate, replay cache insert), as on every INVITE.
//! - `ticket/verify_cold_certificate`: the same with the signer's
//!   certificate verified against the root every time (first INVITE of a
//!   payer, or a new certificate).
//! - `ticket/signature_only`: one Ed25519 `verify_strict` over a ticket.
//! - `ticket/batch_verify/64`: ed25519-dalek batch verification of 64
//!   ticket signatures (what central's ledger uses when ingesting in bulk);
//!   throughput is per signature.
//!
//! Every function is measured twice: group `ticket` in wall-clock time (as
//! criterion does by default), group `ticket_cpu` in CPU time of the
//! benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), which is what "per
//! second per core" means and stays meaningful on a machine shared with
//! other work (time the thread spends waiting for a core is not counted).
//!
//! Run: `cargo bench -p provider-sdk --bench ticket`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use provider_sdk::number::E164;
use provider_sdk::pki::{KeyId, ParticipantKey, RootCertificate};
use provider_sdk::ticket::jws;
use provider_sdk::ticket::{
    CallExpectation, CertificateLookupError, CertificateSource, CertificateStatus, MinimumTerms,
    RateTerms, Ticket, TicketSigner, TicketVerifier, PPT_TICKET,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose,
};
use rust_decimal::Decimal;
use uuid::Uuid;

const CALL_ID: &str = "a84b4c76e66710@127.0.0.1";

struct MapSource(HashMap<KeyId, CertificateStatus>);

impl CertificateSource for MapSource {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        self.0
            .get(kid)
            .cloned()
            .ok_or(CertificateLookupError::Unknown)
    }
}

struct Setup {
    root_der: Vec<u8>,
    payer: ParticipantKey,
    source: MapSource,
    now: DateTime<Utc>,
}

fn setup() -> Setup {
    let root_key = ParticipantKey::generate()
        .rcgen_key_pair()
        .expect("root key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Central Root");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root_cert = params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(params, root_key);

    let payer = ParticipantKey::generate();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "Home Telecom");
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "provider:7");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.use_authority_key_identifier_extension = true;
    let der = leaf
        .signed_by(&payer.rcgen_key_pair().expect("payer key"), &issuer)
        .expect("leaf")
        .der()
        .to_vec();
    let mut map = HashMap::new();
    map.insert(
        payer.key_id(),
        CertificateStatus {
            der,
            revoked: false,
        },
    );
    Setup {
        root_der: root_cert.der().to_vec(),
        payer,
        source: MapSource(map),
        now: Utc::now(),
    }
}

fn ticket(now: DateTime<Utc>) -> Ticket {
    Ticket {
        iss: 7,
        payer: "Home Telecom".into(),
        aud: 42,
        orig: E164::parse("+4930123456").expect("number"),
        dest: E164::parse("+441632960001").expect("number"),
        call_id: CALL_ID.into(),
        rate: RateTerms {
            per_minute: Decimal::new(125, 4),
            connect_fee: Decimal::ZERO,
            first_increment: 60,
            next_increment: 60,
            currency: "EUR".parse().expect("currency"),
            version: 3,
        },
        iat: now.timestamp(),
        exp: now.timestamp() + 60,
        jti: Uuid::now_v7(),
    }
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement in thread CPU time.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Shows CPU times in µs and throughput in elements per CPU-second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical_ns: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e3);
        "µs cpu"
    }
    fn scale_throughputs(
        &self,
        _typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let n = match *throughput {
            Throughput::Elements(n)
            | Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Bits(n) => n,
        } as f64;
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/cpu-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn wall(c: &mut Criterion) {
    bench(c, "ticket");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    bench(c, "ticket_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let s = setup();
    let signer = TicketSigner::new(
        ParticipantKey::from_pkcs8_der(&s.payer.to_pkcs8_der().expect("der")).expect("key"),
        "https://127.0.0.1:8443",
    );
    let root = RootCertificate::from_der(&s.root_der).expect("root");
    let dest = E164::parse("+441632960001").expect("number");
    let minimum = MinimumTerms {
        per_minute: Decimal::new(125, 4),
        connect_fee: Decimal::ZERO,
        first_increment: 60,
        next_increment: 60,
        currency: "EUR".parse().expect("currency"),
    };
    let call = CallExpectation {
        dest: &dest,
        call_id: CALL_ID,
        minimum: &minimum,
    };

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    let t = ticket(s.now);
    group.bench_function("sign", |b| {
        b.iter(|| signer.sign_ticket(std::hint::black_box(&t)).expect("sign"))
    });

    let verifier = TicketVerifier::new(root.clone(), &s.source, 42);
    group.bench_function("verify", |b| {
        b.iter_batched(
            || signer.sign_ticket(&ticket(s.now)).expect("sign"),
            |token| {
                verifier
                    .verify_ticket(&token, &call, s.now)
                    .expect("verify")
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("verify_cold_certificate", |b| {
        b.iter_batched(
            || {
                (
                    signer.sign_ticket(&ticket(s.now)).expect("sign"),
                    TicketVerifier::new(root.clone(), &s.source, 42),
                )
            },
            |(token, fresh)| fresh.verify_ticket(&token, &call, s.now).expect("verify"),
            BatchSize::SmallInput,
        )
    });

    let token = signer.sign_ticket(&t).expect("sign");
    let decoded = jws::decode(&token, PPT_TICKET).expect("decode");
    let key = s.payer.verifying_key();
    group.bench_function("signature_only", |b| {
        b.iter(|| decoded.verify_signature(&key).expect("signature"))
    });

    const BATCH: usize = 64;
    let tokens: Vec<String> = (0..BATCH)
        .map(|_| signer.sign_ticket(&ticket(s.now)).expect("sign"))
        .collect();
    let decoded: Vec<_> = tokens
        .iter()
        .map(|t| jws::decode(t, PPT_TICKET).expect("decode"))
        .collect();
    let inputs: Vec<&[u8]> = decoded.iter().map(|d| d.signing_input.as_bytes()).collect();
    let signatures: Vec<Signature> = decoded.iter().map(|d| d.signature).collect();
    let keys: Vec<VerifyingKey> = vec![key; BATCH];
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("batch_verify/64", |b| {
        b.iter(|| jws::verify_batch(&inputs, &signatures, &keys).expect("batch"))
    });
    group.finish();
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_clock, cpu_time);

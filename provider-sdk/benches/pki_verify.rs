//! Certificate verification against the pinned root: what a provider pays
//! per ticket when the signer's certificate is not cached as verified, and
//! what central pays per mutual-TLS connection to identify the peer.

use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use provider_sdk::pki::{verify_certificate, ParticipantKey, RootCertificate, Serial};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SerialNumber,
};
use std::hint::black_box;

/// A root and a provider certificate shaped like those central issues.
fn fixture() -> (Vec<u8>, Vec<u8>) {
    let root_key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Bench Root");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = params.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(params, root_key);

    let leaf_key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "Bench Telecom");
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "provider:42");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.serial_number = Some(SerialNumber::from_slice(Serial::generate().as_bytes()));
    leaf.use_authority_key_identifier_extension = true;
    let now = Utc::now().timestamp();
    leaf.not_before = time::OffsetDateTime::from_unix_timestamp(now - 3600).unwrap();
    leaf.not_after = time::OffsetDateTime::from_unix_timestamp(now + 86_400).unwrap();
    let cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (root.der().to_vec(), cert.der().to_vec())
}

fn bench(c: &mut Criterion) {
    let (root_der, cert_der) = fixture();
    let root = RootCertificate::from_der(&root_der).unwrap();
    let now = Utc::now() + Duration::seconds(1);
    assert!(root.verify(&cert_der, now).is_ok());

    c.bench_function("pki/verify_certificate (pinned root parsed once)", |b| {
        b.iter(|| root.verify(black_box(&cert_der), now).unwrap())
    });
    c.bench_function("pki/verify_certificate (root DER parsed per call)", |b| {
        b.iter(|| verify_certificate(black_box(&cert_der), black_box(&root_der), now).unwrap())
    });
    c.bench_function("pki/generate key + CSR", |b| {
        b.iter(|| ParticipantKey::generate().csr_pem("Bench Telecom").unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

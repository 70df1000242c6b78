//! Arbitrary bytes as a certificate, a root certificate, a private key (DER
//! and PEM) and as the textual ids: every input must give a result, never a
//! panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use provider_sdk::pki::{KeyId, ParticipantKey, RootCertificate, Role, Serial};

/// A real root, so certificate inputs get past the root checks.
fn root() -> &'static RootCertificate {
    static ROOT: OnceLock<RootCertificate> = OnceLock::new();
    ROOT.get_or_init(|| {
        let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
        let mut params = rcgen_params();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        RootCertificate::from_der(cert.der()).unwrap()
    })
}

fn rcgen_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Fuzz Root");
    params
}

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc::now();
    let _ = root().verify(data, now);
    let _ = RootCertificate::from_der(data);
    let _ = ParticipantKey::from_pkcs8_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = root().verify_pem(text, now);
        let _ = RootCertificate::from_pem(text);
        let _ = ParticipantKey::from_pkcs8_pem(text);
        let _ = text.parse::<Role>();
        let _ = text.parse::<KeyId>();
        let _ = text.parse::<Serial>();
    }
});

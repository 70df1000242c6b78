//! Verification of certificates against a pinned root, with certificates
//! built directly with rcgen so that shapes central would never issue can be
//! checked too (central's CA has its own round-trip tests).

use chrono::{DateTime, Duration, Utc};
use provider_sdk::pki::{
    verify_certificate, ParticipantKey, PkiError, Role, RootCertificate, Serial, CLOCK_SKEW,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

struct TestRoot {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn root(cn: &str) -> TestRoot {
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    TestRoot {
        der: cert.der().to_vec(),
        issuer: Issuer::new(params, key),
    }
}

fn ts(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap()
}

/// A participant certificate shaped like central's, with knobs.
struct Leaf {
    ou: Option<&'static str>,
    eku: Vec<ExtendedKeyUsagePurpose>,
    ku: Vec<KeyUsagePurpose>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    serial: Serial,
}

impl Default for Leaf {
    fn default() -> Self {
        let now = Utc::now();
        Leaf {
            ou: Some("provider:42"),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ku: vec![KeyUsagePurpose::DigitalSignature],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(30),
            serial: Serial::generate(),
        }
    }
}

impl Leaf {
    fn issue(&self, root: &TestRoot, key: &KeyPair) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Example Telecom");
        if let Some(ou) = self.ou {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = self.eku.clone();
        params.key_usages = self.ku.clone();
        params.not_before = ts(self.not_before);
        params.not_after = ts(self.not_after);
        params.serial_number = Some(SerialNumber::from_slice(self.serial.as_bytes()));
        params.use_authority_key_identifier_extension = true;
        params.signed_by(key, &root.issuer).unwrap().der().to_vec()
    }
}

#[test]
fn valid_certificate_yields_what_it_certifies() {
    let root = root("Test Root");
    let key = ParticipantKey::generate();
    let leaf = Leaf::default();
    let der = leaf.issue(&root, &key.rcgen_key_pair().unwrap());
    let got = verify_certificate(&der, &root.der, Utc::now()).unwrap();
    assert_eq!(got.key_id, key.key_id());
    assert_eq!(got.verifying_key, key.verifying_key());
    assert_eq!(got.subject_cn, "Example Telecom");
    assert_eq!(got.role, Role::Provider(42));
    assert_eq!(got.serial, leaf.serial);
    assert_eq!(got.not_before.timestamp(), leaf.not_before.timestamp());
    assert_eq!(got.not_after.timestamp(), leaf.not_after.timestamp());
}

#[test]
fn validity_window_allows_the_clock_skew_and_no_more() {
    let root = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let skew = Duration::from_std(CLOCK_SKEW).unwrap();
    let leaf = Leaf {
        not_before: now,
        not_after: now + Duration::hours(1),
        ..Leaf::default()
    };
    let der = leaf.issue(&root, &key);
    let root = RootCertificate::from_der(&root.der).unwrap();
    assert!(root.verify(&der, now - skew).is_ok());
    assert!(root.verify(&der, leaf.not_after + skew).is_ok());
    match root.verify(&der, now - skew - Duration::seconds(1)) {
        Err(PkiError::NotYetValid { not_before }) => assert_eq!(not_before, now),
        other => panic!("{other:?}"),
    }
    match root.verify(&der, leaf.not_after + skew + Duration::seconds(1)) {
        Err(PkiError::Expired { not_after }) => assert_eq!(not_after, leaf.not_after),
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_key_types_are_refused() {
    let root = root("Test Root");
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = Leaf::default().issue(&root, &ec);
    let err = verify_certificate(&der, &root.der, Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::WrongKeyType(_)), "{err}");
}

#[test]
fn role_must_be_present_and_valid() {
    let root = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let der = Leaf {
        ou: None,
        ..Leaf::default()
    }
    .issue(&root, &key);
    let err = verify_certificate(&der, &root.der, Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::MissingRole), "{err}");
    let der = Leaf {
        ou: Some("admin"),
        ..Leaf::default()
    }
    .issue(&root, &key);
    let err = verify_certificate(&der, &root.der, Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidRole(_)), "{err}");
}

#[test]
fn usage_must_match_the_role() {
    let root = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let now = Utc::now();
    // A provider certificate usable only by TLS servers.
    let der = Leaf {
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..Leaf::default()
    }
    .issue(&root, &key);
    let err = verify_certificate(&der, &root.der, now).unwrap_err();
    assert!(matches!(err, PkiError::WrongUsage(_)), "{err}");
    // A server certificate usable only by clients.
    let der = Leaf {
        ou: Some("server"),
        ..Leaf::default()
    }
    .issue(&root, &key);
    let err = verify_certificate(&der, &root.der, now).unwrap_err();
    assert!(matches!(err, PkiError::WrongUsage(_)), "{err}");
    // A provider certificate whose key may not sign.
    let der = Leaf {
        ku: vec![KeyUsagePurpose::KeyAgreement],
        ..Leaf::default()
    }
    .issue(&root, &key);
    let err = verify_certificate(&der, &root.der, now).unwrap_err();
    assert!(
        matches!(err, PkiError::WrongUsage(ref m) if m.contains("digitalSignature")),
        "{err}"
    );
    // The same server shape with serverAuth is fine.
    let der = Leaf {
        ou: Some("server"),
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..Leaf::default()
    }
    .issue(&root, &key);
    assert_eq!(
        verify_certificate(&der, &root.der, now).unwrap().role,
        Role::Server
    );
}

#[test]
fn certificates_of_another_root_are_refused() {
    let ours = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    // Another root with another name, and an impostor copying our root's name.
    for theirs in [root("Other Root"), root("Test Root")] {
        let der = Leaf::default().issue(&theirs, &key);
        let err = verify_certificate(&der, &ours.der, Utc::now()).unwrap_err();
        assert!(matches!(err, PkiError::NotSignedByRoot), "{err}");
    }
}

#[test]
fn tampered_certificates_are_refused() {
    let root = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let der = Leaf::default().issue(&root, &key);
    // Change the subject CN ("Example Telecom" -> "Fxample Telecom").
    let at = der
        .windows(7)
        .position(|w| w == b"Example")
        .expect("CN bytes present");
    let mut forged = der.clone();
    forged[at] = b'F';
    let err = verify_certificate(&forged, &root.der, Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::BadSignature), "{err}");
    // Spoil the role: still reported as a forgery, not as a bad role.
    let at = der
        .windows(11)
        .position(|w| w == b"provider:42")
        .expect("OU bytes present");
    let mut forged = der.clone();
    forged[at + 10] = b'x';
    let err = verify_certificate(&forged, &root.der, Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::BadSignature), "{err}");
    // Flip a bit in the signature (the last bytes of the DER).
    let mut forged = der.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let err = verify_certificate(&forged, &root.der, Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::BadSignature), "{err}");
}

#[test]
fn malformed_certificates_are_errors_not_panics() {
    let root = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let der = Leaf::default().issue(&root, &key);
    let pinned = RootCertificate::from_der(&root.der).unwrap();
    let now = Utc::now();
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0x30], vec![0xff; 64], b"hello".to_vec()];
    for cut in [1, 10, der.len() / 2, der.len() - 1] {
        inputs.push(der[..cut].to_vec());
    }
    let mut trailing = der.clone();
    trailing.push(0);
    inputs.push(trailing);
    for input in &inputs {
        let err = pinned.verify(input, now).unwrap_err();
        assert!(
            matches!(err, PkiError::MalformedCertificate(_)),
            "{} bytes: {err}",
            input.len()
        );
    }
    // Every single-byte corruption is refused without panicking.
    for i in 0..der.len() {
        let mut bad = der.clone();
        bad[i] ^= 0x5a;
        assert!(
            pinned.verify(&bad, now).is_err(),
            "corruption at byte {i} accepted"
        );
    }
    for pem in [
        "",
        "not pem",
        "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n",
    ] {
        let err = pinned.verify_pem(pem, now).unwrap_err();
        assert!(matches!(err, PkiError::BadPem(_)), "{pem:?}: {err}");
    }
}

#[test]
fn unusable_roots_are_refused() {
    let root = root("Test Root");
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let leaf = Leaf::default().issue(&root, &key);
    // A leaf is not a CA.
    let err = RootCertificate::from_der(&leaf).unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidRoot(ref m) if m.contains("CA")),
        "{err}"
    );
    // An ECDSA root.
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ec_root = params.self_signed(&ec).unwrap();
    let err = RootCertificate::from_der(ec_root.der()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidRoot(_)), "{err}");
    // Garbage.
    let err = verify_certificate(&leaf, b"garbage", Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidRoot(_)), "{err}");
    // A root whose self-signature was tampered with.
    let mut bad = root.der.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = RootCertificate::from_der(&bad).unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidRoot(ref m) if m.contains("self-signature")),
        "{err}"
    );
}

#[test]
fn root_pem_round_trips() {
    let root = root("Test Root");
    let pinned = RootCertificate::from_der(&root.der).unwrap();
    let again = RootCertificate::from_pem(&pinned.pem()).unwrap();
    assert_eq!(again.der().as_ref(), root.der.as_slice());
    assert_eq!(again.subject_cn(), "Test Root");
}

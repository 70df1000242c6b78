//! The certificate authority end to end with the provider SDK: a provider
//! generates a key, sends a CSR, gets a certificate, and anyone holding the
//! pinned root verifies it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;

use central::ca::{CaError, CertificateAuthority, Validity, ROOT_CERT_FILE, ROOT_KEY_FILE};
use chrono::{Duration, Utc};
use provider_sdk::pki::{verify_certificate, ParticipantKey, PkiError, Role, RootCertificate};

fn ca() -> CertificateAuthority {
    CertificateAuthority::create("Test Network Root").unwrap()
}

#[test]
fn root_certificate_is_a_constrained_ed25519_ca() {
    let ca = ca();
    let (_, cert) = x509_parser::parse_x509_certificate(ca.root_cert_der()).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ED25519
    );
    assert_eq!(cert.raw_serial().len(), 16);
    assert!(ca
        .root_cert_pem()
        .starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(
        RootCertificate::from_pem(&ca.root_cert_pem())
            .unwrap()
            .subject_cn(),
        "Test Network Root"
    );
}

#[test]
fn enrollment_round_trip() {
    let ca = ca();
    let provider = ParticipantKey::generate();
    let csr = provider.csr_pem("Example Telecom").unwrap();
    let issued = ca
        .certify_csr(&csr, Role::Provider(42), Validity::days(30))
        .unwrap();
    assert_eq!(issued.key_id, provider.key_id());
    assert_eq!(issued.role, Role::Provider(42));

    let got = verify_certificate(&issued.cert_der, ca.root_cert_der(), Utc::now()).unwrap();
    assert_eq!(got.key_id, provider.key_id());
    assert_eq!(got.verifying_key, provider.verifying_key());
    assert_eq!(got.role, Role::Provider(42));
    assert_eq!(got.subject_cn, "Example Telecom");
    assert_eq!(got.serial, issued.serial);
    assert_eq!(got.not_before, issued.not_before);
    assert_eq!(got.not_after, issued.not_after);

    let root = RootCertificate::from_pem(&ca.root_cert_pem()).unwrap();
    assert_eq!(root.verify_pem(&issued.cert_pem, Utc::now()).unwrap(), got);

    // Usages chosen by the CA.
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
}

#[test]
fn serials_are_unique_and_random() {
    let ca = ca();
    let key = ParticipantKey::generate();
    let a = ca
        .issue_for_key(
            &key.verifying_key(),
            "Op",
            Role::Operator,
            Validity::days(1),
        )
        .unwrap();
    let b = ca
        .issue_for_key(
            &key.verifying_key(),
            "Op",
            Role::Operator,
            Validity::days(1),
        )
        .unwrap();
    assert_ne!(a.serial, b.serial);
    assert_eq!(a.key_id, b.key_id);
}

#[test]
fn roles_come_from_the_ca_not_the_requester() {
    let ca = ca();
    let provider = ParticipantKey::generate();
    let csr = provider.csr_pem("Example Telecom").unwrap();
    let issued = ca
        .certify_csr(&csr, Role::Provider(7), Validity::days(1))
        .unwrap();
    let got = verify_certificate(&issued.cert_der, ca.root_cert_der(), Utc::now()).unwrap();
    // A provider certificate is not the operator's, nor another provider's.
    assert_ne!(got.role, Role::Operator);
    assert_ne!(got.role, Role::Provider(8));
    assert_eq!(got.role, Role::Provider(7));

    let op = ca
        .issue_key_pair("Operator", Role::Operator, Validity::days(1))
        .unwrap();
    let got = verify_certificate(&op.cert.cert_der, ca.root_cert_der(), Utc::now()).unwrap();
    assert_eq!(got.role, Role::Operator);
    assert_eq!(got.key_id, op.key.key_id());
}

#[test]
fn expired_and_future_certificates_are_refused() {
    let ca = ca();
    let key = ParticipantKey::generate();
    let csr = key.csr_pem("Example Telecom").unwrap();
    let now = Utc::now();
    let past = Validity::new(now - Duration::days(30), now - Duration::days(1)).unwrap();
    let issued = ca.certify_csr(&csr, Role::Provider(1), past).unwrap();
    let err = verify_certificate(&issued.cert_der, ca.root_cert_der(), now).unwrap_err();
    assert!(
        matches!(err, PkiError::Expired { not_after } if not_after == past.not_after()),
        "{err}"
    );

    let future = Validity::new(now + Duration::days(1), now + Duration::days(30)).unwrap();
    let issued = ca.certify_csr(&csr, Role::Provider(1), future).unwrap();
    let err = verify_certificate(&issued.cert_der, ca.root_cert_der(), now).unwrap_err();
    assert!(matches!(err, PkiError::NotYetValid { .. }), "{err}");
    // The same certificate verifies once its time has come.
    assert!(verify_certificate(
        &issued.cert_der,
        ca.root_cert_der(),
        now + Duration::days(2)
    )
    .is_ok());
}

#[test]
fn validity_must_be_ordered() {
    let now = Utc::now();
    assert!(matches!(
        Validity::new(now, now),
        Err(CaError::InvalidValidity(_))
    ));
    assert!(matches!(
        Validity::new(now, now - Duration::seconds(1)),
        Err(CaError::InvalidValidity(_))
    ));
}

#[test]
fn certificate_of_another_ca_is_refused() {
    let ours = ca();
    // Same name, different key: an impostor root.
    let theirs = ca();
    let key = ParticipantKey::generate();
    let issued = theirs
        .certify_csr(
            &key.csr_pem("Example").unwrap(),
            Role::Provider(1),
            Validity::days(1),
        )
        .unwrap();
    let err = verify_certificate(&issued.cert_der, ours.root_cert_der(), Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::NotSignedByRoot), "{err}");
}

#[test]
fn tampered_certificate_is_refused() {
    let ca = ca();
    let key = ParticipantKey::generate();
    let issued = ca
        .certify_csr(
            &key.csr_pem("Provider 1").unwrap(),
            Role::Provider(1),
            Validity::days(1),
        )
        .unwrap();
    // Promote provider:1 to provider:9 in the subject.
    let at = issued
        .cert_der
        .windows(10)
        .position(|w| w == b"provider:1")
        .unwrap();
    let mut forged = issued.cert_der.clone();
    forged[at + 9] = b'9';
    let err = verify_certificate(&forged, ca.root_cert_der(), Utc::now()).unwrap_err();
    assert!(matches!(err, PkiError::BadSignature), "{err}");
}

#[test]
fn csr_signature_is_verified() {
    let ca = ca();
    let key = ParticipantKey::generate();
    let csr = key.csr_pem("Example Telecom").unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(csr.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
        .unwrap();
    // Change the CN: the request's signature no longer matches.
    let at = der.windows(7).position(|w| w == b"Example").unwrap();
    let mut forged = der.clone();
    forged[at] = b'F';
    let forged_pem = pem("CERTIFICATE REQUEST", &forged);
    let err = ca
        .certify_csr(&forged_pem, Role::Provider(1), Validity::days(1))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrSignature), "{err}");
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

#[test]
fn csr_for_other_key_types_is_refused() {
    let ca = ca();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "EC Telecom");
    let csr = params.serialize_request(&ec).unwrap().pem().unwrap();
    let err = ca
        .certify_csr(&csr, Role::Provider(1), Validity::days(1))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrWrongKeyType(_)), "{err}");
}

#[test]
fn malformed_csrs_are_errors() {
    let ca = ca();
    let key = ParticipantKey::generate();
    let csr = key.csr_pem("Example").unwrap();
    let truncated = &csr[..csr.len() / 2];
    let inputs = [
        String::new(),
        "garbage".into(),
        truncated.into(),
        pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00"),
        ca.root_cert_pem(),
    ];
    for input in &inputs {
        let err = ca
            .certify_csr(input, Role::Provider(1), Validity::days(1))
            .unwrap_err();
        assert!(matches!(err, CaError::MalformedCsr), "{input:?}: {err}");
    }
}

#[test]
fn csr_with_bad_common_name_is_refused() {
    let ca = ca();
    let key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bad\nname");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let err = ca
        .certify_csr(&csr, Role::Provider(1), Validity::days(1))
        .unwrap_err();
    assert!(
        matches!(err, CaError::Pki(PkiError::InvalidCommonName(_))),
        "{err}"
    );

    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "No CN Inc");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let err = ca
        .certify_csr(&csr, Role::Provider(1), Validity::days(1))
        .unwrap_err();
    assert!(matches!(err, CaError::CsrNoCommonName), "{err}");
}

#[test]
fn requested_extensions_do_not_reach_the_certificate() {
    // A requester asking to be a CA with serverAuth gets a plain client certificate.
    let ca = ca();
    let key = ParticipantKey::generate();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Evil");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params
        .serialize_request(&key.rcgen_key_pair().unwrap())
        .unwrap()
        .pem()
        .unwrap();
    let issued = ca
        .certify_csr(&csr, Role::Provider(3), Validity::days(1))
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(cert.subject_alternative_name().unwrap().is_none());
}

#[test]
fn server_certificate_has_names_and_server_auth() {
    let ca = ca();
    let issued = ca
        .issue_server_cert(
            &["central.test".to_string(), "localhost".to_string()],
            &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            Validity::days(90),
        )
        .unwrap();
    let got = verify_certificate(&issued.cert.cert_der, ca.root_cert_der(), Utc::now()).unwrap();
    assert_eq!(got.role, Role::Server);
    assert_eq!(got.key_id, issued.key.key_id());
    assert_eq!(got.subject_cn, "central.test");
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert.cert_der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().any(|n| n.contains("central.test")));
    let ips: Vec<&[u8]> = san
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::IPAddress(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    assert!(ips.contains(&&[127u8, 0, 0, 1][..]), "{ips:?}");
    assert!(ips.contains(&&Ipv6Addr::LOCALHOST.octets()[..]), "{ips:?}");
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    assert!(matches!(
        ca.issue_server_cert(&[], &[], Validity::days(1)),
        Err(CaError::NoServerNames)
    ));
    assert!(matches!(
        ca.issue_server_cert(&["bad name\u{e9}".into()], &[], Validity::days(1)),
        Err(CaError::InvalidName(_))
    ));
}

#[test]
fn save_and_load_round_trip_with_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = ca();
    ca.save(&ca_dir).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca_dir.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&ca_dir), 0o700);

    let loaded = CertificateAuthority::load(&ca_dir).unwrap();
    assert_eq!(loaded.root_cert_der(), ca.root_cert_der());
    // Certificates issued after loading chain to the original root.
    let key = ParticipantKey::generate();
    let issued = loaded
        .certify_csr(
            &key.csr_pem("After Restart").unwrap(),
            Role::Provider(5),
            Validity::days(1),
        )
        .unwrap();
    let got = verify_certificate(&issued.cert_der, ca.root_cert_der(), Utc::now()).unwrap();
    assert_eq!(got.role, Role::Provider(5));

    // Saving again never overwrites.
    let err = ca.save(&ca_dir).unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists(_)), "{err}");
    assert_eq!(
        CertificateAuthority::load(&ca_dir).unwrap().root_cert_der(),
        ca.root_cert_der()
    );
}

#[test]
fn load_refuses_mismatched_or_exposed_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    ca().save(&a).unwrap();
    ca().save(&b).unwrap();
    // b's certificate with a's key.
    std::fs::copy(b.join(ROOT_CERT_FILE), dir.path().join("b.crt")).unwrap();
    std::fs::remove_file(a.join(ROOT_CERT_FILE)).unwrap();
    std::fs::copy(dir.path().join("b.crt"), a.join(ROOT_CERT_FILE)).unwrap();
    assert!(matches!(
        CertificateAuthority::load(&a),
        Err(CaError::KeyMismatch)
    ));

    std::fs::set_permissions(
        b.join(ROOT_KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(matches!(
        CertificateAuthority::load(&b),
        Err(CaError::Pki(PkiError::InsecureKeyFile { .. }))
    ));
    let err = CertificateAuthority::load(dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, CaError::Pki(PkiError::Io { .. })), "{err}");
}

#[test]
fn nothing_verifies_under_an_expired_root() {
    let now = Utc::now();
    let ca = CertificateAuthority::create_with_validity(
        "Old Root",
        Validity::new(now - Duration::days(60), now - Duration::days(1)).unwrap(),
    )
    .unwrap();
    let key = ParticipantKey::generate();
    // A leaf that is itself still in its validity period.
    let issued = ca
        .certify_csr(
            &key.csr_pem("Late").unwrap(),
            Role::Provider(1),
            Validity::days(1),
        )
        .unwrap();
    let err = verify_certificate(&issued.cert_der, ca.root_cert_der(), now).unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidRoot(ref m) if m.contains("expired")),
        "{err}"
    );
    let root = RootCertificate::from_der(ca.root_cert_der()).unwrap();
    assert!(root.not_after() < now);
}

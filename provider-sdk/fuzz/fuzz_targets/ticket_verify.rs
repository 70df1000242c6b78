#![no_main]
//! Tickets and receipts from the wire never panic the verifier.
//!
//! The first byte picks what the rest is:
//! - 0: a whole token, as found in the ticket header;
//! - 1: ticket claims (JSON), correctly signed by a certified payer, so the
//!   fuzzer gets past the signature to the claims checks;
//! - 2: receipt claims (JSON), correctly signed by the payer, checked against
//!   an accepted ticket.
//!
//! Whatever is accepted must really satisfy the checks.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use provider_sdk::number::E164;
use provider_sdk::pki::{KeyId, ParticipantKey, RootCertificate};
use provider_sdk::ticket::jws::{self, JwsHeader};
use provider_sdk::ticket::{
    CallExpectation, CertificateLookupError, CertificateSource, CertificateStatus, MinimumTerms,
    Ticket, TicketSigner, TicketVerifier, VerifiedTicket, PPT_RECEIPT, PPT_TICKET,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose,
};

const CALL_ID: &str = "fuzz@127.0.0.1";

struct MapSource(HashMap<KeyId, CertificateStatus>);

impl CertificateSource for MapSource {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        self.0
            .get(kid)
            .cloned()
            .ok_or(CertificateLookupError::Unknown)
    }
}

struct World {
    payer: ParticipantKey,
    verifier: TicketVerifier<MapSource>,
    dest: E164,
    minimum: MinimumTerms,
    now: DateTime<Utc>,
    accepted: VerifiedTicket,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let root_key = ParticipantKey::generate().rcgen_key_pair().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Central Root");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root_cert = params.self_signed(&root_key).unwrap();
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
        .signed_by(&payer.rcgen_key_pair().unwrap(), &issuer)
        .unwrap()
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
    let root = RootCertificate::from_der(root_cert.der()).unwrap();
    let verifier = TicketVerifier::new(root, MapSource(map), 42);
    let now = Utc::now();
    let dest = E164::parse("+441632960001").unwrap();
    let minimum = MinimumTerms {
        per_minute: "0.01".parse().unwrap(),
        connect_fee: "0".parse().unwrap(),
        first_increment: 1,
        next_increment: 1,
        currency: "EUR".parse().unwrap(),
    };
    let ticket: Ticket = serde_json::from_value(serde_json::json!({
        "iss": 7, "payer": "Home Telecom", "aud": 42,
        "orig": "+4930123456", "dest": "+441632960001", "call_id": CALL_ID,
        "rate": {"per_minute": "0.01", "connect_fee": "0", "first_increment": 1,
                 "next_increment": 1, "currency": "EUR", "version": 1},
        "iat": now.timestamp(), "exp": now.timestamp() + 60,
        "jti": "0190b6c5-8f2e-7cc1-a6b8-3d1f6e2a9b10",
    }))
    .unwrap();
    let signer = TicketSigner::new(
        ParticipantKey::from_pkcs8_der(&payer.to_pkcs8_der().unwrap()).unwrap(),
        "https://127.0.0.1:8443",
    );
    let token = signer.sign_ticket(&ticket).unwrap();
    let call = CallExpectation {
        dest: &dest,
        call_id: CALL_ID,
        minimum: &minimum,
    };
    let accepted = verifier.verify_ticket(&token, &call, now).unwrap();
    World {
        payer,
        verifier,
        dest,
        minimum,
        now,
        accepted,
    }
});

fuzz_target!(|data: &[u8]| {
    let w = &*WORLD;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let call = CallExpectation {
        dest: &w.dest,
        call_id: CALL_ID,
        minimum: &w.minimum,
    };
    let header = |ppt| JwsHeader::new(ppt, &w.payer.key_id(), "https://127.0.0.1:8443");
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(v) = w.verifier.verify_ticket(token, &call, w.now) {
                check_accepted(&v.ticket, w);
            }
        }
        1 => {
            let Ok(token) = jws::encode(&header(PPT_TICKET), rest, &w.payer) else {
                return;
            };
            if let Ok(v) = w.verifier.verify_ticket(&token, &call, w.now) {
                check_accepted(&v.ticket, w);
            }
        }
        _ => {
            let Ok(token) = jws::encode(&header(PPT_RECEIPT), rest, &w.payer) else {
                return;
            };
            let later = Utc.timestamp_opt(w.now.timestamp() + 3600, 0).unwrap();
            if let Ok(r) = w.verifier.verify_receipt(&token, &w.accepted, later) {
                let r = r.receipt;
                assert_eq!(r.tid, w.accepted.ticket.jti);
                assert!(r.end >= r.answer);
                let d = u64::try_from(r.end - r.answer).unwrap();
                assert_eq!(w.accepted.ticket.rate.billable_seconds(d), Some(r.billable));
            }
        }
    }
});

fn check_accepted(t: &Ticket, w: &World) {
    assert_eq!(t.aud, 42);
    assert_eq!(t.iss, 7);
    assert_eq!(t.dest, w.dest);
    assert_eq!(t.call_id, CALL_ID);
    assert!(t.rate.per_minute >= w.minimum.per_minute);
    assert!(t.exp > t.iat);
}

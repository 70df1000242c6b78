//! Tickets signed with keys enrolled at central's certificate authority the
//! real way (CSR -> `certify_csr`), verified by a provider that pins
//! central's root: the full path, then the certificate-related refusals with
//! certificates central itself issued.

use std::collections::HashMap;

use central::ca::{CertificateAuthority, Validity};
use chrono::{Duration, Utc};
use provider_sdk::number::E164;
use provider_sdk::pki::{KeyId, ParticipantKey, Role};
use provider_sdk::ticket::{
    CallExpectation, CertificateLookupError, CertificateSource, CertificateStatus, MinimumTerms,
    RateTerms, Ticket, TicketError, TicketSigner, TicketVerifier, UsageReceipt,
};
use rust_decimal_macros::dec;
use uuid::Uuid;

const CENTRAL: &str = "https://127.0.0.1:8443";
const CALL_ID: &str = "3848276298220188511@127.0.0.1";

/// Central's certificate directory: what `GET /v1/certificates/{key_id}` serves.
#[derive(Default)]
struct Directory(HashMap<KeyId, CertificateStatus>);

impl CertificateSource for Directory {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        self.0
            .get(kid)
            .cloned()
            .ok_or(CertificateLookupError::Unknown)
    }
}

/// Enrolls a fresh key with `ca` through a CSR, as a provider does.
fn enroll(
    ca: &CertificateAuthority,
    name: &str,
    id: u64,
    validity: Validity,
) -> (ParticipantKey, Vec<u8>) {
    let key = ParticipantKey::generate();
    let csr = key.csr_pem(name).expect("csr");
    let cert = ca
        .certify_csr(&csr, Role::Provider(id), validity)
        .expect("certify");
    assert_eq!(cert.key_id, key.key_id());
    (key, cert.cert_der)
}

fn ticket(payer: u64, aud: u64) -> Ticket {
    let now = Utc::now().timestamp();
    Ticket {
        iss: payer,
        payer: "Home Telecom".into(),
        aud,
        orig: E164::parse("+4930123456").expect("number"),
        dest: E164::parse("+33639980001").expect("number"),
        call_id: CALL_ID.into(),
        rate: RateTerms {
            per_minute: dec!(0.021),
            connect_fee: dec!(0),
            first_increment: 60,
            next_increment: 60,
            currency: "EUR".parse().expect("currency"),
            version: 12,
        },
        iat: now,
        exp: now + 30,
        jti: Uuid::now_v7(),
    }
}

fn minimum() -> MinimumTerms {
    MinimumTerms {
        per_minute: dec!(0.02),
        connect_fee: dec!(0),
        first_increment: 60,
        next_increment: 60,
        currency: "EUR".parse().expect("currency"),
    }
}

struct Network {
    ca: CertificateAuthority,
    directory: Directory,
    payer: ParticipantKey,
    carrier: ParticipantKey,
}

fn network() -> Network {
    let ca = CertificateAuthority::create("Central Root").expect("ca");
    let (payer, payer_der) = enroll(&ca, "Home Telecom", 7, Validity::days(30));
    let (carrier, carrier_der) = enroll(&ca, "Carrier", 42, Validity::days(30));
    let mut directory = Directory::default();
    directory.0.insert(
        payer.key_id(),
        CertificateStatus {
            der: payer_der,
            revoked: false,
        },
    );
    directory.0.insert(
        carrier.key_id(),
        CertificateStatus {
            der: carrier_der,
            revoked: false,
        },
    );
    Network {
        ca,
        directory,
        payer,
        carrier,
    }
}

fn verify(net: &Network, token: &str) -> Result<provider_sdk::ticket::VerifiedTicket, TicketError> {
    let verifier = TicketVerifier::new(net.ca.root().clone(), &net.directory, 42);
    let dest = E164::parse("+33639980001").expect("number");
    let minimum = minimum();
    let call = CallExpectation {
        dest: &dest,
        call_id: CALL_ID,
        minimum: &minimum,
    };
    verifier.verify_ticket(token, &call, Utc::now())
}

#[test]
fn ticket_and_countersigned_receipt_with_central_issued_certificates() {
    let net = network();
    let payer = TicketSigner::new(net.payer, CENTRAL);
    let ticket = ticket(7, 42);
    let token = payer.sign_ticket(&ticket).expect("sign");
    let verifier = TicketVerifier::new(net.ca.root().clone(), &net.directory, 42);
    let dest = ticket.dest;
    let minimum = minimum();
    let call = CallExpectation {
        dest: &dest,
        call_id: CALL_ID,
        minimum: &minimum,
    };
    let now = Utc::now();
    let accepted = verifier
        .verify_ticket(&token, &call, now)
        .expect("accepted");
    assert_eq!(accepted.ticket, ticket);
    assert_eq!(accepted.signer.role, Role::Provider(7));
    assert_eq!(
        verifier.verify_ticket(&token, &call, now).unwrap_err(),
        TicketError::Replayed(ticket.jti)
    );

    // A 61 s call billed 60/60: 120 s.
    let receipt = UsageReceipt {
        iss: 7,
        aud: 42,
        tid: ticket.jti,
        answer: ticket.iat + 2,
        end: ticket.iat + 63,
        billable: 120,
        iat: ticket.iat + 64,
    };
    let signed = payer.sign_receipt(&receipt).expect("receipt");
    let later = now + Duration::seconds(120);
    verifier
        .verify_receipt(&signed, &accepted, later)
        .expect("receipt verifies");
    let carrier = TicketSigner::new(net.carrier, CENTRAL);
    let countersigned = carrier.countersign_receipt(&signed).expect("countersign");
    let both = verifier
        .verify_countersigned(&signed, &countersigned, &accepted, later)
        .expect("both signatures");
    assert_eq!(both.receipt, receipt);
    assert_eq!(both.provider.map(|p| p.role), Some(Role::Provider(42)));
}

#[test]
fn certificate_from_another_central_is_refused() {
    let net = network();
    let other = CertificateAuthority::create("Central Root").expect("other ca");
    let (key, der) = enroll(&other, "Home Telecom", 7, Validity::days(30));
    let mut net = net;
    net.directory.0.insert(
        key.key_id(),
        CertificateStatus {
            der,
            revoked: false,
        },
    );
    let token = TicketSigner::new(key, CENTRAL)
        .sign_ticket(&ticket(7, 42))
        .expect("sign");
    assert_eq!(
        verify(&net, &token).unwrap_err(),
        TicketError::CertificateNotFromRoot
    );
}

#[test]
fn key_central_never_certified_is_refused() {
    let net = network();
    let key = ParticipantKey::generate();
    let kid = key.key_id();
    let token = TicketSigner::new(key, CENTRAL)
        .sign_ticket(&ticket(7, 42))
        .expect("sign");
    assert_eq!(
        verify(&net, &token).unwrap_err(),
        TicketError::UnknownKey(kid)
    );
}

#[test]
fn expired_and_revoked_central_certificates_are_refused() {
    let mut net = network();
    let past = Validity::new(
        Utc::now() - Duration::days(60),
        Utc::now() - Duration::days(30),
    )
    .expect("validity");
    let (key, der) = enroll(&net.ca, "Home Telecom", 7, past);
    net.directory.0.insert(
        key.key_id(),
        CertificateStatus {
            der,
            revoked: false,
        },
    );
    let token = TicketSigner::new(key, CENTRAL)
        .sign_ticket(&ticket(7, 42))
        .expect("sign");
    assert!(matches!(
        verify(&net, &token).unwrap_err(),
        TicketError::CertificateExpired { .. }
    ));

    let kid = net.payer.key_id();
    if let Some(status) = net.directory.0.get_mut(&kid) {
        status.revoked = true;
    }
    let payer =
        ParticipantKey::from_pkcs8_der(&net.payer.to_pkcs8_der().expect("der")).expect("key");
    let token = TicketSigner::new(payer, CENTRAL)
        .sign_ticket(&ticket(7, 42))
        .expect("sign");
    assert_eq!(
        verify(&net, &token).unwrap_err(),
        TicketError::CertificateRevoked
    );
}

#[test]
fn ticket_for_another_provider_is_refused() {
    let net = network();
    let payer = TicketSigner::new(net.payer, CENTRAL);
    let token = payer.sign_ticket(&ticket(7, 43)).expect("sign");
    let net = Network {
        payer: ParticipantKey::generate(),
        ..net
    };
    assert_eq!(
        verify(&net, &token).unwrap_err(),
        TicketError::WrongAudience {
            expected: 42,
            found: 43
        }
    );
}

#[test]
fn operator_credential_cannot_sign_tickets() {
    let mut net = network();
    let operator = net
        .ca
        .issue_key_pair("Operator", Role::Operator, Validity::days(1))
        .expect("operator");
    net.directory.0.insert(
        operator.key.key_id(),
        CertificateStatus {
            der: operator.cert.cert_der,
            revoked: false,
        },
    );
    let token = TicketSigner::new(operator.key, CENTRAL)
        .sign_ticket(&ticket(7, 42))
        .expect("sign");
    assert_eq!(
        verify(&net, &token).unwrap_err(),
        TicketError::WrongSignerRole(Role::Operator)
    );
}

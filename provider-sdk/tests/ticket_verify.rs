//! Ticket and receipt verification: one test per refusal reason (the
//! security tests), round trips, and the replay cache bound. Certificates are
//! built directly with rcgen, shaped like central's, so certificates central
//! would never issue (another CA, expired, wrong role) can be made too.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use provider_sdk::number::E164;
use provider_sdk::pki::{KeyId, ParticipantKey, RootCertificate, Serial};
use provider_sdk::ticket::jws::{self, JwsHeader};
use provider_sdk::ticket::{
    CallExpectation, CertificateLookupError, CertificateSource, CertificateStatus, MinimumTerms,
    Part, RateTerms, ReplayCache, Ticket, TicketError, TicketSigner, TicketVerifier, UsageReceipt,
    VerifiedTicket, MAX_TOKEN_LEN, PPT_RECEIPT, PPT_TICKET, TICKET_CLOCK_SKEW_SECS,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rust_decimal_macros::dec;
use uuid::Uuid;

const PAYER_ID: u64 = 7;
const PAYER_NAME: &str = "Home Telecom";
const PROVIDER_ID: u64 = 42;
const CENTRAL: &str = "https://127.0.0.1:8443";

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

/// A participant certificate shaped like central's.
fn issue(
    root: &TestRoot,
    key: &ParticipantKey,
    cn: &str,
    ou: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = ts(not_before);
    params.not_after = ts(not_after);
    params.serial_number = Some(SerialNumber::from_slice(Serial::generate().as_bytes()));
    params.use_authority_key_identifier_extension = true;
    params
        .signed_by(&key.rcgen_key_pair().unwrap(), &root.issuer)
        .unwrap()
        .der()
        .to_vec()
}

/// Central's certificate directory, as a map.
#[derive(Default)]
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
    root: TestRoot,
    now: DateTime<Utc>,
    payer_key: ParticipantKey,
    provider_key: ParticipantKey,
    source: MapSource,
}

impl World {
    fn new() -> World {
        let root = root("Central Root");
        let now = Utc::now();
        let payer_key = ParticipantKey::generate();
        let provider_key = ParticipantKey::generate();
        let mut world = World {
            root,
            now,
            payer_key,
            provider_key,
            source: MapSource::default(),
        };
        let payer = world.cert(&world.payer_key, PAYER_NAME, "provider:7");
        world.register(&world.payer_key.key_id(), payer, false);
        let provider = world.cert(&world.provider_key, "Carrier", "provider:42");
        world.register(&world.provider_key.key_id(), provider, false);
        world
    }

    fn cert(&self, key: &ParticipantKey, cn: &str, ou: &str) -> Vec<u8> {
        issue(
            &self.root,
            key,
            cn,
            ou,
            self.now - Duration::hours(1),
            self.now + Duration::days(30),
        )
    }

    fn register(&mut self, kid: &KeyId, der: Vec<u8>, revoked: bool) {
        self.source
            .0
            .insert(kid.clone(), CertificateStatus { der, revoked });
    }

    fn signer(&self) -> TicketSigner {
        TicketSigner::new(key_copy(&self.payer_key), CENTRAL)
    }

    fn verifier(&self) -> TicketVerifier<&MapSource> {
        let root = RootCertificate::from_der(&self.root.der).unwrap();
        TicketVerifier::new(root, &self.source, PROVIDER_ID)
    }

    fn ticket(&self) -> Ticket {
        let now = self.now.timestamp();
        Ticket {
            iss: PAYER_ID,
            payer: PAYER_NAME.into(),
            aud: PROVIDER_ID,
            orig: E164::parse("+4930123456").unwrap(),
            dest: dest(),
            call_id: CALL_ID.into(),
            rate: RateTerms {
                per_minute: dec!(0.0125),
                connect_fee: dec!(0.01),
                first_increment: 30,
                next_increment: 6,
                currency: "EUR".parse().unwrap(),
                version: 3,
            },
            iat: now,
            exp: now + 60,
            jti: Uuid::now_v7(),
        }
    }

    fn verify(&self, token: &str) -> Result<VerifiedTicket, TicketError> {
        self.verifier()
            .verify_ticket(token, &expect(&dest(), &minimum()), self.now)
    }
}

const CALL_ID: &str = "a84b4c76e66710@127.0.0.1";

fn key_copy(key: &ParticipantKey) -> ParticipantKey {
    ParticipantKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap()
}

fn dest() -> E164 {
    E164::parse("+441632960001").unwrap()
}

fn minimum() -> MinimumTerms {
    MinimumTerms {
        per_minute: dec!(0.0125),
        connect_fee: dec!(0.01),
        first_increment: 30,
        next_increment: 6,
        currency: "EUR".parse().unwrap(),
    }
}

fn expect<'a>(dest: &'a E164, minimum: &'a MinimumTerms) -> CallExpectation<'a> {
    CallExpectation {
        dest,
        call_id: CALL_ID,
        minimum,
    }
}

/// Signs arbitrary claims as a ticket, bypassing the signer's own checks.
fn sign_raw(key: &ParticipantKey, ppt: &str, payload: &[u8]) -> String {
    let header = JwsHeader::new(ppt, &key.key_id(), CENTRAL);
    jws::encode(&header, payload, key).unwrap()
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[test]
fn valid_ticket_round_trips() {
    let w = World::new();
    let ticket = w.ticket();
    let token = w.signer().sign_ticket(&ticket).unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "passport");
    assert_eq!(header["ppt"], "lcr");
    assert_eq!(header["kid"], w.payer_key.key_id().to_string());
    assert_eq!(
        header["x5u"],
        format!("{CENTRAL}/v1/certificates/{}", w.payer_key.key_id())
    );
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[1]).unwrap()).unwrap();
    assert_eq!(
        claims["rate"]["per_minute"], "0.0125",
        "prices travel as exact strings"
    );
    assert_eq!(claims["dest"], "+441632960001");

    let verified = w.verify(&token).unwrap();
    assert_eq!(verified.ticket, ticket);
    assert_eq!(verified.signer.key_id, w.payer_key.key_id());
    assert_eq!(verified.token, token);
}

#[test]
fn surrounding_blanks_in_the_header_value_are_ignored() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    assert!(w.verify(&format!(" {token}\t")).is_ok());
}

#[test]
fn bad_signature_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
    sig[10] ^= 0x01;
    let forged = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(w.verify(&forged).unwrap_err(), TicketError::BadSignature);
}

#[test]
fn tampered_claims_are_refused_as_bad_signature() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
    let cheaper = claims.replace("\"0.0125\"", "\"0.0001\"");
    assert_ne!(claims, cheaper);
    let forged = format!("{}.{}.{}", p[0], URL_SAFE_NO_PAD.encode(cheaper), p[2]);
    assert_eq!(w.verify(&forged).unwrap_err(), TicketError::BadSignature);
}

#[test]
fn key_never_certified_is_refused() {
    let w = World::new();
    let stranger = ParticipantKey::generate();
    let token = TicketSigner::new(key_copy(&stranger), CENTRAL)
        .sign_ticket(&w.ticket())
        .unwrap();
    assert_eq!(
        w.verify(&token).unwrap_err(),
        TicketError::UnknownKey(stranger.key_id())
    );
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let mut w = World::new();
    let other = root("Central Root");
    let der = issue(
        &other,
        &w.payer_key,
        PAYER_NAME,
        "provider:7",
        w.now - Duration::hours(1),
        w.now + Duration::days(1),
    );
    w.register(&w.payer_key.key_id(), der, false);
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    assert_eq!(
        w.verify(&token).unwrap_err(),
        TicketError::CertificateNotFromRoot
    );
}

#[test]
fn expired_certificate_is_refused() {
    let mut w = World::new();
    let der = issue(
        &w.root,
        &w.payer_key,
        PAYER_NAME,
        "provider:7",
        w.now - Duration::days(30),
        w.now - Duration::days(1),
    );
    w.register(&w.payer_key.key_id(), der, false);
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::CertificateExpired { .. }
    ));
}

#[test]
fn revoked_certificate_is_refused() {
    let mut w = World::new();
    let der = w.cert(&w.payer_key, PAYER_NAME, "provider:7");
    w.register(&w.payer_key.key_id(), der, true);
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    assert_eq!(
        w.verify(&token).unwrap_err(),
        TicketError::CertificateRevoked
    );
}

#[test]
fn certificate_of_another_role_is_refused() {
    let mut w = World::new();
    let der = w.cert(&w.payer_key, PAYER_NAME, "operator");
    w.register(&w.payer_key.key_id(), der, false);
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    assert_eq!(
        w.verify(&token).unwrap_err(),
        TicketError::WrongSignerRole(provider_sdk::pki::Role::Operator)
    );
}

#[test]
fn certificate_for_another_key_is_refused() {
    let mut w = World::new();
    let other = ParticipantKey::generate();
    let der = w.cert(&other, PAYER_NAME, "provider:7");
    w.register(&w.payer_key.key_id(), der, false);
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::CertificateKeyMismatch { .. }
    ));
}

#[test]
fn certificate_lookup_failure_is_reported() {
    struct Down;
    impl CertificateSource for Down {
        fn certificate(&self, _: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
            Err(CertificateLookupError::Unavailable(
                "central unreachable".into(),
            ))
        }
    }
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let verifier = TicketVerifier::new(
        RootCertificate::from_der(&w.root.der).unwrap(),
        Down,
        PROVIDER_ID,
    );
    assert_eq!(
        verifier
            .verify_ticket(&token, &expect(&dest(), &minimum()), w.now)
            .unwrap_err(),
        TicketError::CertificateUnavailable("central unreachable".into())
    );
}

#[test]
fn issuer_other_than_the_certificate_is_refused() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.iss = 8;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::IssuerMismatch(_)
    ));

    let mut ticket = w.ticket();
    ticket.payer = "Someone Else".into();
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::IssuerMismatch(_)
    ));
}

#[test]
fn wrong_audience_is_refused() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.aud = 43;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert_eq!(
        w.verify(&token).unwrap_err(),
        TicketError::WrongAudience {
            expected: PROVIDER_ID,
            found: 43
        }
    );
}

#[test]
fn wrong_destination_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let other = E164::parse("+441632960002").unwrap();
    let err = w
        .verifier()
        .verify_ticket(&token, &expect(&other, &minimum()), w.now)
        .unwrap_err();
    assert_eq!(
        err,
        TicketError::DestinationMismatch {
            expected: other,
            found: dest()
        }
    );
}

#[test]
fn wrong_call_id_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let minimum = minimum();
    let dest = dest();
    let call = CallExpectation {
        dest: &dest,
        call_id: "another-call@127.0.0.1",
        minimum: &minimum,
    };
    assert_eq!(
        w.verifier()
            .verify_ticket(&token, &call, w.now)
            .unwrap_err(),
        TicketError::CallIdMismatch
    );
}

#[test]
fn expired_ticket_is_refused_but_skew_is_tolerated() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.iat = w.now.timestamp() - 120;
    ticket.exp = w.now.timestamp() - TICKET_CLOCK_SKEW_SECS - 1;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::Expired { .. }
    ));

    let mut ticket = w.ticket();
    ticket.iat = w.now.timestamp() - 120;
    ticket.exp = w.now.timestamp() - TICKET_CLOCK_SKEW_SECS;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(w.verify(&token).is_ok(), "just within the skew");
}

#[test]
fn ticket_issued_in_the_future_is_refused() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.iat = w.now.timestamp() + TICKET_CLOCK_SKEW_SECS + 1;
    ticket.exp = ticket.iat + 60;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::IssuedInFuture { .. }
    ));
}

#[test]
fn overlong_ticket_lifetime_is_refused() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.exp = ticket.iat + 86_400;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::LifetimeTooLong { .. }
    ));
}

#[test]
fn replayed_ticket_is_refused() {
    let w = World::new();
    let ticket = w.ticket();
    let token = w.signer().sign_ticket(&ticket).unwrap();
    let verifier = w.verifier();
    let call_dest = dest();
    let minimum = minimum();
    let call = expect(&call_dest, &minimum);
    verifier.verify_ticket(&token, &call, w.now).unwrap();
    assert_eq!(
        verifier.verify_ticket(&token, &call, w.now).unwrap_err(),
        TicketError::Replayed(ticket.jti)
    );
}

#[test]
fn refused_tickets_take_no_room_in_the_replay_cache() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.aud = 43;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    let verifier = w.verifier();
    assert!(verifier
        .verify_ticket(&token, &expect(&dest(), &minimum()), w.now)
        .is_err());
    assert!(verifier.replay_cache().is_empty());
}

#[test]
fn replay_cache_is_bounded_and_forgets_expired_tickets() {
    let w = World::new();
    let cache = Arc::new(ReplayCache::new(3));
    let verifier = w.verifier().with_replay_cache(cache.clone());
    let signer = w.signer();
    let dest = dest();
    let minimum = minimum();
    let call = expect(&dest, &minimum);
    for _ in 0..3 {
        let token = signer.sign_ticket(&w.ticket()).unwrap();
        verifier.verify_ticket(&token, &call, w.now).unwrap();
    }
    assert_eq!(cache.len(), 3);
    let fourth = signer.sign_ticket(&w.ticket()).unwrap();
    assert_eq!(
        verifier.verify_ticket(&fourth, &call, w.now).unwrap_err(),
        TicketError::ReplayCacheFull
    );
    assert_eq!(cache.len(), 3);

    // Once the first three could no longer pass the expiry check, they are forgotten.
    let later = w.now + Duration::seconds(60 + TICKET_CLOCK_SKEW_SECS + 1);
    let mut fresh = w.ticket();
    fresh.iat = later.timestamp();
    fresh.exp = fresh.iat + 60;
    let token = signer.sign_ticket(&fresh).unwrap();
    verifier.verify_ticket(&token, &call, later).unwrap();
    assert_eq!(cache.len(), 1);
}

#[test]
fn concurrent_replays_accept_exactly_one() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let verifier = w.verifier();
    let dest = dest();
    let minimum = minimum();
    let accepted = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    verifier
                        .verify_ticket(&token, &expect(&dest, &minimum), w.now)
                        .is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(accepted, 1);
}

#[test]
fn rate_below_the_providers_is_refused() {
    let w = World::new();
    type Lower = fn(&mut RateTerms);
    let cases: [(&str, Lower); 4] = [
        ("rate per minute", |r| r.per_minute = dec!(0.0124)),
        ("connect fee", |r| r.connect_fee = dec!(0)),
        ("first increment", |r| r.first_increment = 1),
        ("next increment", |r| r.next_increment = 1),
    ];
    for (what, lower) in cases {
        let mut ticket = w.ticket();
        lower(&mut ticket.rate);
        let token = w.signer().sign_ticket(&ticket).unwrap();
        match w.verify(&token).unwrap_err() {
            TicketError::RateBelowMinimum(why) => assert!(why.starts_with(what), "{why}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A higher rate is fine.
    let mut ticket = w.ticket();
    ticket.rate.per_minute = dec!(0.02);
    assert!(w.verify(&w.signer().sign_ticket(&ticket).unwrap()).is_ok());
}

#[test]
fn other_currency_is_refused() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.rate.currency = "USD".parse().unwrap();
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::CurrencyMismatch { .. }
    ));
}

#[test]
fn truncated_token_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    let two_parts = format!("{}.{}", p[0], p[1]);
    assert!(matches!(
        w.verify(&two_parts).unwrap_err(),
        TicketError::Malformed(_)
    ));
    // 86 base64 characters of signature cut to 76: decodes, but to 57 bytes.
    let short_sig = &token[..token.len() - 10];
    assert_eq!(
        w.verify(short_sig).unwrap_err(),
        TicketError::Malformed("signature is not 64 bytes")
    );
    assert!(matches!(
        w.verify("").unwrap_err(),
        TicketError::Malformed(_)
    ));
    let four = format!("{token}.{}", p[2]);
    assert!(matches!(
        w.verify(&four).unwrap_err(),
        TicketError::Malformed(_)
    ));
}

#[test]
fn non_base64_token_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    let bad_header = format!("{}*.{}.{}", p[0], p[1], p[2]);
    assert_eq!(
        w.verify(&bad_header).unwrap_err(),
        TicketError::NotBase64(Part::Header)
    );
    let bad_payload = format!("{}.{}+/.{}", p[0], p[1], p[2]);
    assert_eq!(
        w.verify(&bad_payload).unwrap_err(),
        TicketError::NotBase64(Part::Payload)
    );
    let padded_sig = format!("{}.{}.{}==", p[0], p[1], p[2]);
    assert_eq!(
        w.verify(&padded_sig).unwrap_err(),
        TicketError::NotBase64(Part::Signature)
    );
}

#[test]
fn invalid_json_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    let header = URL_SAFE_NO_PAD.encode(b"{\"alg\":\"EdDSA\",");
    let broken = format!("{header}.{}.{}", p[1], p[2]);
    assert!(matches!(
        w.verify(&broken).unwrap_err(),
        TicketError::InvalidJson {
            part: Part::Header,
            ..
        }
    ));
    // Properly signed, but the payload is not a ticket.
    for payload in [
        &b"not json"[..],
        b"{}",
        b"[1,2,3]",
        br#"{"iss":7,"aud":42}"#,
    ] {
        let signed = sign_raw(&w.payer_key, PPT_TICKET, payload);
        assert!(
            matches!(
                w.verify(&signed).unwrap_err(),
                TicketError::InvalidJson {
                    part: Part::Payload,
                    ..
                }
            ),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn prices_must_be_exact_decimal_strings() {
    let w = World::new();
    let claims = serde_json::to_value(w.ticket()).unwrap();
    for bad in [
        serde_json::json!(0.0125),
        serde_json::json!("1e-2"),
        serde_json::json!("-0.01"),
        serde_json::json!("0.0000001"),
    ] {
        let mut c = claims.clone();
        c["rate"]["per_minute"] = bad.clone();
        let signed = sign_raw(&w.payer_key, PPT_TICKET, c.to_string().as_bytes());
        assert!(
            matches!(
                w.verify(&signed).unwrap_err(),
                TicketError::InvalidJson {
                    part: Part::Payload,
                    ..
                }
            ),
            "{bad}"
        );
    }
}

#[test]
fn inconsistent_claims_are_refused() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.exp = ticket.iat;
    assert!(matches!(
        w.signer().sign_ticket(&ticket).unwrap_err(),
        TicketError::InvalidClaims(_)
    ));
    let signed = sign_raw(
        &w.payer_key,
        PPT_TICKET,
        &serde_json::to_vec(&ticket).unwrap(),
    );
    assert!(matches!(
        w.verify(&signed).unwrap_err(),
        TicketError::InvalidClaims(_)
    ));
}

#[test]
fn oversized_token_is_refused_before_decoding() {
    let w = World::new();
    // Not even valid base64: the size check comes first.
    let huge = "*".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        w.verify(&huge).unwrap_err(),
        TicketError::Oversized {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        }
    );
    // A properly signed ticket that is simply too big.
    let mut ticket = w.ticket();
    ticket.call_id = "x".repeat(200);
    let claims = serde_json::to_value(&ticket).unwrap();
    let mut c = claims.clone();
    c["padding"] = serde_json::Value::String("p".repeat(4000));
    let header = JwsHeader::new(PPT_TICKET, &w.payer_key.key_id(), CENTRAL);
    assert!(matches!(
        jws::encode(&header, c.to_string().as_bytes(), &w.payer_key).unwrap_err(),
        TicketError::Signing(_)
    ));
}

#[test]
fn alg_other_than_eddsa_is_refused() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    for alg in ["none", "HS256", "ES256", "RS256", "eddsa", "EdDSA "] {
        let header = serde_json::json!({
            "alg": alg, "typ": "passport", "ppt": "lcr",
            "kid": w.payer_key.key_id().to_string(), "x5u": CENTRAL,
        });
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        // `none` tokens carry an empty signature; try both shapes.
        for sig in ["", p[2].as_str()] {
            let forged = format!("{h}.{}.{sig}", p[1]);
            assert_eq!(
                w.verify(&forged).unwrap_err(),
                TicketError::UnsupportedAlgorithm(alg.into()),
                "{alg}"
            );
        }
    }
}

#[test]
fn bare_alg_none_header_is_refused_for_its_algorithm() {
    let w = World::new();
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    let p = parts(&token);
    for header in [r#"{"alg":"none"}"#, r#"{"alg":"none","typ":"JWT"}"#] {
        let forged = format!("{}.{}.", URL_SAFE_NO_PAD.encode(header), p[1]);
        assert_eq!(
            w.verify(&forged).unwrap_err(),
            TicketError::UnsupportedAlgorithm("none".into())
        );
    }
    let no_alg = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"passport"}"#),
        p[1],
        p[2]
    );
    assert!(matches!(
        w.verify(&no_alg).unwrap_err(),
        TicketError::InvalidJson {
            part: Part::Header,
            ..
        }
    ));
    let no_kid = serde_json::json!({"alg": "EdDSA", "typ": "passport", "ppt": "lcr"});
    let forged = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(no_kid.to_string()),
        p[1],
        p[2]
    );
    assert!(matches!(
        w.verify(&forged).unwrap_err(),
        TicketError::Malformed(_)
    ));
}

#[test]
fn receipt_is_not_accepted_as_ticket() {
    let w = World::new();
    let receipt = w
        .signer()
        .sign_receipt(&receipt_for(&w.ticket(), 100, 130, 30))
        .unwrap();
    assert!(matches!(
        w.verify(&receipt).unwrap_err(),
        TicketError::WrongTokenType { .. }
    ));
}

// ---- receipts ----

fn receipt_for(ticket: &Ticket, answer_after: i64, end_after: i64, billable: u64) -> UsageReceipt {
    UsageReceipt {
        iss: ticket.iss,
        aud: ticket.aud,
        tid: ticket.jti,
        answer: ticket.iat + answer_after,
        end: ticket.iat + end_after,
        billable,
        iat: ticket.iat + end_after + 1,
    }
}

/// A verified ticket and a verification time after the call.
fn accepted(w: &World) -> (VerifiedTicket, DateTime<Utc>) {
    let token = w.signer().sign_ticket(&w.ticket()).unwrap();
    (w.verify(&token).unwrap(), w.now + Duration::seconds(600))
}

#[test]
fn receipt_round_trip_with_countersignature() {
    let w = World::new();
    let (ticket, later) = accepted(&w);
    // 95 s with 30/6 increments: 30 + ceil(65/6)*6 = 30 + 66 = 96.
    let receipt = receipt_for(&ticket.ticket, 5, 100, 96);
    let payer_receipt = w.signer().sign_receipt(&receipt).unwrap();
    let verifier = w.verifier();
    let verified = verifier
        .verify_receipt(&payer_receipt, &ticket, later)
        .unwrap();
    assert_eq!(verified.receipt, receipt);

    let provider = TicketSigner::new(key_copy(&w.provider_key), CENTRAL);
    let countersigned = provider.countersign_receipt(&payer_receipt).unwrap();
    assert_eq!(parts(&countersigned)[1], parts(&payer_receipt)[1]);
    let both = verifier
        .verify_countersigned(&payer_receipt, &countersigned, &ticket, later)
        .unwrap();
    assert_eq!(
        both.provider.map(|c| c.key_id),
        Some(w.provider_key.key_id())
    );
}

#[test]
fn billable_seconds_follow_the_increments() {
    let rate = RateTerms {
        per_minute: dec!(0.01),
        connect_fee: dec!(0),
        first_increment: 30,
        next_increment: 6,
        currency: "EUR".parse().unwrap(),
        version: 1,
    };
    for (duration, billable) in [(0, 0), (1, 30), (30, 30), (31, 36), (36, 36), (37, 42)] {
        assert_eq!(
            rate.billable_seconds(duration),
            Some(billable),
            "{duration}"
        );
    }
}

#[test]
fn extreme_times_are_refused_without_overflow() {
    let w = World::new();
    let mut ticket = w.ticket();
    ticket.iat = i64::MIN;
    ticket.exp = i64::MAX;
    let token = w.signer().sign_ticket(&ticket).unwrap();
    assert!(matches!(
        w.verify(&token).unwrap_err(),
        TicketError::LifetimeTooLong { .. }
    ));

    let (accepted, later) = accepted(&w);
    let mut receipt = receipt_for(&accepted.ticket, 5, 100, 96);
    receipt.end = i64::MAX;
    receipt.iat = i64::MAX;
    let signed = w.signer().sign_receipt(&receipt).unwrap();
    assert!(matches!(
        w.verifier()
            .verify_receipt(&signed, &accepted, later)
            .unwrap_err(),
        TicketError::ReceiptTimesInconsistent(_)
    ));
    let mut zero = accepted.ticket.rate.clone();
    zero.next_increment = 0;
    assert_eq!(zero.billable_seconds(100), None);
}

#[test]
fn receipt_with_wrong_billable_seconds_is_refused() {
    let w = World::new();
    let (ticket, later) = accepted(&w);
    let receipt = receipt_for(&ticket.ticket, 5, 100, 95);
    let signed = w.signer().sign_receipt(&receipt).unwrap();
    assert_eq!(
        w.verifier()
            .verify_receipt(&signed, &ticket, later)
            .unwrap_err(),
        TicketError::BillableMismatch {
            expected: 96,
            found: 95
        }
    );
}

#[test]
fn receipt_with_inconsistent_times_is_refused() {
    let w = World::new();
    let (ticket, later) = accepted(&w);
    let verifier = w.verifier();
    let mut ends_first = receipt_for(&ticket.ticket, 50, 100, 0);
    ends_first.end = ends_first.answer - 1;
    let answered_early = receipt_for(&ticket.ticket, -3600, 0, 3600);
    let signed_early = UsageReceipt {
        iat: ticket.ticket.iat,
        ..receipt_for(&ticket.ticket, 5, 100, 96)
    };
    for receipt in [answered_early, signed_early] {
        let signed = w.signer().sign_receipt(&receipt).unwrap();
        assert!(
            matches!(
                verifier
                    .verify_receipt(&signed, &ticket, later)
                    .unwrap_err(),
                TicketError::ReceiptTimesInconsistent(_)
            ),
            "{receipt:?}"
        );
    }
    // The signer refuses to write it; a hand-signed one is refused on receipt.
    assert!(w.signer().sign_receipt(&ends_first).is_err());
    let signed = sign_raw(
        &w.payer_key,
        PPT_RECEIPT,
        &serde_json::to_vec(&ends_first).unwrap(),
    );
    assert!(matches!(
        verifier
            .verify_receipt(&signed, &ticket, later)
            .unwrap_err(),
        TicketError::ReceiptTimesInconsistent(_)
    ));
}

#[test]
fn receipt_for_another_ticket_or_by_another_key_is_refused() {
    let mut w = World::new();
    let (ticket, later) = accepted(&w);
    let mut receipt = receipt_for(&ticket.ticket, 5, 100, 96);
    receipt.tid = Uuid::now_v7();
    let signed = w.signer().sign_receipt(&receipt).unwrap();
    assert!(matches!(
        w.verifier()
            .verify_receipt(&signed, &ticket, later)
            .unwrap_err(),
        TicketError::ReceiptTicketMismatch(_)
    ));

    // Another certified key of the same payer did not sign the ticket.
    let second = ParticipantKey::generate();
    let der = w.cert(&second, PAYER_NAME, "provider:7");
    w.register(&second.key_id(), der, false);
    let receipt = receipt_for(&ticket.ticket, 5, 100, 96);
    let signed = TicketSigner::new(second, CENTRAL)
        .sign_receipt(&receipt)
        .unwrap();
    assert!(matches!(
        w.verifier()
            .verify_receipt(&signed, &ticket, later)
            .unwrap_err(),
        TicketError::ReceiptTicketMismatch(_)
    ));
}

#[test]
fn countersignature_over_other_claims_or_by_another_provider_is_refused() {
    let mut w = World::new();
    let (ticket, later) = accepted(&w);
    let payer_receipt = w
        .signer()
        .sign_receipt(&receipt_for(&ticket.ticket, 5, 100, 96))
        .unwrap();
    let provider = TicketSigner::new(key_copy(&w.provider_key), CENTRAL);
    // The provider countersigns a longer call than the payer signed.
    let longer = w
        .signer()
        .sign_receipt(&receipt_for(&ticket.ticket, 5, 200, 198))
        .unwrap();
    let countersigned = provider.countersign_receipt(&longer).unwrap();
    assert_eq!(
        w.verifier()
            .verify_countersigned(&payer_receipt, &countersigned, &ticket, later)
            .unwrap_err(),
        TicketError::CountersignatureMismatch
    );

    // Another certified provider countersigns.
    let intruder = ParticipantKey::generate();
    let der = w.cert(&intruder, "Intruder", "provider:99");
    w.register(&intruder.key_id(), der, false);
    let countersigned = TicketSigner::new(intruder, CENTRAL)
        .countersign_receipt(&payer_receipt)
        .unwrap();
    assert_eq!(
        w.verifier()
            .verify_countersigned(&payer_receipt, &countersigned, &ticket, later)
            .unwrap_err(),
        TicketError::WrongSignerRole(provider_sdk::pki::Role::Provider(99))
    );
}

#[test]
fn every_reason_has_a_distinct_code() {
    let reasons = [
        TicketError::BadSignature,
        TicketError::CallIdMismatch,
        TicketError::CertificateRevoked,
        TicketError::CertificateNotFromRoot,
        TicketError::ReplayCacheFull,
        TicketError::CountersignatureMismatch,
        TicketError::Replayed(Uuid::nil()),
    ];
    let codes: std::collections::HashSet<_> = reasons.iter().map(TicketError::code).collect();
    assert_eq!(codes.len(), reasons.len());
}

#[test]
fn a_cached_certificate_is_still_checked_for_expiry_and_revocation() {
    let mut w = World::new();
    let der = issue(
        &w.root,
        &w.payer_key,
        PAYER_NAME,
        "provider:7",
        w.now - Duration::hours(1),
        w.now + Duration::days(1),
    );
    w.register(&w.payer_key.key_id(), der.clone(), false);
    let root = RootCertificate::from_der(&w.root.der).unwrap();
    let source = std::sync::Mutex::new(w.source.0.clone());
    struct Shared<'a>(&'a std::sync::Mutex<HashMap<KeyId, CertificateStatus>>);
    impl CertificateSource for Shared<'_> {
        fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
            let map = self
                .0
                .lock()
                .map_err(|_| CertificateLookupError::Unavailable("poisoned".into()))?;
            map.get(kid).cloned().ok_or(CertificateLookupError::Unknown)
        }
    }
    let verifier = TicketVerifier::new(root, Shared(&source), PROVIDER_ID);
    let dest = dest();
    let minimum = minimum();
    let call = expect(&dest, &minimum);
    let signer = w.signer();
    verifier
        .verify_ticket(&signer.sign_ticket(&w.ticket()).unwrap(), &call, w.now)
        .unwrap();

    // Two days later the certificate verified (and cached) above has expired.
    let later = w.now + Duration::days(2);
    let mut ticket = w.ticket();
    ticket.iat = later.timestamp();
    ticket.exp = ticket.iat + 60;
    assert!(matches!(
        verifier
            .verify_ticket(&signer.sign_ticket(&ticket).unwrap(), &call, later)
            .unwrap_err(),
        TicketError::CertificateExpired { .. }
    ));

    // Central revokes it: the next ticket is refused at once.
    source.lock().unwrap().insert(
        w.payer_key.key_id(),
        CertificateStatus { der, revoked: true },
    );
    assert_eq!(
        verifier
            .verify_ticket(&signer.sign_ticket(&w.ticket()).unwrap(), &call, w.now)
            .unwrap_err(),
        TicketError::CertificateRevoked
    );
}

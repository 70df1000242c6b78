//! `provider_sdk::central` against a real central server over real HTTPS:
//! enrollment from nothing to a stored certificate, rate decks published
//! and read back as typed routes, certificates fetched and revocations seen
//! after the cache TTL, problem+json errors surfaced, and unreachable,
//! silent or wrongly-certified servers giving typed errors.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::{Backend, Central};
use provider_sdk::central::{
    ensure_enrolled, CacheSettings, CentralClient, CentralError, CertificateState, Enrolled,
    EnrollmentConfig, HealthStatus, RateUpload, Route, RouteQuery, Timeouts, Transport, UploadKind,
};
use provider_sdk::number::E164;
use provider_sdk::pki::{KeyId, ParticipantKey, Role, RootCertificate};
use provider_sdk::ratedeck::{RateDeck, RateDelta};
use provider_sdk::ticket::{
    CallExpectation, CertificateLookupError, CertificateSource, MinimumTerms, RateTerms, Ticket,
    TicketError, TicketSigner, TicketVerifier,
};
use rust_decimal_macros::dec;
use serde_json::{json, Value};

/// Registers a provider as the operator; returns its id and one-time token.
async fn register(c: &Central, name: &str) -> (u64, String) {
    let res = c
        .operator()
        .post(c.url("/v1/providers"))
        .json(&json!({
            "name": name,
            "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"},
                              {"address": "localhost:5061", "transport": "tls"}],
            "currency": "EUR",
            "contact": "noc@example.net",
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    (
        body["id"].as_u64().expect("id"),
        body["enrollment_token"].as_str().expect("token").to_owned(),
    )
}

fn config(c: &Central, dir: &Path, name: &str, token: Option<String>) -> EnrollmentConfig {
    EnrollmentConfig {
        central_url: c.base.clone(),
        root_certificate: c.dir.path().join("ca.crt"),
        key: dir.join("keys").join(format!("{name}.key")),
        certificate: dir.join("keys").join(format!("{name}.crt")),
        name: name.to_owned(),
        enrollment_token: token,
    }
}

/// A registered and enrolled provider.
async fn enrolled(c: &Central, dir: &Path, name: &str) -> Enrolled {
    let (_, token) = register(c, name).await;
    ensure_enrolled(&config(c, dir, name, Some(token)))
        .await
        .expect("enroll")
}

fn client_for(c: &Central, e: &Enrolled) -> CentralClient {
    e.client_builder(&c.base).build().expect("client")
}

/// Polls route answers until `pred` holds (the index is rebuilt off the
/// request path), bounded at 30 s.
async fn routes_until(
    client: &CentralClient,
    query: &RouteQuery,
    pred: impl Fn(&[Route]) -> bool,
) -> Vec<Route> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let routes = client.routes(query).await.expect("routes");
        if pred(&routes) || std::time::Instant::now() > deadline {
            return routes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_from_nothing_then_reuse() {
    let c = Central::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (id, token) = register(&c, "carrier-a").await;
    let cfg = config(&c, dir.path(), "carrier-a", Some(token.clone()));
    assert!(
        !format!("{cfg:?}").contains(&token),
        "Debug must not show the token"
    );

    // Nothing stored and no token: a clear error, nothing sent.
    let no_token = EnrollmentConfig {
        enrollment_token: None,
        ..cfg.clone()
    };
    match ensure_enrolled(&no_token).await {
        Err(CentralError::NotEnrolled(why)) => {
            assert!(why.contains("no certificate at"), "{why}");
            assert!(why.contains("enrollment_token"), "{why}");
        }
        other => panic!("expected NotEnrolled, got {other:?}"),
    }

    // A wrong token: central's 403 with its detail.
    let wrong = EnrollmentConfig {
        enrollment_token: Some("enr_0000".into()),
        ..cfg.clone()
    };
    let err = ensure_enrolled(&wrong).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(
        err.problem().unwrap().detail.contains("enrollment token"),
        "{err}"
    );
    assert!(!cfg.certificate.exists());

    // The real token: key created 0600, certificate stored and verified.
    let e = ensure_enrolled(&cfg).await.expect("enroll");
    assert!(e.newly_enrolled);
    assert_eq!(e.provider_id(), Some(id));
    assert_eq!(e.certified.subject_cn, "carrier-a");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stored = std::fs::read_to_string(&cfg.certificate).unwrap();
    assert_eq!(stored, e.certificate_pem);
    let root = RootCertificate::from_pem(&c.root_pem).unwrap();
    let certified = root.verify_pem(&stored, Utc::now()).unwrap();
    assert_eq!(
        certified.key_id,
        ParticipantKey::load_pem(&cfg.key).unwrap().key_id()
    );

    // Central has it on record, and mutual TLS with it works.
    let client = client_for(&c, &e);
    assert_eq!(client.role(), Some(Role::Provider(id)));
    let info = client.certificate(&e.certified.key_id).await.unwrap();
    assert_eq!(info.state, CertificateState::Valid);
    assert_eq!(info.role, Role::Provider(id));
    assert_eq!(info.subject_cn, "carrier-a");
    assert_eq!(
        root.verify(&info.der, Utc::now()).unwrap().key_id,
        e.certified.key_id
    );
    let version = client
        .publish_rates(RateUpload::Csv("49,0.02,0,60,60\n"))
        .await
        .expect("publish with the enrolled certificate");
    assert_eq!(version.provider_id, id);

    // Next start: the stored credential is reused, nothing is sent (the
    // token is used up, so enrolling again would fail).
    let again = ensure_enrolled(&cfg).await.expect("reuse");
    assert!(!again.newly_enrolled);
    assert_eq!(again.certificate_pem, e.certificate_pem);
    assert_eq!(again.key.key_id(), e.key.key_id());

    // The certificate lost: the used-up token is refused by central.
    std::fs::remove_file(&cfg.certificate).unwrap();
    let err = ensure_enrolled(&cfg).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // A certificate that is not for our key is not reused.
    let other = enrolled(&c, dir.path(), "carrier-b").await;
    std::fs::write(&cfg.certificate, &other.certificate_pem).unwrap();
    match ensure_enrolled(&no_token).await {
        Err(CentralError::NotEnrolled(why)) => assert!(why.contains("is for key"), "{why}"),
        other => panic!("expected NotEnrolled, got {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_decks_come_back_as_typed_routes() {
    let c = Central::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let a = enrolled(&c, dir.path(), "carrier-a").await;
    let b = enrolled(&c, dir.path(), "carrier-b").await;
    let client_a = client_for(&c, &a);
    let client_b = client_for(&c, &b);

    let csv = "prefix,rate_per_minute,connect_fee,first_increment,next_increment,effective_from,description\n\
               49,0.0200,0,60,60,,Germany\n\
               4930,0.0100,0.001,30,6,,Berlin\n\
               4930,0.0090,0,30,6,2099-01-01T00:00:00Z,Berlin later\n";
    let v = client_a.publish_rates(RateUpload::Csv(csv)).await.unwrap();
    assert_eq!(
        (v.provider_id, v.version, v.kind, v.line_count),
        (a.provider_id().unwrap(), 1, UploadKind::Full, 3)
    );
    let deck = RateDeck::parse_csv(b"49,0.0150,0,1,1\n").unwrap();
    let v = client_b
        .publish_rates(RateUpload::Deck(&deck))
        .await
        .unwrap();
    assert_eq!((v.version, v.kind, v.line_count), (1, UploadKind::Full, 1));

    let anonymous = CentralClient::anonymous(&c.base, &c.root_pem).unwrap();
    let query = RouteQuery::new(E164::parse("+49 30 123456").unwrap());
    let routes = routes_until(&anonymous, &query, |r| r.len() == 2).await;
    assert_eq!(routes.len(), 2, "{routes:?}");
    let first = &routes[0];
    assert_eq!(first.provider_id, a.provider_id().unwrap());
    assert_eq!(first.provider_name, "carrier-a");
    assert_eq!(first.prefix.digits(), "4930");
    assert_eq!(first.rate_per_minute, dec!(0.0100));
    assert_eq!(first.connect_fee, dec!(0.001));
    assert_eq!((first.first_increment, first.next_increment), (30, 6));
    assert_eq!(first.currency.as_str(), "EUR");
    assert_eq!(first.rate_version, 1);
    assert_eq!(first.sip_addresses.len(), 2);
    assert_eq!(first.sip_addresses[0].address, "127.0.0.1:5060");
    assert_eq!(first.sip_addresses[0].transport, Transport::Udp);
    assert_eq!(first.sip_addresses[1].transport, Transport::Tls);
    let second = &routes[1];
    assert_eq!(second.provider_id, b.provider_id().unwrap());
    assert_eq!(second.prefix.digits(), "49");
    assert_eq!(second.rate_per_minute, dec!(0.0150));

    // A price cap, a currency, a limit.
    let capped = RouteQuery {
        max_rate: Some(dec!(0.012)),
        currency: Some("EUR".parse().unwrap()),
        limit: Some(5),
        ..query.clone()
    };
    let routes = anonymous.routes(&capped).await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].provider_name, "carrier-a");
    let other_currency = RouteQuery {
        currency: Some("USD".parse().unwrap()),
        ..query.clone()
    };
    assert!(anonymous.routes(&other_currency).await.unwrap().is_empty());

    // A delta makes carrier-a dearer than carrier-b.
    let delta = RateDelta::parse_json(
        br#"{"upsert": [{"prefix": "4930", "rate_per_minute": "0.03", "connect_fee": "0",
                         "first_increment": 1, "next_increment": 1}]}"#,
    )
    .unwrap();
    let v = client_a
        .publish_rates(RateUpload::Delta(&delta))
        .await
        .unwrap();
    assert_eq!((v.version, v.kind), (2, UploadKind::Delta));
    let routes = routes_until(&anonymous, &query, |r| {
        r.first().map(|r| r.provider_name.as_str()) == Some("carrier-b")
    })
    .await;
    assert_eq!(routes[0].provider_name, "carrier-b", "{routes:?}");
    assert_eq!(routes[1].rate_per_minute, dec!(0.03));
    assert_eq!(routes[1].rate_version, 2);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_surface_the_problem_with_every_bad_line() {
    let c = Central::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let a = enrolled(&c, dir.path(), "carrier-a").await;
    let client = client_for(&c, &a);
    client
        .publish_rates(RateUpload::Csv("49,0.0200,0,60,60\n"))
        .await
        .unwrap();

    let bad = "prefix,rate_per_minute,connect_fee,first_increment,next_increment\n\
               49,-1,0,60,60\n\
               4930,0.01,0,30,6\n\
               4x,0.01,0,0,6\n";
    let err = client
        .publish_rates(RateUpload::Csv(bad))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!err.is_transient());
    let problem = err.problem().unwrap();
    assert_eq!(problem.title, "Bad Request");
    assert!(problem.detail.contains("nothing was stored"), "{problem:?}");
    let lines: Vec<usize> = problem.errors.iter().map(|e| e.line).collect();
    assert!(lines.contains(&2) && lines.contains(&4), "{lines:?}");
    assert!(!lines.contains(&3), "{lines:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("line 2") && shown.contains("line 4"),
        "{shown}"
    );

    // Nothing was stored: routes still show the first deck.
    let anonymous = CentralClient::anonymous(&c.base, &c.root_pem).unwrap();
    let query = RouteQuery::new(E164::parse("+4930123").unwrap());
    let routes = routes_until(&anonymous, &query, |r| !r.is_empty()).await;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].prefix.digits(), "49");
    assert_eq!(routes[0].rate_version, 1);

    // Query parameters central refuses.
    let err = anonymous
        .routes(&RouteQuery {
            limit: Some(0),
            ..query.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.problem().unwrap().detail.contains("limit"), "{err}");

    // An unknown key.
    let unknown: KeyId = ParticipantKey::generate().key_id();
    let err = anonymous.certificate(&unknown).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");

    // Publishing without a provider's certificate is refused before sending.
    match anonymous
        .publish_rates(RateUpload::Csv("49,0.01,0,1,1\n"))
        .await
    {
        Err(CentralError::Credential(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected a credential error, got {other:?}"),
    }
    let operator_key_pem = std::fs::read_to_string(c.dir.path().join("operator.key")).unwrap();
    let operator_cert = std::fs::read_to_string(c.dir.path().join("operator.crt")).unwrap();
    let operator = CentralClient::builder(&c.base, &c.root_pem)
        .identity(
            &operator_cert,
            &ParticipantKey::from_pkcs8_pem(&operator_key_pem).unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(operator.role(), Some(Role::Operator));
    assert!(matches!(
        operator
            .publish_rates(RateUpload::Csv("49,0.01,0,1,1\n"))
            .await,
        Err(CentralError::Credential(_))
    ));

    // A certificate with another key than the one given is refused at build.
    let mismatched = CentralClient::builder(&c.base, &c.root_pem)
        .identity(&a.certificate_pem, &ParticipantKey::generate())
        .build();
    assert!(matches!(mismatched, Err(CentralError::Pki(_))));
    c.shutdown().await;
}

fn ticket(payer: &Enrolled, carrier: &Enrolled) -> Ticket {
    let now = Utc::now().timestamp();
    Ticket {
        iss: payer.provider_id().unwrap(),
        payer: payer.certified.subject_cn.clone(),
        aud: carrier.provider_id().unwrap(),
        orig: E164::parse("+4930123456").unwrap(),
        dest: E164::parse("+33639980001").unwrap(),
        call_id: "a84b4c76e66710@127.0.0.1".into(),
        rate: RateTerms {
            per_minute: dec!(0.021),
            connect_fee: dec!(0),
            first_increment: 60,
            next_increment: 60,
            currency: "EUR".parse().unwrap(),
            version: 1,
        },
        iat: now,
        exp: now + 60,
        jti: uuid::Uuid::now_v7(),
    }
}

fn verify<S: CertificateSource>(
    verifier: &TicketVerifier<S>,
    token: &str,
) -> Result<(), TicketError> {
    let dest = E164::parse("+33639980001").unwrap();
    let minimum = MinimumTerms {
        per_minute: dec!(0.02),
        connect_fee: dec!(0),
        first_increment: 60,
        next_increment: 60,
        currency: "EUR".parse().unwrap(),
    };
    let call = CallExpectation {
        dest: &dest,
        call_id: "a84b4c76e66710@127.0.0.1",
        minimum: &minimum,
    };
    verifier.verify_ticket(token, &call, Utc::now()).map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_seen_after_the_cache_ttl() {
    let c = Central::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let payer = enrolled(&c, dir.path(), "home").await;
    let carrier = enrolled(&c, dir.path(), "carrier").await;
    let root = RootCertificate::from_pem(&c.root_pem).unwrap();
    let carrier_id = carrier.provider_id().unwrap();
    let signer = TicketSigner::new(payer.key.clone(), &c.base);
    let kid = payer.certified.key_id.clone();

    let ttl = Duration::from_millis(300);
    let long = carrier
        .client_builder(&c.base)
        .cache(CacheSettings {
            ttl: Duration::from_secs(3600),
            ..CacheSettings::default()
        })
        .build()
        .unwrap();
    let short = carrier
        .client_builder(&c.base)
        .cache(CacheSettings {
            ttl,
            ..CacheSettings::default()
        })
        .build()
        .unwrap();
    let long_verifier = TicketVerifier::new(root.clone(), long.certificate_cache(), carrier_id);
    let short_verifier = TicketVerifier::new(root.clone(), short.certificate_cache(), carrier_id);

    // Before any fetch the verifier cannot find the certificate.
    let token = signer.sign_ticket(&ticket(&payer, &carrier)).unwrap();
    assert!(matches!(
        verify(&short_verifier, &token),
        Err(TicketError::CertificateUnavailable(_))
    ));
    assert_eq!(short.prefetch_for_token(&token).await.unwrap(), kid);
    long.prefetch(&kid).await.unwrap();
    verify(&short_verifier, &token).expect("valid before revocation");
    let token = signer.sign_ticket(&ticket(&payer, &carrier)).unwrap();
    verify(&long_verifier, &token).expect("valid before revocation");

    let res = c
        .operator()
        .post(c.url(&format!("/v1/certificates/{kid}/revoke")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Within its TTL a cached "valid" is used without asking central: the
    // documented window (an hour here, 60 s by default).
    long.prefetch(&kid).await.unwrap();
    assert!(!long.certificate_cache().certificate(&kid).unwrap().revoked);

    // Past the TTL the next prefetch asks again and sees the revocation.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(!short.certificate_cache().is_fresh(&kid));
    assert!(matches!(
        short.certificate_cache().certificate(&kid),
        Err(CertificateLookupError::Unavailable(_))
    ));
    let token = signer.sign_ticket(&ticket(&payer, &carrier)).unwrap();
    short.prefetch_for_token(&token).await.unwrap();
    assert_eq!(
        verify(&short_verifier, &token),
        Err(TicketError::CertificateRevoked)
    );
    // ... and keeps it revoked, past the TTL too.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(short.certificate_cache().is_fresh(&kid));
    assert!(short.certificate_cache().certificate(&kid).unwrap().revoked);

    let info = short.certificate(&kid).await.unwrap();
    assert_eq!(info.state, CertificateState::Revoked);
    assert!(info.revoked_at.is_some());

    // A key central never certified: remembered as unknown.
    let stranger = TicketSigner::new(ParticipantKey::generate(), &c.base);
    let token = stranger.sign_ticket(&ticket(&payer, &carrier)).unwrap();
    let stranger_kid = short.prefetch_for_token(&token).await.unwrap();
    assert_eq!(
        short.certificate_cache().certificate(&stranger_kid),
        Err(CertificateLookupError::Unknown)
    );
    assert!(matches!(
        verify(&short_verifier, &token),
        Err(TicketError::UnknownKey(_))
    ));
    // A token that is not one.
    assert!(matches!(
        short.prefetch_for_token("not.a.token").await,
        Err(CentralError::Token(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_silent_and_foreign_servers_give_typed_errors() {
    let c = Central::start(Backend::Sqlite).await;
    let anonymous = CentralClient::anonymous(&c.base, &c.root_pem).unwrap();
    let health = anonymous.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Ok);
    assert_eq!(health.database, "reachable");

    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down =
        CentralClient::anonymous(&format!("https://127.0.0.1:{closed}"), &c.root_pem).unwrap();
    let err = down.health().await.unwrap_err();
    assert!(matches!(err, CentralError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());

    // Accepts TCP, never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let quick = Timeouts {
        connect: Duration::from_millis(300),
        request: Duration::from_millis(300),
        upload: Duration::from_millis(300),
    };
    let mute = CentralClient::builder(&format!("https://127.0.0.1:{silent_port}"), &c.root_pem)
        .timeouts(quick)
        .build()
        .unwrap();
    let err = mute.health().await.unwrap_err();
    assert!(matches!(err, CentralError::Timeout { .. }), "{err:?}");
    hold.abort();

    // The real central, but pinned to another root: refused in the handshake.
    let other = central::ca::CertificateAuthority::create("another root").unwrap();
    let foreign = CentralClient::anonymous(&c.base, &other.root_cert_pem()).unwrap();
    let err = foreign.health().await.unwrap_err();
    assert!(matches!(err, CentralError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
    c.shutdown().await;
}

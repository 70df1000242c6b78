//! The settlement ledger end to end, over real HTTPS with certificates from
//! central's own CA, on SQLite and PostgreSQL: `POST /v1/tickets` (single and
//! batch; agreed, disputed, provider-only, duplicates, conflicts), every
//! refusal with its own reason and nothing stored, and `GET /v1/settlements`
//! (JSON, CSV, access control).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use central::ca::{CertificateAuthority, Validity};
use central::db::ledger;
use central::db::store::{self, CertOwner, StoredCertificate};
use central::db::Database;
use chrono::{DateTime, Duration, Utc};
use common::{problem, Backend, Central, TestProvider};
use provider_sdk::number::E164;
use provider_sdk::pki::{ParticipantKey, Role};
use provider_sdk::ticket::jws::{self, JwsHeader};
use provider_sdk::ticket::{
    RateTerms, Ticket, TicketSigner, UsageReceipt, PPT_RECEIPT, PPT_TICKET,
};
use reqwest::Client;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

/// A network of three providers: `payer` signs tickets, `carrier` carries
/// the calls and submits, `other` is a third party.
struct Net {
    central: Central,
    payer: TestProvider,
    carrier: TestProvider,
    other: TestProvider,
}

impl Net {
    async fn start(backend: Backend) -> Net {
        Self::with(Central::start(backend).await).await
    }

    async fn with(central: Central) -> Net {
        let payer = central.provider("home", "EUR").await;
        let carrier = central.provider("carrier", "EUR").await;
        let other = central.provider("other", "EUR").await;
        Net {
            central,
            payer,
            carrier,
            other,
        }
    }

    fn signer(&self, p: &TestProvider) -> TicketSigner {
        TicketSigner::new(key_of(p), &self.central.base)
    }

    /// A ticket from payer to carrier issued 4 minutes ago, expired 3
    /// minutes ago (the ledger judges it at its `iat`). Not earlier: the
    /// providers' certificates were issued just now (backdated 5 minutes).
    fn ticket(&self) -> Ticket {
        self.ticket_at(Utc::now().timestamp() - 240)
    }

    fn ticket_at(&self, iat: i64) -> Ticket {
        Ticket {
            iss: id(&self.payer),
            payer: "home".into(),
            aud: id(&self.carrier),
            orig: E164::parse("+4930123456").expect("number"),
            dest: E164::parse("+441632960001").expect("number"),
            call_id: format!("{}@127.0.0.1", Uuid::new_v4().simple()),
            rate: RateTerms {
                per_minute: dec!(0.0125),
                connect_fee: dec!(0.01),
                first_increment: 30,
                next_increment: 6,
                currency: "EUR".parse().expect("currency"),
                version: 3,
            },
            iat,
            exp: iat + 60,
            jti: Uuid::now_v7(),
        }
    }

    /// Ticket, payer receipt for a call of `secs` seconds, countersignature.
    fn agreed(&self, t: &Ticket, secs: i64) -> Value {
        let token = self.signer(&self.payer).sign_ticket(t).expect("ticket");
        let r = self
            .signer(&self.payer)
            .sign_receipt(&receipt(t, secs))
            .expect("receipt");
        let c = self
            .signer(&self.carrier)
            .countersign_receipt(&r)
            .expect("countersign");
        json!({"ticket": token, "receipt": r, "provider_receipt": c})
    }

    async fn post(&self, client: &Client, body: &Value) -> reqwest::Response {
        client
            .post(self.central.url("/v1/tickets"))
            .json(body)
            .send()
            .await
            .expect("post tickets")
    }

    async fn settlements(&self, client: &Client, query: &str) -> (u16, Value) {
        let res = client
            .get(self.central.url(&format!("/v1/settlements?{query}")))
            .send()
            .await
            .expect("settlements");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    fn db(&self) -> Database {
        Database::open(&self.central.database_url, 1).expect("open db")
    }

    fn ca(&self) -> CertificateAuthority {
        CertificateAuthority::load(self.central.dir.path().join(central::app::CA_DIR)).expect("ca")
    }

    /// Certifies a new key of the payer with central's CA for `validity`
    /// and records it as central does.
    fn enroll_payer_key(&self, ca: &CertificateAuthority, validity: Validity) -> ParticipantKey {
        let key = ParticipantKey::generate();
        let cert = ca
            .certify_csr(
                &key.csr_pem("home").expect("csr"),
                Role::Provider(id(&self.payer)),
                validity,
            )
            .expect("certify");
        record(&self.db(), &cert, self.payer.id);
        key
    }
}

fn record(db: &Database, cert: &central::ca::IssuedCert, provider: i64) {
    let stored = StoredCertificate {
        key_id: cert.key_id.to_string(),
        serial: cert.serial.to_string(),
        owner: CertOwner::Provider(provider),
        subject_cn: "home".into(),
        cert_pem: cert.cert_pem.clone(),
        not_before: cert.not_before,
        not_after: cert.not_after,
        revoked_at: None,
    };
    store::insert_certificate(&mut db.conn().expect("conn"), &stored, Utc::now()).expect("insert");
}

fn key_of(p: &TestProvider) -> ParticipantKey {
    ParticipantKey::from_pkcs8_pem(&p.key_pem).expect("key")
}

fn id(p: &TestProvider) -> u64 {
    u64::try_from(p.id).expect("id")
}

/// The receipt of a call answered 5 s after the ticket, lasting `secs`.
fn receipt(t: &Ticket, secs: i64) -> UsageReceipt {
    let answer = t.iat + 5;
    let end = answer + secs;
    UsageReceipt {
        iss: t.iss,
        aud: t.aud,
        tid: t.jti,
        answer,
        end,
        billable: t
            .rate
            .billable_seconds(u64::try_from(secs).expect("secs"))
            .expect("billable"),
        iat: end + 1,
    }
}

fn window(t: &Ticket) -> String {
    let day = |s: i64| {
        DateTime::from_timestamp(s, 0)
            .expect("time")
            .to_rfc3339()
            .replace('+', "%2B")
    };
    format!("from={}&to={}", day(t.iat - 86_400), day(t.iat + 86_400))
}

async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

async fn agreed_submission_is_stored_and_settled(backend: Backend) {
    let net = Net::start(backend).await;
    let t = net.ticket();
    let body = net.agreed(&t, 61);
    let (status, got) = json_of(net.post(&net.carrier.client, &body).await).await;
    assert_eq!(status, 201, "{got}");
    // 61 s billed 30/6 is 66 s: 0.01 + 0.0125 × 66 / 60 = 0.02375.
    assert_eq!(
        got,
        json!({"ticket_id": t.jti.to_string(), "status": "agreed", "amount": "0.02375",
               "currency": "EUR", "duplicate": false})
    );

    // The identical submission again: a duplicate, nothing changes.
    let (status, again) = json_of(net.post(&net.carrier.client, &body).await).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["amount"], "0.02375");

    // Same ticket id, other content (the carrier's own, longer claim): 409.
    let mut other = body.clone();
    let longer = UsageReceipt {
        billable: 96,
        end: t.iat + 5 + 91,
        iat: t.iat + 5 + 92,
        ..receipt(&t, 61)
    };
    other["provider_receipt"] = json!(net
        .signer(&net.carrier)
        .sign_receipt(&longer)
        .expect("sign"));
    let (status, p) = problem(net.post(&net.carrier.client, &other).await).await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["reason"], "conflict");

    let db = net.db();
    let stored = ledger::get_ticket(&mut db.conn().expect("conn"), &t.jti.to_string())
        .expect("query")
        .expect("stored");
    assert_eq!(stored.status.to_string(), "agreed");
    assert_eq!(stored.amount, dec!(0.02375));
    assert_eq!(stored.settled.billable_seconds, 66);
    assert_eq!(stored.payer_claim, Some(stored.provider_claim));
    assert_eq!(stored.ticket_token, body["ticket"].as_str().expect("token"));
    assert_eq!(
        stored.provider_receipt_token,
        body["provider_receipt"].as_str().expect("token"),
        "the first submission stays"
    );
    assert_eq!(
        stored.payer_receipt_token.as_deref(),
        body["receipt"].as_str()
    );
    assert_eq!(stored.submitted_by, net.carrier.key_id);
    assert_eq!(
        (stored.payer_id, stored.provider_id),
        (net.payer.id, net.carrier.id)
    );
    assert_eq!(stored.call_id, t.call_id);
    assert_eq!(stored.rate_version, 3);
    assert_eq!(stored.issued_at.timestamp(), t.iat);
    assert_eq!(stored.settled.answer_at.timestamp(), t.iat + 5);
    assert_eq!(
        ledger::count_tickets(&mut db.conn().expect("conn")).expect("count"),
        1
    );

    let (status, report) = net.settlements(&net.central.operator(), &window(&t)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["settlements"],
        json!([{"payer_id": net.payer.id, "provider_id": net.carrier.id, "currency": "EUR",
                "tickets": 1, "billable_seconds": 66, "amount": "0.02375",
                "provider_only_tickets": 0, "provider_only_amount": "0",
                "disputed_tickets": 0, "disputed_billable_seconds": 0, "disputed_amount": "0"}])
    );

    let metrics = net
        .central
        .anonymous()
        .get(net.central.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "central_ledger_submissions_total{outcome=\"agreed\"} 1",
        "central_ledger_submissions_total{outcome=\"duplicate\"} 1",
        "central_ledger_submissions_total{outcome=\"conflict\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    net.central.shutdown().await;
}
both_backends!(
    agreed_submission,
    crate::agreed_submission_is_stored_and_settled
);

async fn dispute_and_provider_only_are_kept_apart(backend: Backend) {
    let net = Net::start(backend).await;
    // Dispute: the payer says 61 s (66 billable), the carrier 91 s (96).
    let t = net.ticket();
    let token = net.signer(&net.payer).sign_ticket(&t).expect("ticket");
    let payer_r = net
        .signer(&net.payer)
        .sign_receipt(&receipt(&t, 61))
        .expect("receipt");
    let carrier_r = net
        .signer(&net.carrier)
        .sign_receipt(&receipt(&t, 91))
        .expect("receipt");
    let (status, got) = json_of(
        net.post(
            &net.carrier.client,
            &json!({"ticket": token, "receipt": payer_r, "provider_receipt": carrier_r}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{got}");
    assert_eq!(got["status"], "disputed");
    // Settled at the lower claim: 66 s, 0.02375.
    assert_eq!(got["amount"], "0.02375");
    let db = net.db();
    let stored = ledger::get_ticket(&mut db.conn().expect("conn"), &t.jti.to_string())
        .expect("query")
        .expect("stored");
    assert_eq!(stored.payer_claim.map(|c| c.billable_seconds), Some(66));
    assert_eq!(stored.provider_claim.billable_seconds, 96);
    assert_eq!(
        stored.payer_receipt_token.as_deref(),
        Some(payer_r.as_str())
    );
    assert_eq!(stored.provider_receipt_token, carrier_r);

    // Provider only: the payer never sent a receipt; 120 s at 30/6 is 120.
    let t2 = net.ticket();
    let token2 = net.signer(&net.payer).sign_ticket(&t2).expect("ticket");
    let own = net
        .signer(&net.carrier)
        .sign_receipt(&receipt(&t2, 120))
        .expect("receipt");
    let (status, got) = json_of(
        net.post(
            &net.carrier.client,
            &json!({"ticket": token2, "provider_receipt": own}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{got}");
    assert_eq!(got["status"], "provider_only");
    // 0.01 + 0.0125 × 2 = 0.035
    assert_eq!(got["amount"], "0.035");
    let stored = ledger::get_ticket(&mut db.conn().expect("conn"), &t2.jti.to_string())
        .expect("query")
        .expect("stored");
    assert_eq!(stored.payer_claim, None);
    assert_eq!(stored.payer_receipt_token, None);

    let (status, report) = net.settlements(&net.central.operator(), &window(&t)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["settlements"],
        json!([{"payer_id": net.payer.id, "provider_id": net.carrier.id, "currency": "EUR",
                "tickets": 1, "billable_seconds": 120, "amount": "0.035",
                "provider_only_tickets": 1, "provider_only_amount": "0.035",
                "disputed_tickets": 1, "disputed_billable_seconds": 66, "disputed_amount": "0.02375"}])
    );
    net.central.shutdown().await;
}
both_backends!(
    dispute_and_provider_only,
    crate::dispute_and_provider_only_are_kept_apart
);

/// Signs `payload` under a hand-made header (for `alg` and type tricks).
fn raw_token(header: &Value, payload: &[u8], key: &ParticipantKey) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("header"));
    let p = URL_SAFE_NO_PAD.encode(payload);
    let input = format!("{h}.{p}");
    let sig = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
    format!("{input}.{sig}")
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

async fn every_forgery_is_refused_with_its_reason(backend: Backend) {
    let net = Net::start(backend).await;
    let payer = net.signer(&net.payer);
    let carrier = net.signer(&net.carrier);
    let ca = net.ca();

    // A certificate from another CA, for the payer's id and name, recorded
    // in central's directory (as after a botched restore).
    let foreign_ca = CertificateAuthority::create("central root CA").expect("ca");
    let foreign_key = ParticipantKey::generate();
    let foreign = foreign_ca
        .certify_csr(
            &foreign_key.csr_pem("home").expect("csr"),
            Role::Provider(id(&net.payer)),
            Validity::days(30),
        )
        .expect("certify");
    record(&net.db(), &foreign, net.payer.id);

    // A certificate central issued that had expired before the ticket.
    let expired_key = net.enroll_payer_key(
        &ca,
        Validity::new(
            Utc::now() - Duration::days(30),
            Utc::now() - Duration::days(2),
        )
        .expect("validity"),
    );

    let mut cases: Vec<(&str, Value, u16, &str)> = Vec::new();
    let good = |t: &Ticket| net.agreed(t, 61);

    let t = net.ticket();
    let mut b = good(&t);
    let p = parts(b["ticket"].as_str().expect("t"));
    let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).expect("b64");
    sig[7] ^= 0x20;
    b["ticket"] = json!(format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig)));
    cases.push(("bad ticket signature", b, 422, "bad-signature"));

    let t = net.ticket();
    let mut b = good(&t);
    let r = b["provider_receipt"].as_str().expect("r").to_owned();
    let p = parts(&r);
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(&p[1]).expect("b64")).expect("utf8");
    let longer = claims.replace("\"billable\":66", "\"billable\":6600");
    assert_ne!(claims, longer);
    b["provider_receipt"] = json!(format!(
        "{}.{}.{}",
        p[0],
        URL_SAFE_NO_PAD.encode(longer),
        p[2]
    ));
    cases.push(("tampered countersignature", b, 422, "bad-signature"));

    let stranger = TicketSigner::new(ParticipantKey::generate(), &net.central.base);
    let t = net.ticket();
    let mut b = good(&t);
    b["ticket"] = json!(stranger.sign_ticket(&t).expect("sign"));
    cases.push(("key central never certified", b, 422, "unknown-key"));

    let t = net.ticket();
    let mut b = good(&t);
    b["ticket"] = json!(TicketSigner::new(foreign_key, &net.central.base)
        .sign_ticket(&t)
        .expect("sign"));
    b.as_object_mut().expect("obj").remove("receipt");
    cases.push((
        "certificate from another CA",
        b,
        422,
        "certificate-not-from-root",
    ));

    let t = net.ticket();
    let expired = TicketSigner::new(expired_key, &net.central.base);
    let r = expired.sign_receipt(&receipt(&t, 61)).expect("receipt");
    let b = json!({"ticket": expired.sign_ticket(&t).expect("sign"), "receipt": r,
                   "provider_receipt": carrier.countersign_receipt(&r).expect("cs")});
    cases.push((
        "certificate expired before iat",
        b,
        422,
        "certificate-expired",
    ));

    let mut t = net.ticket();
    t.aud = id(&net.other);
    cases.push((
        "ticket addressed to another provider",
        json!({"ticket": payer.sign_ticket(&t).expect("sign"),
               "provider_receipt": carrier.sign_receipt(&receipt(&t, 61)).expect("r")}),
        403,
        "wrong-audience",
    ));

    let t = net.ticket();
    let mut b = good(&t);
    let by_carrier = carrier.sign_receipt(&receipt(&t, 61)).expect("r");
    b["receipt"] = json!(by_carrier);
    b["provider_receipt"] = json!(carrier.countersign_receipt(&by_carrier).expect("cs"));
    cases.push((
        "receipt signed by another key",
        b,
        422,
        "receipt-wrong-signer",
    ));

    let t = net.ticket();
    let mut b = good(&t);
    let elsewhere = UsageReceipt {
        tid: Uuid::now_v7(),
        ..receipt(&t, 61)
    };
    let r = payer.sign_receipt(&elsewhere).expect("r");
    b["receipt"] = json!(r);
    b["provider_receipt"] = json!(carrier.countersign_receipt(&r).expect("cs"));
    cases.push((
        "receipt naming another ticket",
        b,
        422,
        "receipt-ticket-mismatch",
    ));

    let t = net.ticket();
    let mut b = good(&t);
    let r = b["receipt"].as_str().expect("r").to_owned();
    b["provider_receipt"] = json!(net.signer(&net.other).countersign_receipt(&r).expect("cs"));
    cases.push((
        "countersignature by a provider other than the audience",
        b,
        422,
        "countersigner-not-audience",
    ));

    let t = net.ticket();
    let mut b = good(&t);
    let inconsistent = UsageReceipt {
        billable: 61,
        ..receipt(&t, 61)
    };
    let r = payer.sign_receipt(&inconsistent).expect("r");
    b["receipt"] = json!(r);
    b["provider_receipt"] = json!(carrier.countersign_receipt(&r).expect("cs"));
    cases.push((
        "billable seconds not as the increments give",
        b,
        422,
        "billable-mismatch",
    ));

    let t = net.ticket();
    cases.push((
        "unanswered call (0 billable seconds)",
        net.agreed(&t, 0),
        422,
        "nothing-billable",
    ));

    let t = net.ticket();
    let mut long = t.clone();
    long.exp = long.iat + 3600;
    let mut b = good(&t);
    b["ticket"] = json!(payer.sign_ticket(&long).expect("sign"));
    cases.push((
        "ticket lifetime over the limit",
        b,
        422,
        "lifetime-too-long",
    ));

    let t = net.ticket();
    let mut b = good(&t);
    let token = b["ticket"].as_str().expect("t").to_owned();
    b["ticket"] = json!(token[..token.rfind('.').expect("dot")]);
    cases.push(("truncated token", b, 422, "malformed"));

    let t = net.ticket();
    let mut b = good(&t);
    let p = parts(b["ticket"].as_str().expect("t"));
    b["ticket"] = json!(format!("{}.{}*.{}", p[0], &p[1][1..], p[2]));
    cases.push(("non-base64 token", b, 422, "not-base64"));

    let t = net.ticket();
    let mut b = good(&t);
    let p = parts(b["ticket"].as_str().expect("t"));
    b["ticket"] = json!(format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode("{\"alg\":\"EdDSA\","),
        p[1],
        p[2]
    ));
    cases.push(("header not JSON", b, 422, "invalid-json"));

    let t = net.ticket();
    let mut b = good(&t);
    b["ticket"] = json!(jws::encode(
        &JwsHeader::new(PPT_TICKET, &key_of(&net.payer).key_id(), &net.central.base),
        b"{\"iss\": 1,",
        &key_of(&net.payer),
    )
    .expect("encode"));
    cases.push(("signed claims not JSON", b, 422, "invalid-json"));

    let t = net.ticket();
    let mut b = good(&t);
    b["ticket"] = json!("A".repeat(5000));
    cases.push(("oversized token", b, 422, "oversized"));

    let t = net.ticket();
    let claims = serde_json::to_vec(&t).expect("claims");
    let kid = key_of(&net.payer).key_id().to_string();
    for alg in ["HS256", "ES256", "none", "eddsa"] {
        let mut b = good(&t);
        b["ticket"] = json!(raw_token(
            &json!({"alg": alg, "typ": "passport", "ppt": "lcr", "kid": kid}),
            &claims,
            &key_of(&net.payer),
        ));
        cases.push(("alg other than EdDSA", b, 422, "unsupported-alg"));
    }
    let mut b = good(&t);
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode("{\"alg\":\"none\",\"typ\":\"passport\",\"ppt\":\"lcr\"}"),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    b["ticket"] = json!(none);
    cases.push(("alg none, unsigned", b, 422, "unsupported-alg"));

    let t = net.ticket();
    let mut b = good(&t);
    b["provider_receipt"] = json!(jws::encode(
        &JwsHeader::new(
            PPT_RECEIPT,
            &key_of(&net.carrier).key_id(),
            &net.central.base
        ),
        &serde_json::to_vec(&t).expect("claims"),
        &key_of(&net.carrier),
    )
    .expect("encode"));
    cases.push(("a ticket passed off as a receipt", b, 422, "invalid-json"));

    let t = net.ticket();
    let mut b = good(&t);
    b["ticket"] = b["receipt"].clone();
    cases.push(("a receipt passed off as a ticket", b, 422, "wrong-type"));

    for (what, body, status, reason) in &cases {
        let (got_status, p) = problem(net.post(&net.carrier.client, body).await).await;
        assert_eq!(
            (got_status, p["reason"].as_str()),
            (*status, Some(*reason)),
            "{what}: {p}"
        );
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("nothing was stored")),
            "{what}: {p}"
        );
    }

    // Bodies that are not submissions.
    for (what, raw, status, reason) in [
        ("not JSON", "ticket=abc", 400, "invalid-body"),
        ("broken JSON", "{\"ticket\": \"a\",", 400, "invalid-body"),
        ("empty array", "[]", 400, "invalid-body"),
        (
            "missing provider receipt",
            "{\"ticket\": \"a.b.c\"}",
            400,
            "invalid-submission",
        ),
        (
            "unknown field",
            "{\"ticket\": \"a\", \"provider_receipt\": \"b\", \"amount\": \"9\"}",
            400,
            "invalid-submission",
        ),
    ] {
        let res = net
            .carrier
            .client
            .post(net.central.url("/v1/tickets"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("post");
        let (got_status, p) = problem(res).await;
        assert_eq!(
            (got_status, p["reason"].as_str()),
            (status, Some(reason)),
            "{what}: {p}"
        );
    }
    let too_many = Value::Array(vec![good(&net.ticket()); 1001]);
    let (status, p) = problem(net.post(&net.carrier.client, &too_many).await).await;
    assert_eq!(
        (status, p["reason"].as_str()),
        (413, Some("batch-too-large")),
        "{p}"
    );

    // Only providers submit.
    let body = good(&net.ticket());
    let (status, _) = problem(net.post(&net.central.operator(), &body).await).await;
    assert_eq!(status, 403, "operator");
    let (status, _) = problem(net.post(&net.central.anonymous(), &body).await).await;
    assert_eq!(status, 403, "anonymous");
    // The audience provider submitting through another provider's account.
    let (status, p) = problem(net.post(&net.other.client, &body).await).await;
    assert_eq!(
        (status, p["reason"].as_str()),
        (403, Some("wrong-audience"))
    );

    let db = net.db();
    assert_eq!(
        ledger::count_tickets(&mut db.conn().expect("conn")).expect("count"),
        0,
        "nothing stored"
    );
    let (status, report) = net
        .settlements(&net.central.operator(), &window(&net.ticket()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["settlements"], json!([]));
    net.central.shutdown().await;
}
both_backends!(forgeries, crate::every_forgery_is_refused_with_its_reason);

async fn revocation_counts_from_its_time(backend: Backend) {
    let net = Net::start(backend).await;
    let operator = net.central.operator();
    // A second key of the payer, certified through the API by the operator.
    let key = ParticipantKey::generate();
    let res = operator
        .post(net.central.url("/v1/certificates"))
        .json(&json!({"csr": key.csr_pem("home").expect("csr"), "provider_id": net.payer.id}))
        .send()
        .await
        .expect("certify");
    assert_eq!(res.status(), 201);
    let signer = TicketSigner::new(
        ParticipantKey::from_pkcs8_der(&key.to_pkcs8_der().expect("der")).expect("key"),
        &net.central.base,
    );
    let carrier = net.signer(&net.carrier);
    let submission = |t: &Ticket| {
        let r = signer.sign_receipt(&receipt(t, 61)).expect("r");
        json!({"ticket": signer.sign_ticket(t).expect("t"), "receipt": r,
               "provider_receipt": carrier.countersign_receipt(&r).expect("cs")})
    };
    let before = net.ticket_at(Utc::now().timestamp() - 200);
    let (status, got) = json_of(net.post(&net.carrier.client, &submission(&before)).await).await;
    assert_eq!(status, 201, "{got}");

    let res = operator
        .post(
            net.central
                .url(&format!("/v1/certificates/{}/revoke", key.key_id())),
        )
        .send()
        .await
        .expect("revoke");
    let revoked: Value = res.json().await.expect("json");
    let revoked_at = DateTime::parse_from_rfc3339(revoked["revoked_at"].as_str().expect("at"))
        .expect("time")
        .timestamp();

    // Signed after the revocation: refused, though the key was cached as
    // valid a moment ago.
    let after = net.ticket_at(revoked_at + 1);
    let (status, p) = problem(net.post(&net.carrier.client, &submission(&after)).await).await;
    assert_eq!(
        (status, p["reason"].as_str()),
        (422, Some("certificate-revoked")),
        "{p}"
    );

    // Signed before it (a call from the queue): still settles.
    let earlier = net.ticket_at(revoked_at - 400);
    let (status, got) = json_of(net.post(&net.carrier.client, &submission(&earlier)).await).await;
    assert_eq!(status, 201, "{got}");

    // A receipt signed after the revocation, for a ticket signed before:
    // the receipt is refused.
    let t = net.ticket_at(revoked_at - 100);
    let late = UsageReceipt {
        iat: revoked_at + 5,
        ..receipt(&t, 61)
    };
    let r = signer.sign_receipt(&late).expect("r");
    let body = json!({"ticket": signer.sign_ticket(&t).expect("t"), "receipt": r,
                      "provider_receipt": carrier.countersign_receipt(&r).expect("cs")});
    let (status, p) = problem(net.post(&net.carrier.client, &body).await).await;
    assert_eq!(
        (status, p["reason"].as_str()),
        (422, Some("certificate-revoked")),
        "{p}"
    );

    // A ticket from a certificate that expired since, signed while valid.
    let ca = net.ca();
    let old = net.enroll_payer_key(
        &ca,
        Validity::new(
            Utc::now() - Duration::days(3),
            Utc::now() - Duration::minutes(6),
        )
        .expect("validity"),
    );
    let old = TicketSigner::new(old, &net.central.base);
    // Not earlier: the carrier's certificate (countersigning) is new.
    let t = net.ticket_at(Utc::now().timestamp() - 420);
    let r = old.sign_receipt(&receipt(&t, 61)).expect("r");
    let body = json!({"ticket": old.sign_ticket(&t).expect("t"), "receipt": r,
                      "provider_receipt": carrier.countersign_receipt(&r).expect("cs")});
    let (status, got) = json_of(net.post(&net.carrier.client, &body).await).await;
    assert_eq!(status, 201, "expired since, valid at iat: {got}");

    let db = net.db();
    assert_eq!(
        ledger::count_tickets(&mut db.conn().expect("conn")).expect("count"),
        3
    );
    net.central.shutdown().await;
}
both_backends!(revocation, crate::revocation_counts_from_its_time);

async fn batches_settle_each_item_on_its_own(backend: Backend) {
    let net = Net::start(backend).await;
    let first = net.ticket();
    let good = net.agreed(&first, 61);
    let mut bad_sig = net.agreed(&net.ticket(), 61);
    let p = parts(bad_sig["receipt"].as_str().expect("r"));
    let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).expect("b64");
    sig[0] ^= 1;
    bad_sig["receipt"] = json!(format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig)));
    let mut elsewhere = net.ticket();
    elsewhere.aud = id(&net.other);
    let wrong_aud = json!({
        "ticket": net.signer(&net.payer).sign_ticket(&elsewhere).expect("t"),
        "provider_receipt": net.signer(&net.carrier).sign_receipt(&receipt(&elsewhere, 61)).expect("r"),
    });
    let second = net.ticket();
    let batch = json!([
        good,
        bad_sig,
        good,
        wrong_aud,
        {"ticket": "x"},
        net.agreed(&second, 30),
    ]);
    let (status, got) = json_of(net.post(&net.carrier.client, &batch).await).await;
    assert_eq!(status, 200, "{got}");
    let r = got["results"].as_array().expect("results");
    assert_eq!(r.len(), 6);
    for (i, item) in r.iter().enumerate() {
        assert_eq!(item["index"], i);
    }
    assert_eq!(
        (&r[0]["status"], &r[0]["duplicate"]),
        (&json!("agreed"), &json!(false))
    );
    assert_eq!(r[0]["ticket_id"], first.jti.to_string());
    assert_eq!(r[1]["error"]["reason"], "bad-signature", "{}", r[1]);
    assert_eq!(r[1]["error"]["status"], 422);
    assert_eq!(r[2]["duplicate"], true, "same submission twice in a batch");
    assert_eq!(r[3]["error"]["reason"], "wrong-audience");
    assert_eq!(r[3]["error"]["status"], 403);
    assert_eq!(r[4]["error"]["reason"], "invalid-submission");
    assert_eq!(r[4]["error"]["status"], 400);
    // 30 s at 30/6: 0.01 + 0.0125 / 2 = 0.01625.
    assert_eq!(
        (&r[5]["status"], &r[5]["amount"]),
        (&json!("agreed"), &json!("0.01625"))
    );

    // Over one verification chunk (256), forgeries deep inside: only they fail.
    let mut many: Vec<Value> = (0..300).map(|_| net.agreed(&net.ticket(), 61)).collect();
    for (bad, field) in [
        (3, "ticket"),
        (97, "ticket"),
        (98, "provider_receipt"),
        (280, "receipt"),
    ] {
        let p = parts(many[bad][field].as_str().expect("token"));
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).expect("b64");
        sig[40] ^= 4;
        many[bad][field] = json!(format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig)));
    }
    let (status, got) = json_of(net.post(&net.carrier.client, &Value::Array(many)).await).await;
    assert_eq!(status, 200);
    let r = got["results"].as_array().expect("results");
    let failed: Vec<usize> = r
        .iter()
        .enumerate()
        .filter(|(_, item)| item.get("error").is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![3, 97, 98, 280]);
    for i in failed {
        assert_eq!(r[i]["error"]["reason"], "bad-signature");
    }

    let db = net.db();
    assert_eq!(
        ledger::count_tickets(&mut db.conn().expect("conn")).expect("count"),
        2 + 296
    );
    let (_, report) = net
        .settlements(&net.central.operator(), &window(&first))
        .await;
    assert_eq!(report["settlements"][0]["tickets"], 298);
    net.central.shutdown().await;
}
both_backends!(batches, crate::batches_settle_each_item_on_its_own);

async fn settlements_by_party_as_csv(backend: Backend) {
    let net = Net::start(backend).await;
    let t = net.ticket();
    let (status, _) = json_of(net.post(&net.carrier.client, &net.agreed(&t, 61)).await).await;
    assert_eq!(status, 201);
    // The other way round: carrier pays payer ("home") for a call.
    let mut back = net.ticket();
    back.iss = id(&net.carrier);
    back.payer = "carrier".into();
    back.aud = id(&net.payer);
    let carrier = net.signer(&net.carrier);
    let r = carrier.sign_receipt(&receipt(&back, 120)).expect("r");
    let body = json!({"ticket": carrier.sign_ticket(&back).expect("t"), "receipt": r,
                      "provider_receipt": net.signer(&net.payer).countersign_receipt(&r).expect("cs")});
    let (status, got) = json_of(net.post(&net.payer.client, &body).await).await;
    assert_eq!(status, 201, "{got}");

    let q = window(&t);
    let (_, all) = net.settlements(&net.central.operator(), &q).await;
    assert_eq!(all["settlements"].as_array().map(Vec::len), Some(2));
    let (_, mine) = net.settlements(&net.carrier.client, &q).await;
    assert_eq!(
        mine["settlements"].as_array().map(Vec::len),
        Some(2),
        "payer in one, provider in the other"
    );
    let (_, filtered) = net
        .settlements(&net.carrier.client, &format!("{q}&payer={}", net.payer.id))
        .await;
    assert_eq!(
        filtered["settlements"],
        json!([{"payer_id": net.payer.id, "provider_id": net.carrier.id, "currency": "EUR",
                "tickets": 1, "billable_seconds": 66, "amount": "0.02375",
                "provider_only_tickets": 0, "provider_only_amount": "0",
                "disputed_tickets": 0, "disputed_billable_seconds": 0, "disputed_amount": "0"}])
    );
    let (_, none) = net.settlements(&net.other.client, &q).await;
    assert_eq!(none["settlements"], json!([]), "a third party sees nothing");
    let (_, none) = net
        .settlements(
            &net.other.client,
            &format!("{q}&payer={}&provider={}", net.payer.id, net.carrier.id),
        )
        .await;
    assert_eq!(none["settlements"], json!([]), "not even by asking for it");
    let (status, _) = net.settlements(&net.central.anonymous(), &q).await;
    assert_eq!(status, 403);
    // The window is half-open on answer time: ending at the answer excludes it.
    let answer = DateTime::from_timestamp(t.iat + 5, 0)
        .expect("t")
        .to_rfc3339()
        .replace('+', "%2B");
    let from = DateTime::from_timestamp(t.iat - 5, 0)
        .expect("t")
        .to_rfc3339()
        .replace('+', "%2B");
    let (_, edge) = net
        .settlements(
            &net.central.operator(),
            &format!("from={from}&to={answer}&payer={}", net.payer.id),
        )
        .await;
    assert_eq!(edge["settlements"], json!([]));
    let (_, edge) = net
        .settlements(
            &net.central.operator(),
            &format!(
                "from={answer}&to=2100-01-01T00:00:00Z&payer={}",
                net.payer.id
            ),
        )
        .await;
    assert_eq!(edge["settlements"][0]["tickets"], 1);

    for bad in [
        String::new(),
        "from=2026-11-01T00:00:00Z".into(),
        "from=yesterday&to=2026-12-01T00:00:00Z".into(),
        "from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z".into(),
        format!("{q}&payer=me"),
    ] {
        let res = net
            .central
            .operator()
            .get(net.central.url(&format!("/v1/settlements?{bad}")))
            .send()
            .await
            .expect("get");
        let (status, _) = problem(res).await;
        assert_eq!(status, 400, "{bad}");
    }

    let res = net
        .carrier
        .client
        .get(net.central.url(&format!("/v1/settlements?{q}")))
        .header("accept", "text/csv")
        .send()
        .await
        .expect("csv");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().ok(),
        Some("text/csv; charset=utf-8")
    );
    let text = res.text().await.expect("text");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, central::api::settlements::CSV_COLUMNS);
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("record").iter().map(str::to_owned).collect())
        .collect();
    let payer = net.payer.id.to_string();
    let carrier_id = net.carrier.id.to_string();
    assert!(
        rows.contains(&vec![
            payer.clone(),
            carrier_id.clone(),
            "EUR".into(),
            "1".into(),
            "66".into(),
            "0.02375".into(),
            "0".into(),
            "0".into(),
            "0".into(),
            "0".into(),
            "0".into()
        ]),
        "{text}"
    );
    // 120 s at 30/6: 0.01 + 0.0125 × 2.
    assert!(
        rows.contains(&vec![
            carrier_id,
            payer,
            "EUR".into(),
            "1".into(),
            "120".into(),
            "0.035".into(),
            "0".into(),
            "0".into(),
            "0".into(),
            "0".into(),
            "0".into()
        ]),
        "{text}"
    );
    net.central.shutdown().await;
}
both_backends!(settlement_reports, crate::settlements_by_party_as_csv);

async fn oversized_bodies_are_refused(backend: Backend) {
    let central = Central::start_with(backend, |c| c.max_body_bytes = 16 * 1024).await;
    let net = Net::with(central).await;
    let batch = Value::Array((0..10).map(|_| net.agreed(&net.ticket(), 61)).collect());
    assert!(serde_json::to_vec(&batch).expect("json").len() > 16 * 1024);
    let (status, p) = problem(net.post(&net.carrier.client, &batch).await).await;
    assert_eq!(status, 413, "{p}");
    let db = net.db();
    assert_eq!(
        ledger::count_tickets(&mut db.conn().expect("conn")).expect("count"),
        0
    );
    net.central.shutdown().await;
}
both_backends!(oversized, crate::oversized_bodies_are_refused);

async fn concurrent_identical_batches_store_each_ticket_once(backend: Backend) {
    let net = Net::start(backend).await;
    let batch = Value::Array((0..200).map(|_| net.agreed(&net.ticket(), 61)).collect());
    let (a, b) = tokio::join!(
        net.post(&net.carrier.client, &batch),
        net.post(&net.carrier.client, &batch)
    );
    let ((sa, a), (sb, b)) = (json_of(a).await, json_of(b).await);
    assert_eq!((sa, sb), (200, 200), "{a} {b}");
    let (a, b) = (
        a["results"].as_array().expect("results"),
        b["results"].as_array().expect("results"),
    );
    for i in 0..200 {
        assert_eq!(a[i]["status"], "agreed", "{}", a[i]);
        assert_eq!(b[i]["status"], "agreed", "{}", b[i]);
        let fresh = [&a[i], &b[i]]
            .iter()
            .filter(|r| r["duplicate"] == false)
            .count();
        assert_eq!(fresh, 1, "ticket {i} stored by exactly one request");
    }
    let db = net.db();
    assert_eq!(
        ledger::count_tickets(&mut db.conn().expect("conn")).expect("count"),
        200
    );
    net.central.shutdown().await;
}
both_backends!(
    concurrent_batches,
    crate::concurrent_identical_batches_store_each_ticket_once
);

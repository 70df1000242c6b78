//! End-to-end tests of the HTTP API over real HTTPS with real certificates,
//! against SQLite and (with TEST_POSTGRES_URL) PostgreSQL.

#[macro_use]
mod common;

use common::{problem, Backend, Central};
use serde_json::{json, Value};

const DECK_A: &str = "prefix,rate_per_minute,connect_fee,first_increment,next_increment\n\
49,0.0200,0,60,60\n\
4930,0.0100,0.001,30,6\n\
44,0.0300,0,1,1\n";

const DECK_B: &str = "49,0.0150,0,60,60\n\
493012,0.0500,0,60,60\n";

async fn put_csv(p: &reqwest::Client, c: &Central, id: i64, csv: &str) -> reqwest::Response {
    p.put(c.url(&format!("/v1/providers/{id}/rates")))
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .expect("put rates")
}

fn names(v: &Value) -> Vec<(String, String)> {
    v["routes"]
        .as_array()
        .expect("routes array")
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap_or_default().to_string(),
                r["prefix"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn auth_rules(backend: Backend) {
    let c = Central::start(backend).await;
    let register = json!({"name": "x", "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}], "currency": "EUR", "contact": "a"});
    // No client certificate: 403 on anything that changes data.
    let res = c
        .anonymous()
        .post(c.url("/v1/providers"))
        .json(&register)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    let a = c.provider("alpha", "EUR").await;
    let b = c.provider("beta", "EUR").await;
    // A provider is not the operator.
    let res = a
        .client
        .post(c.url("/v1/providers"))
        .json(&register)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    // A provider changes only its own deck.
    assert_eq!(put_csv(&a.client, &c, a.id, DECK_A).await.status(), 200);
    let (s, body) = problem(put_csv(&a.client, &c, b.id, DECK_A).await).await;
    assert_eq!(s, 403, "{body}");
    let res = a
        .client
        .get(c.url(&format!("/v1/providers/{}/rates", b.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    let res = c
        .anonymous()
        .put(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .header("content-type", "text/csv")
        .body(DECK_A)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    // Enrollment tokens are single-use.
    let res = c.operator().post(c.url("/v1/providers")).json(&json!({"name": "gamma", "sip_addresses": [{"address": "127.0.0.1:5062", "transport": "tcp"}], "currency": "EUR", "contact": "g"})).send().await.unwrap();
    let token = res.json::<Value>().await.unwrap()["enrollment_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, k1) = common::new_key(c.dir.path(), "g1");
    let first = c
        .anonymous()
        .post(c.url("/v1/certificates"))
        .json(&json!({"csr": k1.csr_pem("gamma").unwrap(), "enrollment_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let (_, k2) = common::new_key(c.dir.path(), "g2");
    let again = c
        .anonymous()
        .post(c.url("/v1/certificates"))
        .json(&json!({"csr": k2.csr_pem("gamma").unwrap(), "enrollment_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(again).await.0, 403);
    // Revocation: the fetch says so and the certificate stops working.
    let res = a
        .client
        .post(c.url(&format!("/v1/certificates/{}/revoke", a.key_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403, "a provider cannot revoke");
    let res = c
        .operator()
        .post(c.url(&format!("/v1/certificates/{}/revoke", a.key_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got: Value = c
        .anonymous()
        .get(c.url(&format!("/v1/certificates/{}", a.key_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "revoked");
    assert!(got["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let (s, body) = problem(put_csv(&a.client, &c, a.id, DECK_A).await).await;
    assert_eq!(s, 403);
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    // b is unaffected.
    let got: Value = c
        .anonymous()
        .get(c.url(&format!("/v1/certificates/{}", b.key_id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "valid");
    assert_eq!(got["provider_id"], b.id);
    c.shutdown().await;
}
both_backends!(auth, crate::auth_rules);

async fn uploads(backend: Backend) {
    let c = Central::start_with(backend, |cfg| cfg.max_body_bytes = 64 * 1024).await;
    let a = c.provider("alpha", "EUR").await;
    let res = put_csv(&a.client, &c, a.id, DECK_A).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["kind"], "full");
    assert_eq!(v["line_count"], 3);
    // Bad lines: every one reported with its line number; nothing stored.
    let bad = "prefix,rate_per_minute,connect_fee,first_increment,next_increment\n\
               49,0.01,0,60,60\n\
               4x9,0.01,0,60,60\n\
               33,-1,0,60,60\n\
               34,abc,0,60,60\n\
               35,0.01,0,0,60\n\
               49,0.02,0,60,60\n";
    let (s, body) = problem(put_csv(&a.client, &c, a.id, bad).await).await;
    assert_eq!(s, 400);
    let lines: Vec<u64> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    for l in [3, 4, 5, 6, 7] {
        assert!(lines.contains(&l), "line {l} not reported: {body}");
    }
    assert!(!lines.contains(&2), "good line reported: {body}");
    let deck: Value = a
        .client
        .get(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        deck.as_array().unwrap().len(),
        3,
        "rejected upload changed the deck: {deck}"
    );
    assert_eq!(deck[0]["prefix"], "44");
    assert_eq!(deck[1]["rate_per_minute"], "0.02");
    // Oversized: 413, nothing stored.
    let mut big = String::new();
    for i in 0..5000 {
        big.push_str(&format!("1{i:05},0.01,0,60,60\n"));
    }
    let (s, _) = problem(put_csv(&a.client, &c, a.id, &big).await).await;
    assert_eq!(s, 413);
    // Malformed JSON and wrong content type.
    let res = a
        .client
        .put(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .header("content-type", "application/json")
        .body("[{\"prefix\": ")
        .send()
        .await
        .unwrap();
    let (s, body) = problem(res).await;
    assert_eq!(s, 400, "{body}");
    let res = a
        .client
        .put(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 415);
    // JSON full replace.
    let res = a.client.put(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .json(&json!([{"prefix": "49", "rate_per_minute": "0.0200", "connect_fee": "0", "first_increment": 60, "next_increment": 60},
                      {"prefix": "4930", "rate_per_minute": "0.0100", "connect_fee": "0.001", "first_increment": 30, "next_increment": 6}]))
        .send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["version"], 2);
    // Delta: upsert one, delete one.
    let res = a.client.patch(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .json(&json!({"upsert": [{"prefix": "4930", "rate_per_minute": "0.0090", "connect_fee": "0", "first_increment": 1, "next_increment": 1}], "delete": ["49"]}))
        .send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["version"], 3);
    assert_eq!(v["kind"], "delta");
    let csv = a
        .client
        .get(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].starts_with("4930,0.009,0,1,1"), "{csv}");
    // A bad delta changes nothing.
    let res = a.client.patch(c.url(&format!("/v1/providers/{}/rates", a.id)))
        .json(&json!({"upsert": [{"prefix": "44", "rate_per_minute": "0.01", "connect_fee": "0", "first_increment": 1, "next_increment": 1},
                                 {"prefix": "", "rate_per_minute": "x", "connect_fee": "0", "first_increment": 1, "next_increment": 1}], "delete": []}))
        .send().await.unwrap();
    assert_eq!(problem(res).await.0, 400);
    let versions: Value = a
        .client
        .get(c.url(&format!("/v1/providers/{}/rates/versions", a.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["full", "full", "delta"]);
    // The uploaded deck is what route queries answer.
    let v = c
        .routes_until("number=%2B4930123", |v| {
            v["routes"][0]["rate_per_minute"] == "0.009"
        })
        .await;
    assert_eq!(v["routes"][0]["rate_version"], 3, "{v}");
    c.shutdown().await;
}
both_backends!(rate_uploads, crate::uploads);

async fn route_answers(backend: Backend) {
    let c = Central::start(backend).await;
    let a = c.provider("alpha", "EUR").await;
    let b = c.provider("beta", "EUR").await;
    let u = c.provider("usd-carrier", "USD").await;
    assert_eq!(put_csv(&a.client, &c, a.id, DECK_A).await.status(), 200);
    assert_eq!(put_csv(&b.client, &c, b.id, DECK_B).await.status(), 200);
    assert_eq!(
        put_csv(&u.client, &c, u.id, "4,0.001,0,60,60\n")
            .await
            .status(),
        200
    );
    // A future-only rate: not willing yet.
    let future = "1,0.0001,0,60,60,2999-01-01T00:00:00Z,future only\n";
    let f = c.provider("future", "EUR").await;
    assert_eq!(put_csv(&f.client, &c, f.id, future).await.status(), 200);
    let q = "number=%2B49%2030%2012-34%2056";
    let v = c
        .routes_until(q, |v| v["routes"].as_array().map(|r| r.len()) == Some(3))
        .await;
    // Each provider with its own longest prefix, cheapest first.
    assert_eq!(
        names(&v),
        [
            ("usd-carrier".to_string(), "4".to_string()),
            ("alpha".to_string(), "4930".to_string()),
            ("beta".to_string(), "493012".to_string()),
        ],
        "{v}"
    );
    assert_eq!(v["number"], "+4930123456");
    let alpha = &v["routes"][1];
    assert_eq!(alpha["rate_per_minute"], "0.01");
    assert_eq!(alpha["connect_fee"], "0.001");
    assert_eq!(alpha["first_increment"], 30);
    assert_eq!(alpha["sip_addresses"][0]["address"], "127.0.0.1:5060");
    assert_eq!(alpha["rate_version"], 1);
    // Filters.
    let v = c.routes(&format!("{q}&currency=EUR&max_rate=0.02")).await;
    assert_eq!(names(&v), [("alpha".to_string(), "4930".to_string())]);
    let v = c.routes(&format!("{q}&limit=1")).await;
    assert_eq!(v["routes"].as_array().unwrap().len(), 1);
    let v = c.routes("number=0049401234").await;
    assert_eq!(
        names(&v).iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
        ["usd-carrier", "beta", "alpha"]
    );
    let v = c.routes("number=%2B81312345678").await;
    assert_eq!(v["routes"].as_array().unwrap().len(), 0);
    // Suspended providers leave; resumed ones come back.
    let res = c
        .operator()
        .post(c.url(&format!("/v1/providers/{}/suspend", a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "suspended");
    let v = c
        .routes_until(q, |v| v["routes"].as_array().map(|r| r.len()) == Some(2))
        .await;
    assert!(!names(&v).iter().any(|n| n.0 == "alpha"), "{v}");
    let res = c
        .operator()
        .post(c.url(&format!("/v1/providers/{}/resume", a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v = c
        .routes_until(q, |v| v["routes"].as_array().map(|r| r.len()) == Some(3))
        .await;
    assert!(names(&v).iter().any(|n| n.0 == "alpha"), "{v}");
    // Bad queries: 400 problem+json.
    for bad in [
        "",
        "number=abc",
        "number=%2B4930&max_rate=cheap",
        "number=%2B4930&limit=0",
        "number=%2B4930&currency=eur1",
        "number=0",
        "number=%2B1234567890123456",
    ] {
        let res = c
            .anonymous()
            .get(c.url(&format!("/v1/routes?{bad}")))
            .send()
            .await
            .unwrap();
        let (s, body) = problem(res).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    c.shutdown().await;
}
both_backends!(routes, crate::route_answers);

async fn malformed_input(backend: Backend) {
    let c = Central::start(backend).await;
    let op = c.operator();
    // Registration validation.
    for bad in [
        json!({"name": "", "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}], "currency": "EUR", "contact": "a"}),
        json!({"name": "x", "sip_addresses": [], "currency": "EUR", "contact": "a"}),
        json!({"name": "x", "sip_addresses": [{"address": "nohost", "transport": "udp"}], "currency": "EUR", "contact": "a"}),
        json!({"name": "x", "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "carrier-pigeon"}], "currency": "EUR", "contact": "a"}),
        json!({"name": "x", "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}], "currency": "euro", "contact": "a"}),
        json!({"name": "x"}),
    ] {
        let res = op
            .post(c.url("/v1/providers"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        let (s, body) = problem(res).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    let res = op
        .post(c.url("/v1/providers"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 400);
    // Duplicate name: 409.
    let _a = c.provider("alpha", "EUR").await;
    let res = op.post(c.url("/v1/providers")).json(&json!({"name": "alpha", "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}], "currency": "EUR", "contact": "a"})).send().await.unwrap();
    assert_eq!(problem(res).await.0, 409);
    // CSRs: garbage, and a valid CSR with an unknown token.
    let res = op.post(c.url("/v1/certificates")).json(&json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})).send().await.unwrap();
    let (s, body) = problem(res).await;
    assert_eq!(s, 400, "{body}");
    let (_, k) = common::new_key(c.dir.path(), "stray");
    let res = c
        .anonymous()
        .post(c.url("/v1/certificates"))
        .json(&json!({"csr": k.csr_pem("stray").unwrap(), "enrollment_token": "enr_nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    let res = c
        .anonymous()
        .post(c.url("/v1/certificates"))
        .json(&json!({"csr": k.csr_pem("stray").unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    // Paths and ids.
    let res = op.get(c.url("/v1/providers/abc")).send().await.unwrap();
    assert_eq!(problem(res).await.0, 400);
    let res = op.get(c.url("/v1/providers/999999")).send().await.unwrap();
    assert_eq!(problem(res).await.0, 404);
    let res = c
        .anonymous()
        .get(c.url("/v1/certificates/not-a-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 400);
    let res = c
        .anonymous()
        .get(c.url("/v1/certificates/0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 404);
    let res = c
        .anonymous()
        .get(c.url("/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 404);
    let res = c
        .anonymous()
        .delete(c.url("/v1/routes"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 405);
    c.shutdown().await;
}
both_backends!(malformed, crate::malformed_input);

async fn health_metrics_ca(backend: Backend) {
    let c = Central::start(backend).await;
    let h: Value = c
        .anonymous()
        .get(c.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["database"], "reachable");
    assert_eq!(h["index"]["entries"], 0);
    let a = c.provider("alpha", "EUR").await;
    assert_eq!(put_csv(&a.client, &c, a.id, DECK_A).await.status(), 200);
    let _ = c
        .routes_until("number=%2B4930", |v| {
            !v["routes"].as_array().unwrap().is_empty()
        })
        .await;
    let h: Value = c
        .anonymous()
        .get(c.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["index"]["entries"], 3, "{h}");
    assert_eq!(h["index"]["rate_version"], 1, "{h}");
    let m = c
        .anonymous()
        .get(c.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("central_rate_uploads_total{outcome=\"accepted\"} 1"),
        "{m}"
    );
    assert!(m.contains("route=\"/v1/routes\""), "{m}");
    assert!(m.contains("central_index_entries 3"), "{m}");
    assert!(
        m.contains("central_route_query_duration_seconds_count"),
        "{m}"
    );
    let ca = c
        .anonymous()
        .get(c.url("/v1/ca"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ca.trim(), c.root_pem.trim());
    c.shutdown().await;
}
both_backends!(health, crate::health_metrics_ca);

/// A CSR made by OpenSSL (as the README shows) enrolls like one from the SDK.
async fn openssl_enrollment(backend: Backend) {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED (openssl not installed): openssl_enrollment");
        return;
    }
    let c = Central::start(backend).await;
    let res = c.operator().post(c.url("/v1/providers")).json(&json!({"name": "ossl", "sip_addresses": [{"address": "127.0.0.1:5070", "transport": "tls"}], "currency": "EUR", "contact": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let reg: Value = res.json().await.unwrap();
    let key = c.dir.path().join("ossl.key");
    let csr = c.dir.path().join("ossl.csr");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=ossl", "-key"])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .status()
        .unwrap();
    assert!(ok.success());
    let res = c.anonymous().post(c.url("/v1/certificates"))
        .json(&json!({"csr": std::fs::read_to_string(&csr).unwrap(), "enrollment_token": reg["enrollment_token"]}))
        .send().await.unwrap();
    assert_eq!(res.status(), 201);
    let cert: Value = res.json().await.unwrap();
    assert_eq!(cert["role"], "provider");
    assert_eq!(cert["provider_id"], reg["id"]);
    // The OpenSSL key and the issued certificate authenticate the provider.
    let p = common::client(
        &c.root_pem,
        Some((
            cert["certificate"].as_str().unwrap(),
            &std::fs::read_to_string(&key).unwrap(),
        )),
    );
    let id = reg["id"].as_i64().unwrap();
    assert_eq!(put_csv(&p, &c, id, DECK_A).await.status(), 200);
    c.shutdown().await;
}
both_backends!(openssl_csr, crate::openssl_enrollment);

/// A scheduled rate takes effect without any further upload: the server
/// rebuilds its index when the index says the next change is due.
async fn scheduled_rates(backend: Backend) {
    let c = Central::start(backend).await;
    let a = c.provider("alpha", "EUR").await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let deck = format!(
        "4930,0.0100,0,60,60\n4930,0.0050,0,60,60,{},cheaper soon\n",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(put_csv(&a.client, &c, a.id, &deck).await.status(), 200);
    let v = c
        .routes_until("number=%2B4930123", |v| {
            !v["routes"].as_array().unwrap().is_empty()
        })
        .await;
    if chrono::Utc::now() < at {
        assert_eq!(v["routes"][0]["rate_per_minute"], "0.01", "{v}");
    }
    let v = c
        .routes_until("number=%2B4930123", |v| {
            v["routes"][0]["rate_per_minute"] == "0.005"
        })
        .await;
    assert_eq!(
        v["routes"][0]["rate_per_minute"], "0.005",
        "scheduled rate never took effect: {v}"
    );
    c.shutdown().await;
}
both_backends!(scheduled, crate::scheduled_rates);

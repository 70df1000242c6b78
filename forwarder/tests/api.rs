//! The HTTPS API end to end over real TLS with real certificates, against
//! SQLite and (with TEST_POSTGRES_URL) PostgreSQL: who may do what, bad
//! input of every kind, pagination, the ledger's idempotency.

#[macro_use]
mod common;

use chrono::{Duration, Utc};
use common::{json, problem, Backend, Forwarder};
use forwarder::store::cdrs::{self, CdrClose, CdrProgress, FinalStatus, NewCdr, Rating};
use provider_sdk::number::E164;
use reqwest::Client;
use rust_decimal_macros::dec;
use serde_json::{json, Value};

fn subscriber_json(name: &str) -> Value {
    json!({
        "name": name,
        "email": format!("{}@example.net", name.to_lowercase()),
        "time_zone": "Europe/Berlin",
        "plan": "standard",
        "currency": "EUR",
        "account": {"kind": "postpaid", "credit_limit": "20.00"},
        "daily_spend_cap": "5",
        "max_concurrent_calls": 2
    })
}

async fn add_subscriber(f: &Forwarder, name: &str) -> i64 {
    let res = f
        .operator()
        .post(f.url("/v1/subscribers"))
        .json(&subscriber_json(name))
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

async fn token_for(f: &Forwarder, id: i64) -> String {
    let res = f
        .operator()
        .post(f.url(&format!("/v1/subscribers/{id}/token")))
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

async fn get(c: &Client, url: String, token: Option<&str>) -> reqwest::Response {
    let mut r = c.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn access_control(backend: Backend) {
    let f = Forwarder::start(backend).await;
    let a = add_subscriber(&f, "Ada").await;
    let b = add_subscriber(&f, "Bob").await;
    let ta = token_for(&f, a).await;
    let tb = token_for(&f, b).await;
    let anon = f.anonymous();

    // Open to anyone.
    assert_eq!(get(&anon, f.url("/health"), None).await.status(), 200);
    let metrics = get(&anon, f.url("/metrics"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("forwarder_http_requests"), "{metrics}");
    let (_, me) = json(get(&anon, f.url("/v1/me"), None).await).await;
    assert_eq!(me["role"], "anonymous");
    let (_, me) = json(get(&anon, f.url("/v1/me"), Some(&ta)).await).await;
    assert_eq!(me, json!({"role": "subscriber", "subscriber_id": a}));
    let (_, me) = json(get(&f.operator(), f.url("/v1/me"), None).await).await;
    assert_eq!(me["role"], "operator");

    let own = [
        format!("/v1/subscribers/{a}"),
        format!("/v1/subscribers/{a}/numbers"),
        format!("/v1/subscribers/{a}/rules"),
        format!("/v1/subscribers/{a}/calls"),
        format!("/v1/subscribers/{a}/balance"),
        format!("/v1/subscribers/{a}/ledger"),
    ];
    for path in &own {
        // The subscriber itself and the operator: yes.
        let res = get(&anon, f.url(path), Some(&ta)).await;
        assert_eq!(res.status(), 200, "{path} as the subscriber");
        let res = get(&f.operator(), f.url(path), None).await;
        assert_eq!(res.status(), 200, "{path} as the operator");
        // Another subscriber, or nobody: 403.
        let (s, _) = problem(get(&anon, f.url(path), Some(&tb)).await).await;
        assert_eq!(s, 403, "{path} as another subscriber");
        let (s, _) = problem(get(&anon, f.url(path), None).await).await;
        assert_eq!(s, 403, "{path} anonymously");
    }
    // Operator-only operations are 403 for a subscriber, even on itself.
    let (s, _) = problem(get(&anon, f.url("/v1/subscribers"), Some(&ta)).await).await;
    assert_eq!(s, 403);
    let sub_post = |path: String, body: Value| {
        let anon = anon.clone();
        let ta = ta.clone();
        async move {
            anon.post(path)
                .bearer_auth(&ta)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for (path, body) in [
        (f.url("/v1/subscribers"), subscriber_json("Eve")),
        (
            f.url(&format!("/v1/subscribers/{a}/ledger")),
            json!({"kind": "credit", "amount": "100", "reason": "me"}),
        ),
        (
            f.url(&format!("/v1/subscribers/{a}/numbers")),
            json!({"number": "+4930555"}),
        ),
        (f.url(&format!("/v1/subscribers/{a}/resume")), json!({})),
        (f.url(&format!("/v1/subscribers/{a}/token")), json!({})),
    ] {
        let (s, body) = problem(sub_post(path.clone(), body).await).await;
        assert_eq!(s, 403, "{path}: {body}");
    }
    let res = anon
        .patch(f.url(&format!("/v1/subscribers/{a}")))
        .bearer_auth(&ta)
        .json(&json!({"daily_spend_cap": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    // A subscriber replaces its own rules, not another's.
    let rules = json!({"rules": [{"targets": [{"number": "+491701234"}]}]});
    let res = anon
        .put(f.url(&format!("/v1/subscribers/{a}/rules")))
        .bearer_auth(&ta)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = anon
        .put(f.url(&format!("/v1/subscribers/{b}/rules")))
        .bearer_auth(&ta)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 403);
    let (_, got) = json(
        get(
            &anon,
            f.url(&format!("/v1/subscribers/{b}/rules")),
            Some(&tb),
        )
        .await,
    )
    .await;
    assert_eq!(got, json!({"rules": []}));

    // Unknown, malformed and revoked tokens: 401.
    let (s, _) = problem(get(&anon, f.url("/v1/me"), Some("fwd_forged")).await).await;
    assert_eq!(s, 401);
    let res = anon
        .get(f.url("/v1/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 401);
    let ta2 = token_for(&f, a).await;
    let (s, _) = problem(get(&anon, f.url("/v1/me"), Some(&ta)).await).await;
    assert_eq!(s, 401, "the earlier token is revoked");
    assert_eq!(get(&anon, f.url("/v1/me"), Some(&ta2)).await.status(), 200);

    // A client certificate from another CA does not get through the TLS
    // handshake's verification; one from this CA without the operator
    // record is refused.
    let other = tempfile::tempdir().unwrap();
    forwarder::app::init(other.path(), &forwarder::app::InitOptions::default()).unwrap();
    let foreign = common::client(
        &f.root_pem,
        Some((
            &std::fs::read_to_string(other.path().join("operator.crt")).unwrap(),
            &std::fs::read_to_string(other.path().join("operator.key")).unwrap(),
        )),
    );
    assert!(
        foreign
            .get(f.url("/v1/subscribers"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true),
        "a foreign operator certificate must not be accepted"
    );
    f.shutdown().await;
}
both_backends!(access_control, super::access_control);

async fn bad_input(backend: Backend) {
    let f = Forwarder::start_with(backend, |c| c.max_body_bytes = 16 * 1024).await;
    let op = f.operator();
    let a = add_subscriber(&f, "Ada").await;
    let post = |path: &str, body: String| {
        op.post(f.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let numbers_path = format!("/v1/subscribers/{a}/numbers");
    let ledger_path = format!("/v1/subscribers/{a}/ledger");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v1/subscribers",
            "{\"name\": ".into(),
            400,
            "malformed JSON",
        ),
        ("/v1/subscribers", "[1,2]".into(), 422, "invalid"),
        (
            "/v1/subscribers",
            subscriber_json("X")
                .to_string()
                .replace("Europe/Berlin", "Europe/Atlantis"),
            422,
            "IANA",
        ),
        (
            "/v1/subscribers",
            {
                let mut v = subscriber_json("X");
                v["colour"] = json!("blue");
                v.to_string()
            },
            422,
            "unknown field",
        ),
        (
            "/v1/subscribers",
            {
                let mut v = subscriber_json("X");
                v["daily_spend_cap"] = json!(5.5);
                v.to_string()
            },
            422,
            "decimal string",
        ),
        (
            "/v1/subscribers",
            {
                let mut v = subscriber_json("X");
                v["email"] = json!("nobody");
                v.to_string()
            },
            422,
            "email",
        ),
        (
            "/v1/subscribers",
            {
                let mut v = subscriber_json("X");
                v["currency"] = json!("euro");
                v.to_string()
            },
            422,
            "currency",
        ),
        (
            &numbers_path,
            json!({"number": "030 123456"}).to_string(),
            422,
            "country code",
        ),
        (
            &numbers_path,
            json!({"number": "+49abc"}).to_string(),
            422,
            "invalid character",
        ),
        (
            &ledger_path,
            json!({"kind": "adjustment", "amount": "-1"}).to_string(),
            422,
            "reason",
        ),
        (
            &ledger_path,
            json!({"kind": "call_charge", "amount": "1"}).to_string(),
            422,
            "calls",
        ),
        (
            &ledger_path,
            json!({"kind": "payment", "amount": "1e3"}).to_string(),
            422,
            "plain decimal",
        ),
        (
            "/v1/subscribers/0/ledger",
            json!({"kind": "payment", "amount": "1"}).to_string(),
            400,
            "positive integer",
        ),
        (
            "/v1/subscribers/99/ledger",
            json!({"kind": "payment", "amount": "1"}).to_string(),
            404,
            "subscriber not found",
        ),
        (
            "/v1/subscribers",
            format!("{{\"name\": \"{}\"}}", "x".repeat(20_000)),
            413,
            "larger than",
        ),
    ];
    for (path, body, want, needle) in cases {
        let (status, p) = problem(post(path, body.clone()).await.unwrap()).await;
        let detail = p["detail"].as_str().unwrap_or_default();
        assert_eq!(status, want, "{path} {body:.80}: {detail}");
        assert!(
            detail.contains(needle),
            "{path}: {detail:?} lacks {needle:?}"
        );
    }
    // Wrong content type.
    let res = op
        .post(f.url("/v1/subscribers"))
        .header("content-type", "text/plain")
        .body(subscriber_json("X").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 415);
    // Bad rules: refused and the stored rules are unchanged.
    let good = json!({"rules": [{"name": "day", "targets": [{"number": "+4930111", "ring_timeout_secs": 20}],
                                  "windows": [{"days": ["mon"], "start": "08:00", "end": "18:00"}]}]});
    let res = op
        .put(f.url(&format!("/v1/subscribers/{a}/rules")))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for bad in [
        json!({"rules": [{"targets": []}]}),
        json!({"rules": [{"targets": [{"number": "+4930111", "ring_timeout_secs": 0}]}]}),
        json!({"rules": [{"targets": [{"number": "+4930111"}], "windows": [{"days": ["monday"], "start": "08:00", "end": "18:00"}]}]}),
        json!({"rules": [{"targets": [{"number": "+4930111"}], "windows": [{"days": ["mon"], "start": "25:00", "end": "18:00"}]}]}),
        json!({"rules": [{"targets": [{"number": "+4930111"}], "windows": [{"days": ["mon"], "start": "08:00", "end": "08:00"}]}]}),
        json!({"rules": [{"targets": [{"number": "0301111"}]}]}),
        json!({"rules": [], "extra": 1}),
    ] {
        let res = op
            .put(f.url(&format!("/v1/subscribers/{a}/rules")))
            .json(&bad)
            .send()
            .await
            .unwrap();
        let (s, p) = problem(res).await;
        assert_eq!(s, 422, "{bad}: {p}");
    }
    let (_, now) = json(get(&op, f.url(&format!("/v1/subscribers/{a}/rules")), None).await).await;
    assert_eq!(now, good);
    // Nothing half-stored: still only the one subscriber, balance zero.
    let (_, list) = json(get(&op, f.url("/v1/subscribers"), None).await).await;
    assert_eq!(list["subscribers"].as_array().unwrap().len(), 1);
    let (_, bal) = json(get(&op, f.url(&format!("/v1/subscribers/{a}/balance")), None).await).await;
    assert_eq!(bal["balance"], "0");
    // Bad query strings and ids.
    for path in [
        format!("/v1/subscribers/{a}/calls?limit=0"),
        format!("/v1/subscribers/{a}/calls?limit=x"),
        format!("/v1/subscribers/{a}/calls?from=yesterday"),
        format!("/v1/subscribers/{a}/calls?cursor=zzz"),
        format!("/v1/subscribers/{a}/calls?sort=asc"),
        format!("/v1/subscribers/{a}/calls/not-a-uuid"),
        "/v1/subscribers/abc".to_string(),
    ] {
        let (s, p) = problem(get(&op, f.url(&path), None).await).await;
        assert_eq!(s, 400, "{path}: {p}");
    }
    let (s, _) = problem(get(&op, f.url("/v1/nothing"), None).await).await;
    assert_eq!(s, 404);
    let res = op.delete(f.url("/v1/subscribers")).send().await.unwrap();
    assert_eq!(problem(res).await.0, 405);
    f.shutdown().await;
}
both_backends!(bad_input, super::bad_input);

async fn subscriber_lifecycle_and_ledger(backend: Backend) {
    let f = Forwarder::start(backend).await;
    let op = f.operator();
    let a = add_subscriber(&f, "Ada").await;
    let b = add_subscriber(&f, "Bob").await;
    // Numbers.
    let res = op
        .post(f.url(&format!("/v1/subscribers/{a}/numbers")))
        .json(&json!({"number": "+49 (30) 123-456"}))
        .send()
        .await
        .unwrap();
    let (s, n) = json(res).await;
    assert_eq!((s, n["number"].as_str()), (201, Some("+4930123456")));
    let res = op
        .post(f.url(&format!("/v1/subscribers/{b}/numbers")))
        .json(&json!({"number": "+4930123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 409);
    // Status changes.
    let post = |path: String| op.post(f.url(&path)).send();
    let (_, s) = json(post(format!("/v1/subscribers/{a}/suspend")).await.unwrap()).await;
    assert_eq!(s["status"], "suspended");
    let (_, s) = json(post(format!("/v1/subscribers/{a}/resume")).await.unwrap()).await;
    assert_eq!(s["status"], "active");
    let (_, s) = json(post(format!("/v1/subscribers/{b}/close")).await.unwrap()).await;
    assert_eq!(s["status"], "closed");
    let (code, _) = problem(post(format!("/v1/subscribers/{b}/resume")).await.unwrap()).await;
    assert_eq!(code, 409);
    // Patch.
    let res = op
        .patch(f.url(&format!("/v1/subscribers/{a}")))
        .json(&json!({"daily_spend_cap": null, "plan": "premium"}))
        .send()
        .await
        .unwrap();
    let (_, s) = json(res).await;
    assert_eq!(
        (s["plan"].as_str(), &s["daily_spend_cap"]),
        (Some("premium"), &Value::Null)
    );
    // Ledger: created, retried, conflicting.
    let entry = json!({"kind": "payment", "amount": "25.50", "idempotency_key": "bank-ref-881"});
    let url = f.url(&format!("/v1/subscribers/{a}/ledger"));
    let (s1, e1) = json(op.post(&url).json(&entry).send().await.unwrap()).await;
    let (s2, e2) = json(op.post(&url).json(&entry).send().await.unwrap()).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(e1, e2);
    let mut changed = entry.clone();
    changed["amount"] = json!("26");
    assert_eq!(
        problem(op.post(&url).json(&changed).send().await.unwrap())
            .await
            .0,
        409
    );
    let adj = json!({"kind": "adjustment", "amount": "-0.50", "reason": "bank fee"});
    assert_eq!(op.post(&url).json(&adj).send().await.unwrap().status(), 201);
    let (_, bal) = json(get(&op, f.url(&format!("/v1/subscribers/{a}/balance")), None).await).await;
    assert_eq!(bal["balance"], "25");
    assert_eq!(
        bal["available"], "45",
        "postpaid: balance plus credit limit"
    );
    assert_eq!(bal["currency"], "EUR");
    let (_, page) = json(
        get(
            &op,
            f.url(&format!("/v1/subscribers/{a}/ledger?limit=1")),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(page["entries"][0]["kind"], "adjustment");
    let before = page["next_before"].as_i64().unwrap();
    let (_, page) = json(
        get(
            &op,
            f.url(&format!(
                "/v1/subscribers/{a}/ledger?limit=1&before={before}"
            )),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(page["entries"][0]["amount"], "25.5");
    // Remove the number.
    let res = op
        .delete(f.url("/v1/numbers/%2B4930123456"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = op
        .delete(f.url("/v1/numbers/%2B4930123456"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.0, 404);
    f.shutdown().await;
}
both_backends!(
    subscriber_lifecycle_and_ledger,
    super::subscriber_lifecycle_and_ledger
);

/// Calls written by the call path (through the store) read back through
/// the API, page by page and by date.
async fn calls_paginated(backend: Backend) {
    let f = Forwarder::start(backend).await;
    let a = add_subscriber(&f, "Ada").await;
    let b = add_subscriber(&f, "Bob").await;
    let ta = token_for(&f, a).await;
    let db = f.db.clone();
    // Five calls for Ada on 2026-03-09 .. 03-13 at 10:00 UTC, one for Bob.
    let ids = tokio::task::spawn_blocking(move || {
        let mut conn = db.conn().unwrap();
        let mut ids = Vec::new();
        for day in 9..14 {
            let at: chrono::DateTime<Utc> = format!("2026-03-{day}T10:00:00Z").parse().unwrap();
            let id = uuid::Uuid::new_v4();
            cdrs::open(
                &mut conn,
                &NewCdr {
                    id,
                    subscriber_id: a,
                    called_number: E164::parse("+4930123456").unwrap(),
                    caller_number: Some("+441111".into()),
                    caller_name: Some("Caller, \"the\" <one>".into()),
                    received_at: at,
                },
            )
            .unwrap();
            let close = CdrClose {
                status: FinalStatus::Completed,
                ended_at: at + Duration::seconds(70),
                sip_status: Some(200),
                hangup_cause: Some("callee BYE".into()),
                billable_seconds: 60,
                media_stats: None,
                rating: Some(Rating {
                    price: dec!(0.02),
                    provider_cost: dec!(0.01),
                    margin: dec!(0.01),
                    currency: "EUR".parse().unwrap(),
                }),
                rated_in: Some(chrono_tz::Europe::Berlin),
                progress: CdrProgress {
                    answered_at: Some(at + Duration::seconds(10)),
                    target: Some(E164::parse("+491701234").unwrap()),
                    ..CdrProgress::default()
                },
            };
            cdrs::close_and_charge(&mut conn, id, &close, at + Duration::seconds(70)).unwrap();
            ids.push(id);
        }
        cdrs::open(
            &mut conn,
            &NewCdr {
                id: uuid::Uuid::new_v4(),
                subscriber_id: b,
                called_number: E164::parse("+4930999").unwrap(),
                caller_number: None,
                caller_name: None,
                received_at: Utc::now(),
            },
        )
        .unwrap();
        ids
    })
    .await
    .unwrap();
    let anon = f.anonymous();
    let mut seen = Vec::new();
    let mut url = f.url(&format!("/v1/subscribers/{a}/calls?limit=2"));
    for _ in 0..5 {
        let (s, page) = json(get(&anon, url.clone(), Some(&ta)).await).await;
        assert_eq!(s, 200, "{page}");
        for c in page["calls"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_string());
            assert_eq!(c["status"], "completed");
            assert_eq!(c["rating"]["price"], "0.02");
        }
        match page["next_cursor"].as_str() {
            Some(cur) => url = f.url(&format!("/v1/subscribers/{a}/calls?limit=2&cursor={cur}")),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().map(|i| i.to_string()).collect();
    assert_eq!(seen, newest_first);
    // By local date (Berlin): 10 and 11 March.
    let (_, page) = json(
        get(
            &anon,
            f.url(&format!(
                "/v1/subscribers/{a}/calls?from=2026-03-10&to=2026-03-11"
            )),
            Some(&ta),
        )
        .await,
    )
    .await;
    let got: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].to_string(), ids[1].to_string()]);
    // RFC 3339 bounds.
    let (_, page) = json(
        get(
            &anon,
            f.url(&format!(
                "/v1/subscribers/{a}/calls?from=2026-03-12T10:00:00Z"
            )),
            Some(&ta),
        )
        .await,
    )
    .await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 2);
    // One call; another subscriber's call is not found under Ada.
    let one = f.url(&format!("/v1/subscribers/{a}/calls/{}", ids[0]));
    let (s, call) = json(get(&anon, one, Some(&ta)).await).await;
    assert_eq!(s, 200);
    assert_eq!(call["caller_name"], "Caller, \"the\" <one>");
    assert_eq!(call["billable_seconds"], 60);
    let under_b = f.url(&format!("/v1/subscribers/{b}/calls/{}", ids[0]));
    assert_eq!(
        problem(get(&f.operator(), under_b, None).await).await.0,
        404
    );
    // The charges show in the balance.
    let (_, bal) = json(
        get(
            &anon,
            f.url(&format!("/v1/subscribers/{a}/balance")),
            Some(&ta),
        )
        .await,
    )
    .await;
    assert_eq!(bal["balance"], "-0.1");
    f.shutdown().await;
}
both_backends!(calls_paginated, super::calls_paginated);

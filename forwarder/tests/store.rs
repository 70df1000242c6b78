//! Storage against real databases (SQLite and, with TEST_POSTGRES_URL,
//! PostgreSQL): round trips, the ledger's idempotency and balance, CDRs
//! closed and charged atomically, crash recovery listing, spend totals in
//! the subscriber's time zone.

#[macro_use]
mod common;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, TestDb};
use forwarder::authorize::{authorize, RefusalKind};
use forwarder::db::DbConnection;
use forwarder::rules::{parse_target, parse_window, Rule};
use forwarder::store::cdrs::{self, CdrClose, CdrProgress, CdrStatus, FinalStatus, NewCdr, Rating};
use forwarder::store::ledger::{self, EntryKind, NewEntry};
use forwarder::store::{credentials, numbers, rules, subscribers, StoreError};
use forwarder::subscriber::{Account, NewSubscriber, SubscriberPatch, SubscriberStatus};
use provider_sdk::number::E164;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use uuid::Uuid;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn new_sub(tz: &str, account: Account) -> NewSubscriber {
    NewSubscriber {
        name: "Ada Lovelace".into(),
        email: "ada@example.net".into(),
        time_zone: tz.parse().unwrap(),
        plan: "standard".into(),
        currency: "EUR".parse().unwrap(),
        account,
        daily_spend_cap: Some(dec!(5.00)),
        monthly_spend_cap: None,
        max_concurrent_calls: Some(2),
    }
}

fn num(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

fn payment(amount: Decimal, key: &str) -> NewEntry {
    NewEntry {
        kind: EntryKind::Payment,
        amount,
        reason: None,
        idempotency_key: Some(key.into()),
    }
}

/// `new` added with the number +4930123456, forwarded always to
/// +491702222, and 100 paid in.
fn forwarding_subscriber(
    conn: &mut DbConnection,
    new: &NewSubscriber,
    t0: DateTime<Utc>,
) -> forwarder::subscriber::Subscriber {
    let s = subscribers::add(conn, new, t0).unwrap();
    numbers::add(conn, s.id, &num("+4930123456"), t0).unwrap();
    let always = Rule {
        name: None,
        targets: vec![parse_target("+491702222").unwrap()],
        windows: vec![],
    };
    rules::replace(conn, s.id, &[always], t0).unwrap();
    ledger::record(conn, s.id, &payment(dec!(100), "p"), t0).unwrap();
    s
}

/// A call to `number` as it arrives, with a new id.
fn inbound(number: &str) -> forwarder::store::admission::InboundCall {
    forwarder::store::admission::InboundCall {
        id: Uuid::now_v7(),
        called_number: num(number),
        caller_number: Some("+441234567".into()),
        caller_name: None,
    }
}

fn rating(price: Decimal) -> Rating {
    Rating {
        price,
        provider_cost: price / dec!(2),
        margin: price - price / dec!(2),
        currency: "EUR".parse().unwrap(),
    }
}

/// A completed call rated at `price` for a subscriber in `zone`.
fn completed(zone: chrono_tz::Tz, ended: DateTime<Utc>, secs: u64, price: Decimal) -> CdrClose {
    CdrClose {
        status: FinalStatus::Completed,
        ended_at: ended,
        sip_status: Some(200),
        hangup_cause: Some("caller BYE".into()),
        billable_seconds: secs,
        media_stats: Some(serde_json::json!({"caller": {"packets": 1500, "lost": 2}})),
        rating: Some(rating(price)),
        rated_in: Some(zone),
        progress: CdrProgress::default(),
    }
}

fn open_call(conn: &mut DbConnection, sub: i64, at: DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    cdrs::open(
        conn,
        &NewCdr {
            id,
            subscriber_id: sub,
            called_number: num("+4930123456"),
            caller_number: Some("+441234567".into()),
            caller_name: Some("Bob".into()),
            received_at: at,
        },
    )
    .unwrap();
    id
}

fn check_balance(conn: &mut DbConnection, sub: i64) -> Decimal {
    let cached = ledger::balance(conn, sub).unwrap();
    let sum = ledger::ledger_sum(conn, sub).unwrap();
    assert_eq!(
        cached, sum,
        "cached balance must equal the sum of the ledger"
    );
    cached
}

fn subscriber_round_trip(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let now = t("2026-03-02T09:00:00Z");
    let s = subscribers::add(
        conn,
        &new_sub(
            "Europe/Berlin",
            Account::Postpaid {
                credit_limit: dec!(20.50),
            },
        ),
        now,
    )
    .unwrap();
    let back = subscribers::get(conn, s.id).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.time_zone.name(), "Europe/Berlin");
    assert_eq!(back.account.credit_limit(), Some(dec!(20.5)));
    assert_eq!(back.daily_spend_cap, Some(dec!(5)));
    assert_eq!(back.max_concurrent_calls, Some(2));
    assert_eq!(back.status, SubscriberStatus::Active);
    assert_eq!(ledger::balance(conn, s.id).unwrap(), Decimal::ZERO);

    // A patch changes only what it names; null caps are removed.
    let patch: SubscriberPatch = serde_json::from_str(
        r#"{"email":"ada@new.example","daily_spend_cap":null,"monthly_spend_cap":"99.99",
            "account":{"kind":"prepaid"}}"#,
    )
    .unwrap();
    let changed = subscribers::update(conn, s.id, &patch, now + Duration::seconds(1)).unwrap();
    assert_eq!(changed.email, "ada@new.example");
    assert_eq!(changed.name, s.name);
    assert_eq!(changed.daily_spend_cap, None);
    assert_eq!(changed.monthly_spend_cap, Some(dec!(99.99)));
    assert_eq!(changed.account, Account::Prepaid);
    assert!(changed.updated_at > s.updated_at);

    // Invalid input is refused before anything is written.
    let mut bad = new_sub("UTC", Account::Prepaid);
    bad.email = "not-an-address".into();
    assert!(matches!(
        subscribers::add(conn, &bad, now),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(subscribers::list(conn).unwrap().len(), 1);

    // Status: suspend, resume, close; closed is final.
    let st = |conn: &mut DbConnection, s| subscribers::set_status(conn, 1, s, now);
    assert_eq!(
        st(conn, SubscriberStatus::Suspended).unwrap().status,
        SubscriberStatus::Suspended
    );
    assert_eq!(
        st(conn, SubscriberStatus::Active).unwrap().status,
        SubscriberStatus::Active
    );
    assert_eq!(
        st(conn, SubscriberStatus::Closed).unwrap().status,
        SubscriberStatus::Closed
    );
    assert!(matches!(
        st(conn, SubscriberStatus::Active),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        subscribers::get(conn, 999),
        Err(StoreError::NotFound("subscriber"))
    ));
}
both_backends_sync!(subscriber_round_trip, super::subscriber_round_trip);

fn numbers_and_rules(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let now = Utc::now();
    let a = subscribers::add(conn, &new_sub("Europe/Berlin", Account::Prepaid), now).unwrap();
    let b = subscribers::add(conn, &new_sub("Asia/Tokyo", Account::Prepaid), now).unwrap();
    numbers::add(conn, a.id, &num("+4930123456"), now).unwrap();
    numbers::add(conn, a.id, &num("+4930123457"), now).unwrap();
    // Again for the same subscriber: a no-op; for another: a conflict.
    numbers::add(conn, a.id, &num("0049 30 123456"), now).unwrap();
    assert!(matches!(
        numbers::add(conn, b.id, &num("+4930123456"), now),
        Err(StoreError::Conflict(_))
    ));
    let list = numbers::of_subscriber(conn, a.id).unwrap();
    assert_eq!(
        list.iter()
            .map(|n| n.number.to_string())
            .collect::<Vec<_>>(),
        ["+4930123456", "+4930123457"]
    );
    let found = numbers::subscriber_by_number(conn, &num("+4930123457"))
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a.id);
    assert!(numbers::subscriber_by_number(conn, &num("+1555"))
        .unwrap()
        .is_none());
    numbers::remove(conn, &num("+4930123457")).unwrap();
    assert!(numbers::subscriber_by_number(conn, &num("+4930123457"))
        .unwrap()
        .is_none());
    assert!(matches!(
        numbers::remove(conn, &num("+4930123457")),
        Err(StoreError::NotFound(_))
    ));

    // Rules: replaced as a whole, read back in order.
    let office = Rule {
        name: Some("office".into()),
        targets: vec![
            parse_target("+4930999:15").unwrap(),
            parse_target("+491701111").unwrap(),
        ],
        windows: vec![parse_window("mon-fri 08:00-18:00").unwrap()],
    };
    let always = Rule {
        name: None,
        targets: vec![parse_target("+491702222").unwrap()],
        windows: vec![],
    };
    assert!(rules::get(conn, a.id).unwrap().is_empty());
    let stored = rules::replace(conn, a.id, &[office.clone(), always.clone()], now).unwrap();
    assert_eq!(stored, vec![office.clone(), always.clone()]);
    // A bad list changes nothing.
    let mut broken = always.clone();
    broken.targets.clear();
    assert!(matches!(
        rules::replace(conn, a.id, &[always.clone(), broken], now),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        rules::get(conn, a.id).unwrap(),
        vec![office.clone(), always]
    );
    rules::replace(conn, a.id, std::slice::from_ref(&office), now).unwrap();
    assert_eq!(rules::get(conn, a.id).unwrap(), vec![office]);
    assert!(rules::get(conn, b.id).unwrap().is_empty());
    assert!(matches!(
        rules::get(conn, 999),
        Err(StoreError::NotFound(_))
    ));

    // Tokens: only the newest works.
    let t1 = credentials::issue_subscriber_token(conn, a.id, now).unwrap();
    assert_eq!(
        credentials::subscriber_for_token(conn, &t1).unwrap(),
        Some(a.id)
    );
    let t2 = credentials::issue_subscriber_token(conn, a.id, now).unwrap();
    assert_eq!(credentials::subscriber_for_token(conn, &t1).unwrap(), None);
    assert_eq!(
        credentials::subscriber_for_token(conn, &t2).unwrap(),
        Some(a.id)
    );
    assert_eq!(
        credentials::subscriber_for_token(conn, "fwd_nonsense").unwrap(),
        None
    );
    assert_eq!(
        credentials::revoke_subscriber_tokens(conn, a.id, now).unwrap(),
        1
    );
    assert_eq!(credentials::subscriber_for_token(conn, &t2).unwrap(), None);
}
both_backends_sync!(numbers_and_rules, super::numbers_and_rules);

fn ledger_idempotency(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let now = Utc::now();
    let s = subscribers::add(conn, &new_sub("UTC", Account::Prepaid), now).unwrap();
    let first = ledger::record(conn, s.id, &payment(dec!(10.00), "pay-1"), now).unwrap();
    assert!(first.is_new());
    // Same key, same content: the stored entry, nothing added.
    let again = ledger::record(conn, s.id, &payment(dec!(10), "pay-1"), now).unwrap();
    assert!(!again.is_new());
    assert_eq!(again.entry().id, first.entry().id);
    assert_eq!(check_balance(conn, s.id), dec!(10));
    // Same key, other content: refused, nothing changed.
    assert!(matches!(
        ledger::record(conn, s.id, &payment(dec!(11), "pay-1"), now),
        Err(StoreError::Conflict(_))
    ));
    // Adjustments need a reason; their amount is signed.
    let mut adj = NewEntry {
        kind: EntryKind::Adjustment,
        amount: dec!(-2.25),
        reason: None,
        idempotency_key: Some("adj-1".into()),
    };
    assert!(matches!(
        ledger::record(conn, s.id, &adj, now),
        Err(StoreError::Invalid(_))
    ));
    adj.reason = Some("duplicate charge refunded wrongly".into());
    ledger::record(conn, s.id, &adj, now).unwrap();
    let credit = NewEntry {
        kind: EntryKind::Credit,
        amount: dec!(0.000001),
        reason: Some("goodwill".into()),
        idempotency_key: None,
    };
    ledger::record(conn, s.id, &credit, now).unwrap();
    assert_eq!(check_balance(conn, s.id), dec!(7.750001));
    let entries = ledger::entries(conn, s.id, None, 10).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].kind, EntryKind::Credit);
    assert_eq!(entries[1].amount, dec!(-2.25));
    assert_eq!(entries[2].amount, dec!(10));
    let page2 = ledger::entries(conn, s.id, Some(entries[1].id), 10).unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].id, entries[2].id);
    assert!(matches!(
        ledger::record(conn, 999, &payment(dec!(1), "nobody"), now),
        Err(StoreError::NotFound(_))
    ));
    drop(c);

    // Concurrent writers, each entry retried once: every entry counted once.
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let db = tdb.db.clone();
            std::thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                for i in 0..15 {
                    let e = payment(dec!(0.01), &format!("w{w}-{i}"));
                    for _ in 0..2 {
                        ledger::record(&mut conn, 1, &e, Utc::now()).unwrap();
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let mut c = tdb.db.conn().unwrap();
    assert_eq!(check_balance(&mut c, 1), dec!(7.750001) + dec!(0.60));
    assert_eq!(ledger::entries(&mut c, 1, None, 500).unwrap().len(), 63);
}
both_backends_sync!(ledger_idempotency, super::ledger_idempotency);

fn close_and_charge(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    let s = subscribers::add(conn, &new_sub("Europe/Berlin", Account::Prepaid), t0).unwrap();
    ledger::record(conn, s.id, &payment(dec!(5), "p"), t0).unwrap();
    let id = open_call(conn, s.id, t0);
    let cdr = cdrs::get(conn, id).unwrap();
    assert_eq!(cdr.status, CdrStatus::Open);
    assert_eq!(cdr.caller_name.as_deref(), Some("Bob"));
    assert_eq!(cdrs::active_calls(conn, s.id).unwrap(), 1);

    let answered = t0 + Duration::seconds(4);
    cdrs::update(
        conn,
        id,
        &CdrProgress {
            target: Some(num("+491701111")),
            answered_at: Some(answered),
            provider_id: Some(7),
            provider_name: Some("cheap-carrier".into()),
            decision: Some(serde_json::json!({"chosen": 7, "candidates": [7, 8]})),
            attempts: Some(
                serde_json::json!([{"provider": 8, "status": 503}, {"provider": 7, "status": 200}]),
            ),
            ticket_id: Some("tkt-1".into()),
            last_media_at: None,
        },
        answered,
    )
    .unwrap();
    cdrs::media_seen(conn, id, answered + Duration::seconds(30)).unwrap();
    // An older report never moves it back.
    cdrs::media_seen(conn, id, answered + Duration::seconds(10)).unwrap();
    let cdr = cdrs::get(conn, id).unwrap();
    assert_eq!(cdr.status, CdrStatus::Answered);
    assert_eq!(cdr.last_media_at, Some(answered + Duration::seconds(30)));

    let ended = answered + Duration::seconds(61);
    let close = completed(chrono_tz::Europe::Berlin, ended, 61, dec!(0.0122));
    let closed = cdrs::close_and_charge(conn, id, &close, ended).unwrap();
    assert!(closed.newly_closed);
    assert_eq!(closed.cdr.status, CdrStatus::Completed);
    assert_eq!(closed.cdr.ended_at, Some(ended));
    assert_eq!(closed.cdr.billable_seconds, Some(61));
    assert_eq!(closed.cdr.sip_status, Some(200));
    assert_eq!(closed.cdr.provider_name.as_deref(), Some("cheap-carrier"));
    assert_eq!(closed.cdr.target, Some(num("+491701111")));
    assert_eq!(closed.cdr.rating, Some(rating(dec!(0.0122))));
    assert_eq!(closed.cdr.attempts.as_ref().unwrap()[0]["status"], 503);
    let charge = closed.charge.clone().unwrap();
    assert_eq!(charge.kind, EntryKind::CallCharge);
    assert_eq!(charge.amount, dec!(-0.0122));
    assert_eq!(charge.idempotency_key, id.to_string());
    assert_eq!(charge.cdr_id, Some(id));
    assert_eq!(closed.balance, dec!(4.9878));
    assert_eq!(check_balance(conn, s.id), dec!(4.9878));
    assert_eq!(cdrs::active_calls(conn, s.id).unwrap(), 0);

    // A retry of the same close: what is stored, billed once.
    let retry = cdrs::close_and_charge(conn, id, &close, ended + Duration::seconds(5)).unwrap();
    assert!(!retry.newly_closed);
    assert_eq!(retry.charge.map(|c| c.id), Some(charge.id));
    assert_eq!(check_balance(conn, s.id), dec!(4.9878));
    // A different close of a closed call: refused.
    let other = completed(chrono_tz::Europe::Berlin, ended, 62, dec!(0.0124));
    assert!(matches!(
        cdrs::close_and_charge(conn, id, &other, ended),
        Err(StoreError::Conflict(_))
    ));
    // Updates to a closed call are refused too.
    assert!(matches!(
        cdrs::update(conn, id, &CdrProgress::default(), ended),
        Err(StoreError::Conflict(_))
    ));

    // An unanswered call: closed without a charge.
    let failed_id = open_call(conn, s.id, t0);
    let failed = CdrClose {
        status: FinalStatus::Failed,
        ended_at: t0 + Duration::seconds(3),
        sip_status: Some(503),
        hangup_cause: Some("all providers failed".into()),
        billable_seconds: 0,
        media_stats: None,
        rating: None,
        rated_in: None,
        progress: CdrProgress::default(),
    };
    let closed = cdrs::close_and_charge(conn, failed_id, &failed, t0).unwrap();
    assert!(closed.charge.is_none());
    assert_eq!(closed.cdr.status, CdrStatus::Failed);
    assert_eq!(check_balance(conn, s.id), dec!(4.9878));
    // Completed without an answer time is refused.
    let never = open_call(conn, s.id, t0);
    assert!(matches!(
        cdrs::close_and_charge(
            conn,
            never,
            &completed(chrono_tz::Europe::Berlin, t0, 1, dec!(0.01)),
            t0
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        cdrs::close_and_charge(conn, Uuid::new_v4(), &failed, t0),
        Err(StoreError::NotFound(_))
    ));
}
both_backends_sync!(close_and_charge, super::close_and_charge);

/// The charge fails after the CDR part was written inside the transaction:
/// neither part may remain.
fn close_and_charge_is_atomic(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    let s = subscribers::add(conn, &new_sub("UTC", Account::Prepaid), t0).unwrap();
    ledger::record(conn, s.id, &payment(dec!(5), "p"), t0).unwrap();
    let id = open_call(conn, s.id, t0);
    cdrs::update(
        conn,
        id,
        &CdrProgress {
            answered_at: Some(t0 + Duration::seconds(2)),
            ..CdrProgress::default()
        },
        t0,
    )
    .unwrap();
    let before = cdrs::get(conn, id).unwrap();
    // Someone already used the CDR's id as an idempotency key for another
    // entry: the ledger insert inside close_and_charge fails after the CDR
    // was updated.
    let squatter = NewEntry {
        kind: EntryKind::Adjustment,
        amount: dec!(1),
        reason: Some("occupies the key".into()),
        idempotency_key: Some(id.to_string()),
    };
    ledger::record(conn, s.id, &squatter, t0).unwrap();
    let balance = check_balance(conn, s.id);
    let end = t0 + Duration::seconds(30);
    let charged = completed(chrono_tz::UTC, end, 28, dec!(0.10));
    let err = cdrs::close_and_charge(conn, id, &charged, end).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // The CDR is exactly as before: still answered, no end, no rating.
    let after = cdrs::get(conn, id).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.status, CdrStatus::Answered);
    assert!(after.ended_at.is_none() && after.rating.is_none());
    assert_eq!(check_balance(conn, s.id), balance);
    assert_eq!(cdrs::open_cdrs(conn).unwrap().len(), 1);

    // A rating in the wrong currency: refused, nothing written.
    let mut usd = charged.clone();
    usd.rating = Some(Rating {
        currency: "USD".parse().unwrap(),
        ..rating(dec!(0.10))
    });
    let id2 = open_call(conn, s.id, t0);
    cdrs::update(
        conn,
        id2,
        &CdrProgress {
            answered_at: Some(t0),
            ..CdrProgress::default()
        },
        t0,
    )
    .unwrap();
    assert!(matches!(
        cdrs::close_and_charge(conn, id2, &usd, end),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(cdrs::get(conn, id2).unwrap().status, CdrStatus::Answered);
    assert_eq!(check_balance(conn, s.id), balance);
    // Once the conflict is cleared up the same close goes through.
    let ok = cdrs::close_and_charge(conn, id2, &charged, end).unwrap();
    assert_eq!(ok.balance, balance - dec!(0.10));
    assert_eq!(check_balance(conn, s.id), balance - dec!(0.10));
}
both_backends_sync!(
    close_and_charge_is_atomic,
    super::close_and_charge_is_atomic
);

/// After a crash: the open CDRs are listed with what is needed to close and
/// bill them from their last media time.
fn open_cdr_recovery(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    let s = subscribers::add(conn, &new_sub("UTC", Account::Prepaid), t0).unwrap();
    ledger::record(conn, s.id, &payment(dec!(5), "p"), t0).unwrap();
    let ringing = open_call(conn, s.id, t0);
    let talking = open_call(conn, s.id, t0 + Duration::seconds(1));
    let done = open_call(conn, s.id, t0 + Duration::seconds(2));
    cdrs::update(
        conn,
        talking,
        &CdrProgress {
            answered_at: Some(t0 + Duration::seconds(5)),
            last_media_at: Some(t0 + Duration::seconds(50)),
            ..CdrProgress::default()
        },
        t0,
    )
    .unwrap();
    cdrs::update(
        conn,
        done,
        &CdrProgress {
            answered_at: Some(t0 + Duration::seconds(3)),
            ..CdrProgress::default()
        },
        t0,
    )
    .unwrap();
    let end = t0 + Duration::seconds(10);
    cdrs::close_and_charge(
        conn,
        done,
        &completed(chrono_tz::UTC, end, 7, dec!(0.07)),
        end,
    )
    .unwrap();
    drop(c);

    // "Restart": a fresh pool on the same database.
    let db = forwarder::db::Database::open(&tdb.url, 2).unwrap();
    let mut c = db.conn().unwrap();
    let conn = &mut *c;
    let open = cdrs::open_cdrs(conn).unwrap();
    assert_eq!(
        open.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ringing, talking]
    );
    assert_eq!(cdrs::active_calls(conn, s.id).unwrap(), 2);
    assert_eq!(cdrs::recovery_end(&open[0]), t0);
    assert_eq!(cdrs::recovery_end(&open[1]), t0 + Duration::seconds(50));
    for cdr in &open {
        let end = cdrs::recovery_end(cdr);
        let close = match cdr.answered_at {
            Some(a) => completed(
                chrono_tz::UTC,
                end,
                (end - a).num_seconds() as u64,
                dec!(0.45),
            ),
            None => CdrClose {
                status: FinalStatus::Failed,
                ended_at: end,
                sip_status: None,
                hangup_cause: Some("forwarder restarted".into()),
                billable_seconds: 0,
                media_stats: None,
                rating: None,
                rated_in: None,
                progress: CdrProgress::default(),
            },
        };
        cdrs::close_and_charge(conn, cdr.id, &close, Utc::now()).unwrap();
    }
    assert!(cdrs::open_cdrs(conn).unwrap().is_empty());
    let talked = cdrs::get(conn, talking).unwrap();
    assert_eq!(talked.billable_seconds, Some(45));
    assert_eq!(talked.ended_at, Some(t0 + Duration::seconds(50)));
    assert_eq!(check_balance(conn, s.id), dec!(5) - dec!(0.07) - dec!(0.45));
}
both_backends_sync!(open_cdr_recovery, super::open_cdr_recovery);

/// Spend "today" and "this month" follow the subscriber's zone; the
/// standing feeds authorization.
fn spend_and_authorization(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-02-01T12:00:00Z");
    let s = subscribers::add(conn, &new_sub("America/New_York", Account::Prepaid), t0).unwrap();
    ledger::record(conn, s.id, &payment(dec!(20), "p"), t0).unwrap();
    // Nothing spent reads "0" where it is shown (the API, `account show`).
    let fresh = serde_json::to_value(ledger::standing(conn, &s, t0).unwrap()).unwrap();
    assert_eq!(fresh["spend_today"], "0");
    assert_eq!(fresh["spend_month"], "0");
    // Charged at: Feb 28 23:00 EST; Mar 9 23:00 EDT; Mar 10 01:00 EDT.
    for (at, price) in [
        ("2026-03-01T04:00:00Z", dec!(1.00)),
        ("2026-03-10T03:00:00Z", dec!(2.00)),
        ("2026-03-10T05:00:00Z", dec!(0.25)),
    ] {
        let at = t(at);
        let id = open_call(conn, s.id, at - Duration::seconds(60));
        let mut close = completed(chrono_tz::America::New_York, at, 60, price);
        close.progress.answered_at = Some(at - Duration::seconds(60));
        cdrs::close_and_charge(conn, id, &close, at).unwrap();
    }
    let now = t("2026-03-10T12:00:00Z");
    let st = ledger::standing(conn, &s, now).unwrap();
    assert_eq!(st.spend_today, dec!(0.25));
    assert_eq!(st.spend_month, dec!(2.25));
    assert_eq!(st.balance, dec!(16.75));
    assert_eq!(st.active_calls, 0);
    assert!(authorize(Some(&s), &st).is_ok());
    // Two calls in progress with a cap of two: 486.
    open_call(conn, s.id, now);
    open_call(conn, s.id, now);
    let st = ledger::standing(conn, &s, now).unwrap();
    assert_eq!(st.active_calls, 2);
    let refusal = authorize(Some(&s), &st).unwrap_err();
    assert_eq!(
        (refusal.kind, refusal.status),
        (RefusalKind::ConcurrentCalls, 486)
    );
}
both_backends_sync!(spend_and_authorization, super::spend_and_authorization);

/// The spend a call's admission sees (the running totals kept with each
/// charge) is the ledger's sum for the subscriber's local day and month:
/// across a day, a daylight-saving change and a month end, after a time
/// zone change, and with a charge dated before the latest (a clock set
/// back). On PostgreSQL the closes run as the call path runs them (one
/// statement, the totals advanced in SQL) and under lock (the totals
/// advanced here), with the same results.
fn running_spend_totals(backend: Backend) {
    let again = match &backend {
        Backend::Postgres(url) => Some(Backend::Postgres(url.clone())),
        Backend::Sqlite => None,
    };
    running_spend_totals_closed(backend, true);
    if let Some(b) = again {
        running_spend_totals_closed(b, false);
    }
}

fn running_spend_totals_closed(backend: Backend, as_rated: bool) {
    use forwarder::store::admission::{admit, Admission, InboundCall};
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-02-27T12:00:00Z");
    let mut new = new_sub("America/New_York", Account::Prepaid);
    new.daily_spend_cap = Some(dec!(50));
    new.monthly_spend_cap = Some(dec!(500));
    new.max_concurrent_calls = None;
    let s = forwarding_subscriber(conn, &new, t0);
    let check = |conn: &mut DbConnection, now: DateTime<Utc>| {
        let s = subscribers::get(conn, s.id).unwrap();
        let summed = ledger::standing(conn, &s, now).unwrap();
        let call = InboundCall {
            id: Uuid::new_v4(),
            called_number: num("+4930123456"),
            caller_number: None,
            caller_name: None,
        };
        let Admission::Admitted(a) = admit(conn, &call, now).unwrap() else {
            panic!("refused at {now}")
        };
        assert_eq!(
            (a.standing.spend_today, a.standing.spend_month),
            (summed.spend_today, summed.spend_month),
            "spend at {now}"
        );
        // The admitted call ends unanswered: nothing charged.
        let mut failed = completed(chrono_tz::America::New_York, now, 0, dec!(0));
        failed.status = FinalStatus::Failed;
        failed.rating = None;
        cdrs::close_and_charge(conn, a.cdr.id, &failed, now).unwrap();
        (summed.spend_today, summed.spend_month)
    };
    let charge = |conn: &mut DbConnection, at: &str, price: Decimal| {
        let at = t(at);
        let id = open_call(conn, s.id, at - Duration::seconds(60));
        let zone = subscribers::get(conn, s.id).unwrap().time_zone;
        let mut close = completed(zone, at, 60, price);
        if !as_rated {
            close.rated_in = None;
        }
        close.progress.answered_at = Some(at - Duration::seconds(60));
        cdrs::close_and_charge(conn, id, &close, at).unwrap();
        at
    };
    // Nothing charged yet (no totals): the ledger's zero.
    assert_eq!(check(conn, t0), (dec!(0), dec!(0)));
    // Feb 27 and 28 (EST), then Mar 1 local and the DST change on Mar 8.
    let at = charge(conn, "2026-02-27T15:00:00Z", dec!(1.10));
    assert_eq!(check(conn, at), (dec!(1.10), dec!(1.10)));
    let at = charge(conn, "2026-02-27T16:00:00Z", dec!(0.40));
    assert_eq!(check(conn, at), (dec!(1.50), dec!(1.50)));
    // The next local day, nothing charged yet, then a charge.
    assert_eq!(
        check(conn, t("2026-02-28T06:00:00Z")),
        (dec!(0), dec!(1.50))
    );
    let at = charge(conn, "2026-02-28T20:00:00Z", dec!(2));
    assert_eq!(check(conn, at), (dec!(2), dec!(3.50)));
    // Mar 1 04:00Z is still Feb 28 in New York; 05:00Z is March.
    let at = charge(conn, "2026-03-01T04:30:00Z", dec!(0.25));
    assert_eq!(check(conn, at), (dec!(2.25), dec!(3.75)));
    assert_eq!(check(conn, t("2026-03-01T05:30:00Z")), (dec!(0), dec!(0)));
    let at = charge(conn, "2026-03-08T12:00:00Z", dec!(3));
    assert_eq!(check(conn, at), (dec!(3), dec!(3)));
    // A charge dated before the latest one (the clock set back a day).
    let at = charge(conn, "2026-03-07T12:00:00Z", dec!(0.50));
    assert_eq!(check(conn, at), (dec!(0.50), dec!(3.50)));
    assert_eq!(
        check(conn, t("2026-03-08T13:00:00Z")),
        (dec!(3), dec!(3.50))
    );
    let at = charge(conn, "2026-03-08T14:00:00Z", dec!(1));
    assert_eq!(check(conn, at), (dec!(4), dec!(4.50)));
    // Another zone: Mar 9 01:30 in Berlin (still Mar 8 in New York), and
    // Berlin's March holds the charge of Feb 28 23:30 in New York.
    let patch = SubscriberPatch {
        time_zone: Some("Europe/Berlin".parse().unwrap()),
        ..SubscriberPatch::default()
    };
    subscribers::update(conn, s.id, &patch, at).unwrap();
    assert_eq!(
        check(conn, t("2026-03-09T00:30:00Z")),
        (dec!(0), dec!(4.75))
    );
    let at = charge(conn, "2026-03-09T00:40:00Z", dec!(0.75));
    assert_eq!(check(conn, at), (dec!(0.75), dec!(5.50)));
    assert_eq!(check_balance(conn, s.id), dec!(100) - dec!(9));
}
both_backends_sync!(running_spend_totals, super::running_spend_totals);

/// Calls of one subscriber closed from several threads at once, each close
/// sent twice (a retry racing the first), with payments in between: every
/// call charged once, the balance the ledger's sum, and the running spend
/// totals the ledger's sum for the day.
fn concurrent_closes(backend: Backend) {
    use forwarder::store::admission::{admit, Admission};
    let tdb = TestDb::new(backend);
    let t0 = t("2026-05-04T08:00:00Z");
    let (sub, calls) = {
        let mut c = tdb.db.conn().unwrap();
        let mut new = new_sub("UTC", Account::Prepaid);
        new.daily_spend_cap = Some(dec!(50));
        new.monthly_spend_cap = Some(dec!(500));
        new.max_concurrent_calls = None;
        let s = forwarding_subscriber(&mut c, &new, t0);
        let calls: Vec<Uuid> = (0..40).map(|_| open_call(&mut c, s.id, t0)).collect();
        (s, calls)
    };
    let calls = std::sync::Arc::new(calls);
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let db = tdb.db.clone();
            let calls = calls.clone();
            std::thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                // Threads w and w + 2 close the same calls.
                for (i, id) in calls.iter().enumerate().filter(|(i, _)| i % 2 == w % 2) {
                    let end = t0 + Duration::seconds(70 + i as i64);
                    let mut close = completed(chrono_tz::UTC, end, 60, dec!(0.10));
                    close.progress.answered_at = Some(t0 + Duration::seconds(10));
                    let closed = cdrs::close_and_charge(&mut conn, *id, &close, end).unwrap();
                    assert_eq!(closed.charge.map(|e| e.amount), Some(dec!(-0.10)));
                    if w == 0 && i % 10 == 0 {
                        let e = payment(dec!(1), &format!("during-{i}"));
                        ledger::record(&mut conn, sub.id, &e, end).unwrap();
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    assert_eq!(check_balance(conn, sub.id), dec!(100) + dec!(4) - dec!(4));
    let charges = ledger::entries(conn, sub.id, None, 500)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::CallCharge)
        .count();
    assert_eq!(charges, 40);
    let now = t0 + Duration::minutes(5);
    let Admission::Admitted(a) = admit(conn, &inbound("+4930123456"), now).unwrap() else {
        panic!("refused")
    };
    let summed = ledger::standing(conn, &sub, now).unwrap();
    assert_eq!(summed.spend_today, dec!(4));
    assert_eq!(
        (a.standing.spend_today, a.standing.spend_month),
        (summed.spend_today, summed.spend_month)
    );
}
both_backends_sync!(concurrent_closes, super::concurrent_closes);

/// Caller numbers and names are any text: NUL, control characters, quotes,
/// very long strings; stored safely (cut, NUL replaced), never an error.
fn caller_text_is_any_text(backend: Backend) {
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let now = Utc::now();
    let s = subscribers::add(conn, &new_sub("UTC", Account::Prepaid), now).unwrap();
    let id = Uuid::new_v4();
    let name = format!(
        "\"Eve\0\u{1b}[31m'; DROP TABLE cdrs; --{}",
        "x".repeat(1000)
    );
    let new = NewCdr {
        id,
        subscriber_id: s.id,
        called_number: num("+4930123456"),
        caller_number: Some("anonymous\0".into()),
        caller_name: Some(name),
        received_at: now,
    };
    let cdr = cdrs::open(conn, &new).unwrap();
    let stored = cdr.caller_name.unwrap();
    assert!(stored.starts_with("\"Eve\u{FFFD}\u{1b}[31m'; DROP TABLE cdrs"));
    assert_eq!(stored.chars().count(), cdrs::MAX_CALLER_LEN);
    assert_eq!(cdr.caller_number.as_deref(), Some("anonymous\u{FFFD}"));
    // Opening the same call again (a retried INVITE) returns it.
    assert_eq!(cdrs::open(conn, &new).unwrap().id, id);
    let mut other = new.clone();
    other.called_number = num("+4930000000");
    assert!(matches!(
        cdrs::open(conn, &other),
        Err(StoreError::Conflict(_))
    ));
}
both_backends_sync!(caller_text_is_any_text, super::caller_text_is_any_text);

/// One-step admission: refusals leave nothing behind, and calls arriving
/// together never exceed the concurrent-call cap.
fn admission(backend: Backend) {
    use forwarder::store::admission::{admit, Admission, InboundCall};
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    // Monday 2026-03-02 10:00 in Berlin.
    let now = t("2026-03-02T09:00:00Z");
    let s = subscribers::add(conn, &new_sub("Europe/Berlin", Account::Prepaid), now).unwrap();
    numbers::add(conn, s.id, &num("+4930123456"), now).unwrap();
    let call = |n: &str| InboundCall {
        id: Uuid::new_v4(),
        called_number: num(n),
        caller_number: Some("+441234".into()),
        caller_name: None,
    };
    let refused = |a: Admission| match a {
        Admission::Refused(r) => (r.kind, r.status),
        Admission::Admitted(a) => panic!("admitted: {a:?}"),
    };
    assert_eq!(
        refused(admit(conn, &call("+4930999999"), now).unwrap()),
        (RefusalKind::UnknownNumber, 404)
    );
    // No funds yet.
    assert_eq!(
        refused(admit(conn, &call("+4930123456"), now).unwrap()),
        (RefusalKind::NoFunds, 402)
    );
    ledger::record(conn, s.id, &payment(dec!(3), "p"), now).unwrap();
    // Funds, but only a weekend rule.
    let weekend = Rule {
        name: Some("weekend".into()),
        targets: vec![parse_target("+491701111").unwrap()],
        windows: vec![parse_window("sat,sun 00:00-24:00").unwrap()],
    };
    rules::replace(conn, s.id, std::slice::from_ref(&weekend), now).unwrap();
    assert_eq!(
        refused(admit(conn, &call("+4930123456"), now).unwrap()),
        (RefusalKind::NoRule, 480)
    );
    subscribers::set_status(conn, s.id, SubscriberStatus::Suspended, now).unwrap();
    assert_eq!(
        refused(admit(conn, &call("+4930123456"), now).unwrap()),
        (RefusalKind::Suspended, 403)
    );
    subscribers::set_status(conn, s.id, SubscriberStatus::Active, now).unwrap();
    assert!(
        cdrs::open_cdrs(conn).unwrap().is_empty(),
        "refusals write no CDR"
    );
    let always = Rule {
        name: Some("always".into()),
        targets: vec![parse_target("+491702222:20").unwrap()],
        windows: vec![],
    };
    rules::replace(conn, s.id, &[weekend, always.clone()], now).unwrap();
    let first = call("+4930123456");
    match admit(conn, &first, now).unwrap() {
        Admission::Admitted(a) => {
            assert_eq!(a.rule, always);
            assert_eq!(a.cdr.id, first.id);
            assert_eq!(a.cdr.status, CdrStatus::Open);
            assert_eq!(a.standing.balance, dec!(3));
            assert_eq!(a.standing.active_calls, 0);
        }
        Admission::Refused(r) => panic!("refused: {r}"),
    }
    drop(c);
    // Cap of two, one call in progress: of six arriving together exactly
    // one more gets in.
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let db = tdb.db.clone();
            std::thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                let call = InboundCall {
                    id: Uuid::new_v4(),
                    called_number: E164::parse("+4930123456").unwrap(),
                    caller_number: None,
                    caller_name: None,
                };
                match admit(&mut conn, &call, Utc::now()).unwrap() {
                    Admission::Admitted(_) => None,
                    Admission::Refused(r) => Some((r.kind, r.status)),
                }
            })
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.is_none()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes
        .iter()
        .flatten()
        .all(|o| *o == (RefusalKind::ConcurrentCalls, 486)));
    let mut c = tdb.db.conn().unwrap();
    assert_eq!(cdrs::active_calls(&mut c, s.id).unwrap(), 2);
}
both_backends_sync!(admission, super::admission);

/// What a connection ran and what it prepared for keeps, by SQL text.
#[derive(Default, Clone)]
struct Statements(std::sync::Arc<std::sync::Mutex<(Vec<String>, Vec<String>)>>);

impl diesel::connection::Instrumentation for Statements {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent as E;
        let mut s = self.0.lock().unwrap();
        match event {
            E::StartQuery { query, .. } => {
                // Shown with its binds after " -- binds: ".
                let text = query.to_string();
                let sql = text.split(" -- binds: ").next().unwrap_or("").to_owned();
                s.0.push(sql);
            }
            E::CacheQuery { sql, .. } => s.1.push(sql.to_owned()),
            _ => {}
        }
    }
}

/// The call path's statements are prepared once per connection: on a
/// second call alike in every way (admitted, answered, media noted, closed
/// and charged) every statement it runs is one the connection already
/// keeps prepared, and none is prepared anew.
fn call_path_statements_stay_prepared(backend: Backend) {
    use diesel::Connection;
    use forwarder::store::admission::{admit, Admission};
    // Besides BEGIN and COMMIT: admission 3 on SQLite (2 on PostgreSQL),
    // the answer, media, the close (4 on SQLite, 1 on PostgreSQL).
    let least = match backend {
        Backend::Sqlite => 9,
        Backend::Postgres(_) => 5,
    };
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    let mut new = new_sub("Europe/Berlin", Account::Prepaid);
    new.daily_spend_cap = Some(dec!(50));
    new.max_concurrent_calls = Some(5);
    forwarding_subscriber(conn, &new, t0);
    // Another pooled connection, which has prepared nothing yet (the one
    // above has, unseen).
    let mut fresh = tdb.db.conn().unwrap();
    let conn = &mut *fresh;
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    let one_call = |conn: &mut DbConnection, at: DateTime<Utc>| {
        let Admission::Admitted(a) = admit(conn, &inbound("+4930123456"), at).unwrap() else {
            panic!("refused")
        };
        let answered = CdrProgress {
            target: Some(num("+491702222")),
            answered_at: Some(at + Duration::seconds(2)),
            provider_id: Some(7),
            provider_name: Some("carrier".into()),
            decision: Some(serde_json::json!({"chosen": 7})),
            ticket_id: Some(Uuid::now_v7().to_string()),
            ..CdrProgress::default()
        };
        cdrs::note_progress(conn, a.cdr.id, &answered, at + Duration::seconds(2)).unwrap();
        conn.transaction(|c| cdrs::media_seen(c, a.cdr.id, at + Duration::seconds(30)))
            .unwrap();
        let mut close = completed(
            chrono_tz::Europe::Berlin,
            at + Duration::seconds(62),
            60,
            dec!(0.12),
        );
        close.progress.attempts = Some(serde_json::json!([{"provider": 7, "status": 200}]));
        close.progress.last_media_at = Some(at + Duration::seconds(61));
        let closed =
            cdrs::close_and_charge(conn, a.cdr.id, &close, at + Duration::seconds(62)).unwrap();
        assert!(closed.newly_closed && closed.charge.is_some());
    };
    // Twice first: the first charge of a day takes the long way round.
    one_call(conn, t0);
    one_call(conn, t0 + Duration::minutes(5));
    let (ran_before, kept) = {
        let mut s = seen.0.lock().unwrap();
        let ran = s.0.len();
        s.0.clear();
        (ran, std::mem::take(&mut s.1))
    };
    assert!(ran_before > 0, "instrumentation saw the calls");
    one_call(conn, t0 + Duration::minutes(10));
    let s = seen.0.lock().unwrap();
    let transaction_control = |sql: &str| {
        let word = sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"].contains(&word.as_str())
    };
    let ran: Vec<&String> = s.0.iter().filter(|q| !transaction_control(q)).collect();
    assert!(ran.len() >= least, "the call ran its statements: {ran:#?}");
    assert!(s.1.is_empty(), "prepared anew on a repeat call: {:#?}", s.1);
    let not_kept: Vec<&&String> = ran.iter().filter(|q| !kept.contains(q)).collect();
    assert!(
        not_kept.is_empty(),
        "run without being kept prepared: {not_kept:#?}"
    );
}
both_backends_sync!(
    call_path_statements_stay_prepared,
    super::call_path_statements_stay_prepared
);

/// A call's storage as the call path runs it, counted in statements (on
/// PostgreSQL each is a round trip and the server's work): admission is
/// BEGIN, the owner locked with its row, the number's owner with the calls
/// and rules, the CDR (on PostgreSQL one statement with the previous),
/// COMMIT (a number of no one's: BEGIN, the lookup, COMMIT); the answer one
/// UPDATE;
/// a charged close on SQLite BEGIN, the record and subscriber locked (two
/// statements), the record, the ledger entry, the balance, COMMIT; on
/// PostgreSQL one statement, the day's first charge included; and, in a
/// zone other than the one the call was rated in, the locking close: BEGIN,
/// the lock with its rows, the record, the entry with the balance, COMMIT,
/// after the one statement that found the zone changed.
fn statements_of_a_call(backend: Backend) {
    use diesel::Connection;
    use forwarder::store::admission::{admit, Admission};
    let (admit_statements, close_statements, elsewhere) = match backend {
        Backend::Sqlite => (5, 7, 7),
        Backend::Postgres(_) => (4, 1, 6),
    };
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    let mut new = new_sub("Europe/Berlin", Account::Prepaid);
    new.max_concurrent_calls = Some(5);
    forwarding_subscriber(conn, &new, t0);
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    let count = || {
        let mut s = seen.0.lock().unwrap();
        std::mem::take(&mut s.0).len()
    };
    let at = t0 + Duration::minutes(1);
    // Once first: the day's first charge sums the ledger for its totals.
    for round in 0..2 {
        count();
        let Admission::Admitted(a) = admit(conn, &inbound("+4930123456"), at).unwrap() else {
            panic!("refused")
        };
        let admitted = count();
        let answered = CdrProgress {
            target: Some(num("+491702222")),
            answered_at: Some(at + Duration::seconds(2)),
            provider_id: Some(7),
            ..CdrProgress::default()
        };
        cdrs::note_progress(conn, a.cdr.id, &answered, at).unwrap();
        let noted = count();
        let close = completed(
            chrono_tz::Europe::Berlin,
            at + Duration::seconds(62),
            60,
            dec!(0.12),
        );
        let closed = cdrs::close_and_charge(conn, a.cdr.id, &close, at).unwrap();
        assert!(closed.charge.is_some());
        let close = count();
        if round == 1 {
            assert_eq!(
                (admitted, noted, close),
                (admit_statements, 1, close_statements)
            );
        }
    }
    // Rated in a zone the subscriber is no longer in.
    let Admission::Admitted(a) = admit(conn, &inbound("+4930123456"), at).unwrap() else {
        panic!("refused")
    };
    let mut close = completed(
        chrono_tz::Asia::Tokyo,
        at + Duration::seconds(62),
        60,
        dec!(0.12),
    );
    close.progress.answered_at = Some(at + Duration::seconds(2));
    count();
    let closed = cdrs::close_and_charge(conn, a.cdr.id, &close, at).unwrap();
    assert!(closed.charge.is_some());
    assert_eq!(count(), elsewhere);
    // Inside the caller's transaction the close goes under lock at once: a
    // failed statement there would abort the caller's transaction.
    let Admission::Admitted(a) = admit(conn, &inbound("+4930123456"), at).unwrap() else {
        panic!("refused")
    };
    close.rated_in = Some(chrono_tz::Europe::Berlin);
    count();
    let closed = conn
        .transaction(|c| cdrs::close_and_charge(c, a.cdr.id, &close, at))
        .unwrap();
    assert!(closed.charge.is_some());
    let within = std::mem::take(&mut seen.0.lock().unwrap().0);
    assert!(
        !within.iter().any(|q| q.starts_with("WITH closed AS")),
        "one-statement close tried inside a transaction: {within:#?}"
    );
    let Admission::Refused(r) = admit(conn, &inbound("+4930999999"), at).unwrap() else {
        panic!("an unknown number admitted")
    };
    assert_eq!(r.status, 404);
    assert_eq!(count(), 3, "BEGIN, the owner looked for, COMMIT");
}
both_backends_sync!(statements_of_a_call, super::statements_of_a_call);

/// Counting a subscriber's calls in progress reads the partial index of
/// calls in progress, which holds nothing else: the count's condition
/// matches the index's predicate (a migration), or the planner could not
/// use the index and the count would walk the subscriber's whole history
/// at every call.
fn calls_in_progress_counted_from_their_index(backend: Backend) {
    use diesel::sql_types::{BigInt, Text};
    use diesel::{sql_query, Connection, QueryableByName, RunQueryDsl};
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    let s = forwarding_subscriber(conn, &new_sub("Europe/Berlin", Account::Prepaid), t0);
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    assert_eq!(cdrs::active_calls(conn, s.id).unwrap(), 0);
    let count = seen.0.lock().unwrap().0.pop().expect("the count ran");
    conn.set_instrumentation(Statements::default());
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        #[diesel(column_name = "QUERY PLAN")]
        plan: String,
    }
    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    let plan = match conn {
        DbConnection::Postgres(pg) => {
            // A handful of rows would be read faster without any index:
            // the question here is only which index the planner can use.
            sql_query("SET enable_seqscan = off").execute(pg).unwrap();
            let lines: Vec<Line> = sql_query(format!("EXPLAIN {count}"))
                .bind::<BigInt, _>(s.id)
                .load(pg)
                .unwrap();
            lines.into_iter().map(|l| l.plan).collect::<Vec<_>>()
        }
        DbConnection::Sqlite(lite) => {
            let steps: Vec<Step> = sql_query(format!("EXPLAIN QUERY PLAN {count}"))
                .bind::<BigInt, _>(s.id)
                .load(lite)
                .unwrap();
            steps.into_iter().map(|s| s.detail).collect()
        }
    };
    assert!(
        plan.iter().any(|l| l.contains("cdrs_open_by_subscriber")),
        "{count}\n{plan:#?}"
    );
}
both_backends_sync!(
    calls_in_progress_counted_from_their_index,
    super::calls_in_progress_counted_from_their_index
);

/// Every statement of a call that finds a record by its id reads it by
/// the primary key, also in a generic plan made while the table is empty
/// (PostgreSQL keeps one per prepared statement after a few runs): through
/// any other index, such as the one of calls in progress, each lookup
/// would read every call up, and the cost would grow with the load.
fn records_found_by_id_through_the_primary_key(backend: Backend) {
    use diesel::sql_types::Text;
    use diesel::{sql_query, Connection, QueryableByName, RunQueryDsl};
    use forwarder::store::admission::{admit, Admission};
    let tdb = TestDb::new(backend);
    let mut c = tdb.db.conn().unwrap();
    let conn = &mut *c;
    let t0 = t("2026-03-02T09:00:00Z");
    forwarding_subscriber(conn, &new_sub("Europe/Berlin", Account::Prepaid), t0);
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    let at = t0 + Duration::minutes(1);
    let Admission::Admitted(a) = admit(conn, &inbound("+4930123456"), at).unwrap() else {
        panic!("refused")
    };
    let answered = CdrProgress {
        target: Some(num("+491702222")),
        answered_at: Some(at + Duration::seconds(2)),
        ..CdrProgress::default()
    };
    cdrs::note_progress(conn, a.cdr.id, &answered, at).unwrap();
    cdrs::media_seen(conn, a.cdr.id, at + Duration::seconds(5)).unwrap();
    cdrs::close_and_charge(
        conn,
        a.cdr.id,
        &completed(
            chrono_tz::Europe::Berlin,
            at + Duration::seconds(62),
            60,
            dec!(0.12),
        ),
        at,
    )
    .unwrap();
    conn.set_instrumentation(Statements::default());
    let by_id: Vec<String> = seen
        .0
        .lock()
        .unwrap()
        .0
        .iter()
        .filter(|q| q.contains(r#""cdrs"."id" = "#) || q.contains("`cdrs`.`id` = "))
        .cloned()
        .collect();
    assert!(
        by_id.len() >= 3,
        "answer, media, close: {:#?}",
        seen.0.lock().unwrap().0
    );
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        #[diesel(column_name = "QUERY PLAN")]
        plan: String,
    }
    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    for (i, sql) in by_id.iter().enumerate() {
        let plan: Vec<String> = match &mut *conn {
            DbConnection::Postgres(pg) => {
                // Parameters typed by the server from their columns, all
                // NULL: only the plan is asked for.
                let params = (1..=64)
                    .take_while(|n| sql.contains(&format!("${n}")))
                    .count();
                let nulls = vec!["NULL"; params].join(", ");
                sql_query("SET plan_cache_mode = force_generic_plan")
                    .execute(pg)
                    .unwrap();
                sql_query(format!("PREPARE by_id_{i} AS {sql}"))
                    .execute(pg)
                    .unwrap();
                let lines: Vec<Line> = sql_query(format!("EXPLAIN EXECUTE by_id_{i}({nulls})"))
                    .load(pg)
                    .unwrap();
                lines.into_iter().map(|l| l.plan).collect()
            }
            DbConnection::Sqlite(lite) => {
                let steps: Vec<Step> = sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                    .load(lite)
                    .unwrap();
                steps.into_iter().map(|s| s.detail).collect()
            }
        };
        let scans: Vec<&String> = plan
            .iter()
            .filter(|l| {
                (l.contains("Scan") && l.contains(" on cdrs"))
                    || l.contains("SEARCH cdrs")
                    || l.contains("SCAN cdrs")
            })
            .collect();
        assert!(
            !scans.is_empty()
                && scans
                    .iter()
                    .all(|l| l.contains("cdrs_pkey") || l.contains("sqlite_autoindex_cdrs_1")),
            "{sql}\n{plan:#?}"
        );
    }
}
both_backends_sync!(
    records_found_by_id_through_the_primary_key,
    super::records_found_by_id_through_the_primary_key
);

/// The PostgreSQL server ends its connections matching `which` (a
/// condition on `pg_stat_activity`), as in a restart, and waits until they
/// are gone.
fn drop_server_connections(server: &mut diesel::PgConnection, which: &str) {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;
    let count = |server: &mut diesel::PgConnection, what: &str| -> i64 {
        diesel::select(sql::<BigInt>(&format!(
            "(SELECT count({what}) FROM pg_stat_activity WHERE {which})"
        )))
        .get_result(server)
        .unwrap()
    };
    count(server, "pg_terminate_backend(pid)");
    for _ in 0..250 {
        if count(server, "*") == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the server kept its connections where {which}");
}

/// PostgreSQL connections are checked with `SELECT 1` only when their last
/// check is older than the liveness window, or when the pool has lost a
/// connection since; a connection the server dropped (as in a restart) is
/// then replaced before anyone uses it.
#[test]
fn pooled_connections_are_checked_after_the_liveness_window() {
    use diesel::dsl::sql;
    use diesel::sql_types::Integer;
    use diesel::{Connection, RunQueryDsl};
    use forwarder::db::Database;
    use std::time::Duration as StdDuration;
    let Some(admin) =
        common::postgres_url("pooled_connections_are_checked_after_the_liveness_window")
    else {
        return;
    };
    let tdb = TestDb::new(Backend::Postgres(admin));
    let pid = |c: &mut DbConnection| -> diesel::QueryResult<i32> {
        let DbConnection::Postgres(pg) = c else {
            panic!("a PostgreSQL connection")
        };
        diesel::select(sql::<Integer>("pg_backend_pid()")).get_result(pg)
    };
    let mut server = diesel::PgConnection::establish(&tdb.url).unwrap();
    // A pool of two connections, both opened and checked; their server pids.
    let two = |window: StdDuration| {
        let db = Database::open(&tdb.url, 2)
            .unwrap()
            .with_liveness_window(window);
        let (mut a, mut b) = (db.conn().unwrap(), db.conn().unwrap());
        let pids = [pid(&mut a).unwrap(), pid(&mut b).unwrap()];
        drop((a, b));
        (db, pids)
    };
    // The server drops them and waits until they are gone.
    let mut terminate = |pids: [i32; 2]| {
        drop_server_connections(&mut server, &format!("pid IN ({}, {})", pids[0], pids[1]))
    };
    let live_pair = |db: &Database, old: [i32; 2]| {
        let (mut a, mut b) = (db.conn().unwrap(), db.conn().unwrap());
        let now = [pid(&mut a).unwrap(), pid(&mut b).unwrap()];
        assert!(
            now.iter().all(|p| !old.contains(p)),
            "new server connections: {now:?} after {old:?}"
        );
    };

    // Within the window: no check.
    let (hour, pids) = two(StdDuration::from_secs(3600));
    let seen = Statements::default();
    {
        // Instrumentation stays with a connection across checkouts.
        let (mut a, mut b) = (hour.conn().unwrap(), hour.conn().unwrap());
        a.set_instrumentation(seen.clone());
        b.set_instrumentation(seen.clone());
    }
    {
        let (mut a, mut b) = (hour.conn().unwrap(), hour.conn().unwrap());
        let mut again = [pid(&mut a).unwrap(), pid(&mut b).unwrap()];
        again.sort();
        let mut first = pids;
        first.sort();
        assert_eq!(again, first, "the pool's two connections again");
    }
    {
        let s = seen.0.lock().unwrap();
        assert!(
            !s.0.iter().any(|q| q.trim() == "SELECT 1"),
            "checked again within the window: {:#?}",
            s.0
        );
    }
    // A dead connection is handed out unchecked within the window: its
    // next statement fails, the pool discards it, and from then on every
    // connection is checked again, so the other dead one is replaced too.
    terminate(pids);
    {
        let mut c = hour.conn().unwrap();
        assert!(pid(&mut c).is_err(), "a dropped connection fails");
    }
    live_pair(&hour, pids);

    // Past the window every checkout is checked: dead connections are
    // replaced before use.
    let (always, pids) = two(StdDuration::ZERO);
    terminate(pids);
    live_pair(&always, pids);
}

/// A call's close that meets a connection the server dropped (a database
/// restart within the liveness window) is tried once more on a fresh one:
/// the CDR is closed now, not left open until the forwarder's next start.
#[test]
fn a_close_on_a_dropped_connection_is_retried() {
    use diesel::Connection;
    use forwarder::book::StoreBook;
    use forwarder::calls::{CallBook, CallEnd, CallStart};
    use forwarder::rating::{Plans, RatingConfig};
    let Some(admin) = common::postgres_url("a_close_on_a_dropped_connection_is_retried") else {
        return;
    };
    let tdb = TestDb::new(Backend::Postgres(admin));
    let t0 = Utc::now();
    {
        let mut c = tdb.db.conn().unwrap();
        let conn = &mut *c;
        forwarding_subscriber(conn, &new_sub("Europe/Berlin", Account::Prepaid), t0);
    }
    let config = RatingConfig::from_toml(
        "[plans.standard]\nkind = \"markup\"\ncurrency = \"EUR\"\n\
         first_increment = 1\nnext_increment = 1\nmarkup_percent = \"20\"\n",
    )
    .unwrap();
    let plans = Plans::from_config(&config, |_| Err::<_, String>("no decks".into())).unwrap();
    // One connection, checked an hour ago as far as the pool knows.
    let db = forwarder::db::Database::open(&tdb.url, 1)
        .unwrap()
        .with_liveness_window(std::time::Duration::from_secs(3600));
    let book = StoreBook::new(db.clone(), std::sync::Arc::new(plans));
    let begun = book
        .begin(&CallStart {
            call_id: "retry-1".into(),
            called: num("+4930123456"),
            caller: Some("+441234567".into()),
            caller_name: None,
            source: "127.0.0.1:5060".parse().unwrap(),
            received_at: std::time::SystemTime::now(),
        })
        .unwrap();
    let mut server = diesel::PgConnection::establish(&tdb.url).unwrap();
    // The server drops every connection of the pool.
    drop_server_connections(
        &mut server,
        "datname = current_database() AND pid <> pg_backend_pid()",
    );
    book.finish(CallEnd {
        cdr_id: begun.cdr_id,
        subscriber: begun.subscriber,
        final_status: Some(486),
        forwarded_to: None,
        decisions: vec![],
        attempts: vec![],
        answered_at: None,
        ended_at: Some(std::time::SystemTime::now()),
        hangup: Some("busy".into()),
        carrier: None,
        ticket_id: None,
        media: None,
    });
    let mut c = db.conn().unwrap();
    let open = cdrs::open_cdrs(&mut c).unwrap();
    assert!(open.is_empty(), "closed at once: {open:?}");
}

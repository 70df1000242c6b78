//! Billing statements: on a schedule, each subscriber is e-mailed a
//! statement of the period — opening balance, every call, payments, credits
//! and adjustments, closing balance, totals per destination type — as HTML
//! with a plain-text alternative and the calls as a CSV attachment.
//!
//! # Periods
//!
//! The schedule is a cron expression (`cron` crate: `sec min hour
//! day-of-month month day-of-week`), from `[statements] schedule` or a
//! subscriber's own (`forwarder statements schedule ID EXPR`), read in the
//! subscriber's time zone. A period runs from one fire time to the next.
//! The first period starts at the last fire time before the subscriber was
//! added; each next one starts where the previous statement ended, so the
//! periods tile time and every call lands on exactly one statement. A call
//! belongs to the period holding its **end** time, with its charge; any
//! other ledger entry to the period holding its creation time. A period is
//! issued `settle_secs` after it ends.
//!
//! # Exactly once
//!
//! [`prepare`] creates each due statement with its rendered message and
//! fixed Message-ID in one insert, unique on (subscriber, period start):
//! running it twice, or two processes at once, gives one statement.
//! [`deliver`] sends stored messages byte for byte and marks each sent
//! right after the server's 250; a failure leaves it `failed` with the
//! error and a next attempt (exponential backoff up to `retry_max_secs`),
//! retried for ever and visible to the operator (`forwarder statements
//! list --status failed`, `/metrics`). A crash between the 250 and the
//! mark sends the same message again — same bytes, same Message-ID, so
//! the duplicate is recognisable; SMTP cannot do better.
//!
//! # Never wrong
//!
//! A period with a call still open (received before the period's end) or
//! closed without a rating, or of a subscriber whose e-mail address cannot
//! be used, is not issued: it is recorded as a hold
//! (`forwarder statements holds`), logged, counted in
//! `forwarder_statements_held`, and e-mailed once to `[mail] operator`.
//! It is issued by the first run after the cause is gone.

pub mod config;
pub mod mail;
pub mod render;
pub mod smtp;

use crate::db::{Database, DbConnection};
use crate::store::statements::{
    self as stored, Created, Gathered, Hold, Issued, NewStatement, Period, StoredHold,
};
use crate::store::{subscribers, StoreError};
use crate::subscriber::{Subscriber, SubscriberStatus};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use config::{Schedule, StatementSettings};
use lettre::message::Mailbox;
use mail::Mailer;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The last fire time at or before `t` (in `tz`), if the schedule has one.
pub fn fire_at_or_before(schedule: &Schedule, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Backwards from just after `t`; cron works in whole seconds, so the
    // first fire found may still be after `t` (within its second).
    let after = (t + Duration::seconds(1)).with_timezone(&tz);
    schedule
        .cron()
        .after(&after)
        .rev()
        .take(3)
        .map(|f| f.with_timezone(&Utc))
        .find(|f| *f <= t)
}

/// The first fire time strictly after `t` (in `tz`).
pub fn fire_after(schedule: &Schedule, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .cron()
        .after(&t.with_timezone(&tz))
        .next()
        .map(|f| f.with_timezone(&Utc))
}

/// The period that starts at `start`.
pub fn period_from(schedule: &Schedule, tz: Tz, start: DateTime<Utc>) -> Option<Period> {
    fire_after(schedule, tz, start).map(|end| Period { start, end })
}

/// The start of a subscriber's first period.
pub fn first_start(schedule: &Schedule, tz: Tz, created: DateTime<Utc>) -> DateTime<Utc> {
    fire_at_or_before(schedule, tz, created).unwrap_or(created)
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrepareReport {
    /// Statements created by this run.
    pub created: Vec<i64>,
    /// Periods already issued (found, not created again).
    pub existing: usize,
    /// Periods held back, with why.
    pub held: Vec<Hold>,
    /// Subscribers that could not be processed (and why).
    pub errors: Vec<String>,
}

/// What [`deliver`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliverReport {
    pub sent: Vec<i64>,
    pub failed: Vec<FailedSend>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedSend {
    pub statement_id: i64,
    pub error: String,
    pub next_attempt_at: DateTime<Utc>,
}

/// Which subscribers a run covers.
#[derive(Debug, Clone, Copy, Default)]
pub enum Scope {
    #[default]
    All,
    One(i64),
}

/// Statements stored per transaction: fewer commits, while a call-path
/// writer waits at most a few milliseconds for its turn.
const WRITE_BATCH: usize = 8;

/// What the workers hand to the writer.
enum ToWrite {
    /// `reply`: the worker waits for the stored statement (it has a next
    /// period to prepare, which opens with this one's closing balance).
    Statement {
        new: NewStatement,
        reply: Option<std::sync::mpsc::SyncSender<Result<Issued, StoreError>>>,
    },
    Hold(Hold),
}

/// Creates every statement due at `now`: for each subscriber, each period
/// that ended at least `settle` before `now` and has no statement yet.
/// Subscribers are shared among a few threads that gather and render; one
/// more stores what they made, a few statements per transaction, so the
/// others never wait for the disk. Blocking (database work): call from
/// `spawn_blocking` in async code.
pub fn prepare(
    db: &Database,
    settings: &StatementSettings,
    from: &Mailbox,
    now: DateTime<Utc>,
    scope: Scope,
) -> Result<PrepareReport, StoreError> {
    let (subs, own, last) = {
        let mut conn = db.conn()?;
        let conn = &mut *conn;
        let subs = match scope {
            Scope::All => subscribers::list(conn)?,
            Scope::One(id) => vec![subscribers::get(conn, id)?],
        };
        (subs, stored::schedules(conn)?, stored::last_periods(conn)?)
    };
    // One more worker than cores: a worker also waits (page reads, its
    // turn to hand over to the writer), and the spare one fills that time.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get() + 1)
        .clamp(1, 5)
        .min(subs.len().max(1));
    // Each worker takes the next subscriber when it is done with one: a
    // fixed share each would leave a core idle while the slowest finishes.
    let next = AtomicUsize::new(0);
    let results: Vec<Result<PrepareReport, StoreError>> = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ToWrite>(WRITE_BATCH * 2);
        let writer = scope.spawn(move || Ok(write_all(db, rx, now)));
        let mut handles: Vec<_> = (0..workers)
            .map(|_| {
                let (subs, next, own, last, tx) = (&subs, &next, &own, &last, tx.clone());
                scope
                    .spawn(move || prepare_some(db, subs, next, own, last, settings, from, now, tx))
            })
            .collect();
        drop(tx);
        handles.push(writer);
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Invalid("a statement worker panicked".into()))
                })
            })
            .collect()
    });
    let mut report = PrepareReport::default();
    for r in results {
        let r = r?;
        report.created.extend(r.created);
        report.existing += r.existing;
        report.held.extend(r.held);
        report.errors.extend(r.errors);
    }
    report.created.sort_unstable();
    Ok(report)
}

/// The writer: stores what arrives, up to [`WRITE_BATCH`] statements per
/// transaction, until every worker is done.
fn write_all(
    db: &Database,
    rx: std::sync::mpsc::Receiver<ToWrite>,
    now: DateTime<Utc>,
) -> PrepareReport {
    let mut report = PrepareReport::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (mut news, mut replies) = (Vec::with_capacity(batch.len()), Vec::new());
        for job in batch {
            match job {
                ToWrite::Statement { new, reply } => {
                    news.push(new);
                    replies.push(reply);
                }
                ToWrite::Hold(hold) => {
                    let r = db
                        .write(|c| stored::record_hold(c, &hold, now))
                        .map_err(StoreError::from)
                        .and_then(|r| r);
                    if let Err(e) = r {
                        report
                            .errors
                            .push(format!("subscriber {}: {e}", hold.subscriber_id));
                    }
                }
            }
        }
        let stored = match insert(db, &news, now) {
            Ok(all) => all.into_iter().map(Ok).collect(),
            // One bad statement fails its batch: each again on its own.
            Err(_) if news.len() > 1 => news
                .iter()
                .map(|n| insert(db, std::slice::from_ref(n), now).map(|mut v| v.remove(0)))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        for ((new, reply), r) in news.iter().zip(replies).zip(stored) {
            let issued = match r {
                Ok(Created::New(st)) => {
                    report.created.push(st.id);
                    Ok(st)
                }
                Ok(Created::Existing(st)) => {
                    report.existing += 1;
                    Ok(st)
                }
                Err(e) => {
                    tracing::error!(subscriber = new.subscriber_id, error = %e, "cannot store a statement");
                    report
                        .errors
                        .push(format!("subscriber {}: {e}", new.subscriber_id));
                    Err(e)
                }
            };
            if let Some(reply) = reply {
                // A worker that stopped waiting has nothing left to do.
                let _ = reply.send(issued);
            }
        }
    }
    report
}

fn insert(
    db: &Database,
    news: &[NewStatement],
    now: DateTime<Utc>,
) -> Result<Vec<Created>, StoreError> {
    db.write(|c| stored::insert_all(c, news, now))?
}

#[allow(clippy::too_many_arguments)]
fn prepare_some(
    db: &Database,
    subs: &[Subscriber],
    next: &AtomicUsize,
    own: &std::collections::HashMap<i64, String>,
    last: &std::collections::HashMap<i64, (Period, rust_decimal::Decimal)>,
    settings: &StatementSettings,
    from: &Mailbox,
    now: DateTime<Utc>,
    writer: std::sync::mpsc::SyncSender<ToWrite>,
) -> Result<PrepareReport, StoreError> {
    let mut conn = db.conn()?;
    let conn = &mut *conn;
    let settle = Duration::from_std(settings.settle).unwrap_or_default();
    let mut report = PrepareReport::default();
    while let Some(s) = subs.get(next.fetch_add(1, Ordering::Relaxed)) {
        let schedule = match own.get(&s.id).map(|e| Schedule::parse(e)) {
            Some(Ok(sch)) => sch,
            Some(Err(e)) => {
                report.errors.push(format!("subscriber {}: {e}", s.id));
                continue;
            }
            None => settings.schedule.clone(),
        };
        let result = prepare_one(
            conn,
            s,
            &schedule,
            settings,
            from,
            now - settle,
            now,
            last.get(&s.id).copied(),
            &mut report,
            &writer,
        );
        if let Err(e) = result {
            tracing::error!(subscriber = s.id, error = %e, "cannot prepare statements");
            report.errors.push(format!("subscriber {}: {e}", s.id));
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn prepare_one(
    conn: &mut DbConnection,
    s: &Subscriber,
    schedule: &Schedule,
    settings: &StatementSettings,
    from: &Mailbox,
    issue_until: DateTime<Utc>,
    now: DateTime<Utc>,
    last: Option<(Period, rust_decimal::Decimal)>,
    report: &mut PrepareReport,
    writer: &std::sync::mpsc::SyncSender<ToWrite>,
) -> Result<(), StoreError> {
    let stopped = || StoreError::Invalid("the statement writer stopped".into());
    let tz = s.time_zone;
    let (mut start, mut opening) = match last {
        Some((p, closing)) => (p.end, Some(closing)),
        None => (first_start(schedule, tz, s.created_at), None),
    };
    // A period is due when it ended by `issue_until`; a closed account gets
    // statements up to its closing, not for ever.
    let due = |p: &Period| {
        p.end <= issue_until && !(s.status == SubscriberStatus::Closed && p.start > s.updated_at)
    };
    let mut period = match period_from(schedule, tz, start) {
        Some(p) if due(&p) => p,
        _ => return Ok(()),
    };
    loop {
        // Logged, reported, and recorded by the writer.
        let hold_back = |report: &mut PrepareReport, hold: Hold| {
            tracing::warn!(
                subscriber = hold.subscriber_id,
                period_start = %hold.period.start,
                reason = %hold.reason,
                "statement held back"
            );
            report.held.push(hold.clone());
            writer.send(ToWrite::Hold(hold)).map_err(|_| stopped())
        };
        let data = match stored::gather(conn, s.id, period, opening)? {
            Gathered::Ready(d) => d,
            Gathered::Held(hold) => return hold_back(report, hold),
        };
        let r = match render::render(s, &data, settings, from, now) {
            Ok(r) => r,
            // Nothing to send it to: held (and the operator told) until the
            // address is corrected, like a period with an open call.
            Err(e @ render::RenderError::Recipient(..)) => {
                let reason = e.to_string();
                return hold_back(
                    report,
                    Hold {
                        subscriber_id: s.id,
                        period,
                        reason,
                    },
                );
            }
            Err(e) => return Err(StoreError::Invalid(e.to_string())),
        };
        let summary = serde_json::to_value(&r.summary)
            .map_err(|e| StoreError::Invalid(format!("summary: {e}")))?;
        let new = NewStatement {
            subscriber_id: s.id,
            period,
            currency: s.currency,
            opening_balance: r.summary.opening_balance,
            closing_balance: r.summary.closing_balance,
            summary,
            recipient: r.recipient,
            message_id: r.message_id,
            message: r.message,
        };
        if period_from(schedule, tz, period.end).filter(&due).is_none() {
            // The last due period: the writer reports how it went.
            writer
                .send(ToWrite::Statement { new, reply: None })
                .map_err(|_| stopped())?;
            return Ok(());
        }
        // The next period opens with this one's closing balance as stored
        // (another run may have stored it first).
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        writer
            .send(ToWrite::Statement {
                new,
                reply: Some(reply),
            })
            .map_err(|_| stopped())?;
        let stmt = match answer.recv() {
            Ok(Ok(stmt)) => stmt,
            // The writer reported it.
            Ok(Err(_)) => return Ok(()),
            Err(_) => return Err(stopped()),
        };
        start = stmt.period.end;
        opening = Some(stmt.closing_balance);
        period = match period_from(schedule, tz, start) {
            Some(p) if due(&p) => p,
            _ => return Ok(()),
        };
    }
}

/// The delay before attempt `attempts + 1` after a failure.
pub fn backoff(settings: &StatementSettings, attempts: u32) -> std::time::Duration {
    let factor = 1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX);
    settings
        .retry_first
        .saturating_mul(factor)
        .min(settings.retry_max)
}

/// Sends every statement due at `now` (pending, or failed with its next
/// attempt due), `concurrency` at a time, marking each sent right after the
/// server accepted it.
pub async fn deliver(
    db: &Database,
    mailer: Arc<Mailer>,
    settings: &StatementSettings,
    concurrency: usize,
    now: DateTime<Utc>,
) -> Result<DeliverReport, StoreError> {
    let mut report = DeliverReport::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let db2 = db.clone();
        let batch = blocking(move || {
            let mut c = db2.conn()?;
            stored::due(&mut c, now, 500)
        })
        .await?;
        let batch: Vec<_> = batch.into_iter().filter(|o| seen.insert(o.id)).collect();
        if batch.is_empty() {
            return Ok(report);
        }
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        // Marks are written one at a time (see `prepare`).
        let gate = Arc::new(std::sync::Mutex::new(()));
        let mut tasks = tokio::task::JoinSet::new();
        for out in batch {
            let (mailer, db, sem) = (mailer.clone(), db.clone(), sem.clone());
            let (gate, gate2) = (gate.clone(), gate.clone());
            let settings = settings.clone();
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let sent = mailer
                    .send(&out.recipient, &out.message_id, out.message.as_bytes())
                    .await;
                let id = out.id;
                // sent_at is a fact (the wall clock); retries are scheduled
                // on the run's clock, so `--now` runs behave like real ones.
                let at = Utc::now();
                match sent {
                    Ok(()) => {
                        blocking(move || {
                            let mut c = db.conn()?;
                            let _w = gate.lock().unwrap_or_else(|p| p.into_inner());
                            stored::mark_sent(&mut c, id, at)
                        })
                        .await?;
                        tracing::info!(statement = id, message_id = %out.message_id, "statement sent");
                        Ok(Ok(id))
                    }
                    Err(e) => {
                        let next = now
                            + Duration::from_std(backoff(&settings, out.attempts))
                                .unwrap_or_default();
                        let msg = e.to_string();
                        tracing::warn!(statement = id, error = %msg, retry_at = %next, "statement not sent");
                        let m = msg.clone();
                        blocking(move || {
                            let mut c = db.conn()?;
                            let _w = gate2.lock().unwrap_or_else(|p| p.into_inner());
                            stored::mark_failed(&mut c, id, &m, next)
                        })
                        .await?;
                        Ok(Err(FailedSend {
                            statement_id: id,
                            error: msg,
                            next_attempt_at: next,
                        }))
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            let r: Result<Result<i64, FailedSend>, StoreError> =
                done.map_err(|e| StoreError::Invalid(format!("send task: {e}")))?;
            match r? {
                Ok(id) => report.sent.push(id),
                Err(f) => report.failed.push(f),
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Invalid(format!("blocking task: {e}")))?
}

/// E-mails the operator about every hold not reported yet. Returns how
/// many were reported.
pub async fn notify_holds(db: &Database, mailer: &Mailer) -> Result<usize, StoreError> {
    let db2 = db.clone();
    let holds: Vec<StoredHold> = blocking(move || {
        let mut c = db2.conn()?;
        stored::holds(&mut c)
    })
    .await?
    .into_iter()
    .filter(|h| h.notified_at.is_none())
    .collect();
    if holds.is_empty() {
        return Ok(0);
    }
    let Some(operator) = mailer.operator().cloned() else {
        tracing::error!(
            held = holds.len(),
            "statements are held back but [mail] operator is not set: nobody can be told"
        );
        return Ok(0);
    };
    let mut body = String::from(
        "These statements were not issued because calls of their period are still open or not rated.\n\
         They are issued by the first statement run after that is resolved.\n\n",
    );
    for h in &holds {
        body.push_str(&format!(
            "subscriber {}  period {} to {}  {}\n",
            h.subscriber_id, h.period.start, h.period.end, h.reason
        ));
    }
    let now = Utc::now();
    let id = format!(
        "<statement-holds.{}@{}>",
        now.timestamp_micros(),
        mailer.from().email.domain()
    );
    let msg = lettre::Message::builder()
        .from(mailer.from().clone())
        .to(operator.clone())
        .subject(format!("{} statement(s) held back", holds.len()))
        .message_id(Some(id.clone()))
        .date(now.into())
        .body(body)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    match mailer
        .send(operator.email.as_ref(), &id, &msg.formatted())
        .await
    {
        Ok(()) => {
            let db2 = db.clone();
            let n = holds.len();
            blocking(move || {
                let mut c = db2.conn()?;
                for h in &holds {
                    stored::hold_notified(&mut c, h.subscriber_id, h.period.start, now)?;
                }
                Ok(())
            })
            .await?;
            Ok(n)
        }
        Err(e) => {
            // Tried again at the next run.
            tracing::error!(error = %e, "cannot e-mail the operator about held statements");
            Ok(0)
        }
    }
}

/// Counts for `/metrics`: statements not sent yet, and held periods.
pub fn backlog(conn: &mut DbConnection) -> Result<(i64, i64, i64), StoreError> {
    use crate::db::schema::{statement_holds as h, statements as st};
    use diesel::prelude::*;
    let pending: i64 = st::table
        .filter(st::status.eq("pending"))
        .count()
        .get_result(conn)?;
    let failed: i64 = st::table
        .filter(st::status.eq("failed"))
        .count()
        .get_result(conn)?;
    let held: i64 = h::table.count().get_result(conn)?;
    Ok((pending, failed, held))
}

/// One statement run: prepare, tell the operator about holds, send.
pub async fn run_once(
    db: &Database,
    mailer: Arc<Mailer>,
    settings: &StatementSettings,
    concurrency: usize,
    now: DateTime<Utc>,
    scope: Scope,
    send: bool,
) -> Result<RunReport, StoreError> {
    let (db2, settings2, from) = (db.clone(), settings.clone(), mailer.from().clone());
    let prepared = blocking(move || prepare(&db2, &settings2, &from, now, scope)).await?;
    if !send {
        return Ok(RunReport {
            prepared,
            notified_holds: 0,
            delivered: DeliverReport::default(),
        });
    }
    let notified_holds = notify_holds(db, &mailer).await?;
    let delivered = deliver(db, mailer, settings, concurrency, now).await?;
    Ok(RunReport {
        prepared,
        notified_holds,
        delivered,
    })
}

/// What [`run_once`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub prepared: PrepareReport,
    pub notified_holds: usize,
    pub delivered: DeliverReport,
}

/// The scheduler inside `forwarder serve`: a run every `check_every`, until
/// `stop` resolves. Runs are idempotent, so a restart just runs again.
pub async fn scheduler(
    db: Database,
    mailer: Arc<Mailer>,
    settings: StatementSettings,
    concurrency: usize,
    metrics: Arc<crate::metrics::Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(settings.check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        match run_once(
            &db,
            mailer.clone(),
            &settings,
            concurrency,
            now,
            Scope::All,
            true,
        )
        .await
        {
            Ok(r) => {
                metrics
                    .statements_created
                    .inc_by(r.prepared.created.len() as u64);
                metrics
                    .statements_sent
                    .inc_by(r.delivered.sent.len() as u64);
                metrics
                    .statement_send_failures
                    .inc_by(r.delivered.failed.len() as u64);
                if !r.prepared.created.is_empty()
                    || !r.delivered.sent.is_empty()
                    || !r.delivered.failed.is_empty()
                {
                    tracing::info!(
                        created = r.prepared.created.len(),
                        held = r.prepared.held.len(),
                        sent = r.delivered.sent.len(),
                        failed = r.delivered.failed.len(),
                        "statement run"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "statement run failed"),
        }
        let db2 = db.clone();
        if let Ok(Ok((pending, failed, held))) = tokio::task::spawn_blocking(move || {
            let mut c = db2.conn()?;
            backlog(&mut c)
        })
        .await
        {
            metrics.statements_pending.set(pending);
            metrics.statements_failed.set(failed);
            metrics.statements_held.set(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Consecutive periods of the monthly schedule in Berlin, across both
    /// daylight-saving changes of 2026 (29 March, 25 October).
    #[test]
    fn monthly_periods_in_local_time() {
        let sch = Schedule::parse("0 0 2 1 * *").unwrap();
        let tz = chrono_tz::Europe::Berlin;
        let cases = [
            // (created, first period start, its end)
            (
                "2026-03-10T12:00:00Z",
                "2026-03-01T01:00:00Z",
                "2026-04-01T00:00:00Z",
            ),
            (
                "2026-10-01T00:00:00Z",
                "2026-10-01T00:00:00Z",
                "2026-11-01T01:00:00Z",
            ),
            (
                "2026-09-30T23:59:59Z",
                "2026-09-01T00:00:00Z",
                "2026-10-01T00:00:00Z",
            ),
        ];
        for (created, start, end) in cases {
            let s = first_start(&sch, tz, t(created));
            assert_eq!(s, t(start), "start for {created}");
            let p = period_from(&sch, tz, s).unwrap();
            assert_eq!(p.end, t(end), "end for {created}");
        }
        // Periods tile: twelve in a row, each starting where the last ended.
        let mut start = t("2026-01-01T01:00:00Z");
        for _ in 0..12 {
            let p = period_from(&sch, tz, start).unwrap();
            assert!(p.end > p.start);
            start = p.end;
        }
        assert_eq!(start, t("2027-01-01T01:00:00Z"));
    }

    /// Period lengths across daylight-saving changes, table-driven: a local
    /// month, week or day keeps its local boundaries, so its length in
    /// hours changes with the clocks.
    #[test]
    fn period_lengths_across_daylight_saving_changes() {
        let cases = [
            // (schedule, zone, period start (UTC), its end (UTC), hours)
            (
                "0 0 2 1 * *",
                "Europe/Berlin",
                "2026-03-01T01:00:00Z",
                "2026-04-01T00:00:00Z",
                31 * 24 - 1,
            ),
            (
                "0 0 2 1 * *",
                "Europe/Berlin",
                "2026-10-01T00:00:00Z",
                "2026-11-01T01:00:00Z",
                31 * 24 + 1,
            ),
            (
                "0 0 2 1 * *",
                "Europe/Berlin",
                "2026-02-01T01:00:00Z",
                "2026-03-01T01:00:00Z",
                28 * 24,
            ),
            (
                "0 0 0 1 * *",
                "America/New_York",
                "2026-03-01T05:00:00Z",
                "2026-04-01T04:00:00Z",
                31 * 24 - 1,
            ),
            (
                "0 0 0 1 * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                "2026-12-01T05:00:00Z",
                30 * 24 + 1,
            ),
            // Weekly on Mondays at 06:00: the week of 29 March is an hour short.
            (
                "0 0 6 * * Mon",
                "Europe/Berlin",
                "2026-03-23T05:00:00Z",
                "2026-03-30T04:00:00Z",
                7 * 24 - 1,
            ),
            // Daily at midnight: 29 March has 23 hours, 25 October 25.
            (
                "0 0 0 * * *",
                "Europe/Berlin",
                "2026-03-28T23:00:00Z",
                "2026-03-29T22:00:00Z",
                23,
            ),
            (
                "0 0 0 * * *",
                "Europe/Berlin",
                "2026-10-24T22:00:00Z",
                "2026-10-25T23:00:00Z",
                25,
            ),
            // A zone without daylight saving.
            (
                "0 0 2 1 * *",
                "Asia/Tokyo",
                "2026-02-28T17:00:00Z",
                "2026-03-31T17:00:00Z",
                31 * 24,
            ),
        ];
        for (expr, zone, start, end, hours) in cases {
            let sch = Schedule::parse(expr).unwrap();
            let tz: Tz = zone.parse().unwrap();
            // The start is a fire time: the period of any instant inside
            // starts there.
            let mid = t(start) + Duration::hours(5);
            assert_eq!(first_start(&sch, tz, mid), t(start), "{expr} {zone}");
            let p = period_from(&sch, tz, t(start)).unwrap();
            assert_eq!(p.end, t(end), "{expr} {zone} from {start}");
            assert_eq!(
                (p.end - p.start).num_hours(),
                hours,
                "{expr} {zone} from {start}"
            );
        }
        // A local time that happens twice (02:30 on 25 October in Berlin)
        // still gives periods that tile, each longer than zero.
        let sch = Schedule::parse("0 30 2 * * *").unwrap();
        let tz = chrono_tz::Europe::Berlin;
        let mut start = t("2026-10-23T00:30:00Z");
        for _ in 0..5 {
            let p = period_from(&sch, tz, start).unwrap();
            assert!(p.end > p.start);
            start = p.end;
        }
        assert!(start >= t("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let s = config::StatementsSection {
            retry_first_secs: 60,
            retry_max_secs: 3600,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let secs: Vec<u64> = (0..8).map(|a| backoff(&s, a).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(&s, 1000).as_secs(), 3600);
    }
}

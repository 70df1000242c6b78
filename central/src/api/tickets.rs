//! `POST /v1/tickets`: a provider submits the tickets of calls it carried,
//! each with the payer's usage receipt (if any) and its own receipt.
//!
//! The body is one submission object or a JSON array of at most
//! [`MAX_BATCH`]; every submission is verified again
//! ([`crate::ledger`]) and stored, or refused with a reason, on its own; an
//! array's signatures are batch-verified and its rows stored in one
//! transaction. Only providers submit (their client certificate names
//! them), and only tickets addressed to themselves.

use super::auth::Caller;
use super::rates::body_or_problem;
use super::{blocking, AppState};
use crate::db::ledger::{self, StoreOutcome, TicketSummary};
use crate::ledger::{new_ticket, PostedSubmission};
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use provider_sdk::ticket::{SettlementStatus, Submission, TicketError};
use rust_decimal::Decimal;
use serde::Serialize;
use std::time::Instant;

/// Most submissions in one array.
pub const MAX_BATCH: usize = 1000;

/// Reason codes of refusals that are not about a token.
pub mod reasons {
    /// The body is not a JSON object or array (or an empty array).
    pub const INVALID_BODY: &str = "invalid-body";
    /// A submission object lacks a field, has an unknown one or a non-string.
    pub const INVALID_SUBMISSION: &str = "invalid-submission";
    /// More than `MAX_BATCH` submissions in one array.
    pub const BATCH_TOO_LARGE: &str = "batch-too-large";
    /// Another submission is stored for the same ticket id.
    pub const CONFLICT: &str = "conflict";
}

/// The answer for one stored (or already stored) ticket.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub ticket_id: String,
    pub status: SettlementStatus,
    pub amount: Decimal,
    pub currency: String,
    pub duplicate: bool,
}

impl Accepted {
    fn of(s: TicketSummary, duplicate: bool) -> Accepted {
        Accepted {
            ticket_id: s.ticket_id,
            status: s.status,
            amount: s.amount.normalize(),
            currency: s.currency,
            duplicate,
        }
    }
}

/// Why one submission was not stored.
#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub status: u16,
    pub reason: &'static str,
    pub detail: String,
}

impl ItemError {
    fn refused(e: &TicketError) -> ItemError {
        let status = match e {
            TicketError::WrongAudience { .. } => StatusCode::FORBIDDEN,
            TicketError::CertificateUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ItemError {
            status: status.as_u16(),
            reason: e.code(),
            detail: format!("ticket refused: {e}; nothing was stored"),
        }
    }

    fn invalid(why: String) -> ItemError {
        ItemError {
            status: StatusCode::BAD_REQUEST.as_u16(),
            reason: reasons::INVALID_SUBMISSION,
            detail: format!("invalid submission: {why}"),
        }
    }

    fn conflict(ticket_id: &str) -> ItemError {
        ItemError {
            status: StatusCode::CONFLICT.as_u16(),
            reason: reasons::CONFLICT,
            detail: format!(
                "ticket {ticket_id} is already stored from another submission; nothing was changed"
            ),
        }
    }

    fn into_problem(self) -> Problem {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        Problem::new(status, self.detail).with_reason(self.reason)
    }
}

type ItemResult = Result<Accepted, ItemError>;

/// One line of an array's answer.
#[derive(Debug, Serialize)]
pub struct BatchItem {
    pub index: usize,
    #[serde(flatten)]
    pub result: BatchResult,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchResult {
    Accepted(Accepted),
    Error { error: ItemError },
}

#[derive(Debug, Serialize)]
pub struct BatchAnswer {
    pub results: Vec<BatchItem>,
}

/// A body: one submission or an array of them, each parsed on its own.
enum Posted {
    One(PostedSubmission),
    Many(Vec<Result<PostedSubmission, String>>),
}

fn parse(body: &[u8]) -> Result<Posted, Problem> {
    let invalid_body =
        |detail: String| Problem::bad_request(detail).with_reason(reasons::INVALID_BODY);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<PostedSubmission>(body)
            .map(Posted::One)
            .map_err(|e| {
                let why = format!("invalid submission: {e}");
                if e.is_data() {
                    Problem::bad_request(why).with_reason(reasons::INVALID_SUBMISSION)
                } else {
                    invalid_body(why)
                }
            }),
        Some(b'[') => {
            let items: Vec<serde_json::Value> = serde_json::from_slice(body)
                .map_err(|e| invalid_body(format!("invalid JSON: {e}")))?;
            if items.is_empty() {
                return Err(invalid_body("empty array: nothing to submit".into()));
            }
            if items.len() > MAX_BATCH {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "{} submissions in one request; at most {MAX_BATCH}",
                        items.len()
                    ),
                )
                .with_reason(reasons::BATCH_TOO_LARGE));
            }
            Ok(Posted::Many(
                items
                    .into_iter()
                    .map(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
                    .collect(),
            ))
        }
        _ => Err(invalid_body(
            "expected a JSON submission object or an array of them".into(),
        )),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (provider_id, key_id) = match caller {
        Caller::Provider { id, key_id } => (id, key_id),
        Caller::Operator { .. } => {
            return Err(Problem::forbidden(
                "only providers submit tickets (with their own client certificate)",
            ))
        }
        Caller::Anonymous => {
            return Err(Problem::forbidden(
                "submitting tickets needs the provider's client certificate issued by central",
            ))
        }
    };
    let submitter = u64::try_from(provider_id).map_err(|_| Problem::internal())?;
    let body = body_or_problem(body)?;
    let work_state = state.clone();
    let (single, results) = blocking(move || {
        let posted = parse(&body)?;
        let (single, items) = match posted {
            Posted::One(s) => (true, vec![Ok(s)]),
            Posted::Many(items) => (false, items),
        };
        let results = process(&work_state, &items, submitter, &key_id)?;
        Ok((single, results))
    })
    .await
    .inspect_err(|p| {
        if p.reason.is_some() {
            state.metrics.ledger("refused", p.reason);
        }
    })?;
    if single {
        return match results.into_iter().next() {
            Some(Ok(a)) => {
                let status = if a.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                Ok((status, Json(a)).into_response())
            }
            Some(Err(e)) => Err(e.into_problem()),
            None => Err(Problem::internal()),
        };
    }
    let results = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| BatchItem {
            index,
            result: match r {
                Ok(a) => BatchResult::Accepted(a),
                Err(error) => BatchResult::Error { error },
            },
        })
        .collect();
    Ok(Json(BatchAnswer { results }).into_response())
}

/// Verifies and stores the submissions; one result each, in order.
fn process(
    state: &AppState,
    items: &[Result<PostedSubmission, String>],
    submitter: u64,
    key_id: &str,
) -> Result<Vec<ItemResult>, Problem> {
    let now = chrono::Utc::now();
    let mut results: Vec<Option<ItemResult>> = Vec::with_capacity(items.len());
    let mut valid: Vec<(usize, &PostedSubmission)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(p) => {
                valid.push((i, p));
                results.push(None);
            }
            Err(why) => results.push(Some(Err(ItemError::invalid(why.clone())))),
        }
    }
    let submissions: Vec<Submission<'_>> = valid.iter().map(|(_, p)| p.as_submission()).collect();
    let started = Instant::now();
    let verified = match submissions.as_slice() {
        [one] => vec![state.ledger.verify_submission(one, submitter, now)],
        many => state.ledger.verify_batch(many, submitter, now),
    };
    state
        .metrics
        .ledger_verify_seconds
        .observe(started.elapsed().as_secs_f64());

    let mut rows = Vec::with_capacity(valid.len());
    let mut row_index = Vec::with_capacity(valid.len());
    for ((i, posted), v) in valid.iter().zip(verified) {
        match v.and_then(|s| new_ticket(&s, posted, key_id, now)) {
            Ok(row) => {
                rows.push(row);
                row_index.push(*i);
            }
            Err(e) => results[*i] = Some(Err(ItemError::refused(&e))),
        }
    }
    if !rows.is_empty() {
        let mut conn = state.db.conn()?;
        let stored = ledger::store_tickets(&mut conn, &rows)?;
        for (i, outcome) in row_index.into_iter().zip(stored) {
            results[i] = Some(match outcome {
                StoreOutcome::Inserted(s) => Ok(Accepted::of(s, false)),
                StoreOutcome::Duplicate(s) => Ok(Accepted::of(s, true)),
                StoreOutcome::Conflict { ticket_id } => Err(ItemError::conflict(&ticket_id)),
            });
        }
    }
    let results: Vec<ItemResult> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ItemError::invalid("not processed".into()))))
        .collect();
    // One line per ticket: the ticket id is what follows a call from the
    // payer's forwarder through the provider's gateway to here.
    for r in &results {
        match r {
            Ok(a) if a.duplicate => {
                tracing::info!(ticket = %a.ticket_id, submitter, "ticket already in the ledger");
                state.metrics.ledger("duplicate", None)
            }
            Ok(a) => {
                tracing::info!(ticket = %a.ticket_id, submitter, status = a.status.as_str(), amount = %a.amount, "ticket settled");
                state.metrics.ledger(a.status.as_str(), None)
            }
            Err(e) if e.reason == reasons::CONFLICT => {
                tracing::warn!(submitter, detail = %e.detail, "ticket conflicts with the stored one");
                state.metrics.ledger("conflict", None)
            }
            Err(e) => {
                tracing::warn!(submitter, reason = e.reason, detail = %e.detail, "ticket refused");
                state.metrics.ledger("refused", Some(e.reason))
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert!(matches!(
            parse(br#" {"ticket":"a","provider_receipt":"b"}"#),
            Ok(Posted::One(_))
        ));
        let many = parse(br#"[{"ticket":"a","provider_receipt":"b"},{"ticket":1}]"#);
        let Ok(Posted::Many(items)) = many else {
            panic!("array not parsed")
        };
        assert!(items[0].is_ok() && items[1].is_err());
        for (bad, reason) in [
            (&b""[..], reasons::INVALID_BODY),
            (b"null", reasons::INVALID_BODY),
            (b"[]", reasons::INVALID_BODY),
            (b"{\"ticket\": ", reasons::INVALID_BODY),
            (b"{\"ticket\": \"a\"}", reasons::INVALID_SUBMISSION),
            (
                b"{\"ticket\":\"a\",\"provider_receipt\":\"b\",\"x\":1}",
                reasons::INVALID_SUBMISSION,
            ),
        ] {
            let Err(p) = parse(bad) else {
                panic!("{bad:?} accepted")
            };
            assert_eq!(p.reason, Some(reason), "{:?}", String::from_utf8_lossy(bad));
        }
        let big = format!(
            "[{}]",
            vec![r#"{"ticket":"a","provider_receipt":"b"}"#; MAX_BATCH + 1].join(",")
        );
        let Err(p) = parse(big.as_bytes()) else {
            panic!("oversized batch accepted")
        };
        assert_eq!(p.status, 413);
    }
}

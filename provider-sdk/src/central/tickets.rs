//! `POST /v1/tickets`: the carrying provider hands central what it has for
//! each call (the payer's ticket, the payer's receipt when it came, and its
//! own countersigned receipt) for the settlement ledger.
//!
//! One object answers `201` (recorded) or `200` (`duplicate`: central had
//! exactly this already); an array of up to [`MAX_SUBMISSION_BATCH`]
//! answers `200` with one result per item, each recorded or refused with
//! its own status and reason. A refusal (`403` ticket for another provider,
//! `409` same ticket id with other content, `422` with a `reason` code) is
//! final; `408`, `429` and `5xx` are worth retrying
//! ([`Refusal::is_permanent`]). [`SubmissionQueue`](super::SubmissionQueue)
//! does the retrying durably.

use std::fmt;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::client::CentralClient;
use super::error::{status_is_transient, CentralError};
use crate::money::Currency;
use crate::ticket::{jws, TicketError, PPT_RECEIPT, PPT_TICKET};

/// Most submissions central takes in one request.
pub const MAX_SUBMISSION_BATCH: usize = 1000;

/// What a provider sends central for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The payer's ticket (compact JWS), as received on the INVITE.
    pub ticket: String,
    /// The payer's usage receipt, when the payer sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// The provider's own receipt (its countersignature, or its own
    /// account of the call when the payer sent none).
    pub provider_receipt: String,
}

#[derive(Deserialize)]
struct TicketId {
    jti: Uuid,
}

#[derive(Deserialize)]
struct ReceiptTicketId {
    tid: Uuid,
}

impl Submission {
    /// The ticket's id (`jti`), read without checking any signature.
    pub fn ticket_id(&self) -> Result<Uuid, TicketError> {
        let decoded = jws::decode(&self.ticket, PPT_TICKET)?;
        let claims: TicketId =
            serde_json::from_slice(&decoded.payload).map_err(|e| TicketError::InvalidJson {
                part: crate::ticket::Part::Payload,
                detail: e.to_string(),
            })?;
        Ok(claims.jti)
    }

    /// Checks the shape (signatures are central's business): the ticket and
    /// the receipts decode as what they claim to be and the receipts name
    /// the ticket. Returns the ticket id.
    pub fn check(&self) -> Result<Uuid, TicketError> {
        let id = self.ticket_id()?;
        let receipts = std::iter::once(&self.provider_receipt).chain(self.receipt.as_ref());
        for receipt in receipts {
            let decoded = jws::decode(receipt, PPT_RECEIPT)?;
            let claims: ReceiptTicketId =
                serde_json::from_slice(&decoded.payload).map_err(|e| TicketError::InvalidJson {
                    part: crate::ticket::Part::Payload,
                    detail: e.to_string(),
                })?;
            if claims.tid != id {
                return Err(TicketError::ReceiptTicketMismatch(format!(
                    "a receipt names ticket {}, the ticket is {id}",
                    claims.tid
                )));
            }
        }
        Ok(id)
    }
}

/// How the ledger classed a recorded ticket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LedgerStatus {
    /// Payer's and provider's receipts agree.
    Agreed,
    /// Both receipts are there and differ.
    Disputed,
    /// Only the provider's receipt.
    ProviderOnly,
    /// A status this client does not know yet (a newer central).
    Other(String),
}

impl<'de> Deserialize<'de> for LedgerStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "agreed" => LedgerStatus::Agreed,
            "disputed" => LedgerStatus::Disputed,
            "provider_only" => LedgerStatus::ProviderOnly,
            _ => LedgerStatus::Other(s),
        })
    }
}

/// A submission central has in its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Recorded {
    pub ticket_id: Uuid,
    pub status: LedgerStatus,
    /// What the call costs the payer (single submissions).
    #[serde(default)]
    pub amount: Option<Decimal>,
    #[serde(default)]
    pub currency: Option<Currency>,
    /// Central already had exactly this submission.
    #[serde(default)]
    pub duplicate: bool,
}

/// A submission central did not record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// HTTP status (`403`, `409`, `422`, ... or `5xx`).
    pub status: u16,
    /// Central's refusal code.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub detail: String,
}

impl Refusal {
    /// Final: sending the same again will be refused again (any 4xx but
    /// 408 and 429).
    pub fn is_permanent(&self) -> bool {
        !status_is_transient(self.status)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(r) = &self.reason {
            write!(f, " {r}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Central's answer for one submission of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmissionOutcome {
    Recorded(Recorded),
    Refused(Refusal),
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    index: usize,
    #[serde(default)]
    error: Option<Refusal>,
    #[serde(flatten)]
    recorded: Option<serde_json::Value>,
}

impl CentralClient {
    /// Submits up to [`MAX_SUBMISSION_BATCH`] submissions in one request
    /// (array form; needs the provider's certificate) and returns one
    /// outcome per submission, in their order. An error means central
    /// answered for none of them (unreachable, or the request as a whole
    /// was refused).
    pub async fn submit_tickets(
        &self,
        submissions: &[Submission],
    ) -> Result<Vec<SubmissionOutcome>, CentralError> {
        self.require_provider("submitting tickets")?;
        if submissions.is_empty() {
            return Ok(Vec::new());
        }
        if submissions.len() > MAX_SUBMISSION_BATCH {
            return Err(CentralError::InvalidRequest(format!(
                "{} submissions in one request; at most {MAX_SUBMISSION_BATCH}",
                submissions.len()
            )));
        }
        let body = serde_json::to_vec(submissions)
            .map_err(|e| CentralError::InvalidRequest(e.to_string()))?;
        let answer = self
            .send(Method::POST, "/v1/tickets", self.timeouts().request, |r| {
                r.header(CONTENT_TYPE, "application/json").body(body)
            })
            .await?;
        let parsed: BatchAnswer = answer.json(&[StatusCode::OK])?;
        let mut outcomes: Vec<Option<SubmissionOutcome>> = vec![None; submissions.len()];
        for result in parsed.results {
            let slot = outcomes
                .get_mut(result.index)
                .ok_or_else(|| answer.bad(format!("result for index {}", result.index)))?;
            if slot.is_some() {
                return Err(answer.bad(format!("two results for index {}", result.index)));
            }
            let outcome = match (result.error, result.recorded) {
                (Some(refusal), _) => SubmissionOutcome::Refused(refusal),
                (None, Some(fields)) => {
                    let recorded: Recorded = serde_json::from_value(fields)
                        .map_err(|e| answer.bad(format!("result {}: {e}", result.index)))?;
                    if let Ok(id) = submissions[result.index].ticket_id() {
                        if id != recorded.ticket_id {
                            return Err(answer.bad(format!(
                                "result {} names ticket {}, the submission is {id}",
                                result.index, recorded.ticket_id
                            )));
                        }
                    }
                    SubmissionOutcome::Recorded(recorded)
                }
                (None, None) => return Err(answer.bad(format!("empty result {}", result.index))),
            };
            *slot = Some(outcome);
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| answer.bad(format!("no result for index {i}"))))
            .collect()
    }

    /// Submits one submission (object form). A refusal is
    /// [`CentralError::Status`] with central's `reason` in the problem.
    pub async fn submit_ticket(&self, submission: &Submission) -> Result<Recorded, CentralError> {
        self.require_provider("submitting tickets")?;
        let body = serde_json::to_vec(submission)
            .map_err(|e| CentralError::InvalidRequest(e.to_string()))?;
        let answer = self
            .send(Method::POST, "/v1/tickets", self.timeouts().request, |r| {
                r.header(CONTENT_TYPE, "application/json").body(body)
            })
            .await?;
        answer.json(&[StatusCode::CREATED, StatusCode::OK])
    }
}

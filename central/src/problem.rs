//! RFC 9457 problem+json errors: every failed request answers with one.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One bad line or field of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

/// An error answer: status, short title, human detail, and for uploads the
/// list of every bad line.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// A short stable token naming why (ledger refusals: the ticket error code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            reason: None,
            errors: Vec::new(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }
    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
    /// 422 with every bad line of an upload.
    pub fn invalid_upload(detail: impl Into<String>, errors: Vec<FieldError>) -> Problem {
        Problem {
            errors,
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
        }
    }
    pub fn with_reason(mut self, reason: &'static str) -> Problem {
        self.reason = Some(reason);
        self
    }
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = errors;
        self
    }
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

impl From<crate::db::store::StoreError> for Problem {
    fn from(e: crate::db::store::StoreError) -> Problem {
        use crate::db::store::StoreError;
        match e {
            StoreError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            StoreError::Conflict(m) => Problem::conflict(m),
            StoreError::Db(e) => {
                tracing::error!(error = %e, "storage failure");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
        }
    }
}

impl From<crate::db::DbError> for Problem {
    fn from(e: crate::db::DbError) -> Problem {
        Problem::from(crate::db::store::StoreError::Db(e))
    }
}

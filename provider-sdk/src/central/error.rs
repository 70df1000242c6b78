//! What can go wrong talking to central, and central's problem+json answers.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::pki::PkiError;
use crate::ticket::TicketError;

/// An RFC 9457 problem document as central sends it with every error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// The HTTP status of the answer.
    #[serde(default)]
    pub status: u16,
    /// `type` (usually `about:blank`).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Short summary (the status's reason phrase).
    #[serde(default)]
    pub title: String,
    /// What went wrong, for people.
    #[serde(default)]
    pub detail: String,
    /// Machine-readable refusal code (ticket submissions).
    #[serde(default)]
    pub reason: Option<String>,
    /// Every bad line of a refused rate-deck upload.
    #[serde(default)]
    pub errors: Vec<ProblemLine>,
}

/// One bad line (or field) of a refused upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProblemLine {
    /// 1-based CSV line, or JSON array index + 1.
    pub line: usize,
    #[serde(default)]
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for ProblemLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, {c}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        for line in &self.errors {
            write!(f, "; {line}")?;
        }
        Ok(())
    }
}

impl Problem {
    /// A problem for an error answer that carried no problem document
    /// (a proxy's HTML page, an empty body): the status and the start of
    /// the body.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Problem {
        if let Ok(mut p) = serde_json::from_slice::<Problem>(body) {
            // The HTTP status is authoritative; a document may omit or misstate it.
            p.status = status;
            if p.title.is_empty() {
                p.title = reason_phrase(status).to_owned();
            }
            return p;
        }
        let text: String = String::from_utf8_lossy(body)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Problem {
            status,
            kind: String::new(),
            title: reason_phrase(status).to_owned(),
            detail: text,
            reason: None,
            errors: Vec::new(),
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Every way a call to central (or enrolling with it) can fail.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    /// The configured URL is not an `https://host:port` base URL.
    #[error("invalid central URL {url:?}: {detail}")]
    InvalidUrl { url: String, detail: String },
    /// No TCP connection (refused, no route, DNS), or it broke mid-request.
    #[error("central at {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// No complete answer within the configured time.
    #[error("central at {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The TLS handshake failed: central's certificate is not from the
    /// pinned root, or central refused ours.
    #[error("TLS with central at {url} failed: {detail}")]
    Tls { url: String, detail: String },
    /// Central answered with an error status (and its problem document).
    #[error("{method} {path}: central answered {problem}")]
    Status {
        method: &'static str,
        path: String,
        problem: Box<Problem>,
    },
    /// Central answered something this client cannot read.
    #[error("bad answer from central to {path}: {detail}")]
    BadAnswer { path: String, detail: String },
    /// The operation needs a provider's client certificate and this client
    /// has none (or another role's).
    #[error("{0}")]
    Credential(String),
    /// The request itself is not acceptable (checked before sending).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A key, certificate or TLS configuration problem.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A token could not be decoded.
    #[error("token: {0}")]
    Token(#[from] TicketError),
    /// Reading or writing a key, certificate or root file.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Neither a usable certificate nor an enrollment token.
    #[error("not enrolled with central: {0}")]
    NotEnrolled(String),
}

impl CentralError {
    /// The HTTP status central answered with, for [`CentralError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            CentralError::Status { problem, .. } => Some(problem.status),
            _ => None,
        }
    }

    /// Central's problem document, for [`CentralError::Status`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            CentralError::Status { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: central unreachable, slow,
    /// overloaded (408, 429, 5xx), or a TLS failure (central restarted with
    /// a new certificate, a clock off). Refusals (other 4xx) and local
    /// errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            CentralError::Unreachable { .. }
            | CentralError::Timeout { .. }
            | CentralError::Tls { .. }
            | CentralError::BadAnswer { .. } => true,
            CentralError::Status { problem, .. } => status_is_transient(problem.status),
            _ => false,
        }
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        CentralError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// 408, 429 and 5xx: worth retrying. Everything else is an answer.
pub(crate) fn status_is_transient(status: u16) -> bool {
    status == 408 || status == 429 || !(400..500).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_and_other_bodies() {
        let body = br#"{"type":"about:blank","title":"Bad Request","status":400,
            "detail":"rate deck rejected: 2 error(s); nothing was stored",
            "errors":[{"line":2,"column":"rate_per_minute","message":"price is negative"},
                      {"line":3,"message":"too few fields"}]}"#;
        let p = Problem::from_answer(400, body);
        assert_eq!(p.errors.len(), 2);
        let shown = p.to_string();
        assert!(
            shown.contains("line 2, rate_per_minute: price is negative"),
            "{shown}"
        );
        assert!(shown.contains("line 3: too few fields"), "{shown}");

        let p = Problem::from_answer(502, b"<html>\n<b>Bad gateway</b></html>");
        assert_eq!(p.status, 502);
        assert_eq!(p.title, "Bad Gateway");
        assert!(p.detail.contains("Bad gateway"));
        assert!(!p.detail.contains('\n'));
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 415, 422] {
            assert!(!status_is_transient(s), "{s}");
        }
    }
}

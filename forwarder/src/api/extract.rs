//! Request extractors whose every rejection is a clear problem+json answer:
//! JSON bodies ([`JsonBody`]: 415 wrong content type, 413 too large, 400
//! malformed, 422 well-formed but invalid, unknown fields included), path
//! parameters ([`SubscriberId`], [`PathParams`]) and query strings
//! ([`QueryParams`]).

use super::AppState;
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// A JSON request body deserialised into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body larger than {} bytes",
                        state.config.max_body_bytes
                    ),
                )
            } else {
                Problem::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with errors that say where and what.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Problem::unprocessable(format!("invalid request: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::bad_request(format!("malformed JSON: {e}"))
            }
        }
    })
}

/// The path parameters by name.
pub struct PathParams(pub HashMap<String, String>);

impl FromRequestParts<AppState> for PathParams {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Path(map) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::bad_request(format!("bad path: {e}")))?;
        Ok(PathParams(map))
    }
}

impl PathParams {
    pub fn get(&self, name: &str) -> Result<&str, Problem> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Problem::bad_request(format!("missing path parameter {name}")))
    }
}

/// The `{id}` of `/v1/subscribers/{id}/…`: a positive integer.
pub struct SubscriberId(pub i64);

impl FromRequestParts<AppState> for SubscriberId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let params = PathParams::from_request_parts(parts, state).await?;
        let raw = params.get("id")?;
        parse_id(raw).map(SubscriberId)
    }
}

/// A subscriber id with a clear 400.
pub fn parse_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        Problem::bad_request(format!(
            "subscriber id must be a positive integer, got {:?}",
            raw.chars().take(40).collect::<String>()
        ))
    })
}

/// A query string deserialised into `T`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Problem> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| Problem::bad_request(format!("bad query string: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert_eq!(parse_json::<T>(b"{").unwrap_err().status, 400);
        assert_eq!(parse_json::<T>(b"{\"a\": -1}").unwrap_err().status, 422);
        let p = parse_json::<T>(b"{\"a\": 1, \"b\": 2}").unwrap_err();
        assert_eq!(p.status, 422);
        assert!(p.detail.contains("unknown field"), "{}", p.detail);
        assert_eq!(parse_id("0").unwrap_err().status, 400);
        assert_eq!(parse_id("12").unwrap(), 12);
    }
}

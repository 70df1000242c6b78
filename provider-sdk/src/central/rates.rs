//! Publishing the provider's own rate deck: a full replacement (`PUT`, CSV
//! or JSON) or a delta (`PATCH`, JSON). Central validates every line first
//! and stores nothing when any is bad; every bad line comes back in the
//! error's [`Problem::errors`](super::Problem::errors).

use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::CentralClient;
use super::error::CentralError;
use crate::ratedeck::{RateDeck, RateDelta};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub enum RateUpload<'a> {
    /// A CSV deck (the format of [`RateDeck::parse_csv`]), replacing the
    /// whole deck. Sent as written: central reports bad lines by their
    /// line number in this text.
    Csv(&'a str),
    /// A validated deck, replacing the whole deck (sent as JSON).
    Deck(&'a RateDeck),
    /// Upserts and deletes applied to the current deck, atomically.
    Delta(&'a RateDelta),
}

/// Whether an accepted upload replaced the deck or changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadKind {
    Full,
    Delta,
}

/// An accepted upload: the provider's new rate version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RateVersion {
    pub provider_id: u64,
    /// Increases by one with every accepted upload; route answers and
    /// tickets name it.
    pub version: u64,
    pub uploaded_at: DateTime<Utc>,
    pub kind: UploadKind,
    /// Lines in the upload.
    pub line_count: u64,
}

impl CentralClient {
    /// Publishes this provider's rates (needs the provider's certificate)
    /// and returns the new version. Central answers only after storing;
    /// route answers follow within moments (the index is rebuilt off the
    /// request path). Uses the [`upload`](super::Timeouts::upload) timeout.
    pub async fn publish_rates(&self, upload: RateUpload<'_>) -> Result<RateVersion, CentralError> {
        let id = self.require_provider("publishing rates")?;
        let path = format!("/v1/providers/{id}/rates");
        let (method, content_type, body) = match upload {
            RateUpload::Csv(text) => (Method::PUT, "text/csv", text.as_bytes().to_vec()),
            RateUpload::Deck(deck) => (Method::PUT, "application/json", to_json(deck)?),
            RateUpload::Delta(delta) => (Method::PATCH, "application/json", to_json(delta)?),
        };
        let answer = self
            .send(method, &path, self.timeouts().upload, |r| {
                r.header(CONTENT_TYPE, content_type).body(body)
            })
            .await?;
        let version: RateVersion = answer.json(&[StatusCode::OK])?;
        if version.provider_id != id {
            return Err(answer.bad(format!(
                "accepted for provider {} instead of {id}",
                version.provider_id
            )));
        }
        Ok(version)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CentralError> {
    serde_json::to_vec(value).map_err(|e| CentralError::InvalidRequest(e.to_string()))
}

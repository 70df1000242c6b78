//! Credentials on record: subscribers' bearer tokens (only their SHA-256 is
//! stored) and the operator certificates the forwarder's CA issued.
//!
//! A subscriber token is `fwd_` followed by 43 characters of URL-safe
//! base64 (32 random bytes). Issuing a new one revokes the subscriber's
//! earlier tokens, so a leaked token is replaced by issuing another.

use super::{lock_subscriber, StoreError};
use crate::db::schema::{operator_certificates as oc, subscriber_tokens as st};
use crate::db::{to_micros, DbConnection};
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

/// What every subscriber token starts with (tells it apart in logs and
/// secret scanners).
pub const TOKEN_PREFIX: &str = "fwd_";

/// SHA-256 of a token, hex: what is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Issues a token for the subscriber, revoking its earlier ones. The token
/// is returned once and never stored.
pub fn issue_subscriber_token(
    conn: &mut DbConnection,
    subscriber_id: i64,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let token = new_token();
    let hash = token_hash(&token);
    conn.transaction(|conn| {
        lock_subscriber(conn, subscriber_id)?;
        diesel::update(
            st::table
                .filter(st::subscriber_id.eq(subscriber_id))
                .filter(st::revoked_at.is_null()),
        )
        .set(st::revoked_at.eq(Some(to_micros(now))))
        .execute(conn)?;
        diesel::insert_into(st::table)
            .values((
                st::token_hash.eq(&hash),
                st::subscriber_id.eq(subscriber_id),
                st::created_at.eq(to_micros(now)),
            ))
            .execute(conn)?;
        Ok::<(), StoreError>(())
    })?;
    Ok(token)
}

/// The subscriber a presented token belongs to (`None`: unknown or revoked).
pub fn subscriber_for_token(
    conn: &mut DbConnection,
    token: &str,
) -> Result<Option<i64>, StoreError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Ok(None);
    }
    Ok(st::table
        .find(token_hash(token))
        .filter(st::revoked_at.is_null())
        .select(st::subscriber_id)
        .get_result(conn)
        .optional()?)
}

/// Revokes every token of the subscriber; returns how many were active.
pub fn revoke_subscriber_tokens(
    conn: &mut DbConnection,
    subscriber_id: i64,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        st::table
            .filter(st::subscriber_id.eq(subscriber_id))
            .filter(st::revoked_at.is_null()),
    )
    .set(st::revoked_at.eq(Some(to_micros(now))))
    .execute(conn)?)
}

/// An operator certificate on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCertificate {
    pub key_id: String,
    pub serial: String,
    pub subject_cn: String,
    pub cert_pem: String,
    pub not_after: DateTime<Utc>,
}

/// Records an operator certificate the CA issued.
pub fn record_operator_certificate(
    conn: &mut DbConnection,
    cert: &OperatorCertificate,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::insert_into(oc::table)
        .values((
            oc::key_id.eq(&cert.key_id),
            oc::serial.eq(&cert.serial),
            oc::subject_cn.eq(&cert.subject_cn),
            oc::cert_pem.eq(&cert.cert_pem),
            oc::not_after.eq(to_micros(cert.not_after)),
            oc::created_at.eq(to_micros(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Whether an operator key is on record and not revoked.
pub fn operator_key_active(conn: &mut DbConnection, key_id: &str) -> Result<bool, StoreError> {
    let revoked: Option<Option<i64>> = oc::table
        .find(key_id)
        .select(oc::revoked_at)
        .get_result(conn)
        .optional()?;
    Ok(matches!(revoked, Some(None)))
}

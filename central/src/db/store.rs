//! Every query central runs, written once for both backends.
//!
//! Functions take a `&mut DbConnection` (from [`super::Database::conn`]) and
//! are blocking. Writes that must be all-or-nothing run in one transaction
//! here, so callers cannot forget it.

use super::money::StoredMoney;
use super::schema::{certificates, providers, rate_entries, rate_versions};
use super::{from_micros, to_micros, DbConnection, DbError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Rows per multi-row INSERT: 8 bound values each stays well below the bind
/// limits of SQLite (32,766) and PostgreSQL (65,535).
const INSERT_BATCH: usize = 2_000;

/// Outcomes a caller must tell apart from storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        StoreError::Db(DbError::Query(e))
    }
}

/// SIP transport of a provider address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Where a provider accepts calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipAddress {
    /// `host:port` or `[v6]:port` (or a SIP URI); validated by the API layer.
    pub address: String,
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderStatus {
    Active,
    Suspended,
}

impl ProviderStatus {
    fn as_str(self) -> &'static str {
        match self {
            ProviderStatus::Active => "active",
            ProviderStatus::Suspended => "suspended",
        }
    }
    fn parse(s: &str) -> Result<Self, DbError> {
        match s {
            "active" => Ok(ProviderStatus::Active),
            "suspended" => Ok(ProviderStatus::Suspended),
            other => Err(DbError::Corrupt(format!("provider status {other:?}"))),
        }
    }
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    pub id: i64,
    pub name: String,
    pub sip_addresses: Vec<SipAddress>,
    pub currency: String,
    pub contact: String,
    pub status: ProviderStatus,
    /// Version of the current rate deck (0: none uploaded yet).
    pub rate_version: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable)]
struct ProviderRow {
    id: i64,
    name: String,
    sip_addresses: String,
    currency: String,
    contact: String,
    status: String,
    _enrollment_token_hash: Option<String>,
    rate_version: i64,
    created_at: i64,
}

impl TryFrom<ProviderRow> for Provider {
    type Error = DbError;
    fn try_from(r: ProviderRow) -> Result<Self, DbError> {
        Ok(Provider {
            id: r.id,
            sip_addresses: serde_json::from_str(&r.sip_addresses).map_err(|e| {
                DbError::Corrupt(format!("sip_addresses of provider {}: {e}", r.id))
            })?,
            name: r.name,
            currency: r.currency,
            contact: r.contact,
            status: ProviderStatus::parse(&r.status)?,
            rate_version: r.rate_version,
            created_at: time_of(r.created_at)?,
        })
    }
}

fn time_of(us: i64) -> Result<DateTime<Utc>, DbError> {
    from_micros(us).ok_or_else(|| DbError::Corrupt(format!("timestamp {us}")))
}

fn is_unique_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// What the operator supplies to register a provider.
#[derive(Debug, Clone)]
pub struct NewProvider {
    pub name: String,
    pub sip_addresses: Vec<SipAddress>,
    pub currency: String,
    pub contact: String,
}

/// Registers a provider with the hash of its one-time enrollment token.
pub fn insert_provider(
    conn: &mut DbConnection,
    new: &NewProvider,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Provider, StoreError> {
    let addresses = serde_json::to_string(&new.sip_addresses)
        .map_err(|e| DbError::Corrupt(format!("sip_addresses: {e}")))?;
    conn.transaction(|conn| {
        let inserted = diesel::insert_into(providers::table)
            .values((
                providers::name.eq(&new.name),
                providers::sip_addresses.eq(&addresses),
                providers::currency.eq(&new.currency),
                providers::contact.eq(&new.contact),
                providers::status.eq(ProviderStatus::Active.as_str()),
                providers::enrollment_token_hash.eq(Some(token_hash)),
                providers::rate_version.eq(0i64),
                providers::created_at.eq(to_micros(now)),
            ))
            .execute(conn);
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "a provider named {:?} already exists",
                    new.name
                )))
            }
            other => other?,
        };
        let row: ProviderRow = providers::table
            .filter(providers::name.eq(&new.name))
            .first(conn)?;
        Ok(Provider::try_from(row)?)
    })
}

pub fn list_providers(conn: &mut DbConnection) -> Result<Vec<Provider>, StoreError> {
    let rows: Vec<ProviderRow> = providers::table.order(providers::id).load(conn)?;
    Ok(rows
        .into_iter()
        .map(Provider::try_from)
        .collect::<Result<_, _>>()?)
}

pub fn get_provider(conn: &mut DbConnection, id: i64) -> Result<Provider, StoreError> {
    let row: Option<ProviderRow> = providers::table.find(id).first(conn).optional()?;
    match row {
        Some(r) => Ok(Provider::try_from(r)?),
        None => Err(StoreError::NotFound("provider")),
    }
}

pub fn set_provider_status(
    conn: &mut DbConnection,
    id: i64,
    status: ProviderStatus,
) -> Result<Provider, StoreError> {
    let n = diesel::update(providers::table.find(id))
        .set(providers::status.eq(status.as_str()))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("provider"));
    }
    get_provider(conn, id)
}

/// Who a certificate belongs to, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "provider_id", rename_all = "lowercase")]
pub enum CertOwner {
    Operator,
    Provider(i64),
    Server,
}

/// A certificate central issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub key_id: String,
    pub serial: String,
    pub owner: CertOwner,
    pub subject_cn: String,
    pub cert_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
struct CertRow {
    key_id: String,
    serial: String,
    role: String,
    provider_id: Option<i64>,
    subject_cn: String,
    cert_pem: String,
    not_before: i64,
    not_after: i64,
    revoked_at: Option<i64>,
    _created_at: i64,
}

impl TryFrom<CertRow> for StoredCertificate {
    type Error = DbError;
    fn try_from(r: CertRow) -> Result<Self, DbError> {
        let owner = match (r.role.as_str(), r.provider_id) {
            ("operator", None) => CertOwner::Operator,
            ("server", None) => CertOwner::Server,
            ("provider", Some(id)) => CertOwner::Provider(id),
            (role, p) => {
                return Err(DbError::Corrupt(format!(
                    "certificate {} role {role:?} provider {p:?}",
                    r.key_id
                )))
            }
        };
        Ok(StoredCertificate {
            owner,
            not_before: time_of(r.not_before)?,
            not_after: time_of(r.not_after)?,
            revoked_at: r.revoked_at.map(time_of).transpose()?,
            key_id: r.key_id,
            serial: r.serial,
            subject_cn: r.subject_cn,
            cert_pem: r.cert_pem,
        })
    }
}

pub fn insert_certificate(
    conn: &mut DbConnection,
    cert: &StoredCertificate,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (role, provider_id) = match cert.owner {
        CertOwner::Operator => ("operator", None),
        CertOwner::Server => ("server", None),
        CertOwner::Provider(id) => ("provider", Some(id)),
    };
    let result = diesel::insert_into(certificates::table)
        .values((
            certificates::key_id.eq(&cert.key_id),
            certificates::serial.eq(&cert.serial),
            certificates::role.eq(role),
            certificates::provider_id.eq(provider_id),
            certificates::subject_cn.eq(&cert.subject_cn),
            certificates::cert_pem.eq(&cert.cert_pem),
            certificates::not_before.eq(to_micros(cert.not_before)),
            certificates::not_after.eq(to_micros(cert.not_after)),
            certificates::revoked_at.eq(cert.revoked_at.map(to_micros)),
            certificates::created_at.eq(to_micros(now)),
        ))
        .execute(conn);
    match result {
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "a certificate for key {} already exists",
            cert.key_id
        ))),
        other => {
            other?;
            Ok(())
        }
    }
}

pub fn get_certificate(
    conn: &mut DbConnection,
    key_id: &str,
) -> Result<StoredCertificate, StoreError> {
    let row: Option<CertRow> = certificates::table.find(key_id).first(conn).optional()?;
    match row {
        Some(r) => Ok(StoredCertificate::try_from(r)?),
        None => Err(StoreError::NotFound("certificate")),
    }
}

/// Marks a certificate revoked (idempotent: the first revocation time stays).
pub fn revoke_certificate(
    conn: &mut DbConnection,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<StoredCertificate, StoreError> {
    conn.transaction(|conn| {
        let cert = get_certificate(conn, key_id)?;
        if cert.revoked_at.is_none() {
            diesel::update(certificates::table.find(key_id))
                .set(certificates::revoked_at.eq(Some(to_micros(now))))
                .execute(conn)?;
        }
        get_certificate(conn, key_id)
    })
}

/// Consumes a one-time enrollment token inside the caller's transaction and
/// returns the provider it belongs to; `None` when no provider holds it.
pub fn take_enrollment_token(
    conn: &mut DbConnection,
    token_hash: &str,
) -> Result<Option<Provider>, StoreError> {
    let row: Option<ProviderRow> = providers::table
        .filter(providers::enrollment_token_hash.eq(token_hash))
        .first(conn)
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let n = diesel::update(
        providers::table
            .find(row.id)
            .filter(providers::enrollment_token_hash.eq(token_hash)),
    )
    .set(providers::enrollment_token_hash.eq(None::<String>))
    .execute(conn)?;
    if n != 1 {
        return Ok(None);
    }
    Ok(Some(Provider::try_from(row)?))
}

/// One stored rate line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRow {
    pub prefix: String,
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    pub first_increment: u32,
    pub next_increment: u32,
    pub effective_from: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

type RateTuple = (
    i64,
    String,
    StoredMoney,
    StoredMoney,
    i32,
    i32,
    Option<i64>,
    Option<String>,
);

fn rate_of(t: RateTuple) -> Result<(i64, RateRow), DbError> {
    let (provider_id, prefix, rate, fee, first, next, from, description) = t;
    let incr =
        |v: i32| u32::try_from(v).map_err(|_| DbError::Corrupt(format!("billing increment {v}")));
    Ok((
        provider_id,
        RateRow {
            rate_per_minute: rate.0,
            connect_fee: fee.0,
            first_increment: incr(first)?,
            next_increment: incr(next)?,
            effective_from: from.map(time_of).transpose()?,
            description,
            prefix,
        },
    ))
}

fn insert_rates(
    conn: &mut DbConnection,
    provider_id: i64,
    rows: &[RateRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_BATCH) {
        let values: Vec<_> = chunk
            .iter()
            .map(|r| {
                Ok((
                    rate_entries::provider_id.eq(provider_id),
                    rate_entries::prefix.eq(r.prefix.as_str()),
                    rate_entries::rate_per_minute.eq(StoredMoney(r.rate_per_minute)),
                    rate_entries::connect_fee.eq(StoredMoney(r.connect_fee)),
                    rate_entries::first_increment.eq(increment(r.first_increment)?),
                    rate_entries::next_increment.eq(increment(r.next_increment)?),
                    rate_entries::effective_from.eq(r.effective_from.map(to_micros)),
                    rate_entries::description.eq(r.description.as_deref()),
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        // Multi-row INSERT is backend-specific in diesel (MultiBackend has no
        // batch form), so the same statement is issued on the inner connection.
        match conn {
            DbConnection::Sqlite(c) => diesel::insert_into(rate_entries::table)
                .values(values)
                .execute(c)?,
            DbConnection::Postgres(c) => diesel::insert_into(rate_entries::table)
                .values(values)
                .execute(c)?,
        };
    }
    Ok(())
}

fn increment(v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Conflict(format!("billing increment {v} too large")))
}

/// Kind of an accepted upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadKind {
    Full,
    Delta,
}

impl UploadKind {
    fn as_str(self) -> &'static str {
        match self {
            UploadKind::Full => "full",
            UploadKind::Delta => "delta",
        }
    }
}

/// A recorded rate upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateVersion {
    pub version: i64,
    pub uploaded_at: DateTime<Utc>,
    pub kind: UploadKind,
    pub line_count: i64,
}

fn record_version(
    conn: &mut DbConnection,
    provider_id: i64,
    kind: UploadKind,
    line_count: usize,
    now: DateTime<Utc>,
) -> Result<RateVersion, StoreError> {
    let current: Option<i64> = providers::table
        .find(provider_id)
        .select(providers::rate_version)
        .first(conn)
        .optional()?;
    let Some(current) = current else {
        return Err(StoreError::NotFound("provider"));
    };
    let version = current + 1;
    let line_count = i64::try_from(line_count).unwrap_or(i64::MAX);
    diesel::update(providers::table.find(provider_id))
        .set(providers::rate_version.eq(version))
        .execute(conn)?;
    diesel::insert_into(rate_versions::table)
        .values((
            rate_versions::provider_id.eq(provider_id),
            rate_versions::version.eq(version),
            rate_versions::uploaded_at.eq(to_micros(now)),
            rate_versions::kind.eq(kind.as_str()),
            rate_versions::line_count.eq(line_count),
        ))
        .execute(conn)?;
    Ok(RateVersion {
        version,
        uploaded_at: now,
        kind,
        line_count,
    })
}

/// Replaces a provider's whole deck in one transaction and records a new
/// rate version.
pub fn replace_rates(
    conn: &mut DbConnection,
    provider_id: i64,
    rows: &[RateRow],
    now: DateTime<Utc>,
) -> Result<RateVersion, StoreError> {
    conn.transaction(|conn| {
        // Bump the version first: it locks the provider row (PostgreSQL), so
        // concurrent uploads for one provider serialise.
        let version = record_version(conn, provider_id, UploadKind::Full, rows.len(), now)?;
        diesel::delete(rate_entries::table.filter(rate_entries::provider_id.eq(provider_id)))
            .execute(conn)?;
        insert_rates(conn, provider_id, rows)?;
        Ok(version)
    })
}

/// Applies a delta in one transaction: each upsert replaces the line with the
/// same (prefix, effective_from); each delete removes every line of that
/// prefix (deleting an absent prefix is not an error).
pub fn apply_delta(
    conn: &mut DbConnection,
    provider_id: i64,
    upserts: &[RateRow],
    deletes: &[String],
    now: DateTime<Utc>,
) -> Result<RateVersion, StoreError> {
    conn.transaction(|conn| {
        let version = record_version(
            conn,
            provider_id,
            UploadKind::Delta,
            upserts.len() + deletes.len(),
            now,
        )?;
        for prefix in deletes {
            diesel::delete(
                rate_entries::table
                    .filter(rate_entries::provider_id.eq(provider_id))
                    .filter(rate_entries::prefix.eq(prefix)),
            )
            .execute(conn)?;
        }
        for r in upserts {
            let same = rate_entries::table
                .filter(rate_entries::provider_id.eq(provider_id))
                .filter(rate_entries::prefix.eq(&r.prefix));
            match r.effective_from {
                Some(t) => {
                    diesel::delete(same.filter(rate_entries::effective_from.eq(to_micros(t))))
                        .execute(conn)?
                }
                None => diesel::delete(same.filter(rate_entries::effective_from.is_null()))
                    .execute(conn)?,
            };
        }
        insert_rates(conn, provider_id, upserts)?;
        Ok(version)
    })
}

/// A provider's stored deck, ordered by prefix then effective_from.
pub fn provider_rates(
    conn: &mut DbConnection,
    provider_id: i64,
) -> Result<Vec<RateRow>, StoreError> {
    let rows: Vec<RateTuple> = rate_entries::table
        .filter(rate_entries::provider_id.eq(provider_id))
        .select(rate_tuple())
        .order((
            rate_entries::prefix,
            rate_entries::effective_from,
            rate_entries::id,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|t| rate_of(t).map(|(_, r)| r))
        .collect::<Result<_, _>>()?)
}

fn rate_tuple() -> (
    rate_entries::provider_id,
    rate_entries::prefix,
    rate_entries::rate_per_minute,
    rate_entries::connect_fee,
    rate_entries::first_increment,
    rate_entries::next_increment,
    rate_entries::effective_from,
    rate_entries::description,
) {
    (
        rate_entries::provider_id,
        rate_entries::prefix,
        rate_entries::rate_per_minute,
        rate_entries::connect_fee,
        rate_entries::first_increment,
        rate_entries::next_increment,
        rate_entries::effective_from,
        rate_entries::description,
    )
}

pub fn rate_versions(
    conn: &mut DbConnection,
    provider_id: i64,
) -> Result<Vec<RateVersion>, StoreError> {
    let rows: Vec<(i64, i64, String, i64)> = rate_versions::table
        .filter(rate_versions::provider_id.eq(provider_id))
        .select((
            rate_versions::version,
            rate_versions::uploaded_at,
            rate_versions::kind,
            rate_versions::line_count,
        ))
        .order(rate_versions::version)
        .load(conn)?;
    rows.into_iter()
        .map(|(version, at, kind, line_count)| {
            let kind = match kind.as_str() {
                "full" => UploadKind::Full,
                "delta" => UploadKind::Delta,
                k => return Err(DbError::Corrupt(format!("upload kind {k:?}")).into()),
            };
            Ok(RateVersion {
                version,
                uploaded_at: time_of(at)?,
                kind,
                line_count,
            })
        })
        .collect()
}

/// Everything the route index is built from: every active provider with its
/// stored lines.
pub fn active_decks(conn: &mut DbConnection) -> Result<Vec<(Provider, Vec<RateRow>)>, StoreError> {
    conn.transaction(|conn| {
        // One snapshot for both reads, so providers (and their rate
        // versions) and rate lines agree: PostgreSQL's default READ
        // COMMITTED would give each statement its own. A SQLite read
        // transaction is a single snapshot already.
        if let DbConnection::Postgres(c) = conn {
            use diesel::connection::SimpleConnection;
            c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        let active: Vec<Provider> = list_providers(conn)?
            .into_iter()
            .filter(|p| p.status == ProviderStatus::Active)
            .collect();
        let rows: Vec<RateTuple> = rate_entries::table
            .inner_join(providers::table)
            .filter(providers::status.eq(ProviderStatus::Active.as_str()))
            .select(rate_tuple())
            .order(rate_entries::provider_id)
            .load(conn)?;
        let mut by_provider: std::collections::HashMap<i64, Vec<RateRow>> =
            std::collections::HashMap::new();
        for t in rows {
            let (pid, row) = rate_of(t)?;
            by_provider.entry(pid).or_default().push(row);
        }
        Ok(active
            .into_iter()
            .map(|p| {
                let rows = by_provider.remove(&p.id).unwrap_or_default();
                (p, rows)
            })
            .collect())
    })
}

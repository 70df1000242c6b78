//! `/v1/subscribers…`: adding, reading and changing subscribers (operator),
//! reading one's own (subscriber).

use super::auth::Caller;
use super::extract::{JsonBody, SubscriberId};
use super::{with_db, AppState};
use crate::problem::Problem;
use crate::store::{credentials, subscribers};
use crate::subscriber::{NewSubscriber, Subscriber, SubscriberPatch, SubscriberStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct SubscriberList {
    pub subscribers: Vec<Subscriber>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SubscriberList>, Problem> {
    caller.require_operator()?;
    let subscribers = with_db(&state, |conn| Ok(subscribers::list(conn)?)).await?;
    Ok(Json(SubscriberList { subscribers }))
}

pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewSubscriber>,
) -> Result<(StatusCode, Json<Subscriber>), Problem> {
    caller.require_operator()?;
    new.validate()
        .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let s = with_db(&state, move |conn| {
        Ok(subscribers::add(conn, &new, chrono::Utc::now())?)
    })
    .await?;
    tracing::info!(subscriber = s.id, "subscriber added");
    Ok((StatusCode::CREATED, Json(s)))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<Subscriber>, Problem> {
    caller.require_access(id)?;
    let s = with_db(&state, move |conn| Ok(subscribers::get(conn, id)?)).await?;
    Ok(Json(s))
}

pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    JsonBody(patch): JsonBody<SubscriberPatch>,
) -> Result<Json<Subscriber>, Problem> {
    caller.require_operator()?;
    patch
        .validate()
        .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let s = with_db(&state, move |conn| {
        Ok(subscribers::update(conn, id, &patch, chrono::Utc::now())?)
    })
    .await?;
    Ok(Json(s))
}

async fn set_status(
    state: AppState,
    caller: Caller,
    id: i64,
    status: SubscriberStatus,
) -> Result<Json<Subscriber>, Problem> {
    caller.require_operator()?;
    let s = with_db(&state, move |conn| {
        Ok(subscribers::set_status(
            conn,
            id,
            status,
            chrono::Utc::now(),
        )?)
    })
    .await?;
    tracing::info!(
        subscriber = id,
        status = status.as_str(),
        "subscriber status set"
    );
    Ok(Json(s))
}

pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<Subscriber>, Problem> {
    set_status(state, caller, id, SubscriberStatus::Suspended).await
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<Subscriber>, Problem> {
    set_status(state, caller, id, SubscriberStatus::Active).await
}

pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<Subscriber>, Problem> {
    set_status(state, caller, id, SubscriberStatus::Closed).await
}

#[derive(Serialize)]
pub struct IssuedToken {
    pub subscriber_id: i64,
    /// Shown once; only its hash is stored. Earlier tokens are revoked.
    pub token: String,
}

pub async fn token(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    caller.require_operator()?;
    let token = with_db(&state, move |conn| {
        Ok(credentials::issue_subscriber_token(
            conn,
            id,
            chrono::Utc::now(),
        )?)
    })
    .await?;
    tracing::info!(subscriber = id, "subscriber token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            subscriber_id: id,
            token,
        }),
    ))
}

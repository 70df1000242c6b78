//! A subscriber's numbers.

use super::auth::Caller;
use super::extract::{JsonBody, PathParams, SubscriberId};
use super::{with_db, AppState};
use crate::problem::Problem;
use crate::store::numbers::{self, NumberEntry};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use provider_sdk::number::E164;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct NumberList {
    pub numbers: Vec<NumberEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNumber {
    pub number: E164,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<NumberList>, Problem> {
    caller.require_access(id)?;
    let numbers = with_db(&state, move |conn| {
        crate::store::subscribers::get(conn, id)?;
        Ok(numbers::of_subscriber(conn, id)?)
    })
    .await?;
    Ok(Json(NumberList { numbers }))
}

pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    JsonBody(body): JsonBody<AddNumber>,
) -> Result<(StatusCode, Json<NumberEntry>), Problem> {
    caller.require_operator()?;
    let entry = with_db(&state, move |conn| {
        Ok(numbers::add(conn, id, &body.number, chrono::Utc::now())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<NumberEntry>, Problem> {
    caller.require_operator()?;
    let raw = params.get("number")?;
    let number =
        E164::parse(raw).map_err(|e| Problem::bad_request(format!("number {raw:?}: {e}")))?;
    let entry = with_db(&state, move |conn| Ok(numbers::remove(conn, &number)?)).await?;
    Ok(Json(entry))
}

//! A subscriber's forwarding rules: read and replace (operator, or the
//! subscriber itself).

use super::auth::Caller;
use super::extract::{JsonBody, SubscriberId};
use super::{with_db, AppState};
use crate::problem::Problem;
use crate::rules::{validate, RuleSet};
use crate::store::rules;
use axum::extract::State;
use axum::Json;

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<RuleSet>, Problem> {
    caller.require_access(id)?;
    let rules = with_db(&state, move |conn| Ok(rules::get(conn, id)?)).await?;
    Ok(Json(RuleSet { rules }))
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    JsonBody(set): JsonBody<RuleSet>,
) -> Result<Json<RuleSet>, Problem> {
    caller.require_access(id)?;
    validate(&set.rules).map_err(|e| Problem::unprocessable(e.to_string()))?;
    let rules = with_db(&state, move |conn| {
        Ok(rules::replace(conn, id, &set.rules, chrono::Utc::now())?)
    })
    .await?;
    Ok(Json(RuleSet { rules }))
}

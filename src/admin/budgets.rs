//! `/admin/budgets`: each budget with its spend in the current period (metering).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::keys::json_response;
use super::{respond, Admin};
use crate::error::{ErrorKind, GatewayError};
use crate::metering::{Account, BudgetStatus, Period};

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/admin/budgets", get(list))
        .route("/admin/budgets/{account}", get(show))
}

/// `GET /admin/budgets` (`?key_id=` or `?team=` narrow it to one account).
async fn list(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(unknown) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "key_id" | "team"))
    {
        return respond(
            GatewayError::invalid_request(format!(
                "Unknown parameter `{unknown}`; expected key_id or team."
            ))
            .with_param(unknown.clone()),
        );
    }
    let wanted = |account: &Account| match account {
        Account::Key(id) => {
            !params.contains_key("team") && params.get("key_id").is_none_or(|k| k == id)
        }
        Account::Team(team) => {
            !params.contains_key("key_id") && params.get("team").is_none_or(|t| t == team)
        }
    };
    match statuses(&admin, &headers).await {
        Ok(all) => {
            let data: Vec<Value> = all
                .iter()
                .filter(|s| wanted(&s.account))
                .map(budget_json)
                .collect();
            json_response(StatusCode::OK, json!({ "object": "list", "data": data }))
        }
        Err(res) => res,
    }
}

/// `GET /admin/budgets/{key_id or team}`: that account's budget, or 404.
async fn show(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let all = match statuses(&admin, &headers).await {
        Ok(all) => all,
        Err(res) => return res,
    };
    let account = match admin.account(&name).await {
        Ok(account) => account,
        Err(res) => return res,
    };
    match all.iter().find(|s| s.account == account) {
        Some(status) => json_response(StatusCode::OK, budget_json(status)),
        None => respond(GatewayError::new(
            ErrorKind::NotFound,
            format!("{account} has no budget."),
        )),
    }
}

/// Every budget, after the viewer-or-admin check. A key's budget lives on the key and
/// reaches the accounts on the key's first request; registering the keys' budgets here
/// (what that request would do) lists a key that has not been used yet too, with the
/// spend the ledger holds for its period.
async fn statuses(admin: &Admin, headers: &HeaderMap) -> Result<Vec<BudgetStatus>, Response> {
    admin.authorize(headers, false).await?;
    let Some((accounts, _)) = admin.accounts.clone() else {
        return Err(respond(GatewayError::new(
            ErrorKind::NotFound,
            "This gateway does not serve this route: budgets need Admin::with_balances.",
        )));
    };
    let keys = admin.keys.list().await.map_err(|err| {
        tracing::warn!(error = %err, "admin: key store failed");
        respond(GatewayError::new(
            ErrorKind::Internal,
            "The key store could not be read; see the gateway's log.",
        ))
    })?;
    for key in keys.iter().filter(|k| k.revoked_at.is_none()) {
        if let Some(budget) = key.budget.as_ref().and_then(crate::metering::key_budget) {
            accounts.set_budget(Account::Key(key.id.clone()), budget);
        }
    }
    accounts.budgets().await.map_err(|err| {
        tracing::warn!(error = %err, "admin: reading budget spend failed");
        respond(GatewayError::new(
            ErrorKind::Internal,
            "The shared budget store could not be read; see the gateway's log.",
        ))
    })
}

fn budget_json(status: &BudgetStatus) -> Value {
    let (scope, id_field, id) = match &status.account {
        Account::Key(id) => ("key", "key_id", id),
        Account::Team(team) => ("team", "team", team),
    };
    let period = match status.budget.period {
        Period::Daily => "daily",
        Period::Weekly => "weekly",
        Period::Monthly => "monthly",
        _ => "total",
    };
    let secs = |ms: Option<i64>| ms.map(|ms| ms.div_euclid(1000));
    let mut out = json!({
        "scope": scope,
        "limit": status.budget.limit,
        "period": period,
        "spent": status.spent,
        "remaining": status.remaining(),
        "soft_threshold_percent": status.budget.soft_threshold_percent,
        "period_start": secs(status.period_start),
        "resets_at": secs(status.resets_ms),
        "exhausted": status.spent >= status.budget.limit,
    });
    out[id_field] = json!(id);
    out
}

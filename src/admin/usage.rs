//! `/admin/usage` and `/admin/balances` routes (metering).

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::keys::json_response;
use super::{respond, Admin};
use crate::error::{ErrorKind, GatewayError};
use crate::metering::{Account, GroupBy, Money, RecentQuery, UsageQuery};

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/admin/usage", get(usage))
        .route("/admin/requests", get(requests))
        .route("/admin/balances/{account}", post(credit).get(balance))
}

const USAGE_PARAMS: &[&str] = &["key_id", "team", "model", "from", "to", "group_by"];
const REQUESTS_PARAMS: &[&str] = &["key_id", "team", "model", "from", "to", "limit", "before"];
/// Records per page of `GET /admin/requests` unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 50;

async fn usage(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (source, query) = match reader(&admin, &headers, parse_usage_query(&params)).await {
        Ok(ready) => ready,
        Err(res) => return res,
    };
    match source.usage(&query).await {
        Ok(rows) => json_response(StatusCode::OK, json!({ "object": "list", "data": rows })),
        Err(err) => {
            tracing::warn!(error = %err, "admin: usage query failed");
            respond(GatewayError::new(
                ErrorKind::Internal,
                "The usage ledger could not be queried; see the gateway's log.",
            ))
        }
    }
}

/// `GET /admin/requests`: individual records, newest first, a page at a time. The
/// answer's `next` is the `before` cursor of the next page (null on the last one).
async fn requests(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (source, query) = match reader(&admin, &headers, parse_recent_query(&params)).await {
        Ok(ready) => ready,
        Err(res) => return res,
    };
    match source.recent(&query).await {
        Ok(records) => {
            let next = (records.len() == query.limit as usize)
                .then(|| records.last().map(|r| format!("{}:{}", r.time_ms, r.id)))
                .flatten();
            json_response(
                StatusCode::OK,
                json!({ "object": "list", "data": records, "next": next }),
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, "admin: request list failed");
            respond(GatewayError::new(
                ErrorKind::Internal,
                "The usage ledger could not be read; see the gateway's log.",
            ))
        }
    }
}

/// What a ledger read needs: a reader's key, a ledger, and a valid query.
async fn reader<Q>(
    admin: &Admin,
    headers: &HeaderMap,
    query: Result<Q, GatewayError>,
) -> Result<(std::sync::Arc<dyn crate::metering::UsageSource>, Q), Response> {
    admin.authorize(headers, false).await?;
    let source = admin.usage.clone().ok_or_else(|| {
        respond(not_configured(
            "usage and request lists need a ledger (Admin::with_usage)",
        ))
    })?;
    Ok((source, query.map_err(respond)?))
}

fn parse_recent_query(params: &HashMap<String, String>) -> Result<RecentQuery, GatewayError> {
    check_params(params, REQUESTS_PARAMS)?;
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=RecentQuery::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                GatewayError::invalid_request(format!(
                    "`limit` must be a whole number from 1 to {}.",
                    RecentQuery::MAX_LIMIT
                ))
                .with_param("limit")
            })?,
    };
    let mut query = RecentQuery::new(parse_filters(params)?, limit);
    if let Some(cursor) = params.get("before") {
        let (time, id) = cursor
            .split_once(':')
            .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id)))
            .ok_or_else(|| {
                GatewayError::invalid_request(
                    "`before` must be the `next` value of the previous page.",
                )
                .with_param("before")
            })?;
        query = query.before(time, id);
    }
    Ok(query)
}

fn check_params(params: &HashMap<String, String>, known: &[&str]) -> Result<(), GatewayError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(GatewayError::invalid_request(format!(
            "Unknown query parameter `{unknown}`; use {}.",
            known.join(", ")
        ))
        .with_param(unknown.clone())),
        None => Ok(()),
    }
}

fn parse_usage_query(params: &HashMap<String, String>) -> Result<UsageQuery, GatewayError> {
    check_params(params, USAGE_PARAMS)?;
    let query = parse_filters(params)?;
    let group_by = match params.get("group_by").map(String::as_str) {
        None | Some("") => GroupBy::None,
        Some("hour") => GroupBy::Hour,
        Some("day") => GroupBy::Day,
        Some("model") => GroupBy::Model,
        Some("key") => GroupBy::Key,
        Some("team") => GroupBy::Team,
        Some(other) => {
            return Err(GatewayError::invalid_request(format!(
                "`group_by` is `{other}`; use hour, day, model, key or team."
            ))
            .with_param("group_by"))
        }
    };
    Ok(query.group_by(group_by))
}

/// The filters `/admin/usage` and `/admin/requests` share.
fn parse_filters(params: &HashMap<String, String>) -> Result<UsageQuery, GatewayError> {
    let mut query = UsageQuery::new();
    if let Some(key) = params.get("key_id") {
        query = query.key_id(key.clone());
    }
    if let Some(team) = params.get("team") {
        query = query.team(team.clone());
    }
    if let Some(model) = params.get("model") {
        query = query.model(model.clone());
    }
    let from = params.get("from").map(|v| time_ms("from", v)).transpose()?;
    let to = params.get("to").map(|v| time_ms("to", v)).transpose()?;
    Ok(query.between(from, to))
}

/// Unix seconds or RFC 3339, as milliseconds since the epoch.
fn time_ms(param: &'static str, value: &str) -> Result<i64, GatewayError> {
    if let Ok(secs) = value.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    super::time::parse_rfc3339(value)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            GatewayError::invalid_request(format!(
                "`{param}` must be Unix seconds or an RFC 3339 time, e.g. 2026-11-01T00:00:00Z."
            ))
            .with_param(param)
        })
}

/// `POST /admin/balances/{key_id or team}` with `{"amount": "12.50"}`.
async fn credit(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(res) = admin.authorize(&headers, true).await {
        return res;
    }
    let Some(accounts) = admin.accounts.clone() else {
        return respond(not_configured("balances need Admin::with_balances"));
    };
    let amount = match parse_amount(&body) {
        Ok(amount) => amount,
        Err(err) => return respond(err),
    };
    let account = match admin.account(&name).await {
        Ok(account) => account,
        Err(res) => return res,
    };
    let (accounts, store) = accounts;
    if let Err(err) = store.save_credit(&account, amount).await {
        tracing::warn!(error = %err, "admin: saving a credit failed");
        return respond(GatewayError::new(
            ErrorKind::Internal,
            "The credit could not be saved (nothing was changed); see the gateway's log.",
        ));
    }
    let balance = match accounts.add_credit(account.clone(), amount).await {
        Ok(balance) => balance,
        Err(err) => {
            tracing::error!(error = %err, account = %account, amount = %amount, "admin: the credit is saved in the ledger but the shared balance store failed: it is not applied yet");
            return respond(GatewayError::new(
                ErrorKind::Internal,
                "The credit was recorded in the ledger but not applied to the shared balance (its store failed); check GET /admin/balances/<account> before crediting again.",
            ));
        }
    };
    tracing::info!(account = %account, amount = %amount, balance = %balance, "admin: balance credited");
    json_response(StatusCode::OK, account_json(&account, balance))
}

/// `GET /admin/balances/{key_id or team}`: 404 for a postpaid account.
async fn balance(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(res) = admin.authorize(&headers, false).await {
        return res;
    }
    let Some(accounts) = admin.accounts.clone() else {
        return respond(not_configured("balances need Admin::with_balances"));
    };
    let account = match admin.account(&name).await {
        Ok(account) => account,
        Err(res) => return res,
    };
    match accounts.0.current_balance(&account).await {
        Err(err) => {
            tracing::warn!(error = %err, "admin: reading a balance failed");
            respond(GatewayError::new(
                ErrorKind::Internal,
                "The balance store could not be read; see the gateway's log.",
            ))
        }
        Ok(Some(balance)) => json_response(StatusCode::OK, account_json(&account, balance)),
        Ok(None) => respond(GatewayError::new(
            ErrorKind::NotFound,
            format!("{account} has no prepaid balance (it is postpaid); credit it to open one."),
        )),
    }
}

fn parse_amount(body: &[u8]) -> Result<Money, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!(
            "The body is not JSON ({e}): send {{\"amount\": \"12.50\"}}."
        ))
    })?;
    let obj = value.as_object().ok_or_else(|| {
        GatewayError::invalid_request("The body must be a JSON object: {\"amount\": \"12.50\"}.")
    })?;
    if let Some(unknown) = obj.keys().find(|k| k.as_str() != "amount") {
        return Err(GatewayError::invalid_request(format!(
            "Unknown field `{unknown}`; only `amount` is accepted."
        ))
        .with_param(unknown.clone()));
    }
    let text = obj.get("amount").and_then(Value::as_str).ok_or_else(|| {
        GatewayError::invalid_request(
            "`amount` must be a decimal string in USD, e.g. \"12.50\" (not a number).",
        )
        .with_param("amount")
    })?;
    text.parse::<Money>()
        .map_err(|e| GatewayError::invalid_request(e.to_string()).with_param("amount"))
}

fn account_json(account: &Account, balance: Money) -> Value {
    match account {
        Account::Key(id) => json!({ "key_id": id, "balance": balance }),
        Account::Team(team) => json!({ "team": team, "balance": balance }),
    }
}

fn not_configured(what: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        format!("This gateway does not serve this route: {what}."),
    )
}

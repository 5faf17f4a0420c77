//! `/admin/channels`: the routing table's channels, their health, and run-time
//! enable / disable.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::keys::json_response;
use super::{respond, Admin};
use crate::error::{ErrorKind, GatewayError};
use crate::routing::{Channel, Health};

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/admin/channels", get(list))
        .route("/admin/channels/{id}", get(show))
        .route("/admin/channels/{id}/enable", post(enable))
        .route("/admin/channels/{id}/disable", post(disable))
}

async fn list(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(res) = admin.authorize(&headers, false).await {
        return res;
    }
    let Some(current) = &admin.router else {
        return respond(not_routed());
    };
    let router = current();
    let data: Vec<Value> = router.channels().map(channel_json).collect();
    json_response(StatusCode::OK, json!({"object": "list", "data": data}))
}

async fn show(State(admin): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(res) = admin.authorize(&headers, false).await {
        return res;
    }
    with_channel(&admin, &id, |channel| {
        json_response(StatusCode::OK, channel_json(channel))
    })
}

async fn enable(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_enabled(admin, headers, id, true).await
}

async fn disable(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_enabled(admin, headers, id, false).await
}

async fn set_enabled(admin: Admin, headers: HeaderMap, id: String, enabled: bool) -> Response {
    let principal = match admin.authorize(&headers, true).await {
        Ok(principal) => principal,
        Err(res) => return res,
    };
    with_channel(&admin, &id, |channel| {
        channel.set_enabled(enabled);
        tracing::info!(channel = %id, enabled, by = %principal.key_id, "admin: channel switched");
        json_response(StatusCode::OK, channel_json(channel))
    })
}

fn with_channel(admin: &Admin, id: &str, f: impl FnOnce(&Channel) -> Response) -> Response {
    let Some(current) = &admin.router else {
        return respond(not_routed());
    };
    match current().channel(id) {
        Some(channel) => f(channel),
        None => respond(GatewayError::new(
            ErrorKind::NotFound,
            format!("No channel `{id}`; GET /admin/channels lists them."),
        )),
    }
}

/// A channel as the API shows it: never a key, only per-key counters by position.
fn channel_json(channel: &Channel) -> Value {
    let (health, circuit) = match channel.health() {
        Health::Healthy => ("healthy", "closed"),
        Health::Degraded => ("degraded", "closed"),
        Health::Down => ("down", "closed"),
        Health::CircuitOpen => ("down", "open"),
        Health::Probation => ("degraded", "half_open"),
    };
    let stats = channel.stats();
    let keys: Vec<Value> = channel
        .key_stats()
        .into_iter()
        .map(|k| {
            json!({
                "index": k.index,
                "requests": k.requests,
                "successes": k.successes,
                "failures": k.failures,
                "throttled": k.throttled,
                "prompt_tokens": k.prompt_tokens,
                "completion_tokens": k.completion_tokens,
                "latency_ms": k.latency.map(|d| d.as_secs_f64() * 1000.0),
                "cooldown_s": k.cooldown.map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    json!({
        "id": channel.id(),
        "provider": channel.provider(),
        "models": channel.models(),
        "enabled": channel.is_enabled(),
        "health": health,
        "circuit": circuit,
        "weight": channel.weight(),
        "priority": channel.priority(),
        "requests": stats.requests,
        "failures": stats.failures,
        "in_flight": stats.in_flight,
        "latency_ms": stats.latency.map(|d| d.as_secs_f64() * 1000.0),
        "success_rate": stats.success_rate,
        "keys": keys,
    })
}

fn not_routed() -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        "This gateway does not serve this route: channels need a routing table (Admin::with_channels).",
    )
}

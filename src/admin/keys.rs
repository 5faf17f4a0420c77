//! `/admin/keys` routes.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::{respond, Admin};
use crate::auth::{Budget, CreatedKey, KeyRecord, KeySpec, KeyStoreError, ModelPattern};
use crate::error::{ErrorKind, GatewayError};

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/admin/keys", post(create).get(list))
        .route("/admin/keys/{id}", get(show).delete(revoke))
        .route("/admin/keys/{id}/rotate", post(rotate))
        .route("/admin/keys/{id}/disable", post(disable))
        .route("/admin/keys/{id}/enable", post(enable))
}

const FIELDS: &[&str] = &[
    "name",
    "team",
    "role",
    "models",
    "expires_at",
    "ip_allow",
    "rpm",
    "tpm",
    "max_parallel",
    "budget",
    "metadata",
];

async fn create(State(admin): State<Admin>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(res) = admin.authorize(&headers, true).await {
        return res;
    }
    let spec = match parse_spec(&body) {
        Ok(spec) => spec,
        Err(err) => return respond(err),
    };
    match admin.keys.create(spec).await {
        Ok(created) => {
            tracing::info!(key_id = %created.record.id, team = ?created.record.team, "admin: key created");
            json_response(StatusCode::CREATED, with_secret(&created))
        }
        Err(err) => store_failed(err),
    }
}

async fn list(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(res) = admin.authorize(&headers, false).await {
        return res;
    }
    if let Some(unknown) = query.keys().find(|k| k.as_str() != "team") {
        return respond(
            GatewayError::invalid_request(format!(
                "Unknown query parameter `{unknown}`; only `team` filters keys."
            ))
            .with_param(unknown.clone()),
        );
    }
    match admin.keys.list().await {
        Ok(records) => {
            let data: Vec<Value> = records
                .iter()
                .filter(|r| {
                    query
                        .get("team")
                        .is_none_or(|t| r.team.as_deref() == Some(t.as_str()))
                })
                .map(KeyRecord::to_json)
                .collect();
            json_response(StatusCode::OK, json!({"object": "list", "data": data}))
        }
        Err(err) => store_failed(err),
    }
}

async fn show(State(admin): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(res) = admin.authorize(&headers, false).await {
        return res;
    }
    record_or_404(&id, admin.keys.get(&id).await)
}

async fn revoke(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(res) = admin.authorize(&headers, true).await {
        return res;
    }
    let result = admin.keys.revoke(&id).await;
    if matches!(result, Ok(Some(_))) {
        tracing::info!(key_id = %id, "admin: key revoked");
    }
    record_or_404(&id, result)
}

async fn disable(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_enabled(admin, headers, id, false).await
}

async fn enable(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_enabled(admin, headers, id, true).await
}

async fn set_enabled(admin: Admin, headers: HeaderMap, id: String, enabled: bool) -> Response {
    if let Err(res) = admin.authorize(&headers, true).await {
        return res;
    }
    let result = admin.keys.set_enabled(&id, enabled).await;
    if matches!(result, Ok(Some(_))) {
        tracing::info!(key_id = %id, enabled, "admin: key enabled or disabled");
    }
    record_or_404(&id, result)
}

async fn rotate(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(res) = admin.authorize(&headers, true).await {
        return res;
    }
    match admin.keys.get(&id).await {
        Ok(Some(record)) if record.revoked_at.is_some() => {
            return respond(GatewayError::invalid_request(format!(
                "The key `{id}` is revoked; create a new key instead."
            )))
        }
        Ok(_) => {}
        Err(err) => return store_failed(err),
    }
    match admin.keys.rotate(&id).await {
        Ok(Some(created)) => {
            tracing::info!(key_id = %id, "admin: key rotated");
            json_response(StatusCode::OK, with_secret(&created))
        }
        Ok(None) => not_found(&id),
        Err(err) => store_failed(err),
    }
}

fn with_secret(created: &CreatedKey) -> Value {
    let mut body = created.record.to_json();
    if let Value::Object(map) = &mut body {
        map.insert("key".into(), created.secret.expose().into());
    }
    body
}

fn record_or_404(id: &str, result: Result<Option<KeyRecord>, KeyStoreError>) -> Response {
    match result {
        Ok(Some(record)) => json_response(StatusCode::OK, record.to_json()),
        Ok(None) => not_found(id),
        Err(err) => store_failed(err),
    }
}

fn not_found(id: &str) -> Response {
    respond(GatewayError::new(
        ErrorKind::NotFound,
        format!(
            "No key with id `{}`.",
            id.chars().take(64).collect::<String>()
        ),
    ))
}

fn store_failed(err: KeyStoreError) -> Response {
    if err.is_read_only() {
        return respond(
            GatewayError::invalid_request(format!("This key cannot be changed here: {err}."))
                .with_status(StatusCode::CONFLICT)
                .with_code("read_only_key"),
        );
    }
    tracing::error!(error = %err, "admin: key store failed");
    respond(
        GatewayError::new(
            ErrorKind::Internal,
            "The key store failed; see the gateway's log.",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_code("key_store_unavailable"),
    )
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut res = Response::new(axum::body::Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// The creation body: a JSON object of [`FIELDS`]; anything else is a 400 naming the
/// field.
fn parse_spec(body: &[u8]) -> Result<KeySpec, GatewayError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            GatewayError::invalid_request(format!("The request body is not valid JSON ({e})."))
        })?
    };
    let Value::Object(fields) = body else {
        return Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    let mut spec = KeySpec::default();
    for (field, value) in fields {
        if value.is_null() && FIELDS.contains(&field.as_str()) {
            continue;
        }
        let bad = |what: &str| -> GatewayError {
            GatewayError::invalid_request(format!("`{field}` must be {what}."))
                .with_param(field.clone())
        };
        match field.as_str() {
            "name" => {
                spec.name = Some(
                    short_string(&value)
                        .ok_or_else(|| bad("a string of at most 256 characters"))?,
                )
            }
            "team" => {
                let team = short_string(&value).filter(|t| !t.is_empty());
                spec.team =
                    Some(team.ok_or_else(|| bad("a non-empty string of at most 256 characters"))?);
            }
            "role" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad("`admin`, `developer` or `viewer`"))?;
                spec.role = text.parse().map_err(|e: String| bad_msg(&field, e))?;
            }
            "models" => {
                spec.models = strings(&value)
                    .ok_or_else(|| bad("an array of model globs"))?
                    .iter()
                    .map(|m| ModelPattern::new(m).map_err(|e| bad_msg(&field, e.to_string())))
                    .collect::<Result<_, _>>()?;
            }
            "ip_allow" => {
                spec.ip_allow = strings(&value)
                    .ok_or_else(|| bad("an array of addresses or CIDR blocks"))?
                    .iter()
                    .map(|n| {
                        n.parse().map_err(|e: crate::auth::InvalidPattern| {
                            bad_msg(&field, e.to_string())
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "expires_at" => {
                let at = match &value {
                    Value::Number(n) => n.as_u64().map(|s| UNIX_EPOCH + Duration::from_secs(s)),
                    Value::String(s) => super::time::parse_rfc3339(s),
                    _ => None,
                }
                .ok_or_else(|| bad("Unix seconds or an RFC 3339 time (2030-01-01T00:00:00Z)"))?;
                if at <= SystemTime::now() {
                    return Err(bad("in the future"));
                }
                spec.expires_at = Some(at);
            }
            "rpm" => {
                spec.limits = spec.limits.rpm(
                    value
                        .as_u64()
                        .ok_or_else(|| bad("a non-negative integer"))?,
                )
            }
            "tpm" => {
                spec.limits = spec.limits.tpm(
                    value
                        .as_u64()
                        .ok_or_else(|| bad("a non-negative integer"))?,
                )
            }
            "max_parallel" => {
                let n = value.as_u64().and_then(|n| u32::try_from(n).ok());
                spec.limits = spec
                    .limits
                    .max_parallel(n.ok_or_else(|| bad("a non-negative integer"))?);
            }
            "budget" => spec.budget = Some(parse_budget(&value).map_err(|e| bad_msg(&field, e))?),
            "metadata" => {
                let Value::Object(map) = value else {
                    return Err(bad("an object"));
                };
                if Value::Object(map.clone()).to_string().len() > 16 * 1024 {
                    return Err(bad("at most 16 KiB of JSON"));
                }
                spec.metadata = map;
            }
            _ => {
                return Err(GatewayError::invalid_request(format!(
                    "Unknown field `{}`; the fields are: {}.",
                    field.chars().take(64).collect::<String>(),
                    FIELDS.join(", ")
                ))
                .with_param(field.chars().take(64).collect::<String>()))
            }
        }
    }
    Ok(spec)
}

fn bad_msg(field: &str, message: String) -> GatewayError {
    GatewayError::invalid_request(format!("`{field}`: {message}.")).with_param(field.to_owned())
}

fn short_string(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|s| s.chars().count() <= 256)
        .map(str::to_owned)
}

fn strings(value: &Value) -> Option<Vec<String>> {
    let items = value.as_array()?;
    if items.len() > 256 {
        return None;
    }
    items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn parse_budget(value: &Value) -> Result<Budget, String> {
    let Value::Object(map) = value else {
        return Err("must be an object {\"amount\": \"12.50\", \"period\": \"monthly\"}".into());
    };
    if let Some(other) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "amount" | "period"))
    {
        return Err(format!(
            "unknown field `{}` (expected amount and period)",
            other.chars().take(64).collect::<String>()
        ));
    }
    let amount = map
        .get("amount")
        .and_then(Value::as_str)
        .ok_or("`amount` must be a decimal string in USD, e.g. \"12.50\"")?;
    let period = match map.get("period") {
        None | Some(Value::Null) => crate::auth::BudgetPeriod::Monthly,
        Some(Value::String(p)) => p.parse()?,
        Some(_) => return Err("`period` must be daily, weekly, monthly or total".into()),
    };
    Budget::new(amount, period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> (String, Option<String>) {
        let e = parse_spec(body.as_bytes()).unwrap_err();
        let json = e.to_json(crate::Dialect::OpenAi);
        (
            json["error"]["message"].as_str().unwrap().to_owned(),
            json["error"]["param"].as_str().map(str::to_owned),
        )
    }

    #[test]
    fn parses_every_field() {
        let spec = parse_spec(
            br#"{"name":"n","team":"t","role":"viewer","models":["mock/*"],"expires_at":4000000000,
                "ip_allow":["10.0.0.0/8"],"rpm":60,"tpm":1000,"max_parallel":2,
                "budget":{"amount":"12.50","period":"daily"},"metadata":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(spec.team.as_deref(), Some("t"));
        assert_eq!(spec.role, crate::auth::Role::Viewer);
        assert_eq!(spec.limits.rpm, Some(60));
        assert_eq!(spec.limits.max_parallel, Some(2));
        assert_eq!(&*spec.budget.unwrap().amount, "12.50");
        assert_eq!(spec.metadata["a"], 1);
        assert!(parse_spec(b"").unwrap().models.is_empty());
        assert!(parse_spec(b"{}").is_ok());
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(err(r#"{"nmae":"x"}"#).1.as_deref(), Some("nmae"));
        assert!(err(r#"{"nmae":"x"}"#).0.contains("Unknown field `nmae`"));
        assert_eq!(err(r#"{"role":"root"}"#).1.as_deref(), Some("role"));
        assert_eq!(err(r#"{"models":"gpt-4o"}"#).1.as_deref(), Some("models"));
        assert_eq!(
            err(r#"{"ip_allow":["10.0.0.0/99"]}"#).1.as_deref(),
            Some("ip_allow")
        );
        assert_eq!(err(r#"{"rpm":-1}"#).1.as_deref(), Some("rpm"));
        assert_eq!(err(r#"{"expires_at":1}"#).1.as_deref(), Some("expires_at"));
        assert_eq!(
            err(r#"{"expires_at":"tomorrow"}"#).1.as_deref(),
            Some("expires_at")
        );
        assert_eq!(
            err(r#"{"budget":{"amount":12.5}}"#).1.as_deref(),
            Some("budget")
        );
        assert_eq!(
            err(r#"{"budget":{"amount":"1","every":"day"}}"#)
                .1
                .as_deref(),
            Some("budget")
        );
        assert_eq!(err(r#"{"metadata":[1]}"#).1.as_deref(), Some("metadata"));
        assert_eq!(err("[1]").1, None);
        assert_eq!(err("{nope").1, None);
    }
}

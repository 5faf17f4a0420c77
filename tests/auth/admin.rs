//! The admin API over its axum Router.
#![cfg(feature = "admin")]

use http::{Request, StatusCode};
use serde_json::Value;
use tollgate::admin::Admin;
use tollgate::auth::{KeyAuthenticator, KeySecret, Keys, MemoryKeyStore};
use tower::ServiceExt;

const MASTER: &str = "sk-admin-master-test-0001";

fn app() -> (axum::Router, Keys) {
    let keys = Keys::new(MemoryKeyStore::new());
    let auth = KeyAuthenticator::new(keys.clone()).master_key(&KeySecret::from_plaintext(MASTER));
    (Admin::new(auth, keys.clone()).into_router(), keys)
}

/// Sends one request to the admin router; the status and the JSON body (or null).
pub(crate) async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(axum::body::Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn create_list_get_rotate_disable_revoke() {
    let (app, keys) = app();
    let (status, created) = send(
        &app,
        "POST",
        "/admin/keys",
        Some(MASTER),
        r#"{"name":"ci","team":"search","models":["mock/*"],"rpm":5}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tg-") && key.starts_with(created["prefix"].as_str().unwrap()));
    assert!(keys.verify(&key).await.is_ok());

    let (status, list) = send(&app, "GET", "/admin/keys", Some(MASTER), "").await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(
        !text.contains(&key) && !text.contains(&key[11..]),
        "plaintext listed"
    );
    assert!(list["data"][0].get("hash").is_none() && list["data"][0].get("key").is_none());
    let (_, filtered) = send(&app, "GET", "/admin/keys?team=other", Some(MASTER), "").await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 0);
    let (status, one) = send(&app, "GET", &format!("/admin/keys/{id}"), Some(MASTER), "").await;
    assert_eq!((status, one["rpm"].as_u64()), (StatusCode::OK, Some(5)));
    assert!(one.get("key").is_none());

    let (status, rotated) = send(
        &app,
        "POST",
        &format!("/admin/keys/{id}/rotate"),
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert!(keys.verify(&key).await.is_err() && keys.verify(&new_key).await.is_ok());

    let (status, off) = send(
        &app,
        "POST",
        &format!("/admin/keys/{id}/disable"),
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(
        (status, off["status"].as_str()),
        (StatusCode::OK, Some("disabled"))
    );
    assert!(keys.verify(&new_key).await.is_err());
    send(
        &app,
        "POST",
        &format!("/admin/keys/{id}/enable"),
        Some(MASTER),
        "",
    )
    .await;
    assert!(keys.verify(&new_key).await.is_ok());

    let (status, revoked) = send(
        &app,
        "DELETE",
        &format!("/admin/keys/{id}"),
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(
        (status, revoked["status"].as_str()),
        (StatusCode::OK, Some("revoked"))
    );
    assert!(keys.verify(&new_key).await.is_err());
    let (status, _) = send(
        &app,
        "POST",
        &format!("/admin/keys/{id}/rotate"),
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = send(&app, "GET", "/admin/keys/key_nope", Some(MASTER), "").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn roles_gate_the_routes_and_errors_are_openai_json() {
    let (app, _) = app();
    let mk = |role: &'static str| {
        let app = app.clone();
        async move {
            let (_, body) = send(
                &app,
                "POST",
                "/admin/keys",
                Some(MASTER),
                &format!(r#"{{"role":"{role}"}}"#),
            )
            .await;
            body["key"].as_str().unwrap().to_owned()
        }
    };
    let (admin, viewer, dev) = (mk("admin").await, mk("viewer").await, mk("developer").await);

    assert_eq!(
        send(&app, "POST", "/admin/keys", Some(&admin), "{}")
            .await
            .0,
        201
    );
    assert_eq!(
        send(&app, "GET", "/admin/keys", Some(&viewer), "").await.0,
        200
    );
    let (status, body) = send(&app, "POST", "/admin/keys", Some(&viewer), "{}").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "permission_denied");
    assert_eq!(
        send(&app, "GET", "/admin/keys", Some(&dev), "").await.0,
        403
    );
    let (status, body) = send(&app, "GET", "/admin/keys", None, "").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(
        send(
            &app,
            "GET",
            "/admin/keys",
            Some("sk-admin-master-test-0002"),
            ""
        )
        .await
        .0,
        401
    );

    let (status, body) = send(
        &app,
        "POST",
        "/admin/keys",
        Some(MASTER),
        r#"{"name":"x","colour":"red"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "colour");
    let (status, body) = send(
        &app,
        "POST",
        "/admin/keys",
        Some(MASTER),
        r#"{"models":[1]}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("models"))
    );
    let (status, body) = send(&app, "GET", "/admin/keys?page=2", Some(MASTER), "").await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("page"))
    );
}

//! `GET /admin/config`: the running configuration, secrets masked.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, StatusCode};

use super::{respond, Admin};
use crate::config::Config;
use crate::error::{ErrorKind, GatewayError};

/// Returns the configuration in force.
pub(super) type Current = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;

pub(super) fn routes() -> Router<Admin> {
    Router::new().route("/admin/config", get(show))
}

async fn show(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    // Admin role only: the configuration names every upstream and store.
    if let Err(res) = admin.authorize(&headers, true).await {
        return res;
    }
    let Some(current) = &admin.config else {
        return respond(GatewayError::new(
            ErrorKind::NotFound,
            "This gateway does not serve its configuration.",
        ));
    };
    // `Secret` serialises as `<redacted>`: nothing here can show a credential.
    match serde_json::to_value(&*current()) {
        Ok(json) => super::keys::json_response(StatusCode::OK, json),
        Err(err) => {
            tracing::warn!(error = %err, "admin: the configuration could not be serialised");
            respond(GatewayError::new(
                ErrorKind::Internal,
                "The configuration could not be shown; see the gateway's log.",
            ))
        }
    }
}

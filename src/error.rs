//! One error type for everything the gateway refuses or fails, rendered in the
//! client's dialect.
//!
//! Layers decide *what* went wrong with a [`GatewayError`]; [`GatewayError::to_response`]
//! decides *how it looks* for the route the client called:
//!
//! | dialect | body |
//! |---|---|
//! | OpenAI | `{"error": {"message", "type", "param", "code"}}` |
//! | Anthropic | `{"type": "error", "error": {"type", "message"}}` |
//! | Gemini | `{"error": {"code", "message", "status"}}` |
//!
//! The status codes follow the providers (see [`ErrorKind`]). The error also travels in
//! the response extensions, so outer layers (failover, metering) can tell a gateway
//! refusal from an upstream answer without parsing the body.
//!
//! ```
//! use tollgate::error::GatewayError;
//! use tollgate::Dialect;
//!
//! let res = GatewayError::model_not_found("gpt-9").to_response(Dialect::OpenAi);
//! assert_eq!(res.status(), 404);
//! ```

use std::borrow::Cow;
use std::fmt;

use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::json;

use crate::{Body, Dialect};

/// What kind of failure a [`GatewayError`] is; it fixes the status code and the
/// error `type`/`code` of each dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: malformed JSON, a field of the wrong type, a missing field.
    InvalidRequest,
    /// 401: missing, unknown, expired or disabled client key.
    Authentication,
    /// 403: the key may not use this model, route or client address.
    PermissionDenied,
    /// 404: no route serves this model.
    ModelNotFound,
    /// 404: the gateway does not serve this path.
    NotFound,
    /// 413: the request body is over the configured limit.
    PayloadTooLarge,
    /// 429: a rate limit is exhausted (`retry-after` says when to come back).
    RateLimited,
    /// 429 `insufficient_quota`: a prepaid balance or a budget is exhausted.
    InsufficientQuota,
    /// 502: every upstream attempt failed, or the upstream answered garbage.
    UpstreamFailed,
    /// 503: no healthy upstream can serve the request.
    NoHealthyUpstream,
    /// 504: the upstream did not answer in time.
    Timeout,
    /// 500: a bug or an unavailable gateway dependency.
    Internal,
}

impl ErrorKind {
    /// The HTTP status code for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::ModelNotFound | ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited | ErrorKind::InsufficientQuota => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ErrorKind::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::ModelNotFound
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::InsufficientQuota => "insufficient_quota",
            ErrorKind::UpstreamFailed => "upstream_error",
            ErrorKind::NoHealthyUpstream => "service_unavailable",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Internal => "server_error",
        }
    }

    /// OpenAI's `error.code`.
    fn openai_code(self) -> Option<&'static str> {
        match self {
            ErrorKind::InvalidRequest => None,
            ErrorKind::Authentication => Some("invalid_api_key"),
            ErrorKind::PermissionDenied => Some("permission_denied"),
            ErrorKind::ModelNotFound => Some("model_not_found"),
            ErrorKind::NotFound => Some("not_found"),
            ErrorKind::PayloadTooLarge => Some("request_too_large"),
            ErrorKind::RateLimited => Some("rate_limit_exceeded"),
            ErrorKind::InsufficientQuota => Some("insufficient_quota"),
            ErrorKind::UpstreamFailed => Some("upstream_error"),
            ErrorKind::NoHealthyUpstream => Some("no_healthy_upstream"),
            ErrorKind::Timeout => Some("upstream_timeout"),
            ErrorKind::Internal => Some("internal_error"),
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::ModelNotFound | ErrorKind::NotFound => "not_found_error",
            ErrorKind::PayloadTooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::InsufficientQuota => "billing_error",
            ErrorKind::UpstreamFailed | ErrorKind::Internal => "api_error",
            ErrorKind::NoHealthyUpstream => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
        }
    }

    /// Gemini's `error.status` (Google RPC code names).
    fn gemini_status(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::PayloadTooLarge => "INVALID_ARGUMENT",
            ErrorKind::Authentication => "UNAUTHENTICATED",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::ModelNotFound | ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::RateLimited | ErrorKind::InsufficientQuota => "RESOURCE_EXHAUSTED",
            ErrorKind::UpstreamFailed | ErrorKind::NoHealthyUpstream => "UNAVAILABLE",
            ErrorKind::Timeout => "DEADLINE_EXCEEDED",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

/// A refusal or failure of the gateway, rendered in the client's dialect.
///
/// Build one with a constructor named after the situation
/// ([`invalid_request`](GatewayError::invalid_request),
/// [`model_not_found`](GatewayError::model_not_found), ...), refine it with the builder
/// methods, and turn it into a response with [`to_response`](GatewayError::to_response).
/// The message is shown to the client: it must say what to do and must never contain
/// a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    param: Option<Cow<'static, str>>,
    status: Option<StatusCode>,
    error_type: Option<Cow<'static, str>>,
    code: Option<Cow<'static, str>>,
    retry_after: Option<u64>,
}

impl GatewayError {
    /// An error of this kind with a message for the client.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            param: None,
            status: None,
            error_type: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// 404 `model_not_found`, naming the model.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::ModelNotFound,
            format!(
                "The model `{model}` does not exist or is not served by this gateway; \
                 list the available models with GET /v1/models."
            ),
        )
        .with_param("model")
    }

    /// 413: the body is over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!("The request body is larger than the gateway's limit of {limit} bytes."),
        )
    }

    /// 502: the upstream failed.
    pub fn upstream(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::UpstreamFailed, message)
    }

    /// 504: the upstream did not answer in time.
    pub fn timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// Names the request field at fault (OpenAI's `param`).
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Overrides the status code (used to pass on an upstream's own 4xx).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Overrides the error `type` shown in the OpenAI and Anthropic dialects.
    pub fn with_type(mut self, error_type: impl Into<Cow<'static, str>>) -> Self {
        self.error_type = Some(error_type.into());
        self
    }

    /// Overrides OpenAI's `code`.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds a `retry-after` header (seconds) to the response.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status code of the response.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.kind.status())
    }

    /// The JSON error body in `dialect`.
    pub fn to_json(&self, dialect: Dialect) -> serde_json::Value {
        match dialect {
            Dialect::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.error_type.as_deref().unwrap_or(self.kind.openai_type()),
                    "param": self.param,
                    "code": self.code.as_deref().or(self.kind.openai_code()),
                }
            }),
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {
                    "type": self.error_type.as_deref().unwrap_or(self.kind.anthropic_type()),
                    "message": self.message,
                }
            }),
            Dialect::Gemini => json!({
                "error": {
                    "code": self.status().as_u16(),
                    "message": self.message,
                    "status": self.kind.gemini_status(),
                }
            }),
        }
    }

    /// The complete response in `dialect`: status, JSON body, `retry-after` when set,
    /// and the error itself in the response extensions.
    pub fn to_response(&self, dialect: Dialect) -> Response<Body> {
        let body = serde_json::to_vec(&self.to_json(dialect)).expect("a JSON value serializes");
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = self.status();
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(self.clone());
        res
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status().as_u16(),
            self.kind.openai_type(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(res: Response<Body>) -> serde_json::Value {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn openai_shape() {
        let res = GatewayError::model_not_found("nope").to_response(Dialect::OpenAi);
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        assert!(res.extensions().get::<GatewayError>().is_some());
        let v = body_json(res).await;
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    }

    #[tokio::test]
    async fn anthropic_shape() {
        let err = GatewayError::new(ErrorKind::Authentication, "bad key");
        let res = err.to_response(Dialect::Anthropic);
        assert_eq!(res.status(), 401);
        let v = body_json(res).await;
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "bad key");
    }

    #[tokio::test]
    async fn gemini_shape_and_retry_after() {
        let err = GatewayError::new(ErrorKind::RateLimited, "slow down").with_retry_after(7);
        let res = err.to_response(Dialect::Gemini);
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[RETRY_AFTER], "7");
        let v = body_json(res).await;
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(v["error"]["code"], 429);
    }

    #[test]
    fn status_codes_follow_design() {
        use ErrorKind::*;
        let table = [
            (InvalidRequest, 400),
            (Authentication, 401),
            (PermissionDenied, 403),
            (ModelNotFound, 404),
            (PayloadTooLarge, 413),
            (RateLimited, 429),
            (InsufficientQuota, 429),
            (UpstreamFailed, 502),
            (NoHealthyUpstream, 503),
            (Timeout, 504),
        ];
        for (kind, status) in table {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
        }
        let overridden = GatewayError::upstream("x").with_status(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(overridden.status(), 422);
    }
}

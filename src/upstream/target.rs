//! Where a request goes: [`Target`] and its secret [`ApiKey`].

use std::fmt;
use std::sync::Arc;

use http::Uri;

use crate::{Dialect, Endpoint};

/// A provider credential. Its `Debug` and `Display` never show the key, so it cannot
/// end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The base URL of a target is not an absolute `http` or `https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBaseUrl(String);

impl fmt::Display for InvalidBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid base URL `{}`: expected an absolute http(s) URL such as https://api.openai.com/v1",
            self.0
        )
    }
}

impl std::error::Error for InvalidBaseUrl {}

/// The provider endpoint chosen for one attempt: base URL, dialect, credential and
/// the model name to send.
///
/// [`Upstream`](super::Upstream) reads it from the request extensions (routing and
/// failover put it there) or uses its default target.
#[derive(Clone)]
pub struct Target(Arc<Fields>);

/// Behind one `Arc`: a target is cloned for every attempt.
#[derive(Clone)]
struct Fields {
    name: Arc<str>,
    base_url: Arc<str>,
    dialect: Dialect,
    api_key: Option<ApiKey>,
    /// The credential's header value, made once with the key (`None`: the key is not a
    /// valid header value, an error at request time).
    auth_value: Option<http::HeaderValue>,
    model: Option<Arc<str>>,
    /// `{base_url}{endpoint path}` for each [`Endpoint`], parsed once.
    endpoint_uris: [Option<Uri>; 3],
    /// The name as an `x-tollgate-target` value, made once (`None`: not a valid value).
    name_value: Option<http::HeaderValue>,
    /// The `host` header of a plain-HTTP target, made once: without it the client
    /// formats `host:port` into a new value on every request. `None` for HTTPS, which
    /// may negotiate HTTP/2 and name the host in `:authority` instead.
    host_value: Option<http::HeaderValue>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.0.name)
            .field("base_url", &self.0.base_url)
            .field("dialect", &self.0.dialect)
            .field("api_key", &self.0.api_key)
            .field("model", &self.0.model)
            .finish()
    }
}

/// The position of `endpoint` in [`Fields::endpoint_uris`].
fn endpoint_index(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Embeddings => 1,
        Endpoint::Messages => 2,
    }
}

impl Target {
    /// An OpenAI-compatible target (OpenAI, DeepSeek, GLM, Qwen, vLLM, Ollama, ...).
    /// `base_url` includes the version prefix: `https://api.openai.com/v1`.
    pub fn openai_compatible(
        name: impl Into<Arc<str>>,
        base_url: &str,
    ) -> Result<Target, InvalidBaseUrl> {
        Target::with_dialect(name, base_url, Dialect::OpenAi)
    }

    /// An Anthropic Messages API target, authenticated with `x-api-key` (and
    /// `anthropic-version`, the client's or
    /// [`API_VERSION`](crate::providers::anthropic::API_VERSION)). `base_url` includes
    /// the version prefix: `https://api.anthropic.com/v1`.
    pub fn anthropic(name: impl Into<Arc<str>>, base_url: &str) -> Result<Target, InvalidBaseUrl> {
        Target::with_dialect(name, base_url, Dialect::Anthropic)
    }

    /// A Gemini API target, authenticated with `x-goog-api-key`; requests go to
    /// `{base_url}/models/{model}:generateContent` (or `:streamGenerateContent?alt=sse`).
    /// `base_url` includes the version: `https://generativelanguage.googleapis.com/v1beta`.
    pub fn gemini(name: impl Into<Arc<str>>, base_url: &str) -> Result<Target, InvalidBaseUrl> {
        Target::with_dialect(name, base_url, Dialect::Gemini)
    }

    /// A target speaking `dialect` at `base_url`.
    pub fn with_dialect(
        name: impl Into<Arc<str>>,
        base_url: &str,
        dialect: Dialect,
    ) -> Result<Target, InvalidBaseUrl> {
        let uri: Uri = base_url
            .parse()
            .map_err(|_| InvalidBaseUrl(base_url.to_owned()))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => {}
            _ => return Err(InvalidBaseUrl(base_url.to_owned())),
        }
        let base_url = base_url.trim_end_matches('/');
        let endpoint_uris = [
            Endpoint::ChatCompletions,
            Endpoint::Embeddings,
            Endpoint::Messages,
        ]
        .map(|endpoint| format!("{base_url}{}", endpoint.path()).parse().ok());
        // As the client would write it: the port only when it is not the default.
        let host_value = match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(host)) => match uri.port_u16() {
                Some(port) if port != 80 => format!("{host}:{port}").try_into().ok(),
                _ => http::HeaderValue::from_str(host).ok(),
            },
            _ => None,
        };
        let name: Arc<str> = name.into();
        Ok(Target(Arc::new(Fields {
            host_value,
            name_value: http::HeaderValue::from_str(&name).ok(),
            name,
            base_url: base_url.into(),
            dialect,
            api_key: None,
            auth_value: None,
            model: None,
            endpoint_uris,
        })))
    }

    /// Sets the credential sent to this target.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        let fields = Arc::make_mut(&mut self.0);
        let value = match fields.dialect {
            Dialect::OpenAi => http::HeaderValue::try_from(format!("Bearer {}", key.expose())),
            Dialect::Anthropic | Dialect::Gemini => http::HeaderValue::try_from(key.expose()),
        };
        fields.auth_value = value.ok().map(|mut value| {
            value.set_sensitive(true);
            value
        });
        fields.api_key = Some(key);
        self
    }

    /// The value of the credential's header (`authorization: Bearer <key>`,
    /// `x-api-key` or `x-goog-api-key`), `None` when the key cannot be sent as one.
    pub(crate) fn auth_value(&self) -> Option<&http::HeaderValue> {
        self.0.auth_value.as_ref()
    }

    /// Sends this model name instead of the one the client asked for (a deployment
    /// name, or the name without a `provider/` prefix).
    pub fn with_model(mut self, model: impl Into<Arc<str>>) -> Self {
        Arc::make_mut(&mut self.0).model = Some(model.into());
        self
    }

    /// The target's name, shown in `x-tollgate-target` and in errors.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The name as a header value (`x-tollgate-target`), `None` when it cannot be one.
    pub(crate) fn name_value(&self) -> Option<&http::HeaderValue> {
        self.0.name_value.as_ref()
    }

    /// The `host` header to send, for a plain-HTTP target (see [`Fields::host_value`]).
    pub(crate) fn host_value(&self) -> Option<&http::HeaderValue> {
        self.0.host_value.as_ref()
    }

    /// The name as the shared string it is stored as (a reference count to copy, not
    /// the text).
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.0.name
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// `{base_url}{endpoint's path}`, parsed when the target was made.
    pub(crate) fn endpoint_uri(&self, endpoint: Endpoint) -> Option<&Uri> {
        self.0.endpoint_uris[endpoint_index(endpoint)].as_ref()
    }

    /// The dialect the target speaks.
    pub fn dialect(&self) -> Dialect {
        self.0.dialect
    }

    /// The credential, if any.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.0.api_key.as_ref()
    }

    /// The model name to send instead of the client's, if any.
    pub fn model(&self) -> Option<&str> {
        self.0.model.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_is_made_once_for_plain_http_only() {
        let host = |url: &str| {
            Target::openai_compatible("t", url)
                .unwrap()
                .host_value()
                .map(|v| v.to_str().unwrap().to_owned())
        };
        // As hyper-util's client writes it: the port only when it is not the default.
        assert_eq!(
            host("http://127.0.0.1:9301/v1").as_deref(),
            Some("127.0.0.1:9301")
        );
        assert_eq!(
            host("http://vllm.internal:80/v1").as_deref(),
            Some("vllm.internal")
        );
        assert_eq!(host("http://[::1]:8000").as_deref(), Some("[::1]:8000"));
        // HTTPS may be HTTP/2, where the host goes in `:authority`: left to the client.
        assert_eq!(host("https://api.openai.com/v1"), None);
    }

    #[test]
    fn keys_never_print() {
        let key = ApiKey::new("sk-secret-value");
        let target = Target::openai_compatible("openai", "https://api.openai.com/v1/")
            .unwrap()
            .with_api_key(key.clone());
        assert!(!format!("{target:?} {key} {key:?}").contains("sk-secret"));
        assert_eq!(target.base_url(), "https://api.openai.com/v1");
    }

    #[test]
    fn base_url_must_be_absolute_http() {
        for bad in ["api.openai.com/v1", "ftp://x/v1", "", "http://"] {
            assert!(Target::openai_compatible("x", bad).is_err(), "{bad}");
        }
    }
}

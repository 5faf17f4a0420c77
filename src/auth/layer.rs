//! [`AuthLayer`] and [`Auth`].

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{Authenticate, IpNet, KeyAuthenticator, Keys, Principal, Rejection};
use crate::extension::ClientAddr;
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// Authenticates every request and writes its [`Principal`]. See the
/// [module docs](crate::auth).
///
/// Reads: the credential headers, [`ClientAddr`] (and `X-Forwarded-For` from trusted
/// proxies), the [`LlmRequest`] (parsed here only when the principal's models are
/// restricted). Writes: [`Principal`] into the request extensions.
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthLayer<A> {
    authenticator: A,
    trusted_proxies: Arc<[IpNet]>,
}

impl<A> AuthLayer<A> {
    /// Authenticates with `authenticator` (a [`KeyAuthenticator`] or a closure).
    pub fn new(authenticator: A) -> Self {
        AuthLayer {
            authenticator,
            trusted_proxies: Arc::from([]),
        }
    }

    /// Trusts `X-Forwarded-For` from these proxies: when the connection comes from one
    /// of them, the client address for IP allowlists is the right-most address in the
    /// header that is not a trusted proxy. Without it (the default) the header is
    /// ignored, since any client can send one.
    pub fn trust_forwarded_for(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }
}

impl AuthLayer<KeyAuthenticator> {
    /// Authenticates virtual keys from `keys`.
    pub fn keys(keys: Keys) -> Self {
        AuthLayer::new(KeyAuthenticator::new(keys))
    }
}

#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
impl AuthLayer<super::JwtValidator> {
    /// Authenticates JWTs only, with `validator`.
    pub fn jwt(validator: super::JwtValidator) -> Self {
        AuthLayer::new(validator)
    }
}

impl<S, A: Clone> Layer<S> for AuthLayer<A> {
    type Service = Auth<S, A>;

    fn layer(&self, inner: S) -> Auth<S, A> {
        Auth {
            inner,
            authenticator: self.authenticator.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S, A> {
    inner: S,
    authenticator: A,
    trusted_proxies: Arc<[IpNet]>,
}

impl<S, A> Auth<S, A> {
    /// Wraps `inner`.
    pub fn new(inner: S, authenticator: A) -> Self {
        Auth {
            inner,
            authenticator,
            trusted_proxies: Arc::from([]),
        }
    }

    crate::macros::inner_accessors!();
}

impl<S, A, B, ResB> Service<Request<B>> for Auth<S, A>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    A: Authenticate<B>,
    A::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let decision = self.authenticator.authenticate(&req);
        // Move the service that was made ready into the future; leave its clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let trusted = self.trusted_proxies.clone();
        ResponseFuture::new(async move {
            let dialect = req
                .extensions()
                .get::<LlmRequest>()
                .map_or_else(|| Dialect::from_path(req.uri().path()), LlmRequest::dialect);
            let principal = match decision.await {
                Ok(principal) => principal,
                Err(rejection) => return Ok(rejection.to_response(dialect)),
            };
            if let Err(rejection) = check_ip(&principal, &req, &trusted) {
                return Ok(rejection.to_response(dialect));
            }
            let mut req = req.map(Body::new);
            if !principal.models.is_empty() && is_llm(&req) {
                let llm = match LlmRequest::extract(&mut req).await {
                    Ok(llm) => llm,
                    Err(err) => return Ok(err.to_response(dialect)),
                };
                if !principal.allows_model(llm.model()) {
                    let err = Rejection::forbidden(format!(
                        "This API key may not use the model `{}`.",
                        llm.model()
                    ))
                    .error()
                    .clone()
                    .with_param("model");
                    return Ok(err.to_response(llm.dialect()));
                }
            }
            req.extensions_mut().insert(principal);
            Ok(inner.call(req).await?.map(Body::new))
        })
    }
}

fn is_llm<B>(req: &Request<B>) -> bool {
    req.extensions().get::<LlmRequest>().is_some()
        || req.extensions().get::<Endpoint>().is_some()
        || Endpoint::from_path(req.uri().path()).is_some()
}

fn check_ip<B>(
    principal: &Principal,
    req: &Request<B>,
    trusted: &[IpNet],
) -> Result<(), Rejection> {
    if principal.ip_allow.is_empty() {
        return Ok(());
    }
    match client_ip(req, trusted) {
        Some(ip) if principal.allows_ip(ip) => Ok(()),
        Some(ip) => Err(Rejection::forbidden(format!(
            "This API key may not be used from {ip}."
        ))),
        None => Err(Rejection::forbidden(
            "This API key is limited to some client addresses, and this request's address is unknown.",
        )),
    }
}

/// The client address: the connection's peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not a trusted proxy. `None` when
/// the address is unknown or the header is garbage (an allowlist then refuses).
pub(crate) fn client_ip<B>(req: &Request<B>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.extensions().get::<ClientAddr>()?.0.ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let values: Vec<_> = req.headers().get_all("x-forwarded-for").iter().collect();
    let mut client = peer;
    for value in values.into_iter().rev() {
        for part in value.to_str().ok()?.rsplit(',') {
            client = part.trim().parse().ok()?;
            if !is_trusted(client) {
                return Some(client);
            }
        }
    }
    Some(client)
}

crate::macros::boxed_response_future! {
    /// Response future of [`Auth`].
}

//! Scopes and the [`MakeRateLimitKey`] policy: who a request counts against.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::Request;

use super::Limits;
use crate::extension::ClientAddr;

/// What a bucket of limits is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One API key (its id, never the secret).
    Key(Arc<str>),
    /// A team of keys.
    Team(Arc<str>),
    /// One model, as the client named it.
    Model(Arc<str>),
    /// The whole gateway.
    Global,
    /// A client address (IPv6 addresses are grouped by their /64 prefix).
    ClientIp(IpAddr),
}

impl Scope {
    /// The scope of a client address: the address itself for IPv4, its /64 prefix for
    /// IPv6 (one end site gets a whole /64, so keying on full addresses is no limit).
    pub fn client_ip(ip: IpAddr) -> Scope {
        match ip {
            IpAddr::V4(_) => Scope::ClientIp(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Scope::ClientIp(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Scope::ClientIp(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }

    /// A stable text form, used in store keys: `key:ID`, `team:ID`, `model:NAME`,
    /// `global`, `ip:ADDR`.
    pub fn storage_key(&self) -> String {
        match self {
            Scope::Key(id) => format!("key:{id}"),
            Scope::Team(id) => format!("team:{id}"),
            Scope::Model(name) => format!("model:{name}"),
            Scope::Global => "global".to_owned(),
            Scope::ClientIp(ip) => format!("ip:{ip}"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Key(id) => write!(f, "key `{id}`"),
            Scope::Team(id) => write!(f, "team `{id}`"),
            Scope::Model(name) => write!(f, "model `{name}`"),
            Scope::Global => f.write_str("the gateway"),
            Scope::ClientIp(ip) => write!(f, "client address {ip}"),
        }
    }
}

/// The scopes one request counts against because of *who* sent it (its key, its team,
/// its address), each with its limits. The model and global scopes come from the
/// layer's configuration and are added by the layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitKey {
    pub(crate) scopes: Vec<(Scope, Limits)>,
}

impl RateLimitKey {
    /// One scope with its limits.
    pub fn new(scope: Scope, limits: Limits) -> Self {
        RateLimitKey {
            scopes: vec![(scope, limits)],
        }
    }

    /// Adds another scope (a key's team, say).
    pub fn and(mut self, scope: Scope, limits: Limits) -> Self {
        self.scopes.push((scope, limits));
        self
    }

    /// The scopes and their limits.
    pub fn scopes(&self) -> &[(Scope, Limits)] {
        &self.scopes
    }
}

/// Says which identity scopes a request counts against. See the
/// [module docs](crate::ratelimit).
///
/// Implemented for closures `FnMut(&Request<B>) -> Option<RateLimitKey>`, for `()`
/// (no identity scope: only the model and global limits apply) and by
/// [`DefaultMakeRateLimitKey`].
pub trait MakeRateLimitKey<B> {
    /// The identity scopes of `req`, or `None` for none.
    fn make_rate_limit_key(&mut self, req: &Request<B>) -> Option<RateLimitKey>;
}

impl<B, F> MakeRateLimitKey<B> for F
where
    F: FnMut(&Request<B>) -> Option<RateLimitKey>,
{
    fn make_rate_limit_key(&mut self, req: &Request<B>) -> Option<RateLimitKey> {
        self(req)
    }
}

impl<B> MakeRateLimitKey<B> for () {
    fn make_rate_limit_key(&mut self, _req: &Request<B>) -> Option<RateLimitKey> {
        None
    }
}

/// The default identity: the authenticated key (the auth layer's `Principal`, with the
/// key's own `rpm`, `tpm` and `max_parallel`; feature `auth`), and the client address
/// ([`ClientAddr`] in the request extensions) with the limits given here. A request
/// with neither counts against no identity scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultMakeRateLimitKey {
    per_client_ip: Option<Limits>,
}

impl DefaultMakeRateLimitKey {
    /// No identity scope until [`per_client_ip`](Self::per_client_ip) is set.
    pub const fn new() -> Self {
        DefaultMakeRateLimitKey {
            per_client_ip: None,
        }
    }

    /// The limits of each client address.
    pub fn per_client_ip(mut self, limits: Limits) -> Self {
        self.per_client_ip = (!limits.is_unlimited()).then_some(limits);
        self
    }
}

impl<B> MakeRateLimitKey<B> for DefaultMakeRateLimitKey {
    fn make_rate_limit_key(&mut self, req: &Request<B>) -> Option<RateLimitKey> {
        let mut scopes = Vec::new();
        #[cfg(feature = "auth")]
        if let Some(principal) = req.extensions().get::<crate::auth::Principal>() {
            let limits = Limits::from(principal.limits);
            if !limits.is_unlimited() {
                scopes.push((Scope::Key(principal.key_id.clone()), limits));
            }
        }
        if let (Some(limits), Some(addr)) =
            (self.per_client_ip, req.extensions().get::<ClientAddr>())
        {
            scopes.push((Scope::client_ip(addr.0.ip()), limits));
        }
        (!scopes.is_empty()).then_some(RateLimitKey { scopes })
    }
}

/// A key's `rpm`, `tpm` and `max_parallel` as rate limits.
#[cfg(feature = "auth")]
impl From<crate::auth::KeyLimits> for Limits {
    fn from(key: crate::auth::KeyLimits) -> Limits {
        let mut limits = Limits::new();
        if let Some(rpm) = key.rpm {
            limits = limits.requests_per_minute(rpm);
        }
        if let Some(tpm) = key.tpm {
            limits = limits.tokens_per_minute(tpm);
        }
        if let Some(n) = key.max_parallel {
            limits = limits.max_parallel(n);
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Scope::client_ip(a), Scope::client_ip(b));
        assert_ne!(Scope::client_ip(a), Scope::client_ip(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            Scope::client_ip(mapped),
            Scope::ClientIp("10.0.0.1".parse().unwrap())
        );
        assert_eq!(Scope::client_ip(a).storage_key(), "ip:2001:db8:1:2::");
    }
}

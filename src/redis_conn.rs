//! Connecting to Redis, shared by every Redis backend (rate limits, cache, balances).

#[cfg(any(feature = "ratelimit", feature = "cache"))]
use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A Redis store (rate limits, cache) could not be set up; the message says why
/// (which store, the server with any password masked, and the cause).
#[cfg(any(feature = "ratelimit", feature = "cache"))]
#[derive(Debug)]
pub struct RedisStoreError(pub(crate) String);

#[cfg(any(feature = "ratelimit", feature = "cache"))]
impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(any(feature = "ratelimit", feature = "cache"))]
impl std::error::Error for RedisStoreError {}

/// A managed connection (reconnects by itself) to the Redis at `url`, made within 5 s.
/// Errors read `WHAT Redis at URL: ...`, with any password in the URL masked.
pub(crate) async fn connect(url: &str, what: &str) -> Result<ConnectionManager, String> {
    let fail = |why: &str, e: &dyn std::fmt::Display| {
        format!("{what} Redis at {}: {why}: {e}", redact(url))
    };
    let client = redis::Client::open(url).map_err(|e| fail("bad URL", &e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|e| fail("no answer", &e))?
    .map_err(|e| fail("cannot connect", &e))
}

/// `url` with its password (or user and password) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_an_error() {
        assert_eq!(
            super::redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(super::redact("redis://host:6379"), "redis://host:6379");
    }
}

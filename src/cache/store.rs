//! The [`CacheStore`] trait, the stored [`Entry`] and the [`Lookup`] future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode};

use super::CacheKey;

/// One stored answer: what the first client received, byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
    stored_at_ms: u64,
    ttl: Duration,
}

impl Entry {
    /// An answer stored now, to live `ttl`.
    pub fn new(
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
        ttl: Duration,
    ) -> Self {
        Entry {
            status,
            content_type,
            body,
            stored_at_ms: now_ms(),
            ttl,
        }
    }

    /// The response status (always a 2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's `content-type`.
    pub fn content_type(&self) -> Option<&HeaderValue> {
        self.content_type.as_ref()
    }

    /// Whether the body is an event stream.
    pub fn is_stream(&self) -> bool {
        self.content_type
            .as_ref()
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    }

    /// The complete body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// How long the entry lives after it was stored.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Its age now (zero if the clock went back).
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.stored_at_ms))
    }

    /// Whether it is still within its time to live.
    pub fn is_fresh(&self) -> bool {
        self.age() < self.ttl
    }

    /// The bytes it takes in memory, roughly (for byte-bounded stores).
    pub fn weight(&self) -> usize {
        self.body.len() + self.content_type.as_ref().map_or(0, |v| v.len()) + 128
    }

    /// A compact binary form for remote stores (`tg1`, status, times, content type,
    /// body). [`Entry::decode`] reads it back.
    pub fn encode(&self) -> Bytes {
        let ct = self.content_type.as_ref().map_or(&[][..], |v| v.as_bytes());
        let mut out = BytesMut::with_capacity(3 + 2 + 8 + 8 + 2 + ct.len() + self.body.len());
        out.put_slice(b"tg1");
        out.put_u16(self.status.as_u16());
        out.put_u64(self.stored_at_ms);
        out.put_u64(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        out.put_u16(ct.len() as u16);
        out.put_slice(ct);
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Reads [`Entry::encode`]'s form; `None` for anything else.
    pub fn decode(mut bytes: Bytes) -> Option<Entry> {
        if bytes.len() < 23 || &bytes[..3] != b"tg1" {
            return None;
        }
        bytes.advance(3);
        let status = StatusCode::from_u16(bytes.get_u16()).ok()?;
        let stored_at_ms = bytes.get_u64();
        let ttl = Duration::from_millis(bytes.get_u64());
        let ct_len = usize::from(bytes.get_u16());
        if bytes.len() < ct_len {
            return None;
        }
        let ct = bytes.split_to(ct_len);
        let content_type = if ct.is_empty() {
            None
        } else {
            Some(HeaderValue::from_maybe_shared(ct).ok()?)
        };
        Some(Entry {
            status,
            content_type,
            body: bytes,
            stored_at_ms,
            ttl,
        })
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body is user data: show its size only.
        f.debug_struct("Entry")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("bytes", &self.body.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The answer of [`CacheStore::get`]: ready at once (in memory) or after a round trip.
#[must_use = "futures do nothing unless polled"]
pub struct Lookup(LookupInner);

enum LookupInner {
    Ready(Option<Option<Entry>>),
    Pending(Pin<Box<dyn Future<Output = Option<Entry>> + Send>>),
}

impl Lookup {
    /// An answer known now.
    pub fn ready(entry: Option<Entry>) -> Self {
        Lookup(LookupInner::Ready(Some(entry)))
    }

    /// An answer that needs a round trip. The future must finish in bounded time (a
    /// remote store applies its own timeout and answers `None` on failure).
    pub fn pending<F>(future: F) -> Self
    where
        F: Future<Output = Option<Entry>> + Send + 'static,
    {
        Lookup(LookupInner::Pending(Box::pin(future)))
    }
}

impl Future for Lookup {
    type Output = Option<Entry>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Entry>> {
        match &mut self.0 {
            LookupInner::Ready(entry) => Poll::Ready(entry.take().flatten()),
            LookupInner::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lookup").finish_non_exhaustive()
    }
}

/// Where answers are kept: [`MemoryStore`](super::MemoryStore) (the default) or, with
/// the `redis` feature, `RedisStore`. Implement it for any other backend.
///
/// Neither method may block or fail the request: a store that cannot answer returns
/// `None` from `get` (a miss) and drops what `put` was given.
pub trait CacheStore: Send + Sync + 'static {
    /// The entry under `key`, if one is stored and fresh.
    fn get(&self, key: &CacheKey) -> Lookup;

    /// Stores `entry` under `key` for `entry.ttl()`. Called off the critical path once a
    /// response is complete; must return promptly (queue remote writes).
    fn put(&self, key: CacheKey, entry: Entry);
}

impl<T: CacheStore + ?Sized> CacheStore for Arc<T> {
    fn get(&self, key: &CacheKey) -> Lookup {
        (**self).get(key)
    }

    fn put(&self, key: CacheKey, entry: Entry) {
        (**self).put(key, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_form_round_trips_and_rejects_garbage() {
        let entry = Entry::new(
            StatusCode::OK,
            Some(HeaderValue::from_static("text/event-stream")),
            Bytes::from_static(b"data: [DONE]\n\n"),
            Duration::from_secs(60),
        );
        let back = Entry::decode(entry.encode()).unwrap();
        assert_eq!(back, entry);
        assert!(back.is_stream() && back.is_fresh());
        let none = Entry::new(StatusCode::OK, None, Bytes::new(), Duration::ZERO);
        assert_eq!(Entry::decode(none.encode()).unwrap(), none);
        assert!(!none.is_fresh());
        for garbage in [
            &b""[..],
            b"tg1",
            b"xx1aaaaaaaaaaaaaaaaaaaaaaaaa",
            b"tg1\x00\xc8",
        ] {
            assert!(Entry::decode(Bytes::copy_from_slice(garbage)).is_none());
        }
        let mut truncated = entry.encode().to_vec();
        truncated.truncate(24);
        assert!(Entry::decode(truncated.into()).is_none());
    }
}

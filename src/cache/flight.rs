//! Single-flight: identical requests in flight at the same time share one upstream call.
//!
//! The first request for a key becomes the leader and calls upstream; the ones that
//! arrive while it is in flight become followers. Followers wait for the leader's
//! response head, then read its body chunk by chunk as the leader receives it (the
//! chunks are the same `Bytes` the leader forwards, kept under the entry byte cap).
//!
//! If the leader fails before a follower got its head (an error status, an upstream
//! error, a stream cut off), the follower goes upstream on its own. A follower that
//! already streams when the leader's body fails, or grows past the byte cap, ends with
//! a body error, as the leader's client does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::CacheKey;

/// The flights in progress, by key. Bounded by the requests in flight.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    // hashbrown's seeded foldhash: the keys are digests, SipHash would be wasted work.
    map: Mutex<hashbrown::HashMap<CacheKey, Arc<Flight>>>,
}

/// The leader's response head, as followers replay it.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<HeaderValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    Failed,
}

#[derive(Debug, Default)]
struct State {
    head: Option<Head>,
    chunks: Vec<Bytes>,
    len: usize,
    end: Option<End>,
    followers: usize,
    next_id: u64,
    waiters: HashMap<u64, Waker>,
}

/// One upstream call shared by identical requests.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    state: Mutex<State>,
}

impl Flight {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what followers are told and wakes them.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let waiters = {
            let mut state = self.lock();
            f(&mut state);
            if state.waiters.is_empty() {
                // Nobody waits (the usual miss): no new map, nothing to wake.
                return;
            }
            std::mem::take(&mut state.waiters)
        };
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}

/// What a request is in its flight.
pub(crate) enum Role {
    Leader(Leader),
    Follower(Follower),
}

impl Flights {
    /// Leads a new flight for `key`, or follows the one in progress.
    pub(crate) fn join(self: &Arc<Self>, key: CacheKey, cap: usize) -> Role {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = map.get(&key) {
            let mut state = flight.lock();
            if state.end.is_none() {
                state.followers += 1;
                state.next_id += 1;
                let id = state.next_id;
                drop(state);
                return Role::Follower(Follower {
                    flight: flight.clone(),
                    id,
                    pos: 0,
                });
            }
        }
        let flight = Arc::new(Flight::default());
        map.insert(key, flight.clone());
        Role::Leader(Leader {
            flights: self.clone(),
            key,
            flight,
            cap,
            done: false,
        })
    }

    /// Flights in progress (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The request that makes the upstream call. Dropping it unfinished fails the flight.
#[derive(Debug)]
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: CacheKey,
    flight: Arc<Flight>,
    cap: usize,
    done: bool,
}

impl Leader {
    /// The response head is known: followers may start.
    pub(crate) fn head(&self, head: Head) {
        self.flight.update(|s| s.head = Some(head));
    }

    /// A body chunk. Past the cap the flight fails (followers cannot be fed).
    pub(crate) fn chunk(&mut self, data: &Bytes) {
        if self.done || data.is_empty() {
            return;
        }
        let cap = self.cap;
        let mut over = false;
        self.flight.update(|s| {
            s.len += data.len();
            if s.len > cap {
                over = true;
                s.chunks = Vec::new();
                s.end = Some(End::Failed);
            } else {
                s.chunks.push(data.clone());
            }
        });
        if over {
            self.finish(End::Failed);
        }
    }

    /// The whole answer so far, or `None` when it outgrew the cap (the flight failed).
    pub(crate) fn body(&self) -> Option<Bytes> {
        let state = self.flight.lock();
        (state.end != Some(End::Failed)).then(|| super::body::join(&state.chunks))
    }

    /// Whether any request follows this one.
    pub(crate) fn has_followers(&self) -> bool {
        self.flight.lock().followers > 0
    }

    /// The answer is complete: followers get its end.
    pub(crate) fn complete(mut self) {
        self.finish(End::Complete);
    }

    /// The answer failed: followers without a head go upstream on their own.
    pub(crate) fn fail(mut self) {
        self.finish(End::Failed);
    }

    fn finish(&mut self, end: End) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.flight.update(|s| {
            if s.end.is_none() {
                s.end = Some(end);
            }
        });
        let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.finish(End::Failed);
    }
}

/// A request that waits for a leader's answer.
#[derive(Debug)]
pub(crate) struct Follower {
    flight: Arc<Flight>,
    id: u64,
    pos: usize,
}

impl Follower {
    /// The leader's head; `None` when the leader failed (go upstream alone).
    pub(crate) fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Option<Head>> {
        let mut state = self.flight.lock();
        if state.end == Some(End::Failed) {
            return Poll::Ready(None);
        }
        if let Some(head) = &state.head {
            return Poll::Ready(Some(head.clone()));
        }
        state.waiters.insert(self.id, cx.waker().clone());
        Poll::Pending
    }

    /// The next chunk of the leader's body: `None` at its end, an error when it failed.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ()>>> {
        let mut state = self.flight.lock();
        if state.end == Some(End::Failed) {
            return Poll::Ready(Some(Err(())));
        }
        if self.pos < state.chunks.len() {
            // Everything that arrived since the last poll, as one frame.
            let ready = &state.chunks[self.pos..];
            let data = match ready {
                [one] => one.clone(),
                many => Bytes::from(many.concat()),
            };
            self.pos = state.chunks.len();
            return Poll::Ready(Some(Ok(data)));
        }
        if state.end == Some(End::Complete) {
            return Poll::Ready(None);
        }
        state.waiters.insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut state = self.flight.lock();
        state.followers = state.followers.saturating_sub(1);
        state.waiters.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn key() -> CacheKey {
        CacheKey::from_bytes([7; 32])
    }

    #[tokio::test]
    async fn followers_read_the_leader_as_it_arrives() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(mut leader) = flights.join(key(), 100) else {
            panic!("first is the leader")
        };
        let Role::Follower(mut follower) = flights.join(key(), 100) else {
            panic!("second follows")
        };
        assert!(leader.has_followers());
        leader.head(Head {
            status: StatusCode::OK,
            content_type: None,
        });
        let head = poll_fn(|cx| follower.poll_head(cx)).await.unwrap();
        assert_eq!(head.status, 200);
        leader.chunk(&Bytes::from_static(b"ab"));
        leader.chunk(&Bytes::from_static(b"cd"));
        let got = poll_fn(|cx| follower.poll_chunk(cx)).await;
        assert_eq!(got, Some(Ok(Bytes::from_static(b"abcd"))));
        let waiting = tokio::spawn(async move {
            let next = poll_fn(|cx| follower.poll_chunk(cx)).await;
            let end = poll_fn(|cx| follower.poll_chunk(cx)).await;
            (next, end)
        });
        tokio::task::yield_now().await;
        leader.chunk(&Bytes::from_static(b"e"));
        leader.complete();
        let (next, end) = waiting.await.unwrap();
        assert_eq!(next, Some(Ok(Bytes::from_static(b"e"))));
        assert_eq!(end, None);
        assert_eq!(flights.len(), 0);
        // The next request leads a new flight.
        assert!(matches!(flights.join(key(), 100), Role::Leader(_)));
    }

    #[tokio::test]
    async fn leader_failure_before_the_head_frees_followers() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(leader) = flights.join(key(), 100) else {
            panic!()
        };
        let Role::Follower(mut follower) = flights.join(key(), 100) else {
            panic!()
        };
        let waiting = tokio::spawn(async move { poll_fn(|cx| follower.poll_head(cx)).await });
        tokio::task::yield_now().await;
        drop(leader); // dropped unfinished: a failure
        assert!(waiting.await.unwrap().is_none());
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn over_the_cap_the_flight_fails() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(mut leader) = flights.join(key(), 4) else {
            panic!()
        };
        let Role::Follower(mut follower) = flights.join(key(), 4) else {
            panic!()
        };
        leader.head(Head {
            status: StatusCode::OK,
            content_type: None,
        });
        leader.chunk(&Bytes::from_static(b"abc"));
        leader.chunk(&Bytes::from_static(b"de"));
        assert_eq!(poll_fn(|cx| follower.poll_chunk(cx)).await, Some(Err(())));
        assert_eq!(flights.len(), 0);
    }
}

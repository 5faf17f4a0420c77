//! Single-flight: identical requests in flight share one upstream call.

use std::time::Duration;

use futures_free::join_all;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{bytes, cache_status, chat, send, setup, with_header, DET, DET_STREAM};

/// Small helpers without a futures dependency.
mod futures_free {
    pub(crate) async fn join_all<T: Send + 'static>(
        handles: Vec<tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}

/// Waits (bounded) until `check` holds.
async fn until(mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("condition not met within a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_streams_make_one_upstream_call() {
    let (svc, mock) = setup();
    let held = || with_header(chat(DET_STREAM), "x-mock-hold-last", "true");
    let leader = svc.clone().oneshot(held()).await.unwrap();
    assert_eq!(cache_status(&leader), "miss");
    let mut followers = Vec::new();
    for _ in 0..49 {
        followers.push(svc.clone().oneshot(held()).await.unwrap());
    }
    assert!(followers
        .iter()
        .all(|r| cache_status(r) == "hit" && r.status() == 200));
    // The leader's client reads its stream (it drives the upstream call).
    let leader_task = tokio::spawn(bytes(leader));
    // Followers receive the leader's stream as it arrives: the first events come
    // while the upstream still holds the last one.
    let mut first = followers.pop().unwrap().into_body();
    let frame = first.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(frame.starts_with(b"data: "));
    assert!(!frame.ends_with(b"data: [DONE]\n\n"));

    let mut tasks: Vec<_> = followers
        .into_iter()
        .map(|res| tokio::spawn(bytes(res)))
        .collect();
    tasks.push(tokio::spawn(async move {
        let rest = first.collect().await.unwrap().to_bytes();
        bytes::Bytes::from([frame, rest].concat())
    }));
    mock.release_held(1);
    let leader_body = leader_task.await.unwrap();
    let bodies = join_all(tasks).await;
    assert_eq!(bodies.len(), 49);
    assert!(leader_body.ends_with(b"data: [DONE]\n\n"));
    assert!(
        bodies.iter().all(|b| *b == leader_body),
        "every follower got the whole answer"
    );
    assert_eq!(mock.request_count(), 1);
    // And the answer was stored.
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "hit");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_json_requests_share_one_call() {
    let (svc, mock) = setup();
    let slow = || with_header(chat(DET), "x-mock-latency-ms", "150");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let svc = svc.clone();
            let req = slow();
            tokio::spawn(async move {
                let res = svc.oneshot(req).await.unwrap();
                (res.status().as_u16(), bytes(res).await)
            })
        })
        .collect();
    let results = join_all(tasks).await;
    assert!(results
        .iter()
        .all(|(code, body)| *code == 200 && *body == results[0].1));
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_fails_followers_go_on_their_own() {
    let (svc, mock) = setup();
    // The leader's upstream answers a 500 after a while; the followers are plain.
    let leader_req = with_header(
        with_header(chat(DET), "x-mock-latency-ms", "300"),
        "x-mock-status",
        "500",
    );
    let leader = tokio::spawn(svc.clone().oneshot(leader_req));
    until(|| mock.request_count() == 1).await;
    let followers: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(chat(DET))))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(mock.request_count(), 1, "followers wait for the leader");
    let leader = leader.await.unwrap().unwrap();
    assert_eq!(leader.status(), 500);
    for follower in join_all(followers).await {
        let res = follower.unwrap();
        assert_eq!(res.status(), 200, "a failed leader is never shared");
        assert_eq!(cache_status(&res), "miss");
        bytes(res).await;
    }
    assert_eq!(mock.request_count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_finish_when_the_leaders_client_leaves() {
    let (svc, mock) = setup();
    let held = || with_header(chat(DET_STREAM), "x-mock-hold-last", "true");
    let leader = svc.clone().oneshot(held()).await.unwrap();
    let follower = svc.clone().oneshot(held()).await.unwrap();
    assert_eq!(cache_status(&follower), "hit");
    drop(leader); // the first client goes away mid-stream
    let reading = tokio::spawn(bytes(follower));
    mock.release_held(1);
    let body = reading.await.unwrap();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        mock.streams_cancelled(),
        0,
        "the upstream call was not cancelled"
    );
    until(|| mock.streams_completed() == 1).await;
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_leader_that_leaves_cancels_upstream() {
    let (svc, mock) = setup();
    let held = with_header(chat(DET_STREAM), "x-mock-hold-last", "true");
    let leader = svc.clone().oneshot(held).await.unwrap();
    drop(leader);
    tokio::time::timeout(Duration::from_secs(2), mock.wait_for_cancelled(1))
        .await
        .expect("the upstream stream is dropped with its only client");
    // The next identical request leads a new flight.
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "miss");
}

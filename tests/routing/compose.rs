//! Routing + Failover + `Upstream` end to end over loopback: the first channel fails,
//! the second (another dialect) answers; OpenAI and Anthropic ingress, stream and not.

use tollgate::extension::ServedBy;
use tollgate::failover::FailoverLayer;
use tollgate::outcome::{End, Outcome};
use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
use tollgate::testing::MockServer;
use tollgate::upstream::{ApiKey, Target, Upstream};
use tower::{ServiceBuilder, ServiceExt};

use super::{bytes, chat, header, messages};

#[tokio::test]
async fn failing_channel_then_translated_channel() {
    let openai = MockServer::start().await.unwrap();
    let anthropic = MockServer::start().await.unwrap();
    openai.provider().set_script([("x-mock-status", "503")]);
    let router = Router::builder()
        .channel(
            Channel::builder(
                "openai-1",
                Target::openai_compatible("openai", &openai.base_url()).unwrap(),
            )
            .key(ApiKey::new("sk-openai-key"))
            .model_as("smart", "gpt-x")
            .priority(0),
        )
        .channel(
            Channel::builder(
                "claude-1",
                Target::anthropic("anthropic", &anthropic.base_url()).unwrap(),
            )
            .key(ApiKey::new("sk-ant-key"))
            .model_as("smart", "claude-x")
            .priority(1),
        )
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router.clone()))
        .layer(FailoverLayer::new())
        .service(Upstream::builder().build());

    for (anthropic_ingress, stream) in [(false, false), (false, true), (true, false), (true, true)]
    {
        let req = if anthropic_ingress {
            messages("smart", stream)
        } else {
            chat("smart", stream)
        };
        let res = svc.clone().oneshot(req).await.unwrap();
        let case = format!("anthropic ingress {anthropic_ingress}, stream {stream}");
        assert_eq!(res.status(), 200, "{case}");
        assert_eq!(header(&res, "x-tollgate-target"), "claude-1", "{case}");
        assert_eq!(header(&res, "x-tollgate-attempts"), "2", "{case}");
        let served = res.extensions().get::<ServedBy>().unwrap().clone();
        assert_eq!(&*served.provider, "claude-1");
        assert_eq!(served.model.as_deref(), Some("claude-x"));
        assert_eq!(served.attempts, 2);
        let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
        let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
        if !stream {
            assert!(
                body.contains("Mock answer to: hello there"),
                "{case}: {body}"
            );
        }
        match (anthropic_ingress, stream) {
            (false, true) => assert!(body.ends_with("data: [DONE]\n\n"), "{case}: {body}"),
            (true, true) => assert!(body.contains("event: message_stop"), "{case}: {body}"),
            (false, false) => assert!(body.contains("\"chat.completion\""), "{case}: {body}"),
            (true, false) => assert!(body.contains("\"type\":\"message\""), "{case}: {body}"),
        }
        let report = outcome.resolved().await;
        assert_eq!(report.end, End::Complete, "{case}");
        assert!(report.usage.is_some(), "{case}");
    }
    // What each provider received: its own key and its own model name.
    let sent = &anthropic.provider().requests()[0];
    assert_eq!(sent.headers["x-api-key"], "sk-ant-key");
    assert!(String::from_utf8_lossy(&sent.body).contains("\"claude-x\""));
    let sent = &openai.provider().requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-openai-key");
    assert!(String::from_utf8_lossy(&sent.body).contains("\"gpt-x\""));
    // Usage counters per key, from the outcomes.
    let keys = router.channel("claude-1").unwrap().key_stats();
    assert_eq!(keys[0].successes, 4);
    assert!(keys[0].completion_tokens > 0);
}

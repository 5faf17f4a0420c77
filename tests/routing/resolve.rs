//! Model resolution: exact names, mapping, aliases, `provider/model`, `model:provider`,
//! `auto`, unknown models and nothing healthy, in the client's dialect.

use http::{Request, Response};
use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
use tollgate::upstream::{ApiKey, Target};
use tollgate::Body;
use tower::{ServiceBuilder, ServiceExt};

use super::{chat, json, messages, target};

fn router() -> Router {
    Router::builder()
        .channel(
            Channel::builder("azure-east", target("azure"))
                .key(ApiKey::new("k1"))
                .model_as("gpt-4o", "my-deployment")
                .priority(0),
        )
        .channel(
            Channel::builder("openai", target("openai"))
                .model("gpt-4o")
                .model("gpt-4o-mini")
                .any_model()
                .priority(1),
        )
        .channel(
            Channel::builder(
                "claude",
                Target::anthropic("anthropic", "http://127.0.0.1:9/v1").unwrap(),
            )
            .model("claude-sonnet-4")
            .auto(false)
            .priority(2),
        )
        .alias("smart", ["claude-sonnet-4", "gpt-4o-mini:openai"])
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap()
}

/// (channel, model sent upstream or "-") of each candidate.
fn order(router: &Router, model: &str) -> Vec<(String, String)> {
    router
        .resolve(model)
        .unwrap()
        .iter()
        .map(|c| {
            let sent = c.target().model().unwrap_or("-").to_owned();
            (c.channel().id().to_owned(), sent)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn every_form_of_model_name_resolves() {
    let router = router();
    assert_eq!(
        order(&router, "gpt-4o"),
        pairs(&[("azure-east", "my-deployment"), ("openai", "-")])
    );
    assert_eq!(
        order(&router, "smart"),
        pairs(&[("openai", "gpt-4o-mini"), ("claude", "claude-sonnet-4")])
    );
    assert_eq!(order(&router, "openai/o3"), pairs(&[("openai", "o3")]));
    assert_eq!(
        order(&router, "azure-east/gpt-4o"),
        pairs(&[("azure-east", "my-deployment")])
    );
    assert_eq!(
        order(&router, "gpt-4o-mini:openai"),
        pairs(&[("openai", "gpt-4o-mini")])
    );
    assert_eq!(
        order(&router, "claude-sonnet-4:anthropic"),
        pairs(&[("claude", "claude-sonnet-4")])
    );
    // `auto`: every channel that allows it, with its first model.
    assert_eq!(
        order(&router, "auto"),
        pairs(&[("azure-east", "my-deployment"), ("openai", "gpt-4o")])
    );
    // The chosen key is the channel's.
    let candidates = router.resolve("gpt-4o").unwrap();
    assert_eq!(
        candidates
            .first()
            .unwrap()
            .target()
            .api_key()
            .unwrap()
            .expose(),
        "k1"
    );
    assert_eq!(candidates.first().unwrap().target().name(), "azure-east");
}

#[test]
fn bad_configurations_are_refused() {
    let dup = Router::builder()
        .channel(Channel::builder("a", target("a")).model("m"))
        .channel(Channel::builder("a", target("b")).model("m"))
        .build();
    assert!(dup
        .unwrap_err()
        .to_string()
        .contains("duplicate channel id `a`"));
    let empty = Router::builder()
        .channel(Channel::builder("a", target("a")))
        .build();
    assert!(empty.unwrap_err().to_string().contains("serves no model"));
    let alias = Router::builder()
        .channel(Channel::builder("a", target("a")).model("m"))
        .alias("x", ["nope"])
        .build();
    assert!(alias.unwrap_err().to_string().contains("`nope`"));
}

fn echo_target() -> super::Svc {
    tower::util::BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        let target = req.extensions().get::<Target>().unwrap();
        Ok(Response::new(Body::from(target.name().to_owned())))
    }))
}

#[tokio::test]
async fn unknown_model_is_404_and_nothing_healthy_503_in_dialect() {
    let router = router();
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router.clone()))
        .service(echo_target());

    let res = svc.clone().oneshot(chat("nope", false)).await.unwrap();
    assert_eq!(res.status(), 404);
    let v = json(res).await;
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("`nope`"));

    let res = svc.clone().oneshot(messages("nope", false)).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["type"], "not_found_error");

    // Without fail-over below, routing puts the first candidate's target in.
    let res = svc.clone().oneshot(chat("gpt-4o", false)).await.unwrap();
    assert_eq!(super::bytes(res).await, "azure-east");

    router.channel("azure-east").unwrap().set_enabled(false);
    router.channel("openai").unwrap().set_enabled(false);
    let res = svc
        .clone()
        .oneshot(messages("gpt-4o", false))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let v = json(res).await;
    assert_eq!(v["error"]["type"], "overloaded_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("`gpt-4o`"), "{message}");
    assert!(message.contains("`azure-east` disabled"), "{message}");

    router.channel("openai").unwrap().set_enabled(true);
    let res = svc.clone().oneshot(chat("gpt-4o", false)).await.unwrap();
    assert_eq!(super::bytes(res).await, "openai");
}

#[tokio::test]
async fn malformed_body_is_400_before_routing() {
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router()))
        .service(echo_target());
    let req = Request::post("/v1/chat/completions")
        .body(Body::from("{not json"))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 400);
}

#[test]
fn the_longest_prefix_wins_and_the_name_goes_through() {
    let router = Router::builder()
        .channel(Channel::builder("mock", target("mock")).model_prefix("mock/"))
        .channel(Channel::builder("claude", target("claude")).model_prefix("claude-"))
        .channel(Channel::builder("claude-2", target("claude")).model_prefix("claude-"))
        .channel(
            Channel::builder("fallback", target("openai"))
                .model_prefix("")
                .model("gpt-4o"),
        )
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    assert_eq!(order(&router, "mock/echo"), pairs(&[("mock", "-")]));
    let mut claude = order(&router, "claude-opus-4");
    claude.sort();
    assert_eq!(claude, pairs(&[("claude", "-"), ("claude-2", "-")]));
    assert_eq!(order(&router, "bench-model"), pairs(&[("fallback", "-")]));
    assert_eq!(order(&router, "gpt-4o"), pairs(&[("fallback", "-")]));
    // A prefixed name goes upstream whole.
    let c = router.resolve("mock/echo").unwrap();
    assert_eq!(c.first().unwrap().model(), "mock/echo");
}

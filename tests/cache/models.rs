//! The key follows the resolved model: an alias and its target share an entry, and an
//! alias pointed elsewhere (a new configuration generation) misses.

use std::sync::Arc;

use tollgate::cache::{CacheLayer, MemoryStore};

use crate::{chat, send, setup_with, DET};

/// `DET` asking for `model`.
fn asking(model: &str) -> String {
    DET.replace("mock/echo", model)
}

#[tokio::test]
async fn an_alias_and_its_target_share_an_entry() {
    let layer = CacheLayer::new().resolve_model(|model: &str| {
        (model == "echo-alias").then(|| Arc::<str>::from("mock/echo"))
    });
    let (svc, mock) = setup_with(layer);
    assert_eq!(send(&svc, chat(&asking("echo-alias"))).await.0, "miss");
    assert_eq!(send(&svc, chat(DET)).await.0, "hit");
    assert_eq!(send(&svc, chat(&asking("echo-alias"))).await.0, "hit");
    // A name the resolver does not know stands for itself.
    assert_eq!(send(&svc, chat(&asking("mock/other"))).await.0, "miss");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn without_a_resolver_the_requested_name_is_the_model() {
    let (svc, mock) = setup_with(CacheLayer::new());
    assert_eq!(send(&svc, chat(&asking("echo-alias"))).await.0, "miss");
    assert_eq!(send(&svc, chat(DET)).await.0, "miss");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn re_pointing_an_alias_misses() {
    // Two generations share the store, as the example gateway's do across reloads.
    let store = MemoryStore::new();
    let pointing_to = |target: &'static str| {
        CacheLayer::new()
            .store(store.clone())
            .resolve_model(move |model: &str| (model == "smart").then(|| Arc::from(target)))
    };
    let (old, mock) = setup_with(pointing_to("mock/echo"));
    assert_eq!(send(&old, chat(&asking("smart"))).await.0, "miss");
    assert_eq!(send(&old, chat(&asking("smart"))).await.0, "hit");

    let (new, new_mock) = setup_with(pointing_to("mock/other"));
    assert_eq!(send(&new, chat(&asking("smart"))).await.0, "miss");
    assert_eq!(send(&new, chat(&asking("smart"))).await.0, "hit");
    // The old target's entry is still the old target's.
    assert_eq!(send(&new, chat(DET)).await.0, "hit");
    assert_eq!((mock.request_count(), new_mock.request_count()), (1, 1));
}

#[cfg(feature = "routing")]
mod router {
    use tollgate::routing::{Channel, Router};
    use tollgate::upstream::{ApiKey, Target};

    use super::*;

    fn router(smart: &[&str]) -> Router {
        let target = Target::openai_compatible("p", "http://127.0.0.1:9/v1").unwrap();
        Router::builder()
            .channel(
                Channel::builder("p", target)
                    .key(ApiKey::new("k"))
                    .model("mock/echo")
                    .model("mock/other")
                    .model_as("gpt-4o", "gpt-4o-2024-08-06")
                    .auto(true),
            )
            .alias("smart", smart.iter().copied())
            .alias("gpt4", ["gpt-4o"])
            .build()
            .unwrap()
    }

    #[test]
    fn the_router_resolves_aliases_and_auto_only() {
        let router = router(&["mock/echo", "mock/other"]);
        assert_eq!(router.resolve_model("gpt4").as_deref(), Some("gpt-4o"));
        assert_eq!(
            router.resolve_model("smart").as_deref(),
            Some("mock/echo\0mock/other")
        );
        assert_eq!(router.resolve_model("auto").as_deref(), Some("mock/echo"));
        for itself in ["gpt-4o", "mock/echo", "p/gpt-4o", "nope"] {
            assert_eq!(router.resolve_model(itself), None, "{itself}");
        }
    }

    #[tokio::test]
    async fn a_cache_given_each_generation_s_router_follows_its_aliases() {
        let store = MemoryStore::new();
        let layer = |router: Router| CacheLayer::new().store(store.clone()).resolve_model(router);
        let (old, mock) = setup_with(layer(router(&["mock/echo"])));
        assert_eq!(send(&old, chat(&asking("smart"))).await.0, "miss");
        assert_eq!(send(&old, chat(DET)).await.0, "hit");

        let (new, new_mock) = setup_with(layer(router(&["mock/other"])));
        assert_eq!(send(&new, chat(&asking("smart"))).await.0, "miss");
        assert_eq!(send(&new, chat(&asking("mock/other"))).await.0, "hit");
        assert_eq!((mock.request_count(), new_mock.request_count()), (1, 1));
    }
}

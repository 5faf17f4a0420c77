//! `/admin/channels` over the admin Router: health, enable / disable at run time, roles,
//! and no upstream key in any answer.
#![cfg(all(feature = "admin", feature = "routing"))]

use serde_json::json;
use tollgate::admin::Admin;
use tollgate::auth::{KeyAuthenticator, KeySecret, Keys, MemoryKeyStore, Role};
use tollgate::routing::{Channel, Priority, Router};
use tollgate::upstream::{ApiKey, Target};

use super::admin::send;

const MASTER: &str = "sk-admin-master-test-0003";
const CANARY: &str = "sk-canary-upstream-admin-channels-1234";

fn router() -> Router {
    let target = |name| Target::openai_compatible(name, "http://127.0.0.1:9/v1").unwrap();
    Router::builder()
        .channel(
            Channel::builder("primary", target("primary"))
                .key(ApiKey::new(CANARY))
                .model("gpt-4o")
                .priority(0),
        )
        .channel(
            Channel::builder("backup", target("backup"))
                .keys([ApiKey::new(CANARY), ApiKey::new("sk-second")])
                .model_as("gpt-4o", "my-deployment")
                .any_model()
                .priority(1),
        )
        .strategy(Priority::new())
        .build()
        .unwrap()
}

#[tokio::test]
async fn channels_are_listed_and_switched_at_run_time() {
    let keys = Keys::new(MemoryKeyStore::new());
    let auth = KeyAuthenticator::new(keys.clone()).master_key(&KeySecret::from_plaintext(MASTER));
    let router = router();
    let app = Admin::new(auth, keys.clone())
        .with_channels({
            let router = router.clone();
            move || router.clone()
        })
        .into_router();

    let (status, body) = send(&app, "GET", "/admin/channels", Some(MASTER), "").await;
    assert_eq!(status, 200, "{body}");
    let channels = body["data"].as_array().unwrap();
    assert_eq!(channels.len(), 2);
    assert_eq!(channels[0]["id"], "primary");
    assert_eq!(channels[0]["models"], json!(["gpt-4o"]));
    assert_eq!(channels[1]["models"], json!(["gpt-4o", "*"]));
    assert_eq!(
        (
            &channels[0]["enabled"],
            &channels[0]["health"],
            &channels[0]["circuit"]
        ),
        (&json!(true), &json!("healthy"), &json!("closed"))
    );
    assert_eq!(channels[1]["keys"].as_array().unwrap().len(), 2);
    assert!(!body.to_string().contains(CANARY), "never an upstream key");
    assert_eq!(
        router
            .resolve("gpt-4o")
            .unwrap()
            .first()
            .unwrap()
            .channel()
            .id(),
        "primary"
    );

    let (status, body) = send(
        &app,
        "POST",
        "/admin/channels/primary/disable",
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["enabled"]),
        (200, &json!(false)),
        "{body}"
    );
    assert_eq!(
        router
            .resolve("gpt-4o")
            .unwrap()
            .first()
            .unwrap()
            .channel()
            .id(),
        "backup",
        "a disabled channel takes no traffic"
    );
    let (_, body) = send(&app, "GET", "/admin/channels/primary", Some(MASTER), "").await;
    assert_eq!(body["enabled"], false);
    let (status, _) = send(
        &app,
        "POST",
        "/admin/channels/primary/enable",
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(router.channel("primary").unwrap().is_enabled());

    let (status, body) = send(
        &app,
        "POST",
        "/admin/channels/nope/disable",
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // A viewer reads, but may not switch channels.
    let mut spec = tollgate::auth::KeySpec::default();
    spec.role = Role::Viewer;
    let viewer = keys.create(spec).await.unwrap().secret.expose().to_owned();
    let (status, _) = send(&app, "GET", "/admin/channels", Some(&viewer), "").await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &app,
        "POST",
        "/admin/channels/backup/disable",
        Some(&viewer),
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(router.channel("backup").unwrap().is_enabled());
}

#[tokio::test]
async fn without_a_routing_table_the_route_says_so() {
    let keys = Keys::new(MemoryKeyStore::new());
    let auth = KeyAuthenticator::new(keys.clone()).master_key(&KeySecret::from_plaintext(MASTER));
    let app = Admin::new(auth, keys).into_router();
    let (status, body) = send(&app, "GET", "/admin/channels", Some(MASTER), "").await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("with_channels"));
}

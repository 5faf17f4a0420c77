//! Reload under steady load: zero failed requests while the file is swapped five times,
//! new aliases take effect, an invalid file is refused and the old one stays.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{chat, guard, Gateway, Http, TempDir};

fn config(generation: usize) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[limits.models]
"mock/v{generation}" = {{ rpm = 100000 }}
[models]
live = "mock/v{generation}"
new-{generation} = "mock/echo"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let dir = TempDir::new("reload");
    dir.write("gateway.toml", &config(0));
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
    ]);
    let http = Http::new(&gateway.url);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (http, stop, ok, failures, served) = (
            http.clone(),
            stop.clone(),
            ok.clone(),
            failures.clone(),
            served.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = http.post("/v1/chat/completions", &[], &chat("live")).await;
                if answer.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                    let model = answer.json()["model"].as_str().unwrap_or("").to_owned();
                    served.lock().unwrap().insert(model);
                } else {
                    failures
                        .lock()
                        .unwrap()
                        .push((answer.status, answer.text()));
                }
            }
        }));
    }

    let listed = |http: Http, model: String| async move {
        let models = http.get("/v1/models", &[]).await.json();
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == model.as_str())
    };
    for generation in 1..=5 {
        // Let some traffic run on the current configuration.
        let before = ok.load(Ordering::Relaxed);
        guard(async {
            while ok.load(Ordering::Relaxed) < before + 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        dir.write("gateway.toml", &config(generation));
        gateway.signal("HUP");
        let name = format!("new-{generation}");
        guard(async {
            while !listed(http.clone(), name.clone()).await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let fresh = http.post("/v1/chat/completions", &[], &chat(&name)).await;
        assert_eq!(fresh.status, 200, "the new alias {name} works at once");
        assert!(!listed(http.clone(), format!("new-{}", generation - 1)).await);
    }

    // An invalid file is refused; the running configuration stays.
    dir.write("gateway.toml", "[models]\nlive = 3\n");
    gateway.signal("HUP");
    gateway.wait_for_log("configuration reload refused").await;
    assert!(
        gateway.log().contains("models.live"),
        "the log names the field"
    );
    let still = http.post("/v1/chat/completions", &[], &chat("live")).await;
    assert_eq!(still.status, 200);
    assert_eq!(still.json()["model"], "mock/v5");

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        guard(client).await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:?}"
    );
    let served = served.lock().unwrap();
    assert!(ok.load(Ordering::Relaxed) >= 100);
    assert!(
        served.contains("mock/v0") && served.contains("mock/v5"),
        "the alias moved under load: {served:?}"
    );
    assert!(gateway.stop());
}

/// Without a signal: the file's modification time is watched (checked every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_picked_up_without_a_signal() {
    let dir = TempDir::new("mtime");
    dir.write("gateway.toml", &config(0));
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
    ]);
    let http = Http::new(&gateway.url);
    assert_eq!(
        http.post("/v1/chat/completions", &[], &chat("new-7"))
            .await
            .status,
        404
    );
    // A modification time surely different from the first file's, even on file
    // systems that keep whole seconds.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    dir.write("gateway.toml", &config(7));
    std::fs::File::options()
        .write(true)
        .open(dir.path("gateway.toml"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    gateway.wait_for_log("file changed").await;
    let answer = http.post("/v1/chat/completions", &[], &chat("new-7")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(gateway.stop());
}

/// `[auth]` follows a reload: a key added to `[[auth.keys]]` works at once, a removed one
/// is refused at once (no cache delay), a new master key replaces the old one for the
/// API and the admin routes; fields read only at start (here the log format and
/// `stores.redis_url`) keep their running value, and the warning names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_auth_keys_and_master_key_apply_at_once() {
    let dir = TempDir::new("reload-auth");
    let file = |master: &str, keys: &[(&str, &str)], extra: &str| {
        let mut text = format!("{extra}\n[auth]\nmaster_key = \"{master}\"\n");
        for (id, key) in keys {
            text.push_str(&format!("[[auth.keys]]\nid = \"{id}\"\nkey = \"{key}\"\n"));
        }
        text
    };
    let (master_1, master_2) = (
        "sk-test-master-key-first-0000000",
        "sk-test-master-key-second-000000",
    );
    let (key_a, key_b) = (
        "tg-file-key-a-0123456789abcdef",
        "tg-file-key-b-0123456789abcdef",
    );
    dir.write("gateway.toml", &file(master_1, &[("a", key_a)], ""));
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
    ]);
    let http = Http::new(&gateway.url);
    let status = |key: &'static str| {
        let http = http.clone();
        async move {
            http.post(
                "/v1/chat/completions",
                &[("authorization", &format!("Bearer {key}"))],
                &chat("mock/echo"),
            )
            .await
            .status
        }
    };
    let admin = |key: &'static str| {
        let http = http.clone();
        async move {
            http.get(
                "/admin/keys",
                &[("authorization", &format!("Bearer {key}"))],
            )
            .await
            .status
        }
    };
    assert_eq!(status(key_a).await, 200);
    assert_eq!(
        status(key_b).await,
        401,
        "not configured yet (and now cached as unknown)"
    );
    assert_eq!(admin(master_1).await, 200);

    // Key a removed, key b added, a new master key; the log format and the Redis URL
    // changed too.
    dir.write(
        "gateway.toml",
        &file(
            master_2,
            &[("b", key_b)],
            "[observability]\nlog_format = \"json\"\n[stores]\nredis_url = \"redis://127.0.0.1:1\"",
        ),
    );
    gateway.signal("HUP");
    gateway.wait_for_log("configuration reloaded").await;
    assert_eq!(status(key_b).await, 200, "the added key works at once");
    assert_eq!(
        status(key_a).await,
        401,
        "the removed key is refused at once"
    );
    assert_eq!(
        admin(master_2).await,
        200,
        "the new master key opens the admin API"
    );
    assert_eq!(admin(master_1).await, 401, "the old master key is refused");
    assert_eq!(status(master_2).await, 200);
    let log = gateway.log();
    for field in ["`observability.log_format`", "`stores.redis_url`"] {
        assert!(log.contains(field), "the warning names {field}: {log}");
    }
    // The running values stay: still serving here, rate limits still in memory.
    let config = http
        .get(
            "/admin/config",
            &[("authorization", &format!("Bearer {master_2}"))],
        )
        .await
        .json();
    assert_ne!(config["listen"], "127.0.0.1:1");
    assert!(config["stores"]["redis_url"].is_null(), "{config}");

    // Turning authentication off is read only at start: the master key stays.
    dir.write("gateway.toml", "");
    gateway.signal("HUP");
    guard(async {
        while gateway.log().matches("configuration reloaded").count() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gateway.log().contains("`auth.master_key`"));
    assert_eq!(status(master_2).await, 200);
    assert_eq!(status(key_b).await, 401, "the file has no keys any more");
    let open = http
        .post("/v1/chat/completions", &[], &chat("mock/echo"))
        .await;
    assert_eq!(open.status, 401, "still authenticated");
    assert!(gateway.stop());
}

/// The response cache keys by the model an alias resolves to in the running
/// configuration: the alias and its target share an entry, and a reload that re-points
/// the alias misses instead of replaying the old model's answer (issue 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_follows_a_re_pointed_alias() {
    let dir = TempDir::new("cache-alias");
    dir.write("gateway.toml", &config(0));
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
    ]);
    let http = Http::new(&gateway.url);
    // Temperature 0: cached under the default policy.
    let ask = |model: &str| {
        serde_json::json!({"model": model, "temperature": 0,
            "messages": [{"role": "user", "content": "same question"}]})
        .to_string()
    };
    let send = |model: &'static str| {
        let (http, body) = (http.clone(), ask(model));
        async move {
            let answer = http.post("/v1/chat/completions", &[], &body).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            let cache = answer.header("x-tollgate-cache").unwrap_or("").to_owned();
            (
                cache,
                answer.json()["model"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    assert_eq!(send("live").await, ("miss".into(), "mock/v0".into()));
    assert_eq!(send("mock/v0").await, ("hit".into(), "mock/v0".into()));
    assert_eq!(send("live").await, ("hit".into(), "mock/v0".into()));

    dir.write("gateway.toml", &config(1));
    gateway.signal("HUP");
    gateway.wait_for_log("configuration reloaded").await;
    assert_eq!(send("live").await, ("miss".into(), "mock/v1".into()));
    assert_eq!(send("live").await, ("hit".into(), "mock/v1".into()));
    // The old target's answer is still its own.
    assert_eq!(send("mock/v0").await, ("hit".into(), "mock/v0".into()));
    assert!(gateway.stop());
}

//! Request ids, `/metrics`, `--check-config`, `/admin/config`, and a canary upstream key
//! that must never show anywhere.

use std::process::Command;

use prometheus_parse::{Scrape, Value};
use tollgate::testing::MockServer;

use crate::harness::{chat, Gateway, Http, TempDir};

fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => panic!("no summaries"),
    })
}

/// Every answer carries `x-request-id` (a client's own is kept), and the traffic shows
/// in `/metrics`, parsed as Prometheus text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_everywhere_and_metrics_after_traffic() {
    let dir = TempDir::new("ids");
    let gateway = Gateway::start(&[("TOLLGATE_DB", &dir.path("t.db"))]);
    let http = Http::new(&gateway.url);

    let answers = [
        http.post("/v1/chat/completions", &[], &chat("mock/echo"))
            .await,
        http.post("/v1/chat/completions", &[], &chat("no-such-model"))
            .await,
        http.post("/v1/chat/completions", &[], "{broken").await,
        http.get("/v1/chat/completions", &[]).await,
        http.get("/nowhere", &[]).await,
        http.get("/health", &[]).await,
        http.get("/v1/models", &[]).await,
        http.get("/ready", &[]).await,
    ];
    let statuses: Vec<_> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 404, 400, 405, 404, 200, 200, 200]);
    let mut ids = std::collections::HashSet::new();
    for answer in &answers {
        let id = answer.header("x-request-id").expect("x-request-id");
        assert!(!id.is_empty());
        assert!(ids.insert(id.to_owned()), "ids are unique: {id}");
    }
    let mine = http
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "my-trace-42")],
            &chat("mock/echo"),
        )
        .await;
    assert_eq!(mine.header("x-request-id"), Some("my-trace-42"));

    // SIGHUP without a configuration file: logged, and the gateway keeps serving.
    gateway.signal("HUP");
    gateway.wait_for_log("nothing to reload").await;
    assert_eq!(http.get("/health", &[]).await.status, 200);

    let scrape = http.get("/metrics", &[]).await;
    assert_eq!(scrape.status, 200);
    assert!(scrape.header("x-request-id").is_some());
    assert!(scrape
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = scrape.text();
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let chat_route = ("route", "/chat/completions");
    // Both mock/echo answers reached the provider (temperature unset: not cached).
    assert_eq!(
        sample(
            &s,
            "tollgate_requests_total",
            &[
                chat_route,
                ("model", "mock/echo"),
                ("provider", "mock"),
                ("status", "200")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &s,
            "tollgate_rejections_total",
            &[chat_route, ("reason", "model_not_found")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &s,
            "tollgate_rejections_total",
            &[chat_route, ("reason", "invalid_request")]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &s,
            "tollgate_tokens_total",
            &[("model", "mock/echo"), ("type", "output")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &s,
            "gen_ai_client_operation_duration_seconds",
            &[("gen_ai_request_model", "mock/echo"), ("error_type", "")]
        ),
        Some(2.0)
    );
    // The ledger's own counters are read at each scrape.
    assert!(
        sample(&s, "tollgate_ledger_written_total", &[]).is_some(),
        "{text}"
    );
    assert_eq!(sample(&s, "tollgate_ledger_spooled_total", &[]), Some(0.0));
    // The mock's three channels, all taking traffic.
    assert_eq!(
        sample(&s, "tollgate_channels_healthy", &[]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(sample(&s, "tollgate_channels_circuit_open", &[]), Some(0.0));
    assert_eq!(sample(&s, "tollgate_channels_down", &[]), Some(0.0));
    assert!(gateway.stop(), "exits 0 on SIGTERM");
}

/// `gateway --check-config FILE`: 0 for a valid file, 1 with the field's path otherwise.
#[test]
fn check_config_validates_without_serving() {
    let dir = TempDir::new("check");
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join("gateway");
    dir.write(
        "good.toml",
        "[[channels]]\nid = \"a\"\nprovider = \"openai\"\nmodels = [\"gpt-4o\"]\n[models]\nfast = \"gpt-4o\"\n",
    );
    dir.write(
        "bad.toml",
        "[[channels]]\nid = \"a\"\nprovider = \"openai\"\nmodels = [\"gpt-4o\"]\n[routing]\nstrategy = \"fastest\"\n",
    );
    let good = Command::new(&bin)
        .args(["--check-config", &dir.path("good.toml")])
        .output()
        .unwrap();
    assert!(good.status.success(), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).contains("valid (1 channels, 1 model aliases)"));
    let bad = Command::new(&bin)
        .args(["--check-config", &dir.path("bad.toml")])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("bad.toml: routing.strategy: unknown variant `fastest`"),
        "{err}"
    );
    assert!(bad.stdout.is_empty(), "it did not serve");
}

const CANARY: &str = "sk-canary-7f3a9c1e5b2d4f6a8c0e1d3b";
const MASTER: &str = "sk-master-for-the-canary-test";

fn canary_config(mock: &MockServer, alias: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[auth]
master_key = "${{TG_TEST_MASTER}}"
[[channels]]
id = "canary"
provider = "openai"
base_url = "{base}"
api_keys = ["${{TG_TEST_CANARY}}", "${{TG_TEST_CANARY}}-2"]
models = ["gpt-canary"]
[[channels]]
id = "canary-anthropic"
provider = "anthropic"
base_url = "{base}"
api_keys = ["${{TG_TEST_CANARY}}"]
models = ["claude-canary"]
[models]
{alias} = "gpt-canary"
"#,
        base = mock.base_url()
    )
}

/// A canary upstream key configured on channels appears in zero bytes of responses
/// (success, stream, upstream errors), logs (JSON), `/metrics` and `/admin/config`,
/// across a reload and a refused reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_key_never_leaks() {
    let mock = MockServer::start().await.unwrap();
    let dir = TempDir::new("canary");
    dir.write("gateway.toml", &canary_config(&mock, "canary-alias"));
    let config = dir.path("gateway.toml");
    let db = dir.path("t.db");
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &config),
        ("TOLLGATE_DB", &db),
        ("TOLLGATE_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug,hyper=info,h2=info,sqlx=info"),
        ("TG_TEST_MASTER", MASTER),
        ("TG_TEST_CANARY", CANARY),
    ]);
    let http = Http::new(&gateway.url);
    let auth = format!("Bearer {MASTER}");
    let auth = [("authorization", auth.as_str())];
    let mut seen = Vec::new();

    let ok = http
        .post("/v1/chat/completions", &auth, &chat("gpt-canary"))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("x-tollgate-target"), Some("canary"));
    let via_alias = http
        .post("/v1/chat/completions", &auth, &chat("canary-alias"))
        .await;
    assert_eq!(via_alias.status, 200);
    let translated = http
        .post("/v1/chat/completions", &auth, &chat("claude-canary"))
        .await;
    assert_eq!(translated.status, 200, "{}", translated.text());
    let stream = http
        .post(
            "/v1/chat/completions",
            &auth,
            &serde_json::json!({"model": "gpt-canary", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        )
        .await;
    assert!(stream.text().contains("[DONE]"));
    for status in ["401", "500", "429"] {
        let failed = http
            .post(
                "/v1/chat/completions",
                &[auth[0], ("x-mock-status", status)],
                &chat("gpt-canary"),
            )
            .await;
        assert!(failed.status >= 400, "{status}: {}", failed.text());
        seen.push(failed);
    }
    let admin = http.get("/admin/config", &auth).await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    let shown = admin.json();
    assert_eq!(shown["channels"][0]["id"], "canary");
    assert_eq!(shown["channels"][0]["api_keys"][0], "<redacted>");
    assert_eq!(shown["auth"]["master_key"], "<redacted>");
    assert_eq!(
        http.get("/admin/config", &[]).await.status,
        401,
        "admin only"
    );

    // Reload with a new alias, then a refused reload (unknown field).
    dir.write("gateway.toml", &canary_config(&mock, "reloaded-alias"));
    gateway.signal("HUP");
    gateway.wait_for_log("configuration reloaded").await;
    let after = http
        .post("/v1/chat/completions", &auth, &chat("reloaded-alias"))
        .await;
    assert_eq!(after.status, 200, "{}", after.text());
    dir.write(
        "gateway.toml",
        &format!(
            "{}\nunexpected = \"${{TG_TEST_CANARY}}\"\n",
            canary_config(&mock, "x")
        ),
    );
    gateway.signal("HUP");
    gateway.wait_for_log("configuration reload refused").await;
    let still = http
        .post("/v1/chat/completions", &auth, &chat("reloaded-alias"))
        .await;
    assert_eq!(still.status, 200, "the running configuration stays");

    let metrics = http.get("/metrics", &[]).await;
    assert!(metrics.text().contains("tollgate_requests_total"));
    seen.extend([
        ok, via_alias, translated, stream, admin, after, still, metrics,
    ]);
    let log = gateway.log.clone();
    assert!(gateway.stop(), "exits 0 on SIGTERM");
    let log = log.lock().unwrap().clone();

    // The key was really used: the mock saw it on the wire, in both dialects' headers.
    let sent: Vec<_> = mock
        .provider()
        .requests()
        .iter()
        .flat_map(|r| r.headers.iter())
        .filter(|(_, v)| v.to_str().is_ok_and(|v| v.contains(CANARY)))
        .map(|(name, _)| name.as_str().to_owned())
        .collect();
    assert!(sent.iter().any(|h| h == "authorization"), "{sent:?}");
    assert!(sent.iter().any(|h| h == "x-api-key"), "{sent:?}");

    for answer in &seen {
        let bytes = answer.all_bytes();
        assert!(
            !bytes.contains("canary-7f3a"),
            "a response leaked the key: {bytes}"
        );
    }
    assert!(
        !log.contains("canary-7f3a"),
        "the log leaked the key:\n{log}"
    );
    assert!(!log.contains(MASTER), "the log leaked the master key");
    // JSON logs: one object per line, one access line per request with its id.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| v["fields"]["message"] == "request")
        .collect();
    assert!(access.len() >= seen.len(), "{} access lines", access.len());
    for answer in &seen {
        let id = answer.header("x-request-id").unwrap();
        let lines = access
            .iter()
            .filter(|v| v["span"]["request_id"] == id)
            .count();
        assert_eq!(lines, 1, "one access line for request {id}");
    }
}

/// `[guardrails] pii = "redact"` in the configuration file: prompts and streamed answers
/// reach neither the provider nor the client with the address in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_guardrail_from_the_configuration() {
    let dir = TempDir::new("pii");
    dir.write("gateway.toml", "[guardrails]\npii = \"redact\"\n");
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
    ]);
    let http = Http::new(&gateway.url);
    let body = |stream: bool| {
        serde_json::json!({"model": "mock/echo", "stream": stream,
            "messages": [{"role": "user", "content": "write to bob.smith@example.com"}]})
        .to_string()
    };
    let whole = http.post("/v1/chat/completions", &[], &body(false)).await;
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        "Mock answer to: write to [EMAIL]"
    );
    let stream = http
        .post(
            "/v1/chat/completions",
            &[("x-mock-chunks", "9")],
            &body(true),
        )
        .await;
    assert!(stream.text().contains("[DONE]"));
    assert!(!stream.text().contains("bob.smith"));
    assert!(gateway.stop());
}

/// `[[auth.keys]]`: a key given by its value (from the environment) and one by its
/// SHA-256 work next to the keys the admin API creates; they are listed, read-only
/// through the API, limited to their models, and neither value nor hash shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_from_the_configuration_file() {
    use sha2::Digest;
    let dir = TempDir::new("keys");
    let hashed = "tg-hashed-key-from-the-file-0123456789";
    let digest: String = sha2::Sha256::digest(hashed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.write(
        "gateway.toml",
        &format!(
            r#"
            [auth]
            master_key = "${{TEST_MASTER}}"
            [[auth.keys]]
            id = "app"
            key = "${{TEST_APP_KEY}}"
            team = "search"
            models = ["mock/*"]
            [[auth.keys]]
            id = "hashed"
            key_sha256 = "{digest}"
            role = "viewer"
            "#
        ),
    );
    let master = "sk-test-master-key-000000000000";
    let app_key = "tg-app-key-from-the-environment-42";
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
        ("TEST_MASTER", master),
        ("TEST_APP_KEY", app_key),
    ]);
    let http = Http::new(&gateway.url);
    let bearer = |key: &str| format!("Bearer {key}");
    let ok = http
        .post(
            "/v1/chat/completions",
            &[("authorization", &bearer(app_key))],
            &chat("mock/echo"),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let other_model = http
        .post(
            "/v1/chat/completions",
            &[("authorization", &bearer(app_key))],
            &chat("gpt-4o"),
        )
        .await;
    assert_eq!(other_model.status, 403, "{}", other_model.text());
    let wrong = http
        .post(
            "/v1/chat/completions",
            &[("authorization", &bearer("tg-not-configured-key-0000"))],
            &chat("mock/echo"),
        )
        .await;
    assert_eq!(wrong.status, 401);
    // The hashed key is a viewer: it may read the admin API.
    let list = http
        .get("/admin/keys", &[("authorization", &bearer(hashed))])
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    let ids: Vec<String> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["app", "hashed"]);
    assert!(!list.text().contains(app_key) && !list.text().contains(&digest));
    // Read-only through the API: change them in the file.
    let revoke = http
        .send(http.request(
            http::Method::DELETE,
            "/admin/keys/app",
            &[("authorization", &bearer(master))],
            "",
        ))
        .await;
    assert_eq!(revoke.status, 409, "{}", revoke.text());
    assert!(
        revoke.text().contains("configuration file"),
        "{}",
        revoke.text()
    );
    let still = http
        .post(
            "/v1/chat/completions",
            &[("authorization", &bearer(app_key))],
            &chat("mock/echo"),
        )
        .await;
    assert_eq!(
        still.status, 200,
        "a fixed key is not revoked through the API"
    );
    let log = gateway.log();
    assert!(gateway.stop());
    assert!(!log.contains(app_key), "the key is in the log");
}

//! Starts the example gateway and drives it with the official `openai` and `anthropic`
//! Python SDKs (`tests/sdk/*.py`), across every dialect pair the mock serves.
//!
//! The SDKs come from `.venv` (made by `.ci/run`) or `TOLLGATE_PYTHON`. Without one the
//! test is skipped with a printed reason, unless `TOLLGATE_REQUIRE_SDK=1` (CI sets it),
//! in which case it fails.
//!
//! Afterwards the gateway is stopped with SIGTERM (it flushes its usage ledger) and the
//! ledger is read back: one exact, priced record per successful answer.
#![cfg(all(
    feature = "upstream",
    feature = "testing",
    feature = "ratelimit",
    feature = "redis",
    feature = "auth",
    feature = "admin",
    feature = "sqlite",
    feature = "postgres"
))]

mod support;

use std::path::Path;

use support::{python, run_script, skip_unless_required, start_gateway, start_gateway_with};

/// Runs `tests/sdk/{script}` with a Python that has `module` against a fresh gateway.
fn run_sdk_script(module: &str, script: &str, test: &str) {
    let Some(python) = python(module) else {
        let reason = format!(
            "the `{module}` Python package is not installed (run .ci/run, or set TOLLGATE_PYTHON)"
        );
        return skip_unless_required(test, "TOLLGATE_REQUIRE_SDK", &reason);
    };
    let dir = std::env::temp_dir().join(format!("tollgate-sdk-{module}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tollgate.db");
    let (gateway, url) = start_gateway(&db);
    let done = format!("{module} SDK checks passed");
    run_script(&python, &format!("sdk/{script}"), &[&url], &done);
    assert!(gateway.stop(), "the gateway exits cleanly on SIGTERM");
    check_ledger(&db);
}

/// Every request the SDK made is in the ledger; every complete answer is exact and
/// priced (the mock models have a nominal price), and costs nothing when the cache
/// answered.
fn check_ledger(db: &Path) {
    use tollgate::metering::SqliteLedger;
    use tollgate::outcome::End;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = rt.block_on(async {
        let ledger = SqliteLedger::open(db)
            .await
            .expect("open the gateway's ledger");
        ledger.records().await.unwrap()
    });
    assert!(
        records.len() >= 10,
        "one record per request, got {}",
        records.len()
    );
    let complete: Vec<_> = records
        .iter()
        .filter(|r| r.status == 200 && r.end == End::Complete)
        .collect();
    assert!(!complete.is_empty());
    for r in &complete {
        // A cache hit costs nothing: no provider was paid for it.
        assert!(
            r.exact && r.priced && (r.cost.nanos() > 0) != r.cache_hit,
            "{r:?}"
        );
        assert!(r.prompt_tokens > 0, "{r:?}");
    }
    assert!(
        records.iter().any(|r| r.status == 404),
        "refusals are metered too"
    );
}

/// The `openai` SDK: `mock/...` natively, `mock-anthropic/...` and `mock-gemini/...`
/// translated (chat, streams, the two-turn tool loop, errors), usage as the mock counted.
#[test]
fn openai_python_sdk_against_the_example_gateway() {
    run_sdk_script(
        "openai",
        "openai_e2e.py",
        "openai_python_sdk_against_the_example_gateway",
    );
}

/// The `anthropic` SDK on `/v1/messages`: `mock/...` (OpenAI upstream), and the Anthropic
/// and Gemini mocks; messages, streams, tools, errors, usage as the mock counted.
#[test]
fn anthropic_python_sdk_against_the_example_gateway() {
    run_sdk_script(
        "anthropic",
        "anthropic_e2e.py",
        "anthropic_python_sdk_against_the_example_gateway",
    );
}

/// With `TOLLGATE_MASTER_KEY`: a key created through `/admin/keys` works with the
/// `openai` SDK, a wrong or revoked key raises `AuthenticationError`, and the created
/// key appears neither in the gateway's logs (at debug level) nor in its SQLite file.
#[test]
fn openai_python_sdk_with_authentication() {
    let test = "openai_python_sdk_with_authentication";
    let Some(python) = python("openai") else {
        let reason =
            "the `openai` Python package is not installed (run .ci/run, or set TOLLGATE_PYTHON)";
        return skip_unless_required(test, "TOLLGATE_REQUIRE_SDK", reason);
    };
    let dir = std::env::temp_dir().join(format!("tollgate-sdk-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tollgate.db");
    let master = "sk-e2e-master-key-0123456789";
    let (gateway, url, log) = start_gateway_with(&[
        ("TOLLGATE_MASTER_KEY", master),
        ("TOLLGATE_DB", db.to_str().unwrap()),
        ("RUST_LOG", "debug"),
    ]);
    let stdout = run_script(
        &python,
        "sdk/auth_e2e.py",
        &[&url, master],
        "openai SDK auth checks passed",
    );
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CREATED_KEY="))
        .expect("the script prints the created key")
        .to_owned();
    drop(gateway);
    let log = log.lock().unwrap().clone();
    assert!(log.contains("authentication on"), "{log}");
    for secret in [key.as_str(), &key[11..], master] {
        assert!(!log.contains(secret), "a secret is in the gateway's log");
    }
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        // SQLite may remove its -wal/-shm files as the last connection closes (after
        // checkpointing them into the main file): a file gone since listing is fine.
        if let Ok(content) = std::fs::read(entry.unwrap().path()) {
            bytes.extend(content);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("auth_keys"),
        "the keys are in the SQLite file"
    );
    assert!(
        !text.contains(&key[11..]),
        "the plaintext key is in the database"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

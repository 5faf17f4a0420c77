//! The dashboard (`/admin/ui`) of the example gateway, driven in headless Chromium by
//! `tests/dashboard/dashboard_e2e.py` (Selenium with the system `chromedriver`).
//!
//! Needs Debian's `chromium` and `chromium-driver` and a Python with `selenium` (`.venv`
//! made by `.ci/run`, or `TOLLGATE_PYTHON`); without them the test is skipped with the
//! reason, unless `TOLLGATE_REQUIRE_BROWSER=1` (CI sets it). Screenshots are saved under
//! `target/dashboard-screenshots/<test>/`.
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

use std::path::{Path, PathBuf};

use support::{python, run_script, skip_unless_required, start_gateway_with};

const TEST: &str = "dashboard_in_headless_chromium";

fn browser_tools() -> Result<PathBuf, String> {
    for (var, default) in [
        ("TOLLGATE_CHROMIUM", "/usr/bin/chromium"),
        ("TOLLGATE_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ] {
        let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        if !Path::new(&path).exists() {
            return Err(format!(
                "{path} is missing (install Debian's chromium and chromium-driver, or set {var})"
            ));
        }
    }
    python("selenium").ok_or_else(|| {
        "the `selenium` Python package is not installed (run .ci/run, or set TOLLGATE_PYTHON)"
            .to_owned()
    })
}

/// Log in (a wrong key and a developer key see nothing), an overview whose numbers
/// match scripted traffic, spend by team, a key created in the page that works and
/// stops working once revoked there, the request list, the channels page; no page
/// holds a key hash or the upstream key. The gateway's ledger agrees afterwards.
#[test]
fn dashboard_in_headless_chromium() {
    dashboard(TEST, None);
}

/// The same, with the usage ledger (and the keys) in PostgreSQL: a database of its own
/// on the server of `TOLLGATE_TEST_DATABASE_URL`, dropped afterwards.
#[test]
fn dashboard_on_a_postgresql_ledger() {
    let test = "dashboard_on_a_postgresql_ledger";
    let Some(server) = std::env::var("TOLLGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("SKIPPED {test}: TOLLGATE_TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL and sets it)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = format!("tollgate_dashboard_{}", std::process::id());
    let admin = |sql: String| {
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
        })
    };
    admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    admin(format!("CREATE DATABASE {name}"));
    let (base, _) = server.rsplit_once('/').expect("a URL with a database name");
    dashboard(test, Some(&format!("{base}/{name}")));
    admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// Runs the browser checks against a gateway with its ledger in SQLite, or in the
/// PostgreSQL database at `database_url`.
fn dashboard(test: &str, database_url: Option<&str>) {
    let python = match browser_tools() {
        Ok(python) => python,
        Err(reason) => return skip_unless_required(test, "TOLLGATE_REQUIRE_BROWSER", &reason),
    };
    let dir = std::env::temp_dir().join(format!("tollgate-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("tollgate.db");
    let master = "sk-dashboard-master-key-0123456789";
    // An upstream key the gateway holds but no page may ever show.
    let canary = "sk-canary-upstream-dashboard-7f3a9c";
    let mut envs = vec![
        ("TOLLGATE_MASTER_KEY", master),
        ("TOLLGATE_DB", db.to_str().unwrap()),
        ("OPENAI_API_KEY", canary),
    ];
    envs.extend(database_url.map(|url| ("TOLLGATE_DATABASE_URL", url)));
    let (gateway, url, log) = start_gateway_with(&envs);
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/dashboard-screenshots")
        .join(test);
    std::fs::create_dir_all(&artifacts).unwrap();
    run_script(
        &python,
        "dashboard/dashboard_e2e.py",
        &[&url, master, artifacts.to_str().unwrap(), canary],
        "dashboard checks passed",
    );
    for shot in [
        "login-refused",
        "overview",
        "spend",
        "key-created",
        "requests",
        "channel-disabled",
    ] {
        let png = artifacts.join(format!("{shot}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 1000,
            "{} is a screenshot",
            png.display()
        );
    }
    assert!(gateway.stop(), "the gateway exits cleanly on SIGTERM");
    assert!(
        !log.lock().unwrap().contains(canary),
        "the upstream key is in the log"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = rt.block_on(async {
        let ledger = tollgate::metering::DatabaseLedger::open(database_url, &db)
            .await
            .unwrap();
        ledger.records().await.unwrap()
    });
    assert_eq!(
        records.len(),
        8,
        "the five scripted requests, the browser key's, and two around the disabled channel"
    );
    assert_eq!(records.iter().filter(|r| r.cache_hit).count(), 1);
    assert_eq!(records.iter().filter(|r| r.status == 503).count(), 1);
    assert_eq!(records.iter().filter(|r| r.status >= 400).count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

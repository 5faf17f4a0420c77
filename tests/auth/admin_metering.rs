//! `/admin/usage` and `/admin/balances` over the admin Router, on a real SQLite ledger.
#![cfg(all(feature = "admin", feature = "metering", feature = "sqlite"))]

use super::admin::send;
use http::StatusCode;
use serde_json::json;
use tollgate::admin::Admin;
use tollgate::auth::{KeyAuthenticator, KeySecret, Keys, MemoryKeyStore};
use tollgate::metering::{Account, Accounts, Ledger, Money, SqliteLedger, UsageRecord};

const MASTER: &str = "sk-admin-master-test-0002";

fn record(id: usize, key: &str, model: &str, day: i64, cost_nanos: i64) -> UsageRecord {
    serde_json::from_value(json!({
        "id": format!("admin-{id}"), "time_ms": day * 86_400_000 + 5, "key_id": key, "team": "red",
        "requested_model": model, "provider": "mock", "model": model, "attempts": 1,
        "prompt_tokens": 10, "completion_tokens": 4, "cached_tokens": 1, "cache_write_tokens": 0,
        "cost": Money::from_nanos(cost_nanos).to_string(), "priced": true, "latency_us": 10,
        "ttfb_us": 5, "status": 200, "end": "complete", "cache_hit": false, "exact": true
    }))
    .unwrap()
}

async fn app(name: &str) -> (axum::Router, Keys, Accounts, SqliteLedger) {
    let dir = std::env::temp_dir().join(format!("tollgate-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = SqliteLedger::open(dir.join("ledger.db")).await.unwrap();
    let keys = Keys::new(MemoryKeyStore::new());
    let auth = KeyAuthenticator::new(keys.clone()).master_key(&KeySecret::from_plaintext(MASTER));
    let accounts = Accounts::new();
    let router = Admin::new(auth, keys.clone())
        .with_usage(ledger.clone())
        .with_balances(accounts.clone(), ledger.clone())
        .into_router();
    (router, keys, accounts, ledger)
}

#[tokio::test]
async fn usage_is_aggregated_grouped_and_filtered() {
    let (app, _keys, _accounts, ledger) = app("usage").await;
    ledger.record(record(1, "k1", "mock/a", 20_000, 100));
    ledger.record(record(2, "k1", "mock/b", 20_000, 250));
    ledger.record(record(3, "k2", "mock/a", 20_001, 1_000));
    ledger.flush().await;

    let (status, body) = send(&app, "GET", "/admin/usage?group_by=model", Some(MASTER), "").await;
    assert_eq!(status, 200, "{body}");
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["group"], "mock/a");
    assert_eq!(rows[0]["requests"], 2);
    assert_eq!(rows[0]["cost"], "0.0000011", "money is a decimal string");
    assert_eq!(rows[0]["cached_tokens"], 2);

    let (_, body) = send(
        &app,
        "GET",
        "/admin/usage?key_id=k1&group_by=day",
        Some(MASTER),
        "",
    )
    .await;
    assert_eq!(body["data"][0]["requests"], 2);
    assert_eq!(body["data"][0]["group"], "2024-10-04");

    // `from` in RFC 3339 and `to` in Unix seconds select the second day only.
    let uri = "/admin/usage?from=2024-10-05T00:00:00Z&to=1728259200";
    let (_, body) = send(&app, "GET", uri, Some(MASTER), "").await;
    assert_eq!(body["data"][0]["requests"], 1);
    assert_eq!(body["data"][0]["cost"], "0.000001");

    for (uri, param) in [
        ("/admin/usage?group=model", "group"),
        ("/admin/usage?group_by=minute", "group_by"),
        ("/admin/usage?from=yesterday", "from"),
    ] {
        let (status, body) = send(&app, "GET", uri, Some(MASTER), "").await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["error"]["param"], param, "{uri}");
    }
    let (status, body) = send(&app, "GET", "/admin/usage", Some("tg-wrong"), "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].is_string());
}

#[tokio::test]
async fn usage_counts_errors_and_cache_hits_per_hour() {
    let (app, _keys, _accounts, ledger) = app("hourly").await;
    let hour = 3_600_000;
    let base = 20_000 * 86_400_000;
    let at = |id: usize, ms: i64, status: u16, end: &str, cache_hit: bool| {
        let mut r = record(id, "k1", "mock/a", 0, 10);
        r.time_ms = base + ms;
        r.status = status;
        r.end = serde_json::from_value(json!(end)).unwrap();
        r.cache_hit = cache_hit;
        ledger.record(r);
    };
    at(1, 5, 200, "complete", false);
    at(2, 10, 200, "complete", true);
    at(3, 20, 502, "complete", false);
    at(4, hour + 1, 200, "upstream_error", false);
    at(5, hour + 2, 200, "client_gone", true);
    ledger.flush().await;

    let (status, body) = send(&app, "GET", "/admin/usage?group_by=hour", Some(MASTER), "").await;
    assert_eq!(status, 200, "{body}");
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["group"], "2024-10-04T00:00");
    assert_eq!(
        (
            &rows[0]["requests"],
            &rows[0]["errors"],
            &rows[0]["cache_hits"]
        ),
        (&json!(3), &json!(1), &json!(1))
    );
    assert_eq!(rows[1]["group"], "2024-10-04T01:00");
    assert_eq!(
        (&rows[1]["errors"], &rows[1]["cache_hits"]),
        (&json!(1), &json!(1)),
        "a stream the provider broke off is an error; a client that left is not"
    );
}

#[tokio::test]
async fn requests_are_listed_newest_first_a_page_at_a_time() {
    let (app, _keys, _accounts, ledger) = app("requests").await;
    for id in 0..7 {
        // Two records share each millisecond: the id breaks the tie.
        let mut r = record(
            id,
            if id % 2 == 0 { "k1" } else { "k2" },
            "mock/a",
            20_000,
            10,
        );
        r.time_ms += (id / 2) as i64;
        ledger.record(r);
    }
    ledger.flush().await;

    let mut seen = Vec::new();
    let mut uri = "/admin/requests?limit=3".to_owned();
    loop {
        let (status, body) = send(&app, "GET", &uri, Some(MASTER), "").await;
        assert_eq!(status, 200, "{body}");
        let page = body["data"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match body["next"].as_str() {
            Some(next) => uri = format!("/admin/requests?limit=3&before={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|id| format!("admin-{id}")).collect();
    assert_eq!(seen, expected, "every record once, newest first");

    let (_, body) = send(&app, "GET", "/admin/requests?key_id=k2", Some(MASTER), "").await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admin-5", "admin-3", "admin-1"]);
    assert_eq!(body["data"][0]["cost"], "0.00000001");
    assert!(body["next"].is_null());

    for (uri, param) in [
        ("/admin/requests?limit=0", "limit"),
        ("/admin/requests?limit=501", "limit"),
        ("/admin/requests?before=yesterday", "before"),
        ("/admin/requests?group_by=day", "group_by"),
    ] {
        let (status, body) = send(&app, "GET", uri, Some(MASTER), "").await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["error"]["param"], param, "{uri}");
    }
    let (status, _) = send(&app, "GET", "/admin/requests", None, "").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn balances_are_credited_per_key_or_team_as_decimal_strings() {
    let (app, _keys, accounts, _ledger) = app("balances").await;
    let (status, created) = send(
        &app,
        "POST",
        "/admin/keys",
        Some(MASTER),
        r#"{"name":"payer","team":"red"}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, body) = send(
        &app,
        "POST",
        &format!("/admin/balances/{id}"),
        Some(MASTER),
        r#"{"amount": "1.50"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"key_id": id, "balance": "1.500000"}));
    let (_, body) = send(
        &app,
        "POST",
        &format!("/admin/balances/{id}"),
        Some(MASTER),
        r#"{"amount": "-0.25"}"#,
    )
    .await;
    assert_eq!(body["balance"], "1.250000", "negative amounts debit");
    assert_eq!(
        accounts.balance(&Account::Key(id.clone())),
        Some("1.25".parse().unwrap())
    );

    // A name that is not a key id is a team; crediting 0 opens an empty prepaid balance.
    let (status, body) = send(
        &app,
        "POST",
        "/admin/balances/red",
        Some(MASTER),
        r#"{"amount": "0"}"#,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"team": "red", "balance": "0.000000"})
        )
    );
    let (status, _) = send(&app, "GET", "/admin/balances/blue", Some(MASTER), "").await;
    assert_eq!(status, 404, "postpaid: no balance");

    for (body, param) in [
        (r#"{"amount": 1.5}"#, "amount"),
        (r#"{"amount": "1", "note": "x"}"#, "note"),
        (r#"{"amount": "1.0000000001"}"#, "amount"),
    ] {
        let (status, answer) = send(&app, "POST", "/admin/balances/red", Some(MASTER), body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"]["param"], param, "{body}");
    }
    let (status, _) = send(
        &app,
        "POST",
        "/admin/balances/red",
        None,
        r#"{"amount": "5"}"#,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        accounts.balance(&Account::Team("red".into())),
        Some(Money::ZERO),
        "refused credits change nothing"
    );
}

#[tokio::test]
async fn balances_survive_a_restart_minus_what_was_spent() {
    let (app, _keys, accounts, ledger) = app("restart").await;
    let (status, _) = send(
        &app,
        "POST",
        "/admin/balances/blue",
        Some(MASTER),
        r#"{"amount": "2"}"#,
    )
    .await;
    assert_eq!(status, 200);
    send(
        &app,
        "POST",
        "/admin/balances/blue",
        Some(MASTER),
        r#"{"amount": "-0.5"}"#,
    )
    .await;
    // Spending by the team after the credit, recorded in the ledger.
    let now_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        / 86_400_000
        + 1;
    let mut spent = record(10, "k9", "mock/a", now_day, 300_000_000);
    spent.team = Some("blue".into());
    ledger.record(spent);
    ledger.flush().await;
    drop(accounts);
    // A new process: balances are rebuilt from the stored credits and the records.
    let restored = Accounts::new();
    for (account, balance) in ledger.balances().await.unwrap() {
        restored.credit(account, balance);
    }
    assert_eq!(
        restored.balance(&Account::Team("blue".into())),
        Some("1.2".parse().unwrap())
    );
}

#[tokio::test]
async fn budgets_show_limit_spend_remaining_and_reset_per_key_and_team() {
    use tollgate::metering::{Budget, Period};
    let (app, _keys, accounts, _ledger) = app("budgets").await;
    let create = |body: serde_json::Value| {
        let app = app.clone();
        async move {
            let (status, body) =
                send(&app, "POST", "/admin/keys", Some(MASTER), &body.to_string()).await;
            assert_eq!(status, 201, "{body}");
            (
                body["id"].as_str().unwrap().to_owned(),
                body["key"].as_str().unwrap().to_owned(),
            )
        }
    };
    // A key with a budget that has not made a request yet is listed too.
    let (budgeted, _) = create(json!({"name": "b", "team": "red",
        "budget": {"amount": "1.00", "period": "daily"}}))
    .await;
    let (postpaid, _) = create(json!({"name": "p"})).await;
    let (_, viewer) = create(json!({"name": "v", "role": "viewer"})).await;
    let (_, developer) = create(json!({"name": "d"})).await;
    accounts.set_budget(
        Account::Team("red".into()),
        Budget::new("10.00".parse().unwrap(), Period::Total),
    );
    let (status, body) = send(&app, "GET", "/admin/budgets", Some(MASTER), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    let key = Account::Key(budgeted.clone());
    let team = Account::Team("red".into());
    accounts
        .reserve(&[key, team], Money::ZERO)
        .unwrap()
        .settle("0.25".parse().unwrap());

    let (status, body) = send(&app, "GET", "/admin/budgets", Some(&viewer), "").await;
    assert_eq!(status, 200, "a viewer may read budgets: {body}");
    let rows = body["data"].as_array().unwrap();
    let key_row = rows.iter().find(|r| r["scope"] == "key").unwrap();
    assert_eq!(key_row["key_id"], budgeted.as_str());
    assert_eq!(key_row["limit"], "1.000000");
    assert_eq!(key_row["period"], "daily");
    assert_eq!(key_row["spent"], "0.250000");
    assert_eq!(key_row["remaining"], "0.750000");
    assert_eq!(key_row["exhausted"], false);
    let (start, resets) = (
        key_row["period_start"].as_i64().unwrap(),
        key_row["resets_at"].as_i64().unwrap(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(start % 86_400, 0, "midnight UTC");
    assert!(start <= now && now < resets && resets - start == 86_400);
    let team_row = rows.iter().find(|r| r["scope"] == "team").unwrap();
    assert_eq!(team_row["team"], "red");
    assert_eq!(team_row["period"], "total");
    assert_eq!(team_row["spent"], "0.250000");
    assert_eq!(team_row["remaining"], "9.750000");
    assert!(team_row["resets_at"].is_null() && team_row["period_start"].is_null());

    // One account: by filter or by path; 404 for an account without a budget.
    let (_, body) = send(&app, "GET", "/admin/budgets?team=red", Some(MASTER), "").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["team"], "red");
    let uri = format!("/admin/budgets?key_id={budgeted}");
    let (_, body) = send(&app, "GET", &uri, Some(MASTER), "").await;
    assert_eq!(body["data"][0]["key_id"], budgeted.as_str());
    let uri = format!("/admin/budgets/{budgeted}");
    let (status, body) = send(&app, "GET", &uri, Some(MASTER), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["spent"], "0.250000");
    let uri = format!("/admin/budgets/{postpaid}");
    let (status, _) = send(&app, "GET", &uri, Some(MASTER), "").await;
    assert_eq!(status, 404);
    let (status, body) = send(&app, "GET", "/admin/budgets?scope=key", Some(MASTER), "").await;
    assert_eq!(
        (status.as_u16(), &body["error"]["param"]),
        (400, &json!("scope"))
    );

    // Role-checked like the other admin routes.
    let (status, _) = send(&app, "GET", "/admin/budgets", Some(&developer), "").await;
    assert_eq!(status, 403);
    let (status, _) = send(&app, "GET", "/admin/budgets", None, "").await;
    assert_eq!(status, 401);

    // Spent up: exhausted, nothing remaining.
    accounts
        .reserve(&[Account::Key(budgeted.clone())], Money::ZERO)
        .unwrap()
        .settle("0.80".parse().unwrap());
    let uri = format!("/admin/budgets/{budgeted}");
    let (_, body) = send(&app, "GET", &uri, Some(MASTER), "").await;
    assert_eq!(body["remaining"], "0.000000");
    assert_eq!(body["exhausted"], true);
}

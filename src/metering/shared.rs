//! [`RedisAccounts`]: prepaid balances and budget spend shared by a fleet, in Redis.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::account::{balance_low, crossed, Account, AccountStoreError, Accounts, Budget, Refusal};
use super::Money;

const RESERVE: &str = include_str!("lua/reserve.lua");
const SETTLE: &str = include_str!("lua/settle.lua");

fn store_error(what: &str, err: impl fmt::Display) -> AccountStoreError {
    AccountStoreError(format!("{what}: {err}"))
}

/// Prepaid balances and budget spend in Redis, so every replica of a fleet draws on the
/// same money. Give it to [`Accounts::shared`].
///
/// - **Reserve**: one Lua script checks every payer's budget and balance and holds the
///   worst case on each prepaid one, all or nothing, in one round trip before the call.
///   Concurrent requests on any number of replicas overdraw a balance by less than one
///   worst-case reservation, as on one replica.
/// - **Settle**: one script releases the holds, debits the real cost and adds it to the
///   budgets' spend; it runs off the request path. Budget events (soft threshold,
///   exhausted) and low-balance events are sent by the replica whose request crossed
///   the line, once per fleet (each replica needs the same thresholds).
/// - **Holds expire** (default 10 minutes, longer than the longest request), so the
///   reservations of a replica that died are released by themselves.
/// - **Failure**: a reservation that Redis does not answer within the timeout (default
///   50 ms) is admitted on this replica's own accounts and counted
///   ([`failures`](RedisAccounts::failures)), or refused with a 503 when built with
///   [`fail_closed`](RedisAccountsBuilder::fail_closed). A settlement that fails is logged
///   and counted; the usage record is in the ledger either way.
///
/// Keys: `PREFIX:balances` (a hash by account), `PREFIX:holds:ACCOUNT` (sorted sets of
/// live holds: what is reserved is their sum), `PREFIX:spent:ACCOUNT:PERIOD_START`
/// (expire a day after their period);
/// `PREFIX` is `tollgate:acct` by default. Amounts are integer nano-dollars; the scripts
/// compare them as Lua numbers, exact up to $9,007,199 per balance.
#[derive(Clone)]
pub struct RedisAccounts {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    hold_ttl: Duration,
    fail_closed: bool,
    reserve: Script,
    settle: Script,
    failures: AtomicU64,
    holds: AtomicU64,
    hold_base: u64,
}

impl fmt::Debug for RedisAccounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAccounts")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("fail_closed", &self.inner.fail_closed)
            .finish_non_exhaustive()
    }
}

/// Builds [`RedisAccounts`]. See [`RedisAccounts::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisAccountsBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    hold_ttl: Duration,
    fail_closed: bool,
}

impl RedisAccountsBuilder {
    /// The key prefix (default `tollgate:acct`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a reservation may wait for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an unsettled hold lasts (default 10 minutes).
    pub fn hold_ttl(mut self, ttl: Duration) -> Self {
        self.hold_ttl = ttl;
        self
    }

    /// Refuse requests (503) while Redis is unreachable, instead of admitting them on
    /// this replica's own accounts.
    pub fn fail_closed(mut self, closed: bool) -> Self {
        self.fail_closed = closed;
        self
    }

    /// Connects (and checks the server answers).
    pub async fn connect(self) -> Result<RedisAccounts, AccountStoreError> {
        let mut conn = crate::redis_conn::connect(&self.url, "balances")
            .await
            .map_err(AccountStoreError)?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| store_error("Redis did not answer PING", e))?;
        let hold_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(RedisAccounts {
            inner: Arc::new(Inner {
                conn,
                prefix: self.prefix,
                timeout: self.timeout,
                hold_ttl: self.hold_ttl,
                fail_closed: self.fail_closed,
                reserve: Script::new(RESERVE),
                settle: Script::new(SETTLE),
                failures: AtomicU64::new(0),
                holds: AtomicU64::new(0),
                hold_base,
            }),
        })
    }
}

impl RedisAccounts {
    /// A builder for the store at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisAccountsBuilder {
        RedisAccountsBuilder {
            url: url.into(),
            prefix: "tollgate:acct".into(),
            timeout: Duration::from_millis(50),
            hold_ttl: Duration::from_secs(600),
            fail_closed: false,
        }
    }

    /// Connects with the defaults.
    pub async fn connect(url: impl Into<String>) -> Result<RedisAccounts, AccountStoreError> {
        Self::builder(url).connect().await
    }

    /// Reservations Redis did not answer in time, and settlements that failed.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.inner.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Credits (negative: debits) a prepaid balance, opening it if needed; returns the
    /// new balance.
    pub async fn credit(
        &self,
        account: &Account,
        amount: Money,
    ) -> Result<Money, AccountStoreError> {
        let balance: i64 = redis::cmd("HINCRBY")
            .arg(self.key(&["balances"]))
            .arg(field(account))
            .arg(amount.nanos())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_error("crediting the shared balance failed", e))?;
        Ok(Money::from_nanos(balance))
    }

    /// Opens a balance at `amount` unless the fleet already has one (the first replica
    /// to start seeds it from the ledger); returns whether this call set it.
    pub async fn seed(&self, account: &Account, amount: Money) -> Result<bool, AccountStoreError> {
        redis::cmd("HSETNX")
            .arg(self.key(&["balances"]))
            .arg(field(account))
            .arg(amount.nanos())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_error("seeding the shared balance failed", e))
    }

    /// Sets a budget's spend for the period starting at `period_start` unless the fleet
    /// already counts it (seeded from the ledger at start).
    pub async fn seed_spend(
        &self,
        account: &Account,
        period_start: i64,
        spent: Money,
    ) -> Result<bool, AccountStoreError> {
        redis::cmd("SET")
            .arg(self.key(&["spent", &field(account), &period_start.to_string()]))
            .arg(spent.nanos())
            .arg("NX")
            .arg("PX")
            .arg(40 * 86_400_000_i64)
            .query_async::<Option<String>>(&mut self.conn())
            .await
            .map(|set| set.is_some())
            .map_err(|e| store_error("seeding the shared budget spend failed", e))
    }

    /// The balance of a prepaid account (`None`: postpaid).
    pub async fn balance(&self, account: &Account) -> Result<Option<Money>, AccountStoreError> {
        redis::cmd("HGET")
            .arg(self.key(&["balances"]))
            .arg(field(account))
            .query_async::<Option<i64>>(&mut self.conn())
            .await
            .map(|b| b.map(Money::from_nanos))
            .map_err(|e| store_error("reading the shared balance failed", e))
    }

    /// Budget spend of `account` in the period starting at `period_start`.
    pub async fn spent(
        &self,
        account: &Account,
        period_start: i64,
    ) -> Result<Money, AccountStoreError> {
        redis::cmd("GET")
            .arg(self.key(&["spent", &field(account), &period_start.to_string()]))
            .query_async::<Option<i64>>(&mut self.conn())
            .await
            .map(|s| Money::from_nanos(s.unwrap_or(0)))
            .map_err(|e| store_error("reading the shared budget spend failed", e))
    }

    fn payer_keys(&self, payers: &[Payer]) -> Vec<String> {
        let mut keys = vec![self.key(&["balances"])];
        for payer in payers {
            let name = field(&payer.account);
            keys.push(self.key(&["holds", &name]));
            keys.push(self.key(&["spent", &name, &payer.period_start.to_string()]));
        }
        keys
    }

    /// Reserves `worst` for `payers`: `Ok(None)` when Redis failed and the request
    /// should fall back to the replica's own accounts.
    pub(super) async fn reserve(
        &self,
        payers: Vec<Payer>,
        worst: Money,
    ) -> Result<Option<SharedHold>, Refusal> {
        let member = format!(
            "{:x}-{:x}",
            self.inner.hold_base,
            self.inner.holds.fetch_add(1, Ordering::Relaxed)
        );
        let mut invocation = self.inner.reserve.prepare_invoke();
        for key in self.payer_keys(&payers) {
            invocation.key(key);
        }
        invocation
            .arg(self.inner.hold_ttl.as_millis() as u64)
            .arg(&member)
            .arg(worst.nanos().max(0));
        for payer in &payers {
            invocation
                .arg(field(&payer.account))
                .arg(payer.budget.map_or(-1, |b| b.limit.nanos()));
        }
        let mut conn = self.conn();
        let answer = tokio::time::timeout(
            self.inner.timeout,
            invocation.invoke_async::<Vec<redis::Value>>(&mut conn),
        )
        .await;
        let values = match answer {
            Ok(Ok(values)) => values,
            Ok(Err(err)) => return self.unavailable(&err.to_string()),
            Err(_) => return self.unavailable("no answer within the timeout"),
        };
        let word = match values.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => return self.unavailable("an unexpected answer from the reserve script"),
        };
        let indexes: Vec<usize> = values[1..]
            .iter()
            .filter_map(|v| match v {
                redis::Value::Int(i) => usize::try_from(*i).ok(),
                _ => None,
            })
            .collect();
        let payer_at = |i: usize| payers.get(i.wrapping_sub(1)).cloned();
        match word.as_str() {
            "ok" => {
                let mut payers = payers;
                for (i, payer) in payers.iter_mut().enumerate() {
                    payer.held = indexes.contains(&(i + 1));
                }
                Ok(Some(SharedHold {
                    store: self.clone(),
                    member,
                    worst,
                    payers,
                }))
            }
            "budget" => {
                let payer = indexes.first().and_then(|i| payer_at(*i));
                match payer {
                    Some(p) => Err(Refusal::Budget {
                        account: p.account,
                        resets_ms: p.resets_ms,
                    }),
                    None => self.unavailable("a budget refusal without a payer"),
                }
            }
            "balance" => match indexes.first().and_then(|i| payer_at(*i)) {
                Some(p) => Err(Refusal::Balance(p.account)),
                None => self.unavailable("a balance refusal without a payer"),
            },
            other => self.unavailable(&format!("an unknown answer `{other}`")),
        }
    }

    fn unavailable(&self, why: &str) -> Result<Option<SharedHold>, Refusal> {
        let failures = self.inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.inner.fail_closed {
            tracing::warn!(
                failures,
                why,
                "shared balances unreachable: refusing (fail closed)"
            );
            Err(Refusal::Unavailable)
        } else {
            tracing::warn!(
                failures,
                why,
                "shared balances unreachable: admitting on this replica's own accounts (fail open)"
            );
            Ok(None)
        }
    }
}

/// `key:ID` or `team:NAME`: one hash field or key part per account.
fn field(account: &Account) -> String {
    match account {
        Account::Key(id) => format!("key:{id}"),
        Account::Team(team) => format!("team:{team}"),
    }
}

/// A payer of one request, as the scripts need it.
#[derive(Debug, Clone)]
pub(super) struct Payer {
    pub(super) account: Account,
    pub(super) budget: Option<Budget>,
    pub(super) period_start: i64,
    pub(super) resets_ms: i64,
    pub(super) held: bool,
}

/// What one request holds in Redis until it settles.
#[derive(Debug)]
pub(super) struct SharedHold {
    store: RedisAccounts,
    member: String,
    worst: Money,
    payers: Vec<Payer>,
}

impl SharedHold {
    /// Settles off the request path; budget events go to `accounts`' subscribers.
    pub(super) fn settle(self, cost: Money, accounts: &Accounts) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "a shared balance hold settled outside a Tokio runtime: its hold expires by itself"
            );
            return;
        };
        let accounts = accounts.clone();
        runtime.spawn(async move {
            let SharedHold {
                store,
                member,
                worst,
                payers,
            } = self;
            let now = accounts.now_ms();
            let mut invocation = store.inner.settle.prepare_invoke();
            for key in store.payer_keys(&payers) {
                invocation.key(key);
            }
            invocation
                .arg(&member)
                .arg(worst.nanos().max(0))
                .arg(cost.nanos().max(0));
            for payer in &payers {
                let ttl = match payer.budget {
                    None => -1,
                    Some(_) if payer.resets_ms == i64::MAX => 0,
                    // Kept a day past its period, for late settlements and reports.
                    Some(_) => (payer.resets_ms - now).max(0) + 86_400_000,
                };
                invocation
                    .arg(field(&payer.account))
                    .arg(if payer.held { "1" } else { "0" })
                    .arg(ttl);
            }
            let mut conn = store.conn();
            match invocation.invoke_async::<Vec<Option<i64>>>(&mut conn).await {
                Ok(after) => {
                    for (payer, pair) in payers.iter().zip(after.chunks(2)) {
                        let spent = pair[0].unwrap_or(-1);
                        if let (Some(budget), true) = (payer.budget, spent >= 0) {
                            let events = crossed(&payer.account, budget, spent - cost.nanos(), spent);
                            for event in events {
                                accounts.emit(event);
                            }
                        }
                        // The debit was atomic in Redis: only this settlement saw the
                        // balance cross, so the fleet sends one event.
                        if let Some(balance) = pair.get(1).copied().flatten() {
                            let after = Money::from_nanos(balance);
                            let before = Money::from_nanos(balance.saturating_add(cost.nanos()));
                            let threshold = accounts.low_balance_threshold(&payer.account);
                            if let Some(event) = balance_low(&payer.account, threshold, before, after) {
                                accounts.emit(event);
                            }
                        }
                    }
                }
                Err(err) => {
                    let failures = store.inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        failures,
                        error = %err,
                        cost = %cost,
                        "settling a shared balance failed: its hold expires by itself; the usage record is in the ledger"
                    );
                }
            }
        });
    }
}

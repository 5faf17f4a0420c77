//! Who pays, and how much is left: prepaid balances and budgets per key or team.
//!
//! Both live in memory on the request path (no database round trip per request) and
//! are decided before the call:
//!
//! - **Prepaid balance**: the request reserves its worst case (input estimate plus
//!   `max_tokens`, at the model's price); when it ends, the real cost is debited and the
//!   rest released. A request is admitted while the balance minus what is reserved is
//!   above zero, so concurrent requests overdraw by less than one worst-case reservation.
//!   At zero: 429 `insufficient_quota`. An account without a balance record is postpaid.
//! - **Budget**: a spending limit per period (UTC day, ISO week from Monday, calendar
//!   month) with a soft threshold; crossing it sends a [`BudgetEvent`] to subscribers,
//!   reaching the limit refuses requests until the next period.
//! - **Low balance**: with a threshold (per account, or a default for every prepaid
//!   one), a debit that takes a balance from at or above it to below it sends one
//!   [`BudgetEvent::BalanceLow`]. It is sent again only after a credit brought the
//!   balance back up to the threshold and a later debit crossed it again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use super::Money;

/// A paying account: a client key or a team.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// A client key, by id.
    Key(String),
    /// A team, by name.
    Team(String),
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Key(id) => write!(f, "key `{id}`"),
            Account::Team(team) => write!(f, "team `{team}`"),
        }
    }
}

/// A budget's period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// From midnight UTC.
    Daily,
    /// From Monday midnight UTC.
    Weekly,
    /// From the first of the month, midnight UTC.
    Monthly,
    /// Never resets: a lifetime cap.
    Total,
}

const DAY_MS: i64 = 86_400_000;

impl Period {
    /// The start of the period containing `now_ms` (ms since the Unix epoch).
    pub fn start(self, now_ms: i64) -> i64 {
        let day = now_ms.div_euclid(DAY_MS);
        match self {
            Period::Daily => day * DAY_MS,
            // 1970-01-01 was a Thursday: Monday is three days before day 0's week.
            Period::Weekly => (day - (day + 3).rem_euclid(7)) * DAY_MS,
            Period::Monthly => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * DAY_MS
            }
            Period::Total => i64::MIN,
        }
    }
}

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A spending limit per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Spend allowed per period.
    pub limit: Money,
    /// The period.
    pub period: Period,
    /// Percentage of the limit that sends a soft-threshold event (e.g. 80).
    pub soft_threshold_percent: u8,
}

impl Budget {
    /// A budget with an 80% soft threshold.
    pub fn new(limit: Money, period: Period) -> Budget {
        Budget {
            limit,
            period,
            soft_threshold_percent: 80,
        }
    }
}

/// A budget and its spend in the current period (see [`Accounts::budgets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStatus {
    /// Whose budget.
    pub account: Account,
    /// The budget.
    pub budget: Budget,
    /// When the current period started (ms since the epoch); `None` for a lifetime
    /// budget ([`Period::Total`]).
    pub period_start: Option<i64>,
    /// When the next period starts and the spend resets (ms since the epoch); `None`
    /// for a lifetime budget.
    pub resets_ms: Option<i64>,
    /// Spent in the current period.
    pub spent: Money,
}

impl BudgetStatus {
    /// What is left to spend in the current period (zero once the limit is reached).
    pub fn remaining(&self) -> Money {
        self.budget
            .limit
            .saturating_sub(self.spent)
            .max(Money::ZERO)
    }
}

/// Sent to [`Accounts::subscribe`] subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetEvent {
    /// Spend crossed the soft threshold in this period.
    SoftThreshold {
        /// Whose budget.
        account: Account,
        /// Spent so far in the period.
        spent: Money,
        /// The budget's limit.
        limit: Money,
    },
    /// Spend reached the limit: requests are refused until the period ends.
    Exhausted {
        /// Whose budget.
        account: Account,
        /// Spent so far in the period.
        spent: Money,
        /// The budget's limit.
        limit: Money,
    },
    /// A prepaid balance fell below its low-balance threshold (see
    /// [`Accounts::set_low_balance_threshold`]).
    BalanceLow {
        /// Whose balance.
        account: Account,
        /// The balance after the debit that crossed the threshold.
        balance: Money,
        /// The threshold.
        threshold: Money,
    },
}

/// Why a request was refused before the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The shared balance store is unreachable and configured to fail closed.
    Unavailable,
    /// The prepaid balance is used up (or fully reserved).
    Balance(Account),
    /// The budget of the current period is spent; it resets at `resets_ms`.
    Budget {
        /// Whose budget.
        account: Account,
        /// When the next period starts (ms since the epoch).
        resets_ms: i64,
    },
}

/// The current time in ms since the Unix epoch; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

#[derive(Debug, Default)]
struct State {
    balances: HashMap<Account, Balance>,
    budgets: HashMap<Account, Tracked>,
    /// Spend recorded before this process started, per period kind and account, with
    /// the start of the period it was counted from.
    prior: HashMap<(PeriodKind, Account), (i64, Money)>,
    /// Low-balance thresholds per account; `default_low` for the others.
    low: HashMap<Account, Money>,
    default_low: Option<Money>,
}

impl State {
    fn low_threshold(&self, account: &Account) -> Option<Money> {
        self.low.get(account).copied().or(self.default_low)
    }
}

/// `Period` without its data, as a map key.
type PeriodKind = std::mem::Discriminant<Period>;

#[derive(Debug, Default, Clone, Copy)]
struct Balance {
    balance: Money,
    reserved: Money,
}

#[derive(Debug)]
struct Tracked {
    budget: Budget,
    period_start: i64,
    spent: Money,
    warned: bool,
}

/// Balances and budgets of every account. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Accounts {
    state: Arc<Mutex<State>>,
    clock: Clock,
    events: broadcast::Sender<BudgetEvent>,
    #[cfg(feature = "redis")]
    shared: Option<super::shared::RedisAccounts>,
}

/// The shared account store could not be reached or answered nonsense; the message
/// says why.
#[derive(Debug)]
pub struct AccountStoreError(pub(super) String);

impl fmt::Display for AccountStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::error::Error for AccountStoreError {}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Default for Accounts {
    fn default() -> Self {
        Self::new()
    }
}

/// What a request reserved; settle it with the real cost, or drop it to release it.
#[derive(Debug)]
pub struct Hold {
    accounts: Accounts,
    reserved: Vec<(Account, Money)>,
    budgeted: Vec<Account>,
    settled: bool,
    #[cfg(feature = "redis")]
    shared: Option<super::shared::SharedHold>,
}

impl Accounts {
    /// No balances, no budgets: everyone is postpaid and unlimited.
    pub fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// With a clock of your own (tests use a fake one to cross period boundaries).
    pub fn with_clock(clock: Clock) -> Self {
        Accounts {
            state: Default::default(),
            clock,
            events: broadcast::channel(256).0,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Keeps prepaid balances and budget spend in Redis, shared by every replica that
    /// uses the same store (feature `redis`). Budget limits still come from this set
    /// ([`set_budget`](Self::set_budget), or the key's budget); reserve with
    /// [`acquire`](Self::acquire), credit with [`add_credit`](Self::add_credit).
    #[cfg(feature = "redis")]
    pub fn shared(mut self, store: super::shared::RedisAccounts) -> Self {
        self.shared = Some(store);
        self
    }

    /// The shared store, when there is one.
    #[cfg(feature = "redis")]
    pub fn shared_store(&self) -> Option<&super::shared::RedisAccounts> {
        self.shared.as_ref()
    }

    /// Reserves `worst` for `payers` like [`reserve`](Self::reserve), in the shared
    /// store when there is one (one round trip), else in this process.
    pub async fn acquire(&self, payers: &[Account], worst: Money) -> Result<Hold, Refusal> {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.shared {
            let now = (self.clock)();
            let payers: Vec<super::shared::Payer> = {
                let mut state = self.lock();
                payers
                    .iter()
                    .map(|account| {
                        let tracked = state.budgets.get_mut(account);
                        let (budget, period_start, resets_ms) = match tracked {
                            Some(t) => {
                                roll(t, now);
                                (Some(t.budget), t.period_start, next_period(t))
                            }
                            None => (None, 0, i64::MAX),
                        };
                        super::shared::Payer {
                            account: account.clone(),
                            budget,
                            period_start,
                            resets_ms,
                            held: false,
                        }
                    })
                    .collect()
            };
            let accounts: Vec<Account> = payers.iter().map(|p| p.account.clone()).collect();
            return match store.reserve(payers, worst).await? {
                Some(shared) => Ok(Hold {
                    accounts: self.clone(),
                    reserved: Vec::new(),
                    budgeted: Vec::new(),
                    settled: false,
                    shared: Some(shared),
                }),
                // Redis failed and the policy is to fail open: this replica's own view.
                None => self.reserve(&accounts, worst),
            };
        }
        self.reserve(payers, worst)
    }

    /// Credits (negative: debits) a prepaid balance: in the shared store when there is
    /// one, else in this process. Returns the new balance.
    pub async fn add_credit(
        &self,
        account: Account,
        amount: Money,
    ) -> Result<Money, AccountStoreError> {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.shared {
            let after = store.credit(&account, amount).await?;
            // The fleet's balance moved atomically: only this call saw this crossing.
            let before = Money::from_nanos(after.nanos().saturating_sub(amount.nanos()));
            let threshold = self.low_balance_threshold(&account);
            if let Some(event) = balance_low(&account, threshold, before, after) {
                self.emit(event);
            }
            return Ok(after);
        }
        Ok(self.credit(account, amount))
    }

    /// The balance of a prepaid account (`None`: postpaid), from the shared store when
    /// there is one.
    pub async fn current_balance(
        &self,
        account: &Account,
    ) -> Result<Option<Money>, AccountStoreError> {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.shared {
            return store.balance(account).await;
        }
        Ok(self.balance(account))
    }

    pub(super) fn emit(&self, event: BudgetEvent) {
        tracing::info!(?event, "budget event");
        let _ = self.events.send(event); // no subscriber is fine
    }

    /// Credits (or, negative, debits) a prepaid balance, opening it if needed; returns
    /// the new balance. Crediting zero opens an empty prepaid balance.
    pub fn credit(&self, account: Account, amount: Money) -> Money {
        let (after, event) = {
            let mut state = self.lock();
            let threshold = state.low_threshold(&account);
            let entry = state.balances.entry(account.clone()).or_default();
            let before = entry.balance;
            entry.balance = entry.balance.saturating_add(amount);
            let after = entry.balance;
            (after, balance_low(&account, threshold, before, after))
        };
        if let Some(event) = event {
            self.emit(event);
        }
        after
    }

    /// Sends a [`BudgetEvent::BalanceLow`] when a debit takes the prepaid balance of
    /// `account` below `threshold` (replaces any earlier threshold of the account).
    pub fn set_low_balance_threshold(&self, account: Account, threshold: Money) {
        self.lock().low.insert(account, threshold);
    }

    /// The low-balance threshold of every prepaid account without one of its own
    /// (`None`: no low-balance event for them). Per-account thresholds are kept.
    pub fn set_default_low_balance_threshold(&self, threshold: Option<Money>) {
        self.lock().default_low = threshold;
    }

    /// Replaces every low-balance threshold at once: the default and the per-account
    /// ones (a configuration reload uses this).
    pub fn replace_low_balance_thresholds(
        &self,
        default: Option<Money>,
        per_account: impl IntoIterator<Item = (Account, Money)>,
    ) {
        let low = per_account.into_iter().collect();
        let mut state = self.lock();
        state.low = low;
        state.default_low = default;
    }

    /// The low-balance threshold that applies to `account`, if any.
    pub fn low_balance_threshold(&self, account: &Account) -> Option<Money> {
        self.lock().low_threshold(account)
    }

    /// The balance of a prepaid account (`None`: postpaid).
    pub fn balance(&self, account: &Account) -> Option<Money> {
        self.lock().balances.get(account).map(|b| b.balance)
    }

    /// Sets (or replaces) the budget of an account; spend so far in the period is kept.
    pub fn set_budget(&self, account: Account, budget: Budget) {
        let now = (self.clock)();
        let mut state = self.lock();
        let start = budget.period.start(now);
        let prior = state
            .prior
            .get(&(std::mem::discriminant(&budget.period), account.clone()))
            .filter(|(from, _)| *from == start)
            .map_or(Money::ZERO, |(_, spent)| *spent);
        let tracked = state.budgets.entry(account).or_insert(Tracked {
            budget,
            period_start: start,
            spent: prior,
            warned: false,
        });
        if tracked.budget != budget {
            tracked.budget = budget;
            tracked.period_start = start;
        }
    }

    /// Every budget of this set (the ones [`set_budget`](Self::set_budget) made,
    /// including the keys' budgets metering set on their first request), by account,
    /// with the spend of its current period: from the shared store when there is one
    /// (the fleet's figure), else this process's.
    pub async fn budgets(&self) -> Result<Vec<BudgetStatus>, AccountStoreError> {
        let now = (self.clock)();
        let mut out: Vec<BudgetStatus> = {
            let mut state = self.lock();
            state
                .budgets
                .iter_mut()
                .map(|(account, tracked)| {
                    roll(tracked, now);
                    let total = tracked.budget.period == Period::Total;
                    BudgetStatus {
                        account: account.clone(),
                        budget: tracked.budget,
                        period_start: (!total).then_some(tracked.period_start),
                        resets_ms: (!total).then(|| next_period(tracked)),
                        spent: tracked.spent,
                    }
                })
                .collect()
        };
        out.sort_by(|a, b| a.account.cmp(&b.account));
        #[cfg(feature = "redis")]
        if let Some(store) = &self.shared {
            for status in &mut out {
                let start = status.period_start.unwrap_or(i64::MIN);
                status.spent = store.spent(&status.account, start).await?;
            }
        }
        Ok(out)
    }

    /// Spend recorded against the current period of an account's budget.
    pub fn spent(&self, account: &Account) -> Option<Money> {
        let now = (self.clock)();
        let mut state = self.lock();
        let tracked = state.budgets.get_mut(account)?;
        roll(tracked, now);
        Some(tracked.spent)
    }

    /// Adds spend made before this process started (from the ledger) to a budget's
    /// current period.
    pub fn record_spend(&self, account: &Account, amount: Money) {
        let now = (self.clock)();
        let mut state = self.lock();
        if let Some(tracked) = state.budgets.get_mut(account) {
            roll(tracked, now);
            tracked.spent = tracked.spent.saturating_add(amount);
        }
    }

    /// Spend made before this process started (read from the ledger at start), counted
    /// from `period_start`: budgets of this `period` set later start from it instead of
    /// zero, so a restart does not reset a budget.
    pub fn preload_spend(
        &self,
        period: Period,
        period_start: i64,
        spent: impl IntoIterator<Item = (Account, Money)>,
    ) {
        let mut state = self.lock();
        for (account, amount) in spent {
            if let Some(tracked) = state.budgets.get_mut(&account) {
                if tracked.budget.period == period && tracked.period_start == period_start {
                    tracked.spent = tracked.spent.saturating_add(amount);
                }
            }
            state.prior.insert(
                (std::mem::discriminant(&period), account),
                (period_start, amount),
            );
        }
    }

    /// The current time of this set's clock, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Budget and balance events (soft threshold crossed, budget exhausted, balance
    /// low).
    pub fn subscribe(&self) -> broadcast::Receiver<BudgetEvent> {
        self.events.subscribe()
    }

    /// Checks budgets and reserves `worst` on each prepaid balance, all or nothing.
    pub fn reserve(&self, payers: &[Account], worst: Money) -> Result<Hold, Refusal> {
        if payers.is_empty() {
            // Nobody to charge (an open gateway): no clock read, no lock.
            return Ok(Hold {
                accounts: self.clone(),
                reserved: Vec::new(),
                budgeted: Vec::new(),
                settled: false,
                #[cfg(feature = "redis")]
                shared: None,
            });
        }
        let now = (self.clock)();
        let mut state = self.lock();
        for account in payers {
            if let Some(tracked) = state.budgets.get_mut(account) {
                roll(tracked, now);
                if tracked.spent >= tracked.budget.limit {
                    return Err(Refusal::Budget {
                        account: account.clone(),
                        resets_ms: next_period(tracked),
                    });
                }
            }
            if let Some(b) = state.balances.get(account) {
                if b.balance.saturating_sub(b.reserved) <= Money::ZERO {
                    return Err(Refusal::Balance(account.clone()));
                }
            }
        }
        let mut reserved = Vec::new();
        let mut budgeted = Vec::new();
        for account in payers {
            if let Some(b) = state.balances.get_mut(account) {
                b.reserved = b.reserved.saturating_add(worst);
                reserved.push((account.clone(), worst));
            }
            if state.budgets.contains_key(account) {
                budgeted.push(account.clone());
            }
        }
        Ok(Hold {
            accounts: self.clone(),
            reserved,
            budgeted,
            settled: false,
            #[cfg(feature = "redis")]
            shared: None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Hold {
    /// Debits the real cost from every balance and budget this request counted
    /// against, and releases its reservations.
    pub fn settle(mut self, cost: Money) {
        self.finish(cost);
    }

    fn finish(&mut self, cost: Money) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.take() {
            shared.settle(cost, &self.accounts);
            return;
        }
        if self.reserved.is_empty() && self.budgeted.is_empty() {
            return; // held nothing
        }
        let now = (self.accounts.clock)();
        let mut events = Vec::new();
        {
            let mut state = self.accounts.lock();
            for (account, worst) in &self.reserved {
                let threshold = state.low_threshold(account);
                if let Some(b) = state.balances.get_mut(account) {
                    b.reserved = b.reserved.saturating_sub(*worst);
                    let before = b.balance;
                    b.balance = b.balance.saturating_sub(cost);
                    events.extend(balance_low(account, threshold, before, b.balance));
                }
            }
            for account in &self.budgeted {
                if let Some(t) = state.budgets.get_mut(account) {
                    roll(t, now);
                    let before = t.spent;
                    t.spent = t.spent.saturating_add(cost);
                    for event in crossed(account, t.budget, before.nanos(), t.spent.nanos()) {
                        if matches!(event, BudgetEvent::SoftThreshold { .. }) {
                            if t.warned {
                                continue;
                            }
                            t.warned = true;
                        }
                        events.push(event);
                    }
                }
            }
        }
        for event in events {
            self.accounts.emit(event);
        }
    }
}

impl Drop for Hold {
    /// A request that never got to its end costs nothing: release its reservation.
    fn drop(&mut self) {
        if !self.settled {
            self.finish(Money::ZERO);
        }
    }
}

/// The budget events of spend going from `before` to `after` (nanos): the soft
/// threshold and the limit, each when this change crosses it.
pub(super) fn crossed(
    account: &Account,
    budget: Budget,
    before: i64,
    after: i64,
) -> Vec<BudgetEvent> {
    let limit = budget.limit.nanos();
    let soft = limit / 100 * i64::from(budget.soft_threshold_percent);
    let mut events = Vec::new();
    if before < soft && after >= soft {
        events.push(BudgetEvent::SoftThreshold {
            account: account.clone(),
            spent: Money::from_nanos(after),
            limit: budget.limit,
        });
    }
    if before < limit && after >= limit {
        events.push(BudgetEvent::Exhausted {
            account: account.clone(),
            spent: Money::from_nanos(after),
            limit: budget.limit,
        });
    }
    events
}

/// The low-balance event of a balance going from `before` to `after`: only when this
/// change takes it from at or above `threshold` to below it, so a balance that stays
/// low is reported once, and again only after a credit lifted it back up.
pub(super) fn balance_low(
    account: &Account,
    threshold: Option<Money>,
    before: Money,
    after: Money,
) -> Option<BudgetEvent> {
    let threshold = threshold?;
    (before >= threshold && after < threshold).then(|| BudgetEvent::BalanceLow {
        account: account.clone(),
        balance: after,
        threshold,
    })
}

/// Moves a budget into the period containing `now`, resetting its spend.
fn roll(tracked: &mut Tracked, now: i64) {
    let start = tracked.budget.period.start(now);
    if start != tracked.period_start {
        tracked.period_start = start;
        tracked.spent = Money::ZERO;
        tracked.warned = false;
    }
}

fn next_period(tracked: &Tracked) -> i64 {
    let start = tracked.period_start;
    match tracked.budget.period {
        Period::Daily => start + DAY_MS,
        Period::Weekly => start + 7 * DAY_MS,
        Period::Monthly => {
            let (y, m, _) = civil_from_days(start.div_euclid(DAY_MS));
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) * DAY_MS
        }
        Period::Total => i64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn fake_clock(start: i64) -> (Clock, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(start));
        let n = now.clone();
        (Arc::new(move || n.load(Ordering::SeqCst)), now)
    }

    /// 2026-11-23T12:00:00Z (a Monday).
    const MONDAY_NOON: i64 = 1_795_435_200_000;

    #[test]
    fn period_starts_in_utc() {
        assert_eq!(civil_from_days(MONDAY_NOON / DAY_MS), (2026, 11, 23));
        assert_eq!(
            Period::Daily.start(MONDAY_NOON),
            MONDAY_NOON - 12 * 3_600_000
        );
        assert_eq!(
            Period::Weekly.start(MONDAY_NOON),
            MONDAY_NOON - 12 * 3_600_000,
            "Monday starts the week"
        );
        assert_eq!(
            Period::Weekly.start(MONDAY_NOON + 6 * DAY_MS),
            Period::Weekly.start(MONDAY_NOON),
            "Sunday is the same week"
        );
        assert_eq!(
            civil_from_days(Period::Monthly.start(MONDAY_NOON) / DAY_MS),
            (2026, 11, 1)
        );
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            Period::Daily.start(-1),
            -DAY_MS,
            "before the epoch rounds down"
        );
    }

    #[test]
    fn balance_admits_while_positive_and_settles_exactly() {
        let accounts = Accounts::new();
        let key = Account::Key("k1".into());
        accounts.credit(key.clone(), Money::from_nanos(100));
        let a = accounts
            .reserve(std::slice::from_ref(&key), Money::from_nanos(60))
            .unwrap();
        let b = accounts
            .reserve(std::slice::from_ref(&key), Money::from_nanos(60))
            .unwrap();
        assert_eq!(
            accounts
                .reserve(std::slice::from_ref(&key), Money::from_nanos(60))
                .unwrap_err(),
            Refusal::Balance(key.clone())
        );
        a.settle(Money::from_nanos(30));
        drop(b); // never finished: released, costs nothing
        assert_eq!(accounts.balance(&key), Some(Money::from_nanos(70)));
        assert!(
            accounts.balance(&Account::Team("t".into())).is_none(),
            "postpaid"
        );
        assert!(accounts
            .reserve(&[Account::Team("t".into())], Money::from_nanos(1_000_000))
            .is_ok());
    }

    #[test]
    fn budget_resets_at_the_period_boundary_and_emits_events() {
        let (clock, now) = fake_clock(MONDAY_NOON);
        let accounts = Accounts::with_clock(clock);
        let team = Account::Team("red".into());
        accounts.set_budget(
            team.clone(),
            Budget::new(Money::from_nanos(1000), Period::Daily),
        );
        let mut events = accounts.subscribe();
        accounts
            .reserve(std::slice::from_ref(&team), Money::ZERO)
            .unwrap()
            .settle(Money::from_nanos(850));
        assert!(
            matches!(events.try_recv().unwrap(), BudgetEvent::SoftThreshold { spent, .. } if spent == Money::from_nanos(850))
        );
        accounts
            .reserve(std::slice::from_ref(&team), Money::ZERO)
            .unwrap()
            .settle(Money::from_nanos(200));
        assert!(matches!(
            events.try_recv().unwrap(),
            BudgetEvent::Exhausted { .. }
        ));
        let refused = accounts
            .reserve(std::slice::from_ref(&team), Money::ZERO)
            .unwrap_err();
        let tomorrow = Period::Daily.start(MONDAY_NOON) + DAY_MS;
        assert_eq!(
            refused,
            Refusal::Budget {
                account: team.clone(),
                resets_ms: tomorrow
            }
        );
        // One millisecond before midnight: still refused; at midnight UTC: a new period.
        now.store(tomorrow - 1, Ordering::SeqCst);
        assert!(accounts
            .reserve(std::slice::from_ref(&team), Money::ZERO)
            .is_err());
        now.store(tomorrow, Ordering::SeqCst);
        assert!(accounts
            .reserve(std::slice::from_ref(&team), Money::ZERO)
            .is_ok());
        assert_eq!(accounts.spent(&team), Some(Money::ZERO));
    }

    #[test]
    fn spend_before_a_restart_counts_against_a_budget_set_later() {
        let (clock, _now) = fake_clock(MONDAY_NOON);
        let accounts = Accounts::with_clock(clock);
        let key = Account::Key("k".into());
        let today = Period::Daily.start(MONDAY_NOON);
        accounts.preload_spend(
            Period::Daily,
            today,
            [(key.clone(), Money::from_nanos(900))],
        );
        accounts.preload_spend(
            Period::Monthly,
            Period::Monthly.start(MONDAY_NOON),
            [(key.clone(), Money::from_nanos(5_000))],
        );
        accounts.set_budget(
            key.clone(),
            Budget::new(Money::from_nanos(1000), Period::Daily),
        );
        assert_eq!(accounts.spent(&key), Some(Money::from_nanos(900)));
        accounts
            .reserve(std::slice::from_ref(&key), Money::ZERO)
            .unwrap()
            .settle(Money::from_nanos(100));
        assert!(
            accounts.reserve(&[key], Money::ZERO).is_err(),
            "900 before the restart + 100 after"
        );
    }

    #[test]
    fn balance_low_is_sent_once_per_crossing_and_rearmed_by_a_credit() {
        let accounts = Accounts::new();
        let key = Account::Key("k".into());
        let team = Account::Team("t".into());
        accounts.set_default_low_balance_threshold(Some(Money::from_nanos(500)));
        accounts.set_low_balance_threshold(team.clone(), Money::from_nanos(50));
        let mut events = accounts.subscribe();
        accounts.credit(key.clone(), Money::from_nanos(1_000));
        accounts.credit(team.clone(), Money::from_nanos(1_000));
        let spend = |cost: i64| {
            accounts
                .reserve(&[key.clone(), team.clone()], Money::from_nanos(10))
                .unwrap()
                .settle(Money::from_nanos(cost));
        };
        spend(400); // key 600, team 600: above both thresholds
        assert!(events.try_recv().is_err());
        spend(200); // key 400: crosses the default 500
        assert_eq!(
            events.try_recv().unwrap(),
            BudgetEvent::BalanceLow {
                account: key.clone(),
                balance: Money::from_nanos(400),
                threshold: Money::from_nanos(500),
            }
        );
        assert!(events.try_recv().is_err(), "the team's 50 is not crossed");
        spend(100); // key 300: still low, no second event
        assert!(events.try_recv().is_err(), "once per crossing");
        // A credit back to the threshold re-arms it; the next debit below sends again.
        accounts.credit(key.clone(), Money::from_nanos(200));
        assert!(events.try_recv().is_err(), "a credit sends nothing");
        spend(1); // key 499
        assert!(matches!(
            events.try_recv().unwrap(),
            BudgetEvent::BalanceLow { ref account, balance, .. } if *account == key && balance == Money::from_nanos(499)
        ));
        // A debit through the admin API crosses too; the team's own threshold applies.
        accounts.credit(team.clone(), Money::from_nanos(-260)); // 299 - 260 = 39
        assert!(matches!(
            events.try_recv().unwrap(),
            BudgetEvent::BalanceLow { ref account, threshold, .. } if *account == team && threshold == Money::from_nanos(50)
        ));
        // A request released without settling costs nothing and crosses nothing.
        drop(accounts.reserve(std::slice::from_ref(&key), Money::from_nanos(10_000)));
        assert!(events.try_recv().is_err());
        // Without thresholds: nothing.
        accounts.replace_low_balance_thresholds(None, []);
        accounts.credit(key.clone(), Money::from_nanos(10_000));
        spend(10_400);
        assert!(events.try_recv().is_err());
    }

    #[test]
    fn monthly_budget_resets_on_the_first() {
        let (clock, now) = fake_clock(MONDAY_NOON);
        let accounts = Accounts::with_clock(clock);
        let key = Account::Key("k".into());
        accounts.set_budget(
            key.clone(),
            Budget::new(Money::from_nanos(10), Period::Monthly),
        );
        accounts
            .reserve(std::slice::from_ref(&key), Money::ZERO)
            .unwrap()
            .settle(Money::from_nanos(10));
        let Refusal::Budget { resets_ms, .. } = accounts
            .reserve(std::slice::from_ref(&key), Money::ZERO)
            .unwrap_err()
        else {
            panic!()
        };
        assert_eq!(civil_from_days(resets_ms / DAY_MS), (2026, 12, 1));
        now.store(resets_ms, Ordering::SeqCst);
        assert!(accounts.reserve(&[key], Money::ZERO).is_ok());
    }
}

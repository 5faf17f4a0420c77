//! [`KeyStore`]: where virtual keys live. In memory, SQLite and PostgreSQL.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::KeyRecord;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use super::{Budget, IpNet, KeyHash, KeyLimits, ModelPattern};

mod fixed;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use fixed::FixedKeys;
pub use memory::MemoryKeyStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresKeyStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteKeyStore;

/// The future a [`KeyStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyStoreError>> + Send + 'a>>;

/// Where virtual keys are kept. Records hold the hash of each secret, never the
/// secret.
///
/// The hot path calls only [`find_by_hash`](KeyStore::find_by_hash), through the
/// cache of [`Keys`](super::Keys); the admin API calls the rest. Implement it to keep
/// keys elsewhere (a secrets manager, another database).
pub trait KeyStore: fmt::Debug + Send + Sync + 'static {
    /// Adds a new record. Fails if the id or the hash exists already.
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()>;

    /// The record whose secret hashes to `hash`.
    fn find_by_hash<'a>(&'a self, hash: &'a super::KeyHash) -> StoreFuture<'a, Option<KeyRecord>>;

    /// The record with this id.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>>;

    /// Every record, oldest first.
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>>;

    /// Replaces the record with the same id; `false` if there is none.
    fn update<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, bool>;
}

/// A key store failed (the database is down, a record does not decode, a duplicate).
/// The message never contains a secret or a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStoreError {
    message: String,
    read_only: bool,
}

impl KeyStoreError {
    /// An error with this message (which must not contain a secret).
    pub fn new(message: impl Into<String>) -> Self {
        KeyStoreError {
            message: message.into(),
            read_only: false,
        }
    }

    /// The store works but refuses to change this key (a key of the configuration
    /// file): the admin API answers 409 with the message.
    pub fn read_only(message: impl Into<String>) -> Self {
        KeyStoreError {
            message: message.into(),
            read_only: true,
        }
    }

    /// Whether this is a refusal to change a read-only key rather than a failure.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

impl fmt::Display for KeyStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.message)
    }
}

impl std::error::Error for KeyStoreError {}

/// The columns both SQL stores use; lists and metadata as JSON text, times in Unix
/// milliseconds, the hash in hex.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct Columns {
    pub(crate) id: String,
    pub(crate) hash: String,
    pub(crate) prefix: String,
    pub(crate) name: Option<String>,
    pub(crate) team: Option<String>,
    pub(crate) role: String,
    pub(crate) models: String,
    pub(crate) ip_allow: String,
    pub(crate) rpm: Option<i64>,
    pub(crate) tpm: Option<i64>,
    pub(crate) max_parallel: Option<i64>,
    pub(crate) budget_amount: Option<String>,
    pub(crate) budget_period: Option<String>,
    pub(crate) metadata: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) enabled: bool,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) created_at: i64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const COLUMNS: &str = "id, hash, prefix, name, team, role, models, ip_allow, rpm, tpm, \
     max_parallel, budget_amount, budget_period, metadata, expires_at, enabled, revoked_at, created_at";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Columns {
    pub(crate) fn encode(r: &KeyRecord) -> Columns {
        use super::record::unix_millis;
        let texts = |items: Vec<String>| serde_json::Value::from(items).to_string();
        Columns {
            id: r.id.clone(),
            hash: r.hash.to_hex(),
            prefix: r.prefix.clone(),
            name: r.name.clone(),
            team: r.team.clone(),
            role: r.role.as_str().to_owned(),
            models: texts(r.models.iter().map(|m| m.as_str().to_owned()).collect()),
            ip_allow: texts(r.ip_allow.iter().map(ToString::to_string).collect()),
            rpm: r.limits.rpm.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            tpm: r.limits.tpm.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            max_parallel: r.limits.max_parallel.map(i64::from),
            budget_amount: r.budget.as_ref().map(|b| b.amount.to_string()),
            budget_period: r.budget.as_ref().map(|b| b.period.as_str().to_owned()),
            metadata: serde_json::Value::Object(r.metadata.clone()).to_string(),
            expires_at: r.expires_at.map(unix_millis),
            enabled: r.enabled,
            revoked_at: r.revoked_at.map(unix_millis),
            created_at: unix_millis(r.created_at),
        }
    }

    pub(crate) fn decode(self) -> Result<KeyRecord, KeyStoreError> {
        use super::record::from_unix_millis;
        let id = self.id;
        let bad =
            |what: &str| KeyStoreError::new(format!("key record `{id}`: {what} does not decode"));
        let list = |text: &str, what: &str| -> Result<Vec<String>, KeyStoreError> {
            serde_json::from_str(text).map_err(|_| bad(what))
        };
        let models = list(&self.models, "models")?
            .iter()
            .map(|m| ModelPattern::new(m).map_err(|_| bad("models")))
            .collect::<Result<_, _>>()?;
        let ip_allow = list(&self.ip_allow, "ip_allow")?
            .iter()
            .map(|n| n.parse::<IpNet>().map_err(|_| bad("ip_allow")))
            .collect::<Result<_, _>>()?;
        let budget = match (self.budget_amount, self.budget_period) {
            (Some(amount), Some(period)) => Some(
                Budget::new(&amount, period.parse().map_err(|_| bad("budget_period"))?)
                    .map_err(|_| bad("budget_amount"))?,
            ),
            _ => None,
        };
        let metadata = match serde_json::from_str(&self.metadata) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(bad("metadata")),
        };
        let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        Ok(KeyRecord {
            hash: KeyHash::from_hex(&self.hash).ok_or_else(|| bad("hash"))?,
            prefix: self.prefix,
            name: self.name,
            team: self.team,
            role: self.role.parse().map_err(|_| bad("role"))?,
            models,
            ip_allow,
            limits: KeyLimits {
                rpm: positive(self.rpm),
                tpm: positive(self.tpm),
                max_parallel: positive(self.max_parallel).and_then(|n| u32::try_from(n).ok()),
            },
            budget,
            metadata,
            expires_at: self.expires_at.map(from_unix_millis),
            enabled: self.enabled,
            revoked_at: self.revoked_at.map(from_unix_millis),
            created_at: from_unix_millis(self.created_at),
            id,
        })
    }
}

/// Binds the columns of a [`Columns`] in [`COLUMNS`] order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! bind_columns {
    ($query:expr, $c:expr) => {{
        let c = $c;
        $query
            .bind(c.id)
            .bind(c.hash)
            .bind(c.prefix)
            .bind(c.name)
            .bind(c.team)
            .bind(c.role)
            .bind(c.models)
            .bind(c.ip_allow)
            .bind(c.rpm)
            .bind(c.tpm)
            .bind(c.max_parallel)
            .bind(c.budget_amount)
            .bind(c.budget_period)
            .bind(c.metadata)
            .bind(c.expires_at)
            .bind(c.enabled)
            .bind(c.revoked_at)
            .bind(c.created_at)
    }};
}

/// Reads a [`Columns`] from a row.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! read_columns {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        (|| -> Result<$crate::auth::store::Columns, sqlx::Error> {
            Ok($crate::auth::store::Columns {
                id: row.try_get("id")?,
                hash: row.try_get("hash")?,
                prefix: row.try_get("prefix")?,
                name: row.try_get("name")?,
                team: row.try_get("team")?,
                role: row.try_get("role")?,
                models: row.try_get("models")?,
                ip_allow: row.try_get("ip_allow")?,
                rpm: row.try_get("rpm")?,
                tpm: row.try_get("tpm")?,
                max_parallel: row.try_get("max_parallel")?,
                budget_amount: row.try_get("budget_amount")?,
                budget_period: row.try_get("budget_period")?,
                metadata: row.try_get("metadata")?,
                expires_at: row.try_get("expires_at")?,
                enabled: row.try_get("enabled")?,
                revoked_at: row.try_get("revoked_at")?,
                created_at: row.try_get("created_at")?,
            })
        })()
        .map_err(|e| KeyStoreError::new(format!("a key record does not decode: {e}")))
        .and_then($crate::auth::store::Columns::decode)
    }};
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use {bind_columns, read_columns};

/// The [`KeyStore`] impl of a SQL store whose `pool` field is a sqlx pool: the SQLite
/// and PostgreSQL stores differ only in their placeholders (`?1` or `$1`), their
/// "insert the team if new" statement and the engine named in errors.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_key_store {
    (store = $store:ty, engine = $engine:literal, numbered = $numbered:literal, param = $p:literal, team_sql = $team:expr) => {
        fn db_error(what: &str) -> impl Fn(sqlx::Error) -> KeyStoreError + '_ {
            move |e| KeyStoreError::new(format!("key store ({}): cannot {what}: {e}", $engine))
        }

        impl KeyStore for $store {
            fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()> {
                Box::pin(async move {
                    let mut tx = self.pool.begin().await.map_err(db_error("insert a key"))?;
                    if let Some(team) = &record.team {
                        sqlx::query($team)
                            .bind(team)
                            .bind(crate::auth::record::unix_millis(record.created_at))
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error("insert a team"))?;
                    }
                    let sql = insert_sql($numbered);
                    bind_columns!(sqlx::query(&sql), Columns::encode(record))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error("insert a key"))?;
                    tx.commit().await.map_err(db_error("insert a key"))
                })
            }

            fn find_by_hash<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
                Box::pin(async move {
                    let sql = format!("SELECT {COLUMNS} FROM auth_keys WHERE hash = {}", $p);
                    let row = sqlx::query(&sql)
                        .bind(hash.to_hex())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_error("look a key up"))?;
                    row.map(|row| read_columns!(&row)).transpose()
                })
            }

            fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
                Box::pin(async move {
                    let sql = format!("SELECT {COLUMNS} FROM auth_keys WHERE id = {}", $p);
                    let row = sqlx::query(&sql)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_error("read a key"))?;
                    row.map(|row| read_columns!(&row)).transpose()
                })
            }

            fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
                Box::pin(async move {
                    let sql = format!("SELECT {COLUMNS} FROM auth_keys ORDER BY created_at, id");
                    let rows = sqlx::query(&sql)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error("list keys"))?;
                    rows.iter().map(|row| read_columns!(row)).collect()
                })
            }

            fn update<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, bool> {
                Box::pin(async move {
                    let mut tx = self.pool.begin().await.map_err(db_error("update a key"))?;
                    if let Some(team) = &record.team {
                        sqlx::query($team)
                            .bind(team)
                            .bind(crate::auth::record::unix_millis(
                                std::time::SystemTime::now(),
                            ))
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error("insert a team"))?;
                    }
                    let sql = update_sql($numbered);
                    let done = bind_columns!(sqlx::query(&sql), Columns::encode(record))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error("update a key"))?;
                    tx.commit().await.map_err(db_error("update a key"))?;
                    Ok(done.rows_affected() > 0)
                })
            }
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sql_key_store;

/// The `UPDATE ... SET` list for every column but the id, with `$n` or `?` markers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn update_sql(numbered: bool) -> String {
    let cols: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
    let set: Vec<String> = cols[1..]
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if numbered {
                format!("{c} = ${}", i + 2)
            } else {
                format!("{c} = ?{}", i + 2)
            }
        })
        .collect();
    let id = if numbered { "$1" } else { "?1" };
    format!("UPDATE auth_keys SET {} WHERE id = {id}", set.join(", "))
}

/// `INSERT INTO auth_keys (...) VALUES (...)` with `$n` or `?n` markers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn insert_sql(numbered: bool) -> String {
    let n = COLUMNS.split(',').count();
    let marks: Vec<String> = (1..=n)
        .map(|i| {
            if numbered {
                format!("${i}")
            } else {
                format!("?{i}")
            }
        })
        .collect();
    format!(
        "INSERT INTO auth_keys ({COLUMNS}) VALUES ({})",
        marks.join(", ")
    )
}

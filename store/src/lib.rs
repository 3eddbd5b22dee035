//! Fanout's persistent store.
//!
//! One [`Store`] handle, cheap to clone, shared by the API and the worker. It is written in
//! portable SQL over sqlx's `Any` driver: SQLite is the embedded default and PostgreSQL can be
//! plugged in by URL without touching callers. The schema lives in `migrations/` and is applied
//! on connect.
//!
//! Methods are grouped by resource, one module each: [`tenants`] (tenants and API keys),
//! [`users`], [`follows`] (who follows whom), [`segments`] (named sets of users), [`templates`],
//! [`requests`], [`audience`] (paging through an audience and the paged recipient snapshot),
//! [`progress`] (a running request's snapshot size and finished pages), [`local_time`] (a
//! local-time request's zones and regrouped pages),
//! [`controls`] (pause, rate, cancel of running requests), [`limits`] (shared rate-limit
//! buckets and quotas), [`frequency_caps`] (caps per category and the slots deliveries claim), [`receipts`], [`dead_letters`] (instances that failed for good, and
//! re-driving them), [`inbox`] and [`switches`] (channel and template kill switches).
//!
//! Bulk writes and lookups by many keys go through `bulk`: as many rows or keys per statement
//! as the backend's budget of parameters allows, writes in one transaction per call, so they
//! are all-or-nothing and fast on both backends.

pub mod audience;
mod bulk;
pub mod controls;
pub mod dead_letters;
pub mod digests;
pub mod estimate;
pub mod follows;
pub mod frequency_caps;
pub mod inbox;
pub mod limits;
pub mod local_time;
pub mod preferences;
pub mod progress;
pub mod quiet_hours;
pub mod receipts;
pub mod requests;
pub mod retention;
pub mod segments;
pub mod suppressions;
pub mod switches;
pub mod templates;
pub mod tenants;
pub mod users;
pub mod webhooks;

use std::path::Path;
use std::sync::Arc;

use fanout_domain::config::StoreConfig;
use fanout_domain::{TenantId, UserId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database rejected or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value no longer parses; the row was written by something else.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table holding the row.
        table: &'static str,
        /// What failed to parse.
        reason: String,
    },
    /// The store URL cannot be used.
    #[error("invalid store url: {0}")]
    InvalidUrl(String),
}

/// Result alias for store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite only (so it also says the pool is SQLite, whose transactions need the write lock
    /// up front): this process's writers take turns here before `BEGIN IMMEDIATE` (see
    /// [`Self::write_tx`]).
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A turn at SQLite's write lock, held until the transaction it was taken for ends (`None` on
/// PostgreSQL, whose writers do not queue on one lock).
pub(crate) type WriterTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

impl Store {
    /// Connects, creating the SQLite file (and its folder) if needed, and applies migrations.
    pub async fn connect(config: &StoreConfig) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite_dir = sqlite_file(&config.url)
            .and_then(|path| Path::new(path).parent())
            .filter(|dir| !dir.as_os_str().is_empty());
        if let Some(dir) = sqlite_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", dir.display())))?;
        }
        let mut options =
            AnyPoolOptions::new().max_connections(config.pool_size(StoreConfig::API_POOL));
        let sqlite = config.url.starts_with("sqlite:");
        if sqlite {
            // WAL lets readers run beside the one writer; NORMAL syncs at checkpoints rather
            // than on every commit (durable across process crashes, not power loss), which is
            // what lets many small delivery transactions through; writers queue instead of
            // failing while another commits.
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 30000",
                        // A multi-row upsert inside a transaction keeps a statement journal;
                        // in memory it costs no file writes (it was 7% of the worker's store
                        // time in a fan-out's profile).
                        "PRAGMA temp_store = MEMORY",
                        // 16 MiB of pages per connection instead of 2 MiB: the receipt and
                        // inbox indexes a fan-out updates stay cached instead of being read
                        // back from the OS on every flush.
                        "PRAGMA cache_size = -16384",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(&config.url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let writer = sqlite.then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Self { pool, writer })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether this store is SQLite (else PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self.writer.is_some()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that writes, with this process's turn at the write lock. Keep the
    /// turn until the transaction commits (`let (mut tx, _writer) = ...`).
    ///
    /// On SQLite it takes the write lock at `BEGIN IMMEDIATE`, so concurrent writers wait their
    /// turn: a deferred transaction that reads first and writes second fails at once with
    /// SQLITE_BUSY whenever another connection commits in between, which under concurrent API
    /// calls surfaced as 500s. The process's writers queue on an async mutex first, because
    /// SQLite's own wait (`busy_timeout`) polls with sleeps of up to 100 ms: with a dozen
    /// writers waiting the lock sat free between their naps, and the commit rate, not the
    /// disk, capped the fan-out. The busy timeout still orders writers of other processes.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, WriterTurn)> {
        let turn = match &self.writer {
            Some(writer) => Some(Arc::clone(writer).lock_owned().await),
            None => None,
        };
        let tx = if self.is_sqlite() {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        };
        Ok((tx, turn))
    }

    /// The suffix that makes a `SELECT` inside [`Self::write_tx`] lock the rows it reads until
    /// the transaction ends: " FOR UPDATE" on PostgreSQL, whose READ COMMITTED transactions
    /// would otherwise both read a row and then overwrite each other's change; "" on SQLite,
    /// whose write transaction already excludes every other writer (and which has no such
    /// clause). Not for aggregates, `DISTINCT` or `GROUP BY` (PostgreSQL refuses them), and it
    /// locks nothing that does not exist yet: inserts race through `ON CONFLICT` instead.
    pub(crate) fn lock_rows(&self) -> &'static str {
        if self.is_sqlite() { "" } else { " FOR UPDATE" }
    }

    /// Like [`Self::lock_rows`] for rows that competing callers claim (dead letters to
    /// re-drive): " FOR UPDATE SKIP LOCKED" on PostgreSQL, so a claimer passes over rows
    /// another is taking instead of waiting for them and then claiming them a second time.
    pub(crate) fn claim_rows(&self) -> &'static str {
        if self.is_sqlite() {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        }
    }

    /// Runs one page of a keyset listing: `sql` takes (tenant, key, after, limit) as `$1..$4`
    /// and lists, in ascending order of the column `after` is compared with, what comes after
    /// `after` (`None`: from the start).
    pub(crate) async fn keyset_page(
        &self,
        sql: &str,
        tenant_id: &TenantId,
        key: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AnyRow>> {
        // Ids are never empty, so "" sorts before every one of them.
        Ok(sqlx::query(sql)
            .bind(tenant_id.as_str())
            .bind(key)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?)
    }

    /// Runs a keyset listing of user ids (see [`Self::keyset_page`]) whose `sql` selects a
    /// `user_id` column.
    pub(crate) async fn keyset_user_ids(
        &self,
        table: &'static str,
        sql: &str,
        tenant_id: &TenantId,
        key: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        let after = after.map(UserId::as_str);
        let rows = self.keyset_page(sql, tenant_id, key, after, limit).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("user_id")?;
                parse_col(table, UserId::parse(&id))
            })
            .collect()
    }
}

/// Creates an empty database named `fanout_<prefix>_<random>` on the PostgreSQL server behind
/// `admin_url` (any database a superuser or `CREATEDB` role can connect to) and returns its URL:
/// a throwaway store for tests and benchmarks, each on a schema of its own.
pub async fn create_scratch_database(admin_url: &str, prefix: &str) -> Result<String> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let server = base
        .rsplit_once('/')
        .map(|(server, _)| server)
        .filter(|server| server.contains("://"))
        .ok_or_else(|| StoreError::InvalidUrl(format!("{admin_url}: no database path")))?;
    let name = format!("fanout_{prefix}_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::AnyConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    })
}

/// The file behind a `sqlite://` URL, if it names one.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The wall clock in Unix milliseconds: the one definition, in `fanout-runtime`.
pub use fanout_runtime::now_ms;

/// Parses a stored value, turning a failure into [`StoreError::Corrupt`].
pub(crate) fn parse_col<T, E: std::fmt::Display>(
    table: &'static str,
    parsed: std::result::Result<T, E>,
) -> Result<T> {
    parsed.map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A store on a fresh database: a new PostgreSQL database on the server named by
    /// `FANOUT_TEST_POSTGRES_URL` when it is set (`make test` runs the store's tests once each
    /// way), else a new SQLite file in a directory of its own under the system temp dir, which
    /// goes when the test's store does.
    pub(crate) async fn store() -> TestStore {
        if let Ok(admin) = std::env::var("FANOUT_TEST_POSTGRES_URL") {
            let url = create_scratch_database(&admin, "store").await.unwrap();
            let store = Store::connect(&StoreConfig {
                url,
                max_connections: Some(4),
            })
            .await
            .unwrap();
            return TestStore { store, dir: None };
        }
        let dir = std::env::temp_dir().join(format!(
            "fanout-store-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.display());
        let store = Store::connect(&StoreConfig {
            url,
            max_connections: Some(4),
        })
        .await
        .unwrap();
        TestStore {
            store,
            dir: Some(dir),
        }
    }

    /// A test's store, used through `Deref`; its SQLite directory is removed when it drops, so
    /// a run leaves nothing behind in the temp dir. Clones taken from it are plain `Store`s.
    pub(crate) struct TestStore {
        store: Store,
        dir: Option<std::path::PathBuf>,
    }

    impl std::ops::Deref for TestStore {
        type Target = Store;

        fn deref(&self) -> &Store {
            &self.store
        }
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            if let Some(dir) = &self.dir {
                // Open connections keep their files until they close; the names go now.
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Awaits tasks that ran side by side and returns what each returned, failing the test
    /// with every error if any failed (PostgreSQL breaking a deadlock, say).
    pub(crate) async fn all_succeed<T>(tasks: Vec<tokio::task::JoinHandle<Result<T>>>) -> Vec<T> {
        let mut done = Vec::with_capacity(tasks.len());
        let mut failures = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(value) => done.push(value),
                Err(e) => failures.push(e.to_string()),
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_is_found_in_urls() {
        assert_eq!(sqlite_file("sqlite://a/b.db?mode=rwc"), Some("a/b.db"));
        assert_eq!(sqlite_file("sqlite:///abs/b.db"), Some("/abs/b.db"));
        assert_eq!(sqlite_file("sqlite://:memory:"), None);
        assert_eq!(sqlite_file("postgres://x"), None);
    }

    #[tokio::test]
    async fn migrations_apply_twice() {
        let store = test_support::store().await;
        store.ping().await.unwrap();
        sqlx::migrate!("./migrations")
            .run(store.pool())
            .await
            .unwrap();
    }
}

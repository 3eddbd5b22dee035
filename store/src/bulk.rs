//! Statements over many rows or many keys at once: multi-row `INSERT`s ([`Insert`]) and
//! statements with an `IN (..)` list of keys ([`Store::fetch_by_keys`],
//! [`Store::execute_by_keys`]). Each is cut into as many statements as the backend's budget of
//! bind parameters asks for, so no caller picks a chunk size of its own.
//!
//! Callers bind values onto a [`Bound`] query, a row (or the parameters before a key list) at a
//! time, without numbering placeholders: the SQL is written once a chunk's size is known.

use std::fmt::Write as _;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Arguments as _, Database as _, Execute as _, Executor, Sqlite};

use crate::{Result, Store};

/// The most bind parameters one statement carries on SQLite. SQLite looks up each named `$N` by
/// a linear scan of the statement's parameter names, so binding grows with the square of the
/// parameters: 100,000 users upsert in about 4 s at 4,000 parameters a statement (500 rows of
/// 8) and in about 0.5 s anywhere from 100 to 400 (release build). The top of that flat range
/// makes the fewest statements.
const SQLITE_PARAMS_PER_STATEMENT: usize = 400;

/// The most bind parameters one statement carries on PostgreSQL, whose own limit is 65,535.
/// Binding costs it nothing like SQLite's scan, and a statement fewer is a round trip and a
/// plan fewer: a delivery page's preference lookup (500 ids) took half as long as one statement
/// as it did as two at 400 parameters (100 lookups in 0.64 to 0.89 s against 1.3 to 1.7 s,
/// release build), while bulk upserts and delivery flushes measured the same anywhere from 400
/// to 8,000. 2,000 keeps such a page in one statement beside its other parameters.
const POSTGRES_PARAMS_PER_STATEMENT: usize = 2_000;

/// The most rows one multi-row statement writes, whatever its width.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// A query whose values are bound before its SQL is written: what callers' closures bind a row,
/// or the parameters before a key list, onto, in placeholder order.
pub(crate) type Bound<'a> = Query<'a, Any, AnyArguments<'a>>;

/// The budget of bind parameters of one statement on the backend.
fn params_per_statement(sqlite: bool) -> usize {
    if sqlite {
        SQLITE_PARAMS_PER_STATEMENT
    } else {
        POSTGRES_PARAMS_PER_STATEMENT
    }
}

/// How many rows of `columns` values one statement of `params` parameters writes.
fn rows_per_statement(params: usize, columns: usize) -> usize {
    (params / columns).clamp(1, MAX_ROWS_PER_STATEMENT)
}

/// `rows` in ascending order, each once: the order inserters of overlapping rows take them in.
/// An insert waits for a concurrent transaction's uncommitted row with the same key, so two
/// inserting overlapping lists in different orders could wait on each other, a deadlock
/// PostgreSQL breaks by failing one of them (a 500).
pub(crate) fn in_key_order<T: Ord>(rows: &[T]) -> Vec<&T> {
    let mut sorted: Vec<&T> = rows.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// A multi-row `INSERT`: `{head} VALUES ($1, .., $c), ($c+1, ..), .. {tail}`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Insert<'s> {
    /// `INSERT INTO table (column, ..)`.
    pub(crate) head: &'s str,
    /// How many values one row binds.
    pub(crate) columns: usize,
    /// What follows the rows (`ON CONFLICT ..`, `RETURNING ..`), or nothing.
    pub(crate) tail: &'s str,
}

impl Insert<'_> {
    /// Inserts `rows` on `conn` (a transaction's, so a call is all-or-nothing), in the order
    /// given: callers that must lock rows in key order sort them first. `bind` binds one row's
    /// values in column order. Returns how many rows the statements changed.
    pub(crate) async fn execute<'a, T>(
        &self,
        conn: &mut AnyConnection,
        rows: &'a [T],
        mut bind: impl FnMut(Bound<'a>, &'a T) -> Bound<'a>,
    ) -> Result<u64> {
        let mut changed = 0;
        for chunk in rows.chunks(self.rows_per_statement(conn)) {
            changed += self
                .statement(chunk, &mut bind)?
                .execute(&mut *conn)
                .await?;
        }
        Ok(changed)
    }

    /// Like [`Self::execute`] for a `tail` that ends in `RETURNING ..`: returns those rows.
    pub(crate) async fn fetch<'a, T>(
        &self,
        conn: &mut AnyConnection,
        rows: &'a [T],
        mut bind: impl FnMut(Bound<'a>, &'a T) -> Bound<'a>,
    ) -> Result<Vec<AnyRow>> {
        let mut returned = Vec::new();
        for chunk in rows.chunks(self.rows_per_statement(conn)) {
            returned.extend(self.statement(chunk, &mut bind)?.fetch(&mut *conn).await?);
        }
        Ok(returned)
    }

    fn rows_per_statement(&self, conn: &AnyConnection) -> usize {
        let sqlite = conn.backend_name() == Sqlite::NAME;
        rows_per_statement(params_per_statement(sqlite), self.columns)
    }

    fn statement<'a, T>(
        &self,
        chunk: &'a [T],
        bind: &mut impl FnMut(Bound<'a>, &'a T) -> Bound<'a>,
    ) -> Result<Statement<'a>> {
        let bound = chunk.iter().fold(sqlx::query(""), bind);
        let args = arguments(bound)?;
        debug_assert_eq!(args.len(), chunk.len() * self.columns, "{}", self.head);
        Ok(Statement {
            sql: multi_row_sql(self.head, self.columns, chunk.len(), self.tail),
            args,
            persistent: true,
        })
    }
}

impl Store {
    /// How many keys one `IN (..)` list holds beside `leading` other parameters: for callers
    /// that cut a key list once and use the chunks in statements of their own.
    pub(crate) fn keys_per_statement(&self, leading: usize) -> usize {
        params_per_statement(self.is_sqlite())
            .saturating_sub(leading)
            .max(1)
    }

    /// Runs a lookup by `keys`: `sql(list)` is the statement for one chunk of them, `list` the
    /// chunk's placeholders, which follow the parameters `bind` binds (the same for every
    /// chunk). Returns the rows of every chunk.
    pub(crate) async fn fetch_by_keys<'a, K: AsRef<str>>(
        &self,
        keys: &'a [K],
        sql: impl Fn(&str) -> String,
        bind: impl Fn(Bound<'a>) -> Bound<'a>,
    ) -> Result<Vec<AnyRow>> {
        let mut conn = self.pool().acquire().await?;
        self.fetch_by_keys_in(&mut conn, keys, sql, bind).await
    }

    /// Like [`Self::fetch_by_keys`] on `conn` (a transaction's): for lookups that lock the
    /// rows they read.
    pub(crate) async fn fetch_by_keys_in<'a, K: AsRef<str>>(
        &self,
        conn: &mut AnyConnection,
        keys: &'a [K],
        sql: impl Fn(&str) -> String,
        bind: impl Fn(Bound<'a>) -> Bound<'a>,
    ) -> Result<Vec<AnyRow>> {
        let mut rows = Vec::new();
        for statement in self.keyed_statements(keys, sql, bind)? {
            rows.extend(statement.fetch(&mut *conn).await?);
        }
        Ok(rows)
    }

    /// Like [`Self::fetch_by_keys`] for statements that change rows, on `conn` (a
    /// transaction's); returns how many they changed.
    pub(crate) async fn execute_by_keys<'a, K: AsRef<str>>(
        &self,
        conn: &mut AnyConnection,
        keys: &'a [K],
        sql: impl Fn(&str) -> String,
        bind: impl Fn(Bound<'a>) -> Bound<'a>,
    ) -> Result<u64> {
        let mut changed = 0;
        for statement in self.keyed_statements(keys, sql, bind)? {
            changed += statement.execute(&mut *conn).await?;
        }
        Ok(changed)
    }

    fn keyed_statements<'a, K: AsRef<str>>(
        &self,
        keys: &'a [K],
        sql: impl Fn(&str) -> String,
        bind: impl Fn(Bound<'a>) -> Bound<'a>,
    ) -> Result<Vec<Statement<'a>>> {
        // Counted by binding them once: callers keep no number in step with their closure.
        let leading = arguments(bind(sqlx::query("")))?.len();
        keys.chunks(self.keys_per_statement(leading))
            .map(|chunk| {
                let bound = chunk
                    .iter()
                    .fold(bind(sqlx::query("")), |query, key| query.bind(key.as_ref()));
                Ok(Statement {
                    sql: sql(&placeholders(leading + 1, chunk.len())),
                    args: arguments(bound)?,
                    // Planned with its keys on PostgreSQL: a cached generic plan of a receipt
                    // lookup by 200 ids chose a sequential scan of every receipt, 360 ms a
                    // lookup in a 100,000-recipient fan-out (pg_stat_statements), where the
                    // primary key answers in under 5 ms; preference lookups of 500 ids took
                    // 220 ms each on a cached plan against under 10 ms planned with their ids.
                    persistent: self.is_sqlite(),
                })
            })
            .collect()
    }
}

/// One statement of a chunked run, its SQL written for its chunk.
struct Statement<'a> {
    sql: String,
    args: AnyArguments<'a>,
    persistent: bool,
}

impl Statement<'_> {
    async fn execute<'c>(self, executor: impl Executor<'c, Database = Any>) -> Result<u64> {
        let Self {
            sql,
            args,
            persistent,
        } = self;
        let done = sqlx::query_with(&sql, args)
            .persistent(persistent)
            .execute(executor)
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch<'c>(self, executor: impl Executor<'c, Database = Any>) -> Result<Vec<AnyRow>> {
        let Self {
            sql,
            args,
            persistent,
        } = self;
        Ok(sqlx::query_with(&sql, args)
            .persistent(persistent)
            .fetch_all(executor)
            .await?)
    }
}

/// The values bound onto `bound`; a value that failed to encode fails here.
fn arguments(mut bound: Bound<'_>) -> Result<AnyArguments<'_>> {
    let args = bound.take_arguments().map_err(sqlx::Error::Encode)?;
    Ok(args.unwrap_or_default())
}

/// Builds `{head} VALUES ($1, .., $c), ($c+1, ..), .. {tail}` for `rows` rows of `columns`
/// values each.
fn multi_row_sql(head: &str, columns: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + 8 + rows * columns * 8);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(sql, "${}", row * columns + column + 1);
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// `$first, $first+1, .., $first+n-1`: the placeholders of an `IN (..)` list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    use super::*;

    /// Binds one follow of `star` by `follower`, as the tests below insert them.
    fn follow<'a>(query: Bound<'a>, follower: &'a &str) -> Bound<'a> {
        query.bind("t").bind("star").bind(*follower).bind(1_i64)
    }

    /// Rows and keys by the thousand, more than one statement takes on either backend: every
    /// one is written, returned, found and changed once, with the parameters before a key list
    /// numbered ahead of it.
    #[tokio::test]
    async fn long_lists_are_cut_into_statements_that_miss_nothing() {
        let store = store().await;
        let tenant = fanout_domain::TenantId::parse("t").unwrap();
        store.upsert_tenant(&tenant, "T").await.unwrap();
        let owned: Vec<String> = (0..5_000).map(|i| format!("f{i:05}")).collect();
        let ids: Vec<&str> = owned.iter().map(String::as_str).collect();
        let head = "INSERT INTO follows (tenant_id, user_id, follower_id, created_at_ms)";
        let returning = Insert {
            head,
            columns: 4,
            tail: "ON CONFLICT DO NOTHING RETURNING follower_id",
        };
        let plain = Insert {
            tail: "ON CONFLICT DO NOTHING",
            ..returning
        };

        let (mut tx, writer) = store.write_tx().await.unwrap();
        let budget = params_per_statement(store.is_sqlite());
        assert_eq!(
            returning.rows_per_statement(&tx),
            rows_per_statement(budget, 4),
            "a connection tells its backend as the store does"
        );
        let returned = returning
            .fetch(&mut tx, &ids[..4_000], follow)
            .await
            .unwrap();
        assert_eq!(returned.len(), 4_000);
        let added = plain.execute(&mut tx, &ids, follow).await.unwrap();
        assert_eq!(added, 1_000, "only the rows not there yet");
        tx.commit().await.unwrap();
        drop(writer);

        let found = store
            .fetch_by_keys(
                &ids[1_500..],
                |list| {
                    format!(
                        "SELECT follower_id FROM follows
                         WHERE tenant_id = $1 AND user_id = $2 AND follower_id IN ({list})"
                    )
                },
                |query| query.bind("t").bind("star"),
            )
            .await
            .unwrap();
        let mut found: Vec<String> = found
            .iter()
            .map(|row| sqlx::Row::try_get(row, "follower_id").unwrap())
            .collect();
        found.sort();
        assert_eq!(found, ids[1_500..]);

        let (mut tx, _writer) = store.write_tx().await.unwrap();
        let removed = store
            .execute_by_keys(
                &mut tx,
                &ids[..4_500],
                |list| {
                    format!("DELETE FROM follows WHERE tenant_id = $1 AND follower_id IN ({list})")
                },
                |query| query.bind("t"),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(removed, 4_500);
    }

    #[test]
    fn multi_row_statements_number_placeholders_row_by_row() {
        assert_eq!(
            multi_row_sql("INSERT INTO t (a, b)", 2, 3, "ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }

    #[test]
    fn statements_stay_within_the_parameter_budget() {
        assert_eq!(rows_per_statement(400, 8), 50);
        assert_eq!(rows_per_statement(400, 1), 400);
        assert_eq!(rows_per_statement(4_000, 1), MAX_ROWS_PER_STATEMENT);
        assert_eq!(rows_per_statement(400, 10_000), 1);
    }
}

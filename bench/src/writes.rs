//! What the mixed fan-out wrote to the store, per delivery: the capacity model's store input
//! (README "Capacity"). Rows are counted in the tables a delivery writes (the audience
//! snapshot, receipts, inbox rows and their stream events); on PostgreSQL the server's own
//! counters add the commits and the rows inserted, updated and deleted in the whole database
//! while the run went, which include every status read and bucket lease of the API and worker.

use serde_json::{Value, json};
use sqlx::{AnyPool, Row};

/// Counters read before and after the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    inbox_events: i64,
    /// PostgreSQL only: (commits, rows inserted + updated + deleted).
    server: Option<(i64, i64)>,
}

async fn connect(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    Ok(AnyPool::connect(url).await?)
}

async fn count(pool: &AnyPool, sql: &str, request_id: Option<&str>) -> anyhow::Result<i64> {
    let mut query = sqlx::query(sql);
    if let Some(id) = request_id {
        query = query.bind(id.to_owned());
    }
    Ok(query.fetch_one(pool).await?.try_get(0)?)
}

/// Reads the counters that are not per request.
pub async fn counters(url: &str) -> anyhow::Result<Counters> {
    let pool = connect(url).await?;
    let inbox_events = count(&pool, "SELECT COUNT(*) FROM inbox_events", None).await?;
    let server = if url.starts_with("postgres") {
        // The statistics collector reports with a delay; clear this backend's snapshot.
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&pool)
            .await?;
        let row = sqlx::query(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS changed
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await?;
        Some((row.try_get("xact_commit")?, row.try_get("changed")?))
    } else {
        None
    };
    pool.close().await;
    Ok(Counters {
        inbox_events,
        server,
    })
}

/// The store writes of `request_id` between `before` and now, per delivery.
pub async fn per_delivery(
    url: &str,
    request_id: &str,
    deliveries: u64,
    before: Counters,
) -> anyhow::Result<Value> {
    let pool = connect(url).await?;
    let per_request = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE request_id = $1");
    let audience = count(&pool, &per_request("audience"), Some(request_id)).await?;
    let receipts = count(&pool, &per_request("receipts"), Some(request_id)).await?;
    let inbox = count(&pool, &per_request("inbox"), Some(request_id)).await?;
    pool.close().await;
    let after = counters(url).await?;
    let events = after.inbox_events - before.inbox_events;
    let rows = audience + receipts + inbox + events;
    let per = |n: i64| (n as f64 / deliveries as f64 * 1000.0).round() / 1000.0;
    let mut out = json!({
        "rows": {"audience": audience, "receipts": receipts, "inbox": inbox, "inbox_events": events},
        "rows_per_delivery": per(rows),
    });
    if let (Some((c0, t0)), Some((c1, t1))) = (before.server, after.server) {
        out["server_commits_per_delivery"] = json!(per(c1 - c0));
        out["server_rows_changed_per_delivery"] = json!(per(t1 - t0));
    }
    Ok(out)
}

//! Operator controls of running requests: pause, rate and cancel, as delivery activities see
//! them.

use fanout_domain::RequestId;
use fanout_domain::request::RequestControls;
use sqlx::Row;

use crate::{Result, Store, now_ms};

impl Store {
    /// Returns the request's controls; a request never controlled has the defaults.
    pub async fn get_controls(&self, request_id: &RequestId) -> Result<RequestControls> {
        let row = sqlx::query(
            "SELECT paused, rate_per_second, cancelled FROM request_controls WHERE request_id = $1",
        )
        .bind(request_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(RequestControls::default());
        };
        let paused: i64 = row.try_get("paused")?;
        let rate: Option<i64> = row.try_get("rate_per_second")?;
        let cancelled: i64 = row.try_get("cancelled")?;
        Ok(RequestControls {
            paused: paused != 0,
            rate_per_second: rate.map(|r| u32::try_from(r).unwrap_or(u32::MAX)),
            cancelled: cancelled != 0,
        })
    }

    /// Replaces the request's controls. Cancellation is sticky: once set it stays set.
    pub async fn set_controls(
        &self,
        request_id: &RequestId,
        controls: &RequestControls,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO request_controls (request_id, paused, rate_per_second, cancelled, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (request_id) DO UPDATE SET
               paused = excluded.paused, rate_per_second = excluded.rate_per_second,
               cancelled = CASE WHEN request_controls.cancelled = 1 THEN 1 ELSE excluded.cancelled END,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(request_id.as_str())
        .bind(i64::from(controls.paused))
        .bind(controls.rate_per_second.map(i64::from))
        .bind(i64::from(controls.cancelled))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets whether the request is paused, keeping its other controls. The API writes this as
    /// it signals the workflow, so deliveries hold at once even while the workflow cannot take
    /// the signal yet (a direct request's workflow task stays open while it delivers).
    pub async fn set_paused(&self, request_id: &RequestId, paused: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO request_controls (request_id, paused, rate_per_second, cancelled, updated_at_ms)
             VALUES ($1, $2, NULL, 0, $3)
             ON CONFLICT (request_id) DO UPDATE SET paused = excluded.paused,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(request_id.as_str())
        .bind(i64::from(paused))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets the request's rate cap (`None` removes it), keeping its other controls; see
    /// [`Self::set_paused`] for why the API writes it.
    pub async fn set_rate(&self, request_id: &RequestId, per_second: Option<u32>) -> Result<()> {
        sqlx::query(
            "INSERT INTO request_controls (request_id, paused, rate_per_second, cancelled, updated_at_ms)
             VALUES ($1, 0, $2, 0, $3)
             ON CONFLICT (request_id) DO UPDATE SET rate_per_second = excluded.rate_per_second,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(request_id.as_str())
        .bind(per_second.map(i64::from))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks the request cancelled, keeping its other controls.
    pub async fn mark_cancelled(&self, request_id: &RequestId) -> Result<()> {
        sqlx::query(
            "INSERT INTO request_controls (request_id, paused, rate_per_second, cancelled, updated_at_ms)
             VALUES ($1, 0, NULL, 1, $2)
             ON CONFLICT (request_id) DO UPDATE SET cancelled = 1, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(request_id.as_str())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fanout_domain::{DedupeKey, TenantId};

    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn pause_and_rate_are_set_one_at_a_time() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let id = DedupeKey::new(t, "k").unwrap().request_id();
        store.set_rate(&id, Some(7)).await.unwrap();
        store.set_paused(&id, true).await.unwrap();
        let both = store.get_controls(&id).await.unwrap();
        assert_eq!((both.paused, both.rate_per_second), (true, Some(7)));
        store.set_paused(&id, false).await.unwrap();
        store.set_rate(&id, None).await.unwrap();
        assert_eq!(
            store.get_controls(&id).await.unwrap(),
            RequestControls::default()
        );
    }

    #[tokio::test]
    async fn controls_round_trip_and_cancel_sticks() {
        let store = store().await;
        let req = DedupeKey::new(TenantId::parse("t").unwrap(), "k")
            .unwrap()
            .request_id();
        assert_eq!(
            store.get_controls(&req).await.unwrap(),
            RequestControls::default()
        );
        let paused = RequestControls {
            paused: true,
            rate_per_second: Some(5),
            cancelled: false,
        };
        store.set_controls(&req, &paused).await.unwrap();
        assert_eq!(store.get_controls(&req).await.unwrap(), paused);
        store.mark_cancelled(&req).await.unwrap();
        store
            .set_controls(&req, &RequestControls::default())
            .await
            .unwrap();
        let now = store.get_controls(&req).await.unwrap();
        assert!(now.cancelled, "cancellation must not be undone");
        assert!(!now.paused);
    }
}

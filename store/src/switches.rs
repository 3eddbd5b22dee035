//! Kill switches: channels and templates an operator has turned off.
//!
//! A channel switch holds every delivery on the channel, either for one tenant or, in the
//! [`SwitchScope::Global`] scope, for all of them (stored under the tenant id `*`, which no
//! tenant id can be). Delivery asks [`Store::disabled_channel`] (through a short cache) before
//! each send. A template switch makes `POST /v1/notify` refuse the template and remembers which
//! running requests the disable paused, so enabling the template resumes exactly those.
//!
//! Turning a switch back on keeps its row (with `disabled = 0`), so the last reason and the time
//! of the change stay visible.

use fanout_domain::{Channel, RequestId, TemplateId, TenantId, UnixMillis};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, now_ms, parse_col};

/// The tenant id global channel switches are stored under; tenant ids cannot contain `*`.
const GLOBAL: &str = "*";

/// Whom a channel switch applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchScope<'a> {
    /// Every tenant.
    Global,
    /// One tenant.
    Tenant(&'a TenantId),
}

impl SwitchScope<'_> {
    fn key(&self) -> &str {
        match self {
            SwitchScope::Global => GLOBAL,
            SwitchScope::Tenant(t) => t.as_str(),
        }
    }
}

/// The state of one channel switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelSwitch {
    /// The channel.
    pub channel: Channel,
    /// `tenant` or `global`.
    #[schema(pattern = "^(tenant|global)$")]
    pub scope: String,
    /// Whether deliveries on the channel are held.
    pub disabled: bool,
    /// Why, as the operator put it.
    pub reason: Option<String>,
    /// When the switch last changed.
    #[schema(value_type = i64)]
    pub updated_at_ms: UnixMillis,
}

/// What a template disable does to the template's running requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunningAction {
    /// Pause them (enabling the template resumes them).
    Pause,
    /// Cancel them (for good).
    Cancel,
}

impl RunningAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunningAction::Pause => "pause",
            RunningAction::Cancel => "cancel",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(RunningAction::Pause),
            "cancel" => Some(RunningAction::Cancel),
            _ => None,
        }
    }
}

/// The state of one template switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSwitch {
    /// The template.
    pub template_id: TemplateId,
    /// Whether new requests of the template are refused.
    pub disabled: bool,
    /// What the last disable did to running requests.
    pub running: Option<RunningAction>,
    /// Why, as the operator put it.
    pub reason: Option<String>,
    /// Requests the disable paused that enabling the template resumes.
    pub paused_requests: Vec<RequestId>,
    /// When the switch last changed.
    pub updated_at_ms: UnixMillis,
}

const CHANNELS: &str = "channel_switches";
const TEMPLATES: &str = "template_switches";

fn channel_switch(row: &AnyRow) -> Result<ChannelSwitch> {
    let tenant: String = row.try_get("tenant_id")?;
    let channel: String = row.try_get("channel")?;
    let disabled: i64 = row.try_get("disabled")?;
    Ok(ChannelSwitch {
        channel: parse_col(CHANNELS, channel.parse())?,
        scope: if tenant == GLOBAL { "global" } else { "tenant" }.to_owned(),
        disabled: disabled != 0,
        reason: row.try_get("reason")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Turns a channel off (or back on) for a tenant or for everyone, and returns the switch.
    pub async fn set_channel_switch(
        &self,
        scope: SwitchScope<'_>,
        channel: Channel,
        disabled: bool,
        reason: Option<&str>,
    ) -> Result<ChannelSwitch> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO channel_switches (tenant_id, channel, disabled, reason, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, channel) DO UPDATE SET
               disabled = excluded.disabled, reason = excluded.reason,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(scope.key())
        .bind(channel.as_str())
        .bind(i64::from(disabled))
        .bind(reason)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(ChannelSwitch {
            channel,
            scope: match scope {
                SwitchScope::Global => "global",
                SwitchScope::Tenant(_) => "tenant",
            }
            .to_owned(),
            disabled,
            reason: reason.map(str::to_owned),
            updated_at_ms: now,
        })
    }

    /// The switch that holds `channel` for `tenant_id` (its own, or the global one), if one does.
    pub async fn disabled_channel(
        &self,
        tenant_id: &TenantId,
        channel: Channel,
    ) -> Result<Option<ChannelSwitch>> {
        let row = sqlx::query(
            "SELECT tenant_id, channel, disabled, reason, updated_at_ms FROM channel_switches
             WHERE tenant_id IN ($1, $2) AND channel = $3 AND disabled = 1
             ORDER BY tenant_id LIMIT 1",
        )
        .bind(GLOBAL)
        .bind(tenant_id.as_str())
        .bind(channel.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(channel_switch).transpose()
    }

    /// Every channel switch that applies to `tenant_id`, global ones first, then by channel.
    pub async fn list_channel_switches(&self, tenant_id: &TenantId) -> Result<Vec<ChannelSwitch>> {
        let rows = sqlx::query(
            "SELECT tenant_id, channel, disabled, reason, updated_at_ms FROM channel_switches
             WHERE tenant_id IN ($1, $2) ORDER BY tenant_id, channel",
        )
        .bind(GLOBAL)
        .bind(tenant_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(channel_switch).collect()
    }

    /// Disables a template: new requests of it are refused from now on. `paused_requests` are
    /// the running requests this disable paused (added to any an earlier disable paused).
    pub async fn disable_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        running: RunningAction,
        reason: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO template_switches
               (tenant_id, template_id, disabled, running, reason, paused_requests, updated_at_ms)
             VALUES ($1, $2, 1, $3, $4, '[]', $5)
             ON CONFLICT (tenant_id, template_id) DO UPDATE SET
               disabled = 1, running = excluded.running, reason = excluded.reason,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .bind(running.as_str())
        .bind(reason)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records requests a template disable paused, so enabling the template resumes them.
    pub async fn add_paused_requests(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        paused: &[RequestId],
    ) -> Result<()> {
        if paused.is_empty() {
            return Ok(());
        }
        let (mut tx, _writer) = self.write_tx().await?;
        // Locked until the update: two activities adding at once would each write back the
        // list it read, dropping the other's requests (which enabling would then not resume).
        let row = sqlx::query(&format!(
            "SELECT paused_requests FROM template_switches WHERE tenant_id = $1 AND template_id = $2{}",
            self.lock_rows()
        ))
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let mut all = match row {
            Some(row) => paused_list(&row.try_get::<String, _>("paused_requests")?)?,
            None => Vec::new(),
        };
        for id in paused {
            if !all.contains(id) {
                all.push(id.clone());
            }
        }
        sqlx::query(
            "UPDATE template_switches SET paused_requests = $3
             WHERE tenant_id = $1 AND template_id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .bind(paused_json(&all))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Enables a template again and returns the requests its disable had paused (forgetting
    /// them), or `None` if the template was not disabled.
    pub async fn enable_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Option<Vec<RequestId>>> {
        let (mut tx, _writer) = self.write_tx().await?;
        // Locked until the update: two enables at once would both return the list (resuming
        // twice), and a request added between the read and the update would be cleared
        // without being resumed. A second enable waits, then finds the switch enabled.
        let row = sqlx::query(&format!(
            "SELECT paused_requests FROM template_switches
             WHERE tenant_id = $1 AND template_id = $2 AND disabled = 1{}",
            self.lock_rows()
        ))
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let paused = paused_list(&row.try_get::<String, _>("paused_requests")?)?;
        sqlx::query(
            "UPDATE template_switches SET disabled = 0, paused_requests = '[]', updated_at_ms = $3
             WHERE tenant_id = $1 AND template_id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(paused))
    }

    /// The template's switch, if it ever had one.
    pub async fn get_template_switch(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Option<TemplateSwitch>> {
        let row = sqlx::query(
            "SELECT disabled, running, reason, paused_requests, updated_at_ms
             FROM template_switches WHERE tenant_id = $1 AND template_id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let disabled: i64 = row.try_get("disabled")?;
        let running: Option<String> = row.try_get("running")?;
        let running = match running {
            Some(r) => Some(RunningAction::parse(&r).ok_or_else(|| StoreError::Corrupt {
                table: TEMPLATES,
                reason: format!("unknown running action '{r}'"),
            })?),
            None => None,
        };
        Ok(Some(TemplateSwitch {
            template_id: template_id.clone(),
            disabled: disabled != 0,
            running,
            reason: row.try_get("reason")?,
            paused_requests: paused_list(&row.try_get::<String, _>("paused_requests")?)?,
            updated_at_ms: row.try_get("updated_at_ms")?,
        }))
    }
}

fn paused_json(ids: &[RequestId]) -> String {
    let raw: Vec<&str> = ids.iter().map(RequestId::as_str).collect();
    serde_json::to_string(&raw).unwrap_or_else(|_| "[]".to_owned())
}

fn paused_list(json: &str) -> Result<Vec<RequestId>> {
    let raw: Vec<String> = parse_col(TEMPLATES, serde_json::from_str(json))?;
    raw.iter()
        .map(|id| parse_col(TEMPLATES, RequestId::parse(id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use fanout_domain::DedupeKey;

    use crate::test_support::store;

    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn channel_switches_apply_per_tenant_and_globally() {
        let store = store().await;
        let (a, b) = (tenant("a"), tenant("b"));
        assert_eq!(
            store.disabled_channel(&a, Channel::Email).await.unwrap(),
            None
        );

        store
            .set_channel_switch(SwitchScope::Tenant(&a), Channel::Email, true, Some("spam"))
            .await
            .unwrap();
        let held = store.disabled_channel(&a, Channel::Email).await.unwrap();
        assert_eq!(held.unwrap().reason.as_deref(), Some("spam"));
        assert_eq!(
            store.disabled_channel(&b, Channel::Email).await.unwrap(),
            None
        );
        assert_eq!(
            store.disabled_channel(&a, Channel::Push).await.unwrap(),
            None
        );

        store
            .set_channel_switch(SwitchScope::Global, Channel::Push, true, None)
            .await
            .unwrap();
        let global = store.disabled_channel(&b, Channel::Push).await.unwrap();
        assert_eq!(global.unwrap().scope, "global");

        store
            .set_channel_switch(SwitchScope::Tenant(&a), Channel::Email, false, None)
            .await
            .unwrap();
        assert_eq!(
            store.disabled_channel(&a, Channel::Email).await.unwrap(),
            None
        );
        let listed = store.list_channel_switches(&a).await.unwrap();
        let summary: Vec<_> = listed
            .iter()
            .map(|s| (s.scope.as_str(), s.channel, s.disabled))
            .collect();
        assert_eq!(
            summary,
            [
                ("global", Channel::Push, true),
                ("tenant", Channel::Email, false)
            ]
        );
    }

    #[tokio::test]
    async fn enabling_a_template_returns_what_its_disable_paused_once() {
        let store = store().await;
        let a = tenant("a");
        let template = TemplateId::parse("welcome").unwrap();
        let req = |k: &str| DedupeKey::new(a.clone(), k).unwrap().request_id();
        assert_eq!(store.enable_template(&a, &template).await.unwrap(), None);

        store
            .disable_template(&a, &template, RunningAction::Pause, Some("typo"))
            .await
            .unwrap();
        store
            .add_paused_requests(&a, &template, &[req("1"), req("2")])
            .await
            .unwrap();
        store
            .add_paused_requests(&a, &template, &[req("2"), req("3")])
            .await
            .unwrap();
        let switch = store
            .get_template_switch(&a, &template)
            .await
            .unwrap()
            .unwrap();
        assert!(switch.disabled);
        assert_eq!(switch.running, Some(RunningAction::Pause));
        assert_eq!(switch.paused_requests, [req("1"), req("2"), req("3")]);
        assert_eq!(
            store
                .get_template_switch(&tenant("b"), &template)
                .await
                .unwrap(),
            None
        );

        let resumed = store.enable_template(&a, &template).await.unwrap();
        assert_eq!(resumed, Some(vec![req("1"), req("2"), req("3")]));
        let switch = store
            .get_template_switch(&a, &template)
            .await
            .unwrap()
            .unwrap();
        assert!(!switch.disabled);
        assert!(switch.paused_requests.is_empty());
        assert_eq!(store.enable_template(&a, &template).await.unwrap(), None);
    }

    /// Pausing a template's running requests records them from several activities at once,
    /// and operators may press "enable" twice: no paused request may be lost, and only one
    /// enable gets the list to resume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_pauses_are_all_kept_and_resumed_once() {
        let store = store().await;
        let a = tenant("a");
        let template = TemplateId::parse("welcome").unwrap();
        store
            .disable_template(&a, &template, RunningAction::Pause, None)
            .await
            .unwrap();
        let adds: Vec<_> = (0..16)
            .map(|i| {
                let (store, a, template) = (store.clone(), a.clone(), template.clone());
                tokio::spawn(async move {
                    let req = DedupeKey::new(a.clone(), &format!("k{i}"))
                        .unwrap()
                        .request_id();
                    store.add_paused_requests(&a, &template, &[req]).await
                })
            })
            .collect();
        for add in adds {
            add.await.unwrap().unwrap();
        }
        let switch = store
            .get_template_switch(&a, &template)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            switch.paused_requests.len(),
            16,
            "every paused request kept"
        );

        let enables: Vec<_> = (0..16)
            .map(|_| {
                let (store, a, template) = (store.clone(), a.clone(), template.clone());
                tokio::spawn(async move { store.enable_template(&a, &template).await })
            })
            .collect();
        let mut resumed = Vec::new();
        for enable in enables {
            if let Some(list) = enable.await.unwrap().unwrap() {
                resumed.push(list.len());
            }
        }
        assert_eq!(
            resumed,
            [16],
            "exactly one enable resumes, and resumes them all"
        );
    }
}

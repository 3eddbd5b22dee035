//! `POST /v1/notify`: accept a trigger, start its workflow, answer with the request id.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fanout_domain::contracts::NotificationInput;
use fanout_domain::ids::InvalidId;
use fanout_domain::limits::{check_data, check_metadata};
use fanout_domain::render::missing_data;
use fanout_domain::request::{
    DeliveryPath, MAX_TTL_SECONDS, NotificationRequest, Priority, RecipientsQuery,
};
use fanout_domain::template::Template;
use fanout_domain::{Channel, DedupeKey, RequestId, SegmentId, TemplateId, TenantId, UserId};
use fanout_store::now_ms;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::orchestrator::StartOutcome;
use crate::preflight;
use crate::timing::Phases;

/// The request body as sent; converted into a [`NotificationRequest`] before anything else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    template_id: String,
    recipients_query: RawRecipients,
    #[serde(default)]
    channel_prefs: Option<Vec<String>>,
    #[serde(default)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    dedupe_key: Option<String>,
    #[serde(default)]
    actor_id: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    ttl_seconds: Option<u32>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Confirms an audience over the blast-radius limit (see [`crate::preflight`]).
    #[serde(default)]
    confirm_audience: Option<u64>,
}

/// `?dry_run=true` answers with a [`crate::preflight::Preflight`] and records nothing.
#[derive(Debug, Default, Deserialize)]
pub struct NotifyParams {
    #[serde(default)]
    dry_run: bool,
}

/// The audience as sent.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawRecipients {
    Users { user_ids: Vec<String> },
    Followers { of: String },
    Segment { segment_id: String },
}

/// The answer to an accepted (202) or duplicate (200) trigger.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotifyResponse {
    /// The request id; also the Temporal workflow id.
    pub request_id: String,
    /// True when this trigger repeated an earlier one and started nothing new.
    pub duplicate: bool,
    /// Where to follow the request.
    pub status_url: String,
}

impl NotifyBody {
    /// Parses the body into a request for `tenant`; errors name the offending field.
    fn parse(self, tenant: TenantId) -> Result<NotificationRequest, ApiError> {
        let template_id = TemplateId::parse(&self.template_id)?;
        let recipients = match self.recipients_query {
            RawRecipients::Users { user_ids } => {
                let ids = user_ids
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        UserId::parse(u).map_err(|e| InvalidId {
                            field: "recipients_query.user_ids",
                            reason: format!("[{i}]: {}", e.reason),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                RecipientsQuery::users(ids)?
            }
            RawRecipients::Followers { of } => RecipientsQuery::Followers {
                of: UserId::parse(&of).map_err(|e| InvalidId {
                    field: "recipients_query.of",
                    reason: e.reason,
                })?,
            },
            RawRecipients::Segment { segment_id } => RecipientsQuery::Segment {
                segment_id: SegmentId::parse(&segment_id).map_err(|e| InvalidId {
                    field: "recipients_query.segment_id",
                    reason: e.reason,
                })?,
            },
        };
        let channels = match self.channel_prefs {
            None => Vec::new(),
            Some(names) if names.is_empty() => {
                return Err(ApiError::field(
                    "channel_prefs",
                    "channel_prefs must list at least one channel, or be omitted to use every channel the template has",
                ));
            }
            Some(names) => {
                let mut channels = names
                    .iter()
                    .map(|n| n.parse::<Channel>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ApiError::field("channel_prefs", e.to_string()))?;
                channels.sort();
                channels.dedup();
                channels
            }
        };
        if let Some(ttl) = self.ttl_seconds
            && (ttl == 0 || ttl > MAX_TTL_SECONDS)
        {
            return Err(ApiError::field(
                "ttl_seconds",
                format!("ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"),
            ));
        }
        // Without a dedupe key every trigger is distinct: a fresh random key keeps the id
        // derivation (and so the tenant scoping) identical for both cases.
        let key = self
            .dedupe_key
            .unwrap_or_else(|| format!("auto-{}", uuid::Uuid::new_v4()));
        let metadata = self.metadata.unwrap_or_default();
        check_metadata(&metadata)?;
        let actor_id = self.actor_id.as_deref().map(UserId::parse).transpose()?;
        let recipients = without_actor(recipients, actor_id.as_ref())?;
        Ok(NotificationRequest {
            dedupe_key: DedupeKey::new(tenant, &key)?,
            actor_id,
            template_id,
            recipients,
            channels,
            data: self.data.unwrap_or_default(),
            priority: self.priority.unwrap_or_default(),
            ttl_seconds: self.ttl_seconds,
            metadata,
        })
    }
}

/// Leaves the actor out of an explicit audience, as notification platforms do ("Bob commented"
/// does not go to Bob). Followers and segments leave the actor out when they are resolved.
fn without_actor(
    recipients: RecipientsQuery,
    actor: Option<&UserId>,
) -> Result<RecipientsQuery, ApiError> {
    match (recipients, actor) {
        (RecipientsQuery::Users { user_ids }, Some(actor)) if user_ids.contains(actor) => {
            let rest: Vec<UserId> = user_ids.into_iter().filter(|u| u != actor).collect();
            if rest.is_empty() {
                return Err(ApiError::field(
                    "actor_id",
                    format!(
                        "the actor '{actor}' is the only recipient, and the actor is left out of \
                         the audience; send without actor_id to notify them"
                    ),
                ));
            }
            Ok(RecipientsQuery::Users { user_ids: rest })
        }
        (recipients, _) => Ok(recipients),
    }
}

/// Refuses a notify whose `data` lacks a value the template renders with no default: every
/// recipient would fail with `template_render` after the API answered 202.
fn refuse_missing_data(missing: &[String], template: &Template) -> Result<(), ApiError> {
    let Some(first) = missing.first() else {
        return Ok(());
    };
    Err(ApiError::field(
        first.clone(),
        format!(
            "template '{}' (version {}) renders {} with no default; send {} in data, or give \
             the template a default ('{{{{ {first} | default(\"\") }}}}')",
            template.template_id,
            template.version,
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
        ),
    ))
}

/// How long the API waits on Temporal to accept a start before answering 503.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /v1/notify`.
pub async fn notify(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    // The quota is taken before the body is read, so a refused trigger records nothing.
    admitted: crate::ingest::Admitted,
    ApiQuery(params): ApiQuery<NotifyParams>,
    ApiJson(body): ApiJson<NotifyBody>,
) -> Result<Response, ApiError> {
    let mut phases = Phases::start();
    let confirm_audience = body.confirm_audience;
    let mut request = body.parse(tenant.clone())?;
    check_data(
        &request.data,
        crate::admin::max_data_bytes(admitted.settings()) as usize,
    )?;
    let template = state
        .store
        .get_template(&tenant, &request.template_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("template '{}' not found", request.template_id))
        })?;
    crate::kill::refuse_disabled_template(&state.store, &tenant, &request.template_id).await?;
    if request.channels.is_empty() {
        request.channels = template.channels();
    } else if let Some(missing) = request.channels.iter().find(|c| !template.supports(**c)) {
        return Err(ApiError::field(
            "channel_prefs",
            format!(
                "template '{}' has no {missing} content; it supports: {}",
                template.template_id,
                template
                    .channels()
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }

    // A segment is a resource the tenant creates, so naming a missing one is a mistake worth
    // reporting. Followers are not checked: a user without followers (or without a profile)
    // is a legitimate empty audience.
    if let RecipientsQuery::Segment { segment_id } = &request.recipients
        && !state.store.segment_exists(&tenant, segment_id).await?
    {
        return Err(ApiError::NotFound(format!(
            "segment '{segment_id}' not found"
        )));
    }

    let missing = missing_data(
        &crate::templates::required_data(&tenant, &template, &request.channels),
        &request.data,
    );
    if params.dry_run {
        let mut preflight = preflight::dry_run(
            &state,
            &tenant,
            &request.recipients,
            &request.channels,
            &template,
        )
        .await?;
        preflight.missing_data = missing;
        return Ok(Json(preflight).into_response());
    }
    refuse_missing_data(&missing, &template)?;
    // Before anything is recorded, so a refused request leaves no trace to clean up.
    if let Some(refusal) = preflight::guard(
        &state,
        &tenant,
        &request.recipients,
        &template,
        confirm_audience,
    )
    .await?
    {
        return Ok(refusal.into_response());
    }

    phases.mark("checks");
    // Within the dedupe window the key names its latest request; after it, the next
    // generation. Either way the id is derived, so racing triggers share one workflow id.
    let window_ms = i64::try_from(state.dedupe_window.as_millis()).unwrap_or(i64::MAX);
    let latest = state
        .store
        .find_request_by_dedupe_key(&tenant, request.dedupe_key.key())
        .await?;
    let (request_id, generation) = match latest {
        Some(r) if now_ms() - r.created_at_ms < window_ms => {
            if r.started {
                return Ok(accepted(&r.request_id, true).into_response());
            }
            // Recorded but never started (Temporal was down): start it now.
            (r.request_id, r.generation)
        }
        Some(r) => {
            let next = r.generation + 1;
            (request.dedupe_key.request_id_for(next), next)
        }
        None => (request.dedupe_key.request_id(), 0),
    };
    phases.mark("dedupe");
    let path = DeliveryPath::for_audience(&request.recipients, state.direct_max_recipients);
    let priority = state.scheduling.task_priority(
        request.priority,
        &tenant,
        admitted.settings().fairness_weight,
    );
    let input = NotificationInput {
        path,
        request_id: request_id.clone(),
        tenant_id: tenant,
        template_id: request.template_id,
        recipients: request.recipients,
        channels: request.channels,
        data: request.data,
        priority: request.priority,
        ttl_seconds: request.ttl_seconds,
        accepted_at_ms: now_ms(),
        carry: None,
        actor_id: request.actor_id,
    };
    state
        .store
        .insert_request(
            &input,
            generation,
            request.dedupe_key.key(),
            &request.metadata,
        )
        .await?;
    phases.mark("record");
    let turn = state.ingest.start_turn(&input.tenant_id).await;
    phases.mark("turn");
    let outcome = tokio::time::timeout(START_TIMEOUT, state.orchestrator.start(input, priority))
        .await
        .map_err(|_| {
            ApiError::Unavailable(
                "temporal did not accept the request in time; retry with the same dedupe_key"
                    .into(),
            )
        })?
        .map_err(|e| ApiError::Unavailable(format!("{e}; retry with the same dedupe_key")))?;
    drop(turn);
    phases.mark("start");
    state.store.mark_started(&request_id).await?;
    phases.mark("mark_started");
    let duplicate = outcome == StartOutcome::Duplicate;
    tracing::info!(request_id = %request_id, duplicate, "notification accepted");
    let mut response = accepted(&request_id, duplicate).into_response();
    phases.attach(&mut response);
    Ok(response)
}

/// 202 for a new request, 200 for a duplicate of an existing one.
fn accepted(request_id: &RequestId, duplicate: bool) -> (StatusCode, Json<NotifyResponse>) {
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (
        status,
        Json(NotifyResponse {
            status_url: format!("/v1/status/{request_id}"),
            request_id: request_id.to_string(),
            duplicate,
        }),
    )
}

//! `POST /v1/notify`: accept a trigger, start its workflow, answer with the request id.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fanout_contracts::NotificationInput;
use fanout_domain::digest::DigestSpec;
use fanout_domain::ids::InvalidId;
use fanout_domain::limits::{check_data, check_metadata};
use fanout_domain::render::missing_data;
use fanout_domain::request::{
    DeliveryPath, MAX_TTL_SECONDS, NotificationRequest, Priority, RecipientsQuery,
};
use fanout_domain::template::Template;
use fanout_domain::timing::{LocalTime, Schedule};
use fanout_domain::{Channel, DedupeKey, RequestId, SegmentId, TemplateId, TenantId, UserId};
use fanout_store::now_ms;
use fanout_store::requests::RequestKeys;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::orchestrator::StartOutcome;
use crate::preflight;
use crate::timing::Phases;

/// The request body as sent; converted into a [`NotificationRequest`] before anything else.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NotifyRequest)]
pub struct NotifyBody {
    /// The template that renders every channel's content.
    #[schema(value_type = TemplateId)]
    template_id: String,
    /// The audience.
    recipients_query: RawRecipients,
    /// The channels to deliver over; defaults to every channel the template has content for.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Channel>>, min_items = 1)]
    channel_prefs: Option<Vec<String>>,
    /// Template variables: at most 65536 bytes of JSON by default (the operator may change it
    /// per tenant, `max_data_bytes`). A notify missing a value the template renders with no
    /// default is refused (422) naming it (`data.<path>`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    /// Scoped to the tenant: the same key within the dedupe window returns the same request.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )] // DedupeKey::MAX_LEN
    dedupe_key: Option<String>,
    /// Who triggered the request; left out of the audience (an explicit list, followers or a
    /// segment).
    #[serde(default)]
    #[schema(value_type = Option<UserId>)]
    actor_id: Option<String>,
    /// Orders the request's work when the platform is backlogged: high before normal before
    /// low (default normal).
    #[serde(default)]
    priority: Option<Priority>,
    /// How long delivery stays worth attempting, in seconds.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000)] // request::MAX_TTL_SECONDS
    ttl_seconds: Option<u32>,
    /// Free-form labels echoed back in status.
    #[serde(default)]
    #[schema(schema_with = fanout_domain::limits::metadata_schema)]
    metadata: Option<BTreeMap<String, String>>,
    /// Confirms an audience over the blast-radius limit: the request goes through when this
    /// is at least the estimated audience (see [`crate::preflight`]).
    #[serde(default)]
    confirm_audience: Option<u64>,
    /// Send later, at this instant (RFC 3339 with an offset, e.g. `2026-12-05T09:00:00Z`): at
    /// most 30 days ahead; up to 300 seconds in the past runs at once. The request is
    /// `scheduled` until then, and can be cancelled or moved (`POST
    /// /v1/requests/{id}/schedule`). Not with `delay_seconds`.
    #[serde(default)]
    #[schema(format = DateTime, example = "2026-12-05T09:00:00Z")]
    send_at: Option<String>,
    /// Send this many seconds after the request is accepted (0 sends now); at most 2592000
    /// (30 days). Not with `send_at`.
    #[serde(default)]
    #[schema(maximum = 2592000)] // timing::MAX_SCHEDULE_AHEAD_SECONDS
    delay_seconds: Option<u32>,
    /// Deliver at this wall-clock time in each recipient's own time zone (the user's
    /// `timezone`, else the tenant's default, `PUT /v1/settings/timezone`, else UTC): `HH:MM`
    /// or `HH:MM:SS`, a time already past in a zone meaning tomorrow's; or with a date,
    /// `2026-12-05T09:00`, a time already past sending at once. Recipients are grouped by the
    /// instant they get it, one timer per group. Not with `send_at` or `delay_seconds`.
    #[serde(default)]
    #[schema(example = "09:00", max_length = 32)]
    send_at_local: Option<String>,
    /// Folds this trigger into a digest as declared here instead of as its template declares
    /// (or at all, for a template that declares none): see the template's `digest`.
    #[serde(default)]
    digest: Option<DigestSpec>,
}

/// `?dry_run=true` answers with a [`crate::preflight::Preflight`] and records nothing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotifyParams {
    /// Preview the request: answer 200 with a Preflight, record and start nothing.
    #[serde(default)]
    #[param(default = false)]
    dry_run: bool,
}

/// The audience as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawRecipients {
    /// An explicit list of users; duplicates are dropped, and the actor is left out.
    Users {
        /// 1 to 10,000 users (`request::MAX_EXPLICIT_RECIPIENTS`).
        #[schema(value_type = Vec<UserId>, min_items = 1, max_items = 10000)]
        user_ids: Vec<String>,
    },
    /// Everyone following the user `of` when the request runs; an empty audience if there are
    /// none.
    Followers {
        /// The followed user.
        #[schema(value_type = UserId)]
        of: String,
    },
    /// The members of a segment when the request runs; 404 if the segment does not exist.
    Segment {
        /// The segment.
        #[schema(value_type = SegmentId)]
        segment_id: String,
    },
}

/// What `POST /v1/notify` answers with 200: a duplicate's [`NotifyResponse`], or a dry run's
/// [`preflight::Preflight`].
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // never built: it only describes the 200
enum NotifyOk {
    Duplicate(NotifyResponse),
    DryRun(preflight::Preflight),
}

/// A 422 of `POST /v1/notify`: a field, or the blast-radius guard.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum NotifyRefusal {
    Field(ErrorBody),
    BlastRadius(preflight::BlastRadiusError),
}

/// The answer to an accepted (202) or duplicate (200) trigger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotifyResponse {
    /// The request id; also the Temporal workflow id.
    #[schema(value_type = RequestId)]
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

/// Parses `send_at_local`, which excludes the other two ways of timing a request.
fn local_time(body: &NotifyBody) -> Result<Option<LocalTime>, ApiError> {
    let Some(raw) = body.send_at_local.as_deref() else {
        return Ok(None);
    };
    if body.send_at.is_some() || body.delay_seconds.is_some() {
        return Err(ApiError::field(
            "send_at_local",
            "send_at_local is a time in each recipient's zone; send it without send_at and \
             delay_seconds",
        ));
    }
    LocalTime::parse(raw)
        .map(Some)
        .map_err(|e| ApiError::field(e.field, e.message))
}

/// How long the API waits on Temporal to accept a start before answering 503.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /v1/notify`.
#[utoipa::path(
    post,
    path = "/v1/notify",
    tag = "requests",
    summary = "Trigger a notification, or preview it with ?dry_run=true",
    description = "With `dry_run=true` nothing is recorded or started: 200 answers with a Preflight estimate (dry runs have a quota of their own). A real notify whose audience (members with a profile) exceeds the blast-radius limit (the template's max_audience, else the tenant's setting, else the platform default) is refused with 422 `blast_radius_exceeded` unless the body carries `confirm_audience` >= the estimate. A notify whose `data` lacks a value the template renders with no default is refused with 422 naming it (`data.<path>`); a dry run lists them in `missing_data`. A trigger of a digest template (or one that brings its own `digest`) starts no workflow: it is folded into its key's open digest, and its status says `digested` and names the digest.",
    params(NotifyParams),
    request_body = NotifyBody,
    responses(
        (status = 202, description = "Accepted; a workflow now runs the request", body = NotifyResponse),
        (status = 200, description = "A duplicate of an earlier trigger with the same dedupe_key (nothing new started); or, with dry_run=true, the preflight estimate", body = NotifyOk),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The template or the segment does not exist (code not_found)", body = ErrorBody),
        (status = 409, description = "The template is disabled (code conflict)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is invalid (code invalid_field, field names it: e.g. `recipients_query.user_ids[3]`, `data.order.id` for a value the template needs, `data` over the tenant's cap), or the audience exceeds the blast-radius limit (code blast_radius_exceeded: repeat with confirm_audience)", body = NotifyRefusal),
        (status = 429, description = "Over the tenant's ingest quota (a token bucket per tenant and API process: `ingest_per_second` sustained, `ingest_burst` at once), or with dry_run=true over the dry-run quota. Nothing was recorded or started; retry the same body after `Retry-After` seconds.", body = crate::ingest::RateLimited,
            headers(("Retry-After" = u64, description = "Whole seconds until a retry can be admitted (rounded up, at least 1)"))),
        (status = 503, description = "Temporal did not accept the request in time (code unavailable); retry with the same dedupe_key", body = ErrorBody),
    )
)]
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
    let run_at_ms = Schedule {
        send_at: body.send_at.as_deref(),
        delay_seconds: body.delay_seconds,
    }
    .run_at(now_ms())
    .map_err(|e| ApiError::field(e.field, e.message))?;
    let local_time = local_time(&body)?;
    // The field that timed the request, if any: a digest's trigger may not be timed.
    let timed_by = [
        ("send_at", body.send_at.is_some()),
        ("delay_seconds", body.delay_seconds.is_some()),
        ("send_at_local", body.send_at_local.is_some()),
    ]
    .into_iter()
    .find_map(|(field, set)| set.then_some(field));
    let digest_override = body.digest.clone();
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
        preflight.run_at_ms = run_at_ms;
        return Ok(Json(preflight).into_response());
    }
    refuse_missing_data(&missing, &template)?;
    let digest = crate::digests::prepare(&template, digest_override, &request.data)?;
    if let (Some(_), Some(field)) = (&digest, timed_by) {
        // A digest delivers when its window closes: a trigger has no time of its own.
        return Err(ApiError::field(
            field,
            "a digest's trigger is delivered when its digest's window closes; send it without \
             send_at, delay_seconds and send_at_local",
        ));
    }
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
    tracing::Span::current().record("request_id", tracing::field::display(&request_id));
    // A local-time request regroups its snapshot by release instant, which the tree does.
    let path = match local_time {
        Some(_) => DeliveryPath::Tree,
        None => DeliveryPath::for_audience(&request.recipients, state.direct_max_recipients),
    };
    let priority = state.scheduling.task_priority(
        request.priority,
        &tenant,
        admitted.settings().fairness_weight,
    );
    // Recipients' quiet hours may defer anything below high priority whose category does not
    // bypass them, when the tenant uses quiet hours at all (a default, or a user with a window).
    let quiet_hours = request.priority != Priority::High
        && state
            .store
            .quiet_hours_apply(&tenant, &template.category)
            .await?;
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
        run_at_ms,
        local_time,
        quiet_hours,
    };
    state
        .store
        .insert_request(
            RequestKeys {
                request_id: &input.request_id,
                tenant_id: &input.tenant_id,
                template_id: &input.template_id,
                path: input.path,
                run_at_ms,
            },
            &input,
            generation,
            request.dedupe_key.key(),
            &request.metadata,
        )
        .await?;
    phases.mark("record");
    // A digest template's trigger starts no workflow of its own: it joins its digest.
    if let Some(digest) = digest {
        return crate::digests::fold(&state, digest, &input, priority).await;
    }
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

//! Preflight: what a notify would do before it does it.
//!
//! `POST /v1/notify?dry_run=true` takes the same body as a real notify, validates it the same
//! way, and answers 200 with an estimate ([`Preflight`]) instead of recording or starting
//! anything: the audience's size, per channel how many recipients each of delivery's screens
//! stops (no address, preferences, suppression list) and how many remain, and how long the
//! send would take. Counting happens in SQL (`fanout_store::estimate`), so a dry run of a
//! million followers reads no profiles.
//!
//! The blast-radius guard runs on every real notify, before anything is recorded: one `COUNT`
//! of the audience's recipients against the most specific limit that is set (the template's
//! `max_audience`, else the tenant's `PUT /v1/settings/blast-radius`, else
//! [`PreflightConfig::default_max_audience`]). Over it, the notify is refused with 422
//! ([`BlastRadiusExceeded`]) unless the body carries `"confirm_audience": n` with `n` at least
//! the estimate: the caller states how many people it means to reach, so a request is let
//! through only when the audience is no bigger than what its sender acknowledged.
//!
//! Completion time model: `deliveries / rate`, where `deliveries` is the sum of deliverable
//! recipients over the request's channels and `rate` is the lowest of
//! [`PreflightConfig::throughput_per_second`] (the platform's sustained delivery rate: the
//! benchmark's figure for one worker) and any quota the caller passes. It ignores provider
//! backoff and retries, so it is a lower bound.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fanout_domain::request::RecipientsQuery;
use fanout_domain::template::Template;
use fanout_domain::{Channel, TemplateId, TenantId};
use fanout_store::estimate::ChannelEstimate;
use fanout_store::limits::{template_key, tenant_key};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// The body field that confirms an audience over the blast-radius limit.
pub const OVERRIDE_FIELD: &str = "confirm_audience";

/// Preflight and blast-radius settings of the API (`FANOUT_PREFLIGHT__*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PreflightConfig {
    /// The blast-radius limit when neither the template nor the tenant sets one.
    pub default_max_audience: u64,
    /// Deliveries per second the platform sustains, for completion estimates.
    pub throughput_per_second: u32,
    /// Up to how many recipients a dry run counts everything exactly; past it, push
    /// suppression is extrapolated from a sample and the answer says `"exact": false`.
    pub exact_limit: u64,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        Self {
            default_max_audience: 100_000,
            // The benchmark's sustained rate for one worker against the sandbox.
            throughput_per_second: 5_000,
            exact_limit: 100_000,
        }
    }
}

/// Which setting a blast-radius limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// The template's `max_audience`.
    Template,
    /// The tenant's `PUT /v1/settings/blast-radius`.
    Tenant,
    /// The API's configured default.
    Platform,
}

/// The blast-radius limit that applies to a notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlastRadius {
    /// The largest audience allowed without confirmation.
    pub limit: u64,
    /// Where it comes from.
    pub source: LimitSource,
}

/// Resolves the limit for `template`: the template's, else the tenant's, else the platform's.
pub async fn blast_radius(
    state: &AppState,
    tenant: &TenantId,
    template: &Template,
) -> Result<BlastRadius, ApiError> {
    if let Some(limit) = template.max_audience {
        return Ok(BlastRadius {
            limit,
            source: LimitSource::Template,
        });
    }
    Ok(match state.store.blast_radius_limit(tenant).await? {
        Some(limit) => BlastRadius {
            limit,
            source: LimitSource::Tenant,
        },
        None => BlastRadius {
            limit: state.preflight.default_max_audience,
            source: LimitSource::Platform,
        },
    })
}

/// A real notify refused because its audience exceeds the blast-radius limit: 422 with
/// `{"error": {"code": "blast_radius_exceeded", "message", "field": "confirm_audience",
/// "limit": {"limit", "source"}, "estimated_audience", "override": {"field", "value"}}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlastRadiusExceeded {
    /// The limit that was exceeded.
    pub radius: BlastRadius,
    /// The audience's recipients (members with a profile).
    pub estimate: u64,
    /// The confirmation the body carried, if any (too low).
    pub confirmed: Option<u64>,
}

impl IntoResponse for BlastRadiusExceeded {
    fn into_response(self) -> Response {
        let source = match self.radius.source {
            LimitSource::Template => "the template's max_audience",
            LimitSource::Tenant => "the tenant's blast-radius limit",
            LimitSource::Platform => "the platform's default blast-radius limit",
        };
        let mut message = format!(
            "the audience of about {} recipients exceeds {source} of {}; to send anyway, repeat the request with \"{OVERRIDE_FIELD}\": {}",
            self.estimate, self.radius.limit, self.estimate
        );
        if let Some(confirmed) = self.confirmed {
            message.push_str(&format!(
                " ({OVERRIDE_FIELD} {confirmed} is below the estimate)"
            ));
        }
        let body = BlastRadiusError {
            error: BlastRadiusErrorDetail {
                code: BlastRadiusCode::BlastRadiusExceeded,
                message,
                field: OVERRIDE_FIELD.to_owned(),
                limit: self.radius,
                estimated_audience: self.estimate,
                confirm: Confirmation {
                    field: OVERRIDE_FIELD.to_owned(),
                    value: self.estimate,
                },
            },
        };
        let mut response = (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        // Counted apart from other 422s (see `observe::notify_outcome`).
        response
            .extensions_mut()
            .insert(fanout_telemetry::metrics::NotifyOutcome::RefusedBlastRadius);
        response
    }
}

/// The body of a [`BlastRadiusExceeded`] refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlastRadiusError {
    /// What was refused and how to confirm it.
    pub error: BlastRadiusErrorDetail,
}

/// The inside of a [`BlastRadiusError`].
#[derive(Debug, Serialize, ToSchema)]
pub struct BlastRadiusErrorDetail {
    /// Always `blast_radius_exceeded`.
    pub code: BlastRadiusCode,
    /// The estimate, the limit and how to send anyway, in words.
    pub message: String,
    /// `confirm_audience`.
    #[schema(pattern = "^confirm_audience$")]
    pub field: String,
    /// The limit that was exceeded.
    pub limit: BlastRadius,
    /// The audience's recipients (members with a profile).
    pub estimated_audience: u64,
    /// Send this field with this value to go through.
    #[serde(rename = "override")]
    pub confirm: Confirmation,
}

/// The code of a [`BlastRadiusError`].
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlastRadiusCode {
    /// The audience exceeds the blast-radius limit.
    BlastRadiusExceeded,
}

/// The confirmation that lets a notify over the limit through.
#[derive(Debug, Serialize, ToSchema)]
pub struct Confirmation {
    /// `confirm_audience`.
    #[schema(pattern = "^confirm_audience$")]
    pub field: String,
    /// The estimate: send at least this.
    pub value: u64,
}

/// The guard of a real notify: one `COUNT` of the audience against the limit. `Ok(Some(_))`
/// is a refusal to send back as is; `confirmed` is the body's `confirm_audience`.
pub async fn guard(
    state: &AppState,
    tenant: &TenantId,
    recipients: &RecipientsQuery,
    template: &Template,
    confirmed: Option<u64>,
) -> Result<Option<BlastRadiusExceeded>, ApiError> {
    let radius = blast_radius(state, tenant, template).await?;
    let estimate = state
        .store
        .audience_size(tenant, recipients)
        .await?
        .recipients;
    if estimate <= radius.limit || confirmed.is_some_and(|c| c >= estimate) {
        return Ok(None);
    }
    tracing::info!(
        tenant = %tenant,
        estimate,
        limit = radius.limit,
        confirmed,
        "notify refused by blast-radius guard"
    );
    Ok(Some(BlastRadiusExceeded {
        radius,
        estimate,
        confirmed,
    }))
}

/// The audience part of a [`Preflight`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AudiencePreview {
    /// `users`, `followers` or `segment`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(users|followers|segment)$")]
    pub kind: String,
    /// Everyone the query names.
    pub members: u64,
    /// Members without a profile; delivery skips them.
    pub unknown_users: u64,
    /// Members with a profile: the size the blast-radius guard compares.
    pub recipients: u64,
}

/// How long the send would take (see the module docs for the model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionEstimate {
    /// Seconds from start to the last delivery, at `deliveries_per_second`.
    pub seconds: f64,
    /// The rate the estimate assumes.
    pub deliveries_per_second: u32,
    /// What sets that rate: `platform_throughput` or `quota`.
    #[schema(pattern = "^(platform_throughput|quota)$")]
    pub limited_by: String,
}

impl CompletionEstimate {
    /// `deliveries` at the lower of `throughput` and `quota` (both per second).
    pub fn model(deliveries: u64, throughput: u32, quota: Option<u32>) -> Self {
        let (rate, limited_by) = match quota {
            Some(q) if q < throughput => (q, "quota"),
            _ => (throughput, "platform_throughput"),
        };
        let rate = rate.max(1);
        Self {
            seconds: deliveries as f64 / f64::from(rate),
            deliveries_per_second: rate,
            limited_by: limited_by.to_owned(),
        }
    }
}

/// The blast-radius part of a [`Preflight`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlastRadiusPreview {
    /// The limit that applies.
    #[serde(flatten)]
    pub radius: BlastRadius,
    /// Whether a real notify would be refused without confirmation.
    pub exceeded: bool,
    /// The body field that confirms an audience over the limit: `confirm_audience`.
    #[schema(pattern = "^confirm_audience$")]
    pub override_field: String,
}

/// The answer to a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preflight {
    /// Always true: nothing was recorded or started.
    pub dry_run: bool,
    /// The template.
    pub template_id: String,
    /// Its active version, which a real notify now would use.
    pub template_version: i64,
    /// Its category, which preferences were evaluated for.
    pub category: String,
    /// The audience's size.
    pub audience: AudiencePreview,
    /// Per channel the request would use.
    #[schema(schema_with = channel_estimates_schema)]
    pub channels: BTreeMap<Channel, ChannelEstimate>,
    /// Channels the request would not use, and why: `not_in_template` or `not_requested`.
    #[schema(schema_with = channels_skipped_schema)]
    pub channels_skipped: BTreeMap<Channel, String>,
    /// Deliveries over every channel (the sum of `deliverable`).
    pub deliverable: u64,
    /// False when part of a count was extrapolated from a sample.
    pub exact: bool,
    /// How long the send would take.
    pub estimated_completion: CompletionEstimate,
    /// Whether the blast-radius guard would refuse it.
    pub blast_radius: BlastRadiusPreview,
    /// The `data.*` values the template renders with no default that this request's `data`
    /// lacks; a real notify is refused (422) until they are sent.
    pub missing_data: Vec<String>,
    /// When the request would start, from its `send_at` or `delay_seconds` (milliseconds since
    /// the epoch); `null` starts at once.
    #[schema(value_type = Option<i64>)]
    pub run_at_ms: Option<fanout_domain::UnixMillis>,
}

fn channel_estimates_schema() -> utoipa::openapi::Object {
    fanout_domain::channel::keyed_by_channel(utoipa::openapi::Ref::from_schema_name(
        "ChannelEstimate",
    ))
}

fn channels_skipped_schema() -> utoipa::openapi::Object {
    fanout_domain::channel::keyed_by_channel(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(["not_in_template", "not_requested"])),
    )
}

/// The tighter of the tenant's and the template's delivery quotas, if either is set.
async fn quota(
    state: &AppState,
    tenant: &TenantId,
    template_id: &TemplateId,
) -> Result<Option<u32>, ApiError> {
    let mut tightest: Option<u32> = None;
    for key in [tenant_key(tenant), template_key(tenant, template_id)] {
        if let Some(quota) = state.store.get_quota(tenant, &key).await? {
            tightest = Some(tightest.map_or(quota.per_second, |t| t.min(quota.per_second)));
        }
    }
    Ok(tightest)
}

/// Answers a dry run of an already validated notify on `channels` (non-empty, all in the
/// template).
pub async fn dry_run(
    state: &AppState,
    tenant: &TenantId,
    recipients: &RecipientsQuery,
    channels: &[Channel],
    template: &Template,
) -> Result<Preflight, ApiError> {
    let estimate = state
        .store
        .estimate_audience(
            tenant,
            recipients,
            channels,
            &template.category,
            state.preflight.exact_limit,
        )
        .await?;
    let radius = blast_radius(state, tenant, template).await?;
    let deliverable = estimate.channels.values().map(|c| c.deliverable).sum();
    let channels_skipped = Channel::ALL
        .into_iter()
        .filter(|c| !channels.contains(c))
        .map(|c| {
            let why = if template.supports(c) {
                "not_requested"
            } else {
                "not_in_template"
            };
            (c, why.to_owned())
        })
        .collect();
    let kind = match recipients {
        RecipientsQuery::Users { .. } => "users",
        RecipientsQuery::Followers { .. } => "followers",
        RecipientsQuery::Segment { .. } => "segment",
        RecipientsQuery::Digest { .. } => "digest",
    };
    Ok(Preflight {
        dry_run: true,
        template_id: template.template_id.to_string(),
        template_version: template.version,
        category: template.category.clone(),
        audience: AudiencePreview {
            kind: kind.to_owned(),
            members: estimate.size.members,
            unknown_users: estimate.size.members - estimate.size.recipients,
            recipients: estimate.size.recipients,
        },
        channels: estimate.channels,
        channels_skipped,
        deliverable,
        exact: !estimate.sampled,
        estimated_completion: CompletionEstimate::model(
            deliverable,
            state.preflight.throughput_per_second,
            quota(state, tenant, &template.template_id).await?,
        ),
        blast_radius: BlastRadiusPreview {
            exceeded: estimate.size.recipients > radius.limit,
            radius,
            override_field: OVERRIDE_FIELD.to_owned(),
        },
        missing_data: Vec::new(),
        run_at_ms: None,
    })
}

/// Body of `PUT /v1/settings/blast-radius`; `null` (or omitted) clears the tenant's limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BlastRadiusInput)]
pub struct BlastRadiusBody {
    /// The largest audience a notify may reach without confirming it; `null` (or absent)
    /// clears the tenant's limit, so the platform default applies.
    #[serde(default)]
    #[schema(minimum = 1)]
    max_audience: Option<u64>,
}

/// The tenant's blast-radius setting.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlastRadiusSetting {
    /// The tenant's own limit, if set.
    pub max_audience: Option<u64>,
    /// The platform default, which applies when neither the tenant nor a template sets one.
    pub platform_default: u64,
    /// The limit for templates without their own `max_audience`.
    pub effective: u64,
}

fn setting(state: &AppState, max_audience: Option<u64>) -> BlastRadiusSetting {
    let platform_default = state.preflight.default_max_audience;
    BlastRadiusSetting {
        max_audience,
        platform_default,
        effective: max_audience.unwrap_or(platform_default),
    }
}

/// `GET /v1/settings/blast-radius`.
#[utoipa::path(
    get,
    path = "/v1/settings/blast-radius",
    tag = "settings",
    summary = "The tenant's blast-radius limit and the platform default",
    responses(
        (status = 200, description = "The setting", body = BlastRadiusSetting),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn get_setting(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<BlastRadiusSetting>, ApiError> {
    let limit = state.store.blast_radius_limit(&tenant).await?;
    Ok(Json(setting(&state, limit)))
}

/// `PUT /v1/settings/blast-radius`.
#[utoipa::path(
    put,
    path = "/v1/settings/blast-radius",
    tag = "settings",
    summary = "Set or clear the tenant's blast-radius limit",
    request_body = BlastRadiusBody,
    responses(
        (status = 200, description = "The setting", body = BlastRadiusSetting),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody), (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody), (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "max_audience is 0 or not a whole number; field names it", body = ErrorBody),
    )
)]
pub async fn put_setting(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<BlastRadiusBody>,
) -> Result<Json<BlastRadiusSetting>, ApiError> {
    if body.max_audience == Some(0) {
        return Err(ApiError::InvalidField {
            field: "max_audience".into(),
            message: "max_audience must be at least 1, or null for the platform default".into(),
        });
    }
    if !state
        .store
        .set_blast_radius_limit(&tenant, body.max_audience)
        .await?
    {
        return Err(ApiError::NotFound(format!("tenant '{tenant}' not found")));
    }
    Ok(Json(setting(&state, body.max_audience)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_runs_at_the_lower_of_throughput_and_quota() {
        let platform = CompletionEstimate::model(10_000, 5_000, None);
        assert_eq!(platform.seconds, 2.0);
        assert_eq!(platform.limited_by, "platform_throughput");
        let quota = CompletionEstimate::model(10_000, 5_000, Some(100));
        assert_eq!((quota.seconds, quota.deliveries_per_second), (100.0, 100));
        assert_eq!(quota.limited_by, "quota");
        assert_eq!(
            CompletionEstimate::model(10, 5_000, Some(9_000)).seconds,
            0.002
        );
        assert_eq!(CompletionEstimate::model(0, 0, None).seconds, 0.0);
    }

    #[test]
    fn a_refusal_names_the_limit_the_estimate_and_the_override() {
        let refusal = BlastRadiusExceeded {
            radius: BlastRadius {
                limit: 5,
                source: LimitSource::Tenant,
            },
            estimate: 8,
            confirmed: Some(6),
        };
        assert_eq!(
            refusal.into_response().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}

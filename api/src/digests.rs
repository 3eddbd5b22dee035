//! Triggers of digest templates (see `fanout_domain::digest`): a notify folds the trigger into
//! its key's open digest instead of starting its own workflow, cancel takes it out again while
//! the digest is open, and status names the digest.
//!
//! The notify handler calls [`prepare`] before it records anything (so a bad key value is a
//! 422 that leaves no trace) and [`fold`] once the trigger is recorded.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fanout_contracts::{DigestInput, NotificationInput};
use fanout_domain::digest::DigestSpec;
use fanout_domain::receipt::{Progress, RequestState};
use fanout_domain::template::Template;
use fanout_domain::{DigestId, TenantId, UnixMillis};
use fanout_store::digests::{Digest, DigestCancel, DigestState, DigestTrigger};
use fanout_store::now_ms;
use fanout_store::requests::RequestRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::control::ControlResponse;
use crate::error::ApiError;
use crate::notify::NotifyResponse;
use crate::requests::StatusResponse;
use crate::scheduling::TaskPriority;

/// How long the API waits on Temporal to accept a digest's workflow before answering 503.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A digest trigger, checked before it is recorded.
pub(crate) struct Pending {
    spec: DigestSpec,
    key: String,
}

/// Checks a trigger against the digest spec it is folded by (the notify's own `digest`, else
/// its template's): `None` when neither declares one, a 422 naming the field for a spec out of
/// bounds or a key value over its bound (`data.<key>`).
pub(crate) fn prepare(
    template: &Template,
    own: Option<DigestSpec>,
    data: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Pending>, ApiError> {
    let spec = match own {
        Some(spec) => {
            spec.check()
                .map_err(|e| ApiError::field(format!("digest.{}", e.field), e.reason))?;
            spec
        }
        None => match &template.digest {
            Some(spec) => spec.clone(),
            None => return Ok(None),
        },
    };
    let key = spec.key_value(data).map_err(|e| {
        let field = spec
            .key
            .as_deref()
            .map_or("data".to_owned(), |k| format!("data.{k}"));
        ApiError::field(field, e.reason)
    })?;
    Ok(Some(Pending { spec, key }))
}

/// Folds a recorded trigger into its digest, makes sure the digest's workflow runs, and
/// answers 202 with the trigger's request id (its status says `digested` and names the
/// digest).
pub(crate) async fn fold(
    state: &AppState,
    pending: Pending,
    input: &NotificationInput,
    priority: TaskPriority,
) -> Result<Response, ApiError> {
    let new_digest_id = DigestId::parse(&format!("dgst-{}", uuid::Uuid::new_v4().simple()))
        .expect("a uuid's simple form is 32 lowercase hex digits");
    let window_ms = i64::from(pending.spec.window_seconds) * 1_000;
    let folded = state
        .store
        .fold_into_digest(&DigestTrigger {
            tenant_id: &input.tenant_id,
            template_id: &input.template_id,
            key: &pending.key,
            window_ms,
            max_items: pending.spec.max_items,
            new_digest_id: &new_digest_id,
            request_id: &input.request_id,
            data: &input.data,
            recipients: &input.recipients,
            actor_id: input.actor_id.as_ref(),
            now_ms: now_ms(),
        })
        .await?;
    // Every trigger asks, not only the one that opened the digest: a start lost to a crash
    // or a Temporal outage after the digest was opened is made good by the next trigger (and
    // by a retry of this one, which folds nothing twice).
    // The key's previous digest, if this trigger found it past its window and still open, is
    // asked for too: had its start been lost, nothing else would ever close it.
    let due = folded
        .expired
        .iter()
        .cloned()
        .chain([(folded.digest_id.clone(), folded.closes_at_ms)]);
    for (digest_id, closes_at_ms) in due {
        let digest = DigestInput {
            digest_id,
            tenant_id: input.tenant_id.clone(),
            template_id: input.template_id.clone(),
            closes_at_ms,
        };
        tokio::time::timeout(
            START_TIMEOUT,
            state.orchestrator.start_digest(digest, priority.clone()),
        )
        .await
        .map_err(|_| {
            ApiError::Unavailable(
                "temporal did not accept the digest in time; retry with the same dedupe_key".into(),
            )
        })?
        .map_err(|e| ApiError::Unavailable(format!("{e}; retry with the same dedupe_key")))?;
    }
    state.store.mark_started(&input.request_id).await?;
    tracing::info!(
        request_id = %input.request_id,
        digest_id = %folded.digest_id,
        opened = folded.opened,
        "trigger folded into digest"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(NotifyResponse {
            status_url: format!("/v1/status/{}", input.request_id),
            request_id: input.request_id.to_string(),
            duplicate: false,
        }),
    )
        .into_response())
}

/// The digest a trigger was folded into, as status shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DigestStatus {
    /// The digest.
    #[schema(value_type = String, pattern = "^dgst-[0-9a-f]{32}$")]
    pub digest_id: String,
    /// `open` (collecting), `closing` (its window ended) or `closed` (delivered through
    /// `request_id`).
    #[schema(pattern = "^(open|closing|closed)$")]
    pub state: String,
    /// When its window ends.
    #[schema(value_type = i64)]
    pub closes_at_ms: UnixMillis,
    /// The request the digest closed into: one notification per recipient; its status and
    /// receipts are the delivery's.
    #[schema(value_type = Option<fanout_domain::RequestId>)]
    pub request_id: Option<String>,
}

impl From<Digest> for DigestStatus {
    fn from(digest: Digest) -> Self {
        Self {
            digest_id: digest.digest_id.to_string(),
            state: digest.state.as_str().to_owned(),
            closes_at_ms: digest.closes_at_ms,
            request_id: digest.request_id.map(|id| id.to_string()),
        }
    }
}

/// Status of a digested trigger: nothing of its own to count, and the digest it is in.
pub(crate) async fn status(
    state: &AppState,
    record: &RequestRecord,
) -> Result<StatusResponse, ApiError> {
    let digest = state.store.digest_of_trigger(&record.request_id).await?;
    let mut status =
        crate::requests::respond(record, RequestState::Digested, Progress::default(), "store");
    status.digest = digest.map(DigestStatus::from);
    Ok(status)
}

/// Cancels a digested trigger: its item leaves the digest while the digest has not closed
/// (409 once it has: the trigger is part of the digest's request, which can be cancelled).
pub(crate) async fn cancel(
    state: &AppState,
    tenant: &TenantId,
    record: &RequestRecord,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    let request_id = &record.request_id;
    match state.store.cancel_digested(tenant, request_id).await? {
        DigestCancel::Removed(digest_id) => {
            tracing::info!(request_id = %request_id, digest_id = %digest_id, "digested trigger cancelled");
            Ok((
                StatusCode::ACCEPTED,
                Json(ControlResponse {
                    request_id: request_id.to_string(),
                    action: "cancel".into(),
                }),
            ))
        }
        DigestCancel::Closed(digest) => Err(ApiError::Conflict(format!(
            "request '{request_id}' is in digest '{}', which {}; cancel request '{}' instead",
            digest.digest_id,
            match digest.state {
                DigestState::Closed => "closed already",
                DigestState::Open | DigestState::Closing => "is closing",
            },
            digest
                .request_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
        ))),
        DigestCancel::NotDigested => Err(ApiError::Conflict(format!(
            "request '{request_id}' is not in a digest"
        ))),
    }
}

//! Digests (see `fanout_domain::digest`): closing one into its request, and what each of a
//! page's recipients sees of it when that request delivers.

use std::collections::HashMap;

use fanout_contracts::{CloseDigestInput, ClosedDigest, DeliverPageInput, NotificationInput};
use fanout_domain::digest::DigestView;
use fanout_domain::render::{self, RenderContext};
use fanout_domain::request::{DeliveryPath, RecipientsQuery};
use fanout_domain::user::User;
use fanout_domain::{RequestId, UserId};
use fanout_store::requests::RequestKeys;
use fanout_store::{Store, now_ms};
use temporalio_sdk::activities::ActivityError;

use crate::{permanent, store_error};

/// Closes the digest and records the request it closes into: every user its triggers name,
/// with the channels, `data`, priority and time-to-live of its newest trigger. Safe to retry:
/// the close and the record are both idempotent and the request is built from what they
/// return, so a retry answers the same request.
pub async fn close(store: &Store, input: &CloseDigestInput) -> Result<ClosedDigest, ActivityError> {
    let closed = store
        .close_digest(&input.digest_id, now_ms())
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            permanent(
                fanout_contracts::ERR_INVALID_INPUT,
                format!("digest {} is not in the store", input.digest_id),
            )
        })?;
    let digest = closed.digest;
    let (Some(request_id), Some(newest)) = (digest.request_id.clone(), closed.newest_trigger)
    else {
        tracing::info!(digest_id = %digest.digest_id, "digest closed empty");
        return Ok(ClosedDigest {
            request: None,
            items: closed.items,
        });
    };
    let trigger: NotificationInput = store
        .request_input(&digest.tenant_id, &newest)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            permanent(
                fanout_contracts::ERR_INVALID_INPUT,
                format!(
                    "trigger {newest} of digest {} has no input",
                    digest.digest_id
                ),
            )
        })?;
    let request = NotificationInput {
        request_id: request_id.clone(),
        tenant_id: digest.tenant_id.clone(),
        template_id: digest.template_id.clone(),
        recipients: RecipientsQuery::Digest {
            digest_id: digest.digest_id.clone(),
        },
        channels: trigger.channels,
        data: trigger.data,
        priority: trigger.priority,
        ttl_seconds: trigger.ttl_seconds,
        accepted_at_ms: digest.closes_at_ms,
        carry: None,
        path: DeliveryPath::Tree,
        actor_id: None,
        run_at_ms: None,
        local_time: None,
        // The newest trigger's, as its priority is: the digest's deliveries wait out quiet
        // hours as that trigger's would have.
        quiet_hours: trigger.quiet_hours,
    };
    let metadata = [
        ("digest_id".to_owned(), digest.digest_id.to_string()),
        ("digest_items".to_owned(), closed.items.to_string()),
    ]
    .into();
    store
        .insert_request(
            RequestKeys {
                request_id: &request_id,
                tenant_id: &request.tenant_id,
                template_id: &request.template_id,
                path: request.path,
                run_at_ms: None,
            },
            &request,
            0,
            // Scoped to the tenant like any dedupe key; the digest id makes it unique.
            &format!("digest:{}", digest.digest_id),
            &metadata,
        )
        .await
        .map_err(store_error)?;
    // The digest's workflow starts it next, as its child.
    store.mark_started(&request_id).await.map_err(store_error)?;
    tracing::info!(
        digest_id = %digest.digest_id,
        request_id = %request_id,
        items = closed.items,
        "digest closed"
    );
    Ok(ClosedDigest {
        request: Some(request),
        items: closed.items,
    })
}

/// What the recipients of one page see of the digest their request delivers; empty for a
/// request that is not a digest's.
#[derive(Debug, Default)]
pub(crate) struct PageDigest {
    views: Option<HashMap<UserId, DigestView>>,
}

impl PageDigest {
    /// Loads the page's recipients' items when the request is a digest's (one lookup by
    /// request id, then one query per page); other requests' ids say so without a query.
    pub(crate) async fn load(
        store: &Store,
        input: &DeliverPageInput,
        users: &[UserId],
    ) -> Result<Self, ActivityError> {
        if !input.request_id.may_be_digest() {
            return Ok(Self::default());
        }
        let Some(digest) = store
            .digest_of_request(&input.request_id)
            .await
            .map_err(store_error)?
        else {
            return Ok(Self::default());
        };
        let views = store
            .digest_views(&digest.digest_id, users, digest.max_items)
            .await
            .map_err(store_error)?;
        Ok(Self { views: Some(views) })
    }

    /// What `user`'s rendering sees: the request's context, with `digest` for a digest's.
    pub(crate) fn context(
        &self,
        data: &serde_json::Map<String, serde_json::Value>,
        user: &User,
        request_id: &RequestId,
    ) -> RenderContext {
        match &self.views {
            None => render::context(data, user, request_id),
            Some(views) => {
                let empty = DigestView::default();
                let view = views.get(&user.user_id).unwrap_or(&empty);
                render::digest_context(data, user, request_id, view)
            }
        }
    }
}

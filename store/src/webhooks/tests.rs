use fanout_domain::receipt::{DeliveryStatus, Receipt};
use fanout_domain::{Channel, DedupeKey, InstanceId, UserId};

use super::*;
use crate::test_support::store;

const DELIVERY: [WebhookEventType; 4] = [
    WebhookEventType::DeliveryDelivered,
    WebhookEventType::DeliveryFailed,
    WebhookEventType::DeliverySuppressed,
    WebhookEventType::DeliveryDeadLettered,
];

fn receipt(t: &TenantId, user: &str, status: DeliveryStatus) -> Receipt {
    let req = DedupeKey::new(t.clone(), "hooks").unwrap().request_id();
    let user_id = UserId::parse(user).unwrap();
    Receipt {
        instance_id: InstanceId::derive(&req, &user_id, Channel::Email),
        request_id: req,
        user_id,
        channel: Channel::Email,
        status,
        provider_message_id: None,
        provider: None,
        attempts: 1,
        latency_ms: Some(3),
        error_code: (status == DeliveryStatus::Failed).then(|| "smtp_550".to_owned()),
        error_message: None,
        updated_at_ms: 7,
        release_at_ms: None,
    }
}

/// The events of every status, written twice as a retried flush would.
async fn deliver_all(store: &Store, t: &TenantId) {
    let mut receipts = vec![
        receipt(t, "a", DeliveryStatus::Delivered),
        receipt(t, "b", DeliveryStatus::Failed),
        receipt(t, "c", DeliveryStatus::Suppressed),
        receipt(t, "d", DeliveryStatus::Pending),
    ];
    for _ in 0..2 {
        store
            .record_page_deliveries(t, 0, &mut receipts, &mut Vec::new())
            .await
            .unwrap();
    }
}

fn types_of(batch: &outbox::Batch) -> Vec<String> {
    let mut types: Vec<String> = batch
        .payloads
        .iter()
        .map(|p| {
            let event: serde_json::Value = serde_json::from_str(p).unwrap();
            event["type"].as_str().unwrap().to_owned()
        })
        .collect();
    types.sort();
    types
}

#[tokio::test]
async fn endpoints_are_created_listed_changed_and_deleted_per_tenant() {
    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    let (created, secret) = store
        .create_webhook_endpoint(&a, "https://hooks.example.com/x", &DELIVERY)
        .await
        .unwrap();
    assert!(
        secret.starts_with(SECRET_PREFIX) && secret.len() > 30,
        "{secret}"
    );
    assert!(created.endpoint_id.starts_with("we_"));
    assert!(created.enabled && created.last_errors.is_empty());
    assert_eq!(created.event_types, DELIVERY.to_vec());
    assert_eq!(
        store.list_webhook_endpoints(&a).await.unwrap(),
        vec![created.clone()]
    );
    assert!(store.list_webhook_endpoints(&b).await.unwrap().is_empty());
    assert_eq!(
        store
            .get_webhook_endpoint(&b, &created.endpoint_id)
            .await
            .unwrap(),
        None
    );

    let change = EndpointChange {
        url: Some("https://hooks.example.com/y".into()),
        event_types: Some(vec![WebhookEventType::RequestCompleted]),
        enabled: Some(false),
    };
    let changed = store
        .change_webhook_endpoint(&a, &created.endpoint_id, &change)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.url, "https://hooks.example.com/y");
    assert_eq!(
        changed.event_types,
        vec![WebhookEventType::RequestCompleted]
    );
    assert!(!changed.enabled);
    assert_eq!(
        store
            .change_webhook_endpoint(&b, &created.endpoint_id, &change)
            .await
            .unwrap(),
        None
    );

    assert!(
        !store
            .delete_webhook_endpoint(&b, &created.endpoint_id)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_webhook_endpoint(&a, &created.endpoint_id)
            .await
            .unwrap()
    );
    assert!(store.list_webhook_endpoints(&a).await.unwrap().is_empty());
}

/// Final receipts write their events once each, for the endpoints subscribed to them; pending
/// receipts and tenants without endpoints write none.
#[tokio::test]
async fn final_deliveries_write_their_events_once_for_subscribed_endpoints() {
    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    let (all, _) = store
        .create_webhook_endpoint(&a, "https://x.example/all", &DELIVERY)
        .await
        .unwrap();
    let (delivered, _) = store
        .create_webhook_endpoint(
            &a,
            "https://x.example/delivered",
            &[WebhookEventType::DeliveryDelivered],
        )
        .await
        .unwrap();
    deliver_all(&store, &a).await;
    deliver_all(&store, &b).await;

    let batch = store
        .claim_webhook_batch(&a, &all.endpoint_id, now_ms(), 60_000, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        types_of(&batch),
        [
            "delivery.dead_lettered",
            "delivery.delivered",
            "delivery.failed",
            "delivery.suppressed"
        ]
    );
    let batch = store
        .claim_webhook_batch(&a, &delivered.endpoint_id, now_ms(), 60_000, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(types_of(&batch), ["delivery.delivered"]);
    let event: serde_json::Value = serde_json::from_str(&batch.payloads[0]).unwrap();
    assert_eq!(event["id"], batch.event_ids[0].as_str());
    assert_eq!(event["data"]["user_id"], "a");
    assert_eq!(event["data"]["channel"], "email");
    assert!(
        store
            .due_webhook_endpoints(now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A claimed batch is the endpoint's alone until it is taken (its events go) or fails (they
/// come back once the endpoint's backoff is over); a failing endpoint keeps its last errors and
/// is disabled once it has failed for long enough.
#[tokio::test]
async fn batches_are_claimed_taken_or_handed_back_and_failing_endpoints_stop() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    let (endpoint, _) = store
        .create_webhook_endpoint(&t, "https://x.example/h", &DELIVERY)
        .await
        .unwrap();
    let id = endpoint.endpoint_id.as_str();
    deliver_all(&store, &t).await;
    let due = store.due_webhook_endpoints(now_ms(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].endpoint_id.as_str(), due[0].waiting), (id, 4));

    let first = store
        .claim_webhook_batch(&t, id, now_ms(), 60_000, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.event_ids.len(), 3);
    let rest = store
        .claim_webhook_batch(&t, id, now_ms(), 60_000, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.event_ids.len(), 1);
    assert!(!first.event_ids.contains(&rest.event_ids[0]));
    assert_eq!(
        store
            .claim_webhook_batch(&t, id, now_ms(), 60_000, 3)
            .await
            .unwrap(),
        None
    );

    store
        .webhook_batch_taken(&t, id, &rest.event_ids)
        .await
        .unwrap();
    let disabled = store
        .webhook_batch_failed(
            &t,
            id,
            &first.event_ids,
            "500: boom",
            |_| 60_000,
            86_400_000,
        )
        .await
        .unwrap();
    assert!(!disabled);
    let seen = store.get_webhook_endpoint(&t, id).await.unwrap().unwrap();
    assert_eq!(
        (seen.failures, seen.delivered_events, seen.pending_events),
        (1, 1, 3)
    );
    assert_eq!(seen.last_errors[0].error, "500: boom");
    // Waiting out its backoff, the endpoint is neither due nor claimable.
    assert!(
        store
            .due_webhook_endpoints(now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim_webhook_batch(&t, id, now_ms(), 60_000, 10)
            .await
            .unwrap(),
        None
    );
    let later = now_ms() + 61_000;
    let again = store
        .claim_webhook_batch(&t, id, later, 60_000, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.event_ids, first.event_ids);

    // Failing for as long as `disable_after` disables it, with the reason.
    let disabled = store
        .webhook_batch_failed(&t, id, &again.event_ids, "timed out", |_| 0, 0)
        .await
        .unwrap();
    assert!(disabled);
    let seen = store.get_webhook_endpoint(&t, id).await.unwrap().unwrap();
    assert!(!seen.enabled);
    assert!(
        seen.disabled_reason
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
    assert_eq!(seen.last_errors.len(), 2);
    assert!(
        store
            .due_webhook_endpoints(later, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Enabling it clears the failures; its events were kept.
    let enabled = store
        .change_webhook_endpoint(
            &t,
            id,
            &EndpointChange {
                enabled: Some(true),
                ..EndpointChange::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.enabled && enabled.disabled_reason.is_none());
    assert_eq!((enabled.failures, enabled.pending_events), (0, 3));
}

/// A rotated-out secret signs beside the new one until its grace period ends.
#[tokio::test]
async fn rotation_keeps_the_old_secret_for_its_grace_period() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    let (endpoint, old) = store
        .create_webhook_endpoint(&t, "https://x.example/h", &DELIVERY)
        .await
        .unwrap();
    let id = endpoint.endpoint_id.as_str();
    let grace_until = now_ms() + 60_000;
    let new = store
        .rotate_webhook_secret(&t, id, grace_until)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(
        store
            .rotate_webhook_secret(&TenantId::parse("b").unwrap(), id, grace_until)
            .await
            .unwrap(),
        None
    );
    deliver_all(&store, &t).await;
    let batch = store
        .claim_webhook_batch(&t, id, now_ms(), 1, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.secrets, vec![new.clone(), old]);
    let after_grace = store
        .claim_webhook_batch(&t, id, grace_until + 1, 1, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after_grace.secrets, vec![new]);
}

/// A request's end and a dead push token write their events too, for endpoints that subscribe.
#[tokio::test]
async fn a_requests_end_and_a_dead_token_write_their_events() {
    use std::collections::BTreeMap;

    use fanout_domain::TemplateId;
    use fanout_domain::receipt::{Progress, RequestState};
    use fanout_domain::request::DeliveryPath;
    use fanout_domain::user::{Device, DeviceToken, Platform, User};

    use crate::requests::RequestKeys;

    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let (endpoint, _) = store
        .create_webhook_endpoint(
            &t,
            "https://x.example/h",
            &[
                WebhookEventType::RequestCompleted,
                WebhookEventType::TokenInvalidated,
            ],
        )
        .await
        .unwrap();
    let req = DedupeKey::new(t.clone(), "ends").unwrap().request_id();
    let template = TemplateId::parse("tpl").unwrap();
    let keys = RequestKeys {
        request_id: &req,
        tenant_id: &t,
        template_id: &template,
        path: DeliveryPath::Tree,
        run_at_ms: None,
    };
    store
        .insert_request(keys, &serde_json::json!({}), 0, "ends", &BTreeMap::new())
        .await
        .unwrap();
    store
        .finalize_request(&req, RequestState::Completed, &Progress::default())
        .await
        .unwrap();
    let user = User {
        user_id: UserId::parse("u").unwrap(),
        email: None,
        name: None,
        locale: None,
        timezone: None,
        devices: vec![Device {
            platform: Platform::Apns,
            token: DeviceToken::parse("dead-token").unwrap(),
        }],
        quiet_hours: None,
    };
    store.upsert_user(&t, &user).await.unwrap();
    store
        .invalidate_device(&t, &user.user_id, "dead-token", "Unregistered")
        .await
        .unwrap();

    let batch = store
        .claim_webhook_batch(&t, &endpoint.endpoint_id, now_ms(), 60_000, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(types_of(&batch), ["request.completed", "token.invalidated"]);
    let events: Vec<serde_json::Value> = batch
        .payloads
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let by_type = |kind: &str| events.iter().find(|e| e["type"] == kind).unwrap().clone();
    assert_eq!(
        by_type("request.completed")["data"]["request_id"],
        req.as_str()
    );
    assert_eq!(by_type("request.completed")["data"]["state"], "completed");
    assert_eq!(by_type("token.invalidated")["data"]["token"], "dead-token");
    assert_eq!(by_type("token.invalidated")["data"]["user_id"], "u");
}

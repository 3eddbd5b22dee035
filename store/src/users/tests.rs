use std::time::Instant;

use fanout_domain::user::{DeviceToken, Platform};

use crate::test_support::{all_succeed, store};

use super::*;

/// A user with an email address and nothing else.
pub(crate) fn user(id: &str) -> User {
    User {
        user_id: UserId::parse(id).unwrap(),
        email: Some(EmailAddress::parse(&format!("{id}@example.com")).unwrap()),
        name: None,
        locale: None,
        timezone: None,
        devices: Vec::new(),
        quiet_hours: None,
    }
}

#[tokio::test]
async fn deleting_a_user_erases_their_data_in_their_tenant_only() {
    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::receipt::{DeliveryStatus, Receipt};
    use fanout_domain::{Channel, DedupeKey, InstanceId, SegmentId};

    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    for t in [&a, &b] {
        store.upsert_tenant(t, "T").await.unwrap();
        store
            .upsert_users(t, &[user("gone"), user("star")])
            .await
            .unwrap();
    }
    let gone = UserId::parse("gone").unwrap();
    let star = UserId::parse("star").unwrap();
    store
        .add_followers(&a, &star, std::slice::from_ref(&gone))
        .await
        .unwrap();
    store
        .add_followers(&a, &gone, std::slice::from_ref(&star))
        .await
        .unwrap();
    let segment = SegmentId::parse("s").unwrap();
    store.upsert_segment(&a, &segment, "S", &[]).await.unwrap();
    store
        .add_segment_members(&a, &segment, std::slice::from_ref(&gone))
        .await
        .unwrap();
    let req = DedupeKey::new(a.clone(), "k").unwrap().request_id();
    let id = InstanceId::derive(&req, &gone, Channel::Email);
    let receipt = Receipt {
        instance_id: id.clone(),
        request_id: req.clone(),
        user_id: gone.clone(),
        channel: Channel::Email,
        status: DeliveryStatus::Failed,
        provider_message_id: None,
        provider: None,
        attempts: 1,
        latency_ms: None,
        error_code: Some("smtp_550".into()),
        error_message: Some("550 <gone@example.com> unknown".into()),
        updated_at_ms: 1,
        release_at_ms: None,
    };
    let message = InboxMessage {
        id: InstanceId::derive(&req, &gone, Channel::InApp),
        user_id: gone.clone(),
        request_id: req.clone(),
        title: "t".into(),
        body: "b".into(),
        action_url: None,
        data: serde_json::json!({}),
        created_at_ms: 1,
        read_at_ms: None,
    };
    store
        .record_deliveries(&a, &[receipt], &[message])
        .await
        .unwrap();

    assert!(store.delete_user(&a, &gone).await.unwrap());
    assert!(!store.delete_user(&a, &gone).await.unwrap(), "already gone");
    assert!(store.get_user(&a, &gone).await.unwrap().is_none());
    assert!(
        store
            .list_inbox(&a, &gone, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Follows in both directions are gone.
    for of in [&star, &gone] {
        let followers = store.list_followers(&a, of, None, 10).await.unwrap();
        assert!(followers.is_empty(), "{of}");
    }
    let members = store
        .list_segment_members(&a, &segment, None, 10)
        .await
        .unwrap();
    assert!(members.is_empty());
    let receipts = store.list_receipts(&a, &req, None, 10).await.unwrap();
    assert_eq!(
        receipts.len(),
        1,
        "the receipt stays, without personal data"
    );
    assert_eq!(receipts[0].error_message, None);
    assert_eq!(receipts[0].error_code.as_deref(), Some("smtp_550"));
    // The other tenant's user of the same id is untouched.
    assert!(store.get_user(&b, &gone).await.unwrap().is_some());
    // Deliveries holding profiles loaded earlier learn of the erasure.
    assert_eq!(store.erased_since(&a, 0).await.unwrap(), vec![gone.clone()]);
    assert!(store.erased_since(&a, i64::MAX).await.unwrap().is_empty());
    assert!(store.erased_since(&b, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn users_upsert_and_stay_in_their_tenant() {
    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    store.upsert_tenant(&a, "A").await.unwrap();
    store.upsert_tenant(&b, "B").await.unwrap();
    let mut user = User {
        name: Some("Ada".into()),
        ..user("u1")
    };
    store.upsert_user(&a, &user).await.unwrap();
    user.name = Some("Ada L.".into());
    store.upsert_user(&a, &user).await.unwrap();
    assert_eq!(
        store.get_user(&a, &user.user_id).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.get_user(&b, &user.user_id).await.unwrap(), None);
}

#[tokio::test]
async fn time_zones_and_devices_round_trip_and_can_be_cleared() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let mut user = User {
        timezone: Some(Timezone::parse("Europe/Paris").unwrap()),
        devices: vec![
            Device {
                platform: Platform::Apns,
                token: DeviceToken::parse("apns-1").unwrap(),
            },
            Device {
                platform: Platform::Fcm,
                token: DeviceToken::parse("fcm:2").unwrap(),
            },
        ],
        ..user("u1")
    };
    store.upsert_user(&t, &user).await.unwrap();
    assert_eq!(
        store.get_user(&t, &user.user_id).await.unwrap(),
        Some(user.clone())
    );
    user.timezone = None;
    user.devices.clear();
    store.upsert_user(&t, &user).await.unwrap();
    assert_eq!(store.get_user(&t, &user.user_id).await.unwrap(), Some(user));
}

#[tokio::test]
async fn a_dead_push_token_leaves_the_devices_and_is_suppressed() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let device = |platform, token: &str| Device {
        platform,
        token: DeviceToken::parse(token).unwrap(),
    };
    let user = User {
        devices: vec![
            device(Platform::Apns, "dead"),
            device(Platform::Fcm, "alive"),
        ],
        ..user("u1")
    };
    store.upsert_user(&t, &user).await.unwrap();
    for _ in 0..2 {
        store
            .invalidate_device(&t, &user.user_id, "dead", "apns_Unregistered")
            .await
            .unwrap();
    }
    let now = store.get_user(&t, &user.user_id).await.unwrap().unwrap();
    assert_eq!(now.devices, vec![device(Platform::Fcm, "alive")]);
    let suppressed = store
        .suppressed_addresses(&t, Channel::Push, &["dead", "alive"])
        .await
        .unwrap();
    assert_eq!(suppressed, ["dead".to_owned()].into_iter().collect());
    // The last device going leaves none; an unknown user is only suppressed.
    store
        .invalidate_device(&t, &user.user_id, "alive", "fcm_UNREGISTERED")
        .await
        .unwrap();
    assert!(
        store
            .get_user(&t, &user.user_id)
            .await
            .unwrap()
            .unwrap()
            .devices
            .is_empty()
    );
    let ghost = UserId::parse("ghost").unwrap();
    store
        .invalidate_device(&t, &ghost, "ghost-token", "fcm_UNREGISTERED")
        .await
        .unwrap();
}

#[tokio::test]
async fn bulk_upserts_write_every_user_once_and_the_last_copy_wins() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let mut users: Vec<User> = (0..1_203).map(|i| user(&format!("u{i:05}"))).collect();
    users.push(User {
        name: Some("second copy".into()),
        ..user("u00007")
    });
    store.upsert_users(&t, &users).await.unwrap();
    store.upsert_users(&t, &users).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
        .bind(t.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 1_203);
    let seventh = store
        .get_user(&t, &users[7].user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seventh.name.as_deref(), Some("second copy"));
    let last = store.get_user(&t, &users[1_202].user_id).await.unwrap();
    assert_eq!(last, Some(users[1_202].clone()));
    store.upsert_users(&t, &[]).await.unwrap();
}

/// Prints its timing with `--nocapture`; quote a `--release` figure, as the debug build's
/// SQLite is compiled without optimisation.
#[tokio::test]
async fn a_hundred_thousand_users_upsert_in_seconds() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let users: Vec<User> = (0..100_000).map(|i| user(&format!("u{i:06}"))).collect();
    let started = Instant::now();
    store.upsert_users(&t, &users).await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("upsert_users: 100000 users in {elapsed:?}");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
        .bind(t.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 100_000);
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
}

/// Erasing a user while their device marks messages read and a delivery to them is being
/// recorded: every call succeeds. Those writers take the inbox counter and then the user's
/// rows (dead letters, then receipts, each in instance order); an erasure taking the user's
/// rows and then the counter (to log its token revocations), or the rows in another order,
/// deadlocked with them on PostgreSQL, which failed one side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasing_a_user_beside_their_reads_and_deliveries_never_deadlocks_nor_leaves_messages() {
    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::receipt::{DeliveryStatus, Receipt};
    use fanout_domain::{Channel, DedupeKey, InstanceId};

    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let message = |u: &UserId, key: &str| {
        let req = DedupeKey::new(t.clone(), key).unwrap().request_id();
        InboxMessage {
            id: InstanceId::derive(&req, u, Channel::InApp),
            user_id: u.clone(),
            request_id: req,
            title: key.to_owned(),
            body: "b".into(),
            action_url: None,
            data: serde_json::json!({}),
            created_at_ms: 1,
            read_at_ms: None,
        }
    };
    let failed = |u: &UserId, key: &str| {
        let req = DedupeKey::new(t.clone(), key).unwrap().request_id();
        Receipt {
            instance_id: InstanceId::derive(&req, u, Channel::Email),
            request_id: req,
            user_id: u.clone(),
            channel: Channel::Email,
            status: DeliveryStatus::Failed,
            provider_message_id: None,
            provider: None,
            attempts: 1,
            latency_ms: None,
            error_code: Some("smtp_550".into()),
            error_message: Some("unknown".into()),
            updated_at_ms: 1,
            release_at_ms: None,
        }
    };
    for round in 0..8 {
        let u = UserId::parse(&format!("u{round}")).unwrap();
        store.upsert_user(&t, &user(u.as_str())).await.unwrap();
        // With a live token the erasure logs its revocation (the counter); without one it
        // only races the writers' rows.
        if round % 2 == 0 {
            store
                .issue_inbox_token(&t, &u, crate::now_ms() + 60_000)
                .await
                .unwrap();
        }
        let messages: Vec<InboxMessage> = (0..60).map(|i| message(&u, &format!("m{i}"))).collect();
        let receipts: Vec<Receipt> = (0..60).map(|i| failed(&u, &format!("r{i}"))).collect();
        store
            .record_page_deliveries(&t, 0, &mut receipts.clone(), &mut messages.clone())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for w in 0..15 {
            let (store, t, u) = (store.clone(), t.clone(), u.clone());
            let (messages, receipts) = (messages.clone(), receipts.clone());
            let fresh: Vec<InboxMessage> = (0..4)
                .map(|i| message(&u, &format!("new-{w}-{i}")))
                .collect();
            tasks.push(tokio::spawn(async move {
                if w % 3 == 0 {
                    // A delivery: new in-app messages (the counter), then the receipts.
                    for m in fresh {
                        store
                            .record_page_deliveries(&t, 0, &mut receipts.clone(), &mut vec![m])
                            .await?;
                    }
                } else {
                    for m in messages.iter().skip(w).step_by(15) {
                        store.mark_inbox_read(&t, &u, &m.id, 5).await?;
                    }
                }
                Ok::<_, crate::StoreError>(())
            }));
        }
        let eraser = {
            let (store, t, u) = (store.clone(), t.clone(), u.clone());
            tokio::spawn(async move { store.delete_user(&t, &u).await.map(|_| ()) })
        };
        tasks.push(eraser);
        all_succeed(tasks).await;
        // Whichever committed first, nothing of the user's is left in the inbox: a delivery
        // that committed before the erasure lost its messages to it, and one after found no
        // profile and wrote none.
        let left = store.list_inbox(&t, &u, None, 100).await.unwrap();
        assert!(
            left.is_empty(),
            "round {round}: {} messages left",
            left.len()
        );
    }
}

/// A page's in-app messages are written for users with a profile only: an erased user's
/// message is dropped and its delivered receipt says suppressed, `unknown_user`.
#[tokio::test]
async fn a_page_writes_no_message_for_an_erased_user() {
    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::receipt::{DeliveryStatus, Receipt, UNKNOWN_USER};
    use fanout_domain::{Channel, DedupeKey, InstanceId};
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    store.upsert_tenant(&t, "A").await.unwrap();
    let req = DedupeKey::new(t.clone(), "page").unwrap().request_id();
    let (kept, gone) = (
        UserId::parse("kept").unwrap(),
        UserId::parse("gone").unwrap(),
    );
    for u in [&kept, &gone] {
        store.upsert_user(&t, &user(u.as_str())).await.unwrap();
    }
    assert!(store.delete_user(&t, &gone).await.unwrap());
    let delivered = |u: &UserId| Receipt {
        instance_id: InstanceId::derive(&req, u, Channel::InApp),
        request_id: req.clone(),
        user_id: u.clone(),
        channel: Channel::InApp,
        status: DeliveryStatus::Delivered,
        provider_message_id: Some("inbox".into()),
        provider: None,
        attempts: 1,
        latency_ms: None,
        error_code: None,
        error_message: None,
        updated_at_ms: 1,
        release_at_ms: None,
    };
    let message = |u: &UserId| InboxMessage {
        id: InstanceId::derive(&req, u, Channel::InApp),
        user_id: u.clone(),
        request_id: req.clone(),
        title: "t".into(),
        body: "b".into(),
        action_url: None,
        data: serde_json::json!({}),
        created_at_ms: 1,
        read_at_ms: None,
    };
    let mut receipts = vec![delivered(&gone), delivered(&kept)];
    let mut messages = vec![message(&gone), message(&kept)];
    let suppressed = store
        .record_page_deliveries(&t, 0, &mut receipts, &mut messages)
        .await
        .unwrap();
    assert_eq!(suppressed, 1);
    assert_eq!(messages, vec![message(&kept)]);
    assert_eq!(receipts[0].status, DeliveryStatus::Suppressed);
    assert_eq!(receipts[0].error_code.as_deref(), Some(UNKNOWN_USER));
    assert_eq!(receipts[0].provider_message_id, None);
    assert_eq!(receipts[1], delivered(&kept));
    assert!(
        store
            .list_inbox(&t, &gone, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_inbox(&t, &kept, None, 10).await.unwrap().len(),
        1
    );
    let stored = store
        .get_receipts(&req, Channel::InApp, &[gone.clone(), kept.clone()])
        .await
        .unwrap();
    assert_eq!(stored[&receipts[0].instance_id], receipts[0]);
    assert_eq!(
        stored[&receipts[1].instance_id].status,
        DeliveryStatus::Delivered
    );
}

use crate::test_support::store;

use super::*;

#[test]
fn reasons_round_trip_their_wire_names() {
    for r in SuppressionReason::ALL {
        assert_eq!(r.as_str().parse::<SuppressionReason>().unwrap(), r);
        assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
    }
    assert!("soft_bounce".parse::<SuppressionReason>().is_err());
}

#[tokio::test]
async fn suppressing_is_idempotent_and_keeps_the_first_reason() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    let first = store
        .suppress(
            &t,
            Channel::Email,
            "Ada@Example.com",
            SuppressionReason::HardBounce,
            Some("550 no such user"),
        )
        .await
        .unwrap();
    assert!(first);
    let entry = store
        .get_suppression(&t, Channel::Email, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    let again = store
        .suppress(
            &t,
            Channel::Email,
            "ada@example.com",
            SuppressionReason::Complaint,
            None,
        )
        .await
        .unwrap();
    assert!(!again, "a second suppress adds nothing");
    let now = store
        .get_suppression(&t, Channel::Email, "ADA@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now, entry);
    assert_eq!(now.address, "ada@example.com");
    assert_eq!(now.reason, SuppressionReason::HardBounce);
    assert_eq!(now.detail.as_deref(), Some("550 no such user"));
    let all = store
        .list_suppressions(&t, None, None, None, 10)
        .await
        .unwrap();
    assert_eq!(all, vec![entry]);
}

#[tokio::test]
async fn lookups_answer_a_page_in_the_callers_spelling_per_tenant_and_channel() {
    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    store
        .suppress(
            &a,
            Channel::Email,
            "x@example.com",
            SuppressionReason::Manual,
            None,
        )
        .await
        .unwrap();
    store
        .suppress(
            &a,
            Channel::Push,
            "TokEN-1",
            SuppressionReason::InvalidToken,
            None,
        )
        .await
        .unwrap();
    store
        .suppress(
            &b,
            Channel::Email,
            "y@example.com",
            SuppressionReason::Manual,
            None,
        )
        .await
        .unwrap();
    let emails: Vec<String> = (0..2_500).map(|i| format!("u{i}@example.com")).collect();
    let mut page: Vec<&str> = emails.iter().map(String::as_str).collect();
    page.extend(["X@Example.com", "y@example.com", "TokEN-1"]);
    let found = store
        .suppressed_addresses(&a, Channel::Email, &page)
        .await
        .unwrap();
    assert_eq!(found, HashSet::from(["X@Example.com".to_owned()]));
    let tokens = store
        .suppressed_addresses(&a, Channel::Push, &["TokEN-1", "token-1", "x@example.com"])
        .await
        .unwrap();
    assert_eq!(
        tokens,
        HashSet::from(["TokEN-1".to_owned()]),
        "tokens compare exactly and channels do not mix"
    );
    assert!(
        store
            .suppressed_addresses(&a, Channel::Email, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn listings_filter_and_page_by_keyset() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    for i in 0..5 {
        let email = format!("u{i}@example.com");
        store
            .suppress(
                &t,
                Channel::Email,
                &email,
                SuppressionReason::HardBounce,
                None,
            )
            .await
            .unwrap();
        let token = format!("tok{i}");
        store
            .suppress(
                &t,
                Channel::Push,
                &token,
                SuppressionReason::InvalidToken,
                None,
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_suppressions(&t, None, None, after.as_ref(), 3)
            .await
            .unwrap();
        seen.extend(page.iter().map(|s| format!("{}:{}", s.channel, s.address)));
        match page.last() {
            Some(last) if page.len() == 3 => {
                after = Some(SuppressionCursor {
                    channel: last.channel,
                    address: last.address.clone(),
                });
            }
            _ => break,
        }
    }
    let mut expected: Vec<String> = (0..5)
        .map(|i| format!("email:u{i}@example.com"))
        .chain((0..5).map(|i| format!("push:tok{i}")))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    let push = store
        .list_suppressions(&t, Some(Channel::Push), None, None, 100)
        .await
        .unwrap();
    assert_eq!(push.len(), 5);
    assert!(push.iter().all(|s| s.channel == Channel::Push));
    let one = store
        .list_suppressions(&t, None, Some("U3@example.com"), None, 100)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].address, "u3@example.com");
    let none = store
        .list_suppressions(&t, Some(Channel::Push), Some("u3@example.com"), None, 100)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        store
            .unsuppress(&t, Channel::Email, "U3@EXAMPLE.com")
            .await
            .unwrap()
    );
    assert!(
        !store
            .unsuppress(&t, Channel::Email, "u3@example.com")
            .await
            .unwrap()
    );
    assert!(
        store
            .get_suppression(&t, Channel::Email, "u3@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn erasing_a_user_removes_their_preferences_and_address_entries_only() {
    use fanout_domain::UserId;
    use fanout_domain::user::{Device, DeviceToken, Platform};

    use crate::preferences::Preferences;
    use crate::users::tests::user;

    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    let gone = UserId::parse("gone").unwrap();
    for t in [&a, &b] {
        store.upsert_tenant(t, "T").await.unwrap();
        let mut profile = user("gone");
        profile.devices = vec![Device {
            platform: Platform::Fcm,
            token: DeviceToken::parse("fcm-tok").unwrap(),
        }];
        store
            .upsert_users(t, &[profile, user("stay")])
            .await
            .unwrap();
        store
            .set_preference(t, &gone, Some(Channel::Email), None, false)
            .await
            .unwrap();
        store
            .set_preference(t, &UserId::parse("stay").unwrap(), None, None, false)
            .await
            .unwrap();
        for (channel, address) in [
            (Channel::Email, "GONE@example.com"),
            (Channel::Push, "fcm-tok"),
            (Channel::Email, "stay@example.com"),
            (Channel::Push, "other-tok"),
        ] {
            store
                .suppress(
                    t,
                    channel,
                    address,
                    SuppressionReason::HardBounce,
                    Some("550"),
                )
                .await
                .unwrap();
        }
    }

    assert!(store.delete_user(&a, &gone).await.unwrap());
    assert_eq!(
        store.get_preferences(&a, &gone).await.unwrap(),
        Preferences::default()
    );
    let left: Vec<String> = store
        .list_suppressions(&a, None, None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.address)
        .collect();
    assert_eq!(left, ["stay@example.com", "other-tok"]);
    let stay = UserId::parse("stay").unwrap();
    assert_ne!(
        store.get_preferences(&a, &stay).await.unwrap(),
        Preferences::default(),
        "other users keep theirs"
    );
    // The other tenant's user of the same id is untouched.
    assert_ne!(
        store.get_preferences(&b, &gone).await.unwrap(),
        Preferences::default()
    );
    assert_eq!(
        store
            .list_suppressions(&b, None, None, None, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    // Erasing an id with no profile still erases its preferences.
    let ghost = UserId::parse("ghost").unwrap();
    store
        .set_preference(&a, &ghost, None, None, false)
        .await
        .unwrap();
    assert!(!store.delete_user(&a, &ghost).await.unwrap());
    assert_eq!(
        store.get_preferences(&a, &ghost).await.unwrap(),
        Preferences::default()
    );
}

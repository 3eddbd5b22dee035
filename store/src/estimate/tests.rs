use fanout_domain::user::{EmailAddress, Platform};
use fanout_domain::{SegmentId, user::DeviceToken, user::User};

use crate::preferences::Category;
use crate::suppressions::SuppressionReason;
use crate::test_support::{TestStore, store};

use super::*;

fn id(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn user(name: &str, email: bool, tokens: &[&str]) -> User {
    User {
        user_id: id(name),
        email: email.then(|| EmailAddress::parse(&format!("{name}@Example.com")).unwrap()),
        name: None,
        locale: None,
        timezone: None,
        devices: tokens
            .iter()
            .map(|t| Device {
                platform: Platform::Fcm,
                token: DeviceToken::parse(t).unwrap(),
            })
            .collect(),
        quiet_hours: None,
    }
}

async fn seeded() -> (TestStore, TenantId) {
    let store = store().await;
    let t = TenantId::parse("acme").unwrap();
    store.upsert_tenant(&t, "Acme").await.unwrap();
    let other = TenantId::parse("other").unwrap();
    store.upsert_tenant(&other, "Other").await.unwrap();
    store
        .upsert_users(
            &t,
            &[
                user("a", true, &["t1"]),
                user("b", false, &[]),
                user("c", true, &[]),
                user("d", true, &["t2", "t3"]),
                user("e", true, &["t4"]),
                user("f", true, &["t5"]),
                user("g", false, &["t6"]),
            ],
        )
        .await
        .unwrap();
    let marketing = Category::parse("marketing").unwrap();
    store
        .set_preference(&t, &id("c"), Some(Channel::Email), None, false)
        .await
        .unwrap();
    store
        .set_preference(&t, &id("e"), Some(Channel::InApp), Some(&marketing), false)
        .await
        .unwrap();
    store
        .set_preference(&t, &id("f"), Some(Channel::Push), None, false)
        .await
        .unwrap();
    store
        .set_preference(&t, &id("f"), Some(Channel::Push), Some(&marketing), true)
        .await
        .unwrap();
    store
        .set_preference(&t, &id("g"), Some(Channel::Push), None, false)
        .await
        .unwrap();
    // Suppressed in another case than the profile's address; one of d's two tokens; e's
    // only token. The same entries in another tenant must not count.
    for (tenant, channel, address) in [
        (&t, Channel::Email, "D@example.com"),
        (&t, Channel::Push, "t2"),
        (&t, Channel::Push, "t4"),
        (&other, Channel::Email, "a@example.com"),
        (&other, Channel::Push, "t1"),
    ] {
        store
            .suppress(tenant, channel, address, SuppressionReason::Manual, None)
            .await
            .unwrap();
    }
    let everyone = ["a", "b", "c", "d", "e", "f", "g", "ghost"];
    let segment = SegmentId::parse("all").unwrap();
    store
        .upsert_segment(&t, &segment, "All", &[])
        .await
        .unwrap();
    let ids: Vec<UserId> = everyone.iter().map(|u| id(u)).collect();
    store.add_segment_members(&t, &segment, &ids).await.unwrap();
    store.add_followers(&t, &id("star"), &ids).await.unwrap();
    (store, t)
}

fn channel(recipients: u64, no_address: u64, opted_out: u64, suppressed: u64) -> ChannelEstimate {
    ChannelEstimate {
        recipients,
        no_address,
        opted_out,
        suppressed,
        deliverable: recipients - no_address - opted_out - suppressed,
    }
}

#[tokio::test]
async fn every_audience_kind_counts_exactly_as_delivery_screens() {
    let (store, t) = seeded().await;
    let everyone: Vec<UserId> = ["a", "b", "c", "d", "e", "f", "g", "ghost", "a"]
        .iter()
        .map(|u| id(u))
        .collect();
    let queries = [
        RecipientsQuery::Users { user_ids: everyone },
        RecipientsQuery::Followers { of: id("star") },
        RecipientsQuery::Segment {
            segment_id: SegmentId::parse("all").unwrap(),
        },
    ];
    for query in &queries {
        let estimate = store
            .estimate_audience(&t, query, &Channel::ALL, "marketing", 100_000)
            .await
            .unwrap();
        assert_eq!(
            estimate.size,
            AudienceSize {
                members: 8,
                recipients: 7
            },
            "{query:?}"
        );
        assert!(!estimate.sampled);
        assert_eq!(
            estimate.channels[&Channel::Email],
            channel(7, 2, 1, 1),
            "{query:?}"
        );
        assert_eq!(
            estimate.channels[&Channel::Push],
            channel(7, 2, 1, 1),
            "{query:?}"
        );
        assert_eq!(
            estimate.channels[&Channel::InApp],
            channel(7, 0, 1, 0),
            "{query:?}"
        );
        assert_eq!(store.audience_size(&t, query).await.unwrap(), estimate.size);
    }
    // Another category: e's in-app opt-out no longer applies, f's push is off again.
    let other = store
        .estimate_audience(
            &t,
            &queries[1],
            &[Channel::InApp, Channel::Push],
            "digest",
            100_000,
        )
        .await
        .unwrap();
    assert_eq!(other.channels.len(), 2);
    assert_eq!(other.channels[&Channel::InApp], channel(7, 0, 0, 0));
    assert_eq!(other.channels[&Channel::Push], channel(7, 2, 2, 1));
    // The preference counts agree with what delivery asks the store.
    let recipients: Vec<UserId> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|u| id(u))
        .collect();
    let blocked = store
        .blocked_by_preferences(&t, &recipients, Channel::Push, "digest")
        .await
        .unwrap();
    assert_eq!(blocked.len(), 2);
}

#[tokio::test]
async fn push_suppression_past_the_exact_limit_is_extrapolated_and_flagged() {
    let (store, t) = seeded().await;
    let query = RecipientsQuery::Followers { of: id("star") };
    // Candidates a, d, e, f: the first three hold one dead user (e), scaled to four.
    let estimate = store
        .estimate_audience(&t, &query, &[Channel::Push], "marketing", 3)
        .await
        .unwrap();
    assert!(estimate.sampled);
    assert_eq!(estimate.channels[&Channel::Push].suppressed, 1);
    // Email needs no sample, whatever the limit.
    let estimate = store
        .estimate_audience(&t, &query, &[Channel::Email], "marketing", 1)
        .await
        .unwrap();
    assert!(!estimate.sampled);
    assert_eq!(estimate.channels[&Channel::Email], channel(7, 2, 1, 1));
}

#[tokio::test]
async fn missing_audiences_count_zero() {
    let (store, t) = seeded().await;
    for query in [
        RecipientsQuery::Followers { of: id("nobody") },
        RecipientsQuery::Segment {
            segment_id: SegmentId::parse("none").unwrap(),
        },
    ] {
        let estimate = store
            .estimate_audience(&t, &query, &Channel::ALL, "marketing", 100_000)
            .await
            .unwrap();
        assert_eq!(estimate.size, AudienceSize::default());
        assert!(
            estimate
                .channels
                .values()
                .all(|c| *c == ChannelEstimate::default())
        );
    }
    let other = TenantId::parse("other").unwrap();
    let size = store
        .audience_size(&other, &RecipientsQuery::Followers { of: id("star") })
        .await
        .unwrap();
    assert_eq!(size, AudienceSize::default());
}

#[tokio::test]
async fn tenants_set_and_clear_their_blast_radius_limit() {
    let (store, t) = seeded().await;
    assert_eq!(store.blast_radius_limit(&t).await.unwrap(), None);
    assert!(store.set_blast_radius_limit(&t, Some(25)).await.unwrap());
    assert_eq!(store.blast_radius_limit(&t).await.unwrap(), Some(25));
    assert!(store.set_blast_radius_limit(&t, None).await.unwrap());
    assert_eq!(store.blast_radius_limit(&t).await.unwrap(), None);
    let ghost = TenantId::parse("ghost").unwrap();
    assert!(!store.set_blast_radius_limit(&ghost, Some(1)).await.unwrap());
    assert_eq!(store.blast_radius_limit(&ghost).await.unwrap(), None);
}

use crate::test_support::store;

use super::*;

fn id(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn cat(s: &str) -> Category {
    Category::parse(s).unwrap()
}

#[test]
fn categories_are_checked_for_shape() {
    for good in ["marketing", "digest.weekly", "Security_Alerts-2"] {
        assert!(Category::parse(good).is_ok(), "{good} refused");
    }
    for bad in ["", "a b", "café", "x/y", &"c".repeat(65)] {
        assert_eq!(Category::parse(bad).unwrap_err().field, "category", "{bad}");
    }
}

#[test]
fn category_rules_override_channel_defaults_and_absence_allows() {
    let mut p = Preferences::default();
    assert!(p.allows(Channel::Push, "marketing"), "empty allows");
    p.set(Some(Channel::Push), None, false);
    p.set(Some(Channel::Push), Some(&cat("security")), true);
    p.set(None, Some(&cat("marketing")), false);
    assert!(!p.allows(Channel::Push, "digest"), "channel default off");
    assert!(
        p.allows(Channel::Push, "security"),
        "category on beats push off"
    );
    assert!(!p.allows(Channel::Email, "marketing"), "category off");
    assert!(p.allows(Channel::Email, "digest"), "no rule allows");
    assert!(
        !p.allows(Channel::InApp, "marketing"),
        "a category-only rule covers every channel"
    );
    // Opting back into email keeps the marketing opt-out: the category rule wins.
    p.set(Some(Channel::Email), None, true);
    assert!(!p.allows(Channel::Email, "marketing"));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "channels": {"email": true, "push": false},
            "categories": {
                "marketing": {"email": false, "in_app": false, "push": false},
                "security": {"push": true}
            }
        })
    );
    assert_eq!(serde_json::from_value::<Preferences>(json).unwrap(), p);
}

#[tokio::test]
async fn documents_round_trip_replace_and_stay_in_their_tenant() {
    let store = store().await;
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    let u = id("not-created-yet");
    assert_eq!(
        store.get_preferences(&a, &u).await.unwrap(),
        Preferences::default()
    );
    let mut p = Preferences::default();
    p.set(Some(Channel::Email), None, false);
    p.set(Some(Channel::Push), Some(&cat("marketing")), true);
    store.replace_preferences(&a, &u, &p).await.unwrap();
    assert_eq!(store.get_preferences(&a, &u).await.unwrap(), p);
    assert_eq!(
        store.get_preferences(&b, &u).await.unwrap(),
        Preferences::default()
    );
    let mut q = Preferences::default();
    q.set(Some(Channel::InApp), None, false);
    store.replace_preferences(&a, &u, &q).await.unwrap();
    assert_eq!(store.get_preferences(&a, &u).await.unwrap(), q, "replaced");

    let after = store
        .set_preference(&a, &u, None, Some(&cat("digest")), false)
        .await
        .unwrap();
    q.set(None, Some(&cat("digest")), false);
    assert_eq!(after, q);
    let after = store
        .set_preference(&a, &u, Some(Channel::Email), Some(&cat("digest")), true)
        .await
        .unwrap();
    q.set(Some(Channel::Email), Some(&cat("digest")), true);
    assert_eq!(after, q);
    assert_eq!(store.get_preferences(&a, &u).await.unwrap(), q);
}

#[tokio::test]
async fn a_page_is_checked_with_the_override_semantics() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    let other = TenantId::parse("b").unwrap();
    // u0: push off; u1: push off but marketing push on; u2: marketing off everywhere;
    // u3: marketing push on only; u4..: no rules.
    store
        .set_preference(&t, &id("u0"), Some(Channel::Push), None, false)
        .await
        .unwrap();
    store
        .set_preference(&t, &id("u1"), Some(Channel::Push), None, false)
        .await
        .unwrap();
    store
        .set_preference(
            &t,
            &id("u1"),
            Some(Channel::Push),
            Some(&cat("marketing")),
            true,
        )
        .await
        .unwrap();
    store
        .set_preference(&t, &id("u2"), None, Some(&cat("marketing")), false)
        .await
        .unwrap();
    store
        .set_preference(
            &t,
            &id("u3"),
            Some(Channel::Push),
            Some(&cat("marketing")),
            true,
        )
        .await
        .unwrap();
    // The same ids in another tenant opt out of everything; that must not leak.
    for u in ["u3", "u4"] {
        store
            .set_preference(&other, &id(u), None, None, false)
            .await
            .unwrap();
    }
    // More users than one statement takes.
    let page: Vec<UserId> = (0..2_500).map(|i| id(&format!("u{i}"))).collect();
    let blocked = |channel, category: &'static str| {
        let (store, t, page) = (store.clone(), t.clone(), page.clone());
        async move {
            let mut ids: Vec<String> = store
                .blocked_by_preferences(&t, &page, channel, category)
                .await
                .unwrap()
                .into_iter()
                .map(|u| u.as_str().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(blocked(Channel::Push, "marketing").await, ["u0", "u2"]);
    assert_eq!(blocked(Channel::Push, "security").await, ["u0", "u1"]);
    assert_eq!(blocked(Channel::Email, "marketing").await, ["u2"]);
    assert!(blocked(Channel::Email, "security").await.is_empty());
    assert!(
        store
            .blocked_by_preferences(&t, &[], Channel::Email, "x")
            .await
            .unwrap()
            .is_empty()
    );
    // More than one statement's worth of ids still finds users in every chunk.
    let mut big = page.clone();
    big.push(id("late"));
    store
        .set_preference(&t, &id("late"), Some(Channel::Email), None, false)
        .await
        .unwrap();
    let found = store
        .blocked_by_preferences(&t, &big, Channel::Email, "marketing")
        .await
        .unwrap();
    assert_eq!(found, HashSet::from([id("u2"), id("late")]));
}

/// Whole-document replacements and single-rule changes of one user race (two devices, a
/// retried request): none may fail on a key another just wrote, and the result must be
/// one of the documents written, never a mix of two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replacements_neither_fail_nor_mix() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    let u = id("u");
    // Every document sets the same channel defaults (the keys collide) and a category of
    // its own (a mix would show two).
    let doc = |i: usize| {
        let mut p = Preferences::default();
        p.set(Some(Channel::Email), None, i.is_multiple_of(2));
        p.set(Some(Channel::Push), None, i.is_multiple_of(3));
        p.set(Some(Channel::Email), Some(&cat(&format!("c{i}"))), false);
        p
    };
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (store, t, u, p) = (store.clone(), t.clone(), u.clone(), doc(i));
            tokio::spawn(async move {
                for _ in 0..4 {
                    store.replace_preferences(&t, &u, &p).await?;
                }
                Ok::<_, crate::StoreError>(())
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    let last = store.get_preferences(&t, &u).await.unwrap();
    assert!(
        (0..16).any(|i| doc(i) == last),
        "a mix of documents: {last:?}"
    );

    // Replacements racing single-rule changes: a change lands whole or is replaced whole.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, t, u) = (store.clone(), t.clone(), u.clone());
            tokio::spawn(async move {
                for _ in 0..4 {
                    if i % 2 == 0 {
                        store.replace_preferences(&t, &u, &doc(i)).await?;
                    } else {
                        store
                            .set_preference(&t, &u, None, Some(&cat(&format!("c{i}"))), false)
                            .await?;
                    }
                }
                Ok::<_, crate::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

/// Single-rule changes of one user made at once all stick.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rule_changes_all_stick() {
    let store = store().await;
    let t = TenantId::parse("a").unwrap();
    let u = id("u");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, t, u) = (store.clone(), t.clone(), u.clone());
            tokio::spawn(async move {
                store
                    .set_preference(&t, &u, None, Some(&cat(&format!("c{i}"))), false)
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let prefs = store.get_preferences(&t, &u).await.unwrap();
    assert_eq!(prefs.categories.len(), 16);
}

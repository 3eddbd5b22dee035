use std::collections::BTreeMap;

use fanout_domain::DedupeKey;
use fanout_domain::request::DeliveryPath;
use serde_json::json;

use crate::requests::RequestKeys;
use crate::test_support::{all_succeed, store};

use super::*;

const WINDOW_MS: i64 = 60_000;

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn digest_id(n: u32) -> DigestId {
    DigestId::parse(&format!("dgst-{n:032x}")).unwrap()
}

async fn tenant(store: &Store) -> TenantId {
    let t = TenantId::parse("acme").unwrap();
    store.upsert_tenant(&t, "Acme").await.unwrap();
    t
}

/// Records a trigger request, as the API does before folding it.
async fn record(store: &Store, t: &TenantId, key: &str) -> RequestId {
    let id = DedupeKey::new(t.clone(), key).unwrap().request_id();
    let template = TemplateId::parse("likes").unwrap();
    let keys = RequestKeys {
        request_id: &id,
        tenant_id: t,
        template_id: &template,
        path: DeliveryPath::Tree,
        run_at_ms: None,
    };
    store
        .insert_request(keys, &json!({}), 0, key, &BTreeMap::new())
        .await
        .unwrap();
    id
}

/// Folds trigger `n` (data `{"n": n}`) to `users` at `now`, offering `digest_id(n)` as the
/// id of a digest it opens.
async fn fold(
    store: &Store,
    t: &TenantId,
    n: u32,
    users: &[&str],
    now_ms: i64,
) -> (RequestId, Folded) {
    let request_id = record(store, t, &format!("trigger-{n}")).await;
    let template = TemplateId::parse("likes").unwrap();
    let recipients = RecipientsQuery::Users {
        user_ids: users.iter().map(|u| user(u)).collect(),
    };
    let data = json!({"n": n}).as_object().unwrap().clone();
    let new_id = digest_id(n);
    let folded = store
        .fold_into_digest(&DigestTrigger {
            tenant_id: t,
            template_id: &template,
            key: "post-1",
            window_ms: WINDOW_MS,
            max_items: 3,
            new_digest_id: &new_id,
            request_id: &request_id,
            data: &data,
            recipients: &recipients,
            actor_id: None,
            now_ms,
        })
        .await
        .unwrap();
    (request_id, folded)
}

fn ns(view: &DigestView) -> Vec<u64> {
    view.items
        .iter()
        .map(|i| i["n"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn triggers_collect_newest_first_capped_and_counted() {
    let store = store().await;
    let t = tenant(&store).await;
    let (first, opened) = fold(&store, &t, 1, &["a", "b"], 1_000).await;
    assert!(opened.opened);
    assert_eq!(opened.closes_at_ms, 1_000 + WINDOW_MS);
    for n in 2..=5 {
        let (_, joined) = fold(&store, &t, n, &["a"], 1_000 + i64::from(n)).await;
        assert_eq!(joined.digest_id, opened.digest_id);
        assert!(!joined.opened);
    }
    // The trigger is recorded as digested, and a retried fold stays where it was.
    let record = store.get_request(&t, &first).await.unwrap().unwrap();
    assert_eq!(record.state, RequestState::Digested);
    let digest = store.digest_of_trigger(&first).await.unwrap().unwrap();
    assert_eq!(
        (digest.digest_id.clone(), digest.state),
        (opened.digest_id.clone(), DigestState::Open)
    );

    let views = store
        .digest_views(&opened.digest_id, &[user("a"), user("b"), user("z")], 3)
        .await
        .unwrap();
    assert_eq!(ns(&views[&user("a")]), vec![5, 4, 3]);
    assert_eq!(views[&user("a")].count, 5);
    assert_eq!(ns(&views[&user("b")]), vec![1]);
    assert_eq!(views[&user("b")].count, 1);
    assert!(!views.contains_key(&user("z")));

    // The digest's audience is the union of its triggers' recipients.
    let members = store
        .audience_batch(
            &t,
            &RecipientsQuery::Digest {
                digest_id: opened.digest_id.clone(),
            },
            None,
            10,
        )
        .await
        .unwrap();
    let ids: Vec<_> = members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test]
async fn a_trigger_after_the_close_opens_the_next_digest() {
    let store = store().await;
    let t = tenant(&store).await;
    let (_, first) = fold(&store, &t, 1, &["a"], 1_000).await;
    let closed = store
        .close_digest(&first.digest_id, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.items, 1);
    assert_eq!(closed.digest.state, DigestState::Closed);
    assert_eq!(closed.digest.request_id, Some(first.digest_id.request_id()));
    // A retried close answers the same.
    let again = store
        .close_digest(&first.digest_id, 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, closed);
    assert_eq!(
        store
            .digest_of_request(&first.digest_id.request_id())
            .await
            .unwrap()
            .map(|d| d.digest_id),
        Some(first.digest_id.clone())
    );

    // Inside the old window, but the digest is closed: the next one opens.
    let (second_trigger, second) = fold(&store, &t, 2, &["a"], 2_500).await;
    assert!(second.opened);
    assert_ne!(second.digest_id, first.digest_id);

    // An open digest whose window ended takes nothing more: the next trigger opens another.
    let late = 2_500 + WINDOW_MS + 1;
    let (_, third) = fold(&store, &t, 3, &["a"], late).await;
    assert!(third.opened);
    assert_ne!(third.digest_id, second.digest_id);
    // ... and names it, so its workflow can be started if it never was.
    assert_eq!(
        third.expired,
        Some((second.digest_id.clone(), second.closes_at_ms))
    );
    assert_eq!(
        store
            .digest_of_trigger(&second_trigger)
            .await
            .unwrap()
            .map(|d| d.state),
        Some(DigestState::Closing)
    );
    let expired = store
        .close_digest(&second.digest_id, late)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.items, 1);
}

#[tokio::test]
async fn adds_racing_the_close_are_in_it_or_in_the_next_one() {
    let store = store().await;
    let t = tenant(&store).await;
    let (_, first) = fold(&store, &t, 0, &["a"], 1_000).await;
    let mut tasks = Vec::new();
    for n in 1..=20u32 {
        let (folder, t) = ((*store).clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            Ok::<_, crate::StoreError>(fold(&folder, &t, n, &["a"], 1_100).await.1)
        }));
        if n == 10 {
            let (store, id) = ((*store).clone(), first.digest_id.clone());
            tasks.push(tokio::spawn(async move {
                store.close_digest(&id, 1_100).await.map(|c| Folded {
                    digest_id: id,
                    closes_at_ms: c.unwrap().items as i64,
                    opened: false,
                    expired: None,
                })
            }));
        }
    }
    let results = all_succeed(tasks).await;
    // The close's answer is the 11th result (index 10); its closes_at holds its item count.
    let closed_items = results[10].closes_at_ms as u64;
    let folds: Vec<&Folded> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 10)
        .map(|(_, f)| f)
        .collect();
    let in_first = 1 + folds
        .iter()
        .filter(|f| f.digest_id == first.digest_id)
        .count() as u64;
    // Every trigger the first digest took is in what it closed with; none was added after.
    assert_eq!(closed_items, in_first);
    let after_close = store
        .close_digest(&first.digest_id, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after_close.items, closed_items);
    // The rest share exactly one next digest.
    let next: std::collections::HashSet<_> = folds
        .iter()
        .filter(|f| f.digest_id != first.digest_id)
        .map(|f| f.digest_id.clone())
        .collect();
    assert!(next.len() <= 1, "{next:?}");
    let opened = folds.iter().filter(|f| f.opened).count();
    assert_eq!(opened, next.len());
}

#[tokio::test]
async fn cancelling_a_trigger_removes_its_item_until_the_close() {
    let store = store().await;
    let t = tenant(&store).await;
    let (keep, opened) = fold(&store, &t, 1, &["a"], 1_000).await;
    let (drop, _) = fold(&store, &t, 2, &["a", "b"], 1_001).await;
    assert_eq!(
        store.cancel_digested(&t, &drop).await.unwrap(),
        DigestCancel::Removed(opened.digest_id.clone())
    );
    let record = store.get_request(&t, &drop).await.unwrap().unwrap();
    assert_eq!(record.state, RequestState::Cancelled);
    let views = store
        .digest_views(&opened.digest_id, &[user("a"), user("b")], 10)
        .await
        .unwrap();
    assert_eq!(ns(&views[&user("a")]), vec![1]);
    assert!(!views.contains_key(&user("b")));

    let other = TenantId::parse("other").unwrap();
    assert_eq!(
        store.cancel_digested(&other, &keep).await.unwrap(),
        DigestCancel::NotDigested
    );
    let closed = store
        .close_digest(&opened.digest_id, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.items, 1);
    assert_eq!(closed.newest_trigger, Some(keep.clone()));
    assert!(matches!(
        store.cancel_digested(&t, &keep).await.unwrap(),
        DigestCancel::Closed(_)
    ));
}

#[tokio::test]
async fn retention_prunes_closed_digests_with_their_triggers() {
    let store = store().await;
    let t = tenant(&store).await;
    let (trigger, closed) = fold(&store, &t, 1, &["a"], 1_000).await;
    store.close_digest(&closed.digest_id, 2_000).await.unwrap();
    let (open_trigger, open) = fold(&store, &t, 2, &["a"], 3_000).await;
    let day = 24 * 3600 * 1000;
    let policy = crate::retention::RetentionPolicy {
        inbox_events_days: 1,
        requests_days: 1,
        dead_letters_days: 1,
        batch: 10,
    };
    let pruned = store.prune_at(&policy, 2_000 + day + 1).await.unwrap();
    assert_eq!(pruned.digests, 1);
    assert!(store.get_request(&t, &trigger).await.unwrap().is_none());
    assert!(store.digest_of_trigger(&trigger).await.unwrap().is_none());
    // The open digest and its trigger stay.
    assert_eq!(
        store
            .digest_of_trigger(&open_trigger)
            .await
            .unwrap()
            .map(|d| d.digest_id),
        Some(open.digest_id)
    );
    assert!(
        store
            .get_request(&t, &open_trigger)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn followers_and_segment_triggers_name_their_members_as_of_the_fold() {
    let store = store().await;
    let t = tenant(&store).await;
    let star = user("star");
    store
        .add_followers(&t, &star, &[user("f1"), user("f2"), user("actor")])
        .await
        .unwrap();
    let segment = fanout_domain::SegmentId::parse("beta").unwrap();
    store
        .upsert_segment(&t, &segment, "Beta", &[user("f2"), user("s1")])
        .await
        .unwrap();
    let template = TemplateId::parse("likes").unwrap();
    let new_id = digest_id(1);
    let data = json!({}).as_object().unwrap().clone();
    let mut digest = None;
    for (n, recipients) in [
        RecipientsQuery::Followers { of: star.clone() },
        RecipientsQuery::Segment {
            segment_id: segment.clone(),
        },
    ]
    .iter()
    .enumerate()
    {
        let request_id = record(&store, &t, &format!("audience-{n}")).await;
        let actor = user("actor");
        let folded = store
            .fold_into_digest(&DigestTrigger {
                tenant_id: &t,
                template_id: &template,
                key: "",
                window_ms: WINDOW_MS,
                max_items: 5,
                new_digest_id: &new_id,
                request_id: &request_id,
                data: &data,
                recipients,
                actor_id: Some(&actor),
                now_ms: 1_000,
            })
            .await
            .unwrap();
        digest = Some(folded.digest_id);
    }
    // A follower added after the fold is not in it.
    store
        .add_followers(&t, &star, &[user("late")])
        .await
        .unwrap();
    let members = store
        .audience_batch(
            &t,
            &RecipientsQuery::Digest {
                digest_id: digest.clone().unwrap(),
            },
            None,
            10,
        )
        .await
        .unwrap();
    let ids: Vec<_> = members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["f1", "f2", "s1"]);
    let views = store
        .digest_views(&digest.unwrap(), &[user("f2"), user("s1")], 5)
        .await
        .unwrap();
    assert_eq!(views[&user("f2")].count, 2);
    assert_eq!(views[&user("s1")].count, 1);
}

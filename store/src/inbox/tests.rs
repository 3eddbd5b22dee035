use fanout_domain::{Channel, DedupeKey};

use crate::test_support::store;

use super::*;

#[tokio::test]
async fn inbox_is_exactly_once_and_pages_newest_first() {
    let store = store().await;
    let t = TenantId::parse("acme").unwrap();
    let user = UserId::parse("u1").unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let req = DedupeKey::new(t.clone(), &format!("k{i}"))
            .unwrap()
            .request_id();
        let msg = InboxMessage {
            id: InstanceId::derive(&req, &user, Channel::InApp),
            user_id: user.clone(),
            request_id: req,
            title: format!("t{i}"),
            body: "b".into(),
            action_url: None,
            data: serde_json::json!({"i": i}),
            created_at_ms: 1_000 + i64::from(i),
            read_at_ms: None,
        };
        // Twice, as a retried delivery would: the second write adds nothing.
        for _ in 0..2 {
            store
                .record_deliveries(&t, &[], std::slice::from_ref(&msg))
                .await
                .unwrap();
        }
        ids.push(msg.id);
    }
    assert_eq!(
        store.list_inbox(&t, &user, None, 100).await.unwrap().len(),
        5
    );
    let first = store.list_inbox(&t, &user, None, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|m| m.title.as_str()).collect::<Vec<_>>(),
        ["t4", "t3", "t2"]
    );
    let cursor = InboxCursor {
        created_at_ms: first[2].created_at_ms,
        id: first[2].id.clone(),
    };
    let rest = store.list_inbox(&t, &user, Some(&cursor), 3).await.unwrap();
    assert_eq!(
        rest.iter().map(|m| m.title.as_str()).collect::<Vec<_>>(),
        ["t1", "t0"]
    );
    let other = TenantId::parse("other").unwrap();
    assert!(
        store
            .list_inbox(&other, &user, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

fn message(t: &TenantId, user: &UserId, key: &str, at: i64) -> InboxMessage {
    let req = DedupeKey::new(t.clone(), key).unwrap().request_id();
    InboxMessage {
        id: InstanceId::derive(&req, user, Channel::InApp),
        user_id: user.clone(),
        request_id: req,
        title: key.to_owned(),
        body: "b".into(),
        action_url: None,
        data: serde_json::json!({}),
        created_at_ms: at,
        read_at_ms: None,
    }
}

#[tokio::test]
async fn new_messages_are_logged_once_in_order_and_resolve_with_content() {
    let store = store().await;
    let t = TenantId::parse("acme").unwrap();
    let (u1, u2) = (UserId::parse("u1").unwrap(), UserId::parse("u2").unwrap());
    assert_eq!(store.last_inbox_seq().await.unwrap(), 0);
    let batch = [
        message(&t, &u1, "a", 1),
        message(&t, &u2, "a", 1),
        message(&t, &u1, "b", 2),
    ];
    store.record_deliveries(&t, &[], &batch).await.unwrap();
    // A retried page writes the same rows again: no new events.
    store.record_deliveries(&t, &[], &batch).await.unwrap();
    assert_eq!(store.last_inbox_seq().await.unwrap(), 3);
    let log = store.inbox_log_after(0, 100).await.unwrap();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(log.iter().all(|e| e.kind == InboxEventKind::Message));
    let mine = store.user_inbox_log_after(&t, &u1, 0, 100).await.unwrap();
    assert_eq!(mine.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    let after_first = store.user_inbox_log_after(&t, &u1, 1, 100).await.unwrap();
    let events = store.resolve_inbox_events(&after_first).await.unwrap();
    assert_eq!(events.len(), 1);
    match &events[0].change {
        InboxChange::Message(m) => assert_eq!((m.title.as_str(), &m.user_id), ("b", &u1)),
        other => panic!("expected a message, got {other:?}"),
    }
    // Another tenant's log is not this user's.
    let other = TenantId::parse("other").unwrap();
    assert!(
        store
            .user_inbox_log_after(&other, &u1, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn reads_are_logged_only_when_they_change_something() {
    let store = store().await;
    let t = TenantId::parse("acme").unwrap();
    let (u1, u2) = (UserId::parse("u1").unwrap(), UserId::parse("u2").unwrap());
    let batch = [
        message(&t, &u1, "a", 1),
        message(&t, &u1, "b", 2),
        message(&t, &u1, "c", 3),
        message(&t, &u2, "a", 1),
    ];
    store.record_deliveries(&t, &[], &batch).await.unwrap();
    assert_eq!(store.unread_inbox_count(&t, &u1).await.unwrap(), 3);
    let a = &batch[0].id;
    assert_eq!(
        store.mark_inbox_read(&t, &u1, a, 50).await.unwrap(),
        MarkRead::Marked(50)
    );
    assert_eq!(
        store.mark_inbox_read(&t, &u1, a, 60).await.unwrap(),
        MarkRead::AlreadyRead(50)
    );
    // u2's message is not u1's to read.
    assert_eq!(
        store
            .mark_inbox_read(&t, &u1, &batch[3].id, 60)
            .await
            .unwrap(),
        MarkRead::NotFound
    );
    assert_eq!(store.unread_inbox_count(&t, &u1).await.unwrap(), 2);
    assert_eq!(store.mark_all_inbox_read(&t, &u1, 70).await.unwrap(), 2);
    assert_eq!(store.mark_all_inbox_read(&t, &u1, 80).await.unwrap(), 0);
    assert_eq!(store.unread_inbox_count(&t, &u1).await.unwrap(), 0);
    assert_eq!(store.unread_inbox_count(&t, &u2).await.unwrap(), 1);
    // 4 messages, one read, one read-all; the no-ops left no gaps in the sequence.
    let log = store.inbox_log_after(4, 100).await.unwrap();
    let kinds: Vec<_> = log.iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(
        kinds,
        [(5, InboxEventKind::Read), (6, InboxEventKind::ReadAll)]
    );
    let events = store.resolve_inbox_events(&log).await.unwrap();
    assert_eq!(
        events[0].change,
        InboxChange::Read {
            message_id: a.clone(),
            read_at_ms: 50
        }
    );
    assert_eq!(events[1].change, InboxChange::ReadAll { read_at_ms: 70 });
}

#[tokio::test]
async fn erasing_streams_forgets_events_and_revokes_tokens() {
    let store = store().await;
    let t = TenantId::parse("acme").unwrap();
    let u1 = UserId::parse("u1").unwrap();
    let token = store.issue_inbox_token(&t, &u1, i64::MAX).await.unwrap();
    store
        .record_deliveries(&t, &[], &[message(&t, &u1, "a", 1)])
        .await
        .unwrap();
    store.delete_user(&t, &u1).await.unwrap();
    assert!(
        store
            .verify_inbox_token(&token.token, 0)
            .await
            .unwrap()
            .is_none()
    );
    let log = store.user_inbox_log_after(&t, &u1, 0, 100).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [InboxEventKind::TokenRevoked]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_never_sees_a_gap_while_writers_race() {
    let store = store().await;
    let t = TenantId::parse("acme").unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                let user = UserId::parse(&format!("u{w}")).unwrap();
                for i in 0..25 {
                    let batch = [
                        message(&t, &user, &format!("{w}-{i}-a"), i),
                        message(&t, &user, &format!("{w}-{i}-b"), i),
                    ];
                    store.record_deliveries(&t, &[], &batch).await.unwrap();
                }
            })
        })
        .collect();
    // Whatever a read returns must continue the sequence exactly: a gap would be an event
    // committed later below one already seen, which a resuming reader would skip.
    let mut cursor = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while cursor < 200 {
        assert!(tokio::time::Instant::now() < deadline, "stuck at {cursor}");
        for entry in store.inbox_log_after(cursor, 7).await.unwrap() {
            assert_eq!(entry.seq, cursor + 1);
            cursor = entry.seq;
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.last_inbox_seq().await.unwrap(), 200);
}

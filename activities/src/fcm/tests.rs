use super::*;

fn push() -> PushMessage {
    PushMessage {
        instance_id: fanout_domain::InstanceId::parse("in_0123456789abcdef").unwrap(),
        title: "Title".into(),
        body: "Body".into(),
        data: Map::new(),
        collapse_id: None,
        priority: PushPriority::High,
        expires_at: None,
    }
}

#[test]
fn builds_the_message_from_a_push() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut message = push();
    message.priority = PushPriority::Normal;
    message.collapse_id = Some("score".into());
    message.expires_at = Some(now + Duration::from_millis(3_500));
    message.data.insert("s".into(), json!("text"));
    message.data.insert("n".into(), json!(42));
    message.data.insert("o".into(), json!({ "a": [1, true] }));
    message.data.insert("z".into(), Value::Null);
    let token = DeviceToken::parse("device-1").unwrap();
    let body = request_body(&token, &message, now);
    assert_eq!(
        body,
        json!({ "message": {
                "token": "device-1",
                "notification": { "title": "Title", "body": "Body" },
                "data": { "s": "text", "n": "42", "o": "{\"a\":[1,true]}", "z": "null" },
                "android": { "priority": "NORMAL", "collapse_key": "score", "ttl": "3.500s" },
                "apns": { "headers": {
                    "apns-priority": "5",
                    "apns-collapse-id": "score",
                    "apns-expiration": "1000003",
                } },
            } })
    );
}

#[test]
fn a_bare_push_is_small_and_an_expired_one_has_no_ttl_left() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut message = push();
    message.title.clear();
    message.body.clear();
    message.expires_at = Some(now - Duration::from_secs(5));
    let token = DeviceToken::parse("device-1").unwrap();
    let body = request_body(&token, &message, now);
    assert_eq!(
        body,
        json!({ "message": {
                "token": "device-1",
                "android": { "priority": "HIGH", "ttl": "0s" },
                "apns": { "headers": { "apns-priority": "10", "apns-expiration": "999995" } },
            } })
    );
    message.expires_at = Some(now + Duration::from_secs(365 * 24 * 3600));
    let body = request_body(&token, &message, now);
    assert_eq!(body["message"]["android"]["ttl"], "2419200s");
}

#[test]
fn protobuf_durations() {
    assert_eq!(protobuf_duration(Duration::from_secs(60)), "60s");
    assert_eq!(protobuf_duration(Duration::from_millis(1_050)), "1.050s");
    assert_eq!(protobuf_duration(Duration::ZERO), "0s");
}

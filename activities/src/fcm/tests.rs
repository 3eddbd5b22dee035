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
fn refreshes_five_minutes_early_or_halfway_for_short_tokens() {
    assert_eq!(
        refresh_after(Duration::from_secs(3599)),
        Duration::from_secs(3299)
    );
    assert_eq!(
        refresh_after(Duration::from_secs(120)),
        Duration::from_secs(60)
    );
    assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
}

fn google_error(status: &str, fcm_code: Option<&str>, field: Option<&str>) -> ErrorBody {
    let mut details = Vec::new();
    if let Some(code) = fcm_code {
        details.push(json!({
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": code,
        }));
    }
    if let Some(field) = field {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "field": field, "description": "bad" }],
        }));
    }
    let body = json!({ "error": {
            "code": 400, "message": "words", "status": status, "details": details,
        } });
    ErrorBody::parse(body.to_string().as_bytes())
}

#[test]
fn invalid_argument_blames_the_address_only_when_about_the_token() {
    let token = google_error(
        "INVALID_ARGUMENT",
        Some("INVALID_ARGUMENT"),
        Some("message.token"),
    );
    assert!(matches!(
        classify(StatusCode::BAD_REQUEST, None, &token),
        SendOutcome::InvalidAddress { code, .. } if code == "fcm_INVALID_ARGUMENT"
    ));
    let payload = google_error(
        "INVALID_ARGUMENT",
        Some("INVALID_ARGUMENT"),
        Some("message.data[from]"),
    );
    assert_eq!(
        classify(StatusCode::BAD_REQUEST, None, &payload),
        SendOutcome::permanent("fcm_INVALID_ARGUMENT", "words")
    );
}

#[test]
fn falls_back_to_the_status_then_the_http_code() {
    let denied = google_error("PERMISSION_DENIED", None, None);
    assert_eq!(
        classify(StatusCode::FORBIDDEN, None, &denied),
        SendOutcome::permanent("fcm_PERMISSION_DENIED", "words")
    );
    let gateway = ErrorBody::parse(b"<html>bad gateway</html>");
    assert_eq!(
        classify(
            StatusCode::BAD_GATEWAY,
            Some(Duration::from_secs(3)),
            &gateway
        ),
        SendOutcome::Transient {
            code: "fcm_HTTP_502".into(),
            message: "<html>bad gateway</html>".into(),
            retry_after: Some(Duration::from_secs(3)),
        }
    );
}

#[test]
fn config_loads_from_fanout_environment_variables() {
    let env = [
        ("FANOUT_ENABLED", "true"),
        ("FANOUT_BASE_URL", "http://127.0.0.1:8025"),
        ("FANOUT_SERVICE_ACCOUNT_PATH", "/etc/fanout/fcm.json"),
        ("FANOUT_TIMEOUT_MS", "2500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config: FcmConfig = fanout_runtime::config::load(None, &env).unwrap();
    assert_eq!(
        config,
        FcmConfig {
            enabled: true,
            base_url: "http://127.0.0.1:8025".into(),
            service_account_path: Some("/etc/fanout/fcm.json".into()),
            project_id: None,
            timeout_ms: 2500,
        }
    );
    let defaults: FcmConfig = fanout_runtime::config::load(None, &Default::default()).unwrap();
    assert_eq!(defaults, FcmConfig::default());
}

#[test]
fn protobuf_durations() {
    assert_eq!(protobuf_duration(Duration::from_secs(60)), "60s");
    assert_eq!(protobuf_duration(Duration::from_millis(1_050)), "1.050s");
    assert_eq!(protobuf_duration(Duration::ZERO), "0s");
}

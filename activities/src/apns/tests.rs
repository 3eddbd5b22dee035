use serde_json::json;

use super::*;

pub(super) fn device(n: u8) -> DeviceToken {
    DeviceToken::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

pub(super) fn message(n: u32) -> PushMessage {
    PushMessage {
        instance_id: InstanceId::parse(&format!("in_{n:032x}")).unwrap(),
        title: "Goal!".into(),
        body: "2-1 in the 90th minute".into(),
        data: serde_json::Map::from_iter([("match".to_owned(), json!(42))]),
        collapse_id: None,
        priority: PushPriority::High,
        expires_at: None,
    }
}

#[test]
fn apns_ids_are_stable_per_delivery_and_distinct_across_them() {
    let id = apns_id(&message(1).instance_id, &device(1));
    assert_eq!(id, apns_id(&message(1).instance_id, &device(1)));
    assert_ne!(id, apns_id(&message(2).instance_id, &device(1)));
    assert_ne!(id, apns_id(&message(1).instance_id, &device(2)));
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(uuid.get_version_num(), 8);
    assert_eq!(id, uuid.hyphenated().to_string());
}

#[test]
fn data_keys_sit_beside_aps_and_cannot_replace_it() {
    let mut data = serde_json::Map::new();
    data.insert("aps".into(), json!("mine"));
    data.insert("deep_link".into(), json!("app://match/42"));
    let payload = payload(&PushMessage { data, ..message(1) });
    assert_eq!(payload["deep_link"], "app://match/42");
    assert_eq!(payload["aps"]["alert"]["title"], "Goal!");
    assert_eq!(payload["aps"]["sound"], "default");
}

#[test]
fn missing_or_unreadable_settings_are_config_errors() {
    let config = ApnsConfig::default();
    assert!(matches!(
        ApnsClient::new(&config),
        Err(ApnsConfigError::Missing("auth.key_path"))
    ));
    let config = ApnsConfig {
        auth: ApnsAuthConfig {
            key_path: Some("/nonexistent/key.p8".into()),
            ..ApnsAuthConfig::default()
        },
        ..ApnsConfig::default()
    };
    let error = ApnsClient::new(&config).unwrap_err();
    assert!(matches!(
        error,
        ApnsConfigError::Read {
            what: "auth.key_path",
            ..
        }
    ));
    assert!(
        error
            .to_string()
            .starts_with("cannot read apns auth.key_path /nonexistent/key.p8")
    );

    let dir = std::env::temp_dir().join(format!("fanout-apns-{}-config", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.p8");
    std::fs::write(&garbage, "not a key").unwrap();
    let config = ApnsConfig {
        auth: ApnsAuthConfig {
            key_path: Some(garbage.clone()),
            ..ApnsAuthConfig::default()
        },
        ..ApnsConfig::default()
    };
    let error = ApnsClient::new(&config).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        matches!(
            error,
            ApnsConfigError::Invalid {
                what: "auth.key_path",
                ..
            }
        ),
        "{error}"
    );
}

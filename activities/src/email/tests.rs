use std::path::Path;

use fanout_domain::config::Secret;

use super::*;

#[test]
fn half_credentials_and_bad_ca_files_are_config_errors() {
    let user_only = SmtpConfig {
        username: Some("alice".into()),
        ..SmtpConfig::default()
    };
    assert!(EmailSender::new(&user_only).is_err());
    let missing = SmtpConfig {
        tls: SmtpTlsMode::Tls,
        ca_path: Some(Path::new("/nonexistent/ca.pem").to_owned()),
        ..SmtpConfig::default()
    };
    let error = EmailSender::new(&missing).err().unwrap().to_string();
    assert!(error.contains("ca_path"), "{error}");
    let empty = std::env::temp_dir().join(format!("fanout-email-{}-empty.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let no_certificate = SmtpConfig {
        tls: SmtpTlsMode::Starttls,
        ca_path: Some(empty.clone()),
        ..SmtpConfig::default()
    };
    let result = EmailSender::new(&no_certificate);
    let _ = std::fs::remove_file(&empty);
    assert!(result.is_err());
}

#[test]
fn auth_without_tls_is_refused_except_to_loopback() {
    let remote = SmtpConfig {
        host: "relay.example.com".into(),
        username: Some("alice".into()),
        password: Some(Secret::new("s3cret")),
        ..SmtpConfig::default()
    };
    let error = EmailSender::new(&remote).err().unwrap().to_string();
    assert!(error.contains("tls"), "{error}");
    let starttls = SmtpConfig {
        tls: SmtpTlsMode::Starttls,
        ..remote.clone()
    };
    assert!(EmailSender::new(&starttls).is_ok());
    let loopback = SmtpConfig {
        host: "127.0.0.1".into(),
        ..remote
    };
    assert!(EmailSender::new(&loopback).is_ok());
}

#[test]
fn bad_from_is_a_config_error() {
    let cfg = SmtpConfig {
        from: "not an address".into(),
        ..Default::default()
    };
    assert!(EmailSender::new(&cfg).is_err());
}

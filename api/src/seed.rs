//! The demo tenant `make up` seeds: an API key, three users with email addresses (alice with an
//! iPhone, bob with an Android phone, registered with the sandbox's simulators), and a template
//! with email, in-app and push content and a French variant.

use std::collections::BTreeMap;

use fanout_domain::template::{
    ChannelContent, EmailContent, InAppContent, PushContent, TemplateSpec,
};
use fanout_domain::user::{Device, DeviceToken, EmailAddress, Platform, User};
use fanout_domain::{TemplateId, TenantId, UserId};
use fanout_store::Store;
use fanout_store::tenants::generate_api_key;

/// What was seeded, for `.fanout/dev.env`.
#[derive(Debug, Clone)]
pub struct DemoSeed {
    /// The demo tenant.
    pub tenant_id: TenantId,
    /// Its API key (the one given, or a new one).
    pub api_key: String,
    /// The demo template.
    pub template_id: TemplateId,
    /// The demo users.
    pub user_ids: Vec<UserId>,
}

const USERS: [(&str, &str); 3] = [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")];

/// Demo push tokens: shaped like real ones, registered with nothing but the sandbox.
const DEVICES: [(&str, Platform, &str); 2] = [
    (
        "alice",
        Platform::Apns,
        "a1ce0000000000000000000000000000000000000000000000000000000000a1",
    ),
    ("bob", Platform::Fcm, "bob-demo-device:APA91bDemoToken"),
];

/// Seeds (idempotently) the demo tenant, registering `api_key` if given or a new key if not.
pub async fn demo(store: &Store, api_key: Option<String>) -> anyhow::Result<DemoSeed> {
    let tenant_id = TenantId::parse("demo")?;
    store.upsert_tenant(&tenant_id, "Demo").await?;
    let api_key = api_key.unwrap_or_else(generate_api_key);
    store.add_api_key(&tenant_id, &api_key).await?;

    let mut user_ids = Vec::new();
    for (id, name) in USERS {
        let user = User {
            user_id: UserId::parse(id)?,
            email: Some(EmailAddress::parse(&format!("{id}@example.com"))?),
            name: Some(name.to_owned()),
            locale: Some("en".to_owned()),
            timezone: None,
            devices: DEVICES
                .iter()
                .filter(|(owner, _, _)| *owner == id)
                .map(|(_, platform, token)| {
                    Ok(Device {
                        platform: *platform,
                        token: DeviceToken::parse(token)?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            quiet_hours: None,
        };
        store.upsert_user(&tenant_id, &user).await?;
        user_ids.push(user.user_id);
    }

    let template_id = TemplateId::parse("welcome")?;
    let mut spec = TemplateSpec::new(
        "Welcome",
        ChannelContent {
            email: Some(EmailContent {
                subject: "Welcome to {{ data.product }}, {{ user.name }}!".into(),
                text: "Hi {{ user.name }},\n\n{{ data.actor }} invited you to {{ data.product }}.\n"
                    .into(),
                html: Some(
                    "<p>Hi {{ user.name }},</p><p>{{ data.actor }} invited you to <b>{{ data.product }}</b>.</p>"
                        .into(),
                ),
            }),
            in_app: Some(InAppContent {
                title: "Welcome to {{ data.product }}".into(),
                body: "{{ data.actor }} invited you, {{ user.name }}.".into(),
                action_url: None,
                payload: BTreeMap::new(),
            }),
            push: Some(PushContent {
                title: "{{ data.actor }} invited you".into(),
                body: "Join {{ data.product }}, {{ user.name }}".into(),
                data: [("product".to_owned(), "{{ data.product }}".to_owned())].into(),
            }),
        },
    );
    spec.locales.insert(
        "fr".to_owned(),
        ChannelContent {
            email: Some(EmailContent {
                subject: "Bienvenue sur {{ data.product }}, {{ user.name }} !".into(),
                text: "Bonjour {{ user.name }},\n\n{{ data.actor }} vous invite sur {{ data.product }}.\n"
                    .into(),
                html: None,
            }),
            in_app: Some(InAppContent {
                title: "Bienvenue sur {{ data.product }}".into(),
                body: "{{ data.actor }} vous invite, {{ user.name }}.".into(),
                action_url: None,
                payload: BTreeMap::new(),
            }),
            push: Some(PushContent {
                title: "{{ data.actor }} vous invite".into(),
                body: "Rejoignez {{ data.product }}, {{ user.name }}".into(),
                data: [("product".to_owned(), "{{ data.product }}".to_owned())].into(),
            }),
        },
    );
    // Seeding twice must not pile up versions: write only when the content changed.
    let current = store.get_template(&tenant_id, &template_id).await?;
    if current.is_none_or(|t| t.spec() != spec) {
        store
            .write_template(&tenant_id, &template_id, &spec)
            .await?;
    }
    Ok(DemoSeed {
        tenant_id,
        api_key,
        template_id,
        user_ids,
    })
}

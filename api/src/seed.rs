//! The demo tenant `make up` seeds: an API key, three users with email addresses, and a
//! template with email and in-app content and a French variant.

use fanout_domain::template::{ChannelContent, EmailContent, InAppContent, TemplateSpec};
use fanout_domain::user::{EmailAddress, User};
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
            devices: Vec::new(),
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
            }),
            // No push: the demo users have no devices.
            push: None,
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
            }),
            push: None,
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

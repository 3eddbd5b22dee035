//! `fanout admin`: the operator's routes under `/v1/admin/` (admin key): tenants, and each
//! tenant's API keys.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Api, Auth, Failure};
use crate::output::{self, Table};

/// `fanout admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants: list (the default), get, create.
    Tenants {
        /// What to do.
        #[command(subcommand)]
        action: Option<TenantAction>,
    },
    /// A tenant's API keys: list (the default), issue, revoke.
    Keys {
        /// The tenant.
        tenant_id: String,
        /// What to do.
        #[command(subcommand)]
        action: Option<KeyAction>,
    },
}

/// `fanout admin tenants ...`.
#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Tenants in id order (`GET /v1/admin/tenants`).
    List {
        /// Start after this tenant id.
        #[arg(long)]
        after: Option<String>,
        /// Tenants per page (1..1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One tenant with its settings (`GET /v1/admin/tenants/{id}`).
    Get {
        /// The tenant.
        tenant_id: String,
    },
    /// Create a tenant (`POST /v1/admin/tenants`).
    Create {
        /// The new tenant's id.
        tenant_id: String,
        /// Its name.
        #[arg(long)]
        name: String,
    },
}

/// `fanout admin keys TENANT ...`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// The tenant's keys, revoked ones included (never the keys themselves).
    List,
    /// Issue a key; it is printed this once.
    Issue {
        /// A label to recognise it by.
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a key: refused from the next call on.
    Revoke {
        /// The key's id (from `list`).
        key_id: String,
    },
}

/// Runs an admin command with the admin key.
pub async fn run(api: &Api, command: AdminCommand, json: bool) -> Result<(), Failure> {
    match command {
        AdminCommand::Tenants { action } => tenants(api, action, json).await,
        AdminCommand::Keys { tenant_id, action } => {
            keys(api, &tenant_id, action.unwrap_or(KeyAction::List), json).await
        }
    }
}

async fn tenants(api: &Api, action: Option<TenantAction>, json: bool) -> Result<(), Failure> {
    let action = action.unwrap_or(TenantAction::List {
        after: None,
        limit: 100,
    });
    match action {
        TenantAction::List { after, limit } => {
            let url = api.url(
                &["v1", "admin", "tenants"],
                &[("after", after), ("limit", Some(limit.to_string()))],
            );
            let page = api.call(Auth::Admin, Method::GET, url, None).await?;
            if json {
                output::print_json(&page);
            } else {
                let mut table = Table::new(&["TENANT", "NAME", "INGEST/S", "BURST", "WEIGHT"]);
                for t in page["tenants"].as_array().into_iter().flatten() {
                    let e = &t["effective"];
                    table.row(vec![
                        output::cell(&t["tenant_id"]),
                        output::cell(&t["name"]),
                        output::cell(&e["ingest_per_second"]),
                        output::cell(&e["ingest_burst"]),
                        output::cell(&e["fairness_weight"]),
                    ]);
                }
                table.print();
            }
            output::next_page_hint(&page, "next_after", "--after");
        }
        TenantAction::Get { tenant_id } => {
            let url = api.url(&["v1", "admin", "tenants", &tenant_id], &[]);
            let tenant = api.call(Auth::Admin, Method::GET, url, None).await?;
            output::print_json(&tenant);
        }
        TenantAction::Create { tenant_id, name } => {
            let created = api
                .send(
                    Auth::Admin,
                    Method::POST,
                    &["v1", "admin", "tenants"],
                    Some(&json!({"tenant_id": tenant_id, "name": name})),
                )
                .await?;
            if json {
                output::print_json(&created);
            } else {
                println!(
                    "tenant {} created; issue it a key: fanout admin keys {} issue",
                    output::cell(&created["tenant_id"]),
                    output::cell(&created["tenant_id"])
                );
            }
        }
    }
    Ok(())
}

async fn keys(api: &Api, tenant: &str, action: KeyAction, json: bool) -> Result<(), Failure> {
    let segments = ["v1", "admin", "tenants", tenant, "keys"];
    match action {
        KeyAction::List => {
            let url = api.url(&segments, &[]);
            let page = api.call(Auth::Admin, Method::GET, url, None).await?;
            if json {
                output::print_json(&page);
            } else {
                print_keys(&page);
            }
        }
        KeyAction::Issue { label } => {
            let body = json!({"label": label});
            let issued = api
                .send(Auth::Admin, Method::POST, &segments, Some(&body))
                .await?;
            if json {
                output::print_json(&issued);
            } else {
                println!("{}", output::cell(&issued["key"]));
                eprintln!(
                    "key {} issued for {tenant}: store it now, it is not shown again",
                    output::cell(&issued["key_id"])
                );
            }
        }
        KeyAction::Revoke { key_id } => {
            let mut path = segments.to_vec();
            path.push(&key_id);
            let answer = api.send(Auth::Admin, Method::DELETE, &path, None).await?;
            if json {
                output::print_json(&answer);
            } else {
                println!("key {key_id} of {tenant} revoked");
            }
        }
    }
    Ok(())
}

fn print_keys(page: &Value) {
    let mut table = Table::new(&["KEY_ID", "PREFIX", "LABEL", "REVOKED"]);
    for k in page["keys"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(&k["key_id"]),
            output::cell(&k["prefix"]),
            output::cell(&k["label"]),
            output::cell(&k["revoked"]),
        ]);
    }
    table.print();
}

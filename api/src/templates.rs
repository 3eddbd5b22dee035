//! `PUT/GET /v1/templates/{template_id}`: per-channel content, checked when written.

use axum::Json;
use axum::extract::{Path, State};
use fanout_domain::TemplateId;
use fanout_domain::render::{RenderError, check_email, check_in_app};
use fanout_domain::template::{EmailContent, InAppContent, Template};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};

/// A template as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    name: String,
    #[serde(default)]
    email: Option<EmailContent>,
    #[serde(default)]
    in_app: Option<InAppContent>,
}

fn syntax_error(e: RenderError) -> ApiError {
    ApiError::InvalidField {
        field: e.part.to_owned(),
        message: format!("template syntax error in {}: {}", e.part, e.message),
    }
}

/// `PUT /v1/templates/{template_id}`: creates the template or writes a new version of it.
/// Content that does not compile is refused with the part and line at fault.
pub async fn put_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<Template>, ApiError> {
    let template_id = TemplateId::parse(&raw_id)?;
    if body.email.is_none() && body.in_app.is_none() {
        return Err(ApiError::InvalidField {
            field: "body".into(),
            message: "a template needs content for at least one channel: 'email' or 'in_app'"
                .into(),
        });
    }
    if let Some(email) = &body.email {
        check_email(email).map_err(syntax_error)?;
    }
    if let Some(in_app) = &body.in_app {
        check_in_app(in_app).map_err(syntax_error)?;
    }
    state
        .store
        .upsert_template(&tenant, &template_id, &body.name, body.email, body.in_app)
        .await?;
    let saved = state
        .store
        .get_template(&tenant, &template_id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("template vanished after write")))?;
    Ok(Json(saved))
}

/// `GET /v1/templates/{template_id}`.
pub async fn get_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    let not_found = || ApiError::NotFound(format!("template '{raw_id}' not found"));
    let template_id = TemplateId::parse(&raw_id).map_err(|_| not_found())?;
    state
        .store
        .get_template(&tenant, &template_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

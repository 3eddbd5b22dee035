//! `/v1/templates`: versioned per-channel content with locale variants, checked when written.
//!
//! Every write (create, update, rollback) stores a new immutable version and makes it active;
//! a rollback copies an older version's content into a new version, so history only grows.
//! Content that does not parse, or that uses a variable templates do not get, is refused with
//! 400 and every problem located (channel, field, locale, line, column); a body that is
//! malformed in other ways (no content, a bad locale tag) is a 422 like everywhere else.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::digest::DigestSpec;
use fanout_domain::limits::{
    MAX_INBOX_PAYLOAD_KEYS, MAX_PUSH_DATA_KEYS, MAX_TEMPLATE_LOCALES, MAX_TEMPLATE_NAME_BYTES,
    MAX_TEMPLATE_PART_BYTES, MAX_TEMPLATE_VERSIONS, TooLarge, check_bytes, check_count,
};
use fanout_domain::render::validate;
use fanout_domain::template::{
    ChannelContent, DEFAULT_CATEGORY, DEFAULT_LOCALE, EmailContent, InAppContent, PushContent,
    Template, TemplateSpec, is_locale_tag, normalize_locale,
};
use fanout_domain::{Channel, TemplateId, TenantId};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};

mod versions;

pub use versions::{RollbackBody, VersionsPage, VersionsQuery};

/// The template routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template))
        .routes(routes!(get_template, put_template))
        .routes(routes!(versions::list_versions))
        .routes(routes!(versions::get_version))
        .routes(routes!(versions::rollback))
}

/// A template as sent to `PUT /v1/templates/{template_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplateInput, description = "MiniJinja syntax. Variables: data.* (the request's data), user.{user_id,name,email,locale,timezone}, request_id, and digest.items / digest.count (a digest template's collected triggers); anything else, syntax errors, a part over its render budget and a part that cannot render are refused with 400 `invalid_template` listing each problem. The top-level channels are the default-locale content and decide which channels the template supports. `locales` maps a locale tag to a variant overriding whole channels; a user's content per channel comes from the exact tag, then its language (`fr-CA` -> `fr`), then the default. Each part is at most 64 KiB.")]
pub struct TemplateBody {
    /// A human name.
    #[schema(min_length = 1, max_length = 200)] // limits::MAX_TEMPLATE_NAME_BYTES
    name: String,
    /// What kind of notification this is; user preferences opt in and out by category
    /// (a-z, 0-9, `_`, `-`, `.`; default `transactional`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_.-]+$")]
    category: Option<String>,
    /// The locale of the top-level content (default `en`).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")] // LOCALE_TAG
    default_locale: Option<String>,
    /// Email content in the default locale.
    #[serde(default)]
    email: Option<EmailContent>,
    /// In-app content in the default locale.
    #[serde(default)]
    in_app: Option<InAppContent>,
    /// Push content in the default locale.
    #[serde(default)]
    push: Option<PushContent>,
    /// Variants by locale tag (e.g. `fr`, `fr-CA`), at most 50; each may only override
    /// channels the top level has.
    #[serde(default)]
    #[schema(schema_with = locales_schema)]
    locales: BTreeMap<String, ChannelContent>,
    /// The blast-radius limit for notifies of this template; overrides the tenant's and the
    /// platform default.
    #[serde(default)]
    max_audience: Option<u64>,
    /// Collect this template's triggers into digests instead of delivering each: triggers of
    /// the same `data.<key>` inside the window become one notification per recipient,
    /// rendered with `digest.items` and `digest.count`.
    #[serde(default)]
    digest: Option<DigestSpec>,
}

/// A template as sent to `POST /v1/templates`: the same, with its id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewTemplateInput, description = "MiniJinja syntax. Variables: data.* (the request's data), user.{user_id,name,email,locale,timezone}, request_id, and digest.items / digest.count (a digest template's collected triggers); anything else, syntax errors, a part over its render budget and a part that cannot render are refused with 400 `invalid_template` listing each problem. The top-level channels are the default-locale content and decide which channels the template supports. `locales` maps a locale tag to a variant overriding whole channels; a user's content per channel comes from the exact tag, then its language (`fr-CA` -> `fr`), then the default. Each part is at most 64 KiB.")]
pub struct NewTemplateBody {
    /// The template's id.
    #[schema(value_type = TemplateId)]
    template_id: String,
    /// A human name.
    #[schema(min_length = 1, max_length = 200)] // limits::MAX_TEMPLATE_NAME_BYTES
    name: String,
    /// What kind of notification this is; user preferences opt in and out by category
    /// (a-z, 0-9, `_`, `-`, `.`; default `transactional`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_.-]+$")]
    category: Option<String>,
    /// The locale of the top-level content (default `en`).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")] // LOCALE_TAG
    default_locale: Option<String>,
    /// Email content in the default locale.
    #[serde(default)]
    email: Option<EmailContent>,
    /// In-app content in the default locale.
    #[serde(default)]
    in_app: Option<InAppContent>,
    /// Push content in the default locale.
    #[serde(default)]
    push: Option<PushContent>,
    /// Variants by locale tag (e.g. `fr`, `fr-CA`), at most 50; each may only override
    /// channels the top level has.
    #[serde(default)]
    #[schema(schema_with = locales_schema)]
    locales: BTreeMap<String, ChannelContent>,
    /// The blast-radius limit for notifies of this template; overrides the tenant's and the
    /// platform default.
    #[serde(default)]
    max_audience: Option<u64>,
    /// Collect this template's triggers into digests instead of delivering each: triggers of
    /// the same `data.<key>` inside the window become one notification per recipient,
    /// rendered with `digest.items` and `digest.count`.
    #[serde(default)]
    digest: Option<DigestSpec>,
}

impl NewTemplateBody {
    fn split(self) -> (String, TemplateBody) {
        (
            self.template_id,
            TemplateBody {
                name: self.name,
                category: self.category,
                default_locale: self.default_locale,
                email: self.email,
                in_app: self.in_app,
                push: self.push,
                locales: self.locales,
                max_audience: self.max_audience,
                digest: self.digest,
            },
        )
    }
}

/// `locales` of a template body: at most [`MAX_TEMPLATE_LOCALES`] variants by tag.
fn locales_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .max_properties(Some(MAX_TEMPLATE_LOCALES))
        .property_names(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .pattern(Some(LOCALE_TAG)),
        ))
        .additional_properties(Some(utoipa::openapi::Ref::from_schema_name(
            "ChannelContent",
        )))
        .build()
}

/// What `is_locale_tag` accepts, as a pattern.
const LOCALE_TAG: &str = "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$";

/// The longest template category, in bytes.
pub const MAX_CATEGORY_BYTES: usize = 64;

/// Whether `s` is a template category: 1 to [`MAX_CATEGORY_BYTES`] of a-z, 0-9, `_`, `-`, `.`
/// (frequency caps name categories by the same rule).
pub(crate) fn is_category(s: &str) -> bool {
    (1..=MAX_CATEGORY_BYTES).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

/// Turns a body into a spec, refusing structural mistakes (422) and then content that does not
/// parse or uses unknown variables (400).
fn parse_spec(body: TemplateBody) -> Result<TemplateSpec, ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_TEMPLATE_NAME_BYTES {
        return Err(ApiError::field(
            "name",
            format!("name must be 1 to {MAX_TEMPLATE_NAME_BYTES} bytes"),
        ));
    }
    let category = body.category.unwrap_or_else(|| DEFAULT_CATEGORY.to_owned());
    if !is_category(&category) {
        return Err(ApiError::field(
            "category",
            "category must be 1 to 64 characters of a-z, 0-9, '_', '-' and '.'",
        ));
    }
    let default_locale = body
        .default_locale
        .unwrap_or_else(|| DEFAULT_LOCALE.to_owned());
    if !is_locale_tag(&default_locale) {
        return Err(ApiError::field(
            "default_locale",
            format!("'{default_locale}' is not a locale tag such as 'en' or 'fr-CA'"),
        ));
    }
    let content = ChannelContent {
        email: body.email,
        in_app: body.in_app,
        push: body.push,
    };
    if content.is_empty() {
        return Err(ApiError::field(
            "body",
            "a template needs content for at least one channel: 'email', 'in_app' or 'push'",
        ));
    }
    let mut seen = BTreeMap::new();
    for (tag, variant) in &body.locales {
        let at = format!("locales.{tag}");
        if !is_locale_tag(tag) {
            return Err(ApiError::field(
                at,
                format!("'{tag}' is not a locale tag such as 'fr' or 'fr-CA'"),
            ));
        }
        let normal = normalize_locale(tag);
        if normal == normalize_locale(&default_locale) {
            return Err(ApiError::field(
                at,
                format!("'{tag}' is the default locale: put its content at the top level"),
            ));
        }
        if let Some(other) = seen.insert(normal, tag) {
            return Err(ApiError::field(
                at,
                format!("'{tag}' and '{other}' name the same locale"),
            ));
        }
        if variant.is_empty() {
            return Err(ApiError::field(
                at,
                "a locale variant needs content for at least one channel",
            ));
        }
        // Variants override channels the template has; the default content decides which
        // channels those are, so every locale can fall back to it.
        if let Some(extra) = Channel::ALL
            .into_iter()
            .find(|c| variant.has(*c) && !content.has(*c))
        {
            return Err(ApiError::field(
                format!("{at}.{extra}"),
                format!(
                    "the default content has no {extra}; a variant can only override channels the template has"
                ),
            ));
        }
    }
    if let Some(digest) = &body.digest {
        digest
            .check()
            .map_err(|e| ApiError::field(format!("digest.{}", e.field), e.reason))?;
    }
    check_sizes(&content, &body.locales)?;
    validate(&content, &body.locales).map_err(ApiError::InvalidTemplate)?;
    Ok(TemplateSpec {
        name,
        category,
        default_locale,
        content,
        locales: body.locales,
        max_audience: body.max_audience,
        digest: body.digest,
    })
}

/// Refuses content over the template limits (see `fanout_domain::limits`), naming the part.
fn check_sizes(
    content: &ChannelContent,
    locales: &BTreeMap<String, ChannelContent>,
) -> Result<(), TooLarge> {
    check_count(
        "locales",
        locales.len(),
        MAX_TEMPLATE_LOCALES,
        "locale variants",
    )?;
    let variants = std::iter::once((String::new(), content)).chain(
        locales
            .iter()
            .map(|(tag, c)| (format!("locales.{tag}."), c)),
    );
    for (at, content) in variants {
        let part = |field: &str, source: &str| {
            check_bytes(&format!("{at}{field}"), source, MAX_TEMPLATE_PART_BYTES)
        };
        if let Some(email) = &content.email {
            part("email.subject", &email.subject)?;
            part("email.text", &email.text)?;
            part("email.html", email.html.as_deref().unwrap_or_default())?;
        }
        if let Some(in_app) = &content.in_app {
            part("in_app.title", &in_app.title)?;
            part("in_app.body", &in_app.body)?;
            part(
                "in_app.action_url",
                in_app.action_url.as_deref().unwrap_or_default(),
            )?;
            let keys = in_app.payload.len();
            check_count(
                &format!("{at}in_app.payload"),
                keys,
                MAX_INBOX_PAYLOAD_KEYS,
                "keys",
            )?;
            for (key, value) in &in_app.payload {
                part(&format!("in_app.payload.{key}"), value)?;
            }
        }
        if let Some(push) = &content.push {
            part("push.title", &push.title)?;
            part("push.body", &push.body)?;
            check_count(
                &format!("{at}push.data"),
                push.data.len(),
                MAX_PUSH_DATA_KEYS,
                "keys",
            )?;
            for (key, value) in &push.data {
                part(&format!("push.data.{key}"), value)?;
            }
        }
    }
    Ok(())
}

/// Refuses a write past [`MAX_TEMPLATE_VERSIONS`]: every write is a version, so this is what
/// bounds one template's history.
async fn refuse_past_version_cap(
    state: &AppState,
    tenant: &TenantId,
    template_id: &TemplateId,
) -> Result<(), ApiError> {
    let current = state.store.get_template(tenant, template_id).await?;
    if current.is_some_and(|t| t.version >= MAX_TEMPLATE_VERSIONS) {
        return Err(ApiError::Conflict(format!(
            "template '{template_id}' has {MAX_TEMPLATE_VERSIONS} versions, the most one template keeps; \
             create a template under a new id"
        )));
    }
    Ok(())
}

/// The `data.*` values a template version's `channels` render with no default (see
/// `fanout_domain::render::required_data`). Versions never change, so the answer is kept per
/// version and channel set, for every notify after the first.
pub fn required_data(
    tenant: &TenantId,
    template: &Template,
    channels: &[Channel],
) -> Arc<Vec<String>> {
    type Key = (TenantId, TemplateId, i64, Vec<Channel>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<Vec<String>>>>> = OnceLock::new();
    /// Entries kept before the cache starts over; each is a few ids and names.
    const CAPACITY: usize = 4096;
    let key = (
        tenant.clone(),
        template.template_id.clone(),
        template.version,
        channels.to_vec(),
    );
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Arc::clone(hit);
    }
    let required = Arc::new(fanout_domain::render::required_data(
        &template.content,
        &template.locales,
        channels,
    ));
    let mut entries = cache.lock().unwrap_or_else(|e| e.into_inner());
    if entries.len() >= CAPACITY {
        entries.clear();
    }
    entries.insert(key, Arc::clone(&required));
    required
}

/// Parses a template id from a path; a malformed one cannot exist, so it is a 404.
fn path_id(raw: &str) -> Result<TemplateId, ApiError> {
    TemplateId::parse(raw).map_err(|_| not_found(raw))
}

fn not_found(raw: &str) -> ApiError {
    ApiError::NotFound(format!("template '{raw}' not found"))
}

/// `POST /v1/templates`: creates the template as version 1 (201); 409 if the id is taken.
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = "templates",
    summary = "Create a template as version 1",
    request_body = NewTemplateBody,
    responses(
        (status = 201, description = "Created", body = Template),
        (status = 400, description = "Content does not parse, uses unknown variables, exceeds the render budget or cannot render (code invalid_template, problems lists each: kind syntax, unknown_variable, limit or render); or the body is not JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is invalid or over its limit (template_id, name, category, default_locale, locales.<tag>, a part over 64 KiB, too many payload or data keys, no content at all); field names it", body = ErrorBody),
    )
)]
pub async fn create_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<NewTemplateBody>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let (raw_id, body) = body.split();
    let template_id = TemplateId::parse(&raw_id)?;
    let spec = parse_spec(body)?;
    let created = state
        .store
        .create_template(&tenant, &template_id, &spec)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "template '{template_id}' already exists: PUT /v1/templates/{template_id} writes a new version"
            ))
        })?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `PUT /v1/templates/{template_id}`: creates the template or writes its next version, and
/// returns the version written (now active).
#[utoipa::path(
    put,
    path = "/v1/templates/{template_id}",
    tag = "templates",
    summary = "Create a template or write its next version (immutable, and active at once)",
    params(("template_id" = TemplateId, Path, description = "The template")),
    request_body = TemplateBody,
    responses(
        (status = 200, description = "The version written", body = Template),
        (status = 400, description = "Content does not parse, uses unknown variables, exceeds the render budget or cannot render (code invalid_template, problems lists each: kind syntax, unknown_variable, limit or render); or the body is not JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 409, description = "The template has 1000 versions, the most one template keeps", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is invalid or over its limit; field names it", body = ErrorBody),
    )
)]
pub async fn put_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<Template>, ApiError> {
    let template_id = TemplateId::parse(&raw_id)?;
    let spec = parse_spec(body)?;
    refuse_past_version_cap(&state, &tenant, &template_id).await?;
    let written = state
        .store
        .write_template(&tenant, &template_id, &spec)
        .await?;
    Ok(Json(written))
}

/// `GET /v1/templates/{template_id}`: the active version.
#[utoipa::path(
    get,
    path = "/v1/templates/{template_id}",
    tag = "templates",
    summary = "Read a template's active version",
    params(("template_id" = TemplateId, Path, description = "The template")),
    responses(
        (status = 200, description = "The active version", body = Template),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
    )
)]
pub async fn get_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    let template_id = path_id(&raw_id)?;
    state
        .store
        .get_template(&tenant, &template_id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&raw_id))
}

/// The tenant's template named in the path, or 404.
pub(crate) async fn existing_template(
    state: &AppState,
    tenant: &TenantId,
    raw_id: &str,
) -> Result<TemplateId, ApiError> {
    let not_found = || ApiError::NotFound(format!("template '{raw_id}' not found"));
    let template_id = TemplateId::parse(raw_id).map_err(|_| not_found())?;
    state
        .store
        .get_template(tenant, &template_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(template_id)
}

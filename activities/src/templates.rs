//! Compiled templates, cached per (tenant, template, version).
//!
//! A version never changes once written, so its compiled form can be kept for as long as the
//! worker likes: every page of every request using it renders from one [`Compiled`], built the
//! first time a delivery needs it. Concurrent first uses wait for one compilation rather than
//! each building their own. The cache is bounded; the least recently used version goes first.
//!
//! Which version a delivery uses is pinned by its request: the version that was active when
//! the request was accepted (see `Store::template_version_for_request`), so an update or a
//! rollback while a request fans out changes nothing for the pages still to come.
//!
//! Templates are tenant code, so renders run on the blocking pool with a timeout
//! ([`LoadedTemplate::render`]) rather than on the async threads every delivery shares; the
//! engine's fuel bounds each one, so a timed-out render still ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fanout_contracts as contracts;
use fanout_domain::render::{Compiled, RenderError};
use fanout_domain::template::Template;
use fanout_domain::{RequestId, TemplateId, TenantId};
use fanout_store::{Store, StoreError};
use temporalio_sdk::activities::ActivityError;
use tokio::sync::OnceCell;

use crate::{permanent, store_error};

/// How long one recipient's render may take before it fails with `template_limit`.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(2);

/// How many versions [`TemplateCache::shared`] keeps compiled.
pub const DEFAULT_CAPACITY: usize = 256;

/// One template version, with every channel and locale compiled.
#[derive(Debug)]
pub struct LoadedTemplate {
    /// The version as stored (its category, channels, locales).
    pub template: Template,
    /// Its compiled content.
    pub compiled: Compiled,
}

impl LoadedTemplate {
    /// Runs `render` on the blocking pool, failing with a [`RenderFailure::Limit`] error when
    /// it takes longer than [`RENDER_TIMEOUT`] or panics.
    ///
    /// [`RenderFailure::Limit`]: fanout_domain::render::RenderFailure::Limit
    pub async fn render<T, F>(self: &Arc<Self>, render: F) -> Result<T, RenderError>
    where
        T: Send + 'static,
        F: FnOnce(&Compiled) -> Result<T, RenderError> + Send + 'static,
    {
        let loaded = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || render(&loaded.compiled));
        match tokio::time::timeout(RENDER_TIMEOUT, task).await {
            Ok(Ok(rendered)) => rendered,
            Ok(Err(e)) => Err(RenderError::limit(
                "template",
                format!("the render failed: {e}"),
            )),
            Err(_) => Err(RenderError::limit(
                "template",
                format!("the render took longer than {RENDER_TIMEOUT:?}"),
            )),
        }
    }
}

/// Why a template could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateLoadError {
    /// The template (or the pinned version) does not exist: permanent.
    #[error("template '{template_id}' does not exist")]
    Missing {
        /// The template asked for.
        template_id: TemplateId,
    },
    /// The stored content does not compile: permanent (validation should have refused it).
    #[error("template does not compile: {0}")]
    Compile(#[from] RenderError),
    /// The store failed: transient.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl TemplateLoadError {
    /// Classifies the failure for Temporal: a missing or broken template is permanent, the
    /// store being unavailable is retried.
    pub fn into_activity_error(self) -> ActivityError {
        match self {
            Self::Missing { .. } => permanent(contracts::ERR_TEMPLATE_MISSING, self.to_string()),
            Self::Compile(e) => permanent(contracts::ERR_TEMPLATE_RENDER, e.to_string()),
            Self::Store(e) => store_error(e),
        }
    }
}

type Key = (TenantId, TemplateId, i64);

struct Entry {
    cell: Arc<OnceCell<Arc<LoadedTemplate>>>,
    last_used: u64,
}

/// Compiled template versions, bounded, shared by every delivery in the worker.
pub struct TemplateCache {
    capacity: usize,
    entries: Mutex<HashMap<Key, Entry>>,
    clock: AtomicU64,
}

impl Default for TemplateCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl TemplateCache {
    /// A cache keeping at most `capacity` versions compiled (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
        }
    }

    /// The worker-wide cache. Compiled versions are immutable, so one cache serves every
    /// activity in the process.
    pub fn shared() -> &'static TemplateCache {
        static SHARED: OnceLock<TemplateCache> = OnceLock::new();
        SHARED.get_or_init(TemplateCache::default)
    }

    /// How many versions are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The version a request renders with: the one active when it was accepted, or the active
    /// one if the request is not recorded.
    pub async fn for_request(
        &self,
        store: &Store,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        request_id: &RequestId,
    ) -> Result<Arc<LoadedTemplate>, TemplateLoadError> {
        let pinned = store
            .template_version_for_request(tenant_id, template_id, request_id)
            .await?;
        match pinned {
            Some(version) => self.version(store, tenant_id, template_id, version).await,
            None => self.active(store, tenant_id, template_id).await,
        }
    }

    /// The template's active version.
    pub async fn active(
        &self,
        store: &Store,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Arc<LoadedTemplate>, TemplateLoadError> {
        let template = store
            .get_template(tenant_id, template_id)
            .await?
            .ok_or_else(|| TemplateLoadError::Missing {
                template_id: template_id.clone(),
            })?;
        let key = (tenant_id.clone(), template_id.clone(), template.version);
        let cell = self.cell(key);
        let loaded = cell.get_or_try_init(|| async { compile(template) }).await?;
        Ok(loaded.clone())
    }

    /// One version, loaded and compiled on first use.
    pub async fn version(
        &self,
        store: &Store,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        version: i64,
    ) -> Result<Arc<LoadedTemplate>, TemplateLoadError> {
        let cell = self.cell((tenant_id.clone(), template_id.clone(), version));
        let loaded = cell
            .get_or_try_init(|| async {
                let template = store
                    .get_template_version(tenant_id, template_id, version)
                    .await?
                    .ok_or_else(|| TemplateLoadError::Missing {
                        template_id: template_id.clone(),
                    })?;
                compile(template)
            })
            .await?;
        Ok(loaded.clone())
    }

    /// The slot for `key`, created (evicting the least recently used if full) when absent. A
    /// failed load leaves the slot empty, so the next use tries again.
    fn cell(&self, key: Key) -> Arc<OnceCell<Arc<LoadedTemplate>>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(&key) {
            entry.last_used = now;
            return entry.cell.clone();
        }
        if entries.len() >= self.capacity {
            // Linear in the capacity, and only on a miss: a miss compiles a template, which
            // costs far more.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(
            key,
            Entry {
                cell: cell.clone(),
                last_used: now,
            },
        );
        cell
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // The map stays consistent whatever panicked while holding it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn compile(template: Template) -> Result<Arc<LoadedTemplate>, TemplateLoadError> {
    let compiled = Compiled::template(&template)?;
    tracing::debug!(
        template_id = %template.template_id,
        version = template.version,
        "template compiled"
    );
    Ok(Arc::new(LoadedTemplate { template, compiled }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fanout_domain::DedupeKey;
    use fanout_domain::config::StoreConfig;
    use fanout_domain::template::InAppContent;
    use fanout_store::now_ms;
    use fanout_store::requests::RequestKeys;

    use super::*;

    async fn store() -> Store {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fanout-activities-templates-{}-{}-{}",
            std::process::id(),
            now_ms(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Store::connect(&StoreConfig {
            url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()),
            max_connections: Some(4),
        })
        .await
        .unwrap()
    }

    fn inbox(title: &str) -> Option<InAppContent> {
        Some(InAppContent {
            title: title.into(),
            body: "b".into(),
            action_url: None,
            payload: BTreeMap::new(),
        })
    }

    async fn seeded() -> (Store, TenantId, TemplateId) {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let id = TemplateId::parse("welcome").unwrap();
        (store, t, id)
    }

    #[tokio::test]
    async fn each_version_is_compiled_once_and_kept() {
        let (store, t, id) = seeded().await;
        store
            .upsert_template(&t, &id, "W", None, inbox("one"))
            .await
            .unwrap();
        let cache = TemplateCache::new(4);
        let (a, b) = tokio::join!(
            cache.version(&store, &t, &id, 1),
            cache.version(&store, &t, &id, 1)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            Arc::ptr_eq(&a, &b),
            "concurrent first uses share one compilation"
        );
        let active = cache.active(&store, &t, &id).await.unwrap();
        assert!(Arc::ptr_eq(&a, &active));
        assert_eq!(cache.len(), 1);
        assert!(matches!(
            cache.version(&store, &t, &id, 2).await,
            Err(TemplateLoadError::Missing { .. })
        ));
    }

    #[tokio::test]
    async fn the_least_recently_used_version_is_evicted_when_full() {
        let (store, t, id) = seeded().await;
        for title in ["one", "two", "three"] {
            store
                .upsert_template(&t, &id, "W", None, inbox(title))
                .await
                .unwrap();
        }
        let cache = TemplateCache::new(2);
        let one = cache.version(&store, &t, &id, 1).await.unwrap();
        let two = cache.version(&store, &t, &id, 2).await.unwrap();
        // Touch 1 so 2 is the oldest when 3 arrives.
        assert!(Arc::ptr_eq(
            &one,
            &cache.version(&store, &t, &id, 1).await.unwrap()
        ));
        cache.version(&store, &t, &id, 3).await.unwrap();
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(
            &one,
            &cache.version(&store, &t, &id, 1).await.unwrap()
        ));
        let two_again = cache.version(&store, &t, &id, 2).await.unwrap();
        assert!(
            !Arc::ptr_eq(&two, &two_again),
            "version 2 was evicted and rebuilt"
        );
        assert_eq!(two_again.template.version, 2);
    }

    #[tokio::test]
    async fn a_request_keeps_the_version_active_when_it_was_accepted() {
        let (store, t, id) = seeded().await;
        store
            .upsert_template(&t, &id, "W", None, inbox("one"))
            .await
            .unwrap();
        let request = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        let cache = TemplateCache::new(4);
        let unrecorded = cache.for_request(&store, &t, &id, &request).await.unwrap();
        assert_eq!(
            unrecorded.template.version, 1,
            "no request row: the active version"
        );

        store
            .insert_request(
                RequestKeys {
                    request_id: &request,
                    tenant_id: &t,
                    template_id: &id,
                    path: fanout_domain::request::DeliveryPath::Tree,
                    run_at_ms: None,
                },
                &serde_json::json!({"request_id": request}),
                0,
                "k",
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        // Versions are ordered by millisecond timestamps: write the next one strictly later.
        let accepted = now_ms();
        while now_ms() <= accepted {
            tokio::task::yield_now().await;
        }
        store
            .upsert_template(&t, &id, "W", None, inbox("two"))
            .await
            .unwrap();
        let pinned = cache.for_request(&store, &t, &id, &request).await.unwrap();
        assert_eq!(pinned.template.version, 1);
        assert_eq!(
            pinned.template.content.in_app.as_ref().unwrap().title,
            "one"
        );
        assert_eq!(
            cache
                .active(&store, &t, &id)
                .await
                .unwrap()
                .template
                .version,
            2
        );
    }
}

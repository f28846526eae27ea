use std::fmt;
use std::sync::Arc;

use tailwater_core::ConfigError;
use tailwater_core::rate::{MultiQuota, RateStore};
use tower::Layer;

use super::key::KeyExtractor;
use super::service::RateLimit;
use crate::edge::{RateLimitPolicies, Respond, ReturnError};
use crate::observe::{RateLimitMetrics, Route};

/// What to do with a request whose key cannot be extracted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Let it through unlimited (counted as `decision="unkeyed"`). The default.
    #[default]
    Allow,
    /// Limit all such requests together under this key.
    Shared(String),
}

pub use crate::admission::OnStoreError;

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) policies: Arc<RateLimitPolicies>,
    pub(crate) metrics: Arc<RateLimitMetrics>,
    pub(crate) missing: MissingKey,
    pub(crate) on_error: OnStoreError,
    pub(crate) headers_on_success: bool,
    pub(crate) prefix: Option<String>,
}

/// Applies [`RateLimit`] to a service. See the [module docs](super).
///
/// ```
/// use tailwater_core::rate::{KeyedLimiter, MemoryStore, Quota};
/// use tailwater_tower::RateLimitLayer;
/// use tailwater_tower::rate_limit::HeaderKey;
///
/// let quota = Quota::per_minute(100)?;
/// let store = MemoryStore::new(KeyedLimiter::<String>::builder(quota).max_keys(50_000).build()?);
/// let layer = RateLimitLayer::new(store, quota, HeaderKey::new("x-api-key".parse().unwrap()))
///     .policy_names(["per-key"])?
///     .route("api");
/// # let _ = layer;
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct RateLimitLayer<K, St, R = Respond> {
    store: Arc<St>,
    quotas: Arc<MultiQuota>,
    settings: Settings,
    extractor: K,
    on_reject: R,
}

impl<K: KeyExtractor, St: RateStore> RateLimitLayer<K, St> {
    /// Limits each key of `extractor` to `quotas` (one [`Quota`](tailwater_core::rate::Quota)
    /// or a [`MultiQuota`], all enforced together) on `store`.
    ///
    /// Policy names in the `RateLimit*` headers default to `default` for one quota and
    /// `q0`, `q1`, ... for several (see [`policy_names`](Self::policy_names)).
    pub fn new(store: St, quotas: impl Into<MultiQuota>, extractor: K) -> Self {
        let quotas: MultiQuota = quotas.into();
        let policies = default_policies(&quotas);
        Self {
            store: Arc::new(store),
            quotas: Arc::new(quotas),
            settings: Settings {
                policies: Arc::new(policies),
                metrics: Arc::new(RateLimitMetrics::new(Route::default())),
                missing: MissingKey::default(),
                on_error: OnStoreError::default(),
                headers_on_success: true,
                prefix: None,
            },
            extractor,
            on_reject: Respond,
        }
    }
}

fn default_policies(quotas: &MultiQuota) -> RateLimitPolicies {
    let list = quotas.quotas();
    let named: Vec<(String, _)> = if list.len() == 1 {
        vec![("default".to_owned(), list[0])]
    } else {
        list.iter()
            .enumerate()
            .map(|(i, q)| (format!("q{i}"), *q))
            .collect()
    };
    match RateLimitPolicies::new(named) {
        Ok(p) => p,
        // A MultiQuota is never empty and the names are plain ASCII.
        Err(e) => unreachable!("default rate-limit policy names rejected: {e}"),
    }
}

impl<K, St, R> RateLimitLayer<K, St, R> {
    /// Names the quotas in the `RateLimit-Policy` / `RateLimit` headers, in quota order.
    ///
    /// Errors: the number of names differs from the number of quotas
    /// (`rate_limit.policy_names`), or a name is not printable ASCII.
    pub fn policy_names<N: AsRef<str>>(
        mut self,
        names: impl IntoIterator<Item = N>,
    ) -> Result<Self, ConfigError> {
        let names: Vec<N> = names.into_iter().collect();
        if names.len() != self.quotas.len() {
            return Err(ConfigError::new(
                "rate_limit.policy_names",
                format!("{} names for {} quotas", names.len(), self.quotas.len()),
            ));
        }
        let policies =
            RateLimitPolicies::new(names.iter().zip(self.quotas.quotas().iter().copied()))?;
        self.settings.policies = Arc::new(policies);
        Ok(self)
    }

    /// The `route` label on metrics and tracing (default `default`).
    pub fn route(mut self, route: impl AsRef<str>) -> Self {
        self.settings.metrics = Arc::new(RateLimitMetrics::new(Route::new(route)));
        self
    }

    /// What to do with requests without a key (default [`MissingKey::Allow`]).
    pub fn missing_key(mut self, missing: MissingKey) -> Self {
        self.settings.missing = missing;
        self
    }

    /// What to do when the store fails (default [`OnStoreError::FailOpen`]).
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.settings.on_error = on_error;
        self
    }

    /// Prepends `prefix` to every key, so that layers sharing one store do not collide.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = Some(prefix.into());
        self
    }

    /// Whether admitted responses carry `RateLimit-Policy` / `RateLimit` (default `true`).
    pub fn headers_on_success(mut self, on: bool) -> Self {
        self.settings.headers_on_success = on;
        self
    }

    /// Replaces what rejections become.
    pub fn on_reject<R2>(self, on_reject: R2) -> RateLimitLayer<K, St, R2> {
        RateLimitLayer {
            store: self.store,
            quotas: self.quotas,
            settings: self.settings,
            extractor: self.extractor,
            on_reject,
        }
    }

    /// Returns rejections as a boxed [`RateLimited`](super::error::RateLimited) error.
    pub fn return_error(self) -> RateLimitLayer<K, St, ReturnError> {
        self.on_reject(ReturnError)
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The quotas.
    pub fn quotas(&self) -> &MultiQuota {
        &self.quotas
    }
}

impl<K: Clone, St, R: Clone> Clone for RateLimitLayer<K, St, R> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            quotas: Arc::clone(&self.quotas),
            settings: self.settings.clone(),
            extractor: self.extractor.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<K: fmt::Debug, St, R: fmt::Debug> fmt::Debug for RateLimitLayer<K, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quotas", &self.quotas)
            .field("policies", &self.settings.policies)
            .field("route", self.settings.metrics.route())
            .field("missing", &self.settings.missing)
            .field("on_error", &self.settings.on_error)
            .field("extractor", &self.extractor)
            .field("on_reject", &self.on_reject)
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone, St, R: Clone> Layer<S> for RateLimitLayer<K, St, R> {
    type Service = RateLimit<S, K, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_parts(
            inner,
            Arc::clone(&self.store),
            Arc::clone(&self.quotas),
            Arc::new(self.settings.clone()),
            self.extractor.clone(),
            self.on_reject.clone(),
        )
    }
}

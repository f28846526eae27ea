use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tailwater_core::Limiter;
use tailwater_core::clock::{Clock, MonotonicClock};
use tower::Layer;

use super::service::{Common, Concurrency};
use crate::burn::BurnRates;
use crate::classify::DefaultClassifier;
use crate::edge::{Respond, ReturnError};
use crate::observe::Route;

/// Applies [`Concurrency`] to a service: admission through a shared core
/// [`Limiter`], with the permit held until the response body ends.
///
/// `P` classifies outcomes ([`Classify`](crate::Classify)), `R` decides what a rejection
/// becomes ([`OnReject`](crate::edge::OnReject): a response by default).
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::Limiter;
/// use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
/// use tailwater_tower::ConcurrencyLayer;
///
/// // The recommended algorithm unless `.algorithm(...)` says otherwise.
/// let limiter = Limiter::builder()
///     .queue(QueueConfig::new(64, QueueDiscipline::Fifo, Duration::from_millis(500))?)
///     .build()?;
/// let layer = ConcurrencyLayer::new(limiter)
///     .wait(Duration::from_millis(200))
///     .route("checkout");
/// # let _ = layer;
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct ConcurrencyLayer<C: Clock = MonotonicClock, P = DefaultClassifier, R = Respond> {
    common: Arc<Common<C>>,
    classifier: P,
    on_reject: R,
}

impl<C: Clock> ConcurrencyLayer<C> {
    /// Rejects at once when `limiter` is full, answers rejections with the edge response and
    /// classifies outcomes with [`DefaultClassifier`].
    pub fn new(limiter: Limiter<C>) -> Self {
        Self {
            common: Arc::new(Common::new(limiter, Route::default())),
            classifier: DefaultClassifier::new(),
            on_reject: Respond,
        }
    }
}

impl Default for ConcurrencyLayer {
    /// A layer on a limiter of its own with the library's defaults: the
    /// [`recommended`](tailwater_core::algorithm::recommended) algorithm (the same default as
    /// `Limiter::builder()`, the proxy and the drill), no tiers, no queue (reject at once).
    ///
    /// ```
    /// use tailwater_core::algorithm::{LimitAlgorithm, recommended};
    /// let layer = tailwater_tower::ConcurrencyLayer::default();
    /// assert_eq!(layer.limiter().stats().algorithm, recommended().name());
    /// ```
    fn default() -> Self {
        Self::new(Limiter::new(tailwater_core::algorithm::recommended()))
    }
}

impl<C: Clock, P, R> ConcurrencyLayer<C, P, R> {
    /// Waits up to `timeout` in the limiter's queue when it is full (the limiter must have a
    /// queue, see `LimiterBuilder::queue`; without one, requests are rejected with
    /// `queue_full` at once). The wait is also capped by the queue's `max_wait`.
    pub fn wait(mut self, timeout: Duration) -> Self {
        let mut common = self
            .common
            .rebuilt(self.common.route().clone(), self.common.burn.clone());
        common.admission = common.admission.with_wait(Some(timeout));
        self.common = Arc::new(common);
        self
    }

    /// The `route` label on metrics and tracing (default `default`).
    pub fn route(mut self, route: impl AsRef<str>) -> Self {
        let common = self
            .common
            .rebuilt(Route::new(route), self.common.burn.clone());
        self.common = Arc::new(common);
        self
    }

    /// Keeps the SLO burn rates of this route in `burn` ([`crate::burn`]): successes are
    /// good events, drops and rejections bad ones; the `tailwater_slo_*` gauges follow.
    /// Share one [`BurnRates`] between layers to pool their events; read it with
    /// [`BurnRates::snapshot`] (e.g. for a status page).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tailwater_tower::ConcurrencyLayer;
    /// use tailwater_tower::burn::BurnRates;
    ///
    /// let burn = Arc::new(BurnRates::new(99.9)?);
    /// let layer = ConcurrencyLayer::default().route("api").burn_rates(Arc::clone(&burn));
    /// # let _ = layer;
    /// # Ok::<(), tailwater_tower::burn::BurnRateError>(())
    /// ```
    pub fn burn_rates(mut self, burn: Arc<BurnRates>) -> Self {
        let common = self.common.rebuilt(self.common.route().clone(), Some(burn));
        self.common = Arc::new(common);
        self
    }

    /// Also reads the caller's deadline from `header` (the remaining budget in whole
    /// milliseconds: the proxy's route `deadline_header`, and
    /// [`RetryLayer::deadline_header`](crate::outbound::RetryLayer::deadline_header) on the
    /// client side), besides `grpc-timeout`, which is always read; with both, the shorter
    /// wins. Default: `grpc-timeout` only.
    ///
    /// With a deadline, a request
    /// - whose budget is already spent is refused on arrival, without a permit:
    ///   [`DeadlineExceeded`](super::error::DeadlineExceeded) (`504`, gRPC
    ///   `DEADLINE_EXCEEDED`), counted with reason `deadline_exceeded`;
    /// - waits in the queue at most what is left of its budget, and is refused likewise if
    ///   the budget ran out by the time it got its permit (the permit goes back unused);
    /// - reaches the service with its [`Deadline`](crate::deadline::Deadline) in its
    ///   extensions, and, after a queue wait, with the budget fields it came with
    ///   rewritten to what is left ([`Deadline::write`](crate::deadline::Deadline::write)).
    ///
    /// ```
    /// use http::HeaderName;
    /// use tailwater_tower::ConcurrencyLayer;
    /// let layer = ConcurrencyLayer::default()
    ///     .deadline_header(HeaderName::from_static("x-request-timeout"));
    /// # let _ = layer;
    /// ```
    pub fn deadline_header(mut self, header: HeaderName) -> Self {
        let mut common = self
            .common
            .rebuilt(self.common.route().clone(), self.common.burn.clone());
        common.admission = common.admission.with_deadline_header(Some(header));
        self.common = Arc::new(common);
        self
    }

    /// Replaces the outcome classifier.
    pub fn classifier<P2>(self, classifier: P2) -> ConcurrencyLayer<C, P2, R> {
        ConcurrencyLayer {
            common: self.common,
            classifier,
            on_reject: self.on_reject,
        }
    }

    /// Replaces what rejections become.
    pub fn on_reject<R2>(self, on_reject: R2) -> ConcurrencyLayer<C, P, R2> {
        ConcurrencyLayer {
            common: self.common,
            classifier: self.classifier,
            on_reject,
        }
    }

    /// Returns rejections as a boxed [`Overloaded`](super::error::Overloaded) error instead of
    /// answering them.
    pub fn return_error(self) -> ConcurrencyLayer<C, P, ReturnError> {
        self.on_reject(ReturnError)
    }

    /// The limiter.
    pub fn limiter(&self) -> &Limiter<C> {
        self.common.limiter()
    }
}

impl<C: Clock, P: Clone, R: Clone> Clone for ConcurrencyLayer<C, P, R> {
    fn clone(&self) -> Self {
        Self {
            common: Arc::clone(&self.common),
            classifier: self.classifier.clone(),
            on_reject: self.on_reject.clone(),
        }
    }
}

impl<C: Clock, P: fmt::Debug, R: fmt::Debug> fmt::Debug for ConcurrencyLayer<C, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common
            .debug_fields(&mut f.debug_struct("ConcurrencyLayer"))
            .field("classifier", &self.classifier)
            .field("on_reject", &self.on_reject)
            .finish()
    }
}

impl<S, C: Clock, P: Clone, R: Clone> Layer<S> for ConcurrencyLayer<C, P, R> {
    type Service = Concurrency<S, C, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Concurrency::from_parts(
            inner,
            Arc::clone(&self.common),
            self.classifier.clone(),
            self.on_reject.clone(),
        )
    }
}

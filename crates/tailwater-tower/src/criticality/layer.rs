use std::fmt;

use http::HeaderName;
use http::request::Parts;
use tailwater_core::Criticality;
use tower::Layer;

use super::X_CRITICALITY;
use super::service::SetCriticality;
use crate::admission::{SourceNet, TierPolicy};

/// Where a request's tier comes from.
///
/// Implemented by [`FromHeader`] and by closures `Fn(&http::request::Parts) ->
/// Option<Criticality>`; `None` means "use the default tier".
pub trait Classifier: Clone + Send + Sync + 'static {
    /// The tier of the request, if it can tell.
    fn classify(&self, request: &Parts) -> Option<Criticality>;
}

impl<F> Classifier for F
where
    F: Fn(&Parts) -> Option<Criticality> + Clone + Send + Sync + 'static,
{
    fn classify(&self, request: &Parts) -> Option<Criticality> {
        self(request)
    }
}

/// Reads the tier from a header (`x-criticality` by default).
#[derive(Debug, Clone)]
pub struct FromHeader {
    name: HeaderName,
}

impl FromHeader {
    /// Reads header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl Default for FromHeader {
    fn default() -> Self {
        Self::new(X_CRITICALITY)
    }
}

impl Classifier for FromHeader {
    fn classify(&self, request: &Parts) -> Option<Criticality> {
        super::parse_header(request.headers.get(&self.name))
    }
}

/// Classifies each request into a [`Criticality`] tier and stores it in the request
/// extensions.
///
/// ```
/// use tailwater_tower::CriticalityLayer;
/// use tailwater_tower::criticality::Criticality;
///
/// // From `x-criticality`, default Critical, clients may not claim CriticalPlus except
/// // from 10.0.0.0/8 (the peer address of the connection: `PeerAddr`, `SocketAddr` or
/// // axum's `ConnectInfo` in the extensions).
/// let from_header = CriticalityLayer::new()
///     .ceiling(Criticality::Critical)
///     .trust(["10.0.0.0/8".parse().unwrap()]);
///
/// // From the path.
/// let by_path = CriticalityLayer::from_fn(|req: &http::request::Parts| {
///     req.uri.path().starts_with("/batch/").then_some(Criticality::Sheddable)
/// });
/// # let _ = (from_header, by_path);
/// ```
#[derive(Clone)]
pub struct CriticalityLayer<F = FromHeader> {
    classifier: F,
    default: Criticality,
    policy: TierPolicy,
}

impl CriticalityLayer {
    /// Reads `x-criticality`; default tier `Critical`; no ceiling.
    pub fn new() -> Self {
        Self::from_classifier(FromHeader::default())
    }

    /// Reads the tier from header `name` instead.
    pub fn header(name: HeaderName) -> Self {
        Self::from_classifier(FromHeader::new(name))
    }
}

impl Default for CriticalityLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<F> CriticalityLayer<F> {
    /// Classifies with a closure over the request head.
    pub fn from_fn(f: F) -> Self
    where
        F: Fn(&Parts) -> Option<Criticality> + Clone + Send + Sync + 'static,
    {
        Self::from_classifier(f)
    }

    /// Classifies with any [`Classifier`].
    pub fn from_classifier(classifier: F) -> Self {
        Self {
            classifier,
            default: Criticality::Critical,
            policy: TierPolicy::new(),
        }
    }

    /// The tier of requests the classifier says nothing about (default `Critical`).
    pub fn default_tier(mut self, tier: Criticality) -> Self {
        self.default = tier;
        self
    }

    /// The most important tier the classifier may assign; anything above is lowered to it
    /// (default `CriticalPlus`, i.e. no cap). The rule is tailwater-tower's
    /// [`TierPolicy`], as the proxy applies it; the default tier is not capped.
    pub fn ceiling(mut self, tier: Criticality) -> Self {
        self.policy = self.policy.ceiling(tier);
        self
    }

    /// Lets clients in `nets` (by the connection's peer address in the request
    /// extensions) keep a tier above the [`ceiling`](Self::ceiling).
    pub fn trust(mut self, nets: impl IntoIterator<Item = SourceNet>) -> Self {
        self.policy = self.policy.trust(nets);
        self
    }
}

impl<F> fmt::Debug for CriticalityLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalityLayer")
            .field("default", &self.default)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S, F: Clone> Layer<S> for CriticalityLayer<F> {
    type Service = SetCriticality<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        SetCriticality::new(
            inner,
            self.classifier.clone(),
            self.default,
            self.policy.clone(),
        )
    }
}

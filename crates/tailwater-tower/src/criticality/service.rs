use std::fmt;
use std::task::{Context, Poll};

use http::Request;
use tailwater_core::Criticality;
use tower::Service;

use super::layer::{Classifier, FromHeader};
use crate::admission::TierPolicy;
use crate::rate_limit::peer_addr;

/// Sets the request's [`Criticality`] extension, then calls the inner service. See
/// [`CriticalityLayer`](super::CriticalityLayer).
#[derive(Clone)]
pub struct SetCriticality<S, F = FromHeader> {
    inner: S,
    classifier: F,
    default: Criticality,
    policy: TierPolicy,
}

impl<S, F> SetCriticality<S, F> {
    pub(crate) fn new(inner: S, classifier: F, default: Criticality, policy: TierPolicy) -> Self {
        Self {
            inner,
            classifier,
            default,
            policy,
        }
    }

    inner_accessors!();
}

impl<S: fmt::Debug, F> fmt::Debug for SetCriticality<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetCriticality")
            .field("inner", &self.inner)
            .field("default", &self.default)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S, F, B> Service<Request<B>> for SetCriticality<S, F>
where
    S: Service<Request<B>>,
    F: Classifier,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let tier = match self.classifier.classify(&parts) {
            // Capped at the ceiling unless the peer is trusted.
            Some(tier) => self.policy.cap(tier, peer_addr(&parts).map(|a| a.ip())),
            None => self.default,
        };
        parts.extensions.insert(tier);
        self.inner.call(Request::from_parts(parts, body))
    }
}

//! Criticality: which requests to shed first.
//!
//! [`CriticalityLayer`] classifies each request into one of the four tiers of Google's SRE
//! book ([`Criticality`]) and stores the tier in the request extensions, where
//! [`ConcurrencyLayer`](crate::ConcurrencyLayer) reads it. By default the tier comes from
//! the `x-criticality` header, which is also how gRPC carries it as metadata; the value
//! accepts `critical_plus`, `CRITICAL_PLUS`, `critical-plus`, and so on. A request without
//! the header, or with a value that does not parse, gets the default tier (`Critical`).
//!
//! Untrusted clients should not be able to promote themselves: [`CriticalityLayer::ceiling`]
//! caps what a header may claim (e.g. at `Critical`, keeping `CriticalPlus` for requests
//! the service classifies itself with a closure).
//!
//! To keep the tier across a call chain, copy it onto outbound requests with
//! [`propagate`] (or [`propagate_from`]).

mod layer;
mod service;

pub use layer::{Classifier, CriticalityLayer, FromHeader};
pub use service::SetCriticality;
pub use tailwater_core::Criticality;

use http::{HeaderName, HeaderValue, Request};

/// The default header (and gRPC metadata key): `x-criticality`.
pub const X_CRITICALITY: HeaderName = HeaderName::from_static("x-criticality");

/// Sets `x-criticality` on an outbound request.
///
/// ```
/// use tailwater_tower::criticality::{propagate, Criticality};
/// let mut out = http::Request::new(());
/// propagate(Criticality::Sheddable, &mut out);
/// assert_eq!(out.headers()["x-criticality"], "sheddable");
/// ```
pub fn propagate<B>(tier: Criticality, outbound: &mut Request<B>) {
    outbound
        .headers_mut()
        .insert(X_CRITICALITY, HeaderValue::from_static(tier.as_str()));
}

/// Copies the tier of `inbound` (from its extensions, as set by [`CriticalityLayer`]) onto
/// `outbound` as `x-criticality`. Does nothing if the inbound request was not classified.
pub fn propagate_from<B1, B2>(inbound: &Request<B1>, outbound: &mut Request<B2>) {
    if let Some(tier) = inbound.extensions().get::<Criticality>() {
        propagate(*tier, outbound);
    }
}

/// Reads a tier from a header value: `None` if it is missing or does not parse.
pub fn parse_header(value: Option<&HeaderValue>) -> Option<Criticality> {
    value?.to_str().ok()?.parse().ok()
}

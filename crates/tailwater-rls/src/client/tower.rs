//! [`RlsClient`] as tailwater-tower's [`RemoteLimiter`].

use http::request::Parts;
use tailwater_core::rate::Quota;
use tailwater_tower::rate_limit::remote::{RemoteCheck, RemoteDecision, RemoteLimiter};

use super::RlsClient;

impl RemoteLimiter for RlsClient {
    fn check(&self, request: &Parts) -> Option<RemoteCheck> {
        let call = RlsClient::check(self, request)?;
        Some(Box::pin(async move {
            let d = call.await?;
            let policy = d.limit.as_ref().and_then(|l| {
                let q = Quota::per_period(l.requests_per_unit, l.period).ok()?;
                let name = if l.name.is_empty() { "rls" } else { &l.name };
                Some((name.to_owned(), q))
            });
            Ok(RemoteDecision {
                decision: d.to_rate_decision(),
                policy,
            })
        }))
    }
}

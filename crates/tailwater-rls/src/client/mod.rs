//! An Envoy RLS v3 client (feature `client`): asks a rate limit service — ours or any that
//! speaks `envoy.service.ratelimit.v3.RateLimitService` (envoyproxy/ratelimit, Limitador)
//! — whether a request is within its limits, with a per-call timeout.
//!
//! The descriptors are built from the request as Envoy's `rate_limits` actions build them
//! ([`DescriptorSpec`], [`Action`]). The answer is an [`RlsDecision`]; a call that fails or
//! does not finish within the timeout is a [`StoreError`] (`Timeout`, `Unavailable`, ...),
//! to which the caller applies its failure policy (fail open, fail closed) exactly as for a
//! Redis store. [`RlsClient`] implements tailwater-tower's
//! [`RemoteLimiter`](tailwater_tower::rate_limit::RemoteLimiter), so
//! `RemoteRateLimitLayer::new(client)` rate-limits a tower service by the RLS.
//!
//! ```no_run
//! use std::time::Duration;
//! use tailwater_rls::client::{Action, DescriptorSpec, RlsClient};
//! use tailwater_tower::rate_limit::{OnStoreError, RemoteRateLimitLayer};
//!
//! let per_key = DescriptorSpec::new(vec![Action::Header {
//!     name: "x-api-key".into(),
//!     key: "api_key".into(),
//!     skip_if_absent: false,
//! }])?;
//! let client = RlsClient::new("http://127.0.0.1:8081", "edge")?
//!     .timeout(Duration::from_millis(20))?
//!     .descriptor(per_key);
//! let layer = RemoteRateLimitLayer::new(client).on_store_error(OnStoreError::FailClosed);
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The channel is opened on the first call (inside the caller's tokio runtime) and
//! reconnects by itself; an unreachable service costs at most the timeout per call.

mod descriptor;
mod tower;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tailwater_core::rate::{DenyReason, RateDecision, StoreError};
use tonic::transport::{Channel, Endpoint};

pub use descriptor::{Action, DescriptorSpec, RequestParts, SpecError};

use crate::proto::{
    Code, DescriptorStatus, RateLimitDescriptor, RateLimitRequest, RateLimitResponse,
    RateLimitServiceClient,
};

/// The default per-call timeout: Envoy's `ratelimit` filter's default (20 ms).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);

/// A client of one rate limit service for one domain. Cheap to clone (clones share the
/// connection).
#[derive(Debug, Clone)]
pub struct RlsClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    domain: String,
    timeout: Duration,
    descriptors: Vec<DescriptorSpec>,
    channel: OnceLock<RateLimitServiceClient<Channel>>,
}

impl RlsClient {
    /// A client of the service at `address` (`http://host:port`, h2c) for `domain`, with
    /// the [`DEFAULT_TIMEOUT`] and no descriptors yet. Nothing is connected until the
    /// first call. Errors name `address` or `domain`.
    pub fn new(address: &str, domain: impl Into<String>) -> Result<Self, SpecError> {
        let domain = domain.into();
        let bad = |field: &str, reason: String| SpecError {
            field: field.to_owned(),
            reason,
        };
        if !address.starts_with("http://") {
            return Err(bad(
                "address",
                format!("`{address}`: give http://host:port (h2c)"),
            ));
        }
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|e| bad("address", format!("`{address}`: {e}")))?
            .tcp_nodelay(true);
        if domain.is_empty() || domain.len() > crate::service::MAX_TEXT {
            return Err(bad("domain", "must be 1 to 1024 bytes".into()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint: endpoint.connect_timeout(DEFAULT_TIMEOUT),
                domain,
                timeout: DEFAULT_TIMEOUT,
                descriptors: Vec::new(),
                channel: OnceLock::new(),
            }),
        })
    }

    fn edit(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(i) => i,
            Err(shared) => Inner {
                endpoint: shared.endpoint.clone(),
                domain: shared.domain.clone(),
                timeout: shared.timeout,
                descriptors: shared.descriptors.clone(),
                channel: OnceLock::new(),
            },
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The per-call timeout (connecting included); at most 60 s, above 0. Errors name
    /// `timeout`.
    pub fn timeout(self, timeout: Duration) -> Result<Self, SpecError> {
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err(SpecError {
                field: "timeout".into(),
                reason: "must be above 0 and at most 60s".into(),
            });
        }
        Ok(self.edit(|i| {
            i.timeout = timeout;
            i.endpoint = i.endpoint.clone().connect_timeout(timeout);
        }))
    }

    /// Adds a descriptor built for each request.
    pub fn descriptor(self, spec: DescriptorSpec) -> Self {
        self.edit(|i| i.descriptors.push(spec))
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// The per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The descriptors for `request` (those whose actions all found their value).
    pub fn descriptors_for(&self, request: &impl RequestParts) -> Vec<RateLimitDescriptor> {
        self.inner
            .descriptors
            .iter()
            .filter_map(|d| d.build(request))
            .collect()
    }

    /// Checks `request`: `None` when no descriptor applies (nothing to ask), else the
    /// service's decision or why there is none. Resolves within the timeout.
    pub fn check(
        &self,
        request: &impl RequestParts,
    ) -> Option<impl Future<Output = Result<RlsDecision, StoreError>> + Send + 'static> {
        let descriptors = self.descriptors_for(request);
        if descriptors.is_empty() {
            return None;
        }
        let this = self.clone();
        Some(async move { this.should_rate_limit(descriptors, 0).await })
    }

    /// One `ShouldRateLimit` call for `descriptors` (`hits_addend` 0 = 1), bounded by the
    /// timeout. Must run inside a tokio runtime.
    pub async fn should_rate_limit(
        &self,
        descriptors: Vec<RateLimitDescriptor>,
        hits_addend: u32,
    ) -> Result<RlsDecision, StoreError> {
        let i = &self.inner;
        let mut client = i
            .channel
            .get_or_init(|| RateLimitServiceClient::new(i.endpoint.connect_lazy()))
            .clone();
        let request = RateLimitRequest {
            domain: i.domain.clone(),
            descriptors,
            hits_addend,
        };
        match tokio::time::timeout(i.timeout, client.should_rate_limit(request)).await {
            Err(_) => Err(StoreError::Timeout(i.timeout)),
            Ok(Err(status)) => Err(status_error(&status)),
            Ok(Ok(response)) => RlsDecision::from_response(&response.into_inner()),
        }
    }
}

/// A gRPC status as a store error: the caller's failure policy applies to all but a
/// malformed request.
fn status_error(status: &tonic::Status) -> StoreError {
    use tonic::Code as C;
    let m = format!("rls: {:?}: {}", status.code(), status.message());
    match status.code() {
        C::DeadlineExceeded => StoreError::Unavailable(m),
        C::InvalidArgument => StoreError::InvalidRequest(m),
        C::Unavailable | C::Unknown | C::Cancelled | C::ResourceExhausted | C::Aborted => {
            StoreError::Unavailable(m)
        }
        _ => StoreError::Protocol(m),
    }
}

/// The limit a descriptor was checked against, as the service reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    /// The limit's name (`current_limit.name`; empty when unnamed).
    pub name: String,
    /// Requests per unit.
    pub requests_per_unit: u32,
    /// The unit's length.
    pub period: Duration,
    /// `limit_remaining`.
    pub remaining: u32,
    /// `duration_until_reset` (zero when not reported).
    pub reset: Duration,
}

/// The service's answer to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsDecision {
    /// `overall_code` is `OK`.
    pub allowed: bool,
    /// The status that decided: for a denial, the over-limit descriptor that resets last;
    /// when admitted, the limited descriptor with the fewest remaining. `None` when the
    /// service reported no limit.
    pub limit: Option<LimitStatus>,
}

/// When the service says `OVER_LIMIT` without a `duration_until_reset`.
const RETRY_WITHOUT_RESET: Duration = Duration::from_secs(1);

impl RlsDecision {
    /// Reads a response. An `overall_code` other than `OK` and `OVER_LIMIT` is a
    /// [`StoreError::Protocol`].
    pub fn from_response(r: &RateLimitResponse) -> Result<Self, StoreError> {
        let allowed = match Code::try_from(r.overall_code) {
            Ok(Code::Ok) => true,
            Ok(Code::OverLimit) => false,
            _ => {
                return Err(StoreError::Protocol(format!(
                    "rls: overall_code {}",
                    r.overall_code
                )));
            }
        };
        let limited = r.statuses.iter().filter_map(limit_status);
        let limit = if allowed {
            limited.min_by_key(|(_, l)| l.remaining)
        } else {
            limited
                .filter(|(code, _)| *code == Code::OverLimit as i32)
                .max_by_key(|(_, l)| l.reset)
        };
        Ok(Self {
            allowed,
            limit: limit.map(|(_, l)| l),
        })
    }

    /// As a core decision: `retry_after` of a denial is the limit's
    /// `duration_until_reset` (1 s when the service gave none).
    pub fn to_rate_decision(&self) -> RateDecision {
        let (limit, remaining, reset) = self.limit.as_ref().map_or((0, 0, Duration::ZERO), |l| {
            (
                l.requests_per_unit,
                l.remaining.min(l.requests_per_unit),
                l.reset,
            )
        });
        RateDecision {
            allowed: self.allowed,
            limit,
            remaining,
            reset_after: reset,
            retry_after: (!self.allowed).then(|| {
                if reset.is_zero() {
                    RETRY_WITHOUT_RESET
                } else {
                    reset
                }
            }),
            reason: (!self.allowed).then_some(DenyReason::RateExceeded),
            quota_index: 0,
        }
    }
}

fn limit_status(s: &DescriptorStatus) -> Option<(i32, LimitStatus)> {
    let l = s.current_limit.as_ref()?;
    let period = crate::service::unit_of_proto(l.unit)?.period();
    let reset = s.duration_until_reset.map_or(Duration::ZERO, |d| {
        Duration::new(
            u64::try_from(d.seconds).unwrap_or(0),
            u32::try_from(d.nanos).unwrap_or(0),
        )
    });
    Some((
        s.code,
        LimitStatus {
            name: l.name.clone(),
            requests_per_unit: l.requests_per_unit,
            period,
            remaining: s.limit_remaining,
            reset,
        },
    ))
}

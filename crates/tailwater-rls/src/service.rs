//! One `ShouldRateLimit` call, independent of the transport (gRPC and `/json` both call
//! [`RateLimiter::should_rate_limit`]).
//!
//! For each request descriptor: the hits are its own `hits_addend` when set (0 = check
//! without charging), else the request's `hits_addend` (0 = unset = 1). Its limit is its
//! `limit` override when set, else the configured rule it reaches. Rules named in another
//! matched rule's `replaces` are dropped (not evaluated, not charged). Then every limited
//! descriptor goes to the store in **one** batch: denied hits are never charged, and
//! nothing is charged unless the call is admitted. A call is `OVER_LIMIT` when any
//! descriptor is over its limit (shadow-mode ones excepted; quota-mode ones only when all
//! of them are over).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tailwater_core::rate::{BatchClass, BatchItem, Quota, RateDecision};
use tailwater_redis::DecisionSource;

use crate::config::{Config, Level, Node, Rule, Unit};
use crate::headers::{self, PolicyItem};
use crate::proto::envoy::r#type::v3::RateLimitUnit;
use crate::proto::{
    Code, DescriptorStatus, HeaderValue, ProtoUnit, RateLimit, RateLimitDescriptor,
    RateLimitRequest, RateLimitResponse,
};
use crate::stats::{RuleCounters, Stats};
use crate::store::Store;

/// The most descriptors one call may carry.
pub const MAX_DESCRIPTORS: usize = 64;
/// The most entries one descriptor may carry.
pub const MAX_ENTRIES: usize = 32;
/// The longest key or value (bytes), and the longest domain.
pub const MAX_TEXT: usize = 1024;

/// Why a call was not answered with a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RlsError {
    /// The request is malformed (gRPC `INVALID_ARGUMENT`, HTTP 400); the field is named.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The store failed and the policy is to fail closed (gRPC `UNAVAILABLE`, HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

/// The service: the running configuration, the store, the counters.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    config: Arc<ArcSwap<Config>>,
    store: Store,
    stats: Arc<Stats>,
}

/// What one descriptor resolved to.
struct Plan<'a> {
    limit: Limit<'a>,
    counters: Option<Arc<RuleCounters>>,
    /// Borrowed from the configuration unless built for this call (overrides and
    /// `detailed_metric` keys): no allocation per decision for a plain rule.
    policy_name: Cow<'a, str>,
    class: BatchClass,
    hits: u32,
    slot: Option<usize>,
}

enum Limit<'a> {
    None,
    Rule(&'a Rule),
    Override { rpu: u32, unit: Unit },
}

impl Limit<'_> {
    fn rpu_unit(&self) -> Option<(u32, Option<Unit>, Option<&str>)> {
        match self {
            Limit::None => None,
            Limit::Rule(r) => Some((r.requests_per_unit, r.unit, r.name.as_deref())),
            Limit::Override { rpu, unit } => Some((*rpu, Some(*unit), None)),
        }
    }

    fn unlimited(&self) -> bool {
        matches!(self, Limit::Rule(r) if r.unlimited)
    }
}

impl RateLimiter {
    /// A service over a (reloadable) configuration and a store.
    pub fn new(config: Arc<ArcSwap<Config>>, store: Store) -> Self {
        Self {
            config,
            store,
            stats: Arc::new(Stats::default()),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decides one call.
    pub async fn should_rate_limit(
        &self,
        req: &RateLimitRequest,
    ) -> Result<RateLimitResponse, RlsError> {
        let r = self.decide(req).await;
        let s = &self.stats;
        match &r {
            Ok(resp) if resp.overall_code == Code::OverLimit as i32 => {
                s.calls_over_limit.fetch_add(1, Ordering::Relaxed)
            }
            Ok(_) => s.calls_ok.fetch_add(1, Ordering::Relaxed),
            Err(RlsError::Invalid(_)) => s.calls_invalid.fetch_add(1, Ordering::Relaxed),
            Err(RlsError::Unavailable(_)) => s.calls_unavailable.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    async fn decide(&self, req: &RateLimitRequest) -> Result<RateLimitResponse, RlsError> {
        validate(req)?;
        let config = self.config.load();
        let domain = config.domains.get(&req.domain).map(|d| &d.descriptors);
        let request_hits = if req.hits_addend == 0 {
            1
        } else {
            req.hits_addend
        };

        let mut plans: Vec<Plan<'_>> = req
            .descriptors
            .iter()
            .map(|d| self.plan(&req.domain, domain, d, request_hits))
            .collect();
        apply_replaces(&mut plans);

        // One store item per limited descriptor; equal keys share a slot.
        let mut keys: Vec<String> = Vec::new();
        let mut items: Vec<BatchItem> = Vec::new();
        for (plan, d) in plans.iter_mut().zip(&req.descriptors) {
            let Some((rpu, Some(unit), _)) = plan.limit.rpu_unit() else {
                continue;
            };
            if plan.limit.unlimited() {
                continue;
            }
            let (quota, n) = match Quota::per_period(rpu, unit.period()) {
                Ok(q) => (q, plan.hits),
                // requests_per_unit 0 blocks: a check that can never be admitted (n above
                // the burst) and therefore never charges; a 0-hit check passes.
                Err(_) => match Quota::per_period(1, unit.period()) {
                    Ok(q) => (q, if plan.hits == 0 { 0 } else { u32::MAX }),
                    Err(_) => continue,
                },
            };
            let key = cache_key(&req.domain, domain, d, rpu, unit);
            let slot = match keys.iter().position(|k| *k == key) {
                Some(s) => s,
                None => {
                    keys.push(key);
                    keys.len() - 1
                }
            };
            plan.slot = Some(items.len());
            items.push(BatchItem {
                quota,
                n,
                class: plan.class,
                slot,
            });
        }

        let decided = if items.is_empty() {
            None
        } else {
            let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let d = self
                .store
                .decide(&req.domain, &key_refs, &items)
                .await
                .map_err(|e| RlsError::Unavailable(e.to_string()))?;
            if !matches!(d.source, DecisionSource::Redis | DecisionSource::Local) {
                self.stats.calls_fallback.fetch_add(1, Ordering::Relaxed);
            }
            Some(d)
        };

        let mut statuses = Vec::with_capacity(plans.len());
        let mut policy = Vec::new();
        for plan in &plans {
            let decision = plan
                .slot
                .and_then(|i| decided.as_ref().map(|d| d.decisions[i]));
            statuses.push(status(plan, decision.as_ref(), &mut policy));
        }
        let over = decided.as_ref().is_some_and(|d| !d.committed);
        let mut response = RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            ..Default::default()
        };
        if let Some((p, l)) = headers::render(&policy) {
            response.response_headers_to_add = vec![
                HeaderValue {
                    key: "RateLimit-Policy".into(),
                    value: p,
                    ..Default::default()
                },
                HeaderValue {
                    key: "RateLimit".into(),
                    value: l,
                    ..Default::default()
                },
            ];
        }
        Ok(response)
    }

    fn plan<'a>(
        &self,
        domain_name: &str,
        domain: Option<&'a Level>,
        d: &RateLimitDescriptor,
        request_hits: u32,
    ) -> Plan<'a> {
        let hits = match d.hits_addend {
            Some(h) => u32::try_from(h).unwrap_or(u32::MAX),
            None => request_hits,
        };
        let mut plan = Plan {
            limit: Limit::None,
            counters: None,
            policy_name: Cow::Borrowed(""),
            class: BatchClass::Enforce,
            hits,
            slot: None,
        };
        // A valid override bypasses the tree (envoyproxy/ratelimit: and shadow mode).
        if let Some(o) = &d.limit
            && let Some(unit) = override_unit(o.unit)
        {
            plan.limit = Limit::Override {
                rpu: o.requests_per_unit,
                unit,
            };
            let key = d.entries.first().map_or("", |e| e.key.as_str());
            plan.policy_name = Cow::Owned(format!("{domain_name}.{key}"));
            plan.counters = Some(self.stats.rule(&plan.policy_name));
            return plan;
        }
        let Some(node) = walk(domain, d) else {
            return plan;
        };
        let Some(rule) = &node.rule else {
            return plan;
        };
        let stat_key = if node.detailed_metric {
            Cow::Owned(detailed_key(domain_name, d))
        } else {
            Cow::Borrowed(node.stat_key.as_str())
        };
        plan.counters = Some(self.stats.rule(&stat_key));
        plan.policy_name = match &rule.name {
            Some(n) => Cow::Borrowed(n.as_str()),
            None => stat_key,
        };
        plan.class = if node.shadow_mode {
            BatchClass::Shadow
        } else if node.quota_mode {
            BatchClass::Quota
        } else {
            BatchClass::Enforce
        };
        plan.limit = Limit::Rule(rule);
        plan
    }
}

fn validate(req: &RateLimitRequest) -> Result<(), RlsError> {
    let bad = |m: String| Err(RlsError::Invalid(m));
    if req.domain.is_empty() {
        return bad("domain: rate limit domain must not be empty".into());
    }
    if req.domain.len() > MAX_TEXT {
        return bad(format!("domain: longer than {MAX_TEXT} bytes"));
    }
    if req.descriptors.is_empty() {
        return bad("descriptors: rate limit descriptor list must not be empty".into());
    }
    if req.descriptors.len() > MAX_DESCRIPTORS {
        return bad(format!("descriptors: more than {MAX_DESCRIPTORS}"));
    }
    for (i, d) in req.descriptors.iter().enumerate() {
        if d.entries.is_empty() {
            return bad(format!("descriptors[{i}].entries: must not be empty"));
        }
        if d.entries.len() > MAX_ENTRIES {
            return bad(format!("descriptors[{i}].entries: more than {MAX_ENTRIES}"));
        }
        for (j, e) in d.entries.iter().enumerate() {
            if e.key.is_empty() {
                return bad(format!(
                    "descriptors[{i}].entries[{j}].key: must not be empty"
                ));
            }
            if e.key.len() > MAX_TEXT || e.value.len() > MAX_TEXT {
                return bad(format!(
                    "descriptors[{i}].entries[{j}]: key or value longer than {MAX_TEXT} bytes"
                ));
            }
        }
    }
    Ok(())
}

/// The node the descriptor's last entry reaches.
fn walk<'a>(domain: Option<&'a Level>, d: &RateLimitDescriptor) -> Option<&'a Node> {
    let mut level = domain?;
    let mut node = None;
    for e in &d.entries {
        let n = level.lookup(&e.key, &e.value)?;
        level = &n.descriptors;
        node = Some(n);
    }
    node
}

/// A descriptor override's `envoy.type.v3.RateLimitUnit` as a [`Unit`] (`UNKNOWN` and codes
/// that enum lacks, such as the response's `WEEK`, → `None`).
fn override_unit(unit: i32) -> Option<Unit> {
    RateLimitUnit::try_from(unit)
        .ok()
        .and_then(|u| unit_of_proto(u as i32))
}

/// `RateLimitResponse.RateLimit.Unit` (whose codes `envoy.type.v3.RateLimitUnit` shares,
/// `WEEK` aside) as a [`Unit`]; `UNKNOWN` or an unknown code → `None`. The inverse of
/// [`proto_unit`].
pub(crate) fn unit_of_proto(code: i32) -> Option<Unit> {
    Some(match ProtoUnit::try_from(code).ok()? {
        ProtoUnit::Unknown => return None,
        ProtoUnit::Second => Unit::Second,
        ProtoUnit::Minute => Unit::Minute,
        ProtoUnit::Hour => Unit::Hour,
        ProtoUnit::Day => Unit::Day,
        ProtoUnit::Week => Unit::Week,
        ProtoUnit::Month => Unit::Month,
        ProtoUnit::Year => Unit::Year,
    })
}

fn proto_unit(unit: Unit) -> ProtoUnit {
    match unit {
        Unit::Second => ProtoUnit::Second,
        Unit::Minute => ProtoUnit::Minute,
        Unit::Hour => ProtoUnit::Hour,
        Unit::Day => ProtoUnit::Day,
        Unit::Week => ProtoUnit::Week,
        Unit::Month => ProtoUnit::Month,
        Unit::Year => ProtoUnit::Year,
    }
}

/// Drops every matched rule whose name another matched rule `replaces`.
fn apply_replaces(plans: &mut [Plan<'_>]) {
    let replaced: Vec<&str> = plans
        .iter()
        .filter_map(|p| match p.limit {
            Limit::Rule(r) => Some(r.replaces.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    if replaced.is_empty() {
        return;
    }
    let replaced: Vec<String> = replaced.into_iter().map(str::to_owned).collect();
    for p in plans.iter_mut() {
        if let Limit::Rule(r) = p.limit
            && r.name.as_ref().is_some_and(|n| replaced.contains(n))
        {
            p.limit = Limit::None;
            p.counters = None;
        }
    }
}

/// The counter's key: the domain and the request's entries (a `share_threshold` wildcard
/// contributes its pattern instead of the value), and the limit, length-prefixed so that
/// no two descriptors can collide.
fn cache_key(
    domain_name: &str,
    domain: Option<&Level>,
    d: &RateLimitDescriptor,
    rpu: u32,
    unit: Unit,
) -> String {
    let len = |s: &mut String, n: usize| headers::push_u64(s, n as u64);
    let mut s = String::with_capacity(48 + domain_name.len());
    len(&mut s, domain_name.len());
    s.push(':');
    s.push_str(domain_name);
    let mut level = if d.limit.is_some() { None } else { domain };
    for e in &d.entries {
        let node = level.and_then(|l| l.lookup(&e.key, &e.value));
        let value = match node {
            Some(n) if n.share_threshold => n.wildcard.as_deref().unwrap_or(&e.value),
            _ => e.value.as_str(),
        };
        s.push('|');
        len(&mut s, e.key.len());
        s.push(':');
        s.push_str(&e.key);
        len(&mut s, value.len());
        s.push(':');
        s.push_str(value);
        level = node.map(|n| &n.descriptors);
    }
    s.push('#');
    headers::push_u64(&mut s, u64::from(rpu));
    s.push('/');
    s.push_str(unit.as_str());
    s
}

/// `domain.k1_v1.k2_v2`: the stat key of a `detailed_metric` rule.
fn detailed_key(domain_name: &str, d: &RateLimitDescriptor) -> String {
    let mut s = domain_name.to_owned();
    for e in &d.entries {
        s.push('.');
        s.push_str(&e.key);
        if !e.value.is_empty() {
            s.push('_');
            s.push_str(&e.value);
        }
    }
    s
}

fn status<'p>(
    plan: &'p Plan<'_>,
    decision: Option<&RateDecision>,
    policy: &mut Vec<PolicyItem<'p>>,
) -> DescriptorStatus {
    let Some((rpu, unit, name)) = plan.limit.rpu_unit() else {
        return DescriptorStatus {
            code: Code::Ok as i32,
            ..Default::default()
        };
    };
    let counters = plan.counters.as_deref();
    let hits = u64::from(plan.hits);
    if let Some(c) = counters {
        c.total_hits.fetch_add(hits, Ordering::Relaxed);
    }
    if plan.limit.unlimited() {
        if let Some(c) = counters {
            c.within_limit.fetch_add(hits, Ordering::Relaxed);
        }
        return DescriptorStatus {
            code: Code::Ok as i32,
            limit_remaining: u32::MAX,
            ..Default::default()
        };
    }
    let current_limit = Some(RateLimit {
        name: name.unwrap_or_default().to_owned(),
        requests_per_unit: rpu,
        unit: unit.map_or(ProtoUnit::Unknown, proto_unit) as i32,
    });
    let Some(d) = decision else {
        return DescriptorStatus {
            code: Code::Ok as i32,
            current_limit,
            ..Default::default()
        };
    };
    let blocked = rpu == 0;
    let remaining = if blocked { 0 } else { d.remaining };
    let reset = if blocked {
        unit.map_or(Duration::ZERO, Unit::period)
    } else {
        d.reset_after
    };
    let shadow = plan.class == BatchClass::Shadow;
    if let Some(c) = counters {
        if d.allowed {
            c.within_limit.fetch_add(hits, Ordering::Relaxed);
            let used = rpu.saturating_sub(remaining);
            if hits > 0 && u64::from(used) * 5 > u64::from(rpu) * 4 {
                c.near_limit.fetch_add(hits, Ordering::Relaxed);
            }
        } else {
            c.over_limit.fetch_add(hits, Ordering::Relaxed);
            if shadow {
                c.shadow_mode.fetch_add(hits, Ordering::Relaxed);
            }
        }
    }
    policy.push(PolicyItem {
        name: &plan.policy_name,
        quota: rpu,
        window_secs: unit.map_or(0, |u| u.period().as_secs()),
        remaining,
        reset_secs: ceil_secs(reset),
    });
    DescriptorStatus {
        code: if d.allowed || shadow {
            Code::Ok
        } else {
            Code::OverLimit
        } as i32,
        current_limit,
        limit_remaining: remaining,
        duration_until_reset: Some(prost_types::Duration {
            seconds: i64::try_from(reset.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(reset.subsec_nanos()).unwrap_or(0),
        }),
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

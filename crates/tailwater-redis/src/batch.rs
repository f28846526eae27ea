//! The atomic batch path: several keys (each with its own quota and hit count) decided in
//! one script, all charged or none. This is what one Envoy RLS call needs.

use tailwater_core::ConfigError;
use tailwater_core::rate::{BatchItem, RateDecision, step_batch};

use crate::atomic::{DecisionSource, RedisRateStore};
use crate::call;
use crate::error::{BackendError, RedisStoreError};
use crate::group;
use crate::policy::{FailurePolicy, open_decision};
use crate::script;
use crate::stats::inc;

/// The most items one batch may hold (a bound on the script's arguments).
pub const MAX_BATCH_ITEMS: usize = 256;

/// The decisions of one batch and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBatch {
    /// One decision per item, as [`step_batch`] defines them.
    pub decisions: Vec<RateDecision>,
    /// Whether the batch was admitted (its admitted items charged).
    pub committed: bool,
    /// Who decided.
    pub source: DecisionSource,
}

impl RedisRateStore {
    /// Decides `items` together, atomically, in one script call: `keys[s]` is the key of
    /// slot `s` (each item names its slot; items of one slot must have the same quota).
    /// The semantics are [`step_batch`]'s: denied items are never charged, and nothing is
    /// charged unless the batch is admitted. `now` is Redis `TIME`.
    ///
    /// When Redis does not answer in time the [`FailurePolicy`] decides: `FailOpen`
    /// admits every item (remaining 0), `Degrade` runs the same batch on the local
    /// `limit / N` limiter, `FailClosed` returns [`RedisStoreError::Unavailable`].
    ///
    /// The keys of a batch are in different hash slots: on Redis Cluster use
    /// [`check_batch_tagged`](Self::check_batch_tagged).
    ///
    /// Errors: [`RedisStoreError::Config`] for an empty or too long batch
    /// ([`MAX_BATCH_ITEMS`]), a slot out of range, or a quota too long for exact Lua
    /// arithmetic.
    pub async fn check_batch(
        &self,
        keys: &[&str],
        items: &[BatchItem],
    ) -> Result<CheckedBatch, RedisStoreError> {
        self.batch(None, keys, items).await
    }

    /// [`check_batch`](Self::check_batch) with every key of the batch stored under one
    /// Redis Cluster hash tag `tag` ([`KeyLayout::tagged_base`](crate::KeyLayout::tagged_base)):
    /// all keys then live in one slot, so the batch stays one atomic script **on Redis
    /// Cluster too**. The price is locality: every key sharing `tag` lives on one master.
    /// The Envoy RLS uses the call's domain as the tag (one call has one domain).
    pub async fn check_batch_tagged(
        &self,
        tag: &str,
        keys: &[&str],
        items: &[BatchItem],
    ) -> Result<CheckedBatch, RedisStoreError> {
        self.batch(Some(tag), keys, items).await
    }

    async fn batch(
        &self,
        tag: Option<&str>,
        keys: &[&str],
        items: &[BatchItem],
    ) -> Result<CheckedBatch, RedisStoreError> {
        // Long quotas (a `year`) are rounded to the scripts' grain; the decisions are
        // computed for the rounded quotas, exactly as the script runs them.
        let rounded;
        let items = if items
            .iter()
            .all(|i| i.quota.tolerance_nanos() <= call::EXACT_REDIS_TOLERANCE_NANOS)
        {
            items
        } else {
            rounded = items
                .iter()
                .map(|i| {
                    Ok(BatchItem {
                        quota: call::redis_quota(&i.quota)?,
                        ..*i
                    })
                })
                .collect::<Result<Vec<BatchItem>, ConfigError>>()?;
            &rounded[..]
        };
        let redis_keys = self.batch_keys(tag, keys, items)?;
        let inner = self.inner();
        let sender = if tag.is_none() && inner.group_commit {
            inner.group.sender(self.inner_arc())
        } else {
            None
        };
        let parsed = match sender {
            Some(tx) => group::submit(inner, tx, redis_keys, items)
                .await
                .map(|a| a.outcome(items)),
            None => call::run(
                &inner.conn,
                &inner.gate,
                &inner.stats,
                &script::BATCH,
                &redis_keys,
                &batch_args(items),
                inner.conn.options.call_timeout,
            )
            .await
            .and_then(|r| parse_batch(&r, keys.len(), items)),
        };
        match parsed {
            Ok((outcome, script_committed)) => {
                if outcome.committed {
                    inc(&inner.stats.redis_allowed);
                } else {
                    inc(&inner.stats.redis_denied);
                }
                if script_committed != outcome.committed {
                    inc(&inner.stats.mismatches);
                }
                Ok(CheckedBatch {
                    decisions: outcome.decisions,
                    committed: outcome.committed,
                    source: DecisionSource::Redis,
                })
            }
            Err(cause) => self.batch_fallback(tag, keys, items, cause),
        }
    }

    /// Checks the batch and returns the Redis key of each slot.
    fn batch_keys(
        &self,
        tag: Option<&str>,
        keys: &[&str],
        items: &[BatchItem],
    ) -> Result<Vec<String>, RedisStoreError> {
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS || keys.len() > MAX_BATCH_ITEMS {
            return Err(ConfigError::new(
                "items",
                format!("between 1 and {MAX_BATCH_ITEMS} items per batch"),
            )
            .into());
        }
        let mut slot_quota = vec![None; keys.len()];
        for item in items {
            let Some(q) = slot_quota.get_mut(item.slot) else {
                return Err(ConfigError::new(
                    "slot",
                    format!("slot {} out of range of {} keys", item.slot, keys.len()),
                )
                .into());
            };
            q.get_or_insert(item.quota);
            call::quota_args(std::slice::from_ref(&item.quota))?;
        }
        let layout = self.layout();
        Ok(keys
            .iter()
            .zip(&slot_quota)
            .map(|(k, q)| match (q, tag) {
                (Some(q), None) => layout.quota_key(k, q),
                (Some(q), Some(t)) => layout.tagged_quota_key(t, k, q),
                // A slot no item uses: its state is read and never written.
                (None, None) => layout.base(k),
                (None, Some(t)) => layout.tagged_base(t, k),
            })
            .collect())
    }

    fn batch_fallback(
        &self,
        tag: Option<&str>,
        keys: &[&str],
        items: &[BatchItem],
        cause: BackendError,
    ) -> Result<CheckedBatch, RedisStoreError> {
        let inner = self.inner();
        let s = &inner.stats;
        match inner.policy {
            FailurePolicy::FailOpen => {
                inc(&s.fallback_open);
                Ok(CheckedBatch {
                    decisions: items
                        .iter()
                        .map(|i| open_decision(std::slice::from_ref(&i.quota)))
                        .collect(),
                    committed: true,
                    source: DecisionSource::FailOpen,
                })
            }
            FailurePolicy::Degrade { .. } => {
                inc(&s.fallback_degraded);
                let (decisions, committed) = match &inner.fallback {
                    Some(f) => {
                        let bases: Vec<String> = keys
                            .iter()
                            .map(|k| match tag {
                                None => self.layout().base(k),
                                Some(t) => self.layout().tagged_base(t, k),
                            })
                            .collect();
                        f.check_batch(&bases, items)
                    }
                    None => (
                        items
                            .iter()
                            .map(|i| open_decision(std::slice::from_ref(&i.quota)))
                            .collect(),
                        true,
                    ),
                };
                Ok(CheckedBatch {
                    decisions,
                    committed,
                    source: DecisionSource::Degraded,
                })
            }
            FailurePolicy::FailClosed => {
                inc(&s.fallback_closed);
                Err(RedisStoreError::Unavailable {
                    cause,
                    retry_after: inner.conn.options.retry_backoff,
                })
            }
        }
    }
}

/// The arguments of the [`script::BATCH`] script (quotas already checked).
fn batch_args(items: &[BatchItem]) -> Vec<String> {
    let mut args = Vec::with_capacity(2 + 6 * items.len());
    args.push(String::new());
    args.push(String::new());
    for item in items {
        args.push((item.slot + 1).to_string());
        args.push(item.quota.emission_nanos().to_string());
        args.push(item.quota.tolerance_nanos().to_string());
        args.push(item.quota.burst().to_string());
        args.push(item.n.to_string());
        args.push(item.class.code().to_string());
    }
    args
}

fn parse_batch(
    reply: &[redis::Value],
    slots: usize,
    items: &[BatchItem],
) -> Result<(tailwater_core::rate::BatchOutcome, bool), BackendError> {
    if reply.len() != slots + 2 {
        return Err(BackendError::Protocol(format!(
            "batch script returned {} values for {slots} keys",
            reply.len()
        )));
    }
    let script_committed = call::int(reply.first())? == 1;
    let now = call::nanos(reply.get(1))?;
    let mut tats = reply[2..]
        .iter()
        .map(|v| call::nanos(Some(v)))
        .collect::<Result<Vec<u64>, _>>()?;
    Ok((step_batch(items, now, &mut tats), script_committed))
}

//! The admission decision and the release: the hot path, and the algorithm update behind it.

use std::sync::TryLockError;
use std::time::Duration;

use crate::algorithm::{Outcome, Sample};
use crate::clock::Clock;
use crate::criticality::Criticality;
use crate::sync::Ordering;

use super::permit::{NOT_SAMPLED, Terms, nanos};
use super::reject::{RejectReason, Rejection};
use super::word::{IN_FLIGHT, MAX_LIMIT, SEQ, in_flight_of, seq_of, waiters_of};
use super::{PartitionId, Request, Shared};

/// At most this many carried-over drops are applied in one update (a burst of drops while
/// another thread held the algorithm); beyond it the limit is at its floor anyway.
const MAX_CARRIED_DROPS: usize = 64;

/// What an admission decided about a new permit: the few values both paths of
/// [`try_admit`](Shared::try_admit) produce, merged in registers.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    /// Permits in flight at the grant, itself included (0 for a bypass permit).
    in_flight: u32,
    /// The limit at the grant (0 for a bypass permit).
    limit: u32,
    /// Whether the permit measures its RTT: it reads the clock now.
    sampled: bool,
}

/// `Admitted::pack`: the in-flight count in bits 0..24, the limit in bits 24..48, `sampled`
/// in bit 48; a rejection is this bit and its reason's index.
const REJECTED: u64 = 1 << 63;

impl Admitted {
    /// The out-of-line path's answer in one register.
    #[inline(always)]
    fn pack(answer: Result<Admitted, RejectReason>) -> u64 {
        match answer {
            // Both counts fit in 24 bits (`MAX_LIMIT`).
            Ok(a) => u64::from(a.in_flight) | u64::from(a.limit) << 24 | u64::from(a.sampled) << 48,
            Err(reason) => REJECTED | reason.index() as u64,
        }
    }

    /// The inverse of [`pack`](Self::pack).
    #[inline(always)]
    fn unpack(packed: u64) -> Result<Admitted, RejectReason> {
        if packed & REJECTED != 0 {
            return Err(RejectReason::ALL[(packed & 0xff) as usize]);
        }
        Ok(Admitted {
            in_flight: (packed & IN_FLIGHT) as u32,
            limit: ((packed >> 24) & IN_FLIGHT) as u32,
            sampled: packed & (1 << 48) != 0,
        })
    }
}

impl<C: Clock> Shared<C> {
    /// Admission without waiting: the terms of a new permit, or why not. Counts the
    /// admission (not the rejection: the caller may still queue).
    ///
    /// The common case is inlined into the caller: a limited request, no partitions, and
    /// room under its tier's reservation at the first compare-and-swap. Everything else
    /// (bypass, partitions, a full limiter, borrowing above a tier's reservation, a lost
    /// race) takes [`try_admit_slow`](Self::try_admit_slow), which decides from scratch.
    ///
    /// Both paths hand back an [`Admitted`] and the permit's terms are built from it after
    /// they meet, so the inlined path keeps everything in registers. (When the out-of-line
    /// path returned the whole terms, they came back through a stack slot, which the inlined
    /// path then wrote too and read back: with the permit's own spills, 18 writes to memory
    /// per admission and release in cachegrind, 4 now. On the
    /// AMD EPYC where this was measured, that loop's time swung between about 6 and 10 ns
    /// with the machine's state, where tokio's semaphore moved much less; see the README.)
    #[inline(always)]
    pub(super) fn try_admit(&self, request: Request) -> Result<Terms, RejectReason> {
        let admitted = match self.try_admit_fast(request) {
            Some(admitted) => admitted,
            None => Admitted::unpack(self.try_admit_slow(
                request.tier,
                request.partition,
                request.bypass,
            ))?,
        };
        Ok(Terms {
            start: if admitted.sampled {
                self.sampled_start()
            } else {
                NOT_SAMPLED
            },
            in_flight: admitted.in_flight,
            limit: admitted.limit,
            tier: request.tier,
            partition: if request.bypass {
                None
            } else {
                request.partition
            },
            bypass: request.bypass,
        })
    }

    /// The inlined part of [`try_admit`](Self::try_admit): `None` sends the request to the
    /// out-of-line path.
    #[inline(always)]
    fn try_admit_fast(&self, request: Request) -> Option<Admitted> {
        if request.bypass || self.partitions.is_some() {
            return None;
        }
        let limit = self.read_mostly.limit.load(Ordering::Acquire);
        let reserved = self
            .tiers
            .as_ref()
            .map_or(limit, |t| t.capacity(request.tier, limit));
        let word = self.word.load(Ordering::Acquire);
        if in_flight_of(word) >= reserved
            || self
                .word
                .compare_exchange_weak(
                    word,
                    word.wrapping_add(SEQ + 1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return None;
        }
        let in_flight = in_flight_of(word) + 1;
        if in_flight > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(in_flight, Ordering::Relaxed);
        }
        self.counters.admitted(request.tier);
        let mask = self.read_mostly.sample_mask.load(Ordering::Relaxed);
        // Both fit in 24 bits (`MAX_LIMIT`).
        Some(Admitted {
            in_flight: in_flight as u32,
            limit: limit as u32,
            sampled: seq_of(word) & mask == 0,
        })
    }

    /// The clock read of a permit that measures its RTT, in nanoseconds (out of line: at
    /// high rates only one permit in up to 256 takes it).
    #[inline(never)]
    fn sampled_start(&self) -> u64 {
        nanos(self.clock.now())
    }

    /// [`try_admit`](Self::try_admit) off its fast path: every case, decided from scratch.
    /// The request comes in registers, field by field, and the answer goes back in one
    /// ([`Admitted::pack`]): passed or returned as a struct, either went through a stack
    /// slot, written on every admission by the inlined path that shares it.
    #[inline(never)]
    fn try_admit_slow(
        &self,
        tier: Criticality,
        partition: Option<PartitionId>,
        bypass: bool,
    ) -> u64 {
        if bypass {
            self.counters.bypassed();
            // A bypass permit is not limited, but measures its RTT.
            return Admitted::pack(Ok(Admitted {
                in_flight: 0,
                limit: 0,
                sampled: true,
            }));
        }
        Admitted::pack(
            self.admit(tier, partition)
                .map(|(in_flight, sampled, limit)| {
                    self.counters.admitted(tier);
                    Admitted {
                        in_flight: in_flight as u32,
                        limit: limit as u32,
                        sampled,
                    }
                }),
        )
    }

    /// Counts a rejection and describes it.
    #[cold]
    pub(super) fn reject(&self, reason: RejectReason, tier: Criticality) -> Rejection {
        self.counters.rejected(reason, tier);
        self.rejection(reason, tier)
    }

    pub(super) fn rejection(&self, reason: RejectReason, tier: Criticality) -> Rejection {
        Rejection {
            reason,
            tier,
            limit: self.read_mostly.limit.load(Ordering::Relaxed),
            in_flight: in_flight_of(self.word.load(Ordering::Relaxed)),
            retry_after: self.retry_after,
        }
    }

    /// The admission decision. On success the in-flight count has been incremented; returns
    /// the new count, whether this admission measures its RTT, and the limit it was admitted
    /// under.
    #[inline]
    pub(super) fn admit(
        &self,
        tier: Criticality,
        partition: Option<PartitionId>,
    ) -> Result<(usize, bool, usize), RejectReason> {
        let limit = self.read_mostly.limit.load(Ordering::Acquire);
        let mask = self.read_mostly.sample_mask.load(Ordering::Relaxed);
        let reserved = self.tiers.map_or(limit, |t| t.capacity(tier, limit));
        let full = |cur: usize| {
            if cur >= limit {
                RejectReason::LimitReached
            } else {
                RejectReason::TierThreshold
            }
        };
        let admitted = match &self.partitions {
            None => {
                let mut cap = reserved;
                let mut borrowing = false;
                let mut word = self.word.load(Ordering::Acquire);
                loop {
                    let cur = in_flight_of(word);
                    if cur >= cap {
                        if !borrowing && cur < limit {
                            // Above the tier's reservation: borrow what no more important
                            // tier contends for (off the fast path).
                            borrowing = true;
                            cap = self.borrowable(tier, limit, reserved);
                            continue;
                        }
                        self.contended(tier, limit);
                        return Err(full(cur));
                    }
                    match self.word.compare_exchange_weak(
                        word,
                        word.wrapping_add(SEQ + 1),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break (cur + 1, seq_of(word) & mask == 0, limit),
                        Err(actual) => word = actual,
                    }
                }
            }
            Some(parts) => {
                self.admit_partitioned(parts, (tier, partition), (limit, reserved, mask))?
            }
        };
        if admitted.0 > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(admitted.0, Ordering::Relaxed);
        }
        Ok(admitted)
    }

    /// The most in flight at which a request of `tier`, over its `reserved` capacity, is
    /// still admitted at `limit` (`reserved` without tiers).
    ///
    /// A tier leaves free the headroom that refusals of more important requests built up
    /// ([`Contention`](super::contention::Contention)). With a queue, a request that waits
    /// is not refused (the queue hands it the next free slot, and nothing borrows while it
    /// waits); only one the queue turns away (full, displaced, timed out) builds headroom.
    #[cold]
    #[inline(never)]
    pub(super) fn borrowable(&self, tier: Criticality, limit: usize, reserved: usize) -> usize {
        match (&self.queue, &self.contention) {
            (Some(queue), Some(c)) => {
                if queue.waiting_from.load(Ordering::Acquire) >= tier.index() {
                    c.capacity(tier, limit, self.clock.now())
                } else {
                    reserved
                }
            }
            (None, Some(c)) => c.capacity(tier, limit, self.clock.now()),
            (_, None) => reserved,
        }
    }

    /// A request of `tier` was refused admission: without a queue, the less important tiers
    /// leave it more headroom (with one, it waits, and its wait holds them back).
    #[cold]
    #[inline(never)]
    pub(super) fn contended(&self, tier: Criticality, limit: usize) {
        if let (None, Some(c)) = (&self.queue, &self.contention)
            && tier != Criticality::Sheddable
        {
            c.refused(tier, limit, self.clock.now());
        }
    }

    /// The queue turned away a request of `tier` (full, displaced, timed out): the less
    /// important tiers leave more headroom.
    #[cold]
    #[inline(never)]
    pub(super) fn turned_away(&self, tier: Criticality) {
        if let Some(c) = &self.contention
            && tier != Criticality::Sheddable
        {
            let limit = self.read_mostly.limit.load(Ordering::Acquire);
            c.refused(tier, limit, self.clock.now());
        }
    }

    /// Releases one permit and feeds its sample to the algorithm. `sample`: the time of the
    /// report and the measured RTT (`None` for a drop that measured none), if it is fed.
    /// Inlined: an unsampled success is a counter, a check and one decrement.
    #[inline(always)]
    pub(crate) fn release(
        &self,
        (in_flight_at_acquire, limit_at_acquire): (usize, usize),
        partition: Option<PartitionId>,
        outcome: Outcome,
        sample: Option<(Duration, Option<Duration>)>,
    ) {
        self.counters.outcome(outcome);
        if let Some((now, rtt)) = sample
            && outcome != Outcome::Ignored
        {
            self.feed(now, rtt, (in_flight_at_acquire, limit_at_acquire), outcome);
        }
        if let (Some(parts), Some(PartitionId(i))) = (&self.partitions, partition) {
            parts.list[i as usize]
                .in_flight
                .fetch_sub(1, Ordering::AcqRel);
        }
        let before = self.word.fetch_sub(1, Ordering::AcqRel);
        if waiters_of(before) > 0 {
            self.grant_waiters();
        }
    }

    fn feed(
        &self,
        now: Duration,
        rtt: Option<Duration>,
        (in_flight, limit): (usize, usize),
        outcome: Outcome,
    ) {
        let is_drop = outcome == Outcome::Dropped;
        let mut guard = match self.engine.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if is_drop {
                    self.carried_drops.fetch_add(1, Ordering::AcqRel);
                } else {
                    self.counters.skipped_update();
                }
                return;
            }
        };
        let engine = &mut *guard;
        let rtt = match rtt {
            Some(rtt) => {
                if !is_drop {
                    engine.last_rtt = rtt;
                }
                rtt
            }
            None => engine.last_rtt,
        };
        let sample = Sample {
            now,
            rtt,
            in_flight,
            limit,
            outcome,
            // Drops are never sampled away; a success stands for the permits skipped since.
            weight: if is_drop { 1 } else { engine.sampler.weight() },
            refused: self.counters.refused(),
        };
        let mut limit = engine.algorithm.update(&sample);
        let carried = match self.carried_drops.load(Ordering::Acquire) {
            0 => 0,
            _ => self.carried_drops.swap(0, Ordering::AcqRel),
        };
        for _ in 0..carried.min(MAX_CARRIED_DROPS) {
            limit = engine.algorithm.update(&Sample {
                outcome: Outcome::Dropped,
                ..sample
            });
        }
        if let Some(shift) = engine.sampler.on_sample(now) {
            self.read_mostly
                .sample_mask
                .store((1 << shift) - 1, Ordering::Relaxed);
        }
        let limit = limit.clamp(1, MAX_LIMIT);
        let old = self.read_mostly.limit.load(Ordering::Relaxed);
        if limit != old {
            // Only this thread (holding the engine) writes the limit.
            self.read_mostly.limit.store(limit, Ordering::Release);
        }
        drop(guard);
        if limit > old {
            self.grant_waiters();
        }
    }
}

//! The window rules of [`Headroom`]: the latency rule, slow start's window, the floors.

use super::super::window_stats::Closed;
use super::*;

impl Headroom {
    /// Records the guard's recent completion rate and says whether it fell below
    /// [`RATE_DROP`] of the highest recorded over the baseline horizon. A slowdown or a lost
    /// worker lowers the rate the service completes at; a standing queue in front of an
    /// unchanged service does not, and there the guard's `F` is only the in-flight count
    /// itself (Little's law at a binding limit), so guarding would ratchet the limit up.
    pub(super) fn rate_fell(&mut self) -> bool {
        let Some(now) = self.guard.mean_rate() else {
            self.rate_share = 0.0;
            return true;
        };
        let best = self.history.record_rate(now);
        self.rate_share = best.map_or(1.0, |best| now / best);
        best.is_some_and(|best| now < RATE_DROP * best)
    }

    /// Slow start's proposal for one closed window (the growth itself is per sample, in
    /// [`update`](LimitAlgorithm::update)).
    ///
    /// - A window in which the limit grew by more than [`SLOW_START_YOUNG`] holds mostly young
    ///   requests, the fast ones of which completed first: its mean is biased low, so it
    ///   never enters the baseline, not even as the first (session 15): the next pressed
    ///   window, at 2.2-2.5 times that mean, read as a queue and ended slow start at a
    ///   fraction of a 500-worker pool (`no-harm logn1 w500 300ms 0.5x`, seed 4: 0.51 %
    ///   shed while the limit climbed back).
    /// - A window that queued while it pressed on the limit (its samples saw at least half
    ///   the limit it opened with in flight: a sample's in-flight count is that of its
    ///   admission, a round trip ago) pauses the growth; any other window resumes it. A burst
    ///   drains; sustained demand queues on.
    /// - After [`SLOW_START_QUEUED`] such windows in a row slow start ends (after
    ///   [`SLOW_START_QUEUED_YOUNG`] while the baseline holds fewer than [`UNDO_MEANS`]
    ///   window means of a dispersed service, by the windows' averaged CV or this one's:
    ///   its first windows held only the fast requests, and a window at its real mean read
    ///   as a queue; 48 workers at 300 ms, lognormal CV 2, 0.9× load, drained to 20 at
    ///   0.2 s and shed 2.44 %; at 30 ms and 0.5× load the average, seeded by a first
    ///   window's 0.66, was still under 0.8, and the cell shed 0.90 %), and the limit
    ///   drains to the Little's-law estimate (BBR's drain after startup: the in-flight count
    ///   the service completed at its best rate), at most halving it (TCP's halving on loss).
    pub(super) fn slow_start_window(
        &mut self,
        c: &Closed,
        before: f64,
        queued: bool,
        mean: Option<f64>,
    ) -> f64 {
        let young = before > self.opened * SLOW_START_YOUNG;
        let pressed = c.max_in_flight.saturating_mul(2) as f64 >= self.opened.floor();
        if self.first_rate.is_none() {
            self.first_rate = c.rate;
        }
        if let Some(m) = c.mean {
            self.start_mean = self.start_mean.min(m);
        }
        if let Some(mean) = mean
            && !young
        {
            self.history.remember(mean);
            self.calm |= !pressed;
        }
        // BBR's full-bandwidth test: while the limit grows, the completion rate must grow by
        // a quarter within three rounds, else more in flight only queues. A round is a mean
        // RTT, not a window (BBR counts round trips): windows of 25 samples last 40-70 ms
        // on a 500-worker, 300 ms pool, whose completions answer a rise of the limit a round
        // trip later, so three flat windows in a row were one round's noise and ended slow
        // start at a tenth of the pool (the suite's 500-worker × 300 ms cells shed up to
        // 1.16 % at 0.5× load while the limit climbed back).
        let mut plateau = false;
        if let Some(rate) = c.rate.filter(|_| pressed && young) {
            if rate >= SLOW_START_RATE_GROWTH * self.slow_start_rate {
                self.slow_start_rate = rate;
                self.flat_windows = 0;
                self.flat_at = c.now;
            } else if c.now.saturating_sub(self.flat_at) >= c.mean_duration() {
                self.flat_windows += 1;
                self.flat_at = c.now;
                plateau = self.flat_windows >= SLOW_START_QUEUED_PLATEAU;
            }
        }
        // The demand, not the limit, caps the in-flight count (a client's connections, or a
        // healthy service's own load): no success saw half the limit in flight, so the limit
        // stopped growing. Slow start ends without a drain; the limit did not bind.
        if before <= self.opened && !pressed {
            self.idle_windows += 1;
        } else {
            self.idle_windows = 0;
        }
        if self.idle_windows >= SLOW_START_IDLE {
            self.slow_start = false;
            if self.overloaded_from_start(c, true) {
                return self.restart_drain(c.now, before);
            }
            return before;
        }
        if !(plateau || pressed && queued) {
            self.queued_windows = 0;
            self.paused = false;
            return before;
        }
        self.queued_windows += 1;
        self.paused = true;
        let need =
            if self.history.len() < UNDO_MEANS && self.cv.max(c.cv.unwrap_or(0.0)) >= UNDO_MAX_CV {
                SLOW_START_QUEUED_YOUNG
            } else {
                SLOW_START_QUEUED
            };
        if self.queued_windows < need && !plateau {
            return before;
        }
        self.slow_start = false;
        if self.overloaded_from_start(c, false) {
            return self.restart_drain(c.now, before);
        }
        // A completion rate below its recent best is a slower service, not a queue: the
        // limit stays and the guard takes over (rule 3).
        // Both this window's rate and the filter's mean: one window's rate is noisy, and a
        // hold at an overshoot through a standing queue would let the guard ratchet.
        if let (Some(now), Some(mean), Some(best)) =
            (c.rate, self.guard.mean_rate(), self.guard.max_rate())
            && now.max(mean) < RATE_DROP * best
        {
            return before;
        }
        match self.guard.estimate() {
            // After a rate plateau the estimate is the knee itself; after a queued window
            // the drain is at most to a quarter.
            Some(f) if f.is_finite() => {
                let floor = if plateau { 0.0 } else { before / 4.0 };
                before.min((f * self.sustained_tolerance).max(floor))
            }
            _ => before * self.backoff,
        }
    }

    /// Whether slow start, ending in window `c`, found the service overloaded from the first
    /// request: the completion rate never grew by a quarter over the first window's, and no
    /// remembered window was calm (under half the limit in flight). At the demand-capped exit
    /// (`idle`) every recent window looks calm, under half a limit that grew past the
    /// client's connections, so there the sign is a window mean [`START_QUEUE_GROWTH`] times
    /// slow start's lowest: a queue that built while the connections capped the in-flight
    /// count. (Not at the queued exit: a healthy pool's warm-up windows, the fast requests
    /// only, are as far below its mean, and 48 workers × 300 ms exponential at 0.5× load
    /// shed 25 % once read as overloaded.)
    pub(super) fn overloaded_from_start(&self, c: &Closed, idle: bool) -> bool {
        let saturated = match (self.first_rate, c.rate) {
            (Some(first), Some(now)) => now < SLOW_START_RATE_GROWTH * first,
            _ => false,
        };
        let grew = c
            .mean
            .is_some_and(|m| m > START_QUEUE_GROWTH * self.start_mean);
        saturated && if idle { grew } else { !self.calm }
    }

    /// Overloaded from the first request: the warm-up restarts, and the limit drains to the
    /// knee Little's law gives from the best completion rate and slow start's lowest window
    /// mean (the least queued one), times the sustained tolerance. Not the guard's estimate:
    /// its means are the queue's. And no hold for a fallen rate: a rate that never grew did
    /// not fall, one window's is noise (exponential service at 100/s: 60–140/s in windows of
    /// ten).
    pub(super) fn restart_drain(&mut self, now: Duration, before: f64) -> f64 {
        self.restart_warm_up(now);
        let knee = self.guard.max_rate().map(|rate| rate * self.start_mean);
        // The guard's filters hold the queue's means too.
        self.guard.forget();
        match knee {
            Some(knee) if knee.is_finite() => before.min(knee * self.sustained_tolerance),
            _ => before * self.backoff,
        }
    }

    /// Slow start ended on a queue and no window it remembered was calm (under half the limit
    /// in flight): the window means are those of a queue that built from the start (started
    /// under overload, every window queued, and the baseline was a queue's RTT: 0.6 s for a
    /// 20 ms service behind 100 connections). They are forgotten, and the baseline is learned again after a fresh warm-up from the drain
    /// on, when the requests admitted under the drained limit have completed (BBR's
    /// `ProbeRTT`, which measures the minimum RTT with the queue drained).
    pub(super) fn restart_warm_up(&mut self, now: Duration) {
        self.started = Some(now);
        self.warm_from = self.windows.closed();
        self.history.restart();
    }

    /// The latency rule's proposal for one closed window.
    pub(super) fn propose(&mut self, c: &Closed) -> f64 {
        let before = self.limit;
        self.queued_now = false;
        if c.dropped() {
            return before * self.backoff;
        }
        let Some(mean) = c.mean else {
            return before;
        };
        let binding = c.max_in_flight as f64 >= before.floor();
        let base = match self.baseline_secs().filter(|b| *b > 0.0) {
            Some(b) => b,
            None => mean,
        };
        // Warm-up: until a few mean RTTs have passed since the first sample, only the requests
        // that happened to be fast have completed, so a window's mean is biased low (it
        // would make a baseline that reads the real service as queued). Such a window teaches
        // nothing and moves nothing.
        if let Some(started) = self.started {
            // After a restart, a window whose samples were admitted above the drained limit
            // still holds the queue from before the drain, however many windows that takes.
            let draining = self.history.restarted() && c.max_in_flight as f64 > before.floor();
            if draining
                || mean * WARM_UP_RTTS > c.now.saturating_sub(started).as_secs_f64()
                    && self.windows.closed() - self.warm_from <= WARM_UP_WINDOWS
            {
                // Slow start still applies its completion-rate test.
                return if self.slow_start {
                    self.slow_start_window(c, before, false, None)
                } else {
                    before
                };
            }
            // Warm for good: a later queue must not read as a warm-up.
            self.started = None;
        }
        // A zero mean and no baseline (RTTs below the clock's resolution) show no queue.
        let ratio = if base > 0.0 { mean / base } else { 1.0 };
        let error = 2.0 * c.cv.unwrap_or(0.0) / (c.count.max(1) as f64).sqrt();
        // The limit has not bound since slow start ended (rule 6's first-binding case).
        let never_bound = self.binding_share == 0.0;
        self.binding_share += (f64::from(u8::from(binding)) - self.binding_share) / 8.0;
        // A limit that bound in most recent windows faces sustained demand, not a burst
        // (CoDel's "bad queue" persists, a "good queue" drains): hold it to the tighter
        // tolerance.
        // Rule 10: a processor-sharing server is held to the knee under sustained demand.
        let sharing = self.processor_sharing(c, ratio, binding);
        // Also while a queue stands before the share is reached (a load step's first
        // windows): the guard may then only hold the limit (see `update`).
        self.ps_tight = sharing
            && self.binding_share < SUSTAINED_SHARE
            && self.pressed_run >= PRESSED_RUN
            && before > self.burst_floor as f64;
        let tolerance = if self.binding_share >= SUSTAINED_SHARE || self.ps_tight {
            if sharing {
                PS_TOLERANCE.min(self.sustained_tolerance)
            } else {
                self.sustained_tolerance
            }
        } else {
            self.tolerance
        };
        let allowance = tolerance + error;
        let far = ratio <= 1.0 + (allowance - 1.0) / 2.0;
        self.since_calm = if far {
            0
        } else {
            self.since_calm.saturating_add(1)
        };
        // In slow start the limit grows within the window: binding means the in-flight count
        // reached the limit the window opened with.
        let queued = ratio > allowance;
        self.queued_now = queued;
        if c.max_in_flight as f64 >= self.opened.min(before).floor() && queued {
            self.queued_run = self.queued_run.saturating_add(1);
        } else {
            self.queued_run = 0;
        }
        // At least half the window's samples found the limiter full when admitted.
        let pressed = self.full.saturating_mul(2) >= self.seen.max(1);
        let full_now = self.full as f64 / self.seen.max(1) as f64;
        self.full_share += (full_now - self.full_share) / 8.0;
        if pressed && queued {
            self.pressed_run = self.pressed_run.saturating_add(1);
        } else {
            self.pressed_run = 0;
        }
        if self.slow_start {
            return self.slow_start_window(c, before, ratio > allowance, Some(mean));
        }
        self.history.remember(mean);
        // Rule 9: a burst that shed and then drained. A window drains when the limit no longer
        // binds, its mean shows no queue and at most half the limit was in flight; the
        // binding windows before it, if any shed, were a queue the service emptied by itself
        // (CoDel's good queue), and the limit that shed them cut traffic a healthy service
        // could serve. Sustained demand never drains; once it shows (the limit bound in most
        // recent windows, or two pressed windows in a row) the episode and what the bursts
        // needed are forgotten.
        if binding {
            self.episode_shed |= full_now > BURST_SHED_BUDGET;
        }
        // A queue that stands (two binding windows in a row queued 1.5 times past the
        // allowance) while the limit bound in [`STANDING_SHARE`] of recent windows forgets
        // the episode only: its drain is a lull in demand that binds again, not a burst's
        // end (the drill's 8 workers at 1× load doubled 40 → 80 on such a lull, and the
        // step to 2× found 80 in flight: p99 2.1× unloaded). It no longer takes the room
        // back by itself: a healthy small pool's bursts queue as deep (4 workers at 0.9×
        // load, bimodal or lognormal CV 2: ten and more times the baseline for a second),
        // and each such take-back shed the rest of the burst (session 19: 24 → 19 misses).
        // Not at the burst floor (session 20): a small pool's first long burst there binds
        // the limit in eight and more windows in a row, so its own windows lift the share
        // past [`STANDING_SHARE`] (0 → 0.41 within 4 workers × 30 ms, bimodal, at 0.9× load),
        // and the forgotten episode left the limit at 20 for the next burst (seed 2: 2.98 %
        // shed). From the floor a doubling is a small pool's room for its bursts (rule 8
        // does not undo it either); the drill's doubling was from 40 to 80 on 8 workers.
        if self.queued_run >= PRESSED_RUN
            && ratio >= UNDO_RATIO * allowance
            && self.binding_share >= STANDING_SHARE
            && before > self.burst_floor as f64
        {
            self.episode_shed = false;
        }
        if self.binding_share >= SUSTAINED_SHARE || self.pressed_run >= PRESSED_RUN {
            self.episode_shed = false;
            self.burst_need = 0.0;
            let base = std::mem::take(&mut self.burst_base);
            if base > 0.0 && base < before {
                // The demand is sustained after all: the room made for bursts is taken back
                // at once, past the guard (whose estimate is that room's queue).
                self.grew = false;
                self.hold_growth = UNDO_WINDOWS * 2;
                return base;
            }
        }
        let drained = !binding
            && !queued
            && c.max_in_flight as f64 * 2.0 <= before.floor()
            && std::mem::take(&mut self.episode_shed);
        // A doubling that the next windows show queued while they pressed on the limit (the
        // demand is sustained, not a burst that drains) is undone at once rather than cut
        // back by a tenth per window: at a step to 1.4× load the queue's RTTs arrive a
        // round trip after the doubling they caused (74 → 148, 2 s to come back).
        if let Some((from, left)) = self.undo.take() {
            let pressing = full_now >= BURST_FULL_NOW
                || self.binding_share >= UNDO_BINDING && full_now >= BURST_FULL_SHARE
                || ratio >= UNDO_RATIO * allowance;
            // And the service completed no more than the old limit carried without a queue
            // (Little's law: this window's rate times the baseline is below it), so the
            // room above it only queued. A pool the old limit held below its knee (500
            // workers bound at 50) completes more once it has the room, and keeps it.
            // Only for a service of little dispersion: the baseline of a dispersed one (the
            // 10th percentile of window means) is far below its mean, and its doublings
            // queue by chance (500 workers, exponential: 5 % shed once undone).
            // And only with a baseline of at least [`UNDO_MEANS`] window means: the first
            // ones are the warm-up's fast requests (500 workers at 300 ms, lognormal CV 2,
            // undid 60 → 30 in their first second and shed 72 %).
            // Not from the burst floor: there a doubling is a small pool's room for its
            // bursts (the drill's 8 workers, undone 40 → 20 at 1× load, later ratcheted
            // to 143 at 10×: p99 3.5× unloaded).
            let carried = self.cv < UNDO_MAX_CV
                && from > self.burst_floor as f64
                && self.history.len() >= UNDO_MEANS
                && c.rate.is_some_and(|r| r * base < from);
            if queued && pressing && carried {
                self.undone = true;
                self.grew = false;
                self.hold_growth = UNDO_WINDOWS * 2;
                self.no_double = UNDO_WINDOWS * 2;
                return from.min(before);
            }
            if left > 1 {
                self.undo = Some((from, left - 1));
            }
        }
        if !binding {
            // The demand that made the undo is receding: doublings may come back.
            self.no_double = self.no_double.saturating_sub(1);
            if drained && self.no_double == 0 {
                self.undo = None;
                if self.burst_base == 0.0 {
                    self.burst_base = before;
                }
                self.burst_need = before * self.growth;
                return self.burst_need;
            }
            return before;
        }
        self.last = Some((c.mean_duration(), ratio / allowance));
        // After an undone doubling the limit holds for [`UNDO_WINDOWS`] × 2 binding windows
        // (the queue it drains reads as room), and does not double again while the demand
        // keeps binding it (at 1.4× load the burst rule read the next quiet window as a
        // burst and doubled again 3 s later).
        let held = self.hold_growth > 0;
        let may_grow = self.no_double == 0;
        self.hold_growth = self.hold_growth.saturating_sub(1);
        // Rule 6: demand in bursts (few admissions fill the limit, none of the last windows
        // pressed on it). A queue that drains is not cut; a limit that sheds more than the
        // budget while the window did not queue doubles (once per two windows, as below).
        // Not at the first binding window since slow start, above the burst floor, past the
        // tolerance (within it only by the error term) on a service of little dispersion:
        // that is slow start's leftover limit reached by a load step, not a burst that shed
        // (`cpu-thrash` seed 4: 84 → 168 at the step, 150+ in flight thrashing for 0.3 s).
        // A dispersed service's bursts reach past the tolerance by chance (as in rule 8).
        if self.full_share < BURST_FULL_SHARE
            && full_now < BURST_FULL_NOW
            && self.pressed_run < PRESSED_RUN
        {
            if queued {
                self.grew = false;
                return before;
            }
            if full_now > BURST_SHED_BUDGET
                && may_grow
                && self.since_calm <= CALM_WINDOWS
                && !(never_bound
                    && before > self.burst_floor as f64
                    && ratio > tolerance
                    && self.cv < UNDO_MAX_CV)
            {
                if !std::mem::take(&mut self.grew) {
                    self.grew = true;
                    self.undo = Some((before, UNDO_WINDOWS));
                    return before * self.growth;
                }
                return before;
            }
        }
        let doubled = std::mem::take(&mut self.grew);
        if ratio <= allowance {
            if far && !doubled && self.binding_share < SUSTAINED_SHARE && may_grow {
                // The next window's RTTs are mostly those of requests admitted under the old
                // limit, so it only holds (BBR, too, waits a round trip after a gain).
                self.grew = true;
                self.undo = Some((before, UNDO_WINDOWS));
                before * self.growth
            } else if far || held {
                before
            } else {
                before + 1.0
            }
        } else {
            let g = (allowance / ratio).clamp(0.5, 1.0);
            before * (1.0 - self.smoothing + self.smoothing * g)
        }
    }

    /// Rule 10: records the window's RTT dispersion and says whether the server shares its
    /// processors among everything in flight. In a line in front of a pool every request
    /// waits about as long, so a queue adds a near-constant wait and the RTT's CV falls
    /// below the service's own (48 workers, lognormal CV 0.5 at 1.5 times the knee: 0.34
    /// against 0.43 calm); under processor sharing every request is stretched alike and the
    /// CV stays (0.5 against 0.44). The calm CV is learned in windows within
    /// [`PS_CALM_RATIO`] of the baseline, the evidence only in binding windows that queued
    /// [`PS_QUEUE_RATIO`] past it: at the knee both kinds look calm, so the verdict holds
    /// there (else it would confirm itself) and is revised at the next queue.
    pub(super) fn processor_sharing(&mut self, c: &Closed, ratio: f64, binding: bool) -> bool {
        let average = |avg: f64, v: f64| {
            if avg == 0.0 {
                v
            } else {
                avg + (v - avg) / CV_WINDOWS
            }
        };
        if let Some(cv) = c.cv {
            if ratio <= PS_CALM_RATIO {
                self.calm_cv = average(self.calm_cv, cv);
            } else if binding && ratio >= PS_QUEUE_RATIO && self.calm_cv > 0.0 {
                self.sharing = average(self.sharing, cv / self.calm_cv);
            }
        }
        self.sharing >= PS_CV_SHARE
    }

    /// A queue that stands: [`PRESSED_RUN`] windows in a row queued while most of their
    /// admissions filled the limit, or [`SUSTAINED_RUN`] binding windows in a row queued.
    pub(super) fn sustained_queue(&self) -> bool {
        self.pressed_run >= PRESSED_RUN || self.queued_run >= SUSTAINED_RUN
    }

    /// The lowest the limit may go in this window: the burst room (or the limit, if already
    /// below it) while the demand comes in bursts, `min_limit` once it is sustained (a queue
    /// that stands, or a limit that bound in most recent windows).
    pub(super) fn floor(&self, before: f64) -> f64 {
        if self.sustained_queue() || self.binding_share >= SUSTAINED_SHARE {
            self.lowest()
        } else {
            self.burst_room().max(self.burst_need).min(before)
        }
    }

    /// A window in which the limit did not bind: the limit sheds nothing and stays, unless it
    /// is above what a small pool's bursts need ([`burst_room`](Self::burst_room)); then it
    /// decays toward that by `backoff` per window, so that a sudden overload finds it near the
    /// knee rather than at the burst floor.
    pub(super) fn decay(&self, before: f64, next: f64) -> f64 {
        match self.decay_to(before) {
            Some(target) => next.min(target),
            None => next.max(before),
        }
    }

    /// Where a limit that did not bind decays to, if it does: `backoff` per window toward a
    /// small pool's burst room.
    pub(super) fn decay_to(&self, before: f64) -> Option<f64> {
        let room = self.burst_room();
        let keep = room.max(self.burst_need);
        (before > keep && room < self.burst_floor as f64).then(|| keep.max(before * self.backoff))
    }

    /// What the bursts of a healthy service need in flight, at most the burst floor: the
    /// knee Little's law gives (the recent completion rate times the no-queue baseline)
    /// times `BURST_ROOM + BURST_ROOM_CV2 × CV²` (a dispersed service queues deeper in its
    /// own bursts). Below the burst floor only for small pools with little dispersion.
    pub(super) fn burst_room(&self) -> f64 {
        let floor = self.burst_floor as f64;
        match self.knee() {
            Some(knee) => (knee * (BURST_ROOM + BURST_ROOM_CV2 * self.cv * self.cv))
                .clamp(self.room_floor(), floor),
            None => floor,
        }
    }

    /// The lowest the limit goes outside rule 11: `min_limit`, or below it a small pool's
    /// burst room when that is lower (only for a service with little dispersion, see
    /// [`room_floor`](Self::room_floor)). A 4-worker pool at half load rests at 14, not 20,
    /// so a sudden overload queues ten requests behind it, not sixteen.
    pub(super) fn lowest(&self) -> f64 {
        (self.min as f64)
            .min(self.burst_room())
            .max(self.tail_room())
    }

    /// The knee Little's law gives: the recent completion rate times the no-queue baseline
    /// (`None` before both are known).
    pub(super) fn knee(&self) -> Option<f64> {
        let knee = self.guard.mean_rate()? * self.baseline_secs()?;
        (knee.is_finite() && knee > 0.0).then_some(knee)
    }

    /// Rule 13: the room a healthy small pool with a heavy-tailed service needs at 0.9×
    /// load, below which no rule but rule 11 (refusals far past the completions) takes its
    /// limit: the knee plus [`TAIL_ROOM_CV2`] times the service's squared CV, measured on
    /// the successes admitted with no queue ahead of them ([`TAIL_MIN_SAMPLES`] at least),
    /// once that CV reaches [`TAIL_MIN_CV`]; 0 otherwise, and for pools whose knee is past
    /// the burst floor (the latency rule's room there is the knee's own).
    ///
    /// Kingman's heavy-traffic formula puts a G/G/c queue's length, given that it waits, at
    /// about `ρ/(1−ρ) × (Ca² + Cs²)/2`, nine times that factor at 0.9× load, and its tail
    /// falls off exponentially from there: the 98th percentile is about 3.5 times it, 50
    /// requests for 4 workers with a bimodal service (CV 1.6). A queue that deep is the
    /// service's nature, not an overload (`static:40` sheds 3.6 % of it, `static:50`
    /// 1.6 %), and only the service's own CV tells it apart: a queue in front of a pool
    /// makes every request wait about as long, which lowers the RTT's CV (0.8 for that
    /// service at 0.9×), so the RTTs of all successes cannot show it.
    pub(super) fn tail_room(&self) -> f64 {
        let Some(knee) = self.knee().filter(|k| *k < self.burst_floor as f64) else {
            return 0.0;
        };
        // The most in flight (the request itself included) at which a request found no
        // queue ahead: the knee, rounded down (the baseline, a low percentile of window
        // means, is below the mean service time, so the knee is at most the workers).
        let up_to = (knee.floor() as usize).max(1);
        match self.service.cv(up_to, TAIL_MIN_SAMPLES) {
            Some(cv) if cv >= TAIL_MIN_CV => (knee + TAIL_ROOM_CV2 * cv * cv).min(self.max as f64),
            _ => 0.0,
        }
    }

    /// The lowest a small pool's burst room goes: `min_limit`, or the overload floor once
    /// 100 successes show a pooled RTT CV below [`ROOM_MAX_CV`].
    /// Not by the windows' averaged CV: it read a bimodal service (CV 1.6) as 0.35 while
    /// most windows held no slow request, and the room fell below the floor at 0.9× load
    /// (ten cells shed more, two past the goal).
    pub(super) fn room_floor(&self) -> f64 {
        match self.dispersion.cv() {
            Some(cv) if cv < ROOM_MAX_CV => self.overload_floor as f64,
            _ => self.min as f64,
        }
    }

    /// Rule 11: counts the windows in a row that showed overload: the limiter refused at
    /// least [`OVERLOAD_REFUSED`] times the completion rate since the last window closed
    /// (`refused` is the limiter's running count, [`Sample::refused`]) and this window's
    /// mean queued; or, once overloaded, still refused [`OVERLOAD_STAY`] times it.
    pub(super) fn count_overload(&mut self, c: &Closed, refused: u64) {
        let (mark, at) = self.refused_mark;
        self.refused_mark = (refused, c.now);
        self.completed_since = 0;
        let span = c.now.saturating_sub(at).as_secs_f64();
        let turned = refused.saturating_sub(mark) as f64;
        let turned_away = span > 0.0
            && c.rate
                .is_some_and(|rate| turned >= OVERLOAD_REFUSED * rate * span && rate > 0.0);
        // Refusals prove the limit is full now (a window's samples were admitted a round
        // trip ago, before it filled, so they cannot show it yet); the queue shows in their
        // mean. Once overloaded, the refusals alone keep it so: at the knee's room the
        // queue is gone, and the demand is what it was.
        let stay = self.overload_run > 0
            && c.rate
                .is_some_and(|rate| turned >= OVERLOAD_STAY * rate * span);
        self.overload_run = if turned_away && self.queued_now || stay {
            self.overload_run.saturating_add(1)
        } else {
            0
        };
    }

    /// Rule 11: the limit for this window under overload, or `None` when the other rules'
    /// limit stands (no overload, not a small pool, a restart draining, or a completion
    /// rate that collapsed below [`RATE_COLLAPSE`] of its best: a slower service, whose knee
    /// the old baseline does not give). A fall to 0.8 of the best (rule 3's test) is a
    /// small pool's noise here: with it the floor of 20 came back in every such window
    /// (4 workers at 5×: the limit 6 → 20 → 6).
    ///
    /// The knee is the highest this overload has shown: the best of the window's
    /// completion rate and the guard's recent ones, times the baseline. A window that
    /// queued was admitted while the service was saturated, so its rate is the capacity; one
    /// that did not shows the rate the limit allowed, and so lets the room grow when the knee
    /// was underestimated. The limit is held between the knee and the sustained tolerance
    /// times it: never below what the service showed it completes (a room from one slow
    /// window's rate cut 4 workers to 3), never above the room (the latency rule's +1 per
    /// calm window took it to 10).
    pub(super) fn overload_limit(&mut self, c: &Closed, next: f64, draining: bool) -> Option<f64> {
        if self.overload_run == 0
            || draining
            || self.rate_share < RATE_COLLAPSE
            || self.history.restarted()
        {
            self.overload_knee = 0.0;
            return None;
        }
        let rate = c.rate.map(|r| r.max(self.guard.max_rate().unwrap_or(0.0)));
        if let Some(knee) = rate.zip(self.baseline_secs()).map(|(r, b)| r * b)
            && knee.is_finite()
        {
            self.overload_knee = self.overload_knee.max(knee);
        }
        let Some(room) = self.small_pool_room(self.overload_knee) else {
            self.overload_knee = 0.0;
            return None;
        };
        Some(
            next.min(room)
                .max(self.overload_knee)
                .max(self.overload_floor as f64),
        )
    }

    /// Rule 11: under overload a small pool's guard may only hold the limit, not raise it,
    /// unless the completion rate collapsed (below [`RATE_COLLAPSE`] of its best: a slower
    /// service). A small pool's rate is noisy enough to read as a fall (8 workers at 40 ms,
    /// exponential), and the guard's `F` there is the standing queue's own in-flight count:
    /// its 1.25 probe ratcheted the limit 25 → 125 through the drill's 10× phase.
    pub(super) fn overload_holds(&self) -> bool {
        self.overload_run > 0 && self.rate_share >= RATE_COLLAPSE && self.overload_knee > 0.0
    }

    /// The sustained tolerance times `knee`, if that is below the burst floor (a small
    /// pool's): above it the latency rule's own cuts hold an overload, and a rate measured
    /// in one window may be a demand's, not the capacity (a processor-sharing server at 2×
    /// was cut from 85 to 45 for 48 cores).
    fn small_pool_room(&self, knee: f64) -> Option<f64> {
        let room = self.sustained_tolerance * knee;
        (knee.is_finite() && knee > 0.0 && room < self.burst_floor as f64).then_some(room)
    }

    /// Rule 11 before the window closes: a window's samples were admitted a round trip ago,
    /// so a sudden overload shows in their mean only one or two windows later, while the
    /// requests admitted meanwhile queue behind a limit far above the knee (4 workers at
    /// 5×: 16 of them, each past twice the unloaded p99). The refusals show it at once:
    /// once the limiter has refused [`OVERLOAD_EARLY`] requests and [`OVERLOAD_REFUSED`]
    /// times what completed since the last window closed, and the limit over the best
    /// recent completion rate (the sojourn Little's law gives a newly admitted request) is
    /// past the tolerance times the baseline, the limit goes to the knee's room now.
    pub(super) fn early_overload(&mut self, sample: &Sample) {
        if sample.outcome == Outcome::Success {
            self.completed_since += u64::from(sample.weight.max(1));
        }
        // Not for a dispersed service, whose healthy bursts refuse as fast for a moment, nor
        // while the completion rate is below its best (a slower service: rule 3's case).
        if self.overload_run > 0
            || sample.refused == 0
            || self.cv >= UNDO_MAX_CV
            || self.rate_share < RATE_DROP
        {
            return;
        }
        let refused = sample.refused.saturating_sub(self.refused_mark.0);
        if refused < OVERLOAD_EARLY
            || (refused as f64) < OVERLOAD_REFUSED * self.completed_since as f64
        {
            return;
        }
        let (Some(rate), Some(base)) = (self.guard.max_rate(), self.baseline_secs()) else {
            return;
        };
        if rate <= 0.0 || self.limit / rate < self.tolerance * base {
            return;
        }
        // And the service completes at its best rate meanwhile: a few slow requests that hold
        // a small pool's workers (a dispersed service's healthy burst) refuse as fast, but
        // while completions stall.
        let elapsed = sample.now.saturating_sub(self.refused_mark.1).as_secs_f64();
        if (self.completed_since as f64) < RATE_DROP * rate * elapsed {
            return;
        }
        // At most halved at once: the best recent rate may be a lighter demand's (before
        // the overload), and the windows that follow hold the limit to the knee they see.
        if let Some(room) = self.small_pool_room(rate * base) {
            self.overload_run = 1;
            self.overload_knee = rate * base;
            self.slow_start = false;
            self.limit = self
                .limit
                .min(room.max(self.limit / 2.0))
                .max(self.overload_floor as f64);
        }
    }
}

//! `Headroom`, the default adaptive limit (see the type's docs).

use std::collections::VecDeque;
use std::time::Duration;

use super::guard::LittlesLaw;
use super::window_stats::{Closed, WindowConfig, Windows};
use super::{Estimates, LimitAlgorithm, Outcome, Sample};
use crate::error::{ConfigError, check_limits, check_range};

/// The percentile of recent window means taken as the no-queue baseline.
const BASELINE_PERCENTILE: f64 = 0.1;

/// The guard may override the latency rule only while the recent completion rate is below
/// this share of the highest it has been over the baseline horizon (see [`Headroom`], rule 3).
const RATE_DROP: f64 = 0.8;

/// The share of recent windows (an exponential average over about 8) in which the limit
/// bound, from which on the demand counts as sustained.
const SUSTAINED_SHARE: f64 = 0.75;

/// A window closing before this many of its mean RTTs have passed since the first sample is
/// part of the warm-up (see [`Headroom::update`]).
const WARM_UP_RTTS: f64 = 4.0;

/// The warm-up ends after at most this many windows: through a queue that builds from the
/// start, the mean RTT grows with the time since the start and would never look warm.
const WARM_UP_WINDOWS: u64 = 8;

/// The limit before the first sample (see [`HeadroomBuilder::first_round_limit`]).
const FIRST_ROUND_LIMIT: usize = 100;

/// How much a success raises the limit in slow start.
const SLOW_START_GAIN: f64 = 2.0;

/// In slow start, a window in which the limit grew by more than this factor holds mostly
/// young requests (see [`Headroom::slow_start_window`]).
const SLOW_START_YOUNG: f64 = 1.125;

/// In slow start the completion rate must grow by this factor ...
const SLOW_START_RATE_GROWTH: f64 = 1.25;

/// ... within this many windows in which the limit grew, or slow start ends.
const SLOW_START_QUEUED_PLATEAU: u32 = 3;

/// Slow start ends after this many queued windows in a row.
const SLOW_START_QUEUED: u32 = 1;

/// After this many binding windows in a row that queued, the demand counts as sustained for
/// the floor (see [`HeadroomBuilder::burst_floor`]): the limit may fall below the burst floor.
const SUSTAINED_RUN: u32 = 6;

/// ... or after this many windows in a row that queued while at least half their
/// admissions filled the limit.
const PRESSED_RUN: u32 = 2;

/// Demand comes in bursts while fewer than this share of admissions (averaged over about 8
/// windows) filled the limit (see [`Headroom`], rule 6).
const BURST_FULL_SHARE: f64 = 0.15;

/// ... and this window's share is below this.
const BURST_FULL_NOW: f64 = 0.35;

/// In bursts, a binding window that did not queue while more than this share of its
/// admissions filled the limit doubles the limit: the limit, not the service, sheds.
const BURST_SHED_BUDGET: f64 = 0.005;

/// Room for a healthy service's bursts, in knees, before dispersion (see
/// [`Headroom::burst_room`]).
const BURST_ROOM: f64 = 6.0;

/// The windows the RTT's coefficient of variation is averaged over.
const CV_WINDOWS: f64 = 8.0;

/// Room for bursts per unit of the RTT's squared coefficient of variation.
const BURST_ROOM_CV2: f64 = 4.0;

/// `Headroom`: an adaptive limit meant to be safe as the default — it keeps a healthy,
/// high-variance service's traffic, keeps its limit through a uniform slowdown, and still
/// protects latency under overload.
///
/// Seven rules, each answering one way latency-gradient limits go wrong (issue 16):
///
/// 1. **Only a binding limit is corrected.** A window in which the in-flight count never
///    reached the limit shed nothing, so it cannot lower the limit (and it does not raise it:
///    BBR's app-limited rule). A latency gradient on a high-variance service otherwise reads
///    variance as queue and cuts a limit that was doing no harm — corrected Gradient2 shed
///    60 % of requests at 0.5× load on exponential service times.
/// 2. **Queueing is judged against the service's own noise.** In a binding window the mean RTT
///    is compared with a baseline `B`, the 10th percentile of the last `baseline_windows`
///    window means (not the minimum of samples, nor of means: both read a dispersed service as
///    permanently queued; see the known limit below). The window counts as queueing when
///    `mean > B × (tolerance + 2·CV/√n)`: a tolerance plus two standard errors of the window
///    mean. Windows grow with the variance (at least `25 × CV²` samples), so
///    the error term stays small. The tolerance is 2 while the limit binds only now and then
///    (bursts, which drain), and 1.5 once it has bound in three quarters of recent windows
///    (sustained demand: CoDel's distinction between a good and a bad queue). Without queueing the limit grows — doubling when the mean is
///    under half the allowance (far from the knee: BBR's startup, so a 500-worker pool is
///    found in a handful of windows; the window after a doubling only holds, because its RTTs
///    are those of requests admitted under the old limit), else by 1; with queueing it falls as Gradient2's does,
///    `L × (0.8 + 0.2 × clamp(allowance / ratio, 0.5, 1))`, at most 10 % per window. A drop or
///    a timeout backs off by `backoff` (0.9), as AIMD.
/// 3. **A uniform slowdown is not a queue.** The Little's-law guard of
///    [`LlGuard`](super::LlGuard) (BBR's `max rate × min RTT` over 8 windows with the gain
///    cycle `[1.25, 0.75, 1]`) overrides the cuts while completions show the service still
///    sustains the in-flight count the latency rule wants to cut. Under sustained demand it may
///    do so only while the completion rate fell (below 0.8 of its highest over the baseline
///    horizon): through a standing queue in front of an unchanged service `F` is just the
///    queue's own in-flight count, lagged by one RTT, and its 1.25 probe ratcheted the limit up
///    at every cut (8 workers at 40 ms exponential: a limit of 114 by the drill's 10× phase);
///    there it may only hold the limit, never raise it.
///
/// 4. **It starts in slow start** (TCP's, per acknowledgement): until the first window that
///    queued while pressing on the limit, or a completion rate that stopped growing (BBR's
///    full-bandwidth test), every success admitted while at least half the limit was in
///    flight raises the limit by 2. A 500-worker pool is found within a few round trips from
///    the initial 20, and a limit about twice the demand's peak stays, so a healthy pool's
///    bursts are not shed. At its end the limit drains to 1.5 × the Little's-law estimate
///    (at most to a quarter), or holds if the completion rate fell (rule 3's case). The
///    windows of the first few mean RTTs (at most 8 windows) are a warm-up: only the fast
///    requests have completed, so they teach no baseline.
///
/// 5. **Small pools may go below the burst floor** (20, Netflix's floor). A healthy pool's
///    bursts drain, and a small pool with dispersed service needs many times its workers in
///    flight to absorb them; but a 4-worker pool held at 20 under overload queues four
///    service times behind every request (found on real sockets with `tailwater drill
///    --target`). So the floor is the burst floor only while the demand comes in bursts; once
///    a queue stands (two windows in a row that queued while most of their samples filled the
///    limit they were admitted under — [`Sample::limit`] — or six binding windows in a row
///    that queued, or a limit that bound in three quarters of recent windows) it is
///    `min_limit` (20 by default, so this is opt-in: set `min_limit` to about the pool's
///    workers). And a limit that does not bind decays (by `backoff` per window) toward
///    the *burst room* when that is below the burst floor: `(6 + 4·CV²)` times the knee
///    Little's law gives from the recent completion rate and the baseline — only small pools
///    with little dispersion have a burst room under 20 — so that a sudden overload finds
///    the limit near the pool rather than at 20.
///
/// 6. **A limit that sheds bursts which drain grows** (issue 16, fourth pass). While demand
///    comes in bursts — fewer than 15 % of admissions (averaged over about 8 windows) and
///    fewer than 35 % in this window filled the limit they were admitted under, and no
///    window pressed on it twice in a row — a binding window that queued holds the limit
///    (a queue that drains is CoDel's good queue), and one that did not queue while more
///    than 0.5 % of its admissions filled the limit doubles it (at most every other
///    window). In sustained overload nearly every admission fills the limit, so the rule
///    stays out of the way. It is what a small pool with dispersed service needs: 4 workers
///    with lognormal CV 2 at 0.9× load hold about 21 in flight on average and need ~80 to
///    shed under 2 %, which a floor of 20 and the latency rule did not allow (2.3–3.5 % shed).
///
/// 7. **The first round trip is not cut to the initial limit** (issue 16, session 9). Until
///    the first sample arrives nothing is known, and a limit of 20 sheds whatever a large
///    pool receives in its first round trip: 500 workers at 300 ms and 0.5× load receive 250
///    requests in it, about 230 of which were shed (0.23 % of a 120-s run, half the do-no-harm
///    budget). So before the first sample the limit is the *first-round limit*
///    ([`HeadroomBuilder::first_round_limit`], default 100); from the first sample on it is
///    the initial limit, grown by slow start. The cost is bounded: at most 100 requests are
///    admitted before any feedback, against 20. Measured in `default-limit`: 100 brings that
///    cell from 0.58 % to 0.28 % shed (200: 0.23 %); 50 makes it worse (0.67 %: the requests
///    admitted in the first round trip hold the limit full while slow start climbs back).
///
/// Why 2 and 1.5: a healthy pool at 0.9× load must absorb the bursts its own variance makes
/// (about 1.5 W in flight for 48 workers), which a tolerance of 2 allows; an overloaded pool
/// of W workers held at 1.5 holds about 1.5·W in flight, whose p99 for a lognormal service
/// with CV 0.5 is about 1.2× the unloaded p99, inside the 2× goal, and the tighter tolerance
/// lets the guard take over sooner in a uniform slowdown. Measured choices (tolerance 1.5,
/// 1.75, 2, 2.5; growth 1.25, 1.5, 2, 3; sustained 1.25 or 1.5): see the simulator's
/// `default-limit` suite.
///
/// Known limit: the baseline is taken over every recent window mean, queued ones included, so
/// once queued windows outnumber nine in ten of the last 1000 (overload from the start, or
/// longer than about 900 windows) it rises and the limit creeps up by up to the tolerance per
/// such period (Netflix #134 in slow motion). Excluding queued or binding-but-not-far windows
/// was measured and is worse: a baseline that only falls sticks to a lucky early window and
/// the 500-worker do-no-harm cells shed up to 94 %.
///
/// Origins: Netflix concurrency-limits `Gradient2Limit` (the smoothed cut, the app-limited
/// hold); BBR (Cardwell et al., 2016; Linux `tcp_bbr.c`: `max bw × min RTT`, the gain cycle,
/// app-limited marking); Little's law as used by the Sentinel, Kratos and go-zero limiters
/// (bucket means, not sample minima); Breakwater and DAGOR (act on the queue, not on the
/// service time).
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{Headroom, LimitAlgorithm, Sample};
/// let mut h = Headroom::default();
/// let ms = Duration::from_millis;
/// // A 500-worker pool at 20 ms whose demand fills any limit: no queue, so the limit grows.
/// for i in 0..20_000u64 {
///     let l = h.limit();
///     h.update(&Sample::success(ms(i) / 10, ms(20), l));
/// }
/// assert!(h.limit() > 400, "{}", h.limit());
/// ```
#[derive(Debug, Clone)]
pub struct Headroom {
    limit: f64,
    min: usize,
    burst_floor: usize,
    max: usize,
    /// This window's samples, and those admitted when the limiter was full.
    seen: u64,
    full: u64,
    /// Binding windows in a row that queued.
    queued_run: u32,
    /// Windows in a row that queued while pressed (at least half their samples filled the
    /// limit they were admitted under): demand above the knee, not a burst.
    pressed_run: u32,
    /// The RTT's coefficient of variation, averaged over about [`CV_WINDOWS`] windows.
    cv: f64,
    tolerance: f64,
    sustained_tolerance: f64,
    backoff: f64,
    smoothing: f64,
    growth: f64,
    grew: bool,
    binding_share: f64,
    /// The share of admissions that filled the limit, averaged over about 8 windows.
    full_share: f64,
    baseline_windows: usize,
    means: VecDeque<f64>,
    /// The same values as `means`, kept in `f64::total_cmp` order, so the baseline is an
    /// index instead of a selection over up to `baseline_windows` values at every window
    /// (the selection and its copy cost 700–1 160 instructions per proxied request).
    sorted_means: Vec<f64>,
    windows: Windows,
    guard: LittlesLaw,
    last: Option<(Duration, f64)>,
    rates: VecDeque<f64>,
    slow_start: bool,
    paused: bool,
    queued_windows: u32,
    slow_start_rate: f64,
    flat_windows: u32,
    opened: f64,
    started: Option<Duration>,
    /// The limit until the first sample arrives (rule 7), then `None`.
    first_round: Option<usize>,
}

impl Default for Headroom {
    fn default() -> Self {
        HeadroomBuilder::default()
            .build()
            .expect("the default Headroom configuration is valid")
    }
}

impl Headroom {
    /// A builder with the defaults.
    pub fn builder() -> HeadroomBuilder {
        HeadroomBuilder::default()
    }

    /// Whether the Little's-law guard holds the limit (a slowdown is suspected).
    pub fn guarding(&self) -> bool {
        self.guard.guarding()
    }

    /// The no-queue baseline RTT: the 10th percentile of recent window means.
    pub fn baseline(&self) -> Option<Duration> {
        self.baseline_secs()
            .and_then(|b| Duration::try_from_secs_f64(b).ok())
    }

    fn baseline_secs(&self) -> Option<f64> {
        let n = self.sorted_means.len();
        if n == 0 {
            return None;
        }
        let k = ((n - 1) as f64 * BASELINE_PERCENTILE).round() as usize;
        self.sorted_means.get(k).copied()
    }

    fn clamp(&self, v: f64) -> f64 {
        if v.is_finite() {
            v.clamp(self.min as f64, self.max as f64)
        } else {
            self.limit
        }
    }

    /// Records the guard's recent completion rate and says whether it fell below
    /// [`RATE_DROP`] of the highest recorded over the baseline horizon. A slowdown or a lost
    /// worker lowers the rate the service completes at; a standing queue in front of an
    /// unchanged service does not, and there the guard's `F` is only the in-flight count
    /// itself (Little's law at a binding limit), so guarding would ratchet the limit up.
    fn rate_fell(&mut self) -> bool {
        let Some(now) = self.guard.mean_rate() else {
            return true;
        };
        self.rates.push_back(now);
        while self.rates.len() > self.baseline_windows {
            self.rates.pop_front();
        }
        let best = self.rates.iter().copied().fold(now, f64::max);
        now < RATE_DROP * best
    }

    fn remember(&mut self, mean: f64) {
        self.means.push_back(mean);
        let at = self
            .sorted_means
            .partition_point(|x| x.total_cmp(&mean).is_lt());
        self.sorted_means.insert(at, mean);
        while self.means.len() > self.baseline_windows {
            if let Some(old) = self.means.pop_front() {
                let at = self
                    .sorted_means
                    .partition_point(|x| x.total_cmp(&old).is_lt());
                self.sorted_means.remove(at);
            }
        }
    }

    /// Slow start's proposal for one closed window (the growth itself is per sample, in
    /// [`update`](LimitAlgorithm::update)).
    ///
    /// - A window in which the limit grew by more than [`SLOW_START_YOUNG`] holds mostly young
    ///   requests, the fast ones of which completed first: its mean is biased low, so it
    ///   enters the baseline only while there is none.
    /// - A window that queued while it pressed on the limit (its samples saw at least half
    ///   the limit it opened with in flight: a sample's in-flight count is that of its
    ///   admission, a round trip ago) pauses the growth; any other window resumes it. A burst
    ///   drains; sustained demand queues on.
    /// - After [`SLOW_START_QUEUED`] such windows in a row slow start ends, and the limit
    ///   drains to the Little's-law estimate (BBR's drain after startup: the in-flight count
    ///   the service completed at its best rate), at most halving it (TCP's halving on loss).
    fn slow_start_window(
        &mut self,
        c: &Closed,
        before: f64,
        queued: bool,
        mean: Option<f64>,
    ) -> f64 {
        let young = before > self.opened * SLOW_START_YOUNG;
        if let Some(mean) = mean
            && (!young || self.means.is_empty())
        {
            self.remember(mean);
        }
        let pressed = c.max_in_flight.saturating_mul(2) as f64 >= self.opened.floor();
        // BBR's full-bandwidth test: while the limit grows, the completion rate must grow by
        // a quarter within three windows, else more in flight only queues.
        let mut plateau = false;
        if let Some(rate) = c.rate.filter(|_| pressed && young) {
            if rate >= SLOW_START_RATE_GROWTH * self.slow_start_rate {
                self.slow_start_rate = rate;
                self.flat_windows = 0;
            } else {
                self.flat_windows += 1;
                plateau = self.flat_windows >= SLOW_START_QUEUED_PLATEAU;
            }
        }
        if !(plateau || pressed && queued) {
            self.queued_windows = 0;
            self.paused = false;
            return before;
        }
        self.queued_windows += 1;
        self.paused = true;
        if self.queued_windows < SLOW_START_QUEUED && !plateau {
            return before;
        }
        self.slow_start = false;
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

    /// The latency rule's proposal for one closed window.
    fn propose(&mut self, c: &Closed) -> f64 {
        let before = self.limit;
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
            if mean * WARM_UP_RTTS > c.now.saturating_sub(started).as_secs_f64()
                && self.windows.closed() <= WARM_UP_WINDOWS
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
        let ratio = mean / base;
        let error = 2.0 * c.cv.unwrap_or(0.0) / (c.count.max(1) as f64).sqrt();
        self.binding_share += (f64::from(u8::from(binding)) - self.binding_share) / 8.0;
        // A limit that bound in most recent windows faces sustained demand, not a burst
        // (CoDel's "bad queue" persists, a "good queue" drains): hold it to the tighter
        // tolerance.
        let tolerance = if self.binding_share >= SUSTAINED_SHARE {
            self.sustained_tolerance
        } else {
            self.tolerance
        };
        let allowance = tolerance + error;
        let far = ratio <= 1.0 + (allowance - 1.0) / 2.0;
        // In slow start the limit grows within the window: binding means the in-flight count
        // reached the limit the window opened with.
        let queued = ratio > allowance;
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
        self.remember(mean);
        if !binding {
            return before;
        }
        self.last = Some((c.mean_duration(), ratio / allowance));
        // Rule 6: demand in bursts (few admissions fill the limit, none of the last windows
        // pressed on it). A queue that drains is not cut; a limit that sheds more than the
        // budget while the window did not queue doubles (once per two windows, as below).
        if self.full_share < BURST_FULL_SHARE
            && full_now < BURST_FULL_NOW
            && self.pressed_run < PRESSED_RUN
        {
            if queued {
                self.grew = false;
                return before;
            }
            if full_now > BURST_SHED_BUDGET {
                if !std::mem::take(&mut self.grew) {
                    self.grew = true;
                    return before * self.growth;
                }
                return before;
            }
        }
        let doubled = std::mem::take(&mut self.grew);
        if ratio <= allowance {
            if far && !doubled && self.binding_share < SUSTAINED_SHARE {
                // The next window's RTTs are mostly those of requests admitted under the old
                // limit, so it only holds (BBR, too, waits a round trip after a gain).
                self.grew = true;
                before * self.growth
            } else if far {
                before
            } else {
                before + 1.0
            }
        } else {
            let g = (allowance / ratio).clamp(0.5, 1.0);
            before * (1.0 - self.smoothing + self.smoothing * g)
        }
    }

    /// A queue that stands: [`PRESSED_RUN`] windows in a row queued while most of their
    /// admissions filled the limit, or [`SUSTAINED_RUN`] binding windows in a row queued.
    fn sustained_queue(&self) -> bool {
        self.pressed_run >= PRESSED_RUN || self.queued_run >= SUSTAINED_RUN
    }

    /// The lowest the limit may go in this window: the burst room (or the limit, if already
    /// below it) while the demand comes in bursts, `min_limit` once it is sustained (a queue
    /// that stands, or a limit that bound in most recent windows).
    fn floor(&self, before: f64) -> f64 {
        if self.sustained_queue() || self.binding_share >= SUSTAINED_SHARE {
            self.min as f64
        } else {
            self.burst_room().min(before)
        }
    }

    /// A window in which the limit did not bind: the limit sheds nothing and stays, unless it
    /// is above what a small pool's bursts need ([`burst_room`](Self::burst_room)); then it
    /// decays toward that by `backoff` per window, so that a sudden overload finds it near the
    /// knee rather than at the burst floor.
    fn decay(&self, before: f64, next: f64) -> f64 {
        match self.decay_to(before) {
            Some(target) => next.min(target),
            None => next.max(before),
        }
    }

    /// Where a limit that did not bind decays to, if it does: `backoff` per window toward a
    /// small pool's burst room.
    fn decay_to(&self, before: f64) -> Option<f64> {
        let room = self.burst_room();
        (before > room && room < self.burst_floor as f64).then(|| room.max(before * self.backoff))
    }

    /// What the bursts of a healthy service need in flight, at most the burst floor: the
    /// knee Little's law gives (the recent completion rate times the no-queue baseline)
    /// times `BURST_ROOM + BURST_ROOM_CV2 × CV²` (a dispersed service queues deeper in its
    /// own bursts). Below the burst floor only for small pools with little dispersion.
    fn burst_room(&self) -> f64 {
        let floor = self.burst_floor as f64;
        match (self.guard.mean_rate(), self.baseline_secs()) {
            (Some(rate), Some(base)) if rate * base > 0.0 => {
                let knee = rate * base;
                (knee * (BURST_ROOM + BURST_ROOM_CV2 * self.cv * self.cv))
                    .clamp(self.min as f64, floor)
            }
            _ => floor,
        }
    }
}

impl LimitAlgorithm for Headroom {
    fn name(&self) -> &'static str {
        "headroom"
    }

    fn limit(&self) -> usize {
        let limit = self.first_round.map_or(self.limit, |v| v as f64);
        super::clamp_limit(limit, self.min, self.max)
    }

    fn update(&mut self, sample: &Sample) -> usize {
        // Slow start (TCP's, per acknowledgement): every success admitted while at least half
        // the current limit was in flight raises the limit by the completions it stands for,
        // so a binding limit doubles per round trip; a limit at most twice the demand's peak
        // does not bind and stays.
        if self.windows.closed() == 0 {
            self.started.get_or_insert(sample.now);
        }
        // Rule 7: feedback has arrived; from now on the limit is the algorithm's own.
        self.first_round = None;
        if self.slow_start
            && !self.paused
            && sample.outcome == Outcome::Success
            && sample.in_flight.saturating_mul(2) as f64 >= self.limit.floor()
        {
            self.limit = (self.limit + SLOW_START_GAIN * f64::from(sample.weight.max(1)))
                .min(self.max as f64);
        }
        if sample.outcome != Outcome::Ignored {
            self.seen += 1;
            // In slow start each success opens two more slots, so a full limiter admits
            // three requests per completion, the last of which fills it: count those too.
            let slack = if self.slow_start {
                SLOW_START_GAIN
            } else {
                0.0
            };
            let at = if sample.limit > 0 {
                sample.limit as f64
            } else {
                self.opened.floor()
            };
            let full = sample.in_flight as f64 + slack >= at;
            self.full += u64::from(full);
        }
        let Some(c) = self.windows.push(sample) else {
            return self.limit();
        };
        let before = self.limit;
        let was_slow = self.slow_start;
        let proposal = self.propose(&c);
        self.guard.observe(&c);
        if let Some(cv) = c.cv {
            // The first window's CV seeds the average.
            self.cv = match self.windows.closed() {
                1 => cv,
                _ => self.cv + (cv - self.cv) / CV_WINDOWS,
            };
        }
        let floor = self.floor(before);
        (self.seen, self.full) = (0, 0);
        let binding = c.max_in_flight as f64 >= before.floor();
        if was_slow {
            // Slow start's own proposal stands (its drain included); only a limit above a
            // small pool's burst room decays.
            let proposal = match self.decay_to(before) {
                Some(target) if !binding && !c.dropped() => proposal.min(target),
                _ => proposal,
            };
            self.limit = self.clamp(proposal.max(floor));
            self.opened = self.limit;
            return self.limit();
        }
        let steered = self.guard.steer(proposal, c.dropped());
        // Under sustained demand without a fall in the completion rate, the guard may hold
        // the limit against the latency rule's cuts, never raise it: there `F` is the standing
        // queue's own in-flight count, and its probes would ratchet the limit up.
        let rate_fell = self.rate_fell();
        let mut next = if rate_fell || self.binding_share < SUSTAINED_SHARE {
            steered
        } else {
            steered.min(before).max(proposal)
        };
        if !binding && !c.dropped() {
            next = self.decay(before, next);
        }
        self.limit = self.clamp(next.max(floor));
        self.opened = self.limit;
        self.limit()
    }

    fn estimates(&self) -> Estimates {
        Estimates {
            min_rtt: self.baseline(),
            short_rtt: self.last.map(|(d, _)| d),
            gradient: self.last.map(|(_, q)| q),
            queue: self.guard.estimate(),
            probing: Some(self.guard.guarding()),
            ..Estimates::default()
        }
    }

    /// Yes: it aggregates windows, and counts completions by each sample's
    /// [`weight`](Sample::weight), so the limiter may measure only every 2^k-th permit.
    fn aggregates_samples(&self) -> bool {
        true
    }
}

/// Builder for [`Headroom`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct HeadroomBuilder {
    initial: usize,
    min: usize,
    burst_floor: usize,
    max: usize,
    tolerance: f64,
    sustained_tolerance: f64,
    backoff: f64,
    baseline_windows: usize,
    dispersion_samples: f64,
    guard_windows: usize,
    margin: f64,
    timeout: Duration,
    growth: f64,
    slow_start: bool,
    first_round: usize,
}

impl Default for HeadroomBuilder {
    fn default() -> Self {
        Self {
            initial: 20,
            // 20, not 2: the small-pool floor is opt-in (see `burst_floor`). With a floor of
            // 2 the simulator's 4-worker overload check passes, but a 4-worker bimodal pool
            // at 0.9× load sheds 3.1 % (a healthy service harmed) and the real-socket drill
            // did not improve; measured in session 6, README "headroom on small pools".
            min: 20,
            burst_floor: 20,
            max: 5000,
            tolerance: 2.0,
            sustained_tolerance: 1.5,
            backoff: 0.9,
            baseline_windows: 1000,
            dispersion_samples: 25.0,
            guard_windows: 8,
            margin: 0.8,
            timeout: Duration::from_secs(5),
            growth: 2.0,
            slow_start: true,
            first_round: FIRST_ROUND_LIMIT,
        }
    }
}

impl HeadroomBuilder {
    /// The starting limit (default 20), from the first sample on: before it the limit is the
    /// [`first_round_limit`](Self::first_round_limit).
    pub fn initial_limit(mut self, v: usize) -> Self {
        self.initial = v;
        self
    }
    /// The floor (default 20): the limit never falls below it. Set it below the
    /// [`burst_floor`](Self::burst_floor) (say to the worker count of a small pool) and the
    /// burst floor holds only while the demand comes in bursts; once a queue stands the
    /// limit may fall to this floor.
    pub fn min_limit(mut self, v: usize) -> Self {
        self.min = v;
        self
    }
    /// The floor while the demand comes in bursts (default 20, Netflix's floor; raised to
    /// `min_limit` if below it). A small pool with dispersed service needs many times its
    /// workers in flight to absorb its own bursts, which drain; a queue that stands (three
    /// binding windows in a row that queued, or a limit that bound in three quarters of
    /// recent windows) is demand above the knee, and there the limit may fall to
    /// `min_limit`: a 4-worker pool held at 20 in flight queues four service times behind
    /// every request.
    pub fn burst_floor(mut self, v: usize) -> Self {
        self.burst_floor = v;
        self
    }
    /// The ceiling (default 5000: a limit that does not bind sheds nothing and is never
    /// raised, so the ceiling only bounds growth under sustained demand).
    pub fn max_limit(mut self, v: usize) -> Self {
        self.max = v;
        self
    }
    /// How many times the baseline a binding window's mean RTT may be before it counts as
    /// queueing, before the noise allowance, in `[1, 100]` (default 2).
    pub fn tolerance(mut self, v: f64) -> Self {
        self.tolerance = v;
        self
    }
    /// The tolerance once the limit has bound in most recent windows (sustained demand rather
    /// than bursts), in `[1, 100]` (default 1.5, Netflix's Gradient2 tolerance).
    pub fn sustained_tolerance(mut self, v: f64) -> Self {
        self.sustained_tolerance = v;
        self
    }
    /// Multiplicative decrease on a drop or timeout, in `[0.5, 1)` (default 0.9).
    pub fn backoff_ratio(mut self, v: f64) -> Self {
        self.backoff = v;
        self
    }
    /// Window means the baseline percentile is taken over (default 1000, at least 1).
    pub fn baseline_windows(mut self, v: usize) -> Self {
        self.baseline_windows = v;
        self
    }
    /// A window needs `dispersion_samples × CV²` successes (10 to 400), so that its mean's
    /// standard error is about `1/√dispersion_samples` (default 25: 20 %).
    pub fn dispersion_samples(mut self, v: f64) -> Self {
        self.dispersion_samples = v;
        self
    }
    /// Windows in the Little's-law filters (default 8).
    pub fn guard_windows(mut self, v: usize) -> Self {
        self.guard_windows = v;
        self
    }
    /// The guard engages below `margin × F`, in `(0, 1]` (default 0.8).
    pub fn margin(mut self, v: f64) -> Self {
        self.margin = v;
        self
    }
    /// An RTT at or above this counts as a drop (default 5 s).
    pub fn timeout(mut self, v: Duration) -> Self {
        self.timeout = v;
        self
    }

    /// The factor a binding limit grows by per window while the mean RTT shows no sign of
    /// queueing, in `[1, 4]` (default 2, as BBR's startup roughly doubles per round trip).
    pub fn growth(mut self, v: f64) -> Self {
        self.growth = v;
        self
    }

    /// Whether to start in slow start (default yes): the limit doubles per round trip while
    /// it binds and the RTT shows no queue, until the first binding window that queues.
    pub fn slow_start(mut self, v: bool) -> Self {
        self.slow_start = v;
        self
    }

    /// The limit until the first sample arrives (default 100; never below the initial
    /// limit, at most the ceiling). Before any request has completed nothing is known of the
    /// service, and the initial limit would shed most of a large pool's first round trip; from
    /// the first sample on the limit is the initial limit, grown by slow start. Set it to the
    /// initial limit to admit no more than that before any feedback.
    pub fn first_round_limit(mut self, v: usize) -> Self {
        self.first_round = v;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Headroom, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_range("tolerance", self.tolerance, 1.0, 100.0)?;
        check_range("sustained_tolerance", self.sustained_tolerance, 1.0, 100.0)?;
        check_range("margin", self.margin, f64::MIN_POSITIVE, 1.0)?;
        check_range("growth", self.growth, 1.0, 4.0)?;
        check_range("dispersion_samples", self.dispersion_samples, 0.0, 10_000.0)?;
        if !(self.backoff.is_finite() && (0.5..1.0).contains(&self.backoff)) {
            return Err(ConfigError::new(
                "backoff_ratio",
                format!("must be within [0.5, 1), got {}", self.backoff),
            ));
        }
        if self.baseline_windows == 0 {
            return Err(ConfigError::new("baseline_windows", "must be at least 1"));
        }
        if self.guard_windows == 0 {
            return Err(ConfigError::new("guard_windows", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        Ok(Headroom {
            limit: self.initial as f64,
            min: self.min,
            burst_floor: self.burst_floor.clamp(self.min, self.max),
            max: self.max,
            queued_run: 0,
            seen: 0,
            full: 0,
            pressed_run: 0,
            cv: 1.0,
            tolerance: self.tolerance,
            sustained_tolerance: self.sustained_tolerance,
            backoff: self.backoff,
            smoothing: 0.2,
            growth: self.growth,
            grew: false,
            binding_share: 0.0,
            full_share: 0.0,
            baseline_windows: self.baseline_windows,
            means: VecDeque::with_capacity(self.baseline_windows.min(4096) + 1),
            sorted_means: Vec::with_capacity(self.baseline_windows.min(4096) + 1),
            windows: Windows::new(WindowConfig {
                min_window: Duration::from_millis(20),
                max_window: Duration::from_millis(100),
                min_samples: 10,
                max_samples: 400,
                dispersion_samples: self.dispersion_samples,
                timeout: self.timeout,
            }),
            guard: LittlesLaw::new(self.guard_windows, self.margin),
            last: None,
            rates: VecDeque::with_capacity(self.baseline_windows.min(4096) + 1),
            slow_start: self.slow_start,
            paused: false,
            queued_windows: 0,
            slow_start_rate: 0.0,
            flat_windows: 0,
            opened: self.initial as f64,
            started: None,
            first_round: Some(self.first_round.clamp(self.initial, self.max)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Feeds one sample every 2 ms with `rtt` and `in_flight` until a window closes.
    fn window(h: &mut Headroom, t: &mut Duration, rtt: Duration, in_flight: usize, drop: bool) {
        let closed = h.windows.closed();
        while h.windows.closed() == closed {
            let s = if drop {
                Sample::dropped(*t, rtt, in_flight)
            } else {
                Sample::success(*t, rtt, in_flight)
            };
            h.update(&s);
            *t += ms(2);
        }
    }

    /// The baseline kept in order equals a selection over the remembered means, through the
    /// ring's wrap-around, with repeated values and a window of one.
    #[test]
    fn the_ordered_baseline_equals_a_selection_over_the_ring() {
        for windows in [1usize, 7, 50] {
            let mut h = Headroom::builder()
                .baseline_windows(windows)
                .build()
                .unwrap();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for i in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Coarse values so that duplicates occur.
                let mean = (x % 40) as f64 * 0.001;
                h.remember(mean);
                let mut v: Vec<f64> = h.means.iter().copied().collect();
                let k = ((v.len() - 1) as f64 * BASELINE_PERCENTILE).round() as usize;
                let (_, want, _) = v.select_nth_unstable_by(k, f64::total_cmp);
                assert_eq!(
                    h.baseline_secs(),
                    Some(*want),
                    "windows {windows}, step {i}"
                );
                assert_eq!(h.sorted_means.len(), h.means.len());
            }
        }
    }

    #[test]
    fn table_binding_windows_against_the_baseline() {
        // No guard (margin ~0), no dispersion sizing (constant RTTs: CV 0, no error term).
        let mut h = Headroom::builder()
            .initial_limit(40)
            .min_limit(2)
            .max_limit(1000)
            .margin(1e-9)
            .dispersion_samples(0.0)
            .slow_start(false)
            .build()
            .unwrap();
        let mut t = Duration::ZERO;
        // Warm-up: the first window closes 20 ms after the first sample, under 4 × its 10 ms
        // mean: it holds and teaches no baseline.
        window(&mut h, &mut t, ms(10), 40, false);
        assert_eq!((h.limit(), h.baseline()), (40, None));
        // Baseline = 10th percentile of the means so far (rank round(0.1·(n−1))): 10 ms.
        // 10 ms: ratio 1 ≤ 1 + (2 − 1)/2 = 1.5, far from the knee: doubles, 40 → 80.
        window(&mut h, &mut t, ms(10), 40, false);
        assert_eq!(h.limit(), 80);
        // 17 ms: ratio 1.7 ≤ 2 but > 1.5: +1.
        window(&mut h, &mut t, ms(17), 80, false);
        assert_eq!(h.limit(), 81);
        // 30 ms: ratio 3 > 2: g = 2/3, L = 81 · (0.8 + 0.2 · 2/3) = 75.6.
        window(&mut h, &mut t, ms(30), 81, false);
        assert!((h.limit - 75.6).abs() < 1e-9, "{}", h.limit);
        assert_eq!(h.limit(), 75);
        // 50 ms but in-flight 10 < 75: the limit did not bind, so it holds.
        window(&mut h, &mut t, ms(50), 10, false);
        assert!((h.limit - 75.6).abs() < 1e-9);
        // 100 ms binding: ratio 10, g clamped to 0.5: L = 75.6 · 0.9 = 68.04.
        window(&mut h, &mut t, ms(100), 75, false);
        assert!((h.limit - 68.04).abs() < 1e-9, "{}", h.limit);
        // A drop backs off by 0.9, binding or not: 61.236.
        window(&mut h, &mut t, ms(10), 1, true);
        assert!((h.limit - 61.236).abs() < 1e-9, "{}", h.limit);
        assert_eq!(h.baseline(), Some(ms(10)));
    }

    #[test]
    fn noise_allowance_widens_with_dispersion() {
        // Two windows, both with mean 25 ms against a 10 ms baseline (ratio 2.5, tolerance 2):
        // constant RTTs count as queueing; RTTs alternating 5 and 45 ms (CV 0.8, 11 samples:
        // allowance 2 + 2 · 0.8/√11 = 2.48) do not.
        let build = || {
            Headroom::builder()
                .initial_limit(40)
                .min_limit(2)
                .margin(1e-9)
                .dispersion_samples(0.0)
                .slow_start(false)
                .build()
                .unwrap()
        };
        let mut t = Duration::ZERO;
        let mut calm = build();
        window(&mut calm, &mut t, ms(10), 40, false); // warm-up
        window(&mut calm, &mut t, ms(10), 40, false);
        let l = calm.limit();
        window(&mut calm, &mut t, ms(25), l, false);
        assert!(calm.limit() < l, "{} vs {l}", calm.limit());
        let mut noisy = build();
        let mut t = Duration::ZERO;
        window(&mut noisy, &mut t, ms(10), 40, false); // warm-up
        window(&mut noisy, &mut t, ms(10), 40, false);
        let l = noisy.limit();
        let closed = noisy.windows.closed();
        let mut i = 0u64;
        while noisy.windows.closed() == closed {
            let rtt = if i.is_multiple_of(2) { ms(45) } else { ms(5) };
            noisy.update(&Sample::success(t, rtt, l));
            t += ms(2);
            i += 1;
        }
        assert!(noisy.limit() > l, "{} vs {l}", noisy.limit());
    }

    #[test]
    fn finds_the_knee_and_keeps_it_through_a_uniform_slowdown() {
        use super::super::window_stats::fluid_pool;
        // 48 workers at 30 ms with demand above any limit from the start: within 2 s the limit
        // sits between the knee and the tolerance (2 × 48), then every request becomes 4x
        // slower and the guard keeps the limit near the knee. (Without slow start: from a start
        // under overload in this fluid model, slow start ends on the rate plateau well above
        // the knee and the limit is still near 290 after 2000 samples.)
        let no_slow_start = || Headroom::builder().slow_start(false).build().unwrap();
        let mut h = no_slow_start();
        let mut t = Duration::ZERO;
        let warm = fluid_pool(&mut h, &mut t, 48, ms(30), 3000);
        let settled = warm[2000..].iter().sum::<usize>() / 1000;
        assert!((48..=100).contains(&settled), "{settled}");
        let slow = fluid_pool(&mut h, &mut t, 48, ms(120), 1000);
        let after = slow.iter().sum::<usize>() / slow.len();
        assert!(after >= 40, "{settled} then {after}");
        // A pool that halves (24 workers, same speed): the limit falls.
        let mut h = no_slow_start();
        let mut t = Duration::ZERO;
        fluid_pool(&mut h, &mut t, 48, ms(30), 3000);
        let halved = fluid_pool(&mut h, &mut t, 24, ms(30), 3000);
        let tail = halved[2000..].iter().sum::<usize>() / 1000;
        assert!(tail < settled, "{settled} then {tail}");
    }

    /// `workers` workers of `service` each behind a FIFO, with demand above any limit: a
    /// request admitted at `a` completes at `max(a + service, previous + service / workers)`,
    /// and each completion frees a permit that is taken again at once. An RTT is the time since
    /// admission, so through a standing queue it lags the limit by about one RTT, as on a real
    /// socket. Returns the limit after every 100 completions.
    fn standing_queue(
        h: &mut Headroom,
        workers: u32,
        service: Duration,
        t: &mut Duration,
        completions: usize,
    ) -> Vec<usize> {
        let mut queue: VecDeque<(Duration, usize, Duration)> = VecDeque::new();
        let mut last = *t;
        // Exponential service times from a fixed xorshift sequence.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut exp = |mean: Duration| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            mean.mul_f64(-(((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64).ln())
        };
        let mut out = Vec::new();
        for i in 0..completions {
            while queue.len() < h.limit() {
                last = (*t + exp(service)).max(last + exp(service / workers));
                queue.push_back((*t, queue.len() + 1, last));
            }
            if let Some((admitted, in_flight, done)) = queue.pop_front() {
                *t = done;
                h.update(&Sample::success(*t, *t - admitted, in_flight));
            }
            if i % 100 == 99 {
                out.push(h.limit());
            }
        }
        out
    }

    #[test]
    fn a_standing_queue_does_not_ratchet_the_limit_up() {
        // 8 workers at 40 ms (200/s): 60 s at half load (a clean baseline), then 60 s of
        // sustained overload, floor 4. The latency rule cuts toward the knee (8); the guard's
        // F there is only the lagged in-flight count of the standing queue, and its 1.25 probe
        // used to lift the limit past it at every cut (to 1151 within 60 s).
        let mut h = Headroom::builder()
            .min_limit(4)
            .initial_limit(20)
            .build()
            .unwrap();
        let mut t = Duration::ZERO;
        for _ in 0..6000 {
            t += ms(10);
            h.update(&Sample::success(t, ms(40), 4));
        }
        let limits = standing_queue(&mut h, 8, ms(40), &mut t, 12_000);
        let tail = &limits[20..];
        let peak = tail.iter().copied().max().unwrap_or(0);
        let mean = tail.iter().sum::<usize>() / tail.len();
        assert!(
            peak <= 64 && mean <= 32,
            "peak {peak}, mean {mean}: {limits:?}"
        );
    }

    #[test]
    fn table_slow_start_grows_per_success_while_half_the_limit_is_in_flight() {
        let mut h = Headroom::default();
        let t = ms(1);
        // Limit 20: a success admitted at 10 in flight (2 · 10 ≥ 20) adds SLOW_START_GAIN = 2.
        h.update(&Sample::success(t, ms(30), 10));
        assert_eq!(h.limit(), 22);
        // At 22, 10 in flight is under half: no growth.
        h.update(&Sample::success(t, ms(30), 10));
        assert_eq!(h.limit(), 22);
        // A sample standing for 4 completions (sampled every 4th permit) adds 2 · 4.
        h.update(&Sample {
            weight: 4,
            ..Sample::success(t, ms(30), 11)
        });
        assert_eq!(h.limit(), 30);
        // A drop does not grow it.
        h.update(&Sample::dropped(t, ms(30), 30));
        assert_eq!(h.limit(), 30);
        // Without slow start nothing grows before a window closes.
        let mut off = Headroom::builder().slow_start(false).build().unwrap();
        off.update(&Sample::success(t, ms(30), 20));
        assert_eq!(off.limit(), 20);
    }

    #[test]
    fn slow_start_ends_on_a_rate_plateau_and_drains_to_the_knee() {
        // One success every 0.1 ms at 10 ms, whatever the limit: a service that completes
        // 10 000/s at most (a knee of 100 in flight). Slow start grows the limit per success;
        // the completion rate does not grow by a quarter within three growing windows, so slow
        // start ends and the limit drains to 1.5 × the Little's-law estimate: max rate
        // 10 000/s × min mean RTT 10 ms = 100, so 150.
        let mut h = Headroom::builder().dispersion_samples(0.0).build().unwrap();
        let mut t = Duration::ZERO;
        let mut peak = 0;
        for _ in 0..2000 {
            t += Duration::from_micros(100);
            let l = h.limit();
            peak = peak.max(l);
            h.update(&Sample::success(t, ms(10), l));
            if !h.slow_start {
                break;
            }
        }
        assert!(!h.slow_start, "slow start did not end: {}", h.limit());
        assert!(peak > 150, "{peak}");
        assert!((140..=150).contains(&h.limit()), "{}", h.limit());
    }

    #[test]
    fn a_small_pool_under_sustained_overload_falls_below_the_burst_floor() {
        // 4 workers at 20 ms (200/s): 20 s at half load (in-flight 2, a clean baseline), then
        // sustained overload through a standing queue, with the small-pool floor opted into
        // (`min_limit` 2; the default is 20). The floor of 20 used to hold the limit
        // at five times the workers (a queue of four service times behind every request).
        let mut h = Headroom::builder().min_limit(2).build().unwrap();
        let mut t = Duration::ZERO;
        for _ in 0..2000 {
            t += ms(10);
            h.update(&Sample::success(t, ms(20), 2).at_limit(h.limit()));
        }
        let limits = standing_queue(&mut h, 4, ms(20), &mut t, 4000);
        let tail = &limits[20..];
        let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
        assert!((4.0..=12.0).contains(&mean), "mean {mean}: {limits:?}");
    }

    #[test]
    fn an_idle_limit_decays_to_a_small_pools_burst_room_only() {
        // Half load on 4 workers (100/s, 2 in flight): the limit never binds. With constant
        // 20 ms RTTs (CV 0) the burst room is 6 × the knee (100/s × 20 ms = 2): 12, and the
        // unused limit decays from 20 toward it. With RTTs of 1 and 59 ms in turn (CV 0.97)
        // the room is (6 + 4 × 0.93) × 3 ≈ 29, over the burst floor: the limit stays at 20.
        let run = |rtt: &dyn Fn(u64) -> Duration| {
            let mut h = Headroom::builder().min_limit(2).build().unwrap();
            let mut t = Duration::ZERO;
            for i in 0..3000u64 {
                t += ms(10);
                h.update(&Sample::success(t, rtt(i), 2).at_limit(h.limit()));
            }
            h.limit()
        };
        let calm = run(&|_| ms(20));
        assert!((10..=14).contains(&calm), "{calm}");
        let dispersed = run(&|i| if i.is_multiple_of(2) { ms(1) } else { ms(59) });
        assert_eq!(dispersed, 20);
    }

    #[test]
    fn isolated_bursts_keep_the_burst_floor() {
        // Every fourth window is a burst that fills the limit and queues (3× the baseline);
        // the others are idle. No queue stands, so the limit stays at the burst floor.
        let mut h = Headroom::builder()
            .dispersion_samples(0.0)
            .slow_start(false)
            .build()
            .unwrap();
        let mut t = Duration::ZERO;
        for k in 0..200 {
            let l = h.limit();
            if k % 4 == 3 {
                window(&mut h, &mut t, ms(60), l, false);
            } else {
                window(&mut h, &mut t, ms(20), l / 2, false);
            }
        }
        assert!(h.limit() >= 20, "{}", h.limit());
    }

    /// Feeds one window of samples every 2 ms with `rtt`, a `full` share of them admitted
    /// into the last free slot (`in_flight` = the limit), the others at half the limit.
    fn window_full(h: &mut Headroom, t: &mut Duration, rtt: Duration, full: f64) {
        let closed = h.windows.closed();
        let mut i = 0u64;
        while h.windows.closed() == closed {
            let l = h.limit();
            let at = if (i as f64 * full).fract() + full >= 1.0 {
                l
            } else {
                l / 2
            };
            h.update(&Sample::success(*t, rtt, at).at_limit(l));
            *t += ms(2);
            i += 1;
        }
    }

    #[test]
    fn bursts_that_fill_the_limit_now_and_then_grow_it_sustained_demand_does_not() {
        let build = || {
            Headroom::builder()
                .initial_limit(40)
                .dispersion_samples(0.0)
                .slow_start(false)
                .build()
                .unwrap()
        };
        // A baseline of 10 ms (a warm-up window first).
        let calm = |h: &mut Headroom, t: &mut Duration| {
            for _ in 0..20 {
                window_full(h, t, ms(10), 0.0);
            }
        };
        // One admission in ten fills the limit, no queue: the limit sheds a healthy service's
        // bursts and doubles (every other window).
        let mut h = build();
        let mut t = Duration::ZERO;
        calm(&mut h, &mut t);
        let l = h.limit();
        window_full(&mut h, &mut t, ms(12), 0.1);
        assert_eq!(h.limit(), 2 * l);
        window_full(&mut h, &mut t, ms(12), 0.1);
        assert_eq!(h.limit(), 2 * l);
        // The same bursts queue (3× the baseline): held, not cut.
        window_full(&mut h, &mut t, ms(30), 0.1);
        assert_eq!(h.limit(), 2 * l);
        // Sustained: every admission fills the limit and the window queues: cut.
        let mut h = build();
        let mut t = Duration::ZERO;
        calm(&mut h, &mut t);
        let l = h.limit();
        window_full(&mut h, &mut t, ms(30), 1.0);
        assert!(h.limit() < l, "{} vs {l}", h.limit());
    }

    #[test]
    fn the_first_round_limit_holds_until_the_first_sample() {
        // Before any sample: the first-round limit (100), whatever the initial limit below it.
        let mut h = Headroom::default();
        assert_eq!(h.limit(), FIRST_ROUND_LIMIT);
        // The first sample hands over to the initial limit (20), here grown once by slow start
        // (admitted at 10 in flight: half of 20).
        h.update(&Sample::success(ms(300), ms(300), 10));
        assert_eq!(h.limit(), 22);
        // Never below the initial limit, never above the ceiling; at the initial limit it
        // admits no more than that before feedback.
        let limit = |b: HeadroomBuilder| b.build().unwrap().limit();
        assert_eq!(limit(Headroom::builder().first_round_limit(20)), 20);
        assert_eq!(limit(Headroom::builder().initial_limit(300)), 300);
        assert_eq!(limit(Headroom::builder().max_limit(60)), 60);
        // An ignored outcome is feedback too: it ends the first round.
        let mut h = Headroom::default();
        h.update(&Sample {
            outcome: Outcome::Ignored,
            ..Sample::success(ms(1), ms(1), 1)
        });
        assert_eq!(h.limit(), 20);
    }

    #[test]
    fn bad_config_names_the_field() {
        let field = |b: HeadroomBuilder| b.build().unwrap_err().field();
        let b = Headroom::builder;
        assert_eq!(field(b().min_limit(0)), "min_limit");
        assert_eq!(field(b().initial_limit(1)), "initial_limit");
        assert_eq!(field(b().tolerance(0.5)), "tolerance");
        assert_eq!(field(b().tolerance(f64::NAN)), "tolerance");
        assert_eq!(field(b().sustained_tolerance(0.9)), "sustained_tolerance");
        assert_eq!(field(b().margin(0.0)), "margin");
        assert_eq!(field(b().growth(5.0)), "growth");
        assert_eq!(field(b().backoff_ratio(1.0)), "backoff_ratio");
        assert_eq!(field(b().baseline_windows(0)), "baseline_windows");
        assert_eq!(field(b().guard_windows(0)), "guard_windows");
        assert_eq!(field(b().dispersion_samples(-1.0)), "dispersion_samples");
        assert_eq!(field(b().timeout(Duration::ZERO)), "timeout");
    }
}

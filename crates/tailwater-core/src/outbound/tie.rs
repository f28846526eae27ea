//! Tied requests ("The Tail at Scale", Dean & Barroso 2013), the server side.
//!
//! A client sends one request to two servers, both copies tagged with the same *tie id*. A
//! copy waits in its server's admission queue; the server that **starts** it first tells the
//! other, whose queued copy is then dropped without running. Most of the time only one copy
//! runs, so a tied request costs about one execution, and it waits in the shorter of two
//! queues. (Hedging waits for a delay and then sends a second copy; tying sends both at
//! once and lets the queues race.)
//!
//! [`TieRegistry`] is the per-server state, with no I/O: the tower layers
//! (tailwater-tower's `outbound::tie`) and the simulator run it.
//!
//! - [`arrive`](TieRegistry::arrive) when a copy arrives: a copy whose tie is already known
//!   here as started or cancelled is dropped at once (the cancellation arrived before it —
//!   "cancellation on the second arrival");
//! - [`start`](TieRegistry::start) when the admission queue hands the copy a slot: `true`
//!   means run it (and tell the peer to cancel), `false` means it was cancelled while
//!   queued;
//! - [`cancel`](TieRegistry::cancel) when the peer says it started its copy: a queued copy
//!   here is woken and dropped; a copy already running here runs on (both ran: the race was
//!   lost by the cancellation's network delay, the paper's "both servers may execute").
//!
//! Ties are tracked only for a bounded time and number: every entry expires after its ttl
//! (the request's remaining deadline, capped at [`TieConfig::max_ttl`]), and a full registry
//! tracks no new tie ([`Arrival::Untracked`]: the copy runs as an ordinary request) rather
//! than evicting a live one. Forgetting fails open: at worst both copies run.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock, duration_to_nanos};
use crate::error::ConfigError;

/// The registry's knobs.
///
/// | field | default | why |
/// |---|---|---|
/// | `capacity` | 65 536 | ties tracked at once; a server queueing more than this many tied copies has bigger problems |
/// | `max_ttl` | 30 s | an entry outlives no request; a request without a deadline is tracked this long |
/// | `max_id_len` | 64 | bytes of a tie id (a UUID is 36): longer ids are not tracked |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieConfig {
    /// Ties tracked at once (1..=16 M).
    pub capacity: usize,
    /// The longest an entry is kept (1 ms..=1 h).
    pub max_ttl: Duration,
    /// The longest tie id tracked, in bytes (1..=1024).
    pub max_id_len: usize,
}

impl Default for TieConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_ttl: Duration::from_secs(30),
            max_id_len: 64,
        }
    }
}

impl TieConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 || self.capacity > 1 << 24 {
            return Err(ConfigError::new(
                "capacity",
                format!("must be in 1..=16777216, got {}", self.capacity),
            ));
        }
        if self.max_ttl < Duration::from_millis(1) || self.max_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "max_ttl",
                format!("must be in [1 ms, 1 h], got {:?}", self.max_ttl),
            ));
        }
        if self.max_id_len == 0 || self.max_id_len > 1024 {
            return Err(ConfigError::new(
                "max_id_len",
                format!("must be in 1..=1024, got {}", self.max_id_len),
            ));
        }
        Ok(())
    }
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

/// The shared state of one queued copy: the registry cancels it, the copy's holder waits
/// on it.
#[derive(Default)]
struct Signal {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn cancel(&self) -> bool {
        let won = self
            .state
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won
            && let Some(w) = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            w.wake();
        }
        won
    }
}

/// A queued copy's handle, from [`TieRegistry::arrive`]: pass it to
/// [`TieRegistry::start`], or wait on [`poll_cancelled`](TieTicket::poll_cancelled).
pub struct TieTicket {
    id: Box<str>,
    signal: Arc<Signal>,
}

impl fmt::Debug for TieTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieTicket")
            .field("id", &self.id)
            .field("state", &self.signal.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl TieTicket {
    /// The tie id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the peer cancelled this copy before it started.
    pub fn is_cancelled(&self) -> bool {
        self.signal.state.load(Ordering::Acquire) == CANCELLED
    }

    /// `Ready(())` once the copy is cancelled while queued; pending otherwise (forever once
    /// it started: a running copy is never cancelled).
    pub fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        *self
            .signal
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // Re-check: a cancel between the load and the store would have found no waker.
        if self.is_cancelled() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What to do with an arriving copy.
#[derive(Debug)]
pub enum Arrival {
    /// Queue it as usual; [`TieRegistry::start`] it when it gets a slot.
    Track(TieTicket),
    /// Drop it now: its tie already started here or elsewhere, or another copy with the same
    /// id is queued here.
    Drop,
    /// Not tracked (registry full or id too long): run it as an ordinary request.
    Untracked,
}

struct Entry {
    expires: u64,
    signal: Arc<Signal>,
}

struct Inner {
    map: HashMap<Box<str>, Entry>,
    /// No entry expires before this (skip purges until then).
    next_expiry: u64,
}

/// Counts since the registry was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TieStats {
    /// Copies tracked on arrival.
    pub tracked: u64,
    /// Copies dropped on arrival (their tie was known as started or cancelled).
    pub dropped_on_arrival: u64,
    /// Queued copies cancelled by the peer.
    pub cancelled_queued: u64,
    /// Cancellations that came too late (the copy was running).
    pub cancel_too_late: u64,
    /// Copies not tracked (full registry or id too long).
    pub untracked: u64,
}

/// One server's tied-request state (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::outbound::{Arrival, TieConfig, TieRegistry};
/// let (a, b) = (
///     TieRegistry::with_clock(TieConfig::default(), ManualClock::new())?,
///     TieRegistry::with_clock(TieConfig::default(), ManualClock::new())?,
/// );
/// let ttl = Duration::from_secs(1);
/// let (Arrival::Track(on_a), Arrival::Track(on_b)) = (a.arrive("t1", ttl), b.arrive("t1", ttl)) else {
///     unreachable!()
/// };
/// assert!(a.start(&on_a)); // server A starts first and tells B
/// b.cancel("t1", ttl);
/// assert!(on_b.is_cancelled());
/// assert!(!b.start(&on_b)); // B's queued copy never runs
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct TieRegistry<C: Clock = MonotonicClock> {
    config: TieConfig,
    clock: C,
    inner: Mutex<Inner>,
    stats: Mutex<TieStats>,
}

impl<C: Clock> fmt::Debug for TieRegistry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieRegistry")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl TieRegistry<MonotonicClock> {
    /// A registry on the default clock.
    pub fn new(config: TieConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl<C: Clock> TieRegistry<C> {
    /// A registry reading `clock`.
    pub fn with_clock(config: TieConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            clock,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                next_expiry: u64::MAX,
            }),
            stats: Mutex::new(TieStats::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TieConfig {
        &self.config
    }

    /// Counts since the registry was built.
    pub fn stats(&self) -> TieStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ties tracked now (expired ones included until they are purged).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no tie is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut TieStats)) {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn expiry(&self, now: u64, ttl: Duration) -> u64 {
        now.saturating_add(duration_to_nanos(ttl.min(self.config.max_ttl)))
            .max(now + 1)
    }

    /// Finds `id`'s live entry, or makes room for a new one (`Err(false)`: no room).
    fn entry<'a>(
        &self,
        inner: &'a mut Inner,
        id: &str,
        now: u64,
    ) -> Result<Option<&'a Entry>, bool> {
        if inner.map.get(id).is_some_and(|e| e.expires <= now) {
            inner.map.remove(id);
        }
        if inner.map.contains_key(id) {
            return Ok(inner.map.get(id));
        }
        if inner.map.len() >= self.config.capacity && now >= inner.next_expiry {
            let mut next = u64::MAX;
            inner.map.retain(|_, e| {
                let keep = e.expires > now;
                if keep {
                    next = next.min(e.expires);
                }
                keep
            });
            inner.next_expiry = next;
        }
        if inner.map.len() >= self.config.capacity {
            return Err(false);
        }
        Ok(None)
    }

    fn insert(&self, inner: &mut Inner, id: &str, expires: u64, signal: Arc<Signal>) {
        inner.next_expiry = inner.next_expiry.min(expires);
        inner.map.insert(id.into(), Entry { expires, signal });
    }

    /// A copy of tie `id` arrived; `ttl` is what is left of its deadline (capped at
    /// [`TieConfig::max_ttl`]).
    pub fn arrive(&self, id: &str, ttl: Duration) -> Arrival {
        if id.is_empty() || id.len() > self.config.max_id_len {
            self.count(|s| s.untracked += 1);
            return Arrival::Untracked;
        }
        let now = self.clock.now_nanos();
        let mut inner = self.lock();
        match self.entry(&mut inner, id, now) {
            Ok(Some(_)) => {
                drop(inner);
                self.count(|s| s.dropped_on_arrival += 1);
                Arrival::Drop
            }
            Ok(None) => {
                let signal = Arc::new(Signal::default());
                let expires = self.expiry(now, ttl);
                self.insert(&mut inner, id, expires, Arc::clone(&signal));
                drop(inner);
                self.count(|s| s.tracked += 1);
                Arrival::Track(TieTicket {
                    id: id.into(),
                    signal,
                })
            }
            Err(_) => {
                drop(inner);
                self.count(|s| s.untracked += 1);
                Arrival::Untracked
            }
        }
    }

    /// The copy got its slot: `true` runs it (tell the peer to cancel its copy); `false`
    /// means the peer cancelled it while it queued (drop it).
    pub fn start(&self, ticket: &TieTicket) -> bool {
        ticket
            .signal
            .state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The peer started its copy of tie `id`: a queued copy here is cancelled (`true`); a
    /// copy running here runs on; with no copy here yet, a copy arriving within `ttl` is
    /// dropped on arrival.
    pub fn cancel(&self, id: &str, ttl: Duration) -> bool {
        if id.is_empty() || id.len() > self.config.max_id_len {
            return false;
        }
        let now = self.clock.now_nanos();
        let mut inner = self.lock();
        match self.entry(&mut inner, id, now) {
            Ok(Some(e)) => {
                let signal = Arc::clone(&e.signal);
                drop(inner);
                let won = signal.cancel();
                self.count(|s| {
                    if won {
                        s.cancelled_queued += 1;
                    } else if signal.state.load(Ordering::Acquire) == STARTED {
                        s.cancel_too_late += 1;
                    }
                });
                won
            }
            Ok(None) => {
                let signal = Arc::new(Signal {
                    state: AtomicU8::new(CANCELLED),
                    waker: Mutex::new(None),
                });
                let expires = self.expiry(now, ttl);
                self.insert(&mut inner, id, expires, signal);
                false
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const S: Duration = Duration::from_secs(1);

    fn reg(capacity: usize) -> (TieRegistry<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let cfg = TieConfig {
            capacity,
            ..TieConfig::default()
        };
        (TieRegistry::with_clock(cfg, clock.clone()).unwrap(), clock)
    }

    fn track(a: Arrival) -> TieTicket {
        match a {
            Arrival::Track(t) => t,
            other => panic!("not tracked: {other:?}"),
        }
    }

    #[test]
    fn a_cancel_before_arrival_drops_the_copy_until_it_expires() {
        let (r, clock) = reg(8);
        assert!(!r.cancel("x", S));
        assert!(matches!(r.arrive("x", S), Arrival::Drop));
        clock.advance(S);
        // Expired: a new request with an old id is an ordinary tied copy again.
        let t = track(r.arrive("x", S));
        assert!(r.start(&t));
        assert_eq!(r.stats().dropped_on_arrival, 1);
    }

    #[test]
    fn cancel_wins_over_queued_and_loses_to_running() {
        let (r, _) = reg(8);
        let q = track(r.arrive("q", S));
        let run = track(r.arrive("r", S));
        assert!(r.start(&run));
        assert!(r.cancel("q", S));
        assert!(!r.cancel("r", S), "a running copy is never cancelled");
        assert!(q.is_cancelled() && !r.start(&q));
        assert!(!run.is_cancelled());
        // A duplicate of a tie already here is dropped.
        assert!(matches!(r.arrive("r", S), Arrival::Drop));
        let st = r.stats();
        assert_eq!((st.cancelled_queued, st.cancel_too_late), (1, 1));
    }

    #[test]
    fn bounded_full_registry_tracks_nothing_new_until_entries_expire() {
        let (r, clock) = reg(2);
        let _a = track(r.arrive("a", S));
        let _b = track(r.arrive("b", 2 * S));
        assert!(matches!(r.arrive("c", S), Arrival::Untracked));
        assert!(matches!(r.arrive(&"x".repeat(65), S), Arrival::Untracked));
        clock.advance(S);
        let _c = track(r.arrive("c", S)); // "a" expired and was purged
        assert_eq!(r.len(), 2);
        // The ttl is capped.
        clock.advance(10 * S);
        let _d = track(r.arrive("d", Duration::from_secs(3600)));
        clock.advance(31 * S);
        assert!(matches!(r.arrive("d", S), Arrival::Track(_)));
    }

    #[test]
    fn a_cancel_wakes_the_waiting_copy() {
        use std::sync::atomic::AtomicBool;
        use std::task::Wake;
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (r, _) = reg(8);
        let t = track(r.arrive("w", S));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        assert!(t.poll_cancelled(&mut cx).is_pending());
        r.cancel("w", S);
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(t.poll_cancelled(&mut cx).is_ready());
    }

    #[test]
    fn bad_config_names_the_field() {
        let bad = TieConfig {
            capacity: 0,
            ..TieConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "capacity");
        let bad = TieConfig {
            max_ttl: Duration::ZERO,
            ..TieConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "max_ttl");
    }
}

//! Request-N streams: demand flows from the subscriber, items only against it.
//!
//! Reactive Streams' `Subscription::request(n)`: the subscriber grants credits, each item
//! the publisher emits spends one, and a publisher with no credit waits. So the publisher
//! never has more items outstanding (emitted but not yet consumed) than the subscriber
//! asked for, whatever the transport buffers in between: a gRPC stream is then bounded in
//! *messages*, not only in HTTP/2 flow-control bytes.
//!
//! The pieces are plain [`Stream`]s, so they sit on either side of any transport:
//!
//! - [`demand()`] makes a [`Demand`] (where credits are granted) and a [`Grants`] stream (the
//!   coalesced grants, to send to the publisher: on a tonic bidi call, as the messages of
//!   the half that flows *toward* the publisher);
//! - [`RequestN`] is the publisher's side: it wraps the item source and the incoming grants,
//!   and yields an item only against a credit;
//! - [`Subscriber`] is the subscriber's side: it wraps the incoming items, grants `n` at the
//!   start and one more for each item the consumer has finished (counted when the consumer
//!   asks for the next one), in batches of `n / 4`, and at once when the consumer has caught
//!   up and waits (as an HTTP/2 receiver sends a window update).
//!
//! Over gRPC, a server-streaming call with credits is a bidi method whose request half
//! carries the grants; a client-streaming call with credits is a bidi method whose response
//! half carries them (see `tests/request_n_grpc.rs`). The invariant is end to end:
//! `emitted <= granted <= n + consumed`.
//!
//! ```
//! use futures_util::StreamExt;
//! use std::num::NonZeroU32;
//! use tailwater_stream::request_n::{RequestN, Subscriber, demand};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (demand, grants) = demand();
//! // The publisher's side: at most what was granted.
//! let published = RequestN::new(futures_util::stream::iter(0..100u32), grants);
//! // (a transport would carry `published` one way and the grants the other)
//! let mut subscriber = Subscriber::new(published, demand, NonZeroU32::new(8).unwrap());
//! let mut n = 0;
//! while let Some(item) = subscriber.next().await {
//!     assert_eq!(item, n);
//!     n += 1;
//! }
//! assert_eq!(n, 100);
//! # }
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::task::AtomicWaker;

struct Shared {
    /// Credits granted and not yet sent to the publisher.
    pending: AtomicU64,
    /// Live [`Demand`] handles; the grants stream ends when the last one is dropped.
    handles: AtomicUsize,
    waker: AtomicWaker,
}

/// Where a subscriber grants credits. Cheap to clone; when every clone is dropped the
/// [`Grants`] stream ends (the subscriber cancelled).
pub struct Demand {
    shared: Arc<Shared>,
}

impl fmt::Debug for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demand")
            .field("unsent", &self.shared.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl Clone for Demand {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Demand {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.waker.wake();
        }
    }
}

impl Demand {
    /// Grants `n` more items. Grants not yet taken by the [`Grants`] stream add up (so a
    /// grant never waits for room: they coalesce into one message).
    pub fn request(&self, n: u32) {
        if n == 0 {
            return;
        }
        self.shared
            .pending
            .fetch_add(u64::from(n), Ordering::AcqRel);
        self.shared.waker.wake();
    }
}

/// The grants made on a [`Demand`], coalesced: each item is the credit granted since the
/// previous one (at most `u32::MAX`; the rest follows in the next item). Ends when every
/// [`Demand`] is dropped and all grants were yielded.
pub struct Grants {
    shared: Arc<Shared>,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grants").finish_non_exhaustive()
    }
}

impl Stream for Grants {
    type Item = u32;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
        let shared = &self.shared;
        shared.waker.register(cx.waker());
        let take = |pending: &AtomicU64| {
            let mut current = pending.load(Ordering::Acquire);
            loop {
                if current == 0 {
                    return 0;
                }
                let take = current.min(u64::from(u32::MAX));
                match pending.compare_exchange_weak(
                    current,
                    current - take,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return take as u32,
                    Err(now) => current = now,
                }
            }
        };
        match take(&shared.pending) {
            0 if shared.handles.load(Ordering::Acquire) == 0 => match take(&shared.pending) {
                0 => Poll::Ready(None),
                n => Poll::Ready(Some(n)),
            },
            0 => Poll::Pending,
            n => Poll::Ready(Some(n)),
        }
    }
}

/// A [`Demand`] and the [`Grants`] stream it feeds.
pub fn demand() -> (Demand, Grants) {
    let shared = Arc::new(Shared {
        pending: AtomicU64::new(0),
        handles: AtomicUsize::new(1),
        waker: AtomicWaker::new(),
    });
    (
        Demand {
            shared: Arc::clone(&shared),
        },
        Grants { shared },
    )
}

/// The publisher's side: yields items of `source` only against credits from `grants`.
///
/// Contract: the number of items yielded never exceeds the sum of the credits received
/// (`emitted() <= granted()`). The source is not polled without a credit, so it is never
/// asked for work nobody wants. The stream ends when the source ends, or when the grants
/// stream ends (the subscriber cancelled) and the credits already granted are spent.
pub struct RequestN<S, G> {
    source: S,
    grants: Option<G>,
    credit: u64,
    granted: u64,
    emitted: u64,
    stalls: u64,
}

impl<S, G> fmt::Debug for RequestN<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestN")
            .field("credit", &self.credit)
            .field("granted", &self.granted)
            .field("emitted", &self.emitted)
            .field("stalls", &self.stalls)
            .finish_non_exhaustive()
    }
}

impl<S, G> RequestN<S, G> {
    /// Wraps `source`; `grants` yields the credits (any `Stream<Item = u32>`: a
    /// [`Grants`], or the incoming half of a gRPC bidi call mapped to the credit field).
    /// No credit is assumed: nothing is emitted before the first grant.
    pub fn new(source: S, grants: G) -> Self {
        Self {
            source,
            grants: Some(grants),
            credit: 0,
            granted: 0,
            emitted: 0,
            stalls: 0,
        }
    }

    /// Credits taken from the grants so far. The grants are read when the credit is spent,
    /// so a grant that arrived since is not counted yet.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// Items yielded so far (never above [`granted`](Self::granted)).
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// How many times the publisher had an item's turn but no credit (it returned
    /// `Pending` until a grant came): with a fast consumer and a window that covers the
    /// round trip this stays near the number of grants the subscriber was late with;
    /// one stall per grant means the window, not the consumer, sets the pace.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }
}

impl<S, G> Stream for RequestN<S, G>
where
    S: Stream + Unpin,
    G: Stream<Item = u32> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        // The grants are read only once the credit is spent, and then all that are here:
        // polling them for every item (a tonic `Streaming` takes the HTTP/2 connection's
        // lock on each poll) cost more than the item itself. A subscriber grants three
        // quarters of a window ahead, so the grants are normally here when the credit runs out; if not,
        // the loop ends on `Pending` with the grants' waker registered.
        if this.credit == 0 {
            while let Some(grants) = this.grants.as_mut() {
                match Pin::new(grants).poll_next(cx) {
                    Poll::Ready(Some(n)) => {
                        this.credit += u64::from(n);
                        this.granted += u64::from(n);
                    }
                    Poll::Ready(None) => this.grants = None,
                    Poll::Pending => break,
                }
            }
            if this.credit == 0 {
                if this.grants.is_none() {
                    return Poll::Ready(None);
                }
                this.stalls += 1;
                return Poll::Pending;
            }
        }
        match Pin::new(&mut this.source).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.credit -= 1;
                this.emitted += 1;
                Poll::Ready(Some(item))
            }
            other => other,
        }
    }
}

/// A [`Subscriber`] grants its finished items back in batches of `n / BATCH_DIVISOR`.
const BATCH_DIVISOR: u32 = 4;
/// ... or, when the consumer has caught up, as soon as `n / IDLE_DIVISOR` are finished.
const IDLE_DIVISOR: u32 = 32;

/// The subscriber's side: yields the items of `inner` and grants credits on `demand` so
/// that at most `n` items are ever outstanding.
///
/// It grants `n` when created, and then one credit per item the consumer has finished
/// with, where an item counts as finished when the consumer polls for the next one. The
/// finished items are granted back
///
/// - in batches of `max(1, n / 4)` while items keep coming: a grant is one message back to
///   the publisher, so a batch bounds that cost per item, and the `3n / 4` items still
///   granted when a batch goes out keep the stream flowing for the grant's round trip (with
///   `n / 2`, as Reactor's `limitRate` does, the round trip over tonic on loopback took
///   longer than `n / 2` small messages take to read, and the stream paused at each grant);
/// - and at once when the consumer has caught up, i.e. `inner` has nothing ready, if at
///   least `max(1, n / 32)` are waiting to be granted: the consumer is idle anyway, and
///   the publisher learns of the room as early as possible, as an HTTP/2 receiver sends a
///   window update when it has read what arrived.
///
/// Either way only finished items are granted, so `granted <= n + finished`: the
/// publisher's items not yet finished by the consumer never exceed `n`.
pub struct Subscriber<S> {
    inner: S,
    demand: Demand,
    batch: u32,
    /// The least a grant on idle sends (fewer finished items wait for the batch).
    idle_min: u32,
    /// Finished items not yet granted back.
    unrequested: u32,
    /// An item was yielded and the consumer has not asked for the next one yet.
    holding: bool,
    received: u64,
    granted: u64,
}

impl<S> fmt::Debug for Subscriber<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("batch", &self.batch)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl<S> Subscriber<S> {
    /// Subscribes to `inner` with a window of `n` items, granting on `demand`.
    pub fn new(inner: S, demand: Demand, n: NonZeroU32) -> Self {
        demand.request(n.get());
        Self {
            inner,
            demand,
            batch: (n.get() / BATCH_DIVISOR).max(1),
            idle_min: (n.get() / IDLE_DIVISOR).max(1),
            unrequested: 0,
            holding: false,
            received: 0,
            granted: u64::from(n.get()),
        }
    }

    /// Credits granted so far, the `n` of the start included: never more than `n` plus
    /// the items the consumer has finished.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    fn grant(&mut self) {
        self.demand.request(self.unrequested);
        self.granted += u64::from(self.unrequested);
        self.unrequested = 0;
    }

    /// Items received so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

impl<S: Stream + Unpin> Stream for Subscriber<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        if this.holding {
            this.holding = false;
            this.unrequested += 1;
            if this.unrequested >= this.batch {
                this.grant();
            }
        }
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(_)) => {
                this.holding = true;
                this.received += 1;
            }
            // Caught up: whatever was finished goes back now, while the consumer waits.
            Poll::Pending if this.unrequested >= this.idle_min => this.grant(),
            Poll::Pending | Poll::Ready(None) => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests;

//! One timer per connection for every deadline of the connection's phases.
//!
//! Why: a `tokio::time::timeout` per phase registers a timer entry per request, and
//! registering an entry earlier than the one the runtime's timer driver last planned for
//! makes the driver wake its own event loop (a write to its eventfd): on the proxy
//! benchmark that was 0.4 system calls per request. Here a connection keeps one `Sleep`;
//! each wait names its deadline, and the timer is moved only when it fires before that
//! deadline (then it is moved to it) or when a wait needs an earlier deadline than the one
//! armed. Waits whose deadlines grow with time (the common case: each request's timeout
//! is later than the previous one's) therefore leave the timer alone; it fires at most once
//! per timeout length and is re-armed. A wait still ends exactly at its own deadline.

use std::future::Future;
use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// The deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// A connection's reusable timer.
#[derive(Debug)]
pub(crate) struct Watchdog {
    sleep: Pin<Box<Sleep>>,
}

impl Watchdog {
    /// A timer first armed for `deadline`.
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Runs `fut` until it completes or `deadline` passes.
    pub(crate) async fn within<F: Future>(
        &mut self,
        deadline: Instant,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = self.sleep.as_mut() => {
                    if Instant::now() >= deadline {
                        return Err(Elapsed);
                    }
                    // Armed for an earlier wait: move it to this one's deadline.
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ends_a_wait_exactly_at_its_deadline() {
        let start = Instant::now();
        let mut w = Watchdog::new(start + Duration::from_secs(30));
        let never = std::future::pending::<()>();
        let d = start + Duration::from_secs(10);
        assert_eq!(w.within(d, never).await, Err(Elapsed));
        assert_eq!(Instant::now(), d, "an earlier deadline moves the timer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_outlives_the_armed_one() {
        let start = Instant::now();
        let mut w = Watchdog::new(start + Duration::from_secs(1));
        // Finishes before the armed time: the timer stays as it was.
        let quick = tokio::time::sleep(Duration::from_millis(500));
        assert_eq!(
            w.within(start + Duration::from_secs(5), quick).await,
            Ok(())
        );
        // The timer fires at 1 s, before this wait's deadline at 3.5 s: the wait goes on.
        let slow = tokio::time::sleep(Duration::from_secs(2));
        let d = start + Duration::from_millis(3_500);
        assert_eq!(w.within(d, slow).await, Ok(()));
        assert_eq!(Instant::now(), start + Duration::from_millis(2_500));
        // And still ends at its own deadline.
        assert_eq!(
            w.within(d, std::future::pending::<()>()).await,
            Err(Elapsed)
        );
        assert_eq!(Instant::now(), d);
    }
}

//! Reaching one of a route's endpoints: the connect step both engines share, with the
//! balancer's choice and its retries on connect failures (`crate::balance`).

use std::future::Future;
use std::sync::Arc;

use super::Route;
use crate::balance::{Attempt, MAX_ATTEMPTS};
use crate::upstream::Shard;

/// Connects a request of `worker` to an endpoint of `route` with `connect` (the engine's
/// own: a pooled or new connection), before any byte of the request is written. On a
/// balanced route a failed connect is counted against its endpoint and the next attempt
/// goes to an endpoint not tried yet, up to [`MAX_ATTEMPTS`]; the chosen endpoint's
/// [`Attempt`] is left in `slot` for the request's guard. A route with one endpoint
/// connects to it once, as before balancing existed.
pub(crate) async fn reach<'r, T, E, F, Fut>(
    route: &'r Route,
    worker: usize,
    slot: &mut Option<Box<Attempt>>,
    mut connect: F,
) -> Result<(&'r Arc<Shard>, T), E>
where
    F: FnMut(&'r Arc<Shard>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    // A balancer always selects with nothing excluded; without one (or if it did not)
    // the route's first endpoint is the one.
    let Some((balance, mut attempt)) = route
        .balance
        .as_ref()
        .and_then(|b| b.select(0).map(|a| (b, a)))
    else {
        let shard = route.h1_pool.shard(worker);
        return Ok((shard, connect(shard).await?));
    };
    let mut exclude = 0u64;
    let mut tries = 1;
    loop {
        let i = attempt.index();
        let shard = route.endpoints[i].h1_pool.shard(worker);
        let err = match connect(shard).await {
            Ok(c) => {
                *slot = Some(Box::new(attempt));
                return Ok((shard, c));
            }
            Err(e) => e,
        };
        attempt.connect_failed();
        exclude |= 1u64 << i;
        let next = (tries < MAX_ATTEMPTS)
            .then(|| balance.select(exclude))
            .flatten();
        match next {
            Some(a) => attempt = a,
            None => return Err(err),
        }
        tries += 1;
    }
}

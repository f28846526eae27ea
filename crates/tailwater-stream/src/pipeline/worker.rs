//! The tasks of a pipeline: the source, a stage's workers, a batching stage.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::account::{StageAccount, Wait};
use super::config::{BatchConfig, StageLimiter};
use super::io::{Input, hand_on, recv};

/// Tells the source to stop pulling (a drain).
#[derive(Debug, Default)]
pub(crate) struct DrainSignal {
    requested: AtomicBool,
    notify: Notify,
}

impl DrainSignal {
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// Pulls the source until it ends or a drain is requested. An item taken from the source
/// is admitted: it is handed on even if a drain arrives meanwhile.
pub(crate) async fn run_source<S>(
    source: S,
    out: mpsc::Sender<S::Item>,
    account: Arc<StageAccount>,
    drain: Arc<DrainSignal>,
) where
    S: Stream,
{
    let mut source = std::pin::pin!(source);
    loop {
        if drain.is_requested() {
            break;
        }
        let next = match source.next().now_or_never() {
            Some(next) => next,
            None => {
                let notified = drain.notify.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if drain.is_requested() {
                    break;
                }
                tokio::select! {
                    biased;
                    () = notified => break,
                    next = source.next() => next,
                }
            }
        };
        let Some(item) = next else { break };
        account.count_received();
        if hand_on(&out, item, &account).await.is_err() {
            break;
        }
    }
    account.worker_ended();
}

/// One worker of a stage: take, (hold a permit,) work, hand on. With no `out` the stage is
/// the sink and the item is finished when `work` returns.
pub(crate) async fn run_worker<In, Out, F, Fut>(
    mut input: Input<In>,
    work: Arc<F>,
    out: Option<mpsc::Sender<Out>>,
    limiter: Option<Arc<dyn StageLimiter>>,
    account: Arc<StageAccount>,
) where
    F: Fn(In) -> Fut,
    Fut: Future<Output = Out>,
{
    while let Some(item) = input.next(&account).await {
        let permit = match &limiter {
            None => None,
            Some(limiter) => Some(permit(limiter.as_ref(), &account).await),
        };
        let output = work(item).await;
        if let Some(permit) = permit {
            permit.done();
        }
        match &out {
            Some(out) => {
                if hand_on(out, output, &account).await.is_err() {
                    break;
                }
            }
            None => {
                account.count_sent();
            }
        }
    }
    account.worker_ended();
}

async fn permit(
    limiter: &dyn StageLimiter,
    account: &StageAccount,
) -> Box<dyn super::config::Held> {
    let since = Instant::now();
    loop {
        match limiter.permit().await {
            Ok(permit) => {
                account.waited(Wait::Limited, since);
                return permit;
            }
            Err(retry) => tokio::time::sleep(retry).await,
        }
    }
}

/// A batching stage: collects up to `size` items or for `linger` after the first.
pub(crate) async fn run_batch<T>(
    mut input: mpsc::Receiver<T>,
    config: BatchConfig,
    out: mpsc::Sender<Vec<T>>,
    account: Arc<StageAccount>,
) {
    let size = config.size.get();
    let mut input_ended = false;
    while !input_ended {
        let Some(first) = recv(&mut input, &account).await else {
            break;
        };
        let mut batch = Vec::with_capacity(size);
        batch.push(first);
        let deadline = Instant::now() + config.linger;
        while batch.len() < size {
            match input.try_recv() {
                Ok(item) => {
                    account.count_received();
                    batch.push(item);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    input_ended = true;
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    let since = Instant::now();
                    let next = tokio::time::timeout_at(deadline, input.recv()).await;
                    account.waited(Wait::Idle, since);
                    match next {
                        Ok(Some(item)) => {
                            account.count_received();
                            batch.push(item);
                        }
                        Ok(None) => {
                            input_ended = true;
                            break;
                        }
                        Err(_) => break, // lingered long enough
                    }
                }
            }
        }
        if hand_on(&out, batch, &account).await.is_err() {
            break;
        }
    }
    account.worker_ended();
}

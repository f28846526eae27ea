//! Taking from a stage's input queue and handing to the next one, timing only real waits.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};
use tokio::time::Instant;

use super::account::{StageAccount, Wait};

/// A stage's input: its own receiver (one worker) or one shared by its workers.
#[derive(Debug)]
pub(crate) enum Input<T> {
    One(mpsc::Receiver<T>),
    Shared(Arc<tokio::sync::Mutex<mpsc::Receiver<T>>>),
}

impl<T> Input<T> {
    /// `n` inputs over one receiver: the receiver itself for one worker, shared otherwise.
    pub(crate) fn split(rx: mpsc::Receiver<T>, n: usize) -> Vec<Input<T>> {
        if n <= 1 {
            return vec![Input::One(rx)];
        }
        let shared = Arc::new(tokio::sync::Mutex::new(rx));
        (0..n).map(|_| Input::Shared(Arc::clone(&shared))).collect()
    }

    /// The next item, or `None` once every upstream sender is gone and the queue is empty.
    /// Waiting counts as idle; an item already queued costs no clock read.
    pub(crate) async fn next(&mut self, account: &StageAccount) -> Option<T> {
        let item = match self {
            Input::One(rx) => return recv(rx, account).await,
            Input::Shared(shared) => {
                let ready = match shared.try_lock() {
                    Ok(mut rx) => match rx.try_recv() {
                        Ok(item) => Some(Some(item)),
                        Err(TryRecvError::Disconnected) => Some(None),
                        Err(TryRecvError::Empty) => None,
                    },
                    Err(_) => None,
                };
                match ready {
                    Some(item) => item,
                    None => {
                        let since = Instant::now();
                        let item = shared.lock().await.recv().await;
                        account.waited(Wait::Idle, since);
                        item
                    }
                }
            }
        };
        if item.is_some() {
            account.count_received();
        }
        item
    }
}

/// The next item of one receiver, as [`Input::next`].
pub(crate) async fn recv<T>(rx: &mut mpsc::Receiver<T>, account: &StageAccount) -> Option<T> {
    let item = match rx.try_recv() {
        Ok(item) => Some(item),
        Err(TryRecvError::Disconnected) => None,
        Err(TryRecvError::Empty) => {
            let since = Instant::now();
            let item = rx.recv().await;
            account.waited(Wait::Idle, since);
            item
        }
    };
    if item.is_some() {
        account.count_received();
    }
    item
}

/// Hands `item` to the next stage, waiting (backpressured) while its queue is full. Gives
/// the item back if the next stage is gone (it panicked or was aborted).
pub(crate) async fn hand_on<T>(
    out: &mpsc::Sender<T>,
    item: T,
    account: &StageAccount,
) -> Result<(), T> {
    let sent = match out.try_send(item) {
        Ok(()) => Ok(()),
        Err(TrySendError::Closed(item)) => Err(item),
        Err(TrySendError::Full(item)) => {
            let since = Instant::now();
            let sent = out.send(item).await.map_err(|e| e.0);
            account.waited(Wait::Backpressured, since);
            sent
        }
    };
    if sent.is_ok() {
        account.count_sent();
    }
    sent
}

//! Group commit for [`RedisRateStore::check_batch`](crate::RedisRateStore::check_batch): the calls that arrive while a script
//! is in flight wait in a bounded queue and are decided together by the next script, one
//! `EVALSHA` for many calls.
//!
//! Why: with one script per call, each decision costs Redis a command parse, a script
//! start and a reply, and costs this process a request on the multiplexed connection; on
//! a small machine where Redis, the service and the load share the cores, that CPU is the
//! round trip. Grouping is the database technique of the same name (a log flushed once
//! for all the transactions that committed while the previous flush was in flight): under
//! load a group grows with the queue, idle it is one call and adds no wait, since a lone
//! call is sent at once.
//!
//! Each call stays atomic on its own keys (the `GROUP` script of `script.rs` runs the
//! calls one after another inside one atomic script), denied hits are never charged, and
//! the decisions are [`step_batch`]'s on the state each call saw, exactly as one script
//! per call would decide in the same order. Every call keeps its own deadline: waiting in
//! the queue counts against the per-call timeout, a call whose caller gave up is dropped
//! from its group before it is sent, and a failed script sends each of its calls to the
//! failure policy. One driver task per store sends the groups, one at a time.

use std::sync::{Arc, OnceLock, Weak};

use tailwater_core::rate::{BatchItem, BatchOutcome, step_batch};
use tokio::sync::{mpsc, oneshot};

use crate::call::{self, Gate};
use crate::conn::RedisConnection;
use crate::error::BackendError;
use crate::script;
use crate::stats::{Counters, add, inc};

/// The most calls one queue holds; a call that finds it full waits (within its deadline).
pub(crate) const QUEUE: usize = 4096;

/// The most items (descriptor quotas) one group script decides: bounds how long one
/// script holds Redis.
pub(crate) const MAX_GROUP_ITEMS: usize = 512;

/// One queued call.
pub(crate) struct Pending {
    keys: Vec<String>,
    items: Vec<BatchItem>,
    reply: oneshot::Sender<Result<Answer, BackendError>>,
}

/// What the script said about one call: `now`, whether it committed, and the state of
/// each slot before the call (absolute TATs, ns).
#[derive(Debug)]
pub(crate) struct Answer {
    now: u64,
    committed: bool,
    tats: Vec<u64>,
}

impl Answer {
    /// The decisions of `items`, recomputed with [`step_batch`] from what the call saw,
    /// and whether the script committed (the two agree unless the script is skewed).
    pub(crate) fn outcome(mut self, items: &[BatchItem]) -> (BatchOutcome, bool) {
        (step_batch(items, self.now, &mut self.tats), self.committed)
    }
}

/// The sending half, started on first use.
#[derive(Debug, Default)]
pub(crate) struct Group {
    tx: OnceLock<mpsc::Sender<Pending>>,
}

/// What the driver needs of its store: the connection, the back-off gate, the counters.
/// (A trait, so that this module does not depend on the store's.)
pub(crate) trait Backend: Send + Sync + 'static {
    /// The connection.
    fn conn(&self) -> &RedisConnection;
    /// The back-off gate.
    fn gate(&self) -> &Gate;
    /// The counters.
    fn stats(&self) -> &Counters;
}

impl Group {
    /// The queue of the driver, started on first use over `store`; `None` when no driver
    /// can run here (no tokio runtime, or the runtime that started it is gone): the caller
    /// then sends its call on its own.
    pub(crate) fn sender<B: Backend>(&self, store: &Arc<B>) -> Option<mpsc::Sender<Pending>> {
        if let Some(tx) = self.tx.get() {
            return (!tx.is_closed()).then(|| tx.clone());
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            handle.spawn(drive(Arc::downgrade(store), rx));
            tx
        });
        Some(tx.clone())
    }
}

/// Queues one call (its Redis `keys`, one per slot, and its `items`) on `tx` for the next
/// group script and waits for its answer, bounded by the per-call timeout (the queue wait
/// included).
pub(crate) async fn submit<B: Backend>(
    store: &B,
    tx: mpsc::Sender<Pending>,
    keys: Vec<String>,
    items: &[BatchItem],
) -> Result<Answer, BackendError> {
    if store.gate().is_down() {
        inc(&store.stats().skipped_backoff);
        return Err(BackendError::BackingOff);
    }
    let (reply, rx) = oneshot::channel();
    let pending = Pending {
        keys,
        items: items.to_vec(),
        reply,
    };
    let timeout = store.conn().options.call_timeout;
    let waited = tokio::time::timeout(timeout, async move {
        tx.send(pending).await.ok()?;
        rx.await.ok()
    })
    .await;
    match waited {
        Ok(Some(answer)) => answer,
        // Only when the runtime that ran the driver shut down while this call waited.
        Ok(None) => Err(BackendError::Protocol(
            "the group commit driver stopped (its runtime shut down)".into(),
        )),
        Err(_) => {
            inc(&store.stats().timeouts);
            Err(BackendError::Timeout(timeout))
        }
    }
}

/// The driver: takes every queued call (up to [`MAX_GROUP_ITEMS`] items), sends them as
/// one script, answers each, and starts over. Ends when the store is dropped.
async fn drive<B: Backend>(store: Weak<B>, mut rx: mpsc::Receiver<Pending>) {
    let mut group: Vec<Pending> = Vec::with_capacity(64);
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut items = first.items.len();
        group.push(first);
        while let Ok(p) = rx.try_recv() {
            if items + p.items.len() > MAX_GROUP_ITEMS {
                carry = Some(p);
                break;
            }
            items += p.items.len();
            group.push(p);
        }
        // Calls whose callers gave up (deadline) are not sent: they were answered by the
        // failure policy already and must not be charged.
        group.retain(|p| !p.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        send(&*inner, &mut group).await;
    }
}

/// Sends one group and answers its calls (draining `group`).
async fn send<B: Backend>(store: &B, group: &mut Vec<Pending>) {
    let mut inv = script::GROUP.prepare_invoke();
    inv.arg("").arg("");
    let mut decisions = 0u64;
    for p in group.iter() {
        for k in &p.keys {
            inv.key(k);
        }
        inv.arg(p.keys.len()).arg(p.items.len());
        for it in &p.items {
            inv.arg(it.slot + 1)
                .arg(it.quota.emission_nanos())
                .arg(it.quota.tolerance_nanos())
                .arg(it.quota.burst())
                .arg(it.n)
                .arg(it.class.code());
        }
        decisions += 1;
    }
    add(&store.stats().grouped_decisions, decisions);
    let reply = call::invoke(
        store.conn(),
        store.gate(),
        store.stats(),
        &inv,
        store.conn().options.call_timeout,
        false,
    )
    .await;
    match reply.and_then(|r| parse(&r, group)) {
        Ok(answers) => {
            for (p, a) in group.drain(..).zip(answers) {
                let _ = p.reply.send(Ok(a));
            }
        }
        Err(e) => {
            for p in group.drain(..) {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Splits the reply `{now, (committed, r_1..r_k) per call}` into one answer per call.
fn parse(reply: &[redis::Value], group: &[Pending]) -> Result<Vec<Answer>, BackendError> {
    let expected = 1 + group.iter().map(|p| 1 + p.keys.len()).sum::<usize>();
    if reply.len() != expected {
        return Err(BackendError::Protocol(format!(
            "group script returned {} values, expected {expected}",
            reply.len()
        )));
    }
    let now = call::nanos(reply.first())?;
    let mut at = 1;
    let mut answers = Vec::with_capacity(group.len());
    for p in group {
        let committed = call::int(reply.get(at))? == 1;
        let mut tats = Vec::with_capacity(p.keys.len());
        for v in &reply[at + 1..at + 1 + p.keys.len()] {
            let r = u64::try_from(call::int(Some(v))?)
                .map_err(|_| BackendError::Protocol("negative offset".into()))?;
            tats.push(now.saturating_add(r));
        }
        at += 1 + p.keys.len();
        answers.push(Answer {
            now,
            committed,
            tats,
        });
    }
    Ok(answers)
}

//! Sending one request and recording what happened to it, on its own task (h2c) or on a
//! keep-alive HTTP/1.1 worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::client::H1Conn;
use crate::stats::Outcome;

use super::shared::{Job, Shared, us};

pub(super) async fn request(shared: Arc<Shared>, job: Job) {
    let deadline = job.intended + shared.timeout;
    let mut sent_at: Option<Instant> = None;
    let result = within_deadline(deadline, async {
        let mut lease = shared.pool.acquire().await?;
        let req = shared.build_request(job.tag);
        sent_at = Some(Instant::now());
        match &shared.grpc {
            None => lease.send(req).await.map(|s| (s, None)),
            Some(call) => {
                let (http, outcome) = lease.send_grpc(req, call.over_limit.as_ref()).await?;
                Ok((outcome.http_status(http), Some(outcome)))
            }
        }
    })
    .await;
    let grpc = result.as_ref().ok().and_then(|(_, g)| *g);
    settle(&shared, &job, result.map(|(s, _)| s), grpc, sent_at);
}

/// Runs `attempt` unless `deadline` has passed, and gives up on it at `deadline`: either
/// way the answer is `Timeout`. A job whose deadline passed while it waited is never sent:
/// `attempt` is not polled at all.
async fn within_deadline<T>(
    deadline: Instant,
    attempt: impl std::future::Future<Output = Result<T, crate::ErrorKind>>,
) -> Result<T, crate::ErrorKind> {
    if Instant::now() >= deadline {
        return Err(crate::ErrorKind::Timeout);
    }
    tokio::time::timeout_at(deadline.into(), attempt)
        .await
        .unwrap_or(Err(crate::ErrorKind::Timeout))
}

/// Measures and records one finished request: corrected latency from the intended send time,
/// uncorrected from the moment it was written, and the two parts of the send lag.
fn settle(
    shared: &Shared,
    job: &Job,
    result: Result<u16, crate::ErrorKind>,
    grpc: Option<crate::grpc::GrpcOutcome>,
    sent_at: Option<Instant>,
) {
    let done = Instant::now();
    let outcome = Outcome {
        result,
        grpc,
        corrected_us: us(done.saturating_duration_since(job.intended)),
        uncorrected_us: sent_at.map_or(0, |s| us(done.saturating_duration_since(s))),
        send_lag_us: sent_at.map(|s| us(s.saturating_duration_since(job.intended))),
        pacer_lag_us: us(job.released.saturating_duration_since(job.intended)),
    };
    shared.record(job, &outcome);
    shared.finish_one(outcome.result);
}

/// An HTTP/1.1 worker: one keep-alive connection, one request at a time, jobs in FIFO order
/// from queue `q` (its pacing thread's).
pub(super) async fn h1_worker(
    shared: Arc<Shared>,
    q: usize,
    addr: SocketAddr,
    mut conn: Option<H1Conn>,
) {
    while let Some(job) = shared.next_job(q).await {
        let deadline = job.intended + shared.timeout;
        let mut sent_at: Option<Instant> = None;
        // A job whose deadline passed while it waited is not sent: sending it would only
        // cost the connection (abandoned mid-request) and load the target for nothing.
        let result = within_deadline(deadline, async {
            // A kept-alive connection the server has since closed is replaced before the
            // request is sent (that is not a failure of the request).
            if let Some(c) = &mut conn
                && c.ready().await.is_err()
            {
                conn = None;
            }
            let c = match &mut conn {
                Some(c) => c,
                None => {
                    let c = conn.insert(H1Conn::connect(addr, shared.pool.tls()).await?);
                    c.ready().await?;
                    c
                }
            };
            let req = shared.build_request(job.tag);
            sent_at = Some(Instant::now());
            c.send(req).await
        })
        .await;
        // After a failure once the request was on the wire the connection's state is
        // unknown: start afresh on the next job. A timeout before sending leaves it usable.
        if result.is_err() && (sent_at.is_some() || result != Err(crate::ErrorKind::Timeout)) {
            conn = None;
        }
        settle(&shared, &job, result, None, sent_at);
    }
}

//! Shared helpers: a recording limit algorithm, a channel-driven body, a one-shot poll.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tailwater_core::Limiter;
use tailwater_core::algorithm::{LimitAlgorithm, Sample};
use tailwater_core::clock::TokioClock;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_tower::BoxError;
use tokio::sync::mpsc;

pub(crate) type TestBody = BoxBody<Bytes, BoxError>;

/// A fixed limit that records every sample it is fed.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    limit: usize,
    pub(crate) samples: Arc<Mutex<Vec<Sample>>>,
}

impl LimitAlgorithm for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn limit(&self) -> usize {
        self.limit
    }
    fn update(&mut self, sample: &Sample) -> usize {
        self.samples.lock().unwrap().push(*sample);
        self.limit
    }
}

/// A limiter of `limit` on tokio's (paused) clock, and its recorded samples.
pub(crate) fn limiter(limit: usize) -> (Limiter<TokioClock>, Arc<Mutex<Vec<Sample>>>) {
    let rec = Recorder {
        limit,
        samples: Arc::default(),
    };
    let samples = Arc::clone(&rec.samples);
    let limiter = Limiter::builder()
        .algorithm(rec)
        .clock(TokioClock::new())
        .build()
        .unwrap();
    (limiter, samples)
}

/// The same with a FIFO queue of `capacity` and `max_wait`.
pub(crate) fn queued_limiter(
    limit: usize,
    capacity: usize,
    max_wait: Duration,
) -> (Limiter<TokioClock>, Arc<Mutex<Vec<Sample>>>) {
    let rec = Recorder {
        limit,
        samples: Arc::default(),
    };
    let samples = Arc::clone(&rec.samples);
    let limiter = Limiter::builder()
        .algorithm(rec)
        .clock(TokioClock::new())
        .queue(QueueConfig::new(capacity, QueueDiscipline::Fifo, max_wait).unwrap())
        .build()
        .unwrap();
    (limiter, samples)
}

/// A body fed frame by frame through a bounded channel; dropping the sender ends it.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

pub(crate) type BodyTx = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

pub(crate) fn channel_body() -> (BodyTx, TestBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, BoxBody::new(ChannelBody { rx }))
}

pub(crate) fn full(s: &'static str) -> TestBody {
    BoxBody::new(Full::new(Bytes::from_static(s.as_bytes())).map_err(|e| match e {}))
}

pub(crate) fn empty() -> TestBody {
    BoxBody::new(Empty::new().map_err(|e: Infallible| match e {}))
}

/// Polls `f` once with a no-op waker.
pub(crate) fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// A request with the given headers.
pub(crate) fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().uri("/");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// Reads a whole body to a string.
pub(crate) async fn text<B>(body: B) -> String
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Response headers as `(name, value)` strings, sorted, for exact comparisons.
pub(crate) fn headers<B>(res: &Response<B>) -> Vec<(String, String)> {
    let mut v: Vec<_> = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

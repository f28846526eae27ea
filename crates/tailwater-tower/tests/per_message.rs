//! Per-message admission of a tonic bidi stream over a real socket on 127.0.0.1:0.
//!
//! The service (`tailwater.test.Worker/Work`, `rpc Work (stream Job) returns (stream Done)`)
//! is written by hand (prost derive and `tonic::server::Grpc`, as the tonic example does).
//! Behind it: `MessageAdmissionLayer` (marks `Work` for per-message admission), then a
//! `ConcurrencyLayer` on the same limiter, which must count the call without limiting it or
//! sampling its duration.
//!
//! No sleep synchronises anything: the tests wait on watch channels with deadlines. The
//! sleeps in the handler are each job's service time (the workload).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tailwater_core::algorithm::{LimitAlgorithm, Sample};
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_core::{Limiter, RejectReason};
use tailwater_tower::ConcurrencyLayer;
use tailwater_tower::per_message::{
    MessageAdmission, MessageAdmissionLayer, MessagePermit, MessageRejected,
};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, timeout};
use tonic::body::Body;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tower::{Service, ServiceBuilder};

/// A job: `work_ms` of service time, or held until the test releases it.
#[derive(Clone, PartialEq, prost::Message)]
struct Job {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(uint32, tag = "2")]
    work_ms: u32,
    #[prost(bool, tag = "3")]
    hold: bool,
}

/// A job's completion.
#[derive(Clone, PartialEq, prost::Message)]
struct Done {
    #[prost(uint64, tag = "1")]
    seq: u64,
}

const WORK: &str = "/tailwater.test.Worker/Work";

/// What the server saw.
#[derive(Debug)]
struct Probe {
    /// Messages the handler has read off the call (before admission).
    pulled: AtomicU64,
    /// Jobs being worked on now, and the most at once.
    active: watch::Sender<u64>,
    peak: AtomicU64,
    /// Releases held jobs.
    release: Notify,
}

impl Probe {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            pulled: AtomicU64::new(0),
            active: watch::channel(0).0,
            peak: AtomicU64::new(0),
            release: Notify::new(),
        })
    }
}

/// Counts the messages read off the call.
struct Counted<S> {
    inner: S,
    probe: Arc<Probe>,
}

impl<S: Stream + Unpin> Stream for Counted<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(_)) = &item {
            self.probe.pulled.fetch_add(1, Ordering::SeqCst);
        }
        item
    }
}

fn to_status(r: MessageRejected) -> Status {
    let mut status = Status::resource_exhausted(r.to_string());
    if let Ok(v) = r.pushback_ms().to_string().parse() {
        status.metadata_mut().insert("grpc-retry-pushback-ms", v);
    }
    status
}

#[derive(Clone)]
struct Worker {
    probe: Arc<Probe>,
}

impl NamedService for Worker {
    const NAME: &'static str = "tailwater.test.Worker";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for Worker {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let probe = Arc::clone(&self.probe);
        if req.uri().path() != WORK {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        Box::pin(async move {
            let work = tower::service_fn(move |req: tonic::Request<tonic::Streaming<Job>>| {
                let probe = Arc::clone(&probe);
                async move {
                    // Without the layer (the contrast test), the same handler reads the
                    // messages without admission.
                    let admission = req.extensions().get::<MessageAdmission>().cloned();
                    let inbound = Counted {
                        inner: req.into_inner(),
                        probe: Arc::clone(&probe),
                    };
                    type Jobs = Pin<
                        Box<dyn Stream<Item = Result<(Job, Option<MessagePermit>), Status>> + Send>,
                    >;
                    let mut jobs: Jobs = match admission {
                        Some(admission) => Box::pin(admission.admit(inbound, to_status).map(|r| {
                            r.map(|admitted| {
                                let (job, permit) = admitted.into_parts();
                                (job, Some(permit))
                            })
                        })),
                        None => Box::pin(inbound.map(|r| r.map(|job| (job, None)))),
                    };
                    let (tx, rx) = tokio::sync::mpsc::channel(16);
                    tokio::spawn(async move {
                        while let Some(job) = jobs.next().await {
                            let (job, permit) = match job {
                                Ok(job) => job,
                                Err(status) => {
                                    let _ = tx.send(Err(status)).await;
                                    return;
                                }
                            };
                            // Registered before the job shows as active, so a release
                            // sent after the test saw it active is not missed.
                            let released = probe.release.notified();
                            probe.active.send_modify(|a| *a += 1);
                            probe
                                .peak
                                .fetch_max(*probe.active.borrow(), Ordering::SeqCst);
                            if job.hold {
                                released.await;
                            } else {
                                // The job's service time (the workload).
                                tokio::time::sleep(Duration::from_millis(job.work_ms.into())).await;
                            }
                            probe.active.send_modify(|a| *a -= 1);
                            let seq = job.seq;
                            // The message's permit is released here: after the work.
                            drop(permit);
                            if tx.send(Ok(Done { seq })).await.is_err() {
                                return;
                            }
                        }
                    });
                    Ok::<_, Status>(tonic::Response::new(ReceiverStream::new(rx)))
                }
            });
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.streaming(work, req).await)
        })
    }
}

/// Serves `Worker` behind the layers on 127.0.0.1:0 and returns a client channel.
async fn serve(
    limiter: Limiter,
    max_wait: Duration,
    probe: Arc<Probe>,
    per_message: bool,
) -> tonic::transport::Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let admission = MessageAdmission::new(limiter.clone())
        .max_wait(max_wait)
        .route("work");
    let layers = ServiceBuilder::new()
        .option_layer(per_message.then(|| MessageAdmissionLayer::new(admission, [WORK])))
        .layer(ConcurrencyLayer::new(limiter).route("work"));
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layers)
            .add_service(Worker { probe })
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Opens a `Work` call sending `jobs`.
async fn work(
    channel: tonic::transport::Channel,
    jobs: impl Stream<Item = Job> + Send + 'static,
) -> tonic::Streaming<Done> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.streaming(
        tonic::Request::new(jobs),
        http::uri::PathAndQuery::from_static(WORK),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect("call")
    .into_inner()
}

/// A fixed limit that records every RTT sample it is fed.
#[derive(Debug)]
struct Recorder {
    limit: usize,
    rtts: Arc<Mutex<Vec<Duration>>>,
}

impl LimitAlgorithm for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn limit(&self) -> usize {
        self.limit
    }
    fn update(&mut self, sample: &Sample) -> usize {
        self.rtts.lock().expect("lock").push(sample.rtt);
        self.limit
    }
}

fn limiter(limit: usize, rtts: Arc<Mutex<Vec<Duration>>>) -> Limiter {
    Limiter::builder()
        .algorithm(Recorder { limit, rtts })
        .queue(QueueConfig::new(64, QueueDiscipline::Fifo, Duration::from_secs(5)).expect("queue"))
        .build()
        .expect("limiter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_admitted_and_sampled_not_the_whole_stream() {
    const STREAMS: u64 = 4;
    const JOBS: u64 = 20;
    const WORK_MS: u32 = 5;
    const LIMIT: usize = 2;
    let rtts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let limiter = limiter(LIMIT, Arc::clone(&rtts));
    let probe = Probe::new();
    let channel = serve(
        limiter.clone(),
        Duration::from_secs(2),
        Arc::clone(&probe),
        true,
    )
    .await;

    let calls: Vec<_> = (0..STREAMS)
        .map(|s| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let jobs = futures_util::stream::iter(0..JOBS).map(move |i| Job {
                    seq: s * 1000 + i,
                    work_ms: WORK_MS,
                    hold: false,
                });
                let mut done = work(channel, jobs).await;
                let mut seqs = Vec::new();
                while let Some(d) = done.next().await {
                    seqs.push(d.expect("done").seq);
                }
                (seqs, began.elapsed())
            })
        })
        .collect();
    let mut shortest = Duration::MAX;
    for (s, call) in calls.into_iter().enumerate() {
        let (seqs, took) = timeout(Duration::from_secs(20), call)
            .await
            .expect("within 20 s")
            .expect("call");
        let s = s as u64;
        assert_eq!(seqs, (0..JOBS).map(|i| s * 1000 + i).collect::<Vec<_>>());
        shortest = shortest.min(took);
    }
    let stats = limiter.stats();
    let rtts = rtts.lock().expect("lock").clone();
    let longest_rtt = rtts.iter().max().copied().unwrap_or_default();
    println!(
        "per-message: {} samples, longest {longest_rtt:?}; shortest stream {shortest:?}; peak {} at once; {:?}",
        rtts.len(),
        probe.peak.load(Ordering::SeqCst),
        stats.counters
    );
    // A permit per message: every message sampled (a sample skipped under contention is
    // counted as such), never more than the limit at work at once, and the limit reached.
    assert_eq!(
        rtts.len() as u64 + stats.counters.skipped_updates,
        STREAMS * JOBS,
        "{stats:?}"
    );
    assert_eq!(stats.counters.admitted_total(), STREAMS * JOBS);
    assert_eq!(probe.peak.load(Ordering::SeqCst), LIMIT as u64);
    // The samples are messages' processing times, not streams' durations: each at least the
    // job's service time and far below the shortest stream (20 jobs at 5 ms).
    assert!(
        rtts.iter()
            .all(|r| *r >= Duration::from_millis(WORK_MS.into())),
        "{rtts:?}"
    );
    // A whole-stream sample would be at least the shortest stream's duration; the typical
    // sample is a job's time.
    assert!(longest_rtt < shortest, "{longest_rtt:?} vs {shortest:?}");
    let mut sorted = rtts.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(median * 10 < shortest, "median {median:?} vs {shortest:?}");
    // The calls themselves went through the concurrency layer counted, not limited.
    assert_eq!(stats.counters.bypassed, STREAMS, "{stats:?}");
    assert_eq!(stats.counters.rejected_total(), 0);
    assert_eq!(limiter.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_waits_past_max_wait_ends_the_stream_with_resource_exhausted() {
    let max_wait = Duration::from_millis(100);
    let limiter = limiter(1, Arc::default());
    let probe = Probe::new();
    let channel = serve(limiter.clone(), max_wait, Arc::clone(&probe), true).await;

    // Stream 1 holds the only permit with a held job.
    let (hold_tx, hold_rx) = tokio::sync::mpsc::channel::<Job>(1);
    hold_tx
        .send(Job {
            seq: 1,
            work_ms: 0,
            hold: true,
        })
        .await
        .expect("send");
    let mut first = work(channel.clone(), ReceiverStream::new(hold_rx)).await;
    let mut active = probe.active.subscribe();
    timeout(Duration::from_secs(5), active.wait_for(|a| *a == 1))
        .await
        .expect("held within 5 s")
        .expect("watch");
    let pulled_before = probe.pulled.load(Ordering::SeqCst);

    // Stream 2 sends 10 jobs: the first waits max_wait for the permit, then the call ends
    // with RESOURCE_EXHAUSTED; the other 9 are never read by the handler.
    let began = Instant::now();
    let jobs = futures_util::stream::iter(0..10).map(|i| Job {
        seq: 100 + i,
        work_ms: 1,
        hold: false,
    });
    let mut second = work(channel.clone(), jobs).await;
    let outcome = timeout(Duration::from_secs(5), second.next())
        .await
        .expect("an answer within 5 s")
        .expect("an item");
    let waited = began.elapsed();
    let status = outcome.expect_err("refused");
    println!("refused after {waited:?}: {status:?}");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("queue_timeout"), "{status:?}");
    assert!(
        status.metadata().get("grpc-retry-pushback-ms").is_some(),
        "{status:?}"
    );
    assert!(waited >= max_wait, "refused after {waited:?}");
    assert!(waited < Duration::from_secs(2), "refused after {waited:?}");
    // Back-pressure by not pulling: the handler read exactly one message of stream 2.
    assert_eq!(probe.pulled.load(Ordering::SeqCst), pulled_before + 1);
    let stats = limiter.stats();
    assert_eq!(
        stats.counters.rejected_for(RejectReason::QueueTimeout),
        1,
        "{stats:?}"
    );

    // Stream 1 is unaffected: released, its job completes.
    probe.release.notify_waiters();
    let done = timeout(Duration::from_secs(5), first.next())
        .await
        .expect("done within 5 s")
        .expect("an item")
        .expect("done");
    assert_eq!(done.seq, 1);
    drop(hold_tx);
    assert!(
        timeout(Duration::from_secs(5), first.next())
            .await
            .expect("ends within 5 s")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_per_message_admission_a_stream_is_one_sample_of_its_whole_duration() {
    // The problem the layer solves, on the same service: the concurrency layer alone holds
    // one permit for the call and feeds its whole duration to the algorithm.
    const JOBS: u64 = 20;
    const WORK_MS: u32 = 5;
    let rtts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let limiter = limiter(2, Arc::clone(&rtts));
    let probe = Probe::new();
    let channel = serve(limiter.clone(), Duration::from_secs(2), probe, false).await;
    let jobs = futures_util::stream::iter(0..JOBS).map(|seq| Job {
        seq,
        work_ms: WORK_MS,
        hold: false,
    });
    let mut done = work(channel, jobs).await;
    let mut n = 0;
    while let Some(d) = done.next().await {
        d.expect("done");
        n += 1;
    }
    assert_eq!(n, JOBS);
    // The permit is released when the response body ends, just after the client saw it end:
    // poll (deadline 5 s) until the sample arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rtts.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no sample within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rtts = rtts.lock().expect("lock").clone();
    println!("without per-message admission: samples {rtts:?}");
    assert_eq!(rtts.len(), 1, "one sample for the whole call: {rtts:?}");
    assert!(
        rtts[0] >= Duration::from_millis(u64::from(WORK_MS) * JOBS),
        "the sample spans the stream: {rtts:?}"
    );
    assert_eq!(limiter.stats().counters.bypassed, 0);
}

//! Invariant: whatever happens to requests (answered, streamed, cancelled, failed, body
//! dropped), every permit is released exactly once and in-flight equals the requests still
//! holding one.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use proptest::prelude::*;
use tailwater_core::clock::TokioClock;
use tailwater_tower::concurrency::ResponseBody;
use tailwater_tower::{BoxError, ConcurrencyLayer, DefaultClassifier};
use tower::{Layer, Service, service_fn};

use crate::support::*;

#[derive(Debug, Clone, Copy)]
enum Fate {
    /// 200 with a body read to the end.
    Complete,
    /// 503 from the service, body read.
    Unavailable,
    /// Body dropped before its end.
    DropBody,
    /// Body fails mid-stream.
    BodyError,
    /// The service fails.
    ServiceError,
    /// The response future is dropped before it is polled.
    Cancel,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        Just(Fate::Complete),
        Just(Fate::Unavailable),
        Just(Fate::DropBody),
        Just(Fate::BodyError),
        Just(Fate::ServiceError),
        Just(Fate::Cancel),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Call(Fate),
    /// Finish the live request at this index (modulo the number live).
    Finish(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        fate().prop_map(Op::Call),
        any::<usize>().prop_map(Op::Finish)
    ]
}

type Held = ResponseBody<TestBody, TokioClock, DefaultClassifier>;
type Fut = Pin<Box<dyn Future<Output = Result<Response<Held>, BoxError>>>>;

enum Live {
    Pending(Fut),
    Body(Fate, Pin<Box<Held>>),
}

fn service(req: Request<()>) -> std::future::Ready<Result<Response<TestBody>, BoxError>> {
    let fate = req
        .extensions()
        .get::<Fate>()
        .copied()
        .unwrap_or(Fate::Complete);
    let (tx, body) = channel_body();
    let res = match fate {
        Fate::ServiceError => return std::future::ready(Err("boom".into())),
        Fate::BodyError => {
            tx.try_send(Ok(Frame::data(Bytes::from_static(b"a"))))
                .unwrap();
            tx.try_send(Err("reset".into())).unwrap();
            Response::new(body)
        }
        Fate::Unavailable => {
            tx.try_send(Ok(Frame::data(Bytes::from_static(b"busy"))))
                .unwrap();
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
        _ => {
            tx.try_send(Ok(Frame::data(Bytes::from_static(b"ok"))))
                .unwrap();
            Response::new(body)
        }
    };
    std::future::ready(Ok(res))
}

fn drain(mut body: Pin<&mut Held>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(_)) | None) => return,
            Poll::Pending => panic!("test bodies are pre-filled"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn permits_are_released_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let _guard = rt.enter();
        let (limiter, _) = limiter(4);
        let mut svc = ConcurrencyLayer::new(limiter.clone()).layer(service_fn(service));
        let mut live: Vec<Live> = Vec::new();
        let mut admitted = 0u64;
        for op in ops {
            match op {
                Op::Call(fate) => {
                    let mut req = request(&[]);
                    req.extensions_mut().insert(fate);
                    let before = limiter.in_flight();
                    let mut fut: Fut = Box::pin(svc.call(req));
                    let took = limiter.in_flight() > before;
                    if took {
                        admitted += 1;
                    }
                    if let Fate::Cancel = fate {
                        if took {
                            live.push(Live::Pending(fut));
                        }
                        continue;
                    }
                    match poll_once(&mut fut) {
                        Poll::Ready(Ok(res)) => {
                            if res.body().holds_permit() {
                                live.push(Live::Body(fate, Box::pin(res.into_body())));
                            }
                        }
                        Poll::Ready(Err(_)) => {}
                        Poll::Pending => panic!("ready services"),
                    }
                }
                Op::Finish(i) => {
                    if live.is_empty() {
                        continue;
                    }
                    let i = i % live.len();
                    match live.swap_remove(i) {
                        Live::Pending(fut) => drop(fut),
                        Live::Body(Fate::DropBody, body) => drop(body),
                        Live::Body(_, mut body) => drain(body.as_mut()),
                    }
                }
            }
            prop_assert_eq!(limiter.in_flight(), live.len());
            prop_assert!(limiter.in_flight() <= limiter.limit());
        }
        drop(live);
        prop_assert_eq!(limiter.in_flight(), 0);
        let c = limiter.stats().counters;
        prop_assert_eq!(c.success + c.dropped + c.ignored, admitted);
        prop_assert_eq!(c.admitted_total(), admitted);
    }
}

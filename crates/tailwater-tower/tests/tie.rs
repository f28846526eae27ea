//! Tied requests over real sockets: two servers with `TieLayer` → `ConcurrencyLayer` (one
//! slot, a FIFO queue) → `TieStartLayer`, each cancelling its peer's copy through the peer's
//! `TieCancelService` on a second (internal) port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_core::limiter::{QueueConfig, QueueDiscipline};
use tailwater_core::outbound::{TieConfig, TieRegistry};
use tailwater_tower::ConcurrencyLayer;
use tailwater_tower::outbound::tie::{
    TieCancelService, TieLayer, TieStartLayer, TieStarted, X_TAILWATER_TIE,
    X_TAILWATER_TIE_DROPPED, X_TAILWATER_TIE_PEER,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tower::ServiceBuilder;

async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn send(addr: SocketAddr, req: Request<Empty<Bytes>>) -> Response<Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = tx.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn tied(id: &str, peer: &str) -> Request<Empty<Bytes>> {
    Request::get("/")
        .header(X_TAILWATER_TIE, id)
        .header(X_TAILWATER_TIE_PEER, peer)
        .body(Empty::new())
        .unwrap()
}

/// One server: its app port, its cancel port, how many requests its handler ran, the gate
/// its `/hold` requests wait on, and where its handler says it started one.
struct Server {
    app: SocketAddr,
    cancel: SocketAddr,
    runs: Arc<AtomicUsize>,
    gate: Arc<Notify>,
    held: mpsc::UnboundedReceiver<()>,
    limiter: Limiter,
}

async fn server(
    name: &'static str,
    peers: Arc<std::sync::Mutex<HashMap<String, SocketAddr>>>,
) -> Server {
    let registry = Arc::new(TieRegistry::new(TieConfig::default()).unwrap());
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(1).unwrap())
        .queue(QueueConfig::new(16, QueueDiscipline::Fifo, Duration::from_secs(10)).unwrap())
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let (held_tx, held) = mpsc::unbounded_channel();
    // The notifier resolves the peer's name among the peers it knows, then sends the cancel.
    let notify = move |started: TieStarted| {
        let addr = started
            .peer
            .as_deref()
            .and_then(|p| peers.lock().unwrap().get(p).copied());
        if let Some(addr) = addr {
            tokio::spawn(async move {
                let req = Request::post("/")
                    .header(X_TAILWATER_TIE, started.id)
                    .body(Empty::new())
                    .unwrap();
                send(addr, req).await
            });
        }
    };
    let (r, g) = (runs.clone(), gate.clone());
    let handler = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (runs, gate, held) = (r.clone(), g.clone(), held_tx.clone());
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            if req.uri().path() == "/hold" {
                let _ = held.send(());
                gate.notified().await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
        }
    });
    let app = ServiceBuilder::new()
        .layer(TieLayer::new(registry.clone()))
        .layer(ConcurrencyLayer::new(limiter.clone()).wait(Duration::from_secs(10)))
        .layer(TieStartLayer::new(registry.clone(), notify))
        .service(handler);
    Server {
        app: serve(app).await,
        cancel: serve(
            ServiceBuilder::new()
                .map_response(|r: Response<Bytes>| r.map(Full::new))
                .service(TieCancelService::new(registry)),
        )
        .await,
        runs,
        gate,
        held,
        limiter,
    }
}

#[tokio::test]
async fn the_copy_started_first_cancels_the_queued_one_and_a_late_copy() {
    let peers = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let a = server("a", peers.clone()).await;
    let mut b = server("b", peers.clone()).await;
    peers.lock().unwrap().insert("a".into(), a.cancel);
    peers.lock().unwrap().insert("b".into(), b.cancel);

    // B's only slot is busy: its copy of the tie will queue.
    let hold = tokio::spawn(send(
        b.app,
        Request::get("/hold").body(Empty::new()).unwrap(),
    ));
    b.held.recv().await.unwrap();

    let (on_a, on_b) = tokio::join!(send(a.app, tied("t1", "b")), send(b.app, tied("t1", "a")));
    assert_eq!(on_a.status(), StatusCode::OK);
    assert_eq!(on_a.body(), "a");
    // B answered while its slot was still held: the queued copy was dropped, never run.
    assert_eq!(on_b.status(), StatusCode::CONFLICT);
    assert_eq!(on_b.headers()[X_TAILWATER_TIE_DROPPED], "1");
    assert!(!hold.is_finished());
    assert_eq!(b.runs.load(Ordering::SeqCst), 1, "only /hold ran on B");
    assert_eq!(b.limiter.in_flight(), 1);

    // A cancel that arrives first: the copy arriving after it is dropped on arrival.
    let req = Request::post("/")
        .header(X_TAILWATER_TIE, "t2")
        .body(Empty::new())
        .unwrap();
    assert_eq!(send(b.cancel, req).await.status(), StatusCode::NO_CONTENT);
    let late = send(b.app, tied("t2", "a")).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert_eq!(b.runs.load(Ordering::SeqCst), 1);

    b.gate.notify_one();
    assert_eq!(hold.await.unwrap().status(), StatusCode::OK);
    // Untied requests are untouched, and the dropped copies left nothing queued.
    let plain = send(b.app, Request::get("/").body(Empty::new()).unwrap()).await;
    assert_eq!(plain.body(), "b");
    assert_eq!(b.runs.load(Ordering::SeqCst), 2);
    assert_eq!(a.runs.load(Ordering::SeqCst), 1);
}

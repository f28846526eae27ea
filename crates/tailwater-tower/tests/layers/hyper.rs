//! A plain hyper 1 server (`Request<Incoming>` → `Response<BoxBody>`) behind the
//! concurrency layer, over a real socket: the shape the proxy uses.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tailwater_core::Limiter;
use tailwater_core::algorithm::Fixed;
use tailwater_tower::ConcurrencyLayer;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

use crate::support::{TestBody, channel_body, empty};

/// Echoes the request body back as it streams in.
async fn echo(
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
    Ok(Response::new(BoxBody::new(req.into_body())))
}

async fn client(addr: std::net::SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn hyper_streaming_echo_holds_the_permit_until_the_stream_ends() {
    let limiter = Limiter::new(Fixed::new(1).unwrap());
    let svc = ServiceBuilder::new()
        .layer(ConcurrencyLayer::new(limiter.clone()))
        .service_fn(echo);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((stream, _peer)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    // A streaming upload, echoed back while it streams.
    let (tx, body) = channel_body();
    let mut first = client(addr).await;
    let res = first
        .send_request(Request::post("/").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut echoed = res.into_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    assert_eq!(
        echoed.frame().await.unwrap().unwrap().into_data().unwrap(),
        "one"
    );
    assert_eq!(limiter.in_flight(), 1, "streaming: permit held");

    // Meanwhile another client is shed.
    let mut second = client(addr).await;
    let shed = second
        .send_request(Request::get("/").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");

    drop(tx);
    while let Some(frame) = echoed.frame().await {
        frame.unwrap();
    }
    assert_eq!(
        limiter.in_flight(),
        0,
        "released when the echoed stream ended"
    );

    let ok = second
        .send_request(Request::get("/").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    server.abort();
}

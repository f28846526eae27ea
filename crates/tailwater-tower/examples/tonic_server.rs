//! A tonic 0.14 server behind tailwater's layers.
//!
//! The service (`tailwater.example.Echo/Say`) is written by hand with prost's derive and
//! `tonic::server::Grpc`, which is what `tonic-prost-build` would generate; there is no
//! build script and no `protoc`. The `.proto` it implements:
//!
//! ```proto
//! syntax = "proto3";
//! package tailwater.example;
//! service Echo {
//!   rpc Say (EchoRequest) returns (EchoReply);
//!   rpc Count (CountRequest) returns (stream EchoReply);
//! }
//! message EchoRequest { string message = 1; }
//! message EchoReply { string message = 1; }
//! message CountRequest { uint32 n = 1; uint32 interval_ms = 2; }
//! ```
//!
//! Layers, outermost first: criticality from the `x-criticality` metadata, then adaptive
//! concurrency. A shed call fails with `UNAVAILABLE` and `grpc-retry-pushback-ms`. The
//! server stream `Count` holds its concurrency permit until its last message and trailers.
//!
//! Run: `cargo run -p tailwater-tower --example tonic_server -- 127.0.0.1:50051`

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tailwater_core::Limiter;
use tailwater_core::clock::Clock;
use tailwater_tower::{ConcurrencyLayer, CriticalityLayer};
use tokio::net::TcpListener;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::server::NamedService;
use tower::{Service, ServiceBuilder};

/// The request message.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoRequest {
    /// What to echo.
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

/// The reply message.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoReply {
    /// The echo.
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

/// The server-streaming request: `n` replies, `interval_ms` apart.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CountRequest {
    /// How many replies.
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
    /// Milliseconds between replies.
    #[prost(uint32, tag = "2")]
    pub(crate) interval_ms: u32,
}

/// The unary method's path.
pub(crate) const SAY: &str = "/tailwater.example.Echo/Say";
/// The server-streaming method's path.
pub(crate) const COUNT: &str = "/tailwater.example.Echo/Count";

/// The Echo service, routed by path as generated code does.
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "tailwater.example.Echo";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for EchoServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match req.uri().path() {
            SAY => Box::pin(async move {
                let say = tower::service_fn(|req: tonic::Request<EchoRequest>| async move {
                    let message = req.into_inner().message;
                    Ok::<_, Status>(tonic::Response::new(EchoReply { message }))
                });
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(say, req).await)
            }),
            COUNT => Box::pin(async move {
                let count = tower::service_fn(|req: tonic::Request<CountRequest>| async move {
                    let CountRequest { n, interval_ms } = req.into_inner();
                    // A bounded channel: the producer waits for the client.
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    tokio::spawn(async move {
                        for i in 0..n {
                            let interval = Duration::from_millis(u64::from(interval_ms));
                            tokio::time::sleep(interval).await;
                            let reply = EchoReply {
                                message: i.to_string(),
                            };
                            if tx.send(Ok(reply)).await.is_err() {
                                return; // the client went away
                            }
                        }
                    });
                    Ok::<_, Status>(tonic::Response::new(ReceiverStream::new(rx)))
                });
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.server_streaming(count, req).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// Serves Echo on `listener` behind the criticality and concurrency layers until
/// `shutdown` completes.
pub(crate) async fn serve<C: Clock>(
    listener: TcpListener,
    limiter: Limiter<C>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let layers = ServiceBuilder::new()
        .layer(CriticalityLayer::new())
        .layer(ConcurrencyLayer::new(limiter).route("echo"));
    tonic::transport::Server::builder()
        .layer(layers)
        .add_service(EchoServer)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

/// A client call to `Say`.
pub(crate) async fn say(
    channel: tonic::transport::Channel,
    message: &str,
    criticality: Option<&str>,
) -> Result<tonic::Response<EchoReply>, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(EchoRequest {
        message: message.to_owned(),
    });
    if let Some(c) = criticality
        && let Ok(v) = c.parse()
    {
        req.metadata_mut().insert("x-criticality", v);
    }
    client
        .unary(
            req,
            http::uri::PathAndQuery::from_static(SAY),
            tonic_prost::ProstCodec::default(),
        )
        .await
}

/// A client call to `Count`: the stream of replies.
pub(crate) async fn count(
    channel: tonic::transport::Channel,
    n: u32,
    interval_ms: u32,
) -> Result<tonic::Streaming<EchoReply>, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let req = tonic::Request::new(CountRequest { n, interval_ms });
    let res = client
        .server_streaming(
            req,
            http::uri::PathAndQuery::from_static(COUNT),
            tonic_prost::ProstCodec::default(),
        )
        .await?;
    Ok(res.into_inner())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("Echo on {}", listener.local_addr()?);
    let limiter = Limiter::builder()
        .algorithm(tailwater_core::algorithm::Aimd::default())
        .tiers(Default::default())
        .build()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, limiter, shutdown).await?;
    let _ = (say, count); // used by the tests that include this file
    Ok(())
}

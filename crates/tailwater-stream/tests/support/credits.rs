//! A tonic service written by hand (prost derive and `tonic::server::Grpc`, as the tower
//! crate's example does; no protoc), carrying request-N credits on bidi calls:
//!
//! ```proto
//! syntax = "proto3";
//! package tailwater.stream;
//! service Credits {
//!   // Server-streaming with credits: the request half carries the grants.
//!   rpc Subscribe (stream Grant) returns (stream Item);
//!   // Client-streaming with credits: the response half carries the grants.
//!   rpc Publish (stream Item) returns (stream Grant);
//! }
//! message Grant { uint32 n = 1; }
//! message Item { uint64 seq = 1; bytes payload = 2; }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use tailwater_stream::request_n::RequestN;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

/// A credit grant.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Grant {
    /// Items granted.
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
}

/// An item.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Item {
    /// Its sequence number.
    #[prost(uint64, tag = "1")]
    pub(crate) seq: u64,
    /// Its payload.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) payload: Vec<u8>,
}

pub(crate) const SUBSCRIBE: &str = "/tailwater.stream.Credits/Subscribe";
pub(crate) const PUBLISH: &str = "/tailwater.stream.Credits/Publish";
/// `Subscribe` without credits: the server streams as fast as HTTP/2 lets it.
pub(crate) const FLOOD: &str = "/tailwater.stream.Credits/Flood";

/// What the publisher side observed: items sent, and the most ever outstanding
/// (sent minus consumed) at a send.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) sent: AtomicU64,
    pub(crate) consumed: AtomicU64,
    pub(crate) max_outstanding: AtomicU64,
    /// The last `Subscribe` publisher's credits taken, and its stalls (`Pending` for want
    /// of credit), when its stream ended.
    pub(crate) granted: AtomicU64,
    pub(crate) stalls: AtomicU64,
}

impl Ledger {
    /// Called by the publisher as it emits one item.
    pub(crate) fn on_send(&self) {
        let sent = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let outstanding = sent.saturating_sub(self.consumed.load(Ordering::SeqCst));
        self.max_outstanding
            .fetch_max(outstanding, Ordering::SeqCst);
    }
}

/// The server: `Subscribe` publishes `items` items of `payload` bytes against the
/// client's grants; `Flood` the same without credits; `Publish` consumes with a window of
/// `window`, calling `consume` for each item.
#[derive(Clone)]
pub(crate) struct CreditsServer {
    pub(crate) items: u64,
    pub(crate) payload: usize,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) window: std::num::NonZeroU32,
    pub(crate) consume: ConsumeFn,
}

impl NamedService for CreditsServer {
    const NAME: &'static str = "tailwater.stream.Credits";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// What `Publish` does with each item it consumes.
pub(crate) type ConsumeFn = Arc<dyn Fn(Item) -> BoxFuture<()> + Send + Sync>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn items(
    ledger: Arc<Ledger>,
    n: u64,
    payload: usize,
) -> impl Stream<Item = Result<Item, Status>> + Send + Unpin {
    futures_util::stream::iter(0..n).map(move |seq| {
        ledger.on_send();
        Ok(Item {
            seq,
            payload: vec![7; payload],
        })
    })
}

impl tower::Service<http::Request<Body>> for CreditsServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        let path = req.uri().path().to_owned();
        Box::pin(async move {
            let res = match path.as_str() {
                SUBSCRIBE | FLOOD => {
                    let svc =
                        tower::service_fn(move |req: tonic::Request<tonic::Streaming<Grant>>| {
                            let this = this.clone();
                            let flood = path == FLOOD;
                            async move {
                                let source =
                                    items(Arc::clone(&this.ledger), this.items, this.payload);
                                let grants = req
                                    .into_inner()
                                    .filter_map(|g| std::future::ready(g.ok().map(|g| g.n)));
                                let out: BoxStream<Item> = if flood {
                                    Box::pin(source)
                                } else {
                                    Box::pin(Recorded {
                                        inner: RequestN::new(source, grants),
                                        ledger: Arc::clone(&this.ledger),
                                    })
                                };
                                Ok::<_, Status>(tonic::Response::new(out))
                            }
                        });
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    grpc.streaming(svc, req).await
                }
                PUBLISH => {
                    let svc =
                        tower::service_fn(move |req: tonic::Request<tonic::Streaming<Item>>| {
                            let this = this.clone();
                            async move {
                                let (demand, grants) = tailwater_stream::request_n::demand();
                                let mut sub = tailwater_stream::Subscriber::new(
                                    req.into_inner(),
                                    demand,
                                    this.window,
                                );
                                let consume = Arc::clone(&this.consume);
                                tokio::spawn(async move {
                                    while let Some(Ok(item)) = sub.next().await {
                                        consume(item).await;
                                    }
                                });
                                let out: BoxStream<Grant> =
                                    Box::pin(grants.map(|n| Ok(Grant { n })));
                                Ok::<_, Status>(tonic::Response::new(out))
                            }
                        });
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                    grpc.streaming(svc, req).await
                }
                _ => http::Response::new(Body::empty()),
            };
            Ok(res)
        })
    }
}

/// A `Subscribe` publisher that leaves its credit figures in the ledger when it ends.
struct Recorded<S, G> {
    inner: RequestN<S, G>,
    ledger: Arc<Ledger>,
}

impl<S, G> Stream for Recorded<S, G>
where
    S: Stream + Unpin,
    G: Stream<Item = u32> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            let (granted, stalls) = (self.inner.granted(), self.inner.stalls());
            self.ledger.granted.store(granted, Ordering::SeqCst);
            self.ledger.stalls.store(stalls, Ordering::SeqCst);
        }
        polled
    }
}

/// Serves `server` on 127.0.0.1:0 (HTTP/2); returns the address.
pub(crate) async fn serve(server: CreditsServer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // No Nagle: a credit grant is a small message that must not wait for an ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(incoming),
    );
    addr
}

/// A client channel to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect")
}

/// Opens a bidi call on `path`, sending `outbound`.
pub(crate) async fn bidi<In, Out>(
    channel: tonic::transport::Channel,
    path: &'static str,
    outbound: impl Stream<Item = In> + Send + 'static,
) -> tonic::Streaming<Out>
where
    In: prost::Message + Send + 'static,
    Out: prost::Message + Default + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.streaming(
        tonic::Request::new(outbound),
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect("call")
    .into_inner()
}

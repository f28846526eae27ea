//! The gRPC side: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` on tonic.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::proto::{RateLimitRequest, RateLimitResponse, RateLimitService, RateLimitServiceServer};
use crate::service::{RateLimiter, RlsError};

/// The largest request message accepted (bytes): far above any real descriptor set, far
/// below tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The tonic service around a [`RateLimiter`].
#[derive(Debug, Clone)]
pub struct GrpcService {
    limiter: RateLimiter,
}

impl GrpcService {
    /// Wraps `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter }
    }

    /// The tonic server type, with the message bound applied.
    pub fn into_server(self) -> RateLimitServiceServer<Self> {
        RateLimitServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl RateLimitService for GrpcService {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        match self.limiter.should_rate_limit(request.get_ref()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(RlsError::Invalid(m)) => Err(Status::invalid_argument(m)),
            // UNAVAILABLE: Envoy's `failure_mode_deny` decides, as for an unreachable RLS.
            Err(RlsError::Unavailable(m)) => Err(Status::unavailable(m)),
        }
    }
}

/// HTTP/2 settings of the gRPC server (`None` = tonic / hyper's default).
///
/// Measured (README, issue 17, session 9): none of them changes the instructions per
/// decision by more than 2 %; the runtime does ([`spawn_grpc_threads`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcServerOptions {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` per connection.
    pub max_concurrent_streams: Option<u32>,
    /// Initial stream window (bytes).
    pub initial_stream_window: Option<u32>,
    /// Initial connection window (bytes).
    pub initial_connection_window: Option<u32>,
    /// hyper's BDP-based adaptive window.
    pub adaptive_window: Option<bool>,
    /// `SETTINGS_MAX_FRAME_SIZE` (bytes).
    pub max_frame_size: Option<u32>,
}

/// Serves gRPC (HTTP/2 cleartext) on `listener` until `shutdown` completes, then drains
/// in-flight calls.
pub async fn serve_grpc(
    listener: TcpListener,
    limiter: RateLimiter,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_grpc_with(listener, limiter, shutdown, &GrpcServerOptions::default()).await
}

/// [`serve_grpc`] with explicit HTTP/2 settings.
pub async fn serve_grpc_with(
    listener: TcpListener,
    limiter: RateLimiter,
    shutdown: impl Future<Output = ()> + Send,
    options: &GrpcServerOptions,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .max_concurrent_streams(options.max_concurrent_streams)
        .initial_stream_window_size(options.initial_stream_window)
        .initial_connection_window_size(options.initial_connection_window)
        .http2_adaptive_window(options.adaptive_window)
        .max_frame_size(options.max_frame_size)
        .add_service(GrpcService::new(limiter).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The gRPC server on `threads` threads, each a single-threaded tokio runtime accepting
/// from the same listening socket and serving its connections to the end: every call of
/// a connection is decoded, decided and answered on one thread.
///
/// Why: on the multi-threaded runtime a call's task often runs on the other worker than
/// its connection, so each answer wakes the connection (a futex) and is written on its own
/// (about 0.6 `writev` per decision under h2load); on one thread the answers of a read
/// batch go out in one write (0.06 per decision) and the server's CPU per decision fell
/// from 16–18 µs to 10–11 µs (README, issue 17, session 9).
///
/// `listener` must be non-blocking (as [`tokio::net::TcpListener::into_std`] leaves it).
/// The threads stop accepting when `shutdown` turns `true`, drain their calls and end;
/// [`GrpcThreads::join`] waits for them.
pub fn spawn_grpc_threads(
    listener: std::net::TcpListener,
    limiter: RateLimiter,
    threads: std::num::NonZeroUsize,
    options: GrpcServerOptions,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<GrpcThreads> {
    listener.set_nonblocking(true)?;
    let mut handles = Vec::with_capacity(threads.get());
    for i in 0..threads.get() {
        let listener = listener.try_clone()?;
        let limiter = limiter.clone();
        let options = options.clone();
        let mut shutdown = shutdown.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name(format!("rls-grpc-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let stop = async move {
                        let _ = shutdown.wait_for(|s| *s).await;
                    };
                    serve_grpc_with(listener, limiter, stop, &options)
                        .await
                        .map_err(std::io::Error::other)
                })
            })?;
        handles.push(handle);
    }
    Ok(GrpcThreads { handles })
}

/// The threads of [`spawn_grpc_threads`].
#[derive(Debug)]
pub struct GrpcThreads {
    handles: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl GrpcThreads {
    /// Waits until every thread has stopped (after the shutdown signal); the first error
    /// of a thread, if any (a thread that panicked is reported as an error).
    pub fn join(self) -> std::io::Result<()> {
        let mut result = Ok(());
        for h in self.handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a gRPC thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

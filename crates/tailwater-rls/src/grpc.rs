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

/// Serves gRPC (HTTP/2 cleartext) on `listener` until `shutdown` completes, then drains
/// in-flight calls.
pub async fn serve_grpc(
    listener: TcpListener,
    limiter: RateLimiter,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(GrpcService::new(limiter).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

//! Layer tests over `tower::service_fn` services, on tokio's paused clock.

mod axum;
mod concurrency;
mod criticality;
mod deadline;
mod edge;
mod grpc;
mod hyper;
mod observe;
mod proptests;
mod rate_limit;
mod support;

// The tonic example, compiled into the tests so that they drive the real server.
#[path = "../../examples/tonic_server.rs"]
#[allow(dead_code)]
mod tonic_example;

// The axum example, for the same reason.
#[path = "../../examples/axum_server.rs"]
#[allow(dead_code)]
mod axum_example;

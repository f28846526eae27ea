//! The tonic example over a real socket, with a tonic client.

use std::time::Duration;

use tailwater_core::algorithm::Fixed;
use tailwater_core::{Limiter, TierThresholds};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::tonic_example::{count, say, serve};

struct Running {
    channel: Channel,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start(limiter: Limiter) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, limiter, async {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        channel,
        stop,
        server,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        drop(self.channel);
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn shed_grpc_call_is_unavailable_with_pushback() {
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(1).unwrap())
        .retry_after(Duration::from_millis(250))
        .build()
        .unwrap();
    let run = start(limiter.clone()).await;

    let reply = say(run.channel.clone(), "hello", None).await.unwrap();
    assert_eq!(reply.into_inner().message, "hello");
    assert_eq!(
        limiter.in_flight(),
        0,
        "released once the trailers went out"
    );

    // Fill the limiter: the next call is shed before reaching the service.
    let held = limiter.try_acquire().unwrap();
    let status = say(run.channel.clone(), "hello", None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "overloaded: limit_reached");
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "250"
    );
    drop(held);

    let reply = say(run.channel.clone(), "again", None).await.unwrap();
    assert_eq!(reply.into_inner().message, "again");
    let c = limiter.stats().counters;
    assert_eq!((c.success, c.rejected_total()), (2, 1));
    run.stop().await;
}

#[tokio::test]
async fn criticality_metadata_sheds_sheddable_calls_first() {
    let limiter = Limiter::builder()
        .algorithm(Fixed::new(10).unwrap())
        .tiers(
            TierThresholds::default()
                .with_contention_window(std::time::Duration::from_secs(3600))
                .unwrap(),
        )
        .build()
        .unwrap();
    let run = start(limiter.clone()).await;
    // Critical calls were turned away at the full limit: Sheddable is held to its
    // reservation (2 of 10).
    let held: Vec<_> = (0..10).map(|_| limiter.try_acquire().unwrap()).collect();
    for _ in 0..8 {
        assert!(limiter.try_acquire().is_err());
    }
    let _held: Vec<_> = held.into_iter().take(2).collect();

    let status = say(run.channel.clone(), "batch", Some("SHEDDABLE"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "overloaded: tier_threshold");

    let reply = say(run.channel.clone(), "user", Some("CRITICAL"))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "user");
    run.stop().await;
}

#[tokio::test]
async fn server_stream_holds_its_permit_until_the_stream_ends() {
    let limiter = Limiter::new(Fixed::new(1).unwrap());
    let run = start(limiter.clone()).await;

    let mut stream = count(run.channel.clone(), 3, 20).await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.message, "0");
    assert_eq!(
        limiter.in_flight(),
        1,
        "two more messages to come: permit held"
    );

    // The only permit is taken by the open stream: a unary call is shed meanwhile.
    let status = say(run.channel.clone(), "hi", None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    assert_eq!(stream.message().await.unwrap().unwrap().message, "1");
    assert_eq!(stream.message().await.unwrap().unwrap().message, "2");
    assert!(stream.message().await.unwrap().is_none(), "OK trailers");
    assert_eq!(limiter.in_flight(), 0, "released with the trailers");
    let c = limiter.stats().counters;
    assert_eq!((c.success, c.dropped), (1, 0));
    run.stop().await;
}

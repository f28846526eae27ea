use std::convert::Infallible;

use http::{Request, Response};
use tailwater_core::Criticality;
use tailwater_tower::CriticalityLayer;
use tailwater_tower::criticality::{propagate, propagate_from};
use tower::{Layer, ServiceExt, service_fn};

use crate::support::request;

/// The tier the layer stored for a request with `headers`.
async fn tier_of(layer: &CriticalityLayer, headers: &[(&str, &str)]) -> Criticality {
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        let tier = *req.extensions().get::<Criticality>().expect("tier set");
        Ok::<_, Infallible>(Response::new(tier))
    }));
    svc.oneshot(request(headers)).await.unwrap().into_body()
}

#[tokio::test]
async fn header_values_parse_in_every_spelling() {
    let layer = CriticalityLayer::new();
    let table = [
        ("CRITICAL_PLUS", Criticality::CriticalPlus),
        ("critical_plus", Criticality::CriticalPlus),
        ("critical-plus", Criticality::CriticalPlus),
        ("CRITICAL", Criticality::Critical),
        ("SHEDDABLE_PLUS", Criticality::SheddablePlus),
        ("sheddable", Criticality::Sheddable),
        (" Sheddable ", Criticality::Sheddable),
    ];
    for (value, want) in table {
        assert_eq!(
            tier_of(&layer, &[("x-criticality", value)]).await,
            want,
            "{value:?}"
        );
    }
}

#[tokio::test]
async fn missing_or_invalid_header_gets_the_default() {
    let layer = CriticalityLayer::new();
    assert_eq!(tier_of(&layer, &[]).await, Criticality::Critical);
    assert_eq!(
        tier_of(&layer, &[("x-criticality", "urgent!!")]).await,
        Criticality::Critical
    );
    let layer = CriticalityLayer::new().default_tier(Criticality::SheddablePlus);
    assert_eq!(tier_of(&layer, &[]).await, Criticality::SheddablePlus);
}

#[tokio::test]
async fn ceiling_caps_what_a_client_may_claim() {
    let layer = CriticalityLayer::new().ceiling(Criticality::Critical);
    assert_eq!(
        tier_of(&layer, &[("x-criticality", "CRITICAL_PLUS")]).await,
        Criticality::Critical
    );
    assert_eq!(
        tier_of(&layer, &[("x-criticality", "SHEDDABLE")]).await,
        Criticality::Sheddable
    );
}

#[tokio::test]
async fn a_trusted_peer_keeps_its_claim_above_the_ceiling() {
    let layer = CriticalityLayer::new()
        .ceiling(Criticality::Critical)
        .trust(["10.0.0.0/8".parse().unwrap()]);
    let claim = |peer: &str| {
        let mut req = request(&[("x-criticality", "critical_plus")]);
        req.extensions_mut()
            .insert(tailwater_tower::rate_limit::PeerAddr(
                peer.parse().expect("peer"),
            ));
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            let tier = *req.extensions().get::<Criticality>().expect("tier set");
            Ok::<_, Infallible>(Response::new(tier))
        }));
        async move { svc.oneshot(req).await.unwrap().into_body() }
    };
    assert_eq!(claim("10.1.2.3:4000").await, Criticality::CriticalPlus);
    assert_eq!(claim("192.0.2.1:4000").await, Criticality::Critical);
    // No peer in the extensions: not trusted.
    assert_eq!(
        tier_of(&layer, &[("x-criticality", "critical_plus")]).await,
        Criticality::Critical
    );
}

#[tokio::test]
async fn custom_header_and_closure() {
    let layer = CriticalityLayer::header("x-priority".parse().unwrap());
    assert_eq!(
        tier_of(&layer, &[("x-priority", "sheddable")]).await,
        Criticality::Sheddable
    );
    let by_path = CriticalityLayer::from_fn(|req: &http::request::Parts| {
        req.uri
            .path()
            .starts_with("/batch")
            .then_some(Criticality::Sheddable)
    });
    fn echo(req: Request<()>) -> std::future::Ready<Result<Response<Criticality>, Infallible>> {
        std::future::ready(Ok(Response::new(
            *req.extensions().get::<Criticality>().unwrap(),
        )))
    }
    let svc = by_path.layer(service_fn(echo));
    let req = Request::builder().uri("/batch/job").body(()).unwrap();
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().into_body(),
        Criticality::Sheddable
    );
    let req = Request::builder().uri("/checkout").body(()).unwrap();
    assert_eq!(
        svc.oneshot(req).await.unwrap().into_body(),
        Criticality::Critical
    );
}

#[test]
fn propagation_copies_the_tier_onto_outbound_requests() {
    let mut inbound = request(&[]);
    inbound.extensions_mut().insert(Criticality::SheddablePlus);
    let mut outbound = Request::new(());
    propagate_from(&inbound, &mut outbound);
    assert_eq!(outbound.headers()["x-criticality"], "sheddable_plus");

    let mut outbound = Request::new(());
    propagate(Criticality::CriticalPlus, &mut outbound);
    assert_eq!(outbound.headers()["x-criticality"], "critical_plus");

    // Nothing to copy: nothing is set.
    let mut outbound = Request::new(());
    propagate_from(&request(&[]), &mut outbound);
    assert!(outbound.headers().get("x-criticality").is_none());
}

//! Another endpoint for an h2c request whose connect failed, as the HTTP/1.1 pool's path
//! does ([`crate::route::reach`]).
//!
//! hyper-util's legacy client (which speaks h2c here) connects by itself and consumes the
//! request it is given, so it cannot hand a request back when connecting fails. The request
//! is therefore copied *before* it is sent, when it can be sent again: its body is at hand
//! (none, or a small body read whole before admission, [`RequestBody::try_clone`]). A
//! streamed body cannot be copied: such a request keeps the old behaviour (one endpoint).
//!
//! The rule is the pool's: only a failed **connect** (refused, unreachable,
//! `upstream.connect_timeout`; the legacy client reports it as `is_connect`) moves the request,
//! since no byte of it was written; it is counted as a gateway error of the endpoint, and the
//! next attempt goes to an endpoint not tried yet, at most [`MAX_ATTEMPTS`] in all and within
//! the request's timeout (the caller's). Any other failure (a reset, GOAWAY, a timeout) may
//! have reached the endpoint and is answered 502/504 as before, never resent.

use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::Incoming;

use crate::balance::{Attempt, MAX_ATTEMPTS};
use crate::conn::UpstreamClient;
use crate::request_body::RequestBody;
use crate::route::Route;
use crate::upstream::UpstreamError;

/// Sends `req` (its URI names the endpoint of the attempt in `slot`) with the h2c client,
/// moving it to another endpoint of `route` when connecting fails and it can be copied.
/// `slot` holds the attempt of the endpoint finally used (for the request's guard).
pub(crate) async fn send(
    client: &UpstreamClient,
    route: &Route,
    mut req: Request<RequestBody>,
    slot: &mut Option<Box<Attempt>>,
) -> Result<Response<Incoming>, UpstreamError> {
    let mut exclude = 0u64;
    let mut tries = 1;
    loop {
        // A copy only while another endpoint could still take it.
        let spare = (route.balance.is_some() && slot.is_some() && tries < MAX_ATTEMPTS)
            .then(|| copy(&req))
            .flatten();
        let err = match client.request(req).await {
            Ok(resp) => return Ok(resp),
            Err(e) if e.is_connect() => e,
            Err(e) => return Err(e.into()),
        };
        let (Some(balance), Some(spare)) = (&route.balance, spare) else {
            return Err(err.into());
        };
        let Some(attempt) = slot.take() else {
            return Err(err.into());
        };
        exclude |= 1u64 << attempt.index();
        attempt.connect_failed();
        let Some(next) = balance.select(exclude) else {
            return Err(err.into());
        };
        tracing::debug!(error = %err, "h2c connect failed; trying another endpoint");
        req = spare;
        let Ok(uri) = with_authority(req.uri(), &route.endpoints[next.index()].authority) else {
            // Every endpoint's authority made a valid URI when the route was built.
            return Err(err.into());
        };
        *req.uri_mut() = uri;
        *slot = Some(Box::new(next));
        tries += 1;
    }
}

/// A copy of `req` if its body can be sent again.
fn copy(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let body = req.body().try_clone()?;
    let mut r = Request::new(body);
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    Some(r)
}

/// `uri` sent to `authority` instead.
fn with_authority(uri: &Uri, authority: &Authority) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority.clone());
    Uri::from_parts(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffered_body_is_copied_a_streamed_one_is_not() {
        let mut req = Request::new(RequestBody::buffered(bytes::Bytes::from_static(b"id=7")));
        *req.method_mut() = http::Method::PUT;
        *req.uri_mut() = Uri::from_static("http://10.0.0.1:80/a?b=c");
        req.headers_mut().insert("x-id", "7".parse().unwrap());
        let c = copy(&req).expect("buffered");
        assert_eq!(c.method(), http::Method::PUT);
        assert_eq!(c.headers()["x-id"], "7");
        assert_eq!(http_body::Body::size_hint(c.body()).exact(), Some(4));
        let uri = with_authority(c.uri(), &Authority::from_static("10.0.0.2:81")).unwrap();
        assert_eq!(uri, "http://10.0.0.2:81/a?b=c");
        let bodiless = Request::new(RequestBody::buffered(bytes::Bytes::new()));
        assert_eq!(
            http_body::Body::size_hint(copy(&bodiless).unwrap().body()).exact(),
            Some(0)
        );
    }
}

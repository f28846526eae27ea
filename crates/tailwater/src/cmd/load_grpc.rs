//! `tailwater load --grpc` / `--rls-*`: the unary gRPC call of a load run, and the Envoy
//! RLS request built from `--rls-domain` and `--rls-descriptor`.

use std::sync::Arc;

use prost::Message as _;
use tailwater_load::{ConfigError, GrpcCall};
use tailwater_rls::proto::{Code, Entry, RateLimitDescriptor, RateLimitRequest, RateLimitResponse};

/// The RLS method, `--grpc`'s default with `--rls-domain`.
pub(crate) const RLS_METHOD: &str = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// The call of a run: `None` for plain HTTP.
pub(crate) fn call(
    grpc: Option<&str>,
    body: Option<&str>,
    rls_domain: Option<&str>,
    rls_descriptors: &[String],
) -> Result<Option<GrpcCall>, ConfigError> {
    if let Some(domain) = rls_domain {
        let message = rls_request(domain, rls_descriptors)?;
        let call = GrpcCall::new(grpc.unwrap_or(RLS_METHOD), &message)?;
        return Ok(Some(call.over_limit(Arc::new(is_over_limit))));
    }
    let Some(method) = grpc else {
        return Ok(None);
    };
    let message = match body {
        None => Vec::new(),
        Some(b) => match b.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| ConfigError::new("grpc_body", format!("{path}: {e}")))?,
            None => tailwater_load::parse_hex(b)?,
        },
    };
    GrpcCall::new(method, &message).map(Some)
}

/// A serialized `RateLimitRequest` for `domain` with one descriptor per `k=v,k2=v2`.
fn rls_request(domain: &str, descriptors: &[String]) -> Result<Vec<u8>, ConfigError> {
    if domain.is_empty() {
        return Err(ConfigError::new("rls_domain", "must not be empty"));
    }
    if descriptors.is_empty() {
        return Err(ConfigError::new(
            "rls_descriptor",
            "give at least one --rls-descriptor key=value[,key=value...]",
        ));
    }
    let mut out = Vec::with_capacity(descriptors.len());
    for d in descriptors {
        let mut entries = Vec::new();
        for pair in d.split(',').map(str::trim) {
            let (key, value) = pair
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        "rls_descriptor",
                        format!("`{pair}` in `{d}` is not key=value"),
                    )
                })?;
            entries.push(Entry {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        out.push(RateLimitDescriptor {
            entries,
            ..Default::default()
        });
    }
    Ok(RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: out,
        hits_addend: 0,
    }
    .encode_to_vec())
}

/// Whether an RLS answer says `OVER_LIMIT`.
fn is_over_limit(message: &[u8]) -> bool {
    RateLimitResponse::decode(message).is_ok_and(|r| r.overall_code == Code::OverLimit as i32)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn the_rls_request_carries_the_descriptors() {
        let bytes = super::rls_request("edge", &["a=1,b=2".into(), "c=".into()]).expect("valid");
        let r = tailwater_rls::proto::RateLimitRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(r.domain, "edge");
        let e: Vec<Vec<(&str, &str)>> = r
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(e, [vec![("a", "1"), ("b", "2")], vec![("c", "")]]);
        for bad in ["novalue", "=x", ""] {
            let err = super::rls_request("edge", &[bad.into()]).expect_err(bad);
            assert_eq!(err.field(), "rls_descriptor");
        }
        assert_eq!(
            super::rls_request("", &["a=1".into()])
                .expect_err("domain")
                .field(),
            "rls_domain"
        );
    }
}

//! The HTTP side, as envoyproxy/ratelimit's: `POST /json` (the same call in proto3 JSON;
//! 200 when admitted, 429 when over limit), `GET /healthcheck`, `GET /metrics`
//! (Prometheus), `GET /rlconfig` (the running configuration and the last reload error).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::ConfigWatcher;
use crate::proto::{self, Code, ProtoUnit, RateLimitRequest, RateLimitResponse};
use crate::service::{RateLimiter, RlsError};

/// The largest `/json` body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
struct AppState {
    limiter: RateLimiter,
    watcher: Option<Arc<ConfigWatcher>>,
}

/// The HTTP router (for embedding or tests). `watcher` feeds `/rlconfig` and the
/// configuration-load counters of `/metrics`.
pub fn router(limiter: RateLimiter, watcher: Option<Arc<ConfigWatcher>>) -> Router {
    Router::new()
        .route("/json", post(json))
        .route("/healthcheck", get(|| async { "OK" }))
        .route("/metrics", get(metrics))
        .route("/rlconfig", get(rlconfig))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { limiter, watcher })
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes.
pub async fn serve_http(
    listener: TcpListener,
    limiter: RateLimiter,
    watcher: Option<Arc<ConfigWatcher>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(limiter, watcher))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn json(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let req: JsonRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}\n")).into_response(),
    };
    let req = match req.into_proto() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match st.limiter.should_rate_limit(&req).await {
        Ok(resp) => {
            let code = if resp.overall_code == Code::OverLimit as i32 {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::OK
            };
            (code, axum::Json(JsonResponse::from(&resp))).into_response()
        }
        Err(RlsError::Invalid(m)) => (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response(),
        Err(RlsError::Unavailable(m)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{m}\n")).into_response()
        }
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut out = String::new();
    let loads = st.watcher.as_ref().map_or((1, 0), |w| w.load_counts());
    st.limiter
        .stats()
        .render(&mut out, loads, st.limiter.store().kind());
    if let Some(redis) = st.limiter.store().redis_stats() {
        crate::stats::render_redis(&mut out, st.limiter.store().kind(), &redis);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn rlconfig(State(st): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Out<'a> {
        store: &'static str,
        last_reload_error: Option<String>,
        config: &'a crate::config::Config,
    }
    let config = st.limiter.config();
    axum::Json(Out {
        store: st.limiter.store().kind(),
        last_reload_error: st
            .watcher
            .as_ref()
            .and_then(|w| w.last_error())
            .map(|e| e.to_string()),
        config: &config,
    })
    .into_response()
}

/// A JSON integer given as a number or (proto3 JSON for 64-bit) a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonInt {
    Num(u64),
    Str(String),
}

impl JsonInt {
    fn get(&self, field: &str) -> Result<u64, String> {
        match self {
            JsonInt::Num(n) => Ok(*n),
            JsonInt::Str(s) => s
                .parse()
                .map_err(|_| format!("{field}: not an unsigned integer: {s:?}")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    descriptors: Vec<JsonDescriptor>,
    #[serde(default, alias = "hits_addend")]
    hits_addend: Option<JsonInt>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonDescriptor {
    #[serde(default)]
    entries: Vec<JsonEntry>,
    #[serde(default, alias = "hits_addend")]
    hits_addend: Option<JsonInt>,
    #[serde(default)]
    limit: Option<JsonOverride>,
}

#[derive(Debug, Deserialize)]
struct JsonEntry {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonOverride {
    #[serde(default, alias = "requests_per_unit")]
    requests_per_unit: u32,
    #[serde(default)]
    unit: String,
}

impl JsonRequest {
    fn into_proto(self) -> Result<RateLimitRequest, String> {
        let hits = match &self.hits_addend {
            Some(h) => u32::try_from(h.get("hitsAddend")?)
                .map_err(|_| "hitsAddend: larger than 2^32 - 1".to_owned())?,
            None => 0,
        };
        let mut descriptors = Vec::with_capacity(self.descriptors.len());
        for (i, d) in self.descriptors.into_iter().enumerate() {
            let hits_addend = match &d.hits_addend {
                Some(h) => Some(h.get(&format!("descriptors[{i}].hitsAddend"))?),
                None => None,
            };
            let limit = match d.limit {
                Some(o) => {
                    let unit = match o.unit.to_ascii_uppercase().as_str() {
                        "SECOND" => 1,
                        "MINUTE" => 2,
                        "HOUR" => 3,
                        "DAY" => 4,
                        "MONTH" => 5,
                        "YEAR" => 6,
                        other => {
                            return Err(format!("descriptors[{i}].limit.unit: unknown {other:?}"));
                        }
                    };
                    Some(proto::RateLimitOverride {
                        requests_per_unit: o.requests_per_unit,
                        unit,
                    })
                }
                None => None,
            };
            descriptors.push(proto::RateLimitDescriptor {
                entries: d
                    .entries
                    .into_iter()
                    .map(|e| proto::Entry {
                        key: e.key,
                        value: e.value,
                    })
                    .collect(),
                limit,
                hits_addend,
            });
        }
        Ok(RateLimitRequest {
            domain: self.domain,
            descriptors,
            hits_addend: hits,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResponse {
    overall_code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<JsonStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    response_headers_to_add: Vec<JsonHeader>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonStatus {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_limit: Option<JsonLimit>,
    #[serde(skip_serializing_if = "is_zero")]
    limit_remaining: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_until_reset: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonLimit {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "is_zero")]
    requests_per_unit: u32,
    unit: &'static str,
}

#[derive(Debug, Serialize)]
struct JsonHeader {
    key: String,
    value: String,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn code_name(c: i32) -> &'static str {
    match Code::try_from(c) {
        Ok(Code::Ok) => "OK",
        Ok(Code::OverLimit) => "OVER_LIMIT",
        _ => "UNKNOWN",
    }
}

impl From<&RateLimitResponse> for JsonResponse {
    fn from(r: &RateLimitResponse) -> Self {
        Self {
            overall_code: code_name(r.overall_code),
            statuses: r
                .statuses
                .iter()
                .map(|s| JsonStatus {
                    code: code_name(s.code),
                    current_limit: s.current_limit.as_ref().map(|l| JsonLimit {
                        name: l.name.clone(),
                        requests_per_unit: l.requests_per_unit,
                        unit: ProtoUnit::try_from(l.unit).map_or("UNKNOWN", |u| u.as_str_name()),
                    }),
                    limit_remaining: s.limit_remaining,
                    duration_until_reset: s
                        .duration_until_reset
                        .as_ref()
                        .map(|d| format!("{}.{:09}s", d.seconds, d.nanos)),
                })
                .collect(),
            response_headers_to_add: r
                .response_headers_to_add
                .iter()
                .map(|h| JsonHeader {
                    key: h.key.clone(),
                    value: h.value.clone(),
                })
                .collect(),
        }
    }
}

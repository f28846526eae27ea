/// Forwarded; the upstream answered (not 5xx/429) and the body finished.
pub const SUCCESS: &str = "success";
/// Forwarded; the upstream answered 5xx or 429, could not be reached, or its body failed.
pub const UPSTREAM_ERROR: &str = "upstream_error";
/// Forwarded; no upstream answer within the route's timeout (504).
pub const TIMEOUT: &str = "timeout";
/// Refused by the concurrency limiter (503): the `reason` label says why.
pub const SHED: &str = "shed";
/// Refused by a rate limit (429).
pub const RATE_LIMITED: &str = "rate_limited";
/// The client went away before the response ended.
pub const CANCELLED: &str = "cancelled";
/// The client's request was malformed or too slow (400, 408).
pub const CLIENT_FAULT: &str = "client_fault";
/// Refused before forwarding for the request itself (413, or the client's own deadline
/// was already spent): never the upstream's fault.
pub const REJECTED: &str = "rejected";
/// Every value.
pub const ALL: [&str; 8] = [
    SUCCESS,
    UPSTREAM_ERROR,
    TIMEOUT,
    SHED,
    RATE_LIMITED,
    CANCELLED,
    CLIENT_FAULT,
    REJECTED,
];
/// The outcomes an availability SLI counts as errors by default (the upstream failed).
pub const UPSTREAM_FAILURES: [&str; 2] = [UPSTREAM_ERROR, TIMEOUT];

//! Request ids (made and echoed by `middleware.rs` over HTTP, by `grpc/call.rs` over gRPC) and
//! the headers (HTTP) or metadata keys (gRPC) both front ends read and write.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_VARIANT: HeaderName = HeaderName::from_static("x-quantserve-variant");
pub const X_MODEL: HeaderName = HeaderName::from_static("x-quantserve-model");
/// Per-request deadline in milliseconds; a `timeout_ms` body field takes precedence.
pub const X_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-timeout-ms");

/// The client's request id if it is a sane header value (visible ASCII, at most 128 bytes), else
/// a new one. Shared with the gRPC front end so both echo ids the same way.
pub fn request_id(given: Option<&str>) -> String {
    given
        .filter(|s| usable_request_id(s))
        .map_or_else(new_request_id, str::to_owned)
}

/// A client's id is kept when it is visible ASCII and at most 128 bytes.
pub fn usable_request_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// 16 hex digits, unique within the process and unpredictable across processes.
pub fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

//! gRPC status codes for the API's errors. `ApiError`'s HTTP status is the one classification of
//! failures; the gRPC code is derived from it, so both front ends always agree on what went wrong.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::api::errors::ApiError;

/// Error metadata: the HTTP API's machine-readable `code` (`input_too_long`, `queue_full`, ...),
/// which tells apart kinds that share a gRPC code.
pub const X_ERROR: &str = "x-quantserve-error";

/// Seconds a client should wait after a full queue before retrying, as HTTP's `Retry-After`.
const RETRY_AFTER_SECONDS: &str = "1";

/// The gRPC code of an error with this HTTP status.
pub fn code(status: StatusCode) -> Code {
    match status.as_u16() {
        // 422 (input too long, unsupported language pair) is wrong whatever the server's state:
        // INVALID_ARGUMENT, not FAILED_PRECONDITION. `x-quantserve-error` keeps the kind.
        400 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        409 => Code::FailedPrecondition,
        404 => Code::NotFound,
        413 | 429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The status a failed call ends with, carrying `headers` (request id, model, variant) too.
pub fn from_api_error(e: &ApiError, mut headers: HeaderMap) -> Status {
    if let Ok(v) = HeaderValue::from_str(e.code) {
        headers.insert(X_ERROR, v);
    }
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    Status::with_metadata(
        code(e.status),
        e.message.clone(),
        MetadataMap::from_headers(headers),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeError;

    #[test]
    fn codes_follow_the_http_statuses() {
        let grpc = |e: RuntimeError| code(ApiError::from(e).status);
        assert_eq!(
            grpc(RuntimeError::BadRequest("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(grpc(RuntimeError::UnknownModel("x".into())), Code::NotFound);
        assert_eq!(
            grpc(RuntimeError::UnknownVariant {
                model: "m".into(),
                variant: "v".into()
            }),
            Code::NotFound
        );
        assert_eq!(
            grpc(RuntimeError::TooLarge("x".into())),
            Code::ResourceExhausted
        );
        assert_eq!(
            grpc(RuntimeError::InputTooLong("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            grpc(RuntimeError::Unsupported("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            grpc(RuntimeError::QueueFull("x".into())),
            Code::ResourceExhausted
        );
        assert_eq!(grpc(RuntimeError::NotReady("x".into())), Code::Unavailable);
        assert_eq!(grpc(RuntimeError::ShuttingDown), Code::Unavailable);
        assert_eq!(grpc(RuntimeError::DeadlineExceeded), Code::DeadlineExceeded);
        assert_eq!(grpc(RuntimeError::Internal("x".into())), Code::Internal);
        assert_eq!(code(ApiError::unauthorized().status), Code::Unauthenticated);
    }

    #[test]
    fn queue_full_says_when_to_retry() {
        let e = ApiError::from(RuntimeError::QueueFull("en-pt/int8".into()));
        let s = from_api_error(&e, HeaderMap::new());
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1");
        assert_eq!(s.metadata().get(X_ERROR).unwrap(), "queue_full");
    }
}

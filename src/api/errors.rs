//! The JSON error body `{"error": message, "code": kind}` and the HTTP status of each kind.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::runtime::RuntimeError;

/// Seconds a client should wait after a 429 before retrying.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable kind, stable across messages.
    pub code: &'static str,
    pub message: String,
    /// Extra machine-readable facts, sent as `details` (the measured self-check of a refused
    /// variant).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <key>` header is required",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The body could not be read: too large (413) or broken off (400).
    pub fn from_body_rejection(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the limit",
            )
        } else {
            Self::bad_request(format!("could not read the request body: {rejection}"))
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let (status, code) = match &e {
            RuntimeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            RuntimeError::UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            RuntimeError::UnknownVariant { .. } => (StatusCode::NOT_FOUND, "unknown_variant"),
            RuntimeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            RuntimeError::InputTooLong(_) => (StatusCode::UNPROCESSABLE_ENTITY, "input_too_long"),
            RuntimeError::Unsupported(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unsupported"),
            RuntimeError::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            RuntimeError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            RuntimeError::VariantFailed(_) => (StatusCode::CONFLICT, "variant_failed"),
            RuntimeError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            RuntimeError::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            RuntimeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            RuntimeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            RuntimeError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            RuntimeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            RuntimeError::LoadFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "load_failed"),
            RuntimeError::SelfCheckFailed(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "self_check_failed")
            }
        };
        let details = match &e {
            RuntimeError::SelfCheckFailed(check) => serde_json::to_value(check).ok(),
            _ => None,
        };
        Self {
            details,
            ..Self::new(status, code, e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "code": self.code });
        if let Some(d) = self.details {
            body["details"] = d;
        }
        let mut resp = super::http::json_response(self.status, &body);
        let headers = resp.headers_mut();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_api_contract() {
        let status = |e: RuntimeError| ApiError::from(e).status.as_u16();
        assert_eq!(status(RuntimeError::BadRequest("x".into())), 400);
        assert_eq!(status(RuntimeError::UnknownModel("x".into())), 404);
        assert_eq!(
            status(RuntimeError::UnknownVariant {
                model: "m".into(),
                variant: "v".into()
            }),
            404
        );
        assert_eq!(status(RuntimeError::TooLarge("x".into())), 413);
        assert_eq!(status(RuntimeError::InputTooLong("x".into())), 422);
        assert_eq!(status(RuntimeError::Unsupported("x".into())), 422);
        assert_eq!(status(RuntimeError::QueueFull("x".into())), 429);
        assert_eq!(status(RuntimeError::NotReady("x".into())), 503);
        assert_eq!(status(RuntimeError::ShuttingDown), 503);
        assert_eq!(status(RuntimeError::DeadlineExceeded), 504);
        assert_eq!(status(RuntimeError::Internal("x".into())), 500);
    }
}

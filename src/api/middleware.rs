//! The standard HTTP middleware around every HTTP route (`tower-http`): request ids, one
//! access-log line per request, CORS when origins are configured, and gzip/brotli response
//! compression for clients that ask for it. gRPC (dispatched before the HTTP router) has its own.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, Response};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as HeaderRequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::http::RequestId;
use super::request_id::{X_MODEL, X_REQUEST_ID, X_VARIANT, new_request_id, usable_request_id};
use crate::runtime::config::CorsConfig;

/// Wraps the HTTP routes, outermost first: a client id that is not a sane header value is
/// dropped, an id is made when there is none and echoed on the response, the access log, CORS,
/// compression, and the id handed to the handlers.
pub fn wrap(app: Router, cors: &CorsConfig) -> Router {
    let app = match cors_layer(cors) {
        Some(layer) => app.layer(layer),
        None => app,
    };
    app.layer(
        ServiceBuilder::new()
            .map_request(drop_unusable_request_id)
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, NewRequestId))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(access_span::<axum::body::Body>)
                    .on_request(())
                    .on_response(access_line)
                    // The access line already has the status: no second line for a 5xx.
                    .on_failure(()),
            )
            .layer(
                CompressionLayer::new().compress_when(
                    DefaultPredicate::new().and(SizeAbove::new(MIN_COMPRESSED_BYTES)),
                ),
            )
            .map_request(request_id_for_handlers),
    )
}

/// Answers smaller than this go out uncompressed even when the client accepts gzip or brotli:
/// a one-sentence classify or translate answer (~200 bytes) would save a few dozen bytes for
/// ~20 µs of gzip (`cargo bench --bench middleware`). `/metrics`, model listings and batch
/// answers are larger and are compressed.
pub const MIN_COMPRESSED_BYTES: u16 = 1024;

/// Request ids as before tower-http: 16 hex digits, shared with the gRPC front end.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<HeaderRequestId> {
        HeaderValue::from_str(&new_request_id())
            .ok()
            .map(HeaderRequestId::new)
    }
}

/// A client id that is too long or not visible ASCII is replaced rather than echoed and logged.
fn drop_unusable_request_id(mut req: Request) -> Request {
    let usable = req
        .headers()
        .get(X_REQUEST_ID)
        .map(|v| v.to_str().is_ok_and(usable_request_id));
    if usable == Some(false) {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    req
}

fn request_id_for_handlers(mut req: Request) -> Request {
    let id = req
        .extensions()
        .get::<HeaderRequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map_or_else(new_request_id, str::to_owned);
    req.extensions_mut().insert(RequestId(id));
    req
}

/// The request's part of the access-log line: every event of the request carries it. Fields are
/// recorded with `%` (Display) so the text format has no quotes: `path=/classify`.
fn access_span<B>(req: &axum::http::Request<B>) -> Span {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
    )
}

/// One line per request at info level; the model and variant are the ones the handler served
/// (its `x-quantserve-model` / `x-quantserve-variant` headers), `-` for other routes.
fn access_line<B>(resp: &Response<B>, latency: Duration, _span: &Span) {
    let header = |name: &HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    tracing::info!(
        target: "quantserve::access",
        status = resp.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        model = %header(&X_MODEL),
        variant = %header(&X_VARIANT),
        "request"
    );
}

/// CORS for the configured origins (`*`: any), or none when no origin is configured. Any request
/// header may be sent (the sticky-routing header is configurable); the ids and the served
/// model and variant are readable by the page.
fn cors_layer(cors: &CorsConfig) -> Option<CorsLayer> {
    if cors.allowed_origins.is_empty() {
        return None;
    }
    let origins = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors.allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([X_REQUEST_ID, X_MODEL, X_VARIANT])
            .max_age(Duration::from_secs(600)),
    )
}

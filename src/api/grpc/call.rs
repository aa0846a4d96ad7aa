//! One gRPC call's bookkeeping, as `http.rs`'s middleware and `finish` do it for HTTP: request
//! id, API key and deadline from the metadata on the way in; metrics, response metadata and the
//! status code on the way out.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use tonic::metadata::{KeyAndValueRef, MetadataMap};
use tonic::{Request, Response, Status};

use super::{deadline, status};
use crate::api::auth::authorized;
use crate::api::errors::ApiError;
use crate::api::request_id::{X_MODEL, X_REQUEST_ID, X_VARIANT, request_id};
use crate::runtime::pool::QueueKey;
use crate::runtime::request::RouteHeaders;
use crate::runtime::{Runtime, RuntimeError};

pub struct Call<'a> {
    rt: &'a Runtime,
    /// Endpoint label of the request metrics (`grpc_classify`, ...).
    endpoint: &'static str,
    /// Inference calls are counted in the request metrics; listing models is not (as over HTTP).
    counted: bool,
    request_id: String,
    started: Instant,
    authorized: bool,
    timeout: Result<Option<Duration>, ApiError>,
    /// The metadata the router may read (a sticky key).
    headers: RouteHeaders,
}

impl<'a> Call<'a> {
    /// An inference call, counted in the request metrics under `endpoint`.
    pub fn inference<T>(rt: &'a Runtime, endpoint: &'static str, request: &Request<T>) -> Self {
        Self::new(rt, endpoint, true, request.metadata())
    }

    /// Any other call: same metadata handling, no request metrics.
    pub fn other<T>(rt: &'a Runtime, endpoint: &'static str, request: &Request<T>) -> Self {
        Self::new(rt, endpoint, false, request.metadata())
    }

    fn new(rt: &'a Runtime, endpoint: &'static str, counted: bool, md: &MetadataMap) -> Self {
        let text = |key: &str| md.get(key).and_then(|v| v.to_str().ok());
        Self {
            rt,
            endpoint,
            counted,
            request_id: request_id(text(X_REQUEST_ID.as_str())),
            started: Instant::now(),
            authorized: authorized(rt, text(header::AUTHORIZATION.as_str())),
            timeout: timeout(md),
            headers: RouteHeaders::new(md.iter().filter_map(|kv| match kv {
                KeyAndValueRef::Ascii(k, v) => Some((k.as_str(), v.to_str().ok()?)),
                KeyAndValueRef::Binary(..) => None,
            })),
        }
    }

    /// The call's request id (the client's `x-request-id`, or a new one).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn headers(&self) -> &RouteHeaders {
        &self.headers
    }

    /// Checks the API key, then returns the call's timeout (`None`: the server's default).
    pub fn admit(&self) -> Result<Option<Duration>, ApiError> {
        if !self.authorized {
            return Err(ApiError::unauthorized());
        }
        match &self.timeout {
            Ok(t) => Ok(*t),
            Err(e) => Err(ApiError::new(e.status, e.code, e.message.clone())),
        }
    }

    /// Records the call and turns its result into the response or status, both with the request
    /// id and, once known, the model and variant.
    pub fn finish<T>(
        self,
        target: Option<QueueKey>,
        result: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let http_status = result.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200);
        if self.counted {
            let (model, variant) = match &target {
                Some(k) => (k.model.as_str(), k.variant.as_str()),
                // Unknown names must not become label values: clients could create series at will.
                None => ("unknown", "unknown"),
            };
            // The status label keeps HTTP's numbers for both protocols, so one alert on 5xx
            // covers both; the endpoint label tells them apart.
            let m = &self.rt.metrics;
            m.requests_total
                .with_label_values(&[model, variant, self.endpoint, &http_status.to_string()])
                .inc();
            m.request_duration
                .with_label_values(&[model, variant])
                .observe(self.started.elapsed().as_secs_f64());
        }
        let mut headers = HeaderMap::new();
        let mut put = |name, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        put(X_REQUEST_ID, &self.request_id);
        if let Some(k) = &target {
            put(X_MODEL, &k.model);
            put(X_VARIANT, &k.variant);
        }
        tracing::debug!(
            request_id = %self.request_id,
            endpoint = self.endpoint,
            status = http_status,
            elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "grpc request"
        );
        match result {
            Ok(message) => Ok(Response::from_parts(
                MetadataMap::from_headers(headers),
                message,
                Default::default(),
            )),
            Err(e) => Err(status::from_api_error(&e, headers)),
        }
    }
}

/// The deadline the client set, if any. A zero one has already passed: no point in queueing.
fn timeout(md: &MetadataMap) -> Result<Option<Duration>, ApiError> {
    let Some(v) = md.get(deadline::GRPC_TIMEOUT) else {
        return Ok(None);
    };
    match v.to_str().ok().and_then(deadline::parse) {
        None => Err(ApiError::bad_request(
            "grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u, n)",
        )),
        Some(d) if d.is_zero() => Err(RuntimeError::DeadlineExceeded.into()),
        Some(d) => Ok(Some(d)),
    }
}

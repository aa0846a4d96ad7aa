//! The gRPC front end (`proto/quantserve.proto`): parse, call the runtime, format; no inference
//! happens here. Beside the `Inference` service: the standard health service (`health`) and
//! server reflection (v1 and v1alpha), so stock tools such as grpcurl work without the proto.
//!
//! The services form an axum router, served either on the HTTP port (`shared_port`) or on a
//! listener of their own; `serve.rs` decides and runs both with the same graceful drain.

mod call;
mod convert;
mod deadline;
pub mod health;
pub mod pb;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware;
use tonic::service::Routes;
use tonic::{Code, Request as GrpcRequest, Response, Status};
use tonic_health::pb::health_server::HealthServer;
use tower::ServiceExt;

use crate::api::errors::ApiError;
use crate::runtime::Runtime;
use call::Call;
use health::DrainingHealth;
use pb::inference_server::{Inference, InferenceServer};

pub use status::X_ERROR;

const GRPC_STATUS: &str = "grpc-status";

/// The gRPC services as one router: inference, health and reflection.
pub fn router(rt: Arc<Runtime>, health: HealthServer<DrainingHealth>) -> Result<Router> {
    // The same cap on a request's size as HTTP's body limit.
    let max_message = rt.config.limits.max_body_bytes;
    let inference = InferenceServer::new(InferenceApi { rt: rt.clone() })
        .max_decoding_message_size(max_message);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // grpcurl and others ask v1 first and fall back to v1alpha; older tools know only v1alpha.
    let v1 = reflection()
        .build_v1()
        .context("building gRPC reflection")?;
    let v1alpha = reflection()
        .build_v1alpha()
        .context("building gRPC reflection")?;
    Ok(Routes::new(inference)
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha)
        .prepare()
        .into_axum_router()
        .layer(middleware::from_fn_with_state(rt, refusals)))
}

/// Requests tonic refuses before any handler runs, made to match HTTP and counted in
/// `quantserve_requests_total` like every other answer: a message over
/// `max_decoding_message_size` (OUT_OF_RANGE from tonic) becomes RESOURCE_EXHAUSTED like every
/// other 413, and a body that is not the method's protobuf (INTERNAL from tonic, whose message
/// is prost's "failed to decode ...") becomes INVALID_ARGUMENT like HTTP's 400. Handlers never
/// return OUT_OF_RANGE, nor INTERNAL with that message, so nothing else is rewritten. Such
/// refusals come with no header but the status (trailers-only), which is where this looks.
async fn refusals(
    axum::extract::State(rt): axum::extract::State<Arc<Runtime>>,
    req: Request,
    next: middleware::Next,
) -> axum::response::Response {
    let endpoint = match req.uri().path().rsplit('/').next() {
        Some("Classify") => Some("grpc_classify"),
        Some("Translate") => Some("grpc_translate"),
        Some("ListModels") => Some("grpc_list_models"),
        _ => None,
    };
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    let status_is = |code: Code| {
        headers
            .get(GRPC_STATUS)
            .is_some_and(|v| v.as_bytes() == (code as i32).to_string().as_bytes())
    };
    let decode_failed = status_is(Code::Internal)
        && headers
            .get("grpc-message")
            .is_some_and(|m| m.as_bytes().starts_with(b"failed%20to%20decode"));
    let refused = if status_is(Code::OutOfRange) {
        Some((Code::ResourceExhausted, "payload_too_large", "413"))
    } else if decode_failed {
        Some((Code::InvalidArgument, "bad_request", "400"))
    } else {
        None
    };
    if let Some((code, kind, http_status)) = refused {
        if let Ok(v) = HeaderValue::from_str(&(code as i32).to_string()) {
            headers.insert(GRPC_STATUS, v);
        }
        headers.insert(X_ERROR, HeaderValue::from_static(kind));
        if let Some(endpoint) = endpoint {
            let m = &rt.metrics;
            m.requests_total
                .with_label_values(&["unknown", "unknown", endpoint, http_status])
                .inc();
            m.request_duration
                .with_label_values(&["unknown", "unknown"])
                .observe(started.elapsed().as_secs_f64());
        }
    }
    resp
}

/// HTTP and gRPC on one port: gRPC requests (`content-type: application/grpc...`) go to the gRPC
/// router, everything else to the HTTP one. Dispatching on the content type rather than merging
/// the routes keeps each router's fallback and middleware (JSON errors, body limit) to itself.
pub fn shared_port(http: Router, grpc: Router) -> Router {
    Router::new().fallback(move |req: Request| {
        let target = if is_grpc(&req) {
            grpc.clone()
        } else {
            http.clone()
        };
        target.oneshot(req)
    })
}

/// What gRPC calls reaching the HTTP port get when gRPC has a port of its own: UNIMPLEMENTED
/// naming that port, rather than a JSON 404 that gRPC clients report as a protocol error.
pub fn elsewhere(grpc_addr: SocketAddr) -> Router {
    Router::new().fallback(move || async move {
        Status::unimplemented(format!(
            "gRPC is served on {grpc_addr}, not on the HTTP port"
        ))
        .into_http::<Body>()
    })
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

struct InferenceApi {
    rt: Arc<Runtime>,
}

#[tonic::async_trait]
impl Inference for InferenceApi {
    async fn classify(
        &self,
        request: GrpcRequest<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let call = Call::inference(&self.rt, "grpc_classify", &request);
        let mut target = None;
        let result = async {
            let timeout = call.admit()?;
            let (mut req, top_k) = convert::classify_request(request.into_inner(), timeout)?;
            req.request_id = Some(call.request_id().to_string());
            req.headers = call.headers().clone();
            let served = self.rt.classify(req).await;
            target = served.target;
            let resp = served.result?;
            Ok::<_, ApiError>(convert::classify_response(resp, top_k))
        }
        .await;
        call.finish(target, result)
    }

    async fn translate(
        &self,
        request: GrpcRequest<pb::TranslateRequest>,
    ) -> Result<Response<pb::TranslateResponse>, Status> {
        let call = Call::inference(&self.rt, "grpc_translate", &request);
        let mut target = None;
        let result = async {
            let timeout = call.admit()?;
            let mut req = convert::translate_request(request.into_inner(), timeout);
            // gRPC's contract: input with nothing to translate is INVALID_ARGUMENT.
            if req.inputs.iter().all(|t| t.trim().is_empty()) {
                return Err(ApiError::bad_request(
                    "nothing to translate: the input is empty",
                ));
            }
            req.request_id = Some(call.request_id().to_string());
            req.headers = call.headers().clone();
            let served = self.rt.translate(req).await;
            target = served.target;
            let resp = served.result?;
            Ok::<_, ApiError>(convert::translate_response(resp))
        }
        .await;
        call.finish(target, result)
    }

    async fn list_models(
        &self,
        request: GrpcRequest<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let call = Call::other(&self.rt, "grpc_list_models", &request);
        let result = call.admit().map(|_| convert::list_models(&self.rt));
        call.finish(None, result)
    }
}

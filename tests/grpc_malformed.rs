//! A gRPC body that is not the method's protobuf is the client's error (INVALID_ARGUMENT, like
//! HTTP's 400), not the server's (INTERNAL), and it is counted in quantserve_requests_total.

mod common;

use axum::http::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use common::server::{self, fp32, metric, start, test_repository};

#[test]
fn a_malformed_protobuf_body_is_invalid_argument_and_counted() {
    let mut cfg = server::config(test_repository(), &fp32(&["tiny-bert"]));
    cfg.defaults.classify_model = "tiny-bert".into();
    let server = start(cfg);
    let addr = server.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let headers = runtime.block_on(async {
        let client: Client<_, tonic::body::Body> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        // One length-prefixed gRPC message of five 0xff bytes: not a ClassifyRequest.
        let framed = vec![0u8, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff];
        let req = Request::post(
            format!("http://{addr}/quantserve.v1.Inference/Classify")
                .parse::<Uri>()
                .unwrap(),
        )
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(axum::body::Body::from(framed)))
        .unwrap();
        client.request(req).await.unwrap().headers().clone()
    });
    assert_eq!(
        headers.get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("3"),
        "{headers:?}"
    );
    assert_eq!(
        headers
            .get("x-quantserve-error")
            .map(|v| v.to_str().unwrap()),
        Some("bad_request")
    );
    assert_eq!(
        metric(
            addr,
            "quantserve_requests_total",
            "endpoint=\"grpc_classify\",status=\"400\""
        ),
        1.0
    );
    server.shutdown();
    server.wait().unwrap();
}

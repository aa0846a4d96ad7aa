//! The gRPC front end end to end: real sockets, the generated tonic client, the real translation
//! model and a tiny random BERT (`common/tiny_bert.rs`). gRPC on the HTTP port (the default) and
//! on a listener of its own.
//!
//! The client runs over hyper's plain HTTP/2 client rather than tonic's `Channel`: a `Channel`
//! enforces `grpc-timeout` on the client side as well, and would win the race against the
//! server's own deadline, so the server's DEADLINE_EXCEEDED could not be observed.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::server::{self, start};
use common::tiny_bert;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use quantserve::api::grpc::X_ERROR;
use quantserve::api::grpc::pb::inference_client::InferenceClient;
use quantserve::api::grpc::pb::{self, ClassifyRequest, TranslateRequest};
use quantserve::api::serve::Server;
use quantserve::runtime::config::{Config, ModelConfig, WorkersConfig};
use quantserve::runtime::registry::VariantStatus;
use quantserve::runtime::routing::Routing;
use tonic::codegen::http::Uri;
use tonic::codegen::tokio_stream;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as ReflectionV1Alpha;

const HOW_ARE_YOU: &str = "How are you today?";
const HOW_ARE_YOU_PT: &str = "Como você está hoje?";
const SERVICE: &str = "quantserve.v1.Inference";

// ---------------------------------------------------------------------------------------------
// Clients.

type Transport = Client<HttpConnector, tonic::body::Body>;

/// Plaintext HTTP/2 with prior knowledge (h2c), as grpcurl -plaintext does.
fn transport() -> Transport {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

fn origin(addr: SocketAddr) -> Uri {
    format!("http://{addr}").parse().unwrap()
}

fn inference(addr: SocketAddr) -> InferenceClient<Transport> {
    InferenceClient::with_origin(transport(), origin(addr))
}

fn health(addr: SocketAddr) -> HealthClient<Transport> {
    HealthClient::with_origin(transport(), origin(addr))
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

fn en_pt(q: &[&str]) -> TranslateRequest {
    TranslateRequest {
        q: q.iter().map(|s| s.to_string()).collect(),
        source: Some("en".into()),
        target: Some("pt".into()),
        ..Default::default()
    }
}

fn classify(inputs: &[&str]) -> ClassifyRequest {
    ClassifyRequest {
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn check(addr: SocketAddr, service: &str) -> Result<ServingStatus, Status> {
    let r = health(addr)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(r.into_inner().status())
}

/// Polls the health service until it reports `want` (it samples readiness every 100 ms).
async fn wait_health(addr: SocketAddr, service: &str, want: ServingStatus) {
    let start = Instant::now();
    loop {
        let got = check(addr, service).await.unwrap();
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{service:?} is {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metadata<'a>(md: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    md.get(key).map(|v| v.to_str().unwrap())
}

/// The status of a call that must fail, checked for its code, error kind and request id.
fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, Status>,
    code: Code,
    kind: &str,
) -> Status {
    let s = r.expect_err("the call should fail");
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(metadata(s.metadata(), X_ERROR), Some(kind), "{s:?}");
    assert!(!s.message().is_empty());
    assert_eq!(
        metadata(s.metadata(), "x-request-id").map(str::len),
        Some(16)
    );
    s
}

/// A plain HTTP/1.1 request (one per connection) to show HTTP still answers on the port.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let json = [("content-type", "application/json")];
    let r = common::http_client::request(addr, method, path, &json, body.as_bytes());
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Servers.

fn config(models: &[&str]) -> Config {
    let mut cfg = server::config(server::test_repository(), &server::fp32(models));
    cfg.server.drain_seconds = 60;
    cfg.limits.max_inputs = 8;
    cfg.limits.max_input_chars = 2_000;
    cfg.defaults.classify_model = "tiny-bert".into();
    cfg
}

/// The server most tests share: gRPC on the HTTP port.
fn shared() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    let server = SERVER.get_or_init(|| start(config(&["en-pt", "tiny-bert"])));
    assert_eq!(server.grpc_addr(), server.addr());
    server.addr()
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[tokio::test]
async fn translate_round_trip() {
    let mut client = inference(shared());
    let mut req = Request::new(en_pt(&[HOW_ARE_YOU, "", "Thank you very much."]));
    req.metadata_mut()
        .insert("x-request-id", "abc-123".parse().unwrap());
    let r = client.translate(req).await.unwrap();
    assert_eq!(metadata(r.metadata(), "x-request-id"), Some("abc-123"));
    assert_eq!(metadata(r.metadata(), "x-quantserve-model"), Some("en-pt"));
    assert_eq!(metadata(r.metadata(), "x-quantserve-variant"), Some("fp32"));
    let body = r.into_inner();
    assert_eq!(body.translated_text[0], HOW_ARE_YOU_PT);
    assert_eq!(body.translated_text[1], "");
    assert!(!body.translated_text[2].is_empty());
    assert_eq!(
        (body.model.as_str(), body.variant.as_str()),
        ("en-pt", "fp32")
    );

    // By model name, with a beam and a generous deadline; a made-up request id when none is sent.
    let mut req = Request::new(TranslateRequest {
        q: vec![format!("{HOW_ARE_YOU}\n\n{HOW_ARE_YOU}")],
        model: Some("en-pt".into()),
        beam_size: Some(4),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(60));
    let r = client.translate(req).await.unwrap();
    assert_eq!(
        metadata(r.metadata(), "x-request-id").map(str::len),
        Some(16)
    );
    assert_eq!(
        r.into_inner().translated_text,
        [format!("{HOW_ARE_YOU_PT}\n\n{HOW_ARE_YOU_PT}")]
    );
}

#[tokio::test]
async fn classify_round_trip() {
    let mut client = inference(shared());
    let r = client
        .classify(ClassifyRequest {
            top_k: Some(2),
            ..classify(&["good movie", "terrible!"])
        })
        .await
        .unwrap();
    assert_eq!(metadata(r.metadata(), "x-quantserve-variant"), Some("fp32"));
    let body = r.into_inner();
    assert_eq!(
        (body.model.as_str(), body.variant.as_str()),
        ("tiny-bert", "fp32")
    );
    assert_eq!(body.results.len(), 2);
    for res in &body.results {
        assert!(tiny_bert::LABELS.contains(&res.label.as_str()));
        assert_eq!(res.scores.len(), 2);
        assert_eq!(res.scores[0].label, res.label);
        assert_eq!(res.scores[0].score, res.score);
        assert!(res.scores[0].score >= res.scores[1].score);
    }
    // Every label with top_k past their number, summing to one; no `scores` without top_k.
    let r = client
        .classify(ClassifyRequest {
            top_k: Some(99),
            model: Some("tiny-bert".into()),
            ..classify(&["good"])
        })
        .await
        .unwrap()
        .into_inner();
    let sum: f32 = r.results[0].scores.iter().map(|s| s.score).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");
    let r = client.classify(classify(&["good"])).await.unwrap();
    assert!(r.into_inner().results[0].scores.is_empty());
}

#[tokio::test]
async fn list_models() {
    let r = inference(shared())
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap();
    assert_eq!(
        metadata(r.metadata(), "x-request-id").map(str::len),
        Some(16)
    );
    let models = r.into_inner().models;
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["en-pt", "tiny-bert"]);
    let en_pt = &models[0];
    assert_eq!(
        (en_pt.task.as_str(), en_pt.default_variant.as_str()),
        ("translate", "fp32")
    );
    let v = &en_pt.variants[0];
    assert_eq!((v.name.as_str(), v.status.as_str()), ("fp32", "ready"));
    assert_eq!((v.scheme.as_str(), v.bits), ("fp32", Some(32)));
    assert!(v.bytes.unwrap() > 1_000_000);
    assert_eq!(v.error, None);
    assert_eq!(models[1].task, "classify");
}

// ---------------------------------------------------------------------------------------------
// Health and reflection.

#[tokio::test]
async fn health_is_serving_once_ready() {
    let addr = shared();
    wait_health(addr, "", ServingStatus::Serving).await;
    assert_eq!(check(addr, SERVICE).await.unwrap(), ServingStatus::Serving);
    let unknown = check(addr, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

/// The services a reflection response lists.
fn listed(response: Option<MessageResponse>) -> Vec<String> {
    match response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("not a service list: {other:?}"),
    }
}

#[tokio::test]
async fn reflection_lists_and_describes_the_services() {
    let addr = shared();
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(format!(
            "{SERVICE}.Translate"
        ))),
    ];
    let mut client = ServerReflectionClient::with_origin(transport(), origin(addr));
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let services = listed(answers.message().await.unwrap().unwrap().message_response);
    for s in [
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.iter().any(|n| n == s),
            "{s} missing from {services:?}"
        );
    }
    match answers.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(f)) => {
            assert!(!f.file_descriptor_proto.is_empty());
        }
        other => panic!("no file descriptor: {other:?}"),
    }

    // The older protocol, which older grpcurl versions speak.
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaAnswer;
    let mut client = ReflectionV1Alpha::with_origin(transport(), origin(addr));
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(Alpha::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().unwrap().message_response {
        Some(AlphaAnswer::ListServicesResponse(l)) => {
            assert!(l.service.iter().any(|s| s.name == SERVICE));
        }
        other => panic!("not a service list: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[tokio::test]
async fn error_codes() {
    let mut client = inference(shared());
    // NOT_FOUND: unknown model or variant, with no model metadata (nothing was resolved).
    let s = expect_err(
        client
            .classify(ClassifyRequest {
                model: Some("nope".into()),
                ..classify(&["a"])
            })
            .await,
        Code::NotFound,
        "unknown_model",
    );
    assert_eq!(metadata(s.metadata(), "x-quantserve-variant"), None);
    expect_err(
        client
            .translate(TranslateRequest {
                variant: Some("int3".into()),
                ..en_pt(&["a"])
            })
            .await,
        Code::NotFound,
        "unknown_variant",
    );
    // INVALID_ARGUMENT (HTTP 400): no inputs, blank inputs, bad parameters.
    expect_err(
        client.classify(classify(&[])).await,
        Code::InvalidArgument,
        "bad_request",
    );
    let s = expect_err(
        client.classify(classify(&[" "])).await,
        Code::InvalidArgument,
        "bad_request",
    );
    // The model was resolved: its variant is in the metadata, as HTTP's headers.
    assert_eq!(metadata(s.metadata(), "x-quantserve-variant"), Some("fp32"));
    expect_err(
        client.translate(en_pt(&[])).await,
        Code::InvalidArgument,
        "bad_request",
    );
    expect_err(
        client.translate(en_pt(&["", "  "])).await,
        Code::InvalidArgument,
        "bad_request",
    );
    expect_err(
        client
            .classify(ClassifyRequest {
                top_k: Some(0),
                ..classify(&["a"])
            })
            .await,
        Code::InvalidArgument,
        "bad_request",
    );
    expect_err(
        client
            .translate(TranslateRequest {
                beam_size: Some(99),
                ..en_pt(&["Hi"])
            })
            .await,
        Code::InvalidArgument,
        "bad_request",
    );
    expect_err(
        client
            .translate(TranslateRequest {
                source: None,
                ..en_pt(&["Hi"])
            })
            .await,
        Code::InvalidArgument,
        "bad_request",
    );
    let mut bad_deadline = Request::new(en_pt(&["Hi"]));
    bad_deadline
        .metadata_mut()
        .insert("grpc-timeout", "soon".parse().unwrap());
    expect_err(
        client.translate(bad_deadline).await,
        Code::InvalidArgument,
        "bad_request",
    );
    // INVALID_ARGUMENT (HTTP 422): too many tokens, unsupported pair or detection.
    let long = "good ".repeat(100);
    expect_err(
        client.classify(classify(&[&long])).await,
        Code::InvalidArgument,
        "input_too_long",
    );
    let truncated = client
        .classify(ClassifyRequest {
            truncate: true,
            ..classify(&[&long])
        })
        .await;
    assert!(truncated.is_ok(), "{truncated:?}");
    expect_err(
        client
            .translate(TranslateRequest {
                target: Some("de".into()),
                ..en_pt(&["Hi"])
            })
            .await,
        Code::InvalidArgument,
        "unsupported",
    );
    expect_err(
        client
            .translate(TranslateRequest {
                source: Some("auto".into()),
                ..en_pt(&["Hi"])
            })
            .await,
        Code::InvalidArgument,
        "unsupported",
    );
    // RESOURCE_EXHAUSTED (HTTP 413): too many inputs, too many characters.
    expect_err(
        client.classify(classify(&["good"; 9])).await,
        Code::ResourceExhausted,
        "payload_too_large",
    );
    let words = "word ".repeat(500);
    expect_err(
        client.translate(en_pt(&[&words])).await,
        Code::ResourceExhausted,
        "payload_too_large",
    );
    // A message over max_body_bytes is refused before it is read (so without a request id), with
    // the same kind as HTTP's 413.
    let huge = "a".repeat(1 << 20);
    let s = client.classify(classify(&[&huge])).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(metadata(s.metadata(), X_ERROR), Some("payload_too_large"));
    assert_eq!(
        metadata(s.metadata(), "x-request-id"),
        None,
        "it reached a handler"
    );
    // The server is fine after all this.
    let r = client.translate(en_pt(&[HOW_ARE_YOU])).await.unwrap();
    assert_eq!(r.into_inner().translated_text, [HOW_ARE_YOU_PT]);
}

#[tokio::test]
async fn deadline_exceeded() {
    let mut client = inference(shared());
    let long = "The committee will meet again next week to discuss the budget and the schedule.";
    let mut req = Request::new(TranslateRequest {
        beam_size: Some(8),
        ..en_pt(&[long])
    });
    req.set_timeout(Duration::from_millis(1));
    let s = expect_err(
        client.translate(req).await,
        Code::DeadlineExceeded,
        "deadline_exceeded",
    );
    assert_eq!(metadata(s.metadata(), "x-quantserve-variant"), Some("fp32"));
    // A deadline that has already passed is not even queued.
    let mut req = Request::new(en_pt(&[long]));
    req.metadata_mut()
        .insert("grpc-timeout", "0m".parse().unwrap());
    expect_err(
        client.translate(req).await,
        Code::DeadlineExceeded,
        "deadline_exceeded",
    );
    let r = client.translate(en_pt(&[HOW_ARE_YOU])).await.unwrap();
    assert_eq!(r.into_inner().translated_text, [HOW_ARE_YOU_PT]);
}

#[tokio::test]
async fn not_ready_and_unauthenticated() {
    // A model that does not exist never loads: not ready, so NOT_SERVING and UNAVAILABLE.
    let mut cfg = config(&["missing-model"]);
    cfg.server.api_key = Some("s3cret".into());
    let server = Server::start(cfg, false).unwrap();
    let addr = server.grpc_addr();
    let mut client = inference(addr);
    // Health and reflection stay open without the key.
    for service in ["", SERVICE] {
        assert_eq!(
            check(addr, service).await.unwrap(),
            ServingStatus::NotServing
        );
    }
    let request = || ClassifyRequest {
        model: Some("missing-model".into()),
        ..classify(&["a"])
    };
    expect_err(
        client.classify(with_key(request(), "s3cret")).await,
        Code::Unavailable,
        "not_ready",
    );
    expect_err(
        client.classify(request()).await,
        Code::Unauthenticated,
        "unauthorized",
    );
    expect_err(
        client.classify(with_key(request(), "nope")).await,
        Code::Unauthenticated,
        "unauthorized",
    );
    expect_err(
        client.list_models(pb::ListModelsRequest {}).await,
        Code::Unauthenticated,
        "unauthorized",
    );
    let models = client
        .list_models(with_key(pb::ListModelsRequest {}, "s3cret"))
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models[0].name, "missing-model");
    assert_eq!(check(addr, "").await.unwrap(), ServingStatus::NotServing);
    server.shutdown();
    // Off the test's executor: HTTP/2's graceful close needs the client's connection task to
    // answer the server's GOAWAY ping.
    tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// One port or two; backpressure; shutdown.

/// The value of one series in Prometheus text format (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn http_and_grpc_share_the_port() {
    let addr = shared();
    let grpc_ok = r#"quantserve_requests_total{endpoint="grpc_translate",model="en-pt",status="200",variant="fp32"}"#;
    let grpc_404 = r#"quantserve_requests_total{endpoint="grpc_classify",model="unknown",status="404",variant="unknown"}"#;
    let metrics = move || {
        let (status, body) = http(addr, "GET", "/metrics", "");
        assert_eq!(status, 200);
        body
    };
    let before = tokio::task::spawn_blocking(metrics).await.unwrap();

    let r = inference(addr)
        .translate(en_pt(&[HOW_ARE_YOU]))
        .await
        .unwrap();
    assert_eq!(r.into_inner().translated_text, [HOW_ARE_YOU_PT]);
    let missing = inference(addr)
        .classify(ClassifyRequest {
            model: Some("nope".into()),
            ..classify(&["a"])
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let body = format!(r#"{{"q": "{HOW_ARE_YOU}", "source": "en", "target": "pt"}}"#);
    let (status, json) =
        tokio::task::spawn_blocking(move || http(addr, "POST", "/translate", &body))
            .await
            .unwrap();
    assert_eq!(status, 200, "{json}");
    assert!(json.contains(HOW_ARE_YOU_PT), "{json}");

    // gRPC calls are in the request metrics beside HTTP's, under their own endpoint.
    let after = tokio::task::spawn_blocking(metrics).await.unwrap();
    assert!(
        series(&after, grpc_ok) - series(&before, grpc_ok) >= 1.0,
        "{after}"
    );
    assert!(
        series(&after, grpc_404) - series(&before, grpc_404) >= 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn separate_grpc_port_and_graceful_shutdown() {
    let mut cfg = config(&["en-pt"]);
    cfg.server.grpc_addr = Some("127.0.0.1:0".into());
    cfg.workers = WorkersConfig {
        count: 1,
        threads: 1,
    };
    // A full queue answers at once, so backpressure shows with a few concurrent calls.
    cfg.batching.queue_capacity = 1;
    cfg.batching.max_batch_size = 1;
    let server = start(cfg);
    let (http_addr, grpc_addr) = (server.addr(), server.grpc_addr());
    assert_ne!(http_addr, grpc_addr);

    // gRPC on its port, HTTP on its own; gRPC calls on the HTTP port are told where to go.
    wait_health(grpc_addr, "", ServingStatus::Serving).await;
    let r = inference(grpc_addr)
        .translate(en_pt(&[HOW_ARE_YOU]))
        .await
        .unwrap();
    assert_eq!(r.into_inner().translated_text, [HOW_ARE_YOU_PT]);
    let (status, _) =
        tokio::task::spawn_blocking(move || http(http_addr, "GET", "/health/ready", ""))
            .await
            .unwrap();
    assert_eq!(status, 200);
    let wrong_port = inference(http_addr).translate(en_pt(&[HOW_ARE_YOU])).await;
    let e = wrong_port.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    assert!(e.message().contains(&grpc_addr.to_string()), "{e:?}");

    // RESOURCE_EXHAUSTED with retry-after when the queue is full.
    let text = "The committee will meet again next week to discuss the budget, the schedule and the new rules.";
    let calls: Vec<_> = (0..12)
        .map(|_| {
            tokio::spawn(async move {
                inference(grpc_addr)
                    .translate(TranslateRequest {
                        beam_size: Some(4),
                        ..en_pt(&[text])
                    })
                    .await
            })
        })
        .collect();
    let mut refused = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => {}
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert_eq!(metadata(s.metadata(), X_ERROR), Some("queue_full"));
                assert_eq!(metadata(s.metadata(), "retry-after"), Some("1"));
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no call was refused");

    // Shutdown: a Watch stream hears NOT_SERVING and ends; the call in flight still finishes.
    let mut watch = health(grpc_addr)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let in_flight = tokio::spawn(async move {
        inference(grpc_addr)
            .translate(TranslateRequest {
                beam_size: Some(4),
                ..en_pt(&[text])
            })
            .await
    });
    let start = Instant::now();
    while server.runtime().in_flight() == 0 {
        if in_flight.is_finished() {
            panic!("finished early: {:?}", in_flight.await);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the call did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Past the runtime's admission check (right after the in-flight count), into the queue.
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.shutdown();
    assert!(
        server.runtime().in_flight() > 0,
        "the call finished before the shutdown: the test proves nothing"
    );
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    assert!(
        watch.message().await.unwrap().is_none(),
        "the watch did not end"
    );
    let done = in_flight.await.unwrap().unwrap().into_inner();
    assert!(!done.translated_text[0].is_empty(), "{done:?}");
    tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    for addr in [http_addr, grpc_addr] {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still accepting");
    }
}

#[tokio::test]
async fn routing_reads_the_sticky_key_from_metadata_and_refuses_overrides() {
    let mut cfg = config(&[]);
    cfg.models.insert(
        "tiny-bert".into(),
        ModelConfig {
            variants: vec!["int8".into()],
            // A random model: its int8 copy need not agree with fp32 to be routed to here.
            min_agreement: 0.0,
            routing: Some(Routing {
                split: [("fp32".to_string(), 50), ("int8".to_string(), 50)].into(),
                sticky_key: Some("x-user-id".into()),
                allow_override: false,
                shadow: None,
                experiment: Default::default(),
            }),
            ..ModelConfig::fp32()
        },
    );
    let server = start(cfg);
    // Ready means one variant of the split serves; stickiness needs both loaded.
    let began = Instant::now();
    while server
        .runtime()
        .registry
        .views(|_| 0)
        .iter()
        .flat_map(|m| &m.variants)
        .any(|v| v.status != VariantStatus::Ready)
    {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "variants never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = inference(server.grpc_addr());
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..16 {
        let call = |user: i32| {
            let mut r = Request::new(classify(&["a b c"]));
            r.metadata_mut()
                .insert("x-user-id", format!("u{user}").parse().unwrap());
            r
        };
        let first = client
            .classify(call(user))
            .await
            .unwrap()
            .into_inner()
            .variant;
        for _ in 0..3 {
            let again = client.classify(call(user)).await.unwrap().into_inner();
            assert_eq!(again.variant, first, "user u{user} moved");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "16 users all on {seen:?}");
    let named = ClassifyRequest {
        variant: Some("fp32".into()),
        ..classify(&["a"])
    };
    expect_err(
        client.classify(named).await,
        Code::PermissionDenied,
        "forbidden",
    );
    server.shutdown();
    // Waited for off the test's executor, which must keep serving the client's connection.
    tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
}

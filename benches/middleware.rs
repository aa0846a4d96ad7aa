//! What the standard HTTP middleware (`api::middleware::wrap`: request id, access-log line,
//! compression) adds to one request, measured in process so the model's time and the network's
//! noise are not in it: the same trivial handler (a classify-sized JSON answer with the model and
//! variant headers the real handlers set) called through the bare router and through the
//! wrapped one, logging at info to stderr as the server does.
//!
//!     cargo bench --bench middleware 2>/dev/null            # stderr: the access lines
//!     cargo bench --bench middleware -- --json 2>/dev/null  # one JSON object
//!
//! Compare the added microseconds with a request's own latency (`quantserve bench` or the
//! README's HTTP figures): that ratio is the middleware's share of the request path.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::IntoResponse;
use axum::routing::post;
use quantserve::api::middleware;
use quantserve::api::request_id::{X_MODEL, X_VARIANT};
use quantserve::api::serve::init_tracing;
use quantserve::runtime::config::CorsConfig;
use tower::ServiceExt;

/// A classify answer of the size the server sends for one sentence.
const ANSWER: &str = r#"{"model":"sentiment","variant":"int8","results":[{"label":"positive","score":0.9312,"scores":{"negative":0.0688,"positive":0.9312}}],"request_id":"0123456789abcdef"}"#;

async fn classify() -> impl IntoResponse {
    (
        [
            (X_MODEL, HeaderValue::from_static("sentiment")),
            (X_VARIANT, HeaderValue::from_static("int8")),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        ANSWER,
    )
}

fn request(gzip: bool) -> Request<Body> {
    let mut req = Request::post("/classify")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"model":"sentiment","inputs":"a fine film"}"#,
        ))
        .expect("request");
    if gzip {
        req.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate"),
        );
    }
    req
}

/// Median over `rounds` of the mean time per request over `per_round` requests, in µs.
fn time_per_request(rt: &tokio::runtime::Runtime, app: &Router, gzip: bool) -> f64 {
    const ROUNDS: usize = 15;
    const PER_ROUND: usize = 4000;
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    let resp = app
                        .clone()
                        .oneshot(request(gzip))
                        .await
                        .expect("infallible");
                    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                        .await
                        .expect("body");
                    std::hint::black_box(body);
                }
            });
            t.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    init_tracing(quantserve::runtime::config::LogFormat::Text);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let bare = Router::new().route("/classify", post(classify));
    let wrapped = middleware::wrap(bare.clone(), &CorsConfig::default());
    // Warm up allocator and caches on every path before timing.
    for app in [&bare, &wrapped] {
        time_per_request(&rt, app, true);
    }
    let bare_us = time_per_request(&rt, &bare, false);
    let wrapped_us = time_per_request(&rt, &wrapped, false);
    let gzip_us = time_per_request(&rt, &wrapped, true);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bare_us": bare_us,
                "wrapped_us": wrapped_us,
                "wrapped_gzip_us": gzip_us,
                "added_us": wrapped_us - bare_us,
                "added_gzip_us": gzip_us - bare_us,
            })
        );
    } else {
        println!("µs per request (median of 15 rounds of 4,000):");
        println!("  bare router                 {bare_us:8.2}");
        println!(
            "  with middleware             {wrapped_us:8.2}  (+{:.2})",
            wrapped_us - bare_us
        );
        println!(
            "  with middleware, gzip asked {gzip_us:8.2}  (+{:.2})",
            gzip_us - bare_us
        );
    }
}

//! Swagger UI at `/docs`, over `/openapi.json`, served from the binary: swagger-ui-dist 5.36.0
//! (Apache-2.0, `docs/LICENSE`, `docs/NOTICE`) vendored gzip-compressed (`docs/README.md` says
//! how), sent as is to clients that take gzip (every browser) and inflated for the others.

use std::io::Read;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;

const BUNDLE_JS: &[u8] = include_bytes!("docs/swagger-ui-bundle.js.gz");
const CSS: &[u8] = include_bytes!("docs/swagger-ui.css.gz");

const INDEX: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quantserve API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true });
</script>
</body>
</html>
"##;

/// `GET /docs`: the page (its links are relative, so it works behind a path prefix too).
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

/// `GET /docs/{asset}`: the script or the style sheet.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let (gz, content_type) = match name.as_str() {
        "swagger-ui-bundle.js" => (BUNDLE_JS, "application/javascript; charset=utf-8"),
        "swagger-ui.css" => (CSS, "text/css; charset=utf-8"),
        _ => return ApiError::not_found("no such file").into_response(),
    };
    let takes_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    let ct = (header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if takes_gzip {
        let enc = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([ct, enc, cache, vary], gz).into_response();
    }
    let mut plain = Vec::with_capacity(gz.len() * 4);
    match flate2::read::GzDecoder::new(gz).read_to_end(&mut plain) {
        Ok(_) => ([ct, cache, vary], plain).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("inflating {name}: {e}"),
        )
        .into_response(),
    }
}

//! `POST /translate_file` and `GET /download_file/{name}`: a `.txt` or `.html` upload is
//! translated and kept for `file_ttl_seconds` under the system's temporary folder; the answer
//! is `{"translatedFileUrl": ".../download_file/<id>.<stem>_<target><ext>"}`, as LibreTranslate
//! gives it, and the download is named `<stem>_<target><ext>`.
//!
//! A file is translated in pieces that respect the request limits: a text file paragraph by
//! paragraph, an HTML file text node by text node (`runtime::html`), in calls of at most
//! `max_inputs` pieces.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::fields::Fields;
use super::{LtError, detect_for, pair_error, request_authorized};
use crate::api::errors::ApiError;
use crate::api::http::json_response;
use crate::runtime::Runtime;
use crate::runtime::detect::base_language;
use crate::runtime::html;
use crate::runtime::request::{TextFormat, TranslateRequest};
use crate::runtime::routing::random_u64;

/// The file types translated (LibreTranslate also takes office documents, PDF and subtitles).
pub const EXTENSIONS: &[&str] = &[".txt", ".html"];

fn folder() -> PathBuf {
    std::env::temp_dir().join("quantserve-files")
}

/// Deletes translated files older than `ttl`.
fn clean(ttl: Duration) {
    let Ok(entries) = std::fs::read_dir(folder()) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > ttl);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Safe file-name characters only (no separators, no traversal).
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.trim_start_matches('.').to_string()
}

/// Translates `pieces` (each within the limits) in calls of at most `max_inputs`; blank
/// pieces stay as they are.
async fn translate_pieces(
    rt: &Runtime,
    template: &TranslateRequest,
    mut pieces: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let todo: Vec<usize> = (0..pieces.len())
        .filter(|&i| !pieces[i].trim().is_empty())
        .collect();
    for chunk in todo.chunks(rt.config.limits.max_inputs.max(1)) {
        let req = TranslateRequest {
            inputs: chunk.iter().map(|&i| pieces[i].clone()).collect(),
            ..template.clone()
        };
        let outputs = rt.translate(req).await.result?.outputs;
        for (&i, t) in chunk.iter().zip(outputs) {
            pieces[i] = t;
        }
    }
    Ok(pieces)
}

pub async fn translate_file(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, LtError> {
    let lt = &rt.config.libretranslate;
    if !lt.files {
        return Err(LtError(
            StatusCode::FORBIDDEN,
            "Files translation are disabled on this server.".into(),
        ));
    }
    let body = body.map_err(ApiError::from_body_rejection)?;
    let fields = Fields::read(&headers, uri.query(), body)
        .await
        .map_err(|e| LtError::bad(e.0))?;
    let text = |name: &str| fields.text(name).map_err(|e| LtError::bad(e.0));
    if !request_authorized(&rt, &headers, text("api_key")?.as_deref()) {
        return Err(LtError(StatusCode::FORBIDDEN, "Invalid API key".into()));
    }
    let file = fields
        .file("file")
        .filter(|f| !f.file_name.is_empty())
        .ok_or_else(|| LtError::bad("Invalid request: empty file"))?;
    let name = sanitize(&file.file_name);
    let ext = EXTENSIONS
        .iter()
        .find(|e| name.to_ascii_lowercase().ends_with(*e))
        .ok_or_else(|| LtError::bad("Invalid request: file format not supported"))?;
    let source =
        text("source")?.ok_or_else(|| LtError::bad("Invalid request: missing source parameter"))?;
    let target =
        text("target")?.ok_or_else(|| LtError::bad("Invalid request: missing target parameter"))?;
    let content = std::str::from_utf8(&file.bytes)
        .map_err(|_| LtError::bad("Invalid request: the file is not UTF-8 text"))?
        .to_string();
    let format = if *ext == ".html" {
        TextFormat::Html
    } else {
        TextFormat::Text
    };
    let source = if source == "auto" {
        detect_for(&rt, std::slice::from_ref(&content), format).language
    } else {
        base_language(&source)
    };
    let target = base_language(&target);
    if rt.registry.model_for_pair(&source, &target).is_none() {
        return Err(pair_error(&rt, &source, &target).into());
    }
    let template = TranslateRequest {
        source: Some(source),
        target: Some(target.clone()),
        ..TranslateRequest::default()
    };
    let translated = match format {
        TextFormat::Html => {
            let nodes = html::texts(&content).map_err(ApiError::from)?;
            let done = translate_pieces(&rt, &template, nodes).await?;
            html::replace(&content, &done).map_err(ApiError::from)?
        }
        TextFormat::Text => {
            // Paragraphs and the blank lines between them; blank pieces stay as they are.
            let lines: Vec<String> = content.split('\n').map(str::to_string).collect();
            let done = translate_pieces(&rt, &template, lines).await?;
            done.join("\n")
        }
    };
    clean(Duration::from_secs(lt.file_ttl_seconds));
    std::fs::create_dir_all(folder())
        .map_err(|e| LtError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let stem = &name[..name.len() - ext.len()];
    let stored = format!("{:016x}.{stem}_{target}{ext}", random_u64());
    std::fs::write(folder().join(&stored), translated)
        .map_err(|e| LtError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&rt.config.server.http_addr);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "translatedFileUrl": format!("http://{host}/download_file/{stored}") }),
    ))
}

pub async fn download_file(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
) -> Result<Response, LtError> {
    if !rt.config.libretranslate.files {
        return Err(LtError::bad(
            "Files translation are disabled on this server.",
        ));
    }
    if sanitize(&name) != name || name.is_empty() {
        return Err(LtError::bad("Invalid filename"));
    }
    let bytes = std::fs::read(folder().join(&name))
        .map_err(|_| LtError(StatusCode::NOT_FOUND, "File not found".into()))?;
    // The download name drops the id prefix: `<stem>_<target><ext>`.
    let download = name.split_once('.').map_or(name.as_str(), |(_, rest)| rest);
    let content_type = if download.ends_with(".html") {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{download}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn file_names_cannot_escape_the_folder() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("my doc.txt"), "my_doc.txt");
        assert_eq!(sanitize("..hidden.html"), "hidden.html");
        assert_eq!(sanitize("a\\b.txt"), "b.txt");
    }
}

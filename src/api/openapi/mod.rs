//! The OpenAPI 3.1 document, generated from the request structs the handlers parse, the wire
//! schemas (`schemas.rs`) and one `#[utoipa::path]` per route (`paths.rs`), then completed at
//! request time with what only the running server knows: which routes need a key (none when
//! none is configured), the request limits (`maxItems`, `maxLength`, beam and length caps) and
//! the served language pairs, so that a body the document allows is one the server takes.
//! Served at `/openapi.json`; Swagger UI over it at `/docs` (`api/docs.rs`).

mod paths;
pub mod schemas;
mod served;

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::runtime::Runtime;

#[derive(OpenApi)]
#[openapi(
    info(title = "quantserve", description = "Inference server for quantized Transformers on CPU. \
        Every response carries x-request-id; inference responses carry x-quantserve-model and \
        x-quantserve-variant. A per-request deadline may be set with the x-timeout-ms header or a \
        timeout_ms field. Compatible APIs (LibreTranslate, TEI, OpenAI) answer with their own error bodies."),
    paths(
        paths::classify, paths::translate, paths::languages, paths::detect, paths::translate_file,
        paths::download_file, paths::frontend_settings, paths::health, paths::live, paths::ready,
        paths::metrics, paths::openapi, paths::docs, paths::docs_asset, paths::predict, paths::embed,
        paths::tokenize, paths::decode, paths::info, paths::embeddings, paths::models,
        paths::model_detail, paths::ab_report, paths::feedback, paths::compare, paths::console,
        paths::console_asset, paths::variant_action,
        paths::get_routing, paths::put_routing, paths::disagreements, paths::reload,
    ),
    components(
        responses(schemas::Error, schemas::TeiError, schemas::LtError, schemas::OpenAiError),
        schemas(schemas::TeiErrorType, schemas::OpenAiErrorDetail)
    ),
    tags(
        (name = "quantserve", description = "quantserve's own API"),
        (name = "libretranslate", description = "LibreTranslate 1.9 compatible"),
        (name = "tei", description = "Hugging Face text-embeddings-inference 1.9 compatible"),
        (name = "openai", description = "OpenAI embeddings compatible"),
        (name = "admin", description = "Operating variants (the admin key)"),
        (name = "health", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

/// Routes served by the same handler as another: (alias, route).
pub const ALIASES: &[(&str, &str)] = &[
    ("/v1/classify", "/classify"),
    ("/v1/translate", "/translate"),
    ("/embeddings", "/v1/embeddings"),
];

/// The document as the running server serves it.
pub fn document(rt: &Runtime) -> Value {
    let mut doc = generated();
    add_security(&mut doc, rt);
    add_limits(&mut doc, rt);
    form_schemas(&mut doc);
    doc
}

/// OpenAPI requires a description on every response: the status's reason where none is given.
/// The document as generated from the types, before the running server's facts.
fn generated() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    describe_responses(&mut doc);
    unsigned_bounds(&mut doc);
    // Not every weight 0 (`Routing::validate`); utoipa's schema type has no `not`.
    doc["components"]["schemas"]["Routing"]["properties"]["split"]["not"] =
        json!({"additionalProperties": {"maximum": 0}});
    add_aliases(&mut doc);
    doc
}

/// utoipa writes Rust's unsigned integers as `format: int32/int64` (usize: none) with `minimum: 0`, and
/// clients read those formats as the signed ranges: the server takes up to u32::MAX /
/// u64::MAX, so the document says so.
fn unsigned_bounds(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let integer = match &map.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            let unsigned = map
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| m >= 0.0);
            // usize comes without a format.
            let max = match map.get("format").and_then(Value::as_str) {
                Some("int32") => Some(json!(u32::MAX)),
                Some("int64") | None => Some(json!(u64::MAX)),
                _ => None,
            };
            if integer
                && unsigned
                && let Some(max) = max
            {
                map.remove("format");
                map.entry("maximum").or_insert(max);
            }
            map.values_mut().for_each(unsigned_bounds);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_bounds),
        _ => {}
    }
}

/// LibreTranslate's forms (multipart and urlencoded): one text per field (a repeated `q`, a
/// list, is taken but not described), no nulls, and field names a multipart part header can
/// carry.
fn form_schemas(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let forms = [
        ("TranslateBody", "TranslateMultipart", true),
        ("TranslateBody", "TranslateForm", false),
        ("DetectBody", "DetectForm", false),
    ];
    for (body, form, multipart) in forms {
        let mut s = schemas[body].clone();
        if !s.is_object() {
            continue;
        }
        s["properties"]["q"] = json!({"$ref": "#/components/schemas/NonBlankText"});
        // A form has no null (JSON's `null` is taken as absent).
        for p in s["properties"]
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            // (`get_mut`: indexing a missing key would insert a null.)
            if let Some(types) = p.get_mut("type").and_then(Value::as_array_mut) {
                types.retain(|t| t != "null");
            }
            if let Some(one_of) = p.get_mut("oneOf").and_then(Value::as_array_mut) {
                one_of.retain(|o| o.get("type").is_none_or(|t| t != "null"));
            }
        }
        // Part names a multipart parser reads (other names are taken and ignored; an urlencoded
        // form takes any name).
        if multipart {
            s["propertyNames"] = json!({"pattern": "^[A-Za-z0-9_.-]+$"});
        }
        schemas[form] = s;
    }
    let uses = [
        ("/translate", "multipart/form-data", "TranslateMultipart"),
        ("/v1/translate", "multipart/form-data", "TranslateMultipart"),
        (
            "/translate",
            "application/x-www-form-urlencoded",
            "TranslateForm",
        ),
        (
            "/v1/translate",
            "application/x-www-form-urlencoded",
            "TranslateForm",
        ),
        ("/detect", "application/x-www-form-urlencoded", "DetectForm"),
    ];
    for (path, media, form) in uses {
        let content = &mut doc["paths"][path]["post"]["requestBody"]["content"];
        if content.get(media).is_some_and(Value::is_object) {
            content[media]["schema"] = json!({"$ref": format!("#/components/schemas/{form}")});
        }
    }
}

fn describe_responses(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let ops = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|m| m.values_mut());
    for op in ops {
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        for (status, r) in responses.iter_mut() {
            if r.is_object() && r.get("$ref").is_none() && r.get("description").is_none() {
                let reason = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Response");
                r["description"] = json!(reason);
            }
        }
    }
}

fn add_aliases(doc: &mut Value) {
    for (alias, route) in ALIASES {
        let mut item = doc["paths"][*route].clone();
        if let Some(ops) = item.as_object_mut() {
            for op in ops.values_mut() {
                if let Some(id) = op["operationId"].as_str() {
                    let aliased = format!("{id}{}", alias.replace('/', "_"));
                    op["operationId"] = json!(aliased);
                    op["summary"] = json!(format!("Alias of {route}"));
                }
            }
        }
        doc["paths"][*alias] = item;
    }
}

/// Bearer schemes; a route whose key is not configured takes requests without one too.
fn add_security(doc: &mut Value, rt: &Runtime) {
    let server = &rt.config.server;
    doc["components"]["securitySchemes"] = json!({
        "api_key": {"type": "http", "scheme": "bearer",
            "description": "`[server] api_key`: every route but health, metrics, the documents and LibreTranslate's public ones (LibreTranslate's routes also take it as the `api_key` field)"},
        "admin_key": {"type": "http", "scheme": "bearer",
            "description": "`[server] admin_key` (the api_key when only that is set): the /admin routes"},
    });
    let open = [
        ("api_key", server.api_key.is_none()),
        (
            "admin_key",
            server.admin_key.is_none() && server.api_key.is_none(),
        ),
    ];
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|m| m.values_mut())
    {
        let Some(reqs) = op.get_mut("security").and_then(Value::as_array_mut) else {
            continue;
        };
        let optional = reqs.iter().any(|r| {
            open.iter()
                .any(|(name, open)| *open && r.get(*name).is_some())
        });
        if optional {
            reqs.push(json!({}));
        }
    }
}

/// Sets `key` on every node of `schema` whose `type` is `ty`.
fn set_on(schema: &mut Value, ty: &str, key: &str, value: &Value) {
    match schema {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some(ty) && !map.contains_key(key) {
                map.insert(key.into(), value.clone());
            }
            map.values_mut().for_each(|v| set_on(v, ty, key, value));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| set_on(v, ty, key, value)),
        _ => {}
    }
}

/// The configured request limits, and the served language pairs, in the request schemas.
fn add_limits(doc: &mut Value, rt: &Runtime) {
    let limits = &rt.config.limits;
    let schemas = &mut doc["components"]["schemas"];
    if let Some(one) = schemas.get_mut("NonBlankText") {
        one["maxLength"] = json!(limits.max_input_chars);
    }
    for name in [
        "NonBlankTexts",
        "SomeTexts",
        "NonEmptyTexts",
        "TokenizeTexts",
        "PredictInputs",
    ] {
        let s = &mut schemas[name];
        set_on(s, "string", "maxLength", &json!(limits.max_input_chars));
        // The lists of texts (not TEI's pairs, which have their own maxItems).
        for list in s["oneOf"].as_array_mut().into_iter().flatten() {
            if list["type"] == "array" && list.get("maxItems").is_none() {
                list["maxItems"] = json!(limits.max_inputs);
            }
        }
    }
    let t = &mut schemas["TranslateBody"]["properties"];
    t["beam_size"]["maximum"] = json!(limits.max_beam_size);
    t["max_length"]["maximum"] = json!(limits.max_output_tokens);
    t["alternatives"]["maximum"] = json!(limits.max_beam_size.saturating_sub(1));
    let compat = rt.config.libretranslate.enabled;
    if !compat {
        t["format"]["enum"] = json!(["text"]);
    } else {
        t["format"]["enum"] = json!(["text", "html"]);
    }
    // Which languages a body may give (`Runtime::translation_model` and the LibreTranslate
    // handler, as patterns: regional, upper-case and space-padded codes are taken). A named
    // model with its own languages or none (`source` may be `auto`); a model without a known
    // pair with any. Without `model` (absent or null): a served pair, or with LibreTranslate
    // on, a served source into itself (given back as it is) or `auto` into a served target.
    let pairs = rt.registry.pairs();
    let paired: Vec<&String> = pairs.iter().map(|(name, _)| name).collect();
    let mut choices: Vec<Value> = vec![json!({"required": ["model"], "properties": {
        "model": {"type": "string", "not": {"enum": paired}}}})];
    for (name, (s, t)) in &pairs {
        choices.push(json!({"required": ["model"], "properties": {
            "model": {"const": name},
            "source": {"anyOf": [{"const": "auto"}, {"pattern": language_pattern(s)}]},
            "target": {"pattern": language_pattern(t)}}}));
    }
    let no_model = json!({"type": "null"});
    let mut unnamed: Vec<(Value, Value)> = pairs
        .iter()
        .map(|(_, (s, t))| {
            (
                json!({"pattern": language_pattern(s)}),
                json!({"pattern": language_pattern(t)}),
            )
        })
        .collect();
    if compat {
        let sources: std::collections::BTreeSet<&String> =
            pairs.iter().map(|(_, p)| &p.0).collect();
        for s in sources {
            let same = json!({"pattern": language_pattern(s)});
            unnamed.push((same.clone(), same));
        }
        let targets: std::collections::BTreeSet<&String> =
            pairs.iter().map(|(_, p)| &p.1).collect();
        let any_target: Vec<Value> = targets
            .iter()
            .map(|t| json!({"pattern": language_pattern(t)}))
            .collect();
        unnamed.push((json!({"const": "auto"}), json!({"anyOf": any_target})));
    }
    for (mut source, mut target) in unnamed {
        // A null `source` or `target` is an absent one: no pair.
        source["type"] = json!("string");
        target["type"] = json!("string");
        choices.push(json!({"required": ["source", "target"], "properties": {
            "model": no_model, "source": source, "target": target}}));
    }
    schemas["TranslateBody"]["anyOf"] = Value::Array(choices);
    // `label` or `correct`, not both; `model` and `variant` together (`runtime::ab::feedback`).
    schemas["FeedbackBody"]["oneOf"] = json!([{"required": ["label"]}, {"required": ["correct"]}]);
    schemas["FeedbackBody"]["dependentRequired"] =
        json!({"model": ["variant"], "variant": ["model"]});
    served::add_models(doc, rt);
}

/// The codes the server takes for `language` (`runtime::detect::base_language`): the language
/// itself in any ASCII case, optionally a region after `-` or `_` (`pt-BR`, `PT_br`), white
/// space around it ignored (Rust's `char::is_whitespace`, listed, so a validator's `\\s`
/// cannot differ).
fn language_pattern(language: &str) -> String {
    let space =
        "[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*";
    let letters: String = language
        .chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else {
                format!("\\u{:04x}", u32::from(c))
            }
        })
        .collect();
    format!("^{space}{letters}{space}([-_][\\s\\S]*)?$")
}

#[cfg(test)]
mod tests;

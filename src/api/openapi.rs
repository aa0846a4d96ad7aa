//! A hand-written OpenAPI description of the HTTP API, served at `/openapi.json`.

pub const OPENAPI_JSON: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "quantserve", "version": "0.1.0",
           "description": "Inference server for quantized Transformers on CPU. Every response carries x-request-id; inference responses carry x-quantserve-model and x-quantserve-variant. A per-request deadline may be set with the x-timeout-ms header or a timeout_ms field."},
  "paths": {
    "/classify": {"post": {"summary": "Classify texts (alias /v1/classify)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClassifyRequest"}}}},
      "responses": {"200": {"description": "One result per input, in order", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClassifyResponse"}}}},
                    "default": {"$ref": "#/components/responses/Error"}}}},
    "/translate": {"post": {"summary": "Translate texts, LibreTranslate-compatible (alias /v1/translate). Fields may come as JSON, a form, multipart or the query string; api_key in the body or Authorization: Bearer. With [libretranslate] enabled: source \"auto\" is detected (detectedLanguage), format html is translated text node by text node, an unsupported pair is a 400; otherwise those are 422 unsupported",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TranslateRequest"}},
        "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/TranslateRequest"}},
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/TranslateRequest"}}}},
      "responses": {"200": {"description": "translatedText (and alternatives, detectedLanguage) have the shape of q", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TranslateResponse"}}}},
                    "default": {"$ref": "#/components/responses/Error"}}}},
    "/languages": {"get": {"summary": "LibreTranslate: the languages of the served pairs, each with the languages it translates into (itself included)",
      "responses": {"200": {"description": "Languages", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Language"}}}}}}}},
    "/detect": {"post": {"summary": "LibreTranslate: up to three candidate languages among those the server translates from, confidence 0-100, best first",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DetectRequest"}}, "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/DetectRequest"}}}},
      "responses": {"200": {"description": "Candidates", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Detection"}}}}},
                    "default": {"$ref": "#/components/responses/LtError"}}}},
    "/translate_file": {"post": {"summary": "LibreTranslate: translate a .txt or .html file (multipart: file, source (or auto), target, api_key); the result is kept file_ttl_seconds",
      "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file", "source", "target"], "properties": {
        "file": {"type": "string", "format": "binary"}, "source": {"type": "string"}, "target": {"type": "string"}, "api_key": {"type": "string"}}}}}},
      "responses": {"200": {"description": "Where to download it", "content": {"application/json": {"schema": {"type": "object", "properties": {"translatedFileUrl": {"type": "string"}}}}}},
                    "default": {"$ref": "#/components/responses/LtError"}}}},
    "/download_file/{name}": {"get": {"summary": "LibreTranslate: a translated file, as an attachment named <stem>_<target><ext>",
      "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "The file", "content": {"text/plain": {}, "text/html": {}}}, "default": {"$ref": "#/components/responses/LtError"}}}},
    "/frontend/settings": {"get": {"summary": "LibreTranslate: the settings its web page reads (keys, limits, file formats, default languages)",
      "responses": {"200": {"description": "Settings"}}}},
    "/health": {"get": {"summary": "LibreTranslate's and TEI's health check: 200 {\"status\": \"ok\"} when ready, 503 TEI error otherwise",
      "responses": {"200": {"description": "Ready"}, "503": {"$ref": "#/components/responses/TeiError"}}}},
    "/predict": {"post": {"summary": "TEI: classify with the default classifier (or `model`): inputs a string, a [text, text_pair] pair, or a list of [text] / [text, text_pair]; every label sorted by score (raw logits with raw_scores); truncate (default true), truncation_direction Right",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
      "responses": {"200": {"description": "[{score, label}] per input, or a list of them for a batch"}, "default": {"$ref": "#/components/responses/TeiError"}}}},
    "/embed": {"post": {"summary": "TEI: sentence embeddings from the default embedder (or `model`): inputs a string or a list; normalize (default true), truncate (default true), dimensions (cut before normalising)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EmbedRequest"}}}},
      "responses": {"200": {"description": "One vector per input", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}}},
                    "default": {"$ref": "#/components/responses/TeiError"}}}},
    "/info": {"get": {"summary": "TEI: the model TEI routes describe ([defaults] tei_model, or ?model=NAME): id, dtype (the serving variant's scheme), type (classifier labels or embedding pooling), limits",
      "parameters": [{"name": "model", "in": "query", "required": false, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "Info"}, "default": {"$ref": "#/components/responses/TeiError"}}}},
    "/tokenize": {"post": {"summary": "TEI: tokens of each input (id, text, special, start, stop byte offsets); add_special_tokens (default true); `model` optional",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "inputs": {"$ref": "#/components/schemas/Texts"}, "add_special_tokens": {"type": "boolean", "default": true}, "model": {"type": "string"}}}}}},
      "responses": {"200": {"description": "A list of tokens per input"}, "default": {"$ref": "#/components/responses/TeiError"}}}},
    "/decode": {"post": {"summary": "TEI: token ids back to text; ids a list or a list of lists; skip_special_tokens (default true); `model` optional",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["ids"], "properties": {
        "ids": {"oneOf": [{"type": "array", "items": {"type": "integer", "minimum": 0}}, {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}}]},
        "skip_special_tokens": {"type": "boolean", "default": true}, "model": {"type": "string"}}}}}},
      "responses": {"200": {"description": "One text per id list"}, "default": {"$ref": "#/components/responses/TeiError"}}}},
    "/v1/embeddings": {"post": {"summary": "OpenAI embeddings (alias /embeddings): input a string or a list, model (a served model, else the default embedder), encoding_format float or base64 (little-endian f32), dimensions; always L2-normalised",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EmbeddingsRequest"}}}},
      "responses": {"200": {"description": "{object: list, data: [{object: embedding, embedding, index}], model, usage: {prompt_tokens, total_tokens}}"},
                    "default": {"description": "OpenAI error: {error: {message, type, param, code}} with quantserve's statuses"}}}},
    "/v1/models": {"get": {"summary": "Served models, their variants, status and weight bytes", "responses": {"200": {"description": "Models"}}}},
    "/health/live": {"get": {"summary": "The process is up", "responses": {"200": {"description": "Live"}}}},
    "/health/ready": {"get": {"summary": "Every model can answer: a variant of its routing split is loaded, warmed up and self-checked", "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready or shutting down"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (text format)", "responses": {"200": {"description": "Metrics"}}}},
    "/v1/models/{model}": {"get": {"summary": "One model: variants (status, bytes, routing weight, self-check), reference, routing",
      "parameters": [{"$ref": "#/components/parameters/Model"}], "responses": {"200": {"description": "Model"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/models/{model}/ab": {"get": {"summary": "A/B report: the experiment (id, started_at, period, earlier periods), per variant of the current period users, requests, feedback_rate, shadow_drop_rate, error_rate and latency percentiles with intervals (failures as +inf), the non-inferiority verdict of every variant against the reference (always-valid intervals, Holm), SRM and power; plus lifetime per-variant counts. Text table; JSON with ?format=json or Accept: application/json",
      "parameters": [{"$ref": "#/components/parameters/Model"}], "responses": {"200": {"description": "Report"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/feedback": {"post": {"summary": "Ground truth for a served request (by its x-request-id): the true label of input `index` (one of the model's labels, any case; else 422), or whether the answer was correct; one per request (409). For a request served by another replica: its `ticket`, or `model` + `variant`, with `correct` or `label` + `predicted`",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}}},
      "responses": {"200": {"description": "Recorded"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/compare": {"post": {"summary": "One input on every ready variant of a model (or the `variants` listed), one after another: each variant's output, latency and agreement with the reference variant (chrF for translations, label and probability difference for classifiers, cosine for embeddings). Requests here are overrides, left out of the model's experiment",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["model", "input"], "properties": {"model": {"type": "string"}, "input": {"type": "string", "minLength": 1}, "variants": {"type": "array", "items": {"type": "string"}}, "reference": {"type": "string"}, "truncate": {"type": "boolean"}, "timeout_ms": {"type": "integer", "minimum": 1}}}}}},
      "responses": {"200": {"description": "Each variant's answer: variant, scheme, bits, latency_ms, output, agreement, error"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/admin/models/{model}/variants/{variant_action}": {"post": {"summary": "`{variant}:load` loads (or hot-swaps) a variant: warm-up and self-check against the reference before it is activated (422 self_check_failed with the measured agreement otherwise). `{variant}:unload` removes it once no routing uses it (409 otherwise)",
      "parameters": [{"$ref": "#/components/parameters/Model"}, {"name": "variant_action", "in": "path", "required": true, "schema": {"type": "string", "example": "int8:load"}}],
      "responses": {"200": {"description": "Done"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/admin/models/{model}/routing": {
      "get": {"summary": "The model's routing", "parameters": [{"$ref": "#/components/parameters/Model"}], "responses": {"200": {"description": "Routing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Routing"}}}}}},
      "put": {"summary": "Replace the model's routing (its variants must be loaded)", "parameters": [{"$ref": "#/components/parameters/Model"}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Routing"}}}},
        "responses": {"200": {"description": "The new routing"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/admin/models/{model}/disagreements": {"get": {"summary": "The most recent (up to 100) shadow disagreements, newest first",
      "parameters": [{"$ref": "#/components/parameters/Model"}], "responses": {"200": {"description": "Disagreements"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/admin/reload": {"post": {"summary": "Re-read the configuration file and apply its models and routing (as SIGHUP does)",
      "responses": {"200": {"description": "What was loaded, unloaded or failed"}, "default": {"$ref": "#/components/responses/Error"}}}}
  },

  "components": {
    "schemas": {
      "Texts": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
      "ClassifyRequest": {"type": "object", "required": ["inputs"], "properties": {
        "inputs": {"$ref": "#/components/schemas/Texts"}, "model": {"type": "string"}, "variant": {"type": "string"},
        "truncate": {"type": "boolean", "default": false}, "top_k": {"type": "integer", "minimum": 1}, "timeout_ms": {"type": "integer", "minimum": 1}}},
      "LabelScore": {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"}}},
      "ClassifyResponse": {"type": "object", "properties": {"model": {"type": "string"}, "variant": {"type": "string"},
        "results": {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"},
          "scores": {"type": "array", "items": {"$ref": "#/components/schemas/LabelScore"}}}}}}},
      "TranslateRequest": {"type": "object", "required": ["q"], "properties": {
        "q": {"$ref": "#/components/schemas/Texts"}, "source": {"type": "string", "description": "a code (pt, pt-BR, pt_BR, EN: regional codes fall back to the base language) or auto"}, "target": {"type": "string"},
        "format": {"type": "string", "enum": ["text", "html"], "default": "text"}, "alternatives": {"type": "integer", "minimum": 0, "default": 0, "description": "next-best translations from the beam, below max_beam_size"},
        "api_key": {"type": "string", "nullable": true}, "model": {"type": "string"}, "variant": {"type": "string"},
        "beam_size": {"type": "integer", "minimum": 1}, "max_length": {"type": "integer", "minimum": 1},
        "truncate": {"type": "boolean", "default": false}, "timeout_ms": {"type": "integer", "minimum": 1}}},
      "TranslateResponse": {"type": "object", "properties": {"translatedText": {"$ref": "#/components/schemas/Texts"},
        "alternatives": {"description": "a list of strings, or a list of lists for a list q"},
        "detectedLanguage": {"description": "source auto: a Detection, or a list of them for a list q"},
        "model": {"type": "string"}, "variant": {"type": "string"}}},
      "Language": {"type": "object", "properties": {"code": {"type": "string"}, "name": {"type": "string"}, "targets": {"type": "array", "items": {"type": "string"}}}},
      "DetectRequest": {"type": "object", "required": ["q"], "properties": {"q": {"$ref": "#/components/schemas/Texts"}, "api_key": {"type": "string"}}},
      "Detection": {"type": "object", "properties": {"confidence": {"type": "number", "minimum": 0, "maximum": 100}, "language": {"type": "string"}}},
      "PredictRequest": {"type": "object", "required": ["inputs"], "properties": {"inputs": {}, "raw_scores": {"type": "boolean", "default": false},
        "truncate": {"type": "boolean", "default": true}, "truncation_direction": {"type": "string", "enum": ["Right", "right"]}, "model": {"type": "string"}, "variant": {"type": "string"}}},
      "EmbedRequest": {"type": "object", "required": ["inputs"], "properties": {"inputs": {"$ref": "#/components/schemas/Texts"}, "normalize": {"type": "boolean", "default": true},
        "truncate": {"type": "boolean", "default": true}, "truncation_direction": {"type": "string", "enum": ["Right", "right"]}, "dimensions": {"type": "integer", "minimum": 1},
        "model": {"type": "string"}, "variant": {"type": "string"}}},
      "EmbeddingsRequest": {"type": "object", "required": ["input"], "properties": {"input": {"$ref": "#/components/schemas/Texts"}, "model": {"type": "string"},
        "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float"}, "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"}}},
      "LtError": {"type": "object", "properties": {"error": {"type": "string"}}},
      "TeiError": {"type": "object", "properties": {"error": {"type": "string"}, "error_type": {"type": "string", "enum": ["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]}}},
      "Error": {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "details": {"type": "object"}}},
      "Routing": {"type": "object", "properties": {
        "split": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "example": {"int8": 90, "fp32": 10}},
        "sticky_key": {"type": "string", "example": "x-user-id"}, "allow_override": {"type": "boolean", "default": true},
        "shadow": {"type": "object", "required": ["reference", "sample_rate"], "properties": {"reference": {"type": "string"}, "sample_rate": {"type": "number", "minimum": 0, "maximum": 1}}},
        "experiment": {"type": "object", "properties": {"name": {"type": "string"}, "margin": {"type": "number", "default": 0.01}, "alpha": {"type": "number", "default": 0.05}, "power": {"type": "number", "default": 0.8}, "buckets": {"type": "integer", "default": 64}}}}},
      "Feedback": {"type": "object", "required": ["request_id"], "properties": {"request_id": {"type": "string"},
        "label": {"type": "string"}, "correct": {"type": "boolean"}, "index": {"type": "integer", "minimum": 0, "default": 0},
        "ticket": {"type": "string", "description": "x-quantserve-ab-ticket of a request served by another replica"},
        "model": {"type": "string"}, "variant": {"type": "string"}, "user": {"type": "string"}, "predicted": {"type": "string"}}}
    },
    "parameters": {"Model": {"name": "model", "in": "path", "required": true, "schema": {"type": "string"}}},
    "responses": {
      "LtError": {"description": "LibreTranslate routes: {\"error\": message}; 400 bad request, 403 invalid API key or files disabled, 404 no such file, 413 too large",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LtError"}}}},
      "TeiError": {"description": "TEI routes: {\"error\", \"error_type\"}; 400 Empty, 404 unknown model, 413 body too large, 422 Validation, 424 Backend (wrong task, inference failed), 429 Overloaded, 503 Unhealthy",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TeiError"}}}},
      "Error": {"description": "400 bad request, 401 unauthorized, 403 variant override not allowed, 404 unknown model or variant, 409 conflicts with the current state (admin), 413 too large, 422 input too long or unsupported, 429 queue full (Retry-After), 503 not ready or shutting down, 504 deadline exceeded",
      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn is_valid_json() {
        let v: serde_json::Value = serde_json::from_str(super::OPENAPI_JSON).unwrap();
        assert!(v["paths"]["/translate"].is_object());
        assert!(v["paths"]["/admin/models/{model}/routing"]["put"].is_object());
        for path in [
            "/languages",
            "/detect",
            "/translate_file",
            "/download_file/{name}",
            "/frontend/settings",
            "/health",
            "/predict",
            "/embed",
            "/info",
            "/tokenize",
            "/decode",
            "/v1/embeddings",
        ] {
            assert!(v["paths"][path].is_object(), "{path}");
        }
    }
}

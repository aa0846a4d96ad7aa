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
    "/translate": {"post": {"summary": "Translate texts, LibreTranslate-compatible (alias /v1/translate)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TranslateRequest"}}}},
      "responses": {"200": {"description": "translatedText has the shape of q", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TranslateResponse"}}}},
                    "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/models": {"get": {"summary": "Served models, their variants, status and weight bytes", "responses": {"200": {"description": "Models"}}}},
    "/health/live": {"get": {"summary": "The process is up", "responses": {"200": {"description": "Live"}}}},
    "/health/ready": {"get": {"summary": "Every model can answer: a variant of its routing split is loaded, warmed up and self-checked", "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready or shutting down"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (text format)", "responses": {"200": {"description": "Metrics"}}}},
    "/v1/models/{model}": {"get": {"summary": "One model: variants (status, bytes, routing weight, self-check), reference, routing",
      "parameters": [{"$ref": "#/components/parameters/Model"}], "responses": {"200": {"description": "Model"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/models/{model}/ab": {"get": {"summary": "A/B report per variant: requests, errors, latency p50/p95/p99, shadow agreement and online accuracy with Wilson 95% intervals, the variant ahead and its confidence. Text table; JSON with ?format=json or Accept: application/json",
      "parameters": [{"$ref": "#/components/parameters/Model"}], "responses": {"200": {"description": "Report"}, "default": {"$ref": "#/components/responses/Error"}}}},
    "/v1/feedback": {"post": {"summary": "Ground truth for a served request (by its x-request-id): the true label of input `index`, or whether the answer was correct",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}}},
      "responses": {"200": {"description": "Recorded"}, "default": {"$ref": "#/components/responses/Error"}}}},
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
        "q": {"$ref": "#/components/schemas/Texts"}, "source": {"type": "string"}, "target": {"type": "string"},
        "format": {"type": "string", "enum": ["text"]}, "model": {"type": "string"}, "variant": {"type": "string"},
        "beam_size": {"type": "integer", "minimum": 1}, "max_length": {"type": "integer", "minimum": 1},
        "truncate": {"type": "boolean", "default": false}, "timeout_ms": {"type": "integer", "minimum": 1}}},
      "TranslateResponse": {"type": "object", "properties": {"translatedText": {"$ref": "#/components/schemas/Texts"},
        "model": {"type": "string"}, "variant": {"type": "string"}}},
      "Error": {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}, "details": {"type": "object"}}},
      "Routing": {"type": "object", "properties": {
        "split": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "example": {"int8": 90, "fp32": 10}},
        "sticky_key": {"type": "string", "example": "x-user-id"}, "allow_override": {"type": "boolean", "default": true},
        "shadow": {"type": "object", "required": ["reference", "sample_rate"], "properties": {"reference": {"type": "string"}, "sample_rate": {"type": "number", "minimum": 0, "maximum": 1}}}}},
      "Feedback": {"type": "object", "required": ["request_id"], "properties": {"request_id": {"type": "string"},
        "label": {"type": "string"}, "correct": {"type": "boolean"}, "index": {"type": "integer", "minimum": 0, "default": 0}}}
    },
    "parameters": {"Model": {"name": "model", "in": "path", "required": true, "schema": {"type": "string"}}},
    "responses": {"Error": {"description": "400 bad request, 401 unauthorized, 403 variant override not allowed, 404 unknown model or variant, 409 conflicts with the current state (admin), 413 too large, 422 input too long or unsupported, 429 queue full (Retry-After), 503 not ready or shutting down, 504 deadline exceeded",
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
    }
}

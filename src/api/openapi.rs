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
    "/health/ready": {"get": {"summary": "Default models loaded and warmed up", "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready or shutting down"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (text format)", "responses": {"200": {"description": "Metrics"}}}}
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
      "Error": {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
    },
    "responses": {"Error": {"description": "400 bad request, 401 unauthorized, 404 unknown model or variant, 413 too large, 422 input too long or unsupported, 429 queue full (Retry-After), 503 not ready or shutting down, 504 deadline exceeded",
      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn is_valid_json() {
        let v: serde_json::Value = serde_json::from_str(super::OPENAPI_JSON).unwrap();
        assert!(v["paths"]["/translate"].is_object());
    }
}

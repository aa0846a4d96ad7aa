//! A small validator of JSON values against OpenAPI 3.0 schemas (the keywords TEI's document
//! uses: `$ref`, `type`, `nullable`, `properties`, `required`, `additionalProperties`, `items`,
//! `minItems`/`maxItems`, `oneOf`, `allOf`, `enum`, `minimum`), so responses are checked field
//! by field against a published schema.

use serde_json::Value;

pub struct Document(pub Value);

impl Document {
    pub fn load(path: &str) -> Self {
        Self(serde_json::from_str(&std::fs::read_to_string(super::path(path)).unwrap()).unwrap())
    }

    /// The schema named `name` in `components/schemas`.
    pub fn schema(&self, name: &str) -> &Value {
        let s = &self.0["components"]["schemas"][name];
        assert!(s.is_object(), "no schema {name}");
        s
    }

    /// The schema of `path`'s `method` response with `status` (application/json).
    pub fn response(&self, path: &str, method: &str, status: u16) -> &Value {
        let s = &self.0["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        assert!(
            s.is_object(),
            "no {status} response schema for {method} {path}"
        );
        s
    }

    /// Panics with the first violation of `schema` by `value`.
    pub fn check(&self, schema: &Value, value: &Value) {
        if let Err(e) = self.validate(schema, value, "$") {
            panic!("{e}\nvalue: {value}");
        }
    }

    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return self.validate(self.schema(name), value, at);
        }
        if value.is_null() && schema["nullable"] == true {
            return Ok(());
        }
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                self.validate(s, value, at)?;
            }
        }
        if let Some(one) = schema["oneOf"].as_array() {
            let matching = one
                .iter()
                .filter(|s| self.validate(s, value, at).is_ok())
                .count();
            if matching != 1 {
                return Err(format!("{at}: matches {matching} of the oneOf schemas"));
            }
        }
        if let Some(options) = schema["enum"].as_array()
            && !options.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
        let Some(ty) = schema["type"].as_str() else {
            return Ok(());
        };
        let type_ok = match ty {
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !type_ok {
            return Err(format!("{at}: expected {ty}, got {value}"));
        }
        if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64())
            && v < min
        {
            return Err(format!("{at}: {v} < minimum {min}"));
        }
        if let Some(items) = value.as_array() {
            if let Some(n) = schema["minItems"].as_u64()
                && (items.len() as u64) < n
            {
                return Err(format!("{at}: fewer than {n} items"));
            }
            if let Some(n) = schema["maxItems"].as_u64()
                && (items.len() as u64) > n
            {
                return Err(format!("{at}: more than {n} items"));
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    self.validate(&schema["items"], item, &format!("{at}[{i}]"))?;
                }
            }
        }
        if let Some(obj) = value.as_object() {
            for r in schema["required"].as_array().into_iter().flatten() {
                let key = r.as_str().unwrap();
                if !obj.contains_key(key) {
                    return Err(format!("{at}: required `{key}` is missing"));
                }
            }
            for (k, v) in obj {
                let prop = &schema["properties"][k.as_str()];
                if prop.is_object() {
                    self.validate(prop, v, &format!("{at}.{k}"))?;
                } else if schema["additionalProperties"].is_object() {
                    self.validate(&schema["additionalProperties"], v, &format!("{at}.{k}"))?;
                }
            }
        }
        Ok(())
    }
}

//! Request fields the way LibreTranslate reads them: a JSON object, or form fields
//! (`application/x-www-form-urlencoded` or `multipart/form-data`) together with the query
//! string. Clients differ: Mastodon and Weblate send JSON, libretranslatepy and
//! libretranslate-aio send forms, `curl -d '{...}'` sends JSON labelled as a form (quantserve's
//! own clients have always done that), so a form-labelled body that is a JSON object is read as
//! JSON.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart};
use axum::http::{HeaderMap, Request, header};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

/// An uploaded file of a multipart body.
pub struct Upload {
    pub file_name: String,
    pub bytes: Bytes,
}

/// Why the fields could not be read (the message says what to fix).
#[derive(Debug)]
pub struct FieldError(pub String);

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fields of one request.
#[derive(Default)]
pub struct Fields {
    /// A JSON object body.
    json: Option<Map<String, Value>>,
    /// Form fields, body first then query string, in order (a repeated key repeats).
    form: Vec<(String, String)>,
    pub files: Vec<(String, Upload)>,
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space).
pub fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn mime(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    match crate::api::json_body::parse::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(FieldError(
            "Invalid JSON format: the body must be a JSON object".into(),
        )),
        Err(e) => Err(FieldError(format!("invalid JSON body: {e}"))),
    }
}

impl Fields {
    /// Fields of a JSON body (quantserve's own parsers).
    pub fn from_json(body: &[u8]) -> Result<Self, FieldError> {
        Ok(Self {
            json: Some(json_object(body)?),
            ..Self::default()
        })
    }

    /// Reads the body by its content type, plus the query string's fields.
    pub async fn read(
        headers: &HeaderMap,
        query: Option<&str>,
        body: Bytes,
    ) -> Result<Self, FieldError> {
        let mime = mime(headers);
        let mut fields = Self::default();
        let looks_json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{' || b == b'[');
        if mime == "application/json" || mime.ends_with("+json") {
            fields.json = Some(json_object(&body)?);
        } else if mime == "multipart/form-data" {
            fields.read_multipart(headers, body).await?;
        } else if looks_json {
            fields.json = Some(json_object(&body)?);
        } else if !body.is_empty() {
            let text = std::str::from_utf8(&body)
                .map_err(|_| FieldError("the form body is not valid UTF-8".into()))?;
            fields.form = parse_urlencoded(text);
        }
        if let Some(q) = query {
            fields.form.extend(parse_urlencoded(q));
        }
        Ok(fields)
    }

    async fn read_multipart(&mut self, headers: &HeaderMap, body: Bytes) -> Result<(), FieldError> {
        let mut req = Request::new(Body::from(body));
        *req.headers_mut() = headers.clone();
        let mut multipart = Multipart::from_request(req, &())
            .await
            .map_err(|e| FieldError(format!("invalid multipart body: {e}")))?;
        let bad = |e: axum::extract::multipart::MultipartError| {
            FieldError(format!("invalid multipart body: {e}"))
        };
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_string();
            match field.file_name().map(str::to_string) {
                Some(file_name) => {
                    let bytes = field.bytes().await.map_err(bad)?;
                    self.files.push((name, Upload { file_name, bytes }));
                }
                None => {
                    let text = field.text().await.map_err(bad)?;
                    self.form.push((name, text));
                }
            }
        }
        Ok(())
    }

    fn json_field(&self, name: &str) -> Option<&Value> {
        self.json.as_ref()?.get(name).filter(|v| !v.is_null())
    }

    fn form_values(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether the field is present (a JSON `null` counts as absent).
    pub fn has(&self, name: &str) -> bool {
        self.json_field(name).is_some() || !self.form_values(name).is_empty()
    }

    /// A string field (JSON: a string, as the OpenAPI document says; a form's first value).
    pub fn text(&self, name: &str) -> Result<Option<String>, FieldError> {
        if let Some(v) = self.json_field(name) {
            return match v {
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(FieldError(format!("`{name}` must be a string"))),
            };
        }
        Ok(self.form_values(name).first().map(|s| s.to_string()))
    }

    /// A string or a list of strings, and whether it was a list (a repeated form field is one).
    pub fn texts(&self, name: &str) -> Result<Option<(Vec<String>, bool)>, FieldError> {
        let wrong = || FieldError(format!("`{name}` must be a string or an array of strings"));
        if let Some(v) = self.json_field(name) {
            return match v {
                Value::String(s) => Ok(Some((vec![s.clone()], false))),
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or_else(wrong))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|t| Some((t, true))),
                _ => Err(wrong()),
            };
        }
        let values = self.form_values(name);
        Ok(match values.len() {
            0 => None,
            1 => Some((vec![values[0].to_string()], false)),
            _ => Some((values.iter().map(|s| s.to_string()).collect(), true)),
        })
    }

    /// A non-negative integer (a JSON number, or digits in a form field).
    pub fn uint(&self, name: &str) -> Result<Option<u64>, FieldError> {
        let wrong = || FieldError(format!("`{name}` must be a non-negative integer"));
        if let Some(v) = self.json_field(name) {
            return match v {
                Value::Number(n) => n.as_u64().map(Some).ok_or_else(wrong),
                _ => Err(wrong()),
            };
        }
        match self.form_values(name).first() {
            None => Ok(None),
            Some(s) => s.trim().parse().map(Some).map_err(|_| wrong()),
        }
    }

    /// A boolean (JSON `true`/`false`, or `true`/`false`/`1`/`0` in a form field).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, FieldError> {
        let wrong = || FieldError(format!("`{name}` must be true or false"));
        if let Some(v) = self.json_field(name) {
            return v.as_bool().map(Some).ok_or_else(wrong);
        }
        match self.form_values(name).first() {
            None => Ok(None),
            Some(s) => match s.trim() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(wrong()),
            },
        }
    }

    /// The uploaded file of field `name`.
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files.iter().find(|(k, _)| k == name).map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    async fn read(ct: &str, query: Option<&str>, body: &str) -> Result<Fields, FieldError> {
        Fields::read(&headers(ct), query, Bytes::from(body.to_string())).await
    }

    #[tokio::test]
    async fn json_form_and_query() {
        let f = read(
            "application/json",
            None,
            r#"{"q": ["a", "b"], "alternatives": 2, "api_key": null}"#,
        )
        .await
        .unwrap();
        assert_eq!(
            f.texts("q").unwrap(),
            Some((vec!["a".into(), "b".into()], true))
        );
        assert_eq!(f.uint("alternatives").unwrap(), Some(2));
        assert!(!f.has("api_key"));
        let f = read(
            "application/x-www-form-urlencoded",
            Some("target=pt"),
            "q=Hello+w%C3%B6rld%21&source=en&q=two",
        )
        .await
        .unwrap();
        assert_eq!(
            f.texts("q").unwrap().unwrap().0,
            vec!["Hello wörld!", "two"]
        );
        assert_eq!(f.text("target").unwrap().as_deref(), Some("pt"));
        // curl -d '{...}' labels JSON as a form.
        let f = read("application/x-www-form-urlencoded", None, r#"{"q": "x"}"#)
            .await
            .unwrap();
        assert_eq!(f.text("q").unwrap().as_deref(), Some("x"));
        assert!(read("application/json", None, "[1]").await.is_err());
        assert!(read("application/json", None, "{").await.is_err());
        let f = read("text/plain", None, "alternatives=x").await.unwrap();
        assert!(f.uint("alternatives").is_err());
    }

    #[tokio::test]
    async fn multipart_fields_and_files() {
        let body = "--XX\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\nen\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--XX--\r\n";
        let f = read("multipart/form-data; boundary=XX", None, body)
            .await
            .unwrap();
        assert_eq!(f.text("source").unwrap().as_deref(), Some("en"));
        let file = f.file("file").unwrap();
        assert_eq!(
            (file.file_name.as_str(), &file.bytes[..]),
            ("a.txt", &b"Hello."[..])
        );
        assert!(
            read("multipart/form-data; boundary=XX", None, "garbage")
                .await
                .is_err()
        );
    }
}

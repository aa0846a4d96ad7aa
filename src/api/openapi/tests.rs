use std::collections::BTreeSet;

use serde_json::Value;
use utoipa::PartialSchema;

use super::schemas::*;
use super::{ALIASES, generated};

/// The paths the routers register, read from their source so the list cannot drift.
fn registered_routes() -> BTreeSet<String> {
    let sources = [
        include_str!("../http.rs"),
        include_str!("../admin.rs"),
        include_str!("../console.rs"),
        include_str!("../libretranslate/mod.rs"),
    ];
    let mut routes = BTreeSet::new();
    for src in sources {
        for (i, _) in src.match_indices(".route(") {
            let rest = &src[i..];
            let start = rest.find('"').unwrap() + 1;
            let end = start + rest[start..].find('"').unwrap();
            routes.insert(rest[start..end].to_string());
        }
    }
    routes
}

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let doc = generated();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routes = registered_routes();
    assert!(routes.len() >= 30, "{routes:?}");
    assert_eq!(routes, documented);
    for (alias, route) in ALIASES {
        assert!(routes.contains(*alias) && routes.contains(*route));
    }
}

#[test]
fn every_operation_has_a_unique_id_and_documented_responses() {
    let doc = generated();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}"));
            assert!(ids.insert(id.to_string()), "{id} twice");
            for (status, r) in op["responses"].as_object().unwrap() {
                assert!(
                    r.get("$ref").is_some() || r["description"].is_string(),
                    "{method} {path} {status}"
                );
            }
        }
    }
    for name in ["Error", "TeiError", "LtError", "OpenAiError"] {
        assert!(doc["components"]["responses"][name].is_object(), "{name}");
    }
}

#[test]
fn literal_schemas_are_what_was_written() {
    let of = |s: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| -> Value {
        serde_json::to_value(s).unwrap()
    };
    for s in [
        of(NonBlankTexts::schema()),
        of(SomeTexts::schema()),
        of(NonEmptyTexts::schema()),
        of(TokenizeTexts::schema()),
        of(PredictInputs::schema()),
        of(TokenIds::schema()),
        of(TextOrList::schema()),
    ] {
        assert!(s["oneOf"].as_array().is_some_and(|o| o.len() >= 2), "{s}");
    }
    assert_eq!(of(truncation_direction())["enum"][0], "Right");
    assert_eq!(of(only_null())["type"], "null");
    assert_eq!(of(encoding_format())["enum"][1], "base64");
}

/// The characters NOT_BLANK's class leaves out, read back from the pattern.
fn blank_class() -> BTreeSet<char> {
    let class = NOT_BLANK.trim_start_matches("[^").trim_end_matches(']');
    let mut chars = Vec::new();
    let mut rest = class;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\\u") {
            let code = u32::from_str_radix(&after[..4], 16).unwrap();
            chars.push(char::from_u32(code).unwrap());
            rest = &after[4..];
        } else if let Some(after) = rest.strip_prefix('\\') {
            let e = after.chars().next().unwrap();
            chars.push(match e {
                't' => '\t',
                'n' => '\n',
                'f' => '\u{c}',
                'r' => '\r',
                other => panic!("escape {other}"),
            });
            rest = &after[1..];
        } else if let Some(after) = rest.strip_prefix('-') {
            let from = chars.pop().unwrap();
            rest = after;
            let to_len = rest.len();
            chars.push(from);
            let before = chars.len();
            // The range's end is the next item.
            let mut end = blank_item(&mut rest);
            assert!(rest.len() < to_len);
            let end_char = end.pop().unwrap();
            let (a, b) = (from as u32 + 1, end_char as u32);
            chars.extend((a..=b).filter_map(char::from_u32));
            assert!(chars.len() > before);
        } else {
            chars.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    chars.into_iter().collect()
}

fn blank_item(rest: &mut &str) -> Vec<char> {
    let after = rest.strip_prefix("\\u").unwrap();
    let code = u32::from_str_radix(&after[..4], 16).unwrap();
    *rest = &after[4..];
    vec![char::from_u32(code).unwrap()]
}

#[test]
fn not_blank_is_what_str_trim_calls_white_space() {
    let class = blank_class();
    let whitespace: BTreeSet<char> = (0..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .collect();
    assert_eq!(class, whitespace);
}

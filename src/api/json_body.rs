//! JSON request bodies read the way the OpenAPI document (JSON Schema) reads them: a number
//! with no fractional part is an integer, so `"top_k": 2.0` means 2 as `"top_k": 2` does.
//! serde would refuse `2.0` for an integer field; the document allows it, and a body the
//! document allows must be one the server takes (schemathesis checks both ways).

use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

/// Parses `body` into `T`, integral floats taken as integers.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    // serde_json checks UTF-8 and limits nesting depth, so hostile bodies fail here cleanly.
    let mut value: Value = serde_json::from_slice(body)?;
    integral_floats_as_integers(&mut value);
    serde_json::from_value(value)
}

/// The largest magnitude below which every integer is exactly an f64 (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Rewrites every float with no fractional part (within ±2^53) as an integer, in place.
pub fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *n = if f >= 0.0 {
                    Number::from(f as u64)
                } else {
                    Number::from(f as i64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        n: u32,
        x: f64,
        list: Vec<i64>,
    }

    #[test]
    fn integral_floats_are_integers_and_others_are_left_alone() {
        let b: Body = parse(br#"{"n": 2.0, "x": 2.5, "list": [-3.0, 4, 1e3]}"#).unwrap();
        assert_eq!(
            b,
            Body {
                n: 2,
                x: 2.5,
                list: vec![-3, 4, 1000]
            }
        );
        assert!(parse::<Body>(br#"{"n": 2.5, "x": 1, "list": []}"#).is_err());
        assert!(parse::<Body>(br#"{"n": 1e300, "x": 1, "list": []}"#).is_err());
        // Beyond 2^53 a float is not taken for an integer.
        assert!(parse::<Body>(br#"{"n": 1, "x": 1, "list": [1e17]}"#).is_err());
    }
}

//! Fuzzing (issue 17) on stable Rust: the JSON request parsers of `api::wire` on random bytes
//! and on mutations of valid bodies never panic. A bounded number of cases, so `cargo test`
//! runs it in seconds.

use proptest::prelude::*;
use proptest::sample::Index;
use quantserve::api::wire::{parse_classify, parse_translate};

const VALID: &[&str] = &[
    r#"{"inputs": ["a fine film", "dull"], "top_k": 2, "truncate": true}"#,
    r#"{"inputs": "one text", "variant": "int8"}"#,
    r#"{"text": ["Hello there.", "How are you?"], "source": "en", "target": "pt", "beam_size": 4}"#,
    r#"{"q": "Olá", "source": "pt", "target": "en", "alternatives": 3, "format": "text"}"#,
    r#"{"inputs": [[1, 2]], "parameters": {"max_new_tokens": 1e308}}"#,
];

fn mutate(base: &[u8], edits: &[(Index, u8)], cut: Option<Index>) -> Vec<u8> {
    let mut b = base.to_vec();
    for (at, v) in edits {
        let i = at.index(b.len());
        b[i] = *v;
    }
    if let Some(c) = cut {
        b.truncate(c.index(b.len() + 1));
    }
    b
}

fn check(body: &[u8]) {
    let _ = parse_classify(body, None);
    let _ = parse_translate(body, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&body);
    }

    #[test]
    fn mutated_valid_bodies_never_panic(
        which in 0..VALID.len(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<Index>()),
    ) {
        check(&mutate(VALID[which].as_bytes(), &edits, cut));
    }

    #[test]
    fn json_shaped_values_never_panic(
        key in "(inputs|text|q|source|target|top_k|beam_size|truncate|variant|alternatives|format|parameters)",
        value in prop_oneof![
            Just("null".to_string()),
            "-?[0-9]{1,30}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?",
            "\"[^\"\\\\]{0,40}\"",
            Just("[[[[[[[[[[]]]]]]]]]]".to_string()),
            Just("{}".to_string()),
            Just("[\"\", \"\"]".to_string()),
            Just("true".to_string()),
        ],
    ) {
        let body = format!(r#"{{"inputs": ["x"], "text": "y", "source": "en", "target": "pt", "{key}": {value}}}"#);
        check(body.as_bytes());
    }
}

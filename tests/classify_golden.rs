//! Parity of the BERT engine with HF transformers: logits of the fine-tuned sentiment classifier
//! and of a randomly initialised BERT with a different config, on 50 test sentences.

mod common;

use quantserve::models::bert::BertClassifier;
use quantserve::models::tokenizer::Overflow;

fn check(model_dir: &str, golden: &str) {
    let clf = BertClassifier::load(&common::path(model_dir)).unwrap();
    let g = common::golden(golden);
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 50);
    let labels: Vec<String> = g["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(clf.labels, labels);
    let mut batch = Vec::new();
    for c in cases {
        let ids = clf
            .tokenize(c["text"].as_str().unwrap(), Overflow::Truncate)
            .unwrap();
        assert_eq!(
            ids,
            common::ids(&c["input_ids"]),
            "token ids of {:?}",
            c["text"]
        );
        batch.push(ids);
    }
    // One batch of all 50 and each sentence alone: both must match the reference.
    let batched = clf.classify_ids(&batch).unwrap();
    let mut max_diff = 0.0f32;
    for (i, (c, got)) in cases.iter().zip(&batched).enumerate() {
        let want: Vec<f32> = c["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        for (a, b) in got.logits.iter().zip(&want) {
            max_diff = max_diff.max((a - b).abs());
        }
        assert_eq!(
            clf.labels[got.label],
            c["label"].as_str().unwrap(),
            "label of case {i}"
        );
        let alone = &clf.classify_ids(std::slice::from_ref(&batch[i])).unwrap()[0];
        assert_eq!(alone.label, got.label);
        for (a, b) in alone.scores.iter().zip(&got.scores) {
            assert!(
                (a - b).abs() < 1e-4,
                "case {i}: score alone {a} vs in batch {b}"
            );
        }
    }
    eprintln!("{golden}: max |logit diff| = {max_diff:e}");
    assert!(
        max_diff < 1e-3,
        "{golden}: max |logit diff| {max_diff} ≥ 1e-3"
    );
}

#[test]
fn sentiment_classifier_matches_transformers() {
    check("models/sentiment/fp32", "classifier_sentiment.json");
}

#[test]
fn random_bert_config_matches_transformers() {
    check("tests/fixtures/bert-random", "classifier_random.json");
}

#[test]
fn bad_inputs_are_errors() {
    let clf = BertClassifier::load(&common::path("models/sentiment/fp32")).unwrap();
    let long = "good ".repeat(1000);
    assert!(clf.classify(&[long.as_str()], Overflow::Error).is_err());
    assert_eq!(
        clf.classify(&[long.as_str()], Overflow::Truncate)
            .unwrap()
            .len(),
        1
    );
    assert!(clf.classify_ids(&[vec![]]).is_err());
    assert!(clf.classify_ids(&[vec![u32::MAX]]).is_err());
    assert!(clf.classify(&[], Overflow::Error).unwrap().is_empty());
    assert!(BertClassifier::load(&common::path("tests/golden")).is_err());
}

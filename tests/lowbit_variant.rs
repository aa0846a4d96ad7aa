//! Sub-8-bit variants: `quantserve quantize` writes bit-packed files whose metadata round-trips,
//! that load back to the same model the load-time derivation builds, at the expected size; and
//! every scheme runs both models.

mod common;

use std::path::PathBuf;

use quantserve::format::TensorStore;
use quantserve::format::{VARIANT_FILE, VariantInfo};
use quantserve::models::bert::BertClassifier;
use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::tokenizer::Overflow;
use quantserve::quant::convert::quantize_dir;
use quantserve::repo::{load_classifier, load_translator};
use quantserve::schemes::SchemeRef as Scheme;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quantserve-lowbit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const TEXTS: [&str; 2] = [
    "A gorgeous, witty, seductive movie.",
    "A dull, lifeless mess.",
];

#[test]
fn scheme_names_round_trip() {
    for name in [
        "int4",
        "int6",
        "int4-g64",
        "int4-g128",
        "int6-g64",
        "ternary",
        "ternary-row",
        "bcq1",
        "bcq2",
        "bcq3",
        "bcq4",
    ] {
        assert_eq!(Scheme::parse(name).unwrap().name(), name);
    }
    for bad in ["int3", "int4-g32", "int4-g0", "bcq0", "bcq5", "ternary-col"] {
        let err = Scheme::parse(bad).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{bad}: {err}");
    }
}

#[test]
fn bert_lowbit_files_round_trip_and_match_load_time_derivation() {
    let src = common::path("models/sentiment/fp32");
    // The reference file holds f16 weights.
    let fp32_file = std::fs::metadata(src.join("model.safetensors"))
        .unwrap()
        .len();
    // (scheme, bits, file size bound as a fraction of the reference file)
    for (scheme, bits, max_fraction) in [
        ("int4-g64", 4, 0.32),
        ("bcq2", 2, 0.16),
        ("ternary-row", 2, 0.16),
    ] {
        let out = scratch(scheme);
        let report = quantize_dir(&src, scheme, &out).unwrap();
        assert_eq!(
            (report.info.scheme.as_str(), report.info.bits),
            (scheme, bits)
        );
        let store = TensorStore::from_safetensors(&out.join(VARIANT_FILE)).unwrap();
        assert_eq!(
            VariantInfo::from_metadata(&store.metadata, "bert").unwrap(),
            report.info
        );
        assert!(
            (report.bytes as f64) < fp32_file as f64 * max_fraction,
            "{scheme}: {} bytes of {fp32_file}",
            report.bytes
        );
        // Per-row (or per-group) scales: file and load-time derivation are the same model.
        let disk = BertClassifier::load(&out).unwrap();
        let mem = load_classifier(&common::path("models"), "sentiment", scheme).unwrap();
        assert_eq!(
            disk.classify(&TEXTS, Overflow::Error).unwrap(),
            mem.classify(&TEXTS, Overflow::Error).unwrap(),
            "{scheme}"
        );
        assert_eq!(disk.weight_bytes(), mem.weight_bytes());
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn marian_lowbit_file_translates_like_the_derived_variant() {
    let src = common::model_dir("en-pt");
    let out = scratch("marian-int4");
    quantize_dir(&src, "int4", &out).unwrap();
    let disk = MarianTranslator::load(&out).unwrap();
    let mem = load_translator(&common::path("models"), "en-pt", "int4").unwrap();
    let opts = SearchOptions::default();
    let text = ["In the beginning was the Word, and the Word was with God."];
    let got = disk.translate(&text, &opts, Overflow::Error).unwrap();
    assert_eq!(got, mem.translate(&text, &opts, Overflow::Error).unwrap());
    assert!(!got[0].is_empty());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn every_scheme_runs_both_models_and_shrinks_them() {
    let root = common::path("models");
    common::model_dir("en-pt");
    let clf32 = load_classifier(&root, "sentiment", "fp32")
        .unwrap()
        .weight_bytes();
    let tr32 = load_translator(&root, "en-pt", "fp32")
        .unwrap()
        .weight_bytes();
    let opts = SearchOptions::default();
    for v in ["int6", "int4-g128", "ternary", "bcq2"] {
        let clf = load_classifier(&root, "sentiment", v).unwrap();
        let scores = clf.classify(&TEXTS, Overflow::Error).unwrap();
        assert_eq!(scores.len(), 2);
        assert!(clf.weight_bytes() * 4 < clf32, "{v}");
        let tr = load_translator(&root, "en-pt", v).unwrap();
        // Batch independence holds for the low-bit kernels as well.
        let batch = tr
            .translate(
                &["How are you today?", "Good morning."],
                &opts,
                Overflow::Error,
            )
            .unwrap();
        let alone = tr
            .translate(&["Good morning."], &opts, Overflow::Error)
            .unwrap();
        assert_eq!(batch[1], alone[0], "{v}");
        assert!(tr.weight_bytes() * 4 < tr32, "{v}");
    }
    // The better schemes still translate the easy sentence.
    let int4 = load_translator(&root, "en-pt", "int4-g64").unwrap();
    assert_eq!(
        int4.translate(&["How are you today?"], &opts, Overflow::Error)
            .unwrap()[0],
        "Como você está hoje?"
    );
}

#[test]
fn mixed_precision_recipe_writes_a_loadable_variant() {
    use quantserve::quant::convert::quantize_dir_recipe;
    use quantserve::quant::recipe::Recipe;
    let src = common::path("models/sentiment/fp32");
    let recipe = Recipe::from_file(&common::path("config/recipes/low.toml")).unwrap();
    let out = scratch("mixed-low");
    let report = quantize_dir_recipe(&src, &recipe, &out).unwrap();
    assert_eq!(
        (report.info.scheme.as_str(), report.info.bits),
        ("mixed", 8)
    );
    // int4-g64 embeddings and FFN, int6 attention, int8 pooler/classifier.
    assert!(
        report.avg_bits > 4.5 && report.avg_bits < 6.0,
        "{}",
        report.avg_bits
    );
    let store = TensorStore::from_safetensors(&out.join(VARIANT_FILE)).unwrap();
    assert_eq!(
        VariantInfo::from_metadata(&store.metadata, "bert").unwrap(),
        report.info
    );
    let format = |name: &str| {
        store
            .metadata
            .get(&format!("quantserve.lowbit.{name}"))
            .cloned()
    };
    let layer = "bert.encoder.layer.0";
    assert_eq!(
        format(&format!("{layer}.intermediate.dense.weight")).unwrap(),
        "uniform:4:64/384"
    );
    assert_eq!(
        format(&format!("{layer}.attention.self.query.weight")).unwrap(),
        "uniform:6:0/384"
    );
    assert_eq!(format("classifier.weight"), None);
    let m = BertClassifier::load(&out).unwrap();
    let scores = m.classify(&TEXTS, Overflow::Error).unwrap();
    assert_ne!(scores[0].label, scores[1].label);
    std::fs::remove_dir_all(&out).unwrap();
}

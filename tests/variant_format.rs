//! The variant format: `quantserve quantize` writes a folder that loads back, says what it is, and
//! is refused when its metadata does not fit.

mod common;

use std::path::PathBuf;

use quantserve::format::TensorStore;
use quantserve::format::{VARIANT_FILE, VariantInfo};
use quantserve::models::bert::BertClassifier;
use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::tokenizer::Overflow;
use quantserve::quant::convert::quantize_dir;
use quantserve::repo::{load_classifier, load_translator};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quantserve-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn bert_int8_variant_round_trips() {
    let src = common::path("models/sentiment/fp32");
    let out = scratch("bert-int8");
    let report = quantize_dir(&src, "int8", &out).unwrap();
    assert_eq!(report.info.scheme, "int8");
    assert!(
        report.quantized_tensors >= 6 * 6 + 3,
        "{} tensors",
        report.quantized_tensors
    );
    // Metadata round-trips and names the source.
    let store = TensorStore::from_safetensors(&out.join(VARIANT_FILE)).unwrap();
    let info = VariantInfo::from_metadata(&store.metadata, "bert").unwrap();
    assert_eq!(info, report.info);
    assert_eq!(
        info.source_sha256,
        quantserve::repo::fetch::sha256_file(&src.join("model.safetensors")).unwrap()
    );
    assert!(VariantInfo::from_metadata(&store.metadata, "marian").is_err());
    // The variant on disk computes what the in-memory int8 conversion computes.
    let disk = BertClassifier::load(&out).unwrap();
    let mem = load_classifier(&common::path("models"), "sentiment", "int8").unwrap();
    let texts = [
        "A gorgeous, witty, seductive movie.",
        "A dull, lifeless mess.",
    ];
    let (a, b) = (
        disk.classify(&texts, Overflow::Error).unwrap(),
        mem.classify(&texts, Overflow::Error).unwrap(),
    );
    assert_eq!(a, b);
    assert!(disk.weight_bytes() * 3 < BertClassifier::load(&src).unwrap().weight_bytes());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn marian_variants_round_trip() {
    let src = common::model_dir("en-pt");
    let opts = SearchOptions::default();
    for scheme in ["int8", "int8-shipped"] {
        let out = scratch(scheme);
        let report = quantize_dir(&src, scheme, &out).unwrap();
        assert_eq!(report.quantized_tensors, 53, "{scheme}");
        let tr = MarianTranslator::load(&out).unwrap();
        assert!(tr.has_shortlist());
        let got = tr
            .translate(&["How are you today?"], &opts, Overflow::Error)
            .unwrap();
        assert_eq!(got[0], "Como você está hoje?", "{scheme}");
        if scheme == "int8" {
            let mem = load_translator(&common::path("models"), "en-pt", "int8").unwrap();
            let text = ["In the beginning was the Word, and the Word was with God."];
            assert_eq!(
                tr.translate(&text, &opts, Overflow::Error).unwrap(),
                mem.translate(&text, &opts, Overflow::Error).unwrap()
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn bad_variants_are_refused_clearly() {
    let src = common::path("models/sentiment/fp32");
    assert!(quantize_dir(&src, "int3", &scratch("bad-scheme")).is_err());
    assert!(quantize_dir(&src, "int8", &src).is_err());
    // A variant file whose metadata claims another format version.
    let out = scratch("tampered");
    quantize_dir(&src, "int8", &out).unwrap();
    let path = out.join(VARIANT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // The JSON header follows its u64 length; patch it in place with a same-length edit.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let patched = header.replace("\"quantserve.format\":\"1\"", "\"quantserve.format\":\"9\"");
    assert_ne!(header, patched, "metadata not found in the header");
    bytes[8..8 + header_len].copy_from_slice(patched.as_bytes());
    std::fs::write(&path, bytes).unwrap();
    // Without its manifest (which would refuse the altered file first), the version is checked.
    std::fs::remove_file(out.join("SHA256SUMS")).unwrap();
    let err = BertClassifier::load(&out)
        .err()
        .expect("tampered variant must not load");
    assert!(format!("{err:#}").contains("format 9"), "{err:#}");
    std::fs::remove_dir_all(&out).unwrap();
}

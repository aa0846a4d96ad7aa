//! Issue 17, item 6: weight files are checked against the `SHA256SUMS` manifest of their folder
//! at load; flipped bytes in tensor data are a load error naming the file.

mod common;

use std::path::Path;

use common::crafted::{Safetensors, copy_dir, temp_dir};
use quantserve::format::VARIANT_FILE;
use quantserve::format::integrity::{MANIFEST, sha256_hex};
use quantserve::models::bert::BertClassifier;
use quantserve::models::marian::MarianTranslator;
use quantserve::quant::convert::quantize_dir;

/// Flips the bits of a few bytes in the middle of tensor `name`'s data.
fn flip(file: &Path, name: &str) {
    let mut st = Safetensors::read(file);
    let (start, end) = st.range(name);
    let mid = (start + end) / 2;
    for b in &mut st.data[mid..mid + 4] {
        *b ^= 0x5A;
    }
    st.write(file);
}

#[test]
fn flipped_bytes_in_the_reference_weights_are_a_load_error() {
    let dir = temp_dir("integrity-fp32");
    let model = dir.join("fp32");
    copy_dir(&common::path("models/sentiment/fp32"), &model);
    std::fs::copy(
        common::path("models/sentiment/fp32").join(MANIFEST),
        model.join(MANIFEST),
    )
    .unwrap();
    BertClassifier::load(&model).unwrap();
    flip(
        &model.join("model.safetensors"),
        "bert.encoder.layer.0.output.dense.weight",
    );
    let err = format!("{:#}", BertClassifier::load(&model).err().unwrap());
    assert!(
        err.contains("model.safetensors") && err.contains("sha256"),
        "{err}"
    );
    // Deriving a variant from it is refused too, and so is quantizing it.
    let scheme = quantserve::schemes::SchemeRef::parse("int8").unwrap();
    assert!(BertClassifier::load_as(&model, Some(&scheme)).is_err());
    assert!(quantize_dir(&model, "int8", &dir.join("int8")).is_err());
    // A folder without a manifest (a user's own) loads unchecked.
    std::fs::remove_file(model.join(MANIFEST)).unwrap();
    BertClassifier::load(&model).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quantize_records_the_variant_sha256_and_load_checks_it() {
    let dir = temp_dir("integrity-variant");
    let out = dir.join("int4");
    quantize_dir(&common::path("models/sentiment/fp32"), "int4", &out).unwrap();
    let manifest = std::fs::read_to_string(out.join(MANIFEST)).unwrap();
    let bytes = std::fs::read(out.join(VARIANT_FILE)).unwrap();
    assert_eq!(
        manifest,
        format!("{}  {VARIANT_FILE}\n", sha256_hex(&bytes))
    );
    BertClassifier::load(&out).unwrap();
    let name = "bert.encoder.layer.1.intermediate.dense.weight";
    flip(&out.join(VARIANT_FILE), name);
    let err = format!("{:#}", BertClassifier::load(&out).err().unwrap());
    assert!(
        err.contains(VARIANT_FILE) && err.contains("sha256"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupted_marian_bin_is_a_load_error() {
    let src = common::model_dir("en-pt");
    let dir = temp_dir("integrity-bin");
    let model = dir.join("fp32");
    std::fs::create_dir_all(&model).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let bin = model.join("model.enpt.intgemm.alphas.bin");
    // A fetched folder has its manifest; write it here in case this one predates manifests.
    quantserve::format::integrity::write_manifest(&model, &["model.enpt.intgemm.alphas.bin"])
        .unwrap();
    let mut bytes = std::fs::read(&bin).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0xFF;
    std::fs::write(&bin, bytes).unwrap();
    let err = format!("{:#}", MarianTranslator::load(&model).err().unwrap());
    assert!(
        err.contains("model.enpt.intgemm.alphas.bin") && err.contains("sha256"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_committed_model_folder_has_a_matching_manifest() {
    for dir in [
        "models/sentiment/fp32",
        "models/sentiment/bcq2-kd",
        "models/sentiment/int4-kd",
        "models/sentiment/mixed-kd",
        "models/sentiment/ternary-kd",
        "models/en-pt/int4-kd",
        "models/en-pt/mixed-kd",
        "models/en-pt/ternary-kd",
        "models/pt-en/int4-kd",
        "models/tiny-marian/fp32",
        "models/tiny-marian-untied/fp32",
    ] {
        let dir = common::path(dir);
        let text = std::fs::read_to_string(dir.join(MANIFEST))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(!text.is_empty());
        for line in text.lines() {
            let (hash, file) = line.split_once("  ").unwrap();
            let bytes = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(sha256_hex(&bytes), hash, "{}/{file}", dir.display());
        }
    }
}

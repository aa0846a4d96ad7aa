//! Issue 17, item 9: crafted model files are load errors, never an abort, a panic or a huge
//! allocation. Each file is built here from a real one under `models/`, with one field changed.
//! (Before the fix, each of these aborted or panicked the test process.)

mod common;

use common::crafted::{
    MarianBinParts, Safetensors, copy_dir, spm_charsmap, spm_with_charsmap, temp_dir,
};
use quantserve::format::marian_bin::MarianBin;
use quantserve::format::{TensorStore, VARIANT_FILE};
use quantserve::layers::{LowBitFormat, Weight};
use quantserve::models::bert::BertClassifier;
use quantserve::models::marian::MarianTranslator;
use quantserve::models::tokenizer::Overflow;
use quantserve::quant::convert::quantize_dir;

/// An int4 variant of the sentiment model (per channel), written fresh into `dir`.
fn int4_variant(dir: &std::path::Path) -> Safetensors {
    quantize_dir(&common::path("models/sentiment/fp32"), "int4", dir).unwrap();
    Safetensors::read(&dir.join(VARIANT_FILE))
}

/// Some low-bit matrix of the file and its descriptor key.
fn a_lowbit_key(st: &Safetensors) -> (String, String) {
    let meta = st.header["__metadata__"].as_object().unwrap();
    let key = meta
        .keys()
        .find(|k| k.starts_with("quantserve.lowbit.") && k.ends_with("query.weight"))
        .unwrap()
        .clone();
    let value = meta[&key].as_str().unwrap().to_string();
    (key, value)
}

fn load_err(path: &std::path::Path) -> String {
    format!("{:#}", TensorStore::from_safetensors(path).unwrap_err())
}

#[test]
fn tier_count_and_rows_of_2_pow_40_are_errors() {
    let dir = temp_dir("tiers");
    let mut st = int4_variant(&dir.join("v"));
    let file = dir.join("crafted.safetensors");
    let name = "bert.embeddings.word_embeddings.weight";
    for desc in [
        "1099511627776/30522/128",
        "1/1099511627776/128",
        "2/3/1099511627776",
    ] {
        st.set_metadata(&format!("quantserve.tiers.{name}"), desc);
        st.write(&file);
        let err = load_err(&file);
        assert!(err.contains(name), "{desc}: {err}");
    }
    // Rows of 2^40 with real tiers present: built from the real table, two tiers of rows.
    let src = common::path("models/tiny-marian/fp32/model.safetensors");
    let mut store = TensorStore::from_safetensors(&src).unwrap();
    let table = "model.shared.weight";
    let shape = store.shape(table).unwrap().to_vec();
    let data = store.take(table, &shape).unwrap();
    let (rows, cols) = (shape[0], shape[1]);
    let mut tiers = Vec::new();
    for parity in 0..2 {
        let ids: Vec<u32> = (0..rows as u32).filter(|i| i % 2 == parity).collect();
        let part: Vec<f32> = ids
            .iter()
            .flat_map(|&i| data[i as usize * cols..(i as usize + 1) * cols].to_vec())
            .collect();
        tiers.push((ids, Weight::F32(part)));
    }
    let t = quantserve::layers::weight::TieredWeight::new(rows, cols, tiers).unwrap();
    store.insert_weight(table, [rows, cols], Weight::Tiered(t));
    let info = quantserve::format::VariantInfo {
        scheme: "fp32".into(),
        bits: 32,
        granularity: "per_tensor".into(),
        model_kind: "marian-hf".into(),
        source_sha256: String::new(),
        quantserve_version: "test".into(),
    };
    let tiered = dir.join("tiered.safetensors");
    quantserve::format::write_store(&tiered, &store, &info, Default::default()).unwrap();
    assert!(
        TensorStore::from_safetensors(&tiered)
            .unwrap()
            .is_tiered(table)
    );
    let mut st = Safetensors::read(&tiered);
    for desc in ["2/1099511627776/{cols}", "300/{rows}/{cols}"] {
        let desc = desc
            .replace("{rows}", &rows.to_string())
            .replace("{cols}", &cols.to_string());
        st.set_metadata(&format!("quantserve.tiers.{table}"), &desc);
        st.write(&file);
        let err = load_err(&file);
        assert!(err.contains(table), "{desc}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn huge_lowbit_groups_cannot_inflate_a_matrix() {
    let dir = temp_dir("groups");
    let mut st = int4_variant(&dir.join("v"));
    let (key, value) = a_lowbit_key(&st);
    let cols = value.rsplit_once('/').unwrap().1.to_string();
    let file = dir.join("crafted.safetensors");
    for group in ["4194304", "1073741824"] {
        st.set_metadata(&key, &format!("uniform:4:{group}/{cols}"));
        st.write(&file);
        // A group at least as wide as the row is one scale per row: the matrix is stored (and
        // packed for the kernels) at its real width, whatever the descriptor says.
        let store = TensorStore::from_safetensors(&file).unwrap();
        let name = key.strip_prefix("quantserve.lowbit.").unwrap();
        let (_, _, w) = store.weights().find(|(n, _, _)| *n == name).unwrap();
        let Weight::LowBit(m) = w else {
            panic!("not low-bit")
        };
        assert_eq!(
            m.format,
            LowBitFormat::Uniform {
                bits: 4,
                group: None
            }
        );
        assert_eq!(m.codes.len(), m.rows * m.cols);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lowbit_column_counts_that_wrap_are_errors() {
    let dir = temp_dir("cols");
    let mut st = int4_variant(&dir.join("v"));
    let (key, _) = a_lowbit_key(&st);
    let file = dir.join("crafted.safetensors");
    for cols in [
        "2305843009213693953",
        "18446744073709551615",
        "4611686018427387904",
    ] {
        st.set_metadata(&key, &format!("uniform:4:0/{cols}"));
        st.write(&file);
        let err = load_err(&file);
        let name = key.strip_prefix("quantserve.lowbit.").unwrap();
        assert!(err.contains(name), "{cols}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vocab_json_ids_beyond_the_model_vocabulary_are_errors() {
    let dir = temp_dir("vocab");
    let model = dir.join("m");
    copy_dir(&common::path("models/tiny-marian/fp32"), &model);
    let text = std::fs::read_to_string(model.join("vocab.json")).unwrap();
    let mut ids: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    ids.insert("▁crafted".into(), 4_294_967_295u32.into());
    std::fs::write(
        model.join("vocab.json"),
        serde_json::to_string(&ids).unwrap(),
    )
    .unwrap();
    let err = format!("{:#}", MarianTranslator::load(&model).err().unwrap());
    assert!(
        err.contains("4294967295") && err.contains("vocab.json"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_sentencepiece_charsmaps_are_load_errors() {
    let dir = temp_dir("charsmap");
    let model = dir.join("m");
    copy_dir(&common::path("models/tiny-marian/fp32"), &model);
    let spm = std::fs::read(model.join("source.spm")).unwrap();
    let real = spm_charsmap(&spm);
    assert!(real.len() > 4, "the real model has a charsmap");
    // The real charsmap passes the check (and round-trips through the rewriter).
    quantserve::models::charsmap::validate(&real).unwrap();
    let mut truncated_trie = real.clone();
    truncated_trie.truncate(4 + 1024);
    let mut leaf_outside = real.clone();
    // The trie size claims everything: no strings, so every leaf points outside them.
    let all = (real.len() as u32 - 4) / 4 * 4;
    leaf_outside[..4].copy_from_slice(&all.to_le_bytes());
    for crafted in [
        vec![0, 0, 0, 0],
        vec![0xFF, 0xFF, 0xFF, 0xFF],
        truncated_trie,
        leaf_outside,
    ] {
        std::fs::write(model.join("source.spm"), spm_with_charsmap(&spm, &crafted)).unwrap();
        let err = format!("{:#}", MarianTranslator::load(&model).err().unwrap());
        assert!(err.contains("charsmap"), "{err}");
    }
    // The rewriter itself is faithful: the real charsmap put back loads and translates.
    std::fs::write(model.join("source.spm"), spm_with_charsmap(&spm, &real)).unwrap();
    let t = MarianTranslator::load(&model).unwrap();
    t.tokenize("In the beginning", Overflow::Truncate).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn marian_bin_shapes_that_overflow_are_errors() {
    let path = common::model_dir("en-pt").join("model.enpt.intgemm.alphas.bin");
    let bytes = std::fs::read(&path).unwrap();
    let mut parts = MarianBinParts::parse(&bytes);
    // The file as rebuilt still parses: the crafted ones differ only in the shape.
    MarianBin::parse(&parts.to_bytes()).unwrap();
    let i = parts.tensors.iter().position(|t| t.1 == 0x404).unwrap();
    for shape in [
        vec![i32::MAX, i32::MAX, i32::MAX],
        vec![65536, 65536, 65536, 65536],
        vec![i32::MAX, i32::MAX],
    ] {
        parts.tensors[i].2 = shape.clone();
        let err = format!("{:#}", MarianBin::parse(&parts.to_bytes()).err().unwrap());
        assert!(
            err.contains("overflows") || err.contains("shorter"),
            "{shape:?}: {err}"
        );
    }
    let j = parts.tensors.iter().position(|t| t.1 == 0x4101).unwrap();
    parts.tensors[j].2 = vec![i32::MAX, i32::MAX, i32::MAX];
    assert!(MarianBin::parse(&parts.to_bytes()).is_err());
}

/// Sets weight `index` of the f32 tensor `name` to `value`.
fn poke(st: &mut Safetensors, name: &str, index: usize, value: f32) {
    let (start, _) = st.range(name);
    st.data[start + 4 * index..start + 4 * index + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn nan_and_infinite_weights_are_errors_naming_the_tensor() {
    let dir = temp_dir("nan");
    let name = "bert.encoder.layer.0.attention.self.query.weight";
    for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let model = dir.join("fp32");
        copy_dir(&common::path("models/sentiment/fp32"), &model);
        let mut st = Safetensors::read(&model.join("model.safetensors"));
        poke(&mut st, name, 17, value);
        st.write(&model.join("model.safetensors"));
        // Loading the reference, deriving a variant, and writing one all refuse it.
        let err = format!("{:#}", BertClassifier::load(&model).err().unwrap());
        assert!(err.contains(name), "{value}: {err}");
        let scheme = quantserve::schemes::SchemeRef::parse("int4").unwrap();
        let err = format!(
            "{:#}",
            BertClassifier::load_as(&model, Some(&scheme))
                .err()
                .unwrap()
        );
        assert!(err.contains(name), "{value}: {err}");
        let err = format!(
            "{:#}",
            quantize_dir(&model, "ternary", &dir.join("out")).unwrap_err()
        );
        assert!(err.contains(name), "{value}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nan_in_a_marian_bin_is_an_error_naming_the_tensor() {
    let path = common::model_dir("en-pt").join("model.enpt.intgemm.alphas.bin");
    let mut parts = MarianBinParts::parse(&std::fs::read(&path).unwrap());
    let i = parts.tensors.iter().position(|t| t.1 == 0x404).unwrap();
    parts.tensors[i].3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let name = String::from_utf8_lossy(&parts.tensors[i].0)
        .trim_end_matches('\0')
        .to_string();
    let err = format!("{:#}", MarianBin::parse(&parts.to_bytes()).err().unwrap());
    assert!(err.contains(&name), "{err}");
}

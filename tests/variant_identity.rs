//! Issue 17 item 5: a variant folder written by `quantserve quantize --scheme S` holds exactly
//! what deriving `S` at load computes, for every scheme and granularity: the stored weights are
//! equal tensor by tensor and the classifier's scores are equal bit for bit.

mod common;

use std::collections::HashMap;

use quantserve::format::{TensorStore, VARIANT_FILE};
use quantserve::layers::Weight;
use quantserve::models::bert::{self, BertClassifier};
use quantserve::models::marian::MarianTranslator;
use quantserve::models::tokenizer::Overflow;
use quantserve::quant::convert::quantize_dir;
use quantserve::schemes::{self, SchemeRef};

const SCHEMES: &[&str] = &[
    "int8",
    "int4",
    "int6",
    "int4-g64",
    "int4-g128",
    "int6-g64",
    "int4-g1024",
    "ternary",
    "ternary-row",
    "bcq1",
    "bcq2",
    "bcq3",
    "bcq4",
];

fn weights(store: &TensorStore) -> HashMap<String, ([usize; 2], Weight)> {
    store
        .weights()
        .map(|(n, s, w)| (n.to_string(), (s, w.clone())))
        .collect()
}

fn fp32(store: &TensorStore) -> HashMap<String, (Vec<usize>, Vec<u32>)> {
    store
        .tensors()
        .map(|(n, t)| {
            let bits = t.data.iter().map(|v| v.to_bits()).collect();
            (n.to_string(), (t.shape.clone(), bits))
        })
        .collect()
}

#[test]
fn written_bert_variants_equal_load_time_derivation_for_every_scheme() {
    let src = common::path("models/sentiment/fp32");
    let tmp = std::env::temp_dir().join(format!("qs-identity-{}", std::process::id()));
    let texts = [
        "A wonderful, moving film.",
        "Dull and far too long; I walked out.",
        "It was fine, I guess.",
    ];
    for name in SCHEMES {
        let scheme = SchemeRef::parse(name).unwrap();
        let out = tmp.join(name);
        quantize_dir(&src, name, &out).unwrap();
        let written = TensorStore::from_safetensors(&out.join(VARIANT_FILE)).unwrap();
        let mut derived = TensorStore::from_safetensors(&src.join("model.safetensors")).unwrap();
        schemes::quantize_store(&mut derived, |_| scheme.clone(), bert::tensor_role).unwrap();
        let (w, d) = (weights(&written), weights(&derived));
        assert_eq!(
            w.keys().collect::<std::collections::BTreeSet<_>>(),
            d.keys().collect(),
            "{name}: different tensors quantized"
        );
        for (k, v) in &w {
            assert!(
                *v == d[k],
                "{name}: `{k}` differs between file and derivation"
            );
        }
        assert!(
            fp32(&written) == fp32(&derived),
            "{name}: fp32 tensors differ"
        );

        let a = BertClassifier::load(&out).unwrap();
        let b = BertClassifier::load_as(&src, Some(&scheme)).unwrap();
        let (sa, sb) = (
            a.classify(&texts, Overflow::Truncate).unwrap(),
            b.classify(&texts, Overflow::Truncate).unwrap(),
        );
        for (x, y) in sa.iter().zip(&sb) {
            let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x.scores), bits(&y.scores), "{name}: scores differ");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn written_marian_variants_translate_like_load_time_derivation() {
    let src = common::path("models/tiny-marian/fp32");
    let tmp = std::env::temp_dir().join(format!("qs-identity-mt-{}", std::process::id()));
    for name in SCHEMES {
        let scheme = SchemeRef::parse(name).unwrap();
        let out = tmp.join(name);
        quantize_dir(&src, name, &out).unwrap();
        let a = MarianTranslator::load(&out).unwrap();
        let b = MarianTranslator::load_as(&src, Some(&scheme)).unwrap();
        let ids = a
            .tokenize("In the beginning God created", Overflow::Truncate)
            .unwrap();
        let (la, lb) = (
            a.first_step_logits(&ids).unwrap(),
            b.first_step_logits(&ids).unwrap(),
        );
        let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&la), bits(&lb), "{name}: logits differ");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

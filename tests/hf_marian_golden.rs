//! Parity of the Hugging Face Marian path (Opus-MT layout, self-attention decoder) with
//! transformers' `MarianMTModel.generate` on the committed random tiny models (goldens:
//! tools/make_hf_marian.py): greedy ids identical, beam-4 ids identical on >= 95%, logits at
//! decoding steps 0 and 4 within 1e-3.

mod common;

use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::tokenizer::Overflow;
use quantserve::schemes::SchemeRef;

/// The golden's max_length counts the decoder start token; quantserve's counts outputs only.
fn opts(tr: &MarianTranslator, g: &serde_json::Value, beam_size: usize) -> SearchOptions {
    SearchOptions {
        beam_size,
        max_length: Some(g["max_length"].as_u64().unwrap() as usize - 1),
        ..tr.defaults.clone()
    }
}

fn sources(tr: &MarianTranslator, g: &serde_json::Value) -> Vec<Vec<u32>> {
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = tr
                .tokenize(c["source"].as_str().unwrap(), Overflow::Error)
                .unwrap();
            assert_eq!(ids, common::ids(&c["source_ids"]), "{:?}", c["source"]);
            ids
        })
        .collect()
}

/// How many outputs equal the golden's `key` ids (decoded as one batch).
fn agreement(tr: &MarianTranslator, g: &serde_json::Value, key: &str, beam: usize) -> usize {
    let outputs = tr
        .translate_ids(&sources(tr, g), &opts(tr, g, beam))
        .unwrap();
    let cases = g["cases"].as_array().unwrap();
    let mut same = 0;
    for (c, out) in cases.iter().zip(&outputs) {
        let want = common::ids(&c[key]);
        if *out == want {
            same += 1;
        } else {
            eprintln!(
                "{key} differs for {:?}\n  want {want:?}\n  got  {out:?}",
                c["source"]
            );
        }
    }
    same
}

fn check(model: &str, golden: &str) {
    let tr = MarianTranslator::load(&common::model_dir(model)).unwrap();
    let g = common::golden(golden);
    let n = g["cases"].as_array().unwrap().len();
    let mut worst = 0.0f32;
    for c in g["cases"].as_array().unwrap() {
        for step in ["step0", "step4"] {
            let Some(pairs) = c.get(format!("{step}_logits")) else {
                continue;
            };
            let src = common::ids(&c["source_ids"]);
            let prefix = common::ids(&c[format!("{step}_prefix")]);
            let logits = tr.step_logits(&src, &prefix).unwrap();
            for pair in pairs.as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let want = pair[1].as_f64().unwrap() as f32;
                if (logits[id] - want).abs() >= 1e-3 {
                    eprintln!("{step} logit {id}: {} vs {want}", logits[id]);
                }
                worst = worst.max((logits[id] - want).abs());
            }
        }
    }
    eprintln!("{model}: largest logit difference {worst:e}");
    assert!(worst < 1e-3, "{model}: logits differ by {worst}");
    assert_eq!(agreement(&tr, &g, "greedy_ids", 1), n, "{model}: greedy");
    let beam = agreement(&tr, &g, "beam4_ids", 4);
    eprintln!("{model}: beam-4 {beam}/{n} identical");
    assert!(
        beam * 100 >= n * 95,
        "{model}: beam-4 only {beam}/{n} identical"
    );
}

#[test]
fn tied_swish_scaled_model_matches_transformers() {
    check("tiny-marian", "hf_marian_tiny_marian.json");
}

#[test]
fn untied_gelu_model_matches_transformers() {
    check("tiny-marian-untied", "hf_marian_tiny_marian_untied.json");
}

#[test]
fn batch_results_equal_single_results() {
    let tr = MarianTranslator::load(&common::model_dir("tiny-marian-untied")).unwrap();
    let g = common::golden("hf_marian_tiny_marian_untied.json");
    let srcs: Vec<Vec<u32>> = sources(&tr, &g).into_iter().take(6).collect();
    for beam in [1, 4] {
        let o = opts(&tr, &g, beam);
        let batch = tr.translate_ids(&srcs, &o).unwrap();
        for (s, b) in srcs.iter().zip(&batch) {
            assert_eq!(
                &tr.translate_ids(std::slice::from_ref(s), &o).unwrap()[0],
                b
            );
        }
    }
}

#[test]
fn int8_mostly_agrees_with_fp32() {
    let fp32 = MarianTranslator::load(&common::model_dir("tiny-marian-untied")).unwrap();
    let int8 = MarianTranslator::load_as(
        &common::model_dir("tiny-marian-untied"),
        Some(&SchemeRef::parse("int8").unwrap()),
    )
    .unwrap();
    assert!(int8.weight_bytes() * 3 < fp32.weight_bytes());
    let g = common::golden("hf_marian_tiny_marian_untied.json");
    let srcs = sources(&fp32, &g);
    let a = fp32.translate_ids(&srcs, &opts(&fp32, &g, 1)).unwrap();
    let b = int8.translate_ids(&srcs, &opts(&int8, &g, 1)).unwrap();
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    eprintln!("int8 vs fp32 greedy: {same}/{} identical", a.len());
    assert!(
        same * 10 >= a.len() * 7,
        "int8 agrees on only {same}/{}",
        a.len()
    );
}

#[test]
fn text_round_trip_and_defaults() {
    let tr = MarianTranslator::load(&common::model_dir("tiny-marian")).unwrap();
    // Opus-MT's generation_config.json: 4 beams.
    assert_eq!(tr.defaults.beam_size, 4);
    let out = tr
        .translate(
            &["In the beginning.", ""],
            &SearchOptions {
                max_length: Some(5),
                ..tr.defaults.clone()
            },
            Overflow::Error,
        )
        .unwrap();
    assert!(!out[0].is_empty());
    assert_eq!(out[1], "");
}

#[test]
fn server_loads_opus_mt_folders_as_translators() {
    use quantserve::models::Task;
    use quantserve::repo::{detect_task, load_model};
    let root = common::repo_root().join("models");
    assert_eq!(
        detect_task(&common::model_dir("tiny-marian")),
        Task::Translate
    );
    assert_eq!(detect_task(&common::model_dir("sentiment")), Task::Classify);
    // int8 derived at load from the fp32 folder, no shortlist.
    let engine = load_model(&root, "tiny-marian", "int8", Task::Translate).unwrap();
    let ids = engine.tokenize("Hello.", Overflow::Error).unwrap();
    let mut params = engine.default_params();
    params.max_length = Some(6);
    assert_eq!(engine.run(&[ids], params).unwrap().len(), 1);
}

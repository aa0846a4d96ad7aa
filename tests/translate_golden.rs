//! Parity of the Marian engine with the independent numpy reference (tools/marian_ref.py):
//! greedy token ids on 50 Bible verses per direction, full vocabulary and with the shortlist.

mod common;

use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::tokenizer::Overflow;

fn check(model: &str, golden: &str, shortlist: bool) {
    let tr = MarianTranslator::load(&common::model_dir(model)).unwrap();
    let g = common::golden(golden);
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 50);
    let opts = SearchOptions {
        beam_size: 1,
        shortlist,
        ..SearchOptions::default()
    };
    // Tokenization must agree exactly.
    let mut sources = Vec::new();
    for c in cases {
        let ids = tr
            .tokenize(c["source"].as_str().unwrap(), Overflow::Error)
            .unwrap();
        assert_eq!(
            ids,
            common::ids(&c["source_ids"]),
            "source ids of {:?}",
            c["source"]
        );
        sources.push(ids);
    }
    // Decode as one batch: batch composition must not change any output.
    let outputs = tr.translate_ids(&sources, &opts).unwrap();
    let mut same = 0;
    for (c, out) in cases.iter().zip(&outputs) {
        if *out == common::ids(&c["output_ids"]) {
            same += 1;
        } else {
            eprintln!(
                "differs: {:?}\n  want {:?}\n  got  {:?}",
                c["source"],
                c["output"],
                tr.tokenizer.decode(out).unwrap()
            );
        }
    }
    eprintln!("{golden}: {same}/50 identical");
    assert!(
        same >= 49,
        "{golden}: only {same}/50 greedy outputs identical to the reference"
    );
}

#[test]
fn en_pt_greedy_matches_reference() {
    check("en-pt", "translate_enpt.json", false);
}

#[test]
fn pt_en_greedy_matches_reference() {
    check("pt-en", "translate_pten.json", false);
}

#[test]
fn en_pt_shortlist_greedy_matches_reference() {
    check("en-pt", "translate_enpt_shortlist.json", true);
}

#[test]
fn pt_en_shortlist_greedy_matches_reference() {
    check("pt-en", "translate_pten_shortlist.json", true);
}

#[test]
fn first_step_logits_match_reference() {
    // The top-5 logits of the first decoding step, to 1e-3.
    let tr = MarianTranslator::load(&common::model_dir("en-pt")).unwrap();
    let g = common::golden("translate_enpt.json");
    for c in g["cases"].as_array().unwrap().iter().take(3) {
        let src = common::ids(&c["source_ids"]);
        let logits = tr.first_step_logits(&src).unwrap();
        for pair in c["first_step_top5"].as_array().unwrap() {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap() as f32,
            );
            assert!(
                (logits[id] - want).abs() < 1e-3,
                "logit {id}: {} vs {want}",
                logits[id]
            );
        }
    }
}

#[test]
fn batch_results_equal_single_results() {
    let tr = MarianTranslator::load(&common::model_dir("en-pt")).unwrap();
    let texts = [
        "How are you today?",
        "The cat sat on the mat.",
        "In the beginning was the Word.",
    ];
    let opts = SearchOptions::default();
    let batch = tr.translate(&texts, &opts, Overflow::Error).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        assert_eq!(&tr.translate(&[t], &opts, Overflow::Error).unwrap()[0], b);
    }
    let beam = SearchOptions {
        beam_size: 4,
        ..SearchOptions::default()
    };
    let batch = tr.translate(&texts, &beam, Overflow::Error).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        assert_eq!(&tr.translate(&[t], &beam, Overflow::Error).unwrap()[0], b);
    }
    assert_eq!(batch[0], "Como você está hoje?");
}

#[test]
fn empty_and_overlong_inputs_are_handled() {
    let tr = MarianTranslator::load(&common::model_dir("en-pt")).unwrap();
    let opts = SearchOptions::default();
    assert_eq!(
        tr.translate(&["", "  "], &opts, Overflow::Error).unwrap(),
        vec!["", ""]
    );
    let long = "word ".repeat(2000);
    assert!(tr.translate(&[&long], &opts, Overflow::Error).is_err());
    let out = tr.translate(&[&long], &opts, Overflow::Truncate).unwrap();
    assert!(!out[0].is_empty());
}

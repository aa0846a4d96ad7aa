//! The int8 variants (per-channel weights, per-token activations) of both models: they agree with
//! fp32 where it matters and stay independent of batch composition.

mod common;

use quantserve::models::marian::SearchOptions;
use quantserve::models::tokenizer::Overflow;
use quantserve::repo::{load_classifier, load_translator};

/// The string `field` of every case of a golden file.
fn case_strings<'a>(golden: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[field].as_str().unwrap())
        .collect()
}

#[test]
fn int8_translator_agrees_with_fp32_and_is_batch_independent() {
    let root = common::path("models");
    common::model_dir("en-pt");
    let fp32 = load_translator(&root, "en-pt", "fp32").unwrap();
    let int8 = load_translator(&root, "en-pt", "int8").unwrap();
    assert!(int8.weight_bytes() < fp32.weight_bytes() / 2);
    let g = common::golden("translate_enpt_shortlist.json");
    let sources = case_strings(&g, "source");
    let opts = SearchOptions::default();
    let a = fp32.translate(&sources, &opts, Overflow::Error).unwrap();
    let b = int8.translate(&sources, &opts, Overflow::Error).unwrap();
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    eprintln!("int8 = fp32 on {same}/50 sentences");
    assert!(
        same >= 25,
        "int8 translations identical to fp32 on only {same}/50"
    );
    // Each sentence alone gives what it gave in the batch of 50.
    for (s, want) in sources.iter().zip(&b).take(10) {
        assert_eq!(
            &int8.translate(&[s], &opts, Overflow::Error).unwrap()[0],
            want
        );
    }
    assert_eq!(
        int8.translate(&["How are you today?"], &opts, Overflow::Error)
            .unwrap()[0],
        "Como você está hoje?"
    );
}

/// With several threads a batch is decoded as one sub-batch per thread (inline kernels); with
/// one thread, whole with the kernels splitting nothing. Both must give the same translations,
/// greedy and beam, for every thread count.
#[test]
fn translations_do_not_depend_on_the_thread_count() {
    let root = common::path("models");
    common::model_dir("en-pt");
    let int8 = load_translator(&root, "en-pt", "int8").unwrap();
    let g = common::golden("translate_enpt_shortlist.json");
    let sources = &case_strings(&g, "source")[..24];
    for opts in [
        SearchOptions::default(),
        SearchOptions {
            beam_size: 3,
            ..SearchOptions::default()
        },
    ] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| int8.translate(sources, &opts, Overflow::Error).unwrap())
        };
        let one = run(1);
        assert!(one.iter().all(|t| !t.is_empty()));
        for threads in [2, 3] {
            assert_eq!(
                run(threads),
                one,
                "{threads} threads, beam {}",
                opts.beam_size
            );
        }
    }
}

#[test]
fn int8_classifier_agrees_with_fp32_and_is_batch_independent() {
    let root = common::path("models");
    let fp32 = load_classifier(&root, "sentiment", "fp32").unwrap();
    let int8 = load_classifier(&root, "sentiment", "int8").unwrap();
    let g = common::golden("classifier_sentiment.json");
    let texts = case_strings(&g, "text");
    let a = fp32.classify(&texts, Overflow::Truncate).unwrap();
    let b = int8.classify(&texts, Overflow::Truncate).unwrap();
    let agree = a.iter().zip(&b).filter(|(x, y)| x.label == y.label).count();
    assert!(
        agree >= 48,
        "int8 labels agree with fp32 on only {agree}/50"
    );
    for (t, want) in texts.iter().zip(&b).take(10) {
        let alone = &int8.classify(&[t], Overflow::Truncate).unwrap()[0];
        assert_eq!(alone.label, want.label);
        for (x, y) in alone.scores.iter().zip(&want.scores) {
            assert!((x - y).abs() < 1e-4);
        }
    }
}

#[test]
fn unknown_variant_is_a_clear_error() {
    let err = load_classifier(&common::path("models"), "sentiment", "int3")
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown variant"));
}

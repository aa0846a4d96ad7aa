//! Bits per embedding row by token frequency (`quantize --recipe R --freq-corpus FILE`): the
//! frequent rows are the ones the corpus says, the tiered file round-trips, and a table whose
//! tiers all use int8 behaves exactly like the plain int8 variant (lookups, and the tied output
//! projection of the translator with and without its shortlist).

mod common;

use std::path::PathBuf;

use quantserve::format::TensorStore;
use quantserve::format::VARIANT_FILE;
use quantserve::layers::Weight;
use quantserve::models::bert::BertClassifier;
use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::tokenizer::{Overflow, TextTokenizer};
use quantserve::quant::convert::{QuantizeOptions, quantize_dir, quantize_dir_with};
use quantserve::quant::recipe::Recipe;
use quantserve::quant::tiers;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quantserve-tiers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(recipe: &str, corpus: &[&str]) -> QuantizeOptions {
    QuantizeOptions {
        recipe: Some(Recipe::parse(recipe).unwrap()),
        freq_corpus: corpus.iter().map(|c| common::path(c)).collect(),
        ..QuantizeOptions::default()
    }
}

const SENTIMENT_CORPUS: &str = "data/corpus/sentiment-train.txt";
const BIBLE_CORPUS: [&str; 2] = ["data/corpus/bible-en.txt", "data/corpus/bible-pt.txt"];

/// Every matrix int8, the embedding rows in two int8 tiers: the same numbers as `--scheme int8`.
const ALL_INT8_TIERS: &str = "default = \"int8\"\n\
    [[embedding_tiers]]\ncoverage = 0.9\nscheme = \"int8\"\n";

#[test]
fn frequent_rows_get_the_tier_scheme_and_the_file_round_trips() {
    let src = common::path("models/sentiment/fp32");
    let out = scratch("sentiment-low-freq");
    let recipe = "default = \"int8\"\nembeddings = \"bcq2\"\nffn = \"int4-g64\"\n\
                  [[embedding_tiers]]\ncoverage = 0.95\nscheme = \"int8\"\n";
    let report =
        quantize_dir_with(&src, "ignored", &options(recipe, &[SENTIMENT_CORPUS]), &out).unwrap();
    assert_eq!(report.info.scheme, "mixed");
    assert!(
        report.notes.iter().any(|n| n.contains("tier 1 (int8)"))
            && report.notes.iter().any(|n| n.contains("other rows (bcq2)")),
        "{:?}",
        report.notes
    );

    // Count independently: the int8 tier is the smallest set of most frequent rows covering
    // 95 % of the tokens.
    let tokenizer = TextTokenizer::from_file(&src.join("tokenizer.json")).unwrap();
    let vocab = 30522;
    let mut counts = vec![0u64; vocab];
    for line in std::fs::read_to_string(common::path(SENTIMENT_CORPUS))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        for id in tokenizer.encode(line, true).unwrap() {
            counts[id as usize] += 1;
        }
    }
    let total: u64 = counts.iter().sum();
    let mut ranked: Vec<usize> = (0..vocab).collect();
    ranked.sort_by_key(|&i| (std::cmp::Reverse(counts[i]), i));
    let mut frequent = Vec::new();
    let mut covered = 0;
    for &i in &ranked {
        if covered as f64 >= 0.95 * total as f64 {
            break;
        }
        covered += counts[i];
        frequent.push(i as u32);
    }
    frequent.sort_unstable();
    assert!(
        frequent.len() < vocab / 4,
        "{} frequent rows",
        frequent.len()
    );

    let name = "bert.embeddings.word_embeddings.weight";
    let mut store = TensorStore::from_safetensors(&out.join(VARIANT_FILE)).unwrap();
    assert_eq!(
        store.metadata[&format!("quantserve.tiers.{name}")],
        format!("2/{vocab}/384")
    );
    let Weight::Tiered(t) = store.take_weight(name, &[vocab, 384]).unwrap() else {
        panic!("the word embeddings are not tiered");
    };
    assert_eq!(t.tiers.len(), 2);
    assert_eq!(t.tiers[0].0, frequent);
    assert!(matches!(t.tiers[0].1, Weight::Int8 { .. }));
    assert!(matches!(t.tiers[1].1, Weight::LowBit(_)));
    assert_eq!(t.tiers[1].0.len(), vocab - frequent.len());

    // Fewer bits than all-int8 embeddings, more than all-bcq2 ones.
    let plain = scratch("sentiment-bcq2-emb");
    let r2 = quantize_dir_with(
        &src,
        "ignored",
        &options(
            "default = \"int8\"\nembeddings = \"bcq2\"\nffn = \"int4-g64\"\n",
            &[],
        ),
        &plain,
    )
    .unwrap();
    assert!(
        report.avg_bits > r2.avg_bits,
        "{} vs {}",
        report.avg_bits,
        r2.avg_bits
    );
    assert!(report.bytes > r2.bytes);

    let m = BertClassifier::load(&out).unwrap();
    let s = m
        .classify(
            &[
                "A gorgeous, witty, seductive movie.",
                "A dull, lifeless mess.",
            ],
            Overflow::Error,
        )
        .unwrap();
    assert_ne!(s[0].label, s[1].label);
    for dir in [out, plain] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn classifier_with_int8_tiers_equals_int8() {
    let src = common::path("models/sentiment/fp32");
    let (tiered, int8) = (scratch("sentiment-tiered"), scratch("sentiment-int8"));
    quantize_dir_with(
        &src,
        "ignored",
        &options(ALL_INT8_TIERS, &[SENTIMENT_CORPUS]),
        &tiered,
    )
    .unwrap();
    quantize_dir(&src, "int8", &int8).unwrap();
    let texts: Vec<String> =
        std::fs::read_to_string(common::path("data/selfcheck/sentiment-en.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let a = BertClassifier::load(&tiered).unwrap();
    let b = BertClassifier::load(&int8).unwrap();
    let (ra, rb) = (
        a.classify(&texts, Overflow::Truncate).unwrap(),
        b.classify(&texts, Overflow::Truncate).unwrap(),
    );
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.logits, y.logits);
    }
    for dir in [tiered, int8] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn translator_with_int8_tiers_equals_int8_through_the_tied_output_layer() {
    let src = common::model_dir("en-pt");
    let (tiered, int8) = (scratch("en-pt-tiered"), scratch("en-pt-int8"));
    let report = quantize_dir_with(
        &src,
        "ignored",
        &options(ALL_INT8_TIERS, &BIBLE_CORPUS),
        &tiered,
    )
    .unwrap();
    assert!(report.notes.iter().any(|n| n.contains("tier 1 (int8)")));
    quantize_dir(&src, "int8", &int8).unwrap();
    let a = MarianTranslator::load(&tiered).unwrap();
    let b = MarianTranslator::load(&int8).unwrap();
    let texts: Vec<String> = std::fs::read_to_string(common::path("data/selfcheck/en.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for shortlist in [true, false] {
        let opts = SearchOptions {
            shortlist,
            ..SearchOptions::default()
        };
        assert_eq!(
            a.translate(&texts, &opts, Overflow::Truncate).unwrap(),
            b.translate(&texts, &opts, Overflow::Truncate).unwrap(),
            "shortlist {shortlist}"
        );
    }
    // Full-vocabulary logits: every column scattered to its place.
    let ids = a.tokenizer.encode("How are you today?", true).unwrap();
    assert_eq!(
        a.first_step_logits(&ids).unwrap(),
        b.first_step_logits(&ids).unwrap()
    );
    for dir in [tiered, int8] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn tiers_and_corpus_come_together() {
    let src = common::path("models/sentiment/fp32");
    let out = scratch("errors");
    let err = quantize_dir_with(&src, "ignored", &options(ALL_INT8_TIERS, &[]), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--freq-corpus"), "{err}");
    let err = quantize_dir_with(
        &src,
        "ignored",
        &options("default = \"int8\"\n", &[SENTIMENT_CORPUS]),
        &out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("embedding_tiers"), "{err}");
    let err = quantize_dir_with(
        &src,
        "ignored",
        &options(ALL_INT8_TIERS, &["data/corpus/no-such-file.txt"]),
        &out,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("no-such-file"), "{err:#}");
    let empty = scratch("empty-corpus.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let mut o = options(ALL_INT8_TIERS, &[]);
    o.freq_corpus = vec![empty.clone()];
    let err = quantize_dir_with(&src, "ignored", &o, &out).unwrap_err();
    assert!(format!("{err:#}").contains("no text"), "{err:#}");
    let _ = std::fs::remove_file(empty);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn counts_rank_rows_by_corpus_frequency() {
    let src = common::path("models/sentiment/fp32");
    let tokenizer = TextTokenizer::from_file(&src.join("tokenizer.json")).unwrap();
    let corpus = scratch("tiny-corpus.txt");
    std::fs::write(&corpus, "good good good\nbad\n\n").unwrap();
    let counts = tiers::count_tokens(&tokenizer, std::slice::from_ref(&corpus), 30522).unwrap();
    let good = tokenizer.token_id("good").unwrap() as usize;
    let bad = tokenizer.token_id("bad").unwrap() as usize;
    assert_eq!(
        (counts.counts[good], counts.counts[bad], counts.lines),
        (3, 1, 2)
    );
    // Plus [CLS] and [SEP] on each line.
    assert_eq!(counts.total, 8);
    let _ = std::fs::remove_file(corpus);
}

/// A frequency-tiered variant folder is served like any other: the committed `low-freq` recipe,
/// written into a model repository, loads as the default variant and answers.
#[test]
fn tiered_variants_are_served() {
    use common::server;
    use quantserve::runtime::config::ModelConfig;
    use serde_json::json;

    let root = scratch("repo");
    let recipe = Recipe::from_file(&common::path("config/recipes/low-freq.toml")).unwrap();
    for (model, src, corpus) in [
        (
            "sentiment",
            common::path("models/sentiment/fp32"),
            vec![SENTIMENT_CORPUS],
        ),
        ("en-pt", common::model_dir("en-pt"), BIBLE_CORPUS.to_vec()),
    ] {
        let o = QuantizeOptions {
            recipe: Some(recipe.clone()),
            freq_corpus: corpus.iter().map(|c| common::path(c)).collect(),
            ..QuantizeOptions::default()
        };
        quantize_dir_with(&src, "ignored", &o, &root.join(model).join("low-freq")).unwrap();
        // The self-check's reference.
        std::os::unix::fs::symlink(&src, root.join(model).join("fp32")).unwrap();
    }
    let low_freq = ModelConfig {
        default_variant: "low-freq".into(),
        variants: vec!["low-freq".into()],
        // The bar is for the server's defaults; this test is about loading and answering.
        min_agreement: 0.5,
        ..ModelConfig::fp32()
    };
    let mut cfg = server::config(
        root.clone(),
        &[("sentiment", low_freq.clone()), ("en-pt", low_freq)],
    );
    cfg.defaults.classify_model = "sentiment".into();
    let server = server::start(cfg);
    let addr = server.addr();
    let r = common::http_client::post(
        addr,
        "/classify",
        &json!({"inputs": ["A gorgeous, witty, seductive movie.", "A dull, lifeless mess."]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let v = r.json();
    assert_eq!(v["variant"], "low-freq");
    assert_eq!(v["results"][0]["label"], "positive");
    assert_eq!(v["results"][1]["label"], "negative");
    let r = common::http_client::post(
        addr,
        "/translate",
        &json!({"q": "How are you today?", "source": "en", "target": "pt"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["variant"], "low-freq");
    assert!(!r.json()["translatedText"].as_str().unwrap().is_empty());
    // The folder's name says nothing of its scheme: the file's header does.
    let m = common::http_client::get(addr, "/v1/models/en-pt").json();
    let v = &m["variants"][0];
    assert_eq!(
        (v["name"].as_str(), v["scheme"].as_str(), v["bits"].as_u64()),
        (Some("low-freq"), Some("mixed"), Some(8)),
        "{m}"
    );
    let metrics = String::from_utf8(common::http_client::get(addr, "/metrics").body).unwrap();
    assert!(
        metrics.contains(
            r#"quantserve_variant_info{bits="8",model="sentiment",scheme="mixed",variant="low-freq"}"#
        ),
        "{metrics}"
    );
    server.shutdown();
    std::fs::remove_dir_all(root).unwrap();
}

//! Parity of `quantserve::eval::{bleu, chrf}` with sacrebleu 2.6.0.
//!
//! The fixture (WMT17 en-de newstest2017 reference + 16 system outputs, and the
//! scores sacrebleu computed on them) is produced by
//! `tools/make_sacrebleu_fixture.py` and committed under
//! `tests/fixtures/sacrebleu/`. Tokenizer literals below were produced by
//! sacrebleu's own `Tokenizer13a` in the same venv.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use quantserve::eval::bleu::{BleuScore, corpus_bleu, sentence_bleu, tokenize_13a};
use quantserve::eval::chrf::{
    ChrfParams, corpus_chrf, corpus_chrf_plus_plus, corpus_chrf_with, sentence_chrf,
    sentence_chrf_with,
};
use serde::Deserialize;

/// Required agreement with sacrebleu, in BLEU/chrF points.
const SCORE_TOLERANCE: f64 = 0.01;

#[derive(Deserialize)]
struct Corpus {
    #[serde(rename = "ref")]
    reference: Vec<String>,
    systems: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct ExpectedBleu {
    score: f64,
    counts: [usize; 4],
    totals: [usize; 4],
    precisions: [f64; 4],
    bp: f64,
    sys_len: usize,
    ref_len: usize,
}

#[derive(Deserialize)]
struct ExpectedCorpusScores {
    bleu: ExpectedBleu,
    chrf: f64,
    chrf_pp: f64,
}

#[derive(Deserialize)]
struct ExpectedSentenceScores {
    bleu: Vec<f64>,
    chrf: Vec<f64>,
    chrf_pp: Vec<f64>,
}

#[derive(Deserialize)]
struct ExpectedMultiRef {
    pseudo_ref_system: String,
    corpus: BTreeMap<String, ExpectedCorpusScores>,
}

#[derive(Deserialize)]
struct Expected {
    sacrebleu_version: String,
    signatures: BTreeMap<String, String>,
    corpus: BTreeMap<String, ExpectedCorpusScores>,
    sentence_stride: usize,
    sentence: BTreeMap<String, ExpectedSentenceScores>,
    multi_ref: ExpectedMultiRef,
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sacrebleu")
        .join(name)
}

/// The fixture is committed; a missing file is a broken checkout, not a skip.
fn open_fixture(name: &str) -> File {
    let path = fixture_path(name);
    File::open(&path).unwrap_or_else(|err| {
        panic!(
            "sacrebleu fixture {} is missing ({err}); it is committed to the repo — \
             regenerate with `python3 tools/make_sacrebleu_fixture.py`",
            path.display()
        )
    })
}

fn load_corpus() -> Corpus {
    let mut json = String::new();
    GzDecoder::new(open_fixture("wmt17_en_de.json.gz"))
        .read_to_string(&mut json)
        .expect("wmt17_en_de.json.gz is valid gzip'd UTF-8");
    let corpus: Corpus = serde_json::from_str(&json).expect("wmt17_en_de.json.gz parses");
    assert_eq!(corpus.systems.len(), 16, "fixture should hold 16 systems");
    corpus
}

fn load_expected() -> Expected {
    let expected: Expected =
        serde_json::from_reader(open_fixture("expected.json")).expect("expected.json parses");
    assert_eq!(expected.sacrebleu_version, "2.6.0");
    expected
}

/// Tracks the worst deviation per metric so the report shows how close we are,
/// not just that we are within tolerance.
#[derive(Default)]
struct MaxDiff(BTreeMap<&'static str, f64>);

impl MaxDiff {
    fn check(&mut self, metric: &'static str, what: &str, ours: f64, theirs: f64, tol: f64) {
        let diff = (ours - theirs).abs();
        let worst = self.0.entry(metric).or_insert(0.0);
        *worst = worst.max(diff);
        assert!(
            diff <= tol,
            "{what}: {metric} ours {ours} vs sacrebleu {theirs} (|diff| {diff} > {tol})"
        );
    }

    fn report(&self, label: &str) {
        for (metric, diff) in &self.0 {
            eprintln!("{label}: max |ours - sacrebleu| for {metric} = {diff:e}");
        }
    }
}

fn check_bleu(diffs: &mut MaxDiff, what: &str, ours: &BleuScore, theirs: &ExpectedBleu) {
    // Integer statistics must match exactly: any tokenizer or n-gram clipping
    // difference shows up here long before it moves the score by 0.01.
    assert_eq!(ours.counts, theirs.counts, "{what}: BLEU n-gram matches");
    assert_eq!(ours.totals, theirs.totals, "{what}: BLEU n-gram totals");
    assert_eq!(ours.sys_len, theirs.sys_len, "{what}: BLEU sys_len");
    assert_eq!(ours.ref_len, theirs.ref_len, "{what}: BLEU ref_len");
    diffs.check("BLEU", what, ours.score, theirs.score, SCORE_TOLERANCE);
    diffs.check("BLEU bp", what, ours.bp, theirs.bp, 1e-9);
    for n in 0..4 {
        let (p, q) = (ours.precisions[n], theirs.precisions[n]);
        diffs.check("BLEU precision", what, p, q, 1e-9);
    }
}

#[test]
fn signatures_match_the_defaults_we_mirror() {
    let expected = load_expected();
    let sig = |key: &str| expected.signatures[key].as_str();
    assert_eq!(
        sig("bleu"),
        "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    );
    assert_eq!(
        sig("sentence_bleu"),
        "nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|version:2.6.0"
    );
    assert_eq!(
        sig("chrf"),
        "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
    );
    assert_eq!(
        sig("chrf_pp"),
        "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0"
    );
    assert_eq!(
        sig("bleu_multi_ref"),
        "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    );
}

#[test]
fn corpus_scores_match_sacrebleu_for_all_16_systems() {
    let corpus = load_corpus();
    let expected = load_expected();
    assert_eq!(expected.corpus.len(), 16);
    let refs = [&corpus.reference];
    let mut diffs = MaxDiff::default();
    for (name, want) in &expected.corpus {
        let hyps = &corpus.systems[name];
        check_bleu(&mut diffs, name, &corpus_bleu(hyps, &refs), &want.bleu);
        diffs.check(
            "chrF",
            name,
            corpus_chrf(hyps, &refs),
            want.chrf,
            SCORE_TOLERANCE,
        );
        diffs.check(
            "chrF++",
            name,
            corpus_chrf_plus_plus(hyps, &refs),
            want.chrf_pp,
            SCORE_TOLERANCE,
        );
    }
    diffs.report("corpus, 1 ref");
}

#[test]
fn multi_reference_corpus_scores_match_sacrebleu() {
    let corpus = load_corpus();
    let expected = load_expected();
    let pseudo_ref = &corpus.systems[&expected.multi_ref.pseudo_ref_system];
    let refs = [&corpus.reference, pseudo_ref];
    let mut diffs = MaxDiff::default();
    for (name, want) in &expected.multi_ref.corpus {
        let hyps = &corpus.systems[name];
        check_bleu(&mut diffs, name, &corpus_bleu(hyps, &refs), &want.bleu);
        diffs.check(
            "chrF",
            name,
            corpus_chrf(hyps, &refs),
            want.chrf,
            SCORE_TOLERANCE,
        );
        diffs.check(
            "chrF++",
            name,
            corpus_chrf_with(&ChrfParams::CHRF_PLUS_PLUS, hyps, &refs),
            want.chrf_pp,
            SCORE_TOLERANCE,
        );
    }
    diffs.report("corpus, 2 refs");
}

#[test]
fn sentence_scores_match_sacrebleu() {
    let corpus = load_corpus();
    let expected = load_expected();
    let mut diffs = MaxDiff::default();
    let mut checked = 0;
    for (name, want) in &expected.sentence {
        let hyps = &corpus.systems[name];
        for (k, i) in (0..hyps.len())
            .step_by(expected.sentence_stride)
            .enumerate()
        {
            let what = format!("{name} segment {i}");
            let refs = [corpus.reference[i].as_str()];
            let bleu = sentence_bleu(&hyps[i], &refs).score;
            diffs.check("sentence BLEU", &what, bleu, want.bleu[k], SCORE_TOLERANCE);
            let chrf = sentence_chrf(&hyps[i], &refs);
            diffs.check("sentence chrF", &what, chrf, want.chrf[k], SCORE_TOLERANCE);
            let chrf_pp = sentence_chrf_with(&ChrfParams::CHRF_PLUS_PLUS, &hyps[i], &refs);
            diffs.check(
                "sentence chrF++",
                &what,
                chrf_pp,
                want.chrf_pp[k],
                SCORE_TOLERANCE,
            );
            checked += 1;
        }
        assert_eq!(
            want.bleu.len(),
            (hyps.len()).div_ceil(expected.sentence_stride)
        );
    }
    assert!(checked > 0);
    diffs.report("sentence");
}

/// Expected outputs produced by `sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()`.
#[test]
fn tokenize_13a_matches_sacrebleu_on_tricky_strings() {
    let cases = [
        ("Hello, world!", "Hello , world !"),
        (
            "It costs $1,000.50 (approx.) today.",
            "It costs $ 1,000.50 ( approx . ) today .",
        ),
        (
            "Version 2.0, 3.14 and .5 or 5. and 1,2,3",
            "Version 2.0 , 3.14 and . 5 or 5 . and 1,2,3",
        ),
        (
            "He said &quot;no&quot; &amp; left &lt;b&gt; &amp;quot;",
            "He said \" no \" & left < b > & quot ;",
        ),
        (
            "well-known 1990-2000 co-operate -- 5-",
            "well-known 1990 - 2000 co-operate -- 5 -",
        ),
        (
            "don't it's 'quoted' rock'n'roll",
            "don't it's 'quoted' rock'n'roll",
        ),
        // Left-to-right non-overlapping regex matching: the comma after "a." and
        // the period runs are split in a specific, not quite symmetric, way.
        ("a.,b ,. x... 1.. ..1", "a . , b , . x . . . 1 . . . .1"),
        (
            "e-mail: foo@bar.com, http://x.y/z?q=1&r=2",
            "e-mail : foo @ bar . com , http : / / x . y / z ? q = 1 & r = 2",
        ),
        ("<skipped> line-\nbreak\nnext", "linebreak next"),
        (
            "  multiple   spaces\tand\ttabs  ",
            "multiple spaces and tabs",
        ),
        (
            "Ümlaut „Zitat“ – Gedankenstrich … 10 %",
            "Ümlaut „Zitat“ – Gedankenstrich … 10 %",
        ),
        (
            "[brackets] {braces} back\\slash ^caret_ `tick` ~tilde| #hash *star +plus ;semi =eq",
            "[ brackets ] { braces } back \\ slash ^ caret _ ` tick ` ~ tilde | # hash * star + plus ; semi = eq",
        ),
        ("", ""),
        ("   ", ""),
        // Python's str.split() also splits on U+001F (unit separator), unlike Rust.
        (
            "\u{a0}nbsp\u{a0}inside\u{2009}thin\u{1f}us",
            "nbsp inside thin us",
        ),
        ("x-\n", "x"),
    ];
    for (input, want) in cases {
        assert_eq!(tokenize_13a(input), want, "tokenize_13a({input:?})");
    }
}

/// sacrebleu right-strips before tokenizing, so a trailing "-\n" is kept as a dash
/// (`BLEU()._preprocess_segment("x-\n") == "x-"`): "x-" must match itself fully.
#[test]
fn bleu_strips_trailing_whitespace_before_tokenizing() {
    let score = sentence_bleu("x-\n", &["x-"]);
    assert_eq!((score.sys_len, score.ref_len), (1, 1));
    assert_eq!(score.counts[0], 1);
}

/// Values printed by sacrebleu 2.6.0 for the same calls.
#[test]
fn small_cases_match_sacrebleu() {
    let s = sentence_bleu(
        "the cat sat on a mat",
        &["the cat sat on the mat", "a cat sat on a mat"],
    );
    assert!((s.score - 100.00000000000004).abs() < 1e-9, "{s:?}");
    assert_eq!((s.sys_len, s.ref_len), (6, 6));

    // Effective order: only unigram and bigram precisions exist.
    let s = sentence_bleu("the cat", &["the cat sat on the mat"]);
    assert!((s.score - 13.533528323661276).abs() < 1e-9, "{s:?}");
    assert!((s.bp - 0.1353352832366127).abs() < 1e-12);
    assert_eq!(s.precisions, [100.0, 100.0, 0.0, 0.0]);

    // Corpus BLEU without effective order: missing trigrams force the score to 0
    // even though all unigrams and bigrams match.
    let s = corpus_bleu(&["", "the cat"], &[["a b", "the cat sat"]]);
    assert_eq!(s.score, 0.0);
    assert_eq!(s.precisions, [100.0, 100.0, 0.0, 0.0]);
    assert_eq!((s.sys_len, s.ref_len), (2, 5));

    let chrf = sentence_chrf(
        "the cat sat on a mat",
        &["the cat sat on the mat", "a cat sat on a mat"],
    );
    assert!((chrf - 86.83793406167966).abs() < 1e-9, "{chrf}");
    let chrf_pp = sentence_chrf_with(
        &ChrfParams::CHRF_PLUS_PLUS,
        "the (cat) sat, on a mat!",
        &["the cat sat on the mat.", "a cat sat on a mat"],
    );
    assert!((chrf_pp - 44.449036815312375).abs() < 1e-9, "{chrf_pp}");
}

#[test]
fn empty_hypotheses_score_zero_without_panicking() {
    let refs = [["a b", "the cat sat"]];
    let s = corpus_bleu(&["", ""], &refs);
    assert_eq!(s.score, 0.0);
    assert_eq!(s.bp, 0.0);
    assert_eq!((s.sys_len, s.ref_len), (0, 5));
    assert_eq!(corpus_chrf(&["", ""], &refs), 0.0);
    assert_eq!(sentence_bleu("", &["a b c"]).score, 0.0);
    assert_eq!(sentence_chrf("", &["abc"]), 0.0);
}

#[test]
fn empty_corpus_scores_zero_without_panicking() {
    let hyps: [&str; 0] = [];
    let one_empty_stream: [[&str; 0]; 1] = [[]];
    let no_streams: [[&str; 0]; 0] = [];
    for refs in [&one_empty_stream[..], &no_streams[..]] {
        let s = corpus_bleu(&hyps, refs);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.precisions, [0.0; 4]);
        assert_eq!(corpus_chrf(&hyps, refs), 0.0);
        assert_eq!(corpus_chrf_plus_plus(&hyps, refs), 0.0);
    }
}

#[test]
#[should_panic(expected = "reference stream 0 has 1 segments but there are 2 hypotheses")]
fn misaligned_reference_stream_is_rejected() {
    corpus_bleu(&["a", "b"], &[["a"]]);
}

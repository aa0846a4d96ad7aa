//! sacreBLEU-compatible corpus and sentence BLEU (13a tokenizer).
//!
//! Mirrors sacrebleu 2.6.0 defaults: tokenizer `13a`, case-sensitive,
//! `exp` smoothing, n-gram order 4, no effective order for corpus BLEU
//! (signature `nrefs:N|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`).
//! Sentence BLEU uses effective order, as `sacrebleu.sentence_bleu` does.
//! Parity with sacrebleu itself is checked by `tests/sacrebleu_parity.rs`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (rustc's hasher): n-gram counting is hash-bound, and SipHash's DoS
/// resistance buys nothing for offline evaluation of our own outputs.
#[derive(Default, Clone, Copy)]
pub(crate) struct NgramHasher(u64);

impl Hasher for NgramHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// HashMap keyed by n-grams, using [`NgramHasher`].
pub(crate) type NgramMap<K> = HashMap<K, usize, BuildHasherDefault<NgramHasher>>;

/// Maximum n-gram order used for BLEU precisions.
pub const MAX_NGRAM_ORDER: usize = 4;

/// sacrebleu floors `log(0)` to this value instead of `-inf` (`utils.my_log`).
const LOG_OF_ZERO: f64 = -9_999_999_999.0;

/// Whitespace exactly as Python's `str.split()` / `str.rstrip()` see it.
///
/// Rust's `char::is_whitespace` is the Unicode `White_Space` property; Python
/// additionally treats the ASCII separators U+001C..U+001F as whitespace.
/// Matching Python matters because sacrebleu splits tokens with `str.split()`.
pub(crate) fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Splits on Python-style whitespace runs, dropping empty pieces (`str.split()`).
pub(crate) fn python_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_whitespace)
        .filter(|piece| !piece.is_empty())
}

/// Characters the first 13a regex pads with spaces: all ASCII punctuation except
/// `'`, `,`, `-` and `.` (those get context-dependent rules below), plus space.
/// Transcribes `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
fn is_always_split_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn is_period_or_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// Applies a Python `re.sub` whose pattern matches exactly two characters
/// (`(A)(B)`): scan left to right, and after a match resume *after* both
/// characters. That resumption rule is observable (e.g. `"a.,"` only splits the
/// period in the `[^0-9][.,]` pass), so it is replicated rather than
/// approximated with a per-character rule.
fn substitute_pairs(
    text: &str,
    is_match: impl Fn(char, char) -> bool,
    replace: impl Fn(&mut String, char, char),
) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && is_match(chars[i], chars[i + 1]) {
            replace(&mut out, chars[i], chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `TokenizerRegexp` (shared by 13a and zh), applied to a string.
fn tokenize_regexp(line: &str) -> String {
    // Pass 1: pad always-split symbols.
    let mut padded = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_always_split_symbol(c) {
            padded.push(' ');
            padded.push(c);
            padded.push(' ');
        } else {
            padded.push(c);
        }
    }
    // Pass 2: `([^0-9])([\.,])` -> `\1 \2 ` (split period/comma unless preceded by a digit).
    let text = substitute_pairs(
        &padded,
        |a, b| !a.is_ascii_digit() && is_period_or_comma(b),
        |out, a, b| {
            out.push(a);
            out.push(' ');
            out.push(b);
            out.push(' ');
        },
    );
    // Pass 3: `([\.,])([^0-9])` -> ` \1 \2` (split period/comma unless followed by a digit).
    let text = substitute_pairs(
        &text,
        |a, b| is_period_or_comma(a) && !b.is_ascii_digit(),
        |out, a, b| {
            out.push(' ');
            out.push(a);
            out.push(' ');
            out.push(b);
        },
    );
    // Pass 4: `([0-9])(-)` -> `\1 \2 ` (split a dash that follows a digit).
    let text = substitute_pairs(
        &text,
        |a, b| a.is_ascii_digit() && b == '-',
        |out, a, b| {
            out.push(a);
            out.push(' ');
            out.push(b);
            out.push(' ');
        },
    );
    // Collapse whitespace runs and trim: `' '.join(line.split())`.
    python_split(&text).collect::<Vec<_>>().join(" ")
}

/// The mteval-v13a tokenizer exactly as sacrebleu's `Tokenizer13a` applies it.
///
/// Note that sacrebleu's BLEU right-strips each segment *before* calling this
/// (which matters for a trailing `-\n`); [`corpus_bleu`] does that, this
/// function alone does not.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    // Order matters: `&amp;quot;` must become `&quot;`, not `"`.
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    tokenize_regexp(&format!(" {line} "))
}

/// What sacrebleu's `BLEU._preprocess_segment` does with default options.
fn preprocess_segment(segment: &str) -> String {
    tokenize_13a(segment.trim_end_matches(is_python_whitespace))
}

/// A BLEU score with the statistics sacrebleu reports alongside it.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU in `[0, 100]`.
    pub score: f64,
    /// Smoothed n-gram precisions in percent, orders 1..=4.
    pub precisions: [f64; MAX_NGRAM_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Total hypothesis length in tokens.
    pub sys_len: usize,
    /// Total closest-reference length in tokens.
    pub ref_len: usize,
    /// Clipped n-gram matches per order.
    pub counts: [usize; MAX_NGRAM_ORDER],
    /// Hypothesis n-grams per order.
    pub totals: [usize; MAX_NGRAM_ORDER],
}

/// Sufficient statistics; they add up across segments, which is what makes
/// corpus BLEU differ from an average of sentence BLEUs.
#[derive(Debug, Clone, Copy, Default)]
struct BleuStats {
    sys_len: usize,
    ref_len: usize,
    counts: [usize; MAX_NGRAM_ORDER],
    totals: [usize; MAX_NGRAM_ORDER],
}

impl BleuStats {
    fn add(&mut self, other: &BleuStats) {
        self.sys_len += other.sys_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_NGRAM_ORDER {
            self.counts[n] += other.counts[n];
            self.totals[n] += other.totals[n];
        }
    }
}

/// Counts every n-gram of orders 1..=4; keys borrow the token slice.
fn count_ngrams<'a>(tokens: &'a [&'a str]) -> NgramMap<&'a [&'a str]> {
    let mut counts = NgramMap::default();
    for n in 1..=MAX_NGRAM_ORDER.min(tokens.len()) {
        for ngram in tokens.windows(n) {
            *counts.entry(ngram).or_insert(0) += 1;
        }
    }
    counts
}

/// Reference length closest to the hypothesis length; ties go to the shorter
/// reference (`BLEU._get_closest_ref_len`). Zero when there are no references.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    ref_lens
        .iter()
        .copied()
        .min_by_key(|&ref_len| (hyp_len.abs_diff(ref_len), ref_len))
        .unwrap_or(0)
}

/// Match statistics of one hypothesis against all its references: n-gram counts
/// are clipped by the maximum count over references (`_extract_reference_info`).
fn segment_stats(hyp: &str, refs: &[&str]) -> BleuStats {
    let hyp_tokenized = preprocess_segment(hyp);
    let refs_tokenized: Vec<String> = refs.iter().map(|r| preprocess_segment(r)).collect();

    // The tokenizer output is single-space separated, so `split(' ')` equals `str.split()`
    // except for the empty string, which `python_split` handles.
    let hyp_tokens: Vec<&str> = python_split(&hyp_tokenized).collect();
    let ref_tokens: Vec<Vec<&str>> = refs_tokenized
        .iter()
        .map(|r| python_split(r).collect())
        .collect();

    let mut max_ref_counts: NgramMap<&[&str]> = NgramMap::default();
    for tokens in &ref_tokens {
        for (ngram, count) in count_ngrams(tokens) {
            let entry = max_ref_counts.entry(ngram).or_insert(0);
            *entry = (*entry).max(count);
        }
    }
    let ref_lens: Vec<usize> = ref_tokens.iter().map(Vec::len).collect();

    let mut stats = BleuStats {
        sys_len: hyp_tokens.len(),
        ref_len: closest_ref_len(hyp_tokens.len(), &ref_lens),
        ..BleuStats::default()
    };
    for (ngram, count) in count_ngrams(&hyp_tokens) {
        let order = ngram.len() - 1;
        stats.totals[order] += count;
        if let Some(&ref_count) = max_ref_counts.get(ngram) {
            stats.counts[order] += count.min(ref_count);
        }
    }
    stats
}

/// `BLEU.compute_bleu` with `exp` smoothing, operation for operation so the
/// floating-point result matches sacrebleu's.
fn compute_bleu(stats: &BleuStats, effective_order: bool) -> BleuScore {
    let BleuStats {
        sys_len,
        ref_len,
        counts,
        totals,
    } = *stats;

    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };

    let mut score = BleuScore {
        score: 0.0,
        precisions: [0.0; MAX_NGRAM_ORDER],
        bp,
        sys_len,
        ref_len,
        counts,
        totals,
    };

    // Early stop if there are no matches at all (sacrebleu #141).
    if counts.iter().all(|&c| c == 0) {
        return score;
    }

    // mteval's NIST smoothing: the k-th order with zero matches gets precision
    // 1 / (2^k * total).
    let mut smooth_mteval = 1.0_f64;
    let mut eff_order = MAX_NGRAM_ORDER;
    for n in 0..MAX_NGRAM_ORDER {
        if totals[n] == 0 {
            break;
        }
        if effective_order {
            eff_order = n + 1;
        }
        score.precisions[n] = if counts[n] == 0 {
            smooth_mteval *= 2.0;
            100.0 / (smooth_mteval * totals[n] as f64)
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
    }

    let log_sum: f64 = score.precisions[..eff_order]
        .iter()
        .map(|&p| if p == 0.0 { LOG_OF_ZERO } else { p.ln() })
        .sum();
    score.score = bp * (log_sum / eff_order as f64).exp();
    score
}

/// Corpus BLEU with sacrebleu 2.6.0 defaults.
///
/// `refs` holds one stream per reference set, each parallel to `hyps`
/// (sacrebleu's `[[ref1_seg1, ref1_seg2, ...], [ref2_seg1, ...]]` layout).
/// An empty corpus scores 0.
///
/// # Panics
/// If a reference stream's length differs from `hyps.len()`; sacrebleu would
/// silently truncate to the shorter input, which hides misaligned files.
pub fn corpus_bleu<H, R, S>(hyps: &[H], refs: &[R]) -> BleuScore
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_streams_aligned(hyps.len(), refs);
    let mut total = BleuStats::default();
    let mut segment_refs: Vec<&str> = Vec::with_capacity(refs.len());
    for (i, hyp) in hyps.iter().enumerate() {
        segment_refs.clear();
        segment_refs.extend(refs.iter().map(|stream| stream.as_ref()[i].as_ref()));
        total.add(&segment_stats(hyp.as_ref(), &segment_refs));
    }
    compute_bleu(&total, false)
}

/// Sentence BLEU like `sacrebleu.sentence_bleu` (exp smoothing, effective order).
///
/// `refs` are the alternative references for this one sentence.
pub fn sentence_bleu<S: AsRef<str>>(hyp: &str, refs: &[S]) -> BleuScore {
    let refs: Vec<&str> = refs.iter().map(AsRef::as_ref).collect();
    compute_bleu(&segment_stats(hyp, &refs), true)
}

/// Shared by BLEU and chrF: every reference stream must be parallel to the hypotheses.
pub(crate) fn check_streams_aligned<R, S>(num_hyps: usize, refs: &[R])
where
    R: AsRef<[S]>,
{
    for (k, stream) in refs.iter().enumerate() {
        let len = stream.as_ref().len();
        assert_eq!(
            len, num_hyps,
            "reference stream {k} has {len} segments but there are {num_hyps} hypotheses"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_punctuation_but_keeps_decimal_numbers() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(
            tokenize_13a("It costs 1,000.50 $."),
            "It costs 1,000.50 $ ."
        );
    }

    #[test]
    fn python_whitespace_includes_ascii_separators() {
        assert!(is_python_whitespace('\u{1f}'));
        assert!(is_python_whitespace('\u{a0}'));
        assert!(!is_python_whitespace('\u{200b}'));
    }

    #[test]
    fn closest_ref_len_prefers_shorter_on_tie() {
        assert_eq!(closest_ref_len(5, &[7, 3]), 3);
        assert_eq!(closest_ref_len(5, &[6, 9]), 6);
        assert_eq!(closest_ref_len(5, &[]), 0);
    }

    #[test]
    fn identical_sentence_scores_100() {
        let s = sentence_bleu("the cat sat on the mat", &["the cat sat on the mat"]);
        assert!((s.score - 100.0).abs() < 1e-9);
        assert_eq!(s.bp, 1.0);
    }

    #[test]
    fn empty_inputs_score_zero() {
        let empty: [&str; 0] = [];
        let no_refs: [Vec<String>; 0] = [];
        assert_eq!(corpus_bleu(&empty, &no_refs).score, 0.0);
        assert_eq!(corpus_bleu(&[""], &[vec![String::new()]]).score, 0.0);
        assert_eq!(sentence_bleu("", &["a b c"]).score, 0.0);
    }
}

//! sacreBLEU-compatible chrF and chrF++.
//!
//! Mirrors sacrebleu 2.6.0 `CHRF` defaults: character order 6, word order 0
//! (2 for chrF++), beta 2, case-sensitive, whitespace ignored, and
//! `eps_smoothing=False`, i.e. precision and recall are averaged over the
//! *effective* orders only (signature `nrefs:N|case:mixed|eff:yes|nc:6|nw:0|space:no`).
//! Parity with sacrebleu itself is checked by `tests/sacrebleu_parity.rs`.

use super::bleu::{NgramMap, check_streams_aligned, is_python_whitespace, python_split};

/// chrF hyper-parameters (the subset sacrebleu exposes besides case/whitespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChrfParams {
    /// Maximum character n-gram order.
    pub char_order: usize,
    /// Maximum word n-gram order; 2 gives chrF++.
    pub word_order: usize,
    /// Recall is weighted `beta` times as much as precision.
    pub beta: u32,
}

impl ChrfParams {
    /// sacrebleu `CHRF()` defaults.
    pub const CHRF: Self = Self {
        char_order: 6,
        word_order: 0,
        beta: 2,
    };
    /// sacrebleu `CHRF(word_order=2)`, a.k.a. chrF++.
    pub const CHRF_PLUS_PLUS: Self = Self {
        char_order: 6,
        word_order: 2,
        beta: 2,
    };

    fn num_orders(&self) -> usize {
        self.char_order + self.word_order
    }
}

impl Default for ChrfParams {
    fn default() -> Self {
        Self::CHRF
    }
}

/// Per-order `[hyp n-grams, ref n-grams, matches]` counts; they add up across
/// segments for the corpus score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OrderStats {
    hyp: usize,
    reference: usize,
    matches: usize,
}

/// Punctuation that chrF++ peels off word edges (Python's `string.punctuation`).
fn is_ascii_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// chrF++'s primitive word tokenization (`CHRF._remove_punctuation`): a single
/// trailing punctuation character, or else a single leading one, is split off.
/// `(hi)` therefore becomes `(hi` + `)`; sacrebleu keeps that quirk (#124).
fn split_edge_punctuation(sentence: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for word in python_split(sentence) {
        let mut chars = word.chars();
        let first = chars.next().expect("python_split yields non-empty words");
        let last = chars.next_back();
        match last {
            None => words.push(word),
            Some(last) if is_ascii_punct(last) => {
                let cut = word.len() - last.len_utf8();
                words.extend([&word[..cut], &word[cut..]]);
            }
            Some(_) if is_ascii_punct(first) => {
                let cut = first.len_utf8();
                words.extend([&word[..cut], &word[cut..]]);
            }
            Some(_) => words.push(word),
        }
    }
    words
}

/// All n-gram counters of one segment, char orders first, then word orders.
/// Keys borrow from the segment, so extraction copies no n-gram text.
struct SegmentNgrams<'a> {
    orders: Vec<NgramMap<&'a str>>,
    word_orders: Vec<NgramMap<&'a [&'a str]>>,
}

impl<'a> SegmentNgrams<'a> {
    /// `squeezed` is the segment with all whitespace removed; `words` its chrF++
    /// words (empty unless word_order > 0).
    fn extract(params: &ChrfParams, squeezed: &'a str, words: &'a [&'a str]) -> Self {
        // Byte offset of every char boundary, so char n-grams are plain `&str` slices.
        let bounds: Vec<usize> = squeezed
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(squeezed.len()))
            .collect();
        let num_chars = bounds.len() - 1;
        let orders = (1..=params.char_order)
            .map(|n| {
                let mut counts = NgramMap::default();
                for start in 0..(num_chars + 1).saturating_sub(n) {
                    *counts
                        .entry(&squeezed[bounds[start]..bounds[start + n]])
                        .or_insert(0) += 1;
                }
                counts
            })
            .collect();
        let word_orders = (1..=params.word_order)
            .map(|n| {
                let mut counts = NgramMap::default();
                for ngram in words.windows(n) {
                    *counts.entry(ngram).or_insert(0) += 1;
                }
                counts
            })
            .collect();
        Self {
            orders,
            word_orders,
        }
    }
}

/// `CHRF._get_match_statistics` for one order.
fn match_stats<K: std::hash::Hash + Eq>(hyp: &NgramMap<K>, reference: &NgramMap<K>) -> OrderStats {
    let mut hyp_count = 0;
    let mut matches = 0;
    for (ngram, &count) in hyp {
        hyp_count += count;
        if let Some(&ref_count) = reference.get(ngram) {
            matches += count.min(ref_count);
        }
    }
    OrderStats {
        // sacrebleu does not count hypothesis n-grams for an order the reference lacks.
        hyp: if reference.is_empty() { 0 } else { hyp_count },
        reference: reference.values().sum(),
        matches,
    }
}

fn segment_match_stats(hyp: &SegmentNgrams, reference: &SegmentNgrams) -> Vec<OrderStats> {
    let chars = hyp
        .orders
        .iter()
        .zip(&reference.orders)
        .map(|(h, r)| match_stats(h, r));
    let words = hyp
        .word_orders
        .iter()
        .zip(&reference.word_orders)
        .map(|(h, r)| match_stats(h, r));
    chars.chain(words).collect()
}

/// `CHRF._compute_f_score` with `eps_smoothing=False`: average precision and
/// recall over orders where both hypothesis and reference have n-grams, then
/// take F-beta. Arithmetic follows sacrebleu's order so results match bit for bit.
fn f_score(params: &ChrfParams, stats: &[OrderStats]) -> f64 {
    let factor = f64::from(params.beta * params.beta);
    let mut avg_prec = 0.0;
    let mut avg_rec = 0.0;
    let mut effective_order = 0usize;
    for s in stats {
        if s.hyp > 0 && s.reference > 0 {
            avg_prec += s.matches as f64 / s.hyp as f64;
            avg_rec += s.matches as f64 / s.reference as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    let mut score = (1.0 + factor) * avg_prec * avg_rec;
    score /= factor * avg_prec + avg_rec;
    100.0 * score
}

/// Owned preprocessed text of one segment, from which [`SegmentNgrams`] borrow.
struct PreparedSegment<'a> {
    squeezed: String,
    words: Vec<&'a str>,
}

impl<'a> PreparedSegment<'a> {
    fn new(params: &ChrfParams, segment: &'a str) -> Self {
        Self {
            squeezed: segment
                .chars()
                .filter(|&c| !is_python_whitespace(c))
                .collect(),
            words: if params.word_order > 0 {
                split_edge_punctuation(segment)
            } else {
                Vec::new()
            },
        }
    }

    fn ngrams(&self, params: &ChrfParams) -> SegmentNgrams<'_> {
        SegmentNgrams::extract(params, &self.squeezed, &self.words)
    }
}

/// Statistics of the reference giving the best sentence F-score (first one wins
/// ties), as `CHRF._compute_segment_statistics` picks them. All-zero when there
/// are no references.
fn segment_stats(params: &ChrfParams, hyp: &str, refs: &[&str]) -> Vec<OrderStats> {
    let hyp_prepared = PreparedSegment::new(params, hyp);
    let hyp_ngrams = hyp_prepared.ngrams(params);
    let mut best: Option<(f64, Vec<OrderStats>)> = None;
    for reference in refs {
        let ref_prepared = PreparedSegment::new(params, reference);
        let stats = segment_match_stats(&hyp_ngrams, &ref_prepared.ngrams(params));
        let score = f_score(params, &stats);
        if best
            .as_ref()
            .is_none_or(|(best_score, _)| score > *best_score)
        {
            best = Some((score, stats));
        }
    }
    best.map(|(_, stats)| stats)
        .unwrap_or_else(|| vec![OrderStats::default(); params.num_orders()])
}

/// Corpus chrF (or chrF++) with explicit parameters; `refs` holds one stream per
/// reference set, each parallel to `hyps`. An empty corpus scores 0.
///
/// # Panics
/// If a reference stream's length differs from `hyps.len()`.
pub fn corpus_chrf_with<H, R, S>(params: &ChrfParams, hyps: &[H], refs: &[R]) -> f64
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_streams_aligned(hyps.len(), refs);
    let mut total = vec![OrderStats::default(); params.num_orders()];
    let mut segment_refs: Vec<&str> = Vec::with_capacity(refs.len());
    for (i, hyp) in hyps.iter().enumerate() {
        segment_refs.clear();
        segment_refs.extend(refs.iter().map(|stream| stream.as_ref()[i].as_ref()));
        for (sum, s) in total
            .iter_mut()
            .zip(segment_stats(params, hyp.as_ref(), &segment_refs))
        {
            sum.hyp += s.hyp;
            sum.reference += s.reference;
            sum.matches += s.matches;
        }
    }
    f_score(params, &total)
}

/// Corpus chrF with sacrebleu defaults (`CHRF()`), in `[0, 100]`.
pub fn corpus_chrf<H, R, S>(hyps: &[H], refs: &[R]) -> f64
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    corpus_chrf_with(&ChrfParams::CHRF, hyps, refs)
}

/// Corpus chrF++ (`CHRF(word_order=2)`), in `[0, 100]`.
pub fn corpus_chrf_plus_plus<H, R, S>(hyps: &[H], refs: &[R]) -> f64
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    corpus_chrf_with(&ChrfParams::CHRF_PLUS_PLUS, hyps, refs)
}

/// Sentence chrF/chrF++ against this sentence's alternative references.
pub fn sentence_chrf_with<S: AsRef<str>>(params: &ChrfParams, hyp: &str, refs: &[S]) -> f64 {
    let refs: Vec<&str> = refs.iter().map(AsRef::as_ref).collect();
    f_score(params, &segment_stats(params, hyp, &refs))
}

/// Sentence chrF with sacrebleu defaults (`sacrebleu.sentence_chrf`), in `[0, 100]`.
pub fn sentence_chrf<S: AsRef<str>>(hyp: &str, refs: &[S]) -> f64 {
    sentence_chrf_with(&ChrfParams::CHRF, hyp, refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_punctuation_split_matches_sacrebleu_quirks() {
        assert_eq!(
            split_edge_punctuation("(hi) \"x a. ."),
            ["(hi", ")", "\"", "x", "a", ".", "."]
        );
    }

    #[test]
    fn identical_sentence_scores_100() {
        let score = sentence_chrf("Das ist gut.", &["Das ist gut."]);
        assert!((score - 100.0).abs() < 1e-9);
    }

    #[test]
    fn empty_inputs_score_zero() {
        let empty: [&str; 0] = [];
        let no_refs: [Vec<String>; 0] = [];
        assert_eq!(corpus_chrf(&empty, &no_refs), 0.0);
        assert_eq!(corpus_chrf(&[""], &[vec!["abc".to_string()]]), 0.0);
        assert_eq!(sentence_chrf("abc", &[""]), 0.0);
        assert_eq!(sentence_chrf::<&str>("abc", &[]), 0.0);
    }
}

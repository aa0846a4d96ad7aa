//! How far a variant's output is from a reference variant's on the same input: used by the
//! self-check when a variant loads and by shadow traffic while it serves.

use serde::Serialize;

use crate::eval::chrf::sentence_chrf;
use crate::models::embedder::cosine;
use crate::models::{LabelScore, Output};

/// Two embeddings of one input "agree" (the A/B agreement rate, the disagreement log) when
/// their cosine similarity reaches this; int8 MiniLM measures about 0.99+ against fp32.
pub const EMBEDDING_AGREEMENT: f64 = 0.99;

/// One input compared.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Comparison {
    Classes {
        /// Same most probable label.
        agree: bool,
        /// Mean over labels of |p_variant − p_reference|.
        mean_abs_diff: f64,
        /// Jensen–Shannon divergence in bits, in [0, 1].
        js_divergence: f64,
    },
    Text {
        exact: bool,
        /// Sentence chrF of the variant's output against the reference's, in [0, 100].
        chrf: f64,
    },
    Vector {
        /// Cosine similarity of the variant's embedding to the reference's, in [-1, 1].
        cosine: f64,
    },
}

impl Comparison {
    /// Label agreement for classes, exact match for text.
    pub fn agrees(&self) -> bool {
        match self {
            Comparison::Classes { agree, .. } => *agree,
            Comparison::Text { exact, .. } => *exact,
            Comparison::Vector { cosine } => *cosine >= EMBEDDING_AGREEMENT,
        }
    }

    /// The self-check's score of this input in [0, 1]: label agreement for a classifier, chrF
    /// for a translator (exact match would fail a good int8 variant on a harmless word change),
    /// cosine similarity for an embedder.
    pub fn score(&self) -> f64 {
        match self {
            Comparison::Classes { agree, .. } => f64::from(u8::from(*agree)),
            Comparison::Text { chrf, .. } => chrf / 100.0,
            Comparison::Vector { cosine } => cosine.clamp(0.0, 1.0),
        }
    }
}

/// Compares two outputs of the same input; `None` when they are of different kinds.
pub fn compare(variant: &Output, reference: &Output) -> Option<Comparison> {
    match (variant, reference) {
        (Output::Classes(v), Output::Classes(r)) => Some(compare_classes(v, r)),
        (Output::Translation(v), Output::Translation(r)) => Some(Comparison::Text {
            exact: v.text == r.text,
            chrf: sentence_chrf(&v.text, &[r.text.as_str()]),
        }),
        (Output::Embedding(v), Output::Embedding(r)) => Some(Comparison::Vector {
            cosine: cosine(v, r),
        }),
        _ => None,
    }
}

fn compare_classes(variant: &[LabelScore], reference: &[LabelScore]) -> Comparison {
    // Outputs are sorted by score: line the probabilities up by label.
    let prob = |scores: &[LabelScore], label: &str| {
        scores
            .iter()
            .find(|s| s.label == label)
            .map_or(0.0, |s| f64::from(s.score))
    };
    let labels: Vec<&str> = reference.iter().map(|s| s.label.as_str()).collect();
    let pairs: Vec<(f64, f64)> = labels
        .iter()
        .map(|l| (prob(variant, l), prob(reference, l)))
        .collect();
    let n = pairs.len().max(1) as f64;
    let mean_abs_diff = pairs.iter().map(|(p, q)| (p - q).abs()).sum::<f64>() / n;
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let js_divergence = pairs
        .iter()
        .map(|&(p, q)| {
            let m = (p + q) / 2.0;
            (kl(p, m) + kl(q, m)) / 2.0
        })
        .sum::<f64>()
        .clamp(0.0, 1.0);
    Comparison::Classes {
        agree: variant.first().map(|s| &s.label) == reference.first().map(|s| &s.label),
        mean_abs_diff,
        js_divergence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Translation;

    fn scores(pairs: &[(&str, f32)]) -> Output {
        Output::Classes(
            pairs
                .iter()
                .map(|(l, s)| LabelScore {
                    label: l.to_string(),
                    score: *s,
                })
                .collect(),
        )
    }

    #[test]
    fn classes_line_up_by_label() {
        let v = scores(&[("neg", 0.8), ("pos", 0.2)]);
        let r = scores(&[("pos", 0.8), ("neg", 0.2)]);
        let Some(Comparison::Classes {
            agree,
            mean_abs_diff,
            js_divergence,
        }) = compare(&v, &r)
        else {
            panic!("classes compare as classes");
        };
        assert!(!agree);
        assert!((mean_abs_diff - 0.6).abs() < 1e-6);
        // JS of (0.8, 0.2) vs (0.2, 0.8) in bits.
        let m: f64 = 0.5;
        let expect = 0.8 * (0.8 / m).log2() + 0.2 * (0.2 / m).log2();
        assert!((js_divergence - expect).abs() < 1e-6, "{js_divergence}");
        let same = compare(&v, &v).unwrap();
        assert!(same.agrees());
        assert_eq!(same.score(), 1.0);
    }

    #[test]
    fn texts_compare_by_exact_match_and_chrf() {
        let t = |s: &str| {
            Output::Translation(Translation {
                text: s.into(),
                tokens: 1,
                alternatives: Vec::new(),
            })
        };
        let same = compare(&t("Olá mundo."), &t("Olá mundo.")).unwrap();
        assert_eq!(
            same,
            Comparison::Text {
                exact: true,
                chrf: 100.0
            }
        );
        let near = compare(&t("Olá mundo!"), &t("Olá mundo.")).unwrap();
        assert!(!near.agrees() && near.score() > 0.5 && near.score() < 1.0);
        assert_eq!(compare(&t("x"), &scores(&[("a", 1.0)])), None);
    }
}

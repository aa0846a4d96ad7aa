//! One step of transformers' beam search (`GenerationMixin._beam_search`, early_stopping False)
//! for every sentence: the 2·beam best continuations over the sentence's rows; the first `beam`
//! that do not end become the next rows; those among the first `beam` that end (EOS or length
//! cap) join the finished list (the `beam` best by `score / len^penalty`) while the early-stop
//! heuristic says they still can improve it.

use super::logits::{mask_row, top_k};
use super::{Batch, Finished, Hyp};
use crate::kernels::ops::log_softmax;

/// transformers' logits processing of one row: disallowed columns masked, log-softmax, then the
/// banned ones masked; a row that must end gets EOS at score 0 (ForcedEOSTokenLogitsProcessor).
fn process(batch: &Batch, h: &Hyp, row: &mut [f32]) {
    mask_row(row, batch.targets[h.sentence].allowed.as_deref(), &[]);
    log_softmax(row);
    mask_row(row, None, &batch.banned(h));
    if batch.forced(h) {
        row.fill(f32::NEG_INFINITY);
        row[batch.eos_column] = 0.0;
    }
}

/// Returns the next rows and their parents.
pub(super) fn step(
    batch: &Batch,
    hyps: &[Hyp],
    logits: &mut [f32],
    beam: usize,
    open: &mut [bool],
    finished: &mut Finished,
) -> (Vec<Hyp>, Vec<usize>) {
    let (eos, n_cols) = (batch.rules.eos, batch.n_cols);
    // (score, parent row, column) per sentence.
    let mut by_sentence: Vec<Vec<(f32, usize, usize)>> = vec![Vec::new(); batch.targets.len()];
    for (r, h) in hyps.iter().enumerate() {
        let row = &mut logits[r * n_cols..(r + 1) * n_cols];
        process(batch, h, row);
        for c in top_k(row, 2 * beam) {
            by_sentence[h.sentence].push((h.score + row[c], r, c));
        }
    }
    let mut next = Vec::new();
    let mut parents = Vec::new();
    for (s, mut cands) in by_sentence.into_iter().enumerate() {
        if cands.is_empty() {
            continue;
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        cands.truncate(2 * beam);
        let first_next = next.len();
        for (i, &(score, r, c)) in cands.iter().enumerate() {
            if score == f32::NEG_INFINITY {
                break;
            }
            let tok = batch.columns.token(c);
            let len = hyps[r].tokens.len() + 1;
            if tok == eos || len >= batch.targets[s].max_len {
                if i < beam && open[s] {
                    let mut tokens = hyps[r].tokens.clone();
                    if tok != eos {
                        tokens.push(tok);
                    }
                    finished[s].push((batch.normalized(score, len), tokens));
                }
            } else if next.len() - first_next < beam {
                let mut tokens = hyps[r].tokens.clone();
                tokens.push(tok);
                next.push(Hyp {
                    sentence: s,
                    tokens,
                    score,
                });
                parents.push(r);
            }
        }
        // Stable: an older finished hypothesis keeps its place among equal scores.
        finished[s].sort_by(|a, b| b.0.total_cmp(&a.0));
        finished[s].truncate(beam);
        // Early stop once the best running row, scored at its current length, cannot beat
        // the worst of a full finished list.
        if finished[s].len() == beam {
            open[s] = next[first_next..].first().is_some_and(|best| {
                batch.normalized(best.score, best.tokens.len()) > finished[s][beam - 1].0
            });
        }
        if !open[s] {
            next.truncate(first_next);
            parents.truncate(first_next);
        }
    }
    (next, parents)
}

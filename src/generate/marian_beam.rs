//! Marian's beam search: banned and disallowed tokens are masked before the log-softmax; each
//! sentence keeps its `live_beam` best continuations, and a finished hypothesis shrinks its beam.

use super::logits::{mask_row, top_k};
use super::{Batch, Candidate, Hyp};
use crate::kernels::ops::log_softmax;

/// The surviving continuations of every sentence, best first.
pub(super) fn choose(
    batch: &Batch,
    hyps: &[Hyp],
    logits: &mut [f32],
    live_beam: &[usize],
) -> Vec<Candidate> {
    let n_cols = batch.n_cols;
    let mut by_sentence: Vec<Vec<Candidate>> = vec![Vec::new(); batch.targets.len()];
    for (r, h) in hyps.iter().enumerate() {
        let row = &mut logits[r * n_cols..(r + 1) * n_cols];
        let allowed = batch.targets[h.sentence].allowed.as_deref();
        mask_row(row, allowed, &batch.banned(h));
        log_softmax(row);
        for c in top_k(row, live_beam[h.sentence]) {
            let token = batch.columns.token(c);
            by_sentence[h.sentence].push((h.sentence, r, token, h.score + row[c]));
        }
    }
    let mut chosen = Vec::new();
    for (s, mut cands) in by_sentence.into_iter().enumerate() {
        // Highest score first; ties by parent row then token, so the order is fixed.
        cands.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        cands.truncate(live_beam[s]);
        chosen.extend(cands);
    }
    chosen
}

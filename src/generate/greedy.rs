//! Greedy search: each row's best allowed token (EOS where the row must end).

use super::logits::best_column;
use super::{Batch, Candidate, Hyp};

/// The next token of every row.
pub(super) fn choose(batch: &Batch, hyps: &[Hyp], logits: &mut [f32]) -> Vec<Candidate> {
    let n_cols = batch.n_cols;
    hyps.iter()
        .enumerate()
        .map(|(r, h)| {
            let row = &mut logits[r * n_cols..(r + 1) * n_cols];
            let c = if batch.forced(h) {
                batch.eos_column
            } else {
                let allowed = batch.targets[h.sentence].allowed.as_deref();
                best_column(row, allowed, &batch.banned(h))
            };
            (h.sentence, r, batch.columns.token(c), 0.0)
        })
        .collect()
}

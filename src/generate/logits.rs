//! Picking tokens from a row of logits: masks, argmax among allowed columns, top k.

use crate::kernels::ops::argmax;

/// The column with the largest logit among `allowed` (all columns when None), never a `banned`
/// one (they are set to −∞ in `row`); the lowest column wins ties.
pub(super) fn best_column(row: &mut [f32], allowed: Option<&[u32]>, banned: &[usize]) -> usize {
    for &c in banned {
        row[c] = f32::NEG_INFINITY;
    }
    let Some(cols) = allowed else {
        return argmax(row);
    };
    let mut best: Option<usize> = None;
    for &c in cols {
        let c = c as usize;
        if row[c] != f32::NEG_INFINITY && best.is_none_or(|b| row[c] > row[b]) {
            best = Some(c);
        }
    }
    best.unwrap_or(0)
}

/// Sets every column outside `allowed`, and the `banned` ones, to −∞.
pub(super) fn mask_row(row: &mut [f32], allowed: Option<&[u32]>, banned: &[usize]) {
    if let Some(cols) = allowed {
        let mut next = cols.iter().peekable();
        for (c, v) in row.iter_mut().enumerate() {
            if next.peek().is_some_and(|&&a| a as usize == c) {
                next.next();
            } else {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    for &c in banned {
        row[c] = f32::NEG_INFINITY;
    }
}

/// Indices of the `k` largest values, largest first, lowest index first among equals.
pub(super) fn top_k(xs: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &v) in xs.iter().enumerate() {
        if idx.len() == k && v <= xs[idx[k - 1]] {
            continue;
        }
        let pos = idx.partition_point(|&j| xs[j] >= v);
        idx.insert(pos, i);
        idx.truncate(k);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        assert_eq!(top_k(&[1.0, 5.0, 3.0, 5.0, 0.0], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[1.0], 3), vec![0]);
    }
}

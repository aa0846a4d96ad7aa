//! Bits per embedding row by token frequency (the Samsung paper's mixed-precision embeddings):
//! count how often each token occurs in a corpus, rank the rows, and give the most frequent
//! rows — a small share of the vocabulary that covers most running text — more bits.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};

use super::recipe::EmbeddingTier;
use crate::layers::{TieredWeight, Weight};
use crate::models::tokenizer::TextTokenizer;
use crate::schemes::{Role, SchemeRef};

/// Token counts of a corpus, one per embedding row.
pub struct TokenCounts {
    pub counts: Vec<u64>,
    pub lines: usize,
    pub total: u64,
}

/// Counts the tokens `tokenizer` makes of every non-empty line of `files` (special tokens
/// included: they are looked up like any other row). Ids beyond `rows` are an error: the
/// tokenizer does not belong to this table.
pub fn count_tokens(
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    rows: usize,
) -> Result<TokenCounts> {
    let mut counts = vec![0u64; rows];
    let (mut lines, mut total) = (0usize, 0u64);
    for path in files {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening the frequency corpus {}", path.display()))?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let ids = tokenizer
                .encode(&line, true)
                .with_context(|| format!("tokenizing {}:{}", path.display(), i + 1))?;
            for id in ids {
                let slot = counts.get_mut(id as usize).with_context(|| {
                    format!("token id {id} is outside the embedding table ({rows} rows)")
                })?;
                *slot += 1;
                total += 1;
            }
            lines += 1;
        }
    }
    ensure!(
        total > 0,
        "the frequency corpus ({}) has no text",
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(TokenCounts {
        counts,
        lines,
        total,
    })
}

/// The rows of each tier (ascending ids), plus a last entry with every remaining row.
pub struct TierAssignment {
    pub rows: Vec<Vec<u32>>,
    /// Share of the corpus tokens each entry of `rows` covers.
    pub coverage: Vec<f64>,
}

/// Ranks rows by count (ties: lower id first) and fills the tiers in order: a tier takes rows
/// until the tokens covered so far reach its coverage. Rows never seen always fall to the rest.
pub fn assign(counts: &TokenCounts, tiers: &[EmbeddingTier]) -> TierAssignment {
    let mut ranked: Vec<u32> = (0..counts.counts.len() as u32).collect();
    ranked.sort_by(|&a, &b| {
        counts.counts[b as usize]
            .cmp(&counts.counts[a as usize])
            .then(a.cmp(&b))
    });
    let mut rows = vec![Vec::new(); tiers.len() + 1];
    let mut covered = vec![0u64; tiers.len() + 1];
    let (mut tier, mut so_far) = (0usize, 0u64);
    for id in ranked {
        let c = counts.counts[id as usize];
        // Move past every tier whose coverage is already reached (or that cannot take unseen rows).
        while tier < tiers.len()
            && (c == 0 || so_far as f64 >= tiers[tier].coverage * counts.total as f64)
        {
            tier += 1;
        }
        rows[tier].push(id);
        covered[tier] += c;
        so_far += c;
    }
    for r in &mut rows {
        r.sort_unstable();
    }
    let coverage = covered
        .iter()
        .map(|&c| c as f64 / counts.total as f64)
        .collect();
    TierAssignment { rows, coverage }
}

impl TierAssignment {
    /// The `[rows, cols]` table `data` quantized tier by tier: `schemes[t]` for tier `t` (the
    /// last for the remaining rows). Empty tiers are left out. Fails on an fp32 scheme.
    pub fn quantize(&self, schemes: &[SchemeRef], data: &[f32], cols: usize) -> Result<Weight> {
        ensure!(schemes.len() == self.rows.len(), "one scheme per tier");
        let mut parts = Vec::new();
        for (ids, scheme) in self.rows.iter().zip(schemes) {
            if ids.is_empty() {
                continue;
            }
            let rows: Vec<f32> = ids
                .iter()
                .flat_map(|&i| &data[i as usize * cols..(i as usize + 1) * cols])
                .copied()
                .collect();
            ensure!(
                !scheme.is_fp32(),
                "embedding rows cannot be stored as {}",
                scheme.name()
            );
            let m = scheme.quantize(&rows, ids.len(), cols, Role::Embedding);
            parts.push((ids.clone(), m));
        }
        let n_rows = self.rows.iter().map(Vec::len).sum();
        Ok(Weight::Tiered(TieredWeight::new(n_rows, cols, parts)?))
    }

    /// One line per tier for the `quantize` report.
    pub fn describe(&self, counts: &TokenCounts, schemes: &[SchemeRef]) -> Vec<String> {
        let vocab = counts.counts.len();
        let mut lines = vec![format!(
            "embedding rows by frequency: {} tokens in {} lines of the corpus, {} of {vocab} rows never seen",
            counts.total,
            counts.lines,
            counts.counts.iter().filter(|&&c| c == 0).count()
        )];
        for (t, ((ids, cov), scheme)) in self
            .rows
            .iter()
            .zip(&self.coverage)
            .zip(schemes)
            .enumerate()
        {
            let which = if t + 1 == self.rows.len() {
                "other rows".to_string()
            } else {
                format!("tier {}", t + 1)
            };
            lines.push(format!(
                "  {which} ({}): {} rows ({:.2} % of the vocabulary) cover {:.2} % of the tokens",
                scheme.name(),
                ids.len(),
                100.0 * ids.len() as f64 / vocab as f64,
                100.0 * cov
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(coverage: f64, scheme: &str) -> EmbeddingTier {
        EmbeddingTier {
            coverage,
            scheme: SchemeRef::parse(scheme).unwrap(),
        }
    }

    #[test]
    fn frequent_rows_fill_the_tiers_in_order() {
        // 10 tokens: row 3 ×5, row 0 ×3, row 7 ×1, row 5 ×1, the rest never.
        let counts = TokenCounts {
            counts: vec![3, 0, 0, 5, 0, 1, 0, 1],
            lines: 1,
            total: 10,
        };
        let a = assign(&counts, &[tier(0.5, "int8"), tier(0.9, "int6")]);
        // 0.5 is reached by row 3 alone; 0.9 then needs rows 0 and 7 (ties by id: 5 before 7).
        assert_eq!(a.rows, vec![vec![3], vec![0, 5], vec![1, 2, 4, 6, 7]]);
        assert_eq!(a.coverage, vec![0.5, 0.4, 0.1]);
        // Unseen rows never enter a tier even when its coverage is 1.
        let a = assign(&counts, &[tier(1.0, "int8")]);
        assert_eq!(a.rows, vec![vec![0, 3, 5, 7], vec![1, 2, 4, 6]]);
        assert_eq!(a.coverage, vec![1.0, 0.0]);
    }
}

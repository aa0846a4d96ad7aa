//! Validation of a SentencePiece `precompiled_charsmap` before `tokenizers` is given it: the
//! `spm_precompiled` crate trusts the blob (a trie size of `FF FF FF FF` reserves 8 GiB, an empty
//! or inconsistent double-array trie panics on the first encode). Checked once at load, so a
//! broken model file is a load error and every later encode is safe.
//!
//! Layout: `u32 trie bytes`, the Darts double-array (`u32` units), then the normalized strings
//! (UTF-8, NUL-separated). A lookup starts at `offset(unit[0])` and for each input byte `c`
//! reads `unit[pos ^ c]`; a matching label moves to `pos ^ c ^ offset(unit)`, whose unit holds
//! the replacement's start in the strings when the node has a leaf.

use std::collections::HashSet;

use anyhow::{Context, Result, ensure};

fn has_leaf(u: u32) -> bool {
    (u >> 8) & 1 == 1
}

fn value(u: u32) -> usize {
    (u & ((1 << 31) - 1)) as usize
}

fn label(u: u32) -> u32 {
    u & ((1 << 31) | 0xFF)
}

fn offset(u: u32) -> usize {
    ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize
}

/// Fails unless every lookup `spm_precompiled` can make on any input stays inside the trie and
/// lands on a character boundary of the normalized strings.
pub fn validate(blob: &[u8]) -> Result<()> {
    ensure!(blob.len() >= 4, "charsmap is shorter than its header");
    let trie_bytes = u32::from_le_bytes(blob[..4].try_into().expect("4 bytes")) as usize;
    let rest = &blob[4..];
    ensure!(
        trie_bytes.is_multiple_of(4) && trie_bytes <= rest.len(),
        "charsmap trie of {trie_bytes} bytes does not fit in the {} bytes there",
        rest.len()
    );
    ensure!(trie_bytes >= 4, "charsmap trie is empty");
    let units: Vec<u32> = rest[..trie_bytes]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let normalized =
        std::str::from_utf8(&rest[trie_bytes..]).context("charsmap strings are not UTF-8")?;
    // Every node position reachable from the root, each visited once (at most one per unit).
    let mut seen = HashSet::new();
    let mut todo = vec![offset(units[0])];
    while let Some(pos) = todo.pop() {
        if !seen.insert(pos) {
            continue;
        }
        // Any byte 1..=255 may follow, so `pos ^ c` must be inside for all of them.
        ensure!(
            (pos | 0xFF) < units.len(),
            "charsmap trie node {pos} reaches outside the {} units",
            units.len()
        );
        for c in 1..=255u32 {
            let at = pos ^ c as usize;
            let unit = units[at];
            if label(unit) != c {
                continue;
            }
            let next = at ^ offset(unit);
            if has_leaf(unit) {
                let leaf = *units
                    .get(next)
                    .with_context(|| format!("charsmap leaf {next} is outside the trie"))?;
                let start = value(leaf);
                ensure!(
                    normalized.is_char_boundary(start),
                    "charsmap replacement {start} is not inside its strings"
                );
            }
            todo.push(next);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_charsmaps_are_refused() {
        assert!(validate(&[0, 0, 0, 0]).is_err());
        assert!(validate(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(validate(&[4, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(validate(&[]).is_err());
    }
}

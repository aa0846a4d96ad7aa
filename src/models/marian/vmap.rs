//! Vocabulary maps for Opus-MT models: a target-vocabulary shortlist built from a parallel
//! corpus, in CTranslate2's `vmap` text format (one line per source token: the token, a tab,
//! the target tokens it may produce, space-separated; a line with an empty source lists the
//! targets always allowed). Decoding then scores only the union of the sentence's lists, as
//! Bergamot's lexical shortlist does (`shortlist.rs`).
//!
//! Built by `quantserve vmap` from token co-occurrence: for each source token, the targets that
//! most often appear in the translations of the sentences that contain it (by p(t | s)), plus
//! the most frequent targets overall. Only single source tokens are keys (CTranslate2 also
//! reads n-grams; they are skipped here).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::shortlist::Shortlist;
use crate::models::tokenizer::TextTokenizer;

/// The file a model folder's vocabulary map is read from.
pub const VMAP_FILE: &str = "vmap.txt";

/// Reads `path` into a shortlist over `vocab` target ids (pieces the tokenizer does not know
/// are skipped).
pub fn read(path: &Path, tokenizer: &TextTokenizer, vocab: usize) -> Result<Shortlist> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let id = |p: &str| tokenizer.token_id(p).filter(|&i| (i as usize) < vocab);
    let mut always = Vec::new();
    let mut lists = vec![Vec::new(); vocab];
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (source, targets) = line
            .split_once('\t')
            .with_context(|| format!("{}:{}: no tab", path.display(), n + 1))?;
        let targets: Vec<u32> = targets.split(' ').filter_map(id).collect();
        if source.is_empty() {
            always.extend(targets);
        } else if !source.contains(' ')
            && let Some(s) = id(source)
        {
            lists[s as usize].extend(targets);
        }
    }
    ensure!(
        !always.is_empty(),
        "{}: no always-allowed targets (a line starting with a tab)",
        path.display()
    );
    Ok(Shortlist::from_lists(always, &lists))
}

/// How many targets a vocabulary map keeps.
#[derive(Clone, Copy, Debug)]
pub struct VmapOptions {
    /// Targets per source token.
    pub per_token: usize,
    /// Most frequent targets, always allowed.
    pub always: usize,
}

/// What a built map holds.
pub struct Vmap {
    pub text: String,
    pub keys: usize,
    pub pairs: usize,
}

/// Builds a map from aligned `sources` / `targets` sentences (model ids, specials excluded).
pub fn build(
    sources: &[Vec<u32>],
    targets: &[Vec<u32>],
    target_tokenizer: &TextTokenizer,
    specials: &[u32],
    opts: VmapOptions,
) -> Vmap {
    let mut source_count: HashMap<u32, u32> = HashMap::new();
    let mut target_count: HashMap<u32, u32> = HashMap::new();
    let mut pair_count: HashMap<(u32, u32), u32> = HashMap::new();
    let unique = |ids: &[u32]| {
        let mut u = ids.to_vec();
        u.sort_unstable();
        u.dedup();
        u
    };
    for (src, tgt) in sources.iter().zip(targets) {
        let (src, tgt) = (unique(src), unique(tgt));
        for &t in &tgt {
            *target_count.entry(t).or_default() += 1;
        }
        for &s in &src {
            *source_count.entry(s).or_default() += 1;
            for &t in &tgt {
                *pair_count.entry((s, t)).or_default() += 1;
            }
        }
    }
    let piece = |id: u32| target_tokenizer.piece(id);
    let mut frequent: Vec<(u32, u32)> = target_count.iter().map(|(&t, &c)| (t, c)).collect();
    frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let always: Vec<String> = specials
        .iter()
        .copied()
        .chain(frequent.iter().take(opts.always).map(|(t, _)| *t))
        .filter_map(piece)
        .collect();
    let mut by_source: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
    for (&(s, t), &c) in &pair_count {
        by_source.entry(s).or_default().push((t, c));
    }
    let mut keys: Vec<u32> = by_source.keys().copied().collect();
    keys.sort_unstable();
    let mut text = format!("\t{}\n", always.join(" "));
    let mut pairs = 0;
    for s in keys {
        let Some(source) = piece(s) else { continue };
        let mut cands = by_source.remove(&s).unwrap_or_default();
        // p(t | s) = c(s, t) / c(s): the same order as the count, ties to the rarer target.
        cands.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(target_count[&a.0].cmp(&target_count[&b.0]))
                .then(a.0.cmp(&b.0))
        });
        let list: Vec<String> = cands
            .iter()
            .take(opts.per_token)
            .filter_map(|(t, _)| piece(*t))
            .collect();
        if !list.is_empty() && !source.contains(['\t', ' ']) {
            pairs += list.len();
            text.push_str(&format!("{source}\t{}\n", list.join(" ")));
        }
    }
    let keys = text.lines().count() - 1;
    Vmap { text, keys, pairs }
}

//! Marian's binary lexical shortlist (`lex.*.s2t.bin`): for every source token, the target tokens
//! that may appear in its translation, plus the `first` most frequent target tokens.
//!
//! Layout: six u64 header fields `{magic, checksum, first_num, best_num, word_to_offset_len,
//! short_lists_len}`, then `u64 word_to_offset[word_to_offset_len]` and
//! `u32 short_lists[short_lists_len]`; source word w owns `short_lists[off[w]..off[w + 1]]`.

use std::path::Path;

use anyhow::{Context, Result, ensure};

const MAGIC: u64 = 0xF11A_48D5_0134_17F5;

pub struct Shortlist {
    first_num: usize,
    /// Target ids always allowed besides the first `first_num` (a vocabulary map's entries
    /// without a source token).
    always: Vec<u32>,
    word_to_offset: Vec<u64>,
    short_lists: Vec<u32>,
}

impl Shortlist {
    pub fn read(path: &Path) -> Result<Self> {
        let buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&buf)
            .with_context(|| format!("{} is not a valid binary shortlist", path.display()))
    }

    pub fn parse(buf: &[u8]) -> Result<Self> {
        ensure!(buf.len() >= 48, "file is truncated");
        let field = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
        ensure!(field(0) == MAGIC, "bad magic {:#x}", field(0));
        let first_num = usize::try_from(field(2))?;
        let offsets_len = usize::try_from(field(4))?;
        let lists_len = usize::try_from(field(5))?;
        let need = offsets_len
            .checked_mul(8)
            .and_then(|a| lists_len.checked_mul(4).and_then(|b| a.checked_add(b)))
            .and_then(|n| n.checked_add(48))
            .context("sizes overflow")?;
        ensure!(
            buf.len() >= need,
            "file is truncated ({} bytes, header says {need})",
            buf.len()
        );
        let word_to_offset: Vec<u64> = buf[48..48 + offsets_len * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let lists_start = 48 + offsets_len * 8;
        let short_lists: Vec<u32> = buf[lists_start..lists_start + lists_len * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        ensure!(
            word_to_offset.windows(2).all(|w| w[0] <= w[1])
                && word_to_offset
                    .last()
                    .is_none_or(|&l| l as usize <= short_lists.len()),
            "offsets are not monotonic or point past the lists"
        );
        Ok(Self {
            first_num,
            always: Vec::new(),
            word_to_offset,
            short_lists,
        })
    }

    /// A shortlist from explicit lists: `always` allowed targets, and for each source id `s`
    /// the targets `lists[s]` (a vocabulary map, `vmap.rs`).
    pub fn from_lists(always: Vec<u32>, lists: &[Vec<u32>]) -> Self {
        let mut word_to_offset = Vec::with_capacity(lists.len() + 1);
        let mut short_lists = Vec::new();
        word_to_offset.push(0);
        for l in lists {
            short_lists.extend_from_slice(l);
            word_to_offset.push(short_lists.len() as u64);
        }
        Self {
            first_num: 0,
            always,
            word_to_offset,
            short_lists,
        }
    }

    /// Sorted, de-duplicated target ids allowed for a sentence with these source ids: the most
    /// frequent `first_num` targets, each source token's list, and `always` (e.g. EOS).
    pub fn allowed_targets(&self, source: &[u32], vocab: usize, always: &[u32]) -> Vec<u32> {
        let mut mark = vec![false; vocab];
        mark.iter_mut().take(self.first_num).for_each(|m| *m = true);
        for &id in always.iter().chain(&self.always) {
            if let Some(m) = mark.get_mut(id as usize) {
                *m = true;
            }
        }
        for &w in source {
            let w = w as usize;
            if w + 1 < self.word_to_offset.len() {
                let (a, b) = (
                    self.word_to_offset[w] as usize,
                    self.word_to_offset[w + 1] as usize,
                );
                for &t in &self.short_lists[a..b] {
                    if let Some(m) = mark.get_mut(t as usize) {
                        *m = true;
                    }
                }
            }
        }
        // Marian pads the list with the smallest unused ids up to a multiple of 8 (a GEMM
        // alignment detail that still decides which tokens can win); do the same for parity.
        let mut count = mark.iter().filter(|m| **m).count();
        for m in mark.iter_mut().skip(self.first_num) {
            if count % 8 == 0 {
                break;
            }
            if !*m {
                *m = true;
                count += 1;
            }
        }
        mark.iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i as u32)
            .collect()
    }
}
